"""Black-box: documents and images through the real service, GET /cache/{hash}/text."""
from __future__ import annotations

import codecs
import io
import json
import uuid
import zipfile
from pathlib import Path

import pytest
import requests
from PIL import Image

from falconproc.config import Settings
from falconproc.text.docx import extract_docx
from falconproc.text.language import guess_language
from falconproc.text.pdf import extract_pdf
from tests.support.content import DOCX_TYPE, sha256
from tests.support.corpus import DOCS, OCR_PNG, OCR_TRUTH
from tests.support.http import upload
from tests.text._docs import image_pdf, poll_text, repeated_pdf, slow_pdf, typeset_pdf, word_recall

PDFS = ["hello-world.pdf", "pdflatex-outline.pdf", "two-different-pages.pdf", "attachment.pdf",
        "imagemagick-images.pdf"]
DOCXS = ["par-known-paragraphs.docx", "doc-coreprops.docx", "tbl-2x2-table.docx", "blk-paras-and-tables.docx"]
TRUTH = OCR_TRUTH.read_text("utf-8")


def _upload(svc, data: bytes, name: str, mime: str | None = None) -> str:
    resp = upload(svc, data, name=name)
    assert resp.status_code in (200, 201), resp.text
    body = resp.json()
    if mime is not None:
        assert body["mimeType"] == mime, body
    assert body["contentHash"] == sha256(data)
    return body["contentHash"]


def _plain(svc, content_hash: str) -> requests.Response:
    resp = requests.get(f"{svc.url}/cache/{content_hash}/text", timeout=10)
    assert resp.status_code == 200, resp.text
    assert resp.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert int(resp.headers["Content-Length"]) == len(resp.content)
    return resp


def _error(resp: requests.Response, status: int, code: str) -> dict:
    assert resp.status_code == status, (resp.status_code, resp.text[:500])
    body = resp.json()
    assert body["error"] == code and body["message"], body
    return body


@pytest.mark.parametrize("name", PDFS)
def test_corpus_pdf_text(service, name):
    data = (DOCS / name).read_bytes()
    h = _upload(service, data, name, "application/pdf")
    doc = poll_text(service, h).json()
    expected = extract_pdf(DOCS / name, Settings())
    assert doc["source"] in ("pdf", "pdf+ocr")
    assert doc["pageCount"] == expected.page_count
    assert [p["page"] for p in doc["pages"]] == list(range(1, expected.page_count + 1))
    assert [p["text"] for p in doc["pages"]] == [p["text"] for p in expected.pages]
    assert doc["state"]["status"] == "done" and doc["state"]["chars"] == len(expected.text)
    assert doc["properties"].get("producer") == expected.properties.get("producer")
    assert _plain(service, h).content.decode("utf-8") == expected.text


def test_pdflatex_outline_content(service):
    h = _upload(service, (DOCS / "pdflatex-outline.pdf").read_bytes(), "outline.pdf")
    doc = poll_text(service, h).json()
    assert doc["pages"][1]["text"].startswith("1 Foo\nHello, here is some text without a meaning.")
    assert doc["properties"]["creator"] == "LaTeX with hyperref"
    text = _plain(service, h).text
    assert text.startswith("Contents\n") and "Huardest gefburn" in text
    # Stored in CACHE_PATH/{hash}/: text.txt, text.json, and the state in metadata.json.
    entry = Path(service.env["CACHE_PATH"]) / h
    assert (entry / "text.txt").read_text("utf-8") == text
    stored = json.loads((entry / "text.json").read_text("utf-8"))
    assert stored["pages"] == doc["pages"] and stored["source"] == "pdf"
    state = json.loads((entry / "metadata.json").read_text("utf-8"))["text"]
    assert state == doc["state"]
    # (beside them, whatever the PDF's `document` job made by now: page-1.png and the thumbnail/preview)
    names = {p.name for p in entry.iterdir() if not p.name.startswith(".")}
    assert names - {"page-1.png", "thumbnail.webp", "preview.jpg"} == {"metadata.json", "text.json", "text.txt"}
    # GET /cache/{hash}/metadata carries the same text state.
    meta = requests.get(f"{service.url}/cache/{h}/metadata", timeout=10).json()
    assert meta["text"] == state and meta["mimeType"] == "application/pdf"


@pytest.mark.parametrize("name", DOCXS)
def test_corpus_docx_text(service, name):
    data = (DOCS / name).read_bytes()
    h = _upload(service, data, name, DOCX_TYPE)
    doc = poll_text(service, h).json()
    expected = extract_docx(DOCS / name, Settings())
    assert doc["source"] == "docx" and doc["pageCount"] == 1
    assert doc["pages"] == [{"page": 1, "text": expected.pages[0]["text"],
                             "language": guess_language(expected.pages[0]["text"])}]
    assert doc["properties"] == expected.properties
    assert doc["headers"] == expected.extra["headers"] and doc["footers"] == expected.extra["footers"]
    assert _plain(service, h).content.decode("utf-8") == expected.text


def test_docx_properties_and_order_served(service):
    h = _upload(service, (DOCS / "doc-coreprops.docx").read_bytes(), "props.docx")
    props = poll_text(service, h).json()["properties"]
    assert (props["title"], props["subject"], props["keywords"]) == ("Title", "Subject", "key; word; keyword")
    h = _upload(service, (DOCS / "blk-paras-and-tables.docx").read_bytes(), "blocks.docx")
    doc = poll_text(service, h).json()
    lines = [line for line in doc["pages"][0]["text"].split("\n") if line.strip()]
    assert lines[:3] == ["Lorem ipsum dolor sit amet, consectetur adipiscing elit.", "Text before", "Table"]
    assert doc["headers"] == ["Left-side\tRight-side"]


def test_large_pdf_through_the_parallel_path(service, tmp_path):
    # 60 pages >= PDF_PARALLEL_PAGES (24 by default): the text job splits the pages across a pool
    # inside its job process. The served text must be the single-process text, page for page.
    data = repeated_pdf(DOCS / "pdflatex-outline.pdf", 15)
    path = tmp_path / "sixty.pdf"
    path.write_bytes(data)
    h = _upload(service, data, "sixty.pdf", "application/pdf")
    resp = poll_text(service, h, deadline=60)
    assert resp.status_code == 200, resp.text[:500]
    doc = resp.json()
    expected = extract_pdf(path, Settings().replace(pdf_parallel_pages=10_000))
    assert doc["pageCount"] == 60
    assert [p["text"] for p in doc["pages"]] == [p["text"] for p in expected.pages]


def test_encrypted_pdf_is_422_encrypted(service):
    h = _upload(service, (DOCS / "libreoffice-writer-password.pdf").read_bytes(), "locked.pdf")
    body = _error(poll_text(service, h), 422, "encrypted")
    assert body["state"]["status"] == "failed"
    _error(requests.get(f"{service.url}/cache/{h}/text", timeout=10), 422, "encrypted")


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16"])
def test_plain_text_upload(service, encoding):
    text = f"Plain text {uuid.uuid4().hex}\nGrüße aus Köln — 你好\n"
    h = _upload(service, text.encode(encoding), "notes.txt", "text/plain")
    doc = poll_text(service, h).json()
    assert doc["source"] == "text" and doc["pages"] == [{"page": 1, "text": text, "language": None}]
    assert doc["encoding"] == {"utf-8-sig": "utf-8"}.get(encoding, encoding)
    assert _plain(service, h).content.decode("utf-8") == text


def test_markdown_csv_json_uploads(service):
    tag = uuid.uuid4().hex
    for body, mime in ((f"# Title {tag}\n\nSome *markdown*.\n", "text/markdown"),
                       (f"a,b,c\n1,2,{tag}\n3,4,5\n", "text/csv"),
                       (f'{{"tag": "{tag}", "n": 1}}', "application/json")):
        h = _upload(service, body.encode(), "file", mime)
        doc = poll_text(service, h).json()
        assert doc["source"] == "text" and doc["pages"][0]["text"] == body


def test_legacy_single_byte_text_upload(service):
    # The spec: plain text in a legacy single-byte encoding is detected and normalised to UTF-8.
    data = f"caf\xe9 cr\xe8me br\xfbl\xe9e {uuid.uuid4().hex}\n".encode("cp1252")
    resp = upload(service, data, name="legacy.txt")
    assert resp.status_code == 201, resp.text
    doc = poll_text(service, resp.json()["contentHash"]).json()
    assert doc["pages"][0]["text"].startswith("café crème brûlée ")


def test_pending_text_is_202_with_its_job(service):
    h = _upload(service, slow_pdf(3, 20000 + uuid.uuid4().int % 1000), "slow.pdf")  # ~3 s of pypdf
    resp = requests.get(f"{service.url}/cache/{h}/text", timeout=10)
    assert resp.status_code == 202, resp.text
    body = resp.json()
    assert body["status"] == "pending" and body["job"]["type"] == "text" and body["job"]["contentHash"] == h
    assert resp.headers["Cache-Control"] == "no-cache"
    assert int(resp.headers["Retry-After"]) > 0
    assert poll_text(service, h).status_code == 200


# -- OCR --------------------------------------------------------------------------


def test_ocr_png(service):
    h = _upload(service, OCR_PNG.read_bytes(), "scan.png", "image/png")
    resp = poll_text(service, h, deadline=120)
    doc = resp.json()
    assert doc["source"] == "ocr" and doc["pageCount"] == 1 and len(doc["pages"]) == 1
    recall = word_recall(doc["pages"][0]["text"], TRUTH)
    assert recall >= 0.9, recall
    state = doc["state"]
    assert state["status"] == "done" and state["source"] == "ocr"
    assert isinstance(state["confidence"], float) and 60 <= state["confidence"] <= 100
    assert state["words"] >= 0.9 * len(TRUTH.split())
    assert word_recall(_plain(service, h).text, TRUTH) >= 0.9


def _rotated_with_exif_orientation() -> bytes:
    """The OCR page stored sideways with EXIF Orientation=6: viewers (and our presets) show it upright."""
    with Image.open(OCR_PNG) as im:
        sideways = im.convert("L").transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    sideways.save(buf, format="PNG", exif=exif)
    return buf.getvalue()


def test_ocr_honours_exif_orientation(service):
    h = _upload(service, _rotated_with_exif_orientation(), "phone-scan.png", "image/png")
    doc = poll_text(service, h, deadline=120).json()
    assert word_recall(doc["pages"][0]["text"], TRUTH) >= 0.9


def test_ocr_straightens_a_skewed_photo_of_a_page(service):
    with Image.open(OCR_PNG) as im:
        turned = im.convert("L").rotate(-7.5, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=255)
    buf = io.BytesIO()
    turned.save(buf, format="JPEG", quality=90)
    h = _upload(service, buf.getvalue(), "photo.jpg", "image/jpeg")
    doc = poll_text(service, h, deadline=120).json()
    assert word_recall(doc["pages"][0]["text"], TRUTH) >= 0.9


def test_image_only_pdf_page_is_ocrd(service):
    data = image_pdf(OCR_PNG, with_text_page=True)
    h = _upload(service, data, "scanned.pdf", "application/pdf")
    doc = poll_text(service, h, deadline=120,
                    until=lambda r: r.json().get("state", {}).get("ocr", {}).get("status") != "pending").json()
    assert doc["source"] == "pdf+ocr", doc["state"]
    assert doc["pages"][0]["text"].strip() == "Page one has a text layer"
    assert doc["pages"][1].get("source") == "ocr"
    assert word_recall(doc["pages"][1]["text"], TRUTH) >= 0.9
    ocr = doc["state"]["ocr"]
    assert ocr["status"] == "done" and ocr["pages"] == [2] and ocr["confidence"] > 60
    assert word_recall(_plain(service, h).text, TRUTH) >= 0.9


def test_imagemagick_image_pages_have_nothing_to_ocr(service):
    # Its six embedded images are 16x16 pixels: nothing to read, below the OCR size floor. Pages 4
    # and 5 (image only) are sent to OCR and stay empty; the document stays "pdf".
    h = _upload(service, (DOCS / "imagemagick-images.pdf").read_bytes(), "im.pdf")
    doc = poll_text(service, h, deadline=60,
                    until=lambda r: r.json().get("state", {}).get("ocr", {}).get("status") != "pending").json()
    assert doc["source"] == "pdf"
    assert doc["state"]["ocr"] == {"status": "done", "pages": [4, 5], "confidence": None}
    assert [p["text"] for p in doc["pages"][3:5]] == ["", ""]


# -- no text ------------------------------------------------------------------------


def test_zip_has_no_text(service):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("readme.txt", f"not a document {uuid.uuid4().hex}")
    h = _upload(service, buf.getvalue(), "archive.zip", "application/zip")
    _error(requests.get(f"{service.url}/cache/{h}/text", timeout=10), 404, "no_text")


def test_svg_has_no_text(service):
    svg = (f'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><text>{uuid.uuid4().hex}</text>'
           "</svg>").encode()
    h = _upload(service, svg, "drawing.svg", "image/svg+xml")
    _error(requests.get(f"{service.url}/cache/{h}/text?format=json", timeout=10), 404, "no_text")


def test_unknown_and_invalid_hashes(service):
    _error(requests.get(f"{service.url}/cache/{'0' * 64}/text", timeout=10), 404, "not_found")
    _error(requests.get(f"{service.url}/cache/not-a-hash/text", timeout=10), 400, "invalid_hash")


def test_utf16_text_has_no_nul_in_output(service):
    text = f"wide {uuid.uuid4().hex}\n"
    h = _upload(service, codecs.BOM_UTF16_LE + text.encode("utf-16-le"), "wide.txt")
    assert b"\x00" not in poll_text(service, h, json_format=False).content


def test_pdf_ligatures_and_line_end_hyphens_come_out_clean(service):
    """A search for "misfits" finds the typeset "mis\ufb01ts"; "infor-/mation" reads "information"."""
    h = _upload(service, typeset_pdf(), "typeset.pdf", "application/pdf")
    doc = poll_text(service, h).json()
    assert "misfits and floors" in doc["pages"][0]["text"]
    text = _plain(service, h).text
    assert "misfits" in text and "information about" in text and "\ufb01" not in text


def test_document_properties_in_metadata(service):
    """Title, author, dates and page count in metadata.document, not only in the text JSON."""
    h = _upload(service, (DOCS / "pdflatex-outline.pdf").read_bytes(), "outline.pdf", "application/pdf")
    poll_text(service, h)
    meta = requests.get(f"{service.url}/cache/{h}/metadata", timeout=10).json()
    assert meta["document"] == {"created": "2022-04-06T20:15:41+02:00", "modified": "2022-04-06T20:15:41+02:00",
                                "pageCount": 4}
    h = _upload(service, (DOCS / "doc-coreprops.docx").read_bytes(), "props.docx", DOCX_TYPE)
    doc = poll_text(service, h).json()
    meta = requests.get(f"{service.url}/cache/{h}/metadata", timeout=10).json()
    props = doc["properties"]
    assert meta["document"] == {k: props[k] for k in ("title", "author", "subject", "created", "modified")
                                if k in props}
    assert meta["document"]["title"] and "pageCount" not in meta["document"]
