"""Fixtures for the image tests.

Black-box: the real service (``falconproc serve`` under gunicorn, 2 web workers).
``ondemand_service`` (RUN_SUPERVISOR=0: nothing renders a preset before a GET asks) is
shared by the whole package; tests/conftest.py's ``service`` (default settings, job
supervisor on, shared by the session), ``module_service`` (pristine, per module) and
``fresh_service(**env)`` (private) are the others.

In-process: ``imaging`` builds a store, the ingest path (the same native header probe) and
an ImageService over temp dirs, no HTTP (tests/support/inprocess.py).
"""
from __future__ import annotations

import pytest

from tests.support.inprocess import Imaging, build_imaging


@pytest.fixture(scope="package")
def ondemand_service(launcher, tmp_path_factory):
    # A gthread worker accepts up to worker_connections (default 1000) and queues them for
    # its threads, so one worker could take all of a burst; capped at 5 here, a burst of 10
    # connections must reach both workers (the render-once test relies on it).
    svc = launcher.start(tmp_path_factory.mktemp("imgondemand"), RUN_SUPERVISOR="0",
                         GUNICORN_CMD_ARGS="--worker-connections 5")
    yield svc
    svc.stop()


@pytest.fixture
def imaging(tmp_path) -> Imaging:
    return build_imaging(tmp_path)


@pytest.fixture(scope="module")
def module_imaging(tmp_path_factory) -> Imaging:
    return build_imaging(tmp_path_factory.mktemp("imaging"))
