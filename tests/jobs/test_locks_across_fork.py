"""flock locks and fork: a process that forks while one of its threads holds a lock.

The job supervisor forks job processes while its store-passes thread takes the queue's
lock; a forked child shares the lock's open file description, so a lock let go by
closing alone stayed held for as long as the (idle, long-lived) job process lived: the
supervisor then waited for its own queue lock for ever (tests/scan/test_scan_backfill.py's
S3 case hung 1 run in 2). Real processes, real flock."""
from __future__ import annotations

import fcntl
import multiprocessing
import os
import signal
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

from falconproc.locks import DirectoryLock, SlotSemaphore, ThreadLock, file_lock
from falconproc.observability.metrics_dir import fold_lock
from tests.support.wait import wait_for

FORK = multiprocessing.get_context("fork")


def _locks(tmp_path: Path) -> dict[str, Callable[[], AbstractContextManager]]:
    (tmp_path / "dir").mkdir(exist_ok=True)
    slots = SlotSemaphore(tmp_path, "render", 1)
    return {
        "file_lock": lambda: file_lock(tmp_path / "queue.lock"),
        "DirectoryLock": lambda: DirectoryLock(tmp_path / "dir"),
        "SlotSemaphore": lambda: slots.acquire(timeout=5),
        "fold_lock": lambda: fold_lock(str(tmp_path), exclusive=True),  # the master's metrics fold
    }


# The file each kind of lock flocks.
LOCKED_FILE = {"file_lock": "queue.lock", "DirectoryLock": "dir", "SlotSemaphore": ".render-slot-0.lock",
               "fold_lock": ".fold.lock"}
KINDS = list(LOCKED_FILE)


def _is_free(tmp_path: Path, kind: str) -> bool:
    """Whether another process can take the lock now."""
    def probe() -> None:
        fd = os.open(tmp_path / LOCKED_FILE[kind], os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os._exit(1)
        os._exit(0)

    proc = FORK.Process(target=probe)
    proc.start()
    proc.join(10)
    return proc.exitcode == 0


def _idle_child() -> multiprocessing.Process:
    proc = FORK.Process(target=signal.pause)  # an idle job process, waiting for work
    proc.start()
    return proc


@pytest.mark.parametrize("kind", KINDS)
def test_a_lock_a_thread_held_while_the_process_forked_is_free_once_the_thread_lets_go(tmp_path, kind):
    lock = _locks(tmp_path)[kind]
    held, let_go = threading.Event(), threading.Event()

    def holder() -> None:
        with lock():
            held.set()
            let_go.wait(10)

    thread = threading.Thread(target=holder)
    thread.start()
    assert held.wait(10)
    child = _idle_child()  # forked while the thread holds the lock
    try:
        assert not _is_free(tmp_path, kind)  # the probe works: held is held
        let_go.set()
        thread.join(10)
        assert _is_free(tmp_path, kind), "the forked child kept the lock its parent's thread let go"
    finally:
        child.kill()
        child.join()


def _holder_that_forks(tmp_path: str, kind: str, child_pid: multiprocessing.Queue) -> None:
    held = threading.Event()

    def hold() -> None:
        with _locks(Path(tmp_path))[kind]():
            held.set()
            threading.Event().wait()

    threading.Thread(target=hold, daemon=True).start()
    held.wait(10)
    child = _idle_child()
    child_pid.put(child.pid)
    signal.pause()


@pytest.mark.parametrize("kind", KINDS)
def test_a_holder_that_dies_frees_its_lock_though_it_forked_while_holding_it(tmp_path, kind):
    pids = FORK.Queue()
    holder = FORK.Process(target=_holder_that_forks, args=(str(tmp_path), kind, pids))
    holder.start()
    child_pid = pids.get(timeout=10)
    try:
        assert not _is_free(tmp_path, kind)
        os.kill(holder.pid, signal.SIGKILL)
        # Not join(): its sentinel pipe is open in the holder's child too.
        wait_for(lambda: holder.exitcode is not None, 10, message="the holder's death")
        assert _is_free(tmp_path, kind), "the holder's forked child kept the lock after the holder died"
    finally:
        os.kill(child_pid, signal.SIGKILL)


def test_a_thread_lock_held_at_the_fork_is_free_in_the_child():
    lock = ThreadLock()
    held, let_go = threading.Event(), threading.Event()

    def holder() -> None:
        with lock:
            held.set()
            let_go.wait(10)

    thread = threading.Thread(target=holder)
    thread.start()
    assert held.wait(10)

    def child() -> None:
        os._exit(0 if lock._lock.acquire(timeout=2) else 1)

    try:
        proc = FORK.Process(target=child)
        proc.start()
        proc.join(10)
        assert proc.exitcode == 0, "the child waited for a lock its parent's thread held at the fork"
        assert lock._lock.locked()  # the parent's thread still holds its own
    finally:
        let_go.set()
        thread.join(10)
