"""Job types for tests only (loaded with JOB_PLUGINS=tests.support.jobs_plugin).

They exercise the supervisor the way real handlers will: a job that succeeds
and records when it ran, one that hangs, one that crashes its process, one
that raises, one that allocates without bound, one that runs a child process
(as OCR runs tesseract).
"""
from __future__ import annotations

import fcntl
import json
import os
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

from falconproc.jobs.registry import JobType, register


def _record(job, context, event: str, **extra) -> None:
    log_dir = Path(context.settings.queue_path).parent / "joblog"
    log_dir.mkdir(exist_ok=True)
    entry = {"id": job.id, "event": event, "t": time.time(), "pid": os.getpid(), **extra}
    with open(log_dir / f"{job.type}.log", "a") as fh:
        fh.write(json.dumps(entry) + "\n")


@contextmanager
def _run_lock(job, context):
    """An flock per job id, held while the attempt runs. The kernel drops it when the
    process dies, so finding it taken means another attempt of this job is running right
    now: yields True then (the start event records it as "overlap"; the crash tests
    assert it never happens)."""
    out = Path(context.settings.queue_path).parent / "outputs" / job.id
    out.parent.mkdir(exist_ok=True)
    lock = os.open(f"{out}.lock", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            overlap = False
        except BlockingIOError:
            overlap = True
        yield overlap
    finally:
        os.close(lock)  # not inherited by a child process (O_CLOEXEC): dies with us


def _work(job, context):
    out = Path(context.settings.queue_path).parent / "outputs" / job.id
    with _run_lock(job, context) as overlap:
        _record(job, context, "start", overlap=overlap)
        time.sleep(float(job.payload.get("seconds", 0.05)))
        out.write_text(job.content_hash)  # idempotent: the same output on replay
        _record(job, context, "end")
    return {"output": str(out), "cpuBudget": context.cpu_budget}


def _hang(job, context):
    while True:
        pass


def _crash(job, context):
    os._exit(3)


def _fail(job, context):
    raise ValueError("this job always fails")


def _hog(job, context):
    chunks = []
    while True:
        chunks.append(bytearray(16 * 1024 * 1024))
        time.sleep(0.01)


register(JobType("work", _work))
register(JobType("hang", _hang))
register(JobType("crash", _crash))
register(JobType("fail", _fail))
register(JobType("hog", _hog))


def _estimate_from_payload(job, settings):
    return int(job.payload.get("estimate", 64 * 1024 * 1024))


# Like `work`, but with its own memory estimate (from the payload), as the image
# pipeline supplies one from its resize plan: for memory-admission tests.
register(JobType("sized", _work, estimate_memory=_estimate_from_payload))


def _slow_hog(job, context):
    """Grows by payload step_mb every payload interval seconds, up to max_mb, then idles."""
    step = int(job.payload.get("step_mb", 16)) * 1024 * 1024
    limit = int(job.payload.get("max_mb", 1024)) * 1024 * 1024
    interval = float(job.payload.get("interval", 0.05))
    chunks = []
    while True:
        if len(chunks) * step < limit:
            chunks.append(bytearray(step))
        time.sleep(interval)


register(JobType("slowhog", _slow_hog))


def _spawn(job, context):
    """Runs a `sleep` child (payload seconds, default 300) as an OCR job runs tesseract:
    the child's pid is in the job log, for tests that kill the job and look for the
    child. With payload wait, the job stops waiting after that long, kills the child
    itself and is done."""
    with _run_lock(job, context) as overlap:
        child = subprocess.Popen(["sleep", str(job.payload.get("seconds", 300))])
        _record(job, context, "start", child=child.pid, overlap=overlap)
        try:
            child.wait(timeout=job.payload.get("wait"))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        _record(job, context, "end")
    return {"child": child.pid}


register(JobType("spawn", _spawn))


# Like `work` under another name, for jobs of two types with their own limits and durations.
register(JobType("long", _work))
