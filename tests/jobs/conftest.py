"""Fixtures of the job tests: ``standalone_worker``, and the ``queue_factory`` the contract
suite runs against, once per backend.

A backend joins the contract by adding a factory class below and its name to
``BACKENDS``: ``factory(**options)`` returns a fresh, empty queue (options are the
FlatFileQueue keyword arguments: max_pending, max_attempts, backoff_base,
backoff_cap, priorities, clock, fsync), ``factory.reopen()`` a second client of
the same storage (for other threads / forked processes), and ``factory.name``
lets backend-specific tests skip themselves.
"""
from __future__ import annotations

import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from falconproc.queue import JobQueue
from falconproc.queue.flatfile import FlatFileQueue

DEFAULTS: dict[str, Any] = {
    "max_pending": 10_000,
    "max_attempts": 3,
    "backoff_base": 1.0,
    "backoff_cap": 10.0,
    "priorities": ("image", "text", "ocr"),
}


class FlatFileFactory:
    name = "flatfile"

    def __init__(self, tmp_path: Path):
        self.root = tmp_path / "queue"
        self.options: dict[str, Any] = {}

    def __call__(self, **options: Any) -> JobQueue:
        self.options = {**DEFAULTS, **options}
        return FlatFileQueue(self.root, **self.options)

    def reopen(self, **overrides: Any) -> JobQueue:
        return FlatFileQueue(self.root, **{**self.options, **overrides})


# A Redis backend adds e.g. pytest.param("redis", marks=pytest.mark.redis) here and a branch below.
BACKENDS = ["flatfile"]


@pytest.fixture(params=BACKENDS)
def queue_factory(request, tmp_path):
    if request.param == "flatfile":
        yield FlatFileFactory(tmp_path)
    else:  # pragma: no cover - no other backend yet
        raise NotImplementedError(request.param)



@pytest.fixture
def standalone_worker(launcher, tmp_path):
    """Starts `python -m falconproc.cli worker` (the job supervisor alone, no gunicorn)
    with the given environment; any still running at the end of the test is killed."""
    started: list[subprocess.Popen] = []

    def start(env: dict[str, str]) -> subprocess.Popen:
        proc = launcher.worker(env, tmp_path / f"worker{len(started)}.log")
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
