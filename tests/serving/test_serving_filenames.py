"""Edge cases of byte ranges, ETags and client-supplied file names."""
from __future__ import annotations

from urllib.parse import unquote

import pytest

from falconproc.web.resources.serving import etag_matches, parse_range
from falconproc.web.filenames import (
    MAX_NAME_BYTES,
    InvalidFilename,
    content_disposition,
    decode_header_filename,
    sanitize_filename,
)

U = "unsatisfiable"


@pytest.mark.parametrize("header, size, expected", [
    (None, 10, None),
    ("", 10, None),
    ("bytes=0-4", 10, (0, 4)),
    ("bytes=0-0", 10, (0, 0)),
    ("bytes=9-9", 10, (9, 9)),
    ("bytes=5-", 10, (5, 9)),
    ("bytes=0-", 10, (0, 9)),
    ("bytes=-3", 10, (7, 9)),
    ("bytes=-10", 10, (0, 9)),
    ("bytes=-20", 10, (0, 9)),       # suffix longer than the file: the whole file
    ("bytes=0-100", 10, (0, 9)),     # last clamped to the end
    ("bytes=0-99999999999999999999999", 10, (0, 9)),
    ("  bytes=2-3  ", 10, (2, 3)),
    ("bytes=10-", 10, U),            # first byte past the end
    ("bytes=10-20", 10, U),
    ("bytes=5-2", 10, U),            # last before first
    ("bytes=-0", 10, U),             # empty suffix
    ("bytes=0-4", 0, U),             # nothing to serve from an empty file
    ("bytes=-5", 0, U),
    ("bytes=-", 10, None),           # malformed: serve everything
    ("bytes=0-1,3-4", 10, None),     # multiple ranges: a full 200 is valid
    ("bytes=a-b", 10, None),
    ("bytes=1.5-2", 10, None),
    ("bytes=+1-2", 10, None),
    ("items=0-4", 10, None),
    ("bytes 0-4", 10, None),
    ("bytes=0-4\r\nX: y", 10, None),
])
def test_parse_range(header, size, expected):
    assert parse_range(header, size) == expected


def test_parse_range_result_is_always_inside_the_file():
    for size in (1, 2, 7, 100):
        for first in range(0, size + 2):
            for last in range(0, size + 2):
                got = parse_range(f"bytes={first}-{last}", size)
                if got not in (None, U):
                    a, b = got
                    assert 0 <= a <= b < size
        for suffix in range(0, size + 2):
            got = parse_range(f"bytes=-{suffix}", size)
            if got not in (None, U):
                a, b = got
                assert 0 <= a <= b == size - 1 and b - a + 1 == min(suffix, size)


ETAG = '"3f0c"'


@pytest.mark.parametrize("header, expected", [
    (None, False),
    ("", False),
    ("*", True),
    ("  *  ", True),
    ('"3f0c"', True),
    ('W/"3f0c"', True),              # weak comparison for If-None-Match
    (' "3f0c" ', True),
    ('"aaaa", "3f0c"', True),
    ('"aaaa",W/"3f0c"', True),
    ('"aaaa"', False),
    ('3f0c', False),                 # unquoted is a different tag
    ('"3f0c-thumbnail"', False),
    ('"3F0C"', False),               # tags compare case-sensitively
    ('"3f0"', False),
    ('W/"aaaa", "bbbb"', False),
])
def test_etag_matches(header, expected):
    assert etag_matches(header, ETAG) is expected


def test_etag_matches_when_the_stored_tag_is_weak():
    assert etag_matches('"3f0c"', 'W/"3f0c"') is True
    assert etag_matches('W/"3f0c"', 'W/"3f0c"') is True
    assert etag_matches('"other"', 'W/"3f0c"') is False


# -- file names ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("raw, expected", [
    ("report.pdf", "report.pdf"),
    ("../../etc/passwd", "passwd"),
    ("..\\..\\windows\\win.ini", "win.ini"),
    ("/absolute/path/x.txt", "x.txt"),
    ("C:\\Users\\me\\photo.jpg", "photo.jpg"),
    ("dir/", "file"),
    ("..", "file"),
    (".", "file"),
    ("", "file"),
    ("   ", "file"),
    (".hidden", "hidden"),
    ("...env", "env"),
    ("  spaced name.txt  ", "spaced name.txt"),
    ("a\r\nSet-Cookie: x.txt", "aSet-Cookie: x.txt"),
    ("nul\x00byte.txt", "nulbyte.txt"),
    ("tab\there.txt", "tabhere.txt"),
    ("del\x7f.txt", "del.txt"),
    ("invoice\u202egpj.exe", "invoicegpj.exe"),   # RIGHT-TO-LEFT OVERRIDE
    ("a\u2066b\u2069.txt", "ab.txt"),              # bidi isolates
    ("zero\u200bwidth.txt", "zerowidth.txt"),
    ("bom\ufeff.txt", "bom.txt"),
    ("sur\ud800rogate.txt", "surrogate.txt"),
    ("priv\ue000ate.txt", "private.txt"),
    ("e\u0301te\u0301.txt", "été.txt"),            # NFC
    ("日本語のファイル.docx", "日本語のファイル.docx"),
    ("emoji 😀.png", "emoji 😀.png"),
])
def test_sanitize_filename(raw, expected):
    assert sanitize_filename(raw) == expected


@pytest.mark.parametrize("stem_char, ext", [
    ("a", ".pdf"),
    ("é", ".txt"),          # 2-byte UTF-8
    ("日", ".docx"),        # 3-byte UTF-8
    ("😀", ".png"),         # 4-byte UTF-8
    ("a", ".gz"),
])
def test_long_names_are_capped_in_bytes_and_keep_the_extension(stem_char, ext):
    name = stem_char * 400 + ext
    out = sanitize_filename(name)
    assert len(out.encode("utf-8")) <= MAX_NAME_BYTES
    assert out.endswith(ext)
    assert out[: -len(ext)] == stem_char * len(out[: -len(ext)])
    assert len(out.encode("utf-8")) > MAX_NAME_BYTES - 4, "no more than one character too many is cut"
    assert sanitize_filename(out) == out, "sanitising is idempotent"


def test_long_name_with_overlong_extension_is_cut_plainly():
    name = "x" * 300 + "." + "y" * 40
    out = sanitize_filename(name)
    assert len(out.encode("utf-8")) <= MAX_NAME_BYTES
    assert out.startswith("x")


def test_sanitize_is_idempotent_and_never_contains_separators_or_controls():
    samples = ["../a/b\\c\x00d\u202e.txt", "\x01\x02", "....", "a" * 1000, "x/../../y", "\u202e" * 10]
    for raw in samples:
        out = sanitize_filename(raw)
        assert out and "/" not in out and "\\" not in out
        assert not any(ord(c) < 0x20 or ord(c) == 0x7F for c in out)
        assert not out.startswith(".")
        assert sanitize_filename(out) == out


@pytest.mark.parametrize("name, attachment", [
    ("résumé \"final\" 100%.pdf", False),
    ("plain.txt", True),
    ("日本語.txt", False),
    ("a\\b;c,d.txt", True),
    ("x\r\ny.txt", False),
])
def test_content_disposition(name, attachment):
    header = content_disposition(name, attachment=attachment)
    kind, rest = header.split(";", 1)
    assert kind == ("attachment" if attachment else "inline")
    assert all(0x20 <= ord(c) < 0x7F for c in header), "header values must be printable ASCII"
    assert "\r" not in header and "\n" not in header
    fallback_part, star_part = rest.split("; filename*=")
    assert fallback_part.startswith(' filename="') and fallback_part.endswith('"')
    fallback = fallback_part[len(' filename="'):-1]
    assert '"' not in fallback and "\\" not in fallback and "%" not in fallback
    assert star_part.startswith("UTF-8''")
    encoded = star_part[len("UTF-8''"):]
    assert all(c.isalnum() or c in "%-._~" for c in encoded), encoded
    assert unquote(encoded, errors="strict") == sanitize_filename(name)


def test_content_disposition_example():
    assert content_disposition('résumé "1".pdf', attachment=False) == (
        "inline; filename=\"r_sum_ _1_.pdf\"; filename*=UTF-8''r%C3%A9sum%C3%A9%20%221%22.pdf")
    assert content_disposition("../../etc/passwd", attachment=True) == (
        "attachment; filename=\"passwd\"; filename*=UTF-8''passwd")


def _wsgi(s: str) -> str:
    """How a WSGI server hands over a header whose bytes are UTF-8: latin-1 code points."""
    return s.encode("utf-8").decode("latin-1")


@pytest.mark.parametrize("raw, expected", [
    ("plain.txt", "plain.txt"),
    ("hello%20world.txt", "hello world.txt"),
    ("%C3%A9t%C3%A9.txt", "été.txt"),                   # encodeURIComponent
    (_wsgi("été.txt"), "été.txt"),                       # raw UTF-8 bytes
    (_wsgi("日本.txt"), "日本.txt"),
    ("100%.txt", "100%.txt"),                            # a lone % is literal
    ("a%2Fb.txt", "a/b.txt"),                            # decoded here, stripped by sanitize
    ("..%2F..%2Fetc%2Fpasswd", "../../etc/passwd"),
    ("%252F", "%2F"),                                    # exactly one level of decoding
])
def test_decode_header_filename(raw, expected):
    assert decode_header_filename(raw) == expected


def test_percent_encoded_traversal_is_neutralised_end_to_end():
    assert sanitize_filename(decode_header_filename("..%2F..%2Fetc%2Fpasswd")) == "passwd"
    assert sanitize_filename(decode_header_filename("..%5C..%5Cboot.ini")) == "boot.ini"
    assert sanitize_filename(decode_header_filename("a%00b%0D%0Ac.txt")) == "abc.txt"
    assert sanitize_filename(decode_header_filename("%E2%80%AEgpj.exe")) == "gpj.exe"


@pytest.mark.parametrize("raw", [
    "%FF%FE.txt",            # percent-encoded bytes that are not UTF-8
    "%C3.txt",               # truncated sequence
    "%ED%A0%80.txt",         # an encoded surrogate
    "%C0%AF.txt",            # overlong "/"
    "\xff\xfe.txt",          # raw (latin-1 code points) bytes that are not UTF-8
    "\xc3.txt",
    "\u20ac.txt",            # not a latin-1 code point: cannot come from WSGI as-is
])
def test_decode_header_filename_rejects_invalid_utf8(raw):
    with pytest.raises(InvalidFilename):
        decode_header_filename(raw)
