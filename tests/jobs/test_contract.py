"""The JobQueue contract: every backend (flat files today, Redis later) must pass this.

Each test takes ``queue_factory`` (tests/jobs/conftest.py) and runs once per
backend. Only the few tests that take ``flatfile_factory`` look at files on disk.
"""
from __future__ import annotations

import json
import multiprocessing
import os
import re
import threading
import time
from collections import Counter
from datetime import datetime

import pytest

from falconproc.queue import DEAD, DONE, QUEUED, RETRYING, RUNNING, ClaimLost, Job, JobNotFound, QueueFull
from falconproc.queue import flatfile as flatfile_module
from tests.jobs._helpers import FakeClock, STATE_DIRS, content_hash, state_files

FORK = multiprocessing.get_context("fork")
API_FIELDS = {"id", "type", "contentHash", "status", "attempts", "lastError", "createdAt", "updatedAt"}
ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
ALL_TYPES = ["image", "text", "ocr", "work"]


def drain_claims(queue, types=ALL_TYPES, worker="w:1") -> list[Job]:
    claimed = []
    while (job := queue.claim(types, worker)) is not None:
        claimed.append(job)
    return claimed


# -- enqueue / get / public shape -------------------------------------------------------


def test_enqueue_then_get_round_trips(queue_factory):
    clock = FakeClock()
    q = queue_factory(clock=clock)
    job = q.enqueue("text", content_hash("a"), variant="v1", payload={"lang": "eng"})
    assert job.id and job.status == QUEUED and job.attempts == 0 and job.last_error is None
    assert job.created_at == job.updated_at == clock.now

    got = q.get(job.id)
    assert (got.id, got.type, got.content_hash, got.variant) == (job.id, "text", content_hash("a"), "v1")
    assert got.status == QUEUED
    assert got.payload == {"lang": "eng"}
    assert got.max_attempts == 3


def test_public_shape_is_api_md(queue_factory):
    clock = FakeClock(1_700_000_000.25)
    q = queue_factory(clock=clock)
    job = q.enqueue("image", content_hash("img"))
    public = q.get(job.id).public()
    assert API_FIELDS <= set(public)
    assert public["id"] == job.id
    assert public["type"] == "image"
    assert public["contentHash"] == content_hash("img")
    assert public["status"] == "queued"
    assert public["attempts"] == 0
    assert public["lastError"] is None
    for key in ("createdAt", "updatedAt"):
        assert ISO_UTC.fullmatch(public[key]), public[key]
    assert public["createdAt"] == "2023-11-14T22:13:20.250Z"
    json.dumps(public)  # serialisable as-is

    clock.advance(5)
    claimed = q.claim(["image"], "w:1")
    q.fail(claimed, "boom")
    public = q.get(job.id).public()
    assert public["status"] == "retrying" and public["attempts"] == 1 and public["lastError"] == "boom"
    assert datetime.fromisoformat(public["updatedAt"].replace("Z", "+00:00")).timestamp() == pytest.approx(
        clock.now)


@pytest.mark.parametrize("bad_type", ["", "Image", "a-b", "../x", "x" * 33, "a b"])
def test_enqueue_rejects_invalid_type_names(queue_factory, bad_type):
    q = queue_factory()
    with pytest.raises(ValueError):
        q.enqueue(bad_type, content_hash(1))


# -- claim order ----------------------------------------------------------------------------


def test_priority_by_type_then_fifo(queue_factory):
    q = queue_factory()
    order = ["ocr", "text", "work", "image", "ocr", "text", "image", "work", "text"]
    enqueued = [q.enqueue(t, content_hash(i)) for i, t in enumerate(order)]
    claimed = drain_claims(q)
    # configured priorities image > text > ocr, unlisted types last; FIFO within a type
    rank = {"image": 0, "text": 1, "ocr": 2, "work": 3}
    expected = sorted(enqueued, key=lambda j: (rank[j.type], enqueued.index(j)))
    assert [j.id for j in claimed] == [j.id for j in expected]
    assert [j.type for j in claimed] == ["image"] * 2 + ["text"] * 3 + ["ocr"] * 2 + ["work"] * 2


def test_configured_priority_order_is_honoured(queue_factory):
    """JOB_PRIORITIES in another order than the default (image,video,text,ocr) decides the claims."""
    q = queue_factory(priorities=("ocr", "text", "image"))
    order = ["image", "work", "text", "ocr", "image", "text", "ocr"]
    enqueued = [q.enqueue(t, content_hash(i)) for i, t in enumerate(order)]
    claimed = drain_claims(q)
    assert [j.type for j in claimed] == ["ocr", "ocr", "text", "text", "image", "image", "work"]
    rank = {"ocr": 0, "text": 1, "image": 2, "work": 3}
    expected = sorted(enqueued, key=lambda j: (rank[j.type], enqueued.index(j)))
    assert [j.id for j in claimed] == [j.id for j in expected]


def test_fifo_within_a_type(queue_factory):
    q = queue_factory()
    ids = [q.enqueue("text", content_hash(i)).id for i in range(30)]
    assert [j.id for j in drain_claims(q, ["text"])] == ids


def test_claim_only_allowed_types(queue_factory):
    q = queue_factory()
    image = q.enqueue("image", content_hash(1))
    text = q.enqueue("text", content_hash(2))
    assert q.claim(["ocr"], "w:1") is None
    got = q.claim(["text", "ocr"], "w:1")
    assert got.id == text.id and got.type == "text"
    assert q.claim(["text", "ocr"], "w:1") is None
    assert q.get(image.id).status == QUEUED  # a higher-priority job of another type stays put
    assert q.claim([], "w:1") is None
    assert q.claim(["image"], "w:1").id == image.id


def test_claim_marks_running_and_counts_the_attempt(queue_factory):
    clock = FakeClock()
    q = queue_factory(clock=clock)
    job = q.enqueue("text", content_hash(1))
    clock.advance(3)
    claimed = q.claim(["text"], "host:42")
    assert claimed.id == job.id
    assert claimed.status == RUNNING and claimed.attempts == 1 and claimed.claimed_by == "host:42"
    stored = q.get(job.id)
    assert stored.status == RUNNING and stored.attempts == 1 and stored.claimed_by == "host:42"
    assert stored.updated_at == clock.now
    assert q.claim(["text"], "host:43") is None


# -- exactly-once claims under concurrency ---------------------------------------------------


def test_threads_claim_every_job_exactly_once(queue_factory):
    q = queue_factory(fsync=False)
    ids = {q.enqueue(["image", "text", "ocr"][i % 3], content_hash(i)).id for i in range(300)}
    barrier = threading.Barrier(8)
    results: list[list[str]] = [[] for _ in range(8)]
    errors: list[BaseException] = []

    def claimer(index: int) -> None:
        client = queue_factory.reopen()  # each thread its own client of the same queue
        try:
            barrier.wait(10)
            while (job := client.claim(["image", "text", "ocr"], f"t:{index}")) is not None:
                results[index].append(job.id)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=claimer, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    counts = Counter(i for r in results for i in r)
    assert set(counts) == ids
    assert all(c == 1 for c in counts.values()), [i for i, c in counts.items() if c > 1]
    assert q.stats()["running"] == 300 and q.stats()["queued"] == 0
    assert sum(1 for r in results if r) > 1, "the claims were not actually concurrent"


def _claim_in_child(factory, index: int, barrier, results) -> None:
    try:
        client = factory.reopen()
        barrier.wait(20)
        got = []
        while (job := client.claim(["image", "text", "ocr"], f"proc:{index}")) is not None:
            got.append(job.id)
            if len(got) % 5 == 0:
                time.sleep(0)  # let the others interleave
        results.put((index, got, None))
    except BaseException as exc:  # noqa: BLE001 - report, never hang the parent
        results.put((index, [], repr(exc)))
    finally:
        results.close()
        results.join_thread()
        os._exit(0)


def test_processes_claim_every_job_exactly_once(queue_factory):
    q = queue_factory(fsync=False)
    ids = {q.enqueue(["image", "text", "ocr"][i % 3], content_hash(i)).id for i in range(300)}
    procs_n = 4
    barrier = FORK.Barrier(procs_n)
    results = FORK.Queue()
    procs = [FORK.Process(target=_claim_in_child, args=(queue_factory, i, barrier, results))
             for i in range(procs_n)]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(10)
    assert [o[2] for o in outcomes if o[2]] == []
    counts = Counter(i for _, got, _ in outcomes for i in got)
    assert set(counts) == ids
    assert all(c == 1 for c in counts.values()), [i for i, c in counts.items() if c > 1]
    for job_id in ids:  # the stored claim matches the process that got it
        owner = next(idx for idx, got, _ in outcomes if job_id in got)
        assert q.get(job_id).claimed_by == f"proc:{owner}"


# -- dedup -----------------------------------------------------------------------------------


def test_dedup_while_queued_and_running(queue_factory):
    q = queue_factory()
    first = q.enqueue("image", content_hash(1), variant="thumb")
    assert q.enqueue("image", content_hash(1), variant="thumb").id == first.id
    claimed = q.claim(["image"], "w:1")
    assert claimed.id == first.id
    again = q.enqueue("image", content_hash(1), variant="thumb")
    assert again.id == first.id and again.status == RUNNING
    assert q.stats()["queued"] == 0 and q.stats()["running"] == 1


def test_dedup_while_waiting_for_a_retry(queue_factory):
    q = queue_factory()
    first = q.enqueue("text", content_hash(1))
    q.fail(q.claim(["text"], "w:1"), "transient")
    again = q.enqueue("text", content_hash(1))
    assert again.id == first.id and again.status == RETRYING and again.attempts == 1


def test_dedup_key_is_type_hash_and_variant(queue_factory):
    q = queue_factory()
    base = q.enqueue("image", content_hash(1), variant="a")
    others = [
        q.enqueue("image", content_hash(1), variant="b"),
        q.enqueue("image", content_hash(2), variant="a"),
        q.enqueue("text", content_hash(1), variant="a"),
        q.enqueue("image", content_hash(1)),
    ]
    assert len({base.id, *(j.id for j in others)}) == 5
    assert q.stats()["queued"] == 5


def test_new_job_after_done(queue_factory):
    q = queue_factory()
    first = q.enqueue("ocr", content_hash(1))
    q.complete(q.claim(["ocr"], "w:1"), {"ok": True})
    second = q.enqueue("ocr", content_hash(1))
    assert second.id != first.id and second.status == QUEUED and second.attempts == 0
    assert q.get(first.id).status == DONE
    assert q.enqueue("ocr", content_hash(1)).id == second.id


def test_new_job_after_dead(queue_factory):
    q = queue_factory(max_attempts=1)
    first = q.enqueue("ocr", content_hash(1))
    q.fail(q.claim(["ocr"], "w:1"), "bad")
    assert q.get(first.id).status == DEAD
    second = q.enqueue("ocr", content_hash(1))
    assert second.id != first.id and second.status == QUEUED
    assert q.get(first.id).status == DEAD


def test_find_returns_the_queued_or_running_job_for_the_work(queue_factory):
    clock = FakeClock()
    q = queue_factory(clock=clock, max_attempts=2)
    assert q.find("text", content_hash(1), "v") is None
    job = q.enqueue("text", content_hash(1), variant="v")
    assert q.find("text", content_hash(1), "v").id == job.id
    assert q.find("text", content_hash(1)) is None and q.find("ocr", content_hash(1), "v") is None
    claimed = q.claim(["text"], "w:1")
    found = q.find("text", content_hash(1), "v")
    assert found.id == job.id and found.status == RUNNING
    q.fail(claimed, "once")
    assert q.find("text", content_hash(1), "v").status == RETRYING
    clock.advance(5)
    q.complete(q.claim(["text"], "w:1"))
    assert q.find("text", content_hash(1), "v") is None
    dead = q.enqueue("text", content_hash(1), variant="v", max_attempts=1)
    q.fail(q.claim(["text"], "w:1"), "x")
    assert q.get(dead.id).status == DEAD and q.find("text", content_hash(1), "v") is None


def test_concurrent_enqueues_of_the_same_work_make_one_job(queue_factory):
    q = queue_factory(fsync=False)
    ids: list[str] = []
    barrier = threading.Barrier(8)

    def enqueue() -> None:
        client = queue_factory.reopen()
        barrier.wait(10)
        for i in range(20):
            ids.append(client.enqueue("text", content_hash(i)).id)

    threads = [threading.Thread(target=enqueue) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(ids) == 160 and len(set(ids)) == 20
    assert q.stats()["queued"] == 20


# -- capacity --------------------------------------------------------------------------------


def test_queue_full_at_max_pending(queue_factory):
    q = queue_factory(max_pending=3)
    jobs = [q.enqueue("text", content_hash(i)) for i in range(3)]
    with pytest.raises(QueueFull):
        q.enqueue("text", content_hash(99))
    assert q.stats()["queued"] == 3
    # the same work is still answered with the existing job, not refused
    assert q.enqueue("text", content_hash(0)).id == jobs[0].id
    # a claimed (running) job no longer counts as pending
    q.claim(["text"], "w:1")
    q.enqueue("text", content_hash(99))
    with pytest.raises(QueueFull):
        q.enqueue("text", content_hash(100))


def test_check_capacity_answers_what_enqueue_would(queue_factory):
    q = queue_factory(max_pending=2)
    assert q.max_pending == 2
    q.check_capacity()
    q.enqueue("text", content_hash(1))
    q.check_capacity()
    q.enqueue("text", content_hash(2))
    with pytest.raises(QueueFull):
        q.check_capacity()
    q.claim(["text"], "w:1")
    q.check_capacity()


def test_forced_enqueue_passes_the_admission_threshold(queue_factory):
    """MAX_QUEUE_SIZE admits uploads; the jobs of an upload already admitted and stored
    go in even when uploads racing it filled the queue in between."""
    q = queue_factory(max_pending=2)
    q.enqueue("work", content_hash(1))
    q.check_capacity()  # the upload is admitted with room for it ...
    q.enqueue("work", content_hash(2))  # ... another upload's job fills the queue meanwhile
    with pytest.raises(QueueFull):
        q.enqueue("image", content_hash("admitted"))
    image = q.enqueue("image", content_hash("admitted"), force=True)
    ocr = q.enqueue("ocr", content_hash("admitted"), force=True)
    assert q.pending_count() == 4 and q.stats()["queued"] == 4
    assert q.get(image.id).status == QUEUED and q.get(ocr.id).status == QUEUED
    # still deduplicated, and new uploads are still refused until the queue drains
    assert q.enqueue("image", content_hash("admitted"), force=True).id == image.id
    with pytest.raises(QueueFull):
        q.check_capacity()
    assert [j.id for j in drain_claims(q)][:2] == [image.id, ocr.id]
    q.check_capacity()


# -- retries, backoff, dead letters ---------------------------------------------------------


def test_backoff_doubles_from_base_up_to_the_cap(queue_factory):
    clock = FakeClock()
    q = queue_factory(clock=clock, max_attempts=7, backoff_base=1.0, backoff_cap=5.0)
    job = q.enqueue("text", content_hash(1))
    delays = []
    for attempt in range(1, 7):
        claimed = q.claim(["text"], "w:1")
        assert claimed is not None and claimed.id == job.id and claimed.attempts == attempt
        failed = q.fail(claimed, f"error {attempt}")
        assert failed.status == RETRYING
        delay = failed.not_before - clock.now
        delays.append(delay)
        assert q.get(job.id).status == RETRYING
        clock.advance(delay - 0.01)
        assert q.claim(["text"], "w:1") is None, f"claimable before its not-before (attempt {attempt})"
        clock.advance(0.02)
    assert delays == pytest.approx([1.0, 2.0, 4.0, 5.0, 5.0, 5.0])


def test_backoff_uses_the_configured_base(queue_factory):
    clock = FakeClock()
    q = queue_factory(clock=clock, max_attempts=4, backoff_base=0.25, backoff_cap=10.0)
    q.enqueue("text", content_hash(1))
    delays = []
    for _ in range(3):
        failed = q.fail(q.claim(["text"], "w:1"), "x")
        delays.append(failed.not_before - clock.now)
        clock.advance(failed.not_before - clock.now + 0.001)
    assert delays == pytest.approx([0.25, 0.5, 1.0])


def test_a_delayed_job_waits_for_its_time_without_blocking_others(queue_factory):
    # A streamed upload's `scan` job starts only when its verdict should be there already.
    clock = FakeClock()
    q = queue_factory(clock=clock)
    delayed = q.enqueue("text", content_hash(1), delay=2.0)
    assert delayed.status == QUEUED and delayed.not_before == pytest.approx(clock.now + 2.0)
    other = q.enqueue("text", content_hash(2))
    assert q.enqueue("text", content_hash(1)).id == delayed.id  # dedup: the same job, still delayed
    assert [j.id for j in drain_claims(q, ["text"])] == [other.id]
    clock.advance(1.99)
    assert q.claim(["text"], "w:1") is None, "claimed before its delay ran out"
    clock.advance(0.02)
    claimed = q.claim(["text"], "w:1")
    assert claimed is not None and claimed.id == delayed.id and claimed.attempts == 1


def test_a_job_in_backoff_does_not_block_others(queue_factory):
    clock = FakeClock()
    q = queue_factory(clock=clock)
    first = q.enqueue("text", content_hash(1))
    second = q.enqueue("text", content_hash(2))
    q.fail(q.claim(["text"], "w:1"), "transient")
    got = q.claim(["text"], "w:1")
    assert got.id == second.id
    assert q.claim(["text"], "w:1") is None
    clock.advance(1.01)
    assert q.claim(["text"], "w:1").id == first.id


def test_dead_letter_after_max_attempts(queue_factory):
    clock = FakeClock()
    q = queue_factory(clock=clock, max_attempts=3)
    job = q.enqueue("ocr", content_hash(1))
    for attempt in range(1, 4):
        claimed = q.claim(["ocr"], "w:1")
        assert claimed.attempts == attempt
        result = q.fail(claimed, f"tesseract failed ({attempt})")
        clock.advance(60)
    assert result.status == DEAD
    dead = q.get(job.id)
    assert dead.status == DEAD and dead.attempts == 3 and dead.last_error == "tesseract failed (3)"
    assert dead.public()["status"] == "dead" and dead.public()["lastError"] == "tesseract failed (3)"
    assert q.claim(["ocr"], "w:1") is None
    assert q.stats() == {"queued": 0, "running": 0, "retrying": 0, "done": 0, "dead": 1}


def test_per_job_max_attempts(queue_factory):
    q = queue_factory(max_attempts=5)
    job = q.enqueue("ocr", content_hash(1), max_attempts=1)
    assert q.fail(q.claim(["ocr"], "w:1"), "once").status == DEAD
    assert q.get(job.id).attempts == 1


def test_release_does_not_count_an_attempt(queue_factory):
    clock = FakeClock()
    q = queue_factory(clock=clock, max_attempts=2)
    job = q.enqueue("image", content_hash(1))
    for _ in range(5):  # far more releases than attempts allowed
        claimed = q.claim(["image"], "w:1")
        assert claimed is not None and claimed.attempts == 1
        released = q.release(claimed)
        assert released.attempts == 0 and released.status == QUEUED
        assert q.get(job.id).status == QUEUED and q.get(job.id).attempts == 0
    # after a real failure, a release keeps that failure but adds none
    q.fail(q.claim(["image"], "w:1"), "once")
    clock.advance(10)
    claimed = q.claim(["image"], "w:1")
    assert claimed.attempts == 2
    released = q.release(claimed)
    assert released.attempts == 1 and q.get(job.id).status == RETRYING
    assert q.claim(["image"], "w:1") is not None, "a released job is claimable at once"


# -- leases: heartbeat and reap ----------------------------------------------------------


def test_reap_returns_expired_leases(queue_factory):
    clock = FakeClock()
    q = queue_factory(clock=clock)
    job = q.enqueue("text", content_hash(1))
    q.claim(["text"], "w:1")
    clock.advance(9.9)
    assert q.reap(10) == 0
    assert q.get(job.id).status == RUNNING
    clock.advance(0.2)
    assert q.reap(10) == 1
    reaped = q.get(job.id)
    assert reaped.status == RETRYING and reaped.attempts == 1 and reaped.last_error
    again = q.claim(["text"], "w:2")
    assert again.id == job.id and again.attempts == 2, "the dead attempt counts"
    assert q.reap(10) == 0


def test_reap_returns_jobs_of_dead_claimers(queue_factory):
    q = queue_factory()
    a = q.enqueue("text", content_hash(1))
    b = q.enqueue("text", content_hash(2))
    q.claim(["text"], "host:100")
    q.claim(["text"], "host:200")
    seen = []

    def alive(claimed_by: str) -> bool:
        seen.append(claimed_by)
        return claimed_by != "host:100"

    assert q.reap(3600, alive=alive) == 1
    assert set(seen) >= {"host:100", "host:200"}
    assert q.get(a.id).status == RETRYING
    assert q.get(b.id).status == RUNNING
    assert q.reap(3600, alive=lambda _: True) == 0


def test_reap_dead_letters_at_max_attempts(queue_factory):
    q = queue_factory(max_attempts=2)
    job = q.enqueue("text", content_hash(1))
    q.claim(["text"], "host:1")
    assert q.reap(3600, alive=lambda _: False) == 1
    q.claim(["text"], "host:1")
    assert q.reap(3600, alive=lambda _: False) == 1
    dead = q.get(job.id)
    assert dead.status == DEAD and dead.attempts == 2 and dead.last_error
    assert q.enqueue("text", content_hash(1)).id != job.id


def test_heartbeat_keeps_the_lease_alive(queue_factory):
    clock = FakeClock()
    q = queue_factory(clock=clock)
    job = q.enqueue("text", content_hash(1))
    claimed = q.claim(["text"], "w:1")
    for _ in range(10):  # 10 x 4 s = 40 s running under a 10 s lease
        clock.advance(4)
        q.heartbeat(claimed)
        assert q.reap(10) == 0
    assert q.get(job.id).status == RUNNING
    clock.advance(10.5)
    assert q.reap(10) == 1


def test_heartbeat_of_a_job_no_longer_claimed_raises(queue_factory):
    q = queue_factory()
    q.enqueue("text", content_hash(1))
    claimed = q.claim(["text"], "w:1")
    q.complete(claimed)
    with pytest.raises(JobNotFound):
        q.heartbeat(claimed)


def test_heartbeat_of_a_lost_lease_raises_after_another_claim(queue_factory):
    """A claimer that stalled past its lease must learn it lost the job, even when
    another claimer already holds it again (the supervisor's _heartbeat relies on
    JobNotFound here to stop its copy: a job never runs concurrently with itself)."""
    clock = FakeClock()
    q = queue_factory(clock=clock)
    job = q.enqueue("text", content_hash(1))
    stale = q.claim(["text"], "host:1")
    clock.advance(30)
    assert q.reap(10) == 1
    fresh = q.claim(["text"], "host:2")
    assert fresh.id == job.id
    with pytest.raises(JobNotFound):
        q.heartbeat(stale)
    assert q.get(job.id).claimed_by == "host:2"


def _stale_and_fresh(queue_factory, **options):
    """A claimed by host:1 whose lease expired, reaped, then claimed by host:2."""
    clock = FakeClock()
    q = queue_factory(clock=clock, **options)
    job = q.enqueue("text", content_hash(1))
    stale = q.claim(["text"], "host:1")
    clock.advance(30)
    assert q.reap(10) == 1
    fresh = q.claim(["text"], "host:2")
    assert fresh.id == job.id and fresh.attempts == 2
    return q, clock, stale, fresh


def test_stale_complete_is_ignored(queue_factory):
    """A runner that lost its lease must not finish the job the next claimer is running."""
    q, _, stale, fresh = _stale_and_fresh(queue_factory)
    with pytest.raises(ClaimLost) as caught:
        q.complete(stale, {"from": "stale"})
    # what the supervisor catches and logs (heartbeat: JobNotFound, complete/fail: FileNotFoundError)
    assert isinstance(caught.value, JobNotFound) and isinstance(caught.value, FileNotFoundError)
    stored = q.get(fresh.id)
    assert stored.status == RUNNING and stored.claimed_by == "host:2" and stored.attempts == 2
    assert stored.result is None
    q.heartbeat(fresh)  # the fresh claim is intact
    assert q.complete(fresh, {"from": "fresh"}).status == DONE
    assert q.get(fresh.id).result == {"from": "fresh"}


def test_stale_fail_is_ignored(queue_factory):
    """A stale fail must not put the running job back in the queue (a third runner would
    start it beside the second) nor reset its attempts."""
    q, _, stale, fresh = _stale_and_fresh(queue_factory)
    with pytest.raises(ClaimLost):
        q.fail(stale, "late error from the lost attempt")
    stored = q.get(fresh.id)
    assert stored.status == RUNNING and stored.claimed_by == "host:2" and stored.attempts == 2
    assert stored.last_error != "late error from the lost attempt"
    assert q.claim(["text"], "host:3") is None, "the running job became claimable again"
    assert q.stats()["queued"] == 0 and q.stats()["running"] == 1
    with pytest.raises(ClaimLost):
        q.release(stale)
    assert q.claim(["text"], "host:3") is None
    assert q.fail(fresh, "the real error").attempts == 2


def test_stale_call_by_the_same_claimer_is_ignored(queue_factory):
    """The claim token tells a claimer's lost claim from its later one of the same job."""
    clock = FakeClock()
    q = queue_factory(clock=clock)
    q.enqueue("text", content_hash(1))
    first = q.claim(["text"], "host:1")
    clock.advance(30)
    assert q.reap(10) == 1
    second = q.claim(["text"], "host:1")
    assert second.id == first.id
    for stale_call in (lambda: q.heartbeat(first), lambda: q.complete(first), lambda: q.fail(first, "x"),
                       lambda: q.release(first)):
        with pytest.raises(ClaimLost):
            stale_call()
    assert q.get(second.id).status == RUNNING and q.get(second.id).attempts == 2
    q.heartbeat(second)
    assert q.complete(second).status == DONE


def test_stale_complete_of_a_requeued_job_is_ignored(queue_factory):
    """Reaped and not claimed again yet: the job stays queued for its retry."""
    clock = FakeClock()
    q = queue_factory(clock=clock)
    job = q.enqueue("text", content_hash(1))
    stale = q.claim(["text"], "host:1")
    clock.advance(30)
    assert q.reap(10) == 1
    with pytest.raises(ClaimLost):
        q.complete(stale, {"late": True})
    with pytest.raises(ClaimLost):
        q.fail(stale, "late")
    assert q.get(job.id).status == RETRYING and q.get(job.id).attempts == 1
    assert q.claim(["text"], "host:2").attempts == 2


def test_attempts_never_reset_nor_exceed_max(queue_factory):
    q, clock, stale, fresh = _stale_and_fresh(queue_factory, max_attempts=3)
    with pytest.raises(ClaimLost):
        q.fail(stale, "late")  # attempt 1's copy would have written attempts=1 back
    assert q.get(fresh.id).attempts == 2
    clock.advance(30)
    assert q.reap(10) == 1
    third = q.claim(["text"], "host:3")
    assert third.attempts == 3
    for lost in (stale, fresh):
        with pytest.raises(ClaimLost):
            q.fail(lost, "late")
        with pytest.raises(ClaimLost):
            q.release(lost)
    assert q.get(third.id).attempts == 3 and q.get(third.id).status == RUNNING
    third.attempts = 0  # a caller cannot lower the count ...
    dead = q.fail(third, "last")
    assert dead.status == DEAD and dead.attempts == 3 == q.get(third.id).attempts
    assert q.claim(["text"], "host:4") is None

    # ... and raising it (to dead-letter at once, as the supervisor does for permanent
    # errors) stops at max_attempts
    job = q.enqueue("text", content_hash(2))
    claimed = q.claim(["text"], "host:1")
    claimed.attempts = 99
    dead = q.fail(claimed, "permanent")
    assert dead.status == DEAD and q.get(job.id).attempts == 3


def test_reaper_dead_letters_go_through_on_reaped_dead(queue_factory):
    """A job whose last attempt's lease expires gets the same dead-letter bookkeeping as
    one that fails: no fail() caller is left to do it, so the queue calls its hook."""
    q = queue_factory(max_attempts=1)
    seen: list[Job] = []
    q.on_reaped_dead = seen.append
    job = q.enqueue("text", content_hash(1))
    q.claim(["text"], "host:1")
    assert q.reap(3600, alive=lambda _: False) == 1
    assert [(j.id, j.status, j.attempts) for j in seen] == [(job.id, DEAD, 1)]
    assert seen[0].last_error
    # a job the reaper only requeues is not reported; one failed by its runner is the caller's
    q2 = queue_factory.reopen(max_attempts=2)
    q2.on_reaped_dead = seen.append
    retried = q2.enqueue("text", content_hash(2))
    q2.claim(["text"], "host:1")
    assert q2.reap(3600, alive=lambda _: False) == 1
    assert q2.get(retried.id).status == RETRYING
    assert q2.fail(q2.claim(["text"], "host:1"), "boom").status == DEAD
    assert len(seen) == 1


def test_a_failing_on_reaped_dead_hook_does_not_stop_the_reaper(queue_factory):
    q = queue_factory(max_attempts=1)

    def broken(job: Job) -> None:
        raise RuntimeError("bookkeeping failed")

    q.on_reaped_dead = broken
    jobs = [q.enqueue("text", content_hash(i)) for i in range(2)]
    drain_claims(q, ["text"], "host:1")
    assert q.reap(3600, alive=lambda _: False) == 2
    assert [q.get(j.id).status for j in jobs] == [DEAD, DEAD]
    q.enqueue("text", content_hash(1))  # the queue still works


# -- results and stats ------------------------------------------------------------------------


def test_complete_stores_the_result(queue_factory):
    clock = FakeClock()
    q = queue_factory(clock=clock)
    job = q.enqueue("image", content_hash(1))
    claimed = q.claim(["image"], "w:1")
    clock.advance(2)
    done = q.complete(claimed, {"presets": ["thumb", "medium"], "bytes": 1234})
    assert done.status == DONE
    stored = q.get(job.id)
    assert stored.status == DONE and stored.attempts == 1
    assert stored.result == {"presets": ["thumb", "medium"], "bytes": 1234}
    assert stored.updated_at == clock.now
    assert stored.public()["status"] == "done"
    assert q.claim(["image"], "w:1") is None


def test_stats_count_each_state_by_its_name(queue_factory):
    clock = FakeClock()
    q = queue_factory(clock=clock, max_attempts=2)
    assert q.stats() == {"queued": 0, "running": 0, "retrying": 0, "done": 0, "dead": 0}
    for i in range(7):
        q.enqueue("text", content_hash(i))
    q.complete(q.claim(["text"], "w:1"))
    dying = q.claim(["text"], "w:1")
    dying.attempts = dying.max_attempts  # dead-lettered at once
    assert q.fail(dying, "x").status == DEAD
    assert q.fail(q.claim(["text"], "w:1"), "y").status == RETRYING  # back in the queue, not dead
    q.claim(["text"], "w:1")
    assert q.stats() == {"queued": 3, "running": 1, "retrying": 1, "done": 1, "dead": 1}
    # its backoff over, the retrying job is still "retrying" until claimed again; then running
    clock.advance(60)
    assert q.stats()["retrying"] == 1
    retried = [q.claim(["text"], "w:1") for _ in range(4)]
    assert sorted(j.attempts for j in retried) == [1, 1, 1, 2]
    assert q.stats() == {"queued": 0, "running": 5, "retrying": 0, "done": 1, "dead": 1}


def test_prune_done_forgets_old_done_jobs_only(queue_factory):
    clock = FakeClock()
    q = queue_factory(clock=clock, max_attempts=1)
    old = q.enqueue("text", content_hash("old"))
    q.complete(q.claim(["text"], "w:1"), {"n": 1})
    clock.advance(3600)
    recent = q.enqueue("text", content_hash("recent"))
    q.complete(q.claim(["text"], "w:1"), {"n": 2})
    dead = q.enqueue("text", content_hash("dead"))
    q.fail(q.claim(["text"], "w:1"), "x")
    running = q.enqueue("text", content_hash("running"))
    q.claim(["text"], "w:1")
    queued = q.enqueue("text", content_hash("queued"))

    assert q.prune_done() == 0  # the default keeps a day
    clock.advance(24 * 3600 - 3600 + 1)  # old: a day and a second; recent: a second short of it
    assert q.prune_done() == 1
    with pytest.raises(JobNotFound):
        q.get(old.id)
    assert q.get(recent.id).status == DONE
    assert q.prune_done(older_than=60) == 1
    with pytest.raises(JobNotFound):
        q.get(recent.id)
    assert [q.get(j.id).status for j in (dead, running, queued)] == [DEAD, RUNNING, QUEUED]
    assert q.stats() == {"queued": 1, "running": 1, "retrying": 0, "done": 0, "dead": 1}
    assert q.prune_done(older_than=0) == 0


# -- ids ---------------------------------------------------------------------------------------

BAD_IDS = [
    "", "..", "../../etc/passwd", "../pending/x", "/etc/passwd", "00-00000000000000000000-text-0000000",
    "00-00000000000000000000-text-0000000g", "00-00000000000000000000-text-00000000\n",
    "00-00000000000000000000-te/xt-00000000", "00-00000000000000000000-text-00000000/../../../x",
    "%2e%2e%2fsecret", "x" * 5000, "00-00000000000000000000-TEXT-00000000",
]


@pytest.mark.parametrize("bad_id", BAD_IDS)
def test_invalid_ids_are_not_found(queue_factory, bad_id):
    q = queue_factory()
    q.enqueue("text", content_hash(1))
    with pytest.raises(JobNotFound):
        q.get(bad_id)


def test_unknown_well_formed_id_is_not_found(queue_factory):
    q = queue_factory()
    with pytest.raises(JobNotFound):
        q.get("01-17000000000000000000-text-deadbeef")


def test_invalid_ids_never_touch_the_filesystem(flatfile_factory, monkeypatch):
    q = flatfile_factory()
    job = q.enqueue("text", content_hash(1))
    # a readable job file outside the state directories, where traversal would land
    (q.root / "secret.json").write_text(json.dumps(q.get(job.id).to_json()))
    (q.root.parent / "outside.json").write_text(json.dumps(q.get(job.id).to_json()))
    touched = []
    real_read_json = flatfile_module.read_json

    def spy(path):
        touched.append(str(path))
        return real_read_json(path)

    monkeypatch.setattr(flatfile_module, "read_json", spy)
    for bad in ("../secret", "../../outside", "pending/../../secret", "..%2fsecret"):
        with pytest.raises(JobNotFound):
            q.get(bad)
    assert touched == []
    assert q.get(job.id).id == job.id and touched  # the spy does see real lookups


# -- consistency under churn ------------------------------------------------------------------


def test_get_never_misses_a_job_that_moves_between_states(queue_factory):
    """GET /jobs/{id} must not answer 404 for a job that exists: reads racing a
    claimed -> pending move (fail, release, reap) must still find it."""
    q = queue_factory(fsync=False, backoff_base=0.0, max_attempts=1_000_000)
    job = q.enqueue("text", content_hash(1))
    stop = threading.Event()
    errors: list[BaseException] = []

    def churn() -> None:
        client = queue_factory.reopen()
        try:
            while not stop.is_set():
                claimed = client.claim(["text"], "w:1")
                if claimed is not None:
                    client.release(claimed)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    worker = threading.Thread(target=churn)
    worker.start()
    misses = 0
    lookups = 0
    deadline = time.monotonic() + 1.5
    try:
        while time.monotonic() < deadline:
            lookups += 1
            try:
                q.get(job.id)
            except JobNotFound:
                misses += 1
    finally:
        stop.set()
        worker.join(10)
    assert not errors, errors
    assert misses == 0, f"{misses} of {lookups} lookups of an existing job raised JobNotFound"


def test_no_half_written_job_file_is_ever_visible(flatfile_factory):
    q = flatfile_factory(fsync=False, backoff_base=0.0, max_attempts=3)
    stop = threading.Event()
    errors: list[str] = []
    reads = Counter()

    def reader() -> None:
        while not stop.is_set():
            for state in STATE_DIRS:
                for name in os.listdir(q.root / state):
                    try:
                        data = (q.root / state / name).read_bytes()
                    except FileNotFoundError:
                        continue
                    try:
                        Job.from_json(json.loads(data))
                        reads[state] += 1
                    except ValueError as exc:
                        errors.append(f"{state}/{name}: {exc}: {data[:80]!r}")

    def writer(index: int) -> None:
        client = flatfile_factory.reopen()
        try:
            for i in range(60):
                client.enqueue(["image", "text", "ocr"][i % 3], content_hash(f"{index}-{i}"),
                               payload={"blob": "x" * 4000})
                job = client.claim(["image", "text", "ocr"], f"w:{index}")
                if job is None:
                    continue
                client.heartbeat(job)
                if i % 4 == 0:
                    client.fail(job, "e" * 500)
                elif i % 4 == 1:
                    client.release(job)
                else:
                    client.complete(job, {"n": i, "pad": "y" * 3000})
                client.reap(3600, alive=lambda _: True)
        except BaseException as exc:  # noqa: BLE001
            errors.append(repr(exc))

    readers = [threading.Thread(target=reader) for _ in range(2)]
    writers = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    for t in readers + writers:
        t.start()
    for t in writers:
        t.join(60)
    stop.set()
    for t in readers:
        t.join(10)
    assert errors == []
    assert sum(reads.values()) > 100
    files = state_files(q.root)
    all_ids = [i for ids in files.values() for i in ids]
    assert len(all_ids) == len(set(all_ids)), "a job is in two states at once"
    assert len(all_ids) == 240
    for state in STATE_DIRS:  # every file left is complete, valid JSON in its state
        for name in os.listdir(q.root / state):
            Job.from_json(json.loads((q.root / state / name).read_bytes()))
    assert os.listdir(q.root / "tmp") == [], "staging files left behind"
