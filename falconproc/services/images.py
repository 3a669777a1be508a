"""The image pipeline: bomb-proof decode, one decode for many presets, sRGB output.

Order of work for one source image:
1. Dimensions were read from the header at upload (native probe); they are
   checked again here, against Pillow's parse of the header, before decoding.
2. The native resize planner picks a JPEG draft scale (DCT-domain downscale
   at decode) and a cascade: each output derives from the smallest image
   already made that is large enough, with a box ``reduce`` before LANCZOS.
3. The decoded image is normalised once: first frame, EXIF orientation applied,
   ICC/CMYK converted to sRGB, 16-bit/palette/grey/LA modes mapped to 8-bit
   RGB(A).
4. Each output is encoded straight into a temp file (Pillow releases the GIL
   there), without EXIF/XMP/GPS, and published atomically.
"""
from __future__ import annotations

import io
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from PIL import Image, ImageCms, ImageFile

from falconproc import native
from falconproc.native._plan_types import draft_request
from falconproc.config import Settings
from falconproc.errors import FalconprocError

log = logging.getLogger(__name__)

# Only these decoders may ever see client bytes.
PIL_FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF")
RENDERABLE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp", "image/bmp", "image/tiff"})
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


def open_checked(source: Path | BinaryIO, settings: Settings) -> Image.Image:
    """Parse the header only, refuse bombs, then hand back the lazily-decoding image."""
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


def decode_for(targets: Iterable[Target], im: Image.Image) -> Decoded:
    """Decode once at the smallest sufficient scale, upright, in sRGB."""
    targets = list(targets)
    orientation = _orientation(im)
    swaps = orientation in (5, 6, 7, 8)
    # Pillow keeps RGB, RGBA and CMYK at 4 bytes per pixel: estimate memory with 4 bands.
    plan = native.plan_resize(im.width, im.height, [(t.max_width, t.max_height) for t in targets],
                              is_jpeg=im.format == "JPEG", bands=4, orientation_swaps=swaps)
    source_width, source_height = im.size
    scale = plan.draft_scale
    try:
        if scale > 1 and im.format == "JPEG":
            # (w//s, h//s) makes Pillow pick exactly the planned scale (see draft_request).
            im.draft(im.mode if im.mode in ("L", "RGB", "CMYK") else "RGB",
                     draft_request(source_width, source_height, scale))
        else:
            scale = 1
        im.seek(0)  # still presets of animations use the first frame
        im.load()
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageUnreadable(f"the image cannot be decoded: {exc}") from None
    box = (0.0, 0.0, source_width / scale, source_height / scale)
    if orientation != 1:
        box = transposed_box(_ORIENTATION[orientation], box, im.width, im.height)
        im = im.transpose(_ORIENTATION[orientation])
    image = _to_8bit_rgb(im)
    # Encoders fall back to info (a JPEG comment, a PNG's ICC or colour key): outputs
    # carry none of the original's metadata.
    image.info = {}
    return Decoded(image, plan, box)


def render(decoded: Decoded, targets: list[Target]) -> list[Image.Image]:
    """Run the cascade: outputs in plan order, each resampled from the valid region of
    its planned source (an earlier output, or the decoded image)."""
    outputs: dict[int, Image.Image] = {}
    for step in decoded.plan.steps:
        if step.source < 0:
            source, box = decoded.image, decoded.box
        else:
            source = outputs[step.source]
            box = (0.0, 0.0, float(source.width), float(source.height))
        size = (step.width, step.height)
        if source.size == size and box == (0.0, 0.0, float(source.width), float(source.height)):
            outputs[step.target_index] = source
            continue
        if step.reduce > 1:
            k = step.reduce
            # Reduce from the k-aligned corner holding the valid region; the box follows.
            aligned = (int(box[0]) // k * k, int(box[1]) // k * k, source.width, source.height)
            source = source.reduce(k, box=aligned)
            box = (
                (box[0] - aligned[0]) / k, (box[1] - aligned[1]) / k,
                (box[2] - aligned[0]) / k, (box[3] - aligned[1]) / k,
            )
        outputs[step.target_index] = source.resize(size, Image.Resampling.LANCZOS, box=box)
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
    else:
        im.save(fh, "PNG", compress_level=6)


