"""OCR with tesseract (pytesseract), bounded in pixels, time and threads.

Languages come only from the OCR_LANGUAGES allow-list; nothing a client sends
reaches tesseract's command line.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from PIL import Image

from falconproc.config import Settings
from falconproc.errors import FalconprocError

TESSERACT_MAX_SIDE = 32767  # tesseract refuses larger images


class OcrError(FalconprocError, RuntimeError):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class OcrResult:
    text: str
    confidence: float | None  # mean word confidence 0-100, None when no words
    words: int


def _scale_for(width: int, height: int, settings: Settings) -> float:
    return min(1.0, (settings.ocr_max_pixels / (width * height)) ** 0.5, TESSERACT_MAX_SIDE / max(width, height))


def _contrast_range(grey: np.ndarray) -> tuple[float, float]:
    # Every 4th pixel of every 4th row is plenty for the 1st/99th percentiles.
    low, high = np.percentile(grey[::4, ::4], (1, 99))
    return float(low), float(high)


def _low_contrast(low: float, high: float) -> bool:
    return high - low < 160 and high > low


def usable_as_is(im: Image.Image, settings: Settings) -> bool:
    """True when tesseract can read the file itself as well as our prepared copy: opaque,
    within the size limits, contrast fine. Saves re-encoding a whole page for it."""
    if im.mode not in ("L", "RGB") or _scale_for(im.width, im.height, settings) < 1.0:
        return False
    return not _low_contrast(*_contrast_range(np.asarray(im.convert("L"), dtype=np.uint8)))


def prepare(im: Image.Image, settings: Settings) -> Image.Image:
    """Greyscale, bounded size, contrast stretched (numpy) when the page is washed out."""
    if im.mode not in ("L", "RGB"):
        if "A" in im.getbands():  # transparent background: flatten on white
            background = Image.new("RGB", im.size, (255, 255, 255))
            background.paste(im.convert("RGBA"), mask=im.convert("RGBA").getchannel("A"))
            im = background
        else:
            im = im.convert("RGB")
    im = im.convert("L")
    scale = _scale_for(im.width, im.height, settings)
    if scale < 1.0:
        im = im.resize((max(1, int(im.width * scale)), max(1, int(im.height * scale))), Image.Resampling.LANCZOS)
    pixels = np.asarray(im, dtype=np.uint8)
    low, high = _contrast_range(pixels)
    if _low_contrast(low, high):
        # Low contrast (faded scans, photos of screens): stretch to the full range.
        stretched = np.clip((pixels.astype(np.float32) - low) * (255.0 / (high - low)), 0, 255).astype(np.uint8)
        im = Image.fromarray(stretched, mode="L")
    return im


def run_tesseract(source: Image.Image | str, settings: Settings) -> OcrResult:
    """OCR an image (prepared here) or, for a file already fit as it is, its path."""
    import pytesseract

    os.environ["OMP_THREAD_LIMIT"] = "1"  # ~5x faster per page than tesseract's own threading here
    lang = "+".join(settings.ocr_languages)
    try:
        image = source if isinstance(source, str) else prepare(source, settings)
        data = pytesseract.image_to_data(image, lang=lang, config="--psm 3",
                                         timeout=settings.ocr_timeout, output_type=pytesseract.Output.DICT)
    except RuntimeError as exc:  # pytesseract signals its timeout this way
        raise OcrError("timeout", f"OCR took longer than {settings.ocr_timeout:g} s") from exc
    except pytesseract.TesseractNotFoundError:
        raise OcrError("unavailable", "tesseract is not installed") from None
    except pytesseract.TesseractError as exc:
        raise OcrError("failed", f"tesseract failed: {exc.message}") from None
    lines: dict[tuple[int, int, int, int], list[str]] = {}
    confidences: list[float] = []
    for i, word in enumerate(data["text"]):
        conf = float(data["conf"][i])
        if conf < 0 or not word.strip():
            continue
        key = (data["page_num"][i], data["block_num"][i], data["par_num"][i], data["line_num"][i])
        lines.setdefault(key, []).append(word)
        confidences.append(conf)
    text_lines: list[str] = []
    previous_par = None
    for key in sorted(lines):
        if previous_par is not None and key[:3] != previous_par:
            text_lines.append("")  # blank line between paragraphs
        text_lines.append(" ".join(lines[key]))
        previous_par = key[:3]
    confidence = round(sum(confidences) / len(confidences), 2) if confidences else None
    return OcrResult("\n".join(text_lines), confidence, len(confidences))
