"""The memory governor: one view of the whole process tree's memory, and the
decisions made from it (admit a job or make it wait; accept an upload or 503)."""
from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable

from falconproc.config import Settings
from falconproc.errors import ServiceOverloaded
from falconproc.observability.memory import MemoryReading, read_memory

READING_TTL_SECONDS = 0.5


class MemoryGovernor:
    def __init__(self, settings: Settings, reader: Callable[[], MemoryReading] = read_memory,
                 clock: Callable[[], float] = time.monotonic,
                 proportional_reader: Callable[[], MemoryReading] | None = None):
        self.configured_limit = settings.memory_limit_bytes
        self.headroom = settings.memory_headroom_bytes
        self.high_water_fraction = settings.memory_high_water
        self._reader = reader
        # The tree's PSS (memory.read_memory): asked for only when the quick reading would
        # refuse something. A caller that supplies its own reader gets it for both.
        if proportional_reader is None:
            proportional_reader = functools.partial(read_memory, proportional=True) if reader is read_memory \
                else reader
        self._proportional_reader = proportional_reader
        self._clock = clock
        self._lock = threading.Lock()
        self._cached: dict[bool, tuple[float, MemoryReading]] = {}

    def reading(self, *, fresh: bool = False, proportional: bool = False) -> MemoryReading:
        # psutil over a dozen processes costs about a millisecond (PSS: ~1 ms per process):
        # cache it briefly.
        with self._lock:
            now = self._clock()
            cached = self._cached.get(proportional)
            if fresh or cached is None or now - cached[0] > READING_TTL_SECONDS:
                cached = (now, (self._proportional_reader if proportional else self._reader)())
                self._cached[proportional] = cached
            return cached[1]

    def _judged(self, refuses: Callable[[MemoryReading], bool], *, fresh: bool = False) -> MemoryReading:
        """The reading a decision stands on: the quick one, unless it would refuse on the
        tree's own figure (an upper bound: copy-on-write pages counted per process), then
        the tree's PSS."""
        reading = self.reading(fresh=fresh)
        if reading.cgroup_current is None and refuses(reading):
            return self.reading(fresh=fresh, proportional=True)
        return reading

    def pressure_reading(self) -> MemoryReading:
        """The reading /health shows: the one throttling() decides on."""
        return self._judged(self._over_high_water)

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
        def refuses(reading: MemoryReading) -> bool:
            return reading.used + pending_estimates + estimate > self.limit_of(reading) - self.headroom

        return not refuses(self._judged(refuses))

    def _over_high_water(self, reading: MemoryReading) -> bool:
        return reading.used > self.high_water_of(reading)

    def throttling(self) -> bool:
        return self._over_high_water(self.pressure_reading())

    def check_upload(self) -> None:
        if self.throttling():
            raise ServiceOverloaded("the service is under memory pressure; retry shortly", retry_after=5)

    def over_limit(self) -> bool:
        """Past the point where the kernel may kill us: the supervisor sheds jobs."""
        def over(reading: MemoryReading) -> bool:
            return reading.used > self.limit_of(reading) - self.headroom // 2

        return over(self._judged(over, fresh=True))
