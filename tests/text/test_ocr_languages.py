"""OCR_LANGUAGES: the start-up check, the language guess, each page read with its model,
and `language` per page and for the document in the text JSON (unit and black-box)."""
from __future__ import annotations

import io

import pytest

from falconproc.config import Settings, SettingsError
from falconproc.text.language import guess_language, main_language
from falconproc.text.ocr import check_languages, run_tesseract
from tests.support.content import sha256
from tests.support.http import upload
from tests.text._docs import poll_text, word_recall
from tests.text._german import GERMAN, german_page

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
