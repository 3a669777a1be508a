"""The render lock instances share through Redis (STORAGE_BACKEND=s3 with REDIS_URL),
against a real redis-server: short, renewed by its holder while it renders. A holder
SIGKILLed mid-render frees it within the expiry (not minutes of 503s for that preset);
a render much longer than the expiry keeps it, so no two instances render at once.

Each instance is a process of its own (tests/store/_helpers.py) with its own local
directories, so the per-host flock plays no part: only Redis keeps them apart."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from falconproc.errors import ServiceOverloaded
from falconproc.wiring import RENDER_LOCK_EXPIRY
from tests.store._helpers import RENDERED, instance_components
from tests.support.jobs import random_hash

# Short for the tests; the renewal (a quarter of it) must still beat a loaded machine.
EXPIRY = 3.0
ROOT = Path(__file__).resolve().parents[2]


def _holder(redis_url: str, base: Path, name: str, content_hash: str, hold: float, log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tests.store._helpers", redis_url, str(base), name, str(EXPIRY),
                             content_hash, str(hold), str(log)],
                            cwd=ROOT, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def _events(log: Path) -> list[tuple[str, str, float]]:
    return [(kind, name, float(at)) for kind, name, at in (line.split() for line in log.read_text().splitlines())]


def test_the_production_expiry_is_seconds_not_minutes():
    assert 2.0 <= RENDER_LOCK_EXPIRY <= 10.0


def test_a_sigkilled_holders_lock_is_taken_over_within_the_expiry(redis_server, tmp_path):
    content_hash, log = random_hash(), tmp_path / "renders.log"
    holder = _holder(redis_server.url, tmp_path, "a", content_hash, -1, log)
    try:
        assert holder.stdout.readline().strip() == "held"
        other = instance_components(redis_server.url, tmp_path, "b", EXPIRY).cache
        # Held past twice its expiry (renewed): the other instance is refused all along.
        until = time.monotonic() + 2 * EXPIRY
        refusals = 0
        while time.monotonic() < until:
            with pytest.raises(ServiceOverloaded):
                with other.exclusive(content_hash, RENDERED, timeout=0.2):
                    pass
            refusals += 1
            time.sleep(0.3)
        assert refusals >= 5
        assert holder.poll() is None

        holder.send_signal(signal.SIGKILL)
        holder.wait()
        killed_at = time.monotonic()
        with other.exclusive(content_hash, RENDERED, timeout=EXPIRY + 10):
            waited = time.monotonic() - killed_at
        # Free once the last renewal's expiry ran out: at most EXPIRY after the kill
        # (plus redis-py's 0.1 s polling and a loaded machine's scheduling).
        assert waited <= EXPIRY + 1.5, f"took {waited:.1f} s to take over a dead holder's lock"
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


def test_a_render_longer_than_the_expiry_is_never_done_twice_at_once(redis_server, tmp_path):
    content_hash, log = random_hash(), tmp_path / "renders.log"
    render_seconds = 3 * EXPIRY
    first = _holder(redis_server.url, tmp_path, "a", content_hash, render_seconds, log)
    try:
        assert first.stdout.readline().strip() == "held"
        second = _holder(redis_server.url, tmp_path, "b", content_hash, 0.5, log)
        assert second.stdout.readline().strip() == "held"  # waits out the first render
        assert first.wait(30) == 0 and second.wait(30) == 0
    finally:
        for proc in (first, locals().get("second")):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
    events = _events(log)
    assert [(kind, name) for kind, name, _ in events] == [("start", "a"), ("end", "a"), ("start", "b"), ("end", "b")]
    (_, _, a_start), (_, _, a_end), (_, _, b_start), _ = events
    assert a_end - a_start >= render_seconds
    assert b_start >= a_end


def test_a_released_lock_is_free_at_once_and_its_renewal_stops(redis_server, tmp_path):
    import redis

    content_hash = random_hash()
    cache = instance_components(redis_server.url, tmp_path, "a", EXPIRY).cache
    client = redis.Redis.from_url(redis_server.url)
    with cache.exclusive(content_hash, RENDERED, timeout=1):
        key = next(iter(client.scan_iter(f"falconproc:render:{content_hash}:*")))
        time.sleep(EXPIRY * 0.75)
        assert client.pttl(key) > EXPIRY * 1000 / 2  # renewed, not running down
    assert client.exists(key) == 0
    time.sleep(EXPIRY / 2)  # a renewal after the release would have recreated it
    assert client.exists(key) == 0
