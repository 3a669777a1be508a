"""Helpers shared by the black-box tests (real HTTP against the real gunicorn service)."""
from __future__ import annotations

import io
import json
import os
import re
import socket
import uuid
from pathlib import Path
from urllib.parse import unquote

import requests
from PIL import Image

from tests.conftest import sha256, temp_entries, upload  # noqa: F401  (re-exported)
from tests.support.service import parse_head

IMMUTABLE = "public, max-age=31536000, immutable"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
METADATA_KEYS = {"contentHash", "originalName", "size", "mimeType", "uploadedAt", "uploadedBy", "driveId",
                 "uploads"}
_CD_ASCII = re.compile(r'(?:^|;)\s*filename="([^"]*)"')
_CD_EXT = re.compile(r"(?:^|;)\s*filename\*=UTF-8''([^;\s]*)", re.IGNORECASE)


def unique_text(lines: int = 20) -> bytes:
    """Bytes no other test sends, sniffed as text/plain (no CSV separators, no Markdown)."""
    tag = uuid.uuid4().hex
    return "".join(f"blackbox {tag} line {i:06d} {os.urandom(8).hex()}\n" for i in range(lines)).encode()


def unique_png(width: int = 37, height: int = 23) -> bytes:
    img = Image.frombytes("RGB", (width, height), os.urandom(width * height * 3))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


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


def entry_dir(svc, content_hash: str) -> Path:
    return svc.files / content_hash


def assert_not_stored(svc, data: bytes) -> None:
    assert not entry_dir(svc, sha256(data)).exists()
    assert temp_entries(svc.files) == []


def disk_metadata(svc, content_hash: str) -> dict:
    return json.loads((entry_dir(svc, content_hash) / "metadata.json").read_text("utf-8"))


def parse_content_disposition(value: str) -> tuple[str, str, str]:
    """(kind, ascii fallback, decoded filename*)."""
    kind = value.split(";", 1)[0].strip().lower()
    ascii_match = _CD_ASCII.search(value)
    ext_match = _CD_EXT.search(value)
    assert ascii_match and ext_match, value
    return kind, ascii_match.group(1), unquote(ext_match.group(1), encoding="utf-8", errors="strict")


def get_original(svc, content_hash: str, method: str = "GET", **kwargs) -> requests.Response:
    return requests.request(method, f"{svc.url}/cache/{content_hash}/original", timeout=30, **kwargs)


def raw_request(svc, request: bytes, body_parts=(), *, half_close: bool = True, timeout: float = 15.0):
    """Send raw bytes on one connection; return (status, headers, body) of the answer."""
    port = int(svc.env["PORT"])
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        for part in body_parts:
            sock.sendall(part)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    raw = b"".join(chunks)
    head, _, body = raw.partition(b"\r\n\r\n")
    status, headers = parse_head(head)
    return status, headers, body
