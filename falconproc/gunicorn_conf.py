"""gunicorn settings and hooks, built from falconproc's Settings.

Used as ``gunicorn -c python:falconproc.gunicorn_conf falconproc.wsgi:app``
(which is what ``falconproc serve`` runs).
"""
from __future__ import annotations

import logging
import os
import resource
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

from falconproc.config import Settings
from falconproc.observability.runtime import mark_service_root
from falconproc.store import create_store

_settings = Settings.from_env()

# prometheus_client picks multiprocess mode at import time from this variable, so it
# is set here, in the master, before any worker imports the app. One fresh directory
# per master: samples of a previous run must not leak into this one.
_metrics_dir = tempfile.mkdtemp(prefix="falconproc-metrics-", dir=_settings.metrics_dir)
os.environ["PROMETHEUS_MULTIPROC_DIR"] = _metrics_dir

bind = [f"{_settings.host}:{_settings.port}"]
workers = _settings.web_workers
# gthread: a slow client holds one thread, not a whole process, and keep-alive works.
worker_class = "gthread"
threads = _settings.web_threads
timeout = _settings.worker_timeout
graceful_timeout = _settings.graceful_timeout
keepalive = _settings.keepalive
max_requests = _settings.max_requests
# Jitter so that workers do not all recycle at the same moment.
max_requests_jitter = max(1, _settings.max_requests // 10) if _settings.max_requests else 0
# Request line and header limits stay at gunicorn's safe defaults; the body limit is ours.
limit_request_line = 8190
limit_request_fields = 100
# Heartbeat files on tmpfs: a slow or full disk must not make gunicorn think workers hung.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
loglevel = _settings.log_level
accesslog = "-" if _settings.access_log else None
errorlog = "-"
proc_name = "falconproc"
# gunicorn >= 25 opens a control socket under ~/.gunicorn; several instances would fight over it.
control_socket_disable = True


def on_starting(server) -> None:
    """In the master, before any worker exists: prepare the store and sweep debris."""
    mark_service_root()
    for path in (_settings.file_storage_path, _settings.cache_path, _settings.queue_path):
        path.mkdir(parents=True, exist_ok=True)
    store = create_store(_settings)
    swept = store.sweep_temp(at_startup=True)
    logging.getLogger("gunicorn.error").info(
        "falconproc starting: store %s, %d stale temp entries swept", _settings.file_storage_path, swept)


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
    before a new one starts: no job of the old one runs beside its retry."""

    RESTART_DELAY = 0.5
    QUICK_DEATH_SECONDS = 2.0  # dying sooner than this after a start means it cannot start

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._watch, name="supervisor-keeper", daemon=True)

    def start(self) -> None:
        self._spawn()
        self.thread.start()

    def _spawn(self) -> None:
        # The supervisor's memory governor must see the whole tree, rooted at this master.
        # Its own session: see kill_session().
        self.proc = subprocess.Popen([sys.executable, "-m", "falconproc.cli", "worker",
                                      "--service-root-pid", str(os.getpid())], start_new_session=True)

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
            logging.getLogger("gunicorn.error").warning(
                "killed %d processes left behind by job supervisor %d", killed, proc.pid)

    def _watch(self) -> None:
        log = logging.getLogger("gunicorn.error")
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


_keeper = SupervisorKeeper()


def when_ready(server) -> None:
    # gthread workers wait on a stalled client forever; a receive timeout on the
    # listening sockets (inherited by accepted ones) makes them give up on it.
    timeout = struct.pack("ll", _settings.client_timeout, 0)
    for listener in server.LISTENERS:
        listener.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeout)
    if _settings.run_supervisor:
        _keeper.start()


def post_request(worker, req, environ, resp) -> None:
    """A web worker that has grown past its cap is recycled after this request.

    The peak RSS (getrusage, one syscall) rather than the current one (psutil reads
    /proc, ~20 us on every request): a worker that once grew past the cap keeps most of
    that memory in its allocator's arenas anyway."""
    if resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 > _settings.web_worker_max_rss:
        worker.log.warning("worker %s over WEB_WORKER_MAX_RSS; recycling it", worker.pid)
        worker.alive = False


def child_exit(server, worker) -> None:
    """In the master, after a worker died (even by SIGKILL): its upload temp dirs lost
    their locks with it, so they can be swept now; live uploads keep theirs."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
    try:
        create_store(_settings).sweep_temp()
    except OSError:
        logging.getLogger("gunicorn.error").exception("temp sweep after worker exit failed")


def on_exit(server) -> None:
    _keeper.stop(timeout=_settings.graceful_timeout + 5)
    shutil.rmtree(_metrics_dir, ignore_errors=True)
