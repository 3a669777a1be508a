"""Helpers shared by the job-subsystem tests (queue contract, supervisor, black-box)."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from falconproc.queue import FlatFileQueue

STATE_DIRS = ("pending", "claimed", "done", "dead")


class FakeClock:
    """A wall clock the test moves by hand (the queue's ``clock=`` parameter)."""

    def __init__(self, start: float = 1_700_000_000.0):
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


def content_hash(label: Any) -> str:
    return hashlib.sha256(str(label).encode()).hexdigest()


def random_hash() -> str:
    return os.urandom(32).hex()


def state_files(root: Path) -> dict[str, list[str]]:
    """Job ids per flat-file state directory."""
    return {state: sorted(name[:-5] for name in os.listdir(root / state) if name.endswith(".json"))
            for state in STATE_DIRS}


def job_files(root: Path, state: str) -> dict[str, dict]:
    out = {}
    for name in os.listdir(root / state):
        if name.endswith(".json"):
            try:
                out[name[:-5]] = json.loads((root / state / name).read_bytes())
            except FileNotFoundError:
                continue
    return out


def read_joblog(queue_root: Path, job_type: str) -> list[dict]:
    path = Path(queue_root).parent / "joblog" / f"{job_type}.log"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def intervals(events: list[dict]) -> list[tuple[float, float, str, int]]:
    """(start, end, job id, pid) of every attempt that finished, from a joblog."""
    starts: dict[tuple[str, int], float] = {}
    spans = []
    for ev in events:
        key = (ev["id"], ev["pid"])
        if ev["event"] == "start":
            starts[key] = ev["t"]
        elif ev["event"] == "end" and key in starts:
            spans.append((starts.pop(key), ev["t"], ev["id"], ev["pid"]))
    return spans


def max_overlap(spans: list[tuple[float, float, Any, Any]]) -> int:
    points = sorted([(s, 1) for s, *_ in spans] + [(e, -1) for _, e, *_ in spans], key=lambda p: (p[0], p[1]))
    best = current = 0
    for _, delta in points:
        current += delta
        best = max(best, current)
    return best


def open_service_queue(svc) -> FlatFileQueue:
    """The running service's queue, opened over the same flat files with the same settings."""
    from falconproc.config import Settings
    from falconproc.queue import create_queue

    queue = create_queue(Settings.from_env(svc.env))
    queue.max_pending = 10_000  # the test itself may fill past the service's limit
    return queue
