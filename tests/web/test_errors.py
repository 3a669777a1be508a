"""Every error status, with the one JSON error shape, and nothing stored on failure."""
from __future__ import annotations

import os

import pytest
import requests

from tests.support.content import sha256, unique_png, unique_text
from tests.support.http import assert_error, get_original, raw_request, upload
from tests.support.store import assert_not_stored, entry_dir, stored_entries, temp_entries

HEADERS = {"x-filename": "f.txt", "x-drive-id": "drive-1", "x-user-id": "user-1"}


# -- 400: headers and body ------------------------------------------------------------


@pytest.mark.parametrize("missing", ["x-filename", "x-drive-id", "x-user-id"])
def test_missing_required_header_is_400(service, missing):
    data = unique_text()
    headers = {k: v for k, v in HEADERS.items() if k != missing}
    resp = requests.post(service.url + "/upload", data=data, headers=headers, timeout=30)
    body = assert_error(resp, 400, "missing_header")
    assert body.get("header") == missing
    assert_not_stored(service, data)


@pytest.mark.parametrize("blank", ["x-filename", "x-drive-id", "x-user-id"])
def test_blank_required_header_is_400(service, blank):
    data = unique_text()
    resp = requests.post(service.url + "/upload", data=data, headers={**HEADERS, blank: ""}, timeout=30)
    assert_error(resp, 400)
    assert_not_stored(service, data)
    # Whitespace only (requests refuses to send that, so on a raw connection).
    others = "".join(f"{k}: {v}\r\n" for k, v in HEADERS.items() if k != blank)
    head = (f"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: {len(data)}\r\n{others}"
            f"{blank}:    \t \r\nConnection: close\r\n\r\n").encode()
    status, _, body, _ = raw_request(service, head, data, half_close=True)
    assert status == 400, body
    assert_not_stored(service, data)


def test_empty_body_is_400(service):
    before = stored_entries(service.files)
    assert_error(upload(service, b""), 400, "empty_body")
    # Chunked with no chunks at all: also empty.
    assert_error(upload(service, iter([])), 400, "empty_body")
    assert stored_entries(service.files) == before
    assert temp_entries(service.files) == []


def test_sha256_mismatch_is_400_and_nothing_is_stored(service):
    data = unique_text()
    wrong = sha256(data + b"x")
    body = assert_error(upload(service, data, headers={"x-content-sha256": wrong}), 400, "hash_mismatch")
    assert body.get("expected") == wrong
    assert body.get("actual") == sha256(data)
    assert_not_stored(service, data)
    # The same with a chunked body.
    assert_error(upload(service, iter([data[:10], data[10:]]), headers={"x-content-sha256": wrong}), 400,
                 "hash_mismatch")
    assert_not_stored(service, data)
    # And the content can still be uploaded afterwards, as new content.
    assert upload(service, data).status_code == 201


@pytest.mark.parametrize("bad", ["0" * 63, "0" * 65, "g" * 64, "sha256-" + "0" * 57, "zz", "0" * 32 + " " + "0" * 31])
def test_malformed_sha256_header_is_400(service, bad):
    data = unique_text()
    assert_error(upload(service, data, headers={"x-content-sha256": bad}), 400, "invalid_header")
    assert_not_stored(service, data)


@pytest.mark.parametrize("case", ["lower", "upper"])
def test_matching_sha256_header_is_accepted(service, case):
    data = unique_text()
    given = sha256(data).upper() if case == "upper" else sha256(data)
    resp = upload(service, data, headers={"x-content-sha256": given})
    assert resp.status_code == 201, resp.text
    assert resp.json()["contentHash"] == sha256(data)
    assert entry_dir(service, sha256(data)).is_dir()


def test_body_shorter_than_content_length_leaves_nothing(service):
    """A client that disconnects mid-upload: 400, no file, no temp debris."""
    data = unique_text()
    head = (f"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: {len(data) + 5000}\r\n"
            "x-filename: cut.txt\r\nx-drive-id: d\r\nx-user-id: u\r\nConnection: close\r\n\r\n").encode()
    status, _, body, _ = raw_request(service, head, data, half_close=True)
    assert status == 400, body
    assert b"incomplete_body" in body
    assert_not_stored(service, data)


# -- 400 / 404: content hash in the path ------------------------------------------------

VALID_LOOKING = "a" * 64
MALFORMED_HASHES = [
    pytest.param("A" * 64, id="uppercase"),
    pytest.param("a" * 63, id="63-chars"),
    pytest.param("a" * 65, id="65-chars"),
    pytest.param("g" * 64, id="non-hex"),
    pytest.param("%2E%2E", id="dotdot-encoded"),
    pytest.param("a" * 63 + "%00", id="nul"),
    pytest.param("%20" + "a" * 64, id="space-prefix"),
]


@pytest.mark.parametrize("route", ["original", "metadata"])
@pytest.mark.parametrize("bad", MALFORMED_HASHES)
def test_malformed_hash_in_path_is_400(service, route, bad):
    resp = requests.get(f"{service.url}/cache/{bad}/{route}", timeout=30)
    assert_error(resp, 400, "invalid_hash")


@pytest.mark.parametrize("route", ["original", "metadata"])
def test_percent_encoded_traversal_as_hash_is_400(service, route):
    """The contract: {contentHash} is always 64 lowercase hex characters; anything else is 400.

    '../etc/passwd' sent as one percent-encoded path segment is such an "anything else"."""
    resp = requests.get(f"{service.url}/cache/..%2F..%2F..%2Fetc%2Fpasswd/{route}", timeout=30)
    assert resp.status_code != 200
    assert "root:" not in resp.text
    assert_error(resp, 400, "invalid_hash")


def test_unknown_hash_is_404(service):
    unknown = sha256(os.urandom(32))
    assert_error(get_original(service, unknown), 404, "not_found")
    assert_error(requests.get(f"{service.url}/cache/{unknown}/metadata", timeout=30), 404, "not_found")
    head = get_original(service, unknown, method="HEAD")
    assert head.status_code == 404
    assert head.content == b""
    assert not entry_dir(service, unknown).exists()


# -- 413 ------------------------------------------------------------------------------


def test_413_from_content_length_and_from_a_streamed_body(fresh_service):
    svc = fresh_service(MAX_UPLOAD_BYTES="1000")

    too_big = os.urandom(4) + unique_text(100)[:1997]
    assert len(too_big) == 2001
    body = assert_error(upload(svc, too_big), 413, "payload_too_large")
    assert body.get("limit") == 1000
    assert_error(upload(svc, too_big[:1001]), 413, "payload_too_large")

    # Chunked: no Content-Length, cut off when the running total passes the limit.
    streamed = unique_text(100)
    assert len(streamed) > 5000
    resp = upload(svc, (streamed[i:i + 300] for i in range(0, len(streamed), 300)))
    assert_error(resp, 413, "payload_too_large")
    assert "Content-Length" not in resp.request.headers
    # Over by a single byte, streamed.
    just_over = unique_text(30)[:1001]
    assert_error(upload(svc, iter([just_over[:600], just_over[600:]])), 413, "payload_too_large")

    assert stored_entries(svc.files) == []
    assert temp_entries(svc.files) == []

    # Exactly at the limit is fine, both ways.
    at_limit = unique_text(30)[:1000]
    assert upload(svc, at_limit).status_code == 201
    at_limit_streamed = unique_text(30)[:1000]
    resp = upload(svc, iter([at_limit_streamed[:999], at_limit_streamed[999:]]))
    assert resp.status_code == 201, resp.text
    assert sorted(stored_entries(svc.files)) == sorted([sha256(at_limit), sha256(at_limit_streamed)])
    assert temp_entries(svc.files) == []


# -- 415 ------------------------------------------------------------------------------

ELF = (b"\x7fELF\x02\x01\x01\x00" + b"\x00" * 8 + b"\x02\x00\x3e\x00\x01\x00\x00\x00" + b"\x00" * 40)


@pytest.mark.parametrize("kind", ["elf", "shebang", "elf-chunked"])
def test_executables_are_415_and_not_stored(service, kind):
    if kind.startswith("elf"):
        data = ELF + os.urandom(256)
        name = "photo.jpg"  # the name must not matter
    else:
        data = b"#!/bin/sh\n# " + os.urandom(8).hex().encode() + b"\nrm -rf /\n"
        name = "notes.txt"
    payload = iter([data[:3], data[3:]]) if kind.endswith("chunked") else data
    resp = upload(service, payload, name=name, headers={"Content-Type": "image/jpeg"})
    body = assert_error(resp, 415, "unsupported_type")
    supported = body.get("supportedTypes")
    assert isinstance(supported, list) and supported
    assert "image/jpeg" in supported and "application/pdf" in supported
    assert body.get("mimeType") not in supported
    assert_not_stored(service, data)


# -- 507 ------------------------------------------------------------------------------


def test_507_when_the_reserve_exceeds_free_space(fresh_service):
    svc = fresh_service(STORAGE_RESERVE_BYTES=str(10**18))
    data = unique_png()
    assert_error(upload(svc, data), 507, "insufficient_storage")
    assert_error(upload(svc, iter([data[:100], data[100:]])), 507, "insufficient_storage")
    assert stored_entries(svc.files) == []
    assert temp_entries(svc.files) == []


# -- 401 ------------------------------------------------------------------------------


def test_bearer_token(fresh_service):
    token = "s3cret-" + os.urandom(8).hex()
    svc = fresh_service(PROCESSOR_AUTH_TOKEN=token)
    good = {"Authorization": f"Bearer {token}"}
    bad_headers = [
        {},
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": f"Bearer {token}x"},
        {"Authorization": f"Bearer {token[:-1]}"},
        {"Authorization": token},
        {"Authorization": f"Basic {token}"},
        {"Authorization": "Bearer"},
        {"Authorization": ""},
    ]

    data = unique_text()
    for headers in bad_headers:
        resp = upload(svc, data, headers=headers)
        assert_error(resp, 401, "unauthorized")
        assert "Bearer" in resp.headers.get("WWW-Authenticate", "")
    assert stored_entries(svc.files) == []
    assert temp_entries(svc.files) == []

    created = upload(svc, data, headers=good)
    assert created.status_code == 201, created.text
    digest = created.json()["contentHash"]

    for route in ("original", "metadata"):
        url = f"{svc.url}/cache/{digest}/{route}"
        for headers in bad_headers:
            assert_error(requests.get(url, headers=headers, timeout=30), 401, "unauthorized")
        ok = requests.get(url, headers=good, timeout=30)
        assert ok.status_code == 200
    assert requests.get(f"{svc.url}/cache/{digest}/original", headers=good, timeout=30).content == data
    # Unknown and malformed hashes are not revealed without the token either.
    assert_error(requests.get(f"{svc.url}/cache/{'b' * 64}/original", timeout=30), 401, "unauthorized")
    assert_error(requests.get(f"{svc.url}/cache/{'b' * 64}/original", headers=good, timeout=30), 404)

    health = requests.get(svc.url + "/health", timeout=30)
    assert health.status_code == 200
    assert health.json()["status"] in ("ok", "degraded")
