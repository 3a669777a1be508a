"""Job types for tests only (loaded with JOB_PLUGINS=tests.jobs_plugin).

They exercise the supervisor the way real handlers will: a job that succeeds
and records when it ran, one that hangs, one that crashes its process, one
that raises, one that allocates without bound.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

from falconproc.jobs.registry import JobType, register


def _record(job, context, event: str) -> None:
    log_dir = Path(context.settings.queue_path).parent / "joblog"
    log_dir.mkdir(exist_ok=True)
    with open(log_dir / f"{job.type}.log", "a") as fh:
        fh.write(json.dumps({"id": job.id, "event": event, "t": time.time(), "pid": os.getpid()}) + "\n")


def _work(job, context):
    _record(job, context, "start")
    time.sleep(float(job.payload.get("seconds", 0.05)))
    out = Path(context.settings.queue_path).parent / "outputs" / job.id
    out.parent.mkdir(exist_ok=True)
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
