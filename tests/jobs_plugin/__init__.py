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
    return {"output": str(out)}


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
