"""The `document` job: page 1 of a PDF/DOCX/ODT/PPTX/ODP rendered, then its eager
`thumbnail` and `preview` presets made from it by the image pipeline.

A job type of its own, not part of `text` or `image`: a LibreOffice conversion takes
seconds and a few hundred MB, so it gets its own concurrency (JOB_CONCURRENCY
document=1 by default: one soffice at a time), its own timeout (JOB_TIMEOUTS) and a
memory estimate that counts LibreOffice, and a slow conversion never holds up the
photos' presets or a PDF's text.
"""
from __future__ import annotations

from typing import Any

from falconproc.config import Settings
from falconproc.documents.service import DOCUMENT_PRESETS, DocumentPages
from falconproc.errors import DocumentUnrenderable
from falconproc.images.pipeline import ImageTooLarge, ImageUnreadable
from falconproc.images.service import ImageService
from falconproc.jobs.registry import JobContext, JobType, PermanentJobError, register
from falconproc.mediatypes import PDF, has_page_thumbnail
from falconproc.queue import Job

BASE_ESTIMATE = 96 * 1024 * 1024  # the job process with pdfium and Pillow loaded
# soffice.bin converting a small DOCX peaked at 215 MB RSS (LibreOffice 7.4); room for
# larger documents.
LIBREOFFICE_ESTIMATE = 384 * 1024 * 1024
# pdfium's bitmap, its Pillow copy, the RGB convert and the pipeline's decode of the page image.
PAGE_COPIES = 4
# pdfium holds the file and the objects of page 1; a rough multiple of the file's size.
PDF_SIZE_FACTOR = 2


def estimate_document_job(job: Job, settings: Settings) -> int:
    estimate = BASE_ESTIMATE + PAGE_COPIES * 4 * settings.document_render_max_pixels
    estimate += PDF_SIZE_FACTOR * int(job.payload.get("size") or 0)
    if job.payload.get("mimeType") != PDF:  # an office document, or unknown (queued by a GET): count soffice
        estimate += LIBREOFFICE_ESTIMATE
    return estimate


def _handle(job: Job, context: JobContext) -> dict[str, Any]:
    settings = context.settings.replace(image_threads=max(1, min(context.settings.image_threads,
                                                                  context.cpu_budget)))
    pages = DocumentPages(settings, context.store, context.cache)
    try:
        state = pages.render(job.content_hash)
    except DocumentUnrenderable as exc:
        pages.record_failure(job.content_hash, exc.reason, str(exc))
        raise PermanentJobError(f"{exc.reason}: {exc}") from None
    if state["status"] != "done":
        return {"status": state["status"]}
    images = ImageService(settings, context.store, context.cache, stand_ins=[pages])
    eager = [p for p in images.missing_eager(job.content_hash) if p.name in DOCUMENT_PRESETS]
    try:
        with images.cache.exclusive(job.content_hash, "image", settings.image_sync_timeout):
            made = images.generate(job.content_hash, eager)
    except (ImageUnreadable, ImageTooLarge) as exc:
        raise PermanentJobError(str(exc)) from None
    return {"status": "done", "presets": sorted(made)}


def _applies(metadata: dict[str, Any]) -> bool:
    return has_page_thumbnail(metadata.get("mimeType"))


def _payload(metadata: dict[str, Any]) -> dict[str, Any]:
    return {"mimeType": metadata.get("mimeType"), "size": metadata.get("size")}


def _record_dead(job: Job, context: JobContext) -> None:
    """A job killed for time or memory leaves a clear error state (GET of a preset answers
    422 instead of waiting for it again)."""
    pages = DocumentPages(context.settings, context.store, context.cache)
    if (pages.state(job.content_hash) or {}).get("status") in ("failed", "done", "not_available"):
        return
    error = job.last_error or "page 1 could not be rendered"
    reason = "timed_out" if "timed out" in error else "failed"
    pages.record_failure(job.content_hash, reason, error)


def _preload() -> None:
    import pypdfium2  # noqa: F401  (loads libpdfium once, before job processes fork)


register(JobType("document", _handle, applies_to=_applies, estimate_memory=estimate_document_job,
                 make_payload=_payload, on_dead=_record_dead, preload=_preload))
