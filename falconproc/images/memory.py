"""The image job's peak memory, for the governor's admission: the resize plan of the
eager presets (native planner), plus what a WebP decode holds beyond the decoded image."""
from __future__ import annotations

from typing import Any

from falconproc.config import Settings
from falconproc.images.presets import PresetCatalog
from falconproc.native import webp as native_webp
from falconproc.native.resize import OVERHEAD_BYTES, plan_resize
from falconproc.queue import Job

DEFAULT_ESTIMATE = 256 * 1024 * 1024
# A WebP decoded at full size goes through Pillow's WebPAnimDecoder (still files too):
# libwebp's two full-canvas RGBA buffers (the frame and the previous, disposed one) stay
# with the file image, which the service keeps through the render (measured:
# benchmarks/README.md). libwebp's scaled decode (the compiled twin) never touches
# them (calloc'ed, left unmapped).
WEBP_DECODER_CANVASES = 2
# The pure twin of the scaled decode (falconproc.native.webp without its compiled module) decodes at full size
# with Pillow first: the canvases, the frame's bytes, the image and its RGB(A) convert
# (full-size, 4 bytes per pixel) ...
WEBP_PURE_FULL_COPIES = WEBP_DECODER_CANVASES + 3
# ... then the BOX result, its tobytes() and the bytearray (scaled size); tests/images
# checks the bound against the measured peak.
WEBP_PURE_SCALED_COPIES = 3


def still_webp(payload: dict[str, Any]) -> bool:
    """Will the job shrink this WebP on load? images.pipeline._scalable_webp decides it from
    the opened file (still, RGB(A)); here from the upload's header probe: exactly one frame.
    An animated WebP, or one whose frame count is unknown (an old payload), is planned as a
    full decode."""
    return bool(payload.get("webp")) and payload.get("frames") == 1


def estimate_image_job(job: Job, settings: Settings) -> int:
    """Peak memory of the job (the governor admits on it): the resize plan of the eager
    presets, plus what a WebP decode holds beyond the decoded image (see above)."""
    width, height = job.payload.get("width"), job.payload.get("height")
    if not width or not height:
        return DEFAULT_ESTIMATE
    boxes = [p.box for p in PresetCatalog(settings).eager]
    width, height = int(width), int(height)
    webp = bool(job.payload.get("webp"))
    try:
        plan = plan_resize(width, height, boxes, is_jpeg=bool(job.payload.get("jpeg")) or still_webp(
            job.payload), bands=4)
    except ValueError:
        return DEFAULT_ESTIMATE
    peak = plan.peak_memory
    full = width * height * 4
    if webp and plan.draft_scale == 1:  # decoded by Pillow at full size
        peak += WEBP_DECODER_CANVASES * full
    elif webp and not native_webp.SCALED_DECODE:  # the pure twin: full size first
        scaled = plan.decoded_width * plan.decoded_height * 4
        decode = WEBP_PURE_FULL_COPIES * full + WEBP_PURE_SCALED_COPIES * scaled + OVERHEAD_BYTES
        peak = max(peak, decode)  # freed before the render starts
    return peak
