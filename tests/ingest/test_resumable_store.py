"""Partial resumable uploads on disk, in process: expiry sweep, locking, metadata decoding."""
from __future__ import annotations

import io
import json
import os

import pytest

from falconproc.config import Settings
from falconproc.errors import UploadLocked, UploadNotFound, UploadOffsetMismatch
from falconproc.ingest.resumable import decode_metadata
from falconproc.wiring import Components


@pytest.fixture
def uploads(tmp_path):
    settings = Settings.from_env({
        "FILE_STORAGE_PATH": str(tmp_path / "files"), "CACHE_PATH": str(tmp_path / "cache"),
        "QUEUE_PATH": str(tmp_path / "queue"), "UPLOADS_PATH": str(tmp_path / "uploads"),
        "STORAGE_RESERVE_BYTES": "0", "UPLOADS_RESERVE_BYTES": "0", "FSYNC": "0", "UPLOAD_RATE_LIMIT": "off",
    })
    return Components(settings).resumable


def test_sweep_removes_expired_uploads_only(uploads):
    old = uploads.create(10, "old.txt", "d", "u", "")
    new = uploads.create(10, "new.txt", "d", "u", "")
    info = uploads.root / f"{old.id}.json"
    data = json.loads(info.read_text())
    data["expires"] = 0
    info.write_text(json.dumps(data))
    assert uploads.sweep(force=True) == 1
    assert sorted(p.name for p in uploads.root.iterdir()) == sorted([f"{new.id}.json", f"{new.id}.part"])
    with pytest.raises(UploadNotFound):
        uploads.get(old.id)


def test_one_writer_at_a_time_and_offsets_are_checked(uploads):
    up = uploads.create(8, "a.txt", "d", "u", "")
    fd = uploads._locked(uploads.root / f"{up.id}.part")  # another writer, e.g. on another instance
    try:
        with pytest.raises(UploadLocked):
            uploads.append(up.id, 0, io.BytesIO(b"abcd"), 4)
    finally:
        os.close(fd)
    assert uploads.append(up.id, 0, io.BytesIO(b"abcd"), 4).offset == 4
    with pytest.raises(UploadOffsetMismatch) as err:
        uploads.append(up.id, 0, io.BytesIO(b"abcd"), 4)
    assert err.value.offset == 4
    done = uploads.append(up.id, 4, io.BytesIO(b"efg\n"), 4)
    assert done.state == "done" and done.result["size"] == 8
    assert not (uploads.root / f"{up.id}.part").exists()


def test_ids_that_are_not_ours_are_not_found(uploads):
    for bad in ("../x", "a" * 31, "A" * 32, "g" * 32, ""):
        with pytest.raises(UploadNotFound):
            uploads.get(bad)


def test_metadata_decoding():
    assert decode_metadata("filename ZsOpZS50eHQ=,driveId ZDE=,flag") == {"filename": "fée.txt", "driveId": "d1",
                                                                          "flag": ""}
    with pytest.raises(ValueError, match="base64"):
        decode_metadata("filename !!!")
