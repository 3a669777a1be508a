"""Text benchmark: PDF text extraction and OCR through the service, against their baselines.

Side by side in one run, on one machine, medians over ``--runs`` rounds (see
docs/performance.md and issue 5, section 4); the variants of a round run one after the
other, their order rotating from round to round so drift of the machine spreads evenly.

PDF text — the 311-page gnuplot manual (Debian package ``gnuplot-doc``,
``/usr/share/doc/gnuplot/gnuplot.pdf``, gunzipped to a temp dir if it is compressed; or
``--pdf FILE``):

* ours      ``POST /upload`` to falconproc (``python -m falconproc.cli serve``), then
            ``GET /cache/{hash}/text`` every 20 ms until 200: wall time from the first
            byte of the upload to the 200 (the text job, its page split across
            TEXT_PROCESSES pool processes, storing, state); the job's own duration
            (GET /jobs/{id}: createdAt -> updatedAt) is recorded beside it;
* in-process ``falconproc.text.pdf.extract_pdf`` with the service's settings in a fresh
            process (the same page pool, none of the service around it);
* pypdf     ``PdfReader`` + ``extract_text()`` of every page in one process (a fresh
            subprocess per round; pypdf already imported when the clock starts);
* pdftotext poppler's CLI, wall time of the process.

Each round uploads the PDF with a different trailing comment after ``%%EOF`` (a new
content hash, so the service extracts again; the baselines read the same bytes).

OCR — ``tests/data/ocr/outline-p2-200dpi.png`` (one 200 dpi page, 1654x2339):

* ours      upload, then ``GET /cache/{hash}/text`` until 200 (the low-priority ``ocr`` job;
            the image job that makes the presets of an image upload runs beside it, as it
            does in production);
* in-process ``falconproc.text.ocr.run_tesseract`` alone (preprocessing + pytesseract),
            to separate the OCR from the service's overhead;
* CLI       ``OMP_THREAD_LIMIT=1 tesseract FILE OUT`` (psm 3, like ours).

Word recall (bag of lowercase ``\\w+`` tokens with counts) against
``outline-p2.truth.txt`` for every OCR variant; for the PDF, the recall of our text and of
pypdf's against pdftotext's.

    python benchmarks/bench_text.py [--runs 3] [--pdf FILE] [--skip-ocr] [--skip-pdf]

Prints a Markdown table; writes benchmarks/results/text-<timestamp>.json and .png.
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import uuid
import zlib
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common  # noqa: E402
from _common import ROOT, GunicornService  # noqa: E402
from tests.support.corpus import DOCS, OCR_PNG, OCR_TRUTH  # noqa: E402  (_common put the repository on sys.path)

GNUPLOT_PDF = Path("/usr/share/doc/gnuplot/gnuplot.pdf")
FALLBACK_SOURCE = DOCS / "pdflatex-outline.pdf"

TARGET_PDF_SPEEDUP = 1.7  # ours at least 1.7x faster than single-process pypdf (2 cores)
TARGET_OCR_RATIO = 1.1  # ours within 1.1x of the tesseract CLI's time
POLL_INTERVAL = 0.02

LABELS = {
    "pdf.ours": "PDF ours: upload -> /text 200",
    "pdf.inproc": "PDF extract_pdf in-process (page pool)",
    "pdf.pypdf": "PDF pypdf, one process",
    "pdf.pdftotext": "PDF poppler pdftotext",
    "ocr.ours": "OCR ours: upload -> /text 200",
    "ocr.inproc": "OCR run_tesseract in-process",
    "ocr.cli": "OCR tesseract CLI (OMP_THREAD_LIMIT=1)",
}
COLORS = {"ours": "#2e9d57", "pypdf": "#ef8a3c", "pdftotext": "#9e9e9e", "inproc": "#4a7fc1", "cli": "#9e9e9e"}

PYPDF_SCRIPT = r"""
import json, sys, time
from pypdf import PdfReader
start = time.perf_counter()
reader = PdfReader(sys.argv[1])
texts = [page.extract_text() or "" for page in reader.pages]
elapsed = time.perf_counter() - start
with open(sys.argv[2], "w", encoding="utf-8") as fh:
    fh.write("\n\n".join(t.replace("\x00", "") for t in texts if t.replace("\x00", "")))
print(json.dumps({"seconds": elapsed, "pages": len(texts)}))
"""

EXTRACT_SCRIPT = r"""
import json, sys, time
sys.path.insert(0, sys.argv[3])
from pathlib import Path
from falconproc.config import Settings
from falconproc.text.pdf import extract_pdf
settings = Settings.from_env()
import pypdf  # imported before the clock starts, as in the warm job process
start = time.perf_counter()
result = extract_pdf(Path(sys.argv[1]), settings)
elapsed = time.perf_counter() - start
with open(sys.argv[2], "w", encoding="utf-8") as fh:
    fh.write(result.text)
print(json.dumps({"seconds": elapsed, "pages": result.page_count, "processes": settings.text_processes}))
"""

INPROC_SCRIPT = r"""
import json, sys, time
sys.path.insert(0, sys.argv[3])
from PIL import Image
from falconproc.config import Settings
from falconproc.text.ocr import run_tesseract
settings = Settings()
with Image.open(sys.argv[1]) as im:
    start = time.perf_counter()
    im.load()
    result = run_tesseract(im, settings)
    elapsed = time.perf_counter() - start
with open(sys.argv[2], "w", encoding="utf-8") as fh:
    fh.write(result.text)
print(json.dumps({"seconds": elapsed, "confidence": result.confidence, "words": result.words}))
"""


# --------------------------------------------------------------------------- helpers


def words(text: str) -> Counter:
    return Counter(re.findall(r"\w+", text.lower()))


def recall(text: str, truth: str) -> float:
    want, got = words(truth), words(text)
    return sum(min(n, got[w]) for w, n in want.items()) / max(sum(want.values()), 1)


def base_env() -> dict[str, str]:
    return common.clean_env("OMP_THREAD_LIMIT")


def falconproc_service(base: Path, extra_env: dict[str, str]) -> GunicornService:
    port = common.free_port()
    env = common.falconproc_env(base, port, WEB_WORKERS="2", STORAGE_RESERVE_BYTES="0")
    env.pop("OMP_THREAD_LIMIT", None)
    env.update(extra_env)
    svc = GunicornService("falconproc", [sys.executable, "-m", "falconproc.cli", "serve"], env, base, port,
                          workers=2)
    svc.env_extra = dict(extra_env)  # the in-process variants run with the same settings
    return svc


def find_pdf(explicit: str | None, tmp: Path) -> tuple[Path, str]:
    """(path, where it came from). Gunzips a compressed manual; builds a stand-in without one."""
    if explicit:
        return Path(explicit), "--pdf"
    for candidate in (GNUPLOT_PDF, GNUPLOT_PDF.with_suffix(".pdf.gz")):
        if candidate.exists():
            if candidate.suffix == ".gz":
                out = tmp / "gnuplot.pdf"
                with gzip.open(candidate, "rb") as src, open(out, "wb") as dst:
                    shutil.copyfileobj(src, dst)
                return out, f"{candidate} (gunzipped)"
            return candidate, str(candidate)
    # No gnuplot-doc: 78 copies of the 4-page pdflatex test PDF, 312 pages of real text.
    from pypdf import PdfReader, PdfWriter

    reader = PdfReader(str(FALLBACK_SOURCE))
    writer = PdfWriter()
    for _ in range(78):
        for page in reader.pages:
            writer.add_page(page)
    out = tmp / "stand-in-312-pages.pdf"
    with open(out, "wb") as fh:
        writer.write(fh)
    print(f"{GNUPLOT_PDF} not found (apt-get install gnuplot-doc): using a 312-page stand-in", file=sys.stderr)
    return out, f"stand-in: {FALLBACK_SOURCE.name} x78 (gnuplot-doc not installed)"


def unique_pdf(data: bytes, tag: str) -> bytes:
    return data + f"\n%bench {tag}\n".encode()


def unique_png(data: bytes, tag: str) -> bytes:
    """The same pixels with a tEXt chunk after IHDR (a new content hash)."""
    body = b"tEXt" + b"bench\x00" + tag.encode()
    chunk = struct.pack(">I", len(body) - 4) + body + struct.pack(">I", zlib.crc32(body))
    return data[:33] + chunk + data[33:]


def upload_and_wait(svc: GunicornService, data: bytes, name: str, deadline: float) -> tuple[float, dict[str, Any]]:
    import requests

    session = requests.Session()
    start = time.perf_counter()
    resp = session.post(svc.url + "/upload", data=data,
                        headers={"x-filename": name, "x-drive-id": "bench", "x-user-id": "bench"}, timeout=120)
    if resp.status_code != 201:
        raise RuntimeError(f"upload answered {resp.status_code}: {resp.text[:300]}")
    content_hash = resp.json()["contentHash"]
    url = f"{svc.url}/cache/{content_hash}/text"
    end = time.monotonic() + deadline
    while True:
        got = session.get(url, timeout=30)
        if got.status_code == 200:
            elapsed = time.perf_counter() - start
            break
        if got.status_code != 202:
            raise RuntimeError(f"GET /text answered {got.status_code}: {got.text[:300]}")
        if time.monotonic() > end:
            raise RuntimeError(f"no text after {deadline} s:\n{svc.log_tail()}")
        time.sleep(getattr(svc, "poll_interval", POLL_INTERVAL))
    doc = session.get(url + "?format=json", timeout=30).json()
    doc["text"] = got.content.decode("utf-8")
    doc["jobSeconds"] = None
    kind = "ocr" if name.endswith(".png") else "text"
    for job in resp.json().get("jobs", []):
        if job["type"] == kind:
            # The supervisor records the outcome a loop tick after the handler published the text.
            settle = time.monotonic() + 5
            while True:
                info = session.get(f"{svc.url}/jobs/{job['id']}", timeout=30).json()
                if info.get("status") in ("done", "dead") or time.monotonic() > settle:
                    break
                time.sleep(0.02)
            if info.get("status") == "done":
                doc["jobSeconds"] = _iso(info["updatedAt"]) - _iso(info["createdAt"])
    return elapsed, doc


def per_round_ratio(numerators: list[dict[str, Any]], denominators: list[dict[str, Any]]) -> float | None:
    """Median over rounds of numerator/denominator within each round: the two ran seconds
    apart, so this cancels most of the machine's drift (this VM's CPU speed moves by +-30%
    between minutes), where the ratio of the two medians does not."""
    ratios = [a["seconds"] / b["seconds"] for a, b in zip(numerators, denominators)
              if a["seconds"] and b["seconds"]]
    return round(statistics.median(ratios), 4) if ratios else None


def _iso(value: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def last_text(runs: list[dict[str, Any]]) -> str:
    """The text of the last successful run ("" when every run failed)."""
    for r in reversed(runs):
        if r["seconds"] is not None:
            return r["text"]
    return ""


def timed(argv: list[str], env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


# --------------------------------------------------------------------------- rounds


def pdf_variant(variant: str, path: Path, data: bytes, svc: GunicornService, tmp: Path) -> dict[str, Any]:
    if variant == "ours":
        seconds, doc = upload_and_wait(svc, data, "manual.pdf", deadline=600)
        return {"seconds": seconds, "text": doc["text"], "pages": doc["pageCount"], "source": doc["source"],
                "truncated": doc["truncated"], "jobSeconds": doc["jobSeconds"]}
    if variant == "inproc":
        out = tmp / "extract.txt"
        env = base_env()
        env.update(svc.env_extra)
        proc = subprocess.run([sys.executable, "-c", EXTRACT_SCRIPT, str(path), str(out), str(ROOT)], check=True,
                              capture_output=True, text=True, env=env)
        info = json.loads(proc.stdout.strip().splitlines()[-1])
        return {"seconds": info["seconds"], "text": out.read_text("utf-8"), "pages": info["pages"],
                "processes": info["processes"]}
    if variant == "pypdf":
        out = tmp / "pypdf.txt"
        proc = subprocess.run([sys.executable, "-c", PYPDF_SCRIPT, str(path), str(out)], check=True,
                              capture_output=True, text=True)
        info = json.loads(proc.stdout.strip().splitlines()[-1])
        return {"seconds": info["seconds"], "text": out.read_text("utf-8"), "pages": info["pages"]}
    out = tmp / "pdftotext.txt"
    seconds = timed(["pdftotext", "-enc", "UTF-8", str(path), str(out)])
    return {"seconds": seconds, "text": out.read_text("utf-8", errors="replace")}


def ocr_variant(variant: str, path: Path, data: bytes, svc: GunicornService, tmp: Path) -> dict[str, Any]:
    if variant == "ours":
        seconds, doc = upload_and_wait(svc, data, "page.png", deadline=300)
        return {"seconds": seconds, "text": doc["text"], "confidence": doc["state"].get("confidence"),
                "jobSeconds": doc["jobSeconds"]}
    if variant == "inproc":
        out = tmp / "inproc.txt"
        env = base_env()
        proc = subprocess.run([sys.executable, "-c", INPROC_SCRIPT, str(path), str(out), str(ROOT)], check=True,
                              capture_output=True, text=True, env=env)
        info = json.loads(proc.stdout.strip().splitlines()[-1])
        return {"seconds": info["seconds"], "text": out.read_text("utf-8"), "confidence": info["confidence"]}
    env = base_env()
    env["OMP_THREAD_LIMIT"] = "1"
    stem = tmp / "cli"
    seconds = timed(["tesseract", str(path), str(stem)], env=env)
    return {"seconds": seconds, "text": (tmp / "cli.txt").read_text("utf-8")}


def run_rounds(kind: str, variants: tuple[str, ...], source: bytes, runs: int, svc: GunicornService, tmp: Path,
               make_unique, suffix: str, run_one) -> dict[str, list[dict[str, Any]]]:
    raw: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    # Warm-up: the service's job process imports pypdf/pytesseract once; not measured.
    warm = make_unique(source, f"warm-up {uuid.uuid4().hex}")
    warm_path = tmp / f"warm{suffix}"
    warm_path.write_bytes(warm)
    for variant in variants:
        try:
            run_one(variant, warm_path, warm, svc, tmp)
        except (RuntimeError, subprocess.CalledProcessError) as exc:
            print(f"  {kind} warm-up {variant} failed: {exc}", file=sys.stderr)
    for i in range(runs):
        data = make_unique(source, f"run {i} {uuid.uuid4().hex}")
        path = tmp / f"round{i}{suffix}"
        path.write_bytes(data)
        order = variants[i % len(variants):] + variants[: i % len(variants)]
        for variant in order:
            try:
                result = run_one(variant, path, data, svc, tmp)
            except (RuntimeError, subprocess.CalledProcessError) as exc:
                # A failure is a result too: recorded, shown in the table, never a crash.
                result = {"seconds": None, "text": "", "error": str(exc)[:500]}
            result["round"] = i
            raw[variant].append(result)
            shown = "FAILED: " + result["error"][:120] if result["seconds"] is None else f"{result['seconds']:.3f} s"
            print(f"  {kind} round {i + 1}/{runs} {variant:9s} {shown}", file=sys.stderr)
    return raw


# --------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="measured rounds (median over them; default 3)")
    parser.add_argument("--pdf", help="PDF to use instead of the gnuplot manual")
    parser.add_argument("--skip-pdf", action="store_true")
    parser.add_argument("--skip-ocr", action="store_true")
    parser.add_argument("--tmp-dir", default=None, help="where stores and temp files go (default $TMPDIR)")
    parser.add_argument("--service-env", action="append", default=[], metavar="NAME=VALUE",
                        help="extra environment for the service (repeatable)")
    parser.add_argument("--poll-interval", type=float, default=POLL_INTERVAL,
                        help=f"seconds between GET /text polls (default {POLL_INTERVAL})")
    parser.add_argument("--note", default="", help="free text stored in the JSON (what this run is about)")
    args = parser.parse_args()
    extra_env = common.service_env(parser, args.service_env)
    for tool in ("pdftotext", "tesseract"):
        if shutil.which(tool) is None:
            parser.error(f"{tool} is not on PATH (apt-get install poppler-utils tesseract-ocr)")

    stamp = common.timestamp()
    tmp = Path(tempfile.mkdtemp(prefix="bench-text-", dir=args.tmp_dir))
    results: dict[str, Any] = {
        "benchmark": "text", "timestamp": stamp,
        "machine": common.machine_info({"tesseract": ["tesseract", "--version"],
                                        "pdftotext": ["pdftotext", "-v"]}),
        "config": {"runs": args.runs, "serviceEnv": extra_env, "pollInterval": args.poll_interval, "root": str(ROOT),
                   "note": args.note},
        "raw": {}, "summary": {}, "ratios": {}, "targets": {}, "notes": [],
    }
    try:
        results["machine"]["loadavgStart"] = os.getloadavg()
    except OSError:
        pass
    results["machine"]["packages"].update({n: common._module_version(n) for n in ("pypdf", "pytesseract", "Pillow")})
    svc = falconproc_service(tmp / "svc", extra_env)
    svc.poll_interval = args.poll_interval
    rows: list[list[str]] = []
    panels: list[dict[str, Any]] = []
    try:
        svc.start()
        if not args.skip_pdf:
            pdf_path, origin = find_pdf(args.pdf, tmp)
            from pypdf import PdfReader

            pages = len(PdfReader(str(pdf_path)).pages)
            results["config"]["pdf"] = {"path": str(pdf_path), "origin": origin, "pages": pages,
                                        "bytes": pdf_path.stat().st_size}
            print(f"PDF: {origin}, {pages} pages", file=sys.stderr)
            raw = run_rounds("pdf", ("ours", "inproc", "pypdf", "pdftotext"), pdf_path.read_bytes(), args.runs, svc, tmp,
                             unique_pdf, ".pdf", pdf_variant)
            reference = last_text(raw["pdftotext"])
            for variant, runs in raw.items():
                summary = common.summarize([r["seconds"] for r in runs if r["seconds"] is not None])
                summary["failures"] = [r["error"] for r in runs if r["seconds"] is None]
                summary["chars"] = len(last_text(runs))
                jobs = [r["jobSeconds"] for r in runs if r.get("jobSeconds") is not None]
                summary["jobMedian"] = common.summarize(jobs)["median"] if jobs else None
                summary["recallVsPdftotext"] = round(recall(last_text(runs), reference), 4) if reference else None
                results["summary"][f"pdf.{variant}"] = summary
                results["raw"][f"pdf.{variant}"] = [{k: v for k, v in r.items() if k != "text"} for r in runs]
            same = bool(last_text(raw["ours"])) and last_text(raw["ours"]) == last_text(raw["pypdf"])
            results["summary"]["pdf.ours"]["identicalToPypdf"] = same
            med = {v: results["summary"][f"pdf.{v}"]["median"] for v in raw}
            speedup = common.ratio(med["pypdf"], med["ours"])
            results["ratios"]["pdf.pypdfOverOurs"] = speedup
            per_round = per_round_ratio(raw["pypdf"], raw["ours"])
            results["ratios"]["pdf.pypdfOverOursPerRound"] = per_round
            results["ratios"]["pdf.oursOverPdftotext"] = common.ratio(med["ours"], med["pdftotext"])
            results["targets"]["pdf"] = {"goal": f"ours >= {TARGET_PDF_SPEEDUP}x faster than one-process pypdf",
                                         "speedup": speedup, "met": bool(speedup and speedup >= TARGET_PDF_SPEEDUP)}
            for variant in raw:
                s = results["summary"][f"pdf.{variant}"]
                vs = {"ours": f"{common.fmt(speedup, '.2f')}x faster than pypdf "
                              f"(per round {common.fmt(per_round, '.2f')}x; job {common.fmt(s['jobMedian'], '.2f')} s)",
                      "inproc": f"{common.fmt(common.ratio(med['pypdf'], med['inproc']), '.2f')}x faster than pypdf",
                      "pypdf": "1.00 (baseline)",
                      "pdftotext": f"ours = {common.fmt(results['ratios']['pdf.oursOverPdftotext'], '.2f')}x this"}[variant]
                if s["failures"]:
                    vs = f"{len(s['failures'])}/{len(raw[variant])} runs FAILED: {s['failures'][0][:90]}"
                rows.append([LABELS[f"pdf.{variant}"], common.fmt(s["median"]), common.fmt(s["min"]),
                             common.fmt(s["max"]), vs, f"{common.fmt(s['recallVsPdftotext'])} vs pdftotext"])
            panels.append({"title": f"PDF text, {pages} pages ({Path(origin.split()[0]).name})",
                           "xlabel": "seconds (median, min..max)",
                           "labels": [LABELS[f"pdf.{v}"] for v in raw],
                           "values": [med[v] for v in raw],
                           "low": [results["summary"][f"pdf.{v}"]["min"] for v in raw],
                           "high": [results["summary"][f"pdf.{v}"]["max"] for v in raw],
                           "colors": [COLORS[v] for v in raw]})
        if not args.skip_ocr:
            truth = OCR_TRUTH.read_text("utf-8")
            raw = run_rounds("ocr", ("ours", "inproc", "cli"), OCR_PNG.read_bytes(), args.runs, svc, tmp,
                             unique_png, ".png", ocr_variant)
            for variant, runs in raw.items():
                summary = common.summarize([r["seconds"] for r in runs if r["seconds"] is not None])
                summary["failures"] = [r["error"] for r in runs if r["seconds"] is None]
                recalls = [recall(r["text"], truth) for r in runs]
                summary["recall"] = round(min(recalls), 4)
                jobs = [r["jobSeconds"] for r in runs if r.get("jobSeconds") is not None]
                summary["jobMedian"] = common.summarize(jobs)["median"] if jobs else None
                summary["confidence"] = runs[-1].get("confidence")
                results["summary"][f"ocr.{variant}"] = summary
                results["raw"][f"ocr.{variant}"] = [{**{k: v for k, v in r.items() if k != "text"},
                                                     "recall": round(rc, 4)} for r, rc in zip(runs, recalls)]
            med = {v: results["summary"][f"ocr.{v}"]["median"] for v in raw}
            ocr_ratio = common.ratio(med["ours"], med["cli"])
            results["ratios"]["ocr.oursOverCli"] = ocr_ratio
            ocr_per_round = per_round_ratio(raw["ours"], raw["cli"])
            results["ratios"]["ocr.oursOverCliPerRound"] = ocr_per_round
            results["ratios"]["ocr.inprocOverCli"] = common.ratio(med["inproc"], med["cli"])
            results["ratios"]["ocr.serviceOverheadSeconds"] = (
                None if med["ours"] is None or med["inproc"] is None else med["ours"] - med["inproc"])
            rec = {v: results["summary"][f"ocr.{v}"]["recall"] for v in raw}
            results["targets"]["ocr"] = {
                "goal": f"ours within {TARGET_OCR_RATIO}x of the CLI's time, recall >= the CLI's",
                "ratio": ocr_ratio, "recall": rec["ours"], "cliRecall": rec["cli"],
                "met": bool(ocr_ratio and ocr_ratio <= TARGET_OCR_RATIO and rec["ours"] >= rec["cli"])}
            results["notes"].append("an image upload also enqueues the image (presets) job, which runs beside "
                                    "the OCR job in the service variant, as in production")
            for variant in raw:
                s = results["summary"][f"ocr.{variant}"]
                vs = {"ours": f"{common.fmt(ocr_ratio, '.2f')}x the CLI (per round "
                              f"{common.fmt(ocr_per_round, '.2f')}x; job {common.fmt(s['jobMedian'], '.2f')} s)",
                      "inproc": f"{common.fmt(results['ratios']['ocr.inprocOverCli'], '.2f')}x the CLI",
                      "cli": "1.00 (baseline)"}[variant]
                if s["failures"]:
                    vs = f"{len(s['failures'])}/{len(raw[variant])} runs FAILED: {s['failures'][0][:90]}"
                rows.append([LABELS[f"ocr.{variant}"], common.fmt(s["median"]), common.fmt(s["min"]),
                             common.fmt(s["max"]), vs, f"{s['recall']:.3f} vs truth"])
            panels.append({"title": "OCR, one 200 dpi page", "xlabel": "seconds (median, min..max)",
                           "labels": [LABELS[f"ocr.{v}"] for v in raw], "values": [med[v] for v in raw],
                           "low": [results["summary"][f"ocr.{v}"]["min"] for v in raw],
                           "high": [results["summary"][f"ocr.{v}"]["max"] for v in raw],
                           "colors": [COLORS[v] for v in raw]})
    finally:
        svc.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    try:
        results["machine"]["loadavgEnd"] = os.getloadavg()
    except OSError:
        pass

    table = common.format_table(["work", "median s", "min s", "max s", "ratio", "word recall"], rows)
    print(table)
    for name, target in results["targets"].items():
        print(f"{name}: {target['goal']}: {'met' if target['met'] else 'NOT met'}")
    if results["ratios"].get("ocr.serviceOverheadSeconds") is not None:
        print(f"OCR service overhead (ours - in-process run_tesseract): "
              f"{results['ratios']['ocr.serviceOverheadSeconds']:.3f} s")
    results["table"] = table
    path = common.write_json("text", stamp, results)
    print(f"wrote {path.relative_to(ROOT)}")
    chart = common.bar_chart("text", stamp, f"Text extraction and OCR ({stamp}, {os.cpu_count()} cores)", panels) \
        if panels else None
    if chart:
        print(f"wrote {chart.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
