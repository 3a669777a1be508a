"""Local filesystem content store.

Layout under FILE_STORAGE_PATH::

    {hash}/original        the uploaded bytes
    {hash}/metadata.json   contentHash, originalName, size, mimeType, uploadedAt, uploadedBy,
                           driveId, uploads: [every drive/user that sent these bytes]
    .tmp/                  uploads in flight (one locked directory each) and metadata temps

A new entry is assembled in a private directory under ``.tmp`` (original +
metadata.json, both fsynced) and renamed into place in one step, so an entry is
either absent or complete. Renaming a directory onto an existing non-empty one
fails, which is how concurrent uploads of the same bytes find out that another
one won: exactly one of them reports ``isNew``.
"""
from __future__ import annotations

import errno
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import psutil

from falconproc.errors import ContentNotFound
from falconproc.fsutil import atomic_write_json, fsync_dir, read_json
from falconproc.locks import DirectoryLock, ThreadLock
from falconproc.store.base import ContentStore, PendingUpload, StoredObject, UploadRecord, is_content_hash

TMP_DIR = ".tmp"
# Metadata temp files are written and renamed within milliseconds; older ones are debris.
STALE_TEMP_FILE_SECONDS = 600
USAGE_CACHE_SECONDS = 10.0


class LocalPendingUpload(PendingUpload):
    """A private, flock-held directory under .tmp with the ``original`` being written."""

    def __init__(self, tmp_root: Path):
        # The lock tells the sweeper this upload's process is alive; the kernel drops
        # it if the process dies, even by SIGKILL. A sweep can slip in between mkdir
        # and flock and remove the unlocked directory: then start again.
        for _ in range(5):
            self.dir = tmp_root / f"up-{os.getpid()}-{uuid.uuid4().hex}"
            os.mkdir(self.dir, 0o755)
            self.lock = DirectoryLock(self.dir)
            try:
                self.lock.acquire()
            except FileNotFoundError:
                continue
            if os.fstat(self.lock.fd).st_nlink > 0:
                break
            self.lock.release()
        else:
            raise OSError(errno.EAGAIN, "could not create an upload directory")
        self.path = self.dir / "original"
        self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)

    def fileno(self) -> int:
        return self.fd

    def open_written(self) -> BinaryIO:
        return open(self.path, "rb")

    def close_fd(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def abort(self) -> None:
        self._cancel_followers()
        self.close_fd()
        shutil.rmtree(self.dir, ignore_errors=True)
        self.lock.release()


class LocalContentStore(ContentStore):
    def __init__(self, root: Path, *, fsync: bool = True, page_cache_release_bytes: int = 0):
        self.root = Path(root)
        self.tmp_root = self.root / TMP_DIR
        self.fsync = fsync
        self.page_cache_release_bytes = page_cache_release_bytes
        self.tmp_root.mkdir(parents=True, exist_ok=True)
        self._usage_lock = ThreadLock()
        self._usage: tuple[float, tuple[int, int], int] | None = None

    # -- writing -----------------------------------------------------------------

    def begin_upload(self, expected_hash: str | None = None) -> LocalPendingUpload:
        return LocalPendingUpload(self.tmp_root)

    def commit(self, pending: PendingUpload, content_hash: str, metadata: dict[str, Any],
               record: UploadRecord) -> tuple[dict[str, Any], bool]:
        assert isinstance(pending, LocalPendingUpload)
        try:
            final = self._entry(content_hash)
            if self.fsync:
                os.fsync(pending.fd)  # a failure is final: abort below, never retry
            self._release_page_cache(pending.fd)
            pending.close_fd()
            if final.exists():
                pending.abort()
                return self._existing(content_hash, record), False
            # atomic_write_json fsyncs the file and the pending directory.
            atomic_write_json(pending.dir / "metadata.json", metadata, fsync=self.fsync)
            try:
                os.rename(pending.dir, final)
            except OSError as exc:
                if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
                pending.abort()  # a concurrent upload of the same bytes won the rename
                return self._existing(content_hash, record), False
            pending.lock.release()
            if self.fsync:
                try:
                    fsync_dir(self.root)
                except OSError:
                    # Not durable, so not stored: withdraw the entry before failing.
                    withdrawn = self.tmp_root / f"withdrawn-{uuid.uuid4().hex}"
                    os.rename(final, withdrawn)
                    shutil.rmtree(withdrawn, ignore_errors=True)
                    raise
            self._usage = None
            return metadata, True
        except BaseException:
            pending.abort()
            raise

    def _release_page_cache(self, fd: int) -> None:
        """Drop a large upload's pages from the page cache once they are on disk. Pages
        freed this way are what the next upload's writes get; without it every upload
        takes never-used memory, which costs ~10x the copy itself on a VM whose host
        backs guest memory on first touch (measured: 0.24 s vs 0.02 s of kernel CPU per
        100 MB), and the cache keeps cold originals instead of what is served. Jobs
        reading such an original soon after read it from disk. Advisory: errors ignored."""
        limit = self.page_cache_release_bytes
        if not limit:
            return
        try:
            if os.fstat(fd).st_size >= limit:
                # After fsync the pages are clean, so all of them go (dirty ones would stay).
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        except OSError:
            pass

    def _existing(self, content_hash: str, record: UploadRecord) -> dict[str, Any]:
        return self.add_upload(content_hash, record)

    def add_upload(self, content_hash: str, record: UploadRecord) -> dict[str, Any]:
        """Append a drive/user to an entry's uploader list without losing concurrent updates."""
        entry = self._entry(content_hash)
        if not (entry / "metadata.json").is_file():
            raise ContentNotFound(content_hash)
        with DirectoryLock(entry):
            metadata = read_json(entry / "metadata.json")
            uploads = metadata.setdefault("uploads", [])
            if not any(u["driveId"] == record.drive_id and u["userId"] == record.user_id for u in uploads):
                uploads.append(record.to_json())
                atomic_write_json(entry / "metadata.json", metadata, fsync=self.fsync, tmp_dir=self.tmp_root)
        if self.fsync:
            # The upload that stored it may not have made its rename durable yet; this
            # answer promises it too.
            fsync_dir(self.root)
        return metadata

    # -- reading -----------------------------------------------------------------

    def _entry(self, content_hash: str) -> Path:
        self._check_hash(content_hash)
        return self.root / content_hash

    @staticmethod
    def _check_hash(content_hash: str) -> None:
        if not is_content_hash(content_hash):  # never build a path from anything else
            raise ValueError("content hash must be 64 lowercase hex characters")

    def exists(self, content_hash: str) -> bool:
        return (self._entry(content_hash) / "original").is_file()

    @contextmanager
    def local_file(self, content_hash: str) -> Iterator[Path]:
        path = self._entry(content_hash) / "original"
        if not path.is_file():
            raise ContentNotFound(content_hash)
        yield path  # the stored original itself: entries are never removed

    def stat(self, content_hash: str) -> StoredObject:
        meta = self.metadata(content_hash)
        try:
            st = os.stat(self._entry(content_hash) / "original")
        except FileNotFoundError:
            raise ContentNotFound(content_hash) from None
        return StoredObject(content_hash, st.st_size, meta["mimeType"], st.st_mtime)

    def open(self, content_hash: str) -> BinaryIO:
        try:
            return open(self._entry(content_hash) / "original", "rb")
        except FileNotFoundError:
            raise ContentNotFound(content_hash) from None

    def metadata(self, content_hash: str) -> dict[str, Any]:
        try:
            return read_json(self._entry(content_hash) / "metadata.json")
        except FileNotFoundError:
            raise ContentNotFound(content_hash) from None

    def iter_hashes(self) -> Iterator[str]:
        with os.scandir(self.root) as entries:
            for entry in entries:
                if is_content_hash(entry.name) and entry.is_dir(follow_symlinks=False):
                    yield entry.name

    # -- housekeeping ------------------------------------------------------------

    def free_space(self) -> int:
        st = os.statvfs(self.root)
        return st.f_bavail * st.f_frsize

    def usage(self) -> tuple[int, int]:
        # A walk of the store per health probe would be O(n); a short cache keeps it cheap.
        # It is keyed on the store directory's mtime, which every new entry changes, so
        # every worker sees another worker's uploads at once.
        with self._usage_lock:
            now = time.monotonic()
            stamp = os.stat(self.root).st_mtime_ns
            if self._usage and self._usage[2] == stamp and now - self._usage[0] < USAGE_CACHE_SECONDS:
                return self._usage[1]
            files = total = 0
            for content_hash in self.iter_hashes():
                try:
                    total += os.stat(self.root / content_hash / "original").st_size
                    files += 1
                except FileNotFoundError:
                    continue
            self._usage = (now, (files, total), stamp)
            return files, total

    def sweep_temp(self, *, at_startup: bool = False) -> int:
        """Remove what dead uploads left: upload directories nobody holds, and loose temp
        files past STALE_TEMP_FILE_SECONDS. At start-up also the loose files of processes
        that are gone; never another live instance's (their writer's pid is in the name)."""
        removed = 0
        now = time.time()
        with os.scandir(self.tmp_root) as entries:
            for entry in entries:
                path = Path(entry.path)
                if entry.is_dir(follow_symlinks=False):
                    lock = DirectoryLock(path, blocking=False)
                    try:
                        if not lock.acquire():
                            continue  # its upload is still running
                    except FileNotFoundError:
                        continue
                    try:
                        shutil.rmtree(path, ignore_errors=True)
                        removed += 1
                    finally:
                        lock.release()
                else:
                    try:
                        if (now - entry.stat().st_mtime > STALE_TEMP_FILE_SECONDS
                                or (at_startup and not _writer_alive(entry.name))):
                            os.unlink(path)
                            removed += 1
                    except FileNotFoundError:
                        continue
        return removed


_TEMP_PID_RE = re.compile(r"-(\d+)-[0-9a-f]{32}\.tmp$")


def _writer_alive(name: str) -> bool:
    """Whether the process that writes this temp file (fsutil.temp_name) still runs here."""
    match = _TEMP_PID_RE.search(name)
    if not match:
        return False
    return psutil.pid_exists(int(match.group(1)))


__all__ = ["LocalContentStore", "LocalPendingUpload"]
