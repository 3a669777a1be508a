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
costly to read; this costs a statm read (figures: benchmarks/README.md).
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

    @property
    def used(self) -> int:
        """The figure the kernel's OOM killer would judge us by, as best we know it."""
        if self.cgroup_current is None:
            return self.tree_rss if self.tree_resident is None else self.tree_resident
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


def read_memory(cgroup_root: Path = CGROUP_ROOT, self_cgroup: Path = SELF_CGROUP) -> MemoryReading:
    try:
        root = psutil.Process(service_root_pid())
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        procs = [psutil.Process()]
    total = private = shared_max = 0
    counted = 0
    for proc in procs:
        try:
            info = proc.memory_info()
        except psutil.Error:  # exited between listing and reading
            continue
        shared = getattr(info, "shared", 0)  # Linux: resident file-backed + shmem pages
        total += info.rss
        private += info.rss - shared
        shared_max = max(shared_max, shared)
        counted += 1
    cgroup = cgroup_memory(cgroup_root, self_cgroup)
    return MemoryReading(total, counted, cgroup.current, cgroup.maximum, cgroup.inactive_file,
                         tree_resident=private + shared_max)
