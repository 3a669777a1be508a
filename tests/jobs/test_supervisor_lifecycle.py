"""The job supervisor's lifecycle end to end: stopped with gunicorn, stopped alone (the
master starts another), and run alone as `falconproc worker` beside a service that runs
none. Jobs are the test types of tests.support.jobs_plugin plus real uploads."""
from __future__ import annotations

import signal
from pathlib import Path

import psutil
import requests

from falconproc.config import default_instance_id
from falconproc.queue import DONE, QUEUED
from tests.jobs._helpers import (
    JOB_ENV,
    alive,
    attempts_started,
    ends,
    job_files,
    job_processes,
    read_joblog,
    state_files,
    supervisor_of,
    worker_log,
)
from tests.support.content import unique_text
from tests.support.corpus import MEADOW
from tests.support.http import upload
from tests.support.jobs import open_service_queue, random_hash
from tests.support.wait import wait_for

# Jobs that outlast the 1 s grace period by far: a stop always returns them to the queue.
LONG_SECONDS = 12
ENV = {**JOB_ENV, "GRACEFUL_TIMEOUT": "1", "JOB_CONCURRENCY": "long=2,spawn=1,work=2",
       "JOB_TIMEOUTS": "long=600,spawn=600,work=600", "MAX_QUEUE_SIZE": "1000"}


def enqueue_mix(queue) -> tuple[list, list, list]:
    """Two long jobs, one long job with a child process, and quick jobs behind them."""
    long = [queue.enqueue("long", random_hash(), payload={"seconds": LONG_SECONDS}) for _ in range(2)]
    spawn = [queue.enqueue("spawn", random_hash(), payload={"seconds": LONG_SECONDS})]
    quick = [queue.enqueue("work", random_hash(), payload={"seconds": 0.05}) for _ in range(12)]
    return long, spawn, quick


def wait_long_jobs_running(root: Path, long, spawn) -> list[psutil.Process]:
    """Wait until the long and spawn jobs run; their `sleep` children."""
    for job in long:
        wait_for(lambda: attempts_started(root, "long", job.id), 30, 0.05, f"long job {job.id} to start")
    event = wait_for(lambda: attempts_started(root, "spawn", spawn[0].id), 30, 0.05, "the spawn job to start")[0]
    return [psutil.Process(event["child"])]


def identity(pid: int) -> str:
    """A supervisor's claims are keyed by INSTANCE_ID (the test services keep its default)."""
    return f"{default_instance_id()}/{pid}"


def assert_all_done_once(queue, root: Path, long, spawn, quick) -> None:
    """Every job is done, on its first counted attempt (a stop gives attempts back), and
    completed exactly once (one `end` in the job log); no attempt ever overlapped another."""
    for job in long + spawn + quick:
        got = queue.get(job.id)
        assert got.status == DONE and got.attempts == 1, (job.type, got.status, got.attempts, got.last_error)
    files = state_files(root)
    assert files["claimed"] == [] and files["pending"] == [] and files["dead"] == []
    assert sorted(files["done"]) == sorted(j.id for j in long + spawn + quick)
    for job_type, jobs in (("long", long), ("spawn", spawn), ("work", quick)):
        assert ends(root, job_type) == {j.id: 1 for j in jobs}, job_type
    assert not [e for t in ("long", "work") for e in read_joblog(root, t) if e.get("overlap")], \
        "an attempt started while another attempt of the same job ran"


def start_with_long_jobs_running(fresh_service):
    """A service with ENV, the jobs of enqueue_mix queued and its long ones running:
    (svc, queue root, queue, (long, spawn, quick), the supervisor, [the spawn job's `sleep` child])."""
    svc = fresh_service(**ENV)
    root = Path(svc.env["QUEUE_PATH"])
    queue = open_service_queue(svc)
    long, spawn, quick = enqueue_mix(queue)
    children = wait_long_jobs_running(root, long, spawn)
    sup = supervisor_of(svc)
    assert sup is not None
    return svc, root, queue, (long, spawn, quick), sup, children


def test_sigterm_to_the_master_stops_supervisor_and_jobs_and_restart_finishes_them(fresh_service):
    svc, root, queue, (long, spawn, quick), sup, children = start_with_long_jobs_running(fresh_service)
    processes = [sup, *job_processes(sup), *children]
    assert len(processes) >= 5, processes  # supervisor, 3 long-job processes (or more), a sleep

    master = svc.proc
    master.send_signal(signal.SIGTERM)
    assert master.wait(timeout=60) == 0, svc.log()
    # Nothing of the supervisor's tree outlived the master: not even by a moment.
    assert alive(processes) == [], f"outlived the gunicorn master: {alive(processes)}\n{svc.log()}"

    files = state_files(root)
    assert files["claimed"] == [], "a job was left claimed by the stopped supervisor"
    assert set(files["pending"]) | set(files["done"]) == {j.id for j in long + spawn + quick}
    for job in long + spawn:  # cut short by the stop: back in the queue as if never tried
        back = queue.get(job.id)
        assert back.status == QUEUED and back.attempts == 0 and back.last_error is None, back
    assert ends(root, "long") == {} and ends(root, "spawn") == {}

    svc.start()  # the same QUEUE_PATH: the next master's supervisor finishes the work
    wait_for(lambda: all(queue.get(j.id).status == DONE for j in long + spawn + quick), LONG_SECONDS + 40, 0.2,
             "every job to be done after the restart")
    assert_all_done_once(queue, root, long, spawn, quick)
    assert [len(attempts_started(root, "long", j.id)) for j in long] == [2, 2]


def test_sigterm_to_the_supervisor_alone_returns_its_jobs_and_the_master_starts_another(fresh_service):
    svc, root, queue, (long, spawn, quick), sup, children = start_with_long_jobs_running(fresh_service)
    processes = [*job_processes(sup), *children]
    old = identity(sup.pid)

    sup.send_signal(signal.SIGTERM)
    sup.wait(timeout=30)
    assert alive(processes) == [], "job processes outlived their supervisor"
    # Nothing stays claimed in its name: each job finished or went back (it may be claimed
    # again by the next supervisor already).
    stuck = [i for i, data in job_files(root, "claimed").items() if data.get("claimed_by") == old]
    assert stuck == [], f"jobs still claimed by the stopped supervisor: {stuck}"

    new = wait_for(lambda: (s := supervisor_of(svc)) and s.pid != sup.pid and s, 20, 0.1, "a new supervisor")
    wait_for(lambda: all(queue.get(j.id).status == DONE for j in long + spawn + quick), LONG_SECONDS + 40, 0.2,
             "every job to be done under the new supervisor")
    assert_all_done_once(queue, root, long, spawn, quick)
    for job in long:
        first, second = attempts_started(root, "long", job.id)
        assert first["pid"] != second["pid"]
    assert psutil.Process(new.pid).ppid() == svc.proc.pid
    assert requests.get(svc.url + "/health", timeout=10).status_code == 200, "the service stayed up"


def test_standalone_worker_processes_real_uploads_and_stops_cleanly(fresh_service, standalone_worker):
    svc = fresh_service(**ENV, RUN_SUPERVISOR="0")
    assert supervisor_of(svc) is None
    root = Path(svc.env["QUEUE_PATH"])
    queue = open_service_queue(svc)

    text = unique_text()
    resp = upload(svc, text, name="notes.txt")
    assert resp.status_code == 201, resp.text
    text_hash, text_jobs = resp.json()["contentHash"], resp.json()["jobs"]
    image = MEADOW.read_bytes()
    resp = upload(svc, image, name="meadow.jpg")
    assert resp.status_code == 201, resp.text
    image_hash, image_jobs = resp.json()["contentHash"], resp.json()["jobs"]
    assert {j["type"] for j in text_jobs} == {"text"} and {j["type"] for j in image_jobs} >= {"image"}

    def metadata() -> dict:
        resp = requests.get(f"{svc.url}/cache/{image_hash}/metadata", timeout=10)
        assert resp.status_code == 200
        return resp.json()

    # Nobody runs jobs yet: queued, never tried, no results.
    for job in text_jobs + image_jobs:
        waiting = queue.get(job["id"])
        assert waiting.status == QUEUED and waiting.attempts == 0, waiting
    assert requests.get(f"{svc.url}/cache/{text_hash}/text", timeout=10).status_code == 202
    assert "thumbnail" not in (metadata().get("presets") or {})

    worker = standalone_worker(svc.env)
    for job in text_jobs + image_jobs:
        wait_for(lambda: queue.get(job["id"]).status == DONE, 60, 0.1, f"the {job['type']} job to be done")
    # ... and the worker alone ran them: each done in one attempt, claimed by it (not a
    # sleep before it started, which proves nothing on a slow machine).
    for job in text_jobs + image_jobs:
        done = queue.get(job["id"])
        assert (done.claimed_by, done.attempts) == (identity(worker.pid), 1), (job, done.claimed_by, done.attempts)
    resp = requests.get(f"{svc.url}/cache/{text_hash}/text", timeout=10)
    assert resp.status_code == 200 and resp.content.strip() == text.strip(), resp.content[:200]
    assert "thumbnail" in metadata()["presets"], metadata()
    thumb = requests.get(f"{svc.url}/cache/{image_hash}/thumbnail", timeout=10)
    assert thumb.status_code == 200 and thumb.content

    # SIGTERM while jobs run: they go back, the worker exits 0, nothing stays claimed.
    long, spawn, quick = enqueue_mix(queue)
    children = wait_long_jobs_running(root, long, spawn)
    processes = [*psutil.Process(worker.pid).children(), *children]
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0, worker_log(worker)
    assert alive(processes) == []
    assert state_files(root)["claimed"] == []
    for job in long + spawn:
        back = queue.get(job.id)
        assert back.status == QUEUED and back.attempts == 0, back
    assert "Traceback" not in worker_log(worker), worker_log(worker)
