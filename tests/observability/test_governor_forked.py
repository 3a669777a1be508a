"""The memory governor on a tree of forked processes (no cgroup v2: the tree's own figure).

A forked process shares its parent's pages copy-on-write until one of them writes: the
quick tree figure (statm: private + the largest file-backed part once) counts those
pages once per process. With the supervisor's idle job processes of five types it read
1.17 GB for a tree that fitted easily, and every job waited. What the governor decides
on must count such pages once (the tree's PSS), and still count pages each process
really owns.
"""
from __future__ import annotations

import functools
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from falconproc.observability import memory as memory_module
from falconproc.observability.governor import MemoryGovernor
from falconproc.observability.memory import read_memory
from tests.support.inprocess import unit_settings

MiB = 1024 * 1024
HELD = 160 * MiB
CHILDREN = 4

# A root holding HELD bytes (written: resident) forks CHILDREN processes; with "write" each
# child writes every page of its copy (now its own), with "read" none does.
_TREE = f"""
import os, sys, time
held = bytearray(b"\\x01") * {HELD}
ready_r, ready_w = os.pipe()
for _ in range({CHILDREN}):
    if os.fork() == 0:
        if sys.argv[1] == "write":
            for offset in range(0, len(held), 4096):
                held[offset] = 2
        os.write(ready_w, b"x")
        time.sleep(120)
        os._exit(0)
got = 0
while got < {CHILDREN}:
    got += len(os.read(ready_r, {CHILDREN}))
print("ready", flush=True)
time.sleep(120)
"""


@pytest.fixture
def tree(monkeypatch, tmp_path):
    started = []

    def start(mode: str) -> MemoryGovernor:
        proc = subprocess.Popen([sys.executable, "-c", _TREE, mode], stdout=subprocess.PIPE, text=True)
        started.append(proc)
        assert proc.stdout.readline().strip() == "ready"
        monkeypatch.setattr(memory_module, "service_root_pid", lambda: proc.pid)
        self_cgroup = tmp_path / "proc-self-cgroup"
        self_cgroup.write_text("12:memory:/user.slice\n")  # cgroup v1: the tree's own figure
        reader = functools.partial(read_memory, cgroup_root=tmp_path / "no-cgroup", self_cgroup=self_cgroup)
        settings = unit_settings(Path("/nonexistent"), memory_limit_bytes=512 * MiB,
                                 memory_headroom_bytes=64 * MiB, memory_high_water=0.85)
        # A clock that stands still: each reading is kept until a decision asks for a fresh one.
        return MemoryGovernor(settings, reader=reader, proportional_reader=functools.partial(reader, proportional=True),
                              clock=lambda: 0.0)

    yield start
    for proc in started:
        for child in psutil.Process(proc.pid).children():
            child.kill()
        proc.kill()
        proc.wait()


def test_pages_shared_copy_on_write_count_once(tree):
    governor = tree("read")
    quick = governor.reading()
    assert quick.processes == 1 + CHILDREN
    assert quick.used >= (1 + CHILDREN) * HELD * 0.9  # the quick figure: once per process
    proportional = governor.reading(proportional=True)
    assert HELD <= proportional.used < 2 * HELD
    assert governor.admits_job(64 * MiB)  # fits: 512 MiB - 64 MiB headroom
    assert not governor.throttling()
    assert governor.pressure_reading().used == proportional.used  # what /health shows
    assert not governor.over_limit()  # (a fresh reading)


def test_pages_each_process_wrote_count_per_process(tree):
    governor = tree("write")
    assert governor.reading(proportional=True).used >= (1 + CHILDREN) * HELD * 0.9
    assert not governor.admits_job(64 * MiB)
    assert governor.throttling()
    assert governor.over_limit()
