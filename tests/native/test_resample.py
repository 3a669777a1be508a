"""Lanczos resampling: falconproc.native._resample_c (Pillow's arithmetic in SIMD loops)
and its pure twin (Pillow's resize itself).

The same tests run on whichever the selector picked; in compiled mode the module must
have loaded. The compiled one must give Pillow's bytes wherever Pillow runs its passes
horizontal first (every aspect-preserving fit, which is what the pipeline asks for),
and stay within rounding of it elsewhere (Pillow runs the vertical pass first when
that is cheaper; both are the same filter).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from falconproc import native
from falconproc.native import resample

IMAGES = Path(__file__).resolve().parents[1] / "data" / "images"


@pytest.fixture(scope="module")
def lanczos():
    if native.NO_EXTENSIONS:
        assert resample.lanczos is resample.pure.lanczos
    elif resample.compiled is None:
        pytest.fail(f"falconproc.native._resample_c is not importable ({resample.IMPORT_ERROR}); run "
                    "`FALCONPROC_REQUIRE_EXTENSIONS=1 pip install -e .`")
    else:
        assert resample.lanczos is resample.compiled.lanczos
    return resample.lanczos


@pytest.fixture(scope="module")
def garden() -> Image.Image:
    with Image.open(IMAGES / "garden-2560x1600.jpg") as im:
        im.draft("RGB", (640, 400))
        return im.convert("RGB")


def _pillow(im: Image.Image, size, box) -> Image.Image:
    return im.resize(size, Image.Resampling.LANCZOS, box=box)


def _diff(a: Image.Image, b: Image.Image) -> int:
    assert a.mode == b.mode and a.size == b.size
    return int(np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16)).max())


@pytest.mark.parametrize("size", [(512, 320), (300, 188), (160, 100), (64, 40), (1, 1)])
@pytest.mark.parametrize("box", [(0, 0, 640, 400), (0.5, 0.25, 639.25, 399.5), (10, 20, 330, 220)])
def test_fits_give_pillows_bytes(lanczos, garden, size, box):
    width, height = box[2] - box[0], box[3] - box[1]
    # an aspect-preserving fit of the box (what the pipeline asks for)
    scale = min(size[0] / width, size[1] / height)
    fitted = (max(1, round(width * scale)), max(1, round(height * scale)))
    out = lanczos(garden, fitted, box)
    assert out.size == fitted and out.mode == "RGB"
    assert _diff(out, _pillow(garden, fitted, box)) == 0


@pytest.mark.parametrize("mode", ["L", "RGBA", "RGBa", "LA", "P", "I;16", "CMYK"])
def test_every_mode_matches_pillow(lanczos, garden, mode):
    source = garden.convert("RGBA") if mode in ("RGBA", "RGBa", "LA") else garden
    if mode in ("RGBA", "RGBa", "LA"):
        alpha = Image.linear_gradient("L").resize(garden.size)
        source = source.copy()
        source.putalpha(alpha)
    if mode == "I;16":
        source = garden.convert("L").convert("I;16")
    elif mode != "RGBA":
        source = source.convert(mode)
    out = lanczos(source, (333, 208), (0, 0, 640, 400))
    assert out.mode == source.mode and out.size == (333, 208)
    if mode == "P":  # Pillow resizes palette images with NEAREST, as lanczos passes them on
        assert out.tobytes() == _pillow(source, (333, 208), (0, 0, 640, 400)).tobytes()
    else:
        assert _diff(out, _pillow(source, (333, 208), (0, 0, 640, 400))) == 0


@pytest.mark.parametrize("size", [(640, 200), (512, 100), (200, 300), (640, 400), (900, 500)])
def test_other_shapes_stay_within_rounding(lanczos, garden, size):
    # squashed, stretched, one axis unchanged, identity, enlarged
    box = (0.5, 0, 639.25, 400)
    out = lanczos(garden, size, box)
    assert out.size == size
    assert _diff(out, _pillow(garden, size, box)) <= 8


def test_identity_is_a_copy(lanczos, garden):
    out = lanczos(garden, garden.size, (0, 0, *garden.size))
    assert out is not garden and out.tobytes() == garden.tobytes()


def test_large_ratios_and_tiny_sources(lanczos):
    with Image.open(IMAGES / "storm-1920x1280.jpg") as im:
        big = im.convert("RGB")
    assert _diff(lanczos(big, (96, 64), (0, 0, 1920, 1280)), _pillow(big, (96, 64), (0, 0, 1920, 1280))) == 0
    dot = Image.new("RGB", (1, 1), (200, 10, 30))
    assert lanczos(dot, (3, 2), (0, 0, 1, 1)).getpixel((2, 1)) == (200, 10, 30)
