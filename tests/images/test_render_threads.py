"""The threaded executor: stripes on the shared pool and overlapped encodes give the
same bytes as everything in one thread (IMAGE_THREADS=1), for the same plan."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from falconproc.config import Settings
from falconproc.images import pipeline as images
from falconproc.images.pipeline import Target, decode_for, open_checked, render
from tests.images._images import CORPUS, PRESETS, psnr

BOX_SETS = [
    [(1920, 0), (2048, 0), (200, 200), (800, 0)],  # the default presets
    [(512, 512)],
    [(1000, 0), (333, 333)],
    [(1023, 0), (640, 0)],
]


def _render(path, boxes, threads):
    targets = [Target(str(i), w, h, "JPEG", 85) for i, (w, h) in enumerate(boxes)]
    with open_checked(path, Settings()) as im:
        decoded = decode_for(targets, im)
    return decoded, render(decoded, targets, threads)


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.name)
def test_threads_give_the_same_pixels(path):
    for boxes in BOX_SETS:
        _, one = _render(path, boxes, 1)
        for threads in (2, 3):
            _, many = _render(path, boxes, threads)
            for a, b in zip(one, many):
                assert (a.mode, a.size) == (b.mode, b.size)
                assert a.tobytes() == b.tobytes(), f"{path.name} {boxes} {a.size} threads={threads}"


def test_stripes_are_seamless():
    """Striped (2 stripes) vs one-piece resize of a photo: no seam at the cut, only
    float-rounding differences spread over the image."""
    with Image.open(CORPUS[0]) as im:
        src = im.convert("RGB")
    box = (0.0, 0.0, float(src.width), float(src.height))
    size = (src.width * 3 // 4, src.height * 3 // 4)
    whole = np.asarray(src.resize(size, Image.Resampling.LANCZOS, box=box))
    striped = np.asarray(images._lanczos(src, size, box, images.shared_pool(2)))
    assert psnr(whole, striped) >= 50
    cut = size[1] // 2
    seam = np.abs(whole[cut - 2:cut + 2].astype(int) - striped[cut - 2:cut + 2].astype(int))
    assert seam.max() <= 5


def test_striped_reduce_is_exact():
    rng = np.random.default_rng(3)
    src = Image.fromarray(rng.integers(0, 256, (1001, 777, 4), dtype=np.uint8), "RGBA")
    for k in (2, 3, 4):
        box = (0, 0, src.width, src.height)
        assert images._reduce(src, k, box, images.shared_pool(2)).tobytes() == src.reduce(k, box=box).tobytes()


def test_shared_pool_is_per_size_and_none_for_one():
    assert images.shared_pool(1) is None
    assert images.shared_pool(2) is images.shared_pool(2)


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.name)
def test_generate_files_are_identical_with_and_without_threads(imaging, path):
    single = imaging.with_settings(image_threads=1)
    threaded = imaging.with_settings(image_threads=2)
    presets = list(PRESETS.values())
    content_hash = imaging.put(path.read_bytes())
    single.images.generate(content_hash, presets)
    first = {p.name: imaging.cached(content_hash, p.filename).read_bytes() for p in presets}
    entries = threaded.images.generate(content_hash, presets)
    second = {p.name: imaging.cached(content_hash, p.filename).read_bytes() for p in presets}
    assert first == second
    assert {name: e["size"] for name, e in entries.items()} == {n: len(b) for n, b in second.items()}
