"""Image fixtures made on the fly, reference renders and checks shared by tests/images/.

Everything here is synthetic except the corpus in tests/data/images/: sizes, modes,
metadata and hostile headers that a property needs, built with Pillow or by hand.
"""
from __future__ import annotations

import io
import math
import os
import struct
import zlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
from PIL import Image, ImageCms, ImageOps

from falconproc.native.resize import fit_box
from falconproc.images.presets import DEFAULT_PRESETS, Preset
from tests.support.corpus import IMAGE_CORPUS

CORPUS = IMAGE_CORPUS  # tests/data/images
PRESETS = {p.name: p for p in DEFAULT_PRESETS}
SNIFFED = {"JPEG": ("jpeg", "image/jpeg", "jpg"), "WEBP": ("webp", "image/webp", "webp"),
           "PNG": ("png", "image/png", "png")}
XMP_NS = b"http://ns.adobe.com/xap/1.0/"
ORIENTATION_TAG = 0x0112
GPS_IFD = 0x8825


# --------------------------------------------------------------------------- encoding helpers


def encode(im: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kwargs)
    return buf.getvalue()


def noise_rgb(width: int, height: int, seed: int | None = None) -> Image.Image:
    """A smooth gradient plus a little noise: compresses like a photo, unique per seed."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255.0 / max(1, width - 1), y * 255.0 / max(1, height - 1),
                     (x + y) * 127.0 / max(1, width + height - 2)], axis=-1)
    arr = np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)
    return Image.fromarray(arr, "RGB")


def unique_jpeg(width: int = 640, height: int = 480, **save) -> bytes:
    return encode(noise_rgb(width, height, seed=int.from_bytes(os.urandom(4), "big")), "JPEG", quality=90, **save)


def with_trailer(data: bytes) -> bytes:
    """Same pixels, new content hash: junk after the image's end, which decoders ignore."""
    return data + b"\x00trailer-" + os.urandom(8).hex().encode()


# --------------------------------------------------------------------------- metadata-laden JPEG


def gps_exif(orientation: int | None = None) -> Image.Exif:
    exif = Image.Exif()
    exif[0x010F] = "TestCam Inc."  # Make
    exif[0x0110] = "Model 7"  # Model
    if orientation is not None:
        exif[ORIENTATION_TAG] = orientation
    gps = exif.get_ifd(GPS_IFD)
    gps[1] = "N"
    gps[2] = (52.0, 22.0, 7.5)
    gps[3] = "E"
    gps[4] = (4.0, 53.0, 1.25)
    return exif


XMP_PACKET = (b"<?xpacket begin='' id='W5M0MpCehiHzreSzNTczkc9d'?><x:xmpmeta xmlns:x='adobe:ns:meta/'>"
              b"<rdf:RDF xmlns:rdf='http://www.w3.org/1999/02/22-rdf-syntax-ns#'><rdf:Description "
              b"xmlns:photoshop='http://ns.adobe.com/photoshop/1.0/' photoshop:City='SecretTownXMP'/>"
              b"</rdf:RDF></x:xmpmeta><?xpacket end='w'?>")


def private_jpeg(width: int = 1200, height: int = 800, *, comment: bool = False) -> bytes:
    """A JPEG with GPS EXIF and XMP (and optionally a COM comment), unique bytes."""
    extra = {"comment": b"SecretCOMcomment: taken at home"} if comment else {}
    return encode(noise_rgb(width, height, seed=int.from_bytes(os.urandom(4), "big")), "JPEG", quality=90,
                  exif=gps_exif(), xmp=XMP_PACKET, **extra)


# --------------------------------------------------------------------------- colour


def _s15(v: float) -> bytes:
    return struct.pack(">i", int(round(v * 65536)))


def _xyz(x: float, y: float, z: float) -> bytes:
    return b"XYZ \0\0\0\0" + _s15(x) + _s15(y) + _s15(z)


def rgb_matrix_icc(description: str = "Wide RGB test profile (Adobe RGB 1998 primaries)",
                   gamma: float = 2.19921875,
                   red=(0.6097, 0.3111, 0.0195), green=(0.2053, 0.6257, 0.0609),
                   blue=(0.1492, 0.0632, 0.7446)) -> bytes:
    """A minimal ICC v2 RGB matrix/TRC display profile, by hand (Pillow can only create
    sRGB/LAB/XYZ). Defaults: the Adobe RGB (1998) colorants adapted to D50 and its
    gamma of 563/256: a real wide-gamut, non-sRGB RGB space."""
    desc_ascii = description.encode("ascii") + b"\0"
    desc = (b"desc\0\0\0\0" + struct.pack(">I", len(desc_ascii)) + desc_ascii
            + struct.pack(">II", 0, 0) + struct.pack(">HB", 0, 0) + b"\0" * 67)
    cprt = b"text\0\0\0\0" + b"No copyright, test data\0"
    curv = b"curv\0\0\0\0" + struct.pack(">IH", 1, int(round(gamma * 256))) + b"\0\0"
    tags = [(b"desc", desc), (b"cprt", cprt), (b"wtpt", _xyz(0.9642, 1.0, 0.8249)),
            (b"rXYZ", _xyz(*red)), (b"gXYZ", _xyz(*green)), (b"bXYZ", _xyz(*blue)),
            (b"rTRC", curv), (b"gTRC", curv), (b"bTRC", curv)]
    offset = 128 + 4 + 12 * len(tags)
    table, body = b"", b""
    for sig, data in tags:
        while (offset + len(body)) % 4:
            body += b"\0"
        table += sig + struct.pack(">II", offset + len(body), len(data))
        body += data
    while len(body) % 4:
        body += b"\0"
    size = offset + len(body)
    header = (struct.pack(">I", size) + b"lcms" + struct.pack(">I", 0x02100000) + b"mntr" + b"RGB " + b"XYZ "
              + struct.pack(">6H", 2024, 1, 1, 0, 0, 0) + b"acsp" + b"\0" * 4 + b"\0" * 4 + b"\0" * 8 + b"\0" * 8
              + struct.pack(">I", 0) + _s15(0.9642) + _s15(1.0) + _s15(0.8249) + b"\0" * 4 + b"\0" * 16
              + b"\0" * 28)
    assert len(header) == 128, len(header)
    return header + struct.pack(">I", len(tags)) + table + body


def srgb_reference(im: Image.Image, icc: bytes) -> Image.Image:
    """What an ICC-aware viewer shows: ``im`` converted from ``icc`` to sRGB by littlecms."""
    src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
    return ImageCms.profileToProfile(im, src, ImageCms.createProfile("sRGB"), outputMode="RGB")


# --------------------------------------------------------------------------- modes


def swatches(width: int = 400, height: int = 300) -> Image.Image:
    """Four flat colour quadrants (robust to resampling away from the edges)."""
    im = Image.new("RGB", (width, height), (200, 40, 40))
    im.paste((40, 160, 60), (width // 2, 0, width, height // 2))
    im.paste((50, 70, 190), (0, height // 2, width // 2, height))
    im.paste((230, 200, 60), (width // 2, height // 2, width, height))
    return im


def rgba_image(width: int = 600, height: int = 400) -> Image.Image:
    """Left half opaque red, right half fully transparent (its hidden colour is black)."""
    im = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    im.paste((220, 30, 30, 255), (0, 0, width // 2, height))
    return im


def palette_transparent_png(width: int = 300, height: int = 200) -> bytes:
    im = Image.new("P", (width, height), 0)
    im.putpalette([0, 0, 0, 30, 120, 220] + [0, 0, 0] * 254)
    im.paste(1, (0, 0, width // 2, height))  # left: opaque blue; right: index 0, transparent
    return encode(im, "PNG", transparency=0)


def gray_png(width: int = 320, height: int = 240) -> bytes:
    return encode(Image.linear_gradient("L").resize((width, height)), "PNG")


def la_png(width: int = 320, height: int = 240) -> bytes:
    grey = Image.new("L", (width, height), 90)
    alpha = Image.new("L", (width, height), 0)
    alpha.paste(255, (0, 0, width // 2, height))
    return encode(Image.merge("LA", (grey, alpha)), "PNG")


def i16_png(width: int = 320, height: int = 240) -> tuple[bytes, np.ndarray]:
    """16-bit greyscale: a horizontal ramp over the full 0..65535 range."""
    ramp = np.tile(np.linspace(0, 65535, width).astype(np.uint16), (height, 1))
    im = Image.fromarray(ramp)
    return encode(im, "PNG"), ramp


def bilevel_png(width: int = 320, height: int = 240) -> bytes:
    im = Image.new("1", (width, height), 0)
    im.paste(1, (0, 0, width // 2, height))
    return encode(im, "PNG")


def rgb_trns_png(width: int = 300, height: int = 200) -> bytes:
    """Colour-key transparency (tRNS on an RGB PNG, what optipng makes of a 1-bit alpha):
    left half red (opaque), right half pure green, which the tRNS chunk marks transparent."""
    im = Image.new("RGB", (width, height), (255, 0, 0))
    im.paste((0, 255, 0), (width // 2, 0, width, height))
    return encode(im, "PNG", transparency=(0, 255, 0))


def gray_trns_png(width: int = 300, height: int = 200) -> bytes:
    im = Image.new("L", (width, height), 40)
    im.paste(200, (width // 2, 0, width, height))
    return encode(im, "PNG", transparency=200)


FRAME_COLOURS = [(210, 30, 30), (30, 200, 40), (30, 40, 210)]


def animated_gif(width: int = 240, height: int = 160) -> bytes:
    frames = [Image.new("RGB", (width, height), c) for c in FRAME_COLOURS]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def animated_webp(width: int = 240, height: int = 160) -> bytes:
    frames = [Image.new("RGB", (width, height), c) for c in FRAME_COLOURS]
    return encode(frames[0], "WEBP", save_all=True, append_images=frames[1:], duration=100, loop=0,
                  lossless=True)


# --------------------------------------------------------------------------- hostile


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bomb(width: int = 50_000, height: int = 50_000, rows: int = 4) -> bytes:
    """A PNG whose IHDR claims width x height (8-bit RGB) with a tiny IDAT of a few
    zero rows: a few hundred bytes on the wire, 7.5 GB once decoded."""
    raw = zlib.compress(b"\0" * ((width * 3 + 1) * rows), 9)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + _png_chunk(b"IDAT", raw) + _png_chunk(b"IEND", b""))


def jpeg_bomb(width: int = 65_000, height: int = 65_000) -> bytes:
    """A real tiny JPEG with its SOF0 frame size patched to width x height."""
    data = bytearray(encode(Image.new("RGB", (16, 16), (90, 90, 90)), "JPEG", quality=50))
    at = data.find(b"\xff\xc0")
    assert at > 0
    struct.pack_into(">HH", data, at + 5, height, width)
    return bytes(data)


def many_frame_gif(frames: int = 5000) -> bytes:
    """``frames`` frames of 1x1 pixels, alternating two palette colours, hand-written
    (Pillow would merge identical frames)."""
    out = bytearray(b"GIF89a" + struct.pack("<HHBBB", 1, 1, 0x80, 0, 0) + bytes([255, 0, 0, 0, 0, 255]))
    out += b"\x21\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00"  # loop forever
    for i in range(frames):
        out += b"\x21\xf9\x04\x00\x01\x00\x00\x00"  # graphic control: delay 1/100 s
        out += b"\x2c" + struct.pack("<HHHHB", 0, 0, 1, 1, 0)
        # LZW, min code size 2: clear(4), index, end(5) packed in 3-bit codes.
        code = 4 | ((i & 1) << 3) | (5 << 6)
        out += b"\x02\x02" + struct.pack("<H", code) + b"\x00"
    out += b"\x3b"
    return bytes(out)


def gif_oversized_frame(width: int, height: int) -> bytes:
    """A GIF whose logical screen is 1x1 but whose first frame descriptor is width x
    height (with 1 pixel of LZW data). Pillow grows the canvas to the frame (and decodes
    that much), so this is the size that matters, not the screen's."""
    out = bytearray(b"GIF89a" + struct.pack("<HHBBB", 1, 1, 0x80, 0, 0) + bytes([255, 0, 0, 0, 0, 255]))
    out += b"\x2c" + struct.pack("<HHHHB", 0, 0, width, height, 0)
    out += b"\x02\x02" + struct.pack("<H", 4 | (5 << 6)) + b"\x00"
    out += b"\x3b"
    return bytes(out)


# --------------------------------------------------------------------------- references and checks


def upright_source(data_or_path) -> Image.Image:
    """The full-resolution image as displayed: EXIF orientation applied, first frame."""
    src = data_or_path if isinstance(data_or_path, (str, Path)) else io.BytesIO(data_or_path)
    with Image.open(src) as im:
        im.seek(0)
        im.load()
        return ImageOps.exif_transpose(im)


def flatten_white(im: Image.Image) -> Image.Image:
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        out = Image.new("RGB", rgba.size, (255, 255, 255))
        out.paste(rgba, mask=rgba.getchannel("A"))
        return out
    return im.convert("RGB")


def as_rgb_array(im: Image.Image) -> np.ndarray:
    return np.asarray(flatten_white(im), dtype=np.float64)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)


def reference_render(source: Image.Image, size: tuple[int, int]) -> Image.Image:
    """A direct LANCZOS resize of the full upright image, in RGB(A)."""
    mode = "RGBA" if source.mode in ("RGBA", "LA", "PA") or "transparency" in source.info else "RGB"
    return source.convert(mode).resize(size, Image.Resampling.LANCZOS)


def expected_size(source_size: tuple[int, int], preset: Preset) -> tuple[int, int]:
    return fit_box(source_size[0], source_size[1], preset.max_width, preset.max_height)


@dataclass
class Output:
    image: Image.Image
    data: bytes


def open_output(data: bytes) -> Output:
    im = Image.open(io.BytesIO(data))
    im.load()
    return Output(im, data)


def assert_no_metadata(out: Output) -> None:
    """No EXIF (so no orientation tag and no GPS), no XMP, no comment in an output."""
    im, data = out.image, out.data
    assert "exif" not in im.info, im.info.keys()
    assert len(im.getexif()) == 0, dict(im.getexif())
    assert ORIENTATION_TAG not in im.getexif()
    assert "xmp" not in im.info and XMP_NS not in data
    assert b"Exif\x00\x00" not in data
    assert "comment" not in im.info, im.info.get("comment")


def assert_fits(size: tuple[int, int], source_size: tuple[int, int], preset: Preset) -> None:
    """Never upscaled, fits the box, aspect kept within 1 px, and tight (binding side = box)."""
    w, h = size
    sw, sh = source_size
    assert 1 <= w <= sw and 1 <= h <= sh, f"upscaled: {size} from {source_size}"
    if preset.max_width:
        assert w <= preset.max_width, (size, preset)
    if preset.max_height:
        assert h <= preset.max_height, (size, preset)
    assert abs(h - w * sh / sw) <= 1 or abs(w - h * sw / sh) <= 1, f"aspect: {size} from {source_size}"
    fits_already = (not preset.max_width or sw <= preset.max_width) and (not preset.max_height or sh <= preset.max_height)
    if fits_already:
        assert size == source_size, (size, source_size, preset)
    else:
        assert w == preset.max_width or h == preset.max_height, f"not tight: {size} in {preset.box}"


def assert_timestamp(value: str) -> None:
    assert isinstance(value, str) and value.endswith("Z"), value
    datetime.fromisoformat(value.replace("Z", "+00:00"))


def check_preset_output(data: bytes, preset: Preset, source: Image.Image, *, min_psnr: float) -> Output:
    """The common contract of one rendered preset against its upright source."""
    out = open_output(data)
    fmt = SNIFFED[out.image.format]
    assert fmt[0] == preset.format, (out.image.format, preset)
    assert fmt[1] == preset.mime_type
    assert_fits(out.image.size, source.size, preset)
    assert out.image.size == expected_size(source.size, preset)
    assert_no_metadata(out)
    if preset.format == "jpeg":
        assert out.image.mode in ("RGB", "L"), out.image.mode
    ref = reference_render(source, out.image.size)
    if has_alpha(source):
        if preset.format == "jpeg":
            assert out.image.mode == "RGB"  # flattened (on white: as_rgb_array flattens the reference so)
        else:
            assert out.image.mode == "RGBA", f"{preset.name} lost the alpha channel"
            alpha = psnr(np.asarray(out.image.getchannel("A")), np.asarray(ref.getchannel("A")))
            assert alpha >= min_psnr, f"{preset.name}: alpha PSNR {alpha:.1f} dB"
    value = psnr(as_rgb_array(out.image), as_rgb_array(ref))
    assert value >= min_psnr, f"{preset.name}: PSNR {value:.1f} dB against a direct LANCZOS resize"
    return out


def has_alpha(im: Image.Image) -> bool:
    return im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info


MIN_PSNR = {"thumbnail": 30.0, "ai-chat": 36.0, "ai-vision": 36.0, "preview": 36.0}
