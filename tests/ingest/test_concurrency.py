"""Concurrent uploads: exactly one winner for the same bytes, nothing lost, no debris."""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from tests.support.content import sha256, unique_text
from tests.support.http import get_original, upload
from tests.support.store import disk_metadata, entry_dir, stored_entries, temp_entries

N = 20


def _race(fn, n=N):
    barrier = threading.Barrier(n)

    def run(i):
        barrier.wait(timeout=30)
        return fn(i)

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(run, range(n)))


def test_same_bytes_concurrently_one_winner(service):
    data = unique_text(2000)  # ~100 KB: the uploads overlap in time
    digest = sha256(data)
    responses = _race(lambda i: upload(service, data, name=f"same-{i}.txt", drive="drive-c", user=f"user-{i}"))

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * (N - 1) + [201], [r.text[:200] for r in responses if r.status_code >= 300]
    bodies = [r.json() for r in responses]
    assert sum(b["isNew"] for b in bodies) == 1
    assert all(b["contentHash"] == digest and b["size"] == len(data) for b in bodies)
    winner = next(b for b in bodies if b["isNew"])

    assert stored_entries(service.files).count(digest) == 1
    assert sorted(p.name for p in entry_dir(service, digest).iterdir()) == ["metadata.json", "original"]
    assert temp_entries(service.files) == []
    assert get_original(service, digest).content == data

    # Every uploader is recorded exactly once: no lost update under concurrency.
    meta = disk_metadata(service, digest)
    users = [u["userId"] for u in meta["uploads"]]
    assert sorted(users) == sorted(f"user-{i}" for i in range(N))
    assert meta["uploads"][0]["userId"] == winner["metadata"]["uploadedBy"] == meta["uploadedBy"]
    assert meta["originalName"] == winner["originalName"]


def test_same_bytes_same_uploader_concurrently(service):
    data = unique_text(500)
    digest = sha256(data)
    responses = _race(lambda i: upload(service, data, name="same.txt", drive="drive-s", user="user-s"))
    assert sorted(r.status_code for r in responses) == [200] * (N - 1) + [201]
    assert len(disk_metadata(service, digest)["uploads"]) == 1
    assert temp_entries(service.files) == []


def test_different_bytes_concurrently_all_stored(service):
    payloads = [unique_text(300) for _ in range(N)]
    chunked = {i for i in range(N) if i % 3 == 0}

    def send(i):
        data = payloads[i]
        body = iter([data[:1000], data[1000:]]) if i in chunked else data
        return upload(service, body, name=f"diff-{i}.txt", user=f"user-{i}")

    responses = _race(send)
    assert [r.status_code for r in responses] == [201] * N, [r.text[:200] for r in responses]
    stored = set(stored_entries(service.files))
    for data, resp in zip(payloads, responses):
        digest = sha256(data)
        assert resp.json()["contentHash"] == digest
        assert resp.json()["isNew"] is True
        assert digest in stored
        assert (entry_dir(service, digest) / "original").read_bytes() == data
        assert disk_metadata(service, digest)["size"] == len(data)
    assert temp_entries(service.files) == []
