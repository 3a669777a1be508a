"""Black-box: document thumbnails over HTTP. Page 1 of corpus PDFs (pdfium), a corpus DOCX,
an ODT and a PPTX made here (real LibreOffice), hostile PDFs (encrypted, truncated, a
giant MediaBox), and LibreOffice missing (404 not_available)."""
from __future__ import annotations

import io
import zipfile
from datetime import datetime

import blurhash
import numpy as np
import psutil
import pytest
import requests
from PIL import Image
from pypdf import PdfReader, PdfWriter
from pypdf.generic import RectangleObject

from tests.support.corpus import DOCS
from tests.support.http import assert_error, cache_metadata, health, upload, wait_job
from tests.support.service import run_cli
from tests.text import _docs

ODT = "application/vnd.oasis.opendocument.text"
PPTX = "application/vnd.openxmlformats-officedocument.presentationml.presentation"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"


# -- helpers -----------------------------------------------------------------------------


def _upload(svc, data: bytes, name: str) -> dict:
    resp = upload(svc, data, name=name)
    assert resp.status_code in (200, 201), resp.text
    return resp.json()


def _document_job(svc, body: dict, timeout: float = 90.0) -> dict:
    jobs = [j for j in body["jobs"] if j["type"] == "document"]
    assert len(jobs) == 1, body["jobs"]
    return wait_job(svc, jobs[0]["id"], timeout=timeout)


def _get(svc, content_hash: str, preset: str, **headers: str) -> requests.Response:
    return requests.get(f"{svc.url}/cache/{content_hash}/{preset}", headers=headers, timeout=60)


def _image(resp: requests.Response) -> Image.Image:
    assert resp.status_code == 200, (resp.status_code, resp.text[:300])
    im = Image.open(io.BytesIO(resp.content))
    im.load()
    return im


def _page_aspect(data: bytes) -> float:
    """Page 1's width / height as pypdf reads it (not the renderer under test), /Rotate applied."""
    page = PdfReader(io.BytesIO(data)).pages[0]
    box = page.cropbox
    width, height = float(box.width), float(box.height)
    return height / width if page.rotation % 180 else width / height


def _variance(im: Image.Image) -> float:
    return float(np.asarray(im.convert("L"), dtype=np.float64).var())


def _linear_mean(pixels) -> np.ndarray:
    """The mean colour in linear light (0..1), from sRGB 0..255 pixels."""
    c = np.asarray(pixels, dtype=np.float64).reshape(-1, 3) / 255
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4).mean(axis=0)


def _not_blank(im: Image.Image) -> None:
    """Ink on the paper: a blank (all-white) render has variance 0 and no grey pixel; the
    corpus pages' text covers 0.5-5% of the page at these sizes."""
    inked = float((np.asarray(im.convert("L")) < 230).mean())
    assert _variance(im) > 5 and inked > 0.002, (_variance(im), inked)


def _odt(text: str) -> bytes:
    """A minimal OpenDocument text: the stored `mimetype` entry first, a manifest, one paragraph."""
    content = ('<?xml version="1.0" encoding="UTF-8"?><office:document-content '
               'xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
               'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" office:version="1.2">'
               f'<office:body><office:text><text:h>{text}</text:h>'
               + "".join(f"<text:p>{text} line {i}.</text:p>" for i in range(40))
               + '</office:text></office:body></office:document-content>')
    manifest = ('<?xml version="1.0" encoding="UTF-8"?><manifest:manifest '
                'xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0" manifest:version="1.2">'
                f'<manifest:file-entry manifest:full-path="/" manifest:media-type="{ODT}"/>'
                '<manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml"/>'
                '</manifest:manifest>')
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr(zipfile.ZipInfo("mimetype"), ODT, compress_type=zipfile.ZIP_STORED)
        zf.writestr("META-INF/manifest.xml", manifest, compress_type=zipfile.ZIP_DEFLATED)
        zf.writestr("content.xml", content, compress_type=zipfile.ZIP_DEFLATED)
    return buffer.getvalue()


def _pptx(title: str) -> bytes:
    from pptx import Presentation
    from pptx.dml.color import RGBColor
    from pptx.util import Inches

    deck = Presentation()  # 10 x 7.5 inches: 4:3
    slide = deck.slides.add_slide(deck.slide_layouts[0])
    slide.shapes.title.text = title
    slide.placeholders[1].text = "a subtitle under the title"
    box = slide.shapes.add_shape(1, Inches(0.5), Inches(5.5), Inches(4), Inches(1.5))  # a filled rectangle
    box.fill.solid()
    box.fill.fore_color.rgb = RGBColor(0x20, 0x60, 0xC0)
    buffer = io.BytesIO()
    deck.save(buffer)
    return buffer.getvalue()


def _pdf_with_page(width: float, height: float) -> bytes:
    """hello-world.pdf's page with its MediaBox (and so CropBox) set to width x height points."""
    writer = PdfWriter()
    writer.add_page(PdfReader(DOCS / "hello-world.pdf").pages[0])
    writer.pages[0].mediabox = RectangleObject([0, 0, width, height])
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def _check_presets(svc, content_hash: str, aspect: float) -> tuple[Image.Image, Image.Image]:
    """thumbnail (200x200 box, WebP) and preview (800 wide, JPEG) with the page's aspect ratio."""
    thumb = _image(_get(svc, content_hash, "thumbnail", Accept="*/*"))
    preview = _image(_get(svc, content_hash, "preview", Accept="*/*"))
    assert thumb.format == "WEBP" and preview.format == "JPEG"
    assert max(thumb.size) == 200 and thumb.width <= 200 and thumb.height <= 200, thumb.size
    assert preview.width == 800 or preview.height < 800 * aspect, preview.size
    for im in (thumb, preview):
        # rounding to whole pixels: one pixel off at most on the short side
        assert abs(im.width / im.height - aspect) <= 1.5 / min(im.size) * max(aspect, 1), (im.size, aspect)
    return thumb, preview


@pytest.fixture(scope="module")
def docs_service(module_service):
    return module_service


# -- PDFs ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["hello-world.pdf", "pdflatex-outline.pdf", "attachment.pdf",
                                  "imagemagick-images.pdf"])
def test_a_pdf_gets_a_page_one_thumbnail_and_preview(docs_service, name):
    data = (DOCS / name).read_bytes()
    body = _upload(docs_service, data, name)
    assert _document_job(docs_service, body)["status"] == "done"
    content_hash = body["contentHash"]
    thumb, preview = _check_presets(docs_service, content_hash, _page_aspect(data))
    _not_blank(preview)  # a page with text on it, not a grey or white box
    _not_blank(thumb)
    meta = cache_metadata(docs_service, content_hash)
    assert meta["pageImage"]["status"] == "done" and meta["pageImage"]["renderer"] == "pdfium"
    assert set(meta["presets"]) == {"thumbnail", "preview"}
    code = meta["image"]["blurhash"]
    assert isinstance(code, str) and len(code) == 28
    # the placeholder's average colour is the thumbnail's (BlurHash averages in linear light)
    expected = _linear_mean(np.asarray(thumb.convert("RGB")))
    decoded = _linear_mean(np.asarray(blurhash.decode(code, 32, 32)))
    assert np.abs(decoded - expected).max() < 0.05, (decoded, expected)
    assert "exif" not in meta  # a page image has no EXIF of its own


def test_document_presets_negotiate_formats_like_photos(docs_service):
    data = (DOCS / "pdflatex-outline.pdf").read_bytes()
    body = _upload(docs_service, data, "outline.pdf")
    if body["isNew"]:
        _document_job(docs_service, body)
    resp = _get(docs_service, body["contentHash"], "thumbnail", Accept="image/avif,image/webp,*/*")
    assert resp.headers["Content-Type"] == "image/avif" and resp.headers["Vary"] == "Accept"
    avif = _image(resp)
    webp = _image(_get(docs_service, body["contentHash"], "thumbnail", Accept="*/*"))
    assert avif.size == webp.size
    assert _image(_get(docs_service, body["contentHash"], "preview", Accept="image/webp")).format == "WEBP"
    variants = cache_metadata(docs_service, body["contentHash"])["variants"]
    assert "avif" in variants["thumbnail"] and "webp" in variants["preview"]


def test_a_document_has_only_the_thumbnail_and_preview_presets(docs_service):
    body = _upload(docs_service, (DOCS / "hello-world.pdf").read_bytes(), "hello.pdf")
    if body["isNew"]:
        _document_job(docs_service, body)
    error = assert_error(_get(docs_service, body["contentHash"], "ai-chat"), 415, "not_an_image")
    assert "thumbnail" in error["message"]


def test_a_giant_mediabox_is_rendered_at_the_presets_size(docs_service):
    data = _pdf_with_page(200_000, 300_000)  # 70 x 105 km of nominal page
    body = _upload(docs_service, data, "giant.pdf")
    assert _document_job(docs_service, body, timeout=30)["status"] == "done"
    page = cache_metadata(docs_service, body["contentHash"])["pageImage"]
    assert (page["width"], page["height"]) == (800, 1200)  # the preview's width, not the page's
    _check_presets(docs_service, body["contentHash"], 200_000 / 300_000)


def test_an_extreme_page_shape_stays_within_the_pixel_limit(docs_service):
    data = _pdf_with_page(100, 200_000)  # a 1:2000 strip: 800 px wide would be 1.6 gigapixels
    body = _upload(docs_service, data, "strip.pdf")
    assert _document_job(docs_service, body, timeout=30)["status"] == "done"
    page = cache_metadata(docs_service, body["contentHash"])["pageImage"]
    assert page["width"] * page["height"] <= 4_000_000 and page["height"] <= 30_000, page
    thumb = _image(_get(docs_service, body["contentHash"], "thumbnail"))
    assert thumb.height == 200 and thumb.width <= 1


def _encrypted_pdf() -> bytes:
    writer = PdfWriter(clone_from=DOCS / "hello-world.pdf")
    writer.encrypt(user_password="secret", owner_password="owner", algorithm="AES-256")
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


@pytest.mark.parametrize("name, make, reason", [
    ("encrypted.pdf", _encrypted_pdf, "encrypted"),
    ("truncated.pdf", lambda: (DOCS / "pdflatex-outline.pdf").read_bytes()[:20_000], "corrupt"),
])
def test_an_unrenderable_pdf_ends_in_a_clear_error(docs_service, name, make, reason):
    body = _upload(docs_service, make(), name)
    job = _document_job(docs_service, body, timeout=30)
    assert job["status"] == "dead" and reason in job["lastError"], job
    for preset in ("thumbnail", "preview"):
        error = assert_error(_get(docs_service, body["contentHash"], preset), 422, "document_unrenderable")
        assert error["reason"] == reason, error
    state = cache_metadata(docs_service, body["contentHash"])["pageImage"]
    assert state["status"] == "failed" and state["reason"] == reason
    assert health(docs_service)["status"] == "ok"


# -- office documents through LibreOffice ---------------------------------------------------


def test_a_docx_gets_a_thumbnail_through_libreoffice(docs_service):
    body = _upload(docs_service, (DOCS / "par-known-paragraphs.docx").read_bytes(), "paragraphs.docx")
    assert body["mimeType"] == DOCX
    assert _document_job(docs_service, body)["status"] == "done"
    page = cache_metadata(docs_service, body["contentHash"])["pageImage"]
    assert page["renderer"] == "libreoffice+pdfium" and page["conversionSeconds"] > 0
    thumb, preview = _check_presets(docs_service, body["contentHash"], page["width"] / page["height"])
    assert 0.6 < preview.width / preview.height < 0.8  # a portrait Letter/A4 page
    _not_blank(preview)


def test_an_odt_is_sniffed_and_gets_a_thumbnail(docs_service):
    body = _upload(docs_service, _odt("An OpenDocument heading"), "notes.odt")
    assert body["mimeType"] == ODT
    assert _document_job(docs_service, body)["status"] == "done"
    thumb, preview = _check_presets(docs_service, body["contentHash"], _aspect_of(docs_service, body))
    assert 0.6 < preview.width / preview.height < 0.8
    _not_blank(preview)


def test_a_pptx_gets_a_landscape_thumbnail_of_its_first_slide(docs_service):
    body = _upload(docs_service, _pptx("Quarterly numbers"), "deck.pptx")
    assert body["mimeType"] == PPTX
    assert _document_job(docs_service, body)["status"] == "done"
    thumb, preview = _check_presets(docs_service, body["contentHash"], 4 / 3)
    assert (thumb.size, preview.size) == ((200, 150), (800, 600))
    # the blue rectangle of the slide is there, bottom left
    r, g, b = preview.convert("RGB").getpixel((200, 520))
    assert b > 150 and r < 100, (r, g, b)


def _aspect_of(svc, body: dict) -> float:
    page = cache_metadata(svc, body["contentHash"])["pageImage"]
    return page["width"] / page["height"]


@pytest.mark.parametrize("name, make", [
    ("zip-bomb.docx", lambda: _docs.zip_bomb_docx(200)),
    ("xxe.docx", _docs.xxe_docx),
    ("billion-laughs.docx", _docs.billion_laughs_docx),
])
def test_a_hostile_office_file_is_refused_before_libreoffice(docs_service, name, make):
    body = _upload(docs_service, make(), name)
    job = _document_job(docs_service, body, timeout=30)
    assert job["status"] == "dead" and job["lastError"].startswith("refused"), job
    error = assert_error(_get(docs_service, body["contentHash"], "thumbnail"), 422, "document_unrenderable")
    assert error["reason"] == "refused" and "conversionSeconds" not in cache_metadata(
        docs_service, body["contentHash"])["pageImage"]
    assert "root:x:0:0" not in docs_service.log()


def _conversions_running() -> list[str]:
    """LibreOffice processes of the service's conversions anywhere on the machine (an orphaned
    soffice.bin leaves the service's tree): their command line names the temporary profile."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        if any("falconproc-soffice-" in part for part in proc.info["cmdline"] or ()):
            found.append(" ".join(proc.info["cmdline"]))
    return found


def _long_docx(paragraphs: int) -> bytes:
    """A corpus DOCX whose body is ``paragraphs`` paragraphs (written as XML: python-docx's
    add_paragraph is quadratic)."""
    with zipfile.ZipFile(DOCS / "par-known-paragraphs.docx") as source:
        parts = {info: source.read(info) for info in source.infolist()}
    body = "".join(f"<w:p><w:r><w:t>Paragraph {i} of a long report, with enough words to wrap over the "
                   "line once.</w:t></w:r></w:p>" for i in range(paragraphs))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as out:
        for info, data in parts.items():
            if info.filename == "word/document.xml":
                head, _, rest = data.decode("utf-8").partition("<w:body>")
                data = (head + "<w:body>" + body + rest[rest.index("<w:sectPr"):]).encode("utf-8")
            out.writestr(info.filename, data)
    return buffer.getvalue()


def test_concurrent_conversions_each_get_their_own_profile(fresh_service):
    # Three at once: the memory governor must admit three soffice estimates (~550 MB each).
    svc = fresh_service(JOB_CONCURRENCY="document=3", MEMORY_LIMIT_BYTES="4G")
    bodies = [_upload(svc, data, name) for data, name in (
        ((DOCS / "blk-paras-and-tables.docx").read_bytes(), "tables.docx"),
        (_odt("Converted beside two others"), "beside.odt"),
        (_pptx("Three at once"), "three.pptx"))]
    spans = []
    for body in bodies:
        assert _document_job(svc, body, timeout=120)["status"] == "done", body["originalName"]
        page = cache_metadata(svc, body["contentHash"])["pageImage"]
        assert page["renderer"] == "libreoffice+pdfium"
        _not_blank(_image(_get(svc, body["contentHash"], "preview")))
        end = datetime.fromisoformat(page["processedAt"].replace("Z", "+00:00")).timestamp()
        spans.append((end - page["seconds"], end))
    # the conversions did run at the same time (each with its own profile directory)
    assert max(start for start, _ in spans) < min(end for _, end in spans), spans
    assert not _conversions_running()


def test_a_conversion_past_its_timeout_is_killed_with_its_tree(fresh_service):
    # 30,000 paragraphs take LibreOffice well over 10 s of CPU to lay out: at 3 s soffice.bin
    # is running (a child of oosplash, which the `soffice` script became) and far from done.
    svc = fresh_service(LIBREOFFICE_TIMEOUT="3")
    body = _upload(svc, _long_docx(30_000), "long.docx")
    job = _document_job(svc, body, timeout=60)
    assert job["status"] == "dead" and job["lastError"].startswith("timed_out"), job
    error = assert_error(_get(svc, body["contentHash"], "thumbnail"), 422, "document_unrenderable")
    assert error["reason"] == "timed_out"
    assert not _conversions_running()  # oosplash and soffice.bin, not only the process started
    pdf = _upload(svc, (DOCS / "hello-world.pdf").read_bytes(), "after.pdf")
    assert _document_job(svc, pdf)["status"] == "done"
    assert health(svc)["status"] == "ok"


# -- without LibreOffice ----------------------------------------------------------------------


def test_without_libreoffice_office_thumbnails_are_not_available(fresh_service):
    svc = fresh_service(LIBREOFFICE_PATH="/nonexistent/soffice")
    doctor = run_cli(svc, "doctor")
    assert doctor.returncode == 0, doctor.stderr
    assert '"libreoffice": null' in doctor.stdout and "LibreOffice (/nonexistent/soffice) is not installed" in doctor.stdout
    body = _upload(svc, (DOCS / "tbl-2x2-table.docx").read_bytes(), "table.docx")
    assert _document_job(svc, body)["status"] == "done"  # nothing to do but record it
    for preset in ("thumbnail", "preview"):
        error = assert_error(_get(svc, body["contentHash"], preset), 404, "not_available")
        assert "LibreOffice" in error["message"]
    assert cache_metadata(svc, body["contentHash"])["pageImage"]["status"] == "not_available"
    # PDFs need no LibreOffice
    pdf = _upload(svc, (DOCS / "hello-world.pdf").read_bytes(), "hello.pdf")
    assert _document_job(svc, pdf)["status"] == "done"
    assert _image(_get(svc, pdf["contentHash"], "thumbnail")).format == "WEBP"


def test_a_thumbnail_asked_for_before_its_job_ran_is_pending(fresh_service):
    svc = fresh_service(RUN_SUPERVISOR="0", LIBREOFFICE_PATH="/nonexistent/soffice")
    body = _upload(svc, (DOCS / "two-different-pages.pdf").read_bytes(), "two.pdf")
    resp = _get(svc, body["contentHash"], "thumbnail")
    assert resp.status_code == 202, resp.text
    assert resp.headers["Retry-After"] == "2"
    assert resp.json()["status"] == "pending" and resp.json()["job"]["type"] == "document"
    # with no supervisor, an office document without LibreOffice is known unavailable at once
    docx = _upload(svc, (DOCS / "tbl-2x2-table.docx").read_bytes(), "table.docx")
    assert_error(_get(svc, docx["contentHash"], "thumbnail"), 404, "not_available")
