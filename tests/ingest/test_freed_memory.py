"""PAGE_CACHE_RELEASE_BYTES and MALLOC_KEEP_BYTES: what an upload leaves in memory.

Black-box: a stored original over PAGE_CACHE_RELEASE_BYTES has left the page cache once
the upload answered (its pages are what the next upload's writes get). MALLOC_KEEP_BYTES
is glibc tuning (mallopt in the master, inherited by the workers): its speed-up (0.24 ->
0.14 s per 100 MB upload) is shown by benchmarks/bench_ingest.py side by side, not here;
the worker's minor page faults per upload vary too much from upload to upload with glibc's
own adaptive thresholds to tell the two apart in a test. Here: glibc takes the call and
the setting is bounded."""
from __future__ import annotations

import os
import subprocess
import sys

from tests.support.http import upload
from tests.support.store import cached_bytes, entry_dir

SIZE = 40 * 1024 * 1024


def test_a_large_stored_original_has_left_the_page_cache(fresh_service):
    svc = fresh_service(WEB_WORKERS="1", ALLOWED_TYPES="application/octet-stream", UPLOAD_RATE_LIMIT="off")
    large = upload(svc, os.urandom(SIZE), name="large.bin")
    small = upload(svc, os.urandom(1024 * 1024), name="small.bin")
    assert large.status_code == small.status_code == 201, (large.text, small.text)
    # Over the 32 MiB default: dropped after the fsync; under it: still cached (just written).
    original = entry_dir(svc, large.json()["contentHash"]) / "original"
    assert cached_bytes(original) < SIZE // 8, cached_bytes(original)
    kept = entry_dir(svc, small.json()["contentHash"]) / "original"
    assert cached_bytes(kept) >= 1024 * 1024 - 4096, cached_bytes(kept)


def test_glibc_takes_the_setting():
    code = "from falconproc.osutil import keep_freed_memory as k; print(k(4 * 1024 * 1024), k(32 * 1024 * 1024))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "True"]


def test_the_setting_is_bounded():
    from falconproc.config import Settings, SettingsError

    assert Settings.from_env({"MALLOC_KEEP_BYTES": "0"}).malloc_keep_bytes == 0
    assert Settings.from_env({}).malloc_keep_bytes == 4 * 1024 * 1024
    try:
        Settings.from_env({"MALLOC_KEEP_BYTES": str(64 * 1024 * 1024)})
    except SettingsError:
        pass
    else:
        raise AssertionError("MALLOC_KEEP_BYTES above 32 MiB was accepted")
