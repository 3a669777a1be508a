"""The streaming multipart/form-data reader, in process: every block split, hostile forms."""
from __future__ import annotations

import io
import os

import pytest

from falconproc.ingest.multipart import (
    MAX_FIELD_BYTES,
    FilePartReader,
    MultipartError,
    boundary_of,
    is_form_data,
    part_filename,
)

B = "----WebKitFormBoundary7MA4YWxkTrZu0gW"


def form(*parts: tuple[str, bytes], boundary: str = B, preamble: bytes = b"", epilogue: bytes = b"") -> bytes:
    out = [preamble]
    for disposition, content in parts:
        out.append(f"--{boundary}\r\nContent-Disposition: {disposition}\r\n"
                   "Content-Type: application/octet-stream\r\n\r\n".encode() + content + b"\r\n")
    out.append(f"--{boundary}--\r\n".encode() + epilogue)
    return b"".join(out)


def read_all(body: bytes, block: int, length: int | None = -1) -> tuple[str, bytes]:
    reader = FilePartReader(io.BytesIO(body), B, len(body) if length == -1 else length, block)
    name = reader.open()
    out = []
    while piece := reader.read(block):
        out.append(piece)
    return name, b"".join(out)


@pytest.mark.parametrize("block", [1, 2, 3, 7, 41, 64, 4096])
def test_file_part_comes_out_whole_for_every_block_size(block):
    content = os.urandom(3000) + b"\r\n--" + B[:-1].encode() + b"\r\n" + os.urandom(500)  # a near-delimiter
    body = form(('form-data; name="driveId"', b"d1"), ('form-data; name="file"; filename="a.bin"', content),
                ('form-data; name="after"', b"x" * 100), preamble=b"ignored preamble\r\n", epilogue=b"tail")
    assert read_all(body, block) == ("a.bin", content)


def test_chunked_body_without_length_and_empty_file():
    body = form(('form-data; name="f"; filename="e.txt"', b""))
    assert read_all(body, 1 << 20, None) == ("e.txt", b"")


def test_filename_star_and_browser_escapes():
    assert part_filename("form-data; name=\"f\"; filename=\"R\u00e9sum\u00e9.pdf\"") == "R\u00e9sum\u00e9.pdf"
    assert part_filename("form-data; name=f; filename=\"a.txt\"; filename*=UTF-8''R%C3%A9sum%C3%A9.pdf") == \
        "R\u00e9sum\u00e9.pdf"
    assert part_filename('form-data; name="f"; filename="say %22hi%22.txt"') == 'say "hi".txt'
    assert part_filename('form-data; name="f"; filename="a\\"b.txt"') == 'a"b.txt'
    assert part_filename('form-data; name="f"') is None
    with pytest.raises(MultipartError):
        part_filename("form-data; filename*=UTF-8''%FF%FE")


def test_content_type_helpers():
    assert is_form_data("multipart/form-data; boundary=abc")
    assert is_form_data("Multipart/Form-Data;boundary=\"a b\"")
    assert not is_form_data("application/octet-stream")
    assert not is_form_data(None)
    assert boundary_of('multipart/form-data; boundary="a b"') == "a b"
    for bad in ("multipart/form-data", "multipart/form-data; boundary=", "multipart/form-data; boundary=" + "x" * 71):
        with pytest.raises(MultipartError, match="boundary"):
            boundary_of(bad)


@pytest.mark.parametrize("body, message", [
    (form(('form-data; name="a"', b"1")), "no file part"),
    (form(('form-data; name="a"; filename="1"', b"1"), ('form-data; name="b"; filename="2"', b"2")),
     "two file parts"),
    (form(('form-data; name="a"; filename="1"', b"1"))[:-8], "closing boundary"),
    (b"--" + B.encode() + b"\r\nContent-Disposition: form-data; name=a; filename=x\r\n" + b"X: y\r\n" * 4000,
     "headers are longer"),
    (form(('form-data; name="big"', b"x" * (MAX_FIELD_BYTES + 1)), ('form-data; name="f"; filename="a"', b"1")),
     "text field is longer"),
    (b"no boundary anywhere" * 100_000, "no multipart boundary"),
    (b"--" + B.encode() + b"\r\nbroken header line\r\n\r\nx\r\n--" + B.encode() + b"--", "no colon"),
    (b"--" + B.encode() + b"junk\r\n", "after the boundary"),
])
def test_hostile_forms_raise_a_message_that_says_what_is_wrong(body, message):
    with pytest.raises(MultipartError, match=message):
        read_all(body, 4096)


def test_body_shorter_than_content_length_is_an_error():
    body = form(('form-data; name="f"; filename="a"', b"abc"))
    with pytest.raises(MultipartError, match="Content-Length"):
        read_all(body, 16, len(body) + 10)


def test_random_contents_full_of_delimiter_fragments_come_out_whole():
    import random

    rng = random.Random(11)
    fragments = [b"\r", b"\n", b"\r\n", b"--", b"\r\n--", B.encode()[:5], B.encode()[:-1], b"x"]
    for _ in range(200):
        content = b"".join(rng.choice(fragments) for _ in range(rng.randrange(0, 300)))
        body = form(('form-data; name="f"; filename="r.bin"', content), ('form-data; name="t"', b"\r\n--"))
        assert read_all(body, rng.randrange(1, 120)) == ("r.bin", content)
