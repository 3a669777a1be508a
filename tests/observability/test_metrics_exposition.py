"""/metrics: build info, every process of the tree (RSS, CPU, fds) by role, requests in
flight, the age of the oldest pending job per type, queue states named as GET /jobs
names them."""
from __future__ import annotations

import os
import signal
import sys
import time

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

import falconproc
from falconproc.observability.metrics import RequestTally
from tests.support.content import unique_text
from tests.support.http import upload, wait_job
from tests.support.wait import wait_for


def _scrape(svc) -> dict[str, list]:
    resp = requests.get(svc.url + "/metrics", timeout=30)
    assert resp.status_code == 200
    return {family.name: family.samples for family in text_string_to_metric_families(resp.text)}


@pytest.fixture(scope="module")
def idle_queue_service(launcher, tmp_path_factory):
    """No supervisor: an upload's jobs stay pending."""
    svc = launcher.start(tmp_path_factory.mktemp("metrics"), RUN_SUPERVISOR="0")
    yield svc
    svc.stop()


def test_build_info_and_in_flight(idle_queue_service):
    metrics = _scrape(idle_queue_service)
    (info,) = metrics["falconproc_build_info"]
    assert info.value == 1 and info.labels["version"] == falconproc.__version__
    assert info.labels["python"] == sys.version.split()[0]
    assert info.labels["implementation"] in {"cython", "python"}
    # The scrape itself is in flight while the samples are read.
    assert sum(s.value for s in metrics["falconproc_http_requests_in_flight"]) >= 1


def test_every_process_of_the_tree_is_measured(idle_queue_service):
    svc = idle_queue_service
    metrics = _scrape(svc)
    rss = {s.labels["pid"]: s for s in metrics["falconproc_process_resident_memory_bytes"]}
    assert str(svc.proc.pid) in rss and rss[str(svc.proc.pid)].labels["role"] == "master"
    for pid in svc.worker_pids():
        assert rss[str(pid)].labels["role"] == "web" and rss[str(pid)].value > 10 * 1024 * 1024
    fds = {s.labels["pid"]: s.value for s in metrics["falconproc_process_open_fds"]}
    cpu = {s.labels["pid"]: s.value for s in metrics["falconproc_process_cpu_seconds"]}
    assert set(fds) == set(cpu) == set(rss)
    assert all(v >= 3 for v in fds.values()) and all(v > 0 for v in cpu.values())


def test_oldest_pending_age_and_state_names(idle_queue_service):
    svc = idle_queue_service
    resp = upload(svc, unique_text(), name="wait.txt")
    assert resp.status_code == 201 and any(j["type"] == "text" for j in resp.json()["jobs"])

    def age():
        samples = _scrape(svc).get("falconproc_queue_oldest_pending_age_seconds", [])
        return [s.value for s in samples if s.labels["type"] == "text" and s.value > 0.05]

    assert wait_for(age, timeout=10)[0] < 600
    states = {s.labels["state"]: s.value for s in _scrape(svc)["falconproc_queue_jobs"]}
    assert set(states) == {"queued", "running", "retrying", "done", "dead"} and states["queued"] >= 1


def _health_requests(svc) -> float:
    samples = _scrape(svc)["falconproc_http_requests"]
    return sum(s.value for s in samples if s.name.endswith("_total") and s.labels["route"] == "/health")


def test_dead_workers_files_are_folded_and_totals_stay_monotonic(fresh_service, tmp_path):
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    svc = fresh_service(WEB_WORKERS="1", METRICS_DIR=str(metrics_dir))
    (run_dir,) = metrics_dir.iterdir()
    for _ in range(5):
        assert requests.get(svc.url + "/health", timeout=10).status_code == 200
    before = _health_requests(svc)
    assert before >= 5
    (old,) = svc.worker_pids()
    assert (run_dir / f"counter_{old}.db").exists()
    os.kill(old, signal.SIGKILL)
    wait_for(lambda: not (run_dir / f"counter_{old}.db").exists() and (run_dir / "counter_archive.db").exists(),
             timeout=30, message="the dead worker's counter file folded into the archive")
    assert not (run_dir / f"histogram_{old}.db").exists()
    wait_for(lambda: svc.worker_pids() and svc.worker_pids() != [old], timeout=30)
    assert requests.get(svc.url + "/health", timeout=10).status_code == 200
    # The dead worker's counts survive in the archive: nothing lost, nothing counted twice.
    assert _health_requests(svc) == before + 1


def _totals(svc) -> tuple[float, float]:
    """(HTTP requests answered, job attempts ended) over every process, dead ones included."""
    metrics = _scrape(svc)
    # (none yet: the workers that answered so far have not flushed their counts)
    http = sum(s.value for s in metrics.get("falconproc_http_requests", []) if s.name.endswith("_total"))
    jobs = sum(s.value for s in metrics.get("falconproc_jobs", []) if s.name.endswith("_total"))
    return http, jobs


def _pid_files(run_dir) -> dict[int, list[str]]:
    """pid -> its sample files (the archives and lock files have no pid)."""
    files: dict[int, list[str]] = {}
    for path in run_dir.iterdir():
        pid = path.stem.rsplit("_", 1)[-1]
        if path.suffix == ".db" and pid.isdigit():
            files.setdefault(int(pid), []).append(path.name)
    return files


def test_recycled_workers_and_restarted_supervisors_leave_no_files_and_totals_never_drop(
        fresh_service, tmp_path):
    from tests.jobs._helpers import supervisor_of

    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    svc = fresh_service(WEB_WORKERS="2", METRICS_DIR=str(metrics_dir))
    (run_dir,) = metrics_dir.iterdir()
    seen_http, seen_jobs = 0.0, 0.0
    dead_pids: set[int] = set()
    for round_no in range(3):
        resp = upload(svc, unique_text(), name=f"round{round_no}.txt")
        assert resp.status_code == 201
        (text_job,) = [j for j in resp.json()["jobs"] if j["type"] == "text"]
        assert wait_job(svc, text_job["id"])["status"] == "done"
        # the supervisor counts the attempt right after it marks the job done
        wait_for(lambda: _totals(svc)[1] >= seen_jobs + 1, timeout=20, message="the job attempt counted")
        http, jobs = _totals(svc)
        assert http > seen_http and jobs >= seen_jobs + 1
        seen_http, seen_jobs = http, jobs

        sup = supervisor_of(svc)
        assert sup is not None and sup.pid in _pid_files(run_dir), "the supervisor writes its own samples"
        victims = [svc.worker_pids()[0], sup.pid]
        # A web worker sums its request counts and writes them every FLUSH_SECONDS: what it
        # counted in the last FLUSH_SECONDS dies with it under SIGKILL (the documented trade
        # of batching). Let the last scrape's count reach the samples first.
        time.sleep(3 * RequestTally.FLUSH_SECONDS)
        for pid in victims:
            os.kill(pid, signal.SIGKILL)
        dead_pids.update(victims)
        wait_for(lambda: not dead_pids & set(_pid_files(run_dir)), timeout=30,
                 message="the dead worker's and supervisor's files folded")
        wait_for(lambda: len(svc.worker_pids()) == 2 and supervisor_of(svc) is not None
                 and supervisor_of(svc).pid not in dead_pids, timeout=60, message="a new worker and supervisor")
        # Nothing counted by a dead process is lost (the scrape itself adds one request).
        http, jobs = _totals(svc)
        assert http >= seen_http + 1 and jobs == seen_jobs, (http, seen_http, jobs, seen_jobs)
        seen_http = http
        live = {*svc.worker_pids(), supervisor_of(svc).pid}
        # Bounded: the live processes' files (counter, histogram, in-flight gauge), two
        # archives and the two lock files; nothing per dead process.
        assert set(_pid_files(run_dir)) <= live
        assert len(list(run_dir.iterdir())) <= 3 * len(live) + 4, sorted(p.name for p in run_dir.iterdir())
    assert {"counter_archive.db", "histogram_archive.db"} <= {p.name for p in run_dir.iterdir()}


def test_a_killed_masters_metrics_directory_is_removed_by_the_next_start(fresh_service, tmp_path):
    from tests.support.service import kill_service_tree

    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    first = fresh_service(METRICS_DIR=str(metrics_dir))
    (first_dir,) = metrics_dir.iterdir()
    second = fresh_service(METRICS_DIR=str(metrics_dir))  # a second live instance sharing the parent
    assert len(list(metrics_dir.iterdir())) == 2, "the live instance's directory is left alone"
    kill_service_tree(first)  # no on_exit: the directory stays behind
    assert first_dir.exists()
    third = fresh_service(METRICS_DIR=str(metrics_dir))
    assert not first_dir.exists()
    assert len(list(metrics_dir.iterdir())) == 2
    for svc in (second, third):
        assert _scrape(svc)["falconproc_build_info"]
