"""Fault injection: failing fsync (EIO) and a full disk (ENOSPC), in-process."""
from __future__ import annotations

import errno
import os

import falcon.testing
import pytest

from falconproc.web.app import create_app
from falconproc.ingest.service import IngestService
from falconproc.store import local as local_mod
from falconproc.store.local import LocalContentStore
from falconproc.native import ingest as native_ingest
from falconproc.wiring import Components
from tests.support.content import sha256, text_blob
from tests.support.inprocess import unit_settings
from tests.support.store import metadata_for, record, stage, stored_entries, temp_entries


class FailingFsync:
    """os.fsync that fails with EIO on its ``fail_at``-th call and counts every call."""

    def __init__(self, fail_at: int | None):
        self.fail_at = fail_at
        self.calls = 0
        self.real = os.fsync

    def __call__(self, fd: int) -> None:
        self.calls += 1
        if self.calls == self.fail_at:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        self.real(fd)


def _install_fsync(monkeypatch, fake) -> None:
    # store.local and fsutil both use the os module's fsync: patch it where they look it up.
    monkeypatch.setattr(local_mod.os, "fsync", fake)
    import falconproc.fsutil as fsutil_mod
    assert fsutil_mod.os is local_mod.os
    monkeypatch.setattr(fsutil_mod.os, "fsync", fake)


def _fsyncs_per_commit(tmp_path, monkeypatch) -> int:
    store = LocalContentStore(tmp_path / "probe-store", fsync=True)
    counter = FailingFsync(None)
    _install_fsync(monkeypatch, counter)
    data = text_blob("count")
    rec = record()
    store.commit(stage(store, data), sha256(data), metadata_for(data, rec), rec)
    monkeypatch.undo()
    return counter.calls


def test_a_commit_fsyncs_file_metadata_entry_and_store_root(tmp_path, monkeypatch):
    assert _fsyncs_per_commit(tmp_path, monkeypatch) == 4


# 1: the original; 2: the metadata temp file; 3: the entry directory; 4: the store root after the rename.
@pytest.mark.parametrize("fail_at", [1, 2, 3, 4])
def test_failed_fsync_fails_the_commit_is_not_retried_and_leaves_nothing(tmp_path, monkeypatch, fail_at):
    store = LocalContentStore(tmp_path / "files", fsync=True)
    data = text_blob(f"eio-{fail_at}", 50_000)
    digest = sha256(data)
    rec = record()
    pending = stage(store, data)
    fake = FailingFsync(fail_at)
    _install_fsync(monkeypatch, fake)
    with pytest.raises(OSError) as info:
        store.commit(pending, digest, metadata_for(data, rec), rec)
    monkeypatch.undo()
    assert info.value.errno == errno.EIO
    assert fake.calls == fail_at, f"fsync was called again after it failed ({fake.calls} calls)"
    assert temp_entries(store.root) == [], "the temp files must be deleted"
    assert stored_entries(store.root) == [], (
        f"fsync #{fail_at} of 4 failed and the request fails, yet the entry is visible "
        "(a client retry would get 200 for bytes whose rename may not be durable)")
    assert not store.exists(digest)


def _app(tmp_path, **changes):
    settings = unit_settings(tmp_path, **changes)
    store = LocalContentStore(settings.file_storage_path, fsync=settings.fsync)
    ingest = IngestService(settings, store, probe_factory=native_ingest.pure.IngestProbe)
    components = Components(settings)
    components.store, components.ingest = store, ingest
    return falcon.testing.TestClient(create_app(components)), store


def _post(client, data: bytes, **headers):
    all_headers = {"x-filename": "notes.txt", "x-drive-id": "drive-1", "x-user-id": "user-1"}
    all_headers.update(headers)
    return client.simulate_post("/upload", body=data, headers=all_headers)


def test_upload_roundtrip_in_process(tmp_path):
    client, store = _app(tmp_path)
    data = text_blob("roundtrip", 20_000)
    resp = _post(client, data)
    assert resp.status_code == 201, resp.text
    assert resp.json["contentHash"] == sha256(data) and resp.json["isNew"] is True
    got = client.simulate_get(f"/cache/{sha256(data)}/original")
    assert got.status_code == 200 and got.content == data
    again = _post(client, data, **{"x-user-id": "user-2"})
    assert again.status_code == 200 and again.json["isNew"] is False
    assert len(again.json["metadata"]["uploads"]) == 2


def test_fsync_eio_over_http_fails_the_upload_and_leaves_nothing(tmp_path, monkeypatch):
    client, store = _app(tmp_path)
    data = text_blob("eio-http", 30_000)
    fake = FailingFsync(1)
    _install_fsync(monkeypatch, fake)
    resp = _post(client, data)
    monkeypatch.undo()
    assert resp.status_code >= 500
    assert resp.json["error"]
    assert fake.calls == 1
    assert temp_entries(store.root) == [] and stored_entries(store.root) == []
    # The failure is not sticky: the same upload works once the disk is healthy.
    ok = _post(client, data)
    assert ok.status_code == 201, ok.text


class FailingWrite:
    """os.write that fails with ENOSPC once ``allow`` writes to non-stdio fds succeeded."""

    def __init__(self, allow: int = 0, only_paths_containing: str | None = None):
        self.allow = allow
        self.only = only_paths_containing
        self.calls = 0
        self.failed = 0
        self.real = os.write

    def __call__(self, fd, data):
        if fd > 2 and (self.only is None or self.only in os.readlink(f"/proc/self/fd/{fd}")):
            self.calls += 1
            if self.calls > self.allow:
                self.failed += 1
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return self.real(fd, data)


@pytest.mark.parametrize("allow", [0, 2])
def test_enospc_while_streaming_gives_507_and_leaves_nothing(tmp_path, monkeypatch, allow):
    client, store = _app(tmp_path)
    data = text_blob("enospc", 40_000)  # 10 blocks of READ_CHUNK_BYTES=4096
    fake = FailingWrite(allow=allow)
    monkeypatch.setattr(native_ingest.pure.os, "write", fake)
    resp = _post(client, data)
    monkeypatch.undo()
    assert fake.failed == 1, "the probe must stop at the first failed write"
    assert resp.status_code == 507, resp.text
    assert resp.json["error"] == "insufficient_storage"
    assert resp.headers["content-type"].startswith("application/json")
    assert temp_entries(store.root) == [] and stored_entries(store.root) == []
    assert client.simulate_get("/health").status_code == 200
    ok = _post(client, data)
    assert ok.status_code == 201, ok.text


def test_enospc_writing_metadata_gives_507_and_leaves_nothing(tmp_path, monkeypatch):
    client, store = _app(tmp_path)
    data = text_blob("enospc-meta", 10_000)
    fake = FailingWrite(only_paths_containing="metadata.json")
    monkeypatch.setattr(native_ingest.pure.os, "write", fake)
    resp = _post(client, data)
    monkeypatch.undo()
    assert fake.failed == 1
    assert resp.status_code == 507, resp.text
    assert temp_entries(store.root) == [] and stored_entries(store.root) == []


def test_enospc_adding_an_uploader_gives_507_and_keeps_the_entry_intact(tmp_path, monkeypatch):
    client, store = _app(tmp_path)
    data = text_blob("enospc-dup", 10_000)
    assert _post(client, data).status_code == 201
    before = store.metadata(sha256(data))
    fake = FailingWrite(only_paths_containing="metadata.json")
    monkeypatch.setattr(native_ingest.pure.os, "write", fake)
    resp = _post(client, data, **{"x-user-id": "user-2"})
    monkeypatch.undo()
    assert resp.status_code == 507, resp.text
    assert store.metadata(sha256(data)) == before
    assert temp_entries(store.root) == []
    assert (store.root / sha256(data) / "original").read_bytes() == data


def test_admission_refuses_before_reading(tmp_path):
    client, store = _app(tmp_path, max_upload_bytes=1000)
    # Content-Length over the limit: 413 without reading (the body here is never consumed).
    resp = client.simulate_post("/upload", body=b"x" * 10, headers={
        "x-filename": "a.txt", "x-drive-id": "d", "x-user-id": "u", "Content-Length": str(10**9)})
    assert resp.status_code == 413
    assert resp.json["error"] == "payload_too_large" and resp.json["limit"] == 1000
    # A streamed body (no Content-Length) is cut off at the limit.
    big = text_blob("big", 5000)
    resp = _post(client, big)
    assert resp.status_code == 413
    assert temp_entries(store.root) == [] and stored_entries(store.root) == []


def test_storage_reserve_gives_507_before_reading(tmp_path):
    client, store = _app(tmp_path, storage_reserve_bytes=10**18)
    resp = _post(client, text_blob("reserve"))
    assert resp.status_code == 507
    assert resp.json["error"] == "insufficient_storage"
    assert temp_entries(store.root) == [] and stored_entries(store.root) == []
