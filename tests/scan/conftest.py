from __future__ import annotations

import pytest

from tests.support.clamd import Clamd
from tests.support.service import free_port


@pytest.fixture(scope="module")
def clamd(tmp_path_factory):
    """One real clamd per module (unix socket + loopback TCP), stream limit 2 MiB."""
    server = Clamd(tmp_path_factory.mktemp("clamd"), tcp_port=free_port()).start()
    yield server
    server.stop()
