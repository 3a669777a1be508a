"""Extracted text: run extraction/OCR into the cache, and answer GET /cache/{hash}/text."""
from __future__ import annotations

import io
import json
from typing import Any, BinaryIO

from PIL import Image, ImageOps

from falconproc.clock import iso_utc
from falconproc.config import Settings
from falconproc.images.pipeline import ImageUnreadable, open_checked
from falconproc.mediatypes import PDF, is_renderable_image
from falconproc.store import ContentStore, DerivedCache
from falconproc.text.extraction import Extraction, can_extract, clip_pages, extract
from falconproc.text.language import guess_language, main_language
from falconproc.text.ocr import run_tesseract, usable_as_is
from falconproc.text.pdf import open_pdf

TEXT_FILE = "text.txt"
PAGES_FILE = "text.json"
# Formats tesseract (leptonica) decodes itself, as we would.
TESSERACT_READS = frozenset({"PNG", "JPEG", "TIFF"})
# A PDF page whose embedded images are smaller than this is not worth OCR.
MIN_OCR_IMAGE_PIXELS = 64 * 64


def needs_ocr(mime_type: str | None) -> bool:
    """Images get their text from OCR."""
    return is_renderable_image(mime_type)


def has_text(mime_type: str | None) -> bool:
    return can_extract(mime_type) or needs_ocr(mime_type)


class TextService:
    def __init__(self, settings: Settings, store: ContentStore, cache: DerivedCache):
        self.settings = settings
        self.store = store
        self.cache = cache

    def state(self, content_hash: str) -> dict[str, Any] | None:
        return self.cache.metadata(content_hash).get("text")

    def read_pages(self, content_hash: str) -> dict[str, Any]:
        fh, _ = self.cache.open(content_hash, PAGES_FILE)
        with fh:
            return json.loads(fh.read())

    def open_text(self, content_hash: str) -> tuple[BinaryIO, int]:
        """The extracted text (UTF-8) and its size in bytes."""
        return self.cache.open(content_hash, TEXT_FILE)

    # -- producing -----------------------------------------------------------------

    def _publish(self, content_hash: str, result: Extraction, state: dict[str, Any]) -> dict[str, Any]:
        for page in result.pages:  # OCR pages say which model read them; text layers are guessed
            if not page.get("language"):
                page["language"] = guess_language(page.get("text") or "")
        document = {"source": result.source, "pageCount": result.page_count, "truncated": result.truncated,
                    "language": main_language(result.pages), "properties": result.properties,
                    "pages": result.pages, **result.extra}
        text = result.text
        self.cache.write_file(content_hash, TEXT_FILE, lambda fh: fh.write(text.encode("utf-8")))
        self.cache.write_file(content_hash, PAGES_FILE,
                              lambda fh: fh.write(json.dumps(document, ensure_ascii=False).encode("utf-8")))
        state = {"status": "done", "source": result.source, "pageCount": result.page_count,
                 "chars": len(text), "truncated": result.truncated, "processedAt": iso_utc(), **state}
        properties = self.document_properties(result)

        def record(m: dict[str, Any]) -> None:
            m["text"] = state
            if properties is not None:
                m["document"] = properties

        self.cache.update_metadata(content_hash, record)
        return state

    @staticmethod
    def document_properties(result: Extraction) -> dict[str, Any] | None:
        """``metadata.document`` of a PDF or DOCX: its own properties and page count
        (DOCX has no pages until laid out: its count is left out)."""
        if result.source not in ("pdf", "pdf+ocr", "docx"):
            return None
        keys = ("title", "author", "subject", "created", "modified")
        document = {k: result.properties[k] for k in keys if result.properties.get(k)}
        if result.source != "docx":
            document["pageCount"] = result.page_count
        return document

    def record_failure(self, content_hash: str, code: str, message: str) -> None:
        state = {"status": "failed", "error": code, "message": message, "processedAt": iso_utc()}
        self.cache.update_metadata(content_hash, lambda m: m.__setitem__("text", state))

    def extract(self, content_hash: str) -> dict[str, Any]:
        """The `text` job: PDF/DOCX/plain text. Returns its state; raises ExtractionError."""
        meta = self.store.metadata(content_hash)
        with self.store.local_file(content_hash) as path:
            result = extract(path, meta["mimeType"], self.settings)
        extra: dict[str, Any] = {}
        if meta["mimeType"] == PDF and result.pages_without_text:
            extra["ocr"] = {"status": "pending", "pages": result.pages_without_text}
        return self._publish(content_hash, result, extra)

    def ocr_image(self, content_hash: str) -> dict[str, Any]:
        """The `ocr` job for an image upload."""
        with self.store.local_file(content_hash) as path:
            with open_checked(path, self.settings) as im:
                try:
                    im.seek(0)
                    im.load()
                except (OSError, SyntaxError, ValueError, EOFError) as exc:
                    raise ImageUnreadable(f"the image cannot be decoded: {exc}") from None
                upright = im.getexif().get(0x0112, 1) in (None, 1)
                if upright and im.format in TESSERACT_READS and usable_as_is(im, self.settings):
                    ocr = run_tesseract(str(path), self.settings)  # no re-encode of the page
                else:
                    ocr = run_tesseract(ImageOps.exif_transpose(im), self.settings)
        result = Extraction("ocr", [{"page": 1, "text": ocr.text, "confidence": ocr.confidence,
                                     "language": ocr.language}], page_count=1)
        result.pages, result.truncated = clip_pages(result.pages, self.settings.text_max_chars)
        return self._publish(content_hash, result, {"confidence": ocr.confidence, "words": ocr.words})

    def ocr_pdf_pages(self, content_hash: str, pages: list[int]) -> dict[str, Any]:
        """The `ocr` job for a PDF's pages without a text layer: OCR their embedded images."""
        with self.store.local_file(content_hash) as path:
            reader = open_pdf(path)
            document = self.read_pages(content_hash)
            confidences = []
            for number in pages:
                page_texts = []
                page_language = None
                try:
                    images = list(reader.pages[number - 1].images)
                except Exception:  # noqa: BLE001 - a broken image stream loses that page only
                    images = []
                for embedded in images:
                    try:
                        with Image.open(io.BytesIO(embedded.data)) as im:
                            if im.width * im.height < MIN_OCR_IMAGE_PIXELS:
                                continue
                            im.load()
                            ocr = run_tesseract(im, self.settings)
                    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
                        continue
                    if ocr.text:
                        page_texts.append(ocr.text)
                        page_language = ocr.language
                        if ocr.confidence is not None:
                            confidences.append(ocr.confidence)
                for page in document["pages"]:
                    if page["page"] == number and page_texts:
                        page["text"] = "\n".join(page_texts)
                        page["source"] = "ocr"
                        page["language"] = page_language
        result = Extraction("pdf+ocr" if confidences else document["source"], document["pages"],
                            properties=document.get("properties", {}), page_count=document.get("pageCount", 0),
                            truncated=document.get("truncated", False))
        result.pages, clipped = clip_pages(result.pages, self.settings.text_max_chars)
        result.truncated = result.truncated or clipped
        confidence = round(sum(confidences) / len(confidences), 2) if confidences else None
        return self._publish(content_hash, result, {"ocr": {"status": "done", "pages": pages,
                                                            "confidence": confidence}})
