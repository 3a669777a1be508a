"""POST /optimize-for-ai through the real service: {contentHash, maxSize?, quality?} ->
{data: base64 JPEG, mimeType, size, width, height}; 400/404/415."""
from __future__ import annotations

import base64
import json

import pytest
import requests

from tests.images._http import optimize, upload_ok
from tests.images._images import CORPUS, assert_no_metadata, encode, open_output, rgba_image
from tests.support.content import unique_text
from tests.support.http import assert_error


def corpus(name: str):
    return next(p for p in CORPUS if p.name.startswith(name))


@pytest.fixture(scope="module")
def garden_hash(service):
    return upload_ok(service, corpus("garden").read_bytes(), "garden.jpg", new=None)["contentHash"]


def decode_result(resp):
    assert resp.status_code == 200, resp.text[:300]
    body = resp.json()
    assert set(body) >= {"data", "mimeType", "size", "width", "height"}
    out = open_output(base64.b64decode(body["data"], validate=True))
    assert body["mimeType"] == "image/jpeg" and out.image.format == "JPEG"
    assert body["size"] == len(out.data)
    assert (body["width"], body["height"]) == out.image.size
    assert_no_metadata(out)
    return body, out


@pytest.mark.parametrize("max_size,expected", [(512, (512, 320)), (16, (16, 10)), (2000, (2000, 1250)),
                                               (2560, (2560, 1600)), (8192, (2560, 1600)), (None, (2048, 1280))])
def test_longest_side_never_upscaled(service, garden_hash, max_size, expected):
    payload = {"contentHash": garden_hash}
    if max_size is not None:
        payload["maxSize"] = max_size
    _, out = decode_result(optimize(service, payload))
    assert out.image.size == expected


def test_orientation_applied(service):
    content_hash = upload_ok(service, corpus("storm-exif").read_bytes(), "storm8.jpg", new=None)["contentHash"]
    _, out = decode_result(optimize(service, {"contentHash": content_hash, "maxSize": 600}))
    assert out.image.size == (400, 600)


def test_alpha_flattened_on_white(service):
    content_hash = upload_ok(service, encode(rgba_image(800, 400), "PNG"), "alpha.png", new=None)["contentHash"]
    _, out = decode_result(optimize(service, {"contentHash": content_hash, "maxSize": 400}))
    assert out.image.size == (400, 200) and out.image.mode == "RGB"
    r, g, b = out.image.getpixel((300, 100))
    assert min(r, g, b) >= 250


def test_quality_honoured(service, garden_hash):
    sizes = {}
    for quality in (30, 95):
        body, _ = decode_result(optimize(service, {"contentHash": garden_hash, "maxSize": 1024, "quality": quality}))
        sizes[quality] = body["size"]
    assert sizes[30] < sizes[95] * 0.6, sizes
    default, _ = decode_result(optimize(service, {"contentHash": garden_hash, "maxSize": 1024}))
    q85, _ = decode_result(optimize(service, {"contentHash": garden_hash, "maxSize": 1024, "quality": 85}))
    assert default["data"] == q85["data"]  # quality defaults to 85


@pytest.mark.parametrize("field,value", [
    ("maxSize", 0), ("maxSize", -5), ("maxSize", "x"), ("maxSize", "512"), ("maxSize", 100000), ("maxSize", 512.5),
    ("maxSize", True), ("maxSize", None), ("maxSize", [512]),
    ("quality", 0), ("quality", 101), ("quality", False), ("quality", "85"), ("quality", 85.0), ("quality", None),
])
def test_bad_values_400(service, garden_hash, field, value):
    body = {"contentHash": garden_hash, "maxSize": 512, field: value}
    assert_error(optimize(service, body), 400)


@pytest.mark.parametrize("payload", [{}, {"maxSize": 512}, {"contentHash": None}, {"contentHash": 5},
                                     {"contentHash": "abc"}, {"contentHash": "AB" * 32}, {"contentHash": "g" * 64},
                                     {"contentHash": "ab" * 32 + "a"}, [], "x", 5])
def test_bad_hash_or_shape_400(service, payload):
    assert_error(optimize(service, payload), 400)


@pytest.mark.parametrize("data,ctype", [(b"not json", "application/json"), (b"{", "application/json"),
                                        (b"", "application/json"), (b"contentHash=ab", "application/x-www-form-urlencoded"),
                                        (b'{"contentHash": "x"}', "text/plain")])
def test_non_json_body_400(service, data, ctype):
    assert_error(optimize(service, data=data, headers={"Content-Type": ctype}), 400)


@pytest.mark.parametrize("ctype", [None, "application/x-www-form-urlencoded", "text/plain"])
def test_json_without_json_content_type_says_so(service, garden_hash, ctype):
    # curl -d sends form-urlencoded: the message names the header, not a missing contentHash.
    headers = {"Content-Type": ctype} if ctype else {}
    data = json.dumps({"contentHash": garden_hash}).encode()
    resp = requests.post(f"{service.url}/optimize-for-ai", data=data, headers=headers, timeout=30)
    body = assert_error(resp, 400, "invalid_content_type")
    assert body["message"] == "Content-Type must be application/json"


def test_unknown_hash_404(service):
    assert_error(optimize(service, {"contentHash": "cd" * 32, "maxSize": 512}), 404, "not_found")


def test_non_image_415(service):
    content_hash = upload_ok(service, unique_text(), "notes.txt")["contentHash"]
    assert_error(optimize(service, {"contentHash": content_hash}), 415, "not_an_image")
