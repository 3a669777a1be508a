"""The harness itself: tests/conftest.py's rule that marks every test starting the service
``blackbox``, and the launcher's guard behind it."""
from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support.corpus import ROOT
from tests.support.service import Launcher, make_service, service_env

# Every module with tests that start the real service (gunicorn, or the job supervisor
# alone): `-m blackbox` must select tests of each, and of no other module. A new module
# that starts the service belongs here.
STARTS_THE_SERVICE = {
    "tests/documents/test_document_thumbnails.py",
    "tests/images/test_exif.py",
    "tests/images/test_heic_avif.py",
    "tests/images/test_hostile.py",
    "tests/images/test_http_presets.py",
    "tests/images/test_negotiation.py",
    "tests/images/test_optimize.py",
    "tests/images/test_placeholder.py",
    "tests/ingest/test_admission.py",
    "tests/ingest/test_concurrency.py",
    "tests/ingest/test_freed_memory.py",
    "tests/ingest/test_kill_during_uploads.py",
    "tests/ingest/test_kill_worker.py",
    "tests/ingest/test_known_duplicates.py",
    "tests/ingest/test_multipart_upload.py",
    "tests/ingest/test_roundtrip.py",
    "tests/ingest/test_tus.py",
    "tests/ingest/test_types.py",
    "tests/jobs/test_blackbox_jobs.py",
    "tests/jobs/test_crash_mixed.py",
    "tests/jobs/test_scale_out.py",
    "tests/jobs/test_supervisor_lifecycle.py",
    "tests/jobs/test_supervisor_orphans.py",
    "tests/jobs/test_supervisor_watchdog.py",
    "tests/observability/test_backpressure.py",
    "tests/observability/test_bench_cli.py",
    "tests/observability/test_health.py",
    "tests/observability/test_load.py",  # marked by hand: bench_load.py starts it
    "tests/observability/test_metrics_exposition.py",
    "tests/observability/test_request_ids_logs.py",
    "tests/scan/test_scan_backfill.py",
    "tests/scan/test_service_scan.py",
    "tests/scan/test_streamed_scan.py",
    "tests/serving/test_filenames.py",
    "tests/serving/test_serving.py",
    "tests/store/test_enospc.py",
    "tests/store/test_s3_instances.py",
    "tests/text/test_ocr_languages.py",
    "tests/text/test_service_hostile.py",
    "tests/text/test_service_text.py",
    "tests/video/test_service_video.py",
    "tests/web/test_contract.py",
    "tests/web/test_errors.py",
    "tests/web/test_gunicorn_runtime.py",
    "tests/web/test_keepalive.py",
    "tests/web/test_rate_limit.py",
    "tests/web/test_refusals.py",
    "tests/web/test_slow_clients.py",
    "tests/web/test_slow_uploads.py",
}

# Tests of those modules that start nothing, and tests that start something only through
# a fixture of a fixture: the rule must get each right, not just its module.
NOT_BLACKBOX = {
    "tests/web/test_gunicorn_runtime.py::test_gunicorn_settings_follow_the_service_settings",
    "tests/ingest/test_roundtrip.py::test_corpus_is_present",
    "tests/web/test_contract.py::test_docs_api_md_shows_the_generated_error_table",
}
BLACKBOX = {
    "tests/web/test_gunicorn_runtime.py::test_workers_recycle_after_max_requests_without_failing_a_request",
    "tests/images/test_http_presets.py::test_head_renders_a_missing_preset",  # ondemand_service <- launcher
    "tests/web/test_keepalive.py::test_refused_uploads_close_and_the_next_request_on_the_session_works",
    "tests/jobs/test_supervisor_orphans.py::test_a_standalone_worker_killed_by_sigkill_leaves_no_job_or_child",
}


@pytest.fixture(scope="module")
def selected() -> set[str]:
    """The node ids `pytest -m blackbox` selects, collected in a child pytest."""
    proc = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-m", "blackbox",
                           "-p", "no:cacheprovider", "tests"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return {line.strip() for line in proc.stdout.splitlines() if "::" in line}


def test_blackbox_selects_every_module_that_starts_the_service_and_no_other(selected):
    modules = {node.split("::")[0] for node in selected}
    assert STARTS_THE_SERVICE - modules == set(), "these modules start the service but -m blackbox misses them"
    assert modules - STARTS_THE_SERVICE == set(), (
        "-m blackbox selects tests of these modules: if they really start the service, add them to "
        "STARTS_THE_SERVICE; if not, the rule in tests/conftest.py marks too much")


def test_blackbox_is_decided_per_test(selected):
    assert BLACKBOX - selected == set()
    assert NOT_BLACKBOX & selected == set()


def test_the_launcher_refuses_to_start_for_a_test_not_marked_blackbox(tmp_path, request):
    """This test requests no launcher fixture, so it is not black-box: a service started
    from its body (not through a fixture, out of the collection rule's sight) must fail
    before any process starts."""
    assert request.node.get_closest_marker("blackbox") is None
    svc = make_service(tmp_path / "svc")
    with pytest.raises(RuntimeError, match="not marked blackbox"):
        svc.start()
    assert svc.proc is None


def test_the_guard_also_covers_a_standalone_job_supervisor(tmp_path):
    with pytest.raises(RuntimeError, match="not marked blackbox"):
        Launcher().worker(service_env(tmp_path / "svc"), tmp_path / "worker.log")
    assert not (tmp_path / "worker.log").exists()

