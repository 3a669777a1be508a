"""OCR languages: word recall and time on a German page (tests/text/_german.py) read by
tesseract's CLI with `eng` only (what OCR_LANGUAGES=eng gives), by the CLI with `deu`
(the right model, known beforehand), and by falconproc's run_tesseract with
OCR_LANGUAGES=eng,deu,fra (read with eng, language guessed from the words, read again
with deu). Same page, same core (OMP_THREAD_LIMIT=1), median of --runs.

    python benchmarks/bench_ocr_languages.py [--runs 3]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import fmt, format_table, machine_info, parse_args, publish, ratio, timestamp  # noqa: E402
from falconproc.config import Settings  # noqa: E402
from falconproc.text.ocr import run_tesseract  # noqa: E402
from tests.text._docs import word_recall  # noqa: E402
from tests.text._german import GERMAN, german_page  # noqa: E402


def _cli(png: Path, lang: str) -> str:
    env = {**os.environ, "OMP_THREAD_LIMIT": "1"}
    return subprocess.run(["tesseract", str(png), "-", "-l", lang, "--psm", "3"], capture_output=True, text=True,
                          check=True, env=env).stdout


def measure(runs: int) -> dict:
    page = german_page()
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        png = Path(tmp) / "page.png"
        page.save(png)
        peers = {
            "tesseract CLI -l eng": lambda: (_cli(png, "eng"), "eng"),
            "tesseract CLI -l deu": lambda: (_cli(png, "deu"), "deu"),
            "falconproc eng,deu,fra": lambda: (lambda r: (r.text, r.language))(
                run_tesseract(str(png), Settings(ocr_languages=("eng", "deu", "fra")))),
        }
        for name, read in peers.items():
            times, text, language = [], "", None
            for _ in range(runs):
                started = time.perf_counter()
                text, language = read()
                times.append(time.perf_counter() - started)
            rows[name] = {"recall": word_recall(text, GERMAN), "seconds": statistics.median(times),
                          "language": language}
    return {"runs": runs, "machine": machine_info(), "rows": rows}


def print_table(report: dict) -> None:
    rows = report["rows"]
    base = rows["tesseract CLI -l eng"]
    table = [[name, r["language"], fmt(r["recall"]), fmt(r["seconds"], ".2f", " s"),
              fmt(ratio(r["recall"], base["recall"]), ".3f", "x"), fmt(ratio(r["seconds"], base["seconds"]), ".2f", "x")]
             for name, r in rows.items()]
    print(format_table(["reader", "model", "word recall", "time (median)", "recall vs eng", "time vs eng"], table))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parse_args(parser, argv)
    args.stamp = timestamp()
    report = None if args.replot else measure(args.runs)
    return publish("ocr-languages", args, report, print_table, lambda report: None)


if __name__ == "__main__":
    raise SystemExit(main())
