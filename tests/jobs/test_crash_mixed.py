"""Crash test over mixed work: short and long test jobs and jobs with a child process
(three types, own limits and durations) plus the real jobs of text and image uploads (text, image, OCR with tesseract), while job
processes and the supervisor are SIGKILLed at random. Beyond "nothing lost" (the
companion of test_random_sigkills_of_jobs_and_supervisor_lose_nothing), it reads the
job run log: no job ever ran twice at once, none ran more often than JOB_MAX_ATTEMPTS;
and no process of the service (job, helper or tesseract) was orphaned."""
from __future__ import annotations

import os
import random
import time
from collections import defaultdict
from pathlib import Path

import psutil
import requests

from tests.jobs._helpers import JOB_ENV, intervals, read_joblog, sigkill_burst
from tests.support.content import unique_text
from tests.support.corpus import IMAGES_DIR
from tests.support.http import upload
from tests.support.jobs import open_service_queue, random_hash

MAX_ATTEMPTS = 4
BURST_SECONDS = 12
IMAGES = ["meadow-1280x1024.jpg", "storm-1920x1280.jpg"]


def service_strays(master_pid: int, queue_path: str) -> list[tuple[int, str]]:
    """Processes started for this service (QUEUE_PATH in their environment, which job
    processes pass on to tesseract and other helpers) that are not in the master's tree."""
    tree = {master_pid, *(p.pid for p in psutil.Process(master_pid).children(recursive=True))}
    strays = []
    for proc in psutil.process_iter(["name", "status"]):
        try:
            if proc.pid in tree or proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if proc.environ().get("QUEUE_PATH") == queue_path:
                strays.append((proc.pid, proc.info["name"]))
        except psutil.Error:
            continue
    return strays


def test_random_sigkills_over_mixed_jobs_never_overlap_or_exceed_attempts(fresh_service):
    svc = fresh_service(**JOB_ENV, JOB_CONCURRENCY="work=2,long=1,spawn=1,image=1,text=1,ocr=1",
                        MAX_QUEUE_SIZE="1000", WEB_WORKERS="1", JOB_MAX_ATTEMPTS=str(MAX_ATTEMPTS))
    queue_path = svc.env["QUEUE_PATH"]
    root = Path(queue_path)
    queue = open_service_queue(svc)
    rng = random.Random(int(os.environ.get("CRASH_SEED", "0")) or None)

    # Real uploads first (their jobs are claimed first: image, text, ocr come before the
    # test types), then the test jobs.
    texts: dict[str, bytes] = {}
    images: list[str] = []
    real_jobs: dict[str, str] = {}  # job id -> type
    for i in range(8):
        data = unique_text()
        resp = upload(svc, data, name=f"notes-{i}.txt")
        assert resp.status_code == 201, resp.text
        texts[resp.json()["contentHash"]] = data
        real_jobs.update({j["id"]: j["type"] for j in resp.json()["jobs"]})
    for name in IMAGES:
        resp = upload(svc, (IMAGES_DIR / name).read_bytes(), name=name)
        assert resp.status_code == 201, resp.text
        images.append(resp.json()["contentHash"])
        real_jobs.update({j["id"]: j["type"] for j in resp.json()["jobs"]})
    assert set(real_jobs.values()) == {"text", "image", "ocr"}, real_jobs
    test_jobs = {}
    for _ in range(120):
        job = queue.enqueue("work", random_hash(), payload={"seconds": round(rng.uniform(0.02, 0.15), 3)})
        test_jobs[job.id] = job
    for _ in range(20):
        job = queue.enqueue("long", random_hash(), payload={"seconds": round(rng.uniform(0.5, 1.5), 3)})
        test_jobs[job.id] = job
    for _ in range(12):  # a `sleep 120` child each, killed by the job after wait seconds
        job = queue.enqueue("spawn", random_hash(), payload={"seconds": 120, "wait": round(rng.uniform(0.3, 0.8), 3)})
        test_jobs[job.id] = job

    # The burst, then: every job in exactly one state, nothing invented, nothing left claimed or pending.
    burst = sigkill_burst(svc, queue, rng, set(test_jobs) | set(real_jobs), seconds=BURST_SECONDS,
                          first_supervisor_kill=2.0, pause=(0.1, 0.4), drain_timeout=60,
                          max_attempts=MAX_ATTEMPTS)
    done_jobs, dead_jobs = burst.done, burst.dead

    # The run log of the test jobs: runs per job, and no two runs of one job at once.
    events = read_joblog(root, "work") + read_joblog(root, "long") + read_joblog(root, "spawn")
    runs: dict[str, int] = defaultdict(int)
    for ev in events:
        if ev["event"] == "start":
            runs[ev["id"]] += 1
            # The job held an flock while it ran: taken means another run was still alive.
            assert not ev["overlap"], f"job {ev['id']} started while another run of it was running"
    assert max(runs.values()) <= MAX_ATTEMPTS, {i: n for i, n in runs.items() if n > MAX_ATTEMPTS}
    for job_id, n in runs.items():
        assert n <= located_attempts(done_jobs, dead_jobs, job_id), (job_id, n)
    spans: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for start, end, job_id, _pid in intervals(events):
        spans[job_id].append((start, end))
    for job_id, pairs in spans.items():
        pairs.sort()
        for (_, end), (start, _) in zip(pairs, pairs[1:]):
            assert start >= end, f"two finished runs of {job_id} overlapped"
    for job_id, job in test_jobs.items():
        if job_id in done_jobs:
            assert job_id in spans, f"done job {job_id} never finished a run"
            if job.type != "spawn":
                assert (root.parent / "outputs" / job_id).read_text() == job.content_hash

    # The real jobs that are done left their outputs.
    real_done = {job_id: kind for job_id, kind in real_jobs.items() if job_id in done_jobs}
    for content_hash, data in texts.items():
        text_job = next(j for j, kind in real_jobs.items() if kind == "text" and
                        queue.get(j).content_hash == content_hash)
        if text_job in done_jobs:
            resp = requests.get(f"{svc.url}/cache/{content_hash}/text", timeout=10)
            assert resp.status_code == 200 and resp.content.strip() == data.strip()
    for content_hash in images:
        image_job = next(j for j, kind in real_jobs.items() if kind == "image" and
                         queue.get(j).content_hash == content_hash)
        if image_job in done_jobs:
            meta = requests.get(f"{svc.url}/cache/{content_hash}/metadata", timeout=10).json()
            assert "thumbnail" in meta["presets"], meta

    # No process of the service outside the master's tree: no job process, page pool or
    # tesseract of a killed job or supervisor survived it.
    time.sleep(0.5)
    strays = service_strays(svc.proc.pid, queue_path)
    assert strays == [], f"orphaned processes {strays}"

    burst.print_report("crash-mixed", f"{len(test_jobs)} test jobs + {len(real_jobs)} real ({len(real_done)} done)",
                       f"max runs of a job {max(runs.values())}")


def located_attempts(done_jobs: dict, dead_jobs: dict, job_id: str) -> int:
    """The attempts the queue counted for a finished job (every run is a counted attempt)."""
    return (done_jobs.get(job_id) or dead_jobs[job_id])["attempts"]
