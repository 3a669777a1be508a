"""Memory of the whole service process tree, as psutil and cgroup v2 see it.

psutil reports the host's memory inside a container; cgroup v2's
memory.current / memory.max are the container's truth when present.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import psutil

from falconproc.observability.runtime import service_root_pid

CGROUP_ROOT = Path("/sys/fs/cgroup")


@dataclass(frozen=True)
class MemoryReading:
    tree_rss: int  # sum of RSS over the service's processes
    processes: int
    cgroup_current: int | None
    cgroup_max: int | None

    @property
    def used(self) -> int:
        """The figure the kernel's OOM killer would judge us by, as best we know it."""
        return self.cgroup_current if self.cgroup_current is not None else self.tree_rss


def _read_int(path: Path) -> int | None:
    try:
        raw = path.read_text().strip()
    except OSError:
        return None
    return int(raw) if raw.isdigit() else None


def cgroup_memory() -> tuple[int | None, int | None]:
    """(memory.current, memory.max) of this process's cgroup v2, or None where absent/unlimited."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None, None
    for line in lines:
        if line.startswith("0::"):
            group = CGROUP_ROOT / line[3:].lstrip("/")
            return _read_int(group / "memory.current"), _read_int(group / "memory.max")
    return None, None


def read_memory() -> MemoryReading:
    try:
        root = psutil.Process(service_root_pid())
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        procs = [psutil.Process()]
    total = 0
    counted = 0
    for proc in procs:
        try:
            total += proc.memory_info().rss
            counted += 1
        except psutil.Error:  # exited between listing and reading
            continue
    current, maximum = cgroup_memory()
    return MemoryReading(total, counted, current, maximum)
