"""Start the real service (falconproc serve -> gunicorn) on a free port for black-box tests."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import requests

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"


def parse_head(blob: bytes) -> tuple[int, dict[str, str]]:
    """Status and lower-cased headers of a raw HTTP/1.1 response head (without the blank line)."""
    lines = blob.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers


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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Service:
    base: Path
    env: dict[str, str]
    proc: subprocess.Popen | None = None
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log_path = self.base / "service.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.env['PORT']}"

    @property
    def files(self) -> Path:
        return Path(self.env["FILE_STORAGE_PATH"])

    def start(self, timeout: float = 60.0) -> Service:
        """Start and wait until /health answers and every web worker exists. The first
        answer can take seconds on a loaded machine (workers still importing the app)."""
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "falconproc.cli", "serve"], env=self.env,
                                         stdout=log, stderr=subprocess.STDOUT, cwd=self.base)
        wanted = int(self.env.get("WEB_WORKERS", "1"))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"service exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if (requests.get(self.url + "/health", timeout=5).status_code == 200
                        and len(self.worker_pids()) >= wanted):
                    return self
            except requests.RequestException:  # not listening yet, or a worker still booting
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"service did not become healthy:\n{self.log()}")

    def worker_pids(self) -> list[int]:
        """gunicorn's web workers (not the job supervisor, which is also the master's child)."""
        return [p.pid for p in self._children() if "falconproc.cli worker" not in " ".join(_cmdline(p))]

    def supervisor_pid(self) -> int | None:
        found = [p.pid for p in self._children() if "falconproc.cli worker" in " ".join(_cmdline(p))]
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
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:] if self.log_path.exists() else ""


def _cmdline(proc: psutil.Process) -> list[str]:
    try:
        return proc.cmdline()
    except psutil.Error:
        return []


def make_service(base: Path, **overrides: str) -> Service:
    base.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FILE_STORAGE", "CACHE_PATH", "QUEUE_PATH"))}
    env.update({
        "PORT": str(free_port()),
        "HOST": "127.0.0.1",
        "FILE_STORAGE_PATH": str(base / "files"),
        "CACHE_PATH": str(base / "cache"),
        "QUEUE_PATH": str(base / "queue"),
        "WEB_WORKERS": "2",
        "STORAGE_RESERVE_BYTES": "0",
        "LOG_LEVEL": "warning",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
    })
    env.update(overrides)
    return Service(base, env)
