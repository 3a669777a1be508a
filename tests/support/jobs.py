"""The job queue of a running service, as the tests outside tests/jobs/ need it."""
from __future__ import annotations

import os

from falconproc.queue.flatfile import FlatFileQueue

# The test-only job types (tests/support/jobs_plugin.py), as the JOB_PLUGINS setting names them.
JOB_PLUGINS = "tests.support.jobs_plugin"


def random_hash() -> str:
    return os.urandom(32).hex()


def open_service_queue(svc) -> FlatFileQueue:
    """The running service's queue, opened over the same flat files with the same settings."""
    from falconproc.config import Settings
    from falconproc.wiring import Components

    queue = Components(Settings.from_env(svc.env)).queue
    queue.max_pending = 10_000  # the test itself may fill past the service's limit
    return queue
