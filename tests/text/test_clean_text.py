"""Clean text: ligatures expanded, soft hyphens removed, line-end hyphens joined in laid-out
text (PDF, OCR), everything else left as it is; called directly and through the extractors."""
from __future__ import annotations

import io

import pytest
from PIL import Image, ImageDraw, ImageFont

from falconproc.config import Settings
from falconproc.text.clean import clean_text
from falconproc.text.docx import extract_docx
from falconproc.text.ocr import run_tesseract
from falconproc.text.pdf import extract_pdf
from tests.text._docs import simple_docx, typeset_pdf


@pytest.mark.parametrize(("raw", "clean"), [
    ("mis\ufb01ts", "misfits"), ("\ufb00 \ufb02 \ufb03 \ufb04 \ufb05 \ufb06", "ff fl ffi ffl st st"),
    ("co\u00adop\u00aderation", "cooperation"),
])
def test_presentation_forms_and_soft_hyphens_everywhere(raw, clean):
    assert clean_text(raw) == clean
    assert clean_text(raw, join_hyphens=True) == clean


@pytest.mark.parametrize(("raw", "clean"), [
    ("the infor-\nmation is", "the information is"),
    ("the infor- \r\n  mation", "the information"),
    ("con-\ntin-\nued", "continued"),
    ("a soft\u00ad\nbreak", "a softbreak"),
    ("gr\u00fc\u00df-\nen \u00e9t\u00e9-\nait", "gr\u00fc\u00dfen \u00e9t\u00e9ait"),  # lower case in any script
    ("Jean-\nPaul", "Jean-\nPaul"),  # a capital half: a real hyphen
    ("e-\nMail", "e-\nMail"),
    ("2019-\n2020", "2019-\n2020"),  # not letters
    ("a list -\nitem", "a list -\nitem"),  # a dash, not a split word
    ("well-known", "well-known"),  # not at a line end
])
def test_line_end_hyphens_joined_only_between_lower_case_halves(raw, clean):
    assert clean_text(raw, join_hyphens=True) == clean


def test_author_text_keeps_its_hyphens():
    assert clean_text("the infor-\nmation") == "the infor-\nmation"


@pytest.mark.parametrize("text", ["x\u00b2 + H\u2082O", "\uff26\uff55\uff4c\uff4c width", "\u2460 caf\u00e9 \u212b",
                                  "e\u0301", "plain ascii", ""])
def test_nothing_else_changes(text):
    """No NFKC: superscripts, subscripts, full-width letters, circled digits, decomposed accents stay."""
    assert clean_text(text, join_hyphens=True) == text


def test_pdf_text_is_clean(tmp_path):
    path = tmp_path / "typeset.pdf"
    path.write_bytes(typeset_pdf())
    text = extract_pdf(path, Settings()).pages[0]["text"]
    assert "misfits and floors" in text and "\ufb01" not in text
    assert "the information about Jean-\nPaul here." in text


def test_docx_text_is_clean(tmp_path):
    path = tmp_path / "typeset.docx"
    path.write_bytes(simple_docx("The mis\ufb01ts' co\u00adop\u00aderation, x\u00b2, infor-\nmation"))
    text = extract_docx(path, Settings()).pages[0]["text"]
    # python-docx turns the line break into a newline; an author's hyphen in a DOCX is kept
    assert text == "The misfits' cooperation, x\u00b2, infor-\nmation"


def test_ocr_text_is_clean():
    font = ImageFont.load_default(size=40)
    im = Image.new("L", (900, 260), 255)
    draw = ImageDraw.Draw(im)
    for y, line in ((30, "The quick infor-"), (100, "mation was read by"), (170, "Jean-Paul today")):
        draw.text((30, y), line, font=font, fill=0)
    buf = io.BytesIO()
    im.save(buf, "PNG")
    text = run_tesseract(Image.open(buf), Settings()).text
    assert "information was read by" in text and "Jean-Paul" in text
