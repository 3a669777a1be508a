"""The launcher: the real service (``falconproc serve`` -> gunicorn) on a free port.

``Gunicorn`` starts any gunicorn master from its command line and waits until its
health URL answers and every web worker exists; ``Service`` is ``falconproc serve``
with its store, cache and queue under one directory. The benchmarks use ``Gunicorn``
for their own apps too (benchmarks/_common.py).

Tests do not call this module to start a service: they request a fixture of
tests/conftest.py (built on its ``launcher`` fixture), which is how tests/conftest.py
marks them ``blackbox``. While a test runs, tests/conftest.py sets ``LAUNCH_GUARD``, and
a start for a test without that marker fails instead of running unmarked.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from tests.support.corpus import ROOT
from tests.support.wait import wait_for

# Set by tests/conftest.py while a test runs (None outside pytest, e.g. in a benchmark):
# called before every start, it raises for a test that is not marked blackbox.
LAUNCH_GUARD: Callable[[], None] | None = None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def settings_env_names() -> list[str]:
    """Every environment variable falconproc's Settings read (from their declarations)."""
    from dataclasses import fields

    from falconproc.config import Settings

    return [f.metadata["env"] for f in fields(Settings)]


def _is_supervisor(proc: psutil.Process) -> bool:
    """falconproc's job supervisor, the other child of a `falconproc serve` master."""
    return "falconproc.cli worker" in " ".join(_cmdline(proc))


def _cmdline(proc: psutil.Process) -> list[str]:
    try:
        return proc.cmdline()
    except psutil.Error:
        return []


class Gunicorn:
    """A gunicorn master started from ``argv``: its log, port and worker processes."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path, *, port: int, workers: int = 1,
                 name: str = "service", log_path: Path | None = None, health_path: str = "/health"):
        self.name = name
        self.argv = argv
        self.env = env
        self.cwd = Path(cwd)
        self.port = port
        self.workers = workers
        self.log_path = log_path or self.cwd / f"{name}.log"
        self.health_path = health_path
        self.health_body: Any = None  # the last health answer of start(), parsed when JSON
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0):
        """Start and wait until the health URL answers 200 and every web worker exists.
        The first answer can take seconds on a loaded machine (workers still importing)."""
        if LAUNCH_GUARD is not None:
            LAUNCH_GUARD()
        self.cwd.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.argv, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                         cwd=self.cwd)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(self.url + self.health_path, timeout=5) as resp:
                    body = resp.read()
                    if resp.status == 200 and len(self.worker_pids()) >= self.workers:
                        try:
                            self.health_body = json.loads(body)
                        except ValueError:
                            self.health_body = None
                        return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass  # not listening yet, or a worker still booting
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.name} did not become healthy:\n{self.log()}")

    def worker_pids(self) -> list[int]:
        """gunicorn's web workers (not falconproc's job supervisor, also the master's child)."""
        return [p.pid for p in self._children() if not _is_supervisor(p)]

    def supervisor_pid(self) -> int | None:
        found = [p.pid for p in self._children() if _is_supervisor(p)]
        return found[0] if found else None

    def _children(self) -> list[psutil.Process]:
        if not self.proc:
            return []
        try:
            return psutil.Process(self.proc.pid).children()
        except psutil.NoSuchProcess:
            return []

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc and self.proc.poll() is None:
            try:
                tree = psutil.Process(self.proc.pid).children(recursive=True)
            except psutil.NoSuchProcess:
                tree = []
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                # A master killed leaves its workers behind: a hung one would outlive the test.
                for child in tree:
                    try:
                        child.kill()
                    except psutil.NoSuchProcess:
                        pass
        self.proc = None

    def log(self, chars: int = 5000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


class Service(Gunicorn):
    """``falconproc serve`` with the settings ``env`` (see ``service_env``), run in ``base``."""

    def __init__(self, base: Path, env: dict[str, str]):
        super().__init__([sys.executable, "-m", "falconproc.cli", "serve"], env, base,
                         port=int(env["PORT"]), workers=int(env.get("WEB_WORKERS", "1")))

    @property
    def base(self) -> Path:
        return self.cwd

    @property
    def files(self) -> Path:
        return Path(self.env["FILE_STORAGE_PATH"])


def service_env(base: Path, **overrides: str) -> dict[str, str]:
    """The environment of a service with its data under ``base``, on a free port: this
    process's environment (so FALCONPROC_NO_EXTENSIONS carries over) with the test
    defaults and ``overrides``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FILE_STORAGE", "CACHE_PATH", "QUEUE_PATH", "UPLOADS_PATH"))}
    env.update({
        "PORT": str(free_port()),
        "HOST": "127.0.0.1",
        "FILE_STORAGE_PATH": str(base / "files"),
        "CACHE_PATH": str(base / "cache"),
        "QUEUE_PATH": str(base / "queue"),
        "UPLOADS_PATH": str(base / "uploads"),
        "WEB_WORKERS": "2",
        "STORAGE_RESERVE_BYTES": "0",
        "UPLOADS_RESERVE_BYTES": "0",
        "LOG_LEVEL": "warning",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
    })
    env.update(overrides)
    return env


def make_service(base: Path, **overrides: str) -> Service:
    """A service (not started) with its data under ``base``; see ``service_env``."""
    base.mkdir(parents=True, exist_ok=True)
    return Service(base, service_env(base, **overrides))


class Launcher:
    """Makes services (and standalone job supervisors) for the fixtures, and stops at
    the end of the session whatever a fixture left running."""

    def __init__(self) -> None:
        self.services: list[Service] = []
        self.workers: list[subprocess.Popen] = []

    def make(self, base: Path, **env: str) -> Service:
        """A service with its data under ``base`` (not started: call ``.start()``)."""
        svc = make_service(base, **env)
        self.services.append(svc)  # registered first: stopped even if start() fails half-way
        return svc

    def start(self, base: Path, **env: str) -> Service:
        return self.make(base, **env).start()

    def worker(self, env: dict[str, str], log_path: Path) -> subprocess.Popen:
        """`python -m falconproc.cli worker` (the job supervisor alone) with ``env``."""
        if LAUNCH_GUARD is not None:
            LAUNCH_GUARD()
        with open(log_path, "ab") as log:
            proc = subprocess.Popen([sys.executable, "-m", "falconproc.cli", "worker"], env=env,
                                    stdout=log, stderr=subprocess.STDOUT)
        proc.log_path = log_path  # type: ignore[attr-defined]
        self.workers.append(proc)
        return proc

    def stop_all(self) -> None:
        for svc in self.services:
            svc.stop()
        for proc in self.workers:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait()


def subprocess_env(**extra: str) -> dict[str, str]:
    """An environment for a falconproc CLI child that inherits no falconproc setting, nor
    the native-module switches, from the calling shell; the repository on PYTHONPATH."""
    drop = set(settings_env_names())
    env = {k: v for k, v in os.environ.items()
           if k not in drop and not k.startswith(("FILE_STORAGE", "CACHE_PATH", "QUEUE_PATH", "FALCONPROC_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env.update(extra)
    return env


def run_cli(svc: Service, *args: str) -> subprocess.CompletedProcess:
    """`python -m falconproc.cli <args>` with the service's settings."""
    return subprocess.run([sys.executable, "-m", "falconproc.cli", *args], env=svc.env, cwd=svc.base,
                          capture_output=True, text=True, timeout=60)


def wait_web_workers(svc: Gunicorn, count: int, timeout: float = 20.0, exclude: tuple[int, ...] = ()) -> list[int]:
    """At least ``count`` web workers (not in ``exclude``) exist: their pids."""
    return wait_for(lambda: (lambda pids: pids if len(pids) >= count else None)(
        [p for p in svc.worker_pids() if p not in exclude]), timeout, message=f"{count} web worker(s)")


def peer_ports(pid: int, port: int) -> set[int]:
    """The client ports of the established connections to ``port`` that process ``pid``
    holds: which clients a web worker has accepted."""
    try:
        conns = psutil.Process(pid).net_connections(kind="tcp")
    except psutil.Error:
        return set()
    return {c.raddr.port for c in conns
            if c.laddr and c.laddr.port == port and c.raddr and c.status == psutil.CONN_ESTABLISHED}


def kill_service_tree(svc: Gunicorn) -> None:
    """SIGKILL the master and every worker (a crash of the whole service), and wait until they are gone."""
    assert svc.proc is not None
    master = svc.proc.pid
    try:
        workers = psutil.Process(master).children(recursive=True)
    except psutil.NoSuchProcess:
        workers = []
    os.kill(master, signal.SIGKILL)
    for w in workers:
        try:
            w.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    svc.proc.wait(10)
    psutil.wait_procs(workers, timeout=10)
    svc.proc = None
