"""The /health report."""
from __future__ import annotations

from typing import Any, Callable

from falconproc.native import ingest as native_ingest
from falconproc.config import Settings
from falconproc.observability.governor import MemoryGovernor
from falconproc.observability.runtime import uptime_seconds
from falconproc.queue import DEAD, QUEUED, RETRYING, RUNNING, QueueUnavailable
from falconproc.store import ContentStore


# A supervisor turns its loop several times a second; one that has not for this long
# (or half SUPERVISOR_STALL_TIMEOUT, when shorter) is reported before the keeper restarts it.
SUPERVISOR_STALLED_AFTER = 30.0


class HealthService:
    def __init__(self, settings: Settings, store: ContentStore, queue_stats: Callable[[], dict[str, int]],
                 governor: MemoryGovernor, checks: dict[str, Callable[[], bool]] | None = None,
                 supervisor_turn: Callable[[], float | None] | None = None):
        self.settings = settings
        # Seconds since this instance's job supervisor last turned its loop (None: none runs).
        self.supervisor_turn = supervisor_turn
        stall = settings.supervisor_stall_timeout
        self.stalled_after = min(SUPERVISOR_STALLED_AFTER, stall / 2) if stall else SUPERVISOR_STALLED_AFTER
        # reason -> check: a failing one degrades the report (clamd down: scans wait, retried)
        self.checks = dict(checks or {})
        self.store = store
        self.queue_stats = queue_stats
        self.governor = governor

    def report(self) -> dict[str, Any]:
        memory = self.governor.pressure_reading()  # what throttling is decided on
        limit = self.governor.limit_of(memory)
        high_water = self.governor.high_water_of(memory)
        degraded = []
        storage: dict[str, Any] = {}
        try:
            files, total = self.store.usage()
        except Exception as exc:  # a remote store that does not answer: say so, keep answering
            degraded.append("storage_unavailable")
            files = total = None
            storage["error"] = f"{type(exc).__name__}: {exc}"[:300]
        available = self.store.free_space()
        try:
            queue = self.queue_stats()
            queue_report: dict[str, Any] = {
                # v1's names: pending = queued + retrying, processing = running ...
                "pending": queue[QUEUED] + queue[RETRYING], "processing": queue[RUNNING],
                "retrying": queue[RETRYING], "dead": queue[DEAD],
                # ... and failed, kept for v1 clients: a deprecated alias of dead
                "failed": queue[DEAD],
            }
        except QueueUnavailable as exc:  # Redis down: uploads are stored, their jobs deferred
            degraded.append("queue_unavailable")
            queue_report = {"error": str(exc)[:300]}
        if available < self.settings.storage_reserve_bytes:
            degraded.append("storage_low")
        if memory.used > high_water:
            degraded.append("memory_pressure")  # uploads are being answered 503
        degraded.extend(reason for reason, ok in self.checks.items() if not ok())
        supervisor = self._supervisor(degraded)
        return {
            "status": "degraded" if degraded else "ok",
            "reasons": degraded,
            "uptime": round(uptime_seconds(), 3),
            "implementation": native_ingest.IMPLEMENTATION,
            "memory": {
                "rss": memory.tree_rss,
                # MEMORY_LIMIT_BYTES, or the cgroup's memory.max when smaller
                "limit": limit,
                # in a cgroup v2: cgroupCurrent minus the reclaimable page cache
                "used": memory.used,
                "highWater": high_water,
                "throttling": memory.used > high_water,
                "processes": memory.processes,
                "cgroupCurrent": memory.cgroup_current,
                "cgroupMax": memory.cgroup_max,
                "cgroupInactiveFile": memory.cgroup_inactive_file,
            },
            "storage": {"files": files, "totalSize": total, "availableSpace": available, **storage},
            "queue": queue_report,
            **supervisor,
        }

    def _supervisor(self, degraded: list[str]) -> dict[str, Any]:
        ago = self.supervisor_turn() if self.supervisor_turn is not None else None
        if ago is None:
            return {}
        if ago > self.stalled_after:
            degraded.append("supervisor_stalled")  # no job starts or ends meanwhile
        return {"supervisor": {"lastTurnSecondsAgo": round(ago, 1)}}
