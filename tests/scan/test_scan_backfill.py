"""Black-box: content stored while SCAN_MODE was off gets scanned once scanning is on.

The service is started with scanning off, files are stored (an EICAR file among them),
then it is restarted on the same store with SCAN_MODE=async and a real clamd: the job
supervisor's backfill queues their scans and every entry gets a verdict, the EICAR one
quarantined. Under SCAN_MODE=required, a request for such content answers 409
scan_pending and queues its scan at once (here with no sweep at all)."""
from __future__ import annotations

import uuid

import requests

from tests.support.clamd import EICAR, EICAR_SIGNATURE
from tests.support.content import sha256, unique_png, unique_text
from tests.support.http import assert_error, cache_metadata, get_original, upload
from tests.support.wait import wait_for


def _store(svc, data: bytes, name: str) -> str:
    resp = upload(svc, data, name=name)
    assert resp.status_code == 201, resp.text
    assert resp.json()["contentHash"] == sha256(data)
    assert [j["type"] for j in resp.json()["jobs"]].count("scan") == 0  # scanning is off
    return resp.json()["contentHash"]


def _store_unscanned(svc) -> tuple[list[str], str]:
    """Clean files and an EICAR file, stored with scanning off and their own jobs done."""
    clean = [_store(svc, unique_png(), f"photo{i}.png") for i in range(3)]
    clean += [_store(svc, unique_text(), f"notes{i}.txt") for i in range(3)]
    infected = _store(svc, EICAR, "eicar.txt")
    # Served as anything else while scanning is off (its text job makes text.json).
    wait_for(lambda: requests.get(f"{svc.url}/cache/{infected}/text", timeout=30).status_code == 200, 60,
             message="the EICAR file's text, made before scanning was on")
    for h in (*clean, infected):
        assert "scan" not in cache_metadata(svc, h)
    return clean, infected


def _verdict(svc, h: str) -> dict | None:
    scan = cache_metadata(svc, h)["scan"]
    return scan if scan["status"] != "pending" else None


def _restart(svc, **env: str) -> None:
    svc.stop()
    svc.env.update(env)
    svc.start()


def _assert_backfilled(svc, clean: list[str], infected: str) -> None:
    for h in clean:
        scan = wait_for(lambda h=h: _verdict(svc, h), 90, message=f"the backfilled scan of {h}")
        assert scan["status"] == "clean" and scan["engine"].startswith("ClamAV"), scan
        assert get_original(svc, h).status_code == 200
    scan = wait_for(lambda: _verdict(svc, infected), 90, message="the backfilled scan of the EICAR file")
    assert (scan["status"], scan["signature"]) == ("infected", EICAR_SIGNATURE)
    for path in ("original", "text"):
        body = assert_error(requests.get(f"{svc.url}/cache/{infected}/{path}", timeout=30), 403, "quarantined")
        assert body["signature"] == EICAR_SIGNATURE
    assert cache_metadata(svc, infected)["mimeType"] == "text/plain"


def test_content_stored_with_scanning_off_is_scanned_after_a_restart(fresh_service, clamd):
    svc = fresh_service(SCAN_MODE="off", SCAN_BACKFILL_BATCH="2")  # several batches for 7 entries
    clean, infected = _store_unscanned(svc)
    _restart(svc, SCAN_MODE="async", CLAMD_SOCKET=str(clamd.socket))
    assert cache_metadata(svc, clean[0])["scan"]["status"] in ("pending", "clean")  # served meanwhile
    _assert_backfilled(svc, clean, infected)
    # The text the EICAR file had before its verdict is gone from the cache.
    leftovers = [p.name for p in (svc.base / "cache").rglob("*") if infected in str(p) and p.is_file()
                 and p.name != "metadata.json" and not p.name.startswith(".")]
    assert leftovers == []
    # A new upload is scanned by its own job as ever.
    fresh = upload(svc, unique_text(), name="later.txt").json()["contentHash"]
    assert wait_for(lambda: _verdict(svc, fresh), 60, message="a new upload's scan")["status"] == "clean"


def test_backfill_on_s3(fresh_service, clamd, s3_server, s3_bucket):
    env = s3_server.service_env(s3_bucket, prefix=f"bf-{uuid.uuid4().hex[:10]}")
    svc = fresh_service(**env, SCAN_MODE="off")
    clean, infected = _store_unscanned(svc)
    _restart(svc, SCAN_MODE="async", CLAMD_SOCKET=str(clamd.socket))
    _assert_backfilled(svc, clean, infected)


def test_required_queues_the_scan_of_unscanned_content_when_asked(fresh_service, clamd):
    svc = fresh_service(SCAN_MODE="off")
    old = _store(svc, unique_text(), "old.txt")
    # No sweep: only the request can get this content scanned.
    _restart(svc, SCAN_MODE="required", CLAMD_SOCKET=str(clamd.socket), SCAN_BACKFILL_BATCH="0")
    resp = get_original(svc, old)
    assert_error(resp, 409, "scan_pending")
    assert int(resp.headers["Retry-After"]) >= 1
    scan = wait_for(lambda: _verdict(svc, old), 60, message="the scan the request queued")
    assert scan["status"] == "clean"
    assert get_original(svc, old).status_code == 200
    # Nothing stored under a hash: 404, and no scan queued for it.
    missing = "0" * 64
    assert_error(get_original(svc, missing), 404, "not_found")
