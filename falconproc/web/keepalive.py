"""WSGI wrapper for bodies the application did not read: refusals the client can read.

The service refuses uploads before reading their bodies (413, 429, 503, 507, 401), which is
the point: a 100 MB body is not read to be refused. But a client that is still sending
when the refusal arrives must be able to read it. gunicorn drains at most 64 KiB of a
leftover body and then closes; the kernel answers the rest of the client's data with a
reset, and the client sees ``EPIPE``/``ECONNRESET`` instead of the 413 it was sent. So, as
nginx's lingering close does, after the answer is sent (Connection: close) this wrapper
half-closes the socket and keeps reading and discarding the unread body, for at most
``LINGER_SECONDS`` and ``LINGER_MAX_BYTES``, before gunicorn closes the connection; at most
WEB_THREADS/8 connections linger at once per worker (each holds a thread).

``Expect: 100-continue``: gunicorn writes ``100 Continue`` itself before the application
runs, so a client waiting for it would send the whole body to be refused. The
``pre_request`` hook (``defer_100_continue``) takes that over and this wrapper sends the
``100 Continue`` on the application's first read of the body instead: a request refused
before reading gets its final status while the client is still waiting to send.

gunicorn drops a ``Connection`` header set by the application (hop-by-hop), so besides
setting it this wrapper asks gunicorn's response object, which is what ``start_response``
is bound to, to close.
"""
from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_DISCARD_BLOCK = 256 * 1024
_deferred = threading.local()  # gthread runs pre_request and the app in the same thread


def defer_100_continue(worker: Any, req: Any) -> None:
    """gunicorn ``pre_request`` hook: keep gunicorn from answering ``100 Continue`` before
    the application has decided; the wrapper sends it on the first read instead."""
    _deferred.pending = bool(getattr(req, "_expected_100_continue", False))
    if _deferred.pending:
        req._expected_100_continue = False


class _TrackedInput:
    """``wsgi.input`` that notes whether the body was read to its end, and sends a
    deferred ``100 Continue`` before the first read."""

    def __init__(self, stream: Any, length: int | None, sock: Any, continue_pending: bool):
        self._stream = stream
        self.remaining = length  # None: chunked, the end is the first empty read
        self.at_end = length == 0
        self._sock = sock
        self.continue_pending = continue_pending

    def _go_ahead(self) -> None:
        if self.continue_pending:
            self.continue_pending = False
            self._sock.sendall(CONTINUE)

    def _saw(self, data: bytes, size: int | None) -> bytes:
        if self.remaining is not None:
            self.remaining -= len(data)
            if self.remaining <= 0:
                self.at_end = True
        if not data and size != 0:
            self.at_end = True
        return data

    def read(self, size: int | None = -1) -> bytes:
        self._go_ahead()
        return self._saw(self._stream.read(size) if size is not None else self._stream.read(), size)

    def readline(self, size: int | None = -1) -> bytes:
        self._go_ahead()
        return self._saw(self._stream.readline(size) if size is not None else self._stream.readline(), size)

    def readlines(self, hint: int | None = None) -> list[bytes]:
        self._go_ahead()
        lines = self._stream.readlines(hint) if hint is not None else self._stream.readlines()
        for line in lines:
            self._saw(line, None)
        if hint is None:
            self.at_end = True
        return lines

    def __iter__(self):
        return iter(self.readline, b"")


def _content_length(environ: dict) -> int | None:
    try:
        return int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 0


class _Lingering:
    """The application's response iterable; its close() (gunicorn calls it after the
    response was written) discards what is left of the body."""

    def __init__(self, result: Iterable[bytes], linger: Callable[[], None]):
        self._result = result
        self._linger = linger

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._result)

    def close(self) -> None:
        try:
            close = getattr(self._result, "close", None)
            if close is not None:
                close()
        finally:
            self._linger()


class CloseUnreadBodies:
    def __init__(self, app: Callable, *, linger_seconds: float = 10.0, linger_max_bytes: int = 256 * 1024 * 1024,
                 max_lingering: int = 4):
        self.app = app
        self.linger_seconds = linger_seconds
        self.linger_max_bytes = linger_max_bytes
        # A lingering read holds a thread: only this many at once, so that refused slow
        # clients cannot take the threads kept for reads (the rest are closed at once).
        self._lingering = threading.BoundedSemaphore(max(1, max_lingering))

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        continue_pending = getattr(_deferred, "pending", False)
        _deferred.pending = False
        sock = environ.get("gunicorn.socket")
        chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        length = None if chunked else _content_length(environ)
        if not chunked and not length:
            return self.app(environ, start_response)
        tracked = _TrackedInput(environ["wsgi.input"], length, sock, continue_pending and sock is not None)
        environ["wsgi.input"] = tracked
        refused = [False]

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None):
            if not tracked.at_end:
                refused[0] = True
                headers = [(k, v) for k, v in headers if k.lower() != "connection"] + [("Connection", "close")]
                force_close = getattr(getattr(start_response, "__self__", None), "force_close", None)
                if force_close is not None:
                    force_close()  # gunicorn: announce and do the close (it ignores the header)
            return start_response(status, headers, exc_info) if exc_info else start_response(status, headers)

        def linger() -> None:
            if refused[0] and sock is not None and not tracked.at_end:
                self._discard(sock, tracked)

        return _Lingering(self.app(environ, start), linger)

    def _discard(self, sock: socket.socket, body: _TrackedInput) -> None:
        """Half-close (the answer is complete), then read and drop the body's rest within
        the bounds, so the close that follows is not a reset under a client still sending."""
        body.continue_pending = False  # the client was answered: no go-ahead now
        try:
            if self.linger_seconds > 0 and self._lingering.acquire(blocking=False):
                try:
                    self._discard_within_bounds(sock, body)
                finally:
                    self._lingering.release()
        finally:
            # Done here, in the request's thread: gunicorn's own graceful close drains (up to
            # 2 s) in the worker's main loop, which a client still trickling would stall for
            # every connection of the worker. With the read side shut, it closes at once.
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _discard_within_bounds(self, sock: socket.socket, body: _TrackedInput) -> None:
        try:
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            return
        deadline = time.monotonic() + self.linger_seconds
        # Straight from the socket: gunicorn's body reader waits for a whole block, which a
        # trickling client could stretch past the deadline. What gunicorn buffered already
        # is not counted; the client closes once it has sent the rest and read the answer.
        left_in_body = body.remaining
        discarded = 0
        try:
            while discarded < self.linger_max_bytes and (left_in_body is None or discarded < left_in_body):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                sock.settimeout(left)
                data = sock.recv(_DISCARD_BLOCK)
                if not data:
                    break
                discarded += len(data)
        except OSError:  # timeout, reset: the connection closes either way
            pass
