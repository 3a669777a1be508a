"""The job supervisor, in process: a real FlatFileQueue, real job processes (forked
from the test), the test-only job types of tests.support.jobs_plugin, and a memory
governor whose reading the test sets."""
from __future__ import annotations

import itertools
import os
import time
from pathlib import Path

import psutil
import pytest

import tests.support.jobs_plugin  # noqa: F401 - registers work/hang/crash/fail/hog/sized
from falconproc.config import Settings
from falconproc.observability.governor import MemoryGovernor
from falconproc.jobs import registry
from falconproc.jobs.supervisor import Supervisor
from falconproc.observability.memory import MemoryReading
from falconproc.queue import DEAD, DONE, QUEUED, RUNNING
from falconproc.queue.flatfile import FlatFileQueue
from falconproc.wiring import load_job_types
from falconproc.wiring import Components
from tests.jobs._helpers import intervals, max_overlap, read_joblog, state_files
from tests.support.jobs import random_hash

MiB = 1024 * 1024


class FakeMemory:
    """What the governor reads: the test moves ``used`` up and down."""

    def __init__(self, used: int = 100 * MiB):
        self.used = used

    def __call__(self) -> MemoryReading:
        return MemoryReading(tree_rss=self.used, processes=1, cgroup_current=None, cgroup_max=None)


class Harness:
    def __init__(self, tmp_path: Path, memory: FakeMemory | None = None, **overrides):
        options = dict(
            queue_path=tmp_path / "queue",
            job_plugins=("tests.support.jobs_plugin",),
            job_backoff_base=0.05,
            job_backoff_cap=0.2,
            job_lease_seconds=5.0,
            graceful_timeout=1,
            fsync=False,
            job_concurrency={"work": 2, "sized": 1},
            job_timeouts={"work": 30.0, "hang": 30.0, "hog": 30.0, "sized": 30.0},
        )
        options.update(overrides)
        self.settings = Settings(**options)
        load_job_types(self.settings)  # the built-in types too, as `falconproc worker` does
        self.queue: FlatFileQueue = Components(self.settings).queue
        self.memory = memory or FakeMemory()
        # a clock that jumps a second per call: every reading is fresh
        self.governor = MemoryGovernor(self.settings, reader=self.memory, clock=itertools.count(0, 1.0).__next__)
        self.sup = Supervisor(self.settings, self.queue, self.governor, Components(self.settings).job_context)

    @property
    def root(self) -> Path:
        return self.settings.queue_path

    def enqueue(self, job_type: str, **payload):
        return self.queue.enqueue(job_type, random_hash(), payload=payload)

    def run_until(self, predicate, timeout: float, message: str = "condition"):
        deadline = time.monotonic() + timeout
        while True:
            busy = self.sup.step()
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {message}; "
                                     f"states {state_files(self.root)}")
            if not busy:
                time.sleep(0.01)

    def run_for(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if not self.sup.step():
                time.sleep(0.01)

    def status(self, job) -> str:
        return self.queue.get(job.id).status

    def all_finished(self, *jobs) -> bool:
        return all(self.status(j) in (DONE, DEAD) for j in jobs)

    def child_pids(self) -> set[int]:
        return {c.pid for c in psutil.Process().children() if c.status() != psutil.STATUS_ZOMBIE}

    def kill_everything(self) -> None:
        for r in self.sup.running:
            if r.proc is not None:
                r.proc.kill()
        for pool in self.sup.idle.values():
            for proc in pool:
                proc.kill()
        self.sup.running.clear()
        self.sup.idle.clear()


@pytest.fixture
def harness(tmp_path):
    made: list[Harness] = []

    def make(**overrides) -> Harness:
        h = Harness(tmp_path / f"h{len(made)}", **overrides)
        made.append(h)
        return h

    yield make
    for h in made:
        h.kill_everything()


def test_success_path(harness):
    h = harness()
    jobs = [h.enqueue("work", seconds=0.05) for _ in range(3)]
    h.run_until(lambda: h.all_finished(*jobs), 15, "work jobs to finish")
    for job in jobs:
        done = h.queue.get(job.id)
        assert done.status == DONE and done.attempts == 1 and done.last_error is None
        output = Path(done.result["output"])
        assert output.read_text() == job.content_hash
    events = read_joblog(h.root, "work")
    assert {e["id"] for e in events if e["event"] == "end"} == {j.id for j in jobs}
    assert all(e["pid"] != os.getpid() for e in events), "jobs must run in child processes"
    assert h.queue.stats() == {"queued": 0, "running": 0, "retrying": 0, "done": 3, "dead": 0}


def test_hung_job_is_killed_at_its_timeout_and_dead_lettered(harness):
    h = harness(job_timeouts={"hang": 0.4, "work": 30.0}, job_max_attempts=2)
    hung = h.enqueue("hang")
    other = h.enqueue("work", seconds=0.1)  # other jobs keep running meanwhile
    started = time.monotonic()
    h.run_until(lambda: h.all_finished(hung, other), 20, "the hung job to be dead-lettered")
    elapsed = time.monotonic() - started
    dead = h.queue.get(hung.id)
    assert dead.status == DEAD and dead.attempts == 2
    assert "timed out" in dead.last_error
    assert h.status(other) == DONE
    assert elapsed < 10, f"two 0.4 s timeouts took {elapsed:.1f}s"
    assert not any(r.job.id == hung.id for r in h.sup.running)


def test_crashing_job_is_dead_lettered(harness):
    h = harness(job_max_attempts=2)
    crash = h.enqueue("crash")
    others = [h.enqueue("work", seconds=0.05) for _ in range(3)]
    h.run_until(lambda: h.all_finished(crash, *others), 20, "the crash job to be dead-lettered")
    dead = h.queue.get(crash.id)
    assert dead.status == DEAD and dead.attempts == 2
    assert "job process died" in dead.last_error and "3" in dead.last_error
    assert all(h.status(j) == DONE for j in others), "a crashing job must not affect others"


def test_failing_job_is_dead_lettered_with_its_exception(harness):
    h = harness(job_max_attempts=3)
    fail = h.enqueue("fail")
    h.run_until(lambda: h.all_finished(fail), 20, "the failing job to be dead-lettered")
    dead = h.queue.get(fail.id)
    assert dead.status == DEAD and dead.attempts == 3
    assert dead.last_error == "ValueError: this job always fails"
    assert dead.public()["lastError"] == "ValueError: this job always fails"


def test_hog_is_killed_past_the_job_memory_limit(harness):
    limit = 256 * MiB
    h = harness(job_memory_max_bytes=limit, job_max_attempts=1)
    hog = h.enqueue("hog")
    h.run_until(lambda: h.all_finished(hog), 30, "the hog to be killed")
    dead = h.queue.get(hog.id)
    assert dead.status == DEAD
    assert "exceeded the job memory limit" in dead.last_error and str(limit) in dead.last_error
    assert h.sup.running == []


def test_per_type_concurrency_limit_holds(harness):
    h = harness(job_concurrency={"work": 2, "sized": 1})
    work = [h.enqueue("work", seconds=0.3) for _ in range(8)]
    sized = [h.enqueue("sized", seconds=0.2) for _ in range(4)]
    h.run_until(lambda: h.all_finished(*work, *sized), 30, "all jobs to finish")
    assert all(h.status(j) == DONE for j in work + sized)
    work_spans = intervals(read_joblog(h.root, "work"))
    sized_spans = intervals(read_joblog(h.root, "sized"))
    assert len(work_spans) == 8 and len(sized_spans) == 4
    assert max_overlap(work_spans) == 2, "work: limit 2, and it did run two at a time"
    assert max_overlap(sized_spans) == 1
    assert max_overlap(work_spans + sized_spans) <= 3


def test_job_processes_are_recycled_after_n_jobs(harness):
    h = harness(job_recycle_after=2, job_concurrency={"work": 1})
    jobs = [h.enqueue("work", seconds=0.0) for _ in range(6)]
    h.run_until(lambda: h.all_finished(*jobs), 30, "all jobs to finish")
    pids = [e["pid"] for e in read_joblog(h.root, "work") if e["event"] == "start"]
    assert len(pids) == 6
    per_pid = {pid: pids.count(pid) for pid in pids}
    assert len(per_pid) == 3 and set(per_pid.values()) == {2}, per_pid
    # recycled processes exited (they are not idling around)
    assert not set(per_pid) & h.child_pids()


def test_job_waits_while_memory_does_not_admit_it(harness):
    memory = FakeMemory(used=1200 * MiB)  # over limit - headroom (1152 MiB) with any estimate
    h = harness(memory=memory, job_lease_seconds=1.0)
    job = h.enqueue("work", seconds=0.0)
    h.run_for(1.5)
    waiting = h.queue.get(job.id)
    assert waiting.status == QUEUED and waiting.attempts == 0 and waiting.last_error is None
    assert read_joblog(h.root, "work") == []
    memory.used = 200 * MiB
    h.run_until(lambda: h.all_finished(job), 15, "the job to start once memory is available")
    assert h.queue.get(job.id).status == DONE and h.queue.get(job.id).attempts == 1


def test_claimed_job_waits_for_its_own_estimate_without_failing(harness):
    """The type's default estimate fits, this job's own (bigger) one does not: it is
    claimed and waits, heartbeating past its lease, and starts once memory drops."""
    memory = FakeMemory(used=850 * MiB)  # limit - headroom is 1152 MiB: 256 MiB fits, 600 MiB does not
    h = harness(memory=memory, job_lease_seconds=1.0)
    big = h.enqueue("sized", seconds=0.0, estimate=600 * MiB)
    h.run_for(2.6)  # > 2 leases, and the supervisor reaps every 2 s
    waiting = h.queue.get(big.id)
    assert waiting.status == RUNNING and waiting.attempts == 1 and waiting.last_error is None
    assert read_joblog(h.root, "sized") == [], "started although memory did not admit it"
    assert [r.proc for r in h.sup.running if r.job.id == big.id] == [None]
    memory.used = 300 * MiB
    h.run_until(lambda: h.all_finished(big), 15, "the job to start once memory is available")
    done = h.queue.get(big.id)
    assert done.status == DONE and done.attempts == 1 and done.last_error is None


def test_a_big_default_estimate_of_an_idle_type_does_not_block_small_jobs(harness):
    """Only memory for work that exists should hold work back: with no image job
    queued, the image type's 256 MiB default estimate must not stop a 64 MiB job."""
    memory = FakeMemory(used=1000 * MiB)  # 1000 + 64 fits under 1152 MiB; 1000 + 256 would not
    h = harness(memory=memory)
    assert h.governor.admits_job(64 * MiB) and not h.governor.admits_job(256 * MiB)
    assert registry.get("image") is not None and h.queue.stats()["queued"] == 0
    job = h.enqueue("work", seconds=0.0)
    h.run_until(lambda: h.all_finished(job), 5, "a job that fits in memory to run")
    assert h.status(job) == DONE


def test_drain_returns_running_jobs_untouched(harness):
    h = harness(graceful_timeout=1, job_concurrency={"work": 2})
    quick = h.enqueue("work", seconds=0.3)
    slow = h.enqueue("work", seconds=30)

    def both_started():
        return {e["id"] for e in read_joblog(h.root, "work") if e["event"] == "start"} == {quick.id, slow.id}

    h.run_until(both_started, 15, "both jobs to start")
    slow_pid = next(r.proc.process.pid for r in h.sup.running if r.job.id == slow.id)
    assert h.queue.get(slow.id).attempts == 1
    started = time.monotonic()
    h.sup.drain()
    # far less than the slow job's 30 s (the bound leaves room for a loaded machine)
    assert time.monotonic() - started < 15
    assert h.status(quick) == DONE, "a job that finishes within the grace period completes"
    back = h.queue.get(slow.id)
    assert back.status == QUEUED and back.attempts == 0 and back.last_error is None
    assert back.claimed_by is None
    assert not psutil.pid_exists(slow_pid) or psutil.Process(slow_pid).status() == psutil.STATUS_ZOMBIE
    assert not [e for e in read_joblog(h.root, "work") if e["id"] == slow.id and e["event"] == "end"]
    assert h.sup.running == [] and h.queue.stats()["running"] == 0
    # the next supervisor picks it up as a fresh first attempt
    assert h.queue.claim(["work"], "next:1").attempts == 1


def test_drain_restores_attempts_of_a_retried_job(harness):
    h = harness(graceful_timeout=1, job_concurrency={"work": 1})
    job = h.enqueue("work", seconds=30)
    h.run_until(lambda: read_joblog(h.root, "work"), 15, "the job to start")
    # simulate an earlier failed attempt: kill its process, let the supervisor count it
    pid = h.sup.running[0].proc.process.pid
    os.kill(pid, 9)
    h.run_until(lambda: len([e for e in read_joblog(h.root, "work") if e["event"] == "start"]) == 2, 15,
                "the retry to start")
    assert h.queue.get(job.id).attempts == 2
    h.sup.drain()
    back = h.queue.get(job.id)
    assert back.attempts == 1 and back.status == "retrying" and "job process died" in back.last_error


def test_drain_still_enforces_job_memory_and_time_limits(harness):
    """During the shutdown grace period jobs stay under their hard limits: a job that
    grows past JOB_MEMORY_MAX_BYTES or runs past its timeout is killed then (the
    attempt fails as usual), not left to grow or spin until the grace period ends."""
    limit = 128 * MiB
    # A grace period long enough for the hog to pass the limit on a loaded machine; the
    # drain must end as soon as both are killed, well before it.
    h = harness(graceful_timeout=10, job_memory_max_bytes=limit, job_max_attempts=3,
                job_concurrency={"slowhog": 1, "hang": 1}, job_timeouts={"hang": 0.5, "slowhog": 30.0})
    hog = h.enqueue("slowhog", step_mb=32, interval=0.05, max_mb=512)
    hang = h.enqueue("hang")
    h.run_until(lambda: sum(r.proc is not None for r in h.sup.running) == 2, 10, "both jobs to start")
    started = time.monotonic()
    h.sup.drain()
    elapsed = time.monotonic() - started
    hogged, hung = h.queue.get(hog.id), h.queue.get(hang.id)
    assert "exceeded the job memory limit" in (hogged.last_error or ""), (
        f"the hog ran unchecked through the {h.settings.graceful_timeout} s drain "
        f"(status {hogged.status}, attempts {hogged.attempts}, last error {hogged.last_error!r})")
    assert "timed out" in (hung.last_error or ""), (hung.status, hung.attempts, hung.last_error)
    assert hogged.attempts == hung.attempts == 1  # the failed attempts count; nothing is lost
    assert elapsed < h.settings.graceful_timeout, f"drain waited {elapsed:.1f}s for jobs past their limits"


def test_jobs_claimed_together_share_the_cores(harness):
    h = harness()
    h.sup.cpus = 4
    together = [h.enqueue("work", seconds=0.05) for _ in range(2)]  # both claimed in one step
    h.run_until(lambda: h.all_finished(*together), 15, "the pair to finish")
    assert [h.queue.get(j.id).result["cpuBudget"] for j in together] == [2, 2]
    alone = h.enqueue("work", seconds=0.05)
    h.run_until(lambda: h.all_finished(alone), 15, "the single job to finish")
    assert h.queue.get(alone.id).result["cpuBudget"] == 4


def test_an_enqueue_wakes_an_idle_supervisor_at_once(harness):
    import threading

    h = harness()
    h.sup._wait(0)  # opens the doorbell: from now on enqueues ring it
    timer = threading.Timer(0.2, lambda: h.enqueue("work"))
    timer.start()
    start = time.monotonic()
    h.sup._wait(10.0)
    woke = time.monotonic() - start
    timer.join()
    assert 0.15 < woke < 5.0, woke  # woken by the enqueue, not by the 10 s timeout
    h.sup._wait(0)
    start = time.monotonic()
    h.sup._wait(0.3)  # the wake-up was consumed: this one sleeps its full timeout
    assert time.monotonic() - start >= 0.25


def test_an_estimate_beyond_the_job_memory_limit_does_not_wait_for_ever(harness):
    """No amount of waiting makes 2 GiB fit under 1.25 GiB: the estimate counts as the job
    memory limit (768 MiB by default), past which the job is killed anyway."""
    memory = FakeMemory(used=300 * MiB)  # 300 + 768 <= 1152 MiB: admitted
    h = harness(memory=memory)
    big = h.enqueue("sized", seconds=0.0, estimate=2048 * MiB)
    h.run_until(lambda: h.all_finished(big), 15, "the over-estimated job to run")
    assert h.queue.get(big.id).status == DONE
