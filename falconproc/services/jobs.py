"""Jobs from the web side: enqueue the work an upload needs, and read job state."""
from __future__ import annotations

import logging
from typing import Any

from falconproc.jobs import registry
from falconproc.queue import Job, JobQueue, QueueFull

log = logging.getLogger(__name__)


class QueueScheduler:
    """Implements ingest's JobScheduler: one job per registered type that applies."""

    def __init__(self, queue: JobQueue):
        self.queue = queue

    def check_capacity(self) -> None:
        """Called before an upload's body is read: refuse early when the queue is full."""
        limit = getattr(self.queue, "max_pending", None)
        if limit is not None and self.queue.pending_count() >= limit:
            raise QueueFull(f"the queue holds {limit} pending jobs")

    def jobs_for(self, content_hash: str, metadata: dict[str, Any], is_new: bool) -> list[dict[str, Any]]:
        if not is_new:
            return []
        jobs: list[Job] = []
        with self.queue.batch():
            for job_type in registry.all_types():
                if job_type.applies_to is None or not job_type.applies_to(metadata):
                    continue
                try:
                    payload = job_type.make_payload(metadata) if job_type.make_payload else None
                    jobs.append(self.queue.enqueue(job_type.name, content_hash, payload=payload))
                except QueueFull:
                    # The bytes are stored; the work runs on demand when first asked for.
                    log.warning("queue full: %s job for %s not enqueued", job_type.name, content_hash)
        return [job.summary() for job in jobs]
