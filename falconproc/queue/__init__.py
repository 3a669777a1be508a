"""Job queues: the interface and the backends, chosen by name from settings."""
from __future__ import annotations

from functools import partial

from falconproc.queue.base import (DEAD, DONE, FAILED, QUEUED, RUNNING, ClaimLost, Job, JobNotFound, JobQueue,
                                   QueueFull)
from falconproc.queue.flatfile import FlatFileQueue, is_job_id

__all__ = ["DEAD", "DONE", "FAILED", "QUEUED", "RUNNING", "ClaimLost", "FlatFileQueue", "Job", "JobNotFound",
           "JobQueue", "QueueFull", "create_queue", "is_job_id"]


def create_queue(settings) -> JobQueue:
    """The queue backend named by settings (``flatfile``; ``redis`` is planned)."""
    queue = FlatFileQueue(settings.queue_path, max_pending=settings.max_queue_size,
                          max_attempts=settings.job_max_attempts, backoff_base=settings.job_backoff_base,
                          backoff_cap=settings.job_backoff_cap,
                          priorities=settings.job_priorities, fsync=settings.fsync)
    # A job the reaper dead-letters gets its type's on_dead bookkeeping, as one the
    # supervisor fails does.
    queue.on_reaped_dead = partial(_run_on_dead, settings)
    return queue


def _run_on_dead(settings, job: Job) -> None:
    from falconproc.jobs import registry  # imported late: the registry imports this package

    registry.run_on_dead(job, settings)
