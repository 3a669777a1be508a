"""A real clamd for the tests, with a database of test signatures only: EICAR's (by
whole-file MD5, as the official database has it, so an archive holding it is found by
clamd unpacking the archive) and a body signature for a marker any file can carry
(FALCONPROC_TEST_MALWARE). freshclam cannot reach the internet here and clamd refuses
an empty database directory; with these two it starts in a fraction of a second.

A missing clamd fails the test (CI installs clamav-daemon); it is never skipped."""
from __future__ import annotations

import hashlib
import shutil
import socket
import subprocess
import time
from pathlib import Path

# The EICAR test file, put together here so that no scanner flags this source file.
EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$" + b"EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
MARKER = b"FALCONPROC_TEST_MALWARE_7c1f0e"
EICAR_SIGNATURE = "Eicar-Test-Signature.UNOFFICIAL"
MARKER_SIGNATURE = "Falconproc.Test.Marker.UNOFFICIAL"


def clamd_binary() -> str:
    for candidate in (shutil.which("clamd"), "/usr/sbin/clamd"):
        if candidate and Path(candidate).exists():
            return candidate
    raise AssertionError("clamd is not installed (apt-get install clamav-daemon; scripts/bootstrap.sh --test)")


class Clamd:
    """clamd on a unix socket (and optionally a loopback TCP port) under ``base``."""

    def __init__(self, base: Path, *, stream_max: str = "2M", tcp_port: int | None = None):
        self.base = base
        self.socket = base / "clamd.sock"
        self.tcp_port = tcp_port
        self.stream_max = stream_max
        self.proc: subprocess.Popen | None = None
        db = base / "db"
        db.mkdir(parents=True, exist_ok=True)
        (db / "test.hdb").write_text(f"{hashlib.md5(EICAR).hexdigest()}:{len(EICAR)}:Eicar-Test-Signature\n")
        (db / "test.ndb").write_text(f"Falconproc.Test.Marker:0:*:{MARKER.hex()}\n")
        self.conf = base / "clamd.conf"
        lines = ["Foreground yes", f"LocalSocket {self.socket}", f"DatabaseDirectory {db}",
                 f"LogFile {base / 'clamd.log'}", f"StreamMaxLength {stream_max}", "MaxThreads 4"]
        if tcp_port is not None:
            lines += [f"TCPSocket {tcp_port}", "TCPAddr 127.0.0.1"]
        self.conf.write_text("\n".join(lines) + "\n")

    def start(self, timeout: float = 20.0) -> Clamd:
        self.socket.unlink(missing_ok=True)
        self.proc = subprocess.Popen([clamd_binary(), "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while not self.ping():
            if self.proc.poll() is not None:
                raise AssertionError(f"clamd exited: {self.proc.stderr.read().decode()[-2000:]}\n{self.log()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"clamd did not answer PING in {timeout}s\n{self.log()}")
            time.sleep(0.02)
        return self

    def ping(self) -> bool:
        try:
            with socket.socket(socket.AF_UNIX) as sock:
                sock.settimeout(1)
                sock.connect(str(self.socket))
                sock.sendall(b"zPING\0")
                return sock.recv(16).startswith(b"PONG")
        except OSError:
            return False

    def log(self) -> str:
        path = self.base / "clamd.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
