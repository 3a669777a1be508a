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
import uuid
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


class RedisFactory:
    """Each test gets its own key namespace on the session's redis-server."""

    name = "redis"

    def __init__(self, server):
        import redis

        self.client = redis.Redis(port=server.port)
        self.namespace = f"test:{uuid.uuid4().hex[:12]}"
        self.options: dict[str, Any] = {}

    def __call__(self, **options: Any) -> JobQueue:
        self.options = {**DEFAULTS, **options}
        return self.reopen()

    def reopen(self, **overrides: Any) -> JobQueue:
        import redis

        from falconproc.queue.redis import RedisQueue

        # A new connection pool: the clients of forked processes must not share sockets.
        client = redis.Redis(port=self.client.connection_pool.connection_kwargs["port"])
        return RedisQueue(client, namespace=self.namespace, **{**self.options, **overrides})


BACKENDS = ["flatfile", "redis"]


@pytest.fixture
def flatfile_factory(tmp_path):
    """For the few tests that look at the flat-file layout on disk (not part of the contract)."""
    return FlatFileFactory(tmp_path)


@pytest.fixture(params=BACKENDS)
def queue_factory(request, tmp_path):
    if request.param == "flatfile":
        yield FlatFileFactory(tmp_path)
    else:
        yield RedisFactory(request.getfixturevalue("redis_server"))



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
