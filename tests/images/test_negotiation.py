"""Format negotiation for image presets: Accept (q-values) or ?format= picks AVIF, WebP or
the preset's own format; Vary: Accept always; one ETag per variant; variants made once, on
first request, and recorded beside the preset in the metadata."""
from __future__ import annotations

import numpy as np
import pytest
import requests
from PIL import Image

from falconproc.images.negotiation import UnknownFormat, choose_format, parse_accept
from tests.images._http import get_preset, image_job, upload_ok
from tests.images._images import CORPUS, assert_no_metadata, encode, gps_exif, open_output, psnr
from tests.support.http import assert_error, cache_metadata, wait_job

CHROME = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8"
FIREFOX_OLD = "image/webp,*/*"


# --------------------------------------------------------------------------- unit

@pytest.mark.parametrize("own,accept,expected", [
    ("jpeg", CHROME, "avif"),
    ("webp", CHROME, "avif"),
    ("jpeg", FIREFOX_OLD, "webp"),
    ("jpeg", "*/*", "jpeg"),  # a wildcard alone gets the preset's own format
    ("jpeg", "image/*", "jpeg"),
    ("jpeg", None, "jpeg"),
    ("jpeg", "", "jpeg"),
    ("jpeg", "image/webp;q=1, image/avif;q=0.5", "webp"),  # q-values honoured
    ("jpeg", "image/avif;q=0, image/webp;q=0.2, */*", "jpeg"),  # the own format's 1.0 beats webp's 0.2
    ("jpeg", "image/avif;q=0.5, image/jpeg;q=0.5", "avif"),  # a tie goes to the smaller format
    ("png", "image/avif;q=0", "png"),
    ("jpeg", "IMAGE/AVIF ; Q=0.9", "avif"),  # case-insensitive
    ("jpeg", "image/avif;q=nonsense, */*", "jpeg"),  # an unreadable q counts as 0
])
def test_accept_picks_avif_then_webp_then_the_own_format(own, accept, expected):
    assert choose_format(own, accept) == expected


def test_format_parameter_overrides_accept():
    assert choose_format("jpeg", CHROME, "png") == "png"
    assert choose_format("webp", CHROME, "JPG") == "jpeg"
    with pytest.raises(UnknownFormat):
        choose_format("jpeg", CHROME, "gif")


def test_parse_accept_keeps_the_highest_q_of_a_repeated_range():
    assert parse_accept("image/webp;q=0.2, image/webp;q=0.7") == {"image/webp": 0.7}


# --------------------------------------------------------------------------- black-box

@pytest.fixture(scope="module")
def photo(service):
    """A corpus photo with EXIF + GPS added (no variant may carry them), fully processed."""
    with Image.open(next(p for p in CORPUS if p.name.startswith("storm-1920"))) as im:
        data = encode(im.convert("RGB"), "JPEG", quality=90, exif=gps_exif())
    body = upload_ok(service, data, "storm-gps.jpg", new=None)
    if body["isNew"]:  # the eager presets are recorded before any test looks at them
        assert wait_job(service, image_job(body)["id"])["status"] == "done"
    return body["contentHash"]


def test_accept_avif_gets_an_avif_preview_of_the_same_size_and_fidelity(service, photo):
    plain = get_preset(service, photo, "preview", headers={"Accept": "*/*"})
    avif = get_preset(service, photo, "preview", headers={"Accept": CHROME})
    assert plain.status_code == 200 and avif.status_code == 200, avif.text[:300]
    assert plain.headers["Content-Type"] == "image/jpeg" and avif.headers["Content-Type"] == "image/avif"
    for resp in (plain, avif):
        assert "accept" in resp.headers["Vary"].lower()
    assert avif.headers["ETag"] != plain.headers["ETag"]
    assert avif.headers["ETag"] == f'"{photo}-preview.avif"' and plain.headers["ETag"] == f'"{photo}-preview"'
    jpeg, out = open_output(plain.content), open_output(avif.content)
    assert out.image.format == "AVIF" and out.image.size == jpeg.image.size
    assert_no_metadata(out)
    # the AVIF is a faithful rendering (the same picture as the JPEG, within lossy noise) and smaller
    similarity = psnr(np.asarray(out.image.convert("RGB")), np.asarray(jpeg.image.convert("RGB")))
    assert similarity > 30, similarity
    assert len(avif.content) < len(plain.content)


def test_webp_variant_and_format_override(service, photo):
    webp = get_preset(service, photo, "ai-chat", headers={"Accept": FIREFOX_OLD})
    assert webp.status_code == 200 and webp.headers["Content-Type"] == "image/webp"
    assert open_output(webp.content).image.format == "WEBP"
    png = get_preset(service, photo, "thumbnail", params={"format": "png"}, headers={"Accept": CHROME})
    assert png.status_code == 200 and png.headers["Content-Type"] == "image/png"
    assert open_output(png.content).image.format == "PNG" and "accept" in png.headers["Vary"].lower()
    own = get_preset(service, photo, "thumbnail", headers={"Accept": "*/*"})  # thumbnail's own: WebP
    assert own.headers["Content-Type"] == "image/webp" and own.headers["ETag"] == f'"{photo}-thumbnail"'


def test_an_unknown_format_is_400_and_an_unknown_preset_still_404(service, photo):
    body = assert_error(get_preset(service, photo, "preview", params={"format": "gif"}), 400, "invalid_format")
    assert "avif" in body["formats"]
    assert_error(get_preset(service, photo, "nope", headers={"Accept": CHROME}), 404, "unknown_preset")


def test_a_variant_is_made_once_then_served_from_the_cache_with_conditional_requests(service, photo):
    first = get_preset(service, photo, "ai-vision", headers={"Accept": "image/avif"})
    assert first.status_code == 200
    meta = cache_metadata(service, photo)
    entry = meta["variants"]["ai-vision"]["avif"]
    assert entry["mimeType"] == "image/avif" and entry["size"] == len(first.content)
    assert meta["presets"]["ai-vision"]["format"] == "jpeg"  # the preset's own entry is untouched
    again = get_preset(service, photo, "ai-vision", headers={"Accept": "image/avif"})
    assert again.content == first.content and again.headers["ETag"] == first.headers["ETag"]
    assert cache_metadata(service, photo)["variants"]["ai-vision"]["avif"]["processedAt"] == entry["processedAt"]
    cached = get_preset(service, photo, "ai-vision", headers={"Accept": "image/avif",
                                                              "If-None-Match": first.headers["ETag"]})
    assert cached.status_code == 304 and "accept" in cached.headers["Vary"].lower()
    head = get_preset(service, photo, "ai-vision", "HEAD", headers={"Accept": "image/avif"})
    assert head.status_code == 200 and int(head.headers["Content-Length"]) == len(first.content)
    # a client holding the JPEG's ETag gets the AVIF, not a 304
    other = get_preset(service, photo, "ai-vision", headers={"Accept": "image/avif",
                                                             "If-None-Match": f'"{photo}-ai-vision"'})
    assert other.status_code == 200 and other.headers["Content-Type"] == "image/avif"


def test_concurrent_first_requests_for_a_variant_all_succeed_alike(service):
    """Four clients ask for a variant nobody made yet: the cache's single-flight lock lets one
    render while the others wait, and all four get the same complete file."""
    with Image.open(next(p for p in CORPUS if p.name.startswith("meadow"))) as im:
        data = encode(im.convert("RGB").rotate(180), "JPEG", quality=88)
    content_hash = upload_ok(service, data, "meadow-upside.jpg", new=None)["contentHash"]
    from concurrent.futures import ThreadPoolExecutor

    def fetch(_):
        with requests.Session() as session:
            return get_preset(service, content_hash, "preview", session=session, headers={"Accept": "image/avif"})

    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(fetch, range(4)))
    assert {r.status_code for r in answers} == {200}
    assert len({r.content for r in answers}) == 1
    assert open_output(answers[0].content).image.format == "AVIF"
