"""The only reader of the environment: one frozen Settings object.

Each knob is declared once in ``SETTINGS`` with its environment variable,
default, parser/validator and a one-line doc; the README table is generated
from the same list (``falconproc settings --markdown``). A bad value raises
``SettingsError`` with the variable name, which stops start-up.
"""
from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from falconproc.mediatypes import DEFAULT_ALLOWED, EXECUTABLE_TYPES, OCTET_STREAM


class SettingsError(ValueError):
    """An environment variable holds a value the service cannot run with."""


def _int_range(lo: int, hi: int | None = None) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw.strip().replace("_", ""))
        except ValueError:
            raise SettingsError(f"expected an integer, got {raw!r}") from None
        if value < lo or (hi is not None and value > hi):
            bound = f"between {lo} and {hi}" if hi is not None else f">= {lo}"
            raise SettingsError(f"expected an integer {bound}, got {value}")
        return value

    return parse


_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([KMGT]?)(?:I?B)?", re.IGNORECASE)
_UNITS = {"": 1, "K": 1024, "M": 1024 ** 2, "G": 1024 ** 3, "T": 1024 ** 4}


def _size_range(lo: int, hi: int | None = None) -> Callable[[str], int]:
    """Bytes, with an optional binary unit: ``1342177280``, ``1.25G``, ``512M``, ``64KiB``."""

    def parse(raw: str) -> int:
        match = _SIZE.fullmatch(raw.strip().replace("_", ""))
        if not match:
            raise SettingsError(f"expected a size in bytes, optionally with a unit (512M, 1.25G), got {raw!r}")
        value = int(float(match.group(1)) * _UNITS[match.group(2).upper()])
        if value < lo or (hi is not None and value > hi):
            bound = f"between {lo} and {hi}" if hi is not None else f">= {lo}"
            raise SettingsError(f"expected a size {bound} bytes, got {value}")
        return value

    return parse


def _float_range(lo: float, hi: float) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            raise SettingsError(f"expected a number, got {raw!r}") from None
        if not lo <= value <= hi:
            raise SettingsError(f"expected a number between {lo} and {hi}, got {value}")
        return value

    return parse


def _path(raw: str) -> Path:
    if not raw.strip():
        raise SettingsError("expected a path, got an empty string")
    return Path(raw).expanduser().absolute()


def _optional_str(raw: str) -> str | None:
    return raw or None


def _rate_limits(raw: str) -> str | None:
    """`limits` notation, e.g. ``50/second;1500/minute``; empty, 0 or off disables."""
    text = raw.strip()
    if text.lower() in {"", "0", "off", "none"}:
        return None
    from limits import parse_many  # the well-kept parser of this notation

    try:
        parse_many(text)
    except ValueError:
        raise SettingsError(f"expected rate limits like '50/second;1500/minute', got {raw!r}") from None
    return text


def _storage_uri(raw: str) -> str:
    from limits.storage import SCHEMES

    scheme = raw.partition("://")[0]
    if "://" not in raw or scheme not in SCHEMES:
        raise SettingsError(f"expected a limits storage URI (memory://, redis://host:port, ...), got {raw!r}")
    return raw


def _allowed_types(raw: str) -> str | None:
    """A comma-separated subset of the types the sniffer names; a typo would otherwise
    make every upload of that type 415 without a word."""

    types = [t.strip().lower() for t in raw.split(",") if t.strip()]
    if not types:
        return None
    for mime in types:
        if mime in EXECUTABLE_TYPES:
            raise SettingsError(f"{mime} is an executable type, which the service never stores")
        if mime not in DEFAULT_ALLOWED and mime != OCTET_STREAM:
            known = ", ".join(DEFAULT_ALLOWED + (OCTET_STREAM,))
            raise SettingsError(f"{mime!r} is not a type the service recognises (one of: {known})")
    return ",".join(types)


def _backend_name(raw: str) -> str:
    """A backend's name; wiring.py checks it against the backends it knows."""
    name = raw.strip().lower()
    if not re.fullmatch(r"[a-z0-9_]+", name):
        raise SettingsError(f"expected a backend name, got {raw!r}")
    return name


def _host(raw: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9.:\-\[\]]+", raw):
        raise SettingsError(f"expected a host name or address, got {raw!r}")
    return raw


def _choice(*options: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if raw.lower() not in options:
            raise SettingsError(f"expected one of {', '.join(options)}, got {raw!r}")
        return raw.lower()

    return parse


def _type_map(parse_value: Callable[[str], Any]) -> Callable[[str], dict[str, Any]]:
    """``image=2,text=3`` -> {"image": 2, "text": 3}."""

    def parse(raw: str) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for item in filter(None, (part.strip() for part in raw.split(","))):
            name, sep, value = item.partition("=")
            if not sep or not re.fullmatch(r"[a-z0-9_]+", name.strip()):
                raise SettingsError(f"expected type=value pairs separated by commas, got {raw!r}")
            result[name.strip()] = parse_value(value.strip())
        return result

    return parse


def _host_port(raw: str) -> tuple[str, int] | None:
    """``host:port`` (IPv6 in brackets); empty: unset."""
    text = raw.strip()
    if not text:
        return None
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise SettingsError(f"expected host:port, got {raw!r}")
    return host, int(port)


def _name_list(raw: str) -> tuple[str, ...]:
    names = tuple(filter(None, (part.strip() for part in raw.split(","))))
    if not all(re.fullmatch(r"[A-Za-z0-9_.]+", n) for n in names):
        raise SettingsError(f"expected comma-separated names, got {raw!r}")
    return names


def _program(raw: str) -> str:
    """A program name looked up on PATH, or a path to one (its presence is checked at
    start-up as a warning: the service runs without it)."""
    text = raw.strip()
    if not text or any(c.isspace() or c == "\x00" for c in text):
        raise SettingsError(f"expected a program name or path without spaces, got {raw!r}")
    return text


def _bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise SettingsError(f"expected a boolean (1/0, true/false), got {raw!r}")


def _optional_url(raw: str) -> str | None:
    if not raw:
        return None
    if not re.fullmatch(r"https?://[A-Za-z0-9.\-\[\]:]+(/\S*)?", raw):
        raise SettingsError(f"expected an http(s):// URL, got {raw!r}")
    return raw


def _bucket_name(raw: str) -> str | None:
    if not raw:
        return None
    if not re.fullmatch(r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]", raw):
        raise SettingsError(f"expected an S3 bucket name, got {raw!r}")
    return raw


def _key_prefix(raw: str) -> str:
    prefix = raw.strip("/")
    if prefix and not re.fullmatch(r"[A-Za-z0-9!_.*'()/\-]+", prefix):
        raise SettingsError(f"expected a key prefix of letters, digits and !_.*'()/-, got {raw!r}")
    return prefix + "/" if prefix else ""


def _redis_url(raw: str) -> str | None:
    if not raw:
        return None
    if not re.fullmatch(r"(redis|rediss|unix)://\S+", raw):
        raise SettingsError(f"expected redis://host:port/db, got {raw!r}")
    return raw


def _instance_id(raw: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.:\-]{1,100}", raw):
        raise SettingsError(f"expected 1-100 letters, digits and _.:- , got {raw!r}")
    return raw


def default_instance_id() -> str:
    """Hostname + boot id: two containers with the same hostname still differ."""
    import socket

    try:
        with open("/proc/sys/kernel/random/boot_id") as fh:
            boot = fh.read().strip().replace("-", "")[:12]
    except OSError:
        boot = "noboot"
    return re.sub(r"[^A-Za-z0-9_.\-]", "-", socket.gethostname())[:80] + ":" + boot


def _default_workers() -> int:
    # Two web workers per core, capped: each is ~40 MB and the container has 1.25 GB
    # to share with job processes.
    return max(2, min(2 * (os.cpu_count() or 1), 8))


def knob(env: str, default: Any, parse: Callable[[str], Any], doc: str, *, factory: bool = False) -> Any:
    """Declare one setting: its environment variable, default, parser and doc, once."""
    meta = {"env": env, "parse": parse, "doc": doc}
    if factory:
        return field(default_factory=default, metadata=meta)
    return field(default=default, metadata=meta)


def _data_path(sub: str) -> Callable[[], Path]:
    return lambda: Path("./data", sub).absolute()


@dataclass(frozen=True)
class Settings:
    """Validated service settings. Build with ``Settings.from_env()`` or directly in tests."""

    port: int = knob("PORT", 3003, _int_range(1, 65535), "listen port")
    host: str = knob("HOST", "127.0.0.1", _host, "listen address (the Docker image sets 0.0.0.0)")
    file_storage_path: Path = knob("FILE_STORAGE_PATH", _data_path("files"), _path,
                                   "originals + metadata.json, one directory per content hash", factory=True)
    uploads_path: Path = knob("UPLOADS_PATH", _data_path("uploads"), _path,
                              "partial resumable (tus) uploads; share it between instances to resume anywhere",
                              factory=True)
    upload_expiry_seconds: int = knob("UPLOAD_EXPIRY_SECONDS", 86400, _int_range(1),
                                      "a resumable upload not finished this long after its creation is "
                                      "deleted (its Upload-Expires)")
    uploads_reserve_bytes: int = knob("UPLOADS_RESERVE_BYTES", 256 * 1024 * 1024, _size_range(0),
                                      "a resumable upload that would leave less free space than this on "
                                      "UPLOADS_PATH's filesystem gets 507")
    uploads_max_bytes: int = knob("UPLOADS_MAX_BYTES", 10 * 1024 * 1024 * 1024, _size_range(0),
                                  "the declared sizes of all unfinished resumable uploads together may not pass "
                                  "this (507 beyond; 0: no limit)")
    cache_path: Path = knob("CACHE_PATH", _data_path("cache"), _path,
                            "derived files (presets, text) + cache metadata.json", factory=True)
    storage_backend: str = knob("STORAGE_BACKEND", "local", _backend_name,
                                "where originals and derived files live: `local` (FILE_STORAGE_PATH, CACHE_PATH) or `s3` "
                                "(S3_BUCKET; FILE_STORAGE_PATH then holds only upload spools)")
    s3_endpoint_url: str | None = knob("S3_ENDPOINT_URL", None, _optional_url,
                                       "S3-compatible endpoint for `STORAGE_BACKEND=s3` (unset: AWS); "
                                       "path-style addressing, SigV4")
    s3_bucket: str | None = knob("S3_BUCKET", None, _bucket_name, "bucket (must exist; required with `s3`)")
    s3_prefix: str = knob("S3_PREFIX", "", _key_prefix, "key prefix inside the bucket (a trailing / is added)")
    s3_region: str = knob("S3_REGION", "us-east-1", _host, "region the requests are signed for")
    s3_access_key_id: str | None = knob("S3_ACCESS_KEY_ID", None, _optional_str,
                                        "S3 credentials; when unset boto3's usual chain applies "
                                        "(AWS_* variables, files, instance roles)")
    s3_secret_access_key: str | None = knob("S3_SECRET_ACCESS_KEY", None, _optional_str,
                                            "the secret of S3_ACCESS_KEY_ID")
    s3_presigned_redirect: bool = knob("S3_PRESIGNED_REDIRECT", False, _bool,
                                       "with `s3`: GET of an original answers 307 to a SigV4 presigned URL "
                                       "(5 minutes) instead of streaming it, except HTML/SVG (served here, "
                                       "sandboxed); clients must reach S3_ENDPOINT_URL")
    local_cache_bytes: int = knob("LOCAL_CACHE_BYTES", 2 * 1024 ** 3, _size_range(16 * 1024 * 1024),
                                  "with `s3`: local read-through copy (under CACHE_PATH) of the originals and "
                                  "derived files that jobs and serving need as files, least recently used "
                                  "evicted past this")
    instance_id: str = knob("INSTANCE_ID", lambda: default_instance_id(), _instance_id,
                            "unique per running instance sharing a bucket or queue "
                            "(default: hostname + boot id)", factory=True)
    queue_path: Path = knob("QUEUE_PATH", _data_path("queue"), _path, "the flat-file job queue", factory=True)
    queue_backend: str = knob("QUEUE_BACKEND", "flatfile", _backend_name,
                              "the job queue: `flatfile` (QUEUE_PATH) or `redis` (REDIS_URL, shared by "
                              "every instance)")
    redis_url: str | None = knob("REDIS_URL", None, _redis_url,
                                 "`redis://host:port/db` of the job queue with `QUEUE_BACKEND=redis`; with "
                                 "`STORAGE_BACKEND=s3` also the lock that makes a preset once across instances")
    max_upload_bytes: int = knob("MAX_UPLOAD_BYTES", 104857600, _size_range(1),
                                 "larger bodies get 413 (decided from Content-Length before reading; "
                                 "a streamed body is cut off at the limit)")
    memory_limit_bytes: int = knob("MEMORY_LIMIT_BYTES", 1342177280, _size_range(64 * 1024 * 1024),
                                   "memory budget for the whole process tree")
    auth_token: str | None = knob("PROCESSOR_AUTH_TOKEN", None, _optional_str,
                                  "when set, every route but /health and /metrics requires "
                                  "`Authorization: Bearer <token>` (401 otherwise)")
    storage_reserve_bytes: int = knob("STORAGE_RESERVE_BYTES", 256 * 1024 * 1024, _size_range(0),
                                      "an upload that would leave less free space than this on the "
                                      "store's filesystem gets 507")
    allowed_types: str | None = knob("ALLOWED_TYPES", None, _allowed_types,
                                     "comma-separated MIME types accepted instead of the default list (known "
                                     "types only; application/octet-stream admits unrecognised binary data)")
    read_chunk_bytes: int = knob("READ_CHUNK_BYTES", 1024 * 1024, _size_range(4096, 16 * 1024 * 1024),
                                 "block size an upload is read, hashed and written in")
    page_cache_release_bytes: int = knob("PAGE_CACHE_RELEASE_BYTES", 32 * 1024 * 1024, _size_range(0),
                                         "a stored upload at least this large leaves the page cache once it "
                                         "is durable, so the next upload reuses its pages (0: never)")
    # Up to this much freed memory stays with each malloc arena of a worker: capped at 32 MiB.
    malloc_keep_bytes: int = knob("MALLOC_KEEP_BYTES", 4 * 1024 * 1024, _size_range(0, 32 * 1024 * 1024),
                                  "web workers' malloc serves blocks up to this size from its heaps and keeps "
                                  "this much freed memory per heap, so an upload's blocks reuse memory instead "
                                  "of faulting in new pages (0: glibc's defaults)")
    fsync: bool = knob("FSYNC", True, _bool,
                       "fsync files and directories before answering (turn off only for throwaway stores)")
    web_workers: int = knob("WEB_WORKERS", _default_workers, _int_range(1, 64),
                            "gunicorn web worker processes (default: 2 per core, 2..8)", factory=True)
    # Threads blocked in recv() cost a little memory and no CPU: enough of them that slow
    # uploads (UPLOAD_SLOTS of them at most) leave threads for reads (issue 11).
    web_threads: int = knob("WEB_THREADS", 32, _int_range(1, 256),
                            "threads per web worker (gthread): a slow client ties up a thread, not a process")
    upload_slots: int = knob("UPLOAD_SLOTS", 0, _int_range(0, 1024),
                             "uploads (bodies being read) a web worker takes at once; one more gets 503 + "
                             "Retry-After at once, so the other threads stay free for reads "
                             "(0: three quarters of WEB_THREADS)")
    worker_timeout: int = knob("WORKER_TIMEOUT", 120, _int_range(5, 3600),
                               "seconds a web worker may hang before gunicorn kills and replaces it")
    client_timeout: int = knob("CLIENT_TIMEOUT", 30, _int_range(1, 3600),
                               "seconds a client may stall mid-request (no bytes at all) before it is dropped")
    linger_seconds: float = knob("LINGER_SECONDS", 10.0, _float_range(0, 300),
                                 "after refusing an upload whose body was not read (401, 413, 429, 503, 507), "
                                 "seconds the rest of the body is read and discarded so that the client still "
                                 "sending can read the answer (nginx's lingering close; 0: close at once)")
    linger_max_bytes: int = knob("LINGER_MAX_BYTES", 256 * 1024 * 1024, _size_range(0),
                                 "at most this many unread body bytes are discarded after a refusal before the "
                                 "connection is closed")
    keepalive: int = knob("KEEPALIVE", 5, _int_range(0, 300), "seconds an idle keep-alive connection is held")
    # A backstop against slow leaks only (WEB_WORKER_MAX_RSS guards memory): at 5,000 a
    # worker serving cached thumbnails was replaced every 7-10 s, re-importing everything.
    max_requests: int = knob("MAX_REQUESTS", 100_000, _int_range(0),
                             "recycle a web worker after this many requests, jittered by 10% (0: never)")
    graceful_timeout: int = knob("GRACEFUL_TIMEOUT", 30, _int_range(1, 3600),
                                 "seconds running requests get to finish on shutdown")
    max_queue_size: int = knob("MAX_QUEUE_SIZE", 100, _int_range(1),
                               "pending jobs the queue holds; beyond it uploads get 503 with Retry-After")
    upload_rate_limit: str | None = knob("UPLOAD_RATE_LIMIT", "50/second;1500/minute", _rate_limits,
                                         "uploads each x-user-id may make (moving windows); beyond it 429 with "
                                         "Retry-After (off: no limit)")
    rate_limit_storage_uri: str = knob("RATE_LIMIT_STORAGE_URI", "memory://", _storage_uri,
                                       "where upload counts are kept: memory:// counts per web worker; "
                                       "redis://host:port/db counts once across workers and containers")
    job_max_attempts: int = knob("JOB_MAX_ATTEMPTS", 3, _int_range(1, 100),
                                 "attempts before a job is dead-lettered")
    job_backoff_base: float = knob("JOB_BACKOFF_BASE", 1.0, _float_range(0.0, 3600.0),
                                   "retry backoff: base seconds, doubled per attempt")
    job_backoff_cap: float = knob("JOB_BACKOFF_CAP", 10.0, _float_range(0.0, 86400.0),
                                  "retry backoff: maximum seconds")
    job_priorities: tuple[str, ...] = knob("JOB_PRIORITIES", ("image", "video", "document", "text", "ocr"),
                                           _name_list, "job types, highest priority first (unlisted ones last)")
    job_concurrency: dict[str, int] = knob("JOB_CONCURRENCY", lambda: {"image": 2, "document": 1, "text": 3,
                                                                                "ocr": 1},
                                           _type_map(_int_range(1, 64)),
                                           "simultaneous jobs per type (others default to 1)", factory=True)
    job_timeouts: dict[str, float] = knob("JOB_TIMEOUTS", lambda: {"image": 60.0, "video": 90.0, "document": 90.0,
                                                                   "text": 120.0, "ocr": 120.0},
                                          _type_map(_float_range(0.1, 86400.0)),
                                          "wall-clock seconds per job type before its process is killed "
                                          "(others default to 60)", factory=True)
    job_recycle_after: int = knob("JOB_RECYCLE_AFTER", 50, _int_range(1),
                                  "a job process is replaced after this many jobs")
    job_lease_seconds: float = knob("JOB_LEASE_SECONDS", 15.0, _float_range(1.0, 3600.0),
                                    "a running job whose heartbeat is older than this is requeued")
    # Longer than the longest bounded wait in one loop turn (an S3 call that stalls: 30 s
    # read timeout, 3 attempts), so a slow store is not taken for a hung supervisor.
    supervisor_stall_timeout: float = knob("SUPERVISOR_STALL_TIMEOUT", 120.0, _float_range(0.0, 86400.0),
                                           "`falconproc serve` restarts a job supervisor whose loop has not "
                                           "turned for this many seconds, its threads' stacks logged first "
                                           "(0: never)")
    job_memory_max_bytes: int = knob("JOB_MEMORY_MAX_BYTES", 768 * 1024 * 1024, _size_range(16 * 1024 * 1024),
                                     "a job process growing past this RSS is killed (the attempt fails)")
    job_plugins: tuple[str, ...] = knob("JOB_PLUGINS", (), _name_list,
                                        "extra modules that register job handlers (comma-separated)")
    run_supervisor: bool = knob("RUN_SUPERVISOR", True, _bool,
                                "`falconproc serve` also runs the job supervisor (off when a separate "
                                "`falconproc worker` container does)")
    memory_headroom_bytes: int = knob("MEMORY_HEADROOM_BYTES", 128 * 1024 * 1024, _size_range(0),
                                      "kept free under MEMORY_LIMIT_BYTES when admitting jobs")
    memory_high_water: float = knob("MEMORY_HIGH_WATER", 0.85, _float_range(0.1, 1.0),
                                    "fraction of MEMORY_LIMIT_BYTES above which uploads get 503")
    served_memo_bytes: int = knob("SERVED_MEMO_BYTES", 8 * 1024 * 1024, _size_range(0),
                                  "per web worker: recently served derived files of up to 64 KiB kept in memory "
                                  "(they never change once made); 0: read every request from disk")
    web_worker_max_rss: int = knob("WEB_WORKER_MAX_RSS", 256 * 1024 * 1024, _size_range(32 * 1024 * 1024),
                                   "a web worker whose peak RSS passed this is recycled after its current request")
    max_image_pixels: int = knob("MAX_IMAGE_PIXELS", 50_000_000, _int_range(1),
                                 "images with more pixels (from the header) are refused with 422 before decoding")
    max_image_side: int = knob("MAX_IMAGE_SIDE", 30_000, _int_range(1, 65_535),
                               "images with a longer side are refused with 422 before decoding")
    extra_presets: str | None = knob("PRESETS", None, _optional_str,
                                     "extra presets, `name:WIDTHxHEIGHT:format:quality;...` (0 = unbounded, "
                                     "format jpeg/webp/png), e.g. `square:512x512:webp:80`")
    eager_presets: tuple[str, ...] | None = knob("EAGER_PRESETS", None, _name_list,
                                                 "presets made by the image job right after upload "
                                                 "(default: all)")
    image_sync_timeout: float = knob("IMAGE_SYNC_TIMEOUT", 30.0, _float_range(1.0, 600.0),
                                     "seconds a request may wait for an on-demand preset or optimize-for-ai")
    image_threads: int = knob("IMAGE_THREADS", 2, _int_range(1, 16),
                              "worker threads per process that split an image's resizes into stripes and "
                              "encode its outputs meanwhile (1: everything in the calling thread)")
    text_max_chars: int = knob("TEXT_MAX_CHARS", 5_000_000, _int_range(1000),
                               "extracted text is cut at this many characters (marked truncated)")
    pdf_max_pages: int = knob("PDF_MAX_PAGES", 2000, _int_range(1),
                              "pages of a PDF that are extracted; the rest are skipped (marked truncated)")
    pdf_time_budget: float = knob("PDF_TIME_BUDGET", 90.0, _float_range(0.0, 86400.0),
                                  "seconds a PDF's text extraction may run (at most 3/4 of the text job's "
                                  "timeout); pages not read by then are skipped and the text is marked "
                                  "truncated, instead of all of it being lost to the timeout (0: no budget)")
    pdf_parallel_pages: int = knob("PDF_PARALLEL_PAGES", 24, _int_range(2),
                                   "PDFs with at least this many pages are split across TEXT_PROCESSES")
    text_processes: int = knob("TEXT_PROCESSES", max(1, min(os.cpu_count() or 1, 4)), _int_range(1, 16),
                               "processes one large PDF is split across (default: cores, up to 4)")
    docx_max_uncompressed_bytes: int = knob("DOCX_MAX_UNCOMPRESSED_BYTES", 200 * 1024 * 1024, _size_range(1024),
                                            "refuse a DOCX whose members declare more uncompressed bytes")
    docx_max_ratio: int = knob("DOCX_MAX_RATIO", 100, _int_range(2),
                               "refuse a DOCX member compressed more than this ratio (zip bombs)")
    ocr_languages: tuple[str, ...] = knob("OCR_LANGUAGES", ("eng",), _name_list,
                                          "tesseract languages to use (an allow-list; clients cannot choose others)")
    ocr_max_pixels: int = knob("OCR_MAX_PIXELS", 24_000_000, _int_range(10_000),
                               "larger images are downscaled before OCR")
    ocr_timeout: float = knob("OCR_TIMEOUT", 90.0, _float_range(1.0, 3600.0),
                              "seconds tesseract may run on one image before it is killed")
    video_max_seconds: float = knob("VIDEO_MAX_SECONDS", 10.0, _float_range(0.5, 600.0),
                                    "seconds from the start of a video that are read to choose its poster "
                                    "frame (and ffprobe's analysis window); the rest is never decoded")
    video_timeout: float = knob("VIDEO_TIMEOUT", 30.0, _float_range(0.1, 3600.0),
                                "wall-clock seconds ffprobe and ffmpeg together may take for one video's "
                                "metadata and poster before they are killed (the video's presets then answer "
                                "422 video_unreadable, reason timeout)")
    video_memory_bytes: int = knob("VIDEO_MEMORY_BYTES", 768 * 1024 * 1024, _size_range(64 * 1024 * 1024),
                                   "address-space limit (RLIMIT_AS) of each ffprobe/ffmpeg process; a video "
                                   "needing more fails with reason memory")
    ffmpeg_binary: str = knob("FFMPEG_BINARY", "ffmpeg", _program,
                              "ffmpeg, by name on PATH or by path; without it videos are stored but their "
                              "presets answer 404 not_available")
    ffprobe_binary: str = knob("FFPROBE_BINARY", "ffprobe", _program, "ffprobe, by name on PATH or by path")
    document_render_max_pixels: int = knob("DOCUMENT_RENDER_MAX_PIXELS", 4_000_000, _int_range(10_000, 50_000_000),
                                           "a document's page 1 is rendered at the size its largest preset needs, "
                                           "but never at more pixels than this (a page with a giant or extreme "
                                           "MediaBox is scaled down to fit)")
    libreoffice_path: str = knob("LIBREOFFICE_PATH", "soffice", _program,
                                 "LibreOffice's `soffice` (a name looked up on PATH, or a path); without it "
                                 "DOCX/ODT/PPTX/ODP have no thumbnail (404 not_available)")
    libreoffice_timeout: float = knob("LIBREOFFICE_TIMEOUT", 60.0, _float_range(0.1, 3600.0),
                                      "seconds one document's conversion to PDF may take before LibreOffice is "
                                      "killed (at most 3/4 of the document job's timeout)")
    scan_mode: str = knob("SCAN_MODE", "off", _choice("off", "async", "required"),
                          "virus scanning with clamd: off, async (scanned while the body arrives, served "
                          "meanwhile) or required (nothing but metadata is served until scanned clean)")
    clamd_socket: Path | None = knob("CLAMD_SOCKET", None, _path, "clamd's unix socket (LocalSocket)")
    clamd_address: tuple[str, int] | None = knob("CLAMD_ADDRESS", None, _host_port,
                                                 "clamd's TCP address host:port (when CLAMD_SOCKET is unset)")
    clamd_timeout: float = knob("CLAMD_TIMEOUT", 120.0, _float_range(1.0, 3600.0),
                                "seconds one clamd scan (INSTREAM) may take before it counts as failed")
    scan_max_attempts: int = knob("SCAN_MAX_ATTEMPTS", 8, _int_range(1, 100),
                                  "attempts of a scan while clamd is unreachable (JOB_BACKOFF_BASE doubling "
                                  "up to JOB_BACKOFF_CAP between them) before its state is error")
    scan_backfill_batch: int = knob("SCAN_BACKFILL_BATCH", 50, _int_range(0, 10_000),
                                    "with SCAN_MODE on, the job supervisor sweeps the store once after it "
                                    "starts and queues a scan of every entry with no verdict (stored while "
                                    "scanning was off), this many at a time, after all other jobs (0: no sweep)")
    expose_gps: bool = knob("EXPOSE_GPS", False, _bool,
                            "report an image's EXIF GPS position in metadata.exif.gps (presets never carry "
                            "EXIF, GPS or XMP, whatever this says)")
    metrics_dir: Path | None = knob("METRICS_DIR", None, _path,
                                    "where workers keep Prometheus samples (default: a fresh directory "
                                    "under the system temp dir, tmpfs in the container)")
    log_level: str = knob("LOG_LEVEL", "info", _choice("debug", "info", "warning", "error", "critical"),
                          "log level of the service and gunicorn")
    log_format: str = knob("LOG_FORMAT", "json", _choice("json", "text"),
                           "`json`: one JSON object per line on stdout (service, gunicorn, jobs, access); "
                           "`text`: lines for humans")
    access_log: bool = knob("ACCESS_LOG", True, _bool,
                            "one line per request on stdout (gunicorn's access log); off spares formatting "
                            "and writing it on every request, /metrics still counts every request")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read every declared variable; unset ones keep their defaults."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = environ.get(f.metadata["env"])
            if raw is None:
                continue
            try:
                values[f.name] = f.metadata["parse"](raw)
            except SettingsError as exc:
                raise SettingsError(f"{f.metadata['env']}: {exc}") from None
        return cls(**values)

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


def settings_markdown() -> str:
    """The settings table for the README, from the declarations above."""
    rows = ["| variable | default | meaning |", "| --- | --- | --- |"]
    for f in fields(Settings):
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is _default_workers:
            default = "2 per core (2..8)"
        elif f.metadata["env"] == "INSTANCE_ID":
            default = "hostname:boot id"
        else:
            default = f.default_factory()
        if isinstance(default, Path):
            default = "./" + str(default.relative_to(Path.cwd()))
        elif isinstance(default, dict):
            default = ",".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in default.items())
        elif isinstance(default, tuple):
            default = ",".join(default) if default else None
        shown = "unset" if default is None else f"`{default}`"
        rows.append(f"| `{f.metadata['env']}` | {shown} | {f.metadata['doc']} |")
    return "\n".join(rows)


# Read outside Settings, on purpose: the native selector decides at import.
OTHER_VARIABLES = ("FALCONPROC_NO_EXTENSIONS",)
# Settings whose values are never printed.
SECRET_VARIABLES = frozenset({"PROCESSOR_AUTH_TOKEN"})


def known_variables() -> list[str]:
    return [f.metadata["env"] for f in fields(Settings)] + list(OTHER_VARIABLES)


def variable_warnings(environ: Mapping[str, str] | None = None) -> list[str]:
    """Variables that look meant for the service but are not read by it: any unknown
    ``FALCONPROC_*`` and near-misses of known names (``JOB_CONCURENCY``)."""
    import difflib

    environ = os.environ if environ is None else environ
    known = known_variables()
    warnings = []
    for name in sorted(environ):
        if name in known:
            continue
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.85)
        if close:
            warnings.append(f"{name} is not a setting; did you mean {close[0]}? (ignored)")
        elif name.upper().startswith("FALCONPROC_"):
            warnings.append(f"{name} is not a setting falconproc knows (ignored)")
    return warnings


def _mask(env: str, value: Any) -> Any:
    if value is None:
        return None
    if env in SECRET_VARIABLES:
        return "***"
    if isinstance(value, str) and "://" in value:  # credentials in a URI
        return re.sub(r"(://[^/@:]*:)[^/@]*@", r"\1***@", value)
    return value


def effective_config(settings: Settings) -> dict[str, Any]:
    """Every setting by its variable, as in effect (secrets masked), JSON-ready."""
    shown: dict[str, Any] = {}
    for f in fields(settings):
        value = getattr(settings, f.name)
        if isinstance(value, Path):
            value = str(value)
        elif isinstance(value, tuple):
            value = list(value)
        shown[f.metadata["env"]] = _mask(f.metadata["env"], value)
    return shown
