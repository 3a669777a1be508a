"""What only the S3 backend has: multipart commits, crash leftovers that stay invisible,
stale multipart uploads aborted, an unreachable endpoint answered with 503, and the
bounded read-through copy. Against a real Ceph RGW (tests/store/conftest.py)."""
from __future__ import annotations

import os
import uuid

import pytest

from falconproc.config import Settings
from falconproc.errors import ServiceOverloaded
from falconproc.store.readthrough import ReadThroughCopy
from falconproc.wiring import Components
from tests.support.content import sha256, text_blob, unique_text
from tests.support.service import free_port
from tests.support.store import metadata_for, record, write_all


@pytest.fixture
def s3_components(s3_server, s3_bucket, tmp_path):
    prefix = f"s3-{uuid.uuid4().hex[:12]}/"

    def make(name: str = "a", **changes) -> Components:
        env = s3_server.service_env(s3_bucket)
        settings = Settings(file_storage_path=tmp_path / name / "files", cache_path=tmp_path / name / "cache",
                            queue_path=tmp_path / name / "queue", instance_id=f"inst-{name}",
                            storage_backend="s3", s3_endpoint_url=env["S3_ENDPOINT_URL"], s3_bucket=s3_bucket,
                            s3_prefix=prefix, s3_access_key_id=env["S3_ACCESS_KEY_ID"],
                            s3_secret_access_key=env["S3_SECRET_ACCESS_KEY"])
        return Components(settings.replace(**changes))

    make.prefix = prefix
    return make


def _commit(store, data, rec=None):
    rec = rec or record()
    pending = store.begin_upload()
    write_all(pending.fileno(), data)
    return store.commit(pending, sha256(data), metadata_for(data, rec), rec)


def test_the_store_and_the_cache_of_a_process_share_one_client_and_one_local_copy(s3_components):
    """One S3 connection pool and one read-through copy (whose eviction accounting counts
    what both add) per process, not one per backend object."""
    components = s3_components()
    assert components.store.s3 is components.cache.s3
    assert components.store.copy is components.cache.copy
    other = s3_components("b")
    assert other.store.s3 is not components.store.s3


def test_a_large_upload_goes_multipart_and_leaves_no_spool(s3_components):
    store = s3_components().store
    store.s3.transfer.multipart_threshold = 5 << 20
    store.s3.transfer.multipart_chunksize = 5 << 20
    data = os.urandom(12 << 20)
    assert _commit(store, data)[1] is True
    head = store.s3.head(store.s3.key(sha256(data), "original"))
    assert head["ContentLength"] == len(data) and head["ETag"].strip('"').endswith("-3")
    assert [p for p in (store._spool.tmp_root).iterdir()] == []
    # A fresh instance downloads it into its own copy, whole.
    with s3_components("other").store.local_file(sha256(data)) as path:
        assert sha256(path.read_bytes()) == sha256(data)


def test_an_original_without_metadata_a_crash_left_is_invisible_then_stored_anew(s3_components):
    store = s3_components().store
    data = unique_text()
    # What a crash between the two PUTs leaves: the bytes, no metadata.json.
    store.s3.client.put_object(Bucket=store.s3.bucket, Key=store.s3.key(sha256(data), "original"), Body=data[:10])
    assert not store.exists(sha256(data))
    assert sha256(data) not in set(store.iter_hashes())
    meta, is_new = _commit(store, data)
    assert is_new is True
    with s3_components("b").store.open(sha256(data)) as fh:
        assert fh.read() == data


def test_sweep_aborts_stale_multipart_uploads_and_keeps_live_spools(s3_components):
    store = s3_components().store
    key = store.s3.key(sha256(b"orphan"), "original")
    store.s3.client.create_multipart_upload(Bucket=store.s3.bucket, Key=key)
    live = store.begin_upload()  # another upload of this host, still running
    write_all(live.fileno(), b"in flight")
    assert store.s3.abort_stale_multipart(older_than=-60) == 1
    uploads = store.s3.client.list_multipart_uploads(Bucket=store.s3.bucket, Prefix=s3_components.prefix)
    assert uploads.get("Uploads", []) == []
    store.sweep_temp(at_startup=True)
    assert live.path.read_bytes() == b"in flight"
    live.abort()


def test_sweep_removes_staging_objects_a_crash_left_and_only_old_ones(s3_components):
    store = s3_components().store
    left = store.s3.key(".staging", "inst-gone", "0123abcd")  # completed, never moved into place
    store.s3.client.put_object(Bucket=store.s3.bucket, Key=left, Body=b"half a story")
    assert store.s3.remove_stale_staging(older_than=3600) == 0  # young: may be an upload committing now
    assert store.s3.head(left) is not None
    assert store.s3.remove_stale_staging(older_than=-60) == 1
    assert store.s3.head(left) is None


def test_unreachable_endpoint_refuses_the_upload_with_503_and_keeps_nothing(s3_components, tmp_path):
    dead = s3_components("dead", s3_endpoint_url=f"http://127.0.0.1:{free_port()}").store
    dead.s3.client.meta.config.retries = {"max_attempts": 1}
    data = unique_text()
    with pytest.raises(ServiceOverloaded) as err:
        _commit(dead, data)
    assert err.value.retry_after > 0
    assert list(dead._spool.tmp_root.iterdir()) == []  # the spool went with the refusal


def test_read_through_copy_stays_within_its_budget_and_never_evicts_a_pinned_file(tmp_path):
    copy = ReadThroughCopy(tmp_path / "copy", max_bytes=1_000_000)
    blob = text_blob("c", 200_000)
    with copy.pinned("o/pinned", lambda fh: fh.write(blob)) as pinned:
        for n in range(20):
            copy.fill(f"o/{n}", lambda fh: fh.write(blob))
        copy.evict()
        assert pinned.read_bytes() == blob  # in use: kept although least recently used
    sizes = [p.stat().st_size for p in (tmp_path / "copy" / "o").iterdir()]
    assert sum(sizes) <= 1_000_000 + 200_000
    copy.evict()
    assert sum(p.stat().st_size for p in (tmp_path / "copy" / "o").iterdir()) <= 1_000_000
    assert copy.open("o/19") is not None  # the newest stayed


def _stream(pending, data: bytes, piece: int = 1 << 20) -> None:
    """Write as ingest does: a block at a time, telling the pending upload after each."""
    for start in range(0, len(data), piece):
        write_all(pending.fileno(), data[start:start + piece])
        pending.wrote()


def _bucket_leftovers(store) -> list[str]:
    listed = store.s3.client.list_multipart_uploads(Bucket=store.s3.bucket, Prefix=store.s3.prefix)
    return [u["Key"] for u in listed.get("Uploads", ())] + list(store.s3.list_keys(store.s3.key(".staging") + "/"))


def _small_parts(store) -> None:
    store.s3.transfer.multipart_threshold = store.s3.transfer.multipart_chunksize = 5 << 20


def test_with_the_hash_named_up_front_parts_go_to_the_final_key(s3_components):
    store = s3_components().store
    _small_parts(store)
    data = os.urandom(12 << 20)
    rec = record()
    pending = store.begin_upload(sha256(data))
    _stream(pending, data)
    assert pending.staging_key == store.s3.key(sha256(data), "original") and pending.streaming
    assert store.commit(pending, sha256(data), metadata_for(data, rec), rec)[1] is True
    head = store.s3.head(store.s3.key(sha256(data), "original"))
    assert head["ContentLength"] == len(data) and head["ETag"].strip('"').endswith("-3")  # the streamed parts
    assert _bucket_leftovers(store) == []
    with s3_components("other").store.local_file(sha256(data)) as path:
        assert sha256(path.read_bytes()) == sha256(data)


def test_a_staged_upload_past_copy_objects_limit_is_moved_by_the_managed_copy(s3_components, monkeypatch):
    from falconproc.store import s3

    monkeypatch.setattr(s3, "COPY_OBJECT_MAX_BYTES", 1 << 20)  # 5 GiB in production
    store = s3_components().store
    _small_parts(store)
    data = os.urandom(12 << 20)
    rec = record()
    pending = store.begin_upload()
    _stream(pending, data)
    assert pending.streaming
    assert store.commit(pending, sha256(data), metadata_for(data, rec), rec)[1] is True
    assert store.s3.head(store.s3.key(sha256(data), "original"))["ContentLength"] == len(data)
    assert _bucket_leftovers(store) == []
    with s3_components("other").store.local_file(sha256(data)) as path:
        assert sha256(path.read_bytes()) == sha256(data)


def test_bytes_that_do_not_have_the_named_hash_never_land_at_its_key(s3_components):
    store = s3_components().store
    _small_parts(store)
    data, claimed = os.urandom(12 << 20), sha256(b"something else")
    rec = record()
    pending = store.begin_upload(claimed)
    _stream(pending, data)
    assert store.commit(pending, sha256(data), metadata_for(data, rec), rec)[1] is True
    assert store.s3.head(store.s3.key(claimed, "original")) is None
    assert store.s3.head(store.s3.key(sha256(data), "original"))["ContentLength"] == len(data)
    assert _bucket_leftovers(store) == []


def test_a_multipart_upload_aborted_under_a_streaming_upload_falls_back_to_a_whole_upload(s3_components):
    store = s3_components().store
    _small_parts(store)
    data = os.urandom(23 << 20)
    rec = record()
    pending = store.begin_upload()
    _stream(pending, data[:11 << 20])
    # Another instance's sweep (or an operator) aborts the multipart upload midway.
    [upload] = store.s3.client.list_multipart_uploads(Bucket=store.s3.bucket,
                                                      Prefix=pending.staging_key)["Uploads"]
    store.s3.client.abort_multipart_upload(Bucket=store.s3.bucket, Key=upload["Key"], UploadId=upload["UploadId"])
    _stream(pending, data[11 << 20:])
    assert store.commit(pending, sha256(data), metadata_for(data, rec), rec)[1] is True
    with s3_components("other").store.local_file(sha256(data)) as path:
        assert sha256(path.read_bytes()) == sha256(data)
    assert _bucket_leftovers(store) == []


def test_a_forked_process_gets_its_own_client():
    """Job processes are forked from a supervisor that has used the bucket: sharing its
    pooled connections, two processes read each other's answers."""
    from falconproc.store.s3 import S3Bucket

    made = []

    def factory():
        made.append(object())
        return made[-1]

    bucket = S3Bucket(factory(), "bucket", "prefix/", client_factory=factory)
    parent_client = bucket.client
    assert bucket.client is parent_client  # the same process keeps its client
    pid = os.fork()
    if pid == 0:  # the child: a new client, once
        first = bucket.client
        os._exit(0 if first is not parent_client and bucket.client is first else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert bucket.client is parent_client
