"""Document generators and helpers for the text/OCR tests.

Everything hostile is built here, in memory, from raw bytes: PDFs object by object,
ZIPs header by header (so declared sizes can lie and a 200 MB member of zeros costs
200 KB and a fraction of a second), DOCX files with python-docx.
"""
from __future__ import annotations

import io
import re
import struct
import time
import zipfile
import zlib
from collections import Counter
from pathlib import Path

import requests

DATA = Path(__file__).resolve().parent.parent / "data"
DOCS = DATA / "docs"
OCR_PNG = DATA / "ocr" / "outline-p2-200dpi.png"
OCR_TRUTH = DATA / "ocr" / "outline-p2.truth.txt"
DOCX_TYPE = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
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
