"""The scan backfill's bounds, in process over a real store and flat-file queue: batches
of SCAN_BACKFILL_BATCH queued only while fewer jobs wait, entries with a verdict
skipped, nothing queued twice, the sweep over once the store was walked, and a new
sweep (a restart) queuing only what is still unscanned."""
from __future__ import annotations

import io

from falconproc.ingest.service import IngestService, UploadRequest
from falconproc.scan.backfill import BACKFILL_PRIORITY, ScanBackfill
from falconproc.wiring import Components
from tests.support.content import unique_text
from tests.support.inprocess import unit_settings


def _store(components: Components, count: int) -> list[str]:
    ingest = IngestService(components.settings, components.store)
    hashes = []
    for i in range(count):
        data = unique_text()
        hashes.append(ingest.ingest(UploadRequest(f"n{i}.txt", "d", "u", None, len(data)), io.BytesIO(data))
                      .content_hash)
    return hashes


def _queued_scans(components: Components) -> list[str]:
    return sorted(job.content_hash for job in components.queue.list("pending") if job.type == "scan")


def test_batches_skip_verdicts_and_end(tmp_path):
    components = Components(unit_settings(tmp_path, fsync=False))
    hashes = _store(components, 7)
    scanned = hashes[0]
    components.cache.update_metadata(scanned, lambda m: m.__setitem__("scan", {"status": "clean"}))
    backfill = ScanBackfill(components.store, components.cache, components.queue, batch=3, max_attempts=2)

    assert backfill.step() == 3
    assert backfill.step() == 0, "a batch waits in the queue: no more yet"
    jobs = components.queue.list("pending")
    assert {job.priority for job in jobs} == {BACKFILL_PRIORITY} and {job.max_attempts for job in jobs} == {2}

    for job in jobs:  # the scans of the first batch ran
        claimed = components.queue.claim(["scan"], "test")
        components.queue.complete(claimed)
        components.cache.update_metadata(job.content_hash, lambda m: m.__setitem__("scan", {"status": "clean"}))
    assert backfill.step() == 3
    assert not backfill.finished
    for _ in range(3):
        components.queue.complete(components.queue.claim(["scan"], "test"))
    assert backfill.step() == 0 and backfill.finished  # the 7th entry had a verdict already
    assert backfill.queued_total == 6

    # A restart sweeps again: the three whose scans "ran" without a verdict are queued again,
    # the four with one are not; an entry whose scan is still queued is not queued twice.
    again = ScanBackfill(components.store, components.cache, components.queue, batch=50, max_attempts=2)
    assert again.step() == 3
    assert again.step() == 0
    assert len(_queued_scans(components)) == 3 and scanned not in _queued_scans(components)
    third = ScanBackfill(components.store, components.cache, components.queue, batch=50, max_attempts=2)
    assert third.step() == 3 and len(_queued_scans(components)) == 3  # the queue deduplicated them
