"""The image pipeline: bomb-proof decode, one decode for many presets, sRGB output.

Order of work for one source image:
1. Dimensions were read from the header at upload (native probe); they are
   checked again here, against Pillow's parse of the header, before decoding.
2. The native resize planner picks a draft scale -- JPEG: DCT-domain downscale
   at decode; still WebP: libwebp's scaled decode, when the native module is built
   -- and a cascade: each output derives from the smallest image
   already made that is large enough, with a box ``reduce`` before LANCZOS.
3. The decoded image is normalised once: first frame, EXIF orientation applied,
   ICC/CMYK converted to sRGB, 16-bit/palette/grey/LA modes mapped to 8-bit
   RGB(A).
4. Each output is encoded straight into a temp file (Pillow releases the GIL
   there), without EXIF/XMP/GPS, and published atomically.

Both cores: Pillow releases the GIL in reduce, resize and encode, so each large
reduce/resize is cut into ``STRIPES`` horizontal stripes, run on a small shared
thread pool (``IMAGE_THREADS``; the calling thread does one stripe), and finished
outputs are encoded there while the next ones are resampled. The stripes are fixed
by the sizes, not by the thread count, so every ``IMAGE_THREADS`` gives the same
bytes (tests/images/test_render_threads.py). Each stripe resamples its exact sub-box
and Pillow clamps the filter's support to the whole source, not the box, so there is
no seam. It is not bit-identical to a one-piece resize: Pillow computes the filter
centres from the stripe's box in floating point and picks the order of its two passes
by their cost, which differs for a stripe (the difference on the corpus presets is in
benchmarks/README.md).
"""
from __future__ import annotations

import functools
import io
import logging
import os
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from PIL import Image, ImageCms, ImageFile

from falconproc.config import Settings
from falconproc.errors import FalconprocError
from falconproc.native import webp as native_webp
from falconproc.native import resample
from falconproc.native.resize import draft_request, plan_resize

log = logging.getLogger(__name__)

# Only these decoders may ever see client bytes (HEIF: pillow-heif's, registered on first use).
PIL_FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF", "HEIF", "AVIF")
AVIF_SPEED = 8
# Orientation tag value -> transpose to apply (EXIF 2.3, tag 0x0112).
_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_SRGB = ImageCms.createProfile("sRGB")
ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated image is an error, not grey pixels


class ImageTooLarge(FalconprocError, ValueError):
    def __init__(self, width: int, height: int, max_pixels: int, max_side: int):
        super().__init__(f"the image is {width}x{height}; the limits are {max_pixels} pixels "
                         f"and {max_side} pixels per side")
        self.width, self.height = width, height


class ImageUnreadable(FalconprocError, ValueError):
    """The bytes claim to be an image but cannot be decoded (truncated, corrupt)."""


class NotRenderable(FalconprocError, ValueError):
    """The stored content is not an image this service can render."""


@dataclass(frozen=True)
class Target:
    """One output wanted: a box (0 = unbounded), an encoder and its quality."""

    name: str
    max_width: int
    max_height: int
    pil_format: str
    quality: int


@dataclass(frozen=True)
class Rendered:
    name: str
    width: int
    height: int
    pil_format: str


def check_dimensions(width: int | None, height: int | None, settings: Settings) -> None:
    if width is None or height is None:
        return
    if width * height > settings.max_image_pixels or max(width, height) > settings.max_image_side:
        raise ImageTooLarge(width, height, settings.max_image_pixels, settings.max_image_side)


@functools.cache
def _register_heif() -> None:
    """pillow-heif's HEIC/HEIF decoder (libheif + libde265). It decodes the primary image of a
    multi-image file, applies the file's rotation/mirror (and reports EXIF orientation 1,
    so nothing is turned twice) and gives 8-bit RGB(A) for 10/12-bit files."""
    import pillow_heif

    pillow_heif.register_heif_opener(thumbnails=False)


def open_checked(source: Path | BinaryIO, settings: Settings) -> Image.Image:
    """Parse the header only, refuse bombs, then hand back the lazily-decoding image."""
    _register_heif()
    try:
        im = Image.open(source, formats=PIL_FORMATS)
    except (Image.DecompressionBombError, ImageTooLarge):
        raise
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageUnreadable(f"the image cannot be read: {exc}") from None
    check_dimensions(im.width, im.height, settings)
    return im


def _orientation(im: Image.Image) -> int:
    try:
        value = im.getexif().get(0x0112, 1)
    except Exception:  # noqa: BLE001 - broken EXIF must not make the image unreadable
        return 1
    return value if value in _ORIENTATION else 1


def _to_8bit_rgb(im: Image.Image) -> Image.Image:
    """RGB or RGBA, 8 bits, sRGB."""
    icc = im.info.get("icc_profile")
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        im = im.point(lambda v: v * (1 / 256)).convert("L") if mode == "I" else im.convert("I").point(
            lambda v: v * (1 / 256)).convert("L")
    elif mode == "F":
        im = im.convert("L")
    elif mode == "1":
        im = im.convert("L")
    elif mode == "P" or mode == "PA":
        im = im.convert("RGBA" if ("transparency" in im.info or mode == "PA") else "RGB")
    if im.mode in ("L", "RGB") and im.info.get("transparency") is not None:
        im = im.convert("RGBA")  # a colour-key (tRNS) PNG: make the key transparent
    if icc and im.mode in ("RGB", "RGBA", "CMYK", "L"):
        try:
            src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            description = (ImageCms.getProfileDescription(src) or "").lower()
            if "srgb" not in description:  # converting sRGB to sRGB would only cost time
                alpha = im.getchannel("A") if im.mode == "RGBA" else None
                base = im.convert("RGB") if im.mode == "RGBA" else im
                im = ImageCms.profileToProfile(base, src, _SRGB, outputMode="RGB")
                if alpha is not None:
                    im.putalpha(alpha)
        except (ImageCms.PyCMSError, OSError, ValueError):
            log.info("ignoring an unusable ICC profile")
    if im.mode == "CMYK":
        im = im.convert("RGB")
    elif im.mode == "LA":
        im = im.convert("RGBA")
    elif im.mode not in ("RGB", "RGBA"):
        im = im.convert("RGB")
    return im


def transposed_box(method: Image.Transpose, box: tuple[float, float, float, float], width: int,
                   height: int) -> tuple[float, float, float, float]:
    """Where the region ``box`` of a width x height image lands after ``transpose(method)``."""
    w, h = width, height
    T = Image.Transpose
    move = {
        T.FLIP_LEFT_RIGHT: lambda x, y: (w - x, y), T.FLIP_TOP_BOTTOM: lambda x, y: (x, h - y),
        T.ROTATE_180: lambda x, y: (w - x, h - y), T.ROTATE_90: lambda x, y: (y, w - x),
        T.ROTATE_270: lambda x, y: (h - y, x), T.TRANSPOSE: lambda x, y: (y, x),
        T.TRANSVERSE: lambda x, y: (h - y, w - x),
    }[method]
    (x0, y0), (x1, y1) = move(box[0], box[1]), move(box[2], box[3])
    return min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)


@dataclass
class Decoded:
    """The upright sRGB image, its resize plan, and the region of it that holds the
    source: a JPEG drafted at 1/s covers w/s x h/s source pixels, so when s does not
    divide a side its last row or column is only partly valid (after rotation that
    edge may be the top or left)."""

    image: Image.Image
    plan: Any
    box: tuple[float, float, float, float]


def _scalable_webp(im: Image.Image) -> bool:
    return (im.format == "WEBP" and im.mode in ("RGB", "RGBA")
            and not getattr(im, "is_animated", False) and getattr(im, "fp", None) is not None)


def _decode_webp_scaled(im: Image.Image, width: int, height: int) -> Image.Image:
    """The whole (still) WebP rescaled by libwebp while decoding to width x height."""
    im.fp.seek(0)
    data = im.fp.read()
    alpha = native_webp.features(data)[2]
    mode = "RGBA" if alpha else "RGB"
    out = Image.frombytes(mode, (width, height), native_webp.decode_scaled(data, width, height, alpha))
    out.info = dict(im.info)  # the ICC profile (EXIF orientation was read from im already)
    return out


def decode_for(targets: Iterable[Target], im: Image.Image) -> Decoded:
    """Decode once at the smallest sufficient scale, upright, in sRGB."""
    targets = list(targets)
    orientation = _orientation(im)
    swaps = orientation in (5, 6, 7, 8)
    # A still WebP shrinks on load by the same factors as a JPEG (decoded size ceil(w/s)).
    webp = _scalable_webp(im)
    # Pillow keeps RGB, RGBA and CMYK at 4 bytes per pixel: estimate memory with 4 bands.
    plan = plan_resize(im.width, im.height, [(t.max_width, t.max_height) for t in targets],
                       is_jpeg=im.format == "JPEG" or webp, bands=4, orientation_swaps=swaps)
    source_width, source_height = im.size
    scale = plan.draft_scale
    try:
        if scale > 1 and webp:
            im = _decode_webp_scaled(im, plan.decoded_width, plan.decoded_height)
        elif scale > 1 and im.format == "JPEG":
            # (w//s, h//s) makes Pillow pick exactly the planned scale (see draft_request).
            im.draft(im.mode if im.mode in ("L", "RGB", "CMYK") else "RGB",
                     draft_request(source_width, source_height, scale))
        else:
            scale = 1
        im.seek(0)  # still presets of animations use the first frame
        im.load()
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageUnreadable(f"the image cannot be decoded: {exc}") from None
    # libwebp maps the whole image onto the scaled size; a JPEG draft's last row and
    # column are partial (it holds w/s x h/s source pixels).
    box = (0.0, 0.0, float(im.width), float(im.height)) if webp and scale > 1 else (
        0.0, 0.0, source_width / scale, source_height / scale)
    if orientation != 1:
        box = transposed_box(_ORIENTATION[orientation], box, im.width, im.height)
        im = im.transpose(_ORIENTATION[orientation])
    image = _to_8bit_rgb(im)
    # Encoders fall back to info (a JPEG comment, a PNG's ICC or colour key): outputs
    # carry none of the original's metadata.
    image.info = {}
    return Decoded(image, plan, box)


# Reduces and resizes with at least STRIPE_MIN_PIXELS output pixels are cut into
# STRIPES stripes of output rows; below that a hand-off to another thread costs more
# than it saves (a small LANCZOS is about as quick as the hand-off).
STRIPES = 2
STRIPE_MIN_PIXELS = 256 * 256

_pool_lock = threading.Lock()
_pool: tuple[int, int, ThreadPoolExecutor] | None = None  # (pid, size, pool)


def shared_pool(threads: int) -> ThreadPoolExecutor | None:
    """This process's image threads (``None`` for 1: everything runs in the caller).

    Created on first use and again after a fork (a forked copy has no threads)."""
    global _pool
    if threads <= 1:
        return None
    with _pool_lock:
        if _pool is None or _pool[0] != os.getpid() or _pool[1] != threads:
            _pool = (os.getpid(), threads, ThreadPoolExecutor(threads, thread_name_prefix="falconproc-image"))
        return _pool[2]


def _run(pool: ThreadPoolExecutor | None, parts: list[Callable[[], Image.Image]]) -> list[Image.Image]:
    """Run ``parts`` (the caller runs the first). A part still queued when the caller
    gets to it (the pool is busy encoding) is taken back and run here: nothing waits
    on a queue, so no pool size can deadlock."""
    if pool is None:
        return [part() for part in parts]
    futures: list[Future] = [pool.submit(part) for part in parts[1:]]
    results = [parts[0]()]
    for part, future in zip(parts[1:], futures):
        results.append(part() if future.cancel() else future.result())
    return results


def _stitch(mode: str, size: tuple[int, int], stripes: list[Image.Image]) -> Image.Image:
    out = Image.new(mode, size)
    y = 0
    for stripe in stripes:
        out.paste(stripe, (0, y))
        y += stripe.height
    return out


def _cuts(rows: int) -> list[int]:
    """Row boundaries of the STRIPES stripes of ``rows`` output rows."""
    return [rows * i // STRIPES for i in range(STRIPES + 1)]


def _reduce(source: Image.Image, k: int, aligned: tuple[int, int, int, int],
            pool: ThreadPoolExecutor | None) -> Image.Image:
    """``source.reduce(k, box=aligned)``, in stripes of k-aligned source rows (exactly
    the same pixels: a box average never reaches across the cut)."""
    x0, y0, x1, y1 = aligned
    out_w, out_h = -(-(x1 - x0) // k), -(-(y1 - y0) // k)
    if out_w * out_h < STRIPE_MIN_PIXELS:
        return source.reduce(k, box=aligned)
    cuts = _cuts(out_h)
    parts = [lambda a=a, b=b: source.reduce(k, box=(x0, y0 + a * k, x1, min(y1, y0 + b * k)))
             for a, b in zip(cuts, cuts[1:])]
    return _stitch(source.mode, (out_w, out_h), _run(pool, parts))


def _lanczos(source: Image.Image, size: tuple[int, int], box: tuple[float, float, float, float],
             pool: ThreadPoolExecutor | None) -> Image.Image:
    """``source.resize(size, LANCZOS, box=box)`` (the native resampler: the same bytes,
    faster), in stripes of output rows, each from its exact sub-box."""
    width, height = size
    full = (0.0, 0.0, float(source.width), float(source.height))
    if width * height < STRIPE_MIN_PIXELS or (height == source.height and box == full):
        # (a full-height, full-box source: Pillow skips the vertical pass, stripes could not)
        return resample.lanczos(source, size, box)
    # Image.resize premultiplies alpha itself; do it once here, not once per stripe.
    premultiplied = {"RGBA": "RGBa", "LA": "La"}.get(source.mode)
    work = source.convert(premultiplied) if premultiplied else source
    x0, y0, x1, y1 = box
    step = (y1 - y0) / height
    cuts = _cuts(height)
    parts = [lambda a=a, b=b: resample.lanczos(work, (width, b - a), (x0, y0 + a * step, x1, y0 + b * step))
             for a, b in zip(cuts, cuts[1:])]
    out = _stitch(work.mode, size, _run(pool, parts))
    return out.convert(source.mode) if premultiplied else out


def render(decoded: Decoded, targets: list[Target], threads: int = 1,
           on_output: Callable[[int, Image.Image], None] | None = None) -> list[Image.Image]:
    """Run the cascade: outputs in plan order, each resampled from the valid region of
    its planned source (an earlier output, or the decoded image).

    Large reduces and resizes are cut into STRIPES stripes; with ``threads`` > 1 they
    run on ``shared_pool(threads)`` (the same bytes as with 1).
    ``on_output(index, image)`` is called as soon as each output is final (in plan
    order), e.g. to hand its encode to the pool while the next outputs are made. The
    same image object may be several outputs (copies) and the source of later steps:
    treat it as read-only."""
    pool = shared_pool(threads)
    outputs: dict[int, Image.Image] = {}
    for step in decoded.plan.steps:
        if step.source < 0:
            source, box = decoded.image, decoded.box
        else:
            source = outputs[step.source]
            box = (0.0, 0.0, float(source.width), float(source.height))
        size = (step.width, step.height)
        if step.reduce > 1:
            k = step.reduce
            # Reduce from the k-aligned corner holding the valid region; the box follows.
            aligned = (int(box[0]) // k * k, int(box[1]) // k * k, source.width, source.height)
            source = _reduce(source, k, aligned, pool)
            box = (
                (box[0] - aligned[0]) / k, (box[1] - aligned[1]) / k,
                (box[2] - aligned[0]) / k, (box[3] - aligned[1]) / k,
            )
        if source.size == size and box == (0.0, 0.0, float(source.width), float(source.height)):
            out = source  # a copy of an earlier output, or a reduce that gave the size exactly
        else:
            out = _lanczos(source, size, box, pool)
        outputs[step.target_index] = out
        if on_output is not None:
            on_output(step.target_index, out)
    return [outputs[i] for i in range(len(targets))]


def encode(im: Image.Image, pil_format: str, quality: int, fh: BinaryIO) -> None:
    """Encode without any metadata (EXIF/GPS/XMP stay in the original only)."""
    if pil_format == "JPEG":
        if im.mode == "RGBA":  # JPEG has no alpha: flatten on white
            background = Image.new("RGB", im.size, (255, 255, 255))
            background.paste(im, mask=im.getchannel("A"))
            im = background
        im.save(fh, "JPEG", quality=quality, optimize=False, progressive=False)
    elif pil_format == "WEBP":
        im.save(fh, "WEBP", quality=quality, method=4)
    elif pil_format == "AVIF":
        # Speed 8 keeps a 2048-px preset near or under a second on one core, at ~0.45x the
        # JPEG's bytes for the same PSNR (benchmarks/bench_avif.py); one encoder thread, as
        # the render already shares the cores among requests.
        im.save(fh, "AVIF", quality=quality, speed=AVIF_SPEED, max_threads=1)
    else:
        im.save(fh, "PNG", compress_level=6)


