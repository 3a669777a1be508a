"""Facts about the running service that every process can read.

``mark_service_root()`` is called in the process that owns the service (the
gunicorn master in its on_starting hook, or a standalone process); forked
children inherit the value, so any web worker can find the whole process tree.
"""
from __future__ import annotations

import os
import time

_root_pid: int | None = None
_started_at: float = time.time()


def mark_service_root() -> None:
    global _root_pid, _started_at
    _root_pid = os.getpid()
    _started_at = time.time()


def set_service_root(pid: int) -> None:
    """For a process started (not forked) by the root, e.g. the job supervisor."""
    global _root_pid
    _root_pid = pid


def service_root_pid() -> int:
    return _root_pid or os.getpid()


def uptime_seconds() -> float:
    return time.time() - _started_at
