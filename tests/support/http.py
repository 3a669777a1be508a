"""HTTP against a running service: uploads, raw sockets, health, the job API, the one error shape."""
from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterable
from typing import NamedTuple
from urllib.parse import unquote

import requests

IMMUTABLE = "public, max-age=31536000, immutable"
JOB_TERMINAL = {"done", "dead"}
_CD_ASCII = re.compile(r'(?:^|;)\s*filename="([^"]*)"')
_CD_EXT = re.compile(r"(?:^|;)\s*filename\*=UTF-8''([^;\s]*)", re.IGNORECASE)


def upload(svc, data, *, name: str = "file.bin", drive: str = "drive-1", user: str = "user-1",
           headers: dict[str, str] | None = None, **kwargs) -> requests.Response:
    all_headers = {"x-filename": name, "x-drive-id": drive, "x-user-id": user}
    all_headers.update(headers or {})
    return requests.post(svc.url + "/upload", data=data, headers=all_headers, timeout=60, **kwargs)


def upload_head(length: int | None, *, name: str = "big.txt", extra: str = "") -> bytes:
    """The head of a raw POST /upload (for ``raw_request`` or a socket of one's own)."""
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


def parse_head(blob: bytes) -> tuple[int, dict[str, str]]:
    """Status and lower-cased headers of a raw HTTP/1.1 response head (without the blank line)."""
    lines = blob.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers


class RawResponse(NamedTuple):
    status: int
    headers: dict[str, str]  # lower-cased names
    body: bytes
    seconds: float  # from connecting to the end of the body


def raw_request(svc, head: bytes, body: bytes | Iterable[bytes] = b"", *, half_close: bool = False,
                timeout: float = 15.0) -> RawResponse:
    """Send ``head`` and ``body`` (bytes, or parts sent one by one) as they are on one
    connection and read one response: its head, then Content-Length bytes of body (to the
    end of the connection without one). ``half_close`` shuts the sending side after the
    body, so the server sees the end of the request (a body shorter than announced is
    then incomplete rather than still coming)."""
    parts = [body] if isinstance(body, (bytes, bytearray)) else list(body)
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", int(svc.env["PORT"])), timeout=timeout) as sock:
        sock.sendall(head)
        for part in parts:
            sock.sendall(part)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        buf = b""
        while b"\r\n\r\n" not in buf and (data := _recv(sock)):
            buf += data
        head_blob, _, rest = buf.partition(b"\r\n\r\n")
        status, headers = parse_head(head_blob)
        length = int(headers["content-length"]) if "content-length" in headers else None
        while (length is None or len(rest) < length) and (data := _recv(sock)):
            rest += data
    return RawResponse(status, headers, rest if length is None else rest[:length], time.monotonic() - started)


def _recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(65536)
    except ConnectionResetError:  # the server may reset after answering an early refusal
        return b""


def health(svc, timeout: float = 30.0) -> dict:
    """GET /health: 200 and its report (a degraded service still answers 200)."""
    resp = requests.get(svc.url + "/health", timeout=timeout)
    assert resp.status_code == 200, resp.text
    return resp.json()


def get_original(svc, content_hash: str, method: str = "GET", **kwargs) -> requests.Response:
    return requests.request(method, f"{svc.url}/cache/{content_hash}/original", timeout=30, **kwargs)


def cache_metadata(svc, content_hash: str) -> dict:
    """GET /cache/{hash}/metadata: 200 and its body."""
    resp = requests.get(f"{svc.url}/cache/{content_hash}/metadata", timeout=30)
    assert resp.status_code == 200, resp.text
    return resp.json()


def get_job(svc, job_id: str) -> requests.Response:
    return requests.get(f"{svc.url}/jobs/{job_id}", timeout=10)


def wait_job(svc, job_id: str, timeout: float = 60.0, statuses=JOB_TERMINAL) -> dict:
    """GET /jobs/{id} until its status is one of ``statuses``; its body."""
    deadline = time.monotonic() + timeout
    body = {}
    while time.monotonic() < deadline:
        resp = get_job(svc, job_id)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        if body["status"] in statuses:
            return body
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not reach {statuses} in {timeout}s: {body}")


def assert_error(resp: requests.Response, status: int, code: str | None = None) -> dict:
    """The one JSON error shape: {"error": <code>, "message": <sentence>, ...}."""
    assert resp.status_code == status, (resp.status_code, resp.text[:500])
    assert resp.headers.get("Content-Type", "").startswith("application/json"), resp.headers
    body = resp.json()
    assert isinstance(body.get("error"), str) and body["error"], body
    assert isinstance(body.get("message"), str) and body["message"], body
    if code is not None:
        assert body["error"] == code, body
    return body


def parse_content_disposition(value: str) -> tuple[str, str, str]:
    """(kind, ascii fallback, decoded filename*)."""
    kind = value.split(";", 1)[0].strip().lower()
    ascii_match = _CD_ASCII.search(value)
    ext_match = _CD_EXT.search(value)
    assert ascii_match and ext_match, value
    return kind, ascii_match.group(1), unquote(ext_match.group(1), encoding="utf-8", errors="strict")
