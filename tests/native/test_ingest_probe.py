"""IngestProbe: the pure-Python reference and the Cython twin must agree byte for byte."""
from __future__ import annotations

import hashlib
import io
import os
import random
import struct
import threading
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from falconproc import native
from falconproc.errors import UploadTooLarge
from falconproc.native.types import ProbeResult
from falconproc.native import ingest as native_ingest
from tests.support.corpus import CORPUS_FILES, IMAGES_DIR

CORPUS = CORPUS_FILES
IMAGES = [p for p in CORPUS if p.parent.name in ("images", "ocr") and p.suffix in (".jpg", ".png", ".webp")]
CHUNK_SIZES = (1, 2, 3, 7, 13, 64, 1000, 4096, 65536, 65537, 1 << 20)

_BYTES: dict[Path, bytes] = {}


def blob(path: Path) -> bytes:
    if path not in _BYTES:
        _BYTES[path] = path.read_bytes()
    return _BYTES[path]


def probe(cls, data: bytes, chunk: int = 65536, max_bytes: int = 1 << 40, fd: int = -1) -> ProbeResult:
    p = cls(max_bytes, fd)
    for i in range(0, len(data), chunk):
        p.feed(data[i:i + chunk])
    return p.finish()


def info(cls, data: bytes, chunk: int = 65536) -> tuple:
    r = probe(cls, data, chunk)
    return (r.mime_type, r.width, r.height, r.frames)


def probe_chunks(cls, chunks) -> ProbeResult:
    p = cls(1 << 40)
    for c in chunks:
        p.feed(c)
    return p.finish()


def split(data: bytes, cuts) -> list[bytes]:
    cuts = sorted(set(cuts))
    out, prev = [], 0
    for c in cuts:
        out.append(data[prev:c])
        prev = c
    out.append(data[prev:])
    return out


def mime(cls, data: bytes) -> str:
    return probe(cls, data).mime_type


def pil_bytes(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def frames(n: int, size=(41, 23), mode="RGB"):
    out = []
    for i in range(n):
        colour = ((i * 37) % 256, (255 - i * 11) % 256, (i * 5) % 256)
        if mode == "RGBA":
            colour += ((i * 29) % 200 + 20,)
        im = Image.new(mode, size, colour)
        im.putpixel((i % size[0], (i * 7) % size[1]), (255 - colour[0], 0, 0) + ((255,) if mode == "RGBA" else ()))
        out.append(im)
    return out


def jpeg_segment(marker: int, payload: bytes) -> bytes:
    assert len(payload) <= 65533
    return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload


def handmade_jpeg(width: int, height: int, sof: int = 0xC0) -> bytes:
    app0 = jpeg_segment(0xE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00")
    frame = jpeg_segment(sof, struct.pack(">BHHB", 8, height, width, 3) + b"\x01\x22\x00\x02\x11\x01\x03\x11\x01")
    return b"\xff\xd8" + app0 + frame + b"\xff\xd9"


def tiff_header(big: bool, width: int, height: int, width_type: int = 3, ifd_offset: int = 8) -> bytes:
    e = ">" if big else "<"
    head = (b"MM\x00*" if big else b"II*\x00") + struct.pack(e + "I", ifd_offset)
    pad = b"\x00" * (ifd_offset - 8)

    def entry(tag, typ, value):
        if typ == 3:
            return struct.pack(e + "HHIH2x", tag, typ, 1, value)
        return struct.pack(e + "HHII", tag, typ, 1, value)

    ifd = struct.pack(e + "H", 3) + entry(254, 4, 0) + entry(256, width_type, width) + entry(257, 4, height)
    return head + pad + ifd + struct.pack(e + "I", 0)


# --------------------------------------------------------------------------- build / selection


def test_compiled_module_loaded():
    if native.NO_EXTENSIONS:
        pytest.skip("FALCONPROC_NO_EXTENSIONS is set: pure mode is expected")
    assert native_ingest.IMPLEMENTATION == "cython", f"compiled probe not in use: {native_ingest.IMPORT_ERROR}"
    assert native_ingest.IngestProbe is native_ingest.compiled.IngestProbe


# --------------------------------------------------------------------------- hashing and size


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.name)
def test_sha256_matches_hashlib_for_every_chunk_size(probe_cls, path):
    data = blob(path)
    want = hashlib.sha256(data).hexdigest()
    first = None
    for chunk in CHUNK_SIZES:
        if chunk == 1 and len(data) > 300_000 and probe_cls is native_ingest.pure.IngestProbe:
            chunk = 2  # keep the pure run short on the biggest files; 1-byte chunks run on the rest
        r = probe(probe_cls, data, chunk)
        assert r.sha256 == want
        assert r.size == len(data)
        assert len(r.sha256) == 64 and r.sha256 == r.sha256.lower()
        first = first or r
        assert r == first, f"chunk size {chunk} changed the result"


def test_buffer_types_and_empty_chunks(probe_cls):
    data = blob(IMAGES_DIR / "spring.png")
    p = probe_cls(len(data))
    p.feed(b"")
    p.feed(bytearray(data[:100]))
    p.feed(memoryview(data)[100:5000])
    p.feed(memoryview(b""))
    p.feed(memoryview(bytearray(data[5000:9000])))
    p.feed(memoryview(data[9000:]).cast("B"))
    p.feed(bytearray())
    assert p.size == len(data)
    r = p.finish()
    assert r == probe(probe_cls, data)
    with pytest.raises(TypeError):
        probe_cls(10).feed("text is not bytes")


def test_empty_input(probe_cls):
    r = probe_cls(0).finish()
    assert r == ProbeResult(hashlib.sha256(b"").hexdigest(), 0, "application/octet-stream", None, None, None)


def test_size_property_counts_bytes(probe_cls):
    p = probe_cls(100)
    assert p.size == 0
    p.feed(b"abc")
    p.feed(b"")
    p.feed(b"defg")
    assert p.size == 7
    assert p.finish().size == 7


def test_limit_exactly_at_max_is_accepted(probe_cls):
    data = os.urandom(4096)
    r = probe(probe_cls, data, chunk=1000, max_bytes=len(data))
    assert r.size == len(data) and r.sha256 == hashlib.sha256(data).hexdigest()


def test_limit_one_byte_over_raises_and_writes_nothing(probe_cls, tmp_path):
    path = tmp_path / "spill"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        p = probe_cls(10, fd)
        p.feed(b"x" * 6)
        with pytest.raises(UploadTooLarge) as info:
            p.feed(b"y" * 5)
        assert info.value.limit == 10
        assert isinstance(info.value, ValueError)
        assert p.size == 6
        p.feed(b"z" * 4)  # the rejected chunk left no trace: exactly the limit still fits
        with pytest.raises(UploadTooLarge):
            p.feed(b"!")
        r = p.finish()
    finally:
        os.close(fd)
    assert path.read_bytes() == b"x" * 6 + b"z" * 4
    assert r.size == 10 and r.sha256 == hashlib.sha256(b"x" * 6 + b"z" * 4).hexdigest()


def test_limit_first_chunk_too_big(probe_cls, tmp_path):
    path = tmp_path / "spill"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        p = probe_cls(1 << 20, fd)
        with pytest.raises(UploadTooLarge):
            p.feed(b"\0" * ((1 << 20) + 1))
        assert p.size == 0
    finally:
        os.close(fd)
    assert path.read_bytes() == b""


def test_zero_limit(probe_cls):
    p = probe_cls(0)
    p.feed(b"")
    with pytest.raises(UploadTooLarge):
        p.feed(b"a")
    assert p.finish().size == 0


def test_feed_after_finish_and_double_finish(probe_cls):
    p = probe_cls(100)
    p.feed(b"hello")
    p.finish()
    with pytest.raises(RuntimeError):
        p.feed(b"more")
    with pytest.raises(RuntimeError):
        p.finish()


# --------------------------------------------------------------------------- writing to fd


@pytest.mark.parametrize("chunk", [1, 4096, 1 << 20])
def test_write_to_file_gives_identical_bytes(probe_cls, tmp_path, chunk):
    data = blob(IMAGES_DIR / "storm-1920x1280.jpg")
    if chunk == 1:
        data = data[:20000]
    path = tmp_path / "spill"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        r = probe(probe_cls, data, chunk=chunk, fd=fd)
    finally:
        os.close(fd)
    assert path.read_bytes() == data
    assert r.sha256 == hashlib.sha256(data).hexdigest()


def test_write_to_pipe_with_python_reader_thread(probe_cls):
    """Big chunks block on a 64 KiB pipe; the reader thread needs the GIL, so write() must not hold it."""
    data = random.Random(7).randbytes(3 * (1 << 20) + 123)
    rfd, wfd = os.pipe()
    received = bytearray()

    def reader():
        while True:
            got = os.read(rfd, 65536)
            if not got:
                break
            received.extend(got)

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    try:
        r = probe(probe_cls, data, chunk=(1 << 20) + 17, fd=wfd)
    finally:
        os.close(wfd)
        t.join(30)
        os.close(rfd)
    assert bytes(received) == data
    assert r.sha256 == hashlib.sha256(data).hexdigest()


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_enospc_surfaces_as_oserror(probe_cls):
    import errno

    fd = os.open("/dev/full", os.O_WRONLY)
    try:
        p = probe_cls(1 << 20, fd)
        with pytest.raises(OSError) as info:
            p.feed(b"a" * 1000)
    finally:
        os.close(fd)
    assert info.value.errno == errno.ENOSPC
    assert not isinstance(info.value, UploadTooLarge)


def test_bad_fd_raises_oserror(probe_cls, tmp_path):
    import errno

    fd = os.open(tmp_path / "ro", os.O_RDONLY | os.O_CREAT, 0o600)
    try:
        with pytest.raises(OSError) as info:
            probe_cls(100, fd).feed(b"abc")
    finally:
        os.close(fd)
    assert info.value.errno == errno.EBADF


# --------------------------------------------------------------------------- corpus types and sizes

CORPUS_EXPECTED = {
    "garden-2560x1600.jpg": ("image/jpeg", 2560, 1600, None),
    "meadow-1280x1024.jpg": ("image/jpeg", 1280, 1024, None),
    "storm-1920x1280.jpg": ("image/jpeg", 1920, 1280, None),
    # EXIF orientation 8: the stored (unrotated) size, not the displayed 1280x1920.
    "storm-exif-orientation8.jpg": ("image/jpeg", 1920, 1280, None),
    "silk.png": ("image/png", 1600, 1200, 1),
    "spring.png": ("image/png", 1600, 1200, 1),
    "outline-p2-200dpi.png": ("image/png", 1654, 2339, 1),
    "wood-d.webp": ("image/webp", 4096, 4096, 1),
    "outline-p2.truth.txt": ("text/plain", None, None, None),
}


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.name)
def test_corpus_mime_and_dimensions(probe_cls, path):
    r = probe(probe_cls, blob(path), chunk=8191)
    if path.suffix == ".pdf":
        want = ("application/pdf", None, None, None)
    elif path.suffix == ".docx":
        want = ("application/zip", None, None, None)
    else:
        want = CORPUS_EXPECTED[path.name]
    assert (r.mime_type, r.width, r.height, r.frames) == want


@pytest.mark.parametrize("path", IMAGES, ids=lambda p: p.name)
def test_corpus_dimensions_agree_with_pillow(probe_cls, path):
    with Image.open(path) as im:
        size = im.size  # Pillow reports the stored size; it does not apply EXIF orientation
    r = probe(probe_cls, blob(path), chunk=100_003)
    assert (r.width, r.height) == size


# --------------------------------------------------------------------------- sniffing rules

ELF = b"\x7fELF\x02\x01\x01\x00" + b"\x00" * 8 + b"\x02\x00\x3e\x00" + b"\x00" * 100
MZ = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff" + b"\x00" * 100 + b"This program cannot be run in DOS mode"


def utf16(text: str, big: bool) -> bytes:
    return (b"\xfe\xff" + text.encode("utf-16-be")) if big else (b"\xff\xfe" + text.encode("utf-16-le"))


def ftyp(major: bytes, *compat: bytes) -> bytes:
    body = b"ftyp" + major + b"\x00\x00\x00\x00" + b"".join(compat)
    return struct.pack(">I", len(body) + 4) + body + b"\x00\x00\x00\x08free"


def ebml(doctype: bytes, size: bytes | None = None) -> bytes:
    """An EBML header as mkvmerge/ffmpeg write it: version fields, then DocType (0x4282)."""
    size = size if size is not None else bytes([0x80 | len(doctype)])
    body = (b"\x42\x86\x81\x01" b"\x42\xf7\x81\x01" b"\x42\xf2\x81\x04" b"\x42\xf3\x81\x08"
            + b"\x42\x82" + size + doctype + b"\x42\x87\x81\x04" b"\x42\x85\x81\x02")
    return b"\x1a\x45\xdf\xa3" + bytes([0x80 | len(body)]) + body + b"\x18\x53\x80\x67" + b"\x00" * 16


SNIFF_CASES = [
    # text family
    ("utf8-bom-plain", b"\xef\xbb\xbfhello w\xc3\xb6rld\n", "text/plain"),
    ("utf8-bom-markdown", b"\xef\xbb\xbf# Title\n\nbody\n", "text/markdown"),
    ("utf8-bom-json", b'\xef\xbb\xbf{"a": 1}', "application/json"),
    ("utf16le-plain", utf16("hello w\u00f6rld \u4e16\u754c\n", False), "text/plain"),
    ("utf16be-plain", utf16("hello\n", True), "text/plain"),
    ("utf16le-csv", utf16("a,b,c\n1,2,3\n4,5,6\n", False), "text/csv"),
    ("utf16be-json", utf16('{"k": [1, 2]}', True), "application/json"),
    ("utf16le-html", utf16("<!DOCTYPE html><html></html>", False), "text/html"),
    ("plain", b"Just some words.\nAnd another line without structure\n", "text/plain"),
    ("plain-unicode", "Gr\u00fc\u00dfe aus K\u00f6ln \u2014 \U0001f600\n".encode(), "text/plain"),
    ("plain-ansi-escape", b"\x1b[31mred\x1b[0m text\n", "text/plain"),
    ("plain-whitespace-only", b"   \n\t\n", "text/plain"),
    ("utf8-cut-at-end", "caf\u00e9".encode()[:-1], "text/plain"),
    ("utf8-cut-at-window", b"a" + "\u00e9".encode() * 5000, "text/plain"),
    # Not UTF-8 but free of controls: legacy single-byte text (cp1252, latin-1).
    ("utf8-invalid", b"abc\xc3\x28def", "text/plain"),
    ("utf8-overlong", b"abc\xc0\xafdef", "text/plain"),
    ("utf8-surrogate", b"abc\xed\xa0\x80def", "text/plain"),
    ("cp1252", "caf\u00e9 cr\u00e8me br\u00fbl\u00e9e\n".encode("cp1252"), "text/plain"),
    ("control-bell", b"hello\x07world\n", "application/octet-stream"),
    ("control-del", b"hello\x7fworld\n", "application/octet-stream"),
    ("nul", b"hello\x00world\n", "application/octet-stream"),
    ("csv-commas", b"name,age,city\nbob,31,berlin\nann,27,paris\n", "text/csv"),
    ("csv-semicolons", b"a;b\r\n1;2\r\n3;4\r\n", "text/csv"),
    ("csv-tabs", b"a\tb\tc\n1\t2\t3\n", "text/csv"),
    ("csv-no-final-newline", b"name,age\nbob,3", "text/csv"),
    ("csv-blank-lines-ignored", b"a,b\n\n1,2\n\n", "text/csv"),
    ("csv-uneven", b"a,b,c\n1,2\n", "text/plain"),
    ("csv-one-line", b"a,b,c\n", "text/plain"),
    ("markdown-h1", b"# Title\n\nSome text.\n", "text/markdown"),
    ("markdown-h2-later", b"Intro line\n\n## Section\ntext\n", "text/markdown"),
    ("markdown-h3", b"### Deep\n", "text/markdown"),
    ("markdown-fence", b"Example:\n```python\nprint(1)\n```\n", "text/markdown"),
    ("markdown-link", b"See [the docs](https://example.org/docs) for more.\n", "text/markdown"),
    ("not-markdown-hashtag", b"#hashtag and more\n", "text/plain"),
    ("json-object", b'{"name": "x", "n": [1, 2, 3]}', "application/json"),
    ("json-array", b"[1, 2, 3]", "application/json"),
    ("json-array-true", b"[true, false]", "application/json"),
    ("json-array-null-cut", b"[nu", "application/json"),
    ("json-empty-array", b"[]", "application/json"),
    ("json-leading-ws", b'\n\t {\n  "a": {"b": null}\n}\n', "application/json"),
    ("json-array-of-objects", b'[{"a": 1}, {"a": 2}]', "application/json"),
    ("not-json-toc", b"[toc] table of contents\n", "text/plain"),
    ("not-json-brace-word", b"{hello}\n", "text/plain"),
    ("svg-xml", b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"/>', "image/svg+xml"),
    ("svg-bare", b'<svg xmlns="http://www.w3.org/2000/svg" width="1"></svg>', "image/svg+xml"),
    ("svg-upper-leading-ws", b'  \n<SVG width="1"></SVG>', "image/svg+xml"),
    ("xml", b'<?xml version="1.0" encoding="UTF-8"?>\n<root><a/></root>', "application/xml"),
    ("html-doctype", b"<!DOCTYPE html>\n<html><body>x</body></html>", "text/html"),
    ("html-lower", b"<html><head></head></html>", "text/html"),
    ("html-head", b"\n  <HEAD><title>x</title>", "text/html"),
    ("html-body", b"<body onload=alert(1)>", "text/html"),
    ("html-script", b"<script>alert(1)</script>", "text/html"),
    ("html-iframe", b'<iframe src="https://example.org"></iframe>', "text/html"),
    # executables
    ("elf", ELF, "application/x-executable"),
    ("mz", MZ, "application/x-msdownload"),
    ("macho-feedface", b"\xfe\xed\xfa\xce" + b"\x00" * 64, "application/x-mach-binary"),
    ("macho-feedfacf", b"\xfe\xed\xfa\xcf" + b"\x00" * 64, "application/x-mach-binary"),
    ("macho-cefaedfe", b"\xce\xfa\xed\xfe" + b"\x00" * 64, "application/x-mach-binary"),
    ("macho-cffaedfe", b"\xcf\xfa\xed\xfe\x07\x00\x00\x01" + b"\x00" * 64, "application/x-mach-binary"),
    ("shebang", b"#!/bin/sh\necho hello\n", "text/x-shellscript"),
    ("shebang-with-pdf", b"#!/bin/sh\n# %PDF-1.4\n", "text/x-shellscript"),
    # documents and archives
    ("pdf", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n", "application/pdf"),
    ("pdf-after-junk", b"\x00" * 900 + b"%PDF-1.4\n", "application/pdf"),
    ("pdf-too-late", b"x" * 1020 + b"%PDF-1.4\n", "text/plain"),
    ("zip-empty", b"PK\x05\x06" + b"\x00" * 18, "application/zip"),
    # ISO BMFF
    ("heic", ftyp(b"heic", b"mif1", b"heic"), "image/heic"),
    ("heix", ftyp(b"heix", b"mif1"), "image/heic"),
    ("mif1-heic", ftyp(b"mif1", b"mif1", b"heic"), "image/heic"),
    ("avif", ftyp(b"avif", b"mif1", b"miaf"), "image/avif"),
    ("avis", ftyp(b"avis", b"msf1"), "image/avif"),
    ("mif1-avif", ftyp(b"mif1", b"mif1", b"avif", b"miaf"), "image/avif"),
    ("mif1-only", ftyp(b"mif1", b"mif1"), "application/octet-stream"),
    ("mp4-isom", ftyp(b"isom", b"isom", b"iso2", b"avc1", b"mp41"), "video/mp4"),
    ("mp4-mp42", ftyp(b"mp42", b"mp42", b"isom"), "video/mp4"),
    ("mp4-dash", ftyp(b"dash", b"iso6", b"mp41"), "video/mp4"),
    ("mov", ftyp(b"qt  ", b"qt  "), "video/quicktime"),
    ("m4v", ftyp(b"M4V ", b"M4V ", b"M4A ", b"mp42", b"isom"), "video/x-m4v"),
    ("3gp4", ftyp(b"3gp4", b"isom", b"3gp4"), "video/3gpp"),
    ("3gp6", ftyp(b"3gp6", b"3gp6", b"isom"), "video/3gpp"),
    ("3g2a", ftyp(b"3g2a", b"3g2a"), "video/3gpp2"),
    # audio-only MP4 is not a video upload
    ("m4a", ftyp(b"M4A ", b"M4A ", b"mp42", b"isom"), "application/octet-stream"),
    # a video brand with an image brand among the compatible ones is the image
    ("isom-avif", ftyp(b"isom", b"avif", b"mif1"), "image/avif"),
    # RIFF and EBML
    ("avi", b"RIFF\x24\x10\x00\x00AVI LIST" + b"\x00" * 32, "video/x-msvideo"),
    ("webm", ebml(b"webm"), "video/webm"),
    ("matroska", ebml(b"matroska"), "video/x-matroska"),
    ("webm-long-size", ebml(b"webm", size=b"\x10\x00\x00\x04"), "video/webm"),
    ("matroska-2-byte-size", ebml(b"matroska", size=b"\x40\x08"), "video/x-matroska"),
    ("ebml-other-doctype", ebml(b"mkaudio "), "application/octet-stream"),
    ("ebml-size-mismatch", ebml(b"webm", size=b"\x85"), "application/octet-stream"),
    ("ebml-zero-size-byte", ebml(b"webm", size=b"\x00"), "application/octet-stream"),
    ("ebml-doctype-past-window", b"\x1a\x45\xdf\xa3" + b"\xbf" * 70 + b"\x42\x82\x84webm",
     "application/octet-stream"),
    ("ebml-magic-only", b"\x1a\x45\xdf\xa3", "application/octet-stream"),
    ("ebml-cut-in-doctype", ebml(b"matroska")[:28], "application/octet-stream"),
    # magic prefixes only (too short for dimensions)
    ("jpeg-magic-only", b"\xff\xd8\xff", "image/jpeg"),
    ("png-magic-only", b"\x89PNG\r\n\x1a\n", "image/png"),
    ("gif-magic-only", b"GIF89a", "image/gif"),
    ("tiff-magic-only-mm", b"MM\x00*", "image/tiff"),
    ("bmp-implausible", b"BM" + b"\x00" * 12 + struct.pack("<I", 999) + b"\x00" * 40, "application/octet-stream"),
    ("riff-not-webp", b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\x00" * 32, "application/octet-stream"),
    # binary
    ("random", random.Random(1).randbytes(8192), "application/octet-stream"),
    ("zeros", b"\x00" * 100, "application/octet-stream"),
]


@pytest.mark.parametrize("case", SNIFF_CASES, ids=[c[0] for c in SNIFF_CASES])
def test_sniff_rules(probe_cls, case):
    _, data, want = case
    for chunk in (1, 5, len(data) or 1):
        r = probe(probe_cls, data, chunk=chunk)
        assert r.mime_type == want, f"chunk={chunk}"
        if not want.startswith("image/"):
            assert (r.width, r.height, r.frames) == (None, None, None)


def test_zipfile_is_zip(probe_cls):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("a.txt", "hello")
    assert mime(probe_cls, buf.getvalue()) == "application/zip"


def test_long_text_sample_only(probe_cls):
    # Binary garbage after the 8 KiB text window does not change a text verdict.
    data = b"line one\n" * 2000 + b"\x00\x01\x02" * 1000
    assert mime(probe_cls, data) == "text/plain"


# --------------------------------------------------------------------------- generated images


def test_png_dimensions(probe_cls):
    data = pil_bytes(Image.new("RGBA", (57, 31), (1, 2, 3, 4)), "PNG")
    assert info(probe_cls, data, chunk=3) == ("image/png", 57, 31, 1)


def test_apng_frames(probe_cls):
    fr = frames(9)
    data = pil_bytes(fr[0], "PNG", save_all=True, append_images=fr[1:], duration=40)
    assert b"acTL" in data
    with Image.open(io.BytesIO(data)) as im:
        n = im.n_frames
    assert n == 9
    for chunk in (1, 17, 1 << 20):
        assert info(probe_cls, data, chunk=chunk) == ("image/png", 41, 23, n)


def test_png_large_chunk_before_ihdr_end_and_actl_after_64k(probe_cls):
    # A big private chunk pushes acTL past the 64 KiB head: the streaming walker still sees it.
    fr = frames(3)
    data = pil_bytes(fr[0], "PNG", save_all=True, append_images=fr[1:])
    ihdr_end = 8 + 8 + 13 + 4
    big = b"\x00" * 100_000
    chunk = struct.pack(">I", len(big)) + b"prIv" + big + b"\x00\x00\x00\x00"
    data = data[:ihdr_end] + chunk + data[ihdr_end:]
    assert info(probe_cls, data, chunk=4096) == ("image/png", 41, 23, 3)


@pytest.mark.parametrize("n", [1, 2, 150])
def test_gif_frames(probe_cls, n):
    fr = frames(n, size=(67, 45))
    kw = {"save_all": True, "append_images": fr[1:], "duration": 20, "loop": 0} if n > 1 else {}
    data = pil_bytes(fr[0], "GIF", **kw)
    with Image.open(io.BytesIO(data)) as im:
        assert im.n_frames == n
    for chunk in (1, 3, 256, 1 << 20):
        if chunk == 1 and len(data) > 200_000:
            continue
        assert info(probe_cls, data, chunk=chunk) == ("image/gif", 67, 45, n)


def test_gif_truncated_reports_frames_seen(probe_cls):
    fr = frames(40, size=(30, 20))
    data = pil_bytes(fr[0], "GIF", save_all=True, append_images=fr[1:])
    full = probe(probe_cls, data)
    assert full.frames == 40
    half = probe(probe_cls, data[: len(data) // 2], chunk=7)
    assert half.mime_type == "image/gif" and (half.width, half.height) == (30, 20)
    assert 1 <= half.frames < 40
    assert probe(probe_cls, data[:12]).width is None  # header incomplete


def test_gif_with_local_colour_tables_and_extensions(probe_cls):
    # GIF89a, 2 frames, global table (2 colours), comment extension, local table on frame 2.
    out = b"GIF89a" + struct.pack("<HH", 300, 200) + bytes([0x80, 0, 0]) + b"\x00\x00\x00\xff\xff\xff"
    out += b"\x21\xfe" + b"\x05hello" + b"\x03abc" + b"\x00"  # comment extension
    out += b"\x21\xf9\x04\x00\x0a\x00\x00\x00"  # graphic control extension
    out += b"\x2c" + struct.pack("<HHHH", 0, 0, 300, 200) + b"\x00" + b"\x02" + b"\x02\x4c\x01" + b"\x00"
    out += b"\x2c" + struct.pack("<HHHH", 0, 0, 10, 10) + bytes([0x81]) + b"\x00" * 12 + b"\x02" + b"\x01\x2c\x00"
    out += b"\x3b"
    assert info(probe_cls, out, chunk=1) == ("image/gif", 300, 200, 2)


def test_bmp_dimensions(probe_cls):
    data = pil_bytes(Image.new("RGB", (37, 19), (9, 9, 9)), "BMP")
    assert info(probe_cls, data, chunk=5) == ("image/bmp", 37, 19, None)
    # top-down BMP: negative height
    top_down = data[:22] + struct.pack("<i", -19) + data[26:]
    assert info(probe_cls, top_down) == ("image/bmp", 37, 19, None)
    # OS/2 core header: 12-byte DIB header with u16 sizes
    core = b"BM" + struct.pack("<IHHI", 26 + 6, 0, 0, 26) + struct.pack("<IHHHH", 12, 640, 480, 1, 24)
    assert info(probe_cls, core) == ("image/bmp", 640, 480, None)
    # truncated after the DIB size: type known, size unknown
    assert info(probe_cls, data[:20]) == ("image/bmp", None, None, None)


def test_tiff_dimensions(probe_cls):
    data = pil_bytes(Image.new("RGB", (123, 45), (9, 9, 9)), "TIFF")
    assert info(probe_cls, data, chunk=7) == ("image/tiff", 123, 45, None)
    for big in (False, True):
        for wtype in (3, 4):
            hdr = tiff_header(big, 5000, 7000, width_type=wtype)
            assert info(probe_cls, hdr) == ("image/tiff", 5000, 7000, None), (big, wtype)
    # IFD0 beyond the 64 KiB head: type only
    far = tiff_header(True, 10, 20, ifd_offset=70_000)
    assert info(probe_cls, far) == ("image/tiff", None, None, None)
    # truncated inside the IFD
    assert info(probe_cls, tiff_header(False, 10, 20)[:20]) == ("image/tiff", None, None, None)


def test_webp_lossy_lossless_alpha_animated(probe_cls):
    base = frames(1, size=(101, 77))[0]
    lossy = pil_bytes(base, "WEBP", quality=70)
    assert lossy[12:16] == b"VP8 "
    assert info(probe_cls, lossy, chunk=3) == ("image/webp", 101, 77, 1)

    lossless = pil_bytes(base, "WEBP", lossless=True)
    assert lossless[12:16] == b"VP8L"
    assert info(probe_cls, lossless, chunk=3) == ("image/webp", 101, 77, 1)

    rgba = Image.new("RGBA", (101, 77), (10, 20, 30, 0))
    rgba.putpixel((3, 3), (255, 0, 0, 255))
    alpha = pil_bytes(rgba, "WEBP", quality=70)
    assert alpha[12:16] == b"VP8X"
    assert info(probe_cls, alpha, chunk=3) == ("image/webp", 101, 77, 1)

    fr = frames(12, size=(101, 77))
    anim = pil_bytes(fr[0], "WEBP", save_all=True, append_images=fr[1:], duration=30)
    assert anim[12:16] == b"VP8X"
    with Image.open(io.BytesIO(anim)) as im:
        n = im.n_frames
    assert n == 12
    for chunk in (1, 9, 1 << 20):
        assert info(probe_cls, anim, chunk=chunk) == ("image/webp", 101, 77, n)


def test_webp_ignores_chunks_after_riff_end(probe_cls):
    fr = frames(3)
    anim = pil_bytes(fr[0], "WEBP", save_all=True, append_images=fr[1:], duration=30)
    trailing = b"ANMF" + struct.pack("<I", 4) + b"\x00" * 4
    assert probe(probe_cls, anim + trailing).frames == 3


def test_jpeg_progressive_and_sof_variants(probe_cls):
    im = frames(1, size=(211, 97))[0]
    assert info(probe_cls, pil_bytes(im, "JPEG", progressive=True), chunk=2) == ("image/jpeg", 211, 97, None)
    for sof in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF):
        assert info(probe_cls, handmade_jpeg(320, 240, sof)) == ("image/jpeg", 320, 240, None), hex(sof)
    # DHT (C4), JPG (C8) and DAC (CC) are not frame headers
    for not_sof in (0xC4, 0xC8, 0xCC):
        assert probe(probe_cls, handmade_jpeg(320, 240, not_sof)).width is None


def test_jpeg_sof_after_70k_of_app_segments(probe_cls):
    base = pil_bytes(frames(1, size=(200, 100))[0], "JPEG", quality=80)
    app = jpeg_segment(0xE1, b"Exif\x00\x00" + b"\xab" * 65000) + jpeg_segment(0xE2, b"ICC_PROFILE\x00" + b"\xcd" * 8000)
    data = base[:2] + app + base[2:]
    assert data.find(b"\xff\xc0") > 70 * 1024
    with Image.open(io.BytesIO(data)) as im:
        assert im.size == (200, 100)
    for chunk in (1, 3, 4096, 65536, 1 << 20):
        assert info(probe_cls, data, chunk=chunk) == ("image/jpeg", 200, 100, None)


def test_jpeg_absurd_dimensions_reported_as_is(probe_cls):
    assert info(probe_cls, handmade_jpeg(65000, 65000)) == ("image/jpeg", 65000, 65000, None)
    assert info(probe_cls, handmade_jpeg(65535, 1), chunk=1) == ("image/jpeg", 65535, 1, None)


def test_jpeg_fill_bytes_and_hostile_markers(probe_cls):
    ok = handmade_jpeg(10, 20)
    filled = ok[:2] + b"\xff" * 50 + ok[2:]
    assert info(probe_cls, filled, chunk=1)[1:3] == (10, 20)
    endless = b"\xff\xd8" + b"\xff" * (2 << 20)
    assert info(probe_cls, endless, chunk=1 << 20) == ("image/jpeg", None, None, None)
    bad_len = b"\xff\xd8\xff\xe0\x00\x01" + b"\x00" * 100
    assert info(probe_cls, bad_len) == ("image/jpeg", None, None, None)
    short_sof = b"\xff\xd8\xff\xc0\x00\x05\x08\x00\x10" + b"\x00" * 20
    assert probe(probe_cls, short_sof).width is None
    sos_first = b"\xff\xd8\xff\xda\x00\x08" + b"\x00" * 100 + handmade_jpeg(5, 5)
    assert probe(probe_cls, sos_first).width is None
    garbage = b"\xff\xd8\xff\xe0\x00\x04ab" + b"junk" + handmade_jpeg(5, 5)[2:]
    assert probe(probe_cls, garbage).width is None


def test_png_hostile(probe_cls):
    sig = b"\x89PNG\r\n\x1a\n"
    not_ihdr = sig + struct.pack(">I", 13) + b"tEXt" + b"\x00" * 30
    assert info(probe_cls, not_ihdr) == ("image/png", None, None, None)
    short_ihdr = sig + struct.pack(">I", 4) + b"IHDR" + b"\x00" * 30
    assert info(probe_cls, short_ihdr) == ("image/png", None, None, None)
    huge_chunk = sig + struct.pack(">I", 13) + b"IHDR" + struct.pack(">II", 0xFFFFFFFF, 7) + b"\x00" * 9
    huge_chunk += struct.pack(">I", 0x7FFFFFFF) + b"zzZz" + b"\x00" * 1000
    assert info(probe_cls, huge_chunk) == ("image/png", 0xFFFFFFFF, 7, 1)


IMAGE_FACTORIES = {
    "gif-anim": lambda: pil_bytes(frames(5)[0], "GIF", save_all=True, append_images=frames(5)[1:]),
    "apng": lambda: pil_bytes(frames(4)[0], "PNG", save_all=True, append_images=frames(4)[1:]),
    "webp-anim": lambda: pil_bytes(frames(4)[0], "WEBP", save_all=True, append_images=frames(4)[1:]),
    "webp-lossless": lambda: pil_bytes(frames(1)[0], "WEBP", lossless=True),
    "webp-lossy": lambda: pil_bytes(frames(1)[0], "WEBP"),
    "bmp": lambda: pil_bytes(frames(1)[0], "BMP"),
    "tiff": lambda: pil_bytes(frames(1)[0], "TIFF"),
    "jpeg": lambda: pil_bytes(frames(1)[0], "JPEG"),
}


@pytest.mark.parametrize("name", sorted(IMAGE_FACTORIES))
def test_truncated_images_never_crash(probe_cls, name):
    data = IMAGE_FACTORIES[name]()
    full = probe(probe_cls, data)
    assert full.width == 41 and full.height == 23
    for cut in sorted({0, 1, 2, 3, 5, 8, 11, 12, 13, 16, 20, 25, 30, 40, 64, 100, 300, len(data) // 2, len(data) - 1}):
        if cut > len(data):
            continue
        r = probe(probe_cls, data[:cut], chunk=3)
        assert r.size == cut
        assert (r.width, r.height) in ((None, None), (41, 23)), cut
        if r.frames is not None and full.frames is not None:
            assert r.frames <= full.frames


@pytest.mark.parametrize("path", IMAGES, ids=lambda p: p.name)
def test_truncated_corpus_images(probe_cls, path):
    data = blob(path)
    full = probe(probe_cls, data)
    for cut in (0, 3, 12, 13, 24, 100, 1000, 30_000, len(data) // 2):
        r = probe(probe_cls, data[:cut], chunk=4093)
        assert (r.width, r.height) in ((None, None), (full.width, full.height))


def test_64_mib_stream_in_1_mib_chunks(probe_cls):
    # One GIF frame whose image data is 64 MiB of 255-byte sub-blocks: the walker runs over all of it.
    head = b"GIF89a" + struct.pack("<HH", 640, 480) + b"\x00\x00\x00"
    head += b"\x2c" + struct.pack("<HHHH", 0, 0, 640, 480) + b"\x00" + b"\x08"
    block = (b"\xff" + bytes(range(255))) * 4096  # exactly 1 MiB of whole sub-blocks
    assert len(block) == 1 << 20
    tail = b"\x00\x3b"
    total = len(head) + 64 * len(block) + len(tail)
    want = hashlib.sha256(head)
    p = probe_cls(total)
    p.feed(head)
    for _ in range(64):
        p.feed(block)
        want.update(block)
    p.feed(tail)
    want.update(tail)
    r = p.finish()
    assert r == ProbeResult(want.hexdigest(), total, "image/gif", 640, 480, 1)


# --------------------------------------------------------------------------- differential (hypothesis)

CORPUS_BY_NAME = {p.name: p for p in CORPUS}
DIFF_SETTINGS = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _agree(probe_pair, chunks) -> ProbeResult:
    py_cls, c_cls = probe_pair
    a = probe_chunks(py_cls, chunks)
    b = probe_chunks(c_cls, chunks)
    assert a == b
    return a


@DIFF_SETTINGS
@given(data=st.data())
def test_random_chunkings_of_corpus_files_agree(probe_pair, data):
    name = data.draw(st.sampled_from(sorted(CORPUS_BY_NAME)))
    raw = blob(CORPUS_BY_NAME[name])
    cuts = data.draw(st.lists(st.integers(0, len(raw)), max_size=40))
    got = _agree(probe_pair, split(raw, cuts))
    assert got == probe(probe_pair[0], raw)
    assert got.sha256 == hashlib.sha256(raw).hexdigest()


@DIFF_SETTINGS
@given(raw=st.binary(max_size=5000), cuts=st.lists(st.integers(0, 5000), max_size=10))
def test_random_bytes_agree(probe_pair, raw, cuts):
    _agree(probe_pair, split(raw, [c for c in cuts if c <= len(raw)]))


MAGICS = [
    b"\xff\xd8\xff", b"\xff\xd8\xff\xe0\x00\x10", b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR", b"GIF89a", b"GIF87a",
    b"RIFF\x00\x01\x00\x00WEBPVP8X", b"RIFF\x00\x01\x00\x00WEBPVP8L", b"RIFF\x00\x01\x00\x00WEBPVP8 ",
    b"BM\x00\x00\x00\x00\x00\x00\x00\x00\x36\x00\x00\x00\x28\x00\x00\x00", b"BM" + b"\x00" * 12 + b"\x0c\x00\x00\x00",
    b"II*\x00\x08\x00\x00\x00", b"MM\x00*\x00\x00\x00\x08", b"\x00\x00\x00\x1cftypmif1", b"\x00\x00\x00\x00ftypheic",
    b"\x00\x00\x00\x18ftypisom", b"\x00\x00\x00\x14ftypqt  ", b"\x00\x00\x00\x14ftyp3gp4",
    b"RIFF\x00\x01\x00\x00AVI ", b"\x1a\x45\xdf\xa3", b"\x1a\x45\xdf\xa3\xa3\x42\x86\x81\x01\x42\x82",
    b"PK\x03\x04", b"\x7fELF", b"MZ", b"#!", b"%PDF-", b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff",
    b"<?xml", b"<svg", b"<!DOCTYPE html>", b"{", b"[", b"# ", b"",
]
TOKENS = [
    " ", "  ", "\t", "\n", "\r\n", "\f", ",", ";", "[", "]", "(", ")", "](", "{", "}", '"', "-", "0", "7", "t", "true",
    "tr", "f", "false", "n", "null", "# ", "## ", "#", "```", "- ", "* ", "<?xml", "<svg", "<SVG", "<html", "<!doctype html",
    "<head", "<body", "<script", "<iframe", "<", ">", "abc", "Hello", "x,y", "\u00e9", "\u4e16", "\U0001f600",
    "\x00", "\x07", "\x1b", "\x7f",
]
TEXTISH = st.lists(st.sampled_from(TOKENS), max_size=60).map("".join)


@DIFF_SETTINGS
@given(
    magic=st.sampled_from(MAGICS),
    body=st.one_of(st.binary(max_size=3000), TEXTISH.map(lambda s: s.encode("utf-8")),
                   TEXTISH.map(lambda s: s.encode("utf-16-le", "surrogatepass"))),
    cut_tail=st.integers(0, 3),
    cuts=st.lists(st.integers(0, 3100), max_size=8),
)
def test_magic_prefixed_and_textish_inputs_agree(probe_pair, magic, body, cut_tail, cuts):
    raw = magic + body
    raw = raw[: max(0, len(raw) - cut_tail)]
    _agree(probe_pair, split(raw, [c for c in cuts if c <= len(raw)]))


_GENERATED: dict[str, bytes] = {}


def generated(name: str) -> bytes:
    if name not in _GENERATED:
        _GENERATED[name] = IMAGE_FACTORIES[name]()
    return _GENERATED[name]


@DIFF_SETTINGS
@given(data=st.data())
def test_mutated_images_agree(probe_pair, data):
    name = data.draw(st.sampled_from(sorted(IMAGE_FACTORIES)))
    raw = bytearray(generated(name))
    for _ in range(data.draw(st.integers(0, 4))):
        at = data.draw(st.integers(0, min(len(raw) - 1, 400)))
        raw[at] = data.draw(st.integers(0, 255))
    for _ in range(data.draw(st.integers(0, 2))):  # size/length fields live near the start
        at = data.draw(st.integers(0, min(len(raw) - 1, 40)))
        raw[at] = data.draw(st.sampled_from([0, 1, 2, 0x7F, 0x80, 0xFE, 0xFF, raw[at] ^ 1]))
    cut = data.draw(st.integers(0, len(raw)))
    raw = bytes(raw[:cut]) + data.draw(st.sampled_from([b"", b"\x00", b"ANMF\x04\x00\x00\x00abcd", b"\x2c", b"\xff\xd9"]))
    cuts = data.draw(st.lists(st.integers(0, len(raw)), max_size=12))
    _agree(probe_pair, split(raw, cuts))


def test_token_pairs_agree(probe_pair):
    """Deterministic sweep over every pair of text tokens (rare rules that random inputs seldom reach)."""
    py_cls, c_cls = probe_pair
    for a in TOKENS:
        for b in TOKENS:
            text = a + b
            for raw in (text.encode(), (text + "\n" + text + "\n").encode(), b"\xff\xfe" + text.encode("utf-16-le")):
                assert probe(py_cls, raw) == probe(c_cls, raw), raw


@pytest.mark.parametrize("name", sorted(IMAGE_FACTORIES))
def test_header_boundary_sweep_agrees(probe_pair, name):
    """Every byte of the first 48 set to boundary values, every short truncation, trailing junk."""
    py_cls, c_cls = probe_pair
    data = generated(name)
    for at in range(min(48, len(data))):
        orig = data[at]
        for v in {0, 1, 0x7F, 0x80, 0xFF, orig ^ 1, (orig + 1) & 0xFF, (orig - 1) & 0xFF}:
            raw = data[:at] + bytes([v]) + data[at + 1:]
            assert probe(py_cls, raw, chunk=4099) == probe(c_cls, raw, chunk=7), (at, v)
    for cut in range(min(200, len(data))):
        assert probe(py_cls, data[:cut], chunk=1) == probe(c_cls, data[:cut]), cut
    for trailer in (b"\x00", b"ANMF\x04\x00\x00\x00abcd", b"\x2c" + b"\x00" * 9, b"\xff\xd9", b"acTL" * 4):
        for delta in range(-9, 10):
            raw = bytearray(data + trailer)
            if name.startswith("webp"):
                struct.pack_into("<I", raw, 4, len(data) - 8 + delta)
            assert probe(py_cls, bytes(raw)) == probe(c_cls, bytes(raw), chunk=3), (trailer, delta)


def test_utf8_lead_and_continuation_sweep_agrees(probe_pair):
    """Every lead byte with every boundary continuation, complete and cut off at the end:
    valid or not as UTF-8, bytes >= 0x80 are text (legacy code pages); DEL is not."""
    py_cls, c_cls = probe_pair
    for x in range(0x80, 0x100):
        for y in (0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0):
            for tail in (b"", b"\x80", b"\x80\x80", b"\x80z"):
                raw = b"ok " + bytes([x, y]) + tail
                a = probe(py_cls, raw)
                assert a == probe(c_cls, raw), raw
                # Oracle: text (UTF-8 or a legacy code page) iff there is no control byte.
                assert (a.mime_type != "application/octet-stream") == (0x7F not in raw), raw
