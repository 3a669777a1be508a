"""Ingest: stream an upload through the native probe into the store.

One pass over the body: each block read from the socket is hashed, counted,
sniffed and written to the store's temp file by the native hot path. The whole
upload is never in memory. Validation that can happen before reading (size
from Content-Length, free space) happens first; everything else decides
between commit and abort, and an abort leaves nothing behind.
"""
from __future__ import annotations

import errno
import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, BinaryIO, Protocol

from falconproc.clock import iso_utc
from falconproc.config import Settings
from falconproc.errors import (
    EmptyUpload,
    HashMismatch,
    IncompleteUpload,
    InsufficientStorage,
    ServiceOverloaded,
    UnsupportedType,
    UploadTooLarge,
)
from falconproc.images.pipeline import check_dimensions
from falconproc.ingest.sniff import refine_zip
from falconproc.mediatypes import ZIP, allowed_types
from falconproc.native.ingest import IngestProbe, ProbeResult
from falconproc.observability import metrics
from falconproc.queue import QueueFull, QueueUnavailable
from falconproc.store import ContentStore, UploadRecord
from falconproc.store.base import PendingUpload

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UploadRequest:
    filename: str  # already decoded and sanitised
    drive_id: str
    user_id: str
    expected_sha256: str | None
    content_length: int | None  # of the bytes to store; None when unknown (chunked, or a form's file part)
    # What admission judges size and free space by, when not content_length (a form's envelope).
    admission_length: int | None = None

    @property
    def declared_length(self) -> int | None:
        return self.admission_length if self.admission_length is not None else self.content_length


@dataclass
class IngestOutcome:
    content_hash: str
    metadata: dict[str, Any]
    is_new: bool
    jobs: list[dict[str, Any]] = field(default_factory=list)
    # The job queue did not answer: the content is stored, its jobs are queued later.
    jobs_deferred: bool = False

    def to_json(self, filename: str) -> dict[str, Any]:
        """The answer of POST /upload (and of a finished resumable upload)."""
        return {
            "contentHash": self.content_hash,
            "originalName": filename,
            "size": self.metadata["size"],
            "mimeType": self.metadata["mimeType"],
            "isNew": self.is_new,
            "metadata": self.metadata,
            "jobs": self.jobs,
            **({"jobsDeferred": True} if self.jobs_deferred else {}),
        }


class JobScheduler(Protocol):
    """The seam for processing: given stored content, enqueue its jobs (``payloads``: what
    the work done while the body arrived tells a job type; ``delays``: seconds a job type's
    job waits before it may start)."""

    def check_capacity(self) -> None: ...

    def jobs_for(self, content_hash: str, metadata: dict[str, Any], is_new: bool,
                 payloads: Mapping[str, dict[str, Any]] | None = None,
                 delays: Mapping[str, float] | None = None) -> list[dict[str, Any]]: ...


class NoJobs:
    def check_capacity(self) -> None:
        return None

    def jobs_for(self, content_hash: str, metadata: dict[str, Any], is_new: bool,
                 payloads: Mapping[str, dict[str, Any]] | None = None,
                 delays: Mapping[str, float] | None = None) -> list[dict[str, Any]]:
        return []


class StreamSession(Protocol):
    def cancel(self) -> None: ...


class UploadScanner(Protocol):
    """The seam for work done while the body arrives: a virus scan fed from the spool."""

    def start_streamed(self, pending: PendingUpload) -> StreamSession | None: ...

    #: Seconds the `scan` job of a streamed upload waits before it starts (its verdict is on its way).
    streamed_job_delay: float

    def finish_streamed(self, session: StreamSession, content_hash: str, is_new: bool) -> dict[str, Any] | None:
        """After commit: the `scan` job's payload (it waits for the streamed verdict), or None."""


class AdmitAll:
    def check_upload(self) -> None:
        return None


class IngestService:
    def __init__(self, settings: Settings, store: ContentStore, *, scheduler: JobScheduler | None = None,
                 governor: Any = None, probe_factory: Callable[..., Any] | None = None,
                 rate_limiter: Any = None, scanner: UploadScanner | None = None):
        self.settings = settings
        self.store = store
        self.scheduler = scheduler or NoJobs()
        self.scanner = scanner
        self.governor = governor or AdmitAll()
        self.rate_limiter = rate_limiter
        self.probe_factory = probe_factory or IngestProbe
        self.allowed = allowed_types(settings.allowed_types)
        self.slots = settings.upload_slots or max(1, settings.web_threads * 3 // 4)
        self._slots = threading.BoundedSemaphore(self.slots)

    @contextmanager
    def upload_slot(self) -> Iterator[None]:
        """One of this process's upload slots while a body is read: slow clients can hold
        at most UPLOAD_SLOTS threads, the others stay free for reads. None free: 503 now
        (not a queue that would hold the thread)."""
        if not self._slots.acquire(blocking=False):
            raise ServiceOverloaded("every upload slot of this worker is busy (slow uploads); retry shortly",
                                    retry_after=2)
        try:
            yield
        finally:
            self._slots.release()

    def check_pressure(self) -> None:
        """Memory pressure: 503 before reading more of any upload (a resumable one's chunks too)."""
        self.governor.check_upload()

    def check_admission(self, content_length: int | None, user_id: str, *, writes: bool = True,
                        rate_limited: bool = True) -> None:
        """Refuse before reading a byte: too large, this user too fast, memory or queue
        pressure, disk full (the last two only for an upload that will store something)."""
        limit = self.settings.max_upload_bytes
        if content_length is not None and content_length > limit:
            raise UploadTooLarge(limit)
        if self.rate_limiter is not None and rate_limited:
            self.rate_limiter.check(user_id)
        self.governor.check_upload()
        if not writes:
            return
        try:
            self.scheduler.check_capacity()
        except QueueFull as exc:
            raise ServiceOverloaded(str(exc), retry_after=10) from None
        needed = content_length or 0
        if self.store.free_space() - needed < self.settings.storage_reserve_bytes:
            raise InsufficientStorage(errno.ENOSPC, "not enough free storage space for this upload")

    def ingest(self, request: UploadRequest, body: BinaryIO,
               open_body: Callable[[], str | None] | None = None, *, rate_limited: bool = True) -> IngestOutcome:
        """Store ``body``. ``open_body``, called once admitted and before the content is
        read, positions the body at the content (a form's file part) and may return the
        file name (when the request had none). ``rate_limited=False``: the upload was
        counted already (a resumable upload, at its creation)."""
        if request.expected_sha256 and self.store.exists(request.expected_sha256):
            return self._ingest_known(request, body, open_body)
        self.check_admission(request.declared_length, request.user_id, rate_limited=rate_limited)
        with self.upload_slot():
            return self._ingest_new(_opened(request, open_body), body)

    def _ingest_new(self, request: UploadRequest, body: BinaryIO) -> IngestOutcome:
        pending = self.store.begin_upload(request.expected_sha256)
        scan: StreamSession | None = None
        try:
            if self.scanner is not None:
                scan = self.scanner.start_streamed(pending)
            result = self._stream(request, body, pending.fileno(), pending)
            pending.finished_writing()
            mime_type = result.mime_type
            if mime_type == ZIP:
                with pending.open_written() as written:
                    mime_type = refine_zip(written)
            if mime_type not in self.allowed:
                raise UnsupportedType(mime_type, list(self.allowed))
            # Decompression bombs are refused from the header, before anything decodes them.
            check_dimensions(result.width, result.height, self.settings)
        except BaseException:
            pending.abort()
            if scan is not None:
                scan.cancel()
            raise
        uploaded_at = iso_utc()
        record = UploadRecord(request.drive_id, request.user_id, request.filename, uploaded_at)
        metadata = build_metadata(result, mime_type, record)
        try:
            metadata, is_new = self.store.commit(pending, result.sha256, metadata, record)
        except BaseException as exc:
            if scan is not None:
                scan.cancel()  # nothing stored: no verdict to record
            if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise InsufficientStorage(exc.errno, "storage is full") from exc
            raise
        metrics.record_upload(result.size, is_new)
        payloads: dict[str, dict[str, Any]] = {}
        delays: dict[str, float] = {}
        if scan is not None and self.scanner is not None:
            # The answer does not wait for clamd's verdict (its scan starts after the last
            # byte: 0.9-2.7 s for 100 MB here); the scan job waits for it instead.
            streamed = self.scanner.finish_streamed(scan, result.sha256, is_new)
            if streamed is not None:
                payloads["scan"] = streamed
                delays["scan"] = self.scanner.streamed_job_delay
        try:
            jobs = self.scheduler.jobs_for(result.sha256, metadata, is_new, payloads, delays)
        except QueueUnavailable:  # stored: never a 500 for it; the scheduler noted its jobs
            log.warning("upload %s stored; the job queue does not answer, its jobs are deferred", result.sha256)
            return IngestOutcome(result.sha256, metadata, is_new, [], jobs_deferred=True)
        return IngestOutcome(result.sha256, metadata, is_new, jobs)

    def _ingest_known(self, request: UploadRequest, body: BinaryIO,
                      open_body: Callable[[], str | None] | None) -> IngestOutcome:
        """The client's x-content-sha256 names bytes already stored: the body is hashed to
        prove it and nothing is written (no disk, no free-space reserve, no jobs), so a
        duplicate goes through even on a nearly full disk or a full queue."""
        self.check_admission(request.declared_length, request.user_id, writes=False)
        with self.upload_slot():
            request = _opened(request, open_body)
            result = self._stream(request, body, -1)  # HashMismatch unless the bytes are the ones named
        record = UploadRecord(request.drive_id, request.user_id, request.filename, iso_utc())
        metadata = self.store.add_upload(result.sha256, record)
        metrics.record_upload(result.size, False)
        return IngestOutcome(result.sha256, metadata, False, [])

    def _check_reserve(self, remaining: int | None) -> None:
        """Admission checked the reserve against Content-Length; a chunked body (size
        unknown) and uploads running side by side can still eat into it, so it is
        checked again after every block (one statvfs, ~µs)."""
        reserve = self.settings.storage_reserve_bytes
        if reserve and self.store.free_space() - (remaining or 0) < reserve:
            raise InsufficientStorage(errno.ENOSPC, "this upload would leave less free storage than the reserve")

    def _stream(self, request: UploadRequest, body: BinaryIO, fd: int,
                pending: PendingUpload | None = None) -> ProbeResult:
        probe = self.probe_factory(self.settings.max_upload_bytes, fd)
        block = self.settings.read_chunk_bytes
        remaining = request.content_length
        try:
            while remaining is None or remaining > 0:
                want = block if remaining is None else min(block, remaining)
                chunk = body.read(want)
                if not chunk:
                    break
                probe.feed(chunk)
                if pending is not None:
                    pending.wrote()  # its followers (part uploads, the streamed scan) read on
                if remaining is not None:
                    remaining -= len(chunk)
                if fd >= 0:
                    self._check_reserve(remaining)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise InsufficientStorage(exc.errno, "storage is full") from exc
            raise
        if remaining:
            raise IncompleteUpload(f"body ended after {probe.size} of {request.content_length} bytes")
        result = probe.finish()
        if result.size == 0:
            raise EmptyUpload("the request body is empty")
        if request.expected_sha256 and request.expected_sha256 != result.sha256:
            raise HashMismatch(request.expected_sha256, result.sha256)
        return result


def _opened(request: UploadRequest, open_body: Callable[[], str | None] | None) -> UploadRequest:
    if open_body is None:
        return request
    name = open_body()
    return replace(request, filename=name) if name is not None else request


def build_metadata(result: ProbeResult, mime_type: str, record: UploadRecord) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "contentHash": result.sha256,
        "originalName": record.original_name,
        "size": result.size,
        "mimeType": mime_type,
        "uploadedAt": record.uploaded_at,
        "uploadedBy": record.user_id,
        "driveId": record.drive_id,
        "uploads": [record.to_json()],
    }
    if result.width is not None and result.height is not None:
        metadata["image"] = {"width": result.width, "height": result.height, "frames": result.frames}
    return metadata
