"""The `scan` job: every new upload's original through clamd, when SCAN_MODE is not off
(the composition root has the scheduler enqueue it; it applies to every type)."""
from __future__ import annotations

from typing import Any

from falconproc.jobs.registry import JobContext, JobType, register
from falconproc.queue import Job
from falconproc.scan.service import ScanService

SCAN_ESTIMATE = 32 * 1024 * 1024  # the file is streamed in 256 KiB chunks


def _service(context: JobContext) -> ScanService:
    return ScanService(context.settings, context.store, context.cache)


def _handle(job: Job, context: JobContext) -> dict[str, Any]:
    # ClamdUnavailable is retried by the queue with backoff (SCAN_MAX_ATTEMPTS attempts).
    state = _service(context).scan(job.content_hash)
    return {"status": state["status"], "signature": state.get("signature")}


def _record_dead(job: Job, context: JobContext) -> None:
    """Out of attempts (clamd down all along) or killed: the state says error, never clean."""
    service = _service(context)
    if (service.state(job.content_hash) or {}).get("status") in (None, "pending"):
        service.record_error(job.content_hash, job.last_error or "the scan failed")


register(JobType("scan", _handle, applies_to=None, estimate_memory=lambda job, settings: SCAN_ESTIMATE,
                 on_dead=_record_dead))
