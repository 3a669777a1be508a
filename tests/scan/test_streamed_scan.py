"""Black-box: the scan that runs while the body arrives (SCAN_MODE async/required). The
upload's bytes are streamed to a real clamd as they are spooled; the verdict is recorded
as soon as clamd gives it after the upload commits, and the upload's `scan` job only waits
for it (no second scan). When clamd goes away during the upload the content is still
stored and the scan job scans it later, with its retries."""
from __future__ import annotations

import re
import time

import requests

from falconproc.store.base import is_content_hash
from tests.support.clamd import EICAR, EICAR_SIGNATURE, MARKER, MARKER_SIGNATURE, Clamd
from tests.support.content import sha256, unique_text
from tests.support.http import assert_error, cache_metadata, get_job, get_original, upload, wait_job
from tests.support.wait import wait_for


def _scans(svc) -> dict[tuple[str, str], float]:
    """falconproc_scans_total by (via, status)."""
    text = requests.get(f"{svc.url}/metrics", timeout=30).text
    found = {}
    for labels, value in re.findall(r'^falconproc_scans_total\{([^}]*)\} (\S+)$', text, re.M):
        pairs = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        found[(pairs["via"], pairs["status"])] = float(value)
    return found


def _scan_job(svc, resp: requests.Response) -> dict:
    """The upload's `scan` job, finished."""
    [job] = [job for job in resp.json()["jobs"] if job["type"] == "scan"]
    return wait_job(svc, job["id"])


def _verdict(svc, h: str, timeout: float = 10.0) -> dict:
    return wait_for(lambda: (s := cache_metadata(svc, h)["scan"])["status"] != "pending" and s, timeout,
                    message=f"the verdict on {h}")


def test_the_streamed_verdict_is_recorded_and_the_job_does_not_scan_again(fresh_service, clamd):
    svc = fresh_service(SCAN_MODE="async", CLAMD_SOCKET=str(clamd.socket))

    resp = upload(svc, EICAR, name="eicar.txt")
    assert resp.status_code == 201, resp.text
    h = resp.json()["contentHash"]
    scan = _verdict(svc, h)
    assert (scan["status"], scan["signature"]) == ("infected", EICAR_SIGNATURE)
    assert scan["engine"].startswith("ClamAV") and scan["scannedAt"]
    assert_error(get_original(svc, h), 403, "quarantined")
    job = _scan_job(svc, resp)  # waited for the upload's verdict instead of scanning again
    assert job["status"] == "done" and job["result"]["scannedBy"] == "upload", job
    assert job["result"]["status"] == "infected"

    # ~850 kB in small pieces (chunked), the marker in the middle: found all the same.
    pieces = [unique_text(3000) for _ in range(4)]
    body = pieces[0] + MARKER + pieces[1] + pieces[2] + pieces[3]
    resp = upload(svc, (body[i:i + 65536] for i in range(0, len(body), 65536)), name="marked.txt")
    assert resp.status_code == 201, resp.text
    marked = resp.json()["contentHash"]
    assert marked == sha256(body)
    assert _verdict(svc, marked)["signature"] == MARKER_SIGNATURE
    assert _scan_job(svc, resp)["result"]["scannedBy"] == "upload"

    clean = upload(svc, unique_text(20_000), name="clean.txt")  # ~1.4 MB
    answered = time.monotonic()
    assert clean.status_code == 201
    # Its job does not start beside clamd's scan: it waits STREAMED_JOB_DELAY (2 s from
    # its enqueue, just before the answer) in the queue, by when the verdict is recorded,
    # then takes it. (Without the delay the supervisor claims it within ~0.2 s.)
    [job] = [job for job in clean.json()["jobs"] if job["type"] == "scan"]
    while time.monotonic() < answered + 1.5:
        assert get_job(svc, job["id"]).json()["status"] == "queued"
        time.sleep(0.05)
    assert _verdict(svc, clean.json()["contentHash"])["status"] == "clean"
    assert _scan_job(svc, clean)["result"]["scannedBy"] == "upload"
    assert get_original(svc, clean.json()["contentHash"]).status_code == 200

    # The same bytes again: not new, no job, the recorded result stands.
    again = upload(svc, EICAR, name="again.txt", user="someone-else")
    assert again.status_code == 200 and again.json()["isNew"] is False and again.json()["jobs"] == []
    assert cache_metadata(svc, h)["scan"]["scannedAt"] == scan["scannedAt"]

    counts = _scans(svc)
    assert counts.get(("upload", "infected")) == 2.0 and counts.get(("upload", "clean")) == 1.0
    assert not any(via == "job" for via, _ in counts)  # clamd saw each upload once


def test_required_refuses_until_the_streamed_verdict_and_keeps_the_stream_limit(fresh_service, clamd):
    svc = fresh_service(SCAN_MODE="required", CLAMD_SOCKET=str(clamd.socket))
    ok = upload(svc, unique_text(30), name="notes.txt")
    assert ok.status_code == 201
    assert _verdict(svc, ok.json()["contentHash"])["status"] == "clean"
    assert get_original(svc, ok.json()["contentHash"]).status_code == 200

    resp = upload(svc, b"z" * (3 * 1024 * 1024), name="big.txt")  # clamd's limit is 2 MiB here
    assert resp.status_code == 201, resp.text
    h = resp.json()["contentHash"]
    scan = _verdict(svc, h)
    assert scan["status"] == "error" and "size limit" in scan["reason"]
    assert_error(get_original(svc, h), 422, "scan_failed")
    assert _scan_job(svc, resp)["result"]["scannedBy"] == "upload"


def test_clamd_down_mid_upload_leaves_the_scan_to_the_job(fresh_service, tmp_path):
    server = Clamd(tmp_path / "clamd", stream_max="64M").start()
    svc = fresh_service(SCAN_MODE="async", CLAMD_SOCKET=str(server.socket), JOB_BACKOFF_BASE="0.2",
                        JOB_BACKOFF_CAP="0.5", SCAN_MAX_ATTEMPTS="100")
    try:
        data = unique_text(85_000)  # ~6 MB

        def body():
            half = len(data) // 2
            for i in range(0, half, 65536):
                yield data[i:min(i + 65536, half)]
            server.stop()  # clamd goes away (and is gone) with half of the body sent to it
            for i in range(half, len(data), 65536):
                yield data[i:i + 65536]

        resp = upload(svc, body(), name="notes.txt")
        assert resp.status_code == 201, resp.text  # stored all the same
        h = resp.json()["contentHash"]
        assert is_content_hash(h) and h == sha256(data)
        meta = wait_for(lambda: (m := cache_metadata(svc, h))["scan"].get("lastError") and m, 30,
                        message="the failed streamed scan recorded")
        assert meta["scan"]["status"] == "pending"

        server.start()  # the scan job, retrying with backoff, gets through now
        job = _scan_job(svc, resp)
        assert job["status"] == "done" and job["result"]["scannedBy"] == "job", job
        assert cache_metadata(svc, h)["scan"]["status"] == "clean"
        counts = _scans(svc)
        assert counts.get(("job", "clean")) == 1.0 and not any(via == "upload" for via, _ in counts)
    finally:
        server.stop()


# -- the scan job of a streamed upload, in process (a real clamd, no service) -----------


def _stored(tmp_path, clamd_socket, **changes):
    """Components with SCAN_MODE=async and one text file stored (no scan recorded yet)."""
    from falconproc.config import Settings
    from falconproc.wiring import Components
    from tests.support.store import metadata_for, record, write_all

    settings = Settings(file_storage_path=tmp_path / "files", cache_path=tmp_path / "cache",
                        queue_path=tmp_path / "queue", scan_mode="async", clamd_socket=clamd_socket)
    components = Components(settings.replace(**changes))
    components.load_job_types()
    data, rec = unique_text(50), record()
    pending = components.store.begin_upload()
    write_all(pending.fileno(), data)
    components.store.commit(pending, sha256(data), metadata_for(data, rec), rec)
    return components, sha256(data)


def _run_scan_job(components, content_hash: str) -> dict:
    from falconproc.jobs import registry
    from falconproc.queue import Job

    job = Job(id="t", type="scan", content_hash=content_hash, payload={"streamed": True})
    return registry.get("scan").handler(job, components.job_context())


def test_a_streamed_upload_whose_verdict_never_comes_is_scanned_by_its_job(tmp_path, clamd):
    # The uploading process died before clamd answered: nothing recorded. The job waits
    # half of its time budget (JOB_TIMEOUTS scan=1 s here), then scans itself.
    components, h = _stored(tmp_path, clamd.socket, job_timeouts={"scan": 1.0})
    result = _run_scan_job(components, h)
    assert result == {"status": "clean", "signature": None, "scannedBy": "job"}
    assert components.scan.state(h)["status"] == "clean"


def test_the_job_of_a_streamed_upload_takes_the_recorded_verdict_without_clamd(tmp_path):
    # clamd is nowhere (a socket path nothing listens on): the job must not need it.
    components, h = _stored(tmp_path, tmp_path / "no-clamd.sock")
    components.scan.record(h, {"status": "clean", "signature": None, "engine": "ClamAV test",
                               "scannedAt": "2026-12-07T00:00:00Z"})
    assert _run_scan_job(components, h) == {"status": "clean", "signature": None, "scannedBy": "upload"}
