"""Hostile documents against the extractors directly: refused fast, nothing inflated or leaked."""
from __future__ import annotations

import multiprocessing
import os
import signal
import time
import tracemalloc
import zipfile

import psutil
import pytest

from falconproc.config import Settings
from falconproc.text.docx import extract_docx
from falconproc.text.extraction import ExtractionError
from falconproc.text.pdf import extract_pdf
from tests.text import _docs

S = Settings()


def _write(tmp_path, name: str, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _refused(path, fn=extract_docx, code="refused", seconds=2.0) -> ExtractionError:
    start = time.monotonic()
    with pytest.raises(ExtractionError) as info:
        fn(path, S)
    assert time.monotonic() - start < seconds
    assert info.value.code == code, info.value
    return info.value


@pytest.fixture
def opened_members(monkeypatch):
    """Names of the ZIP members anything (our checks or python-docx) decompresses."""
    names: list[str] = []
    real_open = zipfile.ZipFile.open

    def spy(self, name, mode="r", *args, **kwargs):
        names.append(name.filename if isinstance(name, zipfile.ZipInfo) else name)
        return real_open(self, name, mode, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "open", spy)
    return names


# -- DOCX -------------------------------------------------------------------------


def test_zip_bomb_member_is_refused_without_inflating_it(tmp_path, opened_members):
    path = _write(tmp_path, "bomb.docx", _docs.zip_bomb_docx(200))  # 200 MiB of zeros in ~200 KB
    assert path.stat().st_size < 1_000_000
    opened_members.clear()  # building the file opened the template's parts
    tracemalloc.start()
    try:
        error = _refused(path, seconds=1.0)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "zip bomb" in str(error)
    assert "word/document.xml" not in opened_members
    assert peak < 16 * 1024 * 1024


def test_declared_gigabytes_are_refused_from_the_directory(tmp_path, opened_members):
    path = _write(tmp_path, "declared.docx", _docs.declared_huge_docx())  # declares 3 GB
    opened_members.clear()
    _refused(path, seconds=1.0)
    assert "word/media/huge.bin" not in opened_members


def test_many_moderate_members_over_the_total_are_refused(tmp_path):
    # Each member stays under the 1 MiB ratio floor; together they declare > DOCX_MAX_UNCOMPRESSED_BYTES.
    extra = [_docs.member(f"word/media/m{i}.bin", os.urandom(64) * 16000) for i in range(16)]  # ~1 MB each
    data = _docs.docx_with({}, extra=extra)
    path = _write(tmp_path, "many.docx", data)
    error = _refused(path, fn=lambda p, s: extract_docx(p, s.replace(docx_max_uncompressed_bytes=10_000_000)))
    assert "inflates to" in str(error)


def test_too_many_members_are_refused(tmp_path):
    extra = [_docs.member(f"word/media/{i}.txt", b"x") for i in range(2100)]
    _refused(_write(tmp_path, "members.docx", _docs.docx_with({}, extra=extra)))


def test_size_that_lies_small_is_bounded_by_the_declaration(tmp_path):
    # word/document.xml declares 600 bytes while its deflate stream would inflate to 200 MiB:
    # zipfile stops at the declared size and the CRC check fails — corrupt, fast, small.
    path = _write(tmp_path, "lying.docx", _docs.lying_small_docx(200))
    tracemalloc.start()
    try:
        _refused(path, code="corrupt", seconds=1.0)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 * 1024 * 1024


def test_billion_laughs_is_refused(tmp_path):
    error = _refused(_write(tmp_path, "laughs.docx", _docs.billion_laughs_docx()), seconds=1.0)
    assert "DTD" in str(error)


def test_external_entity_is_refused(tmp_path):
    error = _refused(_write(tmp_path, "xxe.docx", _docs.xxe_docx()), seconds=1.0)
    assert "root:" not in str(error)


def test_external_entity_in_core_properties_is_refused(tmp_path):
    _refused(_write(tmp_path, "xxe-core.docx", _docs.xxe_core_docx()), seconds=1.0)


PADDING = b"<!-- " + b"padding " * 1000 + b"-->\n"  # 8 KB of comment before the DOCTYPE


@pytest.mark.parametrize("variant", ["padded-prolog", "utf-16"])
def test_external_entity_never_resolves(tmp_path, variant):
    """Whatever the pre-check sees, no host file content reaches any output."""
    data = _docs.xxe_docx(PADDING) if variant == "padded-prolog" else _docs.xxe_docx(encoding="utf-16")
    path = _write(tmp_path, "xxe.docx", data)
    try:
        r = extract_docx(path, S)
    except ExtractionError as exc:
        assert "root:" not in str(exc)
        return
    assert "root:" not in repr((r.pages, r.properties, r.extra))


@pytest.mark.parametrize("variant", ["padded-prolog", "utf-16"])
def test_dtd_is_refused_wherever_the_prolog_puts_it(tmp_path, variant):
    # The pre-check reads only the first 4096 bytes and matches ASCII bytes: a DOCTYPE after a long
    # comment, or one in a UTF-16 part, reaches lxml instead of being refused.
    data = _docs.xxe_docx(PADDING) if variant == "padded-prolog" else _docs.xxe_docx(encoding="utf-16")
    _refused(_write(tmp_path, "xxe.docx", data))


def test_billion_laughs_after_padding_is_not_expanded(tmp_path):
    path = _write(tmp_path, "laughs-padded.docx", _docs.billion_laughs_docx(PADDING))
    start = time.monotonic()
    with pytest.raises(ExtractionError):  # refused (the spec) or corrupt (libxml2's amplification guard)
        extract_docx(path, S)
    assert time.monotonic() - start < 2


# -- PDF --------------------------------------------------------------------------


def test_deeply_nested_pdf_is_a_clear_error(tmp_path):
    _refused(_write(tmp_path, "nested.pdf", _docs.nested_array_pdf(100_000)), fn=extract_pdf, code="corrupt")


def test_cyclic_page_tree_is_a_clear_error(tmp_path):
    error = _refused(_write(tmp_path, "cyclic.pdf", _docs.cyclic_pdf()), fn=extract_pdf, code="corrupt")
    assert "cyclic" in str(error).lower()


def test_truncated_pdf_is_a_clear_error(tmp_path):
    _refused(_write(tmp_path, "truncated.pdf", _docs.truncated_pdf()), fn=extract_pdf, code="corrupt")


def test_nested_arrays_inside_a_content_stream_lose_only_that_page(tmp_path):
    deep = b"[" * 100_000 + b"]" * 100_000
    path = _write(tmp_path, "nested-content.pdf",
                  _docs.text_pdf(["x"], shared_content=b"BT /F1 12 Tf 72 720 Td " + deep + b" TJ (Hi) Tj ET"))
    start = time.monotonic()
    r = extract_pdf(path, S)
    assert time.monotonic() - start < 5
    assert r.pages_without_text == [1]


# -- the pool of a large PDF -------------------------------------------------------


def _extract_in_child(path: str, settings: Settings) -> None:
    extract_pdf(path, settings)


def test_pool_workers_die_with_a_killed_job_process(tmp_path):
    """The supervisor SIGKILLs a job process on timeout; the pool it forked for a large PDF must not
    live on (unsupervised, outside the memory accounting) parsing the hostile file."""
    path = _write(tmp_path, "slow.pdf", _docs.slow_pdf(30, 20000))  # ~1 s per page
    settings = S.replace(pdf_parallel_pages=4, text_processes=2)
    job = multiprocessing.get_context("fork").Process(target=_extract_in_child, args=(str(path), settings))
    job.start()
    workers: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 10
        while len(workers) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
            workers = psutil.Process(job.pid).children(recursive=True)
        assert len(workers) >= 2, "the 30-page PDF should have started a pool"
        time.sleep(0.5)
        os.kill(job.pid, signal.SIGKILL)
        job.join(5)
        time.sleep(1.0)
        alive = [w.pid for w in workers if w.is_running() and w.status() != psutil.STATUS_ZOMBIE]
        assert alive == [], f"pool workers {alive} outlived their killed job process"
    finally:
        for w in workers:  # our own grandchildren: clean up whatever the assertion found
            try:
                w.kill()
            except psutil.NoSuchProcess:
                pass
        if job.is_alive():
            job.kill()
