"""Request ids and log lines in one format for every process of the tree.

``LOG_FORMAT=json`` (the default) writes one JSON object per line on stdout with
python-json-logger: the service's own lines, gunicorn's error and access lines (through
the logconfig dict gunicorn_conf.py hands gunicorn) and the job supervisor's, all with
the same ``time`` style (ISO 8601 UTC, milliseconds). ``text`` is for humans.

The request id of the request being handled (or of the upload a job came from) lives
in a context variable; a filter puts it on every record as ``request_id``.
"""
from __future__ import annotations

import contextvars
import logging
import logging.config
import re
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

REQUEST_ID_HEADER = "X-Request-ID"
# What a caller's id may look like: anything else (too long, control characters, quotes
# that would break a log line) is replaced by a fresh id rather than trusted.
_VALID_ID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")

_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("falconproc_request_id", default=None)


def sanitize_request_id(given: str | None) -> str:
    """The caller's id when it is a short printable token, else a new one."""
    if given is not None:
        given = given.strip()
        if _VALID_ID.fullmatch(given):
            return given
    return uuid.uuid4().hex


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


def _utc_time(formatter: logging.Formatter, record: logging.LogRecord) -> str:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    return f"{stamp}.{int(record.msecs):03d}Z"


class _UtcText(logging.Formatter):
    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        return _utc_time(self, record)


def _json_formatter_class() -> type[logging.Formatter]:
    from pythonjsonlogger.json import JsonFormatter

    class ServiceJson(JsonFormatter):
        """Fixed field names; gunicorn's access records become structured fields."""

        def add_fields(self, log_record: dict[str, Any], record: logging.LogRecord,
                       message_dict: dict[str, Any]) -> None:
            super().add_fields(log_record, record, message_dict)
            log_record["time"] = _utc_time(self, record)
            log_record["level"] = record.levelname.lower()
            log_record["logger"] = record.name
            log_record["pid"] = record.process
            if record.name == "gunicorn.access" and isinstance(record.args, dict):
                log_record.update(access_fields(record.args))
                log_record["message"] = "request"
            if log_record.get("request_id") is None:
                log_record.pop("request_id", None)

    return ServiceJson


def _atom(atoms: dict[str, Any], key: str) -> str | None:
    value = atoms.get(key)
    return None if value in (None, "-", "") else str(value)


def access_fields(atoms: dict[str, Any]) -> dict[str, Any]:
    """gunicorn's access-log atoms -> the fields of an access line. The route template
    is left in the WSGI environ by the app (``falconproc.route``)."""
    size = _atom(atoms, "B")
    return {
        "method": _atom(atoms, "m"),
        "path": _atom(atoms, "U"),
        "route": _atom(atoms, "{falconproc.route}e"),
        "status": int(atoms["s"]) if str(atoms.get("s", "")).isdigit() else None,
        "bytes": int(size) if size and size.isdigit() else 0,
        "duration_ms": round(int(atoms.get("D", 0)) / 1000, 3),
        "request_id": _atom(atoms, "{x-request-id}o"),
        "user_id": _atom(atoms, "{x-user-id}i"),
        "remote": _atom(atoms, "h"),
    }


class _TextAccess(_UtcText):
    def format(self, record: logging.LogRecord) -> str:
        if isinstance(record.args, dict):
            f = access_fields(record.args)
            record.msg = ("%(method)s %(route)s %(status)s %(bytes)sB %(duration_ms)sms "
                          "rid=%(request_id)s user=%(user_id)s")
            record.args = f
        return super().format(record)


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
        "handlers": {"main": {**handler, "formatter": "main"}, "access": {**handler, "formatter": "access"}},
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
