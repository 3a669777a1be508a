"""Text extraction from PDF (pypdf), DOCX (python-docx) and plain text.

Each extractor returns an ``Extraction``: pages of text in reading order plus
document properties. They run inside job processes (killed on timeout, capped
in memory); the checks here bound the work before parsers see hostile input.
"""
from __future__ import annotations

import codecs
import contextlib
import multiprocessing
import signal
import threading
import time
import zipfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from falconproc.config import Settings
from falconproc.errors import FalconprocError
from falconproc.osutil import die_with_parent

PDF_TYPE = "application/pdf"
DOCX_TYPE = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
PLAIN_TYPES = frozenset({"text/plain", "text/markdown", "text/csv", "application/json"})
TEXT_TYPES = frozenset({PDF_TYPE, DOCX_TYPE, *PLAIN_TYPES})
MAX_DOCX_MEMBERS = 2000


class ExtractionError(FalconprocError, ValueError):
    """A document that cannot be extracted; ``code`` is the state clients see."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


@dataclass
class Extraction:
    source: str  # pdf | docx | text | ocr
    pages: list[dict[str, Any]]  # [{"page": 1, "text": "..."}]
    properties: dict[str, Any] = field(default_factory=dict)
    page_count: int = 0
    truncated: bool = False
    pages_without_text: list[int] = field(default_factory=list)  # PDF pages for OCR
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return "\n\n".join(p["text"] for p in self.pages if p["text"])


def clip_pages(pages: list[dict[str, Any]], max_chars: int) -> tuple[list[dict[str, Any]], bool]:
    total = 0
    for index, page in enumerate(pages):
        total += len(page["text"])
        if total > max_chars:
            keep = len(page["text"]) - (total - max_chars)
            return pages[:index] + [{**page, "text": page["text"][:keep]}], True
    return pages, False


# -- plain text -------------------------------------------------------------------

_BOMS = ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
         (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))


def decode_text(data: bytes, final: bool = True) -> tuple[str, str]:
    """(text, encoding): BOM first, then strict UTF-8, then the legacy single-byte code page.

    ``final=False``: ``data`` is a prefix, a character cut at its end is dropped, not an error."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            decoder = codecs.getincrementaldecoder(encoding)(errors="replace")
            return decoder.decode(data, final=final), encoding.replace("-sig", "")
    try:
        return codecs.getincrementaldecoder("utf-8")().decode(data, final=final), "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("cp1252"), "cp1252"  # Windows' Western code page: the usual legacy file
    except UnicodeDecodeError:
        return data.decode("latin-1"), "latin-1"  # every byte maps: never fails


def extract_plain(path: Path, settings: Settings) -> Extraction:
    # Read at most what can be kept (4 bytes per char is the UTF-8/32 worst case).
    with open(path, "rb") as fh:
        data = fh.read(settings.text_max_chars * 4 + 4)
        more = bool(fh.read(1))
    text, encoding = decode_text(data, final=not more)
    text = text.replace("\x00", "")
    truncated = more or len(text) > settings.text_max_chars
    return Extraction("text", [{"page": 1, "text": text[: settings.text_max_chars]}], page_count=1,
                      truncated=truncated, extra={"encoding": encoding})


# -- DOCX -------------------------------------------------------------------------

def check_docx(path: Path, settings: Settings) -> None:
    """Refuse zip bombs and DTDs before python-docx (which reads members whole) opens it."""
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            if len(infos) > MAX_DOCX_MEMBERS:
                raise ExtractionError("refused", f"the document has {len(infos)} parts")
            total = 0
            for info in infos:
                total += info.file_size
                ratio = info.file_size / max(info.compress_size, 1)
                if info.file_size > 1024 * 1024 and ratio > settings.docx_max_ratio:
                    raise ExtractionError("refused", f"{info.filename} inflates {ratio:.0f}x (zip bomb)")
            if total > settings.docx_max_uncompressed_bytes:
                raise ExtractionError("refused", f"the document inflates to {total} bytes")
            for info in infos:
                if info.filename.endswith((".xml", ".rels")):
                    with zf.open(info) as member:
                        declares = _declares_dtd(member)
                    if declares:
                        raise ExtractionError("refused", f"{info.filename} declares a DTD or entities")
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise ExtractionError("corrupt", f"the document is not a readable DOCX: {exc}") from None


class _RootReached(Exception):
    pass


def _declares_dtd(member) -> bool:
    """True when the XML prolog (any encoding, however long) has a DOCTYPE or entity declaration.

    expat reads the prolog only up to the root element's start tag, resolving nothing."""
    import xml.parsers.expat

    parser = xml.parsers.expat.ParserCreate()
    found = []

    def doctype(*args):
        found.append(True)
        raise _RootReached

    def root(*args):
        raise _RootReached

    parser.StartDoctypeDeclHandler = doctype
    parser.EntityDeclHandler = doctype
    parser.StartElementHandler = root
    try:
        while chunk := member.read(65536):
            parser.Parse(chunk, False)
        parser.Parse(b"", True)
    except _RootReached:
        pass
    except xml.parsers.expat.ExpatError:
        return False  # not well-formed: python-docx reports it as corrupt
    return bool(found)


def extract_docx(path: Path, settings: Settings) -> Extraction:
    check_docx(path, settings)
    import docx
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    try:
        document = docx.Document(str(path))
    except Exception as exc:  # noqa: BLE001 - python-docx raises many types on broken files
        raise ExtractionError("corrupt", f"the document cannot be parsed: {exc}") from None

    def block_text(container) -> list[str]:
        lines: list[str] = []
        for block in container.iter_inner_content():
            if isinstance(block, Paragraph):
                lines.append(block.text)
            elif isinstance(block, Table):
                for row in block.rows:
                    cells: list[str] = []
                    previous = None
                    for cell in row.cells:
                        if cell._tc is previous:  # a horizontally merged cell repeats itself
                            continue
                        previous = cell._tc
                        cells.append("\n".join(t for t in block_text(cell) if t))
                    lines.append("\t".join(cells))
        return lines

    body = block_text(document)
    headers: list[str] = []
    footers: list[str] = []
    for section in document.sections:
        for part, sink in ((section.first_page_header, headers), (section.header, headers),
                           (section.even_page_header, headers), (section.first_page_footer, footers),
                           (section.footer, footers), (section.even_page_footer, footers)):
            if part is not None and not part.is_linked_to_previous:
                sink.extend(t for t in block_text(part) if t)
    props = document.core_properties
    properties = {
        "title": props.title or None, "author": props.author or None, "subject": props.subject or None,
        "keywords": props.keywords or None, "lastModifiedBy": props.last_modified_by or None,
        "created": _iso(props.created), "modified": _iso(props.modified),
    }
    text = "\n".join(body)
    pages = [{"page": 1, "text": text}]
    pages, truncated = clip_pages(pages, settings.text_max_chars)
    return Extraction("docx", pages, properties={k: v for k, v in properties.items() if v}, page_count=1,
                      truncated=truncated, extra={"headers": headers, "footers": footers})


def _iso(value: Any) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else None


# -- PDF --------------------------------------------------------------------------

def _open_pdf(path: Path):
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

    pypdf rebuilds a page's fonts (encoding, ToUnicode CMap, widths) on every page;
    in a manual where all pages share a handful of fonts that was ~15% of the time.
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
    reader = _open_pdf(Path(path))
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
        return len(reader.pages)  # flattens the page tree: ~1 ms per page
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
    reader = _open_pdf(path)
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
    pages = [{"page": i + 1, "text": t.replace("\x00", "")} for i, t in enumerate(texts)]
    without_text = [p["page"] for p in pages if not p["text"].strip()]
    pages, clipped = clip_pages(pages, settings.text_max_chars)
    info = {}
    try:
        meta = reader.metadata or {}
        info = {
            "title": meta.get("/Title"), "author": meta.get("/Author"), "subject": meta.get("/Subject"),
            "creator": meta.get("/Creator"), "producer": meta.get("/Producer"),
            "created": _iso(getattr(meta, "creation_date", None)),
            "modified": _iso(getattr(meta, "modification_date", None)),
        }
    except Exception:  # noqa: BLE001 - a broken info dictionary is not worth failing for
        pass
    properties = {k: str(v).replace("\x00", "") for k, v in info.items() if v}
    return Extraction("pdf", pages, properties=properties, page_count=page_count,
                      truncated=clipped or len(texts) < page_count, pages_without_text=without_text)


def extract(path: Path, mime_type: str, settings: Settings) -> Extraction:
    if mime_type == PDF_TYPE:
        return extract_pdf(path, settings)
    if mime_type == DOCX_TYPE:
        return extract_docx(path, settings)
    if mime_type in PLAIN_TYPES:
        return extract_plain(path, settings)
    raise ExtractionError("unsupported", f"{mime_type} has no text to extract")
