"""Serving stored files: conditional requests, byte ranges, caching headers, sendfile.

The file object goes to ``resp.stream``; Falcon hands it to the server's
``wsgi.file_wrapper`` and gunicorn sends it with sendfile(2) from the current
offset for Content-Length bytes, so a range is a seek plus a length.
"""
from __future__ import annotations

import re
from typing import BinaryIO

import falcon

from falconproc.store.memo import SMALL_FILE_BYTES  # read and sent from memory; larger files with sendfile(2)

IMMUTABLE = "public, max-age=31536000, immutable"
_RANGE_RE = re.compile(r"bytes=(\d*)-(\d*)")


def etag_matches(header: str | None, etag: str) -> bool:
    """If-None-Match uses the weak comparison (RFC 9110 13.1.2)."""
    if not header:
        return False
    if header.strip() == "*":
        return True
    wanted = etag.removeprefix("W/")
    return any(tag.strip().removeprefix("W/") == wanted for tag in header.split(","))


def parse_range(header: str | None, size: int) -> tuple[int, int] | None | str:
    """A single byte range as (first, last), None to serve everything, or "unsatisfiable".

    Multiple or malformed ranges are ignored (a full 200 is always a valid answer).
    """
    if not header:
        return None
    match = _RANGE_RE.fullmatch(header.strip())
    if not match or (not match.group(1) and not match.group(2)):
        return None
    first_s, last_s = match.groups()
    if not first_s:  # suffix range: the last N bytes
        length = int(last_s)
        if length == 0 or size == 0:
            return "unsatisfiable"
        return max(0, size - length), size - 1
    first = int(first_s)
    last = int(last_s) if last_s else size - 1
    if first >= size or last < first:
        return "unsatisfiable"
    return first, min(last, size - 1)




def serve_file(req: falcon.Request, resp: falcon.Response, fileobj: BinaryIO, *, size: int, etag: str,
               content_type: str, disposition: str | None = None, extra_headers: dict[str, str] | None = None) -> None:
    """Answer GET/HEAD with the file, honouring If-None-Match, Range and If-Range."""
    resp.set_header("ETag", etag)
    resp.set_header("Cache-Control", IMMUTABLE)
    if etag_matches(req.get_header("If-None-Match"), etag):
        fileobj.close()
        resp.status = falcon.HTTP_304
        return

    resp.set_header("X-Content-Type-Options", "nosniff")
    resp.set_header("Accept-Ranges", "bytes")
    resp.content_type = content_type
    if disposition:
        resp.set_header("Content-Disposition", disposition)
    for name, value in (extra_headers or {}).items():
        resp.set_header(name, value)

    byte_range = parse_range(req.get_header("Range"), size)
    if byte_range is not None:
        if_range = req.get_header("If-Range")
        if if_range is not None and if_range.strip() != etag:
            byte_range = None  # the client's partial copy is of other bytes: send them all
    if byte_range == "unsatisfiable":
        fileobj.close()
        resp.status = falcon.HTTP_416
        resp.set_header("Content-Range", f"bytes */{size}")
        resp.content_type = "application/json"
        resp.media = {"error": "range_not_satisfiable", "message": f"the file has {size} bytes", "size": size}
        return

    if byte_range is None:
        first, length = 0, size
    else:
        first, last = byte_range
        length = last - first + 1
        resp.status = falcon.HTTP_206
        resp.set_header("Content-Range", f"bytes {first}-{last}/{size}")
    resp.content_length = length
    if req.method == "HEAD":
        fileobj.close()
        return
    # Always: a stream from an object store sends its (ranged) request here, before
    # the answer starts, so that its failure is still an error status.
    fileobj.seek(first)
    if length <= SMALL_FILE_BYTES:
        # A thumbnail is a few KB: one read and one write cost less than gunicorn's
        # sendfile path (its own fstat, offset and blocking bookkeeping in Python).
        with fileobj:
            resp.data = fileobj.read(length)
        return
    resp.stream = fileobj if first + length == size else BoundedFile(fileobj, length)


class BoundedFile:
    """A file limited to ``length`` bytes from its current offset.

    Keeps ``fileno()`` so gunicorn can still sendfile (it sends Content-Length bytes
    from the current offset); ``read()`` stops at the bound for servers that iterate.
    """

    def __init__(self, fileobj: BinaryIO, length: int):
        self._file = fileobj
        self._left = length

    def fileno(self) -> int:
        return self._file.fileno()

    def read(self, size: int = -1) -> bytes:
        if self._left <= 0:
            return b""
        size = self._left if size is None or size < 0 else min(size, self._left)
        data = self._file.read(size)
        self._left -= len(data)
        return data

    def close(self) -> None:
        self._file.close()
