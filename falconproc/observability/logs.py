"""Request ids and log lines in one format for every process of the tree.

``LOG_FORMAT=json`` (the default) writes one JSON object per line on stdout with
python-json-logger: the service's own lines, gunicorn's error and access lines (through
the logconfig dict gunicorn_conf.py hands gunicorn) and the job supervisor's, all with
the same ``time`` style (ISO 8601 UTC, milliseconds). ``text`` is for humans.

The request id of the request being handled (or of the upload a job came from) lives
in a context variable; a filter puts it on every record as ``request_id``.
"""
from __future__ import annotations

import atexit
import contextvars
import json
from json.encoder import encode_basestring_ascii as _json_string  # json.dumps' own quoting
import logging
import logging.config
import os
import random
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

REQUEST_ID_HEADER = "X-Request-ID"
# What a caller's id may look like: anything else (too long, control characters, quotes
# that would break a log line) is replaced by a fresh id rather than trusted.
_VALID_ID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")

_INF = float("inf")
_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("falconproc_request_id", default=None)


def sanitize_request_id(given: str | None) -> str:
    """The caller's id when it is a short printable token, else a new one."""
    if given is not None:
        given = given.strip()
        if _VALID_ID.fullmatch(given):
            return given
    # 128 random bits as hex: unique, not secret (ids are echoed to anyone who asks),
    # so the fast generator rather than os.urandom's syscall on every request.
    return f"{random.getrandbits(128):032x}"


def current_request_id() -> str | None:
    return _request_id.get()


@contextmanager
def request_id_context(request_id: str | None) -> Iterator[None]:
    """Every log line inside the block carries this id (a job's, for its run)."""
    token = _request_id.set(request_id)
    try:
        yield
    finally:
        _request_id.reset(token)


def set_request_id(request_id: str | None) -> contextvars.Token:
    return _request_id.set(request_id)


def reset_request_id(token: contextvars.Token) -> None:
    _request_id.reset(token)


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` to each record (an explicit ``extra`` wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = _request_id.get()
        return True


_second_stamp: tuple[int, str] = (-1, "")  # the last whole second formatted, shared by threads


def _utc_stamp(created: float) -> str:
    # strftime once per second, not once per line (a line per request under load).
    global _second_stamp
    second = int(created)
    cached_second, text = _second_stamp
    if second != cached_second:
        text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        _second_stamp = (second, text)  # one tuple: threads see the old pair or the new one
    return f"{text}.{int(created % 1 * 1000):03d}Z"


def _utc_time(formatter: logging.Formatter, record: logging.LogRecord) -> str:
    return _utc_stamp(record.created)


def access_json_line(logger: str, created: float, pid: int, fields: dict[str, Any]) -> str:
    """One access line in the JSON format's shape (the fields known, no LogRecord walk).

    The same text json.dumps makes of that dict, joined from its quoted strings and
    numbers: json.dumps walks a fresh dict per request, three times the cost, and this
    runs once per request in the worker's threads."""
    parts = ['{"message": "request", "time": "', _utc_stamp(created), '", "level": "info", "logger": ',
             _json_string(logger), ', "pid": ', str(pid)]
    for key, value in fields.items():
        if value is None:
            continue
        parts += (", ", _json_string(key), ": ", _json_value(value))
    parts.append("}")
    return "".join(parts)


def _json_value(value: Any) -> str:
    if type(value) is str:
        return _json_string(value)
    if type(value) is int or type(value) is float:
        return json.dumps(value) if value != value or value in (_INF, -_INF) else repr(value)
    return json.dumps(value)


def access_text_line(logger: str, created: float, pid: int, fields: dict[str, Any]) -> str:
    """One access line in the text format's shape (what _TextAccess makes of a record)."""
    return (f"[{_utc_stamp(created)}] [{pid}] INFO {logger}: {fields.get('method')} {fields.get('route')} "
            f"{fields.get('status')} {fields.get('bytes')}B {fields.get('duration_ms')}ms "
            f"rid={fields.get('request_id')} user={fields.get('user_id')}")


class _UtcText(logging.Formatter):
    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        return _utc_time(self, record)


def _json_formatter_class() -> type[logging.Formatter]:
    from pythonjsonlogger.json import JsonFormatter

    class ServiceJson(JsonFormatter):
        """Fixed field names; access records (``record.access``) become structured fields."""

        def format(self, record: logging.LogRecord) -> str:
            access = getattr(record, "access", None)
            if access is None:
                return super().format(record)
            # One per request: the fields are known, so skip the generic walk over every
            # LogRecord attribute (half the cost of a cached read's line).
            return access_json_line(record.name, record.created, record.process, access)

        def add_fields(self, log_record: dict[str, Any], record: logging.LogRecord,
                       message_dict: dict[str, Any]) -> None:
            super().add_fields(log_record, record, message_dict)
            log_record["time"] = _utc_time(self, record)
            log_record["level"] = record.levelname.lower()
            log_record["logger"] = record.name
            log_record["pid"] = record.process
            if log_record.get("request_id") is None:
                log_record.pop("request_id", None)

    return ServiceJson


def access_fields(resp: Any, environ: dict[str, Any], request_time: Any) -> dict[str, Any]:
    """The fields of an access line from what gunicorn hands its access logger; the
    route template is left in the WSGI environ by the app (``falconproc.route``)."""
    status = resp.status
    status = status.split(None, 1)[0] if isinstance(status, str) else status
    request_id = None
    for name, value in resp.headers:
        if len(name) == 12 and name.lower() == "x-request-id":
            request_id = value
            break
    return {
        "method": environ.get("REQUEST_METHOD"),
        "path": environ.get("PATH_INFO"),
        "route": environ.get("falconproc.route"),
        "status": int(status) if str(status).isdigit() else None,
        "bytes": getattr(resp, "sent", None) or 0,
        "duration_ms": round(request_time.seconds * 1000 + request_time.microseconds / 1000, 3),
        "request_id": request_id,
        "user_id": environ.get("HTTP_X_USER_ID"),
        "remote": environ.get("REMOTE_ADDR"),
    }


class _TextAccess(_UtcText):
    def format(self, record: logging.LogRecord) -> str:
        access = getattr(record, "access", None)
        if access is None:
            return super().format(record)
        return access_text_line(record.name, record.created, record.process, access)  # the batch writer's line


AccessLine = Callable[[str, float, int, dict[str, Any]], str]  # (logger, created, pid, fields) -> line


class BufferedLineHandler(logging.StreamHandler):
    """A stream handler that writes its lines in batches: every FLUSH_SECONDS from a
    daemon thread, sooner when BUFFER_BYTES are waiting, and at exit. For the access log:
    one write (and one flush) per request, made under the handler's lock by each of a
    worker's threads in turn, cost a cached read more than the app itself; batched, a
    request's share is an append. A SIGKILLed worker loses at most FLUSH_SECONDS of lines
    (nginx's ``access_log ... buffer= flush=`` makes the same trade)."""

    FLUSH_SECONDS = 0.2
    BUFFER_BYTES = 64 * 1024
    ACCESS_LINE_BYTES = 400  # about one JSON access line (393 B measured), for the buffer's bound

    def __init__(self, stream: Any = None) -> None:
        super().__init__(stream)
        # Lines, or access lines' fields with the function that the flusher formats them by.
        self._pending: list[str | tuple[AccessLine, str, float, int, dict[str, Any]]] = []
        self._size = 0
        self._flusher_pid: int | None = None
        self._due = threading.Event()  # the buffer is full: write now
        self._writing = threading.Lock()  # one batch at a time, in order

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + self.terminator
        except Exception:  # noqa: BLE001 - logging's contract: report, never raise
            self.handleError(record)
            return
        self._append(line, len(line))  # under the handler's lock (Handler.handle holds it)

    def write_access(self, name: str, fields: dict[str, Any], line_of: AccessLine = access_json_line) -> None:
        """An access line (``line_of``: access_json_line or access_text_line, the shapes
        of the two formatters) without a LogRecord (no caller lookup, thread and process
        names or filters; the request id is in ``fields``), formatted by the flusher: the
        request's thread only appends, so the work is done in one batch per FLUSH_SECONDS
        instead of between every two requests of 32 threads sharing the GIL."""
        with self.lock:
            self._append((line_of, name, time.time(), os.getpid(), fields), self.ACCESS_LINE_BYTES)

    def _append(self, item: str | tuple[AccessLine, str, float, int, dict[str, Any]], size: int) -> None:
        self._pending.append(item)
        self._size += size
        if self._flusher_pid != os.getpid():  # first line of this (forked) process
            self._flusher_pid = os.getpid()
            self._due = threading.Event()
            self._writing = threading.Lock()  # a lock held at fork stays held in the child
            threading.Thread(target=self._flush_every, name="falconproc-log-flush", daemon=True).start()
            atexit.register(self.flush)
        if self._size >= self.BUFFER_BYTES:
            self._due.set()

    def flush(self) -> None:
        with self._writing:
            with self.lock:
                pending, self._pending, self._size = self._pending, [], 0
            if pending:
                end = self.terminator
                self.stream.write("".join(item if type(item) is str else item[0](*item[1:]) + end
                                          for item in pending))
                self.stream.flush()

    def _flush_every(self) -> None:
        while True:
            self._due.wait(self.FLUSH_SECONDS)
            self._due.clear()
            try:
                self.flush()
            except Exception:  # noqa: BLE001 - a closed stdout must not kill the thread's worker
                pass


TEXT_FORMAT = "[%(asctime)s] [%(process)d] %(levelname)s %(name)s: %(message)s"
JSON_FIELDS = "%(message)s %(request_id)s"


def logging_config(log_format: str, level: str, *, access_log: bool = True) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` dict for one process: the root logger (the
    service's lines) and gunicorn's two loggers, all to stdout in one format."""
    level = level.upper()
    if log_format == "json":
        formatters = {
            "main": {"()": _json_formatter_class(), "fmt": JSON_FIELDS},
            "access": {"()": _json_formatter_class(), "fmt": JSON_FIELDS},
        }
    else:
        formatters = {"main": {"()": _UtcText, "fmt": TEXT_FORMAT},
                      "access": {"()": _TextAccess, "fmt": TEXT_FORMAT}}
    handler = {"class": "logging.StreamHandler", "stream": "ext://sys.stdout", "filters": ["request_id"]}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": RequestIdFilter}},
        "formatters": formatters,
        "handlers": {"main": {**handler, "formatter": "main"},
                     "access": {**handler, "class": f"{__name__}.BufferedLineHandler", "formatter": "access"}},
        "root": {"level": level, "handlers": ["main"]},
        "loggers": {
            "gunicorn.error": {"level": level, "handlers": ["main"], "propagate": False},
            # ACCESS_LOG=0: the logger exists but drops everything.
            "gunicorn.access": {"level": "INFO" if access_log else "CRITICAL", "handlers": ["access"],
                                "propagate": False},
        },
    }


def configure_logging(log_format: str, level: str) -> None:
    """For processes gunicorn does not set up (``falconproc worker`` and its jobs)."""
    logging.config.dictConfig(logging_config(log_format, level))
