"""Keep-alive after refusals: a response to an upload whose body was not read says
`Connection: close` and closes, so a client's next request on its pooled connection
never meets a socket the server already closed (gunicorn alone would announce
keep-alive and then close, failing the client's next request)."""
from __future__ import annotations

import socket

import pytest
import requests

from tests.support.content import unique_text
from tests.support.corpus import MEADOW
from tests.support.http import parse_head

HEADERS = {"x-filename": "a.jpg", "x-drive-id": "d", "x-user-id": "u"}


@pytest.fixture(scope="module")
def full_queue(launcher, tmp_path_factory):
    # No supervisor and room for one pending job: the first image upload fills the queue.
    svc = launcher.start(tmp_path_factory.mktemp("keepalive"), WEB_WORKERS="1", RUN_SUPERVISOR="0",
                         MAX_QUEUE_SIZE="1", MAX_UPLOAD_BYTES="2000000", PROCESSOR_AUTH_TOKEN="s3cret")
    yield svc
    svc.stop()


def _auth(**extra: str) -> dict[str, str]:
    return {"Authorization": "Bearer s3cret", **HEADERS, **extra}


def test_refused_uploads_close_and_the_next_request_on_the_session_works(full_queue):
    image = MEADOW.read_bytes()
    session = requests.Session()
    assert session.post(full_queue.url + "/upload", data=image, headers=_auth()).status_code == 201
    refusals = [
        (image + b"x", _auth(), 503),  # queue full
        (unique_text(30_000), {**HEADERS}, 401),  # no token: refused before the body
        (b"y" * 2_000_001, _auth(), 413),  # Content-Length over MAX_UPLOAD_BYTES
    ]
    for _ in range(3):
        for body, headers, status in refusals:
            resp = session.post(full_queue.url + "/upload", data=body, headers=headers)
            assert resp.status_code == status, resp.text
            assert resp.headers["Connection"] == "close"
            # The very next request reuses the session: it must not meet a dead socket.
            assert session.get(full_queue.url + "/health", timeout=10).status_code == 200


def test_uploads_read_to_the_end_keep_the_connection(module_service):
    # Two uploads and a GET on one raw socket.
    with socket.create_connection(("127.0.0.1", int(module_service.env["PORT"])), timeout=10) as sock:
        reader = sock.makefile("rb")
        for _ in range(2):
            body = unique_text(2000)
            head = (f"POST /upload HTTP/1.1\r\nHost: x\r\nx-filename: a.txt\r\nx-drive-id: d\r\n"
                    f"x-user-id: u\r\nContent-Length: {len(body)}\r\n\r\n").encode()
            sock.sendall(head + body)
            status, headers = _read_response(reader)
            assert status == 201
            assert headers.get("connection") == "keep-alive"
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert _read_response(reader)[0] == 200


def _read_response(reader) -> tuple[int, dict[str, str]]:
    blob = b""
    while not blob.endswith(b"\r\n\r\n"):
        line = reader.readline()
        assert line, "the server closed the connection"
        blob += line
    status, headers = parse_head(blob[:-4])
    reader.read(int(headers.get("content-length", "0")))
    return status, headers
