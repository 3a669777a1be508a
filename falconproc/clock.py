"""Timestamps as the API shows them: ISO 8601, UTC, milliseconds, a trailing Z."""
from __future__ import annotations

import time
from datetime import datetime, timezone


def iso_utc(timestamp: float | None = None) -> str:
    moment = datetime.fromtimestamp(time.time() if timestamp is None else timestamp, timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
