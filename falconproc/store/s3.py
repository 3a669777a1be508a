"""Content store and derived cache in one S3 bucket (STORAGE_BACKEND=s3).

Keys under S3_PREFIX::

    {hash}/original                   the uploaded bytes
    {hash}/metadata.json              written once, with If-None-Match: * (its presence
                                      makes the entry visible)
    {hash}/uploads/{who}.json         one object per further drive/user (no read-modify-write)
    {hash}/derived/{name}             presets, text.txt, text.json
    {hash}/derived/metadata.json      processing state, updated with If-Match (optimistic)
    {hash}/derived/.quarantined       the content was found infected: no derived file is kept
    .stats/{instance}/{writer}.json   per writer process: entries and bytes it stored
    .deferred-jobs/{hash}.json        stored content whose jobs wait to be queued
    .staging/{instance}/{id}          a big upload's multipart upload while its body arrives

An upload is spooled to a local file (the native probe writes into it). Above the
multipart threshold its parts are uploaded to a staging key while the body still
arrives (S3PendingUpload); ``commit`` uploads the last part, completes the staging
object and copies it server-side to ``{hash}/original`` (below the threshold, or if
streaming failed, it uploads the spool file) and only then creates metadata.json
conditionally (Ceph RGW ignores If-None-Match on CompleteMultipartUpload, so the
original's key cannot be the arbiter; metadata.json's PUT is): of N
concurrent uploads of the same new bytes, on any number of instances, exactly one
creates it and reports ``isNew``. A crash before that leaves an original without
metadata, which is invisible and overwritten by the next upload of the same bytes
(content-addressed, so the same bytes). Reads that need a file go through a local
read-through copy bounded by LOCAL_CACHE_BYTES.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from falconproc.errors import ContentNotFound, ContentQuarantined, ServiceOverloaded
from falconproc.locks import ThreadLock, file_lock
from falconproc.store.base import ContentStore, PendingUpload, StoredObject, UploadRecord, is_content_hash
from falconproc.store.cache import DerivedCache
from falconproc.store.local import LocalContentStore, LocalPendingUpload
from falconproc.store.readthrough import ReadThroughCopy

log = logging.getLogger(__name__)

# Where uploads stream their parts before their hash is known: {prefix}.staging/{instance}/{id}.
STAGING = ".staging"
# Parts of one upload being sent at once, and of all uploads of a process (8 MB each in
# memory while sent): 4 bound a process's part buffers to 32 MB however many upload.
STREAM_WORKERS = 2
PARTS_IN_MEMORY = 4
# The largest object one CopyObject request copies.
COPY_OBJECT_MAX_BYTES = 5 << 30
# Multipart uploads older than this were left by a crashed writer (no upload here takes an hour).
STALE_MULTIPART_SECONDS = 3600
# How long a presigned redirect stays valid (S3_PRESIGNED_REDIRECT).
PRESIGNED_SECONDS = 300
# Seconds a client is told to wait when the object store does not answer.
UNAVAILABLE_RETRY_AFTER = 10
_MISSING = ("404", "NoSuchKey", "NotFound")
QUARANTINE_MARKER = ".quarantined"  # under {hash}/derived/
QUARANTINE_RELIST_SECONDS = 1.0
_CONFLICT = ("412", "PreconditionFailed", "409", "ConditionalRequestConflict")


def _code(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def _is_unavailable(exc: BaseException) -> bool:
    """The object store did not answer (network, timeout, 5xx): retry later, nothing lost."""
    from botocore.exceptions import BotoCoreError, ClientError

    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return status >= 500 or _code(exc) in ("SlowDown", "ServiceUnavailable", "InternalError")
    return isinstance(exc, BotoCoreError)


@contextmanager
def _unavailable_as_503() -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        if _is_unavailable(exc):
            raise ServiceOverloaded(f"object storage unavailable: {type(exc).__name__}",
                                    retry_after=UNAVAILABLE_RETRY_AFTER) from exc
        raise


class S3Bucket:
    """The bucket under a prefix, with the few operations both classes need."""

    def __init__(self, client: Any, bucket: str, prefix: str, *, multipart_threshold: int = 16 << 20,
                 client_factory: Callable[[], Any] | None = None):
        from boto3.s3.transfer import TransferConfig

        self._client = client
        self._client_pid = os.getpid()
        self._client_factory = client_factory
        self.bucket = bucket
        self.prefix = prefix
        self.transfer = TransferConfig(multipart_threshold=multipart_threshold,
                                       multipart_chunksize=max(8 << 20, multipart_threshold // 2),
                                       max_concurrency=4)
        # Copies past CopyObject's limit: 1 GiB UploadPartCopy parts (s3transfer's default
        # would split them into 8 MB ones).
        self._copy_transfer = TransferConfig(multipart_threshold=COPY_OBJECT_MAX_BYTES, multipart_chunksize=1 << 30,
                                             max_concurrency=4)
        self.healthy_reason: str | None = None
        # Parts read from spool files and being sent, over all uploads of this process.
        self.parts_in_memory = threading.BoundedSemaphore(PARTS_IN_MEMORY)

    @property
    def client(self) -> Any:
        """The boto3 client of this process. A forked child (a job process) gets its own:
        sharing the parent's pooled connections, two processes read each other's answers
        (seen as 404s on PUTs, 400s on HEADs and half-read JSON)."""
        if self._client_pid != os.getpid() and self._client_factory is not None:
            self._client = self._client_factory()
            self._client_pid = os.getpid()
        return self._client

    def key(self, *parts: str) -> str:
        return self.prefix + "/".join(parts)

    def get_bytes(self, key: str) -> tuple[bytes, str] | None:
        """(body, etag), or None when absent."""
        try:
            resp = self.client.get_object(Bucket=self.bucket, Key=key)
        except self.client.exceptions.ClientError as exc:
            if _code(exc) in _MISSING:
                return None
            raise
        return resp["Body"].read(), resp["ETag"]

    def head(self, key: str) -> dict[str, Any] | None:
        try:
            return self.client.head_object(Bucket=self.bucket, Key=key)
        except self.client.exceptions.ClientError as exc:
            if _code(exc) in _MISSING:
                return None
            raise

    def download(self, key: str, fh: BinaryIO) -> None:
        """Copy ``key`` into ``fh``; FileNotFoundError when absent."""
        try:
            self.client.download_fileobj(self.bucket, key, fh, Config=self.transfer)
        except self.client.exceptions.ClientError as exc:
            if _code(exc) in _MISSING:
                raise FileNotFoundError(key) from None
            raise

    def upload_file(self, path: Path, key: str) -> None:
        self.client.upload_file(str(path), self.bucket, key, Config=self.transfer)

    def copy(self, source: str, key: str, size: int) -> None:
        """Server-side copy of ``size`` bytes: one CopyObject up to 5 GiB (s3transfer's
        managed copy first HEADs the source and starts a thread pool: 15.8 vs 10.9 ms for
        100 MB on Ceph RGW, medians of 10), UploadPartCopy parts above."""
        if size <= COPY_OBJECT_MAX_BYTES:
            self.client.copy_object(CopySource={"Bucket": self.bucket, "Key": source}, Bucket=self.bucket, Key=key)
            return
        self.client.copy({"Bucket": self.bucket, "Key": source}, self.bucket, key, Config=self._copy_transfer)

    def delete(self, key: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=key)
        except Exception:  # noqa: BLE001 - sweep_temp removes staging objects left behind
            log.warning("could not delete %s", key)

    def create(self, key: str, body: bytes) -> bool:
        """Create ``key`` unless it exists (If-None-Match: *): True when this call created it."""
        try:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=body, IfNoneMatch="*",
                                   ContentType="application/json")
        except self.client.exceptions.ClientError as exc:
            if _code(exc) in _CONFLICT:
                return False
            raise
        return True

    def replace(self, key: str, body: bytes, etag: str) -> bool:
        """Overwrite ``key`` only if it still has ``etag``. Ceph RGW compares the bare
        value and AWS the quoted one, so a mismatch tries the other spelling once."""
        for spelling in (etag.strip('"'), f'"{etag.strip(chr(34))}"'):
            try:
                self.client.put_object(Bucket=self.bucket, Key=key, Body=body, IfMatch=spelling,
                                       ContentType="application/json")
                return True
            except self.client.exceptions.ClientError as exc:
                if _code(exc) not in _CONFLICT:
                    raise
        return False

    def list_keys(self, prefix: str) -> Iterator[str]:
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            for item in page.get("Contents", ()):
                yield item["Key"]

    def list_prefixes(self) -> Iterator[str]:
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix, Delimiter="/"):
            for item in page.get("CommonPrefixes", ()):
                yield item["Prefix"][len(self.prefix):].rstrip("/")

    def abort_stale_multipart(self, older_than: float) -> int:
        """Abort multipart uploads a crashed writer left (their parts cost storage)."""
        aborted = 0
        cutoff = time.time() - older_than
        resp = self.client.list_multipart_uploads(Bucket=self.bucket, Prefix=self.prefix)
        for upload in resp.get("Uploads", ()):
            if upload["Initiated"].timestamp() < cutoff:
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=upload["Key"],
                                                   UploadId=upload["UploadId"])
                aborted += 1
        return aborted

    def remove_stale_staging(self, older_than: float) -> int:
        """Delete completed staging objects a writer crashed before moving into place."""
        removed = 0
        cutoff = time.time() - older_than
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.key(STAGING) + "/"):
            for item in page.get("Contents", ()):
                if item["LastModified"].timestamp() < cutoff:
                    self.client.delete_object(Bucket=self.bucket, Key=item["Key"])
                    removed += 1
        return removed


class S3PendingUpload(LocalPendingUpload):
    """A spooled upload that is also uploaded while it arrives: once the spool passes the
    multipart threshold, a multipart upload to a staging key starts and every full part
    written is uploaded by a small pool (each worker reads its part from the spool file:
    at most STREAM_WORKERS parts of an upload, PARTS_IN_MEMORY of a process, in memory).
    The content hash, and so the final key, is only known at commit, which uploads the
    last part and moves the object into place. Any failure here only means commit uploads
    the spool file as a whole (as below the threshold)."""

    def __init__(self, tmp_root: Path, bucket: S3Bucket, staging_key: str, *, target_hash: str | None = None):
        super().__init__(tmp_root)
        self._s3 = bucket
        self.staging_key = staging_key
        self.target_hash = target_hash  # set when staging_key is that hash's final key
        self._part_size = bucket.transfer.multipart_chunksize
        self._threshold = bucket.transfer.multipart_threshold
        self._upload_id: str | None = None
        self._parts: list[Future[dict[str, Any]]] = []
        self._uploaded_to = 0  # bytes handed to the pool so far
        self._pool: ThreadPoolExecutor | None = None
        self._read_fd = -1
        self.broken = False  # a part or the start failed: commit uploads the file as a whole

    @property
    def streaming(self) -> bool:
        return self._upload_id is not None and not self.broken

    def wrote(self) -> None:
        super().wrote()
        if self.broken or self.fd < 0:
            return
        written = os.fstat(self.fd).st_size
        if self._upload_id is None:
            if written < self._threshold:
                return
            try:
                self._upload_id = self._s3.client.create_multipart_upload(
                    Bucket=self._s3.bucket, Key=self.staging_key)["UploadId"]
            except Exception:  # noqa: BLE001 - commit uploads the whole file (and says why if it fails too)
                self.broken = True
                return
            self._read_fd = os.open(self.path, os.O_RDONLY)
            self._pool = ThreadPoolExecutor(STREAM_WORKERS, thread_name_prefix="s3-part")
        if any(part.done() and part.exception() is not None for part in self._parts):
            self.give_up()  # the store refused a part: stop sending the rest (commit tries once more)
            return
        while written - self._uploaded_to >= self._part_size:
            self._submit(self._part_size)

    def _submit(self, length: int) -> None:
        assert self._pool is not None
        number, offset = len(self._parts) + 1, self._uploaded_to
        self._parts.append(self._pool.submit(self._upload_part, number, offset, length))
        self._uploaded_to += length

    def _upload_part(self, number: int, offset: int, length: int) -> dict[str, Any]:
        with self._s3.parts_in_memory:  # however many uploads stream at once
            body = os.pread(self._read_fd, length, offset)
            if len(body) != length:
                raise OSError(f"part {number}: spool file shorter than expected")
            resp = self._s3.client.upload_part(Bucket=self._s3.bucket, Key=self.staging_key,
                                               UploadId=self._upload_id, PartNumber=number, Body=body)
        return {"PartNumber": number, "ETag": resp["ETag"]}

    def complete_staging(self) -> bool:
        """Upload what is left and complete the staging object: True when it holds the
        whole spool file; False (multipart aborted) when streaming did not happen or failed."""
        if not self.streaming:
            return False
        size = self.path.stat().st_size
        while size - self._uploaded_to > 0:
            self._submit(min(self._part_size, size - self._uploaded_to))
        try:
            parts = [part.result() for part in self._parts]
            self._s3.client.complete_multipart_upload(Bucket=self._s3.bucket, Key=self.staging_key,
                                                      UploadId=self._upload_id, MultipartUpload={"Parts": parts})
        except Exception:  # noqa: BLE001 - commit falls back to uploading the file as a whole
            self.broken = True
            self._abort_multipart()
            return False
        self._upload_id = None
        self._stop_pool()
        return True

    def give_up(self) -> None:
        """Stop streaming (abort the multipart upload): commit uploads the file instead."""
        self.broken = True
        self._abort_multipart()

    def _stop_pool(self) -> None:
        if self._pool is not None:
            for part in self._parts:
                part.cancel()
            self._pool.shutdown(wait=True)
            self._pool = None
        if self._read_fd >= 0:
            os.close(self._read_fd)
            self._read_fd = -1

    def _abort_multipart(self) -> None:
        self._stop_pool()
        if self._upload_id is not None:
            upload_id, self._upload_id = self._upload_id, None
            try:
                self._s3.client.abort_multipart_upload(Bucket=self._s3.bucket, Key=self.staging_key,
                                                       UploadId=upload_id)
            except Exception:  # noqa: BLE001 - sweep_temp aborts what is left after an hour
                log.warning("could not abort multipart upload %s of %s", upload_id, self.staging_key)

    def abort(self) -> None:
        self._abort_multipart()
        super().abort()


class S3ObjectStream:
    """An object read straight from the bucket, from the position of the last ``seek``
    on (a ranged GetObject). ``seek`` sends the request, so an unreachable object store
    is a 503 before an answer starts; without one the first ``read`` does. It has no
    descriptor: the server copies it through (no sendfile)."""

    def __init__(self, bucket: S3Bucket, key: str, content_hash: str):
        self._s3 = bucket
        self._key = key
        self._hash = content_hash
        self._position = 0
        self._body: Any = None

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence != io.SEEK_SET:
            raise io.UnsupportedOperation("only absolute seeks")
        self._close_body()
        self._position = offset
        self._request()
        return offset

    def tell(self) -> int:
        return self._position

    def _request(self) -> None:
        with _unavailable_as_503():
            try:
                resp = self._s3.client.get_object(Bucket=self._s3.bucket, Key=self._key,
                                                  Range=f"bytes={self._position}-")
            except self._s3.client.exceptions.ClientError as exc:
                if _code(exc) in _MISSING:
                    raise ContentNotFound(self._hash) from None
                raise
        self._body = resp["Body"]

    def read(self, size: int = -1) -> bytes:
        if self._body is None:
            self._request()
        data = self._body.read(None if size is None or size < 0 else size)
        self._position += len(data)
        return data

    def fileno(self) -> int:
        raise io.UnsupportedOperation("an object in the bucket has no file descriptor")

    def _close_body(self) -> None:
        if self._body is not None:
            self._body.close()
            self._body = None

    def close(self) -> None:
        self._close_body()

    def __enter__(self) -> S3ObjectStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class S3ContentStore(ContentStore):
    def __init__(self, bucket: S3Bucket, spool_root: Path, copy: ReadThroughCopy, *, instance_id: str,
                 presigned_redirect: bool = False):
        self.s3 = bucket
        self.presigned_redirect = presigned_redirect
        # The spool (and its sweep) is the local backend's: flock-held directories.
        self._spool = LocalContentStore(spool_root, fsync=False)
        self.copy = copy
        self.instance_id = instance_id
        self._writer = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._stats_lock = ThreadLock()
        self._stats = [0, 0]  # entries and bytes this process stored
        self._usage_cache: tuple[float, tuple[int, int]] | None = None

    def _check(self, content_hash: str) -> None:
        if not is_content_hash(content_hash):
            raise ValueError("content hash must be 64 lowercase hex characters")

    # -- writing -----------------------------------------------------------------

    def begin_upload(self, expected_hash: str | None = None) -> S3PendingUpload:
        if expected_hash is not None and is_content_hash(expected_hash):
            # The client named the hash (x-content-sha256): the parts go straight to the
            # final key, completed only once commit has the bytes' hash proven equal.
            return S3PendingUpload(self._spool.tmp_root, self.s3, self.s3.key(expected_hash, "original"),
                                   target_hash=expected_hash)
        return S3PendingUpload(self._spool.tmp_root, self.s3,
                               self.s3.key(STAGING, self.instance_id, uuid.uuid4().hex))

    def commit(self, pending: PendingUpload, content_hash: str, metadata: dict[str, Any],
               record: UploadRecord) -> tuple[dict[str, Any], bool]:
        assert isinstance(pending, S3PendingUpload)
        self._check(content_hash)
        try:
            pending.close_fd()
            with _unavailable_as_503():
                if self.s3.head(self.s3.key(content_hash, "metadata.json")) is not None:
                    return self.add_upload(content_hash, record), False
                self._store_original(pending, content_hash)
                body = json.dumps(metadata, ensure_ascii=False).encode()
                if not self.s3.create(self.s3.key(content_hash, "metadata.json"), body):
                    return self.add_upload(content_hash, record), False
            size = pending.path.stat().st_size
            try:  # the spooled bytes become the local copy: serving them needs no download
                self.copy.publish(f"o/{content_hash}", pending.path)
            except OSError:
                pass
            self._count(1, size)
            return metadata, True
        finally:
            pending.abort()

    def _store_original(self, pending: S3PendingUpload, content_hash: str) -> None:
        """Put the spooled bytes at ``{hash}/original``: from the staging object the parts
        were streamed to while the body arrived (a server-side copy: Ceph RGW shares the
        data, ~10 ms for 100 MB; AWS copies it), directly when the parts went to the final
        key (the client sent x-content-sha256), or by uploading the spool file. The
        original's key is written unconditionally (same hash, same bytes); metadata.json
        decides who is new."""
        final = self.s3.key(content_hash, "original")
        if pending.target_hash not in (None, content_hash):
            pending.give_up()  # never complete other bytes at the key of the hash they were said to have
        if not pending.complete_staging():
            self.s3.upload_file(pending.path, final)
            return
        if pending.staging_key == final:  # streamed to the final key (the client named the hash)
            return
        try:
            self.s3.copy(pending.staging_key, final, pending.path.stat().st_size)
        finally:
            self.s3.delete(pending.staging_key)

    def add_upload(self, content_hash: str, record: UploadRecord) -> dict[str, Any]:
        with _unavailable_as_503():
            metadata = self.metadata(content_hash)
            uploads = metadata.setdefault("uploads", [])
            if not any(u["driveId"] == record.drive_id and u["userId"] == record.user_id for u in uploads):
                # One object per drive/user: concurrent uploaders never overwrite each other,
                # and the first record of a drive/user is the one kept.
                who = hashlib.sha256(json.dumps([record.drive_id, record.user_id]).encode()).hexdigest()[:32]
                self.s3.create(self.s3.key(content_hash, "uploads", f"{who}.json"),
                               json.dumps(record.to_json(), ensure_ascii=False).encode())
                metadata = self.metadata(content_hash)
        return metadata

    def _count(self, files: int, size: int) -> None:
        """Publish this writer's totals: /health sums a few such objects, never the bucket."""
        with self._stats_lock:
            if not self._writer.startswith(f"{os.getpid()}-"):  # a forked child counts on its own
                self._writer = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
                self._stats = [0, 0]
            self._stats[0] += files
            self._stats[1] += size
            body = json.dumps({"files": self._stats[0], "bytes": self._stats[1]}).encode()
        try:
            self.s3.client.put_object(Bucket=self.s3.bucket, Body=body,
                                      Key=self.s3.key(".stats", self.instance_id, f"{self._writer}.json"))
        except Exception:  # figures for /health only: never fail an upload that was stored
            pass
        self._usage_cache = None

    # -- reading -----------------------------------------------------------------

    def exists(self, content_hash: str) -> bool:
        self._check(content_hash)
        return self.s3.head(self.s3.key(content_hash, "metadata.json")) is not None

    def metadata(self, content_hash: str) -> dict[str, Any]:
        self._check(content_hash)
        local = f"m/{content_hash}.json"
        try:
            got = self.s3.get_bytes(self.s3.key(content_hash, "metadata.json"))
            if got is None:
                raise ContentNotFound(content_hash)
            metadata = json.loads(got[0])
            uploads = self._uploads(content_hash, metadata.get("uploads", []))
        except Exception as exc:
            # The object store does not answer: what this host has a copy of is still
            # served (its uploader list as last seen).
            fh = self.copy.open(local) if _is_unavailable(exc) else None
            if fh is None:
                raise
            with fh:
                return json.loads(fh.read())
        metadata["uploads"] = uploads
        if not self.copy.path(local).exists():  # once: the fallback above, not a write per read
            body = json.dumps(metadata, ensure_ascii=False).encode()
            try:
                self.copy.fill(local, lambda fh: fh.write(body))
            except OSError:
                pass
        return metadata

    def _uploads(self, content_hash: str, uploads: list[dict[str, Any]]) -> list[dict[str, Any]]:
        uploads = list(uploads)
        seen = {(u["driveId"], u["userId"]) for u in uploads}
        extra = []
        for key in self.s3.list_keys(self.s3.key(content_hash, "uploads") + "/"):
            item = self.s3.get_bytes(key)
            if item is not None:
                extra.append(json.loads(item[0]))
        for upload in sorted(extra, key=lambda u: u.get("uploadedAt", "")):
            if (upload["driveId"], upload["userId"]) not in seen:
                seen.add((upload["driveId"], upload["userId"]))
                uploads.append(upload)
        return uploads

    def redirect_url(self, content_hash: str, *, content_type: str, disposition: str) -> str | None:
        if not self.presigned_redirect:
            return None
        self._check(content_hash)
        return self.s3.client.generate_presigned_url(
            "get_object", ExpiresIn=PRESIGNED_SECONDS,
            Params={"Bucket": self.s3.bucket, "Key": self.s3.key(content_hash, "original"),
                    "ResponseContentType": content_type, "ResponseContentDisposition": disposition,
                    "ResponseCacheControl": "private, max-age=300"})

    def stat(self, content_hash: str) -> StoredObject:
        meta = self.metadata(content_hash)
        return StoredObject(content_hash, int(meta["size"]), meta["mimeType"],
                            _iso_to_epoch(meta.get("uploadedAt")))

    def _fetch_original(self, content_hash: str) -> Callable[[BinaryIO], None]:
        def fetch(fh: BinaryIO) -> None:
            if not self.exists(content_hash):
                raise ContentNotFound(content_hash)
            try:
                self.s3.download(self.s3.key(content_hash, "original"), fh)
            except FileNotFoundError:
                raise ContentNotFound(content_hash) from None

        return fetch

    def open(self, content_hash: str) -> BinaryIO:
        """The local copy when this host has one (sendfile), else the object streamed from
        the bucket: serving an original never waits for, nor fills the disk with, a copy."""
        self._check(content_hash)
        fh = self.copy.open(f"o/{content_hash}")
        if fh is not None:
            return fh
        with _unavailable_as_503():
            if not self.exists(content_hash):  # a HEAD: cheaper than a GET a HEAD or 304 would drop
                raise ContentNotFound(content_hash)
        return S3ObjectStream(self.s3, self.s3.key(content_hash, "original"), content_hash)  # type: ignore[return-value]

    @contextmanager
    def local_file(self, content_hash: str) -> Iterator[Path]:
        self._check(content_hash)
        with self.copy.pinned(f"o/{content_hash}", self._fetch_original(content_hash)) as path:
            yield path

    def iter_hashes(self) -> Iterator[str]:
        for name in self.s3.list_prefixes():
            if is_content_hash(name) and self.exists(name):
                yield name

    # -- housekeeping ------------------------------------------------------------

    def free_space(self) -> int:
        # The bucket has no useful limit; uploads are spooled locally first.
        return self._spool.free_space()

    def usage(self) -> tuple[int, int]:
        cached = self._usage_cache
        if cached and time.monotonic() - cached[0] < 5.0:
            return cached[1]
        files = total = 0
        for key in self.s3.list_keys(self.s3.key(".stats") + "/"):
            got = self.s3.get_bytes(key)
            if got is not None:
                figures = json.loads(got[0])
                files += int(figures.get("files", 0))
                total += int(figures.get("bytes", 0))
        self._usage_cache = (time.monotonic(), (files, total))
        return files, total

    def sweep_temp(self, *, at_startup: bool = False) -> int:
        """Spool directories of dead uploads on this host (flock-held while alive, so
        another instance's are never touched), dead processes' partial copies, and
        multipart uploads left in the bucket by a crashed writer."""
        removed = self._spool.sweep_temp(at_startup=False) + self.copy.sweep_temp()
        try:
            removed += self.s3.abort_stale_multipart(STALE_MULTIPART_SECONDS)
            removed += self.s3.remove_stale_staging(STALE_MULTIPART_SECONDS)
        except Exception as exc:
            if not _is_unavailable(exc):
                raise
        return removed


class S3DerivedCache(DerivedCache):
    def __init__(self, bucket: S3Bucket, copy: ReadThroughCopy, lock_root: Path,
                 shared_lock: Callable[[str, float], AbstractContextManager[None]] | None = None):
        self.s3 = bucket
        self.copy = copy
        # (name, timeout) -> a lock held across instances (Redis, when REDIS_URL is set)
        self.shared_lock = shared_lock
        self.lock_root = Path(lock_root)
        self.lock_root.mkdir(parents=True, exist_ok=True)

    def _key(self, content_hash: str, name: str) -> str:
        if not is_content_hash(content_hash):
            raise ValueError("content hash must be 64 lowercase hex characters")
        return self.s3.key(content_hash, "derived", name)

    def open(self, content_hash: str, name: str) -> tuple[BinaryIO, int]:
        key = self._key(content_hash, name)
        local = f"d/{content_hash}/{name}"
        fh = self.copy.open(local)
        if fh is None:
            # Derived files are never changed once published (same original, same
            # output), so a local copy never goes stale.
            self.copy.fill(local, lambda out: self.s3.download(key, out))
            fh = self.copy.open(local)
            if fh is None:
                raise FileNotFoundError(key)
        return fh, os.fstat(fh.fileno()).st_size

    def exists(self, content_hash: str, name: str) -> bool:
        key = self._key(content_hash, name)  # validates the hash before any path is built
        if self.copy.path(f"d/{content_hash}/{name}").exists():
            return True
        return self.s3.head(key) is not None

    def write_file(self, content_hash: str, name: str, writer: Callable[[BinaryIO], None]) -> int:
        key = self._key(content_hash, name)
        tmp = self.copy.tmp_root / f"{os.getpid()}-{uuid.uuid4().hex}"
        try:
            with open(tmp, "wb") as fh:
                writer(fh)
                size = fh.tell()
            self.s3.upload_file(tmp, key)
            # Uploaded first, then the marker looked for (quarantine does the opposite):
            # whichever way the two interleave, across instances, no derived file survives.
            if self.s3.head(self._key(content_hash, QUARANTINE_MARKER)) is not None:
                self.s3.client.delete_object(Bucket=self.s3.bucket, Key=key)
                raise ContentQuarantined(f"{content_hash} is quarantined: {name} is not kept")
            self.copy.publish(f"d/{content_hash}/{name}", tmp)
        finally:
            tmp.unlink(missing_ok=True)
        return size

    def quarantine(self, content_hash: str) -> int:
        """The marker first, then every derived object but the processing state deleted
        from the bucket, and this host's copies of them. Other hosts' local copies are
        never served again (every route answers 403 from the shared scan state) and age
        out of their LRU."""
        self.s3.client.put_object(Bucket=self.s3.bucket, Key=self._key(content_hash, QUARANTINE_MARKER), Body=b"")
        keep = {self._key(content_hash, "metadata.json"), self._key(content_hash, QUARANTINE_MARKER)}
        removed = 0
        # A writer that saw no marker has finished its upload, but a bucket listing may
        # lag behind a PUT for a moment (Ceph RGW completes its index entry
        # asynchronously): a second listing a little later deletes what the first missed.
        for pause in (0.0, QUARANTINE_RELIST_SECONDS):
            time.sleep(pause)
            for key in list(self.s3.list_keys(self._key(content_hash, ""))):
                if key not in keep:
                    self.s3.client.delete_object(Bucket=self.s3.bucket, Key=key)
                    removed += 1
        shutil.rmtree(self.copy.path(f"d/{content_hash}"), ignore_errors=True)
        return removed

    def metadata(self, content_hash: str) -> dict[str, Any]:
        got = self.s3.get_bytes(self._key(content_hash, "metadata.json"))
        return json.loads(got[0]) if got else {}

    def update_metadata(self, content_hash: str, update: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        key = self._key(content_hash, "metadata.json")
        delay = 0.01
        for _ in range(50):
            got = self.s3.get_bytes(key)
            meta = json.loads(got[0]) if got else {}
            update(meta)
            body = json.dumps(meta, ensure_ascii=False).encode()
            if (self.s3.replace(key, body, got[1]) if got else self.s3.create(key, body)):
                return meta
            time.sleep(delay)  # another writer won: re-read and apply again
            delay = min(delay * 2, 0.2)
        raise ServiceOverloaded("processing state is being updated concurrently; retry shortly", retry_after=2)

    def _deferred_key(self, content_hash: str) -> str:
        self._key(content_hash, "")  # validates the hash
        return self.s3.key(".deferred-jobs", f"{content_hash}.json")

    def defer_jobs(self, content_hash: str, note: dict[str, Any]) -> None:
        self.s3.client.put_object(Bucket=self.s3.bucket, Key=self._deferred_key(content_hash),
                                  Body=json.dumps(note).encode(), ContentType="application/json")

    def deferred_jobs(self) -> dict[str, dict[str, Any]]:
        found = {}
        for key in self.s3.list_keys(self.s3.key(".deferred-jobs") + "/"):
            content_hash = key.rsplit("/", 1)[-1][:-5]
            got = self.s3.get_bytes(key) if is_content_hash(content_hash) else None
            if got is not None:
                found[content_hash] = json.loads(got[0])
        return found

    def forget_deferred_jobs(self, content_hash: str) -> None:
        self.s3.client.delete_object(Bucket=self.s3.bucket, Key=self._deferred_key(content_hash))

    @contextmanager
    def exclusive(self, content_hash: str, name: str, timeout: float) -> Iterator[None]:
        # One producer per host (a flock), and with a shared lock one across instances.
        # Without it (no REDIS_URL, Redis down, a render outliving the lock's expiry) a
        # second producer on another instance writes the same bytes: an idempotent
        # overwrite of a derived file, never a torn one, only work done twice.
        self._key(content_hash, name)
        busy = "this file is being processed; retry shortly"
        deadline = time.monotonic() + timeout
        with file_lock(self.lock_root / f"{content_hash}.{name}.lock", timeout, busy_message=busy):
            if self.shared_lock is None:
                yield
                return
            with self.shared_lock(f"{content_hash}:{name}", max(0.0, deadline - time.monotonic())):
                yield


def _iso_to_epoch(value: str | None) -> float:
    if not value:
        return 0.0
    from datetime import datetime

    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


__all__ = ["S3Bucket", "S3ContentStore", "S3DerivedCache"]
