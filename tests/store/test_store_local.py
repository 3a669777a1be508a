"""LocalContentStore: atomic commit, abort, dedup, temp sweeping, hash validation."""
from __future__ import annotations

import builtins
import multiprocessing
import os
import time

import pytest

from falconproc.errors import ContentNotFound
from falconproc.store import local as local_mod
from falconproc.store.local import STALE_TEMP_FILE_SECONDS, LocalContentStore
from tests.support.content import sha256, text_blob
from tests.support.store import cached_bytes, metadata_for, record, stage, stored_entries, temp_entries

FORK = multiprocessing.get_context("fork")


@pytest.fixture
def store(tmp_path) -> LocalContentStore:
    return LocalContentStore(tmp_path / "files", fsync=True)


def test_commit_makes_original_and_metadata_visible_in_one_rename(store, monkeypatch):
    data = text_blob("atomic", 10_000)
    digest = sha256(data)
    rec = record()
    pending = stage(store, data)
    final = store.root / digest
    assert not final.exists()
    assert stored_entries(store.root) == []

    seen = []
    real_rename = os.rename

    def spy_rename(src, dst, *args, **kwargs):
        if str(dst) == str(final):
            # At the instant the entry becomes visible, the source holds everything.
            seen.append({
                "final_exists_before": os.path.exists(final),
                "src_files": sorted(os.listdir(src)),
                "src_original": open(os.path.join(src, "original"), "rb").read(),
            })
        return real_rename(src, dst, *args, **kwargs)

    monkeypatch.setattr(local_mod.os, "rename", spy_rename)
    meta, is_new = store.commit(pending, digest, metadata_for(data, rec), rec)
    monkeypatch.undo()

    assert is_new is True
    assert len(seen) == 1, "the entry must appear by exactly one rename of a complete directory"
    assert seen[0]["final_exists_before"] is False
    assert seen[0]["src_files"] == ["metadata.json", "original"]
    assert seen[0]["src_original"] == data
    assert sorted(os.listdir(final)) == ["metadata.json", "original"]
    assert (final / "original").read_bytes() == data
    assert store.metadata(digest) == meta
    assert meta["contentHash"] == digest and meta["size"] == len(data)
    assert store.exists(digest)
    st = store.stat(digest)
    assert (st.size, st.mime_type) == (len(data), "text/plain")
    with store.open(digest) as fh:
        assert fh.read() == data
    assert list(store.iter_hashes()) == [digest]
    assert temp_entries(store.root) == [], "the pending directory must be gone from .tmp"


def test_abort_leaves_nothing_and_is_idempotent(store):
    pending = stage(store, text_blob("abort", 5000))
    assert len(temp_entries(store.root)) == 1
    pending.abort()
    pending.abort()  # safe to call twice
    assert temp_entries(store.root) == []
    assert stored_entries(store.root) == []
    assert pending.fd == -1


def test_second_commit_of_same_hash_is_not_new_and_uploads_grow_per_distinct_uploader(store):
    data = text_blob("dedup", 3000)
    digest = sha256(data)
    first = record("d1", "u1", "a.txt")
    meta, is_new = store.commit(stage(store, data), digest, metadata_for(data, first), first)
    assert is_new is True
    assert [(u["driveId"], u["userId"]) for u in meta["uploads"]] == [("d1", "u1")]

    sequence = [
        (("d1", "u1"), 1),  # same uploader again: no growth
        (("d1", "u2"), 2),
        (("d2", "u1"), 3),
        (("d1", "u2"), 3),  # repeated
        (("d2", "u1"), 3),
    ]
    for (drive, user), expected in sequence:
        rec = record(drive, user, "b.txt")
        pending = stage(store, data)
        meta, is_new = store.commit(pending, digest, metadata_for(data, rec), rec)
        assert is_new is False
        assert len(meta["uploads"]) == expected
        assert store.metadata(digest)["uploads"] == meta["uploads"]
        assert not pending.dir.exists()
    stored = store.metadata(digest)
    assert [(u["driveId"], u["userId"]) for u in stored["uploads"]] == [("d1", "u1"), ("d1", "u2"), ("d2", "u1")]
    # The first uploader's name/time stay the entry's own.
    assert stored["originalName"] == "a.txt"
    assert (store.root / digest / "original").read_bytes() == data
    assert temp_entries(store.root) == [], "no pending dirs or metadata temp files may linger"


# -- sweep_temp ---------------------------------------------------------------------------------------


def _die_mid_upload(root: str, conn) -> None:
    store = LocalContentStore(root)
    pending = store.begin_upload()
    os.write(pending.fd, b"partial bytes of an upload whose process died")
    conn.send(str(pending.dir))
    conn.close()
    os._exit(0)  # no cleanup at all, as after SIGKILL: the kernel drops the flock


def _hold_upload(root: str, conn, release) -> None:
    store = LocalContentStore(root)
    pending = store.begin_upload()
    os.write(pending.fd, b"bytes of a live upload")
    conn.send(str(pending.dir))
    release.wait(30)
    os._exit(0)


def test_sweep_removes_dead_uploads_and_keeps_live_ones(store):
    parent_end, child_end = FORK.Pipe()
    dead = FORK.Process(target=_die_mid_upload, args=(str(store.root), child_end))
    dead.start()
    dead_dir = parent_end.recv()
    dead.join(10)
    assert dead.exitcode == 0

    parent_end2, child_end2 = FORK.Pipe()
    release = FORK.Event()
    live = FORK.Process(target=_hold_upload, args=(str(store.root), child_end2, release))
    live.start()
    try:
        live_dir = parent_end2.recv()
        own = stage(store, b"this process's own upload in flight")  # held by a live process too

        assert os.path.isdir(dead_dir) and os.path.isdir(live_dir)
        removed = store.sweep_temp()
        assert removed == 1
        assert not os.path.exists(dead_dir), "the dead process's upload must be swept"
        assert os.path.isdir(live_dir), "an upload whose lock is held must be kept"
        assert os.path.isfile(os.path.join(live_dir, "original"))
        assert own.dir.is_dir() and os.path.getsize(own.path) > 0
        # Still writable after the sweep looked at it.
        os.write(own.fd, b"more")
    finally:
        release.set()
        live.join(10)
    # Once its holder has exited, the other upload is debris as well.
    assert store.sweep_temp() == 1
    assert not os.path.exists(live_dir)
    own.abort()
    assert temp_entries(store.root) == []


def test_sweep_removes_stale_temp_files_only(store):
    stale = store.tmp_root / ".metadata.json-123-abc.tmp"
    fresh = store.tmp_root / ".metadata.json-456-def.tmp"
    stale.write_bytes(b"{\"half\": ")
    fresh.write_bytes(b"{\"being written")
    old = time.time() - STALE_TEMP_FILE_SECONDS - 5
    os.utime(stale, (old, old))
    assert store.sweep_temp() == 1
    assert not stale.exists()
    assert fresh.exists(), "a temp file younger than the limit may belong to a running rename"


def test_sweep_does_not_touch_committed_entries(store):
    data = text_blob("keep-me")
    rec = record()
    store.commit(stage(store, data), sha256(data), metadata_for(data, rec), rec)
    assert store.sweep_temp() == 0
    assert store.exists(sha256(data))


# -- hash validation ----------------------------------------------------------------------------------

BAD_HASHES = [
    "",
    "abc",
    "../../etc/passwd",
    "../" + "a" * 61,
    "a" * 63,
    "a" * 65,
    "A" * 64,  # uppercase is not the canonical form
    "g" * 64,
    "a" * 63 + "/",
    "a" * 63 + "\x00",
    "a" * 64 + "\n",
    "/" + "a" * 63,
    ".tmp",
    "ａ" * 64,  # full-width letters
]


@pytest.fixture
def no_filesystem(monkeypatch):
    """Make every filesystem entry point blow up, to prove validation comes first."""

    def forbidden(*args, **kwargs):
        raise AssertionError(f"filesystem touched with {args!r}")

    for name in ("open", "stat", "lstat", "scandir", "listdir", "mkdir", "rename", "unlink", "rmdir"):
        monkeypatch.setattr(os, name, forbidden)
    monkeypatch.setattr(builtins, "open", forbidden)
    yield


@pytest.mark.parametrize("bad", BAD_HASHES)
def test_invalid_hash_rejected_before_touching_the_filesystem(store, bad, no_filesystem):
    for call in (store.exists, store.stat, store.open, store.metadata, lambda h: store.local_file(h).__enter__()):
        with pytest.raises(ValueError):
            call(bad)


@pytest.mark.parametrize("bad", ["../victim", "a" * 63, "A" * 64])
def test_commit_with_invalid_hash_raises_value_error_and_publishes_nothing(store, bad):
    data = text_blob("bad-hash")
    rec = record()
    pending = stage(store, data)
    with pytest.raises(ValueError):
        store.commit(pending, bad, metadata_for(data, rec), rec)
    pending.abort()
    assert stored_entries(store.root) == []
    assert not (store.root.parent / "victim").exists()


@pytest.mark.parametrize("bad", ["../victim", "a" * 63, "A" * 64])
def test_add_upload_validates_the_hash(store, bad):
    """add_upload is a public method of the store: it must not build a path from an unchecked
    string (with "../victim" it would lock and rewrite ../victim/metadata.json)."""
    victim = store.root.parent / "victim"
    victim.mkdir()
    (victim / "metadata.json").write_text('{"uploads": []}')
    with pytest.raises(ValueError):
        store.add_upload(bad, record())
    assert (victim / "metadata.json").read_text() == '{"uploads": []}'


def test_add_upload_to_content_not_stored_is_content_not_found(store):
    with pytest.raises(ContentNotFound):
        store.add_upload("ab" * 32, record())
    assert stored_entries(store.root) == []


def test_begin_upload_survives_a_sweep_between_mkdir_and_lock(store, monkeypatch):
    """gunicorn's child_exit hook sweeps .tmp in the master whenever *any* worker exits
    (crash, max_requests or memory recycling) while other workers keep creating uploads.
    LocalPendingUpload creates its directory and only then takes the lock: a sweep landing
    in between finds an unlocked directory and deletes it. Force that interleaving."""
    swept = []

    class SweepInTheWindow(local_mod.DirectoryLock):
        def acquire(self):
            if self.blocking and self.path.name.startswith("up-") and not swept:
                swept.append(store.sweep_temp())  # another process's sweep lands here
            return super().acquire()

    monkeypatch.setattr(local_mod, "DirectoryLock", SweepInTheWindow)
    data = text_blob("raced")
    rec = record()
    pending = store.begin_upload()  # must not fail with FileNotFoundError
    assert swept, "the interleaving was not exercised"
    os.write(pending.fd, data)
    meta, is_new = store.commit(pending, sha256(data), metadata_for(data, rec), rec)
    assert is_new and (store.root / sha256(data) / "original").read_bytes() == data


def test_startup_sweep_keeps_a_live_writers_temp_file_and_removes_a_dead_ones(store):
    # Another instance on this host is writing metadata right now: its temp file stays.
    live = store.tmp_root / f".meta-{os.getpid()}-{'a' * 32}.tmp"
    live.write_text("in flight")
    proc = FORK.Process(target=lambda: None)
    proc.start()
    proc.join()
    dead = store.tmp_root / f".meta-{proc.pid}-{'b' * 32}.tmp"
    dead.write_text("left by a crash")
    assert store.sweep_temp(at_startup=True) == 1
    assert live.exists() and not dead.exists()


def test_a_large_upload_leaves_the_page_cache_once_durable_and_a_small_one_stays(tmp_path):
    # PAGE_CACHE_RELEASE_BYTES: the committed original's pages are dropped (the next
    # upload's writes reuse them); below the limit, and with 0, they stay cached.
    store = LocalContentStore(tmp_path / "files", fsync=True, page_cache_release_bytes=4 * 1024 * 1024)
    never = LocalContentStore(tmp_path / "kept", fsync=True, page_cache_release_bytes=0)
    large, small = os.urandom(6 * 1024 * 1024), os.urandom(1024 * 1024)
    for target, data in ((store, large), (store, small), (never, large)):
        digest = sha256(data)
        pending = stage(target, data)
        assert cached_bytes(pending.path) >= len(data) - 4096  # just written: all cached
        target.commit(pending, digest, metadata_for(data, record()), record())
        with target.open(digest) as fh:
            original = fh.name
        resident = cached_bytes(original)
        if target is store and data is large:
            assert resident < len(data) // 8, resident
        else:
            assert resident >= len(data) - 4096, resident
        with target.open(digest) as fh:
            assert fh.read() == data  # read back from disk, unchanged
