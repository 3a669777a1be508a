"""The job-queue interface every backend implements (flat files now, Redis later).

Semantics every backend keeps (tests/jobs/test_contract.py is the contract suite):
- ``enqueue`` is idempotent per work key (type + content hash + variant) while that
  work is queued or running: it returns the existing job.
- ``claim`` hands a job to exactly one caller, highest priority first, FIFO within a
  priority, skipping jobs whose retry backoff has not elapsed.
- A claimed job holds a lease renewed by ``heartbeat``; ``reap`` returns jobs whose
  lease expired (their process died) to the queue. Delivery is at-least-once, so
  handlers must be idempotent.
- ``fail`` retries with exponential backoff, then dead-letters the job with its error.
  Attempts only ever grow (a release gives back the one it took) and never pass
  ``max_attempts``.
- A claim has an identity (``claimed_by`` plus a fresh ``claim_token``): ``heartbeat``,
  ``complete``, ``fail`` and ``release`` change the job only while the caller's claim is
  the stored one. A runner whose lease was reaped (and the job perhaps claimed again)
  gets ``ClaimLost`` and changes nothing: it cannot finish another runner's attempt or
  requeue the job for a third runner to start beside the second.
- ``max_pending`` is the admission threshold for new work; ``enqueue(..., force=True)``
  (the jobs of an upload already admitted and stored) may pass it.
"""
from __future__ import annotations

import logging
import os
import re
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

log = logging.getLogger(__name__)
_TYPE_RE = re.compile(r"[a-z0-9_]{1,32}")  # job types become parts of ids, file names and keys

# The job states, one vocabulary for GET /jobs, /metrics and /health (api.md):
# retrying = back in the queue after a failed attempt; dead = dead-lettered, no attempt left.
QUEUED, RUNNING, RETRYING, DONE, DEAD = "queued", "running", "retrying", "done", "dead"
JOB_STATES = (QUEUED, RUNNING, RETRYING, DONE, DEAD)
DONE_RETENTION_SECONDS = 24 * 3600
# The payload key of the X-Request-ID of the request that caused a job.
REQUEST_ID_KEY = "requestId"


class QueueFull(RuntimeError):
    """More jobs are pending than the queue accepts."""


class QueueUnavailable(ConnectionError):
    """The queue's backend does not answer (Redis down or unreachable): nothing was changed."""


class JobNotFound(LookupError):
    pass


class ClaimLost(JobNotFound, FileNotFoundError):
    """The caller no longer holds the job's claim (its lease was reaped, the job perhaps
    claimed again): nothing was changed. A JobNotFound, and a FileNotFoundError for the
    callers that caught what the flat-file rename of a lost claim used to raise."""


@dataclass
class Job:
    id: str
    type: str
    content_hash: str
    variant: str = ""
    priority: int = 0  # lower runs first
    status: str = QUEUED
    attempts: int = 0
    max_attempts: int = 3
    last_error: str | None = None
    created_at: float = 0.0
    updated_at: float = 0.0
    not_before: float = 0.0
    claimed_by: str | None = None
    # Unique per claim: tells this claim from a later one by the same claimer.
    claim_token: str | None = None
    payload: dict[str, Any] = field(default_factory=dict)
    result: dict[str, Any] | None = None

    @property
    def key(self) -> str:
        return f"{self.type}:{self.content_hash}:{self.variant}"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Job:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})

    @property
    def request_id(self) -> str | None:
        return self.payload.get(REQUEST_ID_KEY) if self.payload else None

    def public(self) -> dict[str, Any]:
        """The api.md shape of GET /jobs/{id}."""
        from falconproc.clock import iso_utc as iso

        return {
            "id": self.id, "type": self.type, "contentHash": self.content_hash, "variant": self.variant,
            "status": self.status, "attempts": self.attempts, "maxAttempts": self.max_attempts,
            "lastError": self.last_error, "createdAt": iso(self.created_at), "updatedAt": iso(self.updated_at),
            "result": self.result, "requestId": self.request_id,
        }

    def summary(self) -> dict[str, str]:
        return {"id": self.id, "type": self.type, "status": self.status}


class JobQueue(ABC):
    """A durable job queue. Backends may also offer a wake-up signal, so that the job
    supervisor starts new work at once instead of at its next poll."""

    #: Pending jobs past which ``enqueue`` refuses new work with QueueFull (None: no limit).
    max_pending: int | None = None
    #: Job types in priority order (JOB_PRIORITIES); unlisted types run last.
    priorities: tuple[str, ...] = ()
    #: Called with each job ``reap`` dead-letters (its runner is gone, so no caller of
    #: ``fail`` is there to do the dead-letter bookkeeping); run outside any queue lock.
    on_reaped_dead: Callable[[Job], None] | None = None

    def __init__(self, *, max_pending: int | None = 100, max_attempts: int = 3, backoff_base: float = 1.0,
                 backoff_cap: float = 10.0, priorities: tuple[str, ...] = (),
                 clock: Callable[[], float] = time.time):
        """What every backend shares: the bound (MAX_QUEUE_SIZE), attempts and backoff
        (JOB_MAX_ATTEMPTS, JOB_BACKOFF_*), JOB_PRIORITIES, and "now" (a fake clock in tests)."""
        self.max_pending = max_pending
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.priorities = priorities
        self.clock = clock

    def wakeup_fileno(self) -> int | None:
        """A descriptor that turns readable when a job is enqueued (None: the supervisor polls)."""
        return None

    def clear_wakeup(self) -> None:
        """Consume pending wake-ups (after waking)."""

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Enqueues inside the block wake the supervisor once, at its end, so that it sees
        all of one upload's jobs together (and shares the cores among them)."""
        state = self._batch_state()
        state.depth = getattr(state, "depth", 0) + 1
        try:
            yield
        finally:
            state.depth -= 1
            if not state.depth and getattr(state, "rang", False):
                state.rang = False
                self._wake_supervisors()

    def _ring(self) -> None:
        """After an enqueue: wake the supervisors now, or at the end of the current batch."""
        if getattr(self._batch_state(), "depth", 0):
            self._batch_state().rang = True
        else:
            self._wake_supervisors()

    def _batch_state(self) -> threading.local:
        # Per thread: web workers are threaded, and a batch is one request's.
        if "_batches" not in self.__dict__:
            self._batches = threading.local()
        return self._batches

    def _wake_supervisors(self) -> None:
        """Signal the backend's wake-up (a backend without one: the supervisor polls)."""

    @staticmethod
    def _drain(fd: int) -> None:
        """Read a non-blocking wake-up descriptor empty."""
        try:
            while os.read(fd, 4096):
                pass
        except BlockingIOError:
            pass

    def priority_of(self, type: str) -> int:
        """Position in the configured priority list; unlisted types run last."""
        return self.priorities.index(type) if type in self.priorities else len(self.priorities)

    def _priority_for(self, type: str, priority: int | None) -> int:
        """An enqueue's priority: the given one or the type's (the type checked first: it
        becomes part of job ids and keys)."""
        if not _TYPE_RE.fullmatch(type):
            raise ValueError(f"invalid job type {type!r}")
        return self.priority_of(type) if priority is None else priority

    def check_capacity(self) -> None:
        """Raise QueueFull if new work would be refused (uploads ask before reading a byte)."""
        if self.max_pending is not None and self.pending_count() >= self.max_pending:
            raise QueueFull(f"the queue holds {self.max_pending} pending jobs")

    def _reaped_dead(self, jobs: list[Job]) -> None:
        """Run ``on_reaped_dead`` for jobs the reaper dead-lettered (call with no lock held)."""
        if self.on_reaped_dead is None:
            return
        for job in jobs:
            try:
                self.on_reaped_dead(job)
            except Exception:  # noqa: BLE001 - bookkeeping must not stop the reaper
                log.exception("dead-letter hook for reaped job %s failed", job.id)

    @abstractmethod
    def enqueue(self, type: str, content_hash: str, *, variant: str = "", priority: int | None = None,
                payload: dict[str, Any] | None = None, max_attempts: int | None = None,
                force: bool = False, delay: float = 0.0) -> Job:
        """Queue work (or return its queued or running job). QueueFull past ``max_pending``
        unless ``force``: work already admitted (an upload's jobs once it is stored) must
        not be dropped for the few jobs by which concurrent uploads overshoot the limit.
        ``delay``: a new job is not claimed before that many seconds from now (the queue's
        clock); a job already queued under the same key is returned as it is."""

    @abstractmethod
    def claim(self, types: list[str], worker_id: str) -> Job | None:
        """The next runnable job of these types, now RUNNING, its attempt counted."""

    @abstractmethod
    def heartbeat(self, job: Job) -> None:
        """Renew the lease of the caller's claim (ClaimLost if it is no longer the caller's)."""

    @abstractmethod
    def complete(self, job: Job, result: dict[str, Any] | None = None) -> Job:
        """Mark the caller's claim done (ClaimLost, nothing changed, if it is no longer the caller's)."""

    @abstractmethod
    def fail(self, job: Job, error: str) -> Job:
        """Count a failed attempt: back to the queue after a backoff, or dead (ClaimLost,
        nothing changed, if the claim is no longer the caller's). A caller may raise
        ``job.attempts`` to ``job.max_attempts`` first to dead-letter at once; attempts
        are never lowered."""

    @abstractmethod
    def release(self, job: Job) -> Job:
        """Give a claimed job back untouched (shutdown drain): the attempt does not count
        (ClaimLost if the claim is no longer the caller's)."""

    @abstractmethod
    def reap(self, lease_seconds: float, alive=None) -> int:
        """Return jobs with expired leases (or dead claimers, per ``alive(claimed_by)``) to
        the queue; those on their last attempt are dead-lettered and passed to
        ``on_reaped_dead``."""

    @abstractmethod
    def prune_done(self, older_than: float = DONE_RETENTION_SECONDS) -> int:
        """Forget done jobs finished more than ``older_than`` seconds ago; how many went."""

    @abstractmethod
    def get(self, job_id: str) -> Job: ...

    @abstractmethod
    def find(self, type: str, content_hash: str, variant: str = "") -> Job | None:
        """The queued or running job for this work, if any."""

    @abstractmethod
    def pending_count(self) -> int: ...

    def oldest_pending(self) -> dict[str, float]:
        """Job type -> enqueue time (unix seconds) of its oldest pending job."""
        return {}

    @abstractmethod
    def stats(self) -> dict[str, int]:
        """How many jobs are in each of ``JOB_STATES`` (queued, running, retrying, done, dead)."""
