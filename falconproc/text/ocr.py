"""OCR with tesseract (pytesseract), bounded in pixels, time and threads.

Languages come only from the OCR_LANGUAGES allow-list; nothing a client sends
reaches tesseract's command line.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image

from falconproc.config import Settings
from falconproc.errors import FalconprocError
from falconproc.text.clean import clean_text
from falconproc.text.language import (MIN_SCRIPT_SHARE, guess_language, language_for_script, reads_other_scripts,
                                      script_of, share_in_script)

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
    language: str | None = None  # the model the text was read with
    script: str | None = None  # the script OSD saw, when it chose the model


def installed_languages() -> set[str]:
    import pytesseract

    return set(pytesseract.get_languages(config=""))


def check_languages(settings: Settings) -> None:
    """At start-up: every OCR_LANGUAGES entry has its traineddata installed."""
    from falconproc.config import SettingsError

    try:
        installed = installed_languages()
    except Exception as exc:  # noqa: BLE001 - no tesseract at all: OCR jobs report it themselves
        raise SettingsError(f"OCR_LANGUAGES: tesseract cannot list its languages: {exc}") from None
    missing = [lang for lang in settings.ocr_languages if lang not in installed]
    if missing:
        raise SettingsError(f"OCR_LANGUAGES: no traineddata installed for {', '.join(missing)} "
                            f"(installed: {', '.join(sorted(installed))})")


def _scale_for(width: int, height: int, settings: Settings) -> float:
    return min(1.0, (settings.ocr_max_pixels / (width * height)) ** 0.5, TESSERACT_MAX_SIDE / max(width, height))


def _contrast_range(grey: np.ndarray) -> tuple[float, float]:
    # Every 4th pixel of every 4th row is plenty for the 1st/99th percentiles.
    low, high = np.percentile(grey[::4, ::4], (1, 99))
    return float(low), float(high)


def _low_contrast(low: float, high: float) -> bool:
    return high - low < 160 and high > low


# Skew: tesseract reads a page turned by 3 degrees as well as a straight one (recall 0.99
# on the corpus page) but not by 6 (0.83) or 10 (0.0), as phone photos and careless scans
# are. Pages turned by DESKEW_MIN_DEGREES or more are rotated back first; up to
# MAX_SKEW_DEGREES (more than that is a page on its side, not a skew).
DESKEW_MIN_DEGREES = 1.0
MAX_SKEW_DEGREES = 15.0
MIN_SKEW_GAIN = 1.2
_SKEW_SIDE = 1000  # the angle is found on a copy about this big (fast, and precise to 0.1 degree)
_SKEW_POINTS = 40_000  # ink pixels sampled for the search


def skew_angle(grey: Image.Image) -> float:
    """How far the text lines of a greyscale page are turned, in degrees counter-clockwise
    (``Image.rotate``'s sense; rotate by minus this to straighten). 0.0 for a page without
    enough text to tell.

    Projection profiles: the ink pixels' row histogram is most peaked (sum of squares) when
    the rows follow the text lines; searched every 0.5 degree, then every 0.1 around the best.
    """
    factor = max(1, max(grey.size) // _SKEW_SIDE)
    pixels = np.asarray(grey.reduce(factor) if factor > 1 else grey, dtype=np.uint8)
    low, high = _contrast_range(pixels)
    if high - low < 40:
        return 0.0
    ys, xs = np.nonzero(pixels < (low + high) / 2)
    if len(ys) < 500:
        return 0.0
    if len(ys) > _SKEW_POINTS:  # a fixed sample: the same page always gives the same angle
        pick = np.random.default_rng(0).choice(len(ys), _SKEW_POINTS, replace=False)
        ys, xs = ys[pick], xs[pick]
    ys, xs = ys.astype(np.float64), xs.astype(np.float64)

    def peakedness(angle: float) -> float:
        theta = np.deg2rad(angle)
        rows = np.rint(ys * np.cos(theta) + xs * np.sin(theta)).astype(np.int64)
        counts = np.bincount(rows - rows.min())
        return float(np.dot(counts, counts))

    def best_of(angles: np.ndarray) -> tuple[float, float]:
        scores = [peakedness(a) for a in angles]
        i = int(np.argmax(scores))
        return float(angles[i]), scores[i]

    coarse, _ = best_of(np.arange(-MAX_SKEW_DEGREES, MAX_SKEW_DEGREES + 1e-9, 0.5))
    fine = np.arange(coarse - 0.5, coarse + 0.5 + 1e-9, 0.1)
    angle, score = best_of(fine[np.abs(fine) <= MAX_SKEW_DEGREES + 1e-9])
    # Text lines make the profile far more peaked at their angle (x1.5 for a page turned by
    # 1 degree); photos and noise barely change with the angle (x1.03 for a corpus photo):
    # no text lines to follow, so no rotation.
    if score < MIN_SKEW_GAIN * peakedness(0.0):
        return 0.0
    return round(angle, 1)


def _needs_deskew(angle: float) -> bool:
    return abs(angle) >= DESKEW_MIN_DEGREES


def usable_as_is(im: Image.Image, settings: Settings) -> bool:
    """True when tesseract can read the file itself as well as our prepared copy: opaque,
    within the size limits, contrast fine, not skewed. Saves re-encoding a whole page for it."""
    if im.mode not in ("L", "RGB") or _scale_for(im.width, im.height, settings) < 1.0:
        return False
    grey = im.convert("L")
    if _low_contrast(*_contrast_range(np.asarray(grey, dtype=np.uint8))):
        return False
    return not _needs_deskew(skew_angle(grey))


def prepare(im: Image.Image, settings: Settings) -> Image.Image:
    """Greyscale, bounded size, contrast stretched (numpy) when the page is washed out,
    straightened when its lines are skewed."""
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
    angle = skew_angle(im)
    if _needs_deskew(angle):
        # Turn the lines level; the corners that come into view are paper-white.
        im = im.rotate(-angle, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=255)
    return im


def run_tesseract(source: Image.Image | str, settings: Settings) -> OcrResult:
    """OCR an image (prepared here) or, for a file already fit as it is, its path.

    When OCR_LANGUAGES names a language in a non-Latin script (rus, ell, ...), tesseract's
    script detection (OSD) runs first; a page in such a script is read with the first
    allowed model for it, and that reading stands when most of its letters are in the
    script. Otherwise the page is read with the first Latin-script language; when its
    words say it is in another allowed one, it is read again with that model alone (one
    model reads better and faster than all of them at once)."""
    image = source if isinstance(source, str) else prepare(source, settings)
    languages = settings.ocr_languages
    if reads_other_scripts(languages):
        script = detect_script(image, settings)
        language = language_for_script(script, languages)
        if script is not None and language is not None:
            result = _read(image, language, settings)
            if share_in_script(result.text, script) >= MIN_SCRIPT_SHARE:
                return replace(result, script=script)
    latin = [lang for lang in languages if script_of(lang) is None] or list(languages)
    result = _read(image, latin[0], settings)
    if len(latin) > 1:
        guessed = guess_language(result.text, latin)
        if guessed is not None and guessed != latin[0]:
            result = _read(image, guessed, settings)
    return result


def detect_script(image: Image.Image | str, settings: Settings) -> str | None:
    """The script tesseract's OSD sees on the page (``Latin``, ``Cyrillic``, ...); None
    when it cannot tell (too few characters). Bounded by OCR_TIMEOUT like a reading."""
    import pytesseract

    os.environ["OMP_THREAD_LIMIT"] = "1"
    try:
        osd = pytesseract.image_to_osd(image, output_type=pytesseract.Output.DICT, timeout=settings.ocr_timeout)
    except RuntimeError as exc:  # pytesseract signals its timeout this way
        raise OcrError("timeout", f"OCR took longer than {settings.ocr_timeout:g} s") from exc
    except pytesseract.TesseractNotFoundError:
        raise OcrError("unavailable", "tesseract is not installed") from None
    except pytesseract.TesseractError:
        return None  # "Too few characters": the stop words decide among the Latin languages
    return osd.get("script") or None


def _read(image: Image.Image | str, lang: str, settings: Settings) -> OcrResult:
    import pytesseract

    os.environ["OMP_THREAD_LIMIT"] = "1"  # faster per page than tesseract's own threading (benchmarks/README.md)
    try:
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
    return OcrResult(clean_text("\n".join(text_lines), join_hyphens=True), confidence, len(confidences), lang)
