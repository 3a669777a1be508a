"""The queue as the service wires it (wiring.Components from Settings, with the job registry
and the upload side's QueueScheduler), on the real FlatFileQueue: no processes, no HTTP."""
from __future__ import annotations

from pathlib import Path

import pytest

from falconproc.config import Settings
from falconproc.jobs import registry
from falconproc.jobs.registry import JobContext, JobType
from falconproc.jobs.supervisor import Supervisor
from falconproc.queue import DEAD, QUEUED, RETRYING, Job, QueueFull
from falconproc.jobs.scheduler import QueueScheduler
from falconproc.wiring import load_job_types
from falconproc.wiring import Components
from falconproc.observability.governor import MemoryGovernor
from tests.jobs._helpers import content_hash

PNG = {"mimeType": "image/png", "image": {"width": 64, "height": 48, "frames": 1}}


def settings_for(tmp_path: Path, **env: str) -> Settings:
    return Settings.from_env({"QUEUE_PATH": str(tmp_path / "queue"), "FSYNC": "0", **env})


@pytest.fixture
def builtin_types(tmp_path):
    load_job_types(Settings(queue_path=tmp_path / "queue"))  # image, text, ocr


def test_job_priorities_setting_orders_claims_and_the_supervisor(tmp_path, builtin_types):
    settings = settings_for(tmp_path, JOB_PRIORITIES="ocr,text,image")
    assert settings.job_priorities == ("ocr", "text", "image")
    queue = Components(settings).queue
    for i, job_type in enumerate(["image", "text", "ocr", "image", "text", "ocr"]):
        queue.enqueue(job_type, content_hash(i))
    claimed = []
    while (job := queue.claim(["image", "text", "ocr"], "w:1")) is not None:
        claimed.append(job.type)
    assert claimed == ["ocr", "ocr", "text", "text", "image", "image"]
    # the supervisor offers its slots to the types in the same order
    order = Supervisor(settings, queue, MemoryGovernor(settings), Components(settings).job_context).types_in_priority_order()
    assert order[:3] == ["ocr", "text", "image"]


def test_an_admitted_upload_gets_its_jobs_even_if_the_queue_filled_meanwhile(tmp_path, builtin_types):
    """MAX_QUEUE_SIZE refuses new uploads; an upload admitted before the queue filled is
    stored and answered 201 with its jobs, which must all be in the queue."""
    queue = Components(settings_for(tmp_path, MAX_QUEUE_SIZE="2")).queue
    scheduler = QueueScheduler(queue)
    queue.enqueue("text", content_hash("other-1"))
    scheduler.check_capacity()  # 1 of 2: this upload is admitted, its body streams ...
    queue.enqueue("text", content_hash("other-2"))  # ... while another upload fills the queue

    jobs = scheduler.jobs_for(content_hash("png"), PNG, is_new=True)
    assert sorted(j["type"] for j in jobs) == ["image", "ocr"]
    for j in jobs:
        assert queue.get(j["id"]).status == QUEUED
    assert queue.pending_count() == 4  # over the threshold by this upload's jobs
    with pytest.raises(QueueFull):  # the next upload is refused (503) until it drains
        scheduler.check_capacity()
    assert scheduler.jobs_for(content_hash("png"), PNG, is_new=False) == []


def test_jobs_of_the_same_upload_are_not_duplicated_past_the_threshold(tmp_path, builtin_types):
    queue = Components(settings_for(tmp_path, MAX_QUEUE_SIZE="1")).queue
    scheduler = QueueScheduler(queue)
    first = scheduler.jobs_for(content_hash("png"), PNG, is_new=True)
    again = scheduler.jobs_for(content_hash("png"), PNG, is_new=True)
    assert [j["id"] for j in again] == [j["id"] for j in first]
    assert queue.pending_count() == 2


def test_a_reaped_last_attempt_runs_the_types_on_dead_hook(tmp_path, monkeypatch):
    """Dead-lettered by the reaper (its process died on the last attempt) or by the
    supervisor's fail(): the job type's on_dead bookkeeping runs either way."""
    calls: list[tuple[Job, JobContext]] = []
    job_type = JobType("reapdead", lambda job, context: None, on_dead=lambda job, context: calls.append((job, context)))
    monkeypatch.setitem(registry._REGISTRY, job_type.name, job_type)
    settings = settings_for(tmp_path, JOB_MAX_ATTEMPTS="2")
    queue = Components(settings).queue
    job = queue.enqueue("reapdead", content_hash(1))

    queue.claim(["reapdead"], "host:1")
    assert queue.reap(3600, alive=lambda _: False) == 1
    assert queue.get(job.id).status == RETRYING and calls == []  # a retry is coming: not dead yet
    queue.claim(["reapdead"], "host:1")
    assert queue.reap(3600, alive=lambda _: False) == 1
    assert queue.get(job.id).status == DEAD
    assert len(calls) == 1
    dead, context = calls[0]
    assert (dead.id, dead.status, dead.attempts) == (job.id, DEAD, 2) and dead.last_error
    assert context.settings is settings


def test_a_failing_on_dead_hook_is_logged_not_raised(tmp_path, monkeypatch, caplog):
    def broken(job: Job, context: JobContext) -> None:
        raise RuntimeError("cannot record")

    monkeypatch.setitem(registry._REGISTRY, "reapdead", JobType("reapdead", lambda job, context: None,
                                                                 on_dead=broken))
    queue = Components(settings_for(tmp_path, JOB_MAX_ATTEMPTS="1")).queue
    job = queue.enqueue("reapdead", content_hash(1))
    queue.claim(["reapdead"], "host:1")
    assert queue.reap(3600, alive=lambda _: False) == 1
    assert queue.get(job.id).status == DEAD
    assert "on_dead hook of reapdead failed" in caplog.text


def test_the_supervisor_logs_and_drops_a_stale_complete_or_fail(tmp_path, builtin_types, caplog):
    """supervisor.py catches FileNotFoundError from complete/fail/release and JobNotFound
    from heartbeat: a lost claim (ClaimLost, both) is logged there and changes nothing."""
    settings = settings_for(tmp_path, JOB_MAX_ATTEMPTS="3")
    queue = Components(settings).queue
    sup = Supervisor(settings, queue, MemoryGovernor(settings), Components(settings).job_context)
    job = queue.enqueue("text", content_hash(1))
    stale = queue.claim(["text"], "host:1")
    assert queue.reap(3600, alive=lambda _: False) == 1
    fresh = queue.claim(["text"], "host:2")

    sup._complete(stale, {"late": True})
    sup._fail(stale, "late error")
    stale.attempts = stale.max_attempts  # a permanent error: dead-letter at once, were it still ours
    sup._fail(stale, "late permanent error")
    sup._report()  # the loop tells the queue after collecting and enforcing limits
    assert sup._unreported == []
    stored = queue.get(job.id)
    assert (stored.status, stored.claimed_by, stored.attempts, stored.result) == ("running", "host:2", 2, None)
    assert "after its lease was lost" in caplog.text
    queue.complete(fresh, {"ok": True})
