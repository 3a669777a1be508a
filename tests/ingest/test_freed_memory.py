"""MALLOC_KEEP_BYTES and PAGE_CACHE_RELEASE_BYTES (black-box): a web worker reading an upload allocates and frees a few
1 MiB blocks per MiB of body (gunicorn's body reader). With glibc's defaults these are
often fresh mappings the kernel faults in page by page (measured: 1.3-1.9 minor faults per
page of body in two runs of three, depending on glibc's adaptive threshold); with the
setting (the default, set in the master and inherited by the workers) the worker reuses
the memory it freed. Seen in the worker's minor page faults."""
from __future__ import annotations

import os

from tests.support.http import upload
from tests.support.store import cached_bytes, entry_dir

SIZE = 40 * 1024 * 1024
ROUNDS = 3
PAGE = 4096


def _minflt(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as fh:
        return int(fh.read().rsplit(")", 1)[1].split()[7])  # field 10, minflt


def test_a_worker_reuses_the_memory_of_an_uploads_blocks(fresh_service):
    svc = fresh_service(WEB_WORKERS="1", ALLOWED_TYPES="application/octet-stream", UPLOAD_RATE_LIMIT="off")
    assert upload(svc, os.urandom(SIZE), name="warm.bin").status_code == 201
    before = sum(_minflt(pid) for pid in svc.worker_pids())
    for i in range(ROUNDS):
        resp = upload(svc, os.urandom(SIZE), name=f"measured-{i}.bin")
        assert resp.status_code == 201, resp.text
    faults = sum(_minflt(pid) for pid in svc.worker_pids()) - before
    # Reused memory: well under one fault per 4 pages of body (0.07-0.18 measured).
    assert faults < ROUNDS * SIZE / PAGE / 4, faults
    # And the stored originals (over PAGE_CACHE_RELEASE_BYTES, 32 MiB) left the page cache
    # once durable: the next upload's writes took their pages.
    original = entry_dir(svc, resp.json()["contentHash"]) / "original"
    assert cached_bytes(original) < SIZE // 8, cached_bytes(original)


def test_the_setting_is_bounded_by_what_glibc_accepts():
    from falconproc.config import Settings, SettingsError

    assert Settings.from_env({"MALLOC_KEEP_BYTES": "0"}).malloc_keep_bytes == 0
    try:
        Settings.from_env({"MALLOC_KEEP_BYTES": str(64 * 1024 * 1024)})
    except SettingsError:
        pass
    else:
        raise AssertionError("MALLOC_KEEP_BYTES above 32 MiB was accepted (glibc refuses it)")
