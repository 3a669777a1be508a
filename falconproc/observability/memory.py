"""Memory of the whole service process tree, as psutil and cgroup v2 see it.

psutil reports the host's memory inside a container; cgroup v2's files are the
container's truth when present. Raw ``memory.current`` also counts page cache,
which every upload and preset write fills up to ``memory.max`` (the kernel drops
it only when it needs to), so the figure used is the working set: current minus
``inactive_file`` from memory.stat, the cache the kernel reclaims first, as
container runtimes and cAdvisor count it. The rest is what reclaim cannot easily
give back before the kernel OOM-kills something.

Without cgroup v2 the tree's figure is each process's private resident memory plus
the largest shared (file-backed) part once: the web workers, supervisor and job
processes map the same interpreter and libraries (numpy, Pillow, ...), and summing
their RSS counted those pages once per process, about 1.5x the tree's proportional
share (PSS) under load, which made jobs wait for memory that was there. PSS itself is
costly to read; this costs a statm read (figures: benchmarks/README.md). It still counts
the anonymous pages a forked process shares copy-on-write with its parent (a job process
with the supervisor's imports, a web worker with the master's) once per process: with
idle job processes of five types it read 1.17 GB for a tree that fitted easily, and the
governor refused every job. So it is an upper bound, and a decision it would refuse is
checked against the tree's PSS (``read_memory(proportional=True)``, ~1 ms per process).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import psutil

from falconproc.observability.runtime import service_root_pid

CGROUP_ROOT = Path("/sys/fs/cgroup")
SELF_CGROUP = Path("/proc/self/cgroup")


@dataclass(frozen=True)
class MemoryReading:
    tree_rss: int  # sum of RSS over the service's processes (shared pages counted per process)
    processes: int
    cgroup_current: int | None  # memory.current of our cgroup v2
    cgroup_max: int | None  # memory.max, None when "max" (no cap) or absent
    cgroup_inactive_file: int | None = None  # reclaimable page cache, from memory.stat
    tree_resident: int | None = None  # private RSS summed + the largest shared part once
    tree_pss: int | None = None  # proportional set size summed (read only when asked for)

    @property
    def used(self) -> int:
        """The figure the kernel's OOM killer would judge us by, as best we know it."""
        if self.cgroup_current is None:
            for figure in (self.tree_pss, self.tree_resident):
                if figure is not None:
                    return figure
            return self.tree_rss
        return max(self.cgroup_current - (self.cgroup_inactive_file or 0), 0)

    def limit(self, configured: int) -> int:
        """MEMORY_LIMIT_BYTES, or the cgroup's memory.max when that is smaller: the
        kernel enforces memory.max whatever the setting says."""
        return configured if self.cgroup_max is None else min(configured, self.cgroup_max)


@dataclass(frozen=True)
class CgroupMemory:
    current: int | None
    maximum: int | None
    inactive_file: int | None


NO_CGROUP = CgroupMemory(None, None, None)


def _read_int(path: Path) -> int | None:
    try:
        raw = path.read_text().strip()
    except OSError:
        return None
    return int(raw) if raw.isdigit() else None  # "max" (no limit) is None too


def _read_stat(path: Path, key: str) -> int | None:
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        name, _, value = line.partition(" ")
        if name == key and value.strip().isdigit():
            return int(value)
    return None


def cgroup_memory(root: Path = CGROUP_ROOT, self_cgroup: Path = SELF_CGROUP) -> CgroupMemory:
    """memory.current, memory.max and memory.stat's inactive_file of this process's
    cgroup v2 (found under ``root`` by its ``0::`` line in ``self_cgroup``)."""
    try:
        lines = self_cgroup.read_text().splitlines()
    except OSError:
        return NO_CGROUP
    for line in lines:
        if line.startswith("0::"):
            group = root / line[3:].strip().lstrip("/")
            current = _read_int(group / "memory.current")
            if current is None:  # cgroup v1, or no memory controller here
                return NO_CGROUP
            return CgroupMemory(current, _read_int(group / "memory.max"),
                                _read_stat(group / "memory.stat", "inactive_file"))
    return NO_CGROUP


def read_memory(cgroup_root: Path = CGROUP_ROOT, self_cgroup: Path = SELF_CGROUP, *,
                proportional: bool = False) -> MemoryReading:
    """The tree's memory; with ``proportional`` its PSS too (when no cgroup v2 figure
    makes it moot): smaps_rollup per process, ~1 ms each instead of a statm read."""
    try:
        root = psutil.Process(service_root_pid())
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        procs = [psutil.Process()]
    cgroup = cgroup_memory(cgroup_root, self_cgroup)
    proportional = proportional and cgroup.current is None
    total = private = shared_max = pss = 0
    counted = 0
    for proc in procs:
        try:
            # memory_full_info has memory_info's fields too: one read per process, not two.
            info = proc.memory_full_info() if proportional else proc.memory_info()
            if proportional:
                pss += info.pss
        except psutil.Error:  # exited between listing and reading
            continue
        shared = getattr(info, "shared", 0)  # Linux: resident file-backed + shmem pages
        total += info.rss
        private += info.rss - shared
        shared_max = max(shared_max, shared)
        counted += 1
    return MemoryReading(total, counted, cgroup.current, cgroup.maximum, cgroup.inactive_file,
                         tree_resident=private + shared_max, tree_pss=pss if proportional else None)
