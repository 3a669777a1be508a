"""UploadRateLimiter on memory:// storage, and its two settings."""
from __future__ import annotations

import pytest

from falconproc.config import Settings, SettingsError
from falconproc.errors import RateLimited
from falconproc.ingest.ratelimit import UploadRateLimiter


def _allowed(limiter: UploadRateLimiter, user: str, n: int) -> int:
    ok = 0
    for _ in range(n):
        try:
            limiter.check(user)
            ok += 1
        except RateLimited:
            pass
    return ok


def test_each_user_has_its_own_window():
    limiter = UploadRateLimiter("3/minute")
    assert _allowed(limiter, "a", 5) == 3
    assert _allowed(limiter, "b", 5) == 3


def test_the_tightest_window_decides_and_a_refusal_counts_in_no_window():
    limiter = UploadRateLimiter("100/second;2/minute")
    assert _allowed(limiter, "a", 10) == 2
    with pytest.raises(RateLimited) as caught:
        limiter.check("a")
    assert caught.value.limit == "2 per 1 minute"
    assert 1 <= caught.value.retry_after <= 60
    # Only the two admitted uploads were counted in the per-second window.
    second = limiter.items[0]
    assert limiter.limiter.get_window_stats(second, "falconproc-upload", "a").remaining == 98


def test_no_spec_means_no_limit():
    limiter = UploadRateLimiter(None)
    assert _allowed(limiter, "a", 1000) == 1000


def test_an_unreachable_storage_lets_uploads_through(caplog):
    limiter = UploadRateLimiter("1/minute", "redis://127.0.0.1:1/0")  # nothing listens on port 1
    assert _allowed(limiter, "a", 3) == 3
    assert "rate limit storage unavailable" in caplog.text


@pytest.mark.parametrize("raw, expected", [("off", None), ("0", None), ("", None),
                                           ("10/second;600/minute", "10/second;600/minute")])
def test_upload_rate_limit_setting(raw, expected):
    assert Settings.from_env({"UPLOAD_RATE_LIMIT": raw}).upload_rate_limit == expected


@pytest.mark.parametrize("env", [{"UPLOAD_RATE_LIMIT": "fast"}, {"UPLOAD_RATE_LIMIT": "10 per fortnight"},
                                 {"RATE_LIMIT_STORAGE_URI": "ftp://host"}, {"RATE_LIMIT_STORAGE_URI": "redis"}])
def test_bad_rate_limit_settings_stop_start_up(env):
    with pytest.raises(SettingsError, match=next(iter(env))):
        Settings.from_env(env)
