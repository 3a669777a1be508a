"""The job supervisor: claims jobs and runs them in child processes.

It is one single-threaded loop (started by ``falconproc serve`` from gunicorn's
master, or alone as ``falconproc worker``) that:

- claims jobs in priority order while each type is under its concurrency limit
  and the memory governor admits the job's estimated peak (else the job waits,
  claimed and heartbeating, without counting an attempt);
- runs each job in a reusable child process, replaced after JOB_RECYCLE_AFTER
  jobs, killed on its type's wall-clock timeout or past JOB_MEMORY_MAX_BYTES
  (the attempt fails, the queue retries or dead-letters it);
- heartbeats the leases of its jobs and reaps jobs of dead claimers;
- never waits on the object store: the passes that read it (the jobs of uploads
  stored while the queue was down, the scan backfill) run in a thread of their own,
  so a stalled S3 server (a read may wait read_timeout x attempts) cannot stop the
  loop from claiming, heartbeating and enforcing limits; a loop turn that still
  takes long is logged with the step that took the time;
- on SIGTERM stops claiming, lets running jobs finish for the grace period,
  then kills and returns the rest to the queue untouched.

A crash or hang in a job affects only its own process. Each job process leads its
own process group, so what it starts (tesseract, a PDF page pool) is in that group:
killing a job kills the group, even when the job process itself was already killed
from outside; and a job process whose supervisor dies takes its group down with it.
"""
from __future__ import annotations

import faulthandler
import logging
import multiprocessing
import os
import signal
import threading
import time
import traceback
from dataclasses import dataclass, field
from collections.abc import Callable
from pathlib import Path
from multiprocessing.connection import Connection, wait as wait_for_any
from typing import Any

import psutil

from falconproc.config import Settings
from falconproc.errors import ContentQuarantined
from falconproc.jobs import registry
from falconproc.jobs.keeper import STACKS_SIGNAL
from falconproc.jobs.registry import JobContext, PermanentJobError
from falconproc.observability import metrics
from falconproc.observability.governor import MemoryGovernor
from falconproc.observability.logs import reset_request_id, set_request_id
from falconproc.osutil import available_cpus, die_with_parent
from falconproc.queue import DEAD, Job, JobNotFound, JobQueue, QueueUnavailable

log = logging.getLogger("falconproc.supervisor")

#: Builds the JobContext of one job from its CPU budget (wiring.Components.job_context).
ContextFactory = Callable[[int], JobContext]

LOOP_INTERVAL = 0.05
MAX_IDLE_SLEEP = 0.2
REAP_INTERVAL = 2.0
PRUNE_INTERVAL = 600.0
# How often the jobs of uploads stored while the queue did not answer are looked for.
DEFERRED_INTERVAL = 5.0
# How often a batch of the scan backfill (scan.backfill) may be queued.
BACKFILL_INTERVAL = 2.0
# While the queue does not answer (Redis down), how long between tries.
UNAVAILABLE_PAUSE = 1.0
# A loop turn longer than this is logged with its slowest step: a turn normally takes
# milliseconds, and one past a third of the lease lets other instances' reapers take
# this one's running jobs.
SLOW_TURN_SECONDS = 1.0
# The alive file's mtime is set at most this often (the keeper's watchdog reads it).
ALIVE_INTERVAL = 1.0
DEFAULT_TIMEOUT = 60.0
# A job tree's USS is costly to read (smaps_rollup, per process): read at 5 Hz, still
# far quicker than any job can grow past the headroom (figures: benchmarks/README.md).
USS_TTL_SECONDS = 0.2


# The signal a job process gets when its supervisor dies (die_with_parent). Not SIGKILL:
# the process must first kill its group (tesseract and page-pool processes run on as
# orphans otherwise). Nothing else sends it to a job process.
SUPERVISOR_DIED = signal.SIGHUP


def _lead_own_group(supervisor_pid: int) -> None:
    """In a new job process: lead a process group of its own, and kill that whole group
    when the supervisor dies (even by SIGKILL). The handler runs as soon as the process
    is back in the interpreter: at once when it waits on its pipe, on a child
    (tesseract) or in a sleep; after the current call for a long C computation. Under
    gunicorn the SupervisorKeeper also kills what is left of the dead supervisor's session."""
    leader = os.getpid()
    try:
        os.setpgid(0, 0)
    except OSError:  # already done by the supervisor (see JobProcess)
        pass

    def take_group_down(signum: int, frame: Any) -> None:
        if os.getpid() == leader and os.getpgid(0) == leader:
            os.killpg(leader, signal.SIGKILL)  # ourselves included
        # A process forked from the job process (a page-pool worker) only inherited this
        # handler: the signal means what it would without it.
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)

    signal.signal(SUPERVISOR_DIED, take_group_down)
    die_with_parent(SUPERVISOR_DIED)
    if os.getppid() != supervisor_pid:  # the supervisor died before the prctl
        take_group_down(SUPERVISOR_DIED, None)


def _ids(job: Job) -> dict[str, Any]:
    """``extra`` for the supervisor's lines about one job."""
    return {"request_id": job.request_id, "job_id": job.id, "job_type": job.type}


def _job_process_main(conn: Connection, supervisor_pid: int, make_context: ContextFactory) -> None:
    _lead_own_group(supervisor_pid)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Libraries in jobs (tesseract via OpenMP, numpy's BLAS) must not fan out threads.
    os.environ.setdefault("OMP_THREAD_LIMIT", "1")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    while True:
        try:
            message = conn.recv()
        except EOFError:
            return
        if message is None:
            return
        job = Job.from_json(message["job"])
        context = make_context(message["cpuBudget"])
        token = set_request_id(job.request_id)  # the job's log lines carry its upload's id
        try:
            job_type = registry.get(job.type)
            if job_type is None:
                raise LookupError(f"no handler registered for job type {job.type!r}")
            result = job_type.handler(job, context)
            conn.send(("ok", result))
        except (PermanentJobError, ContentQuarantined) as exc:
            conn.send(("permanent", str(exc)))
        except Exception as exc:  # noqa: BLE001 - any handler error fails the attempt
            detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            conn.send(("error", detail))
        finally:
            reset_request_id(token)


@dataclass
class JobProcess:
    """A child process that runs jobs one at a time, reused until recycled."""

    make_context: ContextFactory
    process: multiprocessing.Process = field(init=False)
    conn: Connection = field(init=False)
    jobs_run: int = 0
    _uss: tuple[float, int] | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        ctx = multiprocessing.get_context("fork")
        parent, child = ctx.Pipe()
        # Not daemonic: a job may start its own pool (large PDFs). Orphans cannot
        # happen anyway: each job process takes its group down when the supervisor dies.
        self.process = ctx.Process(target=_job_process_main, args=(child, os.getpid(), self.make_context))
        self.process.start()
        try:  # the child does it too; here as well, so that kill() finds the group at once
            os.setpgid(self.process.pid, self.process.pid)
        except OSError:
            pass
        child.close()
        self.conn = parent

    def send(self, job: Job, cpu_budget: int) -> None:
        self.jobs_run += 1
        self._uss = None  # a new job: its memory is not the last one's
        self.conn.send({"job": job.to_json(), "cpuBudget": cpu_budget})

    def _tree(self) -> list[psutil.Process]:
        """The job process and what it started (a PDF page pool, tesseract)."""
        try:
            root = psutil.Process(self.process.pid)
            return [root, *root.children(recursive=True)]
        except psutil.Error:
            return []

    def rss(self) -> int:
        """Memory the job itself holds: unique set size over its tree. Plain RSS would
        also count the pages a forked child still shares with the supervisor."""
        now = time.monotonic()
        if self._uss is None or now - self._uss[0] > USS_TTL_SECONDS:
            self._uss = (now, self._read_uss())
        return self._uss[1]

    def _read_uss(self) -> int:
        total = 0
        for proc in self._tree():
            try:
                total += proc.memory_full_info().uss
            except psutil.Error:
                continue
        return total

    def exited(self) -> bool:
        """True once the job process has ended. Unlike ``Process.is_alive()`` this does
        not reap it: while it is an unreaped zombie its pid, and so its process group's
        id, cannot be reused, and kill() can still kill the group safely."""
        popen = getattr(self.process, "_popen", None)
        if popen is None or popen.returncode is not None:
            return True  # never started, or already reaped
        try:
            return os.waitid(os.P_PID, self.process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
        except ChildProcessError:
            return True

    def _kill_group(self) -> None:
        pid = self.process.pid
        if pid is None:
            return
        popen = getattr(self.process, "_popen", None)
        # Reaped already (multiprocessing reaps finished children whenever it starts a
        # new one): its group's id is still reserved while any member lives, and a new
        # group with that id would need a live process with that pid.
        if popen is not None and popen.returncode is not None and psutil.pid_exists(pid):
            return
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def kill(self) -> None:
        """Kill the job process and everything it started: its process group (which
        holds tesseract even after the job process itself was killed from outside),
        and what the tree still shows (a child that left the group)."""
        tree = self._tree()
        self._kill_group()
        for proc in reversed(tree):
            try:
                proc.kill()
            except psutil.Error:
                continue
        self.process.join(timeout=5)
        self.conn.close()

    def stop(self) -> None:
        try:
            self.conn.send(None)
        except (OSError, BrokenPipeError):
            pass
        self.process.join(timeout=2)
        if self.process.is_alive():
            self.kill()
        else:
            self.conn.close()


@dataclass
class Running:
    job: Job
    proc: JobProcess | None  # None while waiting for memory admission
    estimate: int
    started: float = 0.0


class Supervisor:
    def __init__(self, settings: Settings, queue: JobQueue, governor: MemoryGovernor, make_context: ContextFactory,
                 queue_deferred: Callable[[], int] | None = None, backfill: Callable[[], int] | None = None,
                 alive_file: Path | None = None):
        self.settings = settings
        # Touched every loop turn: the keeper restarts us when it goes stale (see keeper.py).
        self.alive_file = alive_file
        self._last_alive = 0.0
        self.queue = queue
        # Queues the jobs of uploads stored while the queue did not answer (how many).
        self.queue_deferred = queue_deferred
        # Queues a batch of jobs for content stored before they applied (the scans of
        # what was stored while SCAN_MODE was off): how many.
        self.backfill = backfill
        self.governor = governor
        # Builds a job's JobContext in its job process (after the fork) from the
        # composition root's objects; the dead-letter hooks here get one too.
        self.make_context = make_context
        # INSTANCE_ID, not the hostname: two containers may share a hostname (and pid
        # numbers), and must never take each other's live claims for dead ones.
        self.identity = f"{settings.instance_id}/{os.getpid()}"
        self.running: list[Running] = []
        self.idle: dict[str, list[JobProcess]] = {}
        self.stopping = False
        self.parent_pid = os.getppid()
        self._last_reap = 0.0
        self._last_heartbeat = 0.0
        self._last_prune = 0.0
        self._queue_down = False
        self._turn: dict[str, float] = {}  # seconds per step of the current loop turn
        # (job, done?, result or error) of attempts that ended while the queue did not answer.
        self._unreported: list[tuple[Job, bool, Any]] = []
        self.cpus = available_cpus()

    # -- configuration -----------------------------------------------------------

    def limit(self, job_type: str) -> int:
        return self.settings.job_concurrency.get(job_type, 1)

    def timeout(self, job_type: str) -> float:
        return self.settings.job_timeouts.get(job_type, DEFAULT_TIMEOUT)

    def types_in_priority_order(self) -> list[str]:
        known = [t.name for t in registry.all_types()]
        ordered = [t for t in self.settings.job_priorities if t in known]
        return ordered + sorted(t for t in known if t not in ordered)

    # -- the loop ----------------------------------------------------------------

    def run(self) -> None:
        signal.signal(signal.SIGTERM, self._request_stop)
        signal.signal(signal.SIGINT, self._request_stop)
        # The keeper asks for every thread's stack before it kills a supervisor that hangs.
        faulthandler.register(STACKS_SIGNAL, all_threads=True)
        log.info("supervisor %s running job types %s", self.identity, self.types_in_priority_order())
        self._start_store_passes()
        idle_sleep = LOOP_INTERVAL
        try:
            while not self.stopping:
                self._still_alive()
                if os.getppid() != self.parent_pid:  # our gunicorn master died: do not linger
                    log.warning("parent process died; supervisor draining")
                    break
                try:
                    busy = self._timed_step()
                except QueueUnavailable as exc:
                    # Redis down: running jobs go on (their leases may lapse and be reaped
                    # later); nothing new starts until it answers again.
                    if not self._queue_down:
                        log.warning("the job queue does not answer (%s); retrying every %.0f s", exc,
                                    UNAVAILABLE_PAUSE)
                    self._queue_down = True
                    self._wait(UNAVAILABLE_PAUSE)
                    continue
                if self._queue_down:
                    log.info("the job queue answers again")
                    self._queue_down = False
                if busy:
                    idle_sleep = LOOP_INTERVAL
                    continue
                if self.running:
                    idle_sleep = LOOP_INTERVAL
                else:
                    # Nothing queued: poll less often. An enqueue rings the queue's doorbell
                    # (when the backend has one) and a finishing job writes to its pipe:
                    # either wakes us at once; polling is for retries whose backoff ends.
                    idle_sleep = min(idle_sleep * 2, MAX_IDLE_SLEEP)
                self._wait(idle_sleep)
            self.drain()
        finally:
            # On any exit, no job process may outlive us (multiprocessing would wait for
            # them at exit); their claimed jobs come back through the reaper.
            for r in self.running:
                if r.proc is not None:
                    r.proc.kill()
            for pool in self.idle.values():
                for proc in pool:
                    proc.kill()

    def _still_alive(self) -> None:
        now = time.monotonic()
        if self.alive_file is None or now - self._last_alive < ALIVE_INTERVAL:
            return
        self._last_alive = now
        try:
            os.utime(self.alive_file)
        except OSError:  # removed under us: the keeper then judges by our start alone
            pass

    def _wait(self, timeout: float) -> None:
        waitables: list[Any] = [r.proc.conn for r in self.running if r.proc is not None]
        doorbell = self.queue.wakeup_fileno()
        if doorbell is not None:
            waitables.append(doorbell)
        if waitables:
            wait_for_any(waitables, timeout)
        else:
            time.sleep(timeout)
        self.queue.clear_wakeup()

    def _request_stop(self, signum: int, frame: Any) -> None:
        self.stopping = True

    def _timed_step(self) -> bool:
        """step(), with a warning naming the slowest step when the turn took long."""
        self._turn = {}
        started = time.monotonic()
        try:
            return self.step()
        finally:
            took = time.monotonic() - started
            if took > SLOW_TURN_SECONDS:
                slowest = max(self._turn, key=self._turn.get, default="collect and limits")
                log.warning("a supervisor loop turn took %.1f s (%s: %.1f s)", took, slowest,
                            self._turn.get(slowest, took))

    def _timed(self, name: str, call: Callable[[], Any]) -> Any:
        started = time.monotonic()
        try:
            return call()
        finally:
            self._turn[name] = self._turn.get(name, 0.0) + time.monotonic() - started

    def step(self) -> bool:
        """One pass: collect results, enforce limits, start jobs. True if anything happened."""
        now = time.monotonic()
        # Collecting and enforcing limits ask nothing of the queue: they happen every turn,
        # even while it does not answer (each turn then waits on it once, boundedly).
        busy = self._timed("collect", lambda: self._collect(now))
        self._timed("limits", lambda: self._enforce_limits(now))
        self._timed("report", self._report)
        if now - self._last_heartbeat > self.settings.job_lease_seconds / 3:
            self._timed("heartbeat", self._heartbeat)
            self._last_heartbeat = now
        if now - self._last_reap > REAP_INTERVAL:
            self._timed("reap", lambda: self.queue.reap(self.settings.job_lease_seconds, alive=self._claimer_alive))
            self._last_reap = now
        if now - self._last_prune > PRUNE_INTERVAL:
            self._timed("prune", self.queue.prune_done)
            self._last_prune = now
        busy |= self._timed("start", lambda: self._start_admitted(now))
        busy |= self._timed("claim", lambda: self._claim_more(now))
        return busy

    # -- the passes that read the object store, in their own thread ---------------------

    def _start_store_passes(self) -> None:
        if self.queue_deferred is None and self.backfill is None:
            return
        threading.Thread(target=self._store_passes, name="supervisor-store-passes", daemon=True).start()

    def _store_passes(self) -> None:
        """Every DEFERRED_INTERVAL the deferred jobs, every BACKFILL_INTERVAL a backfill
        batch. What they queue rings the queue's doorbell: the loop claims it at once."""
        next_deferred = next_backfill = 0.0
        while not self.stopping:
            now = time.monotonic()
            if self.queue_deferred is not None and now >= next_deferred:
                next_deferred = now + DEFERRED_INTERVAL
                self._queue_deferred()
            if self.backfill is not None and now >= next_backfill:
                next_backfill = now + BACKFILL_INTERVAL
                self._backfill()
            due = [t for t, c in ((next_deferred, self.queue_deferred), (next_backfill, self.backfill)) if c]
            time.sleep(min(max(min(due) - time.monotonic(), 0.0), MAX_IDLE_SLEEP))

    def _queue_deferred(self) -> None:
        """The jobs of uploads stored while the queue did not answer."""
        try:
            queued = self.queue_deferred()
        except QueueUnavailable:  # still down: the loop says so; next time
            return
        except Exception:  # noqa: BLE001 - the object store down, say: next time
            log.exception("queueing the deferred jobs failed; trying again in %.0f s", DEFERRED_INTERVAL)
            return
        if queued:
            log.info("queued the deferred jobs of %d uploads", queued)

    def _backfill(self) -> None:
        try:
            self.backfill()
        except QueueUnavailable:  # the loop says so; next time
            pass
        except Exception:  # noqa: BLE001 - the store down: the next pass starts the sweep again
            log.exception("the scan backfill failed; trying again in %.0f s", BACKFILL_INTERVAL)

    def _claim_more(self, now: float) -> bool:
        started = False
        for job_type in self.types_in_priority_order():
            while sum(1 for r in self.running if r.job.type == job_type) < self.limit(job_type):
                jt = registry.get(job_type)
                # Peek with the type's default estimate before claiming, so a job is
                # not taken from other supervisors only to sit here.
                if not self.governor.admits_job(self._estimate(jt, Job("", job_type, "")),
                                                pending_estimates=self._pending_estimates(claimed=True)):
                    break  # this type waits for memory; a smaller type may still fit
                job = self.queue.claim([job_type], self.identity)
                if job is None:
                    break
                self.running.append(Running(job, None, self._estimate(jt, job)))
                started = True
        # Started only now, when the CPU budget knows every job that will share the cores.
        return self._start_admitted(now) or started

    def _estimate(self, job_type: registry.JobType, job: Job) -> int:
        """The job's estimated peak, capped at JOB_MEMORY_MAX_BYTES: it is killed past that
        anyway, and an estimate that could never fit would otherwise wait for ever."""
        return min(job_type.memory_estimate(job, self.settings), self.settings.job_memory_max_bytes)

    def _pending_estimates(self, claimed: bool = False) -> int:
        """What running jobs may still grow into beyond what they use now (and, with
        ``claimed``, all that the claimed jobs not started yet will need)."""
        total = 0
        for r in self.running:
            if r.proc is not None:
                total += max(r.estimate - r.proc.rss(), 0)
            elif claimed:
                total += r.estimate
        return total

    def _start_admitted(self, now: float) -> bool:
        started = False
        for r in self.running:
            if r.proc is None and self.governor.admits_job(r.estimate, pending_estimates=self._pending_estimates()):
                r.proc = self._process_for(r.job.type)
                r.started = now
                r.proc.send(r.job, self.cpu_budget())
                log.info("job %s (%s) started, attempt %d", r.job.id, r.job.type, r.job.attempts, extra=_ids(r.job))
                started = True
        return started

    def cpu_budget(self) -> int:
        """Threads a job may use: its share of the cores among the jobs now claimed (an
        image job alone gets both cores of a 2-core box; beside an OCR job, one)."""
        return max(1, self.cpus // max(1, len(self.running)))

    def _process_for(self, job_type: str) -> JobProcess:
        pool = self.idle.setdefault(job_type, [])
        while pool:
            proc = pool.pop()
            if not proc.exited():
                return proc
            proc.kill()
        return JobProcess(self.make_context)

    def _collect(self, now: float) -> bool:
        done_any = False
        for r in list(self.running):
            if r.proc is None:
                continue
            outcome = None
            try:
                if r.proc.conn.poll():
                    outcome = r.proc.conn.recv()
            except (EOFError, OSError):
                outcome = ("crash", None)
            if outcome is None and r.proc.exited():
                outcome = ("crash", None)
            if outcome is None:
                continue
            done_any = True
            self.running.remove(r)
            status, value = outcome
            if status == "crash":
                metrics.JOBS.labels(r.job.type, "crash").inc()
                r.proc.kill()  # its group first (tesseract may run on), then reap it
                code = r.proc.process.exitcode
                self._fail(r.job, f"job process died (exit code {code})")
                continue
            metrics.JOB_SECONDS.labels(r.job.type).observe(now - r.started)
            metrics.JOBS.labels(r.job.type, "done" if status == "ok" else "error").inc()
            self._release_process(r)
            if status == "ok":
                self._complete(r.job, value)
            else:
                if status == "permanent":  # retrying cannot help: dead-letter now
                    r.job.attempts = r.job.max_attempts
                self._fail(r.job, value)
        return done_any

    def _release_process(self, r: Running) -> None:
        assert r.proc is not None
        if r.proc.jobs_run >= self.settings.job_recycle_after:
            r.proc.stop()  # recycled: fresh memory, no state carried over
        else:
            self.idle.setdefault(r.job.type, []).append(r.proc)

    def _enforce_limits(self, now: float) -> None:
        for r in list(self.running):
            if r.proc is None:
                continue
            reason = None
            if now - r.started > self.timeout(r.job.type):
                reason = f"timed out after {self.timeout(r.job.type):g} s"
            elif r.proc.rss() > self.settings.job_memory_max_bytes:
                reason = f"exceeded the job memory limit of {self.settings.job_memory_max_bytes} bytes"
            if reason:
                metrics.JOBS.labels(r.job.type, "killed").inc()
                self.running.remove(r)
                r.proc.kill()
                self._fail(r.job, reason)
        # The whole tree near the limit: shed the newest job before the kernel OOM-kills something.
        started = [r for r in self.running if r.proc is not None]
        if started and self.governor.over_limit():
            victim = max(started, key=lambda r: r.started)
            self.running.remove(victim)
            victim.proc.kill()
            self._fail(victim.job, "killed under memory pressure")

    def _heartbeat(self) -> None:
        for r in list(self.running):
            try:
                self.queue.heartbeat(r.job)
            except JobNotFound:
                # Reaped elsewhere (we stalled past the lease): someone else owns it now.
                self.running.remove(r)
                if r.proc is not None:
                    r.proc.kill()

    def _complete(self, job: Job, result: dict[str, Any] | None) -> None:
        log.info("job %s (%s) done", job.id, job.type, extra=_ids(job))
        self._unreported.append((job, True, result))  # told by _report, after the limits are enforced

    def _fail(self, job: Job, error: str) -> None:
        log.warning("job %s (%s) attempt %d failed: %s", job.id, job.type, job.attempts, error, extra=_ids(job))
        self._unreported.append((job, False, error))

    def _report(self) -> None:
        """Tell the queue how the attempts ended, oldest first. While it does not answer
        (QueueUnavailable goes up) they wait here and are told first thing once it does:
        forgotten, a finished job would run again once its lease lapsed."""
        while self._unreported:
            job, ok, value = self._unreported[0]
            if ok:
                self._tell_done(job, value)
            else:
                self._tell_failed(job, value)
            self._unreported.pop(0)

    def _tell_done(self, job: Job, result: dict[str, Any] | None) -> None:
        try:
            self.queue.complete(job, result)
        except FileNotFoundError:
            log.warning("job %s finished after its lease was lost", job.id, extra=_ids(job))

    def _tell_failed(self, job: Job, error: str) -> None:
        try:
            job = self.queue.fail(job, error)
        except FileNotFoundError:
            log.warning("job %s failed after its lease was lost", job.id, extra=_ids(job))
            return
        if job.status == DEAD:
            registry.run_on_dead(job, self.make_context(1))

    def _claimer_alive(self, claimed_by: str) -> bool:
        instance, _, pid = claimed_by.rpartition("/")
        if instance != self.settings.instance_id or not pid.isdigit():
            return True  # another instance's claim: only its lease can tell
        return psutil.pid_exists(int(pid))

    def drain(self) -> None:
        """Let running jobs finish within the grace period; return the rest untouched."""
        deadline = time.monotonic() + self.settings.graceful_timeout
        while any(r.proc is not None for r in self.running) and time.monotonic() < deadline:
            self._still_alive()
            self._enforce_limits(time.monotonic())
            if not self._collect(time.monotonic()):
                time.sleep(LOOP_INTERVAL)
            if time.monotonic() - self._last_heartbeat > self.settings.job_lease_seconds / 3:
                self._heartbeat()
                self._last_heartbeat = time.monotonic()
        try:
            self._report()
        except QueueUnavailable:
            log.warning("the queue does not answer: %d finished attempts not reported (they run again once "
                        "their leases lapse)", len(self._unreported))
        for r in list(self.running):
            if r.proc is not None:
                r.proc.kill()
            try:
                self.queue.release(r.job)
            except FileNotFoundError:
                pass
        self.running.clear()
        for pool in self.idle.values():
            for proc in pool:
                proc.stop()
        log.info("supervisor %s stopped", self.identity)


def run_supervisor(settings: Settings, queue: JobQueue, governor: MemoryGovernor,
                   make_context: ContextFactory, queue_deferred: Callable[[], int] | None = None,
                   backfill: Callable[[], int] | None = None, alive_file: Path | None = None) -> None:
    """Run the supervisor loop until SIGTERM (``falconproc worker``)."""
    # Job processes are forked from here: what each job type preloads now (its parsers,
    # a tesseract version check) is done once instead of in every job process.
    for job_type in registry.all_types():
        if job_type.preload is not None:
            try:
                job_type.preload()
            except Exception:  # noqa: BLE001 - a failed preload is retried by the job itself
                log.exception("preload of job type %s failed", job_type.name)
    Supervisor(settings, queue, governor, make_context, queue_deferred, backfill, alive_file).run()
