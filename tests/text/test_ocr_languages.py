"""OCR_LANGUAGES: the start-up check, the language guess, each page read with its model,
and `language` per page and for the document in the text JSON (unit and black-box)."""
from __future__ import annotations

import io

import pytest

from falconproc.config import Settings, SettingsError
from falconproc.text.language import guess_language, language_for_script, main_language, share_in_script
from falconproc.text.ocr import check_languages, detect_script, run_tesseract
from tests.support.content import sha256
from tests.support.http import upload
from tests.text._docs import poll_text, word_recall
from tests.text._german import GERMAN, german_page
from tests.text._scripts import ENGLISH as ENGLISH_PAGE, RUSSIAN, text_page

ENGLISH = "The quick brown fox jumps over the lazy dog, and it was the best of times for all of us."


@pytest.mark.parametrize(("text", "language"), [
    (ENGLISH, "eng"), (GERMAN, "deu"),
    ("Le petit prince est dans le jardin avec une rose et il ne sait pas pourquoi.", "fra"),
    ("El perro y el gato están en la casa con los niños para la fiesta.", "spa"),
    ("short", None), ("12345 67890 11 22 33 44", None),
    ("Plain text f195e77336434d08a7017b8261285d5b e0a9 Grüße aus Köln", None),  # letters of a code
    ("Anna Berlin Paris London Tokyo Rome Madrid Lisbon and Oslo", None),  # one hit among names
])
def test_guess_language(text, language):
    assert guess_language(text) == language


def test_guess_only_among_candidates():
    assert guess_language(GERMAN, ["eng", "fra"]) in ("eng", "fra", None)
    assert guess_language(GERMAN, ["eng", "deu"]) == "deu"


def test_main_language_by_characters():
    pages = [{"text": "x" * 10, "language": "eng"}, {"text": "y" * 100, "language": "deu"}, {"text": "z"}]
    assert main_language(pages) == "deu"
    assert main_language([{"text": ""}]) is None


def test_start_up_check_names_missing_traineddata():
    check_languages(Settings(ocr_languages=("eng", "deu", "fra")))  # installed by bootstrap
    with pytest.raises(SettingsError, match="xyz"):
        check_languages(Settings(ocr_languages=("eng", "xyz")))


def test_german_page_read_with_german_model():
    settings = Settings(ocr_languages=("eng", "deu", "fra"))
    result = run_tesseract(german_page(), settings)
    assert result.language == "deu"
    assert "Verpflichtung aller staatlichen Gewalt" in result.text
    assert word_recall(result.text, GERMAN) >= 0.9
    english = run_tesseract(german_page(), Settings(ocr_languages=("eng",)))
    assert english.language == "eng"
    assert word_recall(result.text, GERMAN) >= word_recall(english.text, GERMAN)


def test_service_reports_languages(fresh_service):
    svc = fresh_service(OCR_LANGUAGES="eng,deu")
    buf = io.BytesIO()
    german_page().save(buf, "PNG")
    data = buf.getvalue()
    resp = upload(svc, data, name="seite.png")
    assert resp.status_code == 201 and resp.json()["contentHash"] == sha256(data)
    doc = poll_text(svc, sha256(data)).json()
    assert doc["language"] == "deu" and doc["pages"][0]["language"] == "deu"
    assert word_recall(doc["pages"][0]["text"], GERMAN) >= 0.9


def test_script_helpers():
    assert language_for_script("Cyrillic", ["eng", "deu", "rus"]) == "rus"
    assert language_for_script("Cyrillic", ["eng", "deu"]) is None
    assert language_for_script("Latin", ["eng", "rus"]) is None  # the stop words decide among Latin ones
    assert language_for_script(None, ["rus"]) is None
    assert share_in_script(RUSSIAN, "Cyrillic") > 0.99
    assert share_in_script("Bce nlogu pox gaioTca", "Cyrillic") == 0.0  # Cyrillic read with eng
    assert share_in_script("12 34 !", "Greek") == 0.0


def _png(im) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


@pytest.mark.parametrize("languages", [("eng", "rus"), ("rus", "eng"), ("eng", "deu", "rus")])
def test_osd_picks_the_model_of_a_non_latin_page(languages):
    settings = Settings(ocr_languages=languages)
    assert detect_script(text_page(RUSSIAN), settings) == "Cyrillic"
    russian = run_tesseract(text_page(RUSSIAN), settings)
    assert (russian.language, russian.script) == ("rus", "Cyrillic")
    assert word_recall(russian.text, RUSSIAN) >= 0.9
    english = run_tesseract(text_page(ENGLISH_PAGE), settings)
    assert english.language == "eng"
    assert word_recall(english.text, ENGLISH_PAGE) >= 0.9
    # Without rus allowed the Cyrillic page is read with eng, and badly: what OSD buys.
    latin_only = run_tesseract(text_page(RUSSIAN), Settings(ocr_languages=("eng",)))
    assert latin_only.language == "eng" and word_recall(latin_only.text, RUSSIAN) < 0.2


def test_service_reads_a_cyrillic_page_with_the_russian_model(fresh_service):
    svc = fresh_service(OCR_LANGUAGES="eng,rus")
    pages = {"rus": (_png(text_page(RUSSIAN)), RUSSIAN), "eng": (_png(text_page(ENGLISH_PAGE)), ENGLISH_PAGE)}
    for name, (data, _) in pages.items():
        resp = upload(svc, data, name=f"{name}.png")
        assert resp.status_code == 201 and resp.json()["contentHash"] == sha256(data)
    for name, (data, truth) in pages.items():
        doc = poll_text(svc, sha256(data)).json()
        assert doc["language"] == name and doc["pages"][0]["language"] == name, doc
        assert word_recall(doc["pages"][0]["text"], truth) >= 0.9
