"""create_app(): the Falcon app's routes and middleware over the composition root's
objects, and the one place where domain errors become HTTP answers."""
from __future__ import annotations

import hmac
import logging
from typing import Any

import falcon
from PIL import Image

from falconproc.errors import (
    ChecksumMismatch,
    ContentNotFound,
    ContentQuarantined,
    DocumentUnrenderable,
    EmptyUpload,
    HashMismatch,
    IncompleteUpload,
    InsufficientStorage,
    RateLimited,
    RendererNotAvailable,
    ServiceOverloaded,
    UnsupportedType,
    UploadLocked,
    UploadNotFound,
    UploadOffsetMismatch,
    UploadTooLarge,
)
from falconproc.images.pipeline import ImageTooLarge, ImageUnreadable, NotRenderable
from falconproc.images.service import UnknownPreset
from falconproc.ingest.multipart import MultipartError
from falconproc.observability.metrics import MetricsMiddleware, MetricsResource, ServiceStateCollector
from falconproc.queue import QueueUnavailable
from falconproc.scan.service import Quarantined, ScanFailed, ScanPending
from falconproc.video.tools import VideoToolsMissing, VideoUnreadable
from falconproc.web.resources.content import MetadataResource, OriginalResource, require_hash
from falconproc.web.resources.errors import ApiError, error_body
from falconproc.web.resources.health import HealthResource
from falconproc.web.resources.images import OptimizeResource, PresetResource
from falconproc.web.resources.jobs import JobResource
from falconproc.web.resources.openapi import OpenApiResource
from falconproc.web.resources.text import TextResource
from falconproc.web.resources.tus import TusHeaders, UploadResource as TusUploadResource, UploadsResource
from falconproc.web.requestid import RequestIdMiddleware
from falconproc.web.quarantine import ScanGate
from falconproc.web.resources.upload import UploadResource
from falconproc.wiring import Components

log = logging.getLogger(__name__)

PUBLIC_PATHS = frozenset({"/health", "/metrics", "/openapi.json"})


class BearerAuth:
    """Every route but /health, /metrics and /openapi.json needs the token, when one is configured."""

    def __init__(self, token: str):
        self.expected = f"Bearer {token}".encode()

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        if req.path in PUBLIC_PATHS:
            return
        scheme, _, credentials = (req.get_header("Authorization") or "").strip().partition(" ")
        # The scheme is case-insensitive (RFC 9110 11.1); the token is compared in constant time.
        given = f"Bearer {credentials.strip()}".encode("utf-8", "surrogateescape")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given, self.expected):
            raise ApiError(falcon.HTTP_401, "unauthorized", "a valid bearer token is required",
                           headers={"WWW-Authenticate": 'Bearer realm="falconproc"'})


def _serialize_error(req: falcon.Request, resp: falcon.Response, exc: falcon.HTTPError) -> None:
    resp.content_type = falcon.MEDIA_JSON
    resp.media = error_body(exc)


def _map(status: str, code: str, *, message: str | None = None, retry_after: bool = False, extra=None):
    """An error handler turning a domain error into an ApiError."""

    def handler(req: falcon.Request, resp: falcon.Response, exc: Exception, params: dict[str, Any]) -> None:
        fields = extra(exc) if extra else {}
        headers = {"Retry-After": str(getattr(exc, "retry_after", 5))} if retry_after else None
        text = message or getattr(exc, "strerror", None) or str(exc) or code
        raise ApiError(status, code, text, headers=headers, **fields)

    return handler


def _unexpected(req: falcon.Request, resp: falcon.Response, exc: Exception, params: dict[str, Any]) -> None:
    if isinstance(exc, falcon.HTTPError):
        raise exc
    log.exception("unhandled error on %s %s", req.method, req.path)
    raise ApiError(falcon.HTTP_500, "internal_error", "the service failed to handle this request")


def _cache_fallback(req: falcon.Request, resp: falcon.Response) -> None:
    """A /cache/ path no route matched: the server already decoded %2F, so a traversal
    attempt lands here. A bad hash is 400 as the contract says; anything else 404."""
    first = req.path[len("/cache/"):].split("/", 1)[0]
    require_hash(first)
    raise ApiError(falcon.HTTP_404, "not_found", "no such resource")


def create_app(components: Components | None = None) -> falcon.App:
    """The Falcon app over one process's components (from the environment by default)."""
    components = components or Components()
    settings = components.settings
    store, queue, images = components.store, components.queue, components.images

    middleware: list[Any] = [RequestIdMiddleware(), MetricsMiddleware()]
    if settings.auth_token:
        middleware.append(BearerAuth(settings.auth_token))
    middleware.append(TusHeaders())
    gate = None
    if settings.scan_mode != "off":
        middleware.append(ScanGate(components.scan))
        gate = components.scan.check
    app = falcon.App(middleware=middleware)
    app.req_options.strip_url_path_trailing_slash = True
    app.set_error_serializer(_serialize_error)

    app.add_route("/upload", UploadResource(components.ingest))
    app.add_route("/uploads", UploadsResource(components.resumable, settings.max_upload_bytes))
    app.add_route("/uploads/{upload_id}", TusUploadResource(components.resumable))
    app.add_route("/cache/{content_hash}/original", OriginalResource(store))
    app.add_route("/cache/{content_hash}/metadata", MetadataResource(store, components.processing_state))
    app.add_route("/cache/{content_hash}/text", TextResource(store, components.text, queue))
    app.add_route("/cache/{content_hash}/{preset}", PresetResource(images, queue))
    app.add_route("/optimize-for-ai", OptimizeResource(images, gate))
    app.add_sink(_cache_fallback, prefix="/cache/")
    app.add_route("/health", HealthResource(components.health))
    app.add_route("/metrics", MetricsResource(ServiceStateCollector(
        queue.stats, components.governor, store, oldest_pending=queue.oldest_pending)))
    app.add_route("/jobs/{job_id}", JobResource(queue))
    app.add_route("/openapi.json", OpenApiResource())

    # Most general first: Falcon picks the most specific handler for an exception's MRO.
    app.add_error_handler(Exception, _unexpected)
    app.add_error_handler(UploadTooLarge, _map(falcon.HTTP_413, "payload_too_large",
                                               extra=lambda e: {"limit": e.limit}))
    app.add_error_handler(UnsupportedType, _map(falcon.HTTP_415, "unsupported_type",
                                                extra=lambda e: {"mimeType": e.mime_type,
                                                                 "supportedTypes": e.supported}))
    app.add_error_handler(HashMismatch, _map(falcon.HTTP_400, "hash_mismatch",
                                             extra=lambda e: {"expected": e.expected, "actual": e.actual}))
    app.add_error_handler(EmptyUpload, _map(falcon.HTTP_400, "empty_body"))
    app.add_error_handler(MultipartError, _map(falcon.HTTP_400, "invalid_form"))
    app.add_error_handler(IncompleteUpload, _map(falcon.HTTP_400, "incomplete_body"))
    app.add_error_handler(InsufficientStorage, _map(falcon.HTTP_507, "insufficient_storage"))
    app.add_error_handler(ContentNotFound, _map(falcon.HTTP_404, "not_found",
                                                message="no content is stored under this hash"))
    app.add_error_handler(UnknownPreset, _map(falcon.HTTP_404, "unknown_preset",
                                              extra=lambda e: {"presets": e.known}))
    app.add_error_handler(NotRenderable, _map(falcon.HTTP_415, "not_an_image"))
    app.add_error_handler(ImageTooLarge, _map(falcon.HTTP_422, "image_too_large",
                                              extra=lambda e: {"width": e.width, "height": e.height}))
    app.add_error_handler(Image.DecompressionBombError, _map(falcon.HTTP_422, "image_too_large"))
    app.add_error_handler(ImageUnreadable, _map(falcon.HTTP_422, "image_unreadable"))
    app.add_error_handler(VideoUnreadable, _map(falcon.HTTP_422, "video_unreadable",
                                                extra=lambda e: {"reason": e.reason}))
    app.add_error_handler(VideoToolsMissing, _map(falcon.HTTP_404, "not_available"))
    app.add_error_handler(DocumentUnrenderable, _map(falcon.HTTP_422, "document_unrenderable",
                                                     extra=lambda e: {"reason": e.reason}))
    app.add_error_handler(RendererNotAvailable, _map(falcon.HTTP_404, "not_available"))
    app.add_error_handler(Quarantined, _map(falcon.HTTP_403, "quarantined",
                                            extra=lambda e: {"signature": e.signature}))
    app.add_error_handler(ContentQuarantined, _map(falcon.HTTP_403, "quarantined"))
    app.add_error_handler(ScanPending, _map(falcon.HTTP_409, "scan_pending", retry_after=True))
    app.add_error_handler(ScanFailed, _map(falcon.HTTP_422, "scan_failed"))
    app.add_error_handler(ServiceOverloaded, _map(falcon.HTTP_503, "overloaded", retry_after=True))
    app.add_error_handler(QueueUnavailable, _map(falcon.HTTP_503, "queue_unavailable", retry_after=True))
    app.add_error_handler(RateLimited, _map(falcon.HTTP_429, "rate_limited", retry_after=True,
                                            extra=lambda e: {"limit": e.limit, "retryAfter": e.retry_after}))
    app.add_error_handler(UploadNotFound, _map(falcon.HTTP_404, "upload_not_found"))
    app.add_error_handler(UploadOffsetMismatch, _map(falcon.HTTP_409, "offset_mismatch",
                                                     extra=lambda e: {"offset": e.offset}))
    app.add_error_handler(UploadLocked, _map(falcon.HTTP_423, "upload_locked"))
    app.add_error_handler(ChecksumMismatch, _map("460 Checksum Mismatch", "checksum_mismatch"))
    return app
