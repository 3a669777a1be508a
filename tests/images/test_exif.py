"""metadata.exif: read from the header (unit, on generated photos) and through the real
service (black-box), GPS only with EXPOSE_GPS, presets never carrying any of it."""
from __future__ import annotations

import io
import time
from fractions import Fraction

import pytest
import requests
from PIL import Image
from PIL.TiffImagePlugin import IFDRational

from falconproc.images.exif import EXIF_IFD, GPS_IFD, read_exif
from tests.support.content import sha256
from tests.support.http import upload


def _rational(value: float | Fraction) -> IFDRational:
    f = Fraction(value).limit_denominator(100000)
    return IFDRational(f.numerator, f.denominator)


def photo(*, gps: bool = True, offset: str | None = "+02:00", orientation: int = 6, fmt: str = "JPEG") -> bytes:
    """A small JPEG with the EXIF a phone writes (maker, lens, exposure, time, position)."""
    exif = Image.Exif()
    exif[0x010F] = "Canon"
    exif[0x0110] = "Canon EOS R5"
    exif[0x0112] = orientation
    sub = exif.get_ifd(EXIF_IFD)
    sub[0x829A] = _rational(Fraction(1, 250))
    sub[0x829D] = _rational(2.8)
    sub[0x8827] = 400
    sub[0x9003] = "2023:05:17 14:03:22"
    if offset:
        sub[0x9011] = offset
    sub[0x920A] = _rational(50)
    sub[0xA433] = "Canon"
    sub[0xA434] = "RF50mm F1.8 STM"
    if gps:
        g = exif.get_ifd(GPS_IFD)
        g[1], g[2] = "N", (_rational(48), _rational(51), _rational(29.6))
        g[3], g[4] = "W", (_rational(2), _rational(17), _rational(40.2))
        g[5], g[6] = b"\x00", _rational(35.5)
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (120, 90, 60)).save(buf, fmt, exif=exif)
    return buf.getvalue()


EXPECTED = {"make": "Canon", "model": "Canon EOS R5", "lens": "Canon RF50mm F1.8 STM",
            "takenAt": "2023-05-17T14:03:22+02:00", "exposureTime": 0.004, "fNumber": 2.8, "iso": 400,
            "focalLength": 50.0, "orientation": 6}
GPS = {"latitude": 48.8582222, "longitude": -2.2945, "altitude": 35.5}


def _read(data: bytes, expose_gps: bool = False):
    with Image.open(io.BytesIO(data)) as im:
        return read_exif(im, expose_gps)


def test_camera_fields_without_gps_by_default():
    assert _read(photo()) == EXPECTED


def test_gps_only_when_exposed():
    assert _read(photo(), expose_gps=True) == {**EXPECTED, "gps": GPS}
    assert "gps" not in _read(photo(gps=False), expose_gps=True)


def test_taken_at_without_offset_is_local_time():
    assert _read(photo(offset=None))["takenAt"] == "2023-05-17T14:03:22"


def test_other_formats_and_no_exif():
    assert _read(photo(fmt="WEBP"))["model"] == "Canon EOS R5"
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, "PNG")
    assert _read(buf.getvalue()) is None


def test_hostile_values_are_dropped_not_fatal():
    exif = Image.Exif()
    exif[0x010F] = "A\x00\x07" + "x" * 5000  # control characters, absurd length
    exif[0x0112] = 99  # no such orientation
    sub = exif.get_ifd(EXIF_IFD)
    sub[0x829A] = IFDRational(1, 0)  # division by zero
    sub[0x9003] = "0000:00:00 00:00:00"
    sub[0x9011] = "garbage"
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, "JPEG", exif=exif)
    assert _read(buf.getvalue()) == {"make": "A" + "x" * 199}


# ---------------------------------------------------------------------------- service


def _metadata_with(svc, h: str, key: str, deadline: float = 30.0) -> dict:
    end = time.monotonic() + deadline
    while True:
        meta = requests.get(f"{svc.url}/cache/{h}/metadata", timeout=10).json()
        if key in meta and meta.get("presets", {}).get("thumbnail"):
            return meta
        assert time.monotonic() < end, (meta, svc.log()[-2000:])
        time.sleep(0.1)


def _upload(svc, data: bytes) -> str:
    resp = upload(svc, data, name="photo.jpg")
    assert resp.status_code in (200, 201), resp.text
    assert resp.json()["contentHash"] == sha256(data)
    return resp.json()["contentHash"]


def _preset_has_no_exif(svc, h: str) -> None:
    resp = requests.get(f"{svc.url}/cache/{h}/thumbnail", timeout=30)
    assert resp.status_code == 200
    with Image.open(io.BytesIO(resp.content)) as im:
        assert not im.getexif() and "xmp" not in im.info and "exif" not in im.info
        assert im.height > im.width  # orientation 6 applied: the 64x48 photo stands upright


def test_service_reports_exif_without_gps(service):
    data = photo(offset="-05:00")
    h = _upload(service, data)
    meta = _metadata_with(service, h, "exif")
    assert meta["exif"] == {**EXPECTED, "takenAt": "2023-05-17T14:03:22-05:00"}
    _preset_has_no_exif(service, h)


def test_service_reports_gps_when_exposed(fresh_service):
    svc = fresh_service(EXPOSE_GPS="true")
    h = _upload(svc, photo())
    meta = _metadata_with(svc, h, "exif")
    assert meta["exif"]["gps"] == GPS
    _preset_has_no_exif(svc, h)
