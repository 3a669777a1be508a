"""The supervisor keeper: under ``falconproc serve`` the gunicorn master runs the job
supervisor (``falconproc worker``) as a child, restarts it when it dies or hangs, and
stops it on shutdown; nothing a dead supervisor started is left running."""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("gunicorn.error")  # the master's log stream

# The supervisor writes every thread's stack to its log on this signal (faulthandler).
STACKS_SIGNAL = signal.SIGUSR2


def alive_file_in(run_dir: str) -> Path:
    """The file whose mtime is the supervisor's last loop turn (the supervisor touches
    it; the keeper's watchdog and /health read it)."""
    return Path(run_dir, "supervisor.alive")


def seconds_since_turn(alive_file: Path) -> float | None:
    """How long ago the supervisor last turned its loop (None: no file, no supervisor)."""
    try:
        return max(time.time() - alive_file.stat().st_mtime, 0.0)
    except FileNotFoundError:
        return None


def kill_session(sid: int) -> int:
    """SIGKILL every process left in session ``sid``; returns how many there were.

    The supervisor leads its own session, which its job processes (each in a group of
    its own) and what they start (tesseract) inherit. Once it is dead, anything still
    in that session is a job process or a helper of one: the id stays reserved while
    any member lives (even after the supervisor was reaped), so no unrelated process
    can be in it."""
    killed = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == sid:
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                fields = fh.read().rsplit(b")", 1)[1].split()
            if int(fields[3]) == sid:  # state, ppid, pgrp, session
                os.kill(int(entry), signal.SIGKILL)
                killed += 1
        except (OSError, IndexError, ValueError):
            continue
    return killed


class SupervisorKeeper:
    """Runs ``falconproc worker`` as a child of the gunicorn master and restarts it if
    it dies; gunicorn's shutdown stops it (SIGTERM: it drains its jobs). However the
    supervisor ended, what is left of its session (job processes, tesseract) is killed
    before a new one starts: no job of the old one runs beside its retry.

    A watchdog, as gunicorn has for its web workers: the supervisor touches an alive
    file every loop turn; one whose file is older than ``stall_timeout`` seconds is
    hung (waiting for a lock that never comes, say): its threads' stacks go to the log,
    then it is killed and restarted like one that died (its claimed jobs are reaped)."""

    RESTART_DELAY = 0.5
    QUICK_DEATH_SECONDS = 2.0  # dying sooner than this after a start means it cannot start
    STACKS_GRACE = 1.0  # seconds the supervisor gets to write its stacks before SIGKILL

    def __init__(self, run_dir: str, on_exited: Callable[[int], None] | None = None,
                 stall_timeout: float = 0.0) -> None:
        # Called with the pid of each supervisor that ended (its metric files are folded).
        self.on_exited = on_exited
        self.stall_timeout = stall_timeout  # 0: no watchdog
        # In the master's run directory: removed on exit, swept after a killed run, and
        # found there by /health in the web workers.
        self.alive_file = alive_file_in(run_dir)
        self.proc: subprocess.Popen | None = None
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._watch, name="supervisor-keeper", daemon=True)

    def start(self) -> None:
        self._spawn()
        self.thread.start()

    def _spawn(self) -> None:
        # The supervisor's memory governor must see the whole tree, rooted at this master.
        # Its own session: see kill_session().
        self.alive_file.touch()  # a new supervisor's time counts from its start
        self.proc = subprocess.Popen([sys.executable, "-m", "falconproc.cli", "worker",
                                      "--service-root-pid", str(os.getpid()), "--alive-file", str(self.alive_file)],
                                     start_new_session=True)

    def _stalled_for(self) -> float:
        """Seconds since the supervisor's loop last turned, when past ``stall_timeout``; else 0."""
        if not self.stall_timeout:
            return 0.0
        idle = seconds_since_turn(self.alive_file)
        return idle if idle is not None and idle > self.stall_timeout else 0.0

    def _kill_hung(self, proc: subprocess.Popen, idle: float) -> None:
        log.error("job supervisor %d has not turned its loop for %.0f s (SUPERVISOR_STALL_TIMEOUT %.0f s): "
                  "killing it; its threads' stacks follow", proc.pid, idle, self.stall_timeout)
        try:
            proc.send_signal(STACKS_SIGNAL)
            self.stopping.wait(self.STACKS_GRACE)
            proc.kill()
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 5.0
        while not self._ended(proc) and time.monotonic() < deadline:  # not judged hung twice
            time.sleep(0.01)

    @staticmethod
    def _ended(proc: subprocess.Popen) -> bool:
        """True once the supervisor has exited. It does not reap it (so its pid cannot be
        taken before the sweep), but gunicorn's arbiter reaps every child of the master
        on SIGCHLD, usually first: then Popen reports exit code 0 whatever it was."""
        if proc.returncode is not None:
            return True
        try:
            return os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
        except ChildProcessError:
            return True

    def _sweep_and_reap(self, proc: subprocess.Popen) -> None:
        """Kill what is left of an exited supervisor's session, then reap it."""
        killed = kill_session(proc.pid) if proc.returncode is None else 0
        proc.wait()
        if killed:
            log.warning(
                "killed %d processes left behind by job supervisor %d", killed, proc.pid)
        if self.on_exited is not None:
            self.on_exited(proc.pid)

    def _watch(self) -> None:
        delay = self.RESTART_DELAY
        started = time.monotonic()
        while not self.stopping.is_set():
            proc = self.proc
            if proc is not None and self._ended(proc) and not self.stopping.is_set():
                self._sweep_and_reap(proc)
                # A supervisor that keeps dying at once (broken queue dir, bad plugin)
                # is restarted ever more slowly instead of in a tight loop.
                quick_death = time.monotonic() - started < self.QUICK_DEATH_SECONDS
                delay = min(delay * 2, 60.0) if quick_death else self.RESTART_DELAY
                log.warning("job supervisor exited with %s; restarting it in %.0f s", proc.returncode, delay)
                if self.stopping.wait(delay):
                    break
                self._spawn()
                started = time.monotonic()
            elif proc is not None and (idle := self._stalled_for()):
                self._kill_hung(proc, idle)  # the next turn restarts it as one that died
                continue
            self.stopping.wait(0.5)

    def stop(self, timeout: float) -> None:
        self.stopping.set()
        proc = self.proc
        if proc is None:
            return
        if not self._ended(proc):
            proc.terminate()
            deadline = time.monotonic() + timeout
            while not self._ended(proc) and time.monotonic() < deadline:
                time.sleep(0.05)
            if not self._ended(proc):
                proc.kill()
                while not self._ended(proc):
                    time.sleep(0.01)
        self._sweep_and_reap(proc)
        self.alive_file.unlink(missing_ok=True)
