"""available_cpus: the affinity mask, capped by a cgroup v2 CPU quota."""
from __future__ import annotations

import os

from falconproc.osutil import available_cpus


def test_without_a_quota_it_is_the_affinity_mask(tmp_path):
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert available_cpus(str(tmp_path / "cpu.max")) == len(os.sched_getaffinity(0))
    assert available_cpus(str(tmp_path / "missing")) == len(os.sched_getaffinity(0))


def test_a_quota_caps_it_rounding_up(tmp_path):
    (tmp_path / "cpu.max").write_text("50000 100000\n")  # docker --cpus=0.5
    assert available_cpus(str(tmp_path / "cpu.max")) == 1
    (tmp_path / "cpu.max").write_text("150000 100000\n")  # --cpus=1.5
    assert available_cpus(str(tmp_path / "cpu.max")) == min(2, len(os.sched_getaffinity(0)))


def test_garbage_is_ignored(tmp_path):
    (tmp_path / "cpu.max").write_text("nonsense\n")
    assert available_cpus(str(tmp_path / "cpu.max")) == len(os.sched_getaffinity(0))
