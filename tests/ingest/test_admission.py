"""Admission from Content-Length and STORAGE_RESERVE_BYTES: answered before the body is read."""
from __future__ import annotations

import json

import requests

from tests.support.http import raw_request, upload_head
from tests.support.service import wait_web_workers
from tests.support.store import stored_entries, temp_entries


def test_content_length_over_the_limit_is_refused_without_reading_the_body(fresh_service):
    svc = fresh_service(WEB_WORKERS="1")
    wait_web_workers(svc, 1)
    # Headers only: a server that tried to read 10**9 bytes first would never answer.
    status, headers, body, took = raw_request(svc, upload_head(10**9), timeout=2.0)
    assert status == 413
    assert took < 2.0
    assert headers["content-type"].startswith("application/json")
    payload = json.loads(body)
    assert payload["error"] == "payload_too_large"
    assert payload["limit"] == 104857600
    assert payload["message"]
    assert stored_entries(svc.files) == [] and temp_entries(svc.files) == []
    # The service is unaffected.
    assert requests.get(svc.url + "/health", timeout=5).status_code == 200


def test_storage_reserve_is_enforced_before_reading_the_body(fresh_service):
    svc = fresh_service(WEB_WORKERS="1", STORAGE_RESERVE_BYTES=str(10**18), MAX_UPLOAD_BYTES=str(1024 * 1024))
    wait_web_workers(svc, 1)
    # Size is checked first: over MAX_UPLOAD_BYTES is 413 even when the disk is "full".
    status, _, body, took = raw_request(svc, upload_head(10**9), timeout=2.0)
    assert status == 413 and json.loads(body)["limit"] == 1024 * 1024
    # Within the size limit, the reserve refuses with 507, still without reading the body.
    status, headers, body, took = raw_request(svc, upload_head(1000), timeout=2.0)
    assert status == 507
    assert took < 2.0
    assert headers["content-type"].startswith("application/json")
    assert json.loads(body)["error"] == "insufficient_storage"
    # A streamed body has no Content-Length: the reserve still refuses it up front.
    status, _, body, _ = raw_request(svc, upload_head(None, extra="Transfer-Encoding: chunked"), timeout=2.0)
    assert status == 507
    assert stored_entries(svc.files) == [] and temp_entries(svc.files) == []
    health = requests.get(svc.url + "/health", timeout=5)
    assert health.status_code == 200
    assert "storage_low" in health.json()["reasons"]
