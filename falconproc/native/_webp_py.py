"""WebP shrink-on-load: the pure-Python twin of ``_native/_webp_c.pyx``.

The compiled module asks libwebp to rescale while it decodes (what libvips does);
libwebp's rescaler averages the source pixels each output pixel covers. This twin
decodes at full size with Pillow and takes the same area average
(``Image.Resampling.BOX``): the same size, the same filter, a little slower and
not bit-identical (tests/native/test_webp_decode.py compares the two).
"""
from __future__ import annotations

import io

from PIL import Image


def _open(data) -> Image.Image:
    try:
        return Image.open(io.BytesIO(bytes(data)), formats=["WEBP"])
    except (OSError, SyntaxError, ValueError) as exc:
        raise ValueError(f"not a readable WebP ({exc})") from None


def features(data) -> tuple[int, int, bool, bool]:
    """(width, height, has_alpha, has_animation) from the WebP header."""
    with _open(data) as im:
        return im.width, im.height, im.mode == "RGBA", bool(getattr(im, "is_animated", False))


def decode_scaled(data, width: int, height: int, alpha: bool) -> bytearray:
    """The first frame decoded and area-averaged to ``width`` x ``height``: RGB (or RGBA
    with ``alpha``) pixels, rows packed. ValueError when the data cannot be decoded."""
    if width <= 0 or height <= 0:
        raise ValueError("the scaled size must be positive")
    with _open(data) as im:
        try:
            im.load()
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise ValueError(f"the WebP cannot be decoded ({exc})") from None
        full = im.convert("RGBA" if alpha else "RGB")
    return bytearray(full.resize((width, height), Image.Resampling.BOX).tobytes())
