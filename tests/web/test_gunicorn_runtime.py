"""The gunicorn side of `falconproc serve`: its settings, worker recycling, graceful shutdown."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import psutil
import pytest
import requests

from tests.support.content import sha256, text_blob
from tests.support.corpus import ROOT
from tests.support.http import upload
from tests.support.store import temp_entries
from tests.support.wait import wait_for

_DUMP = """
import json, falconproc.gunicorn_conf as g
print(json.dumps({k: getattr(g, k) for k in ("bind", "workers", "worker_class", "threads", "timeout",
      "graceful_timeout", "keepalive", "max_requests", "max_requests_jitter", "worker_tmp_dir")}))
"""


def _gunicorn_settings(tmp_path, **env: str) -> dict:
    full = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    full.update({"PYTHONPATH": str(ROOT), "METRICS_DIR": str(tmp_path)}, **env)
    out = subprocess.run([sys.executable, "-c", _DUMP], env=full, capture_output=True, text=True,
                         check=True, timeout=60)
    return json.loads(out.stdout)


def test_gunicorn_settings_follow_the_service_settings(tmp_path):
    conf = _gunicorn_settings(tmp_path, HOST="127.0.0.1", PORT="4321", WEB_WORKERS="3", WEB_THREADS="6",
                              WORKER_TIMEOUT="77", GRACEFUL_TIMEOUT="12", KEEPALIVE="4", MAX_REQUESTS="2000")
    assert conf["bind"] == ["127.0.0.1:4321"]
    assert (conf["workers"], conf["worker_class"], conf["threads"]) == (3, "gthread", 6)
    assert (conf["timeout"], conf["graceful_timeout"], conf["keepalive"]) == (77, 12, 4)
    assert (conf["max_requests"], conf["max_requests_jitter"]) == (2000, 200)  # 10 % jitter
    if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK):
        assert conf["worker_tmp_dir"] == "/dev/shm"  # heartbeats never wait on a slow disk
    never = _gunicorn_settings(tmp_path, MAX_REQUESTS="0")
    assert (never["max_requests"], never["max_requests_jitter"]) == (0, 0)


def _heartbeat_dirs(pid: int) -> set[str]:
    """Directories of the deleted temp files a gunicorn worker holds open (its heartbeat)."""
    found = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if "wgunicorn-" in target:
            found.add(os.path.dirname(target))
    return found


def test_workers_recycle_after_max_requests_without_failing_a_request(fresh_service):
    svc = fresh_service(WEB_WORKERS="1", MAX_REQUESTS="10")
    if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK):
        assert _heartbeat_dirs(svc.worker_pids()[0]) == {"/dev/shm"}
    seen = set(svc.worker_pids())
    for _ in range(40):
        resp = requests.get(svc.url + "/health", timeout=10, headers={"Connection": "close"})
        assert resp.status_code == 200
        seen.update(svc.worker_pids())
    # 40 requests at 10 (+ up to 1 jitter) each: the worker was replaced at least three times.
    assert len(seen) >= 4, seen


def test_sigterm_lets_a_running_upload_finish_then_the_master_exits_cleanly(fresh_service):
    svc = fresh_service(WEB_WORKERS="1", GRACEFUL_TIMEOUT="20")
    data = text_blob("graceful", 2 * 1024 * 1024)
    first_sent = threading.Event()

    def slow_body():
        for i in range(0, len(data), 256 * 1024):
            yield data[i:i + 256 * 1024]
            first_sent.set()
            time.sleep(0.3)

    result: dict = {}
    thread = threading.Thread(target=lambda: result.update(resp=upload(svc, slow_body())))
    thread.start()
    assert first_sent.wait(10)
    # The request is inside the worker: its body is being written to the store's temp dir.
    wait_for(lambda: temp_entries(svc.files), 10, 0.01, "the upload to reach the worker")
    master = svc.proc
    children = svc._children()  # web worker and job supervisor
    assert len(children) >= 2
    master.send_signal(signal.SIGTERM)
    thread.join(30)
    resp = result["resp"]
    assert resp.status_code == 201, resp.text
    assert resp.json()["contentHash"] == sha256(data)
    assert master.wait(timeout=30) == 0
    stored = svc.files / sha256(data) / "original"
    assert stored.read_bytes() == data
    with pytest.raises(requests.ConnectionError):
        requests.get(svc.url + "/health", timeout=2)
    wait_for(lambda: not any(_alive(p) for p in children), 10, message="every child of the master gone")


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
