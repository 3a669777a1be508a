"""Which sniffed types the service accepts, serves as markup, or can refine.

The native probe names the type from magic bytes; a ZIP is refined here to
DOCX/XLSX/PPTX by reading its central directory once it is stored.
"""
from __future__ import annotations

import struct
import zipfile
from pathlib import Path

IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp", "image/bmp", "image/tiff",
               "image/heic", "image/avif")
DOCUMENT_TYPES = (
    "application/pdf",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    "application/zip",
)
TEXT_TYPES = ("text/plain", "text/markdown", "text/csv", "application/json")
# Served only as attachments under a sandboxing CSP: a browser must never run them.
MARKUP_TYPES = ("image/svg+xml", "text/html", "application/xml", "text/javascript")
# Refused by default: programs have no place in a chat workspace's file store.
EXECUTABLE_TYPES = ("application/x-executable", "application/x-msdownload", "application/x-mach-binary",
                    "text/x-shellscript")

# What the sniffer names bytes it does not recognise; refused unless ALLOWED_TYPES lists it.
OCTET_STREAM = "application/octet-stream"

DEFAULT_ALLOWED = IMAGE_TYPES + DOCUMENT_TYPES + TEXT_TYPES + MARKUP_TYPES

OOXML_MAIN_PARTS = {
    "word/document.xml": DOCUMENT_TYPES[1],
    "xl/workbook.xml": DOCUMENT_TYPES[2],
    "ppt/presentation.xml": DOCUMENT_TYPES[3],
}
# A central directory bigger than this is not read (zipfile would hold it all in memory).
MAX_ZIP_ENTRIES = 10_000
_EOCD = struct.Struct("<4s4H2LH")


def allowed_types(configured: str | None) -> tuple[str, ...]:
    if not configured:
        return DEFAULT_ALLOWED
    return tuple(t.strip().lower() for t in configured.split(",") if t.strip())


def is_markup(mime_type: str) -> bool:
    return mime_type in MARKUP_TYPES


def refine_zip(path: Path) -> str:
    """application/zip, or the OOXML type its central directory names."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            tail_len = min(size, 65535 + _EOCD.size)
            fh.seek(size - tail_len)
            tail = fh.read(tail_len)
        at = tail.rfind(b"PK\x05\x06")
        if at < 0 or len(tail) - at < _EOCD.size:
            return "application/zip"
        entries = _EOCD.unpack_from(tail, at)[4]
        if entries > MAX_ZIP_ENTRIES:
            return "application/zip"
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
    except (OSError, zipfile.BadZipFile, struct.error, ValueError, NotImplementedError):
        return "application/zip"
    if "[Content_Types].xml" in names:
        for part, mime in OOXML_MAIN_PARTS.items():
            if part in names:
                return mime
    return "application/zip"
