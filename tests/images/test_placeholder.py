"""image.blurhash: a 4x3-component BlurHash of the smallest preset the image job made,
shown in /cache/{hash}/metadata beside the header's width/height."""
from __future__ import annotations

import io

import blurhash
import numpy as np
from PIL import Image

from falconproc.images.placeholder import blurhash_of
from tests.images._http import get_preset, image_job, upload_ok
from tests.images._images import CORPUS, encode
from tests.support.http import cache_metadata, wait_job


def mean_colour(rows) -> np.ndarray:
    return np.asarray(rows, dtype=np.float64).reshape(-1, 3).mean(axis=0)


def test_a_flat_colour_hashes_to_that_colour():
    code = blurhash_of(Image.new("RGB", (300, 200), (30, 120, 200)))
    assert len(code) == 28  # 1 + 1 + 4 + 2 * (4 * 3 - 1) characters for 4x3 components
    assert np.abs(mean_colour(blurhash.decode(code, 8, 6)) - (30, 120, 200)).max() <= 3


def test_transparency_is_flattened_on_white():
    im = Image.new("RGBA", (64, 64), (255, 0, 0, 0))  # fully transparent red
    assert np.abs(mean_colour(blurhash.decode(blurhash_of(im), 4, 4)) - 255).max() <= 3


def test_the_image_job_records_a_blurhash_of_the_picture(service):
    with Image.open(next(p for p in CORPUS if p.name.startswith("garden"))) as im:
        data = encode(im.convert("RGB").transpose(Image.Transpose.FLIP_LEFT_RIGHT), "JPEG", quality=87)
    body = upload_ok(service, data, "garden-mirrored.jpg", new=None)
    if body["isNew"]:
        assert wait_job(service, image_job(body)["id"])["status"] == "done"
    content_hash = body["contentHash"]
    meta = cache_metadata(service, content_hash)
    image = meta["image"]
    assert (image["width"], image["height"]) == (2560, 1600)  # the header's fields are kept
    code = image["blurhash"]
    assert isinstance(code, str) and len(code) == 28
    # the placeholder's colours are the picture's: compare with the thumbnail the service made
    thumb = get_preset(service, content_hash, "thumbnail", headers={"Accept": "*/*"})
    with Image.open(io.BytesIO(thumb.content)) as im:
        expected = np.asarray(im.convert("RGB"), dtype=np.float64).reshape(-1, 3).mean(axis=0)
    decoded = mean_colour(blurhash.decode(code, 32, 20))
    assert np.abs(decoded - expected).max() < 12, (decoded, expected)
