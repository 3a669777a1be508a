"""The running services every folder shares, all started through the ``launcher`` fixture:
``service`` (one shared by the whole session), ``module_service`` (one per module,
pristine store), ``fresh_service(**env)`` (private, per test); a folder or module that
needs its own builds it on ``launcher`` too.
"""
from __future__ import annotations

import pytest

from tests.support.service import Launcher, Service


@pytest.fixture(scope="session")
def launcher():
    """The one way tests start service processes (tests/support/service.py's Launcher)."""
    launcher = Launcher()
    yield launcher
    launcher.stop_all()


@pytest.fixture(scope="session")
def service(launcher, tmp_path_factory) -> Service:
    """One running service for the read-mostly black-box tests of every folder."""
    svc = launcher.start(tmp_path_factory.mktemp("svc"))
    yield svc
    svc.stop()


@pytest.fixture(scope="module")
def module_service(launcher, tmp_path_factory) -> Service:
    """A private service with a pristine store, shared by the tests of one module."""
    svc = launcher.start(tmp_path_factory.mktemp("modsvc"))
    yield svc
    svc.stop()


@pytest.fixture
def fresh_service(launcher, tmp_path):
    """``fresh_service(**env)``: a private service for tests that kill processes or need
    special settings; stopped at the end of the test."""
    started: list[Service] = []

    def start(**env: str) -> Service:
        svc = launcher.make(tmp_path / f"svc{len(started)}", **env)
        started.append(svc)
        return svc.start()

    yield start
    for svc in started:
        svc.stop()
