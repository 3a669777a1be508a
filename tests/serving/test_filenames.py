"""x-filename: decoding, sanitising, Content-Disposition, and no path escapes."""
from __future__ import annotations

import os
import unicodedata
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.support.content import unique_text
from tests.support.http import assert_error, get_original, parse_content_disposition, upload
from tests.support.store import assert_not_stored, disk_metadata, temp_entries


def encode_uri_component(value: str) -> str:
    """JavaScript's encodeURIComponent."""
    return quote(value, safe="-_.!~*'()")


def _snapshot(directory: Path) -> set[str]:
    return {str(p.relative_to(directory)) for p in directory.rglob("*")} if directory.exists() else set()


@pytest.fixture(scope="module")
def name_service(launcher, tmp_path_factory):
    """A private service whose whole directory tree is checked for escapes afterwards."""
    outer = tmp_path_factory.mktemp("names")
    base = outer / "svc"
    svc = launcher.start(base)
    svc.outer = outer
    yield svc
    svc.stop()


def _check_tree(svc) -> None:
    """Nothing is ever written outside FILE_STORAGE_PATH: the service's base directory holds
    only its own top-level directories, and the store only hash directories."""
    base = svc.files.parent
    assert {p.name for p in svc.outer.iterdir()} == {base.name}
    assert {p.name for p in base.iterdir()} <= {"files", "cache", "queue", "service.log"}
    for entry in svc.files.iterdir():
        if entry.name == ".tmp":
            continue
        assert len(entry.name) == 64 and entry.is_dir(), entry
        assert sorted(p.name for p in entry.iterdir()) == ["metadata.json", "original"], entry
    for sub in ("cache", "queue"):
        # Nothing lands in the cache or queue from an upload alone (no processing yet) -
        # in particular no file named after the client's name.
        for p in (base / sub).rglob("*"):
            assert "passwd" not in p.name and "win.ini" not in p.name, p
    assert temp_entries(svc.files) == []


def _assert_sanitised(name: str) -> None:
    assert name
    assert "/" not in name and "\\" not in name
    assert not name.startswith(".")
    assert name == name.strip(), repr(name)
    for ch in name:
        assert unicodedata.category(ch) not in {"Cc", "Cf", "Cs", "Co", "Cn"}, (repr(ch), repr(name))
    assert len(name.encode("utf-8")) <= 255


def _upload_and_check(svc, header_value, expected: str | None = None, *, ends_with: str | None = None):
    data = unique_text()
    resp = upload(svc, data, headers={"x-filename": header_value})
    assert resp.status_code == 201, resp.text
    body = resp.json()
    name = body["originalName"]
    _assert_sanitised(name)
    if expected is not None:
        assert name == expected
    if ends_with is not None:
        assert name.endswith(ends_with), name
    meta = disk_metadata(svc, body["contentHash"])
    assert meta["originalName"] == name
    assert meta["uploads"][0]["originalName"] == name
    assert body["metadata"]["originalName"] == name

    for method in ("GET", "HEAD"):
        got = get_original(svc, body["contentHash"], method=method)
        assert got.status_code == 200
        disposition = got.headers["Content-Disposition"]
        assert "\r" not in disposition and "\n" not in disposition
        kind, ascii_name, decoded = parse_content_disposition(disposition)
        assert kind == "inline"
        assert ascii_name.isascii() and all(0x20 <= ord(c) < 0x7F for c in ascii_name)
        assert '"' not in ascii_name and "\\" not in ascii_name
        assert decoded == name, (decoded, name)
        assert len(ascii_name) == len(name)
        assert all(a == c or a == "_" for a, c in zip(ascii_name, name))
        assert not any(h.lower().startswith("x-injected") for h in got.headers)
    return name


def test_percent_encoded_utf8(name_service):
    name = "Résumé 日本.pdf"
    encoded = encode_uri_component(name)
    assert encoded == "R%C3%A9sum%C3%A9%20%E6%97%A5%E6%9C%AC.pdf"
    _upload_and_check(name_service, encoded, name)
    data = unique_text()
    got = get_original(name_service, upload(name_service, data, headers={"x-filename": encoded}).json()["contentHash"])
    disposition = got.headers["Content-Disposition"]
    assert 'filename="R_sum_ __.pdf"' in disposition
    assert "filename*=UTF-8''R%C3%A9sum%C3%A9%20%E6%97%A5%E6%9C%AC.pdf" in disposition
    _check_tree(name_service)


def test_raw_utf8_header(name_service):
    name = "Ünïcödé 名前.txt"
    _upload_and_check(name_service, name.encode("utf-8"), name)
    # Decomposed input is normalised to NFC.
    _upload_and_check(name_service, encode_uri_component(unicodedata.normalize("NFD", "café.txt")), "café.txt")


HOSTILE = [
    pytest.param("../../etc/passwd", "passwd", id="dotdot-slash"),
    pytest.param(encode_uri_component("../../etc/passwd"), "passwd", id="dotdot-slash-encoded"),
    pytest.param("/etc/passwd", "passwd", id="absolute"),
    pytest.param("..\\..\\win.ini", "win.ini", id="dotdot-backslash"),
    pytest.param(encode_uri_component("C:\\Windows\\System32\\evil.dll"), "evil.dll", id="windows-path"),
    pytest.param("%2E%2E%2F%2E%2E%2F.bashrc", "bashrc", id="encoded-dotfile"),
    pytest.param("..", "file", id="only-dots"),
    pytest.param("...", "file", id="three-dots"),
    pytest.param("%2F", "file", id="only-slash"),
    pytest.param(".htaccess", "htaccess", id="dotfile"),
    pytest.param("report%0D%0AX-Injected: 1%0D%0A.pdf", "reportX-Injected: 1.pdf", id="crlf"),
    pytest.param("evil%00.txt.exe", "evil.txt.exe", id="nul"),
    pytest.param(encode_uri_component("invoice\u202Efdp.exe"), "invoicefdp.exe", id="bidi-rlo"),
    pytest.param(encode_uri_component("a\u200Bb\u2066c\u2069.txt"), "abc.txt", id="zero-width-and-isolates"),
    pytest.param("tab%09and%1Bescape.txt", "tabandescape.txt", id="controls"),
    pytest.param('quo"te\\and%25percent.txt', "and%percent.txt", id="quote-backslash-percent"),
    pytest.param(encode_uri_component('say "hi".txt'), 'say "hi".txt', id="quotes"),
]


@pytest.mark.parametrize("header, expected", HOSTILE)
def test_hostile_names(name_service, header, expected):
    _upload_and_check(name_service, header, expected)
    _check_tree(name_service)


LONG = [
    pytest.param("a" * 996 + ".pdf", ".pdf", id="1000-ascii"),
    # 600 CJK characters: 5.4 KB percent-encoded (gunicorn refuses header fields over 8190 bytes).
    pytest.param(encode_uri_component("日" * 596 + ".pdf"), ".pdf", id="600-cjk"),
    pytest.param(encode_uri_component("😀" * 500 + ".jpeg"), ".jpeg", id="500-emoji"),
    pytest.param("b" * 1000, None, id="1000-no-extension"),
    # Cut at 255 bytes lands right after a space: the stored name must not end in whitespace,
    # and Content-Disposition must still decode to exactly the stored name.
    pytest.param(encode_uri_component("word " * 200), None, id="1000-words"),
    pytest.param(encode_uri_component("x" * 254 + " tail.txt"), ".txt", id="space-at-cut"),
]


@pytest.mark.parametrize("header, ends_with", LONG)
def test_long_names_are_cut_to_255_bytes(name_service, header, ends_with):
    name = _upload_and_check(name_service, header, ends_with=ends_with)
    assert len(name.encode("utf-8")) > 200  # cut, not dropped
    _check_tree(name_service)


@pytest.mark.parametrize("header", [
    pytest.param("%FF%FE", id="ff-fe"),
    pytest.param("bad%C3.txt", id="truncated-sequence"),
    pytest.param("%ED%A0%80.txt", id="encoded-surrogate"),
    pytest.param("%C0%AF.txt", id="overlong-slash"),
    pytest.param(b"caf\xe9.txt", id="raw-latin1"),
])
def test_invalid_encoding_is_400(name_service, header):
    data = unique_text()
    assert_error(upload(name_service, data, headers={"x-filename": header}), 400, "invalid_header")
    assert_not_stored(name_service, data)


def test_etc_passwd_untouched(name_service):
    before = os.stat("/etc/passwd").st_mtime_ns
    for header in ("../../../../../../etc/passwd", encode_uri_component("../../../../../../etc/passwd")):
        data = unique_text()
        assert upload(name_service, data, headers={"x-filename": header}).status_code == 201
    assert os.stat("/etc/passwd").st_mtime_ns == before
    _check_tree(name_service)
