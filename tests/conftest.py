"""The running services every folder shares, and the rule that marks tests ``blackbox``.

The rule: a test is black-box when it starts service processes, and it can only start
them through the ``launcher`` fixture below: ``service`` (one shared by the whole
session), ``module_service`` (one per module, pristine store), ``fresh_service(**env)``
(private, per test), a folder's or module's own fixture built on ``launcher``, or
``launcher`` itself. pytest's fixture closure is transitive, so
``pytest_collection_modifyitems`` finds every such test by looking for ``launcher`` in
its fixture names, however deep, and adds the ``blackbox`` marker (selected by
``-m blackbox``, skipped by ``-m "not blackbox"``). A test that starts a service some
other way (``make_service(...).start()`` in its body) is not found at collection, so
the launcher checks again when it starts: while a test runs, a start for a test without
the marker fails (``tests.support.service.LAUNCH_GUARD``). tests/test_harness.py checks
both halves.
"""
from __future__ import annotations

import pytest

from tests.support import service as launch
from tests.support.servers import S3Server, start_redis_server, start_s3_server
from tests.support.service import Launcher, Service

LAUNCHER_FIXTURE = "launcher"


@pytest.fixture(scope="session")
def launcher():
    """The one way tests start service processes (see the module docstring)."""
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


@pytest.hookimpl(tryfirst=True)  # before -m deselects by marker
def pytest_collection_modifyitems(config, items):
    blackbox = pytest.mark.blackbox
    for item in items:
        if LAUNCHER_FIXTURE in getattr(item, "fixturenames", ()) and item.get_closest_marker("blackbox") is None:
            item.add_marker(blackbox)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    def guard() -> None:
        if item.get_closest_marker("blackbox") is None:
            raise RuntimeError(
                f"{item.nodeid} starts service processes but is not marked blackbox: start them "
                f"through a fixture built on `{LAUNCHER_FIXTURE}` (tests/conftest.py), which marks it")

    launch.LAUNCH_GUARD = guard
    yield
    launch.LAUNCH_GUARD = None


# -- real backing servers (scripts/bootstrap.sh --test installs them; missing ones fail) --


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory) -> S3Server:
    """A Ceph RGW on 127.0.0.1 for the session (scripts/s3_server.sh)."""
    server = start_s3_server(tmp_path_factory.mktemp("s3server"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def s3_bucket(s3_server) -> str:
    return s3_server.new_bucket()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    """A real redis-server for the session."""
    server = start_redis_server(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()
