"""GET|HEAD /cache/{hash}/original: headers, HEAD, ranges, conditional requests, markup."""
from __future__ import annotations

import os

import pytest

from tests.support.content import sha256, unique_png, unique_text
from tests.support.http import IMMUTABLE, get_original, parse_content_disposition, upload


@pytest.fixture(scope="module")
def stored(service):
    """A ~300 KB text file (big enough for sendfile with offsets) stored once for this module."""
    data = unique_text(5500)
    resp = upload(service, data, name="served.txt")
    assert resp.status_code == 201, resp.text
    return data, resp.json()["contentHash"]


def _assert_common_headers(resp, digest, content_type="text/plain"):
    assert resp.headers["ETag"] == f'"{digest}"'
    assert resp.headers["Cache-Control"] == IMMUTABLE
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["Content-Type"].split(";")[0].strip() == content_type


def test_get_full(service, stored):
    data, digest = stored
    resp = get_original(service, digest)
    assert resp.status_code == 200
    assert resp.content == data
    assert int(resp.headers["Content-Length"]) == len(data)
    assert resp.headers.get("Accept-Ranges") == "bytes"
    _assert_common_headers(resp, digest)
    kind, ascii_name, name = parse_content_disposition(resp.headers["Content-Disposition"])
    assert (kind, ascii_name, name) == ("inline", "served.txt", "served.txt")
    assert "Content-Security-Policy" not in resp.headers


def test_head(service, stored):
    data, digest = stored
    resp = get_original(service, digest, method="HEAD")
    assert resp.status_code == 200
    assert resp.content == b""
    assert int(resp.headers["Content-Length"]) == len(data)
    _assert_common_headers(resp, digest)
    assert "Content-Disposition" in resp.headers

    ranged = get_original(service, digest, method="HEAD", headers={"Range": "bytes=0-9"})
    assert ranged.status_code == 206
    assert ranged.content == b""
    assert int(ranged.headers["Content-Length"]) == 10
    assert ranged.headers["Content-Range"] == f"bytes 0-9/{len(data)}"


@pytest.mark.parametrize(
    "header, first, last",
    [
        ("bytes=0-9", 0, 9),
        ("bytes=10-20", 10, 20),
        ("bytes=-10", -10, None),
        ("bytes=100-", 100, None),
        ("bytes=0-0", 0, 0),
        ("bytes=-1", -1, None),
        ("LAST-1000", None, None),  # the last 1000 bytes, as an explicit first-last range
        ("bytes=5-999999999", 5, None),  # the last position is clamped to the size
        ("bytes=-999999999", 0, None),  # a suffix longer than the file is the whole file
    ],
)
def test_ranges(service, stored, header, first, last):
    data, digest = stored
    size = len(data)
    if header == "LAST-1000":
        first, last = size - 1000, size - 1
        header = f"bytes={first}-{last}"
    start = first % size if first is not None and first < 0 else first
    end = size - 1 if last is None else last
    resp = get_original(service, digest, headers={"Range": header})
    assert resp.status_code == 206, resp.text[:200]
    assert resp.headers["Content-Range"] == f"bytes {start}-{end}/{size}"
    assert int(resp.headers["Content-Length"]) == end - start + 1
    assert resp.content == data[start:end + 1]
    _assert_common_headers(resp, digest)


@pytest.mark.parametrize("header", ["bytes=SIZE-", "bytes=SIZE-SIZE", "bytes=999999999-", "bytes=-0", "bytes=20-10"])
def test_unsatisfiable_range_is_416(service, stored, header):
    data, digest = stored
    size = len(data)
    resp = get_original(service, digest, headers={"Range": header.replace("SIZE", str(size))})
    assert resp.status_code == 416
    assert resp.headers["Content-Range"] == f"bytes */{size}"
    body = resp.json()
    assert body["error"] and body["message"]


@pytest.mark.parametrize("header", ["bytes=0-1,5-6", "items=0-9", "bytes=abc", "bytes=-"])
def test_multi_or_malformed_range_is_ignored(service, stored, header):
    data, digest = stored
    resp = get_original(service, digest, headers={"Range": header})
    assert resp.status_code == 200
    assert resp.content == data


def test_if_none_match(service, stored):
    data, digest = stored
    etag = f'"{digest}"'
    for value in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        resp = get_original(service, digest, headers={"If-None-Match": value})
        assert resp.status_code == 304, value
        assert resp.content == b""
        assert resp.headers["ETag"] == etag
    # HEAD too.
    assert get_original(service, digest, method="HEAD", headers={"If-None-Match": etag}).status_code == 304
    other = get_original(service, digest, headers={"If-None-Match": f'"{sha256(b"other")}"'})
    assert other.status_code == 200
    assert other.content == data


def test_if_range(service, stored):
    data, digest = stored
    stale = get_original(service, digest, headers={"Range": "bytes=0-9", "If-Range": f'"{sha256(b"x")}"'})
    assert stale.status_code == 200
    assert stale.content == data
    assert "Content-Range" not in stale.headers
    fresh = get_original(service, digest, headers={"Range": "bytes=0-9", "If-Range": f'"{digest}"'})
    assert fresh.status_code == 206
    assert fresh.content == data[:10]


MARKUP = {
    "svg": (b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
            b'<script>alert(document.cookie)</script><!-- %s --></svg>\n', "image/svg+xml", "evil.svg"),
    "svg-xml-decl": (b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"><!-- %s --></svg>\n',
                     "image/svg+xml", "decl.svg"),
    "html": (b"<!DOCTYPE html><html><body><script>fetch('/api')</script><!-- %s --></body></html>\n",
             "text/html", "page.html"),
}


@pytest.mark.parametrize("kind", sorted(MARKUP))
def test_markup_is_served_as_sandboxed_attachment(service, kind):
    template, mime, name = MARKUP[kind]
    data = template % os.urandom(8).hex().encode()
    resp = upload(service, data, name=name, headers={"Content-Type": "image/png"})
    assert resp.status_code == 201, resp.text
    assert resp.json()["mimeType"] == mime
    digest = resp.json()["contentHash"]
    for method in ("GET", "HEAD"):
        got = get_original(service, digest, method=method)
        assert got.status_code == 200
        _assert_common_headers(got, digest, mime)
        assert got.headers.get("Content-Security-Policy") == "sandbox"
        kind_, _, decoded = parse_content_disposition(got.headers["Content-Disposition"])
        assert kind_ == "attachment"
        assert decoded == name
    assert get_original(service, digest).content == data
    ranged = get_original(service, digest, headers={"Range": "bytes=0-3"})
    assert ranged.status_code == 206
    assert ranged.headers.get("Content-Security-Policy") == "sandbox"
    assert ranged.headers["Content-Disposition"].startswith("attachment")


def test_image_is_served_inline(service):
    data = unique_png(64, 48)
    resp = upload(service, data, name="pixel art.png")
    assert resp.status_code == 201, resp.text
    digest = resp.json()["contentHash"]
    got = get_original(service, digest)
    assert got.status_code == 200
    assert got.content == data
    _assert_common_headers(got, digest, "image/png")
    assert "Content-Security-Policy" not in got.headers
    kind, ascii_name, name = parse_content_disposition(got.headers["Content-Disposition"])
    assert (kind, ascii_name, name) == ("inline", "pixel art.png", "pixel art.png")
