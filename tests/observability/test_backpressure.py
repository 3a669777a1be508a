"""Back-pressure through the real service: the memory high-water mark (uploads 503,
reads go on), WEB_WORKER_MAX_RSS (a fat web worker is replaced after its request) and
tree-level shedding in the job supervisor (the newest job is killed before the
kernel OOM-kills something)."""
from __future__ import annotations

import io
import re
import threading
import time
import uuid
import zipfile
from concurrent.futures import ThreadPoolExecutor

import psutil
import requests

from tests.support.content import sha256, text_blob
from tests.support.http import health, upload
from tests.support.jobs import JOB_PLUGINS, open_service_queue, random_hash
from tests.support.service import wait_web_workers
from tests.support.store import stored_entries, temp_entries
from tests.support.wait import wait_for

MiB = 1024 * 1024
MIN_MEMORY_LIMIT = 64 * MiB  # MEMORY_LIMIT_BYTES's lower bound (config.py)
MIN_WORKER_MAX_RSS = 32 * MiB  # WEB_WORKER_MAX_RSS's lower bound


def same_store(svc) -> dict[str, str]:
    return {name: svc.env[name] for name in ("FILE_STORAGE_PATH", "CACHE_PATH", "QUEUE_PATH")}


def unique_zip() -> bytes:
    """A plain ZIP: stored, but no job type applies to it (the upload enqueues nothing)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("note.txt", f"backpressure {uuid.uuid4().hex}\n")
    return buf.getvalue()


# -- the high-water mark ------------------------------------------------------------------


def test_memory_high_water_refuses_uploads_and_keeps_serving_reads(fresh_service):
    # Under the default limit the idle tree is far below the high-water mark.
    normal = fresh_service(WEB_WORKERS="1")
    report = health(normal)
    idle = report["memory"]["used"]
    print(f"\n[high-water] idle tree (1 web worker + supervisor): {idle / MiB:.0f} MiB "
          f"in {report['memory']['processes']} processes")
    assert report["status"] == "ok" and report["reasons"] == [], report
    assert report["memory"]["throttling"] is False and idle < report["memory"]["highWater"]
    stored = text_blob("stored-before-pressure", 300_000)
    digest = sha256(stored)
    assert upload(normal, stored, name="before.txt").status_code == 201
    normal.stop()

    # The same store under the smallest limit the settings allow: the idle tree alone
    # (measured above) is past 85 % of it.
    assert idle > MIN_MEMORY_LIMIT * 0.85, f"the idle tree ({idle / MiB:.0f} MiB) fits the minimum limit"
    svc = fresh_service(WEB_WORKERS="1", MEMORY_LIMIT_BYTES=str(MIN_MEMORY_LIMIT), **same_store(normal))
    report = health(svc)
    memory = report["memory"]
    assert report["status"] == "degraded" and "memory_pressure" in report["reasons"], report
    assert memory["throttling"] is True
    assert memory["limit"] == MIN_MEMORY_LIMIT and memory["highWater"] == int(MIN_MEMORY_LIMIT * 0.85)
    assert memory["used"] > memory["highWater"] and memory["rss"] > 0

    for body in (text_blob("refused-sized", 200_000), iter([text_blob("refused-streamed", 200_000)])):
        refused = upload(svc, body, name="refused.txt")  # a generator is sent chunked
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"] == "overloaded" and refused.json()["message"]
        assert int(refused.headers["Retry-After"]) > 0
    assert stored_entries(svc.files) == [digest], "nothing but the content stored before"
    assert temp_entries(svc.files) == []

    got = requests.get(f"{svc.url}/cache/{digest}/original", timeout=30)
    assert got.status_code == 200 and got.content == stored
    assert requests.get(f"{svc.url}/cache/{digest}/metadata", timeout=30).status_code == 200


# -- WEB_WORKER_MAX_RSS ---------------------------------------------------------------------


def _recycled_pids(log: str) -> set[int]:
    return {int(pid) for pid in re.findall(r"worker (\d+) over WEB_WORKER_MAX_RSS", log)}


def _client_round(svc, label: str) -> list[tuple[str, int]]:
    """An upload and a read of it, on one keep-alive connection: a worker that goes away
    after answering must not leave the client a dead connection to fail on."""
    outcomes = []
    with requests.Session() as session:
        data = text_blob(label, 20_000)
        resp = session.post(svc.url + "/upload", data=data, timeout=60,
                            headers={"x-filename": f"{label}.txt", "x-drive-id": "d", "x-user-id": label})
        outcomes.append(("upload", resp.status_code))
        got = session.get(f"{svc.url}/cache/{sha256(data)}/original", timeout=60)
        outcomes.append(("read", got.status_code if got.content == data else -got.status_code))
    return outcomes


def test_web_worker_over_max_rss_is_replaced_after_answering(fresh_service):
    svc = fresh_service(WEB_WORKERS="1", WEB_WORKER_MAX_RSS=str(MIN_WORKER_MAX_RSS))
    (first,) = wait_web_workers(svc, 1)
    rss = psutil.Process(first).memory_info().rss
    print(f"\n[max-rss] web worker RSS {rss / MiB:.0f} MiB, cap {MIN_WORKER_MAX_RSS // MiB} MiB")
    assert rss > MIN_WORKER_MAX_RSS, "the worker is under the smallest cap: nothing to recycle"

    assert _client_round(svc, "first") == [("upload", 201), ("read", 200)]
    wait_for(lambda: first not in svc.worker_pids() and svc.worker_pids(), 30, 0.1,
             "the fat worker to be replaced")
    assert first in _recycled_pids(svc.log())

    # Two clients keep going while every request recycles the worker that answers it.
    with ThreadPoolExecutor(2) as pool:
        rounds = list(pool.map(lambda i: _client_round(svc, f"client-{i}"), range(6)))
    for outcomes in rounds:
        assert outcomes == [("upload", 201), ("read", 200)], rounds
    recycled = _recycled_pids(svc.log())
    assert len(recycled) >= 3, f"only workers {sorted(recycled)} were recycled"
    assert health(svc)["status"] == "ok"


def test_web_worker_under_max_rss_is_kept(fresh_service):
    """The control: under the default cap the same requests leave the worker in place."""
    svc = fresh_service(WEB_WORKERS="1")
    (first,) = wait_web_workers(svc, 1)
    for i in range(3):
        assert _client_round(svc, f"kept-{i}") == [("upload", 201), ("read", 200)]
    assert svc.worker_pids() == [first]
    assert not _recycled_pids(svc.log())


# -- tree-level shedding in the supervisor --------------------------------------------------

SHED_ENV = {
    "JOB_PLUGINS": JOB_PLUGINS,
    "WEB_WORKERS": "1",
    "MEMORY_HIGH_WATER": "1.0",  # uploads are refused only past the limit itself
    "MEMORY_HEADROOM_BYTES": str(128 * MiB),
    # The per-job cap far away: what kills the job must be the governor.
    "JOB_MEMORY_MAX_BYTES": str(8192 * MiB),
    "JOB_CONCURRENCY": "slowhog=1",
    "JOB_TIMEOUTS": "slowhog=300",
    # A failed attempt waits for its retry well past the end of the test.
    "JOB_BACKOFF_BASE": "600",
    "JOB_BACKOFF_CAP": "600",
}


def settled_tree(svc) -> int:
    """The tree's memory once the supervisor has finished importing the parsers it
    preloads for its job processes (two readings, past the 0.5 s cache, agree)."""
    readings = [0]

    def settled() -> int | None:
        time.sleep(0.6)
        readings.append(health(svc)["memory"]["used"])
        return readings[-1] if abs(readings[-1] - readings[-2]) < 2 * MiB else None

    return wait_for(settled, 30, 0, "the idle tree's memory to settle")


def test_supervisor_sheds_a_growing_job_near_the_limit(fresh_service):
    # The idle tree of an identical service, supervisor included; the limit leaves room
    # to admit the job (64 MiB estimate under limit - headroom) and to grow, but far
    # less than the job will take.
    probe = fresh_service(**SHED_ENV)
    wait_for(probe.supervisor_pid, 20, 0.1, "the probe's supervisor")
    tree = settled_tree(probe)
    probe.stop()
    limit = tree + 320 * MiB
    shed_at = limit - 64 * MiB  # limit - headroom / 2
    svc = fresh_service(**SHED_ENV, MEMORY_LIMIT_BYTES=str(limit))
    supervisor = wait_for(svc.supervisor_pid, 20, 0.1, "the supervisor")
    (worker,) = wait_web_workers(svc, 1)

    answers: list[tuple[int, list]] = []  # (status, jobs enqueued)
    stop = threading.Event()

    def keep_uploading() -> None:
        while not stop.is_set():
            # One user per upload: this is about memory, not UPLOAD_RATE_LIMIT.
            resp = upload(svc, unique_zip(), name="keep.zip", user=f"user-{len(answers)}")
            answers.append((resp.status_code, resp.json().get("jobs", [])))
            stop.wait(0.02)

    uploader = threading.Thread(target=keep_uploading, daemon=True)
    uploader.start()
    try:
        queue = open_service_queue(svc)
        # 8 MiB every 0.1 s up to 2 GiB: it reaches the shedding point within seconds,
        # long before its own cap.
        hog = queue.enqueue("slowhog", random_hash(), payload={"step_mb": 8, "interval": 0.1, "max_mb": 2048})

        def job() -> dict:
            resp = requests.get(f"{svc.url}/jobs/{hog.id}", timeout=30)
            assert resp.status_code == 200, resp.text
            return resp.json()

        wait_for(lambda: job()["status"] != "queued", 30, 0.05, "the hog to be admitted")
        answered_before = len(answers)
        peak = 0

        def shed() -> dict | None:
            nonlocal peak
            peak = max(peak, health(svc)["memory"]["used"])
            body = job()
            return body if body["status"] in ("retrying", "dead") else None

        failed = wait_for(shed, 60, 0.1, "the hog to be shed")
        answered_while_running = len(answers) - answered_before
    finally:
        stop.set()
        uploader.join(60)
    assert not uploader.is_alive()
    print(f"\n[shedding] idle tree {tree / MiB:.0f} MiB, limit {limit / MiB:.0f} MiB, shed at "
          f"{shed_at / MiB:.0f} MiB; peak seen by /health {peak / MiB:.0f} MiB; "
          f"{answered_while_running} uploads answered while the hog grew")

    assert failed["status"] == "retrying", failed  # the attempt failed; its retry is scheduled
    assert failed["attempts"] == 1
    assert failed["lastError"] == "killed under memory pressure", failed
    # Nothing else was killed: the supervisor and the web worker are the same processes.
    assert svc.supervisor_pid() == supervisor and svc.worker_pids() == [worker]
    assert "killed under memory pressure" in svc.log()
    # Uploads were answered throughout, and none was refused (high water = the limit).
    assert answered_while_running >= 1
    # (An upload's own job would compete with the hog: none is enqueued for a ZIP.)
    assert answers and set(map(str, answers)) == {"(201, [])"}, answers
    # The hog's memory is gone once it is killed.
    wait_for(lambda: health(svc)["memory"]["used"] < shed_at - 128 * MiB, 20, 0.2, "the hog's memory to be freed")
