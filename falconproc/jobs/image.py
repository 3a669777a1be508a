"""The `image` job: every eager preset of a new image, from one decode."""
from __future__ import annotations

from typing import Any

from PIL import Image

from falconproc import native
from falconproc.config import Settings
from falconproc.jobs.registry import JobContext, JobType, PermanentJobError, register
from falconproc.native._resize_py import OVERHEAD_BYTES
from falconproc.queue import Job
from falconproc.services.image_service import ImageService
from falconproc.services.images import RENDERABLE_TYPES, ImageTooLarge, ImageUnreadable
from falconproc.services.presets import PresetCatalog
from falconproc.store import create_store
from falconproc.store.cache import DerivedCache

DEFAULT_ESTIMATE = 256 * 1024 * 1024
# A WebP decoded at full size goes through Pillow's WebPAnimDecoder (still files too):
# libwebp's two full-canvas RGBA buffers (the frame and the previous, disposed one) stay
# with the file image, which the service keeps through the render. Measured on the
# 4096x4096 corpus WebP: 258 MB peak RSS growth to load a 64 MB image. libwebp's
# scaled decode (the compiled _webp_c) never touches them (calloc'ed, left unmapped).
WEBP_DECODER_CANVASES = 2
# The pure twin of the scaled decode (native/_webp_py.decode_scaled) decodes at full size
# with Pillow first: the canvases, the frame's bytes, the image and its RGB(A) convert
# (full-size, 4 bytes per pixel) ...
WEBP_PURE_FULL_COPIES = WEBP_DECODER_CANVASES + 3
# ... then the BOX result, its tobytes() and the bytearray (scaled size). Measured on the
# corpus WebP: 305 MB peak RSS growth for the whole job (this bound: 384 MB).
WEBP_PURE_SCALED_COPIES = 3


def _applies(metadata: dict[str, Any]) -> bool:
    return metadata.get("mimeType") in RENDERABLE_TYPES


def _payload(metadata: dict[str, Any]) -> dict[str, Any]:
    image = metadata.get("image") or {}
    mime = metadata.get("mimeType")
    return {"width": image.get("width"), "height": image.get("height"), "jpeg": mime == "image/jpeg",
            "webp": mime == "image/webp", "frames": image.get("frames")}


def _still_webp(payload: dict[str, Any]) -> bool:
    """Will the job shrink this WebP on load? services.images._scalable_webp decides it from
    the opened file (still, RGB(A)); here from the upload's header probe: exactly one frame.
    An animated WebP, or one whose frame count is unknown (an old payload), is planned as a
    full decode."""
    return bool(payload.get("webp")) and payload.get("frames") == 1


def _estimate(job: Job, settings: Settings) -> int:
    """Peak memory of the job (the governor admits on it): the resize plan of the eager
    presets, plus what a WebP decode holds beyond the decoded image (see above)."""
    width, height = job.payload.get("width"), job.payload.get("height")
    if not width or not height:
        return DEFAULT_ESTIMATE
    boxes = [p.box for p in PresetCatalog(settings).eager]
    width, height = int(width), int(height)
    webp = bool(job.payload.get("webp"))
    try:
        plan = native.plan_resize(width, height, boxes, is_jpeg=bool(job.payload.get("jpeg")) or _still_webp(
            job.payload), bands=4)
    except ValueError:
        return DEFAULT_ESTIMATE
    peak = plan.peak_memory
    full = width * height * 4
    if webp and plan.draft_scale == 1:  # decoded by Pillow at full size
        peak += WEBP_DECODER_CANVASES * full
    elif webp and native.webp_decode is not native.c_webp_decode:  # the pure twin: full size first
        scaled = plan.decoded_width * plan.decoded_height * 4
        decode = WEBP_PURE_FULL_COPIES * full + WEBP_PURE_SCALED_COPIES * scaled + OVERHEAD_BYTES
        peak = max(peak, decode)  # freed before the render starts
    return peak


def _handle(job: Job, context: JobContext) -> dict[str, Any]:
    # Threads for this job: no more than its share of the cores, so that presets made
    # beside an OCR job do not slow it down (the work is the same, only the order changes).
    settings = context.settings.replace(image_threads=max(1, min(context.settings.image_threads,
                                                                  context.cpu_budget)))
    service = ImageService(settings, create_store(settings), DerivedCache(settings.cache_path, fsync=settings.fsync))
    try:
        # The same lock as on-demand renders: a GET meanwhile waits instead of decoding too.
        with service.cache.exclusive(job.content_hash, "image", settings.image_sync_timeout):
            made = service.generate(job.content_hash, service.missing_eager(job.content_hash))
    except (ImageUnreadable, ImageTooLarge, Image.DecompressionBombError) as exc:
        raise PermanentJobError(str(exc)) from None
    return {"presets": sorted(made)}


register(JobType("image", _handle, applies_to=_applies, estimate_memory=_estimate, make_payload=_payload))
