"""GET|HEAD /cache/{contentHash}/{preset} and POST /optimize-for-ai."""
from __future__ import annotations

from collections.abc import Callable

import falcon

from falconproc.errors import StandInPending
from falconproc.queue import JobQueue, QueueFull
from falconproc.web.resources.content import require_hash
from falconproc.web.resources.errors import ApiError
from falconproc.web.resources.serving import serve_file
from falconproc.images.negotiation import UnknownFormat, choose_format
from falconproc.images.service import ImageService


# seconds: a PDF's page renders in well under a second, a DOCX or a video's poster in a few
PENDING_RETRY_AFTER = "2"


class PresetResource:
    def __init__(self, images: ImageService, queue: JobQueue):
        self.images = images
        self.queue = queue

    def on_get(self, req: falcon.Request, resp: falcon.Response, content_hash: str, preset: str) -> None:
        require_hash(content_hash)
        own = self.images.preset(preset)
        try:
            fmt = choose_format(own.format, req.get_header("Accept"), req.get_param("format"))
        except UnknownFormat as exc:
            raise ApiError(falcon.HTTP_400, "invalid_format", str(exc), formats=exc.known) from None
        try:
            spec, fileobj, size = self.images.open_preset(content_hash, preset, fmt)
        except StandInPending as exc:
            self._pending(resp, content_hash, exc)
            return
        # The answer depends on Accept; each format has its own ETag (the own format's
        # is unchanged, so caches keep what they hold).
        resp.vary = ("Accept",)
        suffix = "" if spec.format == own.format else f".{spec.format}"
        serve_file(req, resp, fileobj, size=size, etag=f'"{content_hash}-{spec.name}{suffix}"',
                   content_type=spec.mime_type)

    on_head = on_get

    def _pending(self, resp: falcon.Response, content_hash: str, pending: StandInPending) -> None:
        """202 while the `document` job renders page 1 or the `video` job makes the
        poster (queued now if neither the raiser nor the queue has it)."""
        job = pending.job or self.queue.find(pending.job_type, content_hash)
        if job is None:
            try:
                job = self.queue.enqueue(pending.job_type, content_hash)
            except QueueFull:
                raise ApiError(falcon.HTTP_503, "overloaded", "the job queue is full; retry shortly",
                               headers={"Retry-After": "10"}) from None
        resp.status = falcon.HTTP_202
        resp.set_header("Retry-After", PENDING_RETRY_AFTER)
        resp.set_header("Cache-Control", "no-cache")
        resp.vary = ("Accept",)
        resp.media = {"status": "pending", "job": job.public()}


class OptimizeResource:
    def __init__(self, images: ImageService, gate: Callable[[str], None] | None = None):
        self.images = images
        self.gate = gate  # the scan gate (the hash is in the body, not the path)

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        # Checked first: falcon would parse a form-encoded body as a form and its JSON
        # would look like a body without contentHash.
        media_type = (req.content_type or "").partition(";")[0].strip().lower()
        if media_type != "application/json" and not media_type.endswith("+json"):
            # 400, not 415: on this route the contract's 415 means "not an image".
            raise ApiError(falcon.HTTP_400, "invalid_content_type", "Content-Type must be application/json",
                           contentType=req.content_type)
        try:
            body = req.get_media()
        except falcon.MediaNotFoundError:
            body = None
        except falcon.HTTPError:
            raise ApiError(falcon.HTTP_400, "invalid_json", "the body must be a JSON object") from None
        if not isinstance(body, dict):
            raise ApiError(falcon.HTTP_400, "invalid_json", "the body must be a JSON object")
        content_hash = body.get("contentHash")
        if not isinstance(content_hash, str):
            raise ApiError(falcon.HTTP_400, "invalid_input", "contentHash is required")
        require_hash(content_hash)
        if self.gate is not None:
            self.gate(content_hash)
        max_size = body.get("maxSize", 2048)
        quality = body.get("quality", 85)
        if isinstance(max_size, bool) or not isinstance(max_size, int) or not 16 <= max_size <= 8192:
            raise ApiError(falcon.HTTP_400, "invalid_input", "maxSize must be an integer from 16 to 8192")
        if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 100:
            raise ApiError(falcon.HTTP_400, "invalid_input", "quality must be an integer from 1 to 100")
        resp.media = self.images.optimize(content_hash, max_size, quality)
