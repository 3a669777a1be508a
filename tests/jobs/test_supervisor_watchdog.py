"""Black-box: the keeper's watchdog restarts a job supervisor that hangs.

A supervisor once waited for ever for the queue's lock (a forked job process held it,
see test_locks_across_fork.py): nothing died, so nothing restarted it, and no job ran
again. Here the test itself holds the flat-file queue's lock, as that job process did:
the supervisor blocks in its claim, its alive file goes stale, /health reports it, the
keeper logs every thread's stack, kills it and starts another, which runs jobs once the
lock is free."""
from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from tests.jobs._helpers import supervisor_of
from tests.support.content import unique_png
from tests.support.http import cache_metadata, health, upload
from tests.support.wait import wait_for

STALL_TIMEOUT = 4


def test_a_hung_supervisor_is_killed_with_its_stacks_logged_and_restarted(fresh_service):
    svc = fresh_service(SUPERVISOR_STALL_TIMEOUT=str(STALL_TIMEOUT))
    first = wait_for(lambda: supervisor_of(svc), 10, message="the supervisor")
    # An idle supervisor turns its loop, however long nothing comes: not restarted.
    time.sleep(STALL_TIMEOUT * 2)
    assert supervisor_of(svc).pid == first.pid, "an idle supervisor was taken for a hung one"
    report = health(svc)
    assert report["status"] == "ok" and report["supervisor"]["lastTurnSecondsAgo"] <= 1.5, report

    fd = os.open(svc.base / "queue" / "lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # the supervisor's next claim waits for it
        # /health says so first (after half the timeout), then the keeper acts.
        stalled = wait_for(lambda: (r := health(svc))["status"] == "degraded" and r, STALL_TIMEOUT * 2, 0.05,
                           message="/health reporting the stalled supervisor")
        assert stalled["reasons"] == ["supervisor_stalled"], stalled
        assert stalled["supervisor"]["lastTurnSecondsAgo"] >= STALL_TIMEOUT / 2  # rounded to 0.1 s
        restarted = wait_for(lambda: (s := supervisor_of(svc)) is not None and s.pid != first.pid and s,
                             STALL_TIMEOUT * 4, message="the hung supervisor's replacement")
    finally:
        os.close(fd)
    log = svc.log(200_000)
    assert f"job supervisor {first.pid} has not turned its loop" in log
    # faulthandler's dump: where it hung, so whoever reads the log can tell why.
    assert "in flock_within" in log and "falconproc/queue/flatfile.py" in log
    assert log.count("has not turned its loop") == 1  # killed once, not again while it died

    # The new supervisor does the work.
    resp = upload(svc, unique_png(), name="after.png")
    assert resp.status_code == 201, resp.text
    content_hash = resp.json()["contentHash"]
    wait_for(lambda: cache_metadata(svc, content_hash).get("presets", {}).get("thumbnail"), 60,
             message="a job run by the restarted supervisor")
    assert supervisor_of(svc).pid == restarted.pid
    assert health(svc)["status"] == "ok"

    # The alive file lives in the run's metrics directory and goes with the service.
    cmdline = restarted.cmdline()
    alive = Path(cmdline[cmdline.index("--alive-file") + 1])
    assert alive.exists() and alive.parent.name.startswith("falconproc-metrics-")
    svc.stop()
    assert not alive.exists()
