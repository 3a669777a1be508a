"""Cross-process locks on flock(2), all in one place.

flock locks belong to an open file description: the kernel drops them when the
holder closes the descriptor or dies (even by SIGKILL), so a crashed process never
leaves a lock behind. A forked child shares that description, though: a process that
forks while one of its threads holds a lock (the job supervisor forks job processes
while its store-passes thread enqueues) would leave the lock held by the child for as
long as the child lives, closing or not. So a lock is let go with LOCK_UN (which frees
it whoever else has the descriptor), and a forked child closes the lock descriptors it
inherited (so a holder that dies still frees its locks). Hence: never fork inside a
lock's block (the child would find its descriptor closed). Every lock of the service is
one of these:

- ``DirectoryLock``: read-modify-write of the files in a directory (store entries,
  cache metadata) and "this upload is alive" marks on temp directories;
- ``file_lock``: one holder of a lock file, waiting forever or up to a timeout
  (the queue's state transitions, single-flight preset rendering);
- ``SlotSemaphore``: at most N holders machine-wide (image renders in web workers).

And one that is not a flock: ``redis_lock``, one holder across instances sharing a
Redis, with a short expiry its holder keeps renewing instead of the kernel to free it
after a crash.
"""
from __future__ import annotations

import errno
import fcntl
import logging
import os
import threading
import time
import weakref
from collections.abc import Iterator
from typing import ClassVar
from contextlib import contextmanager
from pathlib import Path

from falconproc.errors import ServiceOverloaded

log = logging.getLogger(__name__)

_FIRST_DELAY, _MAX_DELAY = 0.005, 0.1

# Descriptors of this process's flock locks (open, held or being taken).
_lock_fds: set[int] = set()


def _close_inherited_lock_fds() -> None:
    """In a forked child: the threads that held these locks did not come along."""
    for fd in list(_lock_fds):
        try:
            os.close(fd)
        except OSError:
            pass
    _lock_fds.clear()


os.register_at_fork(after_in_child=_close_inherited_lock_fds)


def open_lock_fd(path: Path, flags: int = os.O_RDWR | os.O_CREAT) -> int:
    """A descriptor for a lock on ``path``; let it go with ``release_lock_fd``."""
    fd = os.open(path, flags, 0o644)
    _lock_fds.add(fd)
    return fd


def release_lock_fd(fd: int) -> None:
    """Unlock and close: LOCK_UN first, since a child forked meanwhile may share the
    descriptor's lock and closing ours alone would not free it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        _lock_fds.discard(fd)  # after the unlock: a child forked before it closes its copy
        os.close(fd)


class ThreadLock:
    """A threading.Lock that a forked child gets unlocked. The job supervisor forks job
    processes while its store-passes thread works: a lock that thread held at the fork
    would stay held in the child for ever (the thread does not come along). Never fork
    inside its block: the child's copy is a new, unheld lock."""

    _all: ClassVar[weakref.WeakSet[ThreadLock]] = weakref.WeakSet()

    def __init__(self) -> None:
        self._lock = threading.Lock()
        ThreadLock._all.add(self)

    def __enter__(self) -> ThreadLock:
        self._lock.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self._lock.release()

    @classmethod
    def _renew_all(cls) -> None:
        for lock in list(cls._all):
            lock._lock = threading.Lock()


os.register_at_fork(after_in_child=ThreadLock._renew_all)


def try_flock(fd: int) -> bool:
    """Take an exclusive flock on ``fd`` if it is free; False if another holder has it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return False
        raise
    return True


def flock_within(fd: int, timeout: float | None, busy_message: str) -> None:
    """Take an exclusive flock on ``fd``: blocking (``timeout`` None), or polling with
    backoff until ``timeout`` seconds passed (then ServiceOverloaded: retry shortly)."""
    if timeout is None:
        fcntl.flock(fd, fcntl.LOCK_EX)
        return
    deadline = time.monotonic() + timeout
    delay = _FIRST_DELAY
    while not try_flock(fd):
        if time.monotonic() > deadline:
            raise ServiceOverloaded(busy_message, retry_after=2)
        time.sleep(delay)
        delay = min(delay * 2, _MAX_DELAY)


@contextmanager
def file_lock(path: Path, timeout: float | None = None, *,
              busy_message: str = "this resource is busy; retry shortly") -> Iterator[None]:
    """Hold the lock file ``path`` (created if missing) for the block."""
    fd = open_lock_fd(path)
    try:
        flock_within(fd, timeout, busy_message)
        yield
    finally:
        release_lock_fd(fd)


class DirectoryLock:
    """An exclusive flock on a directory: serialises read-modify-write of files in it
    across processes, and is released by the kernel if the holder dies."""

    def __init__(self, path: Path, *, blocking: bool = True):
        self.path = path
        self.blocking = blocking
        self.fd = -1

    def acquire(self) -> bool:
        self.fd = open_lock_fd(self.path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            if self.blocking:
                fcntl.flock(self.fd, fcntl.LOCK_EX)
                return True
            if try_flock(self.fd):
                return True
        except BaseException:
            self.release()
            raise
        self.release()
        return False

    def release(self) -> None:
        if self.fd >= 0:
            release_lock_fd(self.fd)
            self.fd = -1

    def __enter__(self) -> DirectoryLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


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
        delay = _FIRST_DELAY
        while True:
            for path in self.paths:
                fd = open_lock_fd(path)
                if not try_flock(fd):
                    release_lock_fd(fd)
                    continue
                try:
                    yield 1 + self._held_by_others(path)
                finally:
                    release_lock_fd(fd)
                return
            if time.monotonic() > deadline:
                raise ServiceOverloaded("all image slots are busy; retry shortly", retry_after=2)
            time.sleep(delay)
            delay = min(delay * 2, _MAX_DELAY)

    def _held_by_others(self, mine: Path) -> int:
        held = 0
        for path in self.paths:
            if path == mine:
                continue
            fd = open_lock_fd(path)
            try:
                held += not try_flock(fd)
            finally:
                release_lock_fd(fd)  # the probe's lock, if it got it
        return held


@contextmanager
def redis_lock(client, name: str, *, expiry: float, timeout: float,
               busy_message: str = "this resource is busy; retry shortly") -> Iterator[None]:
    """Hold the Redis lock ``name`` (redis-py's Lock: SET NX with an expiry, released only
    by its holder's token) for the block, waiting up to ``timeout`` seconds (then
    ServiceOverloaded). While the block runs, a thread of the holder renews the expiry
    every ``expiry / 4`` seconds: a block may run far longer than ``expiry`` and keep the
    lock, and a holder that dies (SIGKILL, a host gone) frees it within ``expiry``.

    For work whose duplication is harmless but wasteful (rendering the same preset on two
    instances): when Redis does not answer, or the holder is stalled past ``expiry`` and
    loses the lock, the block runs without it rather than failing."""
    import redis

    # thread_local=False: the renewing thread must see the token the acquiring thread got.
    lock = client.lock(name, timeout=expiry, blocking_timeout=timeout, thread_local=False)
    try:
        acquired = lock.acquire()
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
        acquired = None  # Redis down: no cross-instance exclusion, the work stays correct
    if acquired is False:
        raise ServiceOverloaded(busy_message, retry_after=2)
    renewer = _LockRenewer(lock, expiry / 4) if acquired else None
    try:
        yield
    finally:
        if renewer is not None:
            renewer.stop()
        if acquired:
            try:
                lock.release()
            except redis.exceptions.RedisError:  # lost (and perhaps taken) meanwhile, or Redis down
                pass


class _LockRenewer:
    """Resets a held redis-py Lock's expiry every ``interval`` seconds until stopped, or
    until the lock turns out lost (then the holder carries on without it)."""

    def __init__(self, lock, interval: float):  # noqa: ANN001 (redis types stay out of the import graph)
        self._lock = lock
        self._interval = interval
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"renew {lock.name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import redis

        while not self._stopped.wait(self._interval):
            try:
                self._lock.reacquire()  # back to the full expiry, only if the token is still ours
            except redis.exceptions.LockError:  # expired and perhaps taken: nothing left to renew
                log.warning("lost the lock %s while holding it (renewal came too late)", self._lock.name)
                return
            except redis.exceptions.RedisError:  # Redis unreachable for now: try again next time
                continue

    def stop(self) -> None:
        self._stopped.set()
        # A renewal under way ends within the client's socket timeout; one after the
        # release finds the token gone and stops, so the release need not wait for it.
        self._thread.join(self._interval)
