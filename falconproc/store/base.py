"""The content-store interface every backend implements.

An upload is spooled into a ``PendingUpload`` (a local file the native hot path
writes into as chunks arrive), then either committed under its hash or aborted.
Nothing partial is ever visible under a hash. Readers get streams; decoders that
need a real file (seeks, a path for tesseract) ask for ``local_file``, which a
remote backend may serve from a local read-through copy.
"""
from __future__ import annotations

import os
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from falconproc.store.follow import SpoolTail

_HASH_RE = re.compile(r"[0-9a-f]{64}")


def is_content_hash(value: str) -> bool:
    """True for exactly 64 lowercase hex characters (checked before any filesystem access)."""
    return bool(_HASH_RE.fullmatch(value))


@dataclass(frozen=True)
class UploadRecord:
    """Who uploaded some bytes, under which name, when."""

    drive_id: str
    user_id: str
    original_name: str
    uploaded_at: str  # ISO 8601 UTC

    def to_json(self) -> dict[str, str]:
        """The entry of metadata.json's ``uploads`` list."""
        return {"driveId": self.drive_id, "userId": self.user_id, "originalName": self.original_name,
                "uploadedAt": self.uploaded_at}


@dataclass(frozen=True)
class StoredObject:
    content_hash: str
    size: int
    mime_type: str
    mtime: float


class PendingUpload(ABC):
    """A temporary, invisible spool for one upload's bytes.

    Consumers that work while the body arrives ``follow`` it: the writer (ingest) calls
    ``wrote`` after each block and ``finished_writing`` at the end of the body; ``abort``
    cancels the followers. A backend may consume the bytes itself as they arrive (the S3
    store uploads parts) by overriding ``wrote``.
    """

    _tails: list[SpoolTail] | None = None

    @abstractmethod
    def fileno(self) -> int:
        """The descriptor the native probe writes the body into, block by block."""

    @abstractmethod
    def open_written(self) -> BinaryIO:
        """A new readable, seekable file of the bytes written so far (type refinement
        reads a ZIP's central directory); the caller closes it."""

    @abstractmethod
    def abort(self) -> None:
        """Remove everything written so far (and cancel the followers). Safe to call twice."""

    def follow(self) -> SpoolTail:
        """A reader of the bytes as they are written; the caller closes it."""
        tail = SpoolTail(self.open_written())
        if self._tails is None:
            self._tails = []
        self._tails.append(tail)
        return tail

    def wrote(self) -> None:
        """More bytes were written to ``fileno()``."""
        for tail in self._tails or ():
            tail.advanced()

    def finished_writing(self) -> None:
        """The body is complete: followers read to its end and then see end of file."""
        if self._tails:
            size = os.fstat(self.fileno()).st_size
            for tail in self._tails:
                tail.finish(size)

    def _cancel_followers(self) -> None:
        for tail in self._tails or ():
            tail.cancel()


class ContentStore(ABC):
    """Originals + metadata.json per content hash."""

    @abstractmethod
    def begin_upload(self, expected_hash: str | None = None) -> PendingUpload:
        """A new spool. ``expected_hash``: what the client said the bytes hash to (checked
        before commit); a backend may use it to write them where they will end up."""

    @abstractmethod
    def commit(self, pending: PendingUpload, content_hash: str, metadata: dict[str, Any],
               record: UploadRecord) -> tuple[dict[str, Any], bool]:
        """Make the pending bytes visible under ``content_hash``, durably.

        Returns the stored metadata and whether this call stored new content. When the
        hash is already stored, the pending bytes are dropped and ``record`` is added to
        the entry's uploader list.
        """

    @abstractmethod
    def add_upload(self, content_hash: str, record: UploadRecord) -> dict[str, Any]:
        """Add ``record`` to a stored entry's uploader list (once per drive/user, no update
        lost to a concurrent one) and return the metadata; the entry is durable on return.
        Raise ContentNotFound when absent."""

    @abstractmethod
    def exists(self, content_hash: str) -> bool: ...

    @abstractmethod
    def stat(self, content_hash: str) -> StoredObject:
        """Raise ContentNotFound when absent."""

    @abstractmethod
    def open(self, content_hash: str) -> BinaryIO:
        """The original's bytes as a stream (a real file where possible: sendfile).
        Raise ContentNotFound."""

    @abstractmethod
    def local_file(self, content_hash: str) -> AbstractContextManager[Path]:
        """A local file with the original's bytes, for decoders that need a path or seeks,
        valid inside the ``with`` block (a remote backend provides it from a local
        read-through copy that it will not evict meanwhile). Raise ContentNotFound."""

    def redirect_url(self, content_hash: str, *, content_type: str, disposition: str) -> str | None:
        """A URL the client may fetch the original from directly (a presigned object-store
        URL answering with these headers), or None: serve it here."""
        return None

    @abstractmethod
    def metadata(self, content_hash: str) -> dict[str, Any]:
        """The stored metadata.json. Raise ContentNotFound."""

    @abstractmethod
    def iter_hashes(self) -> Iterator[str]: ...

    @abstractmethod
    def free_space(self) -> int:
        """Bytes available to new uploads on the backing storage."""

    @abstractmethod
    def usage(self) -> tuple[int, int]:
        """(number of stored files, their total size)."""

    @abstractmethod
    def sweep_temp(self, *, at_startup: bool = False) -> int:
        """Remove temp files of uploads whose process died. Returns how many."""
