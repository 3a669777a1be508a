"""Fixtures for the black-box tests; the running services come from tests/support/service.py."""
from __future__ import annotations

import pytest

from tests.support.service import make_service


@pytest.fixture(scope="module")
def module_service(tmp_path_factory):
    """A private service with a pristine store, shared by the tests of one module."""
    svc = make_service(tmp_path_factory.mktemp("bbsvc")).start()
    yield svc
    svc.stop()
