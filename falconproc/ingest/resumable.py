"""Resumable uploads (tus 1.0.0): partial uploads on disk, ingested like POST /upload at
their last byte.

Each upload is two files in ``UPLOADS_PATH``: ``<id>.json`` (declared length, metadata,
uploader, expiry, state, and once ingested the answer of POST /upload) and ``<id>.part``
(the bytes so far; its size is the offset, so a chunk costs no metadata write). Both
survive a restart, and any instance that mounts the same directory can resume an upload:
a chunk is written under an exclusive ``flock`` of the part file (a second writer gets
423), and the offset is re-read under it.

A chunk cut off by a dropped connection keeps the bytes that arrived (the client resumes
from HEAD's Upload-Offset); a chunk whose ``Upload-Checksum`` does not match is cut off
again (460). When the offset reaches the length, the part file is streamed through
``IngestService.ingest`` (the same probe, limits, dedup, jobs and errors), the answer is
kept in the JSON file and the part file removed. A refusal that may pass (503, 507, 429)
keeps the bytes: an empty PATCH at the full offset tries the ingest again.
"""
from __future__ import annotations

import base64
import errno
import fcntl
import hashlib
import json
import logging
import os
import secrets
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from falconproc.config import Settings
from falconproc.errors import (
    ChecksumMismatch,
    IncompleteUpload,
    InsufficientStorage,
    RateLimited,
    ServiceOverloaded,
    UploadLocked,
    UploadNotFound,
    UploadOffsetMismatch,
    UploadTooLarge,
)
from falconproc.ingest.service import IngestService, UploadRequest

log = logging.getLogger(__name__)

SWEEP_INTERVAL = 60.0  # seconds between sweeps of expired uploads, per process
_RETRYABLE = (ServiceOverloaded, InsufficientStorage, RateLimited)


def _valid_id(upload_id: str) -> bool:
    return len(upload_id) == 32 and all(c in "0123456789abcdef" for c in upload_id)


@dataclass
class PartialUpload:
    id: str
    length: int
    filename: str
    drive_id: str
    user_id: str
    metadata: str  # the Upload-Metadata header as sent (HEAD gives it back)
    created: float
    expires: float
    state: str = "uploading"  # uploading | ingesting | done
    result: dict[str, Any] | None = None
    offset: int = field(default=0, compare=False)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("offset")
        return data


class ResumableUploads:
    def __init__(self, settings: Settings, ingest: IngestService):
        self.settings = settings
        self.ingest = ingest
        self.root = settings.uploads_path
        self._last_sweep = 0.0

    # ---------------------------------------------------------------- files

    def _paths(self, upload_id: str) -> tuple[Path, Path]:
        if not _valid_id(upload_id):
            raise UploadNotFound("no such upload")
        return self.root / f"{upload_id}.json", self.root / f"{upload_id}.part"

    def _write_info(self, upload: PartialUpload) -> None:
        info, _ = self._paths(upload.id)
        tmp = info.with_suffix(f".tmp{os.getpid()}")
        with open(tmp, "w") as fh:
            json.dump(upload.to_json(), fh)
            if self.settings.fsync:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, info)

    def _read_info(self, upload_id: str) -> PartialUpload:
        info, part = self._paths(upload_id)
        try:
            upload = PartialUpload(**json.loads(info.read_text()))
        except FileNotFoundError:
            raise UploadNotFound("no such upload (never created, terminated, or expired)") from None
        if upload.expires < time.time():
            self._remove(upload_id)
            raise UploadNotFound("this upload has expired")
        try:
            upload.offset = part.stat().st_size
        except FileNotFoundError:
            upload.offset = upload.length if upload.state == "done" else 0
        return upload

    def _remove(self, upload_id: str) -> None:
        info, part = self._paths(upload_id)
        for path in (part, info):
            try:
                path.unlink()
            except FileNotFoundError:
                pass

    def _locked(self, part: Path) -> int:
        """An exclusive, non-blocking lock on the part file: one writer at a time, across
        processes and (on a shared filesystem with flock) instances."""
        try:
            fd = os.open(part, os.O_RDWR)
        except FileNotFoundError:
            raise UploadNotFound("no such upload") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise UploadLocked("another request is writing to this upload; retry after it ends") from None
        return fd

    # ---------------------------------------------------------------- limits

    def _free_space(self) -> int:
        st = os.statvfs(self.root)
        return st.f_bavail * st.f_frsize

    def _pending_bytes(self) -> int:
        total = 0
        for info in self.root.glob("*.json"):
            try:
                data = json.loads(info.read_text())
            except (OSError, ValueError):
                continue
            if data.get("state") != "done":
                total += int(data.get("length", 0))
        return total

    def sweep(self, *, force: bool = False) -> int:
        """Delete expired uploads (and temp files of crashed writers); at most once a
        minute per process unless forced. Returns how many uploads were deleted."""
        now = time.time()
        if not force and now - self._last_sweep < SWEEP_INTERVAL:
            return 0
        self._last_sweep = now
        removed = 0
        for info in self.root.glob("*.json"):
            try:
                expired = json.loads(info.read_text()).get("expires", 0) < now
            except (OSError, ValueError):
                expired = info.stat().st_mtime < now - self.settings.upload_expiry_seconds
            if expired and _valid_id(info.stem):
                self._remove(info.stem)
                removed += 1
        for tmp in self.root.glob("*.tmp*"):
            if tmp.stat().st_mtime < now - 3600:
                tmp.unlink(missing_ok=True)
        return removed

    # ---------------------------------------------------------------- protocol

    def create(self, length: int, filename: str, drive_id: str, user_id: str, metadata: str) -> PartialUpload:
        self.root.mkdir(parents=True, exist_ok=True)
        self.sweep()
        if length > self.settings.max_upload_bytes:
            raise UploadTooLarge(self.settings.max_upload_bytes)
        # Rate limit, memory and queue pressure and the store's reserve, as for POST /upload.
        self.ingest.check_admission(length, user_id)
        if self._free_space() - length < self.settings.uploads_reserve_bytes:
            raise InsufficientStorage(errno.ENOSPC, "not enough free space for partial uploads")
        cap = self.settings.uploads_max_bytes
        if cap and self._pending_bytes() + length > cap:
            raise InsufficientStorage(errno.EDQUOT, "too many unfinished resumable uploads; finish or "
                                                    "terminate some first")
        now = time.time()
        upload = PartialUpload(secrets.token_hex(16), length, filename, drive_id, user_id, metadata, now,
                               now + self.settings.upload_expiry_seconds)
        _, part = self._paths(upload.id)
        part.touch(exist_ok=False)
        self._write_info(upload)
        return upload

    def get(self, upload_id: str) -> PartialUpload:
        return self._read_info(upload_id)

    def append(self, upload_id: str, offset: int, body: BinaryIO, content_length: int | None,
               checksum: bytes | None = None) -> PartialUpload:
        """Write one chunk at ``offset``; ingest when it was the last. ``checksum`` is the
        chunk's SHA-256 (from Upload-Checksum)."""
        _, part = self._paths(upload_id)
        upload = self._read_info(upload_id)
        fd = self._locked(part)
        try:
            upload = self._read_info(upload_id)  # under the lock: the offset is settled
            if upload.state != "uploading":
                raise UploadOffsetMismatch(upload.length, offset)
            if offset != upload.offset:
                raise UploadOffsetMismatch(upload.offset, offset)
            if content_length is not None and offset + content_length > upload.length:
                raise UploadTooLarge(upload.length)
            self.ingest.check_pressure()
            with self.ingest.upload_slot():
                upload.offset = self._write_chunk(fd, upload, body, content_length, checksum)
        finally:
            os.close(fd)  # releases the lock
        if upload.offset == upload.length:
            return self._finish(upload)
        return upload

    def _write_chunk(self, fd: int, upload: PartialUpload, body: BinaryIO, content_length: int | None,
                     checksum: bytes | None) -> int:
        start = upload.offset
        room = upload.length - start
        remaining = room if content_length is None else content_length
        digest = hashlib.sha256() if checksum is not None else None
        block = self.settings.read_chunk_bytes
        os.lseek(fd, start, os.SEEK_SET)
        written = 0
        try:
            while remaining > 0:
                chunk = body.read(min(block, remaining))
                if not chunk:
                    break
                if digest is not None:
                    digest.update(chunk)
                os.write(fd, chunk)  # a regular file: one write takes the whole block
                written += len(chunk)
                remaining -= len(chunk)
                if self._free_space() < self.settings.uploads_reserve_bytes:
                    raise InsufficientStorage(errno.ENOSPC, "partial uploads ran out of free space")
            if content_length is None and body.read(1):
                raise UploadTooLarge(upload.length)
            if content_length is not None and remaining > 0:
                raise IncompleteUpload(f"the chunk ended after {written} of {content_length} bytes")
            if digest is not None and digest.digest() != checksum:
                os.ftruncate(fd, start)  # discard the chunk (tus checksum extension)
                raise ChecksumMismatch("Upload-Checksum does not match the chunk; it was discarded")
        except (UploadTooLarge, InsufficientStorage):
            os.ftruncate(fd, start)
            raise
        except ChecksumMismatch:
            raise
        except Exception:
            # Connection dropped mid-chunk: keep what arrived (unless it has to be
            # verified), so the client resumes from HEAD's offset.
            if digest is not None:
                os.ftruncate(fd, start)
            else:
                self._sync(fd)
            raise
        self._sync(fd)
        return start + written

    def _sync(self, fd: int) -> None:
        if self.settings.fsync:
            os.fsync(fd)

    def _finish(self, upload: PartialUpload) -> PartialUpload:
        _, part = self._paths(upload.id)
        fd = self._locked(part)
        try:
            upload = self._read_info(upload.id)
            if upload.state != "uploading":
                return upload
            upload.state = "ingesting"
            self._write_info(upload)
            request = UploadRequest(filename=upload.filename, drive_id=upload.drive_id, user_id=upload.user_id,
                                    expected_sha256=None, content_length=upload.length)
            try:
                with open(part, "rb") as fh:
                    outcome = self.ingest.ingest(request, fh, rate_limited=False)  # counted at creation
            except _RETRYABLE:
                upload.state = "uploading"  # the bytes stay: an empty PATCH at the end retries
                self._write_info(upload)
                raise
            except BaseException:
                self._remove(upload.id)  # refused for good (type, size, image bomb): nothing kept
                raise
            upload.state = "done"
            upload.result = outcome.to_json(upload.filename)
            self._write_info(upload)
            part.unlink()
        finally:
            os.close(fd)
        upload.offset = upload.length
        return upload

    def terminate(self, upload_id: str) -> None:
        _, part = self._paths(upload_id)
        self._read_info(upload_id)
        if part.exists():
            fd = self._locked(part)
            try:
                self._remove(upload_id)
            finally:
                os.close(fd)
        else:
            self._remove(upload_id)


def decode_metadata(header: str) -> dict[str, str]:
    """``Upload-Metadata: key base64,key2 base64,flag``; values decoded as UTF-8."""
    out: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in header.split(","))):
        key, _, value = item.partition(" ")
        try:
            out[key] = base64.b64decode(value.strip(), validate=True).decode("utf-8") if value.strip() else ""
        except (ValueError, UnicodeDecodeError):
            raise ValueError(f"Upload-Metadata value of {key!r} is not base64 of UTF-8 text") from None
    return out
