"""Type refinement after the native probe: a ZIP is refined to DOCX/XLSX/PPTX by
reading its central directory, and to ODT/ODP by its `mimetype` entry (the probe names
the rest from magic bytes)."""
from __future__ import annotations

import struct
import zipfile
import zlib
from typing import BinaryIO

from falconproc.mediatypes import ODF_MIMETYPES, OOXML_MAIN_PARTS, ZIP

# An ODF `mimetype` entry is a short media type; a longer one is not read.
MAX_ODF_MIMETYPE_BYTES = 100
# A central directory bigger than this is not read (zipfile would hold it all in memory).
MAX_ZIP_ENTRIES = 10_000
_EOCD = struct.Struct("<4s4H2LH")


def refine_zip(fh: BinaryIO) -> str:
    """application/zip, or the OOXML type its central directory names. ``fh`` is a
    seekable binary file of the whole upload (left open for the caller to close)."""
    try:
        fh.seek(0, 2)
        size = fh.tell()
        tail_len = min(size, 65535 + _EOCD.size)
        fh.seek(size - tail_len)
        tail = fh.read(tail_len)
        at = tail.rfind(b"PK\x05\x06")
        if at < 0 or len(tail) - at < _EOCD.size:
            return ZIP
        entries = _EOCD.unpack_from(tail, at)[4]
        if entries > MAX_ZIP_ENTRIES:
            return ZIP
        fh.seek(0)
        with zipfile.ZipFile(fh) as zf:
            names = set(zf.namelist())
            odf = _odf_mimetype(zf) if "mimetype" in names else None
    except (OSError, zipfile.BadZipFile, struct.error, ValueError, NotImplementedError, RuntimeError, zlib.error):
        return ZIP
    if "[Content_Types].xml" in names:
        for part, mime in OOXML_MAIN_PARTS.items():
            if part in names:
                return mime
    return ODF_MIMETYPES.get(odf or "", ZIP)


def _odf_mimetype(zf: zipfile.ZipFile) -> str | None:
    """The `mimetype` entry's text, when it is small (the first entry, stored, in ODF)."""
    info = zf.getinfo("mimetype")
    if info.file_size > MAX_ODF_MIMETYPE_BYTES:
        return None
    with zf.open(info) as entry:
        return entry.read(MAX_ODF_MIMETYPE_BYTES).decode("ascii", "replace").strip()
