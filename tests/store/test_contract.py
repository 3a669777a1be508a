"""The ContentStore + DerivedCache contract: every store backend (local disk, S3) must pass it.

Each test takes ``backend_components`` (tests/store/conftest.py) and runs once per
backend; on S3 against a real Ceph RGW. Instances made by one test share the bucket
(or, for local, the disk) and each has its own local directories.
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from falconproc.errors import ContentNotFound, ServiceOverloaded
from tests.support.content import sha256, text_blob, unique_text
from tests.support.store import metadata_for, record, write_all
from tests.support.wait import wait_for


def commit(store, data: bytes, rec=None):
    rec = rec or record()
    pending = store.begin_upload()
    write_all(pending.fileno(), data)
    return store.commit(pending, sha256(data), metadata_for(data, rec), rec)


def write_as_it_arrives(pending, data: bytes, piece: int = 1 << 20) -> None:
    """Write the way ingest does: a block at a time, telling the pending upload after each."""
    for start in range(0, len(data), piece):
        write_all(pending.fileno(), data[start:start + piece])
        pending.wrote()


def small_parts(store) -> None:
    """S3: multipart from 5 MB on (the least S3 allows), so big-upload tests stay small."""
    if hasattr(store, "s3"):
        store.s3.transfer.multipart_threshold = store.s3.transfer.multipart_chunksize = 5 << 20


def multipart_uploads(store) -> list[str]:
    if not hasattr(store, "s3"):
        return []
    listed = store.s3.client.list_multipart_uploads(Bucket=store.s3.bucket, Prefix=store.s3.prefix)
    return [upload["Key"] for upload in listed.get("Uploads", ())]


def leftovers(store) -> list[str]:
    """What uploads in flight or aborted leave: spool directories; in a bucket also
    multipart uploads and staging objects."""
    spool = store._spool.tmp_root if hasattr(store, "s3") else store.tmp_root
    found = [p.name for p in spool.iterdir() if p.name.startswith("up-")]
    if hasattr(store, "s3"):
        found += multipart_uploads(store) + list(store.s3.list_keys(store.s3.key(".staging") + "/"))
    return found


# -- originals -------------------------------------------------------------------------


def test_commit_round_trips_bytes_metadata_and_stat(backend_components):
    store = backend_components().store
    data = unique_text(200)
    digest = sha256(data)
    assert not store.exists(digest)
    meta, is_new = commit(store, data)
    assert is_new is True
    assert store.exists(digest)
    assert store.metadata(digest)["contentHash"] == digest == meta["contentHash"]
    with store.open(digest) as fh:
        assert fh.read() == data
    with store.local_file(digest) as path:
        assert path.read_bytes() == data
    st = store.stat(digest)
    assert (st.size, st.mime_type) == (len(data), "text/plain")
    assert digest in set(store.iter_hashes())


def test_nothing_is_visible_before_commit_and_abort_leaves_nothing(backend_components):
    store = backend_components().store
    data = unique_text()
    pending = store.begin_upload()
    write_all(pending.fileno(), data)
    with pending.open_written() as fh:
        assert fh.read() == data
    assert not store.exists(sha256(data))
    pending.abort()
    pending.abort()  # twice is fine
    assert not store.exists(sha256(data))
    with pytest.raises(ContentNotFound):
        store.metadata(sha256(data))


def test_missing_and_hostile_hashes(backend_components):
    store = backend_components().store
    missing = sha256(b"never stored")
    for call in (store.metadata, store.open, store.stat):
        with pytest.raises(ContentNotFound):
            call(missing)
    with pytest.raises(ContentNotFound):
        with store.local_file(missing):
            pass
    for hostile in ("../" * 10 + "etc/passwd", "A" * 64, sha256(b"x")[:63], sha256(b"x") + "/original"):
        with pytest.raises(ValueError):
            store.exists(hostile)
        with pytest.raises(ValueError):
            store.metadata(hostile)


def test_concurrent_uploads_of_new_bytes_on_several_instances_make_exactly_one_new(backend_components):
    stores = [backend_components(f"i{n}").store for n in range(4)]
    data = text_blob("race", 300_000)
    barrier = threading.Barrier(8)

    def upload(n: int):
        store = stores[n % 4]
        rec = record(drive=f"drive-{n}", user=f"user-{n}")
        pending = store.begin_upload()
        write_all(pending.fileno(), data)
        barrier.wait()
        return store.commit(pending, sha256(data), metadata_for(data, rec), rec)[1]

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(upload, range(8)))
    assert results.count(True) == 1, results
    # Every uploader is recorded, on every instance, and the bytes are whole.
    for store in stores:
        users = {u["userId"] for u in store.metadata(sha256(data))["uploads"]}
        assert users == {f"user-{n}" for n in range(8)}
        with store.open(sha256(data)) as fh:
            assert fh.read() == data


def test_a_big_upload_cut_in_the_middle_leaves_no_object_and_no_multipart_upload(backend_components):
    store = backend_components().store
    small_parts(store)
    data = os.urandom(23 << 20)
    pending = store.begin_upload()
    write_as_it_arrives(pending, data[:17 << 20])  # the client goes away here
    if hasattr(store, "s3"):  # its parts were being uploaded while it arrived
        key = wait_for(lambda: multipart_uploads(store), 30, message="a multipart upload")[0]
        upload_id = store.s3.client.list_multipart_uploads(Bucket=store.s3.bucket, Prefix=key)["Uploads"][0]["UploadId"]
        parts = wait_for(lambda: store.s3.client.list_parts(Bucket=store.s3.bucket, Key=key, UploadId=upload_id)
                         .get("Parts"), 30, message="parts uploaded before the body ended")
        assert all(part["Size"] == 5 << 20 for part in parts)
    pending.abort()
    assert leftovers(store) == []
    assert not store.exists(sha256(data))


def test_concurrent_big_uploads_of_the_same_bytes_make_exactly_one_new(backend_components):
    stores = [backend_components(f"i{n}").store for n in range(2)]
    for store in stores:
        small_parts(store)
    data = os.urandom(13 << 20)
    barrier = threading.Barrier(2)

    def upload(n: int) -> bool:
        rec = record(drive=f"drive-{n}", user=f"user-{n}")
        pending = stores[n].begin_upload()
        barrier.wait()
        write_as_it_arrives(pending, data)
        return stores[n].commit(pending, sha256(data), metadata_for(data, rec), rec)[1]

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(upload, range(2)))
    assert sorted(results) == [False, True]
    for store in stores:
        assert {u["userId"] for u in store.metadata(sha256(data))["uploads"]} == {"user-0", "user-1"}
        with store.local_file(sha256(data)) as path:
            assert sha256(path.read_bytes()) == sha256(data)
        assert leftovers(store) == []


def test_add_upload_loses_no_concurrent_record_and_keeps_one_per_drive_user(backend_components):
    stores = [backend_components(f"i{n}").store for n in range(3)]
    data = unique_text()
    commit(stores[0], data, record(user="first"))
    with ThreadPoolExecutor(12) as pool:
        list(pool.map(lambda n: stores[n % 3].add_upload(sha256(data), record(user=f"u{n % 6}")), range(24)))
    uploads = stores[1].metadata(sha256(data))["uploads"]
    assert sorted(u["userId"] for u in uploads) == sorted(["first"] + [f"u{n}" for n in range(6)])
    with pytest.raises(ContentNotFound):
        stores[2].add_upload(sha256(b"absent"), record())


def test_a_second_instance_with_empty_local_directories_serves_everything(backend_components):
    first, second = backend_components("first"), backend_components("second")
    data = text_blob("shared", 50_000)
    commit(first.store, data)
    first.cache.write_file(sha256(data), "thumb.webp", lambda fh: fh.write(b"preset bytes"))
    first.cache.update_metadata(sha256(data), lambda meta: meta.update(presets={"thumb": {"size": 12}}))

    with second.store.open(sha256(data)) as fh:
        assert fh.read() == data
    fh, size = second.cache.open(sha256(data), "thumb.webp")
    with fh:
        assert (fh.read(), size) == (b"preset bytes", 12)
    assert second.cache.metadata(sha256(data)) == {"presets": {"thumb": {"size": 12}}}
    assert second.cache.exists(sha256(data), "thumb.webp")


# -- derived files ----------------------------------------------------------------------


def test_derived_file_is_absent_until_written_then_whole(backend_components):
    cache = backend_components().cache
    digest = sha256(unique_text())
    assert not cache.exists(digest, "text.txt")
    with pytest.raises(FileNotFoundError):
        cache.open(digest, "text.txt")
    assert cache.metadata(digest) == {}

    def failing_writer(fh):
        fh.write(b"half")
        raise RuntimeError("renderer crashed")

    with pytest.raises(RuntimeError):
        cache.write_file(digest, "text.txt", failing_writer)
    assert not cache.exists(digest, "text.txt")
    assert cache.write_file(digest, "text.txt", lambda fh: fh.write(b"x" * 70_000)) == 70_000
    fh, size = cache.open(digest, "text.txt")
    with fh:
        assert size == 70_000 and fh.read() == b"x" * 70_000


def test_concurrent_metadata_updates_from_several_instances_lose_nothing(backend_components):
    caches = [backend_components(f"i{n}").cache for n in range(3)]
    digest = sha256(unique_text())

    def add(n: int) -> None:
        caches[n % 3].update_metadata(digest, lambda meta: meta.setdefault("seen", []).append(n))

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(add, range(18)))
    assert sorted(caches[0].metadata(digest)["seen"]) == list(range(18))


def test_exclusive_admits_one_producer_and_times_out_others(backend_components):
    cache = backend_components().cache
    digest = sha256(unique_text())
    inside = threading.Event()
    release = threading.Event()

    def hold():
        with cache.exclusive(digest, "thumb.webp", timeout=5):
            inside.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    assert inside.wait(10)
    try:
        with pytest.raises(ServiceOverloaded):
            with cache.exclusive(digest, "thumb.webp", timeout=0.2):
                pass
    finally:
        release.set()
        holder.join()
    with cache.exclusive(digest, "thumb.webp", timeout=1):
        pass


def test_usage_counts_what_was_stored(backend_components):
    store = backend_components().store
    before = store.usage()
    blobs = [unique_text(50) for _ in range(3)]
    for blob in blobs:
        commit(store, blob)
    commit(store, blobs[0], record(user="again"))  # a duplicate adds nothing
    if hasattr(store, "_usage_cache"):
        store._usage_cache = None  # the S3 figures are cached for 5 s
    files, total = store.usage()
    assert files - before[0] == 3
    assert total - before[1] == sum(map(len, blobs))
    assert store.free_space() > 0


def test_derived_cache_refuses_hostile_hashes(backend_components):
    cache = backend_components().cache
    for hostile in ("../" * 10 + "etc", "A" * 64, sha256(b"x")[:63]):
        for call in (lambda h: cache.exists(h, "text.txt"), lambda h: cache.open(h, "text.txt"),
                     lambda h: cache.update_metadata(h, lambda meta: None)):
            with pytest.raises(ValueError):
                call(hostile)


def test_deferred_job_notes_are_shared_by_every_instance_until_forgotten(backend_components):
    first, second = backend_components("first").cache, backend_components("second").cache
    digests = [sha256(unique_text()) for _ in range(3)]
    assert second.deferred_jobs() == {}
    for n, digest in enumerate(digests):
        first.defer_jobs(digest, {"requestId": f"r{n}"})
    first.defer_jobs(digests[0], {"requestId": "r0"})  # noting twice is noting once
    assert second.deferred_jobs() == {d: {"requestId": f"r{n}"} for n, d in enumerate(digests)}
    second.forget_deferred_jobs(digests[1])
    second.forget_deferred_jobs(digests[1])  # already gone: nothing to do
    assert set(first.deferred_jobs()) == {digests[0], digests[2]}
    with pytest.raises(ValueError):
        first.defer_jobs("../" * 10 + "etc", {})


def test_quarantine_deletes_derived_files_for_every_instance_and_refuses_new_ones(backend_components):
    from falconproc.errors import ContentQuarantined

    first, second = backend_components("first").cache, backend_components("second").cache
    digest = sha256(unique_text())
    for name in ("thumbnail.webp", "preview.webp", "text.txt"):
        first.write_file(digest, name, lambda fh: fh.write(b"derived"))
    first.update_metadata(digest, lambda meta: meta.update(scan={"status": "infected"}))
    assert second.exists(digest, "thumbnail.webp")

    assert second.quarantine(digest) == 3  # from the other instance: the shared files go
    third = backend_components("third").cache  # an instance with nothing copied locally
    for name in ("thumbnail.webp", "preview.webp", "text.txt"):
        assert not third.exists(digest, name)
        with pytest.raises(FileNotFoundError):
            third.open(digest, name)
    assert third.metadata(digest) == {"scan": {"status": "infected"}}  # the state stays
    with pytest.raises(ContentQuarantined):  # a render finishing after the verdict is not kept
        first.write_file(digest, "medium.webp", lambda fh: fh.write(b"late"))
    assert not third.exists(digest, "medium.webp") and not first.exists(digest, "medium.webp")
    other = sha256(unique_text())  # another hash is not affected
    assert first.write_file(other, "thumbnail.webp", lambda fh: fh.write(b"ok")) == 2
