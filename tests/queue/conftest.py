"""The ``queue_factory`` fixture the contract suite runs against, once per backend.

A backend joins the contract by adding a factory class below and its name to
``BACKENDS``: ``factory(**options)`` returns a fresh, empty queue (options are the
FlatFileQueue keyword arguments: max_pending, max_attempts, backoff_base,
backoff_cap, priorities, clock, fsync), ``factory.reopen()`` a second client of
the same storage (for other threads / forked processes), and ``factory.name``
lets backend-specific tests skip themselves.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from falconproc.queue import FlatFileQueue, JobQueue

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


def flatfile_only(factory) -> None:
    if factory.name != "flatfile":
        pytest.skip("inspects the flat-file layout")


@pytest.fixture
def fresh_service(tmp_path):
    """tests/conftest.py's ``fresh_service`` (same interface), hardened for the job tests:
    the service is registered for teardown before it starts, and a first /health that
    queues behind booting workers for longer than Service.start's 1 s read timeout
    (a requests.Timeout it does not catch) is waited out instead of failing the test
    and leaking the service."""
    import time

    import requests

    from tests.service import make_service

    started = []

    def wait_healthy(svc, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if svc.proc.poll() is not None:
                raise RuntimeError(f"service exited with {svc.proc.returncode}:\n{svc.log()}")
            try:
                if requests.get(svc.url + "/health", timeout=5).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"service did not become healthy:\n{svc.log()}")

    def start(**env: str):
        svc = make_service(tmp_path / f"svc{len(started)}", **env)
        started.append(svc)
        try:
            svc.start()
        except requests.RequestException:
            wait_healthy(svc)
        return svc

    yield start
    for svc in started:
        svc.stop()
