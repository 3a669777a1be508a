"""Every setting checked before anything starts: one function (wiring.check_settings)
behind `serve`, `worker` and `doctor`; a bad value ends them with exit 2 and one line
naming the variable, never a traceback; sizes take units; near-miss variable names
warn; `doctor` shows the effective configuration with secrets masked."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from falconproc.config import Settings, SettingsError, effective_config, variable_warnings
from falconproc.wiring import check_settings, installed_ocr_languages
from tests.support.corpus import ROOT
from tests.support.jobs import JOB_PLUGINS
from tests.support.service import subprocess_env

BAD = [
    ("PRESETS", "square:512x512:wepb:80", "PRESETS: cannot read"),
    ("PRESETS", "original:10x10:png:80", "reserved"),
    ("EAGER_PRESETS", "thumbnail,thumbnial", "EAGER_PRESETS: unknown presets"),
    ("JOB_PLUGINS", "no_such_module.jobs", "JOB_PLUGINS: cannot import 'no_such_module.jobs'"),
    ("JOB_CONCURRENCY", "imgae=2", "JOB_CONCURRENCY: unknown job types imgae"),
    ("JOB_TIMEOUTS", "image=10,txt=5", "JOB_TIMEOUTS: unknown job types txt"),
    ("JOB_PRIORITIES", "image,text,orc", "JOB_PRIORITIES: unknown job types orc"),
    ("OCR_LANGUAGES", "eng,tlh", "OCR_LANGUAGES: tlh not installed"),
    ("STORAGE_BACKEND", "s4", "STORAGE_BACKEND: unknown backend"),
    ("MAX_UPLOAD_BYTES", "12 parsecs", "MAX_UPLOAD_BYTES: expected a size"),
]


@pytest.mark.parametrize("env, value, says", BAD)
def test_check_settings_names_the_variable(env, value, says):
    with pytest.raises(SettingsError) as info:
        check_settings(Settings.from_env({env: value}))
    assert str(info.value).startswith(f"{env}:") and says in str(info.value), str(info.value)


def test_good_structured_settings_pass():
    settings = Settings.from_env({
        "PRESETS": "square:512x512:webp:80", "EAGER_PRESETS": "square,thumbnail", "JOB_PLUGINS": JOB_PLUGINS,
        "JOB_CONCURRENCY": "image=2,work=3", "JOB_TIMEOUTS": "ocr=30,hang=3", "OCR_LANGUAGES": "eng,deu"})
    assert check_settings(settings) == []


def test_installed_languages_come_from_tesseract():
    langs = installed_ocr_languages()
    assert langs is not None and "eng" in langs  # bootstrap.sh installs tesseract-ocr-eng
    assert not any(" " in lang or ":" in lang for lang in langs)


@pytest.mark.parametrize("raw, expected", [
    ("1.25G", 1342177280), ("512M", 512 * 1024 ** 2), ("64KiB", 65536), ("2gb", 2 * 1024 ** 3),
    ("1_000", 1000), ("104857600", 104857600), (" 1T ", 1024 ** 4),
])
def test_sizes_accept_units(raw, expected):
    assert Settings.from_env({"MAX_UPLOAD_BYTES": raw}).max_upload_bytes == expected


def test_misspelt_and_unknown_falconproc_variables_warn():
    warnings = variable_warnings({"JOB_CONCURENCY": "image=2", "FALCONPROC_NO_EXTENSION": "1",
                                  "FALCONPROC_COLOUR": "blue", "PATH": "/bin", "HOSTNAME": "box",
                                  "JOB_CONCURRENCY": "image=2", "FALCONPROC_NO_EXTENSIONS": "1"})
    assert warnings == [
        "FALCONPROC_COLOUR is not a setting falconproc knows (ignored)",
        "FALCONPROC_NO_EXTENSION is not a setting; did you mean FALCONPROC_NO_EXTENSIONS? (ignored)",
        "JOB_CONCURENCY is not a setting; did you mean JOB_CONCURRENCY? (ignored)",
    ]


def test_effective_config_masks_secrets():
    shown = effective_config(Settings.from_env({
        "PROCESSOR_AUTH_TOKEN": "hunter2", "RATE_LIMIT_STORAGE_URI": "redis://app:pa55@redis:6379/0"}))
    assert shown["PROCESSOR_AUTH_TOKEN"] == "***"
    assert shown["RATE_LIMIT_STORAGE_URI"] == "redis://app:***@redis:6379/0"
    assert "hunter2" not in json.dumps(shown) and "pa55" not in json.dumps(shown)
    assert shown["MEMORY_LIMIT_BYTES"] == 1342177280


def _cli(tmp_path: Path, command: str, **env: str) -> subprocess.CompletedProcess:
    child_env = subprocess_env(FILE_STORAGE_PATH=str(tmp_path / "files"), CACHE_PATH=str(tmp_path / "cache"),
                               QUEUE_PATH=str(tmp_path / "queue"), **env)
    return subprocess.run([sys.executable, "-m", "falconproc.cli", command], env=child_env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("command", ["serve", "worker", "doctor"])
@pytest.mark.parametrize("env, value, says", [BAD[0], BAD[3], BAD[4], BAD[7]])
def test_each_command_refuses_a_bad_setting_with_one_line(tmp_path, command, env, value, says):
    proc = _cli(tmp_path, command, **{env: value})
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert proc.stderr.strip().splitlines() == [f"falconproc: invalid setting: {proc.stderr.split(': ', 2)[2].strip()}"]
    assert says in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stdout == ""


def test_doctor_prints_effective_config_and_warnings(tmp_path):
    proc = _cli(tmp_path, "doctor", PROCESSOR_AUTH_TOKEN="hunter2", MEMORY_LIMIT_BYTES="1.25G",
                JOB_CONCURENCY="image=9")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["settings"]["PROCESSOR_AUTH_TOKEN"] == "***" and "hunter2" not in proc.stdout
    assert report["settings"]["MEMORY_LIMIT_BYTES"] == 1342177280
    assert "JOB_CONCURENCY is not a setting; did you mean JOB_CONCURRENCY? (ignored)" in report["warnings"]
