"""Domain errors. Each subclasses the nearest builtin; app.py maps them to HTTP."""
from __future__ import annotations

from typing import Any


class FalconprocError(Exception):
    """Base class for errors the service reports to clients."""


class UploadTooLarge(FalconprocError, ValueError):
    """The body is longer than MAX_UPLOAD_BYTES."""

    def __init__(self, limit: int):
        super().__init__(f"upload exceeds the limit of {limit} bytes")
        self.limit = limit


class UnsupportedType(FalconprocError, ValueError):
    """The sniffed content type is not accepted."""

    def __init__(self, mime_type: str, supported: list[str]):
        super().__init__(f"content type {mime_type} is not accepted")
        self.mime_type = mime_type
        self.supported = supported


class HashMismatch(FalconprocError, ValueError):
    """The client's x-content-sha256 differs from the bytes received."""

    def __init__(self, expected: str, actual: str):
        super().__init__(f"x-content-sha256 {expected} does not match the body's SHA-256 {actual}")
        self.expected = expected
        self.actual = actual


class EmptyUpload(FalconprocError, ValueError):
    """The body has no bytes."""


class IncompleteUpload(FalconprocError, ValueError):
    """The client sent fewer bytes than its Content-Length announced (disconnect)."""


class InsufficientStorage(FalconprocError, OSError):
    """The store would drop below its free-space reserve, or the disk is full."""


class ContentNotFound(FalconprocError, FileNotFoundError):
    """No stored content under this hash (or no such derived file)."""


class ServiceOverloaded(FalconprocError, RuntimeError):
    """Memory or queue pressure: the client should retry after a while."""

    def __init__(self, message: str, retry_after: int = 5):
        super().__init__(message)
        self.retry_after = retry_after


class RateLimited(FalconprocError, RuntimeError):
    """One client (x-user-id) made more uploads than its rate limit allows."""

    def __init__(self, message: str, *, limit: str, retry_after: int):
        super().__init__(message)
        self.limit = limit
        self.retry_after = retry_after


class UploadNotFound(FalconprocError, LookupError):
    """No resumable upload under this id (never created, terminated or expired)."""


class UploadOffsetMismatch(FalconprocError, ValueError):
    """A resumable upload's chunk does not start where the stored bytes end."""

    def __init__(self, offset: int, given: int):
        super().__init__(f"Upload-Offset {given} does not match the {offset} bytes received; HEAD the upload "
                         "and resume from its Upload-Offset")
        self.offset = offset


class UploadLocked(FalconprocError, RuntimeError):
    """Another request is writing to this resumable upload right now."""


class ChecksumMismatch(FalconprocError, ValueError):
    """A chunk's Upload-Checksum does not match its bytes; the chunk was discarded."""


class ContentQuarantined(FalconprocError, PermissionError):
    """A derived file of content found infected: it is not kept (the job producing it
    fails for good, not retried)."""


class DocumentUnrenderable(FalconprocError, ValueError):
    """A document's page 1 could not be rendered, for good: ``reason`` is encrypted, corrupt,
    refused, empty, conversion_failed or timed_out."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


class RendererNotAvailable(FalconprocError, LookupError):
    """This document type needs a renderer this installation lacks (LibreOffice)."""


class StandInPending(FalconprocError, RuntimeError):
    """The job that makes the image a video's or document's presets come from (its
    ``job_type``) has not made it yet: the preset route answers 202 with that job
    (``job``, when the raiser already queued or found it)."""

    job_type = ""

    def __init__(self, message: str, job: Any = None):  # a queue Job (errors stay below queue)
        super().__init__(message)
        self.job = job


class PageImagePending(StandInPending):
    """The document job has not rendered page 1 yet."""

    job_type = "document"


class PosterPending(StandInPending):
    """The video job has not made the poster frame yet (it waits for the memory governor,
    a job slot, or no supervisor runs)."""

    job_type = "video"
