"""Many streamed uploads while workers and then the master are SIGKILLed; restart; verify the store."""
from __future__ import annotations

import itertools
import os
import random
import signal
import threading
import time

import requests

from tests.support.content import chunks, sha256, text_blob
from tests.support.http import upload
from tests.support.service import kill_service_tree, run_cli, wait_web_workers
from tests.support.store import entry_problems, fsck_summary, stored_entries, temp_entries
from tests.support.wait import wait_for

CLIENTS = 12


def blob(i: int) -> bytes:
    return text_blob(f"upload-{i}", random.Random(i).randrange(40_000, 160_000))


def test_sigkill_workers_and_master_during_uploads_then_restart_and_verify(fresh_service):
    # Every thread may read an upload (no 503 for busy upload slots): this test is about crashes.
    svc = fresh_service(WEB_WORKERS="2", WEB_THREADS="8", UPLOAD_SLOTS="8", READ_CHUNK_BYTES="16384")
    wait_web_workers(svc, 2)
    halt = threading.Event()  # ends the test's bodies (after the crash)
    crashing = threading.Event()  # no new uploads once the crash starts
    counter = itertools.count()
    results: list[tuple[int, int | None, object]] = []

    def body(i: int):
        delay = random.Random(-i).uniform(0.02, 0.12)
        for part in chunks(blob(i), 16 * 1024):
            yield part
            if halt.wait(delay):
                return  # the crash is over: stop sending (no Content-Length, so never a 2xx)
            if crashing.is_set():  # frozen mid-body until the crash is over: caught there
                halt.wait()
                return

    def client():
        while not halt.is_set() and not crashing.is_set():
            i = next(counter)
            try:
                resp = upload(svc, body(i), name=f"u{i}.txt", user=f"user-{i}",
                              headers={"x-content-sha256": sha256(blob(i))})
                results.append((i, resp.status_code, resp.json()))
            except (requests.RequestException, ValueError) as exc:
                results.append((i, None, repr(exc)))

    threads = [threading.Thread(target=client, daemon=True) for _ in range(CLIENTS)]
    for n, thread in enumerate(threads):
        thread.start()
        time.sleep(0.05)  # staggered: uploads are at every stage when the kills come

    def ok_count():
        return sum(1 for _, status, _ in results if status and 200 <= status < 300)

    try:
        wait_for(lambda: ok_count() >= 5, 20, message="some uploads to complete")
        first = svc.worker_pids()
        os.kill(first[0], signal.SIGKILL)
        time.sleep(0.5)
        os.kill(first[1], signal.SIGKILL)

        def in_flight_on_live_workers(at_least: int = 2):
            # Not the killed ones: listed until the master reaps them, and their temp
            # dirs are swept right after.
            live = tuple(f"up-{pid}-" for pid in svc.worker_pids() if pid not in first)
            return sum(name.startswith(live) for name in temp_entries(svc.files)) >= at_least

        # Replacement workers are taking uploads: now crash the whole service mid-body.
        wait_for(in_flight_on_live_workers, 15, 0.01, message="uploads in flight on the replacement workers")
        # The bodies stop where they are (not a race with the kill on a loaded machine);
        # those whose last bytes were already sent finish first.
        crashing.set()
        time.sleep(0.5)
        wait_for(lambda: in_flight_on_live_workers(1), 5, 0.01, message="uploads frozen mid-body")
        kill_service_tree(svc)
    finally:
        halt.set()
        for thread in threads:
            thread.join(30)

    attempted = {i for i, _, _ in results}
    hashes = {i: sha256(blob(i)) for i in attempted}
    ok = {i: payload for i, status, payload in results if status is not None and 200 <= status < 300}
    failed = [i for i, status, _ in results if status is None or status >= 300]
    statuses = sorted({str(status) for _, status, _ in results})
    print(f"uploads: {len(ok)} got 2xx, {len(failed)} failed; statuses seen: {statuses}")
    assert failed, "no upload was interrupted"
    assert all(status is None or status < 500 for _, status, _ in results), results
    for i, payload in ok.items():
        assert payload["contentHash"] == hashes[i] and payload["size"] == len(blob(i))

    # Uploads were caught mid-body by the crash: their temp dirs are still there.
    debris = temp_entries(svc.files)
    print(f"temp entries left by the crash: {len(debris)}")
    assert any(name.startswith("up-") for name in debris)

    # Restart on the same directories; on_starting sweeps the dead uploads' temp dirs.
    svc.start()
    assert temp_entries(svc.files) == [], "the start-up sweep must leave .tmp empty"

    # No partial files: every visible entry is complete and consistent.
    assert entry_problems(svc.files) == []
    visible = set(stored_entries(svc.files))
    assert visible <= set(hashes.values()), "only uploaded content may appear"
    print(f"after restart: {len(visible)} entries visible, "
          f"{len(visible) - len(ok)} committed without a 2xx seen by the client")
    # Every upload that got a 2xx is present and its bytes hash-verify.
    for i in ok:
        assert hashes[i] in visible, f"upload {i} got a 2xx but is missing after the restart"
        got = requests.get(f"{svc.url}/cache/{hashes[i]}/original", timeout=10)
        assert got.status_code == 200 and sha256(got.content) == hashes[i] and got.content == blob(i)
        meta = requests.get(f"{svc.url}/cache/{hashes[i]}/metadata", timeout=10).json()
        assert any(u["userId"] == f"user-{i}" for u in meta["uploads"])

    # The service works after the restart; an interrupted upload can be completed now.
    missing = sorted(i for i in attempted if hashes[i] not in visible)
    assert missing
    resp = upload(svc, blob(missing[0]), headers={"x-content-sha256": hashes[missing[0]]})
    assert resp.status_code == 201, resp.text
    visible.add(hashes[missing[0]])

    # fsck: a clean store reports 0 errors ...
    clean = run_cli(svc, "fsck")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    summary = fsck_summary(clean)
    assert summary["errors"] == 0 and summary["checked"] == len(visible)

    # ... and one flipped byte is found and named.
    victim = hashes[min(ok)]
    original = svc.files / victim / "original"
    with open(original, "r+b") as fh:
        fh.seek(original.stat().st_size // 2)
        byte = fh.read(1)
        fh.seek(-1, os.SEEK_CUR)
        fh.write(bytes([byte[0] ^ 0x01]))
    dirty = run_cli(svc, "fsck")
    assert dirty.returncode == 1, dirty.stdout + dirty.stderr
    assert fsck_summary(dirty)["errors"] == 1
    error_lines = [line for line in dirty.stdout.splitlines() if line.startswith("ERROR")]
    assert len(error_lines) == 1 and victim in error_lines[0], dirty.stdout
