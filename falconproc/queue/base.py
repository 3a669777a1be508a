"""The job-queue interface every backend implements (flat files now, Redis later).

Semantics every backend keeps (tests/queue/ is the contract suite):
- ``enqueue`` is idempotent per work key (type + content hash + variant) while that
  work is queued or running: it returns the existing job.
- ``claim`` hands a job to exactly one caller, highest priority first, FIFO within a
  priority, skipping jobs whose retry backoff has not elapsed.
- A claimed job holds a lease renewed by ``heartbeat``; ``reap`` returns jobs whose
  lease expired (their process died) to the queue. Delivery is at-least-once, so
  handlers must be idempotent.
- ``fail`` retries with exponential backoff, then dead-letters the job with its error.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

# Wire states (api.md): queued | running | done | failed (waiting for a retry) | dead
QUEUED, RUNNING, DONE, FAILED, DEAD = "queued", "running", "done", "failed", "dead"


class QueueFull(RuntimeError):
    """More jobs are pending than the queue accepts."""


class JobNotFound(LookupError):
    pass


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

    def public(self) -> dict[str, Any]:
        """The api.md shape of GET /jobs/{id}."""
        from falconproc.clock import iso_utc as iso

        return {
            "id": self.id, "type": self.type, "contentHash": self.content_hash, "variant": self.variant,
            "status": self.status, "attempts": self.attempts, "maxAttempts": self.max_attempts,
            "lastError": self.last_error, "createdAt": iso(self.created_at), "updatedAt": iso(self.updated_at),
            "result": self.result,
        }

    def summary(self) -> dict[str, str]:
        return {"id": self.id, "type": self.type, "status": self.status}


class JobQueue(ABC):
    """A durable job queue. Backends may also offer a wake-up signal, so that the job
    supervisor starts new work at once instead of at its next poll."""

    def wakeup_fileno(self) -> int | None:
        """A descriptor that turns readable when a job is enqueued (None: the supervisor polls)."""
        return None

    def clear_wakeup(self) -> None:
        """Consume pending wake-ups (after waking)."""

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Enqueues inside the block wake the supervisor once, at its end, so that it sees
        all of one upload's jobs together (and shares the cores among them)."""
        yield

    @abstractmethod
    def enqueue(self, type: str, content_hash: str, *, variant: str = "", priority: int | None = None,
                payload: dict[str, Any] | None = None, max_attempts: int | None = None) -> Job: ...

    @abstractmethod
    def claim(self, types: list[str], worker_id: str) -> Job | None: ...

    @abstractmethod
    def heartbeat(self, job: Job) -> None: ...

    @abstractmethod
    def complete(self, job: Job, result: dict[str, Any] | None = None) -> Job: ...

    @abstractmethod
    def fail(self, job: Job, error: str) -> Job:
        """Count a failed attempt: back to the queue after a backoff, or dead."""

    @abstractmethod
    def release(self, job: Job) -> Job:
        """Give a claimed job back untouched (shutdown drain): the attempt does not count."""

    @abstractmethod
    def reap(self, lease_seconds: float, alive=None) -> int:
        """Return jobs with expired leases (or dead claimers, per ``alive(claimed_by)``) to the queue."""

    @abstractmethod
    def get(self, job_id: str) -> Job: ...

    @abstractmethod
    def find(self, type: str, content_hash: str, variant: str = "") -> Job | None:
        """The queued or running job for this work, if any."""

    @abstractmethod
    def pending_count(self) -> int: ...

    @abstractmethod
    def stats(self) -> dict[str, int]:
        """{"pending", "processing", "failed" (dead-lettered), "done"}."""
