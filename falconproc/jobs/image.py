"""The `image` job: every eager preset of a new image, from one decode."""
from __future__ import annotations

from typing import Any

from PIL import Image

from falconproc import native
from falconproc.config import Settings
from falconproc.jobs.registry import JobContext, JobType, PermanentJobError, register
from falconproc.queue import Job
from falconproc.services.image_service import ImageService
from falconproc.services.images import RENDERABLE_TYPES, ImageTooLarge, ImageUnreadable
from falconproc.services.presets import PresetCatalog
from falconproc.store import create_store
from falconproc.store.cache import DerivedCache

DEFAULT_ESTIMATE = 256 * 1024 * 1024


def _applies(metadata: dict[str, Any]) -> bool:
    return metadata.get("mimeType") in RENDERABLE_TYPES


def _payload(metadata: dict[str, Any]) -> dict[str, Any]:
    image = metadata.get("image") or {}
    return {"width": image.get("width"), "height": image.get("height"),
            "jpeg": metadata.get("mimeType") == "image/jpeg"}


def _estimate(job: Job, settings: Settings) -> int:
    """Peak memory from the resize plan of the eager presets (the governor admits on it)."""
    width, height = job.payload.get("width"), job.payload.get("height")
    if not width or not height:
        return DEFAULT_ESTIMATE
    boxes = [p.box for p in PresetCatalog(settings).eager]
    try:
        plan = native.plan_resize(int(width), int(height), boxes, is_jpeg=bool(job.payload.get("jpeg")), bands=4)
    except ValueError:
        return DEFAULT_ESTIMATE
    return plan.peak_memory


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
