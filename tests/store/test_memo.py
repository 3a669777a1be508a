"""SmallFileMemo: served small derived files kept in a web worker's memory, bounded."""
from __future__ import annotations

import os

import pytest

from falconproc.store.local_cache import LocalDerivedCache
from falconproc.store.memo import SMALL_FILE_BYTES, SmallFileMemo

HASHES = [f"{n:064x}" for n in range(1, 6)]


@pytest.fixture()
def cache(tmp_path):
    return LocalDerivedCache(tmp_path / "cache", fsync=False)


def _put(cache, content_hash: str, name: str, data: bytes) -> None:
    cache.write_file(content_hash, name, lambda fh: fh.write(data))


def _read(memo, cache, content_hash, name) -> tuple[bytes, int]:
    fileobj, size = memo.open(cache, content_hash, name)
    with fileobj:
        return fileobj.read(), size


def test_a_kept_file_is_served_without_the_disk(cache):
    memo = SmallFileMemo(1 << 20)
    _put(cache, HASHES[0], "thumbnail.webp", b"thumb-bytes")
    assert _read(memo, cache, HASHES[0], "thumbnail.webp") == (b"thumb-bytes", 11)
    os.unlink(cache.path(HASHES[0], "thumbnail.webp"))  # gone from disk: the kept copy answers
    assert _read(memo, cache, HASHES[0], "thumbnail.webp") == (b"thumb-bytes", 11)
    assert len(memo) == 1 and memo.size == 11


def test_a_missing_file_raises_as_the_cache_does(cache):
    memo = SmallFileMemo(1 << 20)
    with pytest.raises(FileNotFoundError):
        memo.open(cache, HASHES[0], "thumbnail.webp")
    assert len(memo) == 0


def test_large_files_are_not_kept_and_come_from_disk(cache):
    memo = SmallFileMemo(1 << 20)
    big = os.urandom(SMALL_FILE_BYTES + 1)
    _put(cache, HASHES[0], "preview.jpg", big)
    fileobj, size = memo.open(cache, HASHES[0], "preview.jpg")
    with fileobj:
        assert size == len(big) and fileobj.fileno() >= 0 and fileobj.read() == big  # the file itself
    assert len(memo) == 0


def test_bounded_by_bytes_oldest_out_first(cache):
    memo = SmallFileMemo(3000)
    for n, content_hash in enumerate(HASHES):
        _put(cache, content_hash, "thumbnail.webp", bytes([n]) * 1000)
        _read(memo, cache, content_hash, "thumbnail.webp")
        assert memo.size <= 3000
    assert len(memo) == 3
    os.unlink(cache.path(HASHES[0], "thumbnail.webp"))
    with pytest.raises(FileNotFoundError):  # the oldest was let go: the disk is asked again
        memo.open(cache, HASHES[0], "thumbnail.webp")
    assert _read(memo, cache, HASHES[-1], "thumbnail.webp") == (bytes([4]) * 1000, 1000)


def test_a_budget_smaller_than_a_file_keeps_nothing(cache):
    memo = SmallFileMemo(100)
    _put(cache, HASHES[0], "thumbnail.webp", b"x" * 500)
    assert _read(memo, cache, HASHES[0], "thumbnail.webp") == (b"x" * 500, 500)
    assert len(memo) == 0
