"""Plain text, Markdown, CSV, JSON: encodings, NULs, truncation."""
from __future__ import annotations

import codecs

import pytest

from falconproc.config import Settings
from falconproc.text.extraction import extract
from falconproc.text.plain import decode_text, extract_plain

S = Settings()
SAMPLE = "Grüße, café, naïve — 你好 ✓\nsecond line\n"


def _plain(tmp_path, data: bytes, settings: Settings = S):
    path = tmp_path / "t.txt"
    path.write_bytes(data)
    return extract_plain(path, settings)


@pytest.mark.parametrize("data, encoding", [
    (SAMPLE.encode("utf-8"), "utf-8"),
    (codecs.BOM_UTF8 + SAMPLE.encode("utf-8"), "utf-8"),
    (codecs.BOM_UTF16_LE + SAMPLE.encode("utf-16-le"), "utf-16"),
    (codecs.BOM_UTF16_BE + SAMPLE.encode("utf-16-be"), "utf-16"),
    (codecs.BOM_UTF32_LE + SAMPLE.encode("utf-32-le"), "utf-32"),
], ids=["utf8", "utf8-bom", "utf16le-bom", "utf16be-bom", "utf32le-bom"])
def test_unicode_encodings_are_normalised(tmp_path, data, encoding):
    r = _plain(tmp_path, data)
    assert r.pages == [{"page": 1, "text": SAMPLE}]  # no BOM left, no NULs from UTF-16
    assert r.extra["encoding"] == encoding
    assert (r.source, r.page_count, r.truncated) == ("text", 1, False)


def test_cp1252_bytes(tmp_path):
    r = _plain(tmp_path, b"caf\xe9 cr\xe8me br\xfbl\xe9e \x80 5 \x93quoted\x94")
    assert r.pages[0]["text"] == "café crème brûlée € 5 “quoted”"
    assert r.extra["encoding"] == "cp1252"


def test_bytes_undefined_in_cp1252_fall_back_to_latin1():
    text, encoding = decode_text(b"caf\xe9 \x81")
    assert (text, encoding) == ("café \x81", "latin-1")


def test_nul_bytes_are_removed(tmp_path):
    r = _plain(tmp_path, b"ab\x00cd\x00\x00ef\n")
    assert r.pages[0]["text"] == "abcdef\n"


def test_truncation_at_text_max_chars(tmp_path):
    settings = S.replace(text_max_chars=1000)
    r = _plain(tmp_path, b"a" * 5000, settings)
    assert r.pages[0]["text"] == "a" * 1000 and r.truncated
    r = _plain(tmp_path, b"b" * 1000, settings)
    assert r.pages[0]["text"] == "b" * 1000 and not r.truncated
    r = _plain(tmp_path, "é".encode() * 1000, settings)  # 2000 bytes, exactly 1000 characters
    assert r.pages[0]["text"] == "é" * 1000 and not r.truncated and r.extra["encoding"] == "utf-8"


@pytest.mark.parametrize("char", ["你", "é", "✓"])
def test_truncated_utf8_is_not_misread_as_cp1252(tmp_path, char):
    # Only a prefix of a long file is read; when that prefix ends inside a multi-byte character the
    # text is still UTF-8 — it must not fall back to cp1252 mojibake ("ä½ ä½ ...").
    settings = S.replace(text_max_chars=1000)
    r = _plain(tmp_path, char.encode() * 3000, settings)
    assert r.extra["encoding"] == "utf-8"
    assert r.pages[0]["text"] == char * 1000 and r.truncated


def test_markdown_csv_json_go_through_the_plain_path(tmp_path):
    path = tmp_path / "x"
    path.write_bytes(b'{"k": "v\xc3\xa9"}')
    for mime in ("text/plain", "text/markdown", "text/csv", "application/json"):
        r = extract(path, mime, S)
        assert r.source == "text" and r.pages[0]["text"] == '{"k": "vé"}'


def test_empty_file(tmp_path):
    r = _plain(tmp_path, b"")
    assert r.pages == [{"page": 1, "text": ""}] and not r.truncated
