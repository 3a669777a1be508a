"""The composition root: Settings -> store, cache, queue, governor, services.

Every long-lived object of a process is built here and only here, once, on first
use: ``create_app`` (web workers), the CLI (``worker``, ``fsck``, ``doctor``), the
gunicorn master's hooks and the job processes (through ``job_context``) all take
theirs from one ``Components``. Backends are chosen by setting through the
registries below, so a new backend (S3, Redis) is one factory and one entry, and a
new capability (video, scanning) is one package and one line in ``CAPABILITIES``.
"""
from __future__ import annotations

from collections.abc import Callable
from functools import cached_property
from typing import TYPE_CHECKING, Any

from falconproc.config import Settings, SettingsError
from falconproc.jobs import registry
from falconproc.jobs.registry import JobContext
from falconproc.jobs.scheduler import QueueScheduler
from falconproc.observability.governor import MemoryGovernor
from falconproc.queue import Job, JobQueue
from falconproc.store import ContentStore, DerivedCache

if TYPE_CHECKING:  # the services are imported when first built (the gunicorn master needs none)
    from pathlib import Path

    from falconproc.documents.service import DocumentPages
    from falconproc.images.service import ImageService
    from falconproc.ingest.resumable import ResumableUploads
    from falconproc.ingest.service import IngestService
    from falconproc.observability.health import HealthService
    from falconproc.scan.service import ScanService
    from falconproc.text.service import TextService
    from falconproc.video.service import VideoService

# Modules that register the built-in job types (each capability package's job module).
CAPABILITIES: tuple[str, ...] = ("falconproc.images.job", "falconproc.video.job", "falconproc.documents.job",
                                 "falconproc.text.job", "falconproc.scan.job")


def _local_store(settings: Settings, shared: dict[str, Any]) -> ContentStore:
    from falconproc.store.local import LocalContentStore

    return LocalContentStore(settings.file_storage_path, fsync=settings.fsync,
                             page_cache_release_bytes=settings.page_cache_release_bytes)


def _local_cache(settings: Settings, shared: dict[str, Any]) -> DerivedCache:
    from falconproc.store.local_cache import LocalDerivedCache

    return LocalDerivedCache(settings.cache_path, fsync=settings.fsync)


def _s3_bucket(settings: Settings):  # noqa: ANN202 (boto3 types stay out of the import graph)
    import boto3
    from botocore.config import Config

    from falconproc.store.s3 import S3Bucket

    if not settings.s3_bucket:
        raise SettingsError("S3_BUCKET: required with STORAGE_BACKEND=s3")

    def make_client():  # noqa: ANN202
        return boto3.session.Session().client(
            "s3", endpoint_url=settings.s3_endpoint_url, region_name=settings.s3_region,
            aws_access_key_id=settings.s3_access_key_id, aws_secret_access_key=settings.s3_secret_access_key,
            config=Config(signature_version="s3v4", s3={"addressing_style": "path"},
                          # S3-compatible servers (Ceph RGW, older MinIO) reject the default
                          # trailing CRC checksums of boto3 >= 1.36.
                          request_checksum_calculation="when_required",
                          response_checksum_validation="when_required",
                          connect_timeout=3, read_timeout=30, retries={"max_attempts": 3, "mode": "standard"},
                          max_pool_connections=32))

    # A forked job process makes its own client (S3Bucket.client): never the parent's sockets.
    return S3Bucket(make_client(), settings.s3_bucket, settings.s3_prefix, client_factory=make_client)


def _s3_copy(settings: Settings):  # noqa: ANN202
    from falconproc.store.readthrough import ReadThroughCopy

    return ReadThroughCopy(settings.cache_path / "s3-copy", settings.local_cache_bytes)


def _shared(shared: dict[str, Any], name: str, make: Callable[[], Any]) -> Any:
    """One ``name`` per process for the store, the cache and the queue of one Components
    (one S3 connection pool, one read-through copy's accounting, one Redis pool)."""
    if name not in shared:
        shared[name] = make()
    return shared[name]


def _s3_store(settings: Settings, shared: dict[str, Any]) -> ContentStore:
    from falconproc.store.s3 import S3ContentStore

    return S3ContentStore(_shared(shared, "s3", lambda: _s3_bucket(settings)), settings.file_storage_path,
                          _shared(shared, "s3-copy", lambda: _s3_copy(settings)),
                          instance_id=settings.instance_id, presigned_redirect=settings.s3_presigned_redirect)


# Seconds a render lock outlives its holder's last renewal (renewed every quarter of it
# while the render runs): how long a SIGKILLed instance's lock keeps others waiting.
RENDER_LOCK_EXPIRY = 6.0


def _s3_cache(settings: Settings, shared: dict[str, Any]) -> DerivedCache:
    from falconproc.store.s3 import S3DerivedCache

    shared_lock = None
    if settings.redis_url:  # one producer of a preset across instances, not just per host
        from falconproc.locks import redis_lock

        client = _shared(shared, "redis", lambda: _redis_client(settings))

        def shared_lock(name: str, timeout: float):  # noqa: ANN202
            return redis_lock(client, f"falconproc:render:{name}", expiry=RENDER_LOCK_EXPIRY, timeout=timeout,
                              busy_message="this file is being processed; retry shortly")
    return S3DerivedCache(_shared(shared, "s3", lambda: _s3_bucket(settings)),
                          _shared(shared, "s3-copy", lambda: _s3_copy(settings)), settings.cache_path / "locks",
                          shared_lock)


def _flatfile_queue(settings: Settings, shared: dict[str, Any]) -> JobQueue:
    from falconproc.queue.flatfile import FlatFileQueue

    return FlatFileQueue(settings.queue_path, max_pending=settings.max_queue_size,
                         max_attempts=settings.job_max_attempts, backoff_base=settings.job_backoff_base,
                         backoff_cap=settings.job_backoff_cap, priorities=settings.job_priorities,
                         fsync=settings.fsync)


def _redis_client(settings: Settings):  # noqa: ANN202 (redis types stay out of the import graph)
    import redis

    from redis.backoff import ExponentialBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.retry import Retry

    # Every call bounded: a Redis that stops answering (stalled, or a half-dead connection)
    # fails a call after one 5 s timeout, so the supervisor's loop goes on collecting
    # results and enforcing limits, and a web request answers 503 instead of hanging.
    # redis-py 8 would retry a timeout ten times, and a retried call reconnects with a
    # handshake that waits the timeout again (one retry of timeouts: up to 20 s,
    # measured). A lost connection (Redis restarted) is retried once, on a new one.
    retry = Retry(ExponentialBackoff(cap=0.5, base=0.05), 1, supported_errors=(RedisConnectionError,))
    return redis.Redis.from_url(settings.redis_url, socket_connect_timeout=3, socket_timeout=5,
                                health_check_interval=30, retry=retry)


def _redis_queue(settings: Settings, shared: dict[str, Any]) -> JobQueue:
    from falconproc.queue.redis import RedisQueue

    if not settings.redis_url:
        raise SettingsError("REDIS_URL: required with QUEUE_BACKEND=redis")
    return RedisQueue(_shared(shared, "redis", lambda: _redis_client(settings)), max_pending=settings.max_queue_size,
                      max_attempts=settings.job_max_attempts,
                      backoff_base=settings.job_backoff_base, backoff_cap=settings.job_backoff_cap,
                      priorities=settings.job_priorities)


# STORAGE_BACKEND -> (originals, derived files); QUEUE_BACKEND -> queue.
STORAGE_BACKENDS: dict[str, tuple[Callable[[Settings, dict[str, Any]], ContentStore],
                                   Callable[[Settings, dict[str, Any]], DerivedCache]]] = {
    "local": (_local_store, _local_cache),
    "s3": (_s3_store, _s3_cache),
}
QUEUE_BACKENDS: dict[str, Callable[[Settings, dict[str, Any]], JobQueue]] = {
    "flatfile": _flatfile_queue,
    "redis": _redis_queue,
}


def check_backends(settings: Settings) -> None:
    """SettingsError for a backend name no registry knows (start-up stops on it)."""
    for variable, name, known in (("STORAGE_BACKEND", settings.storage_backend, STORAGE_BACKENDS),
                                  ("QUEUE_BACKEND", settings.queue_backend, QUEUE_BACKENDS)):
        if name not in known:
            raise SettingsError(f"{variable}: unknown backend {name!r} (one of: {', '.join(sorted(known))})")
    if settings.storage_backend == "s3" and not settings.s3_bucket:
        raise SettingsError("S3_BUCKET: required with STORAGE_BACKEND=s3")
    if settings.queue_backend == "redis" and not settings.redis_url:
        raise SettingsError("REDIS_URL: required with QUEUE_BACKEND=redis")
    if settings.scan_mode != "off" and settings.clamd_socket is None and settings.clamd_address is None:
        raise SettingsError(f"SCAN_MODE: {settings.scan_mode} needs CLAMD_SOCKET or CLAMD_ADDRESS")


def load_job_types(settings: Settings) -> None:
    """Register the built-in job types and those of JOB_PLUGINS (idempotent)."""
    registry.load((*CAPABILITIES, *settings.job_plugins))


def _import_plugins(settings: Settings) -> None:
    import importlib

    for module in settings.job_plugins:
        try:
            importlib.import_module(module)
        except Exception as exc:  # noqa: BLE001 - any failure to import is a bad setting
            reason = f"{type(exc).__name__}: {exc}".splitlines()[0]
            raise SettingsError(f"JOB_PLUGINS: cannot import {module!r} ({reason})") from None


def installed_ocr_languages() -> set[str] | None:
    """What ``tesseract --list-langs`` names (None: no tesseract on PATH)."""
    import shutil
    import subprocess

    binary = shutil.which("tesseract")
    if binary is None:
        return None
    try:
        out = subprocess.run([binary, "--list-langs"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return {line.strip() for line in out.splitlines()[1:] if line.strip()}


def check_settings(settings: Settings) -> list[str]:
    """The one check of every setting before anything starts (``serve``, ``worker``,
    ``doctor``): raises SettingsError naming the variable; returns warnings.

    The per-variable parsers (config.py) checked each value's form; this checks what
    needs the rest of the service: backends, presets, plugins, job-type names, the
    installed OCR languages."""
    from falconproc.images.presets import PresetCatalog

    warnings: list[str] = []
    check_backends(settings)
    PresetCatalog(settings)  # PRESETS readable, EAGER_PRESETS all known
    registry.load(CAPABILITIES)
    _import_plugins(settings)
    types = {t.name for t in registry.all_types()}
    for variable, names in (("JOB_CONCURRENCY", settings.job_concurrency),
                            ("JOB_TIMEOUTS", settings.job_timeouts),
                            ("JOB_PRIORITIES", settings.job_priorities)):
        unknown = sorted(set(names) - types)
        if unknown:
            raise SettingsError(f"{variable}: unknown job types {', '.join(unknown)} "
                                f"(registered: {', '.join(sorted(types))})")
    from falconproc.documents.office import find_soffice

    if find_soffice(settings) is None:
        warnings.append(f"LibreOffice ({settings.libreoffice_path}) is not installed: DOCX/ODT/PPTX/ODP have no "
                        "thumbnail (404 not_available)")
    installed = installed_ocr_languages()
    if installed is None:
        warnings.append("tesseract is not installed: OCR jobs will fail")
    else:
        missing = sorted(set(settings.ocr_languages) - installed)
        if missing:
            raise SettingsError(f"OCR_LANGUAGES: {', '.join(missing)} not installed for tesseract "
                                f"(installed: {', '.join(sorted(installed))})")
    from falconproc.video.tools import find_tools

    if find_tools(settings) is None:
        warnings.append(f"{settings.ffmpeg_binary}/{settings.ffprobe_binary} not found: videos are stored, "
                        "their presets answer 404 not_available")
    video_job_timeout = settings.job_timeouts.get("video", 60.0)
    if settings.video_timeout >= video_job_timeout:
        warnings.append(f"VIDEO_TIMEOUT ({settings.video_timeout:g} s) is not below the video job's timeout "
                        f"(JOB_TIMEOUTS video={video_job_timeout:g}): a slow video is killed with its job "
                        "instead of ending with reason timeout")
    if settings.job_backoff_base > settings.job_backoff_cap:
        warnings.append("JOB_BACKOFF_BASE is above JOB_BACKOFF_CAP: every retry waits JOB_BACKOFF_CAP")
    return warnings


class Components:
    """The objects of one process, each built on first use and then shared.

    Nothing is built by the constructor (beyond reading and checking settings): the
    gunicorn master only needs the store, a job process only what its jobs use.
    """

    def __init__(self, settings: Settings | None = None):
        self.settings = settings or Settings.from_env()
        check_backends(self.settings)
        self._shared: dict[str, Any] = {}  # clients the backends share (see _shared)

    # -- backends --------------------------------------------------------------------

    @cached_property
    def store(self) -> ContentStore:
        return STORAGE_BACKENDS[self.settings.storage_backend][0](self.settings, self._shared)

    @cached_property
    def cache(self) -> DerivedCache:
        return STORAGE_BACKENDS[self.settings.storage_backend][1](self.settings, self._shared)

    @cached_property
    def queue(self) -> JobQueue:
        queue = QUEUE_BACKENDS[self.settings.queue_backend](self.settings, self._shared)
        # A job the reaper dead-letters (its runner died) gets its type's on_dead
        # bookkeeping, as one the supervisor fails does.
        queue.on_reaped_dead = self._run_on_dead
        return queue

    @cached_property
    def governor(self) -> MemoryGovernor:
        return MemoryGovernor(self.settings)

    # -- jobs ------------------------------------------------------------------------

    def load_job_types(self) -> None:
        load_job_types(self.settings)

    def check_ocr_languages(self) -> None:
        """SettingsError when an OCR_LANGUAGES entry has no traineddata (at start-up)."""
        from falconproc.text.ocr import check_languages

        check_languages(self.settings)

    def job_context(self, cpu_budget: int = 1) -> JobContext:
        """What a job handler gets (built in the job process, after the fork)."""
        return JobContext(self.settings, self.store, self.cache, self.queue, cpu_budget)

    def _run_on_dead(self, job: Job) -> None:
        registry.run_on_dead(job, self.job_context())

    @cached_property
    def scheduler(self) -> QueueScheduler:
        always = {"scan": self.settings.scan_max_attempts} if self.settings.scan_mode != "off" else {}
        return QueueScheduler(self.queue, always, deferred=self.cache)

    # -- services (web side) ---------------------------------------------------------

    @cached_property
    def ingest(self) -> IngestService:
        from falconproc.ingest.ratelimit import UploadRateLimiter
        from falconproc.ingest.service import IngestService

        self.load_job_types()  # the upload side needs to know which job types apply
        limiter = UploadRateLimiter(self.settings.upload_rate_limit, self.settings.rate_limit_storage_uri)
        scanner = self.scan if self.settings.scan_mode != "off" else None
        return IngestService(self.settings, self.store, scheduler=self.scheduler, governor=self.governor,
                             rate_limiter=limiter, scanner=scanner)

    @cached_property
    def resumable(self) -> ResumableUploads:
        from falconproc.ingest.resumable import ResumableUploads

        return ResumableUploads(self.settings, self.ingest)

    @cached_property
    def documents(self) -> DocumentPages:
        from falconproc.documents.service import DocumentPages

        return DocumentPages(self.settings, self.store, self.cache)

    @cached_property
    def images(self) -> ImageService:
        from falconproc.images.service import ImageService
        from falconproc.store.memo import SmallFileMemo

        # A video's presets are rendered from its poster, a document's thumbnail and
        # preview from its page 1 (both made by their jobs).
        memo_bytes = self.settings.served_memo_bytes
        return ImageService(self.settings, self.store, self.cache, stand_ins=[self.video, self.documents],
                            served=SmallFileMemo(memo_bytes) if memo_bytes else None)

    @cached_property
    def video(self) -> VideoService:
        from falconproc.video.service import VideoService

        # The web side waits for the `video` job's poster: ffmpeg runs only in jobs, where
        # the memory governor and the job limits see it.
        return VideoService(self.settings, self.store, self.cache,
                            request_poster=lambda content_hash: self.queue.enqueue("video", content_hash))

    @cached_property
    def text(self) -> TextService:
        from falconproc.text.service import TextService

        return TextService(self.settings, self.store, self.cache)

    @cached_property
    def scan(self) -> ScanService:
        from falconproc.scan.service import ScanService

        # Under SCAN_MODE=required a request for content with no verdict queues its scan
        # at once (it may have been stored while scanning was off: the backfill is slower).
        return ScanService(self.settings, self.store, self.cache, request_scan=self._request_scan)

    def _request_scan(self, content_hash: str) -> None:
        self.queue.enqueue("scan", content_hash, max_attempts=self.settings.scan_max_attempts)

    def processing_state(self, content_hash: str) -> dict[str, Any]:
        """What the metadata route adds to the stored metadata: presets, text, EXIF,
        document properties, video, scan state."""
        return {**self.images.processing_state(content_hash), **self.video.metadata_state(content_hash),
                **self.scan.metadata_state(content_hash)}

    @cached_property
    def health(self) -> HealthService:
        from falconproc.observability.health import HealthService

        from falconproc.jobs.keeper import alive_file_in, seconds_since_turn
        from falconproc.observability.metrics_dir import run_directory

        checks = {"scanner_unavailable": self.scan.healthy} if self.settings.scan_mode != "off" else {}
        run_dir = run_directory()
        # Under `serve` (with RUN_SUPERVISOR), the supervisor's alive file in the run directory.
        supervisor_turn = None
        if run_dir is not None and self.settings.run_supervisor:
            alive_file = alive_file_in(run_dir)
            supervisor_turn = lambda: seconds_since_turn(alive_file)  # noqa: E731
        return HealthService(self.settings, self.store, queue_stats=self.queue.stats, governor=self.governor,
                             checks=checks, supervisor_turn=supervisor_turn)

    def run_supervisor(self, alive_file: Path | None = None) -> None:
        """``falconproc worker``: the job supervisor over this process's queue (touching
        ``alive_file`` every loop turn, for the keeper's watchdog)."""
        from falconproc.jobs.supervisor import run_supervisor

        self.load_job_types()
        # Built here (the scheduler with the cache and queue), before any thread or job
        # process exists: the supervisor's store-passes thread uses them while job
        # processes are forked, and a fork while a thread is inside a cached_property
        # would leave the job process waiting on that property's lock for ever.
        store, scheduler = self.store, self.scheduler
        run_supervisor(self.settings, self.queue, self.governor, self.job_context,
                       queue_deferred=lambda: scheduler.enqueue_deferred(store.metadata),
                       backfill=self._scan_backfill(), alive_file=alive_file)

    def _scan_backfill(self) -> Callable[[], int] | None:
        """A batch of the scans of content stored while SCAN_MODE was off (None: no sweep)."""
        if self.settings.scan_mode == "off" or not self.settings.scan_backfill_batch:
            return None
        from falconproc.scan.backfill import ScanBackfill

        return ScanBackfill(self.store, self.cache, self.queue, batch=self.settings.scan_backfill_batch,
                            max_attempts=self.settings.scan_max_attempts).step
