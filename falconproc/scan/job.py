"""The `scan` job: every new upload's original through clamd, when SCAN_MODE is not off
(the composition root has the scheduler enqueue it; it applies to every type)."""
from __future__ import annotations

from typing import Any

from falconproc.jobs.registry import JobContext, JobType, register
from falconproc.queue import Job
from falconproc.scan.service import STREAMED, ScanService

SCAN_ESTIMATE = 32 * 1024 * 1024
DEFAULT_SCAN_TIMEOUT = 60.0  # the supervisor's default for types JOB_TIMEOUTS does not name


def _service(context: JobContext) -> ScanService:
    return ScanService(context.settings, context.store, context.cache)


def _handle(job: Job, context: JobContext) -> dict[str, Any]:
    service = _service(context)
    if job.payload.get(STREAMED):
        # The upload streamed the bytes to clamd: its verdict comes moments after the
        # last byte. Half of this job's time goes to waiting for it, the rest to scanning
        # here if it fails or never comes (the uploading process died).
        budget = context.settings.job_timeouts.get("scan", DEFAULT_SCAN_TIMEOUT) / 2
        state = service.await_streamed(job.content_hash, budget)
        if state is not None:
            return {"status": state["status"], "signature": state.get("signature"), "scannedBy": "upload"}
    # ClamdUnavailable is retried by the queue with backoff (SCAN_MAX_ATTEMPTS attempts).
    state = service.scan(job.content_hash)
    return {"status": state["status"], "signature": state.get("signature"), "scannedBy": "job"}


def _record_dead(job: Job, context: JobContext) -> None:
    """Out of attempts (clamd down all along) or killed: the state says error, never clean."""
    service = _service(context)
    if (service.state(job.content_hash) or {}).get("status") in (None, "pending"):
        service.record_error(job.content_hash, job.last_error or "the scan failed")


register(JobType("scan", _handle, applies_to=None, estimate_memory=lambda job, settings: SCAN_ESTIMATE,
                 on_dead=_record_dead))
