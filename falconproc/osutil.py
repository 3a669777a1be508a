"""Small Linux process helpers."""
from __future__ import annotations

import ctypes
import math
import os
import signal

PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """Ask Linux to send ``sig`` (default SIGKILL) to this process when its parent dies,
    so that killing a job process (timeout, memory) never leaves its helpers running as
    orphans."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, sig)
    except (OSError, AttributeError):
        pass


def available_cpus(cgroup_cpu_max: str = "/sys/fs/cgroup/cpu.max") -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup v2 CPU quota
    (``docker --cpus``), which the affinity mask does not show."""
    cpus = len(os.sched_getaffinity(0))
    try:
        with open(cgroup_cpu_max) as fh:
            quota, period = fh.read().split()[:2]
        if quota != "max":
            cpus = min(cpus, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return cpus
