"""Jobs from the upload side: enqueue the work an upload of new content needs."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from falconproc.jobs import registry
from falconproc.observability.logs import current_request_id
from falconproc.queue import REQUEST_ID_KEY, Job, JobQueue


class QueueScheduler:
    """Implements ingest's JobScheduler: one job per registered type that applies."""

    def __init__(self, queue: JobQueue, always: dict[str, int | None] | None = None):
        self.queue = queue
        # Job types every new upload gets whatever its type (the virus scan), with their
        # attempts (None: the queue's default); enqueued first.
        self.always = dict(always or {})

    def check_capacity(self) -> None:
        """Called before an upload's body is read: refuse early (QueueFull) when the queue is full."""
        self.queue.check_capacity()

    def jobs_for(self, content_hash: str, metadata: dict[str, Any], is_new: bool,
                 payloads: Mapping[str, dict[str, Any]] | None = None) -> list[dict[str, Any]]:
        if not is_new:
            return []
        jobs: list[Job] = []
        with self.queue.batch():
            for name, attempts in self.always.items():
                jobs.append(self.queue.enqueue(name, content_hash, payload=(payloads or {}).get(name),
                                               max_attempts=attempts, force=True))
            for job_type in registry.all_types():
                if job_type.applies_to is None or not job_type.applies_to(metadata):
                    continue
                payload = dict(job_type.make_payload(metadata)) if job_type.make_payload else {}
                request_id = current_request_id()
                if request_id:  # the upload's id follows its jobs into their records and log lines
                    payload[REQUEST_ID_KEY] = request_id
                # MAX_QUEUE_SIZE admits uploads (check_capacity); this one was admitted and is
                # stored, so its jobs go in even if uploads racing it filled the queue since.
                jobs.append(self.queue.enqueue(job_type.name, content_hash, payload=payload, force=True))
        return [job.summary() for job in jobs]
