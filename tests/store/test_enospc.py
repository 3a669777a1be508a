"""A nearly full filesystem (a small tmpfs): 507, nothing left behind, healthy, works once freed."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import requests

from tests.support.content import chunks, sha256, text_blob
from tests.support.http import upload
from tests.support.store import stored_entries, temp_entries

pytestmark = pytest.mark.root  # blackbox: from the fixtures (tests/conftest.py)

TMPFS_SIZE = 8 * 1024 * 1024
LEFT_FREE = 1024 * 1024  # what the ballast leaves
UPLOAD_SIZE = 3 * 1024 * 1024  # bigger than what is left


@pytest.fixture
def small_tmpfs(tmp_path) -> Path:
    mountpoint = tmp_path / "tmpfs"
    mountpoint.mkdir()
    try:
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE},mode=0755", "tmpfs",
                               str(mountpoint)], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"cannot mount a tmpfs ({exc}); ENOSPC is covered by tests/store/test_fault_injection.py")
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs (needs root / CAP_SYS_ADMIN): {proc.stderr.strip()}; "
                    "ENOSPC is covered by fault injection in tests/store/test_fault_injection.py")
    try:
        yield mountpoint
    finally:
        if subprocess.run(["umount", str(mountpoint)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mountpoint)], capture_output=True)


def _free(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def test_upload_to_a_full_disk_gets_507_leaves_nothing_and_succeeds_after_freeing(small_tmpfs, fresh_service):
    # small_tmpfs is requested first, so it is unmounted after fresh_service has stopped the service.
    files = small_tmpfs / "files"
    svc = fresh_service(FILE_STORAGE_PATH=str(files), STORAGE_RESERVE_BYTES="0", WEB_WORKERS="1",
                        READ_CHUNK_BYTES="65536")
    assert os.path.ismount(small_tmpfs)

    ballast = small_tmpfs / "ballast"
    with open(ballast, "wb") as fh:
        fh.write(b"\0" * (_free(small_tmpfs) - LEFT_FREE))
    assert _free(small_tmpfs) < UPLOAD_SIZE
    data = text_blob("does-not-fit", UPLOAD_SIZE)
    digest = sha256(data)

    # Streamed (no Content-Length): admission cannot know the size; the write hits ENOSPC.
    resp = upload(svc, iter(chunks(data, 256 * 1024)), headers={"x-content-sha256": digest})
    assert resp.status_code == 507, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    assert resp.json()["error"] == "insufficient_storage"
    assert stored_entries(files) == [] and temp_entries(files) == []
    assert _free(small_tmpfs) >= LEFT_FREE - 64 * 1024, "the partial bytes must have been deleted"

    # With Content-Length: refused at admission, before reading.
    resp = upload(svc, data, headers={"x-content-sha256": digest})
    assert resp.status_code == 507, resp.text
    assert resp.json()["error"] == "insufficient_storage"
    assert stored_entries(files) == [] and temp_entries(files) == []

    # Still healthy, and small uploads still fit.
    health = requests.get(svc.url + "/health", timeout=5)
    assert health.status_code == 200
    assert health.json()["storage"]["availableSpace"] < UPLOAD_SIZE
    small = text_blob("fits", 10_000)
    assert upload(svc, small).status_code == 201

    # Free the space: the same upload goes through.
    ballast.unlink()
    resp = upload(svc, iter(chunks(data, 256 * 1024)), headers={"x-content-sha256": digest})
    assert resp.status_code == 201, resp.text
    assert resp.json()["contentHash"] == digest and resp.json()["isNew"] is True
    got = requests.get(f"{svc.url}/cache/{digest}/original", timeout=10)
    assert got.status_code == 200 and got.content == data
    assert temp_entries(files) == []
    assert sorted(stored_entries(files)) == sorted([digest, sha256(small)])


def test_a_chunked_upload_that_would_eat_into_the_reserve_gets_507_midway(small_tmpfs, fresh_service):
    # Admission cannot see a chunked body's size; the reserve is checked again while it streams.
    files = small_tmpfs / "files"
    reserve = 4 * 1024 * 1024
    svc = fresh_service(FILE_STORAGE_PATH=str(files), STORAGE_RESERVE_BYTES=str(reserve), WEB_WORKERS="1",
                        READ_CHUNK_BYTES="65536")
    free_before = _free(small_tmpfs)
    assert free_before > reserve + 3 * 1024 * 1024
    data = text_blob("eats-the-reserve", free_before - reserve + 1024 * 1024)
    resp = upload(svc, iter(chunks(data, 256 * 1024)))
    assert resp.status_code == 507, resp.text
    assert resp.json()["error"] == "insufficient_storage"
    assert stored_entries(files) == [] and temp_entries(files) == []
    assert _free(small_tmpfs) >= free_before - 64 * 1024, "the partial bytes must have been deleted"
    assert _free(small_tmpfs) >= reserve

    fits = text_blob("leaves-the-reserve", 1024 * 1024)
    resp = upload(svc, iter(chunks(fits, 256 * 1024)))
    assert resp.status_code == 201, resp.text
    assert stored_entries(files) == [sha256(fits)]
