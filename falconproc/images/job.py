"""The `image` job: every eager preset of a new image, from one decode."""
from __future__ import annotations

from typing import Any

from PIL import Image

from falconproc.images.memory import estimate_image_job
from falconproc.images.pipeline import ImageTooLarge, ImageUnreadable
from falconproc.images.service import ImageService
from falconproc.jobs.registry import JobContext, JobType, PermanentJobError, register
from falconproc.mediatypes import JPEG, WEBP, is_renderable_image
from falconproc.queue import Job


def _applies(metadata: dict[str, Any]) -> bool:
    return is_renderable_image(metadata.get("mimeType"))


def _payload(metadata: dict[str, Any]) -> dict[str, Any]:
    image = metadata.get("image") or {}
    mime = metadata.get("mimeType")
    return {"width": image.get("width"), "height": image.get("height"), "jpeg": mime == JPEG,
            "webp": mime == WEBP, "frames": image.get("frames")}


def _handle(job: Job, context: JobContext) -> dict[str, Any]:
    # Threads for this job: no more than its share of the cores, so that presets made
    # beside an OCR job do not slow it down (the work is the same, only the order changes).
    settings = context.settings.replace(image_threads=max(1, min(context.settings.image_threads,
                                                                  context.cpu_budget)))
    service = ImageService(settings, context.store, context.cache)
    try:
        # The same lock as on-demand renders: a GET meanwhile waits instead of decoding too.
        with service.cache.exclusive(job.content_hash, "image", settings.image_sync_timeout):
            made = service.generate(job.content_hash, service.missing_eager(job.content_hash))
            if not made and "exif" not in service.cache.metadata(job.content_hash):
                service.record_exif(job.content_hash)
    except (ImageUnreadable, ImageTooLarge, Image.DecompressionBombError) as exc:
        raise PermanentJobError(str(exc)) from None
    return {"presets": sorted(made)}


register(JobType("image", _handle, applies_to=_applies, estimate_memory=estimate_image_job, make_payload=_payload,
                 preload=Image.init))
