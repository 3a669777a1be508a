"""GET /health."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import requests

from tests.support.content import unique_png, unique_text
from tests.support.http import upload


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
    assert set(report["queue"]) == {"pending", "processing", "retrying", "dead", "failed"}
    assert 0 <= report["supervisor"]["lastTurnSecondsAgo"] < 5  # the job supervisor turns its loop


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

    Keep-alive connections pin requests to one gunicorn worker. A connection is opened to
    some worker A; while A is stopped (SIGSTOP: it cannot accept) a second connection can
    only be accepted by worker B. Then an upload goes through A and /health is asked
    through B, which answered /health just before the upload."""
    import http.client
    import json
    import os
    import signal

    import psutil

    svc = fresh_service(WEB_WORKERS="2")
    port = int(svc.env["PORT"])

    def call(conn, method, path, body=None, headers=None):
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())

    def owner(conn) -> int:
        local = conn.sock.getsockname()[1]
        for pid in svc.worker_pids():
            for c in psutil.Process(pid).net_connections():
                if c.laddr and c.laddr.port == port and c.raddr and c.raddr.port == local:
                    return pid
        raise AssertionError("no worker holds the connection")

    conn_a = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn_b = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        status, report = call(conn_a, "GET", "/health")
        assert status == 200 and report["storage"]["files"] == 0
        worker_a = owner(conn_a)
        os.kill(worker_a, signal.SIGSTOP)
        try:
            status, report = call(conn_b, "GET", "/health")
        finally:
            os.kill(worker_a, signal.SIGCONT)
        assert status == 200 and report["storage"]["files"] == 0
        worker_b = owner(conn_b)
        assert worker_b != worker_a
        status, body = call(conn_a, "POST", "/upload", body=unique_text(),
                            headers={"x-filename": "w.txt", "x-drive-id": "d", "x-user-id": "u"})
        assert status == 201, body
        assert owner(conn_a) == worker_a and owner(conn_b) == worker_b  # still pinned
        _, report_a = call(conn_a, "GET", "/health")
        _, report_b = call(conn_b, "GET", "/health")
        assert report_a["storage"]["files"] == 1
        assert report_b["storage"]["files"] == 1, (
            f"worker A says {report_a['storage']}, worker B says {report_b['storage']}")
    finally:
        conn_a.close()
        conn_b.close()
