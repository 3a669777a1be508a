"""Refusals the client can read: an upload refused before its body is read is answered,
then the rest of the body is read and discarded (bounded), so a client still sending gets
the status and its JSON instead of a reset; Expect: 100-continue gets the final status
before any body is sent."""
from __future__ import annotations

import json
import socket
import subprocess
import time

import pytest
import requests

from tests.support.content import sha256, unique_text
from tests.support.corpus import MEADOW
from tests.support.http import parse_head
from tests.support.store import stored_entries, temp_entries

LIMIT = 20 * 1024 * 1024
IDS = {"x-filename": "big.bin", "x-drive-id": "d", "x-user-id": "u"}


@pytest.fixture(scope="module")
def limited(launcher, tmp_path_factory):
    svc = launcher.start(tmp_path_factory.mktemp("refusals"), WEB_WORKERS="1", MAX_UPLOAD_BYTES=str(LIMIT),
                         RUN_SUPERVISOR="0", MAX_QUEUE_SIZE="1", LINGER_SECONDS="3")
    yield svc
    svc.stop()


def _head(length: int, *extra: str) -> bytes:
    lines = ["POST /upload HTTP/1.1", "Host: x", "x-filename: a.txt", "x-drive-id: d", "x-user-id: u",
             f"Content-Length: {length}", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _read_head(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    buf = b""
    while b"\r\n\r\n" not in buf:
        data = sock.recv(65536)
        assert data, f"closed before a response head: {buf!r}"
        buf += data
    head, _, rest = buf.partition(b"\r\n\r\n")
    status, headers = parse_head(head)
    return status, headers, rest


def test_40_mb_to_a_20_mb_limit_gets_a_readable_413(limited):
    # http.client sends the whole body before it reads: without the lingering read the
    # kernel resets the connection under it (EPIPE) and the 413 is never seen.
    body = b"x" * (40 * 1024 * 1024)
    resp = requests.post(limited.url + "/upload", data=body, headers=IDS, timeout=60)
    assert resp.status_code == 413
    assert resp.json()["error"] == "payload_too_large" and resp.json()["limit"] == LIMIT
    assert resp.headers["Connection"] == "close"
    assert stored_entries(limited.files) == [] and temp_entries(limited.files) == []


def test_curl_40_mb_file_reads_the_413(limited, tmp_path):
    path = tmp_path / "big.bin"
    path.write_bytes(b"y" * (40 * 1024 * 1024))
    out = subprocess.run(["curl", "-sS", "-H", "x-filename: big.bin", "-H", "x-drive-id: d", "-H", "x-user-id: u",
                          "--data-binary", f"@{path}", "-w", "\n%{http_code}", limited.url + "/upload"],
                         capture_output=True, timeout=60)
    assert out.returncode == 0, out.stderr
    body, _, code = out.stdout.decode().rpartition("\n")
    assert code == "413" and json.loads(body)["error"] == "payload_too_large"


def test_503_under_pressure_is_readable_while_the_body_is_sent(limited):
    first = requests.post(limited.url + "/upload", data=MEADOW.read_bytes(), headers=IDS, timeout=30)
    assert first.status_code in (200, 201)  # its image jobs fill the queue (no supervisor)
    resp = requests.post(limited.url + "/upload", data=unique_text(200_000), headers=IDS, timeout=30)
    assert resp.status_code == 503 and resp.json()["error"] == "overloaded"
    assert int(resp.headers["Retry-After"]) > 0


def test_expect_100_continue_gets_the_final_status_before_the_body(limited):
    with socket.create_connection(("127.0.0.1", int(limited.env["PORT"])), timeout=10) as sock:
        sock.sendall(_head(LIMIT + 1, "Expect: 100-continue"))
        status, headers, rest = _read_head(sock)
        assert status == 413  # not 100: the client never has to send the body
        while len(rest) < int(headers["content-length"]):
            rest += sock.recv(65536)
        assert json.loads(rest)["error"] == "payload_too_large"


def test_expect_100_continue_goes_ahead_when_admitted(limited):
    # Bytes already stored, named by x-content-sha256: admitted even while the queue is full.
    body = MEADOW.read_bytes()
    stored = requests.post(limited.url + "/upload", data=body, headers={**IDS, "x-content-sha256": sha256(body)},
                           timeout=30)
    assert stored.status_code in (200, 201), stored.text  # the image test stored it already, or now
    with socket.create_connection(("127.0.0.1", int(limited.env["PORT"])), timeout=10) as sock:
        sock.sendall(_head(len(body), "Expect: 100-continue", f"x-content-sha256: {sha256(body)}"))
        status, _, rest = _read_head(sock)
        assert status == 100 and rest == b""
        sock.sendall(body)
        status, headers, rest = _read_head(sock)
        while len(rest) < int(headers["content-length"]):
            rest += sock.recv(65536)
        assert status == 200, rest
        assert json.loads(rest)["contentHash"] == sha256(body)


def test_lingering_is_bounded_in_time(limited):
    # A refused client that keeps trickling is cut off after LINGER_SECONDS (3 s here).
    with socket.create_connection(("127.0.0.1", int(limited.env["PORT"])), timeout=10) as sock:
        sock.sendall(_head(LIMIT + 10))
        status, _, _ = _read_head(sock)
        assert status == 413
        started = time.monotonic()
        with pytest.raises(OSError):  # EPIPE/ECONNRESET once the server has closed
            while time.monotonic() - started < 20:
                sock.sendall(b"z" * 1024)
                time.sleep(0.05)
        assert 2.0 < time.monotonic() - started < 8.0  # LINGER_SECONDS + gunicorn's own 2 s drain
