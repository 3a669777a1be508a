"""Jobs from the upload side: enqueue the work an upload of new content needs.

When the queue does not answer (Redis down) an upload is still stored and answered:
its jobs are noted in the derived cache (shared by every instance) and queued by the
job supervisor's periodic pass once the queue answers again."""
from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from falconproc.clock import iso_utc
from falconproc.errors import ContentNotFound
from falconproc.jobs import registry
from falconproc.observability.logs import current_request_id
from falconproc.queue import REQUEST_ID_KEY, Job, JobQueue, QueueUnavailable
from falconproc.store.cache import DerivedCache

log = logging.getLogger(__name__)


class QueueScheduler:
    """Implements ingest's JobScheduler: one job per registered type that applies."""

    def __init__(self, queue: JobQueue, always: dict[str, int | None] | None = None,
                 deferred: DerivedCache | None = None):
        self.queue = queue
        # Job types every new upload gets whatever its type (the virus scan), with their
        # attempts (None: the queue's default); enqueued first.
        self.always = dict(always or {})
        # Where the jobs of uploads stored while the queue was down are noted (None: an
        # unreachable queue fails the upload).
        self.deferred = deferred

    def check_capacity(self) -> None:
        """Called before an upload's body is read: refuse early (QueueFull) when the queue
        is full. A queue that does not answer refuses nothing: the upload's jobs wait."""
        try:
            self.queue.check_capacity()
        except QueueUnavailable:
            if self.deferred is None:
                raise
            log.warning("the job queue does not answer; uploads are stored and their jobs deferred")

    def jobs_for(self, content_hash: str, metadata: dict[str, Any], is_new: bool,
                 payloads: Mapping[str, dict[str, Any]] | None = None,
                 delays: Mapping[str, float] | None = None) -> list[dict[str, Any]]:
        """The summaries of the jobs queued for new content (``payloads``: a payload per
        job type, e.g. the streamed scan's verdict for the scan job; ``delays``: seconds
        before a job type's job may start). QueueUnavailable when
        the queue does not answer: the jobs are then noted to be queued later."""
        if not is_new:
            return []
        request_id = current_request_id()
        try:
            return self._enqueue(content_hash, metadata, request_id, payloads, delays)
        except QueueUnavailable:
            if self.deferred is None:
                raise
            try:
                self.deferred.defer_jobs(content_hash, {"requestId": request_id, "deferredAt": iso_utc()})
            except Exception:  # noqa: BLE001 - the upload is stored; say what is lost, answer
                log.exception("the jobs of %s could not be noted for later: they run only if it is "
                              "uploaded again as new content", content_hash)
            raise

    def enqueue_deferred(self, metadata_of: Callable[[str], dict[str, Any]]) -> int:
        """Queue the jobs of content stored while the queue was down (the supervisor's
        periodic pass); how many contents. QueueUnavailable when it still does not answer.
        Enqueues are idempotent, so two instances doing this at once queue nothing twice."""
        if self.deferred is None:
            return 0
        queued = 0
        for content_hash, note in self.deferred.deferred_jobs().items():
            try:
                metadata = metadata_of(content_hash)
            except ContentNotFound:
                metadata = None
            if metadata is not None:
                jobs = self._enqueue(content_hash, metadata, note.get("requestId"))
                log.info("queued the deferred jobs of %s: %s", content_hash,
                         ", ".join(j["type"] for j in jobs) or "none apply")
                queued += 1
            self.deferred.forget_deferred_jobs(content_hash)
        return queued

    def _enqueue(self, content_hash: str, metadata: dict[str, Any], request_id: str | None,
                 payloads: Mapping[str, dict[str, Any]] | None = None,
                 delays: Mapping[str, float] | None = None) -> list[dict[str, Any]]:
        jobs: list[Job] = []
        with self.queue.batch():
            for name, attempts in self.always.items():
                jobs.append(self.queue.enqueue(name, content_hash, payload=(payloads or {}).get(name),
                                               max_attempts=attempts, force=True,
                                               delay=(delays or {}).get(name, 0.0)))
            for job_type in registry.all_types():
                if job_type.applies_to is None or not job_type.applies_to(metadata):
                    continue
                payload = dict(job_type.make_payload(metadata)) if job_type.make_payload else {}
                if request_id:  # the upload's id follows its jobs into their records and log lines
                    payload[REQUEST_ID_KEY] = request_id
                # MAX_QUEUE_SIZE admits uploads (check_capacity); this one was admitted and is
                # stored, so its jobs go in even if uploads racing it filled the queue since.
                jobs.append(self.queue.enqueue(job_type.name, content_hash, payload=payload, force=True))
        return [job.summary() for job in jobs]
