"""Durable, atomic filesystem primitives shared by the store, cache and queue
(their locks are in locks.py).

Rename is atomic but not durable by itself: the file is fsynced before the
rename and its directory after it (Pillai et al., "All File Systems Are Not
Created Equal", OSDI'14). A failed fsync is never retried: the page cache may
already have dropped the dirty pages, so the caller deletes the temp file and
fails the request.
"""
from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any


def fsync_dir(path: Path | str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_name(prefix: str) -> str:
    return f".{prefix}-{os.getpid()}-{uuid.uuid4().hex}.tmp"


def atomic_write_bytes(path: Path, data: bytes, *, fsync: bool = True, tmp_dir: Path | None = None) -> None:
    """Write ``data`` to ``path`` so readers see the old file or the whole new one.

    ``tmp_dir`` (same filesystem) keeps the temp file out of ``path``'s directory, so
    a crash leaves it where the start-up sweep looks.
    """
    directory = path.parent
    tmp = (tmp_dir or directory) / temp_name(path.name)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        if fsync:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        _unlink_quietly(tmp)
        raise
    os.close(fd)
    try:
        os.rename(tmp, path)
    except BaseException:
        _unlink_quietly(tmp)
        raise
    if fsync:
        fsync_dir(directory)


def atomic_write_json(path: Path, obj: Any, *, fsync: bool = True, tmp_dir: Path | None = None) -> None:
    data = json.dumps(obj, ensure_ascii=False, indent=2, sort_keys=True).encode("utf-8") + b"\n"
    atomic_write_bytes(path, data, fsync=fsync, tmp_dir=tmp_dir)


def read_json(path: Path) -> Any:
    with open(path, "rb") as fh:
        return json.loads(fh.read())


def _unlink_quietly(path: Path | str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
