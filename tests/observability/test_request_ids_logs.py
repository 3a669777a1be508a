"""X-Request-ID end to end and JSON log lines: the id is echoed (or made up when the
caller's is hostile), lands in the upload's job records and in the log lines of the
request and of its jobs; every line of the service's stdout is one JSON object."""
from __future__ import annotations

import json
import re

import pytest
import requests

from tests.support.content import unique_text
from tests.support.http import upload, wait_job
from tests.support.wait import wait_for

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def logged_service(launcher, tmp_path_factory):
    svc = launcher.start(tmp_path_factory.mktemp("logs"), LOG_LEVEL="info", PROCESSOR_AUTH_TOKEN=TOKEN)
    yield svc
    svc.stop()


def _lines(svc) -> list[dict]:
    text = svc.log_path.read_text(errors="replace")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_caller_id_is_echoed_and_carried_into_jobs_and_log_lines(logged_service):
    svc = logged_service
    rid = "web-upload-7f3a.42"
    resp = upload(svc, unique_text(), name="note.txt", user="user-77", headers={**AUTH, "X-Request-ID": rid})
    assert resp.status_code == 201, resp.text
    assert resp.headers["X-Request-ID"] == rid
    jobs = resp.json()["jobs"]
    assert jobs, resp.json()
    for summary in jobs:
        record = requests.get(f"{svc.url}/jobs/{summary['id']}", headers=AUTH, timeout=10).json()
        assert record["requestId"] == rid
    job_id = jobs[0]["id"]

    def job_lines():
        return [line for line in _lines(svc) if line.get("job_id") == job_id]

    wait_for(lambda: any(" done" in line["message"] for line in job_lines()), timeout=60)
    assert {line["request_id"] for line in job_lines()} == {rid}

    def access_line():
        found = [line for line in _lines(svc)
                 if line["logger"] == "gunicorn.access" and line.get("request_id") == rid]
        return found[0] if found else None

    line = wait_for(access_line, timeout=10)
    assert line["method"] == "POST" and line["route"] == "/upload" and line["status"] == 201
    assert line["user_id"] == "user-77"
    assert line["bytes"] > 0 and line["duration_ms"] > 0
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["time"])


@pytest.mark.parametrize("hostile", ["x" * 129, "a b", "evil\"quote", "tab\tinside", "{\"json\": 1}", "é-unicode", ""])
def test_hostile_ids_are_replaced_by_a_generated_one(logged_service, hostile):
    resp = requests.get(logged_service.url + "/health", headers={"X-Request-ID": hostile.encode("latin-1")},
                        timeout=10)
    assert resp.status_code == 200
    assert re.fullmatch(r"[0-9a-f]{32}", resp.headers["X-Request-ID"])


def test_every_response_has_an_id_even_a_refusal(logged_service):
    resp = requests.get(logged_service.url + "/jobs/" + "0" * 32, timeout=10)  # no token
    assert resp.status_code == 401
    first = resp.headers["X-Request-ID"]
    again = requests.get(logged_service.url + "/jobs/" + "0" * 32, timeout=10).headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", first) and first != again
    line = wait_for(lambda: [entry for entry in _lines(logged_service) if entry.get("request_id") == first],
                    timeout=10)[0]
    # Refused before routing: no route template, the path is there.
    assert line["status"] == 401 and line["route"] == "unmatched" and line["path"].startswith("/jobs/")


def test_every_line_is_json_with_one_time_style(logged_service):
    lines = _lines(logged_service)  # json.loads raises on any line that is not JSON
    loggers = {line["logger"] for line in lines}
    assert {"gunicorn.error", "gunicorn.access"} <= loggers, loggers
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["time"]) for line in lines)
    assert any("Booting worker" in line["message"] for line in lines)


def test_text_format_access_lines(launcher, tmp_path):
    """LOG_FORMAT=text: every access line in the text shape, with the route template, the
    status, the request id and the user, written in batches like the JSON ones."""
    svc = launcher.start(tmp_path, LOG_FORMAT="text")
    try:
        resp = upload(svc, unique_text(), name="note.txt", user="user-5", headers={"X-Request-ID": "text-rid-1"})
        assert resp.status_code == 201, resp.text
        assert requests.get(f"{svc.url}/cache/{'0' * 64}/metadata", timeout=10).status_code == 404

        def access_lines() -> list[str]:
            return [line for line in svc.log_path.read_text(errors="replace").splitlines()
                    if "INFO gunicorn.access: " in line]

        lines = wait_for(lambda: len(access_lines()) >= 2 and access_lines(), 10, message="two access lines")
        assert all(re.match(r"\[\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\] \[\d+\] INFO gunicorn\.access: ", line)
                   for line in lines), lines
        assert any(line.endswith("rid=text-rid-1 user=user-5") and " POST /upload 201 " in line for line in lines)
        assert any(" GET /cache/{content_hash}/metadata 404 " in line for line in lines), lines
    finally:
        svc.stop()
