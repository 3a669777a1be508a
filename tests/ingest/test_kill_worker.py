"""SIGKILL of the web worker in the middle of a slow streamed upload."""
from __future__ import annotations

import os
import signal
import threading

import requests

from tests.support.content import chunks, sha256, text_blob
from tests.support.http import upload
from tests.support.service import wait_web_workers
from tests.support.store import stored_entries, temp_entries
from tests.support.wait import wait_for


def test_sigkill_worker_mid_upload_leaves_nothing_and_service_recovers(fresh_service):
    svc = fresh_service(WEB_WORKERS="1", WEB_THREADS="4", READ_CHUNK_BYTES="16384")
    (worker,) = wait_web_workers(svc, 1)

    data = text_blob("killed-mid-body", 256 * 1024)
    digest = sha256(data)
    parts = chunks(data, 64 * 1024)
    stall = threading.Event()

    def slow_body():
        yield from parts[:3]  # 192 KiB: well past the first read blocks
        stall.wait(30)  # ... then the client goes quiet mid-body
        yield from parts[3:]

    outcome: dict = {}

    def client():
        try:
            outcome["response"] = upload(svc, slow_body(), headers={"x-content-sha256": digest})
        except requests.RequestException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=client, daemon=True)
    thread.start()
    try:
        prefix = f"up-{worker}-"

        def partial_temp():
            for name in temp_entries(svc.files):
                original = svc.files / ".tmp" / name / "original"
                if name.startswith(prefix) and original.exists() and original.stat().st_size > 0:
                    return name
            return None

        temp_dir = wait_for(partial_temp, 10, message="the worker to spill the upload into .tmp")
        assert stored_entries(svc.files) == []

        os.kill(worker, signal.SIGKILL)
    finally:
        stall.set()
    thread.join(30)
    assert not thread.is_alive()
    assert "error" in outcome, f"the client must see an error, got {outcome.get('response')!r}"

    # gunicorn's child_exit hook (in the master) sweeps the dead worker's temp dir.
    wait_for(lambda: temp_dir not in temp_entries(svc.files), 5, message=f"{temp_dir} to be swept")
    assert temp_entries(svc.files) == []
    assert stored_entries(svc.files) == [], "nothing may appear under the hash"
    assert not (svc.files / digest).exists()

    # The master replaces the worker; the service keeps serving.
    wait_web_workers(svc, 1, exclude=(worker,))
    assert requests.get(svc.url + "/health", timeout=5).status_code == 200
    other = text_blob("after-the-kill", 50_000)
    resp = upload(svc, other)
    assert resp.status_code == 201, resp.text
    got = requests.get(f"{svc.url}/cache/{sha256(other)}/original", timeout=5)
    assert got.status_code == 200 and got.content == other
    # The interrupted content was never stored: uploading it completely now is new.
    resp = upload(svc, data, headers={"x-content-sha256": digest})
    assert resp.status_code == 201 and resp.json()["isNew"] is True
    assert sha256(requests.get(f"{svc.url}/cache/{digest}/original", timeout=5).content) == digest
    assert temp_entries(svc.files) == []
