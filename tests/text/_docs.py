"""Document generators and helpers for the text/OCR tests.

Everything hostile is built here, in memory, from raw bytes: PDFs object by object,
ZIPs header by header (so declared sizes can lie and a 200 MB member of zeros costs
200 KB and a fraction of a second), DOCX files with python-docx.
"""
from __future__ import annotations

import functools
import io
import re
import struct
import time
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import requests

from tests.support.corpus import DOCS

W_NS = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"


# ---------------------------------------------------------------------------- words


def words(text: str) -> Counter:
    return Counter(re.findall(r"\w+", text.lower()))


def word_recall(text: str, truth: str) -> float:
    """Bag-of-words recall: the share of the truth's tokens (with counts) found in ``text``."""
    want, got = words(truth), words(text)
    return sum(min(n, got[w]) for w, n in want.items()) / max(sum(want.values()), 1)


# ---------------------------------------------------------------------------- PDF

FONT = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"
PAGE = (b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
        b"/Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R %s>>")


def build_pdf(objects: dict[int, bytes], root: int = 1) -> bytes:
    """A PDF with a correct xref table from ``{number: object body}``."""
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets: dict[int, int] = {}
    for num in sorted(objects):
        offsets[num] = len(out)
        out += b"%d 0 obj\n" % num + objects[num] + b"\nendobj\n"
    xref, size = len(out), max(objects) + 1
    out += b"xref\n0 %d\n0000000000 65535 f \n" % size
    for num in range(1, size):
        out += (b"%010d 00000 n \n" % offsets[num]) if num in offsets else b"0000000000 65535 f \n"
    out += b"trailer\n<< /Size %d /Root %d 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (size, root, xref)
    return bytes(out)


def stream(data: bytes) -> bytes:
    return b"<< /Length %d >>\nstream\n" % len(data) + data + b"\nendstream"


def text_pdf(texts: list[str], *, shared_content: bytes | None = None) -> bytes:
    """One page per text (Helvetica, one line), or ``len(texts)`` pages sharing one content stream."""
    objs = {1: b"<< /Type /Catalog /Pages 2 0 R >>", 3: FONT}
    kids, n = [], 4
    if shared_content is not None:
        objs[n] = stream(shared_content)
        content, n = n, n + 1
    for t in texts:
        if shared_content is None:
            objs[n] = PAGE % (n + 1, b"")
            objs[n + 1] = stream(b"BT /F1 12 Tf 72 720 Td (" + t.encode("latin-1") + b") Tj ET")
            kids.append(n)
            n += 2
        else:
            objs[n] = PAGE % (content, b"")
            kids.append(n)
            n += 1
    objs[2] = b"<< /Type /Pages /Kids [" + b" ".join(b"%d 0 R" % k for k in kids) + b"] /Count %d >>" % len(kids)
    return build_pdf(objs)


def slow_pdf(pages: int, ops: int = 20000) -> bytes:
    """Valid pages whose shared content stream costs pypdf about ``ops / 20000`` s each to extract."""
    return text_pdf(["x"] * pages, shared_content=b"BT /F1 12 Tf 72 720 Td " + b"(ab) Tj 1 0 Td " * ops + b"ET")


def nested_array_pdf(depth: int = 100_000) -> bytes:
    """A page dictionary holding ``depth`` nested arrays (pypdf's object parser recurses on them)."""
    return build_pdf({
        1: b"<< /Type /Catalog /Pages 2 0 R >>",
        2: b"<< /Type /Pages /Kids [4 0 R] /Count 1 >>",
        3: FONT,
        4: PAGE % (5, b"/Deep " + b"[" * depth + b"]" * depth + b" "),
        5: stream(b"BT /F1 12 Tf 72 720 Td (Nested) Tj ET"),
    })


def cyclic_pdf() -> bytes:
    """A /Pages node whose /Kids contains itself (plus a real page)."""
    return build_pdf({
        1: b"<< /Type /Catalog /Pages 2 0 R >>",
        2: b"<< /Type /Pages /Kids [2 0 R 4 0 R] /Count 2 >>",
        3: FONT,
        4: PAGE % (5, b""),
        5: stream(b"BT /F1 12 Tf 72 720 Td (Cycle) Tj ET"),
    })


def truncated_pdf() -> bytes:
    full = (DOCS / "pdflatex-outline.pdf").read_bytes()
    return full[: len(full) // 2]


def repeated_pdf(source: Path, copies: int) -> bytes:
    """``copies`` concatenations of a real PDF's pages (pypdf's writer)."""
    from pypdf import PdfReader, PdfWriter

    reader = PdfReader(str(source))
    writer = PdfWriter()
    for _ in range(copies):
        for page in reader.pages:
            writer.add_page(page)
    buf = io.BytesIO()
    writer.write(buf)
    return buf.getvalue()


def image_pdf(image_path: Path, *, with_text_page: bool = False) -> bytes:
    """A PDF whose page is only an embedded image (Pillow's PDF writer), optionally after a text page."""
    from PIL import Image
    from pypdf import PdfReader, PdfWriter

    buf = io.BytesIO()
    with Image.open(image_path) as im:
        im.convert("L").save(buf, format="PDF", resolution=200.0)
    if not with_text_page:
        return buf.getvalue()
    writer = PdfWriter()
    writer.add_page(PdfReader(io.BytesIO(text_pdf(["Page one has a text layer"]))).pages[0])
    writer.add_page(PdfReader(buf).pages[0])
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


# ---------------------------------------------------------------------------- PDF: pypdf advisory shapes
#
# Each generator builds, from raw bytes, a PDF of the shape one of pypdf's security advisories
# describes (ids and the fixing pypdf version in the docstrings). Where the shape allows it the
# hostile page comes second, after an intact page whose text must survive.

INTACT = "Intact page before the hostile one"
HELLO = b"BT /F1 12 Tf 72 720 Td (%s) Tj ET"


def stream_with(data: bytes, entries: bytes) -> bytes:
    """A stream with extra dictionary entries (filters, decode parameters)."""
    return b"<< /Length %d %s >>\nstream\n" % (len(data), entries) + data + b"\nendstream"


def two_page_pdf(hostile: bytes, *, resources: bytes = b"<< /Font << /F1 3 0 R >> >>",
                 contents: bytes = b"7 0 R", extra: dict[int, bytes] | None = None) -> bytes:
    """Page 1 says INTACT; page 2 has ``resources`` and ``contents`` (object 7 is ``hostile``);
    objects 8 and up are ``extra``."""
    return build_pdf({
        1: b"<< /Type /Catalog /Pages 2 0 R >>",
        2: b"<< /Type /Pages /Kids [4 0 R 6 0 R] /Count 2 >>",
        3: FONT,
        4: PAGE % (5, b""),
        5: stream(HELLO % INTACT.encode()),
        6: b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources " + resources
           + b" /Contents " + contents + b" >>",
        7: hostile,
        **(extra or {}),
    })


@functools.lru_cache(maxsize=8)
def zlib_bomb(mib: int, fill: bytes = b" ") -> bytes:
    """A valid zlib stream (header, deflate, Adler-32) of ``mib`` MiB of ``fill``, about 1 KB per MiB,
    built without holding the data: one fully flushed deflate piece of 1 MiB, repeated."""
    chunk = fill * ((1 << 20) // len(fill))
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    piece = c.compress(chunk) + c.flush(zlib.Z_FULL_FLUSH)  # byte-aligned, needs no history: repeatable
    adler = 1
    for _ in range(mib):
        adler = zlib.adler32(chunk, adler)
    end = zlib.compressobj(9, zlib.DEFLATED, -15).flush()
    return b"\x78\xda" + piece * mib + end + struct.pack(">I", adler)


def flate_bomb_pdf(mib: int = 1024) -> bytes:
    """CVE-2025-55197 (GHSA-7hfw-26vp-jp8m, fixed in pypdf 6.0.0): a /FlateDecode content stream of
    ``mib`` MiB of spaces; pypdf inflated all of it into memory."""
    return two_page_pdf(stream_with(zlib_bomb(mib), b"/Filter /FlateDecode"))


LZW_ROUND = 7_370_880  # bytes of output per LZW round below


@functools.lru_cache(maxsize=4)
def lzw_zeros(mib: int) -> bytes:
    """An LZW stream (PDF flavour: 9 to 12 bit codes, early change) of at least ``mib`` MiB of zeros.

    Written code by code rather than encoded: a round is code 0, then codes 258, 259, ... 4095, each
    naming the entry being defined (the previous string plus its first byte: 2, 3, ... 3839 zeros),
    then a table reset (256): 7.37 MB out of 5.4 KB. Four rounds end on a byte boundary."""
    bits = []
    for code in [0, *range(258, 4096), 256]:
        width = 9 if code < 511 else 10 if code < 1023 else 11 if code < 2047 else 12
        bits.append(format(code, "0%db" % (12 if code == 256 else width)))
    four = "".join(bits) * 4
    block = int(four, 2).to_bytes(len(four) // 8, "big")
    end = int(format(257, "09b") + "0000000", 2).to_bytes(2, "big")  # end of data (9 bits after a reset)
    return block * -(-(mib << 20) // (4 * LZW_ROUND)) + end


def lzw_bomb_pdf(mib: int = 1024) -> bytes:
    """CVE-2025-62708 (GHSA-jfx9-29x2-rv3j, pypdf 6.1.3) and CVE-2025-66019 (GHSA-m449-cwjh-6pw7,
    pypdf 6.4.0): an /LZWDecode content stream of ``mib`` MiB of zeros, ~1360:1."""
    return two_page_pdf(stream_with(lzw_zeros(mib), b"/Filter /LZWDecode"))


def runlength_bomb_pdf(mib: int = 1024) -> bytes:
    """CVE-2026-28351 (GHSA-f2v5-7jq9-h8cg, pypdf 6.7.4): /RunLengthDecode output had no limit.
    Runs of 128 spaces (2 bytes each: 64:1), themselves deflated: [/FlateDecode /RunLengthDecode]."""
    runs = zlib_bomb(max(mib // 64, 1), fill=b"\x81 ")
    return two_page_pdf(stream_with(runs, b"/Filter [/FlateDecode /RunLengthDecode]"))


def asciihex_pdf(pairs: int = 1_500_000) -> bytes:
    """pypdf #3666 (6.7.5, slow ASCIIHexDecode): an /ASCIIHexDecode content stream of ``pairs`` hex
    pairs (spaces) and then a text operator, which must still be read."""
    data = b"20" * pairs + (HELLO % b"Hex survived").hex().encode() + b">"
    return two_page_pdf(stream_with(data, b"/Filter /ASCIIHexDecode"))


def flate_predictor_pdf() -> bytes:
    """pypdf #3734 (6.10.2, limits for FlateDecode parameters): a small /FlateDecode content stream
    whose PNG predictor parameters claim rows of 40 million columns x 4 colours (160 MB a row)."""
    parms = b"/DecodeParms << /Predictor 12 /Columns 40000000 /Colors 4 /BitsPerComponent 8 >>"
    return two_page_pdf(stream_with(zlib.compress(HELLO % b"Predicted"), b"/Filter /FlateDecode " + parms))


def flate_recovery_pdf(mib: int = 1) -> bytes:
    """CVE-2026-27026 (pypdf 6.7.1): a /FlateDecode stream that is not zlib data at all, ``mib`` MiB
    of it: pypdf then recovers what it can byte by byte (~1 s per MiB here), which had no input
    limit; 6.7.1 stops after 5 MB. (Linear, so only a long stream or many of them are slow.)"""
    return two_page_pdf(stream_with(b"A" * (mib << 20), b"/Filter /FlateDecode"))


def array_contents_pdf(refs: int = 5000, mib: int = 1) -> bytes:
    """CVE-2026-33123 (pypdf 6.9.1): page 2's /Contents is an array naming one ``mib`` MiB content
    stream (deflated) ``refs`` times: gigabytes once concatenated, quadratic to concatenate."""
    return two_page_pdf(stream_with(zlib_bomb(mib), b"/Filter /FlateDecode"),
                        contents=b"[" + b"7 0 R " * refs + b"]")


def xform_dag_pdf(depth: int = 40) -> bytes:
    """pypdf #3966 (6.16.1, iteration limit for XForm text extraction): form X0 draws X1 twice, X1
    draws X2 twice, ... the last shows one character: 2**depth paths through depth + 1 objects."""
    extra = {}
    for k in range(depth + 1):
        if k < depth:
            content = b"q /X%d Do /X%d Do Q" % (k + 1, k + 1)
            xobjects = b"/XObject << /X%d %d 0 R >>" % (k + 1, 9 + k)
        else:
            content, xobjects = HELLO % b".", b""
        extra[8 + k] = stream_with(content, b"/Type /XObject /Subtype /Form /BBox [0 0 612 792] "
                                            b"/Resources << /Font << /F1 3 0 R >> " + xobjects + b" >>")
    return two_page_pdf(stream(b"/X0 Do"), resources=b"<< /Font << /F1 3 0 R >> /XObject << /X0 8 0 R >> >>",
                        extra=extra)


def _font_page(font: bytes, text: bytes, extra: dict[int, bytes]) -> bytes:
    return two_page_pdf(stream(b"BT /F2 12 Tf 72 720 Td " + text + b" Tj ET"),
                        resources=b"<< /Font << /F1 3 0 R /F2 8 0 R >> >>", extra={8: font, **extra})


def tounicode_range_pdf() -> bytes:
    """CVE-2026-27025 (pypdf 6.7.1): a font whose /ToUnicode CMap maps every 4-byte code,
    <00000000>..<FFFFFFFF>, in one range; pypdf expanded the range entry by entry."""
    cmap = (b"/CIDInit /ProcSet findresource begin 12 dict begin begincmap\n"
            b"1 begincodespacerange <00000000> <FFFFFFFF> endcodespacerange\n"
            b"1 beginbfrange <00000000> <FFFFFFFF> <00000041> endbfrange\n"
            b"endcmap CMapName currentdict /CMap defineresource pop end end")
    font = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /ToUnicode 9 0 R >>"
    return _font_page(font, b"(ToUnicode)", {9: stream(cmap)})


def cid_widths_pdf(ranges: int = 200) -> bytes:
    """pypdf #3946 (6.15.0, limits for CID width ranges): a CID font whose /W gives one width to every
    Unicode code point, ``ranges`` times over; pypdf stored a width per CID of each range."""
    font = b"<< /Type /Font /Subtype /Type0 /BaseFont /Wide /Encoding /Identity-H /DescendantFonts [9 0 R] >>"
    cid = (b"<< /Type /Font /Subtype /CIDFontType2 /BaseFont /Wide /W [" + b"0 1114111 500 " * ranges
           + b"] /CIDSystemInfo << /Registry (Adobe) /Ordering (Identity) /Supplement 0 >> >>")
    return _font_page(font, b"<00410042>", {9: cid})


def inline_image_pdf(image: bytes) -> bytes:
    """Page 2: a line of text, then ``image``, an inline image running to the end of the content stream."""
    return two_page_pdf(stream(HELLO % b"Before the image" + b"\n" + image))


def lzw_image_pdf(mib: int = 1024) -> bytes:
    """The LZW bomb of lzw_bomb_pdf as an image XObject (4096 x 4096 grey) on a page without text:
    text extraction never decodes it, the OCR of that page lists the page's images."""
    image = stream_with(lzw_zeros(mib), b"/Type /XObject /Subtype /Image /Width 4096 /Height 4096 "
                                        b"/ColorSpace /DeviceGray /BitsPerComponent 8 /Filter /LZWDecode")
    return two_page_pdf(stream(b"q 612 0 0 792 0 0 cm /Im1 Do Q"),
                        resources=b"<< /XObject << /Im1 8 0 R >> >>", extra={8: image})


def inline_without_ei_pdf() -> bytes:
    """CVE-2022-24859 (GHSA-xcjx-m2pj-8g79, PyPDF2 1.27.5): an inline image whose data never ends
    with EI; the reader searched for it forever."""
    return inline_image_pdf(b"BI /W 4 /H 4 /CS /G /BPC 8 ID " + bytes(range(16)) + b" Q")


def inline_dct_eof_pdf() -> bytes:
    """CVE-2025-62707 (GHSA-vr63-x8vc-m265, pypdf 6.1.3): a DCT (JPEG) inline image that ends inside
    its marker segments, before any end-of-image marker; reading it looped at the end of the stream."""
    jpeg = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00\xff\xdb\x00\x43\x00" + b"\x01" * 20
    return inline_image_pdf(b"BI /W 8 /H 8 /CS /G /BPC 8 /F /DCT ID " + jpeg)


def inline_hex_eof_pdf() -> bytes:
    """pypdf #3892 (6.14.2): an ASCIIHex inline image with no '>' whose content stream ends in a lone
    digit after a space; the reader stepped back onto that digit forever."""
    return inline_image_pdf(b"BI /W 4 /H 2 /CS /G /BPC 8 /F /AHx ID 00112233 4455667 7")


def inline_a85_eof_pdf() -> bytes:
    """pypdf #3892 (6.14.2): the same for an ASCII85 inline image with no '~>'."""
    return inline_image_pdf(b"BI /W 4 /H 2 /CS /G /BPC 8 /F /A85 ID 9jqo^BlbD-BleB1DJ+*+F(f,q u")


def comment_at_end_pdf() -> bytes:
    """CVE-2023-36464 (GHSA-4vvm-4w3v-6mr8, pypdf 3.9.0): a content stream whose last byte is the '%'
    of a comment; skipping the comment waited for a line end that never came."""
    data = HELLO % b"Commented" + b" %"
    return two_page_pdf(b"<< /Length %d >>\nstream\n" % len(data) + data + b"endstream")


def _catalog_objects(text: bytes) -> dict[int, bytes]:
    return {1: b"<< /Type /Catalog /Pages 2 0 R >>", 2: b"<< /Type /Pages /Kids [4 0 R] /Count 1 >>", 3: FONT,
            4: PAGE % (5, b""), 5: stream(HELLO % text)}


def _objects_bytes(objects: dict[int, bytes]) -> tuple[bytearray, dict[int, int]]:
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = {}
    for num in sorted(objects):
        offsets[num] = len(out)
        out += b"%d 0 obj\n" % num + objects[num] + b"\nendobj\n"
    return out, offsets


def xref_prev_loop_pdf() -> bytes:
    """CVE-2026-27628 (GHSA-2rw7-x74f-jg35, pypdf 6.7.2): two cross-reference sections whose trailers'
    /Prev name each other; following the chain of updates never ended."""
    out, offsets = _objects_bytes(_catalog_objects(b"Prev loop"))

    def section(prev: int) -> bytes:
        rows = b"".join(b"%010d 00000 n \n" % offsets[n] for n in range(1, 6))
        return (b"xref\n0 6\n0000000000 65535 f \n" + rows
                + b"trailer\n<< /Size 6 /Root 1 0 R /Prev %010d >>\n" % prev)

    first = len(out)
    second = first + len(section(0))
    out += section(second) + section(first) + b"startxref\n%d\n%%%%EOF\n" % second
    return bytes(out)


def missing_root_pdf(size: int = 50_000_000) -> bytes:
    """CVE-2026-22690 (GHSA-4xc4-762w-m6cg, pypdf 6.6.0): a trailer without /Root but with a huge /Size;
    looking for a catalog, pypdf tried every object number up to it."""
    objects = _catalog_objects(b"Rootless")
    del objects[1]
    out, offsets = _objects_bytes(objects)
    xref = len(out)
    out += b"xref\n0 1\n0000000000 65535 f \ntrailer\n<< /Size %d >>\nstartxref\n%d\n%%%%EOF\n" % (size, xref)
    return bytes(out)


def startxref_whitespace_pdf(mib: int = 2) -> bytes:
    """CVE-2026-22691 (GHSA-4f6g-68pf-7vhv, pypdf 6.6.0): a wrong startxref in a file that is mostly
    whitespace; rebuilding the cross-reference table scanned it with a backtracking expression."""
    return b"%PDF-1.4\n" + b" " * (mib << 20) + b"\nstartxref   9\n % " + b" " * 4096


def multi_hop_cyclic_pdf() -> bytes:
    """pypdf #3847 (6.13.2: a /Pages cycle over more than one node could crash the interpreter):
    /Pages A has kids [B, page]; B has kids [A]."""
    return build_pdf({
        1: b"<< /Type /Catalog /Pages 2 0 R >>",
        2: b"<< /Type /Pages /Kids [6 0 R 4 0 R] /Count 2 >>",
        3: FONT,
        4: PAGE % (5, b""),
        5: stream(HELLO % b"Two hops"),
        6: b"<< /Type /Pages /Parent 2 0 R /Kids [2 0 R] /Count 1 >>",
    })


@dataclass(frozen=True)
class Advisory:
    """A sample and what extraction makes of it with pypdf 7.1 (all samples need pypdf >= 6.16.1)."""

    name: str  # file name
    build: Callable[[], bytes]
    # "corrupt": refused as such; "": the last page loses its text (an intact first page keeps
    # its own); anything else: text found on the last page
    outcome: str
    seconds: float = 5.0  # bound on the CPU time of extracting it (most take well under 1 s)


PDF_ADVISORIES = [
    Advisory("flate-bomb.pdf", flate_bomb_pdf, ""),
    Advisory("lzw-bomb.pdf", lzw_bomb_pdf, ""),
    Advisory("runlength-bomb.pdf", runlength_bomb_pdf, ""),
    Advisory("asciihex.pdf", asciihex_pdf, "Hex survived"),
    Advisory("flate-predictor.pdf", flate_predictor_pdf, ""),
    Advisory("flate-recovery.pdf", flate_recovery_pdf, "", seconds=10.0),
    Advisory("array-contents.pdf", array_contents_pdf, ""),
    Advisory("xform-dag.pdf", xform_dag_pdf, ".", seconds=10.0),  # pypdf stops after 5000 form invocations
    Advisory("tounicode-range.pdf", tounicode_range_pdf, ""),
    Advisory("cid-widths.pdf", cid_widths_pdf, ""),
    Advisory("inline-without-ei.pdf", inline_without_ei_pdf, ""),
    Advisory("inline-dct-eof.pdf", inline_dct_eof_pdf, ""),
    Advisory("inline-hex-eof.pdf", inline_hex_eof_pdf, ""),
    Advisory("inline-a85-eof.pdf", inline_a85_eof_pdf, ""),
    Advisory("comment-at-end.pdf", comment_at_end_pdf, "Commented"),
    Advisory("xref-prev-loop.pdf", xref_prev_loop_pdf, "Prev loop"),
    Advisory("missing-root.pdf", missing_root_pdf, "corrupt"),
    Advisory("startxref-whitespace.pdf", startxref_whitespace_pdf, "corrupt"),
    Advisory("multi-hop-cycle.pdf", multi_hop_cyclic_pdf, "corrupt"),
    Advisory("lzw-image.pdf", lzw_image_pdf, ""),
]


# ---------------------------------------------------------------------------- ZIP / DOCX


def _dos_time() -> tuple[int, int]:
    return 0, (1980 - 1980) << 9 | 1 << 5 | 1


def raw_zip(members: list[tuple[str, bytes, int, int, int]]) -> bytes:
    """A ZIP from (name, stored bytes, method, crc, declared uncompressed size) — sizes may lie."""
    mtime, mdate = _dos_time()
    out = bytearray()
    central = bytearray()
    for name, payload, method, crc, declared in members:
        fname = name.encode()
        offset = len(out)
        out += struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, method, mtime, mdate, crc, len(payload),
                           declared, len(fname), 0) + fname + payload
        central += struct.pack("<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 20, 20, 0, method, mtime, mdate, crc,
                               len(payload), declared, len(fname), 0, 0, 0, 0, 0, offset) + fname
    out += central + struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, len(members), len(members), len(central),
                                 len(out), 0)
    return bytes(out)


def deflated(data: bytes) -> bytes:
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()


def member(name: str, data: bytes) -> tuple[str, bytes, int, int, int]:
    return name, deflated(data), 8, zlib.crc32(data), len(data)


def zeros_member(name: str, mib: int) -> tuple[str, bytes, int, int, int]:
    """A real deflate stream of ``mib`` MiB of zeros (~1 KB per MiB), built without holding them."""
    chunk = bytes(1 << 20)
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    piece = c.compress(chunk) + c.flush(zlib.Z_FULL_FLUSH)  # byte-aligned, fresh state: repeatable
    payload = piece * mib + zlib.compressobj(9, zlib.DEFLATED, -15).flush()
    crc = 0
    for _ in range(mib):
        crc = zlib.crc32(chunk, crc)
    return name, payload, 8, crc, mib << 20


def docx_members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {info.filename: zf.read(info.filename) for info in zf.infolist()}


def simple_docx(text: str = "Hello from a generated document") -> bytes:
    import docx

    document = docx.Document()
    document.add_paragraph(text)
    buf = io.BytesIO()
    document.save(buf)
    return buf.getvalue()


def docx_with(replace: dict[str, bytes], extra: list[tuple[str, bytes, int, int, int]] = (),
              drop: tuple[str, ...] = ()) -> bytes:
    """A valid python-docx document with some parts replaced/added (as raw ZIP members)."""
    parts = docx_members(simple_docx())
    parts.update(replace)
    members = [member(name, body) for name, body in parts.items() if name not in drop]
    return raw_zip(members + list(extra))


def document_xml(text: bytes, *, prolog: bytes = b"", dtd: bytes = b"") -> bytes:
    return (b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n' + prolog + dtd
            + b'<w:document xmlns:w="' + W_NS.encode() + b'"><w:body><w:p><w:r><w:t>' + text
            + b"</w:t></w:r></w:p></w:body></w:document>")


BILLION_LAUGHS_DTD = (b'<!DOCTYPE w:document [<!ENTITY lol0 "lol">'
                      + b"".join(b'<!ENTITY lol%d "%s">' % (i, b"&lol%d;" % (i - 1) * 10) for i in range(1, 10))
                      + b"]>")
XXE_DTD = b'<!DOCTYPE w:document [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'


def billion_laughs_docx(prolog: bytes = b"") -> bytes:
    return docx_with({"word/document.xml": document_xml(b"&lol9;", prolog=prolog, dtd=BILLION_LAUGHS_DTD)})


def xxe_docx(prolog: bytes = b"", *, encoding: str = "utf-8") -> bytes:
    xml = document_xml(b"before &xxe; after", prolog=prolog, dtd=XXE_DTD)
    if encoding != "utf-8":
        xml = xml.replace(b'encoding="UTF-8"', b'encoding="%s"' % encoding.upper().encode()).decode().encode(encoding)
    core = docx_members(simple_docx())["docProps/core.xml"]
    return docx_with({"word/document.xml": xml, "docProps/core.xml": core})


def xxe_core_docx() -> bytes:
    """The entity in docProps/core.xml (the title) rather than in the body."""
    core = (b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n' + XXE_DTD.replace(b"w:document", b"cp:coreProperties")
            + b'<cp:coreProperties xmlns:cp="http://schemas.openxmlformats.org/package/2006/metadata/core-properties"'
            b' xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:title>&xxe;</dc:title></cp:coreProperties>')
    return docx_with({"docProps/core.xml": core})


def zip_bomb_docx(mib: int = 200) -> bytes:
    """word/document.xml is ``mib`` MiB of zeros, deflated ~1000x (honestly declared)."""
    return docx_with({}, extra=[zeros_member("word/document.xml", mib)], drop=("word/document.xml",))


def declared_huge_docx() -> bytes:
    """A media member whose header declares 3 GB for a few KB of data."""
    name, payload, method, crc, _ = member("word/media/huge.bin", b"\0" * 4096)
    return docx_with({}, extra=[(name, payload, method, crc, 3_000_000_000)])


def lying_small_docx(mib: int = 200) -> bytes:
    """word/document.xml declares 600 bytes but its deflate stream inflates to ``mib`` MiB."""
    name, payload, method, crc, _ = zeros_member("word/document.xml", mib)
    return docx_with({}, extra=[(name, payload, method, crc, 600)], drop=("word/document.xml",))


# ---------------------------------------------------------------------------- service


def poll_text(svc, content_hash: str, *, deadline: float = 60.0, json_format: bool = True,
              until=None) -> requests.Response:
    """GET /cache/{hash}/text until it is no longer 202 (and ``until(resp)`` holds, if given)."""
    url = f"{svc.url}/cache/{content_hash}/text" + ("?format=json" if json_format else "")
    end = time.monotonic() + deadline
    while True:
        resp = requests.get(url, timeout=10)
        if resp.status_code != 202 and (until is None or until(resp)):
            return resp
        if time.monotonic() > end:
            raise AssertionError(f"text of {content_hash} still {resp.status_code} after {deadline} s: "
                                 f"{resp.text[:500]}\n{svc.log()[-3000:]}")
        time.sleep(0.1)


def typeset_pdf() -> bytes:
    """One page as a typesetter leaves it: "fi"/"fl" ligatures (StandardEncoding 0xAE/0xAF,
    which pypdf reads as U+FB01/U+FB02) and words hyphenated at line ends."""
    objs = {1: b"<< /Type /Catalog /Pages 2 0 R >>", 2: b"<< /Type /Pages /Kids [4 0 R] /Count 1 >>", 3: FONT,
            4: PAGE % (5, b""),
            5: stream(b"BT /F1 12 Tf 14 TL 72 720 Td (Here's to the crazy ones, the mis\xaets and \xafoors, the infor-) Tj"
                      b" T* (mation about Jean-) Tj T* (Paul here.) Tj ET")}
    return build_pdf(objs)
