"""Concurrent commits of the same bytes from several processes: one winner, no lost update."""
from __future__ import annotations

import multiprocessing
import os

import pytest

from falconproc.store.local import LocalContentStore
from tests.support.content import sha256, text_blob
from tests.support.store import metadata_for, record, stage, stored_entries, temp_entries

FORK = multiprocessing.get_context("fork")
PROCESSES = 8


def _commit_same_bytes(root: str, data: bytes, index: int, barrier, results) -> None:
    try:
        store = LocalContentStore(root, fsync=True)
        rec = record(f"drive-{index % 2}", f"user-{index}", f"name-{index}.txt")
        pending = stage(store, data)
        barrier.wait(20)  # everyone commits at the same moment
        meta, is_new = store.commit(pending, sha256(data), metadata_for(data, rec), rec)
        results.put((index, is_new, None))
    except BaseException as exc:  # report, never hang the parent
        results.put((index, None, repr(exc)))
    finally:
        results.close()
        results.join_thread()  # flush the feeder thread before the hard exit
        os._exit(0)


@pytest.mark.parametrize("round_", range(3))
def test_eight_processes_commit_the_same_content(tmp_path, round_):
    root = tmp_path / "files"
    LocalContentStore(root)  # creates root and .tmp before the race
    data = text_blob(f"race-{round_}", 200_000)
    digest = sha256(data)
    barrier = FORK.Barrier(PROCESSES)
    results = FORK.Queue()
    procs = [FORK.Process(target=_commit_same_bytes, args=(str(root), data, i, barrier, results))
             for i in range(PROCESSES)]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=30) for _ in procs]
    for p in procs:
        p.join(10)

    errors = [o for o in outcomes if o[2] is not None]
    assert errors == []
    winners = [o[0] for o in outcomes if o[1] is True]
    assert len(winners) == 1, f"exactly one process must store new content, got {winners}"

    store = LocalContentStore(root)
    meta = store.metadata(digest)
    users = sorted(u["userId"] for u in meta["uploads"])
    assert users == sorted(f"user-{i}" for i in range(PROCESSES)), "an uploader was lost"
    assert len(meta["uploads"]) == PROCESSES
    assert (root / digest / "original").read_bytes() == data
    assert stored_entries(root) == [digest]
    assert temp_entries(root) == [], "losers' pending dirs and metadata temps must be gone"
