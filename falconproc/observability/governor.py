"""The memory governor: one view of the whole process tree's memory, and the
decisions made from it (admit a job or make it wait; accept an upload or 503)."""
from __future__ import annotations

import threading
import time
from collections.abc import Callable

from falconproc.config import Settings
from falconproc.errors import ServiceOverloaded
from falconproc.observability.memory import MemoryReading, read_memory

READING_TTL_SECONDS = 0.5


class MemoryGovernor:
    def __init__(self, settings: Settings, reader: Callable[[], MemoryReading] = read_memory,
                 clock: Callable[[], float] = time.monotonic):
        self.configured_limit = settings.memory_limit_bytes
        self.headroom = settings.memory_headroom_bytes
        self.high_water_fraction = settings.memory_high_water
        self._reader = reader
        self._clock = clock
        self._lock = threading.Lock()
        self._cached: tuple[float, MemoryReading] | None = None

    def reading(self, *, fresh: bool = False) -> MemoryReading:
        # psutil over a dozen processes costs about a millisecond: cache it briefly.
        with self._lock:
            now = self._clock()
            if fresh or self._cached is None or now - self._cached[0] > READING_TTL_SECONDS:
                self._cached = (now, self._reader())
            return self._cached[1]

    def used(self) -> int:
        return self.reading().used

    # The limit comes with each reading: a cgroup memory.max below MEMORY_LIMIT_BYTES
    # caps it (and can be changed at run time, e.g. by `docker update`).
    def limit_of(self, reading: MemoryReading) -> int:
        return reading.limit(self.configured_limit)

    def high_water_of(self, reading: MemoryReading) -> int:
        return int(self.limit_of(reading) * self.high_water_fraction)

    @property
    def limit(self) -> int:
        return self.limit_of(self.reading())

    @property
    def high_water(self) -> int:
        return self.high_water_of(self.reading())

    def admits_job(self, estimate: int, *, pending_estimates: int = 0) -> bool:
        """A job starts only if what is in use, plus what admitted jobs may still grow
        into, plus its own estimate fits under the limit minus the headroom."""
        reading = self.reading()
        return reading.used + pending_estimates + estimate <= self.limit_of(reading) - self.headroom

    def throttling(self) -> bool:
        reading = self.reading()
        return reading.used > self.high_water_of(reading)

    def check_upload(self) -> None:
        if self.throttling():
            raise ServiceOverloaded("the service is under memory pressure; retry shortly", retry_after=5)

    def over_limit(self) -> bool:
        """Past the point where the kernel may kill us: the supervisor sheds jobs."""
        reading = self.reading(fresh=True)
        return reading.used > self.limit_of(reading) - self.headroom // 2
