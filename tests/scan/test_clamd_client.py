"""The clamd client against a real clamd (tests/support/clamd.py): verdicts, archives,
the stream limit, TCP, and clamd being away."""
from __future__ import annotations

import io
import time
import zipfile

import pytest

from falconproc.scan.clamd import ClamdClient, ClamdUnavailable, parse_reply
from tests.support.clamd import EICAR, EICAR_SIGNATURE, MARKER, MARKER_SIGNATURE, Clamd
from tests.text._docs import simple_docx


def _zip(name: str, data: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(name, data)
    return buf.getvalue()


def _docx_with_eicar() -> bytes:
    src = zipfile.ZipFile(io.BytesIO(simple_docx()))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for info in src.infolist():
            zf.writestr(info, src.read(info))
        zf.writestr("word/embeddings/oleObject1.bin", EICAR)
    return buf.getvalue()


@pytest.fixture
def client(clamd):
    return ClamdClient(clamd.socket, timeout=30)


def test_clean_and_infected(client):
    assert client.ping()
    assert client.version().startswith("ClamAV ")
    assert client.instream(io.BytesIO(b"hello world")).status == "clean"
    verdict = client.instream(io.BytesIO(EICAR))
    assert (verdict.status, verdict.signature) == ("infected", EICAR_SIGNATURE)
    verdict = client.instream(io.BytesIO(b"\x89PNG...." + MARKER + b"...."))
    assert (verdict.status, verdict.signature) == ("infected", MARKER_SIGNATURE)


@pytest.mark.parametrize("make", [lambda: _zip("inner/eicar.com", EICAR), _docx_with_eicar])
def test_archives_are_scanned_inside(client, make):
    verdict = client.instream(io.BytesIO(make()))
    assert (verdict.status, verdict.signature) == ("infected", EICAR_SIGNATURE)


def test_over_the_stream_limit_is_an_error_not_clean(client):
    verdict = client.instream(io.BytesIO(b"x" * (3 * 1024 * 1024)))  # the fixture's limit is 2 MiB
    assert verdict.status == "error" and "size limit" in verdict.reason


def test_a_file_is_sent_from_its_position_and_past_the_limit_is_an_error(client, tmp_path):
    # Regular files go to clamd by sendfile: from where the file stands, to its end.
    path = tmp_path / "f.bin"
    path.write_bytes(b"header-" + EICAR)
    with open(path, "rb") as fh:
        fh.seek(len(b"header-"))
        verdict = client.instream(fh)  # exactly EICAR's bytes: its whole-file signature
    assert (verdict.status, verdict.signature) == ("infected", EICAR_SIGNATURE)
    with open(path, "rb") as fh:
        assert client.instream(fh).status == "clean"  # with the header it is another file
    path.write_bytes(b"x" * (3 * 1024 * 1024) + MARKER)  # the fixture's limit is 2 MiB
    with open(path, "rb") as fh:
        verdict = client.instream(fh)
    assert verdict.status == "error" and "size limit" in verdict.reason


def test_a_growing_file_is_sent_as_it_is_written(client, tmp_path):
    # The streamed scan: a SpoolTail behind a writer, its ranges sent as they appear.
    import threading

    from falconproc.store.follow import SpoolTail

    path = tmp_path / "spool"
    writer = open(path, "wb", buffering=0)
    tail = SpoolTail(open(path, "rb"))
    pieces = [b"a" * 300_000, b"b" * 5000 + MARKER, b"c" * 700_000]

    def write() -> None:
        for piece in pieces:
            time.sleep(0.05)
            writer.write(piece)
            tail.advanced()
        tail.finish(sum(map(len, pieces)))

    thread = threading.Thread(target=write)
    thread.start()
    try:
        verdict = client.instream(tail)
    finally:
        thread.join()
        writer.close()
        tail.close()
    assert (verdict.status, verdict.signature) == ("infected", MARKER_SIGNATURE)
    assert tail.position == sum(map(len, pieces))


def test_tcp(clamd):
    client = ClamdClient(address=("127.0.0.1", clamd.tcp_port), timeout=30)
    assert client.instream(io.BytesIO(EICAR)).status == "infected"


def test_clamd_away_raises_unavailable(tmp_path):
    client = ClamdClient(tmp_path / "nobody.sock", timeout=2)
    assert not client.ping()
    with pytest.raises(ClamdUnavailable):
        client.instream(io.BytesIO(b"data"))


def test_starts_in_well_under_a_second(tmp_path):
    server = Clamd(tmp_path)
    started = time.monotonic()
    server.start()
    elapsed = time.monotonic() - started
    server.stop()
    assert elapsed < 1.0, elapsed


@pytest.mark.parametrize(("reply", "expected"), [
    ("stream: OK", ("clean", None, None)),
    ("stream: Win.Test.EICAR_HDB-1 FOUND", ("infected", "Win.Test.EICAR_HDB-1", None)),
    ("INSTREAM size limit exceeded. ERROR", ("error", None, "INSTREAM size limit exceeded.")),
    ("garbage", ("error", None, "unexpected answer from clamd: garbage")),
])
def test_parse_reply(reply, expected):
    v = parse_reply(reply)
    assert (v.status, v.signature, v.reason) == expected
