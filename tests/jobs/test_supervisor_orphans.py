"""No orphans: what a job process starts (tesseract for OCR; here a `sleep 300` of the
test `spawn` job) dies with the job, however the job ends: its process SIGKILLed from
outside, or its supervisor SIGKILLed (under gunicorn, and running alone)."""
from __future__ import annotations

import signal
from pathlib import Path

import psutil

from falconproc.config import Settings
from falconproc.wiring import Components
from tests.jobs._helpers import JOB_ENV, alive, attempts_started, gone, state_files, supervisor_of, worker_log
from tests.support.jobs import open_service_queue, random_hash
from tests.support.service import service_env
from tests.support.wait import wait_for

SPAWN_ENV = {**JOB_ENV, "JOB_CONCURRENCY": "spawn=1", "JOB_TIMEOUTS": "spawn=600", "JOB_MAX_ATTEMPTS": "5",
             "GRACEFUL_TIMEOUT": "1"}


def started_attempt(root: Path, job_id: str, n: int) -> tuple[psutil.Process, psutil.Process]:
    """The job process and the `sleep` child of attempt ``n`` (0-based), once it started."""
    event = wait_for(lambda: (s := attempts_started(root, "spawn", job_id)) and len(s) > n and s[n], 30, 0.05,
                     f"attempt {n + 1} of the spawn job to start")
    job_proc, child = psutil.Process(event["pid"]), psutil.Process(event["child"])
    assert child.ppid() == job_proc.pid and child.name() == "sleep"
    return job_proc, child


def test_killing_a_job_process_or_its_supervisor_kills_the_jobs_children(fresh_service):
    svc = fresh_service(**SPAWN_ENV)
    root = Path(svc.env["QUEUE_PATH"])
    job = open_service_queue(svc).enqueue("spawn", random_hash())

    # 1. The job process is SIGKILLed from outside: its `sleep` is reparented, not killed,
    # unless the supervisor kills the job's process group.
    job_proc, child = started_attempt(root, job.id, 0)
    sup = supervisor_of(svc)
    assert sup is not None and job_proc.ppid() == sup.pid
    job_proc.send_signal(signal.SIGKILL)
    wait_for(lambda: gone(child), 5, 0.05, f"the sleep child {child.pid} of the SIGKILLed job process to die")

    # 2. The job is retried (the attempt failed); now its supervisor is SIGKILLed.
    job_proc, child = started_attempt(root, job.id, 1)
    assert job_proc.ppid() == sup.pid, "the retry runs under the same supervisor"
    sup.send_signal(signal.SIGKILL)
    wait_for(lambda: gone(job_proc) and gone(child), 5, 0.05,
             "the job process and its sleep child to die with their supervisor")

    # 3. The master's next supervisor runs the job again.
    job_proc, child = started_attempt(root, job.id, 2)
    new_sup = supervisor_of(svc)
    assert new_sup is not None and new_sup.pid != sup.pid and job_proc.ppid() == new_sup.pid
    assert open_service_queue(svc).get(job.id).attempts == 3


def test_a_job_killed_at_its_timeout_takes_its_children_along(fresh_service):
    svc = fresh_service(**{**SPAWN_ENV, "JOB_TIMEOUTS": "spawn=2", "JOB_MAX_ATTEMPTS": "1"})
    root = Path(svc.env["QUEUE_PATH"])
    queue = open_service_queue(svc)
    job = queue.enqueue("spawn", random_hash())
    job_proc, child = started_attempt(root, job.id, 0)
    wait_for(lambda: queue.get(job.id).status == "dead", 20, 0.1, "the job to be killed at its timeout")
    assert "timed out" in queue.get(job.id).last_error
    wait_for(lambda: gone(job_proc) and gone(child), 5, 0.05, "the killed job's process and child to be gone")


def test_a_standalone_worker_killed_by_sigkill_leaves_no_job_or_child(tmp_path, standalone_worker):
    """No gunicorn master here to clean up after it: the job process itself must notice
    that its supervisor died and take its process group down."""
    env = service_env(tmp_path / "alone", **SPAWN_ENV)
    root = Path(env["QUEUE_PATH"])
    queue = Components(Settings.from_env(env)).queue
    job = queue.enqueue("spawn", random_hash())
    worker = standalone_worker(env)
    job_proc, child = started_attempt(root, job.id, 0)
    assert job_proc.ppid() == worker.pid, worker_log(worker)
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=10)
    wait_for(lambda: gone(job_proc) and gone(child), 5, 0.05,
             "the job process and its sleep child to die with the killed worker")
    # The claim stays behind (nobody released it); the next worker reaps it at once.
    assert state_files(root)["claimed"] == [job.id]
    again = standalone_worker(env)
    job_proc, child = started_attempt(root, job.id, 1)
    assert job_proc.ppid() == again.pid
    again.send_signal(signal.SIGTERM)
    assert again.wait(timeout=30) == 0, worker_log(again)
    assert alive([job_proc, child]) == []
    assert state_files(root)["claimed"] == [] and queue.get(job.id).attempts == 1  # released: attempt 2 undone
