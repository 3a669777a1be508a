"""Waiting for things to happen: poll a condition, never sleep and hope."""
from __future__ import annotations

import time


def wait_for(predicate, timeout: float, interval: float = 0.05, message: str = "condition"):
    """Poll until ``predicate()`` is truthy and return its value; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)
