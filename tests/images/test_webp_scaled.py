"""Still WebP sources shrink on load (libwebp's scaled decode, or its pure twin in pure
mode); animations take the full-size Pillow path and corrupt files fail cleanly."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from falconproc.config import Settings
from falconproc.images.pipeline import ImageUnreadable, Target, decode_for, open_checked, render
from tests.images._images import animated_webp, encode, noise_rgb, psnr, rgba_image
from tests.support.corpus import IMAGES_DIR

THUMB = [Target("thumbnail", 200, 200, "WEBP", 80)]


def _decode(data: bytes, targets=THUMB):
    with open_checked(io.BytesIO(data), Settings()) as im:
        return decode_for(targets, im)


def test_large_webp_is_decoded_at_the_planned_scale():
    targets = [Target("ai-vision", 2048, 0, "JPEG", 90), Target("thumbnail", 200, 200, "WEBP", 80)]
    decoded = _decode((IMAGES_DIR / "wood-d.webp").read_bytes(), targets)
    # 1/2 is exactly ai-vision; libwebp fills the whole scaled image (no partial edge)
    assert decoded.plan.draft_scale == 2
    assert decoded.image.size == (2048, 2048) and decoded.box == (0.0, 0.0, 2048.0, 2048.0)
    ai_vision, thumb = render(decoded, targets)
    with Image.open(IMAGES_DIR / "wood-d.webp") as im:
        full = im.convert("RGB")
    for out in (ai_vision, thumb):
        ref = full.resize(out.size, Image.Resampling.LANCZOS)
        assert psnr(np.asarray(out), np.asarray(ref)) >= 38


def test_alpha_survives_the_scaled_decode():
    decoded = _decode(encode(rgba_image(1600, 800), "WEBP", lossless=True))
    # 1600x800 at 1/8 is 200x100, the output itself
    assert decoded.plan.draft_scale == 8 and decoded.image.mode == "RGBA"
    (out,) = render(decoded, THUMB)
    assert out.size == (200, 100)
    assert out.getpixel((20, 50)) == (220, 30, 30, 255)
    assert out.getpixel((180, 50))[3] == 0


def test_animated_webp_is_not_scaled():
    frames = animated_webp(1600, 1200)
    decoded = _decode(frames)
    assert decoded.plan.draft_scale == 1 and decoded.image.size == (1600, 1200)


def test_truncated_webp_is_unreadable():
    data = encode(noise_rgb(1600, 1200, seed=4), "WEBP", quality=80)
    with pytest.raises(ImageUnreadable):
        _decode(data[: len(data) * 2 // 3])
