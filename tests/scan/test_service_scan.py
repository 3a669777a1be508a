"""Black-box: SCAN_MODE async and required through the real service and a real clamd
(tests/support/clamd.py): verdicts in metadata.scan, quarantine (403 on every route but
metadata, derived files gone), 409 scan_pending, 422 scan_failed, clamd down and back."""
from __future__ import annotations

import io
import zipfile

import requests
from PIL import Image

from falconproc.store.base import is_content_hash
from tests.support.clamd import EICAR, EICAR_SIGNATURE, MARKER, MARKER_SIGNATURE, Clamd
from tests.support.content import sha256, unique_png, unique_text
from tests.support.http import assert_error, cache_metadata, get_original, health, upload
from tests.support.wait import wait_for
from tests.text._docs import simple_docx


def _upload(svc, data: bytes, name: str) -> str:
    resp = upload(svc, data, name=name)
    assert resp.status_code in (200, 201), resp.text
    assert is_content_hash(resp.json()["contentHash"]) and resp.json()["contentHash"] == sha256(data)
    return resp.json()["contentHash"]


def _scanned(svc, h: str, timeout: float = 30.0) -> dict:
    return wait_for(lambda: (s := cache_metadata(svc, h)["scan"])["status"] != "pending" and s, timeout,
                    message=f"the scan of {h}")


def _marked_png() -> bytes:
    """A valid PNG that carries the test signature in a text chunk."""
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("Comment", MARKER.decode())
    buf = io.BytesIO()
    Image.new("RGB", (300, 200), (10, 200, 30)).save(buf, "PNG", pnginfo=info)
    return buf.getvalue()


def _docx_with_eicar() -> bytes:
    src = zipfile.ZipFile(io.BytesIO(simple_docx("an innocent looking letter")))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for info in src.infolist():
            zf.writestr(info, src.read(info))
        zf.writestr("word/embeddings/oleObject1.bin", EICAR)
    return buf.getvalue()


def test_async_clean_infected_and_quarantine(fresh_service, clamd):
    svc = fresh_service(SCAN_MODE="async", CLAMD_SOCKET=str(clamd.socket))
    # clean: served as ever, the verdict in metadata
    clean = _upload(svc, unique_png(), "clean.png")
    scan = _scanned(svc, clean)
    assert scan["status"] == "clean" and scan["engine"].startswith("ClamAV") and scan["scannedAt"]
    assert requests.get(f"{svc.url}/cache/{clean}/thumbnail", timeout=30).status_code == 200
    assert get_original(svc, clean).status_code == 200

    # infected image: the thumbnail its own job made is removed, every route but metadata 403
    bad = _upload(svc, _marked_png(), "bad.png")
    scan = _scanned(svc, bad)
    assert (scan["status"], scan["signature"]) == ("infected", MARKER_SIGNATURE)
    for path in ("original", "thumbnail", "preview", "text"):
        body = assert_error(requests.get(f"{svc.url}/cache/{bad}/{path}", timeout=30), 403, "quarantined")
        assert body["signature"] == MARKER_SIGNATURE
    resp = requests.post(f"{svc.url}/optimize-for-ai", json={"contentHash": bad}, timeout=30)
    assert_error(resp, 403, "quarantined")
    cache_dir = svc.base / "cache"
    leftovers = [p.name for p in cache_dir.rglob("*") if bad in str(p) and p.is_file()
                 and p.name != "metadata.json" and not p.name.startswith(".")]
    assert leftovers == []
    assert cache_metadata(svc, bad)["mimeType"] == "image/png"  # metadata stays readable

    # EICAR as plain text, and inside a DOCX (clamd scans the archive's members)
    for data, name in ((EICAR, "eicar.txt"), (_docx_with_eicar(), "letter.docx")):
        h = _upload(svc, data, name)
        assert (_scanned(svc, h)["status"], _scanned(svc, h)["signature"]) == ("infected", EICAR_SIGNATURE)
        assert_error(get_original(svc, h), 403, "quarantined")


def test_required_waits_for_clamd_and_refuses_what_it_cannot_scan(fresh_service, tmp_path):
    server = Clamd(tmp_path / "clamd")  # not started yet: clamd is down when the upload comes
    svc = fresh_service(SCAN_MODE="required", CLAMD_SOCKET=str(server.socket), JOB_BACKOFF_BASE="0.2",
                        JOB_BACKOFF_CAP="0.5", SCAN_MAX_ATTEMPTS="100")
    try:
        report = health(svc)
        assert report["status"] == "degraded" and "scanner_unavailable" in report["reasons"]
        h = _upload(svc, unique_text(), "notes.txt")
        resp = get_original(svc, h)
        assert_error(resp, 409, "scan_pending")
        assert int(resp.headers["Retry-After"]) >= 1
        assert_error(requests.get(f"{svc.url}/cache/{h}/text", timeout=30), 409, "scan_pending")
        meta = wait_for(lambda: (m := cache_metadata(svc, h))["scan"].get("lastError") and m, 30,
                        message="a failed scan attempt")
        assert meta["scan"]["status"] == "pending" and "cannot be reached" in meta["scan"]["lastError"]

        server.start()  # clamd comes back: the retried scan gets through
        assert _scanned(svc, h)["status"] == "clean"
        assert get_original(svc, h).status_code == 200
        assert "scanner_unavailable" not in health(svc)["reasons"]

        # over clamd's stream limit (2 MiB here): an error with the reason, never clean
        big = _upload(svc, b"y" * (3 * 1024 * 1024), "big.txt")
        scan = _scanned(svc, big)
        assert scan["status"] == "error" and "size limit" in scan["reason"]
        assert "size limit" in assert_error(get_original(svc, big), 422, "scan_failed")["message"]
    finally:
        server.stop()


def test_quarantine_on_s3_is_seen_by_every_instance(fresh_service, clamd, s3_server, s3_bucket):
    """Two instances sharing a bucket (a real Ceph RGW): the one that scans quarantines,
    the derived objects leave the bucket, and both answer 403 for everything but metadata."""
    import uuid

    from falconproc.config import Settings
    from falconproc.wiring import Components

    env = {**s3_server.service_env(s3_bucket, prefix=f"q-{uuid.uuid4().hex[:10]}"), "SCAN_MODE": "async",
           "CLAMD_SOCKET": str(clamd.socket)}
    a = fresh_service(**env, INSTANCE_ID="a")
    b = fresh_service(**env, INSTANCE_ID="b", RUN_SUPERVISOR="0")  # scans nothing itself
    bad = _upload(a, _marked_png(), "bad.png")
    # b makes (and keeps a local copy of) a preset before the verdict, if it is quick enough
    before = requests.get(f"{b.url}/cache/{bad}/preview", timeout=60)
    # 503: the render waited too long on a busy machine; never a 500
    assert before.status_code in (200, 403, 503), before.text[:200]
    assert _scanned(b, bad, timeout=90)["status"] == "infected"
    for svc in (a, b):
        for path in ("original", "thumbnail", "preview"):
            body = assert_error(requests.get(f"{svc.url}/cache/{bad}/{path}", timeout=30), 403, "quarantined")
            assert body["signature"] == MARKER_SIGNATURE
        assert cache_metadata(svc, bad)["scan"]["status"] == "infected"
    bucket = Components(Settings.from_env(a.env)).cache.s3

    def derived() -> list[str]:
        return sorted(key.rsplit("/", 1)[-1] for key in bucket.list_keys(bucket.key(bad, "derived", "")))

    # A render or text job that raced the quarantine removes its own file once it has seen
    # the marker (it writes first, then checks): wait for that, then nothing else is left.
    wait_for(lambda: derived() == [".quarantined", "metadata.json"], timeout=30,
             message=f"only the marker and the state left (have {derived()})")
