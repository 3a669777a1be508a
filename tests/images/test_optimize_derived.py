"""optimize-for-ai from a stored preset instead of the original (in process).

Once the eager presets exist, a fit that a stored preset covers DERIVE_MIN_RATIO to
DERIVE_MAX_RATIO times over is resampled from that preset: the answer has the from-original answer's size and
stays above 40 dB PSNR of it, on every corpus photo, and the original is not read.
"""
from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from falconproc.images.service import DERIVE_MAX_RATIO, DERIVE_MIN_RATIO
from tests.images._images import CORPUS
from tests.support.inprocess import build_imaging

PHOTOS = [p for p in CORPUS if p.suffix in (".jpg", ".png", ".webp")]


def _psnr(a: Image.Image, b: Image.Image) -> float:
    mse = float(np.mean((np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def _answer(imaging, content_hash: str, max_size: int) -> Image.Image:
    body = imaging.images.optimize(content_hash, max_size, 85)
    out = Image.open(io.BytesIO(base64.b64decode(body["data"])))
    assert (body["width"], body["height"]) == out.size
    return out.convert("RGB")


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """(cold, warm): the same photos stored twice, presets made only in ``warm``."""
    cold = build_imaging(tmp_path_factory.mktemp("cold"))
    warm = build_imaging(tmp_path_factory.mktemp("warm"))
    hashes = {}
    for path in PHOTOS:
        data = path.read_bytes()
        hashes[path.name] = cold.put(data, path.name)
        assert warm.put(data, path.name) == hashes[path.name]
        warm.images.generate(hashes[path.name], list(warm.images.catalog.eager))
    return cold, warm, hashes


@pytest.mark.parametrize("max_size", [1024, 768, 512, 400, 300, 256, 128])
@pytest.mark.parametrize("name", [p.name for p in PHOTOS])
def test_derived_answer_matches_the_original_one(pair, name, max_size):
    cold, warm, hashes = pair
    h = hashes[name]
    assert cold.images.derivation_source(h, cold.store.metadata(h), max_size) is None  # nothing stored yet
    from_original = _answer(cold, h, max_size)
    derived = _answer(warm, h, max_size)
    assert derived.size == from_original.size
    assert _psnr(derived, from_original) >= 40.0


def test_the_smallest_large_enough_preset_is_chosen(pair):
    _, warm, hashes = pair
    h = hashes["garden-2560x1600.jpg"]
    meta = warm.store.metadata(h)
    made = warm.cache.metadata(h)["presets"]
    preset, size = warm.images.derivation_source(h, meta, 512)
    assert size == (512, 320)
    entry = made[preset.name]
    assert entry["width"] >= DERIVE_MIN_RATIO * 512 and entry["height"] >= DERIVE_MIN_RATIO * 320
    assert entry["width"] <= DERIVE_MAX_RATIO * 512 and entry["height"] <= DERIVE_MAX_RATIO * 320
    smaller = [e for n, e in made.items() if e["width"] * e["height"] < entry["width"] * entry["height"]
               and e["width"] >= DERIVE_MIN_RATIO * 512 and e["height"] >= DERIVE_MIN_RATIO * 320]
    assert not smaller
    # too large a fit for any stored preset, or too small for the preview: the original
    biggest = max(e["width"] for e in made.values())
    assert warm.images.derivation_source(h, meta, int(biggest / DERIVE_MIN_RATIO) + 1) is None
    assert warm.images.derivation_source(h, meta, 256) is None  # 800 px preview: 3.1x


def test_the_original_is_not_read_when_a_preset_serves(pair, monkeypatch):
    _, warm, hashes = pair
    h = hashes["garden-2560x1600.jpg"]

    def no_original(*args, **kwargs):
        raise AssertionError("the original was read")

    monkeypatch.setattr(warm.store, "local_file", no_original)
    assert _answer(warm, h, 512).size == (512, 320)
    with pytest.raises(AssertionError, match="original was read"):
        _answer(warm, h, 1800)  # larger than any preset covers 1.5x over


def test_an_evicted_preset_falls_back_to_the_original(tmp_path):
    imaging = build_imaging(tmp_path)
    path = next(p for p in PHOTOS if p.name.startswith("garden"))
    h = imaging.put(path.read_bytes(), path.name)
    imaging.images.generate(h, list(imaging.images.catalog.eager))
    preset, _ = imaging.images.derivation_source(h, imaging.store.metadata(h), 512)
    imaging.cache.path(h, preset.filename).unlink()
    assert _answer(imaging, h, 512).size == (512, 320)
