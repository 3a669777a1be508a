"""Slow and stalled clients must not block other clients."""
from __future__ import annotations

import socket
import threading
import time

import pytest
import requests

from tests.support.content import sha256, text_blob
from tests.support.http import upload, upload_head
from tests.support.service import peer_ports, wait_web_workers
from tests.support.store import temp_entries
from tests.support.wait import wait_for


def _connect(svc) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", int(svc.env["PORT"])), timeout=5)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _clients(socks: list[socket.socket]) -> set[int]:
    return {sock.getsockname()[1] for sock in socks}


def test_stalled_connections_do_not_block_other_clients(fresh_service):
    svc = fresh_service(WEB_WORKERS="1", WEB_THREADS="4", WORKER_TIMEOUT="30")
    (worker,) = wait_web_workers(svc, 1)
    stop = threading.Event()
    socks: list[socket.socket] = []
    try:
        # 1. Headers that stop half-way and never finish.
        partial_headers = _connect(svc)
        partial_headers.sendall(b"POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\nx-filename: a.txt\r\n")
        socks.append(partial_headers)

        # 2. Headers trickled one byte at a time (slowloris).
        slowloris = _connect(svc)
        slowloris.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        socks.append(slowloris)

        def trickle():
            while not stop.wait(0.3):
                try:
                    slowloris.sendall(b"X")
                except OSError:
                    return

        threading.Thread(target=trickle, daemon=True).start()

        # 3. Complete headers, part of the body, then silence.
        stalled_body = _connect(svc)
        stalled_body.sendall(upload_head(1_000_000, name="stalled.txt") + text_blob("stalled", 20_000))
        socks.append(stalled_body)

        # The stalled upload has started (its temp dir exists): the worker is really busy with it;
        # and the worker holds all three connections (not a sleep that hopes it does).
        wait_for(lambda: temp_entries(svc.files), 5, message="the stalled upload to start")
        wait_for(lambda: _clients(socks) <= peer_ports(worker, svc.port), 5, 0.01,
                 "the worker to hold the three stalled connections")

        # Meanwhile a normal client is served promptly.
        data = text_blob("normal-client", 100_000)
        started = time.monotonic()
        resp = upload(svc, data)
        assert resp.status_code == 201, resp.text
        got = requests.get(f"{svc.url}/cache/{sha256(data)}/original", timeout=5)
        assert got.status_code == 200 and got.content == data
        assert requests.get(svc.url + "/health", timeout=5).status_code == 200
        elapsed = time.monotonic() - started
        assert elapsed < 3.0, f"a normal upload + GET took {elapsed:.1f}s next to 3 stalled clients"

        # Repeatedly, not just once.
        for n in range(5):
            other = text_blob(f"normal-{n}", 5_000)
            assert upload(svc, other).status_code == 201
    finally:
        stop.set()
        for sock in socks:
            sock.close()

    # The stalled upload's partial bytes are removed once its client goes away.
    wait_for(lambda: temp_entries(svc.files) == [], 5, message="the abandoned upload's temp dir to go")


def test_stalled_clients_are_timed_out_so_they_cannot_exhaust_the_threads(fresh_service):
    """reliability.md's matrix: "workers time out the slow client; the service stays available".

    More stalled connections than the worker has threads: each must be dropped by the server
    within about WORKER_TIMEOUT, after which a normal client is served again."""
    timeout = 5  # the smallest WORKER_TIMEOUT allowed
    # CLIENT_TIMEOUT is not a setting yet: set too in case the fix adds a knob of its own.
    svc = fresh_service(WEB_WORKERS="1", WEB_THREADS="2", WORKER_TIMEOUT=str(timeout), CLIENT_TIMEOUT=str(timeout))
    (worker,) = wait_web_workers(svc, 1)
    socks = []
    try:
        for n in range(3):
            sock = _connect(svc)
            sock.sendall(b"POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\nx-filename: s.txt\r\n")  # ... and stall
            socks.append(sock)
        wait_for(lambda: _clients(socks) <= peer_ports(worker, svc.port), 5, 0.01,
                 "the worker to hold the three stalled connections")
        started = time.monotonic()
        try:
            health = requests.get(svc.url + "/health", timeout=2 * timeout)
        except requests.Timeout:
            health = None
        assert health is not None and health.status_code == 200, (
            f"3 stalled clients blocked a {2 * timeout}s request on a worker with 2 threads")
        assert time.monotonic() - started < 2 * timeout
        for sock in socks:
            sock.settimeout(3 * timeout)
            try:
                data = sock.recv(1024)
            except TimeoutError:
                pytest.fail(f"a client stalled mid-headers was not disconnected within {3 * timeout}s")
            except ConnectionResetError:
                data = b""
            assert data == b"" or data.startswith(b"HTTP/1.1 408")
    finally:
        for sock in socks:
            sock.close()
