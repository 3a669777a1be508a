"""Document thumbnails: what page 1 costs, with the renderer the service uses and a peer.

PDFs (the renderable corpus PDFs in tests/data/docs), page 1 rendered to the preview's
size (800 px wide, height by the page's aspect ratio) and written as a PNG, side by side
in the same run:

* ours: pypdfium2 in this process, as the `document` job runs it (pdfium loaded once, the
  job process reused): ``documents.pdf.render_first_page`` + the PNG the service writes
  (compress level 1);
* peer: poppler's ``pdftoppm -f 1 -l 1 -scale-to-x 800 -scale-to-y -1 -png``, a process per
  document, as a service built on poppler-utils runs it (its start-up is part of its cost).

Wall time per page (median of --runs) and CPU per page (this process's CPU time for ours,
the child's rusage for pdftoppm), and the ratio peer / ours.

Office documents (the corpus DOCX): LibreOffice headless converts to PDF with a fresh
profile per conversion (as the service does, so that conversions never share state),
then page 1 is rendered as above: wall and CPU (soffice's rusage) per document.

    python benchmarks/bench_doc_thumbnails.py [--runs 5] [--docx-runs 2]
"""
from __future__ import annotations

import argparse
import io
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from falconproc.documents.office import convert_to_pdf  # noqa: E402
from falconproc.documents.pdf import render_first_page  # noqa: E402
from falconproc.documents.service import PNG_COMPRESS_LEVEL  # noqa: E402
from falconproc.mediatypes import DOCX  # noqa: E402

DOCS = ROOT / "tests" / "data" / "docs"
RESULTS = ROOT / "benchmarks" / "results"
WIDTH = 800
MAX_PIXELS = 4_000_000
MAX_SIDE = 30_000


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def ours(pdf: Path) -> tuple[float, float, tuple[int, int]]:
    wall, cpu = time.perf_counter(), time.process_time()
    page = render_first_page(pdf, [(WIDTH, 0)], MAX_PIXELS, MAX_SIDE)
    buffer = io.BytesIO()
    page.save(buffer, "PNG", compress_level=PNG_COMPRESS_LEVEL)
    return time.perf_counter() - wall, time.process_time() - cpu, page.size


def pdftoppm(pdf: Path, out: Path) -> tuple[float, float, tuple[int, int]]:
    wall, cpu = time.perf_counter(), children_cpu()
    subprocess.run(["pdftoppm", "-f", "1", "-l", "1", "-scale-to-x", str(WIDTH), "-scale-to-y", "-1", "-png",
                    "-singlefile", str(pdf), str(out)], check=True, capture_output=True)
    elapsed, used = time.perf_counter() - wall, children_cpu() - cpu
    from PIL import Image

    with Image.open(out.with_suffix(".png")) as im:
        return elapsed, used, im.size


def renderable_pdfs() -> list[Path]:
    found = []
    for pdf in sorted(DOCS.glob("*.pdf")):
        try:
            render_first_page(pdf, [(16, 16)], MAX_PIXELS, MAX_SIDE)
        except Exception:  # noqa: BLE001 - the encrypted corpus PDF: no thumbnail to compare
            continue
        found.append(pdf)
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--docx-runs", type=int, default=2)
    args = parser.parse_args(argv)
    if shutil.which("pdftoppm") is None or shutil.which("soffice") is None:
        print("needs pdftoppm (poppler-utils) and soffice (LibreOffice): scripts/bootstrap.sh --test", file=sys.stderr)
        return 2
    pdf_rows = []
    with tempfile.TemporaryDirectory() as work:
        out = Path(work) / "page"
        for pdf in renderable_pdfs():
            ours(pdf)  # warm: fonts and pdfium's caches, as in a job process that has run before
            mine = [ours(pdf) for _ in range(args.runs)]
            peer = [pdftoppm(pdf, out) for _ in range(args.runs)]
            row = {"document": pdf.name, "size": list(mine[0][2]), "pdftoppmSize": list(peer[0][2]),
                   "oursWall": statistics.median(m[0] for m in mine), "oursCpu": statistics.median(m[1] for m in mine),
                   "pdftoppmWall": statistics.median(p[0] for p in peer),
                   "pdftoppmCpu": statistics.median(p[1] for p in peer)}
            pdf_rows.append(row)
            print(f"{pdf.name}: ours {row['oursWall'] * 1000:.1f} ms, pdftoppm {row['pdftoppmWall'] * 1000:.1f} ms",
                  file=sys.stderr)
        docx_rows = []
        for docx in sorted(DOCS.glob("*.docx")):
            walls, cpus, converts = [], [], []
            for run in range(args.docx_runs):
                workdir = Path(work) / f"soffice-{docx.stem}-{run}"
                workdir.mkdir()
                wall, cpu, own = time.perf_counter(), children_cpu(), time.process_time()
                pdf = convert_to_pdf(docx, DOCX, workdir, "soffice", 120)
                converted = time.perf_counter() - wall
                render_first_page(pdf, [(WIDTH, 0)], MAX_PIXELS, MAX_SIDE)
                walls.append(time.perf_counter() - wall)
                cpus.append(children_cpu() - cpu + time.process_time() - own)
                converts.append(converted)
            docx_rows.append({"document": docx.name, "wall": statistics.median(walls), "cpu": statistics.median(cpus),
                              "conversion": statistics.median(converts)})
            print(f"{docx.name}: {docx_rows[-1]['wall']:.2f} s", file=sys.stderr)

    print(f"\n## PDF page 1 at {WIDTH} px wide, PNG: pypdfium2 in process vs pdftoppm ({args.runs} runs, median)\n")
    print("| document | size | ours wall | ours CPU | pdftoppm wall | pdftoppm CPU | pdftoppm / ours (wall) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in pdf_rows:
        print(f"| {r['document']} | {r['size'][0]}x{r['size'][1]} | {r['oursWall'] * 1000:.1f} ms | "
              f"{r['oursCpu'] * 1000:.1f} ms | {r['pdftoppmWall'] * 1000:.1f} ms | {r['pdftoppmCpu'] * 1000:.1f} ms | "
              f"{r['pdftoppmWall'] / r['oursWall']:.1f}x |")
    print(f"\n## DOCX to page-1 image through LibreOffice (fresh profile each, {args.docx_runs} runs, median)\n")
    print("| document | wall | of which conversion | CPU (soffice + render) |")
    print("| --- | --- | --- | --- |")
    for r in docx_rows:
        print(f"| {r['document']} | {r['wall']:.2f} s | {r['conversion']:.2f} s | {r['cpu']:.2f} s |")
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"doc-thumbnails-{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps({"runs": args.runs, "docxRuns": args.docx_runs, "pdf": pdf_rows, "docx": docx_rows,
                                "pdftoppm": subprocess.run(["pdftoppm", "-v"], capture_output=True, text=True).stderr
                                .splitlines()[0],
                                "soffice": subprocess.run(["soffice", "--version"], capture_output=True,
                                                          text=True).stdout.strip()}, indent=2) + "\n")
    print(f"\nresults: {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
