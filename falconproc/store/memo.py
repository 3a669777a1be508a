"""Small derived files a web worker served recently, kept in its memory.

A chat thumbnail is a few KB requested over and over; opening it costs a path walk, an
fstat, a read and a close in the kernel per request -- under load the largest share of a
cached read after gunicorn's own work. A derived file never changes once published (it is
made from content-addressed bytes; its ETag and ``Cache-Control: immutable`` already say
so), so its bytes can be kept. Quarantine is decided before the cache is consulted (the
scan gate answers 403 first), so a kept copy is never served for quarantined content.

Bounded by bytes per process; the oldest kept entry goes first (no reordering on a hit,
so a hit takes no lock).
"""
from __future__ import annotations

import io
import threading
from typing import BinaryIO

from falconproc.store.cache import DerivedCache

# Files up to this size are kept here, and served from memory rather than with sendfile(2).
SMALL_FILE_BYTES = 64 * 1024


class SmallFileMemo:
    def __init__(self, max_bytes: int, max_file_bytes: int = SMALL_FILE_BYTES):
        self.max_bytes = max_bytes
        self.max_file_bytes = min(max_file_bytes, max_bytes)
        self._entries: dict[tuple[str, str], bytes] = {}
        self._size = 0
        self._lock = threading.Lock()

    def open(self, cache: DerivedCache, content_hash: str, name: str) -> tuple[BinaryIO, int]:
        """``cache.open`` for serving: the file, or its kept bytes (FileNotFoundError as
        ``cache.open`` raises it)."""
        data = self._entries.get((content_hash, name))
        if data is not None:
            return io.BytesIO(data), len(data)
        fileobj, size = cache.open(content_hash, name)
        if size > self.max_file_bytes:
            return fileobj, size
        with fileobj:
            data = fileobj.read()
        self._keep((content_hash, name), data)
        return io.BytesIO(data), len(data)

    def _keep(self, key: tuple[str, str], data: bytes) -> None:
        with self._lock:
            if key in self._entries:
                return
            self._entries[key] = data
            self._size += len(data)
            while self._size > self.max_bytes:
                oldest = next(iter(self._entries))
                self._size -= len(self._entries.pop(oldest))

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size(self) -> int:
        return self._size
