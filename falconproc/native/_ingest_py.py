"""One pass over an upload stream: size limit, SHA-256, spill to a file, type sniff, image header.

This is the pure-Python reference implementation; ``_native/_ingest_c.pyx`` is its
compiled twin and must behave identically (the tests feed both the same chunkings
and compare the results). Keep the two in step: every rule below is written at the
byte level so that it ports to C pointers one to one.

Memory is bounded: the probe keeps at most the first 64 KiB of the stream (the
"head", used for sniffing and for BMP/TIFF headers) plus O(1) streaming-parser
state for JPEG/PNG/GIF/WebP, whose interesting fields may lie anywhere in the stream.
"""
from __future__ import annotations

import errno
import hashlib
import os
import re

from falconproc.errors import UploadTooLarge
from falconproc.native.types import ProbeResult

__all__ = ["IngestProbe"]

HEAD_MAX = 64 * 1024  # bytes of the stream kept for sniffing
TEXT_SAMPLE = 8 * 1024  # bytes of the head the text rules look at
PDF_WINDOW = 1024  # "%PDF-" must start within this many bytes
KIND_DECIDE = 12  # bytes needed before the streaming parser is chosen
JPEG_MAX_FILL = 1024  # more 0xFF fill bytes in a row than this: give up on the walker

OCTET = "application/octet-stream"

# Streaming parser kinds (decided once the stream has KIND_DECIDE bytes).
K_UNDECIDED = -1
K_NONE = 0
K_JPEG = 1
K_PNG = 2
K_GIF = 3
K_WEBP = 4

# Parser states. JPEG:
J_SOI, J_MARK, J_MARK2, J_LEN, J_SOF = 1, 2, 3, 4, 5
# PNG:
P_SIG, P_HDR, P_IHDR, P_ACTL = 11, 12, 13, 14
# GIF:
G_HDR, G_BLOCK, G_DESC, G_LZW, G_EXT, G_SUB = 21, 22, 23, 24, 25, 26
# WebP:
W_RIFF, W_CHDR, W_VP8, W_VP8L, W_VP8X = 31, 32, 33, 34, 35

PNG_SIG = b"\x89PNG\r\n\x1a\n"
BMP_DIB_SIZES = (12, 40, 52, 56, 108, 124)
MACHO_MAGICS = (b"\xfe\xed\xfa\xce", b"\xfe\xed\xfa\xcf", b"\xce\xfa\xed\xfe", b"\xcf\xfa\xed\xfe")
HEIC_BRANDS = (b"heic", b"heix", b"hevc", b"heim", b"heis")
AVIF_BRANDS = (b"avif", b"avis")
# Major brands of ISO BMFF video (checked after the image brands above).
MP4_BRANDS = (b"isom", b"iso2", b"iso4", b"iso5", b"iso6", b"mp41", b"mp42", b"avc1", b"dash", b"mmp4", b"MSNV",
              b"f4v ")
M4V_BRANDS = (b"M4V ", b"M4VH", b"M4VP")
EBML_MAGIC = b"\x1a\x45\xdf\xa3"
EBML_WINDOW = 64  # the EBML header (where DocType sits) is some 30-40 bytes in practice
HTML_PREFIXES = (b"<!doctype html", b"<html", b"<head", b"<body", b"<script", b"<iframe")
WS = b" \t\n\r\f"  # "whitespace" for the text rules (ASCII only, identical in the C twin)
JSON_AFTER_BRACE = b'"}'
JSON_AFTER_BRACKET = b'"{[]-0123456789'
JSON_WORDS = {0x74: b"true", 0x66: b"false", 0x6E: b"null"}  # t f n

# Bytes that make a BOM-less sample "binary": C0 controls except \t \n \f \r ESC, and DEL.
_CONTROL = re.compile(rb"[\x00-\x08\x0b\x0e-\x1a\x1c-\x1f\x7f]")


def _be16(b, o):
    return (b[o] << 8) | b[o + 1]


def _be32(b, o):
    return (b[o] << 24) | (b[o + 1] << 16) | (b[o + 2] << 8) | b[o + 3]


def _le16(b, o):
    return b[o] | (b[o + 1] << 8)


def _le24(b, o):
    return b[o] | (b[o + 1] << 8) | (b[o + 2] << 16)


def _le32(b, o):
    return b[o] | (b[o + 1] << 8) | (b[o + 2] << 16) | (b[o + 3] << 24)


def _is_sof(m):
    return 0xC0 <= m <= 0xCF and m not in (0xC4, 0xC8, 0xCC)


# --------------------------------------------------------------------------- sniffing


def _stream_kind(h) -> int:
    """Which streaming parser runs; ``h`` holds at least KIND_DECIDE bytes."""
    if h[:3] == b"\xff\xd8\xff":
        return K_JPEG
    if h[:8] == PNG_SIG:
        return K_PNG
    if h[:6] in (b"GIF87a", b"GIF89a"):
        return K_GIF
    if h[:4] == b"RIFF" and h[8:12] == b"WEBP":
        return K_WEBP
    return K_NONE


def _isobmff_type(h) -> str:
    n = len(h)
    major = bytes(h[8:12])
    if major in AVIF_BRANDS:
        return "image/avif"
    if major in HEIC_BRANDS:
        return "image/heic"
    box = _be32(h, 0)
    if box == 0:
        end = n
    elif box < 16:
        end = 16
    else:
        end = min(box, n)
    avif = heic = False
    k = 16
    while k + 4 <= end:
        brand = bytes(h[k:k + 4])
        if brand in AVIF_BRANDS:
            avif = True
        elif brand in HEIC_BRANDS:
            heic = True
        k += 4
    if avif:
        return "image/avif"
    if heic:
        return "image/heic"
    if major == b"qt  ":
        return "video/quicktime"
    if major in M4V_BRANDS:
        return "video/x-m4v"
    if major[:3] == b"3gp":
        return "video/3gpp"
    if major[:3] == b"3g2":
        return "video/3gpp2"
    if major in MP4_BRANDS:
        return "video/mp4"
    return OCTET


def _ebml_type(h) -> str:
    """WebM or Matroska, from the EBML header's DocType element (ID 0x4282, then its
    size as an EBML variable-length integer, then the ASCII doc type)."""
    n = min(len(h), EBML_WINDOW)
    if n < 4:
        return OCTET
    k = h.find(b"\x42\x82", 4, n)
    if k < 0 or k + 2 >= n:
        return OCTET
    first = h[k + 2]
    if first == 0:
        return OCTET
    length = 1
    while not first & (0x80 >> (length - 1)):
        length += 1
    start = k + 2 + length
    if start > n:
        return OCTET
    value = first & (0xFF >> length)
    for j in range(k + 3, start):
        value = (value << 8) | h[j]
    if value == 4 and start + 4 <= n and h[start:start + 4] == b"webm":
        return "video/webm"
    if value == 8 and start + 8 <= n and h[start:start + 8] == b"matroska":
        return "video/x-matroska"
    return OCTET


def _utf16_ascii(b, big_endian: bool) -> bytes:
    """UTF-16 code units -> one byte each: the unit if ASCII, else 0x80 (never matches a rule)."""
    out = bytearray(len(b) // 2)
    for k in range(len(out)):
        u = _be16(b, 2 * k) if big_endian else _le16(b, 2 * k)
        out[k] = u if u < 0x80 else 0x80
    return bytes(out)


def _is_json_start(s) -> bool:
    n = len(s)
    first = s[0]
    j = 1
    while j < n and s[j] in WS:
        j += 1
    if j >= n:
        return False
    c = s[j]
    if first == 0x7B:  # {
        return c in JSON_AFTER_BRACE
    if c in JSON_AFTER_BRACKET:
        return True
    word = JSON_WORDS.get(c)
    if word is None:
        return False
    return word.startswith(s[j:j + len(word)])


def _is_csv(s, complete: bool) -> bool:
    parts = s.split(b"\n")
    last = parts.pop()  # after the last newline: a partial line unless the sample is the whole stream
    if complete and last:
        parts.append(last)
    lines = []
    for line in parts:
        if line.endswith(b"\r"):
            line = line[:-1]
        if line:
            lines.append(line)
            if len(lines) == 10:
                break
    if len(lines) < 2:
        return False
    for sep in (b",", b";", b"\t"):
        first = lines[0].count(sep)
        if first >= 1 and all(line.count(sep) == first for line in lines[1:]):
            return True
    return False


def _is_markdown(s) -> bool:
    for line in s.split(b"\n"):
        if line.startswith(b"```"):
            return True
        k = 0
        while k < len(line) and k < 7 and line[k] == 0x23:  # '#'
            k += 1
        if 1 <= k <= 6 and k < len(line) and line[k] == 0x20:
            return True
    at = s.find(b"](")
    return at > 0 and s.find(b"[", 0, at) >= 0


def _classify_text(t, complete: bool) -> str:
    n = len(t)
    i = 0
    while i < n and t[i] in WS:
        i += 1
    s = bytes(t[i:])
    if s.startswith(b"<?xml"):
        return "image/svg+xml" if b"<svg" in t else "application/xml"
    low = s[:16].lower()  # bytes.lower() folds ASCII only
    if low.startswith(b"<svg"):
        return "image/svg+xml"
    for prefix in HTML_PREFIXES:
        if low.startswith(prefix):
            return "text/html"
    if s and s[0] in b"{[" and _is_json_start(s):
        return "application/json"
    if _is_csv(s, complete):
        return "text/csv"
    if _is_markdown(s):
        return "text/markdown"
    return "text/plain"


def sniff(h, size: int) -> str:
    """The MIME type of a stream of ``size`` bytes whose first bytes are ``h`` (<= 64 KiB)."""
    n = len(h)
    if n >= 3 and h[:3] == b"\xff\xd8\xff":
        return "image/jpeg"
    if h[:8] == PNG_SIG:
        return "image/png"
    if h[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if n >= 12 and h[:4] == b"RIFF" and h[8:12] == b"WEBP":
        return "image/webp"
    if n >= 12 and h[:4] == b"RIFF" and h[8:12] == b"AVI ":
        return "video/x-msvideo"
    if h[:4] == EBML_MAGIC:
        return _ebml_type(h)
    if n >= 18 and h[:2] == b"BM" and _le32(h, 14) in BMP_DIB_SIZES:
        return "image/bmp"
    if h[:4] in (b"II*\x00", b"MM\x00*"):
        return "image/tiff"
    if n >= 12 and h[4:8] == b"ftyp":
        return _isobmff_type(h)
    if h[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "application/zip"
    if h[:4] == b"\x7fELF":
        return "application/x-executable"
    if h[:4] in MACHO_MAGICS:
        return "application/x-mach-binary"
    if h[:2] == b"MZ":
        return "application/x-msdownload"
    if h[:2] == b"#!":
        return "text/x-shellscript"
    if h.find(b"%PDF-", 0, PDF_WINDOW) >= 0:  # the whole marker inside the first 1024 bytes
        return "application/pdf"
    if n == 0:
        return OCTET
    sample = h[:TEXT_SAMPLE]
    complete = size <= TEXT_SAMPLE
    if sample[:3] == b"\xef\xbb\xbf":
        return _classify_text(sample[3:], complete)
    if sample[:2] == b"\xff\xfe":
        return _classify_text(_utf16_ascii(sample[2:], False), complete)
    if sample[:2] == b"\xfe\xff":
        return _classify_text(_utf16_ascii(sample[2:], True), complete)
    # Text is what has no control bytes: UTF-8, or a legacy single-byte code page
    # (cp1252, latin-1) that the text extractor decodes. Binary data has controls.
    if _CONTROL.search(sample) is not None:
        return OCTET
    return _classify_text(sample, complete)


def _bmp_dims(h):
    if len(h) < 22:
        return None, None
    if _le32(h, 14) == 12:
        return _le16(h, 18), _le16(h, 20)
    if len(h) < 26:
        return None, None
    w = _le32(h, 18)
    hh = _le32(h, 22)
    if w >= 0x80000000:
        w -= 0x100000000
    if hh >= 0x80000000:
        hh -= 0x100000000
    return w, abs(hh)


def _tiff_dims(h):
    n = len(h)
    if n < 8:
        return None, None
    big = h[0] == 0x4D  # 'M'
    u16 = _be16 if big else _le16
    u32 = _be32 if big else _le32
    off = u32(h, 4)
    if off + 2 > n:
        return None, None
    count = u16(h, off)
    w = hh = -1
    e = off + 2
    for _ in range(count):
        if e + 12 > n:
            break
        tag = u16(h, e)
        typ = u16(h, e + 2)
        if typ == 3:
            val = u16(h, e + 8)
        elif typ == 4:
            val = u32(h, e + 8)
        else:
            val = -1
        if val >= 0:
            if tag == 256 and w < 0:
                w = val
            elif tag == 257 and hh < 0:
                hh = val
        e += 12
    if w < 0 or hh < 0:
        return None, None
    return w, hh


# --------------------------------------------------------------------------- the probe


class IngestProbe:
    """Feed an upload chunk by chunk; ``finish()`` returns a ProbeResult."""

    __slots__ = ("_max_bytes", "_fd", "_size", "_hash", "_head", "_finished",
                 "_kind", "_st", "_need", "_acc", "_skip", "_done", "_have", "_w", "_h",
                 "_count", "_fill", "_marker", "_clen", "_nchunks", "_actl", "_riff_end", "_animated")

    def __init__(self, max_bytes: int, fd: int = -1):
        max_bytes = int(max_bytes)
        fd = int(fd)
        if max_bytes < 0:
            raise ValueError("max_bytes must be >= 0")
        self._max_bytes = max_bytes
        self._fd = fd
        self._size = 0
        self._hash = hashlib.sha256()
        self._head = bytearray()
        self._finished = False
        self._kind = K_UNDECIDED
        self._st = 0
        self._need = 0
        self._acc = bytearray()
        self._skip = 0
        self._done = False
        self._have = False
        self._w = self._h = 0
        self._count = 0
        self._fill = 0
        self._marker = 0
        self._clen = 0
        self._nchunks = 0
        self._actl = -1
        self._riff_end = 0
        self._animated = False

    @property
    def size(self) -> int:
        """Bytes accepted so far."""
        return self._size

    def feed(self, chunk) -> None:
        if self._finished:
            raise RuntimeError("IngestProbe.feed() after finish()")
        mv = memoryview(chunk)
        if mv.ndim != 1 or mv.format != "B":
            mv = mv.cast("B")
        n = mv.nbytes
        prev = self._size
        if prev + n > self._max_bytes:
            raise UploadTooLarge(self._max_bytes)
        if n == 0:
            return
        fd = self._fd
        if fd >= 0:
            done = 0
            while done < n:  # os.write retries EINTR itself (PEP 475) and raises OSError(errno, ...)
                w = os.write(fd, mv[done:])
                if w <= 0:  # never for files and pipes; do not spin if it happens
                    raise OSError(errno.EIO, os.strerror(errno.EIO))
                done += w
        self._hash.update(mv)
        head = self._head
        if len(head) < HEAD_MAX:
            head += mv[:HEAD_MAX - len(head)]
        size = prev + n
        self._size = size
        kind = self._kind
        if kind == K_UNDECIDED:
            if size >= KIND_DECIDE:
                kind = self._start(_stream_kind(head))
                if kind != K_NONE:
                    hl = len(head)
                    self._parse(head, 0)
                    if hl < size and not self._done:
                        self._parse(mv[hl - prev:], hl)
        elif kind != K_NONE and not self._done:
            self._parse(mv, prev)

    def finish(self) -> ProbeResult:
        if self._finished:
            raise RuntimeError("IngestProbe.finish() called twice")
        self._finished = True
        head = bytes(self._head)
        mime = sniff(head, self._size)
        w = h = frames = None
        kind = self._kind
        if mime == "image/bmp":
            w, h = _bmp_dims(head)
        elif mime == "image/tiff":
            w, h = _tiff_dims(head)
        elif kind > K_NONE and self._have:
            w, h = self._w, self._h
            if kind == K_PNG:
                frames = self._actl if self._actl >= 0 else 1
            elif kind == K_GIF:
                frames = self._count
            elif kind == K_WEBP:
                frames = self._count if self._animated else 1
        return ProbeResult(self._hash.hexdigest(), self._size, mime, w, h, frames)

    # ---------------------------------------------------------------- streaming parsers

    def _start(self, kind: int) -> int:
        self._kind = kind
        if kind == K_JPEG:
            self._st, self._need = J_SOI, 2
        elif kind == K_PNG:
            self._st, self._need = P_SIG, 8
        elif kind == K_GIF:
            self._st, self._need = G_HDR, 13
        elif kind == K_WEBP:
            self._st, self._need = W_RIFF, 12
        return kind

    def _parse(self, data, base: int) -> None:
        """Run the walker over ``data``, which starts at stream offset ``base``."""
        acc = self._acc
        n = len(data)
        i = 0
        while i < n:
            skip = self._skip
            if skip:
                k = n - i
                if k > skip:
                    k = skip
                self._skip = skip - k
                i += k
                continue
            if self._st == G_SUB and not acc:
                # Hot loop for GIF sub-block chains (image data): same semantics as _step(G_SUB).
                while i < n:
                    ln = data[i]
                    i += 1
                    if ln == 0:
                        self._st = G_BLOCK
                        break
                    i += ln
                if i > n:
                    self._skip = i - n
                    return
                continue
            k = self._need - len(acc)
            if k > n - i:
                k = n - i
            acc += data[i:i + k]
            i += k
            if len(acc) < self._need:
                return
            self._step(acc, base + i)
            acc.clear()
            if self._done:
                return

    def _step(self, a, pos: int) -> None:
        """Consume the collected ``a`` (exactly ``_need`` bytes, ending at stream offset ``pos``)."""
        st = self._st
        # ---- JPEG
        if st == J_MARK2:
            b = a[0]
            if b == 0xFF:
                self._fill += 1
                if self._fill > JPEG_MAX_FILL:
                    self._done = True
                return
            self._fill = 0
            if b == 0x00 or b == 0xD9 or b == 0xDA:
                self._done = True
            elif b == 0x01 or 0xD0 <= b <= 0xD8:
                self._st, self._need = J_MARK, 1
            else:
                self._marker = b
                self._st, self._need = J_LEN, 2
        elif st == J_MARK:
            if a[0] != 0xFF:
                self._done = True
            else:
                self._st, self._need = J_MARK2, 1
        elif st == J_LEN:
            ln = _be16(a, 0)
            if ln < 2:
                self._done = True
            elif _is_sof(self._marker):
                if ln < 7:
                    self._done = True
                else:
                    self._st, self._need = J_SOF, 5
            else:
                self._skip = ln - 2
                self._st, self._need = J_MARK, 1
        elif st == J_SOI:
            if a[0] != 0xFF or a[1] != 0xD8:
                self._done = True
            else:
                self._st, self._need = J_MARK, 1
        elif st == J_SOF:
            self._h = _be16(a, 1)
            self._w = _be16(a, 3)
            self._have = True
            self._done = True
        # ---- PNG
        elif st == P_HDR:
            ln = _be32(a, 0)
            typ = bytes(a[4:8])
            self._clen = ln
            first = self._nchunks == 0
            self._nchunks += 1
            if first:
                if typ != b"IHDR" or ln < 8:
                    self._done = True
                else:
                    self._st, self._need = P_IHDR, 8
            elif typ == b"IDAT" or typ == b"IEND":
                self._done = True
            elif typ == b"acTL" and self._actl < 0 and ln >= 8:
                self._st, self._need = P_ACTL, 8
            else:
                self._skip = ln + 4
        elif st == P_IHDR:
            self._w = _be32(a, 0)
            self._h = _be32(a, 4)
            self._have = True
            self._skip = self._clen - 8 + 4
            self._st, self._need = P_HDR, 8
        elif st == P_ACTL:
            self._actl = _be32(a, 0)
            self._skip = self._clen - 8 + 4
            self._st, self._need = P_HDR, 8
        elif st == P_SIG:
            self._st, self._need = P_HDR, 8
        # ---- GIF
        elif st == G_SUB:
            ln = a[0]
            if ln == 0:
                self._st = G_BLOCK
            else:
                self._skip = ln
        elif st == G_BLOCK:
            b = a[0]
            if b == 0x2C:
                self._count += 1
                self._st, self._need = G_DESC, 9
            elif b == 0x21:
                self._st = G_EXT
            else:
                self._done = True
        elif st == G_DESC:
            if self._count == 1:
                # Pillow grows the canvas to a first frame larger than the logical screen.
                self._w = max(self._w, _le16(a, 0) + _le16(a, 4))
                self._h = max(self._h, _le16(a, 2) + _le16(a, 6))
            flags = a[8]
            if flags & 0x80:
                self._skip = 3 << ((flags & 7) + 1)
            self._st, self._need = G_LZW, 1
        elif st == G_LZW or st == G_EXT:
            self._st = G_SUB
        elif st == G_HDR:
            self._w = _le16(a, 6)
            self._h = _le16(a, 8)
            self._have = True
            flags = a[10]
            if flags & 0x80:
                self._skip = 3 << ((flags & 7) + 1)
            self._st, self._need = G_BLOCK, 1
        # ---- WebP
        elif st == W_CHDR:
            if pos > self._riff_end:
                self._done = True
                return
            size = _le32(a, 4)
            padded = size + (size & 1)
            first = self._nchunks == 0
            self._nchunks += 1
            self._clen = padded
            if first:
                fourcc = bytes(a[0:4])
                if fourcc == b"VP8 " and size >= 10:
                    self._st, self._need = W_VP8, 10
                elif fourcc == b"VP8L" and size >= 5:
                    self._st, self._need = W_VP8L, 5
                elif fourcc == b"VP8X" and size >= 10:
                    self._st, self._need = W_VP8X, 10
                else:
                    self._done = True
            else:
                if a[0:4] == b"ANMF":
                    self._count += 1
                self._skip = padded
        elif st == W_VP8:
            if a[3] == 0x9D and a[4] == 0x01 and a[5] == 0x2A:
                self._w = _le16(a, 6) & 0x3FFF
                self._h = _le16(a, 8) & 0x3FFF
                self._have = True
            self._done = True
        elif st == W_VP8L:
            if a[0] == 0x2F:
                bits = _le32(a, 1)
                self._w = (bits & 0x3FFF) + 1
                self._h = ((bits >> 14) & 0x3FFF) + 1
                self._have = True
            self._done = True
        elif st == W_VP8X:
            self._w = _le24(a, 4) + 1
            self._h = _le24(a, 7) + 1
            self._have = True
            if a[0] & 0x02:
                self._animated = True
                self._skip = self._clen - 10
                self._st, self._need = W_CHDR, 8
            else:
                self._done = True
        elif st == W_RIFF:
            self._riff_end = 8 + _le32(a, 4)
            self._st, self._need = W_CHDR, 8
        else:  # pragma: no cover - unreachable
            self._done = True
