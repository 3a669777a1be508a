"""Plain text (text/plain, Markdown, CSV, JSON): decoded from its BOM, strict UTF-8, or
the legacy single-byte code page, read no further than the text that can be kept."""
from __future__ import annotations

import codecs
from pathlib import Path

from falconproc.config import Settings
from falconproc.mediatypes import PLAIN_TEXT_TYPES
from falconproc.text.extraction import Extraction, register_extractor

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


register_extractor(PLAIN_TEXT_TYPES, extract_plain)
