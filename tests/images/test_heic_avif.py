"""HEIC/HEIF (every iPhone photo) and AVIF originals get presets like any other image: the
file's rotation applied, no metadata in the outputs, bomb limits from the header."""
from __future__ import annotations

import pytest
from PIL import Image

from falconproc.images.pipeline import ImageTooLarge
from tests.images._http import get_preset, image_job, upload_ok
from tests.images._images import CORPUS, assert_no_metadata, encode, gps_exif, open_output
from tests.support.http import cache_metadata, wait_job
from tests.support.inprocess import build_imaging

ORIENTATION_RIGHT = 6  # the camera was turned: the stored pixels must be rotated 90 degrees clockwise


def _landscape(width: int = 480) -> Image.Image:
    with Image.open(next(p for p in CORPUS if p.name.startswith("storm-1920"))) as im:
        return im.convert("RGB").resize((width, width * 2 // 3))


@pytest.fixture(scope="module")
def heic_bytes() -> bytes:
    import pillow_heif

    pillow_heif.register_heif_opener()
    exif = gps_exif(orientation=ORIENTATION_RIGHT)
    return encode(_landscape(), "HEIF", quality=80, exif=exif.tobytes())


def _processed(svc, data: bytes, name: str) -> str:
    body = upload_ok(svc, data, name, new=None)
    if body["isNew"]:
        assert wait_job(svc, image_job(body)["id"])["status"] == "done"
    return body["contentHash"]


def test_a_heic_photo_gets_upright_metadata_free_presets(service, heic_bytes):
    body = upload_ok(service, heic_bytes, "IMG_0001.HEIC", new=None)
    assert body["mimeType"] == "image/heic"
    content_hash = _processed(service, heic_bytes, "IMG_0001.HEIC")
    thumb = get_preset(service, content_hash, "thumbnail", headers={"Accept": "*/*"})
    preview = get_preset(service, content_hash, "preview", headers={"Accept": "*/*"})
    assert thumb.status_code == 200 and preview.status_code == 200, preview.text[:300]
    # 480x320 turned upright is 320x480: portrait, never upscaled
    assert open_output(preview.content).image.size == (320, 480)
    assert open_output(thumb.content).image.size == (133, 200)
    for resp in (thumb, preview):
        assert_no_metadata(open_output(resp.content))
    assert cache_metadata(service, content_hash)["presets"]["thumbnail"]["height"] == 200


def test_an_avif_original_gets_presets(service):
    data = encode(_landscape(600), "AVIF", quality=70)
    body = upload_ok(service, data, "photo.avif", new=None)
    assert body["mimeType"] == "image/avif"
    content_hash = _processed(service, data, "photo.avif")
    preview = get_preset(service, content_hash, "preview", headers={"Accept": "*/*"})
    assert preview.status_code == 200 and preview.headers["Content-Type"] == "image/jpeg"
    assert open_output(preview.content).image.size == (600, 400)


def test_a_heic_over_the_pixel_limit_is_refused_before_decoding(tmp_path, heic_bytes):
    imaging = build_imaging(tmp_path, max_image_pixels=100_000)  # the photo has 153,600 pixels
    content_hash = imaging.put(heic_bytes, "big.heic")
    with pytest.raises(ImageTooLarge):
        imaging.preset_path(content_hash, "thumbnail")
    assert "presets" not in imaging.cache.metadata(content_hash)


def test_a_broken_heic_is_unreadable_not_a_crash(service, heic_bytes):
    broken = heic_bytes[: len(heic_bytes) // 2]  # the header survives, the coded image does not
    body = upload_ok(service, broken, "cut.heic", new=None)
    assert body["mimeType"] == "image/heic"
    resp = get_preset(service, body["contentHash"], "thumbnail")
    assert resp.status_code == 422 and resp.json()["error"] == "image_unreadable", resp.text[:300]
