"""The scan backfill: content stored while SCAN_MODE was off has no verdict, and no
upload will ever queue its scan. The job supervisor sweeps the store once after it
starts (in batches) and queues a `scan` job for every entry whose metadata has no
verdict yet.

Bounded: a batch is queued only while fewer than SCAN_BACKFILL_BATCH jobs wait in the
queue, at the lowest priority, so new uploads' jobs go first and the queue never
fills up with it (MAX_QUEUE_SIZE still admits uploads). Resumable: the state is the
verdict in each entry's metadata, so a restarted (or a second) supervisor sweeps again
and queues only what is still unscanned; the queue's deduplication keeps a scan that
is already queued or running from being queued twice.
"""
from __future__ import annotations

import logging
from collections.abc import Iterator

from falconproc.queue import JobQueue
from falconproc.store import ContentStore, DerivedCache

log = logging.getLogger(__name__)

# After every other job (the queue's priorities run 0..99, lowest number first).
BACKFILL_PRIORITY = 99
# Entries looked at per batch for each scan queued: a batch of a store that is mostly
# scanned already still ends after a bounded number of metadata reads.
LOOKS_PER_JOB = 20


class ScanBackfill:
    def __init__(self, store: ContentStore, cache: DerivedCache, queue: JobQueue, *, batch: int,
                 max_attempts: int):
        self.store = store
        self.cache = cache
        self.queue = queue
        self.batch = batch
        self.max_attempts = max_attempts
        self._hashes: Iterator[str] | None = None
        self.finished = False
        self.queued_total = 0

    def step(self) -> int:
        """One batch of the sweep: how many scans were queued (0 once the sweep is over,
        or while the queue still holds a batch's worth of waiting jobs)."""
        if self.finished:
            return 0
        stats = self.queue.stats()
        if stats.get("queued", 0) + stats.get("retrying", 0) >= self.batch:
            return 0  # the last batch (or other work) is still waiting: no more yet
        if self._hashes is None:
            self._hashes = iter(self.store.iter_hashes())
        queued = looked = 0
        try:
            for content_hash in self._hashes:
                looked += 1
                if self._needs_scan(content_hash):
                    self.queue.enqueue("scan", content_hash, priority=BACKFILL_PRIORITY,
                                       max_attempts=self.max_attempts, force=True)
                    queued += 1
                if queued >= self.batch or looked >= self.batch * LOOKS_PER_JOB:
                    break
            else:
                self.finished = True
        except Exception:
            self._hashes = None  # the store or queue failed mid-sweep: start over next time
            raise
        finally:
            self.queued_total += queued
        if self.finished:
            log.info("scan backfill: the store has been swept; %d scans of content stored before "
                     "scanning was on were queued", self.queued_total)
        return queued

    def _needs_scan(self, content_hash: str) -> bool:
        scan = self.cache.metadata(content_hash).get("scan") or {}
        return scan.get("status", "pending") == "pending"
