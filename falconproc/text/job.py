"""The `text` job (PDF, DOCX, plain text) and the low-priority `ocr` job (images,
and PDF pages without a text layer)."""
from __future__ import annotations

from typing import Any

from falconproc.images.pipeline import ImageTooLarge, ImageUnreadable
from falconproc.jobs.registry import JobContext, JobType, PermanentJobError, register
from falconproc.queue import Job
from falconproc.text.extraction import ExtractionError, can_extract
from falconproc.text.ocr import OcrError
from falconproc.text.service import TextService, needs_ocr

# Rough peaks for admission: pypdf holds the object graph of the whole file per process.
TEXT_ESTIMATE = 192 * 1024 * 1024
OCR_ESTIMATE = 256 * 1024 * 1024


def _service(context: JobContext) -> TextService:
    return TextService(context.settings, context.store, context.cache)


def _text(job: Job, context: JobContext) -> dict[str, Any]:
    # A large PDF's page pool gets no more processes than this job's share of the cores
    # (three text jobs at once on two cores: each extracts alone, no pool to parse for).
    settings = context.settings
    service = TextService(settings.replace(text_processes=max(1, min(settings.text_processes, context.cpu_budget))),
                          context.store, context.cache)
    try:
        state = service.extract(job.content_hash)
    except ExtractionError as exc:
        service.record_failure(job.content_hash, exc.code, str(exc))
        raise PermanentJobError(f"{exc.code}: {exc}") from None
    ocr = state.get("ocr")
    if ocr and ocr.get("status") == "pending":
        # The upload's own follow-on work: past MAX_QUEUE_SIZE too (a QueueFull here would
        # fail this text job, and in the end dead-letter its text).
        context.queue.enqueue("ocr", job.content_hash, variant="pdf-pages", payload={"pages": ocr["pages"]},
                              force=True)
    return {"status": state["status"], "chars": state["chars"]}


def _ocr(job: Job, context: JobContext) -> dict[str, Any]:
    service = _service(context)
    try:
        if "pages" in job.payload:
            state = service.ocr_pdf_pages(job.content_hash, [int(p) for p in job.payload["pages"]])
        else:
            state = service.ocr_image(job.content_hash)
    except (ImageUnreadable, ImageTooLarge, ExtractionError) as exc:
        _record_ocr_failure(job, service, getattr(exc, "code", "image_unreadable"), str(exc))
        raise PermanentJobError(str(exc)) from None
    except OcrError as exc:
        if job.attempts >= job.max_attempts:
            _record_ocr_failure(job, service, exc.code, str(exc))
        raise
    return {"status": state["status"], "chars": state["chars"], "confidence": state.get("confidence")}


def _record_ocr_failure(job: Job, service: TextService, code: str, message: str) -> None:
    """An image's OCR failing is its text failing; a PDF's page OCR failing leaves the PDF's text."""
    if "pages" not in job.payload:
        service.record_failure(job.content_hash, code, message)
        return
    ocr = {"status": "failed", "error": code, "message": message, "pages": job.payload["pages"]}
    service.cache.update_metadata(job.content_hash, lambda m: m.get("text", {}).__setitem__("ocr", ocr))


def _applies_text(metadata: dict[str, Any]) -> bool:
    return can_extract(metadata.get("mimeType"))


def _applies_ocr(metadata: dict[str, Any]) -> bool:
    return needs_ocr(metadata.get("mimeType"))


def _record_dead(job: Job, context: JobContext) -> None:
    """A job killed for time or memory leaves a clear error state, so GET .../text
    answers 422 instead of starting it again."""
    service = _service(context)
    state = service.state(job.content_hash) or {}
    if job.type == "ocr" and "pages" in job.payload:
        if state.get("ocr", {}).get("status") != "failed":
            _record_ocr_failure(job, service, "failed", job.last_error or "OCR failed")
        return
    if state.get("status") != "failed":
        service.record_failure(job.content_hash, "failed", job.last_error or "text extraction failed")


def _preload() -> None:
    """Import the parsers once in the supervisor, before job processes fork from it."""
    import docx  # noqa: F401
    import pypdf  # noqa: F401
    import pytesseract

    try:  # pytesseract checks the version once per process: once here, for every fork
        pytesseract.get_tesseract_version()
    except Exception:  # noqa: BLE001 - no tesseract: OCR jobs report it themselves
        pass


register(JobType("text", _text, applies_to=_applies_text, estimate_memory=lambda job, settings: TEXT_ESTIMATE,
                 on_dead=_record_dead, preload=_preload))
register(JobType("ocr", _ocr, applies_to=_applies_ocr, estimate_memory=lambda job, settings: OCR_ESTIMATE,
                 on_dead=_record_dead))
