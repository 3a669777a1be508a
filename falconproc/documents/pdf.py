"""Page 1 of a PDF as an RGB image, rendered by pdfium (pypdfium2) at the size the
presets need.

The scale comes from the page's size (points) before anything is drawn: a page whose
MediaBox claims kilometres is drawn at the preset's size, never at its nominal size,
and never past DOCUMENT_RENDER_MAX_PIXELS or MAX_IMAGE_SIDE. Only page 1 is loaded
(pdfium reads the rest of the file lazily). pdfium is C: time and memory beyond
that are bounded by the `document` job's timeout and JOB_MEMORY_MAX_BYTES, which kill
the job's process group.
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path

from PIL import Image

from falconproc.errors import DocumentUnrenderable

WHITE = (255, 255, 255, 255)  # paper: transparent page areas are drawn on white


def render_scale(page_width: float, page_height: float, boxes: Iterable[tuple[int, int]], max_pixels: int,
                 max_side: int) -> float:
    """Pixels per point so that the page fits the largest of ``boxes`` (0 = unbounded),
    capped so the bitmap stays within ``max_pixels`` and ``max_side``."""
    needed = 0.0
    for box_width, box_height in boxes:
        fits = [limit / size for limit, size in ((box_width, page_width), (box_height, page_height)) if limit]
        if fits:
            needed = max(needed, min(fits))
    cap = min(math.sqrt(max_pixels / (page_width * page_height)), max_side / max(page_width, page_height))
    return min(needed, cap)


def render_first_page(path: Path, boxes: list[tuple[int, int]], max_pixels: int, max_side: int) -> Image.Image:
    """Page 1, upright (its /Rotate applied), in RGB, fitted to ``boxes``."""
    import pypdfium2 as pdfium
    import pypdfium2.raw as pdfium_c

    try:
        document = pdfium.PdfDocument(str(path))
    except pdfium.PdfiumError as exc:
        if getattr(exc, "err_code", None) == pdfium_c.FPDF_ERR_PASSWORD:
            raise DocumentUnrenderable("encrypted", "the PDF is encrypted with a password") from None
        raise DocumentUnrenderable("corrupt", f"the PDF cannot be opened: {exc}") from None
    try:
        if len(document) < 1:
            raise DocumentUnrenderable("empty", "the PDF has no pages")
        try:
            page = document[0]
        except pdfium.PdfiumError as exc:
            raise DocumentUnrenderable("corrupt", f"page 1 cannot be loaded: {exc}") from None
        try:
            width, height = page.get_size()  # points, /Rotate applied
            if not (math.isfinite(width) and math.isfinite(height) and width > 0 and height > 0):
                raise DocumentUnrenderable("corrupt", f"page 1 has no usable size ({width} x {height} points)")
            scale = render_scale(width, height, boxes, max_pixels, max_side)
            bitmap = page.render(scale=scale, fill_color=WHITE, rev_byteorder=True, may_draw_forms=False)
            try:
                return bitmap.to_pil().convert("RGB")  # a copy: the bitmap's buffer is freed below
            finally:
                bitmap.close()
        except pdfium.PdfiumError as exc:
            raise DocumentUnrenderable("corrupt", f"page 1 cannot be rendered: {exc}") from None
        finally:
            page.close()
    finally:
        document.close()
