"""DOCX (python-docx): body, tables, headers and footers, core properties. Zip bombs
and DTDs are refused before python-docx (which reads members whole) opens the file."""
from __future__ import annotations

import zipfile
from pathlib import Path

from falconproc.config import Settings
from falconproc.mediatypes import DOCX
from falconproc.text.clean import clean_text
from falconproc.text.extraction import Extraction, ExtractionError, clip_pages, iso_date, register_extractor

MAX_DOCX_MEMBERS = 2000


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
                lines.append(clean_text(block.text))
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
        "created": iso_date(props.created), "modified": iso_date(props.modified),
    }
    text = "\n".join(body)
    pages = [{"page": 1, "text": text}]
    pages, truncated = clip_pages(pages, settings.text_max_chars)
    return Extraction("docx", pages, properties={k: v for k, v in properties.items() if v}, page_count=1,
                      truncated=truncated, extra={"headers": headers, "footers": footers})


register_extractor((DOCX,), extract_docx)
