"""The job type registry: image / text / OCR handlers plug in here without touching the queue.

A capability module registers its types at import (``register(JobType(...))``);
``load`` imports the modules that falconproc/wiring.py lists (the built-in
capabilities plus any named in JOB_PLUGINS). The supervisor and the upload side
know job types only through this registry.
"""
from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from falconproc.config import Settings
from falconproc.queue import Job, JobQueue
from falconproc.store import ContentStore, DerivedCache

log = logging.getLogger(__name__)

DEFAULT_MEMORY_ESTIMATE = 64 * 1024 * 1024


class PermanentJobError(Exception):
    """Retrying cannot help (a corrupt file, an encrypted document): dead-letter at once."""


@dataclass
class JobContext:
    """What a handler may use: the objects of its process, from the composition root
    (falconproc/wiring.py), and its share of the cores."""

    settings: Settings
    store: ContentStore
    cache: DerivedCache
    # Follow-on work (a PDF's page OCR after its text job) is enqueued here.
    queue: JobQueue
    # Threads the job may keep busy: its share of the cores (see Supervisor.cpu_budget).
    cpu_budget: int = 1


@dataclass(frozen=True)
class JobType:
    name: str
    handler: Callable[[Job, JobContext], dict[str, Any] | None]
    # Which stored content gets this job on upload (None: only enqueued explicitly).
    applies_to: Callable[[dict[str, Any]], bool] | None = None
    # Peak memory the job will need, for admission; handlers that know better
    # (the image pipeline, from its resize plan) supply their own.
    estimate_memory: Callable[[Job, Settings], int] | None = None
    # Facts from the upload's metadata the job needs before it runs (e.g. image size).
    make_payload: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    # Called in the supervisor when a job of this type is dead-lettered (record the error state).
    on_dead: Callable[[Job, JobContext], None] | None = None
    # Called once in the supervisor before job processes are forked from it (import the
    # parsers the handler needs, so that every job process starts with them loaded).
    preload: Callable[[], None] | None = None

    def memory_estimate(self, job: Job, settings: Settings) -> int:
        if self.estimate_memory is None:
            return DEFAULT_MEMORY_ESTIMATE
        try:
            return int(self.estimate_memory(job, settings))
        except Exception:  # noqa: BLE001 - a bad estimate must never stop the supervisor
            log.exception("memory estimate of %s job %s failed", self.name, job.id)
            return DEFAULT_MEMORY_ESTIMATE


_REGISTRY: dict[str, JobType] = {}


def register(job_type: JobType) -> JobType:
    _REGISTRY[job_type.name] = job_type
    return job_type


def get(name: str) -> JobType | None:
    return _REGISTRY.get(name)


def all_types() -> list[JobType]:
    return list(_REGISTRY.values())


def run_on_dead(job: Job, context: JobContext) -> None:
    """The dead-letter bookkeeping of a dead job's type (its ``on_dead``), errors logged.
    The supervisor runs it for jobs that fail their last attempt, the queue's reaper
    (through the callback wiring.py gives it) for jobs whose runner died."""
    job_type = get(job.type)
    if job_type is None or job_type.on_dead is None:
        return
    try:
        job_type.on_dead(job, context)
    except Exception:  # noqa: BLE001 - bookkeeping must not stop the supervisor
        log.exception("on_dead hook of %s failed", job.type)


def load(modules: Iterable[str]) -> None:
    """Import the modules that register job types (idempotent)."""
    for module in modules:
        importlib.import_module(module)
