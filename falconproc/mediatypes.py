"""Every MIME type set the service acts on, owned here once.

The native probe names a type from the bytes (never from the name or the
Content-Type); these sets say what happens to it: which uploads are accepted, which
are served as sandboxed attachments, which Pillow may decode, which have text. A
capability package (images/, text/, ...) takes the set it handles from here and
registers its handler for it; it does not keep a list of its own.
"""
from __future__ import annotations

JPEG, PNG, GIF, WEBP, BMP, TIFF = ("image/jpeg", "image/png", "image/gif", "image/webp", "image/bmp",
                                   "image/tiff")
HEIC, AVIF = "image/heic", "image/avif"
PDF = "application/pdf"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
PPTX = "application/vnd.openxmlformats-officedocument.presentationml.presentation"
ODT = "application/vnd.oasis.opendocument.text"
ODP = "application/vnd.oasis.opendocument.presentation"
ZIP = "application/zip"
MP4, QUICKTIME, M4V, WEBM, MATROSKA, AVI = ("video/mp4", "video/quicktime", "video/x-m4v", "video/webm",
                                            "video/x-matroska", "video/x-msvideo")
THREE_GPP, THREE_GPP2 = "video/3gpp", "video/3gpp2"
# What the sniffer names bytes it does not recognise; refused unless ALLOWED_TYPES lists it.
OCTET_STREAM = "application/octet-stream"

# Images the probe recognises (and reads dimensions of, for the bomb limits).
IMAGE_TYPES = (JPEG, PNG, GIF, WEBP, BMP, TIFF, HEIC, AVIF)
# Images the preset pipeline and OCR decode (Pillow's decoders, pillow-heif's for HEIC).
RENDERABLE_IMAGE_TYPES = frozenset({JPEG, PNG, GIF, WEBP, BMP, TIFF, HEIC, AVIF})
DOCUMENT_TYPES = (PDF, DOCX, XLSX, PPTX, ODT, ODP, ZIP)
# Videos the probe recognises; the video job (ffmpeg) makes their poster frame and metadata.
VIDEO_TYPES = (MP4, QUICKTIME, M4V, WEBM, MATROSKA, AVI, THREE_GPP, THREE_GPP2)
# Documents whose page 1 becomes the thumbnail and preview presets: PDFs rendered as they
# are, the office formats after LibreOffice converted them to PDF.
OFFICE_TYPES = frozenset({DOCX, ODT, PPTX, ODP})
PAGED_DOCUMENT_TYPES = frozenset({PDF}) | OFFICE_TYPES
PLAIN_TEXT_TYPES = ("text/plain", "text/markdown", "text/csv", "application/json")
# Served only as attachments under a sandboxing CSP: a browser must never run them.
MARKUP_TYPES = ("image/svg+xml", "text/html", "application/xml", "text/javascript")
# Refused by default: programs have no place in a chat workspace's file store.
EXECUTABLE_TYPES = ("application/x-executable", "application/x-msdownload", "application/x-mach-binary",
                    "text/x-shellscript")
# A ZIP whose central directory names one of these main parts is that OOXML type.
OOXML_MAIN_PARTS = {"word/document.xml": DOCX, "xl/workbook.xml": XLSX, "ppt/presentation.xml": PPTX}
# A ZIP whose `mimetype` entry holds one of these is that OpenDocument type (ODF 1.2, 3.3).
ODF_MIMETYPES = {ODT: ODT, ODP: ODP}

DEFAULT_ALLOWED = IMAGE_TYPES + VIDEO_TYPES + DOCUMENT_TYPES + PLAIN_TEXT_TYPES + MARKUP_TYPES


def allowed_types(configured: str | None) -> tuple[str, ...]:
    """ALLOWED_TYPES (validated by config.py) or the default list."""
    if not configured:
        return DEFAULT_ALLOWED
    return tuple(t.strip().lower() for t in configured.split(",") if t.strip())


def is_markup(mime_type: str) -> bool:
    return mime_type in MARKUP_TYPES


def is_renderable_image(mime_type: str | None) -> bool:
    return mime_type in RENDERABLE_IMAGE_TYPES


def is_video(mime_type: str | None) -> bool:
    return mime_type in VIDEO_TYPES


def has_page_thumbnail(mime_type: str | None) -> bool:
    return mime_type in PAGED_DOCUMENT_TYPES
