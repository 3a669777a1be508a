"""Text extraction from PDF (pypdf), DOCX (python-docx) and plain text.

Each extractor returns an ``Extraction``: pages of text in reading order plus
document properties. They run inside job processes (killed on timeout, capped
in memory); the checks here bound the work before parsers see hostile input.
"""
from __future__ import annotations

import codecs
import multiprocessing
import re
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
_DTD_RE = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)


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


def decode_text(data: bytes) -> tuple[str, str]:
    """(text, encoding): BOM first, then strict UTF-8, then the legacy single-byte code page."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return data.decode(encoding, errors="replace"), encoding.replace("-sig", "")
    try:
        return data.decode("utf-8"), "utf-8"
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
    text, encoding = decode_text(data)
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
                        # The declaration sits before the root element: the head is enough.
                        head = member.read(4096)
                    if _DTD_RE.search(head):
                        raise ExtractionError("refused", f"{info.filename} declares a DTD or entities")
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise ExtractionError("corrupt", f"the document is not a readable DOCX: {exc}") from None


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
                    for cell in row.cells:
                        text = "\n".join(t for t in block_text(cell) if t)
                        if not cells or cells[-1] != text:  # merged cells repeat
                            cells.append(text)
                    lines.append("\t".join(cells))
        return lines

    body = block_text(document)
    headers: list[str] = []
    footers: list[str] = []
    for section in document.sections:
        for part, sink in ((section.header, headers), (section.footer, footers)):
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


def _page_texts(path: str, first: int, last: int) -> list[str]:
    """Text of pages [first, last) — runs in a pool process for large PDFs."""
    reader = _open_pdf(Path(path))
    texts = []
    for index in range(first, last):
        try:
            texts.append(reader.pages[index].extract_text() or "")
        except Exception:  # noqa: BLE001 - one bad page must not lose the others
            texts.append("")
    return texts


def extract_pdf(path: Path, settings: Settings) -> Extraction:
    reader = _open_pdf(path)
    try:
        page_count = len(reader.pages)
    except Exception as exc:  # noqa: BLE001 - cyclic or broken page trees
        raise ExtractionError("corrupt", f"the PDF's page tree cannot be read: {exc}") from None
    wanted = min(page_count, settings.pdf_max_pages)
    processes = min(settings.text_processes, wanted // max(settings.pdf_parallel_pages // 2, 1) or 1)
    if wanted >= settings.pdf_parallel_pages and processes > 1:
        # pypdf is pure Python: split the pages across processes to use every core.
        bounds = [(wanted * i // processes, wanted * (i + 1) // processes) for i in range(processes)]
        with multiprocessing.get_context("fork").Pool(processes, initializer=die_with_parent) as pool:
            parts = pool.starmap(_page_texts, [(str(path), a, b) for a, b in bounds])
        texts = [t for part in parts for t in part]
    else:
        texts = _page_texts(str(path), 0, wanted)
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
    properties = {k: str(v) for k, v in info.items() if v}
    return Extraction("pdf", pages, properties=properties, page_count=page_count,
                      truncated=clipped or wanted < page_count, pages_without_text=without_text)


def extract(path: Path, mime_type: str, settings: Settings) -> Extraction:
    if mime_type == PDF_TYPE:
        return extract_pdf(path, settings)
    if mime_type == DOCX_TYPE:
        return extract_docx(path, settings)
    if mime_type in PLAIN_TYPES:
        return extract_plain(path, settings)
    raise ExtractionError("unsupported", f"{mime_type} has no text to extract")
