"""The JSON access line is joined by hand for speed: it must stay exactly what json.dumps
makes of the same fields, for every kind of value a request can put there."""
from __future__ import annotations

import calendar
import io
import json
import logging
import math
import time

import pytest

from falconproc.observability.logs import (
    TEXT_FORMAT,
    BufferedLineHandler,
    _TextAccess,
    _UtcText,
    _utc_stamp,
    access_json_line,
    access_text_line,
)

FIELDS = [
    {"method": "GET", "path": "/cache/abc/thumbnail", "route": "/cache/{hash}/{preset}", "status": 200,
     "bytes": 3670, "duration_ms": 1.234, "request_id": "fb45", "user_id": None, "remote": "127.0.0.1"},
    # What a hostile client controls: quotes, backslashes, control characters, non-ASCII.
    {"method": "GET", "path": '/x"y\\z\n\t\x00é漢😀', "user_id": "u\"1", "status": None, "bytes": 0},
    {"duration_ms": 0.1 + 0.2, "big": 10**30, "neg": -5, "float_int": 3.0, "tiny": 1e-300},
    {"inf": math.inf, "ninf": -math.inf, "nan": math.nan, "flag": True, "off": False, "list": [1, "a"]},
    {},
]


def _expected(logger: str, created: float, pid: int, fields: dict) -> str:
    return json.dumps({"message": "request", "time": _utc_stamp(created), "level": "info", "logger": logger,
                       "pid": pid, **{k: v for k, v in fields.items() if v is not None}})


@pytest.mark.parametrize("fields", FIELDS)
def test_line_is_what_json_dumps_makes(fields):
    created = time.time()
    line = access_json_line("gunicorn.access", created, 4242, fields)
    assert line == _expected("gunicorn.access", created, 4242, fields)
    json.loads(line)  # and it parses (NaN/Infinity as Python's json writes and reads them)


@pytest.mark.parametrize("created", [0.0, 1.9995, 1796630400.123, 1796630400.999999, 1796630401.0])
def test_stamp_matches_a_fresh_format_across_second_boundaries(created):
    for moment in (created, created + 1, created):  # the cached second changes and back
        whole = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(int(moment)))
        assert _utc_stamp(moment) == f"{whole}.{int(moment % 1 * 1000):03d}Z"
        parsed = time.strptime(_utc_stamp(moment)[:19], "%Y-%m-%dT%H:%M:%S")
        assert calendar.timegm(parsed) == int(moment)


def test_batching_handler_writes_the_same_line():
    stream = io.StringIO()
    handler = BufferedLineHandler(stream)
    fields = FIELDS[1]
    before = time.time()
    handler.write_access("gunicorn.access", fields)
    handler.flush()
    written = json.loads(stream.getvalue())
    assert stream.getvalue().endswith("}\n") and stream.getvalue().count("\n") == 1
    assert written["path"] == fields["path"] and written["user_id"] == fields["user_id"]
    assert "status" not in written  # None fields are left out
    assert written["time"] >= _utc_stamp(before)[:19]


ACCESS_KEYS = ("method", "path", "route", "status", "bytes", "duration_ms", "request_id", "user_id", "remote")


@pytest.mark.parametrize("fields", [FIELDS[0], {key: FIELDS[1].get(key) for key in ACCESS_KEYS}])
def test_text_line_is_what_the_text_formatter_makes(fields):
    # access_fields always gives every key (None where unknown), as these do.
    # The service's text shape (TEXT_FORMAT, as every other text line) around the access message.
    message = ("%(method)s %(route)s %(status)s %(bytes)sB %(duration_ms)sms rid=%(request_id)s "
               "user=%(user_id)s") % fields
    record = logging.LogRecord("gunicorn.access", logging.INFO, __file__, 1, message, None, None)
    expected = _UtcText(TEXT_FORMAT).format(record)
    assert access_text_line("gunicorn.access", record.created, record.process, fields) == expected
    record.access = dict(fields)  # and the formatter of LogRecords with fields writes the same line
    assert _TextAccess(TEXT_FORMAT).format(record) == expected


def test_batching_handler_writes_text_lines_in_order():
    stream = io.StringIO()
    handler = BufferedLineHandler(stream)
    handler.write_access("gunicorn.access", {**FIELDS[0], "status": 200}, access_text_line)
    handler.write_access("gunicorn.access", {**FIELDS[0], "status": 404}, access_text_line)
    handler.flush()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2 and " 200 3670B " in lines[0] and " 404 3670B " in lines[1]
    assert all(line.startswith("[") and "INFO gunicorn.access: GET /cache/{hash}/{preset}" in line for line in lines)
