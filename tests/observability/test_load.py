"""reliability.md's "load" row: sustained mixed uploads and preset/text reads against the
real service. Runs benchmarks/bench_load.py briefly and holds it to the pass marks: the
process tree (PSS) stays under the memory limit, no 5xx but 503 (each with Retry-After), no
connection errors, every 2xx upload reads back with its hash, no refused upload left
anything behind."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.support.corpus import ROOT

# The service runs in bench_load.py's process, out of the launcher fixtures' sight: marked by hand.
pytestmark = pytest.mark.blackbox

LIMIT = 1_342_177_280  # the service's default MEMORY_LIMIT_BYTES, the container's 1.25 GiB


def test_sustained_mixed_load_stays_under_the_limit_without_errors(tmp_path):
    out = tmp_path / "load.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_load.py"), "--duration", "20",
                           "--clients", "6", "--memory-limit", str(LIMIT), "--json-out", str(out), "--no-chart"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    summary = proc.stdout[-2000:]
    assert result["server_errors"] == {}, summary + result["log_tail"]
    assert result["connection_errors"] == {}, (summary, result["error_samples"])
    assert result["missing_retry_after"] == 0
    checks = result["verify"]
    assert checks.get("stored_bad", 0) == 0 and checks.get("refused_present", 0) == 0, checks
    assert checks.get("stored_ok", 0) >= 10, checks
    assert result["tree_pss_peak"] < LIMIT, summary
    reads = result["operations"]["read_preset"]["status"]
    assert reads.get("200", 0) > 0, reads
