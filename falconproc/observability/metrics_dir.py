"""The directory of one master's Prometheus sample files (multiprocess mode): made per
run, swept after killed runs, the files of dead processes folded into archives.

Kept apart from metrics.py on purpose: the gunicorn master uses this before it sets
PROMETHEUS_MULTIPROC_DIR (importing prometheus_client before that would put the workers
it forks in single-process mode), and it must not import metrics.py's metric
definitions at all (they would give the master sample files of its own)."""
from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from falconproc.locks import open_lock_fd, release_lock_fd

# The master exports its run directory to the workers under this name (prometheus_client's).
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def run_directory() -> str | None:
    """This service's run directory, as the master exported it to its workers (None
    outside `falconproc serve`, e.g. under falcon.testing)."""
    return os.environ.get(MULTIPROC_ENV) or None


# A run directory's owner lock: held (flock) by its master and, inherited, by its web
# workers; once none of them lives, the directory is debris.
_OWNER_LOCK = ".owner.lock"
RUN_DIR_PREFIX = "falconproc-metrics-"


def _try_lock(path: str) -> int | None:
    """An open descriptor holding an exclusive flock on ``path``, or None if it is held."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return fd
    except BlockingIOError:
        os.close(fd)
        return None


def new_run_directory(parent: str | None) -> str:
    """A fresh directory for this master's samples (those of a previous run must not
    leak into this one), owned by a lock kept for the life of the process tree.

    A master that was SIGKILLed never removed its directory: directories under the same
    parent whose owner lock nobody holds any more are removed first, so restarts do not
    pile them up. Another instance's live directory is locked and left alone; a new one
    is locked before it gets its visible name, so a sweeper never sees it unowned."""
    parent = parent or tempfile.gettempdir()
    for entry in os.scandir(parent):
        if not (entry.name.startswith(RUN_DIR_PREFIX) and entry.is_dir(follow_symlinks=False)):
            continue
        lock = os.path.join(entry.path, _OWNER_LOCK)
        if not os.path.exists(lock):
            continue  # not one of ours, or written by a version without the lock
        fd = _try_lock(lock)
        if fd is not None:
            shutil.rmtree(entry.path, ignore_errors=True)
            os.close(fd)
    staging = tempfile.mkdtemp(prefix=f".staging-{RUN_DIR_PREFIX}", dir=parent)
    fd = _try_lock(os.path.join(staging, _OWNER_LOCK))
    assert fd is not None  # a directory nobody else knows yet
    directory = os.path.join(parent, RUN_DIR_PREFIX + os.path.basename(staging).rsplit("-", 1)[-1])
    os.rename(staging, directory)
    return directory  # the descriptor stays open (and locked) until the tree exits


_FOLD_LOCK = ".fold.lock"
_FOLDED_TYPES = ("counter", "histogram")


@contextmanager
def fold_lock(directory: str, exclusive: bool) -> Iterator[None]:
    """Scrapes read under a shared lock, a fold writes under an exclusive one: no scrape
    sees a dead worker's samples both in its file and in the archive, or in neither."""
    # The master's keeper thread folds while the master may fork a web worker: a lock
    # from falconproc.locks is never kept by the child (see there).
    fd = open_lock_fd(Path(directory, _FOLD_LOCK))
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        release_lock_fd(fd)


def fold_dead_process(pid: int, directory: str) -> int:
    """After a web worker or the job supervisor died: its live gauges go (prometheus_client's
    mark_process_dead) and its counter and histogram samples are added into one archive
    file per type, so that totals stay monotonic while the files of recycled workers
    do not pile up under METRICS_DIR. Returns how many files were folded."""
    # Imported here, not at the top: see the module's docstring.
    from prometheus_client import multiprocess
    from prometheus_client.mmap_dict import MmapedDict

    multiprocess.mark_process_dead(pid, directory)
    folded = 0
    with fold_lock(directory, exclusive=True):
        for typ in _FOLDED_TYPES:
            source = os.path.join(directory, f"{typ}_{pid}.db")
            if not os.path.exists(source):
                continue
            archive = MmapedDict(os.path.join(directory, f"{typ}_archive.db"))
            try:
                for key, value, timestamp, _ in MmapedDict.read_all_values_from_file(source):
                    old, _ = archive.read_value(key)
                    archive.write_value(key, old + value, timestamp)
            finally:
                archive.close()
            os.remove(source)
            folded += 1
    return folded
