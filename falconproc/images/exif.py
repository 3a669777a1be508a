"""EXIF of an opened image, as `metadata.exif`: what a photo's header says about how it
was taken. Read from the header Pillow has already parsed (``Image.open``), no decode.

GPS position only when EXPOSE_GPS is on; presets never carry any of it (the pipeline
writes no EXIF/XMP)."""
from __future__ import annotations

import math
import re
from typing import Any

from PIL import Image

EXIF_IFD = 0x8769
GPS_IFD = 0x8825
MAKE, MODEL, ORIENTATION = 0x010F, 0x0110, 0x0112
DATE_TIME = 0x0132
EXPOSURE_TIME, F_NUMBER, ISO = 0x829A, 0x829D, 0x8827
DATE_TIME_ORIGINAL, OFFSET_TIME_ORIGINAL = 0x9003, 0x9011
FOCAL_LENGTH, LENS_MAKE, LENS_MODEL = 0x920A, 0xA433, 0xA434
MAX_TEXT = 200  # a header field longer than this is not a camera name: cut

_DATE = re.compile(r"(\d{4}):(\d{2}):(\d{2})[ T](\d{2}):(\d{2}):(\d{2})")
_OFFSET = re.compile(r"[+-]\d{2}:\d{2}")


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str):
        return None
    value = "".join(c for c in value if c.isprintable()).strip()
    return value[:MAX_TEXT] or None


def _number(value: Any) -> float | None:
    if isinstance(value, tuple) and value:  # some writers store a one-element array
        value = value[0]
    try:
        number = float(value)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return number if math.isfinite(number) and number >= 0 else None


def _rounded(value: Any, digits: int) -> float | None:
    number = _number(value)
    return round(number, digits) if number is not None else None


def _taken_at(date: Any, offset: Any) -> str | None:
    """ISO 8601 local time of the shot, with its UTC offset when the camera recorded one."""
    match = _DATE.match(_text(date) or "")
    if not match or match.group(1) == "0000":
        return None
    y, mo, d, h, mi, s = match.groups()
    stamp = f"{y}-{mo}-{d}T{h}:{mi}:{s}"
    offset = _text(offset)
    return stamp + offset if offset and _OFFSET.fullmatch(offset) else stamp


def _degrees(dms: Any, ref: Any, negative: str) -> float | None:
    try:
        d, m, s = (float(x) for x in dms)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    value = d + m / 60 + s / 3600
    if not math.isfinite(value):
        return None
    return round(-value if _text(ref) == negative else value, 7)


def _gps(exif: Image.Exif) -> dict[str, Any] | None:
    gps = exif.get_ifd(GPS_IFD)
    latitude = _degrees(gps.get(2), gps.get(1), "S")
    longitude = _degrees(gps.get(4), gps.get(3), "W")
    if latitude is None or longitude is None or abs(latitude) > 90 or abs(longitude) > 180:
        return None
    position: dict[str, Any] = {"latitude": latitude, "longitude": longitude}
    altitude = _number(gps.get(6))
    if altitude is not None:
        below = gps.get(5) in (1, b"\x01")
        position["altitude"] = round(-altitude if below else altitude, 2)
    return position


def read_exif(im: Image.Image, expose_gps: bool = False) -> dict[str, Any] | None:
    """``metadata.exif`` for an opened image; None when it has no EXIF worth reporting.

    A broken EXIF block loses only itself: the image is still rendered."""
    try:
        exif = im.getexif()
        if not exif:
            return None
        sub = exif.get_ifd(EXIF_IFD)
        orientation = exif.get(ORIENTATION)
        lens = _text(sub.get(LENS_MODEL))
        lens_make = _text(sub.get(LENS_MAKE))
        if lens and lens_make and not lens.startswith(lens_make):
            lens = f"{lens_make} {lens}"
        iso = _number(sub.get(ISO))
        exposure = _number(sub.get(EXPOSURE_TIME))
        found: dict[str, Any] = {
            "make": _text(exif.get(MAKE)),
            "model": _text(exif.get(MODEL)),
            "lens": lens,
            "takenAt": _taken_at(sub.get(DATE_TIME_ORIGINAL) or exif.get(DATE_TIME), sub.get(OFFSET_TIME_ORIGINAL)),
            "exposureTime": round(exposure, 6) if exposure is not None else None,
            "fNumber": _rounded(sub.get(F_NUMBER), 1),
            "iso": int(iso) if iso is not None else None,
            "focalLength": _rounded(sub.get(FOCAL_LENGTH), 1),
            "orientation": orientation if isinstance(orientation, int) and 1 <= orientation <= 8 else None,
        }
        if expose_gps:
            found["gps"] = _gps(exif)
    except Exception:  # noqa: BLE001 - Pillow raises many types on malformed IFDs
        return None
    found = {k: v for k, v in found.items() if v is not None}
    return found or None
