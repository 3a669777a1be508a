"""DOCX extraction (python-docx) on the corpus and on generated documents."""
from __future__ import annotations

import docx
import pytest

from falconproc.config import Settings
from falconproc.text.docx import extract_docx
from falconproc.text.extraction import ExtractionError, extract
from tests.support.content import DOCX_TYPE
from tests.support.corpus import DOCS

S = Settings()


def _lines(r) -> list[str]:
    return [line for line in r.pages[0]["text"].split("\n") if line.strip()]


def test_known_paragraphs():
    r = extract_docx(DOCS / "par-known-paragraphs.docx", S)
    assert (r.source, r.page_count, len(r.pages)) == ("docx", 1, 1)
    assert r.pages[0]["text"] == "Heading Paragraph\nNormal paragraph"
    assert r.properties["author"] == "Steve Canny"
    assert r.properties["created"] == "2014-12-26T06:19:00+00:00"
    assert r.extra == {"headers": [], "footers": []}


def test_core_properties():
    r = extract_docx(DOCS / "doc-coreprops.docx", S)
    assert r.properties == {
        "title": "Title", "author": "Steve Canny", "subject": "Subject", "keywords": "key; word; keyword",
        "lastModifiedBy": "Steve Canny", "created": "2014-12-13T22:02:00+00:00",
        "modified": "2014-12-13T22:06:00+00:00",
    }
    assert r.pages[0]["text"].strip() == ""


def test_empty_two_by_two_table():
    r = extract_docx(DOCS / "tbl-2x2-table.docx", S)
    assert r.pages[0]["text"].strip() == ""
    assert not r.truncated


def test_paragraphs_and_nested_tables_in_document_order():
    # Body: [empty 2x2 table] "Lorem ipsum..." [table: "Text before" [table: "Table" / "Between"]
    # "Text after"] "Donec semper..." [empty table] "" — nested table cells row by row.
    r = extract_docx(DOCS / "blk-paras-and-tables.docx", S)
    assert _lines(r) == ["Lorem ipsum dolor sit amet, consectetur adipiscing elit.", "Text before", "Table",
                         "Between", "Text after", "Donec semper facilisis metus finibus malesuada."]
    assert r.extra["headers"] == ["Left-side\tRight-side"]
    assert r.extra["footers"] == ["Copyright\tPage-number"]
    assert r.properties["author"] == "Steve Canny"


def _save(document, path):
    document.save(str(path))
    return path


def test_generated_document_header_footer_and_table_between_paragraphs(tmp_path):
    d = docx.Document()
    d.core_properties.title = "Quarterly report"
    d.core_properties.subject = "Finance"
    d.core_properties.keywords = "q3, revenue"
    d.core_properties.author = "Ada"
    section = d.sections[0]
    section.header.paragraphs[0].text = "ACME confidential header"
    section.footer.paragraphs[0].text = "Page footer text"
    d.add_heading("Introduction", level=1)
    d.add_paragraph("First paragraph before the table.")
    table = d.add_table(rows=2, cols=3)
    for r, row in enumerate([["Name", "Qty", "Price"], ["Widget", "4", "9.99"]]):
        for c, value in enumerate(row):
            table.cell(r, c).text = value
    d.add_paragraph("Second paragraph after the table.")
    r = extract_docx(_save(d, tmp_path / "gen.docx"), S)
    assert _lines(r) == ["Introduction", "First paragraph before the table.", "Name\tQty\tPrice",
                         "Widget\t4\t9.99", "Second paragraph after the table."]
    assert r.extra["headers"] == ["ACME confidential header"]
    assert r.extra["footers"] == ["Page footer text"]
    assert r.properties["title"] == "Quarterly report"
    assert r.properties["subject"] == "Finance"
    assert r.properties["keywords"] == "q3, revenue"
    assert r.properties["author"] == "Ada"
    # Headers and footers are reported apart, not mixed into the body.
    assert "ACME" not in r.pages[0]["text"] and "footer" not in r.pages[0]["text"]


def test_horizontally_merged_cell_appears_once(tmp_path):
    d = docx.Document()
    table = d.add_table(rows=2, cols=3)
    merged = table.cell(0, 0).merge(table.cell(0, 1))
    merged.text = "Spans two columns"
    table.cell(0, 2).text = "Right"
    for c, v in enumerate(["a", "b", "c"]):
        table.cell(1, c).text = v
    r = extract_docx(_save(d, tmp_path / "merged.docx"), S)
    assert _lines(r) == ["Spans two columns\tRight", "a\tb\tc"]


def test_adjacent_cells_with_equal_text_are_all_kept(tmp_path):
    # Distinct cells that happen to hold the same text are not a merged cell: a "Yes | Yes | No"
    # row must not come out as "Yes | No" (empty cells side by side collapse the same way).
    d = docx.Document()
    table = d.add_table(rows=2, cols=3)
    for r, row in enumerate([["Feature", "Yes", "Yes"], ["", "", "No"]]):
        for c, value in enumerate(row):
            table.cell(r, c).text = value
    r = extract_docx(_save(d, tmp_path / "equal-cells.docx"), S)
    rows = [line for line in r.pages[0]["text"].split("\n") if line]
    assert rows == ["Feature\tYes\tYes", "\t\tNo"]


def test_first_page_header_is_extracted(tmp_path):
    d = docx.Document()
    section = d.sections[0]
    section.different_first_page_header_footer = True
    section.first_page_header.paragraphs[0].text = "Cover page header"
    section.first_page_footer.paragraphs[0].text = "Cover page footer"
    section.header.paragraphs[0].text = "Running header"
    d.add_paragraph("Body")
    r = extract_docx(_save(d, tmp_path / "first-page.docx"), S)
    assert "Running header" in r.extra["headers"]
    assert "Cover page header" in r.extra["headers"]
    assert "Cover page footer" in r.extra["footers"]


def test_text_is_cut_at_text_max_chars(tmp_path):
    d = docx.Document()
    for i in range(100):
        d.add_paragraph(f"Paragraph {i:03d} " + "x" * 40)
    r = extract_docx(_save(d, tmp_path / "long.docx"), S.replace(text_max_chars=1000))
    assert r.truncated and len(r.pages[0]["text"]) == 1000
    assert r.pages[0]["text"].startswith("Paragraph 000 ")


def test_not_a_zip_is_corrupt(tmp_path):
    path = tmp_path / "fake.docx"
    path.write_bytes(b"this is not a zip file at all")
    with pytest.raises(ExtractionError) as info:
        extract_docx(path, S)
    assert info.value.code == "corrupt"


def test_zip_without_document_part_is_corrupt(tmp_path):
    import zipfile

    path = tmp_path / "empty.docx"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("[Content_Types].xml", "<Types/>")
    with pytest.raises(ExtractionError) as info:
        extract_docx(path, S)
    assert info.value.code == "corrupt"


def test_dispatch_by_mime_type():
    assert extract(DOCS / "par-known-paragraphs.docx", DOCX_TYPE, S).source == "docx"
