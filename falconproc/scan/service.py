"""Scan state (``metadata.scan``), the `scan` job's work, and the quarantine gate the web
layer asks before serving anything of a content hash but its metadata."""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from falconproc.clock import iso_utc
from falconproc.config import Settings
from falconproc.errors import FalconprocError
from falconproc.observability.metrics import record_scan
from falconproc.queue import QueueFull, QueueUnavailable
from falconproc.scan.clamd import ClamdClient, ClamdUnavailable, Verdict
from falconproc.store import ContentStore, DerivedCache
from falconproc.store.base import PendingUpload
from falconproc.store.follow import SpoolTail, UploadCancelled

log = logging.getLogger(__name__)

PENDING = {"status": "pending"}
# In a `scan` job's payload: the upload streamed its bytes to clamd; wait for that verdict.
STREAMED = "streamed"
# How often a `scan` job looks for the streamed verdict (a metadata read: a GET on S3).
_AWAIT_POLL_SECONDS = 0.1
# When a streamed upload's `scan` job may start: its verdict usually comes first (clamd
# scans 100 MB in ~1 s here), so the job finds it at once instead of starting a process
# that polls for it beside clamd's scan. If the uploading process died, the job scans
# after this and its wait.
STREAMED_JOB_DELAY = 2.0


class Quarantined(FalconprocError, PermissionError):
    """The content was found infected: nothing of it but its metadata is served."""

    def __init__(self, signature: str | None):
        super().__init__(f"this content is quarantined: {signature or 'infected'}")
        self.signature = signature


class ScanPending(FalconprocError, RuntimeError):
    """SCAN_MODE=required and the content has not been scanned clean yet."""

    retry_after = 2


class ScanFailed(FalconprocError, RuntimeError):
    """SCAN_MODE=required and the scan ended in an error (too large for clamd, clamd down
    for every attempt): the content is never served as if clean."""


class StreamedScan:
    """One INSTREAM session fed from an upload's spool file while the body arrives (a
    thread sending what is written, by sendfile from the page cache): clamd has the whole stream
    moments after the last byte, so its verdict comes with the upload instead of a job
    that reads the stored file again afterwards."""

    def __init__(self, client: ClamdClient, tail: SpoolTail):
        self._client = client
        self._tail = tail
        self.engine: str | None = None
        self.verdict: Verdict | None = None
        self.failure: str | None = None
        self._thread = threading.Thread(target=self._run, name="streamed-scan", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self.engine = self._client.version()
            self.verdict = self._client.instream(self._tail)
        except (ClamdUnavailable, UploadCancelled, OSError) as exc:
            self.failure = str(exc) or type(exc).__name__
        except Exception as exc:  # noqa: BLE001 - any failure: the scan job does it instead
            log.exception("streamed scan failed")
            self.failure = f"{type(exc).__name__}: {exc}"
        finally:
            self._tail.close()

    def done(self) -> bool:
        return not self._thread.is_alive()

    def wait(self, timeout: float) -> Verdict | None:
        """The verdict, or None when the session failed or took longer than ``timeout``."""
        self._thread.join(timeout)
        return self.verdict if not self._thread.is_alive() else None

    def cancel(self) -> None:
        self._tail.cancel(even_if_finished=True)


def make_client(settings: Settings) -> ClamdClient:
    return ClamdClient(settings.clamd_socket, settings.clamd_address, settings.clamd_timeout)


class ScanService:
    streamed_job_delay = STREAMED_JOB_DELAY

    def __init__(self, settings: Settings, store: ContentStore, cache: DerivedCache,
                 client: ClamdClient | None = None, request_scan: Callable[[str], None] | None = None):
        self.settings = settings
        self.store = store
        self.cache = cache
        self.enabled = settings.scan_mode != "off"
        self.client = client if client is not None or not self.enabled else make_client(settings)
        # Queues the `scan` job of a content hash (deduplicated by the queue), for content
        # asked for before it has a verdict (None: leave it to the upload's job or the backfill).
        self.request_scan = request_scan

    # -- state -----------------------------------------------------------------------

    def state(self, content_hash: str) -> dict[str, Any] | None:
        return self.cache.metadata(content_hash).get("scan")

    def metadata_state(self, content_hash: str, cache_meta: dict[str, Any] | None = None) -> dict[str, Any]:
        """``{"scan": ...}`` for the metadata route: pending until the job records a result."""
        meta = self.cache.metadata(content_hash) if cache_meta is None else cache_meta
        if "scan" in meta:
            return {"scan": meta["scan"]}
        return {"scan": dict(PENDING)} if self.enabled else {}

    def check(self, content_hash: str) -> None:
        """Before serving anything of this hash but its metadata: Quarantined for infected
        content; with SCAN_MODE=required, ScanPending/ScanFailed until it is scanned clean."""
        if not self.enabled:
            return
        scan = self.state(content_hash) or PENDING
        status = scan.get("status")
        if status == "infected":
            raise Quarantined(scan.get("signature"))
        if self.settings.scan_mode == "required":
            if status == "pending":
                if not self._queue_scan(content_hash):
                    return  # no such content: the route answers 404
                raise ScanPending("this content has not been scanned yet")
            if status == "error":
                raise ScanFailed(f"this content could not be scanned: {scan.get('reason')}")

    def _queue_scan(self, content_hash: str) -> bool:
        """Make sure a scan of stored content is queued now: an upload's own scan job is
        already there (the queue returns it), but content stored while scanning was off
        would otherwise wait for the backfill's sweep. False when nothing is stored
        under this hash."""
        if self.request_scan is None:
            return True
        if not self.store.exists(content_hash):
            return False
        try:
            self.request_scan(content_hash)
        except (QueueFull, QueueUnavailable) as exc:  # still pending: the backfill queues it later
            log.warning("could not queue the scan of %s now: %s", content_hash, exc)
        return True

    def healthy(self) -> bool:
        return not self.enabled or (self.client is not None and self.client.ping())

    # -- while the body arrives -------------------------------------------------------

    def start_streamed(self, pending: PendingUpload) -> StreamedScan | None:
        """Start scanning an upload as it is written (None when scanning is off)."""
        if not self.enabled or self.client is None:
            return None
        return StreamedScan(self.client, pending.follow())

    def finish_streamed(self, session: StreamedScan, content_hash: str, is_new: bool) -> dict[str, Any] | None:
        """After the upload was committed: for new content, its verdict is recorded when
        clamd gives it (now if it has already; else by a thread of this process, so the
        answer does not wait for clamd's scan of the last bytes) and the `scan` job gets
        the returned payload: it waits for that verdict instead of scanning again, and
        scans itself if the streamed scan fails or this process dies first. For bytes
        already stored the session is dropped (their recorded result stands): None."""
        if not is_new:
            session.cancel()
            return None
        if session.done():
            self._record_streamed(session, content_hash)
        else:
            threading.Thread(target=self._record_streamed, args=(session, content_hash),
                             name="streamed-scan-verdict", daemon=True).start()
        return {STREAMED: True}

    def _record_streamed(self, session: StreamedScan, content_hash: str) -> None:
        verdict = session.wait(self.settings.clamd_timeout)
        try:
            if verdict is None:
                session.cancel()
                reason = f"the scan during the upload failed: {session.failure or 'timed out'}"
                log.info("%s for %s: the scan job scans it", reason, content_hash)
                self.cache.update_metadata(content_hash, lambda m: m.setdefault("scan", dict(PENDING))
                                           .__setitem__("lastError", reason))
                return
            self.record(content_hash, _state(verdict, session.engine))
            record_scan("upload", verdict.status)
        except Exception:  # noqa: BLE001 - the scan job's wait runs out and it scans
            log.exception("recording the streamed scan of %s failed", content_hash)

    def await_streamed(self, content_hash: str, timeout: float) -> dict[str, Any] | None:
        """The `scan` job of a streamed upload: the verdict once recorded; None when the
        streamed scan failed or nothing came within ``timeout`` (then the job scans)."""
        deadline = time.monotonic() + timeout
        while True:
            scan = self.state(content_hash) or {}
            if scan.get("status", "pending") != "pending":
                return scan
            if scan.get("lastError") or time.monotonic() > deadline:
                return None
            time.sleep(_AWAIT_POLL_SECONDS)

    # -- the job ---------------------------------------------------------------------

    def scan(self, content_hash: str) -> dict[str, Any]:
        """Stream the original to clamd and record the verdict. ClamdUnavailable (retried
        by the queue) when clamd cannot be reached."""
        assert self.client is not None
        try:
            engine = self.client.version()
            with self.store.local_file(content_hash) as path, open(path, "rb") as fh:
                verdict = self.client.instream(fh)
        except ClamdUnavailable as exc:
            error = str(exc)
            self.cache.update_metadata(content_hash, lambda m: m.setdefault("scan", dict(PENDING))
                                       .__setitem__("lastError", error))
            raise
        state = _state(verdict, engine)
        self.record(content_hash, state)
        record_scan("job", verdict.status)
        return state

    def record(self, content_hash: str, state: dict[str, Any]) -> None:
        self.cache.update_metadata(content_hash, lambda m: m.__setitem__("scan", state))
        if state["status"] == "infected":
            # Quarantine: whatever was derived before the verdict goes, and nothing is
            # served from here on (check() answers 403 for every route but metadata).
            removed = self.cache.quarantine(content_hash)
            log.warning("content %s is infected (%s): quarantined, %d derived files removed",
                        content_hash, state.get("signature"), removed)

    def record_error(self, content_hash: str, reason: str) -> None:
        self.record(content_hash, {"status": "error", "signature": None, "engine": None, "scannedAt": iso_utc(),
                                   "reason": reason})


def _state(verdict: Verdict, engine: str | None) -> dict[str, Any]:
    state: dict[str, Any] = {"status": verdict.status, "signature": verdict.signature, "engine": engine,
                             "scannedAt": iso_utc()}
    if verdict.reason:
        state["reason"] = verdict.reason
    return state
