"""Document thumbnails: page 1 of a PDF (or of the PDF LibreOffice makes of a DOCX, ODT,
PPTX or ODP) rendered once into a lossless page image, from which the image pipeline
makes the `thumbnail` and `preview` presets and their format variants, as for a photo.

``metadata.pageImage`` holds the state: done (with the page image's size and how it was
made), failed (``reason``: encrypted, corrupt, empty, conversion_failed, timed_out) or
not_available (LibreOffice is not installed).
"""
from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from falconproc.clock import iso_utc
from falconproc.config import Settings
from falconproc.documents.office import conversion_timeout, convert_to_pdf, find_soffice
from falconproc.documents.pdf import render_first_page
from falconproc.errors import DocumentUnrenderable, PageImagePending, RendererNotAvailable
from falconproc.images.presets import PresetCatalog
from falconproc.mediatypes import OFFICE_TYPES, PDF, has_page_thumbnail
from falconproc.store import ContentStore, DerivedCache
from falconproc.text.docx import check_docx
from falconproc.text.extraction import ExtractionError

PAGE_IMAGE = "page-1.png"
STATE_KEY = "pageImage"
# The presets a document has: both fit in a page rendered once at the larger one's size.
DOCUMENT_PRESETS = ("thumbnail", "preview")
# PNG's fastest level: the page image is read back once or twice, never served.
PNG_COMPRESS_LEVEL = 1


class DocumentPages:
    """The page images of documents: made by the `document` job, read by the image
    pipeline (``images.service.StandInSource``)."""

    preset_names = DOCUMENT_PRESETS

    def __init__(self, settings: Settings, store: ContentStore, cache: DerivedCache):
        self.settings = settings
        self.store = store
        self.cache = cache

    # -- what the image pipeline asks ----------------------------------------------

    def handles(self, mime_type: str | None) -> bool:
        return has_page_thumbnail(mime_type)

    def state(self, content_hash: str) -> dict[str, Any] | None:
        return self.cache.metadata(content_hash).get(STATE_KEY)

    def check(self, content_hash: str) -> None:
        state = self.state(content_hash) or {}
        status = state.get("status")
        if status == "failed":
            raise DocumentUnrenderable(state.get("reason", "failed"), state.get("message", "page 1 cannot be rendered"))
        if status == "not_available":
            raise RendererNotAvailable(state.get("message", "no renderer for this document type is installed"))
        if status != "done" or not self.cache.exists(content_hash, PAGE_IMAGE):
            if status is None and not self.available(self.store.metadata(content_hash).get("mimeType")):
                raise RendererNotAvailable(self._unavailable_message())
            raise PageImagePending("page 1 of the document is not rendered yet")

    @contextlib.contextmanager
    def open_image(self, content_hash: str) -> Iterator[BinaryIO]:
        fh, _size = self.cache.open(content_hash, PAGE_IMAGE)
        with fh:
            yield fh

    # -- making the page image -----------------------------------------------------

    def available(self, mime_type: str | None) -> bool:
        return mime_type == PDF or (mime_type in OFFICE_TYPES and find_soffice(self.settings) is not None)

    def _unavailable_message(self) -> str:
        return (f"LibreOffice ({self.settings.libreoffice_path}) is not installed here: office documents "
                "have no thumbnail")

    def _boxes(self) -> list[tuple[int, int]]:
        catalog = PresetCatalog(self.settings)
        return [preset.box for name in DOCUMENT_PRESETS if (preset := catalog.get(name)) is not None]

    def _record(self, content_hash: str, state: dict[str, Any]) -> dict[str, Any]:
        state = {**state, "processedAt": iso_utc()}
        self.cache.update_metadata(content_hash, lambda m: m.__setitem__(STATE_KEY, state))
        return state

    def record_failure(self, content_hash: str, reason: str, message: str) -> dict[str, Any]:
        return self._record(content_hash, {"status": "failed", "reason": reason, "message": message})

    def render(self, content_hash: str) -> dict[str, Any]:
        """Render page 1 into PAGE_IMAGE and record the state (done or not_available);
        DocumentUnrenderable when the document cannot be rendered."""
        mime = self.store.metadata(content_hash).get("mimeType")
        if not self.handles(mime):
            raise DocumentUnrenderable("unsupported", f"{mime} has no pages to render")
        if not self.available(mime):
            return self._record(content_hash, {"status": "not_available", "message": self._unavailable_message()})
        started = time.monotonic()
        limits = (self._boxes(), self.settings.document_render_max_pixels, self.settings.max_image_side)
        with self.store.local_file(content_hash) as original:
            if mime == PDF:
                page = render_first_page(original, *limits)
                converted_in = None
            else:
                _check_package(original, self.settings)
                with tempfile.TemporaryDirectory(prefix="falconproc-soffice-") as workdir:
                    pdf = convert_to_pdf(original, mime, Path(workdir), find_soffice(self.settings) or "soffice",
                                         conversion_timeout(self.settings))
                    converted_in = round(time.monotonic() - started, 3)
                    page = render_first_page(pdf, *limits)
        self.cache.write_file(content_hash, PAGE_IMAGE,
                              lambda fh: page.save(fh, "PNG", compress_level=PNG_COMPRESS_LEVEL))
        state = {"status": "done", "renderer": "pdfium" if mime == PDF else "libreoffice+pdfium",
                 "width": page.width, "height": page.height, "seconds": round(time.monotonic() - started, 3)}
        if converted_in is not None:
            state["conversionSeconds"] = converted_in
        return self._record(content_hash, state)


def _check_package(path: Path, settings: Settings) -> None:
    """The zip-bomb and DTD checks of DOCX text extraction, before LibreOffice sees the file
    (they hold for any OOXML or ODF package: a ZIP of XML parts)."""
    try:
        check_docx(path, settings)
    except ExtractionError as exc:
        raise DocumentUnrenderable(exc.code, str(exc)) from None
