"""gunicorn settings and hooks, built from falconproc's Settings.

Used as ``gunicorn -c python:falconproc.gunicorn_conf falconproc.wsgi:app``
(which is what ``falconproc serve`` runs).
"""
from __future__ import annotations

import functools
import logging
import os
import resource
import shutil
import socket
import struct
import time

from gunicorn import glogging

from falconproc.jobs.keeper import SupervisorKeeper
from falconproc.observability.logs import (
    BufferedLineHandler,
    access_fields,
    access_json_line,
    access_text_line,
    logging_config,
)
from falconproc.observability.metrics_dir import MULTIPROC_ENV, fold_dead_process, new_run_directory
from falconproc.observability.runtime import mark_service_root
from falconproc.osutil import keep_freed_memory
from falconproc.web.keepalive import defer_100_continue
from falconproc.wiring import Components

_components = Components()  # builds nothing yet: the master only ever needs the store
_settings = _components.settings

# prometheus_client picks multiprocess mode at import time from this variable, so it
# is set here, in the master, before any worker imports the app. One fresh directory
# per master; directories of masters that were killed are removed.
_metrics_dir = new_run_directory(str(_settings.metrics_dir) if _settings.metrics_dir else None)
os.environ[MULTIPROC_ENV] = _metrics_dir

bind = [f"{_settings.host}:{_settings.port}"]
workers = _settings.web_workers
# gthread: a slow client holds one thread, not a whole process, and keep-alive works.
worker_class = "gthread"
threads = _settings.web_threads
timeout = _settings.worker_timeout
graceful_timeout = _settings.graceful_timeout
keepalive = _settings.keepalive
max_requests = _settings.max_requests
# Jitter so that workers do not all recycle at the same moment.
max_requests_jitter = max(1, _settings.max_requests // 10) if _settings.max_requests else 0
# Request line and header limits stay at gunicorn's safe defaults; the body limit is ours.
limit_request_line = 8190
limit_request_fields = 100
# Heartbeat files on tmpfs: a slow or full disk must not make gunicorn think workers hung.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
loglevel = _settings.log_level
# Every line (gunicorn's error and access logs, the app's) in one format on stdout; the
# access line takes its fields from these atoms (falconproc/observability/logs.py).
logconfig_dict = logging_config(_settings.log_format, _settings.log_level, access_log=_settings.access_log)
access_log_format = "%(m)s %(U)s %(s)s"
accesslog = None
errorlog = "-"


_ACCESS_LINE = access_json_line if _settings.log_format == "json" else access_text_line


class _Logger(glogging.Logger):
    """gunicorn's logger, with an access line built from the few fields it has
    (gunicorn's own builds a dict of every header and environ entry and a timestamp
    string first: a third of a cached read's cost); none at all with ACCESS_LOG off."""

    def access(self, resp, req, environ, request_time) -> None:
        if not _settings.access_log:
            return
        try:
            fields = access_fields(resp, environ, request_time)
            if self._direct is not None:
                self._direct.write_access(self.access_log.name, fields, _ACCESS_LINE)
            else:
                self.access_log.info("request", extra={"access": fields})
        except Exception:  # noqa: BLE001 - a log line must never fail a request
            self.error("access log line failed", exc_info=True)

    def setup(self, cfg) -> None:
        super().setup(cfg)
        self.__dict__.pop("_direct", None)  # a reload (HUP) brings new handlers

    @functools.cached_property
    def _direct(self) -> BufferedLineHandler | None:
        """The access logger's one batching handler, written to without a LogRecord."""
        handlers = self.access_log.handlers
        if len(handlers) == 1 and isinstance(handlers[0], BufferedLineHandler) and self.access_log.isEnabledFor(
                logging.INFO):
            return handlers[0]
        return None


logger_class = _Logger
proc_name = "falconproc"
# gunicorn >= 25 opens a control socket under ~/.gunicorn; several instances would fight over it.
control_socket_disable = True


def on_starting(server) -> None:
    """In the master, before any worker exists: prepare the store and sweep debris."""
    mark_service_root()
    if _settings.malloc_keep_bytes:
        keep_freed_memory(_settings.malloc_keep_bytes)  # inherited by the workers forked next
    for path in (_settings.file_storage_path, _settings.cache_path, _settings.queue_path):
        path.mkdir(parents=True, exist_ok=True)
    _components.check_ocr_languages()  # a missing traineddata stops start-up, named
    swept = _components.store.sweep_temp(at_startup=True)
    logging.getLogger("gunicorn.error").info(
        "falconproc starting: store %s, %d stale temp entries swept", _settings.file_storage_path, swept)


def _fold_metrics_of(pid: int) -> None:
    """A dead worker's or supervisor's samples into the master's archive (totals stay
    monotonic, no file per dead process is left)."""
    try:
        fold_dead_process(pid, _metrics_dir)
    except Exception:  # noqa: BLE001 - bookkeeping must never take the master down
        logging.getLogger("gunicorn.error").exception("folding the metrics of process %s failed", pid)


_keeper = SupervisorKeeper(_metrics_dir, on_exited=_fold_metrics_of,
                           stall_timeout=_settings.supervisor_stall_timeout)


def when_ready(server) -> None:
    # gthread workers wait on a stalled client forever; a receive timeout on the
    # listening sockets (inherited by accepted ones) makes them give up on it.
    timeout = struct.pack("ll", _settings.client_timeout, 0)
    for listener in server.LISTENERS:
        listener.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeout)
    if _settings.run_supervisor:
        _keeper.start()


# Expect: 100-continue is answered by the app's first body read, not before it runs.
pre_request = defer_100_continue


_RSS_CHECK_INTERVAL = 0.5  # seconds
_next_rss_check = 0.0


def post_request(worker, req, environ, resp) -> None:
    """A web worker that has grown past its cap is recycled after this request.

    The peak RSS (getrusage) rather than the current one (psutil reads /proc): a worker
    that once grew past the cap keeps most of that memory in its allocator's arenas
    anyway. At most twice a second: getrusage(RUSAGE_SELF) walks every thread of the
    worker under a kernel lock, a fifth of a cached read's time when done every request;
    the memory governor answers faster pressure."""
    global _next_rss_check
    now = time.monotonic()
    if now < _next_rss_check:
        return
    _next_rss_check = now + _RSS_CHECK_INTERVAL
    if resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 > _settings.web_worker_max_rss:
        worker.log.warning("worker %s over WEB_WORKER_MAX_RSS; recycling it", worker.pid)
        worker.alive = False


def worker_exit(server, worker) -> None:
    """In a worker that is stopping: its last request counts reach the samples."""
    from falconproc.observability.metrics import TALLY

    TALLY.flush()
    for handler in logging.getLogger("gunicorn.access").handlers:
        handler.flush()  # its buffered lines


def child_exit(server, worker) -> None:
    """In the master, after a worker died (even by SIGKILL): its upload temp dirs lost
    their locks with it, so they can be swept now; live uploads keep theirs."""
    _fold_metrics_of(worker.pid)
    try:
        _components.store.sweep_temp()
    except OSError:
        logging.getLogger("gunicorn.error").exception("temp sweep after worker exit failed")


def on_exit(server) -> None:
    _keeper.stop(timeout=_settings.graceful_timeout + 5)
    shutil.rmtree(_metrics_dir, ignore_errors=True)
