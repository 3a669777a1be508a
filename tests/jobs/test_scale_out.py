"""Black-box: instances sharing one S3 bucket (a real Ceph RGW) and one Redis, each with
its own empty local directories. One is SIGKILLed, process tree and all, while its jobs
run; the survivor finishes them, and a third instance started afterwards serves
everything. Redis restarted under load: the jobs resume. Redis down at upload time: the
upload is stored and answered, its jobs run once Redis is back."""
from __future__ import annotations

import signal
import time
import uuid
from pathlib import Path

import psutil
import requests

from falconproc.queue import DONE
from tests.jobs._helpers import read_joblog
from tests.support.content import sha256, unique_png, unique_text
from tests.support.http import get_original, health, upload
from tests.support.jobs import JOB_PLUGINS, open_service_queue, random_hash
from tests.support.wait import wait_for


def _shared_env(s3_server, s3_bucket, redis_server, tmp_path, db: int) -> dict[str, str]:
    return {**s3_server.service_env(s3_bucket, prefix=f"scale-{uuid.uuid4().hex[:10]}"),
            "QUEUE_BACKEND": "redis", "REDIS_URL": f"redis://127.0.0.1:{redis_server.port}/{db}",
            # The test job types log to QUEUE_PATH/../joblog: one shared log (and per-job
            # flock) for all instances shows any attempt overlapping another.
            "QUEUE_PATH": str(tmp_path / "shared" / "queue"), "JOB_PLUGINS": JOB_PLUGINS,
            "JOB_LEASE_SECONDS": "3", "JOB_CONCURRENCY": "work=2,image=2,text=2,ocr=1", "WEB_WORKERS": "2",
            "LOG_LEVEL": "info"}  # the supervisors' job lines, for a failure's message


def _kill_tree(svc) -> None:
    """SIGKILL the master and every descendant at once (a host crash, as far as the
    instance can tell)."""
    root = psutil.Process(svc.proc.pid)
    procs = [root, *root.children(recursive=True)]
    for proc in procs:
        try:
            proc.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(procs, timeout=10)
    svc.proc.wait()
    svc.proc = None


def _pids(svc) -> set[int]:
    root = psutil.Process(svc.proc.pid)
    return {root.pid, *(p.pid for p in root.children(recursive=True))}


def _served(svc, content_hash: str, data: bytes, kind: str) -> bool:
    if get_original(svc, content_hash).content != data:
        return False
    try:
        if kind == "png":
            # A render lock the killed instance held (Redis, free within its 6 s
            # expiry once no longer renewed) may make a survivor wait, or answer 503:
            # not yet served.
            resp = requests.get(f"{svc.url}/cache/{content_hash}/thumbnail", timeout=45)
            return resp.status_code == 200 and resp.content[:4] == b"RIFF"
        resp = requests.get(f"{svc.url}/cache/{content_hash}/text", timeout=45)
    except requests.Timeout:
        return False
    return resp.status_code == 200 and resp.text.strip() == data.decode().strip()


def test_an_instance_killed_mid_job_loses_nothing_and_a_fresh_one_serves_everything(
        fresh_service, s3_server, s3_bucket, redis_server, tmp_path):
    env = _shared_env(s3_server, s3_bucket, redis_server, tmp_path, db=1)
    a = fresh_service(**env, INSTANCE_ID="a")
    b = fresh_service(**env, INSTANCE_ID="b")
    queue = open_service_queue(a)
    files = []
    for n in range(8):  # uploads alternate between the instances
        data, kind = (unique_png(120 + n, 90), "png") if n % 2 else (unique_text(30), "text")
        resp = upload(a if n % 2 else b, data, name=f"f{n}.{'png' if kind == 'png' else 'txt'}")
        assert resp.status_code == 201, resp.text
        files.append((sha256(data), data, kind))
    work = [queue.enqueue("work", random_hash(), payload={"seconds": 1.5}) for _ in range(8)]

    # Wait for one of a's job processes to be running a job, then kill all of a at once.
    wait_for(lambda: any(e["event"] == "start" and e["pid"] in _pids(a)
                         for e in read_joblog(tmp_path / "shared" / "queue", "work")),
             90, message="a job running on instance a")  # an event: a loaded machine starts slowly
    _kill_tree(a)

    try:
        wait_for(lambda: all(queue.get(j.id).status == DONE for j in work), 90, 0.2,
                 "every work job done by the survivor")
    except AssertionError as exc:  # what the survivor was doing instead
        states = [(j.id[-8:], queue.get(j.id).status, queue.get(j.id).claimed_by) for j in work]
        raise AssertionError(f"{exc}\njobs: {states}\nqueue: {queue.stats()}\nsurvivor's memory: "
                             f"{health(b)['memory']}\nits log:\n{b.log(6000)}") from None
    events = read_joblog(tmp_path / "shared" / "queue", "work")
    assert not [e for e in events if e["event"] == "start" and e["overlap"]], "an attempt overlapped another"
    ended = {e["id"] for e in events if e["event"] == "end"}
    assert ended == {j.id for j in work}
    killed = {j.id for j in work if queue.get(j.id).attempts > 1}
    assert killed, "no job was running on the killed instance"

    c = fresh_service(**env, INSTANCE_ID="c")  # empty local directories
    for svc in (b, c):
        for content_hash, data, kind in files:
            wait_for(lambda: _served(svc, content_hash, data, kind), 150, 0.2,
                     f"{kind} {content_hash[:8]} served by {svc.env['INSTANCE_ID']}")


def test_redis_restarted_under_load_jobs_resume(fresh_service, s3_server, s3_bucket, redis_server, tmp_path):
    env = _shared_env(s3_server, s3_bucket, redis_server, tmp_path, db=2)
    svc = fresh_service(**env, INSTANCE_ID="r")
    queue = open_service_queue(svc)
    jobs = [queue.enqueue("work", random_hash(), payload={"seconds": 0.5}) for _ in range(10)]
    wait_for(lambda: sum(queue.get(j.id).status == DONE for j in jobs) >= 2, 60, 0.1, "the first jobs done")

    redis_server.restart()  # append-only file: the queue survives; clients reconnect
    later = [queue.enqueue("work", random_hash(), payload={"seconds": 0.2}) for _ in range(3)]
    wait_for(lambda: all(queue.get(j.id).status == DONE for j in jobs + later), 90, 0.2,
             "every job done after the restart")
    events = read_joblog(tmp_path / "shared" / "queue", "work")
    assert not [e for e in events if e["event"] == "start" and e["overlap"]], "an attempt overlapped another"
    data = unique_text()
    resp = upload(svc, data)
    assert resp.status_code == 201, resp.text
    for job in resp.json()["jobs"]:
        wait_for(lambda job=job: queue.get(job["id"]).status == DONE, 60, 0.2, "the upload's job done")


def test_redis_down_at_upload_stores_it_and_its_jobs_run_once_redis_is_back(
        fresh_service, s3_server, s3_bucket, tmp_path):
    from falconproc.config import Settings
    from falconproc.wiring import Components
    from tests.support.servers import start_redis_server

    redis = start_redis_server(tmp_path / "redis")  # private: this test stops it
    try:
        env = {**s3_server.service_env(s3_bucket, prefix=f"down-{uuid.uuid4().hex[:10]}"),
               "QUEUE_BACKEND": "redis", "REDIS_URL": redis.url, "WEB_WORKERS": "2"}
        svc = fresh_service(**env, INSTANCE_ID="d")
        peer = fresh_service(**env, INSTANCE_ID="e", RUN_SUPERVISOR="0")  # stores, runs no jobs
        redis.stop()

        texts = [unique_text() for _ in range(3)]
        for i, data in enumerate(texts):  # on both instances: no 500, nothing lost
            resp = upload(peer if i % 2 else svc, data, name=f"down{i}.txt",
                          headers={"X-Request-ID": f"while-redis-down-{i}"})
            assert resp.status_code == 201, resp.text
            body = resp.json()
            assert body["isNew"] and body["jobs"] == [] and body["jobsDeferred"] is True, body
            assert get_original(svc, sha256(data)).content == data
        again = upload(svc, texts[0], name="again.txt")  # a duplicate has no jobs to defer
        assert again.status_code == 200 and again.json()["isNew"] is False and "jobsDeferred" not in again.json()

        report = health(svc)
        assert report["status"] == "degraded" and "queue_unavailable" in report["reasons"], report
        job = requests.get(f"{svc.url}/jobs/00-{'1' * 20}-text-{'a' * 8}", timeout=10)
        assert job.status_code == 503 and job.json()["error"] == "queue_unavailable"
        assert int(job.headers["Retry-After"]) > 0
        text = requests.get(f"{svc.url}/cache/{sha256(texts[1])}/text", timeout=30)
        assert text.status_code in (202, 503), text.text  # not made yet; never a 500

        # The jobs were noted in the bucket, for whichever instance's supervisor runs first.
        cache = Components(Settings.from_env(svc.env)).cache
        assert set(cache.deferred_jobs()) == {sha256(data) for data in texts}
        assert cache.deferred_jobs()[sha256(texts[0])]["requestId"] == "while-redis-down-0"

        redis.start()
        wait_for(lambda: cache.deferred_jobs() == {}, 60, 0.5, "the supervisor to queue the deferred jobs")
        queue = open_service_queue(svc)
        for data in texts:  # queued by the supervisor, then run
            wait_for(lambda data=data: requests.get(f"{svc.url}/cache/{sha256(data)}/text", timeout=30).text
                     .strip() == data.decode().strip(), 90, 0.5, "the deferred text job done")
        assert health(svc)["status"] == "ok"
        # Nothing dead-lettered: job processes forked by a supervisor that had used the
        # bucket (to read the deferred notes) once shared its S3 connections and failed.
        stats = queue.stats()
        assert stats["dead"] == 0 and stats["done"] >= len(texts), stats
    finally:
        redis.stop()


def _server_process(pid_file: Path) -> psutil.Process:
    return psutil.Process(int(pid_file.read_text()))


def test_the_supervisor_keeps_running_jobs_while_the_object_store_stalls(
        fresh_service, s3_server, s3_bucket, redis_server, tmp_path):
    """The RGW stopped (SIGSTOP: connections accepted, nothing answered) for longer than
    the supervisor's periodic bucket reads take to come round: jobs are still claimed
    and run, long before any S3 read could time out."""
    env = _shared_env(s3_server, s3_bucket, redis_server, tmp_path, db=3)
    svc = fresh_service(**env, INSTANCE_ID="s")
    queue = open_service_queue(svc)
    first = queue.enqueue("work", random_hash(), payload={"seconds": 0.05})
    wait_for(lambda: queue.get(first.id).status == DONE, 60, 0.1, "the supervisor running jobs")

    rgw = _server_process(s3_server.state_dir / "run" / "rgw.pid")
    rgw.suspend()
    try:
        stalled_at = time.monotonic()
        for round_ in range(3):  # over 10 s: past the 5 s between two looks for deferred jobs
            jobs = [queue.enqueue("work", random_hash(), payload={"seconds": 0.2}) for _ in range(3)]
            wait_for(lambda: all(queue.get(j.id).status == DONE for j in jobs), 8, 0.1,
                     f"round {round_}: jobs done while the S3 server is stopped")
            time.sleep(max(0.0, stalled_at + 4 * (round_ + 1) - time.monotonic()))
        assert rgw.status() == psutil.STATUS_STOPPED  # it really was stalled the whole time
    finally:
        rgw.resume()
    # The bucket reads that waited on it end (time out) without harm: jobs still run.
    after = queue.enqueue("work", random_hash(), payload={"seconds": 0.05})
    wait_for(lambda: queue.get(after.id).status == DONE, 60, 0.1, "a job after the S3 server resumed")


def test_a_stalled_redis_does_not_stop_the_supervisor_from_enforcing_limits(fresh_service, tmp_path):
    """Redis stopped (SIGSTOP: connections accepted, nothing answered) while a job runs
    past its timeout: the supervisor's calls to Redis give up within their bound, its loop
    goes on and kills the job (with what it started) while Redis is still stalled, and
    the long turn is logged with the step that took the time. A job that finished during
    the stall is reported once Redis answers: done after one attempt, not run again."""
    from tests.support.servers import start_redis_server

    redis = start_redis_server(tmp_path / "redis")  # private: this test stops it
    try:
        svc = fresh_service(QUEUE_BACKEND="redis", REDIS_URL=redis.url, JOB_PLUGINS=JOB_PLUGINS,
                            QUEUE_PATH=str(tmp_path / "shared" / "queue"), JOB_TIMEOUTS="spawn=2",
                            JOB_LEASE_SECONDS="3", INSTANCE_ID="t")
        queue = open_service_queue(svc)
        queue.enqueue("spawn", random_hash(), payload={"seconds": 300})
        work = queue.enqueue("work", random_hash(), payload={"seconds": 1.0})
        start = wait_for(lambda: [e for e in read_joblog(tmp_path / "shared" / "queue", "spawn")
                                  if e["event"] == "start"], 60, 0.1, "the spawn job running")[0]
        child = psutil.Process(start["child"])
        wait_for(lambda: read_joblog(tmp_path / "shared" / "queue", "work"), 30, 0.05, "the work job running")

        server = psutil.Process(redis.proc.pid)
        server.suspend()
        try:
            # Unbounded, a heartbeat would wait redis-py's eleven tries of the socket timeout.
            wait_for(lambda: not child.is_running() or child.status() == psutil.STATUS_ZOMBIE, 20, 0.2,
                     "the timed-out job's child killed while Redis is stalled")
            assert server.status() == psutil.STATUS_STOPPED
            assert [e["event"] for e in read_joblog(tmp_path / "shared" / "queue", "work")] == ["start", "end"]
        finally:
            server.resume()
        wait_for(lambda: queue.get(work.id).status == DONE, 30, 0.1, "the work job reported done")
        assert queue.get(work.id).attempts == 1
        wait_for(lambda: "a supervisor loop turn took" in svc.log(20000), 10, 0.2, "the slow turn logged")
        assert [e["event"] for e in read_joblog(tmp_path / "shared" / "queue", "work")] == ["start", "end"]
    finally:
        redis.stop()
