"""GET /health."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.blackbox._util import unique_png, unique_text
from tests.conftest import upload

pytestmark = pytest.mark.blackbox


def _health(svc) -> dict:
    resp = requests.get(svc.url + "/health", timeout=30)
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith("application/json")
    return resp.json()


def _check_shape(report: dict) -> None:
    assert report["status"] == "ok", report
    assert report["implementation"] in ("cython", "python")
    assert report["uptime"] >= 0
    assert report["memory"]["rss"] > 0
    assert report["memory"]["limit"] > 0
    assert report["storage"]["availableSpace"] > 0
    assert set(report["queue"]) >= {"pending", "processing", "failed"}


def test_health_counts_uploads(fresh_service):
    svc = fresh_service()
    with ThreadPoolExecutor(8) as pool:  # reach (and prime the caches of) every worker
        before = list(pool.map(lambda _: _health(svc), range(16)))
    for report in before:
        _check_shape(report)
        assert report["storage"]["files"] == 0
        assert report["storage"]["totalSize"] == 0

    payloads = [unique_text(), unique_png(), unique_text(50)]
    for data in payloads:
        assert upload(svc, data).status_code == 201
    assert upload(svc, payloads[0], drive="other", user="other").status_code == 200  # dedup: no new file

    with ThreadPoolExecutor(8) as pool:
        after = list(pool.map(lambda _: _health(svc), range(16)))
    for report in after:
        _check_shape(report)
        assert report["storage"]["files"] == 3, [r["storage"] for r in after]
        assert report["storage"]["totalSize"] == sum(len(p) for p in payloads)


def test_health_on_the_shared_service(service):
    report = _health(service)
    _check_shape(report)
    assert report["storage"]["files"] >= 0


def test_health_is_consistent_across_workers(fresh_service):
    """Whichever worker answers, storage.files counts every stored upload.

    Keep-alive connections pin requests to one gunicorn worker; connections are mapped to
    the worker serving them, then an upload goes through worker A and /health is asked
    through worker B (which answered /health just before the upload)."""
    import http.client
    import json

    import psutil

    svc = fresh_service(WEB_WORKERS="2")
    port = int(svc.env["PORT"])

    def call(conn, method, path, body=None, headers=None):
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())

    by_worker: dict[int, list] = {}
    opened = []
    try:
        for _ in range(8):
            conns = [http.client.HTTPConnection("127.0.0.1", port, timeout=30) for _ in range(16)]
            opened += conns
            with ThreadPoolExecutor(16) as pool:
                for status, report in pool.map(lambda c: call(c, "GET", "/health"), conns):
                    assert status == 200 and report["storage"]["files"] == 0
            owners = {}
            for pid in svc.worker_pids():
                for c in psutil.Process(pid).net_connections():
                    if c.laddr and c.laddr.port == port and c.raddr:
                        owners[c.raddr.port] = pid
            for conn in conns:
                pid = owners.get(conn.sock.getsockname()[1])
                if pid:
                    by_worker.setdefault(pid, []).append(conn)
            if len(by_worker) >= 2:
                break
        if len(by_worker) < 2:
            pytest.skip("could not get connections to two different workers")
        (conns_a, conns_b) = list(by_worker.values())[:2]
        data = unique_text()
        status, body = call(conns_a[0], "POST", "/upload", body=data,
                            headers={"x-filename": "w.txt", "x-drive-id": "d", "x-user-id": "u"})
        assert status == 201, body
        _, report_a = call(conns_a[-1], "GET", "/health")
        _, report_b = call(conns_b[0], "GET", "/health")
        assert report_a["storage"]["files"] == 1
        assert report_b["storage"]["files"] == 1, (
            f"worker A says {report_a['storage']}, worker B says {report_b['storage']}")
    finally:
        for conn in opened:
            conn.close()
