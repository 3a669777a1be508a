"""Samples of pypdf's security advisories (built in _docs.py, see PDF_ADVISORIES) against the PDF
extractor: each ends in seconds with a clear error or bounded partial text, in bounded memory.

The samples were checked against pypdf releases from before each fix, where they hang or grow
to gigabytes; with pypdf 6.1.3 (pyproject's lower bound when they were written) 13 of the 20
fail here. The service survives those too (job wall clock and memory cap), but loses the text.

Each extraction runs in a forked child, as in a job process: a hang is killed (failing the test)
instead of hanging the run, the child's own CPU time and peak RSS are measured (CPU time rather
than wall clock: shared CI machines run several suites at once), and an address-space limit
keeps a real blow-up from taking the machine with it."""
from __future__ import annotations

import multiprocessing
import resource
import time
import zlib

import pytest
from pypdf.filters import LZWDecode, RunLengthDecode

from falconproc.config import Settings
from falconproc.text.extraction import ExtractionError
from falconproc.text.pdf import extract_pdf
from tests.text import _docs
from tests.text._docs import INTACT, PDF_ADVISORIES

S = Settings()
# How much an extraction may grow its process. pypdf inflates up to 75 MB of a stream before
# giving up on it (~160 MiB peak); the job process is killed at JOB_MEMORY_MAX_BYTES (768 MiB).
PEAK_BOUND = 256 << 20
MAX_CHARS = 100_000  # what the samples may yield: a few short lines (the XObject DAG: 5000 dots)


def _proc_status(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(field)


def _extract_in_child(path: str, conn) -> None:
    limit = _proc_status("VmSize") + (2 << 30)  # room for 2 GiB more: a blow-up shows, then fails
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    base = _proc_status("VmRSS")
    start = time.process_time()
    try:
        result = extract_pdf(path, S)
        outcome = {"pages": [p["text"][:1000] for p in result.pages], "chars": len(result.text),
                   "without_text": result.pages_without_text, "page_count": result.page_count}
    except ExtractionError as exc:
        outcome = {"error": exc.code, "message": str(exc)}
    except BaseException as exc:  # noqa: BLE001 - reported to the test, which fails on it
        outcome = {"raised": f"{type(exc).__name__}: {exc}"[:500]}
    cpu = time.process_time() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base  # ru_maxrss: KiB on Linux
    conn.send((outcome, cpu, peak))


def extract_isolated(tmp_path, data: bytes, kill_after: float = 60.0) -> tuple[dict, float, int]:
    """(outcome, CPU seconds, peak RSS growth) of extract_pdf on ``data`` in a forked child."""
    path = tmp_path / "sample.pdf"
    path.write_bytes(data)
    receive, send = multiprocessing.Pipe(duplex=False)
    child = multiprocessing.get_context("fork").Process(target=_extract_in_child, args=(str(path), send))
    child.start()
    send.close()
    try:
        if not receive.poll(kill_after):
            pytest.fail(f"extraction still running after {kill_after} s (killed)")
        try:
            return receive.recv()
        except EOFError:
            child.join(5)
            pytest.fail(f"the extracting process died (exit code {child.exitcode})")
    finally:
        if child.is_alive():
            child.kill()
        child.join(5)


@pytest.mark.parametrize("sample", PDF_ADVISORIES, ids=lambda a: a.name)
def test_advisory_sample_ends_fast_and_small(tmp_path, sample):
    outcome, cpu, peak = extract_isolated(tmp_path, sample.build())
    assert "raised" not in outcome, outcome
    assert cpu < sample.seconds, (cpu, outcome)
    assert peak < PEAK_BOUND, (peak >> 20, outcome)
    if sample.outcome == "corrupt":
        assert outcome.get("error") == "corrupt" and outcome["message"], outcome
        return
    assert "error" not in outcome, outcome
    pages = outcome["pages"]
    assert outcome["chars"] < MAX_CHARS
    if len(pages) == 2:  # the intact page before the hostile one keeps its text
        assert pages[0].strip() == INTACT and outcome["page_count"] == 2, outcome
    if sample.outcome:
        assert sample.outcome in pages[-1], outcome
    else:
        assert pages[-1].strip() == "" and outcome["without_text"] == [len(pages)], outcome


def test_the_bomb_samples_are_real(tmp_path):
    """The bombs are what they claim: valid streams of the stated size, decoded by a plain decoder
    (small sizes here); so the bounded outcomes above come from limits, not from broken samples."""
    assert zlib.decompress(_docs.zlib_bomb(3)) == b" " * (3 << 20)  # zlib checks the Adler-32
    out = LZWDecode.decode(_docs.lzw_zeros(20))
    assert set(out) == {0} and len(out) == 4 * _docs.LZW_ROUND  # whole blocks of 4 rounds: >= 20 MiB
    runs = zlib.decompress(_docs.zlib_bomb(1, fill=b"\x81 "))
    assert RunLengthDecode.decode(runs + b"\x80") == b" " * (64 << 20)
    # At their default sizes (1 GiB, far beyond pypdf's 75 MB output limits) the files stay small.
    assert len(_docs.flate_bomb_pdf()) < 1_100_000 and len(_docs.lzw_bomb_pdf()) < 1_000_000
    assert len(_docs.runlength_bomb_pdf()) < 20_000
