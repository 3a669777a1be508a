"""PDF extraction (pypdf) on the corpus, called directly with Settings()."""
from __future__ import annotations

import multiprocessing
import time

import pytest
from pypdf import PdfWriter

from falconproc.config import Settings
from falconproc.text import pdf as text_mod
from falconproc.text.extraction import ExtractionError, extract
from falconproc.text.pdf import extract_pdf
from tests.support.corpus import DOCS
from tests.text import _docs
from tests.text._docs import repeated_pdf, text_pdf

S = Settings()


def _pdf(name: str):
    return extract_pdf(DOCS / name, S)


def test_hello_world_one_page_in_every_script():
    r = _pdf("hello-world.pdf")
    assert (r.source, r.page_count, [p["page"] for p in r.pages]) == ("pdf", 1, [1])
    text = r.pages[0]["text"]
    for needle in ("Hello World", "مرحبا بالعالم", "Привет, мир", "你好世界", "สวัสดีชาวโลก", "こんにちは世界"):
        assert needle in text
    # Reading order: the languages come in the document's order.
    assert text.index("English") < text.index("Arabic") < text.index("Russian") < text.index("Japanese")
    assert r.properties == {"creator": "Writer", "producer": "LibreOffice 6.4", "created": "2022-06-06T14:39:33+02:00"}
    assert not r.truncated and r.pages_without_text == []


def test_pdflatex_outline_four_pages_in_order():
    r = _pdf("pdflatex-outline.pdf")
    assert r.page_count == 4 and [p["page"] for p in r.pages] == [1, 2, 3, 4]
    assert r.pages[0]["text"].startswith("Contents\n1 Foo 2")
    assert r.pages[1]["text"].startswith("1 Foo\nHello, here is some text without a meaning.")
    assert "Huardest gefburn" in r.pages[1]["text"]
    assert all(len(p["text"]) > 100 for p in r.pages[1:])
    assert r.properties["creator"] == "LaTeX with hyperref"
    assert r.properties["producer"] == "pdfTeX-1.40.23"
    assert r.properties["created"] == "2022-04-06T20:15:41+02:00"
    assert r.properties["modified"] == "2022-04-06T20:15:41+02:00"
    assert r.text == "\n\n".join(p["text"] for p in r.pages)
    assert r.pages_without_text == []


def test_two_different_pages():
    r = _pdf("two-different-pages.pdf")
    assert r.page_count == 2
    assert r.pages[0]["text"].strip() == "1" and r.pages[1]["text"].strip() == "2"
    assert r.properties["title"] == "Untitled document"
    assert r.properties["producer"].startswith("Skia/PDF")


def test_attachment_pdf_text_and_dates():
    r = _pdf("attachment.pdf")
    assert r.page_count == 1
    assert r.pages[0]["text"].startswith("The Crazy Ones\nOctober 14, 1998")
    assert "The round pegs in the square holes." in r.pages[0]["text"]
    assert r.properties["created"] == "2015-06-04T13:34:06-06:00"
    assert r.properties["producer"] == "xdvipdfmx (20140317)"


def test_image_only_pages_are_listed_for_ocr():
    # imagemagick-images.pdf: 6 pages, each one 16x16 embedded image; pages 1-3 and 6 also carry the
    # word "Background" as text, pages 4 and 5 carry no text layer at all.
    r = _pdf("imagemagick-images.pdf")
    assert r.page_count == 6
    assert [p["text"].strip() for p in r.pages] == ["Background"] * 3 + ["", ""] + ["Background"]
    assert r.pages_without_text == [4, 5]
    assert r.properties["producer"] == "https://imagemagick.org"


def test_properties_carry_no_nul_bytes():
    # The info dictionary's /Title is "imagemagick-images\0": NULs are removed from pages, but not
    # from properties, which then reach the JSON as "\u0000".
    r = _pdf("imagemagick-images.pdf")
    assert r.properties["title"] == "imagemagick-images"


def test_encrypted_with_a_user_password_is_a_clear_error():
    with pytest.raises(ExtractionError) as info:
        _pdf("libreoffice-writer-password.pdf")
    assert info.value.code == "encrypted"


def test_encrypted_with_an_empty_user_password_is_opened(tmp_path):
    writer = PdfWriter(clone_from=str(DOCS / "hello-world.pdf"))
    writer.encrypt(user_password="", owner_password="owner-secret", algorithm="AES-128")
    path = tmp_path / "owner-only.pdf"
    with open(path, "wb") as fh:
        writer.write(fh)
    r = extract_pdf(path, S)
    assert "Hello World" in r.pages[0]["text"]


def test_page_limit_marks_truncated():
    r = extract_pdf(DOCS / "pdflatex-outline.pdf", S.replace(pdf_max_pages=2))
    assert r.page_count == 4 and [p["page"] for p in r.pages] == [1, 2] and r.truncated


def test_text_is_cut_at_text_max_chars():
    full = _pdf("pdflatex-outline.pdf")
    r = extract_pdf(DOCS / "pdflatex-outline.pdf", S.replace(text_max_chars=1000))
    assert r.truncated and sum(len(p["text"]) for p in r.pages) == 1000
    # The kept text is the document's prefix, page by page.
    kept = "".join(p["text"] for p in r.pages)
    assert "".join(p["text"] for p in full.pages).startswith(kept)
    assert not full.truncated


def test_dispatch_by_mime_type():
    assert extract(DOCS / "hello-world.pdf", "application/pdf", S).source == "pdf"
    with pytest.raises(ExtractionError) as info:
        extract(DOCS / "hello-world.pdf", "image/png", S)
    assert info.value.code == "unsupported"


def test_corrupt_bytes_are_a_clear_error(tmp_path):
    path = tmp_path / "junk.pdf"
    path.write_bytes(b"%PDF-1.7\n" + b"\x00garbage" * 100)
    with pytest.raises(ExtractionError) as info:
        extract_pdf(path, S)
    assert info.value.code == "corrupt"


# -- the parallel path ------------------------------------------------------------


@pytest.fixture(scope="module")
def sixty_pages(tmp_path_factory):
    path = tmp_path_factory.mktemp("pdf") / "outline-x15.pdf"
    path.write_bytes(repeated_pdf(DOCS / "pdflatex-outline.pdf", 15))
    return path


def test_parallel_pages_equal_single_process(sixty_pages, monkeypatch):
    contexts = []
    real = multiprocessing.get_context

    def spy(method=None):
        contexts.append(method)
        return real(method)

    single = extract_pdf(sixty_pages, S.replace(pdf_parallel_pages=10_000))
    assert contexts == []
    monkeypatch.setattr(text_mod.multiprocessing, "get_context", spy)
    parallel = extract_pdf(sixty_pages, S.replace(pdf_parallel_pages=4, text_processes=2))
    assert contexts == ["fork"], "PDF_PARALLEL_PAGES=4 should split 60 pages across a pool"
    assert parallel.page_count == single.page_count == 60
    assert [p["page"] for p in parallel.pages] == list(range(1, 61))
    assert parallel.pages == single.pages
    assert parallel.text == single.text
    assert parallel.properties == single.properties
    # Every page is the corresponding page of the 4-page original, in order.
    original = _pdf("pdflatex-outline.pdf")
    assert [p["text"] for p in parallel.pages] == [p["text"] for p in original.pages] * 15


def test_parallel_path_with_more_processes_than_pages_worth(tmp_path):
    # 5 pages, threshold 4, 4 processes requested: the split must still cover every page once.
    path = tmp_path / "five.pdf"
    path.write_bytes(text_pdf([f"Page number {i}" for i in range(1, 6)]))
    r = extract_pdf(path, S.replace(pdf_parallel_pages=4, text_processes=4))
    assert [p["text"].strip() for p in r.pages] == [f"Page number {i}" for i in range(1, 6)]


def test_parallel_path_respects_page_limit(sixty_pages):
    r = extract_pdf(sixty_pages, S.replace(pdf_parallel_pages=4, text_processes=2, pdf_max_pages=30))
    assert r.page_count == 60 and len(r.pages) == 30 and r.truncated


def test_generated_pdf_round_trip(tmp_path):
    path = tmp_path / "generated.pdf"
    path.write_bytes(text_pdf(["Alpha page", "Beta page", "Gamma page"]))
    r = extract_pdf(path, S)
    assert [x["text"].strip() for x in r.pages] == ["Alpha page", "Beta page", "Gamma page"]


def _plain_pypdf_texts(name: str) -> list[str]:
    from pypdf import PdfReader

    return [page.extract_text() for page in PdfReader(DOCS / name).pages]


@pytest.mark.parametrize("name", ["pdflatex-outline.pdf", "hello-world.pdf", "two-different-pages.pdf",
                                  "attachment.pdf"])
def test_shared_fonts_give_pypdfs_own_text(name):
    # The per-document font cache must change speed only, never the text (cleaned alike).
    from falconproc.text.clean import clean_text

    assert [p["text"] for p in _pdf(name).pages] == [clean_text(t.replace("\x00", ""), join_hyphens=True)
                                                      for t in _plain_pypdf_texts(name)]


def test_shared_fonts_parse_each_font_once_per_document(monkeypatch):
    from pypdf import PdfReader
    from pypdf.generic._font import Font

    calls = []
    original = Font.__dict__["from_font_resource"].__func__

    def counting(cls, pdf_font_dict):
        calls.append(id(pdf_font_dict))
        return original(cls, pdf_font_dict)

    monkeypatch.setattr(Font, "from_font_resource", classmethod(counting))
    reader = PdfReader(DOCS / "pdflatex-outline.pdf")
    uncached = [page.extract_text() for page in reader.pages]
    per_page, calls[:] = len(calls), []
    assert text_mod._texts_of(PdfReader(DOCS / "pdflatex-outline.pdf"), range(4)) == uncached
    # Four pages sharing their fonts: pypdf alone builds each font on every page using it.
    assert 0 < len(calls) == len(set(calls)) < per_page, (len(calls), per_page)
    # And the patch is withdrawn afterwards.
    assert Font.__dict__["from_font_resource"].__func__ is counting


def test_a_slow_pdf_keeps_the_pages_read_within_the_time_budget(tmp_path):
    # ~0.05 s of pypdf per page here, 200 pages: far over a 1.5 s budget, while even a
    # loaded machine reads a page or more within it.
    path = tmp_path / "slow.pdf"
    path.write_bytes(_docs.slow_pdf(200, 1000))
    settings = Settings(pdf_time_budget=1.5, pdf_parallel_pages=10_000)
    started = time.monotonic()
    result = extract_pdf(path, settings)
    assert time.monotonic() - started < 5
    assert result.page_count == 200 and result.truncated
    assert 1 <= len(result.pages) < 200
    assert [p["page"] for p in result.pages] == list(range(1, len(result.pages) + 1))
    assert all("ab" in p["text"] for p in result.pages)


def test_the_budget_stops_a_page_midway_and_holds_across_the_page_pool(tmp_path):
    # One page that alone takes pypdf ~10 s: the alarm stops it inside extract_text.
    path = tmp_path / "one-slow-page.pdf"
    path.write_bytes(_docs.slow_pdf(1, 200_000))
    started = time.monotonic()
    result = extract_pdf(path, Settings(pdf_time_budget=1.0))
    assert time.monotonic() - started < 4
    assert result.pages == [] and result.truncated and result.page_count == 1
    # Split across pool processes, each stops at the same deadline; pages come back in order.
    path = tmp_path / "slow-pool.pdf"
    path.write_bytes(_docs.slow_pdf(200, 1000))
    started = time.monotonic()
    result = extract_pdf(path, Settings(pdf_time_budget=1.5, pdf_parallel_pages=2, text_processes=2))
    assert time.monotonic() - started < 6
    assert result.truncated and 1 <= len(result.pages) < 200
    assert [p["page"] for p in result.pages] == list(range(1, len(result.pages) + 1))


def test_the_budget_never_outlasts_the_text_jobs_timeout(tmp_path):
    path = tmp_path / "slow.pdf"
    path.write_bytes(_docs.slow_pdf(40, 5000))
    started = time.monotonic()
    result = extract_pdf(path, Settings(pdf_time_budget=3600, job_timeouts={"text": 2.0}))
    assert time.monotonic() - started < 5  # 3/4 of the 2 s timeout
    assert result.truncated and len(result.pages) < 40
    # 0 turns the budget off: every page is read.
    small = tmp_path / "small.pdf"
    small.write_bytes(_docs.slow_pdf(3, 2000))
    assert len(extract_pdf(small, Settings(pdf_time_budget=0, job_timeouts={"text": 0.5})).pages) == 3


# The swallowed alarm is reported as an unraisable exception: that is the case under test.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_the_budget_holds_when_an_alarm_lands_in_a_gc_callback(tmp_path):
    """An exception raised inside a gc callback is swallowed by the interpreter (CI hit it
    with hypothesis' callback installed): the alarm repeats until the page stops."""
    import gc

    path = tmp_path / "one-slow-page.pdf"
    path.write_bytes(_docs.slow_pdf(1, 200_000))

    def slow_callback(phase, info):  # widen the window in which a signal lands in here
        if phase == "start":
            time.sleep(0.002)

    threshold = gc.get_threshold()
    gc.callbacks.append(slow_callback)
    gc.set_threshold(50)
    try:
        started = time.monotonic()
        result = extract_pdf(path, Settings(pdf_time_budget=1.0))
        assert time.monotonic() - started < 8  # the page alone takes ~10 s; room for a loaded machine
    finally:
        gc.callbacks.remove(slow_callback)
        gc.set_threshold(*threshold)
    assert result.pages == [] and result.truncated
