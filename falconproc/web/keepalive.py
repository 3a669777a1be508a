"""WSGI wrapper: a response to a request whose body was not read to the end says
``Connection: close``, and the connection is closed.

The service refuses uploads before reading their bodies (413, 429, 503, 507, 401), which is
the point: a 100 MB body is not read to be refused. But then the connection cannot carry
another request. gunicorn's threaded worker drains at most 64 KiB of a leftover body and
otherwise closes the socket silently after having announced keep-alive, so a client that
reuses the pooled connection fails its *next* request (see benchmarks/README.md, the
load benchmark). gunicorn drops a ``Connection`` header set by the
application (hop-by-hop), so besides setting it this wrapper asks gunicorn's response
object, which is what ``start_response`` is bound to, to close.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any


class _TrackedInput:
    """``wsgi.input`` that notes whether the body was read to its end."""

    def __init__(self, stream: Any, length: int | None):
        self._stream = stream
        self.remaining = length  # None: chunked, the end is the first empty read
        self.at_end = length == 0

    def _saw(self, data: bytes, size: int | None) -> bytes:
        if self.remaining is not None:
            self.remaining -= len(data)
            if self.remaining <= 0:
                self.at_end = True
        if not data and size != 0:
            self.at_end = True
        return data

    def read(self, size: int | None = -1) -> bytes:
        return self._saw(self._stream.read(size) if size is not None else self._stream.read(), size)

    def readline(self, size: int | None = -1) -> bytes:
        return self._saw(self._stream.readline(size) if size is not None else self._stream.readline(), size)

    def readlines(self, hint: int | None = None) -> list[bytes]:
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


class CloseUnreadBodies:
    def __init__(self, app: Callable):
        self.app = app

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        length = None if chunked else _content_length(environ)
        if not chunked and not length:
            return self.app(environ, start_response)
        tracked = _TrackedInput(environ["wsgi.input"], length)
        environ["wsgi.input"] = tracked

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None):
            if not tracked.at_end:
                headers = [(k, v) for k, v in headers if k.lower() != "connection"] + [("Connection", "close")]
                force_close = getattr(getattr(start_response, "__self__", None), "force_close", None)
                if force_close is not None:
                    force_close()  # gunicorn: announce and do the close (it ignores the header)
            return start_response(status, headers, exc_info) if exc_info else start_response(status, headers)

        return self.app(environ, start)
