"""Process helpers for the supervisor lifecycle tests: a standalone `falconproc worker`,
and checks that processes are gone."""
from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from tests.queue._helpers import read_joblog


def gone(proc: psutil.Process) -> bool:
    """True when the process no longer runs (exited, or a zombie nobody reaped yet).
    ``proc`` remembers its creation time, so a reused pid does not count as it."""
    try:
        return not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def alive(procs) -> list[int]:
    return [p.pid for p in procs if not gone(p)]


def attempts_started(queue_root: Path, job_type: str, job_id: str) -> list[dict]:
    """The job log's start events of one job, oldest first."""
    return [e for e in read_joblog(queue_root, job_type) if e["id"] == job_id and e["event"] == "start"]


def ends(queue_root: Path, job_type: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for e in read_joblog(queue_root, job_type):
        if e["event"] == "end":
            counts[e["id"]] = counts.get(e["id"], 0) + 1
    return counts


@pytest.fixture
def standalone_worker(tmp_path):
    """Starts `python -m falconproc.cli worker` with the given environment; any still
    running at the end of the test is killed."""
    started: list[subprocess.Popen] = []

    def start(env: dict[str, str]) -> subprocess.Popen:
        log_path = tmp_path / f"worker{len(started)}.log"
        with open(log_path, "ab") as log:
            proc = subprocess.Popen([sys.executable, "-m", "falconproc.cli", "worker"], env=env,
                                    stdout=log, stderr=subprocess.STDOUT)
        proc.log_path = log_path  # type: ignore[attr-defined]
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()


def worker_log(proc: subprocess.Popen) -> str:
    path = getattr(proc, "log_path", None)
    return path.read_text(errors="replace")[-5000:] if path and path.exists() else ""
