"""multipart/form-data bodies (RFC 7578), streamed: the one file part's bytes as a stream.

``FilePartReader`` sits between the socket and the ingest loop. It skips text fields,
stops at the headers of the file part (so its filename is known before a byte of content
is stored), then hands out that part's content in blocks: the boundary is found with
``bytes.find`` over each block (plus the few bytes kept from the previous one when they
could start a delimiter), so the cost is a C scan per block, usually without a copy, and
nothing but a block and that tail is ever held.

At the end of the file part the rest of the body is read before the stream says "end":
a second file part, a truncated body or a missing close delimiter raises there, inside
the ingest loop, so the upload is aborted and nothing is stored.

Why our own: streaming-form-data (Cython) delivers parts only to targets registered by
field name in advance; a browser's or Node's ``FormData`` may name the file field
anything, and we must refuse two file parts whatever their names.
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from typing import BinaryIO
from urllib.parse import unquote

MAX_PART_HEADER_BYTES = 16 * 1024  # all header lines of one part
MAX_FIELD_BYTES = 1024 * 1024  # text fields are ignored, but not read without end
ENVELOPE_ALLOWANCE = MAX_FIELD_BYTES + 64 * 1024  # envelope bytes allowed past MAX_UPLOAD_BYTES

_BOUNDARY_RE = re.compile(r"^[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]$")


class MultipartError(ValueError):
    """The body is not a form with exactly one file part; the message says what to send."""


def boundary_of(content_type: str) -> str:
    """The boundary parameter of a multipart/form-data Content-Type (RFC 2046 5.1.1)."""
    params = parse_params(content_type.partition(";")[2])
    boundary = params.get("boundary")
    if not boundary or not _BOUNDARY_RE.match(boundary):
        raise MultipartError("multipart/form-data needs a boundary parameter of 1 to 70 characters")
    return boundary


def is_form_data(content_type: str | None) -> bool:
    return bool(content_type) and content_type.partition(";")[0].strip().lower() == "multipart/form-data"


def parse_params(text: str) -> dict[str, str]:
    """``; a=b; c="d \\" e"`` -> {a: b, c: 'd " e'}; names lower-cased, the first of each kept."""
    params: dict[str, str] = {}
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i] in "; \t":
            i += 1
        start = i
        while i < n and text[i] not in "=;":
            i += 1
        name = text[start:i].strip().lower()
        if i >= n or text[i] == ";":
            continue
        i += 1
        while i < n and text[i] in " \t":
            i += 1
        if i < n and text[i] == '"':
            i += 1
            chars = []
            while i < n and text[i] != '"':
                if text[i] == "\\" and i + 1 < n:
                    i += 1
                chars.append(text[i])
                i += 1
            i += 1
            value = "".join(chars)
        else:
            start = i
            while i < n and text[i] != ";":
                i += 1
            value = text[start:i].strip()
        if name and name not in params:
            params[name] = value
    return params


def part_filename(disposition: str) -> str | None:
    """The filename of a part's Content-Disposition, or None for a text field.

    ``filename*`` (RFC 5987 ``UTF-8''percent-encoded``) wins over ``filename``; a plain
    ``filename`` is the raw UTF-8 a browser sends, with ``"``, CR and LF escaped as %22,
    %0D, %0A (the HTML standard's form encoding), which are undone."""
    params = parse_params(disposition.partition(";")[2])
    extended = params.get("filename*")
    if extended is not None:
        charset, _, rest = extended.partition("'")
        _, _, encoded = rest.partition("'")
        try:
            return unquote(encoded, encoding=charset or "utf-8", errors="strict")
        except (LookupError, UnicodeDecodeError):
            raise MultipartError("the file part's filename* is not valid percent-encoded UTF-8") from None
    name = params.get("filename")
    if name is None:
        return None
    for escaped, char in (("%22", '"'), ("%0D", "\r"), ("%0A", "\n"), ("%0d", "\r"), ("%0a", "\n")):
        name = name.replace(escaped, char)
    return name


class FilePartReader:
    """A read()-able stream of the single file part of a multipart/form-data body."""

    def __init__(self, body: BinaryIO, boundary: str, content_length: int | None, block: int):
        self._body = body
        self._remaining = content_length  # None: chunked, read until EOF
        self._block = block
        self._delimiter = b"\r\n--" + boundary.encode("ascii")
        self._buf = b"\r\n"  # the first boundary line has no CRLF before it
        self._eof = False
        self._in_file = False
        self._done = False
        self.filename: str | None = None

    # ---------------------------------------------------------------- raw input

    def _fill(self) -> bool:
        """Append one block from the body; False at its end."""
        if self._eof:
            return False
        want = self._block if self._remaining is None else min(self._block, self._remaining)
        data = self._body.read(want) if want > 0 else b""
        if not data:
            self._eof = True
            if self._remaining:
                raise MultipartError(f"the body ended {self._remaining} bytes before its Content-Length")
            return False
        if self._remaining is not None:
            self._remaining -= len(data)
        self._buf += data
        return True

    def _truncated(self) -> MultipartError:
        return MultipartError("the multipart body ended before its closing boundary "
                              f"(--{self._delimiter[4:].decode()}--)")

    # ---------------------------------------------------------------- structure

    def _after_delimiter(self) -> bool:
        """At a delimiter's end: True if a part follows, False after the close delimiter."""
        while len(self._buf) < 2:
            if not self._fill():
                raise self._truncated()
        if self._buf.startswith(b"--"):
            self._buf = b""
            self._done = True
            return False
        # Transport padding (spaces/tabs) may precede the CRLF.
        while True:
            eol = self._buf.find(b"\r\n")
            if eol >= 0:
                if self._buf[:eol].strip(b" \t"):
                    raise MultipartError("a boundary line has characters after the boundary")
                self._buf = self._buf[eol + 2:]
                return True
            if len(self._buf) > 1024 or not self._fill():
                raise self._truncated()

    def _headers(self) -> dict[str, str]:
        while True:
            end = self._buf.find(b"\r\n\r\n")
            if self._buf.startswith(b"\r\n"):
                end, skip = 0, 2
            elif end >= 0:
                skip = 4
            if end >= 0:
                break
            if len(self._buf) > MAX_PART_HEADER_BYTES:
                raise MultipartError(f"a part's headers are longer than {MAX_PART_HEADER_BYTES} bytes")
            if not self._fill():
                raise self._truncated()
        if end > MAX_PART_HEADER_BYTES:
            raise MultipartError(f"a part's headers are longer than {MAX_PART_HEADER_BYTES} bytes")
        raw, self._buf = self._buf[:end], self._buf[end + skip:]
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise MultipartError("a part's headers are not valid UTF-8") from None
        headers: dict[str, str] = {}
        for line in text.split("\r\n") if text else []:
            name, colon, value = line.partition(":")
            if not colon:
                raise MultipartError("a part header line has no colon")
            headers.setdefault(name.strip().lower(), value.strip())
        return headers

    def _content(self) -> Iterator[bytes]:
        """The current part's bytes up to the next delimiter, which is consumed."""
        dlen = len(self._delimiter)
        while True:
            at = self._buf.find(self._delimiter)
            if at >= 0:
                piece, self._buf = self._buf[:at], self._buf[at + dlen:]
                if piece:
                    yield piece
                return
            # A delimiter may straddle this block and the next: keep from the last CR of the
            # final dlen-1 bytes (the boundary has no CR, so only a delimiter's start is one).
            # Usually there is none and the block goes on whole, without a copy.
            cut = self._buf.rfind(b"\r", max(0, len(self._buf) - dlen + 1))
            if cut < 0:
                piece, self._buf = self._buf, b""
            else:
                piece, self._buf = self._buf[:cut], self._buf[cut:]
            if piece:
                yield piece
            if not self._fill():
                raise self._truncated()

    def _next_part(self) -> dict[str, str] | None:
        """Headers of the next part, or None after the close delimiter."""
        return self._headers() if self._after_delimiter() else None

    def _skip_field(self) -> None:
        size = 0
        for piece in self._content():
            size += len(piece)
            if size > MAX_FIELD_BYTES:
                raise MultipartError(f"a text field is longer than {MAX_FIELD_BYTES} bytes "
                                     "(only the file part may be large)")

    def open(self) -> str:
        """Skip the preamble and text fields up to the file part; returns its raw filename."""
        size = 0
        for piece in self._content():  # preamble: ignored (RFC 2046), bounded like a field
            size += len(piece)
            if size > MAX_FIELD_BYTES:
                raise MultipartError("no multipart boundary near the start of the body")
        while True:
            headers = self._next_part()
            if headers is None:
                raise MultipartError("the form has no file part: send the file as a part with "
                                     "Content-Disposition: form-data; name=\"file\"; filename=\"...\"")
            filename = part_filename(headers.get("content-disposition", ""))
            if filename is not None:
                self.filename = filename
                self._in_file = True
                self._pieces = self._content()
                return filename
            self._skip_field()

    def _finish(self) -> None:
        """After the file part: the rest must be text fields and the close delimiter."""
        while (headers := self._next_part()) is not None:
            if part_filename(headers.get("content-disposition", "")) is not None:
                raise MultipartError("the form has two file parts: send exactly one file per upload")
            self._skip_field()
        while self._fill():  # epilogue: ignored (RFC 2046), but bounded
            if len(self._buf) > MAX_FIELD_BYTES:
                raise MultipartError("too many bytes after the closing boundary")
            self._buf = b""

    def read(self, size: int = -1) -> bytes:
        if not self._in_file:
            return b""
        piece = next(self._pieces, None)
        if piece is None:
            self._in_file = False
            self._finish()
            return b""
        return piece
