"""Every type the service sniffs, through the real service: stored, typed from the bytes
(never from the name), served back byte for byte with that type. The corpus has only
JPEG/PNG/WebP/PDF/DOCX/text; the other types are generated here."""
from __future__ import annotations

import io
import zipfile

import pytest
import requests
from PIL import Image

from tests.support.content import sha256
from tests.support.http import upload

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
PPTX = "application/vnd.openxmlformats-officedocument.presentationml.presentation"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
ODT = "application/vnd.oasis.opendocument.text"
ODP = "application/vnd.oasis.opendocument.presentation"


def _image(fmt: str, size=(37, 23), **save) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (200, 40, 90)).save(buf, fmt, **save)
    return buf.getvalue()


def _animated_gif() -> bytes:
    frames = [Image.new("RGB", (40, 30), color) for color in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    return buf.getvalue()


def _ftyp(brand: bytes) -> bytes:
    # An ISO BMFF file starts with its ftyp box: size, "ftyp", major brand, version, compatible brands.
    box = b"ftyp" + brand + b"\0\0\0\0" + b"mif1" + brand
    return (len(box) + 4).to_bytes(4, "big") + box + b"\0\0\0\x08free" + b"\0" * 64


def _zip(*names: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name in names:
            zf.writestr(name, f"<x>{name}</x>")
    return buf.getvalue()


def _odf(mimetype: str) -> bytes:
    """An OpenDocument package: the `mimetype` entry first and stored, as ODF 1.2 (3.3) asks."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(zipfile.ZipInfo("mimetype"), mimetype, compress_type=zipfile.ZIP_STORED)
        zf.writestr("content.xml", "<office:document-content/>")
        zf.writestr("META-INF/manifest.xml", "<manifest:manifest/>")
    return buf.getvalue()


CASES = [
    # (id, bytes, expected mimeType, expected (width, height, frames) or None)
    ("gif-animated", _animated_gif(), "image/gif", (40, 30, 3)),
    ("bmp", _image("BMP"), "image/bmp", (37, 23, None)),
    ("tiff", _image("TIFF"), "image/tiff", (37, 23, None)),
    ("heic", _ftyp(b"heic"), "image/heic", None),
    ("avif", _ftyp(b"avif"), "image/avif", None),
    # Videos: only the container's header here (tests/video/ uploads real ones).
    ("mp4", _ftyp(b"isom"), "video/mp4", None),
    ("mov", _ftyp(b"qt  "), "video/quicktime", None),
    ("m4v", _ftyp(b"M4V "), "video/x-m4v", None),
    ("3gp", _ftyp(b"3gp5"), "video/3gpp", None),
    ("avi", b"RIFF\x00\x10\x00\x00AVI LIST" + b"\0" * 64, "video/x-msvideo", None),
    ("webm", b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\xf7\x81\x01\x42\xf2\x81\x04\x42\xf3\x81\x08"
             b"\x42\x82\x84webm\x42\x87\x81\x04\x42\x85\x81\x02" + b"\0" * 64, "video/webm", None),
    ("mkv", b"\x1a\x45\xdf\xa3\xa3\x42\x86\x81\x01\x42\xf7\x81\x01\x42\xf2\x81\x04\x42\xf3\x81\x08"
            b"\x42\x82\x88matroska\x42\x87\x81\x04\x42\x85\x81\x02" + b"\0" * 64, "video/x-matroska", None),
    ("csv", b"name,age,city\nbob,31,berlin\nann,27,paris\n", "text/csv", None),
    ("markdown", b"# Notes\n\nSee [the docs](https://example.org) first.\n", "text/markdown", None),
    ("json", b'{"name": "x", "n": [1, 2, 3]}', "application/json", None),
    ("utf16-text", "\ufeffhello w\u00f6rld \u4e16\u754c\n".encode("utf-16-le"), "text/plain", None),
    ("xml", b'<?xml version="1.0" encoding="UTF-8"?>\n<root><a/></root>', "application/xml", None),
    ("xlsx", _zip("[Content_Types].xml", "xl/workbook.xml", "xl/worksheets/sheet1.xml"), XLSX, None),
    ("pptx", _zip("[Content_Types].xml", "ppt/presentation.xml", "ppt/slides/slide1.xml"), PPTX, None),
    ("docx-minimal", _zip("[Content_Types].xml", "word/document.xml"), DOCX, None),
    ("odt", _odf(ODT), ODT, None),
    ("odp", _odf(ODP), ODP, None),
    ("epub-is-zip", _odf("application/epub+zip"), "application/zip", None),  # an ODF-like package, not accepted as ODF
    ("zip", _zip("notes.txt", "data/a.bin"), "application/zip", None),
    ("zip-named-like-docx", _zip("word/document.xml"), "application/zip", None),  # no [Content_Types].xml
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_each_sniffed_type_round_trips(module_service, case):
    name, data, mime, dims = case
    # The name lies on purpose: the type must come from the bytes.
    resp = upload(module_service, data, name=f"{name}.txt", headers={"Content-Type": "image/png"})
    assert resp.status_code in (200, 201), resp.text
    body = resp.json()
    assert body["contentHash"] == sha256(data)
    assert body["mimeType"] == mime
    image = body["metadata"].get("image")
    if dims is None:
        assert image is None
    else:
        assert (image["width"], image["height"], image["frames"]) == dims
    got = requests.get(f"{module_service.url}/cache/{body['contentHash']}/original", timeout=10)
    assert got.status_code == 200 and got.content == data
    assert got.headers["Content-Type"].split(";")[0] == mime
    if mime == "application/xml":  # markup: never rendered inline
        assert got.headers["Content-Disposition"].startswith("attachment")
        assert got.headers["Content-Security-Policy"] == "sandbox"
