"""Helpers of the store tests: a process holding a preset's render lock as an instance does."""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from falconproc import wiring
from falconproc.config import Settings
from falconproc.errors import ServiceOverloaded

RENDERED = "image"


def instance_components(redis_url: str, base: Path, name: str, expiry: float) -> wiring.Components:
    """The Components of one S3 instance sharing ``redis_url``, its own local directories
    under ``base``. The bucket is never reached: only the render lock is used."""
    wiring.RENDER_LOCK_EXPIRY = expiry  # a short expiry keeps the tests short; same code path
    settings = Settings(storage_backend="s3", s3_bucket="render-lock", s3_endpoint_url="http://127.0.0.1:9",
                        redis_url=redis_url, instance_id=name, file_storage_path=base / name / "files",
                        cache_path=base / name / "cache", queue_path=base / name / "queue")
    return wiring.Components(settings)


def hold_render_lock(redis_url: str, base: str, name: str, expiry: str, content_hash: str,
                     hold_seconds: str, log_path: str) -> int:
    """Take the render lock of ``content_hash`` as instance ``name`` (waiting up to ten
    expiries), print ``held``, "render" for ``hold_seconds`` (forever if negative), and
    append ``start``/``end`` lines with wall-clock times to ``log_path``."""
    components = instance_components(redis_url, Path(base), name, float(expiry))
    hold = float(hold_seconds)
    try:
        with components.cache.exclusive(content_hash, RENDERED, timeout=10 * float(expiry)):
            _log(log_path, f"start {name} {time.time():.3f}")
            print("held", flush=True)
            time.sleep(hold if hold >= 0 else 3600)
            _log(log_path, f"end {name} {time.time():.3f}")
    except ServiceOverloaded:
        print("busy", flush=True)
        return 3
    return 0


def _log(path: str, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


if __name__ == "__main__":
    sys.exit(hold_render_lock(*sys.argv[1:]))
