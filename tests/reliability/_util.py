"""Helpers for the black-box reliability tests (real gunicorn via tests.support.service)."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil

from tests.support.service import Service, parse_head, wait_for


def text_blob(label: str, size: int) -> bytes:
    """Unique plain ASCII text (sniffed as text/plain, an accepted type)."""
    seed = hashlib.sha256(label.encode()).hexdigest()
    line = (seed + "\n").encode()
    return (f"{label}\n".encode() + line * (size // len(line) + 1))[:size]


def chunks(data: bytes, size: int) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


def web_worker_pids(svc: Service) -> list[int]:
    return svc.worker_pids()


def wait_web_workers(svc: Service, count: int, timeout: float = 20.0, exclude: tuple[int, ...] = ()) -> list[int]:
    return wait_for(lambda: (lambda pids: pids if len(pids) >= count else None)(
        [p for p in web_worker_pids(svc) if p not in exclude]), timeout, message=f"{count} web worker(s)")


def start_service(svc: Service, timeout: float = 60.0) -> Service:
    """Start (or restart, on the same directories) a service and wait until it is ready."""
    return svc.start(timeout)


def kill_service_tree(svc: Service) -> None:
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


def raw_request(svc: Service, head: bytes, body: bytes = b"", timeout: float = 2.0) -> tuple[int, dict, bytes, float]:
    """Send raw bytes; read one response (status, headers, body, seconds taken)."""
    port = int(svc.env["PORT"])
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(head + body)
        buf = b""
        while b"\r\n\r\n" not in buf:
            data = sock.recv(65536)
            if not data:
                break
            buf += data
        header_blob, _, rest = buf.partition(b"\r\n\r\n")
        status, headers = parse_head(header_blob)
        length = int(headers.get("content-length", "0"))
        while len(rest) < length:
            data = sock.recv(65536)
            if not data:
                break
            rest += data
    return status, headers, rest[:length], time.monotonic() - started


def upload_head(length: int | None, *, name: str = "big.txt", extra: str = "") -> bytes:
    lines = [
        "POST /upload HTTP/1.1",
        "Host: 127.0.0.1",
        f"x-filename: {name}",
        "x-drive-id: drive-1",
        "x-user-id: user-1",
        "Content-Type: application/octet-stream",
    ]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    if extra:
        lines.append(extra)
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def run_cli(svc: Service, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "falconproc.cli", *args], env=svc.env, cwd=svc.base,
                          capture_output=True, text=True, timeout=60)


def fsck_summary(proc: subprocess.CompletedProcess) -> dict:
    last = [line for line in proc.stdout.splitlines() if line.startswith("{")][-1]
    return json.loads(last)


def entry_problems(root: Path) -> list[str]:
    """Every visible entry must be complete and consistent with its name."""
    problems = []
    for entry in sorted(root.iterdir()):
        if entry.name == ".tmp":
            continue
        names = sorted(os.listdir(entry)) if entry.is_dir() else None
        if names != ["metadata.json", "original"]:
            problems.append(f"{entry.name}: has {names}")
            continue
        data = (entry / "original").read_bytes()
        try:
            meta = json.loads((entry / "metadata.json").read_bytes())
        except ValueError as exc:
            problems.append(f"{entry.name}: metadata.json unreadable ({exc})")
            continue
        if hashlib.sha256(data).hexdigest() != entry.name:
            problems.append(f"{entry.name}: bytes hash to {hashlib.sha256(data).hexdigest()}")
        if meta.get("contentHash") != entry.name or meta.get("size") != len(data):
            problems.append(f"{entry.name}: metadata disagrees ({meta.get('contentHash')}, {meta.get('size')})")
        if not meta.get("uploads"):
            problems.append(f"{entry.name}: no uploads recorded")
    return problems
