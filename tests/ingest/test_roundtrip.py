"""Upload -> store -> serve round trips, dedup, chunked transfer."""
from __future__ import annotations

import hashlib
import os
import random
from datetime import datetime

import pytest
import requests
from PIL import Image

from tests.support.content import DOCX_TYPE, sha256, unique_png, unique_text
from tests.support.corpus import CORPUS_FILES
from tests.support.http import get_original, upload
from tests.support.store import METADATA_KEYS, disk_metadata, entry_dir, stored_entries, temp_entries

EXPECTED_TYPES = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".webp": "image/webp",
    ".pdf": "application/pdf",
    ".docx": DOCX_TYPE,
    ".txt": "text/plain",
}


def test_corpus_is_present():
    suffixes = {p.suffix for p in CORPUS_FILES}
    assert {".jpg", ".png", ".webp", ".pdf", ".docx", ".txt"} <= suffixes
    assert len(CORPUS_FILES) >= 15


def _parse_time(value: str) -> datetime:
    assert value.endswith("Z"), value
    return datetime.fromisoformat(value[:-1] + "+00:00")


@pytest.mark.parametrize("path", CORPUS_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_corpus_round_trip(module_service, path):
    svc = module_service
    data = path.read_bytes()
    digest = sha256(data)
    expected_type = EXPECTED_TYPES[path.suffix.lower()]

    resp = upload(svc, data, name=path.name, drive="drive-rt", user="user-rt")
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert body["contentHash"] == digest
    assert body["size"] == len(data)
    assert body["mimeType"] == expected_type
    assert body["isNew"] is True
    assert body["originalName"] == path.name
    assert isinstance(body["jobs"], list)

    # The bytes come back unchanged.
    got = get_original(svc, digest)
    assert got.status_code == 200
    assert got.content == data
    assert got.headers["Content-Type"].split(";")[0] == expected_type
    assert int(got.headers["Content-Length"]) == len(data)

    # On disk: exactly the original and its metadata.json.
    entry = entry_dir(svc, digest)
    assert sorted(p.name for p in entry.iterdir()) == ["metadata.json", "original"]
    assert (entry / "original").read_bytes() == data
    meta = disk_metadata(svc, digest)
    assert METADATA_KEYS <= set(meta), meta
    assert meta["contentHash"] == digest
    assert meta["originalName"] == path.name
    assert meta["size"] == len(data)
    assert meta["mimeType"] == expected_type
    assert meta["uploadedBy"] == "user-rt"
    assert meta["driveId"] == "drive-rt"
    _parse_time(meta["uploadedAt"])
    assert len(meta["uploads"]) == 1
    record = meta["uploads"][0]
    assert record["driveId"] == "drive-rt" and record["userId"] == "user-rt"
    assert record["originalName"] == path.name
    _parse_time(record["uploadedAt"])
    assert body["metadata"] == meta

    # GET /metadata answers the stored metadata (plus processing state, later).
    served = requests.get(f"{svc.url}/cache/{digest}/metadata", timeout=30)
    assert served.status_code == 200
    served_meta = served.json()
    for key in METADATA_KEYS:
        assert served_meta[key] == meta[key], key

    if expected_type.startswith("image/"):
        with Image.open(path) as img:
            width, height = img.size
        assert meta["image"]["width"] == width
        assert meta["image"]["height"] == height
        assert served_meta["image"]["width"] == width
    else:
        assert "image" not in meta
    assert temp_entries(svc.files) == []


def test_dedup_appends_each_uploader_once(service):
    data = unique_text()
    digest = sha256(data)

    first = upload(service, data, name="first.txt", drive="drive-a", user="user-a")
    assert first.status_code == 201, first.text
    assert first.json()["isNew"] is True
    first_meta = first.json()["metadata"]

    again = upload(service, data, name="again.txt", drive="drive-a", user="user-a")
    assert again.status_code == 200, again.text
    assert again.json()["isNew"] is False
    assert again.json()["contentHash"] == digest
    assert len(disk_metadata(service, digest)["uploads"]) == 1

    other = upload(service, data, name="other.txt", drive="drive-b", user="user-b")
    assert other.status_code == 200, other.text
    body = other.json()
    assert body["isNew"] is False
    assert body["size"] == len(data)
    assert body["mimeType"] == "text/plain"

    repeat = upload(service, data, name="other-again.txt", drive="drive-b", user="user-b")
    assert repeat.status_code == 200

    # Same drive, other user: a new uploader too.
    third = upload(service, data, name="third.txt", drive="drive-a", user="user-c")
    assert third.status_code == 200

    meta = disk_metadata(service, digest)
    pairs = [(u["driveId"], u["userId"]) for u in meta["uploads"]]
    assert pairs == [("drive-a", "user-a"), ("drive-b", "user-b"), ("drive-a", "user-c")]
    assert meta["uploads"][1]["originalName"] == "other.txt"
    # The first upload's identity stays the entry's.
    assert meta["originalName"] == "first.txt"
    assert meta["uploadedBy"] == "user-a" and meta["driveId"] == "drive-a"
    assert meta["uploadedAt"] == first_meta["uploadedAt"]
    assert third.json()["metadata"]["uploads"] == meta["uploads"]

    assert stored_entries(service.files).count(digest) == 1
    assert sorted(p.name for p in entry_dir(service, digest).iterdir()) == ["metadata.json", "original"]
    assert get_original(service, digest).content == data
    assert temp_entries(service.files) == []


def _chunks(data: bytes, rng: random.Random):
    pos = 0
    sizes = [1, 2, 3, 7, 11, 100, 4095, 4096, 4097, 65536, 70000]
    while pos < len(data):
        size = rng.choice(sizes)
        yield data[pos:pos + size]
        pos += size


def test_chunked_upload_round_trip_text(service):
    data = unique_text(5000)  # ~270 KB, several read blocks
    resp = upload(service, _chunks(data, random.Random(1)), name="chunked.txt")
    assert resp.status_code == 201, resp.text
    assert resp.request.headers.get("Transfer-Encoding") == "chunked"
    assert "Content-Length" not in resp.request.headers
    body = resp.json()
    assert body["contentHash"] == hashlib.sha256(data).hexdigest()
    assert body["size"] == len(data)
    assert body["mimeType"] == "text/plain"
    assert get_original(service, body["contentHash"]).content == data
    assert temp_entries(service.files) == []


def test_chunked_upload_round_trip_image(service):
    # A real JPEG with unique trailing bytes after EOI, fed in awkward chunk sizes so that
    # the streaming header parser sees markers split across chunks.
    jpeg = next(p for p in CORPUS_FILES if p.name == "meadow-1280x1024.jpg").read_bytes()
    data = jpeg + os.urandom(32)
    resp = upload(service, _chunks(data, random.Random(2)), name="chunked.jpg")
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert body["contentHash"] == sha256(data)
    assert body["size"] == len(data)
    assert body["mimeType"] == "image/jpeg"
    assert body["metadata"]["image"]["width"] == 1280
    assert body["metadata"]["image"]["height"] == 1024

    png = unique_png(301, 157)
    resp = upload(service, (png[i:i + 5] for i in range(0, len(png), 5)), name="chunked.png")
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert body["contentHash"] == sha256(png)
    assert body["mimeType"] == "image/png"
    assert (body["metadata"]["image"]["width"], body["metadata"]["image"]["height"]) == (301, 157)
    assert get_original(service, body["contentHash"]).content == png
