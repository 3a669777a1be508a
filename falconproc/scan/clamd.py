"""A minimal clamd client: PING, VERSION and INSTREAM over a unix socket or TCP.

clamd's protocol (``man clamd``): a ``z``-prefixed command ends with NUL; INSTREAM then
takes chunks, each prefixed by its length as a 4-byte big-endian integer, ended by a
zero length; the reply is one NUL-terminated line, ``stream: OK``,
``stream: <signature> FOUND`` or ``<reason> ERROR``. clamd scans inside archives (ZIP,
OOXML) itself."""
from __future__ import annotations

import socket
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from falconproc.errors import FalconprocError

CHUNK = 256 * 1024


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

    def instream(self, stream: BinaryIO) -> Verdict:
        with self._connect(self.timeout) as sock:
            try:
                sock.sendall(b"zINSTREAM\0")
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


def parse_reply(reply: str) -> Verdict:
    if reply.endswith("ERROR"):
        return Verdict("error", reason=reply[: -len("ERROR")].strip() or "clamd reported an error")
    _, _, result = reply.partition(": ")
    if result == "OK":
        return Verdict("clean")
    if result.endswith(" FOUND"):
        return Verdict("infected", signature=result[: -len(" FOUND")])
    return Verdict("error", reason=f"unexpected answer from clamd: {reply[:200]}")
