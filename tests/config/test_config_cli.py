"""Settings defaults and validation; `falconproc serve` fails fast; `falconproc doctor`."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from falconproc.config import Settings, SettingsError
from tests.support.corpus import ROOT
from tests.support.service import subprocess_env


def test_defaults_match_the_api_contract(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    s = Settings.from_env({})
    assert s.port == 3003
    assert s.host == "127.0.0.1"
    assert s.max_upload_bytes == 104857600 == 100 * 1024 * 1024
    assert s.memory_limit_bytes == 1342177280 == 1280 * 1024 * 1024
    assert s.auth_token is None
    assert s.file_storage_path == tmp_path / "data" / "files"
    assert s.cache_path == tmp_path / "data" / "cache"
    assert s.queue_path == tmp_path / "data" / "queue"
    assert s.fsync is True
    # The direct constructor and from_env agree.
    assert Settings() == s


def test_from_env_reads_values(tmp_path):
    s = Settings.from_env({
        "PORT": "8080", "HOST": "0.0.0.0", "MAX_UPLOAD_BYTES": "1_000", "FSYNC": "off",
        "FILE_STORAGE_PATH": str(tmp_path / "f"), "PROCESSOR_AUTH_TOKEN": "t0k",
    })
    assert (s.port, s.host, s.max_upload_bytes, s.fsync) == (8080, "0.0.0.0", 1000, False)
    assert s.file_storage_path == tmp_path / "f"
    assert s.auth_token == "t0k"
    assert Settings.from_env({"PROCESSOR_AUTH_TOKEN": ""}).auth_token is None


@pytest.mark.parametrize("env, value", [
    ("PORT", "abc"),
    ("PORT", "0"),
    ("PORT", "65536"),
    ("PORT", "-1"),
    ("PORT", ""),
    ("MAX_UPLOAD_BYTES", "-1"),
    ("MAX_UPLOAD_BYTES", "0"),
    ("MAX_UPLOAD_BYTES", "10 parsecs"),
    ("MAX_UPLOAD_BYTES", "1.5X"),
    ("MEMORY_LIMIT_BYTES", "1M"),
    ("LOG_FORMAT", "xml"),
    ("MEMORY_LIMIT_BYTES", "1000"),
    ("FSYNC", "maybe"),
    ("HOST", "evil host;rm"),
    ("FILE_STORAGE_PATH", "  "),
    ("WEB_WORKERS", "0"),
    ("LOG_LEVEL", "loud"),
    ("STORAGE_RESERVE_BYTES", "-5"),
])
def test_bad_values_raise_settings_error_naming_the_variable(env, value):
    with pytest.raises(SettingsError) as info:
        Settings.from_env({env: value})
    assert str(info.value).startswith(f"{env}:"), str(info.value)
    assert isinstance(info.value, ValueError)


def _shadow_gunicorn(tmp_path: Path) -> tuple[Path, Path]:
    """A fake `gunicorn` package first on PYTHONPATH: `python -m gunicorn` leaves a marker file."""
    shadow = tmp_path / "shadow"
    pkg = shadow / "gunicorn"
    pkg.mkdir(parents=True)
    marker = tmp_path / "gunicorn-started"
    (pkg / "__init__.py").write_text("")
    (pkg / "__main__.py").write_text(
        "import os, sys\n"
        "open(os.environ['GUNICORN_MARKER'], 'w').write(' '.join(sys.argv))\n")
    return shadow, marker


def _serve(tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess, Path]:
    shadow, marker = _shadow_gunicorn(tmp_path)
    child_env = subprocess_env(GUNICORN_MARKER=str(marker), **env)
    child_env["PYTHONPATH"] = f"{shadow}:{child_env['PYTHONPATH']}"
    proc = subprocess.run([sys.executable, "-m", "falconproc.cli", "serve"], env=child_env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=30)
    return proc, marker


def test_serve_with_bad_port_exits_with_a_clear_message_and_never_starts_gunicorn(tmp_path):
    proc, marker = _serve(tmp_path, PORT="abc")
    assert proc.returncode != 0
    assert "PORT" in proc.stderr and "abc" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr, "a settings error is a message, not a crash"
    assert not marker.exists(), "gunicorn must not be started with invalid settings"


def test_serve_with_good_settings_execs_gunicorn(tmp_path):
    """Control for the test above: the shadow gunicorn does record a start."""
    proc, marker = _serve(tmp_path, PORT="3999")
    assert proc.returncode == 0, proc.stderr
    assert marker.exists()
    assert "falconproc.gunicorn_conf" in marker.read_text()


def _doctor(tmp_path: Path, **env: str) -> dict:
    child_env = subprocess_env(
        FILE_STORAGE_PATH=str(tmp_path / "files"), CACHE_PATH=str(tmp_path / "cache"),
        QUEUE_PATH=str(tmp_path / "queue"), **env)
    proc = subprocess.run([sys.executable, "-m", "falconproc.cli", "doctor"], env=child_env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_doctor_prints_json_with_the_implementation(tmp_path):
    report = _doctor(tmp_path)
    assert report["implementation"] in {"python", "cython"}
    expected = subprocess.run(
        [sys.executable, "-c", "import falconproc.native.ingest as n; print(n.IMPLEMENTATION)"],
        env=subprocess_env(), cwd=ROOT, capture_output=True, text=True, timeout=60).stdout.strip()
    assert report["implementation"] == expected
    if report["implementation"] == "cython":
        assert report["compiledAvailable"] is True
    else:
        assert report["compiledAvailable"] is False or report["extensionsDisabled"] is True
    for name in ("file_storage_path", "cache_path", "queue_path"):
        assert report["paths"][name]["writable"] is True
        assert Path(report["paths"][name]["path"]).is_dir()
    assert report["version"]


def test_doctor_honours_no_extensions(tmp_path):
    report = _doctor(tmp_path, FALCONPROC_NO_EXTENSIONS="1")
    assert report["implementation"] == "python"
    assert report["extensionsDisabled"] is True


def test_doctor_reports_ffmpeg_and_warns_without_it(tmp_path):
    report = _doctor(tmp_path)
    assert report["ffmpeg"] and Path(report["ffmpeg"]).is_file()
    assert report["ffprobe"] and Path(report["ffprobe"]).is_file()
    assert not any("not_available" in w for w in report["warnings"])
    missing = _doctor(tmp_path, FFPROBE_BINARY="/nonexistent/ffprobe")
    assert missing["ffprobe"] is None and missing["ffmpeg"] == report["ffmpeg"]
    assert any("not_available" in w for w in missing["warnings"])


def test_video_settings_are_validated():
    settings = Settings.from_env({"VIDEO_MAX_SECONDS": "5", "VIDEO_TIMEOUT": "12.5", "VIDEO_MEMORY_BYTES": "1G",
                                  "FFMPEG_BINARY": "/opt/ffmpeg/bin/ffmpeg"})
    assert (settings.video_max_seconds, settings.video_timeout, settings.video_memory_bytes) == (5, 12.5, 1 << 30)
    assert settings.ffmpeg_binary == "/opt/ffmpeg/bin/ffmpeg"
    for variable, value in (("VIDEO_MAX_SECONDS", "0"), ("VIDEO_TIMEOUT", "-1"), ("VIDEO_MEMORY_BYTES", "1M"),
                            ("FFMPEG_BINARY", "ffmpeg -y"), ("FFPROBE_BINARY", "")):
        with pytest.raises(SettingsError, match=variable):
            Settings.from_env({variable: value})


def test_doctor_with_bad_settings_fails_cleanly(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "falconproc.cli", "doctor"], env=subprocess_env(FSYNC="maybe"),
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "FSYNC" in proc.stderr and "Traceback" not in proc.stderr


def test_allowed_types_are_checked_against_what_the_sniffer_names():
    assert Settings.from_env({"ALLOWED_TYPES": " image/PNG, application/pdf ,"}).allowed_types == \
        "image/png,application/pdf"
    assert Settings.from_env({"ALLOWED_TYPES": "application/octet-stream"}).allowed_types == \
        "application/octet-stream"
    with pytest.raises(SettingsError, match="ALLOWED_TYPES: 'image/pgn' is not a type"):
        Settings.from_env({"ALLOWED_TYPES": "image/png,image/pgn"})
    with pytest.raises(SettingsError, match="executable"):
        Settings.from_env({"ALLOWED_TYPES": "image/png,application/x-executable"})
