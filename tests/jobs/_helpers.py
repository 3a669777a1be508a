"""Helpers of the job tests (queue contract, supervisor, black-box, crash tests): the queue's
flat files, the job log of tests/support/jobs_plugin.py, the supervisor's processes, and
the crash tests' burst of random SIGKILLs."""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import signal
import statistics
import subprocess
import sys
import termios
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.support.http import health
from tests.support.jobs import JOB_PLUGINS
from tests.support.wait import wait_for

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


# The service settings the job tests run with: the test job types, quick retries, short leases.
JOB_ENV = {
    "JOB_PLUGINS": JOB_PLUGINS,
    "JOB_BACKOFF_BASE": "0.1",
    "JOB_BACKOFF_CAP": "1",
    "JOB_LEASE_SECONDS": "3",
}


def supervisor_of(svc) -> psutil.Process | None:
    """The `falconproc.cli worker` child of the gunicorn master."""
    try:
        children = psutil.Process(svc.proc.pid).children()
    except psutil.NoSuchProcess:
        return None
    for child in children:
        try:
            cmd = child.cmdline()
            if "falconproc.cli" in cmd and "worker" in cmd and child.status() != psutil.STATUS_ZOMBIE:
                return child
        except psutil.Error:
            continue
    return None


def job_processes(sup: psutil.Process) -> list[psutil.Process]:
    try:
        return [c for c in sup.children() if c.status() != psutil.STATUS_ZOMBIE]
    except psutil.Error:
        return []


MiB = 1024 * 1024


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


def worker_log(proc: subprocess.Popen) -> str:
    path = getattr(proc, "log_path", None)
    return path.read_text(errors="replace")[-5000:] if path and path.exists() else ""


def supervisor_passes(svc, passes: int = 1, *, timeout: float = 10.0) -> None:
    """Return once the service's job supervisor has run ``passes`` whole passes of its
    loop (collect, enforce limits, claim and admit jobs) that began after this call: the
    proof that it had its chance to act on what the queue holds now, for a test that then
    asserts it did not act.

    The supervisor waits on the queue's doorbell (a FIFO), empties it after every wait,
    and runs at least one pass between two waits. So each round rings (writes a byte)
    and waits until the FIFO is empty again (FIONREAD on a read end of our own that never
    reads): the supervisor took that ring, and the next round's ring can only be taken
    after another pass. ``passes + 1`` rounds prove ``passes`` passes."""
    doorbell = Path(svc.env["QUEUE_PATH"]) / "doorbell"
    watch = os.open(doorbell, os.O_RDONLY | os.O_NONBLOCK)
    try:
        for n in range(passes + 1):
            ring = os.open(doorbell, os.O_WRONLY | os.O_NONBLOCK)
            try:
                os.write(ring, b"\0")
            finally:
                os.close(ring)
            wait_for(lambda: _unread(watch) == 0, timeout, 0.005,
                     f"the supervisor to take doorbell ring {n + 1} of {passes + 1}")
    finally:
        os.close(watch)


def _unread(fd: int) -> int:
    """Bytes waiting in a pipe or FIFO, without reading them."""
    return int.from_bytes(fcntl.ioctl(fd, termios.FIONREAD, bytes(4)), sys.byteorder, signed=True)


@dataclass
class SigkillBurst:
    """What ``sigkill_burst`` did, and the finished jobs' files after it."""
    seconds: float  # how long the burst ran
    job_kills: int
    supervisor_kills: int
    recoveries: list[dict]  # one per supervisor kill (kill_supervisor_and_time_recovery)
    rss_samples: list[int]  # the service tree's RSS from /health, every 0.5 s of the burst
    proc_samples: list[int]  # its process count, alongside
    done: dict[str, dict]  # job id -> job file, in done/ after the drain
    dead: dict[str, dict]  # the same in dead/

    def print_report(self, tag: str, jobs: str, extra: str) -> None:
        """Print "[tag] <jobs>, burst ...: kills, done, dead, attempts; <extra>", how fast
        each supervisor kill was recovered from, and the RSS samples."""
        attempts = [d["attempts"] for d in {**self.done, **self.dead}.values()]
        print(f"\n[{tag}] {jobs}, burst {self.seconds:.1f} s: {self.job_kills} job-process kills, "
              f"{self.supervisor_kills} supervisor kills; done {len(self.done)}, dead {len(self.dead)}; attempts "
              f"histogram { {a: attempts.count(a) for a in sorted(set(attempts))} }; {extra}")
        back = [r["back_to_running"] for r in self.recoveries if r["back_to_running"] is not None]
        for r in self.recoveries:
            print(f"[{tag}] supervisor kill: {r['claimed']} claimed jobs, new supervisor after "
                  f"{r['new_supervisor']:.2f} s, all claimed jobs running again after "
                  f"{'-' if r['back_to_running'] is None else format(r['back_to_running'], '.2f')} s")
        if back:
            print(f"[{tag}] killed supervisor's jobs back to running: max {max(back):.2f} s, "
                  f"mean {statistics.mean(back):.2f} s")
        if self.rss_samples:
            rss = self.rss_samples
            print(f"[{tag}] tree RSS from /health during the burst: min {min(rss) / MiB:.0f} MiB, "
                  f"mean {statistics.mean(rss) / MiB:.0f} MiB, max {max(rss) / MiB:.0f} MiB "
                  f"({len(rss)} samples, {min(self.proc_samples)}-{max(self.proc_samples)} processes)")


def sigkill_burst(svc, queue, rng, job_ids, *, seconds: float, first_supervisor_kill: float,
                  pause: tuple[float, float], drain_timeout: float, max_attempts: int) -> SigkillBurst:
    """For up to ``seconds`` (less if the queue empties): SIGKILL a random job process of
    the service's supervisor every ``pause`` (uniform low, high) seconds, and the
    supervisor itself after ``first_supervisor_kill`` seconds and then every 2-3 s, timing
    each recovery. Then wait up to ``drain_timeout`` s for the queue to drain and check
    that nothing was lost: every job is in exactly one state, the jobs are ``job_ids``,
    none is claimed or pending, each took 1 to ``max_attempts`` attempts and each dead
    one kept its last error."""
    root = Path(svc.env["QUEUE_PATH"])
    sup = wait_for(lambda: supervisor_of(svc), 10, 0.05, "the supervisor")
    job_kills = sup_kills = 0
    recoveries: list[dict] = []
    rss_samples: list[int] = []
    proc_samples: list[int] = []
    next_sup_kill = time.monotonic() + first_supervisor_kill
    next_health = 0.0
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        stats = queue.stats()
        if stats["queued"] + stats["retrying"] + stats["running"] == 0:
            break
        now = time.monotonic()
        if now >= next_health:
            memory = health(svc)["memory"]
            rss_samples.append(memory["rss"])
            proc_samples.append(memory["processes"])
            next_health = now + 0.5
        sup = supervisor_of(svc)
        if sup is None:
            time.sleep(0.05)
            continue
        if now >= next_sup_kill:
            recoveries.append(kill_supervisor_and_time_recovery(svc, sup, root))
            sup_kills += 1
            next_sup_kill = time.monotonic() + rng.uniform(2.0, 3.0)
            continue
        children = job_processes(sup)
        if children:
            try:
                rng.choice(children).send_signal(signal.SIGKILL)
                job_kills += 1
            except psutil.Error:
                pass
        time.sleep(rng.uniform(*pause))
    burst_seconds = time.monotonic() - started

    def drained():
        stats = queue.stats()
        return stats["queued"] + stats["retrying"] + stats["running"] == 0

    wait_for(drained, drain_timeout, 0.2, "the queue to drain after the burst")

    files = state_files(root)
    located: dict[str, str] = {}
    for state, ids in files.items():
        for job_id in ids:
            assert job_id not in located, f"{job_id} is in {located[job_id]} and {state}"
            located[job_id] = state
    assert set(located) == set(job_ids), "a job was lost or invented"
    assert files["claimed"] == [] and files["pending"] == [], "orphaned claims"
    done, dead = job_files(root, "done"), job_files(root, "dead")
    for job_id, data in {**done, **dead}.items():
        assert 1 <= data["attempts"] <= max_attempts, (job_id, data["attempts"])
    for job_id, data in dead.items():
        assert data["last_error"], f"dead job {job_id} without its last error"
    return SigkillBurst(burst_seconds, job_kills, sup_kills, recoveries, rss_samples, proc_samples, done, dead)


def kill_supervisor_and_time_recovery(svc, sup: psutil.Process, root: Path) -> dict:
    """SIGKILL the supervisor; time until the master's replacement is up and until every
    job the dead one had claimed is running again (claimed by the new one, or finished)."""
    old = f"{os.uname().nodename}:{sup.pid}"
    claimed = [job_id for job_id, data in job_files(root, "claimed").items() if data.get("claimed_by") == old]
    killed_at = time.monotonic()
    sup.send_signal(signal.SIGKILL)
    new_sup_after = back_after = None
    pending = set(claimed)
    deadline = killed_at + 20
    while time.monotonic() < deadline and (new_sup_after is None or pending):
        current = supervisor_of(svc)
        if new_sup_after is None and current is not None and current.pid != sup.pid:
            new_sup_after = time.monotonic() - killed_at
        if pending:
            claims = job_files(root, "claimed")
            finished = set(os.listdir(root / "done")) | set(os.listdir(root / "dead"))
            for job_id in list(pending):
                data = claims.get(job_id)
                if (data and data.get("claimed_by") != old) or f"{job_id}.json" in finished:
                    pending.discard(job_id)
            if not pending:
                back_after = time.monotonic() - killed_at
        time.sleep(0.02)
    assert new_sup_after is not None, "the master did not restart the killed supervisor"
    assert not pending, f"jobs of the killed supervisor never ran again: {sorted(pending)}"
    return {"claimed": len(claimed), "new_supervisor": new_sup_after,
            "back_to_running": back_after if claimed else None}
