"""A bounded local copy of remote objects (LRU by access time), shared by the
processes of one host.

A remote backend keeps here what decoders need as real files (originals for jobs
and OCR) and what is served with sendfile (presets, text). Each file is published
by rename, so a reader never sees half of one; a reader holds a shared flock on
the file it uses, and eviction skips every file it cannot lock exclusively, so a
file in use is never removed under its reader.
"""
from __future__ import annotations

import errno
import fcntl
import os
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from falconproc.locks import ThreadLock

# Scan for eviction once this fraction of the budget was added since the last scan:
# a directory walk per insertion would be O(n) on the hot path.
_SCAN_FRACTION = 0.1


class ReadThroughCopy:
    def __init__(self, root: Path, max_bytes: int):
        self.root = Path(root)
        self.tmp_root = self.root / ".tmp"
        self.max_bytes = max_bytes
        self.tmp_root.mkdir(parents=True, exist_ok=True)
        self._added = 0
        self._lock = ThreadLock()

    def path(self, key: str) -> Path:
        return self.root / key

    def open(self, key: str) -> BinaryIO | None:
        """The local copy of ``key`` opened for reading, or None when there is none."""
        try:
            fh = open(self.path(key), "rb")
        except FileNotFoundError:
            return None
        _touch(fh.fileno())
        return fh

    def fill(self, key: str, fetch: Callable[[BinaryIO], None]) -> Path:
        """Write ``key`` with ``fetch(file)`` (FileNotFoundError passes through) and publish it."""
        final = self.path(key)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.tmp_root / f"{os.getpid()}-{uuid.uuid4().hex}"
        try:
            with open(tmp, "wb") as fh:
                fetch(fh)
                size = fh.tell()
            os.rename(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        self._account(size)
        return final

    def publish(self, key: str, source: Path) -> None:
        """Move an already written local file into the copy (after it was uploaded)."""
        final = self.path(key)
        final.parent.mkdir(parents=True, exist_ok=True)
        size = source.stat().st_size
        os.rename(source, final)
        self._account(size)

    @contextmanager
    def pinned(self, key: str, fetch: Callable[[BinaryIO], None]) -> Iterator[Path]:
        """A local path for ``key``, fetched when missing, not evicted inside the block."""
        for _ in range(3):
            fh = self.open(key)
            if fh is None:
                self.fill(key, fetch)
                continue
            with fh:
                fcntl.flock(fh.fileno(), fcntl.LOCK_SH)
                try:
                    if os.fstat(fh.fileno()).st_nlink == 0:  # evicted between open and flock
                        continue
                    yield self.path(key)
                    return
                finally:
                    # Not left to the close: a job process forked meanwhile shares the
                    # descriptor and would keep the copy pinned (see falconproc.locks).
                    fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
        raise OSError(errno.EAGAIN, f"could not keep a local copy of {key}")

    def _account(self, size: int) -> None:
        with self._lock:
            self._added += size
            if self._added < self.max_bytes * _SCAN_FRACTION:
                return
            self._added = 0
        self.evict()

    def evict(self) -> int:
        """Remove least recently used files until the copy fits its budget."""
        files: list[tuple[float, int, Path]] = []
        total = 0
        for dirpath, _dirs, names in os.walk(self.root):
            if dirpath == str(self.tmp_root):
                continue
            for name in names:
                path = Path(dirpath, name)
                try:
                    st = path.stat()
                except FileNotFoundError:
                    continue
                files.append((st.st_atime, st.st_size, path))
                total += st.st_size
        removed = 0
        for _atime, size, path in sorted(files):
            if total <= self.max_bytes:
                break
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    continue  # a reader has it pinned
                path.unlink(missing_ok=True)
                total -= size
                removed += 1
            finally:
                os.close(fd)
        return removed

    def sweep_temp(self) -> int:
        removed = 0
        prefix = f"{os.getpid()}-"
        for entry in os.scandir(self.tmp_root):
            # Only files of dead processes of this host: the pid is in the name.
            pid = entry.name.partition("-")[0]
            if entry.name.startswith(prefix) or (pid.isdigit() and _alive(int(pid))):
                continue
            Path(entry.path).unlink(missing_ok=True)
            removed += 1
        return removed


# Access times are refreshed at most this often: a write per cache hit would cost the
# serving hot path, and LRU needs no finer clock than this.
_TOUCH_GRANULARITY_NS = 60 * 10 ** 9


def _touch(fd: int) -> None:
    """Mark a file used now (atime drives LRU; relatime mounts would not update it)."""
    try:
        st = os.fstat(fd)
        now = _now_ns()
        if now - st.st_atime_ns > _TOUCH_GRANULARITY_NS:
            os.utime(fd, ns=(now, st.st_mtime_ns))
    except OSError:
        pass


def _now_ns() -> int:
    return time.time_ns()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
