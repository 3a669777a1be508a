"""Fixtures for the text/OCR tests: the same services as tests/conftest.py, started patiently.

``Service.start`` in tests/service.py polls /health with a 1 s read timeout and treats only a
refused connection as "not up yet": on a loaded 2-core machine gunicorn's master accepts the
connection before its workers have imported the app, the read times out and start() raises.
Until that is fixed there, these fixtures start the same ``Service`` with a loop that also
waits through read timeouts.
"""
from __future__ import annotations

import time

import pytest
import requests

from tests.service import Service, make_service


class PatientService(Service):
    def start(self, timeout: float = 60.0) -> Service:
        import subprocess
        import sys

        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "falconproc.cli", "serve"], env=self.env,
                                     stdout=log, stderr=subprocess.STDOUT, cwd=self.base)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"service exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if (requests.get(self.url + "/health", timeout=5).status_code == 200
                        and len(self.worker_pids()) >= int(self.env.get("WEB_WORKERS", "1"))):
                    return self
            except (requests.ConnectionError, requests.Timeout):
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"service did not become healthy:\n{self.log()}")


def make_patient(base, **overrides: str) -> PatientService:
    plain = make_service(base, **overrides)
    return PatientService(plain.base, plain.env)


@pytest.fixture(scope="session")
def service(tmp_path_factory):
    svc = make_patient(tmp_path_factory.mktemp("textsvc")).start()
    yield svc
    svc.stop()


@pytest.fixture
def fresh_service(tmp_path):
    started: list[Service] = []

    def start(**env: str) -> Service:
        svc = make_patient(tmp_path / f"svc{len(started)}", **env).start()
        started.append(svc)
        return svc

    yield start
    for svc in started:
        svc.stop()
