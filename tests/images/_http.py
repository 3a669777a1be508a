"""HTTP helpers for the black-box image tests."""
from __future__ import annotations

import time

import requests

from tests.conftest import upload

TERMINAL = {"done", "dead"}


def upload_ok(svc, data: bytes, name: str = "image.bin", *, new: bool | None = True) -> dict:
    resp = upload(svc, data, name=name)
    assert resp.status_code in (200, 201), (resp.status_code, resp.text[:300])
    body = resp.json()
    if new is not None:
        assert body["isNew"] is new, body
    return body


def get_preset(svc, content_hash: str, preset: str, method: str = "GET", session=None, **kwargs):
    http = session or requests
    return http.request(method, f"{svc.url}/cache/{content_hash}/{preset}", timeout=60, **kwargs)


def cache_metadata(svc, content_hash: str) -> dict:
    resp = requests.get(f"{svc.url}/cache/{content_hash}/metadata", timeout=30)
    assert resp.status_code == 200, resp.text
    return resp.json()


def wait_job(svc, job_id: str, timeout: float = 60.0, statuses=TERMINAL) -> dict:
    deadline = time.monotonic() + timeout
    body = {}
    while time.monotonic() < deadline:
        resp = requests.get(f"{svc.url}/jobs/{job_id}", timeout=10)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        if body["status"] in statuses:
            return body
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not reach {statuses} in {timeout}s: {body}")


def image_job(upload_body: dict) -> dict:
    jobs = [j for j in upload_body["jobs"] if j["type"] == "image"]
    assert len(jobs) == 1, upload_body["jobs"]
    return jobs[0]


def health(svc) -> dict:
    resp = requests.get(svc.url + "/health", timeout=10)
    assert resp.status_code == 200
    return resp.json()


def optimize(svc, body=None, *, data=None, headers=None) -> requests.Response:
    if data is not None:
        return requests.post(f"{svc.url}/optimize-for-ai", data=data, headers=headers or {}, timeout=60)
    return requests.post(f"{svc.url}/optimize-for-ai", json=body, timeout=60)
