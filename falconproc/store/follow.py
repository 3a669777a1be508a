"""Reading an upload's spool file behind its writer.

Consumers that work while the body is still arriving (the S3 store's part uploads, the
streamed virus scan) read the bytes the native probe has written so far from the spool
file (the page cache), never from a copy of the body in memory. The writer says when it
wrote more (``advanced``) and when it is done (``finish``); a reader between the two
waits for more bytes, and an aborted upload wakes it with ``UploadCancelled``.
"""
from __future__ import annotations

import os
import threading
from typing import BinaryIO

# A writer that does not call ``advanced`` (a test writing the descriptor directly) is
# still noticed: readers look at the file's size at least this often while they wait.
_POLL_SECONDS = 0.05


class UploadCancelled(Exception):
    """The upload was aborted while a reader waited for its bytes."""


class SpoolTail:
    """One sequential reader of a growing spool file (file-like: ``read``)."""

    def __init__(self, fh: BinaryIO):
        self._fh = fh
        self._cond = threading.Condition()
        self._end: int | None = None  # the final size, once the writer finished
        self._cancelled = False
        self.position = 0

    # -- writer side -------------------------------------------------------------------

    def advanced(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def finish(self, size: int) -> None:
        """The writer is done: the file has its final ``size``."""
        with self._cond:
            self._end = size
            self._cond.notify_all()

    def cancel(self, *, even_if_finished: bool = False) -> None:
        """Stop the reader. Once the body is complete a reader may read on (its descriptor
        keeps the bytes even after the spool is removed) unless ``even_if_finished``."""
        with self._cond:
            if self._end is None or even_if_finished:
                self._cancelled = True
                self._cond.notify_all()

    # -- reader side -------------------------------------------------------------------

    def read(self, size: int) -> bytes:
        """Up to ``size`` bytes at the current position; waits while none are written yet;
        b"" once the writer finished and everything was read."""
        written = self._wait_for_bytes()
        data = os.pread(self._fh.fileno(), min(size, written - self.position), self.position)
        self.position += len(data)
        return data

    def next_range(self, limit: int) -> tuple[int, int] | None:
        """Take up to ``limit`` written bytes without reading them: (offset, length) in
        ``fileno()``, for a consumer that sends them with sendfile; waits while none are
        written yet; None once the writer finished and everything was taken."""
        written = self._wait_for_bytes()
        length = min(limit, written - self.position)
        if length <= 0:
            return None
        offset, self.position = self.position, self.position + length
        return offset, length

    def fileno(self) -> int:
        return self._fh.fileno()

    def _wait_for_bytes(self) -> int:
        """The size written so far, once it is past the position or final."""
        with self._cond:
            while True:
                if self._cancelled:
                    raise UploadCancelled("the upload was aborted")
                written = self._end if self._end is not None else os.fstat(self._fh.fileno()).st_size
                if written > self.position or self._end is not None:
                    return written
                self._cond.wait(_POLL_SECONDS)

    def close(self) -> None:
        self._fh.close()
