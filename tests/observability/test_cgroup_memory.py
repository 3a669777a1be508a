"""The memory governor in a cgroup v2 container, from fake cgroup files.

This machine runs cgroup v1, so these files are written to a temp directory and
read_memory() is pointed at it (the cgroup root and /proc/self/cgroup are its
parameters). Page cache must not count as used memory: uploads and preset
writes fill it up to memory.max, and the kernel drops it whenever it needs to.
"""
from __future__ import annotations

import functools
import itertools
import os
from pathlib import Path

import falcon.testing
import pytest

from falconproc.web.app import create_app
from falconproc.observability.governor import MemoryGovernor
from falconproc.observability.memory import MemoryReading, cgroup_memory, read_memory
from falconproc.wiring import Components
from tests.support.content import sha256, text_blob
from tests.support.inprocess import unit_settings
from tests.support.store import stored_entries

MiB = 1024 * 1024
CONFIGURED = 1280 * MiB  # MEMORY_LIMIT_BYTES's default


class FakeCgroup:
    """A cgroup v2 mount with one group, as a container sees its own."""

    def __init__(self, base: Path, group: str = "/"):
        self.root = base / "sys-fs-cgroup"
        self.dir = self.root / group.lstrip("/")
        self.dir.mkdir(parents=True, exist_ok=True)
        self.self_cgroup = base / "proc-self-cgroup"
        self.self_cgroup.write_text(f"0::{group}\n")

    def set(self, *, current: int, maximum: int | str = "max", inactive_file: int | None = None) -> None:
        (self.dir / "memory.current").write_text(f"{current}\n")
        (self.dir / "memory.max").write_text(f"{maximum}\n")
        stat = ["anon 1000", "file 2000", "inactive_anon 10", "active_anon 20"]
        if inactive_file is not None:
            stat += [f"inactive_file {inactive_file}", "active_file 4096"]
        (self.dir / "memory.stat").write_text("\n".join(stat) + "\n")

    def reader(self):
        return functools.partial(read_memory, cgroup_root=self.root, self_cgroup=self.self_cgroup)


def governor(cgroup: FakeCgroup, **settings) -> MemoryGovernor:
    values = {"memory_limit_bytes": CONFIGURED, **settings}
    # a clock that jumps a second per call: every reading is fresh
    return MemoryGovernor(unit_settings(Path("/nonexistent"), **values), reader=cgroup.reader(),
                          clock=itertools.count(0, 1.0).__next__)


def test_working_set_subtracts_inactive_file(tmp_path):
    cg = FakeCgroup(tmp_path, "/system.slice/falconproc.service")
    cg.set(current=900 * MiB, inactive_file=700 * MiB)
    reading = read_memory(cgroup_root=cg.root, self_cgroup=cg.self_cgroup)
    assert reading.cgroup_current == 900 * MiB
    assert reading.cgroup_inactive_file == 700 * MiB
    assert reading.used == 200 * MiB
    assert reading.tree_rss > 0  # psutil's figure is still reported beside it


def test_without_memory_stat_all_of_memory_current_counts(tmp_path):
    """Nothing known to be reclaimable: the cautious figure is the whole of it."""
    cg = FakeCgroup(tmp_path)
    cg.set(current=300 * MiB)
    (cg.dir / "memory.stat").unlink()
    reading = read_memory(cgroup_root=cg.root, self_cgroup=cg.self_cgroup)
    assert reading.cgroup_inactive_file is None
    assert reading.used == 300 * MiB


def test_max_means_no_cap(tmp_path):
    cg = FakeCgroup(tmp_path)
    cg.set(current=100 * MiB, maximum="max", inactive_file=0)
    gov = governor(cg)
    assert gov.reading().cgroup_max is None
    assert gov.limit == CONFIGURED
    assert gov.high_water == int(CONFIGURED * 0.85)


def test_a_smaller_memory_max_caps_the_limit(tmp_path):
    cg = FakeCgroup(tmp_path)
    cg.set(current=250 * MiB, maximum=256 * MiB, inactive_file=5 * MiB)  # working set 245 MiB
    gov = governor(cg, memory_headroom_bytes=32 * MiB)
    assert gov.limit == 256 * MiB
    assert gov.high_water == int(256 * MiB * 0.85)  # 217.6 MiB
    assert gov.throttling(), "245 MiB used of a 256 MiB cgroup must throttle uploads"
    assert not gov.admits_job(16 * MiB)  # 245 + 16 > 256 - 32
    assert gov.over_limit()  # 245 > 256 - 32 / 2: the supervisor sheds a job
    # Under MEMORY_LIMIT_BYTES alone, the same working set is far from any threshold.
    cg.set(current=250 * MiB, maximum="max", inactive_file=5 * MiB)
    assert not gov.throttling() and gov.admits_job(16 * MiB) and not gov.over_limit()


def test_a_larger_memory_max_does_not_raise_the_limit(tmp_path):
    cg = FakeCgroup(tmp_path)
    cg.set(current=100 * MiB, maximum=4096 * MiB, inactive_file=0)
    assert governor(cg).limit == CONFIGURED


def test_page_cache_up_to_memory_max_does_not_throttle(tmp_path):
    """The container case the raw figure got wrong: memory.current at memory.max, nearly
    all of it cache from written files. Uploads, admission and running jobs go on."""
    cg = FakeCgroup(tmp_path)
    cg.set(current=1270 * MiB, maximum=1280 * MiB, inactive_file=1100 * MiB)
    gov = governor(cg)
    assert gov.used() == 170 * MiB
    assert not gov.throttling()
    assert gov.admits_job(256 * MiB)
    assert not gov.over_limit()


@pytest.mark.parametrize("self_cgroup", [
    "12:memory:/user.slice\n1:name=systemd:/user.slice\n",  # pure cgroup v1: no 0:: line
    "12:memory:/user.slice\n0::/\n",  # hybrid: 0:: exists but the v2 mount has no memory files
])
def test_cgroup_v1_falls_back_to_the_process_tree(tmp_path, self_cgroup):
    cg = FakeCgroup(tmp_path)
    cg.self_cgroup.write_text(self_cgroup)
    cgroup = cgroup_memory(cg.root, cg.self_cgroup)
    assert (cgroup.current, cgroup.maximum, cgroup.inactive_file) == (None, None, None)
    reading = read_memory(cgroup_root=cg.root, self_cgroup=cg.self_cgroup)
    assert reading.used == reading.tree_resident
    assert 0 < reading.used <= reading.tree_rss


def test_without_cgroup_shared_pages_count_once(tmp_path, monkeypatch):
    """Three forked children map the same interpreter and libraries as this process:
    summing RSS counts those pages four times, the tree figure once."""
    import multiprocessing
    import time

    import psutil

    from falconproc.observability import memory as memory_module

    monkeypatch.setattr(memory_module, "service_root_pid", os.getpid)
    cg = FakeCgroup(tmp_path)
    cg.self_cgroup.write_text("12:memory:/user.slice\n")  # no cgroup v2: the tree figure is used
    ctx = multiprocessing.get_context("fork")
    children = [ctx.Process(target=time.sleep, args=(30,)) for _ in range(3)]
    for child in children:
        child.start()
    try:
        reading = read_memory(cgroup_root=cg.root, self_cgroup=cg.self_cgroup)
        infos = [psutil.Process(pid).memory_info() for pid in [os.getpid(), *(c.pid for c in children)]]
    finally:
        for child in children:
            child.kill()
            child.join()
    assert reading.processes >= 4
    private = sum(i.rss - i.shared for i in infos)
    assert reading.used >= private + max(i.shared for i in infos) * 0.9
    # The libraries' pages (tens of MB) are no longer counted once per child.
    assert reading.tree_rss - reading.used >= 2 * min(i.shared for i in infos) * 0.9


def test_memory_reading_keeps_its_positional_fields():
    """Callers (and the supervisor tests) build readings without the cgroup's memory.stat."""
    reading = MemoryReading(123, 1, None, None)
    assert reading.used == 123 and reading.limit(CONFIGURED) == CONFIGURED


def _client(tmp_path, cg: FakeCgroup) -> tuple[falcon.testing.TestClient, Path]:
    settings = unit_settings(tmp_path, memory_limit_bytes=CONFIGURED)
    gov = MemoryGovernor(settings, reader=cg.reader(), clock=itertools.count(0, 1.0).__next__)
    components = Components(settings)
    components.governor = gov
    return falcon.testing.TestClient(create_app(components)), settings.file_storage_path


def _post(client, data: bytes):
    return client.simulate_post("/upload", body=data,
                                headers={"x-filename": "notes.txt", "x-drive-id": "d", "x-user-id": "u"})


def test_health_shows_the_working_set_and_the_effective_limit(tmp_path):
    cg = FakeCgroup(tmp_path)
    cg.set(current=500 * MiB, maximum=512 * MiB, inactive_file=400 * MiB)
    client, files = _client(tmp_path, cg)
    report = client.simulate_get("/health").json
    memory = report["memory"]
    assert memory["used"] == 100 * MiB
    assert memory["limit"] == 512 * MiB
    assert memory["highWater"] == int(512 * MiB * 0.85)
    assert memory["cgroupCurrent"] == 500 * MiB
    assert memory["cgroupMax"] == 512 * MiB
    assert memory["cgroupInactiveFile"] == 400 * MiB
    assert memory["rss"] > 0 and memory["throttling"] is False
    assert report["status"] == "ok", report
    data = text_blob("cache-is-not-pressure")
    assert _post(client, data).status_code == 201

    # The same memory.current with little of it reclaimable is real pressure.
    cg.set(current=500 * MiB, maximum=512 * MiB, inactive_file=20 * MiB)
    report = client.simulate_get("/health").json
    assert report["memory"]["used"] == 480 * MiB and report["memory"]["throttling"] is True
    assert report["status"] == "degraded" and "memory_pressure" in report["reasons"]
    refused = _post(client, text_blob("real-pressure"))
    assert refused.status_code == 503 and refused.json["error"] == "overloaded"
    assert refused.headers["Retry-After"]
    assert stored_entries(files) == [sha256(data)]
