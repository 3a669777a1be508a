"""Client-supplied file names: decoding, sanitising, and Content-Disposition (RFC 6266)."""
from __future__ import annotations

import unicodedata
from urllib.parse import quote, unquote

MAX_NAME_BYTES = 255
FALLBACK_NAME = "file"


class InvalidFilename(ValueError):
    pass


def decode_header_filename(raw: str) -> str:
    """Decode ``x-filename``: percent-encoded UTF-8 (encodeURIComponent), or raw UTF-8.

    WSGI hands header bytes over as latin-1 code points; re-read them as UTF-8 first.
    """
    try:
        raw = raw.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        raise InvalidFilename("x-filename is not valid UTF-8") from None
    try:
        return unquote(raw, encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise InvalidFilename("x-filename's percent-encoding is not valid UTF-8") from None


def sanitize_filename(name: str) -> str:
    """A display name with no path parts, control, format (bidi override) or
    surrogate characters, no leading dots, at most 255 UTF-8 bytes."""
    name = unicodedata.normalize("NFC", name)
    name = name.replace("\\", "/").rsplit("/", 1)[-1]  # drop any directory part, either separator
    # Cc: controls (NUL, CR/LF: header injection); Cf: bidi overrides like U+202E that
    # disguise "exe.jpg"; Cs/Co/Cn: surrogates, private use, unassigned.
    name = "".join(ch for ch in name if unicodedata.category(ch) not in {"Cc", "Cf", "Cs", "Co", "Cn"})
    name = name.strip().lstrip(".").strip()
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        stem, dot, ext = name.rpartition(".")
        ext = dot + ext if dot and len(ext) <= 16 else ""
        stem = name[: len(name) - len(ext)] if ext else name
        while len((stem + ext).encode("utf-8")) > MAX_NAME_BYTES:
            stem = stem[:-1]
        name = stem.rstrip() + ext
    return name or FALLBACK_NAME


def content_disposition(name: str, *, attachment: bool) -> str:
    """``inline|attachment; filename="<ascii fallback>"; filename*=UTF-8''<percent-encoded>``."""
    safe = sanitize_filename(name)
    ascii_fallback = "".join(ch if 0x20 <= ord(ch) < 0x7F and ch not in '"\\%' else "_" for ch in safe)
    kind = "attachment" if attachment else "inline"
    return f"{kind}; filename=\"{ascii_fallback}\"; filename*=UTF-8''{quote(safe, safe='')}"
