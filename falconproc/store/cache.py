"""The derived-file cache interface: presets, extracted text and their state.

Everything in it is derived from an original and can be rebuilt, so losing it is an
inconvenience, never data loss; a backend still publishes each file atomically (a
reader never sees half a file) and serialises metadata updates (no lost update).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, BinaryIO


class DerivedCache(ABC):
    """Named files and one metadata document per content hash."""

    @abstractmethod
    def open(self, content_hash: str, name: str) -> tuple[BinaryIO, int]:
        """The file ``name`` of this hash opened for reading, and its size (a real file
        where possible: sendfile). FileNotFoundError when it was not made yet."""

    @abstractmethod
    def exists(self, content_hash: str, name: str) -> bool: ...

    @abstractmethod
    def write_file(self, content_hash: str, name: str, writer: Callable[[BinaryIO], None]) -> int:
        """Call ``writer(binary_file)``, then publish what it wrote as ``name`` in one
        step. Returns its size."""

    @abstractmethod
    def metadata(self, content_hash: str) -> dict[str, Any]:
        """The hash's processing state (presets, text, errors); {} when there is none."""

    @abstractmethod
    def update_metadata(self, content_hash: str, update: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        """Apply ``update`` to the metadata in place and store it, with no update lost to
        a concurrent one; returns the new metadata."""

    @abstractmethod
    def exclusive(self, content_hash: str, name: str, timeout: float) -> AbstractContextManager[None]:
        """One producer of ``name`` for this hash at a time, across every process that
        shares the cache; others wait up to ``timeout`` (then ServiceOverloaded)."""

    # -- jobs not queued yet: content stored while the job queue did not answer ---------

    @abstractmethod
    def defer_jobs(self, content_hash: str, note: dict[str, Any]) -> None:
        """Remember, durably and for every instance, that this stored content's jobs still
        have to be queued (``note``: the upload's request id, when)."""

    @abstractmethod
    def deferred_jobs(self) -> dict[str, dict[str, Any]]:
        """Content hash -> note, for every content whose jobs wait to be queued."""

    @abstractmethod
    def forget_deferred_jobs(self, content_hash: str) -> None:
        """Its jobs are queued now (missing: nothing to do)."""

    @abstractmethod
    def quarantine(self, content_hash: str) -> int:
        """From now on keep no derived file of this hash, for every instance sharing the
        cache: delete those there are (returns how many) and make ``write_file`` refuse
        new ones (ContentQuarantined), also a write racing this call. The metadata stays."""
