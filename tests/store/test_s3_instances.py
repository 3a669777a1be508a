"""Black-box: services on STORAGE_BACKEND=s3 (a real Ceph RGW) sharing one bucket, each
with its own empty local directories, and an object store that stops answering."""
from __future__ import annotations

import os
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.support.content import sha256, unique_png, unique_text
from tests.support.http import cache_metadata, get_original, health, raw_request, upload, upload_head, wait_job
from tests.support.servers import TcpProxy
from tests.support.wait import wait_for


@pytest.fixture
def shared_env(s3_server, s3_bucket):
    return s3_server.service_env(s3_bucket, prefix=f"bb-{uuid.uuid4().hex[:10]}")


def test_what_one_instance_stored_the_other_serves(fresh_service, shared_env):
    a = fresh_service(**shared_env, INSTANCE_ID="a")
    b = fresh_service(**shared_env, INSTANCE_ID="b")
    png, text = unique_png(300, 200), unique_text(40)

    first = upload(a, png, name="photo.png")
    assert first.status_code == 201, first.text
    assert first.json()["isNew"] is True
    for job in first.json()["jobs"]:
        assert wait_job(a, job["id"])["status"] == "done"
    again = upload(b, png, name="same.png", user="someone-else")
    assert again.status_code in (200, 201) and again.json()["isNew"] is False, again.text
    assert upload(b, text, name="notes.txt").json()["isNew"] is True

    # b never saw the PNG's bytes: original, a range of it, 304, the preset, metadata.
    got = get_original(b, sha256(png))
    assert got.status_code == 200 and got.content == png
    part = get_original(b, sha256(png), headers={"Range": "bytes=10-19"})
    assert part.status_code == 206 and part.content == png[10:20]
    assert get_original(b, sha256(png), headers={"If-None-Match": got.headers["ETag"]}).status_code == 304
    thumb = requests.get(f"{b.url}/cache/{sha256(png)}/thumbnail", timeout=30)
    assert thumb.status_code == 200 and thumb.content[:4] == b"RIFF", thumb.text[:200]
    meta = cache_metadata(b, sha256(png))
    assert {u["userId"] for u in meta["uploads"]} == {"user-1", "someone-else"}
    assert "thumbnail" in meta.get("presets", {}), meta
    # and a serves what b stored.
    assert get_original(a, sha256(text)).content == text
    # /health counts from the writers' counters, on both instances alike.
    for svc in (a, b):
        storage = wait_for(lambda svc=svc: (s := health(svc)["storage"])["files"] == 2 and s, 15,
                           message="both entries counted")
        assert storage["totalSize"] == len(png) + len(text)


def test_object_store_outage_refuses_uploads_with_503_keeps_local_reads_and_recovers(
        fresh_service, shared_env, s3_server):
    proxy = TcpProxy(s3_server.endpoint)
    svc = fresh_service(**{**shared_env, "S3_ENDPOINT_URL": proxy.url}, WEB_WORKERS="1")
    stored = unique_text()
    assert upload(svc, stored).status_code == 201
    assert get_original(svc, sha256(stored)).content == stored

    proxy.stop()  # the object store stops answering
    refused = unique_text()
    resp = upload(svc, refused)
    assert resp.status_code == 503, resp.text
    assert int(resp.headers["Retry-After"]) > 0 and resp.json()["error"]
    report = health(svc)
    assert report["status"] == "degraded" and "storage_unavailable" in report["reasons"], report
    assert get_original(svc, sha256(stored)).content == stored  # from the local copy

    proxy.start()  # back, with no restart of the service
    wait_for(lambda: upload(svc, refused).status_code == 201, 30, message="uploads accepted again")
    assert get_original(svc, sha256(refused)).content == refused
    assert get_original(svc, sha256(stored)).content == stored
    wait_for(lambda: health(svc)["status"] == "ok", 30, message="health ok again")
    proxy.stop()


def test_presigned_redirect_serves_the_original_from_the_bucket_with_a_real_signature(fresh_service, shared_env):
    svc = fresh_service(**shared_env, S3_PRESIGNED_REDIRECT="1", WEB_WORKERS="1")
    data = unique_text(100)
    assert upload(svc, data, name="notes.txt").status_code == 201
    resp = get_original(svc, sha256(data), allow_redirects=False)
    assert resp.status_code == 307, resp.text
    location = resp.headers["Location"]
    assert location.startswith(shared_env["S3_ENDPOINT_URL"]) and "X-Amz-Algorithm=AWS4-HMAC-SHA256" in location
    direct = requests.get(location, timeout=30)
    assert direct.status_code == 200 and direct.content == data
    assert direct.headers["Content-Type"].startswith("text/plain")
    assert "notes.txt" in direct.headers["Content-Disposition"]
    # The object store checks the signature: a forged one is refused.
    forged = location.replace("X-Amz-Signature=", "X-Amz-Signature=0")
    assert requests.get(forged, timeout=30).status_code == 403
    assert get_original(svc, sha256(data), headers={"If-None-Match": f'"{sha256(data)}"'},
                        allow_redirects=False).status_code == 304
    # Markup is never redirected: only falconproc's own answer carries the CSP sandbox.
    page = b"<!doctype html><html><body><script>alert(1)</script></body></html>" + unique_text(2)
    assert upload(svc, page, name="page.html").status_code == 201
    own = get_original(svc, sha256(page), allow_redirects=False)
    assert own.status_code == 200 and own.headers["Content-Security-Policy"] == "sandbox"


@pytest.mark.parametrize("lock", ["redis", "none"])
def test_two_instances_asked_for_the_same_new_variant_at_once_serve_identical_bytes(
        fresh_service, shared_env, redis_server, lock):
    """No job renders anything here (RUN_SUPERVISOR=0): the variant is made on demand by
    whichever instance gets there first. With REDIS_URL the Redis lock lets one instance
    render it and the other wait and serve the result; without, both may render and both
    write the same bytes."""
    env = {**shared_env, "RUN_SUPERVISOR": "0", "LOG_LEVEL": "info", "WEB_WORKERS": "2"}
    if lock == "redis":
        env.update(QUEUE_BACKEND="redis", REDIS_URL=f"redis://127.0.0.1:{redis_server.port}/5")
    a = fresh_service(**env, INSTANCE_ID="a")
    b = fresh_service(**env, INSTANCE_ID="b")
    png = unique_png(1600, 1200)
    assert upload(a, png, name="big.png").status_code == 201
    digest = sha256(png)
    url = f"/cache/{digest}/thumbnail?format=png"
    barrier = threading.Barrier(6)

    def get(svc) -> requests.Response:
        barrier.wait(30)
        return requests.get(svc.url + url, timeout=120)

    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(get, [a, b] * 3))
    assert [r.status_code for r in answers] == [200] * 6, [r.text[:200] for r in answers]
    assert len({r.content for r in answers}) == 1 and answers[0].content[:8] == b"\x89PNG\r\n\x1a\n"
    renders = sum(svc.log(10_000_000).count(f"rendered thumbnail.png of {digest}") for svc in (a, b))
    if lock == "redis":
        assert renders == 1, "the Redis lock admits one producer across instances"
    else:
        assert 1 <= renders <= 2  # one per host at most (the per-host lock), idempotent overwrite
    fresh = requests.get(f"{b.url}{url}", timeout=30)
    assert fresh.status_code == 200 and fresh.content == answers[0].content


def test_an_original_not_in_the_local_copy_is_streamed_from_the_bucket(fresh_service, shared_env, s3_server):
    a = fresh_service(**shared_env, INSTANCE_ID="a")
    b = fresh_service(**shared_env, INSTANCE_ID="b", WEB_WORKERS="1")
    data = unique_text(60_000)  # ~4 MB
    h = sha256(data)
    assert upload(a, data, name="big.txt").status_code == 201

    # b never had these bytes: whole, ranges (first, middle, suffix), HEAD, 304, If-Range.
    got = get_original(b, h)
    assert got.status_code == 200 and got.content == data and got.headers["ETag"] == f'"{h}"'
    for header, expected in (("bytes=0-9", data[:10]), ("bytes=1000000-2999999", data[1000000:3000000]),
                             ("bytes=-5", data[-5:])):
        part = get_original(b, h, headers={"Range": header})
        assert part.status_code == 206 and part.content == expected, header
    head = get_original(b, h, method="HEAD")
    assert head.status_code == 200 and int(head.headers["Content-Length"]) == len(data) and head.content == b""
    assert get_original(b, h, headers={"If-None-Match": got.headers["ETag"]}).status_code == 304
    stale = get_original(b, h, headers={"Range": "bytes=0-9", "If-Range": '"other"'})
    assert stale.status_code == 200 and stale.content == data
    # Streamed, not copied: b's read-through copy holds no original.
    assert [p for p in (b.base / "cache").rglob(h) if p.is_file()] == []

    # The object store stops answering: an original b does not have is a 503 before any byte.
    proxy = TcpProxy(s3_server.endpoint)
    c = fresh_service(**{**shared_env, "S3_ENDPOINT_URL": proxy.url}, INSTANCE_ID="c", WEB_WORKERS="1")
    assert upload(c, unique_text(5)).status_code == 201
    assert get_original(c, h).content == data
    proxy.stop()
    resp = get_original(c, h)
    assert resp.status_code == 503 and int(resp.headers["Retry-After"]) > 0


def test_a_big_upload_cut_midway_leaves_nothing_in_the_bucket(fresh_service, shared_env, s3_server):
    svc = fresh_service(**shared_env, INSTANCE_ID="a", ALLOWED_TYPES="application/octet-stream")
    data = os.urandom(60 << 20)
    sent = data[:40 << 20]  # past the 16 MB multipart threshold: parts were being uploaded
    resp = raw_request(svc, upload_head(len(data), name="big.bin"), [sent[i:i + (1 << 20)]
                       for i in range(0, len(sent), 1 << 20)], half_close=True, timeout=60)
    assert resp.status == 400 and b"incomplete_body" in resp.body, resp
    client = s3_server.client()
    prefix = shared_env["S3_PREFIX"]

    def leftovers():
        uploads = client.list_multipart_uploads(Bucket=shared_env["S3_BUCKET"], Prefix=prefix).get("Uploads", [])
        objects = client.list_objects_v2(Bucket=shared_env["S3_BUCKET"], Prefix=prefix).get("Contents", [])
        return [u["Key"] for u in uploads] + [o["Key"] for o in objects if "/.stats/" not in o["Key"]]

    wait_for(lambda: leftovers() == [], 30, message="nothing left in the bucket (no object, no multipart upload)")
    assert get_original(svc, sha256(data)).status_code == 404
    # The whole body afterwards: stored, streamed in parts, served whole.
    full = upload(svc, data, name="big.bin")
    assert full.status_code == 201, full.text
    assert get_original(svc, sha256(data)).content == data
    assert [k for k in leftovers() if ".staging" in k] == []
