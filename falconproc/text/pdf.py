"""PDF (pypdf): pages in order, large documents split over a process pool, a time
budget that keeps the pages read when it runs out, and the pages without a text
layer listed for OCR."""
from __future__ import annotations

import contextlib
import multiprocessing
import signal
import threading
import time
from pathlib import Path
from typing import Any

from falconproc.config import Settings
from falconproc.mediatypes import PDF
from falconproc.osutil import die_with_parent
from falconproc.text.clean import clean_text
from falconproc.text.extraction import Extraction, ExtractionError, clip_pages, iso_date, register_extractor


def open_pdf(path: Path):
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(str(path))
        if reader.is_encrypted:
            try:
                ok = reader.decrypt("")
            except Exception:  # noqa: BLE001 - unsupported algorithms raise various errors
                ok = 0
            if not ok:
                raise ExtractionError("encrypted", "the PDF is encrypted with a password")
        return reader
    except ExtractionError:
        raise
    except (PdfReadError, OSError, ValueError, KeyError, TypeError, RecursionError) as exc:
        raise ExtractionError("corrupt", f"the PDF cannot be parsed: {exc}") from None


@contextlib.contextmanager
def shared_fonts():
    """While extracting, parse each font dictionary once per document, not once per page.

    pypdf rebuilds a page's fonts (encoding, ToUnicode CMap, widths) on every page, a
    large share of the time where all pages share a handful of fonts (benchmarks/README.md).
    The Font built from one resolved font dictionary (pypdf hands back the same
    object for the same indirect reference) is deterministic, so it is reused.
    Without that pypdf API (another version) extraction simply runs uncached."""
    try:
        from pypdf.generic._font import Font
        build = Font.__dict__["from_font_resource"].__func__
    except (ImportError, KeyError, AttributeError):
        yield False
        return
    built: dict[int, tuple[Any, Any]] = {}

    def from_font_resource(cls, pdf_font_dict):
        hit = built.get(id(pdf_font_dict))
        if hit is not None and hit[0] is pdf_font_dict:  # the entry keeps its key object alive
            return hit[1]
        font = build(cls, pdf_font_dict)
        built[id(pdf_font_dict)] = (pdf_font_dict, font)
        return font

    Font.from_font_resource = classmethod(from_font_resource)
    try:
        yield True
    finally:
        Font.from_font_resource = classmethod(build)


class _OutOfTime(BaseException):
    """Raised by the budget's alarm inside pypdf; BaseException so that pypdf's own
    ``except Exception`` blocks cannot swallow it."""


@contextlib.contextmanager
def _alarm_at(deadline: float | None):
    """Interrupt the main thread's Python code at ``deadline`` (time.monotonic, the
    same clock in every process). pypdf is pure Python, so a page stuck in a slow loop
    is stopped mid-page. Elsewhere than the main thread, pages are checked between.

    The alarm repeats every 50 ms until it is cancelled: an exception raised while a gc
    callback or a ``__del__`` runs is swallowed by the interpreter, and one lost alarm
    must not let a page run on."""
    if deadline is None or threading.current_thread() is not threading.main_thread():
        yield
        return
    armed = [True]

    def expire(signum, frame):
        if armed[0]:
            raise _OutOfTime()

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, max(deadline - time.monotonic(), 0.001), 0.05)
    try:
        yield
    finally:
        while True:  # a repeat may land in here: finish the cleanup all the same
            try:
                armed[0] = False
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, previous)
                break
            except _OutOfTime:
                continue


def _texts_of(reader, indices: range, deadline: float | None = None) -> list[str]:
    """The pages' texts in order; fewer than asked when the deadline passed (the page
    being read then is dropped, not kept half-read)."""
    texts: list[str] = []
    try:
        with _alarm_at(deadline), shared_fonts():
            for index in indices:
                if deadline is not None and time.monotonic() >= deadline:
                    break
                try:
                    texts.append(reader.pages[index].extract_text() or "")
                except Exception:  # noqa: BLE001 - one bad page must not lose the others
                    texts.append("")
    except _OutOfTime:
        pass
    return texts


def _interleaved_texts(path: str, start: int, step: int, limit: int,
                       deadline: float | None = None) -> tuple[list[str], int]:
    """In a pool process: pages start, start+step, ... below limit, and the real page count."""
    reader = open_pdf(Path(path))
    real = _page_count(reader)
    return _texts_of(reader, range(start, min(limit, real), step), deadline), real


def _extraction_deadline(settings: Settings) -> float | None:
    """PDF_TIME_BUDGET, but never more than 3/4 of the text job's own timeout, which
    would otherwise kill the job and lose every page read so far."""
    if not settings.pdf_time_budget:
        return None
    job_timeout = settings.job_timeouts.get("text", 60.0)
    return time.monotonic() + min(settings.pdf_time_budget, 0.75 * job_timeout)


def _page_count(reader) -> int:
    try:
        return len(reader.pages)  # flattens the whole page tree
    except Exception as exc:  # noqa: BLE001 - cyclic or broken page trees
        raise ExtractionError("corrupt", f"the PDF's page tree cannot be read: {exc}") from None


def _declared_page_count(reader) -> int | None:
    """/Root/Pages/Count: free to read, but only a claim (checked by the workers)."""
    try:
        count = reader.trailer["/Root"]["/Pages"]["/Count"]
    except Exception:  # noqa: BLE001 - any broken structure: no claim
        return None
    return int(count) if isinstance(count, int) and 0 <= count <= 10_000_000 else None


def extract_pdf(path: Path, settings: Settings) -> Extraction:
    deadline = _extraction_deadline(settings)
    reader = open_pdf(path)
    declared = _declared_page_count(reader)
    processes = settings.text_processes
    if declared is not None and declared >= settings.pdf_parallel_pages and processes > 1:
        # pypdf is pure Python: pages go to every core, interleaved so that each process
        # gets its share of heavy and light pages. Each parses the file itself; the
        # declared count saves flattening the page tree here first.
        wanted = min(declared, settings.pdf_max_pages)
        with multiprocessing.get_context("fork").Pool(processes, initializer=die_with_parent) as pool:
            parts = pool.starmap(_interleaved_texts,
                                 [(str(path), i, processes, wanted, deadline) for i in range(processes)])
        page_count = parts[0][1]
        wanted = min(page_count, settings.pdf_max_pages)
        texts = []
        for i in range(wanted):  # the pages read before the deadline, up to the first one missing
            part = parts[i % processes][0]
            if i // processes >= len(part):
                break
            texts.append(part[i // processes])
    else:
        page_count = _page_count(reader)
        wanted = min(page_count, settings.pdf_max_pages)
        texts = _texts_of(reader, range(wanted), deadline)
    pages = [{"page": i + 1, "text": clean_text(t.replace("\x00", ""), join_hyphens=True)} for i, t in enumerate(texts)]
    without_text = [p["page"] for p in pages if not p["text"].strip()]
    pages, clipped = clip_pages(pages, settings.text_max_chars)
    info = {}
    try:
        meta = reader.metadata or {}
        info = {
            "title": meta.get("/Title"), "author": meta.get("/Author"), "subject": meta.get("/Subject"),
            "creator": meta.get("/Creator"), "producer": meta.get("/Producer"),
            "created": iso_date(getattr(meta, "creation_date", None)),
            "modified": iso_date(getattr(meta, "modification_date", None)),
        }
    except Exception:  # noqa: BLE001 - a broken info dictionary is not worth failing for
        pass
    properties = {k: str(v).replace("\x00", "") for k, v in info.items() if v}
    return Extraction("pdf", pages, properties=properties, page_count=page_count,
                      truncated=clipped or len(texts) < page_count, pages_without_text=without_text)


register_extractor((PDF,), extract_pdf)
