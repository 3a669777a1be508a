"""Derived files (presets, extracted text) under CACHE_PATH.

    {hash}/{preset}.{ext}    a rendered preset (extension = real format)
    {hash}/text.txt, pages.json
    {hash}/metadata.json     per preset {size, format, width, height, processedAt}; text state
    .tmp/                    temp files (written, fsynced, renamed into place)

Everything is derived and can be rebuilt from the original, so losing the cache
is an inconvenience, never data loss; it is still written atomically so that a
reader never sees half a file.
"""
from __future__ import annotations

import fcntl
import os
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from falconproc.errors import ServiceOverloaded
from falconproc.fsutil import DirectoryLock, atomic_write_json, fsync_dir, read_json
from falconproc.store.base import is_content_hash


class DerivedCache:
    def __init__(self, root: Path, *, fsync: bool = True):
        self.root = Path(root)
        self.tmp_root = self.root / ".tmp"
        self.fsync = fsync
        self.tmp_root.mkdir(parents=True, exist_ok=True)

    def entry(self, content_hash: str) -> Path:
        if not is_content_hash(content_hash):
            raise ValueError("content hash must be 64 lowercase hex characters")
        return self.root / content_hash

    def path(self, content_hash: str, filename: str) -> Path:
        return self.entry(content_hash) / filename

    def write_file(self, content_hash: str, filename: str, writer: Callable[[Any], None]) -> int:
        """Call ``writer(binary_file)`` on a temp file, then publish it atomically. Returns its size."""
        entry = self.entry(content_hash)
        entry.mkdir(exist_ok=True)
        tmp = self.tmp_root / f"{content_hash[:16]}-{filename}-{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp"
        try:
            with open(tmp, "wb") as fh:
                writer(fh)
                fh.flush()
                if self.fsync:
                    os.fsync(fh.fileno())
                size = fh.tell()
            os.rename(tmp, entry / filename)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        if self.fsync:
            fsync_dir(entry)
        return size

    def metadata(self, content_hash: str) -> dict[str, Any]:
        try:
            return read_json(self.entry(content_hash) / "metadata.json")
        except FileNotFoundError:
            return {}

    def update_metadata(self, content_hash: str, update: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        """Read-modify-write metadata.json under the entry's lock (no lost updates)."""
        entry = self.entry(content_hash)
        entry.mkdir(exist_ok=True)
        with DirectoryLock(entry):
            meta = self.metadata(content_hash)
            update(meta)
            atomic_write_json(entry / "metadata.json", meta, fsync=self.fsync, tmp_dir=self.tmp_root)
        return meta

    @contextmanager
    def exclusive(self, content_hash: str, name: str, timeout: float) -> Iterator[None]:
        """One producer per (hash, name) across all processes; others wait up to ``timeout``."""
        entry = self.entry(content_hash)
        entry.mkdir(exist_ok=True)
        lock_path = entry / f".{name}.lock"
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            _flock_with_timeout(fd, timeout)
            yield
        finally:
            os.close(fd)


class SlotSemaphore:
    """At most N holders across every process on the machine, via N flock'd slot files
    (released by the kernel if a holder dies)."""

    def __init__(self, directory: Path, name: str, slots: int):
        self.paths = [directory / f".{name}-slot-{i}.lock" for i in range(max(slots, 1))]
        directory.mkdir(parents=True, exist_ok=True)

    @contextmanager
    def acquire(self, timeout: float) -> Iterator[int]:
        """Hold a slot; yields how many slots are held now, ours included (a hint for how
        many threads the holder should use: the others are busy too)."""
        deadline = time.monotonic() + timeout
        delay = 0.005
        while True:
            for path in self.paths:
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    continue
                try:
                    yield 1 + self._held_by_others(path)
                finally:
                    os.close(fd)
                return
            if time.monotonic() > deadline:
                raise ServiceOverloaded("all image slots are busy; retry shortly", retry_after=2)
            time.sleep(delay)
            delay = min(delay * 2, 0.1)


    def _held_by_others(self, mine: Path) -> int:
        held = 0
        for path in self.paths:
            if path == mine:
                continue
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                held += 1
            finally:
                os.close(fd)  # closing drops the probe's lock
        return held


def _flock_with_timeout(fd: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise ServiceOverloaded("this file is being processed; retry shortly", retry_after=2) from None
            time.sleep(delay)
            delay = min(delay * 2, 0.1)
