"""A minimal clamd client: PING, VERSION and INSTREAM over a unix socket or TCP.

clamd's protocol (``man clamd``): a ``z``-prefixed command ends with NUL; INSTREAM then
takes chunks, each prefixed by its length as a 4-byte big-endian integer, ended by a
zero length; the reply is one NUL-terminated line, ``stream: OK``,
``stream: <signature> FOUND`` or ``<reason> ERROR``. clamd scans inside archives (ZIP,
OOXML) itself."""
from __future__ import annotations

import os
import selectors
import socket
import stat
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from falconproc.errors import FalconprocError

CHUNK = 256 * 1024
# A file's bytes go to clamd by sendfile (no copy through this process) in INSTREAM chunks
# of up to this size: few frames and syscalls, far below any StreamMaxLength worth having.
FILE_CHUNK = 8 * 1024 * 1024


class GrowingFile(Protocol):
    """A file read behind its writer (store.follow.SpoolTail): ranges as they are written."""

    def fileno(self) -> int: ...

    def next_range(self, limit: int) -> tuple[int, int] | None: ...


class ClamdUnavailable(FalconprocError, ConnectionError):
    """clamd cannot be reached or broke off: worth retrying later."""


@dataclass(frozen=True)
class Verdict:
    status: str  # clean | infected | error
    signature: str | None = None
    reason: str | None = None


class ClamdClient:
    def __init__(self, socket_path: Path | None = None, address: tuple[str, int] | None = None,
                 timeout: float = 120.0):
        if socket_path is None and address is None:
            raise ValueError("clamd needs a unix socket path or a host:port address")
        self.socket_path = socket_path
        self.address = address
        self.timeout = timeout

    def _connect(self, timeout: float) -> socket.socket:
        try:
            if self.socket_path is not None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(timeout)
                sock.connect(str(self.socket_path))
                return sock
            return socket.create_connection(self.address, timeout=timeout)
        except OSError as exc:
            raise ClamdUnavailable(f"clamd cannot be reached: {exc}") from None

    @staticmethod
    def _reply(sock: socket.socket) -> str:
        data = b""
        while not data.endswith(b"\0"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
        if not data:
            raise ClamdUnavailable("clamd closed the connection without an answer")
        return data.rstrip(b"\0").decode("utf-8", "replace").strip()

    def _command(self, command: bytes, timeout: float) -> str:
        with self._connect(timeout) as sock:
            try:
                sock.sendall(b"z" + command + b"\0")
                return self._reply(sock)
            except OSError as exc:
                raise ClamdUnavailable(f"clamd broke off: {exc}") from None

    def ping(self, timeout: float = 1.0) -> bool:
        try:
            return self._command(b"PING", timeout) == "PONG"
        except ClamdUnavailable:
            return False

    def version(self) -> str:
        return self._command(b"VERSION", self.timeout)

    def instream(self, stream: BinaryIO | GrowingFile) -> Verdict:
        """Scan ``stream``'s bytes: a regular file (from its position) or a growing one is
        sent by sendfile, anything else read and sent chunk by chunk."""
        with self._connect(self.timeout) as sock:
            try:
                sock.sendall(b"zINSTREAM\0")
                ranges = _file_ranges(stream)
                if ranges is not None:
                    for offset, length in ranges:
                        sock.sendall(struct.pack(">I", length))
                        _sendfile_all(sock, stream, offset, length)
                else:
                    while chunk := stream.read(CHUNK):
                        sock.sendall(struct.pack(">I", len(chunk)) + chunk)
                sock.sendall(struct.pack(">I", 0))
            except (BrokenPipeError, ConnectionResetError):
                pass  # clamd stops reading past StreamMaxLength and says why: read that below
            except OSError as exc:
                raise ClamdUnavailable(f"clamd broke off: {exc}") from None
            try:
                reply = self._reply(sock)
            except OSError as exc:
                raise ClamdUnavailable(f"clamd broke off: {exc}") from None
        return parse_reply(reply)


def _file_ranges(stream: object) -> Iterator[tuple[int, int]] | None:
    """(offset, length) pieces of the file behind ``stream``, or None if it is no file."""
    next_range = getattr(stream, "next_range", None)
    if next_range is not None:
        return iter(lambda: next_range(FILE_CHUNK), None)
    try:
        info = os.fstat(stream.fileno())  # type: ignore[attr-defined]
        if not stat.S_ISREG(info.st_mode):
            return None
        start, end = stream.tell(), info.st_size  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError):
        return None
    return ((offset, min(FILE_CHUNK, end - offset)) for offset in range(start, end, FILE_CHUNK))


def _sendfile_all(sock: socket.socket, stream: object, offset: int, length: int) -> None:
    """``length`` bytes of ``stream``'s file from ``offset`` to ``sock``, within its timeout.
    os.sendfile, not socket.sendfile: that one falls back to reading the file when the
    first call fails, which hides the EPIPE of clamd refusing a stream over its limit
    (instream reads clamd's reason after it)."""
    fd, end = stream.fileno(), offset + length  # type: ignore[attr-defined]
    while offset < end:
        try:
            sent = os.sendfile(sock.fileno(), fd, offset, end - offset)
        except BlockingIOError:  # a socket with a timeout is non-blocking underneath
            with selectors.DefaultSelector() as selector:
                selector.register(sock, selectors.EVENT_WRITE)
                if not selector.select(sock.gettimeout()):
                    raise TimeoutError("clamd took no more of the stream in time") from None
            continue
        if sent == 0:
            raise ClamdUnavailable("the file ended before the length announced to clamd")
        offset += sent


def parse_reply(reply: str) -> Verdict:
    if reply.endswith("ERROR"):
        return Verdict("error", reason=reply[: -len("ERROR")].strip() or "clamd reported an error")
    _, _, result = reply.partition(": ")
    if result == "OK":
        return Verdict("clean")
    if result.endswith(" FOUND"):
        return Verdict("infected", signature=result[: -len(" FOUND")])
    return Verdict("error", reason=f"unexpected answer from clamd: {reply[:200]}")
