"""Slow uploads must not starve reads: 64 uploads trickling 500 B/s while thumbnails of
stored content are read. Uploads hold at most UPLOAD_SLOTS threads per worker (three
quarters of WEB_THREADS); one more gets 503 + Retry-After at once; reads keep the rest."""
from __future__ import annotations

import collections
import socket
import statistics
import threading
import time

import requests

from falconproc.config import Settings
from tests.support.content import unique_png
from tests.support.http import upload, upload_head
from tests.support.store import temp_entries
from tests.support.wait import wait_for

UPLOADS = 64
RATE = 500  # bytes per second per upload
TICK = 0.1


def test_64_trickling_uploads_leave_thumbnail_reads_fast(fresh_service):
    svc = fresh_service(WEB_WORKERS="2")  # default WEB_THREADS and UPLOAD_SLOTS
    png = unique_png(640, 480)
    stored = upload(svc, png, name="t.png")
    assert stored.status_code == 201, stored.text
    thumb_url = f"{svc.url}/cache/{stored.json()['contentHash']}/thumbnail"
    assert requests.get(thumb_url, timeout=30).status_code == 200  # made once, cached from now on

    socks: list[socket.socket] = []
    refused = []
    stop = threading.Event()

    def trickle() -> None:
        piece = b"a" * int(RATE * TICK)
        while not stop.wait(TICK):
            for sock in list(socks):
                try:
                    sock.sendall(piece)
                except OSError:  # refused (503, answered and closed): that client is done
                    socks.remove(sock)
                    refused.append(sock)

    try:
        for n in range(UPLOADS):
            sock = socket.create_connection(("127.0.0.1", int(svc.env["PORT"])), timeout=5)
            sock.sendall(upload_head(1_000_000, name=f"slow-{n}.txt"))
            socks.append(sock)
        threading.Thread(target=trickle, daemon=True).start()
        # The service is really busy with them: their temp files exist.
        # Each worker reads UPLOAD_SLOTS of them and refuses the rest; the kernel may hand
        # nearly every connection to one worker, so one worker's slots is what is certain.
        settings = Settings.from_env(svc.env)
        in_flight = settings.upload_slots or settings.web_threads * 3 // 4
        try:
            wait_for(lambda: len(temp_entries(svc.files)) >= in_flight, 20, message="the slow uploads to be read")
        except AssertionError as exc:  # say where they went: per worker, refused, the log
            per_worker = collections.Counter(name.split("-")[1] for name in temp_entries(svc.files))
            raise AssertionError(f"{exc}: in flight per worker pid {dict(per_worker)}, {len(refused)} refused; "
                                 f"log:\n{svc.log(3000)}") from None
        latencies = []
        for _ in range(20):
            started = time.monotonic()
            resp = requests.get(thumb_url, timeout=20)
            latencies.append(time.monotonic() - started)
            assert resp.status_code == 200
            assert resp.headers["Content-Type"] == "image/webp"
        p95 = statistics.quantiles(latencies, n=20)[-1]
        assert p95 < 0.5, f"thumbnail GETs next to {UPLOADS} slow uploads: p95 {p95:.3f}s {latencies}"
        assert len(temp_entries(svc.files)) >= in_flight  # the uploads were still running all along
    finally:
        stop.set()
        for sock in socks + refused:
            sock.close()
    wait_for(lambda: temp_entries(svc.files) == [], 20, message="the abandoned uploads to be removed")


def test_an_upload_over_the_slots_gets_503_with_retry_after_at_once(fresh_service):
    svc = fresh_service(WEB_WORKERS="1", WEB_THREADS="4", UPLOAD_SLOTS="2", LINGER_SECONDS="1")
    socks = []
    try:
        for n in range(2):
            sock = socket.create_connection(("127.0.0.1", int(svc.env["PORT"])), timeout=5)
            sock.sendall(upload_head(100_000, name=f"held-{n}.txt") + b"x" * 100)
            socks.append(sock)
        wait_for(lambda: len(temp_entries(svc.files)) == 2, 10, message="both slots to be taken")
        started = time.monotonic()
        resp = requests.post(svc.url + "/upload", data=b"hello\n" * 100, timeout=10,
                             headers={"x-filename": "third.txt", "x-drive-id": "d", "x-user-id": "u"})
        assert resp.status_code == 503 and resp.json()["error"] == "overloaded"
        assert int(resp.headers["Retry-After"]) > 0
        assert time.monotonic() - started < 2.0
        assert requests.get(svc.url + "/health", timeout=5).status_code == 200  # reads still served
    finally:
        for sock in socks:
            sock.close()
