"""HTTP helpers for the black-box image tests."""
from __future__ import annotations

import requests

from tests.support.http import upload


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


def image_job(upload_body: dict) -> dict:
    jobs = [j for j in upload_body["jobs"] if j["type"] == "image"]
    assert len(jobs) == 1, upload_body["jobs"]
    return jobs[0]


def optimize(svc, body=None, *, data=None, headers=None) -> requests.Response:
    if data is not None:
        return requests.post(f"{svc.url}/optimize-for-ai", data=data, headers=headers or {}, timeout=60)
    return requests.post(f"{svc.url}/optimize-for-ai", json=body, timeout=60)
