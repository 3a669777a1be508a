"""The flat-file queue's doorbell: a FIFO the supervisor waits on instead of polling."""
from __future__ import annotations

import os
import select
import stat

from falconproc.queue.flatfile import FlatFileQueue
from tests.support.jobs import random_hash


def _rung(fd: int) -> bytes:
    ready, _, _ = select.select([fd], [], [], 0)
    if not ready:
        return b""
    return os.read(fd, 4096)


def test_enqueue_without_a_listener_still_enqueues(tmp_path):
    q = FlatFileQueue(tmp_path / "q", fsync=False)
    assert stat.S_ISFIFO(os.stat(tmp_path / "q" / "doorbell").st_mode)
    job = q.enqueue("work", random_hash())  # nobody has the FIFO open: ENXIO is ignored
    assert q.get(job.id).status == "queued"


def test_each_enqueue_rings_and_clear_consumes(tmp_path):
    listener = FlatFileQueue(tmp_path / "q", fsync=False)
    web = FlatFileQueue(tmp_path / "q", fsync=False)  # another process's view of the same queue
    fd = listener.wakeup_fileno()
    assert _rung(fd) == b""
    web.enqueue("work", random_hash())
    web.enqueue("work", random_hash())
    assert select.select([fd], [], [], 0)[0] == [fd]
    listener.clear_wakeup()
    assert _rung(fd) == b""


def test_a_batch_rings_once_at_its_end(tmp_path):
    listener = FlatFileQueue(tmp_path / "q", fsync=False)
    web = FlatFileQueue(tmp_path / "q", fsync=False)
    fd = listener.wakeup_fileno()
    with web.batch():
        web.enqueue("image", random_hash())
        with web.batch():
            web.enqueue("ocr", random_hash())
        assert _rung(fd) == b"", "the supervisor must see the upload's jobs together"
    assert _rung(fd) == b"\0"
    with web.batch():
        pass  # nothing enqueued: no wake-up
    assert _rung(fd) == b""


def test_a_duplicate_enqueue_does_not_ring(tmp_path):
    listener = FlatFileQueue(tmp_path / "q", fsync=False)
    fd = listener.wakeup_fileno()
    h = random_hash()
    listener.enqueue("work", h)
    listener.clear_wakeup()
    listener.enqueue("work", h)  # the same work is already pending
    assert _rung(fd) == b""


def test_a_filesystem_without_fifos_falls_back_to_polling(tmp_path, monkeypatch):
    def no_fifos(path, mode=0o666):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "mkfifo", no_fifos)
    q = FlatFileQueue(tmp_path / "q", fsync=False)
    assert q.wakeup_fileno() is None
    job = q.enqueue("work", random_hash())
    assert q.get(job.id).status == "queued"
    q.clear_wakeup()
