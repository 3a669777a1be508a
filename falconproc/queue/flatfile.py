"""Flat-file job queue: one JSON file per job, maildir-style state directories.

    QUEUE_PATH/pending/   queued, or waiting for a retry (file mtime = not-before time)
    QUEUE_PATH/claimed/   running (file mtime = lease heartbeat)
    QUEUE_PATH/done/      finished (pruned after DONE_RETENTION_SECONDS)
    QUEUE_PATH/dead/      dead-lettered, with the last error
    QUEUE_PATH/keys/      work key -> job id, for dedup while queued or running
    QUEUE_PATH/tmp/       staging for atomic writes

A job's state is the directory it is in, changed by rename, so a job is in
exactly one state at any instant. File names sort by priority, then enqueue
time, so a directory listing is the claim order. Every mutation holds one
flock on QUEUE_PATH/lock: transitions are a few milliseconds, and the lock
closes the races between claimers, the reaper and enqueuers (the kernel drops
it if a holder dies). A runner's transition re-reads the claimed file under
that lock and goes ahead only if the stored claim (claimer + claim token) is
still the runner's own.
"""
from __future__ import annotations

import hashlib
import os
import re
import socket
import time
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from falconproc.fsutil import atomic_write_bytes, atomic_write_json, fsync_dir, read_json
from falconproc.locks import file_lock
from falconproc.queue.base import (DEAD, DONE, DONE_RETENTION_SECONDS, QUEUED, RETRYING, RUNNING, ClaimLost, Job,
                                   JobNotFound, JobQueue)

STATES = ("pending", "claimed", "done", "dead")
_ID_RE = re.compile(r"[0-9]{2}-[0-9]{20}-[a-z0-9_]{1,32}-[0-9a-f]{8}")


def is_job_id(value: str) -> bool:
    return bool(_ID_RE.fullmatch(value))


def worker_identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class FlatFileQueue(JobQueue):
    def __init__(self, root: Path, *, max_pending: int = 100, max_attempts: int = 3, backoff_base: float = 1.0,
                 backoff_cap: float = 10.0, priorities: tuple[str, ...] = (), fsync: bool = True,
                 clock: Callable[[], float] = time.time):
        super().__init__(max_pending=max_pending, max_attempts=max_attempts, backoff_base=backoff_base,
                         backoff_cap=backoff_cap, priorities=priorities, clock=clock)
        self.root = Path(root)
        self.fsync = fsync
        for name in (*STATES, "keys", "tmp"):
            (self.root / name).mkdir(parents=True, exist_ok=True)
        self._lock_path = self.root / "lock"
        # The doorbell: a FIFO the supervisor waits on; every enqueue writes a byte to
        # it (if anyone listens). Saves up to a poll interval per job.
        self._doorbell: Path | None = self.root / "doorbell"
        try:
            os.mkfifo(self._doorbell, 0o600)
        except FileExistsError:
            pass
        except OSError:  # a filesystem without FIFOs: the supervisor polls
            self._doorbell = None
        self._doorbell_fd: int | None = None

    # -- wake-ups ------------------------------------------------------------------

    def wakeup_fileno(self) -> int | None:
        if self._doorbell is None:
            return None
        if self._doorbell_fd is None:
            try:
                # O_RDWR: the FIFO never reads as EOF and writers can always open it (Linux).
                self._doorbell_fd = os.open(self._doorbell, os.O_RDWR | os.O_NONBLOCK)
            except OSError:
                return None
        return self._doorbell_fd

    def clear_wakeup(self) -> None:
        if self._doorbell_fd is not None:
            self._drain(self._doorbell_fd)

    def _wake_supervisors(self) -> None:
        if self._doorbell is None:
            return
        try:
            fd = os.open(self._doorbell, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:  # ENXIO: no supervisor listening here; it will poll
            return
        try:
            os.write(fd, b"\0")
        except OSError:  # full: a wake-up is pending anyway
            pass
        finally:
            os.close(fd)

    # -- helpers -------------------------------------------------------------------

    def _locked(self) -> AbstractContextManager[None]:
        return file_lock(self._lock_path)

    def _path(self, state: str, job_id: str) -> Path:
        return self.root / state / f"{job_id}.json"

    def _write(self, state: str, job: Job, *, mtime: float | None = None) -> None:
        path = self._path(state, job.id)
        atomic_write_json(path, job.to_json(), fsync=self.fsync, tmp_dir=self.root / "tmp")
        if mtime is not None:
            os.utime(path, (mtime, mtime))

    def _move(self, job_id: str, src: str, dst: str) -> None:
        os.rename(self._path(src, job_id), self._path(dst, job_id))
        if self.fsync:
            fsync_dir(self.root / dst)
            fsync_dir(self.root / src)

    def _key_path(self, key: str) -> Path:
        return self.root / "keys" / hashlib.sha256(key.encode()).hexdigest()[:32]

    def _drop_key(self, job: Job) -> None:
        path = self._key_path(job.key)
        try:
            if path.read_text() == job.id:
                path.unlink()
        except FileNotFoundError:
            pass

    def _owned(self, job: Job) -> Job:
        """The stored claim of ``job`` if it is still the caller's (lock held), else ClaimLost."""
        try:
            current = Job.from_json(read_json(self._path("claimed", job.id)))
        except FileNotFoundError:
            raise ClaimLost(f"job {job.id} is no longer claimed") from None
        if (current.claimed_by, current.claim_token) != (job.claimed_by, job.claim_token):
            raise ClaimLost(f"job {job.id} was claimed again after {job.claimed_by} lost its lease")
        return current

    def _find(self, job_id: str) -> tuple[str, Job]:
        if not is_job_id(job_id):
            raise JobNotFound(job_id)
        for state in STATES:
            try:
                job = Job.from_json(read_json(self._path(state, job_id)))
            except FileNotFoundError:
                continue
            job.status = _status(state, job)
            return state, job
        raise JobNotFound(job_id)

    def _backoff(self, attempts: int) -> float:
        return min(self.backoff_base * 2 ** max(attempts - 1, 0), self.backoff_cap)

    # -- the interface -------------------------------------------------------------

    def enqueue(self, type: str, content_hash: str, *, variant: str = "", priority: int | None = None,
                payload: dict[str, Any] | None = None, max_attempts: int | None = None,
                force: bool = False, delay: float = 0.0) -> Job:
        priority = self._priority_for(type, priority)
        now = self.clock()
        job = Job(id="", type=type, content_hash=content_hash, variant=variant, priority=priority,
                  max_attempts=max_attempts or self.max_attempts, created_at=now, updated_at=now,
                  not_before=now + delay if delay > 0 else 0.0, payload=payload or {})
        with self._locked():
            key_path = self._key_path(job.key)
            try:
                existing_id = key_path.read_text()
                state, existing = self._find(existing_id)
                if state in ("pending", "claimed"):
                    return existing
            except (FileNotFoundError, JobNotFound):
                pass
            if not force:
                self.check_capacity()
            job.id = f"{min(max(priority, 0), 99):02d}-{time.time_ns():020d}-{type}-{uuid.uuid4().hex[:8]}"
            self._write("pending", job, mtime=max(now, job.not_before))  # claim() skips it until then
            atomic_write_bytes(key_path, job.id.encode(), fsync=self.fsync, tmp_dir=self.root / "tmp")
        self._ring()
        return job

    def pending_count(self) -> int:
        return sum(1 for name in os.listdir(self.root / "pending") if name.endswith(".json"))

    def claim(self, types: list[str], worker_id: str | None = None) -> Job | None:
        wanted = set(types)
        now = self.clock()
        with self._locked():
            with os.scandir(self.root / "pending") as entries:
                candidates = sorted((e for e in entries if e.name.endswith(".json")), key=lambda e: e.name)
            for entry in candidates:
                job_type = entry.name.split("-", 3)[2] if entry.name.count("-") >= 3 else ""
                if job_type not in wanted:
                    continue
                try:
                    if entry.stat().st_mtime > now:  # retry backoff not over yet
                        continue
                except FileNotFoundError:
                    continue
                job_id = entry.name[:-5]
                job = Job.from_json(read_json(Path(entry.path)))
                self._move(job_id, "pending", "claimed")
                job.attempts += 1
                job.status = RUNNING
                job.claimed_by = worker_id or worker_identity()
                job.claim_token = uuid.uuid4().hex
                job.updated_at = now
                self._write("claimed", job, mtime=now)
                return job
        return None

    def heartbeat(self, job: Job) -> None:
        now = self.clock()
        path = self._path("claimed", job.id)
        with self._locked():
            self._owned(job)
            os.utime(path, (now, now))

    def complete(self, job: Job, result: dict[str, Any] | None = None) -> Job:
        now = self.clock()
        with self._locked():
            current = self._owned(job)
            self._move(job.id, "claimed", "done")
            job.attempts = current.attempts
            job.status = DONE
            job.result = result
            job.updated_at = now
            self._write("done", job, mtime=now)  # prune_done ages it by the queue's clock
            self._drop_key(job)
        return job

    def fail(self, job: Job, error: str) -> Job:
        now = self.clock()
        with self._locked():
            current = self._owned(job)
            # The caller may only raise attempts (to give up at once), never reset them.
            job.max_attempts = current.max_attempts
            job.attempts = min(max(job.attempts, current.attempts), current.max_attempts)
            self._end_attempt(job, error, now, retry_at=now + self._backoff(job.attempts))
        return job

    def _end_attempt(self, job: Job, error: str, now: float, *, retry_at: float) -> None:
        """A failed attempt (lock held): dead-letter after the last one, else retry later."""
        job.last_error = error[:2000]
        job.updated_at = now
        job.claim_token = None  # no runner holds it now
        if job.attempts >= job.max_attempts:
            self._move(job.id, "claimed", "dead")
            job.status = DEAD
            self._write("dead", job)
            self._drop_key(job)
        else:
            self._move(job.id, "claimed", "pending")
            job.status = RETRYING
            job.not_before = retry_at
            self._write("pending", job, mtime=retry_at)

    def release(self, job: Job) -> Job:
        with self._locked():
            current = self._owned(job)
            self._move(job.id, "claimed", "pending")
            job.attempts = max(current.attempts - 1, 0)
            job.status = QUEUED if job.attempts == 0 else RETRYING
            job.claimed_by = None
            job.claim_token = None
            job.updated_at = self.clock()
            self._write("pending", job, mtime=job.updated_at)
        return job

    def reap(self, lease_seconds: float, alive: Callable[[str], bool] | None = None) -> int:
        """Requeue claimed jobs whose lease expired or whose claimer is known dead.

        An attempt that died with its process counts: a job that kills its runner every
        time ends dead-lettered instead of looping.
        """
        now = self.clock()
        reaped = 0
        dead: list[Job] = []
        with self._locked():
            with os.scandir(self.root / "claimed") as entries:
                claimed = [e for e in entries if e.name.endswith(".json")]
            for entry in claimed:
                try:
                    expired = now - entry.stat().st_mtime > lease_seconds
                    job = Job.from_json(read_json(Path(entry.path)))
                except FileNotFoundError:
                    continue
                dead_claimer = alive is not None and job.claimed_by is not None and not alive(job.claimed_by)
                if not (expired or dead_claimer):
                    continue
                # Its runner died, not necessarily because of the job: retry at once.
                self._end_attempt(job, "the job's process died or stopped heartbeating (lease expired)", now,
                                  retry_at=now)
                reaped += 1
                if job.status == DEAD:
                    dead.append(job)
        self._reaped_dead(dead)  # outside the lock: a hook may use the queue
        return reaped

    def prune_done(self, older_than: float = DONE_RETENTION_SECONDS) -> int:
        """Delete done jobs whose file (written at completion) is older than ``older_than``."""
        cutoff = self.clock() - older_than
        removed = 0
        with os.scandir(self.root / "done") as entries:
            for entry in entries:
                try:
                    if entry.stat().st_mtime < cutoff:
                        os.unlink(entry.path)
                        removed += 1
                except FileNotFoundError:
                    continue
        return removed

    def get(self, job_id: str) -> Job:
        if not is_job_id(job_id):
            raise JobNotFound(job_id)
        with self._locked():  # a job moving between states must not look absent
            return self._find(job_id)[1]

    def find(self, type: str, content_hash: str, variant: str = "") -> Job | None:
        """The queued or running job for this work, if any."""
        key = Job(id="", type=type, content_hash=content_hash, variant=variant).key
        try:
            with self._locked():
                state, job = self._find(self._key_path(key).read_text())
        except (FileNotFoundError, JobNotFound):
            return None
        return job if state in ("pending", "claimed") else None

    def list(self, state: str) -> list[Job]:
        jobs = []
        for name in sorted(os.listdir(self.root / state)):
            if name.endswith(".json"):
                try:
                    job = Job.from_json(read_json(self.root / state / name))
                except FileNotFoundError:
                    continue
                job.status = _status(state, job)
                jobs.append(job)
        return jobs

    def oldest_pending(self) -> dict[str, float]:
        # The id holds priority, enqueue time (ns) and type: no file needs reading.
        oldest: dict[str, int] = {}
        for name in os.listdir(self.root / "pending"):
            parts = name[:-5].split("-") if name.endswith(".json") else []
            if len(parts) == 4 and parts[1].isdigit():
                oldest[parts[2]] = min(oldest.get(parts[2], int(parts[1])), int(parts[1]))
        return {job_type: ns / 1e9 for job_type, ns in oldest.items()}

    def stats(self) -> dict[str, int]:
        def count(state: str) -> int:
            return sum(1 for name in os.listdir(self.root / state) if name.endswith(".json"))

        # Retrying and queued jobs share pending/: only the file knows its attempts. The
        # files read are bounded by MAX_QUEUE_SIZE (plus an upload's forced jobs).
        pending = self.list("pending")
        retrying = sum(1 for job in pending if job.status == RETRYING)
        return {QUEUED: len(pending) - retrying, RUNNING: count("claimed"), RETRYING: retrying,
                DONE: count("done"), DEAD: count("dead")}


def _status(state: str, job: Job) -> str:
    if state == "pending":
        return RETRYING if job.attempts > 0 else QUEUED
    return {"claimed": RUNNING, "done": DONE, "dead": DEAD}[state]
