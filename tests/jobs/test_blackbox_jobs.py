"""The job subsystem through the real service: gunicorn, its SupervisorKeeper, the
`falconproc worker` supervisor and its job processes, over HTTP and the queue's
flat files (opened from the test with the service's own settings)."""
from __future__ import annotations

import os
import random
import statistics
import time
from pathlib import Path

import psutil
import requests

from falconproc.queue import DEAD, DONE
from tests.jobs._helpers import JOB_ENV, job_processes, sigkill_burst, supervisor_of, supervisor_passes
from tests.support.content import unique_text
from tests.support.http import assert_error, get_job, health, upload
from tests.support.jobs import open_service_queue, random_hash
from tests.support.store import stored_entries, temp_entries
from tests.support.wait import wait_for

MiB = 1024 * 1024
API_FIELDS = {"id", "type", "contentHash", "status", "attempts", "lastError", "createdAt", "updatedAt"}


def queue_counts(svc) -> dict:
    queue = health(svc)["queue"]
    assert queue["failed"] == queue["dead"]  # v1's name, kept as a deprecated alias
    return {key: queue[key] for key in ("pending", "processing", "retrying", "dead")}


def processes_of_queue(queue_path: str) -> list[psutil.Process]:
    """Every live `falconproc.cli worker` process (supervisor or job) of this service."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        try:
            cmd = proc.info["cmdline"] or []
            if "falconproc.cli" in cmd and "worker" in cmd and proc.info["status"] != psutil.STATUS_ZOMBIE \
                    and proc.environ().get("QUEUE_PATH") == queue_path:
                found.append(proc)
        except psutil.Error:
            continue
    return found


# -- GET /jobs/{id} ----------------------------------------------------------------------


def test_get_job_reaches_done_and_errors_for_bad_ids(fresh_service):
    svc = fresh_service(**JOB_ENV)
    queue = open_service_queue(svc)
    job = queue.enqueue("work", random_hash(), payload={"seconds": 0.3})
    failing = queue.enqueue("fail", random_hash())

    seen = []

    def done() -> dict | None:
        resp = get_job(svc, job.id)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        seen.append(body["status"])
        return body if body["status"] == "done" else None

    body = wait_for(done, 20, 0.05, "the work job to be done")
    assert API_FIELDS <= set(body)
    assert body["id"] == job.id and body["type"] == "work" and body["contentHash"] == job.content_hash
    assert body["attempts"] == 1 and body["lastError"] is None
    assert body["createdAt"].endswith("Z") and body["updatedAt"] >= body["createdAt"]
    assert set(seen) <= {"queued", "running", "done"}
    assert Path(body["result"]["output"]).read_text() == job.content_hash
    assert get_job(svc, job.id).headers.get("Cache-Control") == "no-cache"

    dead = wait_for(lambda: (b := get_job(svc, failing.id).json()).get("status") == "dead" and b, 20, 0.1,
                    "the failing job to be dead-lettered")
    assert dead["attempts"] == 3 and dead["lastError"] == "ValueError: this job always fails"

    assert_error(get_job(svc, "01-17000000000000000000-work-deadbeef"), 404, "not_found")
    for bad in ("nope", "..%2F..%2Fetc%2Fpasswd", "%2e%2e", "x" * 300, job.id.upper(), job.id + "%0A",
                job.id[:-1] + "g"):
        resp = get_job(svc, bad)
        assert resp.status_code in (400, 404), (bad, resp.status_code)
        assert_error(resp, resp.status_code)


# -- /health and a full queue --------------------------------------------------------


def test_health_queue_counts_and_queue_full_503(fresh_service):
    svc = fresh_service(**JOB_ENV, RUN_SUPERVISOR="0", MAX_QUEUE_SIZE="5")
    assert supervisor_of(svc) is None
    queue = open_service_queue(svc)
    assert queue_counts(svc) == {"pending": 0, "processing": 0, "retrying": 0, "dead": 0}

    for _ in range(3):
        queue.enqueue("work", random_hash())
    queue.enqueue("fail", random_hash(), max_attempts=1)
    retry = queue.enqueue("retry", random_hash(), max_attempts=2)
    queue.claim(["work"], "test:1")
    queue.fail(queue.claim(["fail"], "test:1"), "boom")
    queue.fail(queue.claim(["retry"], "test:1"), "try again")
    for _ in range(4):  # every web worker answers the same; pending = queued + retrying
        assert queue_counts(svc) == {"pending": 3, "processing": 1, "retrying": 1, "dead": 1}
    assert get_job(svc, retry.id).json()["status"] == "retrying"

    resp = upload(svc, unique_text())  # 3 of 5 pending: accepted
    assert resp.status_code == 201
    created = resp.json()["jobs"]  # the upload lists the jobs it queued (a text job here)
    assert created and all(set(j) == {"id", "type", "status"} and j["status"] == "queued" for j in created)
    for j in created:
        assert get_job(svc, j["id"]).json()["type"] == j["type"]
    while queue.pending_count() < 5:
        queue.enqueue("work", random_hash())
    before = stored_entries(svc.files)

    data = unique_text()
    resp = upload(svc, data)
    body = assert_error(resp, 503, "overloaded")
    assert int(resp.headers["Retry-After"]) > 0
    assert "queue" in body["message"]
    assert stored_entries(svc.files) == before, "a refused upload must store nothing"
    assert temp_entries(svc.files) == []
    assert health(svc)["queue"]["pending"] == 5

    queue.claim(["work"], "test:1")  # room again: the client's retry is accepted
    assert upload(svc, data).status_code == 201


# -- hung and hogging jobs do not disturb uploads ------------------------------------------


def test_hung_and_hogging_jobs_are_killed_while_uploads_are_answered(fresh_service):
    svc = fresh_service(**JOB_ENV, JOB_TIMEOUTS="hang=3", JOB_MEMORY_MAX_BYTES=str(300 * MiB),
                        JOB_MAX_ATTEMPTS="2", JOB_CONCURRENCY="hang=1,hog=1", MAX_QUEUE_SIZE="1000")
    queue = open_service_queue(svc)
    hang = queue.enqueue("hang", random_hash())
    hog = queue.enqueue("hog", random_hash())
    wait_for(lambda: get_job(svc, hang.id).json()["status"] == "running", 15, 0.05, "the hang job to run")

    # uploads (each also queues a text job) all through the hang's two 3 s attempts
    latencies = []
    while_hung = 0
    for _ in range(25):
        started = time.monotonic()
        resp = upload(svc, unique_text())
        latencies.append(time.monotonic() - started)
        assert resp.status_code == 201, resp.text
        assert latencies[-1] < 5, f"an upload took {latencies[-1]:.1f}s while the jobs ran"
        assert requests.get(svc.url + f"/cache/{resp.json()['contentHash']}/metadata", timeout=5).status_code == 200
        while_hung += get_job(svc, hang.id).json()["status"] == "running"
        time.sleep(0.1)
    assert while_hung >= 10, "the uploads did not overlap the hung job"

    def both_dead():
        return all(get_job(svc, j.id).json()["status"] in ("dead", "done") for j in (hang, hog))

    wait_for(both_dead, 30, 0.1, "the hang and hog jobs to be dead-lettered")
    hung, hogged = get_job(svc, hang.id).json(), get_job(svc, hog.id).json()
    assert hung["status"] == "dead" and "timed out" in hung["lastError"], hung
    assert hogged["status"] == "dead" and "memory" in hogged["lastError"], hogged
    assert hung["attempts"] == 2 and hogged["attempts"] == 2
    print(f"\n[hang/hog] {len(latencies)} uploads ({while_hung} while the hung job spun): max {max(latencies) * 1000:.0f} ms, "
          f"median {statistics.median(latencies) * 1000:.0f} ms")
    sup = supervisor_of(svc)
    assert sup is not None, "the supervisor survived"
    assert all(p.memory_info().rss < 300 * MiB for p in job_processes(sup)), "the hog's process is gone"


# -- memory admission sees the whole service tree ----------------------------------------


def test_supervisor_admission_counts_the_whole_service_tree(fresh_service):
    """The governor must measure the gunicorn master, web workers, supervisor and job
    processes together. With a limit that the whole tree plus a job's estimate exceeds
    (while the supervisor's own process plus even the biggest default estimate, an
    image's 256 MiB, would fit), a job must wait instead of starting."""
    # Measure the tree of an identical service first, then set the limit between the
    # tree's size and the tree plus one job, so only a whole-tree view refuses the job.
    # Its PSS: what the governor decides a refusal on (the quick figure counts the pages
    # the web workers share copy-on-write with the master once per worker).
    probe = fresh_service(**JOB_ENV, MEMORY_HIGH_WATER="1.0", WEB_WORKERS="6", RUN_SUPERVISOR="0")
    time.sleep(0.5)
    root = psutil.Process(probe.proc.pid)
    tree = sum(proc.memory_full_info().pss for proc in [root, *root.children(recursive=True)])
    probe.stop()
    estimate = 64 * MiB  # the default estimate of a `work` job
    limit = tree + 40 * MiB
    svc = fresh_service(**JOB_ENV, MEMORY_LIMIT_BYTES=str(limit), MEMORY_HEADROOM_BYTES="0",
                        MEMORY_HIGH_WATER="1.0", WEB_WORKERS="6")
    sup = wait_for(lambda: supervisor_of(svc), 10, 0.1, "the supervisor")
    time.sleep(0.5)
    used = health(svc)["memory"]["used"]
    sup_rss = sup.memory_info().rss
    assert used + estimate > limit, f"the tree ({used // MiB} MiB) shrank below the measured {tree // MiB} MiB"
    assert sup_rss + estimate < limit, "the supervisor alone would already be refused"
    queue = open_service_queue(svc)
    job = queue.enqueue("work", random_hash(), payload={"seconds": 0})
    # Not a sleep: two whole passes of the supervisor's loop, both begun after the enqueue,
    # each of which would have claimed and started the job had its governor admitted it.
    supervisor_passes(svc, passes=2)
    status = queue.get(job.id).status
    assert status == "queued", (
        f"a job was admitted ({status}) although the service tree uses {used // MiB} MiB and the job needs "
        f"{estimate // MiB} MiB more under a {limit // MiB} MiB limit: the supervisor measured only its own "
        f"processes ({sup_rss // MiB} MiB), not the gunicorn tree it runs in")


# -- crash test ------------------------------------------------------------------------------


def test_random_sigkills_of_jobs_and_supervisor_lose_nothing(fresh_service):
    svc = fresh_service(**JOB_ENV, JOB_CONCURRENCY="work=3", MAX_QUEUE_SIZE="1000", WEB_WORKERS="1")
    queue_path = svc.env["QUEUE_PATH"]
    root = Path(queue_path)
    queue = open_service_queue(svc)
    rng = random.Random(int(os.environ.get("CRASH_SEED", "0")) or None)
    jobs = {}
    for _ in range(200):
        job = queue.enqueue("work", random_hash(), payload={"seconds": round(rng.uniform(0.02, 0.2), 3)})
        jobs[job.id] = job
    max_attempts = queue.max_attempts

    burst = sigkill_burst(svc, queue, rng, jobs, seconds=15, first_supervisor_kill=2.5, pause=(0.05, 0.3),
                          drain_timeout=90, max_attempts=max_attempts)
    done_jobs, dead_jobs = burst.done, burst.dead
    for job_id, data in done_jobs.items():
        output = root.parent / "outputs" / job_id
        assert output.read_text() == jobs[job_id].content_hash, job_id
        assert queue.get(job_id).status == DONE
    for job_id in dead_jobs:
        assert queue.get(job_id).status == DEAD
    # no job process outlived its supervisor: only the current supervisor and its pool remain
    sup = wait_for(lambda: supervisor_of(svc), 10, 0.05, "the supervisor")
    allowed = {sup.pid, *(p.pid for p in job_processes(sup))}
    strays = [p.pid for p in processes_of_queue(queue_path) if p.pid not in allowed]
    assert strays == [], f"orphaned job processes {strays}"

    burst.print_report("crash", f"{len(jobs)} jobs", f"staging files left in tmp/: {len(os.listdir(root / 'tmp'))}")
