"""Reliability fixtures.

``fresh_service`` here shadows the one in tests/conftest.py with a start-up that tolerates
the first /health answering slowly: the master accepts connections into the backlog before
its worker has booted (about 1 s), and ``Service.start`` polls with a 1 s read timeout but
only catches ConnectionError, so a ReadTimeout escapes (and leaves the service running).
"""
from __future__ import annotations

import pytest

from tests.reliability._util import start_service
from tests.service import Service, make_service


@pytest.fixture
def fresh_service(tmp_path):
    started: list[Service] = []

    def start(**env: str) -> Service:
        svc = make_service(tmp_path / f"svc{len(started)}", **env)
        started.append(svc)
        return start_service(svc)

    yield start
    for svc in started:
        svc.stop()
