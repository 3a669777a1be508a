"""`falconproc bench` against a running service: closed and open loop, the progress
line, the table, the JSON results and the PNG chart."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.support.corpus import ROOT
from tests.support.service import subprocess_env

TOKEN = "bench-token"


@pytest.fixture(scope="module")
def bench_service(launcher, tmp_path_factory):
    svc = launcher.start(tmp_path_factory.mktemp("bench"), PROCESSOR_AUTH_TOKEN=TOKEN, UPLOAD_RATE_LIMIT="off")
    yield svc
    svc.stop()


def _bench(svc, out, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "falconproc.cli", "bench", "--url", svc.url, "--token", TOKEN,
                           "--out", str(out), *args], env=subprocess_env(), cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


def test_closed_loop_writes_table_json_and_chart(bench_service, tmp_path):
    proc = _bench(bench_service, tmp_path, "--duration", "4", "--concurrency", "2",
                  "--mix", "upload=1,preset=2,text=1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "req/s" in proc.stderr and "p95" in proc.stderr  # the live progress line
    assert proc.stdout.splitlines()[0].split()[:4] == ["op", "requests", "req/s", "errors"]
    (result,) = tmp_path.glob("bench-*.json")
    data = json.loads(result.read_text())
    overall = data["results"]["all"]
    assert overall["requests"] == len(data["samples"]) > 10 and overall["errors"] == 0
    assert overall["p50_ms"] <= overall["p95_ms"] <= overall["p99_ms"] <= overall["max_ms"]
    assert set(data["results"]) >= {"upload", "preset", "text", "all"}
    # 503 + Retry-After is the service pushing back (queue or upload slots full), not an error
    assert set(data["results"]["upload"]["statuses"]) <= {"200", "201", "503"}
    assert data["memory"] and data["peakMemoryUsed"] > 0  # /health sampled
    (png,) = tmp_path.glob("bench-*.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_open_loop_offers_the_rate_asked_for(bench_service, tmp_path):
    proc = _bench(bench_service, tmp_path, "--duration", "3", "--rate", "10", "--concurrency", "8",
                  "--mix", "upload=1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(next(tmp_path.glob("bench-*.json")).read_text())
    assert data["mode"] == "open 10.0/s"
    assert 25 <= data["results"]["all"]["requests"] <= 31  # 10/s for 3 s, arrivals at 0, 0.1, ...


def test_a_wrong_token_fails_the_run(bench_service, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "falconproc.cli", "bench", "--url", bench_service.url,
                           "--token", "wrong", "--duration", "1", "--concurrency", "1", "--mix", "upload=1"],
                          env=subprocess_env(), cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "401:" in proc.stdout, proc.stdout
