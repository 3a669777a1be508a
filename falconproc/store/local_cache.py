"""The derived cache on a local filesystem, under CACHE_PATH.

    {hash}/{preset}.{ext}    a rendered preset (extension = real format)
    {hash}/text.txt          extracted text; text.json: its pages and properties
    {hash}/metadata.json     per preset {size, format, width, height, processedAt}; text state
    {hash}/.{name}.lock      single-flight locks (flock)
    .tmp/                    temp files (written, fsynced, renamed into place)
    .deferred-jobs/{hash}.json  stored content whose jobs wait to be queued
"""
from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from falconproc.errors import ContentQuarantined
from falconproc.fsutil import atomic_write_json, fsync_dir, read_json
from falconproc.locks import DirectoryLock, file_lock
from falconproc.store.base import is_content_hash
from falconproc.store.cache import DerivedCache


QUARANTINE_MARKER = ".quarantined"  # in a hash's entry: its content was found infected
DEFERRED_JOBS = ".deferred-jobs"

class LocalDerivedCache(DerivedCache):
    def __init__(self, root: Path, *, fsync: bool = True):
        self.root = Path(root)
        self._root_prefix = f"{self.root}{os.sep}"  # the hot path joins strings, not Paths
        self.tmp_root = self.root / ".tmp"
        self.fsync = fsync
        self.tmp_root.mkdir(parents=True, exist_ok=True)

    def entry(self, content_hash: str) -> Path:
        if not is_content_hash(content_hash):  # never build a path from anything else
            raise ValueError("content hash must be 64 lowercase hex characters")
        return self.root / content_hash

    def path(self, content_hash: str, name: str) -> Path:
        return self.entry(content_hash) / name

    def open(self, content_hash: str, name: str) -> tuple[BinaryIO, int]:
        if not is_content_hash(content_hash) or os.sep in name:  # never build a path from anything else
            raise ValueError("content hash must be 64 lowercase hex characters, the name a file name")
        # One open + fstat: the hot path of every cached read.
        fileobj = open(f"{self._root_prefix}{content_hash}{os.sep}{name}", "rb")
        return fileobj, os.fstat(fileobj.fileno()).st_size

    def exists(self, content_hash: str, name: str) -> bool:
        return self.path(content_hash, name).exists()

    def write_file(self, content_hash: str, name: str, writer: Callable[[BinaryIO], None]) -> int:
        entry = self.entry(content_hash)
        entry.mkdir(exist_ok=True)
        tmp = self.tmp_root / f"{content_hash[:16]}-{name}-{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp"
        try:
            with open(tmp, "wb") as fh:
                writer(fh)
                fh.flush()
                if self.fsync:
                    os.fsync(fh.fileno())
                size = fh.tell()
            os.rename(tmp, entry / name)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        if (entry / QUARANTINE_MARKER).exists():
            (entry / name).unlink(missing_ok=True)
            raise ContentQuarantined(f"{content_hash} is quarantined: {name} is not kept")
        if self.fsync:
            fsync_dir(entry)
        return size

    def metadata(self, content_hash: str) -> dict[str, Any]:
        try:
            return read_json(self.entry(content_hash) / "metadata.json")
        except FileNotFoundError:
            return {}

    def update_metadata(self, content_hash: str, update: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        entry = self.entry(content_hash)
        entry.mkdir(exist_ok=True)
        with DirectoryLock(entry):
            meta = self.metadata(content_hash)
            update(meta)
            atomic_write_json(entry / "metadata.json", meta, fsync=self.fsync, tmp_dir=self.tmp_root)
        return meta

    def quarantine(self, content_hash: str) -> int:
        # The marker first, then the deletions; write_file renames first, then looks for
        # the marker: whichever order they interleave in, no derived file survives.
        entry = self.entry(content_hash)
        entry.mkdir(exist_ok=True)
        (entry / QUARANTINE_MARKER).touch()
        removed = 0
        for path in entry.iterdir():
            if path.is_file() and path.name != "metadata.json" and not path.name.startswith("."):
                path.unlink(missing_ok=True)
                removed += 1
        return removed

    def _deferred(self, content_hash: str) -> Path:
        self.entry(content_hash)  # validates the hash
        return self.root / DEFERRED_JOBS / f"{content_hash}.json"

    def defer_jobs(self, content_hash: str, note: dict[str, Any]) -> None:
        path = self._deferred(content_hash)
        path.parent.mkdir(exist_ok=True)
        atomic_write_json(path, note, fsync=self.fsync, tmp_dir=self.tmp_root)

    def deferred_jobs(self) -> dict[str, dict[str, Any]]:
        found = {}
        try:
            names = os.listdir(self.root / DEFERRED_JOBS)
        except FileNotFoundError:
            return {}
        for name in names:
            if name.endswith(".json") and is_content_hash(name[:-5]):
                try:
                    found[name[:-5]] = read_json(self.root / DEFERRED_JOBS / name)
                except (FileNotFoundError, ValueError):
                    continue
        return found

    def forget_deferred_jobs(self, content_hash: str) -> None:
        self._deferred(content_hash).unlink(missing_ok=True)

    @contextmanager
    def exclusive(self, content_hash: str, name: str, timeout: float) -> Iterator[None]:
        entry = self.entry(content_hash)
        entry.mkdir(exist_ok=True)
        with file_lock(entry / f".{name}.lock", timeout, busy_message="this file is being processed; retry shortly"):
            yield
