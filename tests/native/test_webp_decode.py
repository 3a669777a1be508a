"""WebP shrink-on-load: falconproc.native._webp_c (libwebp's scaled decode) and its pure
twin _webp_py (Pillow full decode + the same area average).

The same tests run on whichever the selector picked (compiled by default, the twin with
FALCONPROC_NO_EXTENSIONS); in compiled mode the module must have loaded (built with
libwebp-dev), like the other compiled ones. The twins are compared with each other.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from falconproc import native
from falconproc.native import webp as native_webp

WOOD = Path(__file__).resolve().parents[1] / "data" / "images" / "wood-d.webp"


@pytest.fixture(scope="module")
def webp():
    if native.NO_EXTENSIONS:
        assert native_webp.decode_scaled is native_webp.pure.decode_scaled
    elif native_webp.compiled is None:
        pytest.fail(f"falconproc.native._webp_c is not importable ({native_webp.IMPORT_ERROR}); install "
                    "libwebp-dev and run `FALCONPROC_REQUIRE_EXTENSIONS=1 python setup.py build_ext --inplace`")
    else:
        assert native_webp.decode_scaled is native_webp.compiled.decode_scaled
    return native_webp.features, native_webp.decode_scaled


def _encode(im: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "WEBP", **kw)
    return buf.getvalue()


def _psnr(a, b) -> float:
    mse = float(np.mean((np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def test_features(webp):
    features, _ = webp
    assert features(WOOD.read_bytes()) == (4096, 4096, False, False)
    rgba = Image.new("RGBA", (30, 20), (10, 20, 30, 128))
    assert features(_encode(rgba, lossless=True)) == (30, 20, True, False)
    with pytest.raises(ValueError):
        features(b"RIFF\x00\x00\x00\x00WEBPnope")


def test_scaled_decode_is_close_to_a_lanczos_resize(webp):
    _, decode = webp
    data = WOOD.read_bytes()
    half = Image.frombytes("RGB", (2048, 2048), bytes(decode(data, 2048, 2048, False)))
    with Image.open(WOOD) as im:
        ref = im.convert("RGB").resize((2048, 2048), Image.Resampling.LANCZOS)
    assert _psnr(half, ref) >= 40  # measured 48.9 dB


def test_alpha_is_straight_rgba(webp):
    _, decode = webp
    im = Image.new("RGBA", (64, 64), (200, 100, 50, 255))
    im.paste((0, 0, 255, 0), (0, 0, 32, 64))  # left half transparent
    out = Image.frombytes("RGBA", (32, 32), bytes(decode(_encode(im, lossless=True), 32, 32, True)))
    assert out.getpixel((28, 16)) == (200, 100, 50, 255)
    assert out.getpixel((2, 16))[3] == 0


def test_corrupt_and_truncated_data_raise(webp):
    _, decode = webp
    data = WOOD.read_bytes()
    with pytest.raises(ValueError):
        decode(data[: len(data) // 2], 100, 100, False)
    with pytest.raises(ValueError):
        decode(b"RIFF\x00\x00\x00\x00WEBPnope", 10, 10, False)
    with pytest.raises(ValueError):
        decode(data, 0, 10, False)
    with pytest.raises(ValueError):
        decode(b"", 10, 10, False)
    with pytest.raises(ValueError):
        native_webp.features(b"")


def _twins():
    if native_webp.compiled is None:  # pure-only build: nothing to compare the twin with
        assert native.NO_EXTENSIONS, "the compiled module should have been built"
        return None, None
    return native_webp.compiled.features, native_webp.compiled.decode_scaled


@pytest.mark.parametrize("size", [(2048, 2048), (1000, 1000), (512, 300)])
def test_the_twins_agree(size):
    c_features, c_decode = _twins()
    data = WOOD.read_bytes()
    assert native_webp.pure.features(data) == (c_features(data) if c_features else (4096, 4096, False, False))
    pure = Image.frombytes("RGB", size, bytes(native_webp.pure.decode_scaled(data, *size, False)))
    if c_decode is not None:
        compiled = Image.frombytes("RGB", size, bytes(c_decode(data, *size, False)))
        assert _psnr(pure, compiled) >= 40
    with Image.open(WOOD) as im:
        assert _psnr(pure, im.convert("RGB").resize(size, Image.Resampling.LANCZOS)) >= 38


def test_the_twins_agree_on_alpha():
    im = Image.new("RGBA", (64, 64), (200, 100, 50, 255))
    im.paste((0, 0, 255, 0), (0, 0, 32, 64))
    data = _encode(im, lossless=True)
    pure = native_webp.pure.decode_scaled(data, 32, 32, True)
    _, c_decode = _twins()
    if c_decode is not None:
        assert _psnr(np.frombuffer(pure, np.uint8), np.frombuffer(c_decode(data, 32, 32, True), np.uint8)) >= 40
