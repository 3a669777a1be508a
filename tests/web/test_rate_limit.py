"""429: per-user upload rate limits, through the real service (memory:// and a real Redis)."""
from __future__ import annotations

import shutil
import subprocess
import time

import pytest
import requests

from tests.support.content import sha256, unique_text
from tests.support.http import upload
from tests.support.service import free_port
from tests.support.wait import wait_for


def _assert_rate_limited(resp: requests.Response, limit: str) -> int:
    assert resp.status_code == 429, resp.text
    body = resp.json()
    assert body["error"] == "rate_limited"
    assert body["limit"] == limit
    retry_after = int(resp.headers["Retry-After"])
    assert body["retryAfter"] == retry_after
    return retry_after


@pytest.fixture(scope="module")
def limited(launcher, tmp_path_factory):
    svc = launcher.start(tmp_path_factory.mktemp("ratelimit"), WEB_WORKERS="1", UPLOAD_RATE_LIMIT="4/minute")
    yield svc
    svc.stop()


def test_a_user_past_the_limit_gets_429_and_nothing_is_stored(limited):
    first = [unique_text() for _ in range(4)]
    for data in first:
        assert upload(limited, data, user="eager").status_code == 201
    refused = unique_text()
    resp = upload(limited, refused, user="eager")
    retry_after = _assert_rate_limited(resp, "4 per 1 minute")
    assert 1 <= retry_after <= 60
    assert requests.get(f"{limited.url}/cache/{sha256(refused)}/original", timeout=10).status_code == 404
    # What was stored before stays readable; another user is not held back.
    for data in first:
        got = requests.get(f"{limited.url}/cache/{sha256(data)}/original", timeout=10)
        assert got.status_code == 200 and got.content == data
    assert upload(limited, unique_text(), user="patient").status_code == 201


def test_refused_uploads_do_not_use_up_the_window(fresh_service):
    svc = fresh_service(WEB_WORKERS="1", UPLOAD_RATE_LIMIT="2/second")
    assert [upload(svc, unique_text(), user="u").status_code for _ in range(2)] == [201, 201]
    for _ in range(3):  # refusals are not counted, so the wait they announce holds
        retry_after = _assert_rate_limited(upload(svc, unique_text(), user="u"), "2 per 1 second")
    time.sleep(retry_after + 0.1)
    assert upload(svc, unique_text(), user="u").status_code == 201


@pytest.fixture
def redis_server(tmp_path):
    binary = shutil.which("redis-server")
    assert binary, "redis-server is not installed (scripts/bootstrap.sh --test installs it)"
    port = free_port()
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(tmp_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    import redis

    client = redis.Redis(port=port)
    wait_for(lambda: _pings(client), 10, message="redis-server to answer")
    yield port, client, proc
    proc.kill()
    proc.wait()


def _pings(client) -> bool:
    try:
        return client.ping()
    except Exception:
        return False


def test_redis_counts_once_across_web_workers_and_an_outage_fails_open(fresh_service, redis_server):
    port, client, proc = redis_server
    svc = fresh_service(WEB_WORKERS="3", UPLOAD_RATE_LIMIT="6/minute",
                        RATE_LIMIT_STORAGE_URI=f"redis://127.0.0.1:{port}/0")
    # A new connection per upload, so the uploads spread over the three workers.
    codes = [upload(svc, unique_text(), user="shared").status_code for _ in range(12)]
    assert codes.count(201) == 6 and codes.count(429) == 6, codes
    assert any(b"falconproc-upload" in key for key in client.scan_iter()), "the counts are not in Redis"
    # Redis gone: uploads are let through (and logged), not failed.
    proc.kill()
    proc.wait()
    resp = upload(svc, unique_text(), user="shared")
    assert resp.status_code == 201, resp.text
    assert "rate limit storage unavailable" in svc.log()
