"""The content store on disk: what is visible, what is half-written, whether entries are
whole; and, for in-process tests, uploads staged by hand."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
from datetime import datetime, timezone
from pathlib import Path

from tests.support.content import sha256

METADATA_KEYS = {"contentHash", "originalName", "size", "mimeType", "uploadedAt", "uploadedBy", "driveId",
                 "uploads"}


def stored_entries(root: Path) -> list[str]:
    """The visible entries (content hashes) of a store root; [] if it does not exist yet."""
    root = Path(root)
    return sorted(p.name for p in root.iterdir() if p.name != ".tmp") if root.exists() else []


def temp_entries(root: Path) -> list[str]:
    """What is being written (or was left behind) in the store's .tmp directory."""
    tmp = Path(root) / ".tmp"
    return sorted(p.name for p in tmp.iterdir()) if tmp.exists() else []


def entry_dir(svc, content_hash: str) -> Path:
    return svc.files / content_hash


def disk_metadata(svc, content_hash: str) -> dict:
    return json.loads((entry_dir(svc, content_hash) / "metadata.json").read_text("utf-8"))


def assert_not_stored(svc, data: bytes) -> None:
    assert not entry_dir(svc, sha256(data)).exists()
    assert temp_entries(svc.files) == []


def entry_problems(root: Path) -> list[str]:
    """Every visible entry must be complete and consistent with its name."""
    problems = []
    for entry in sorted(root.iterdir()):
        if entry.name == ".tmp":
            continue
        names = sorted(os.listdir(entry)) if entry.is_dir() else None
        if names != ["metadata.json", "original"]:
            problems.append(f"{entry.name}: has {names}")
            continue
        data = (entry / "original").read_bytes()
        try:
            meta = json.loads((entry / "metadata.json").read_bytes())
        except ValueError as exc:
            problems.append(f"{entry.name}: metadata.json unreadable ({exc})")
            continue
        if hashlib.sha256(data).hexdigest() != entry.name:
            problems.append(f"{entry.name}: bytes hash to {hashlib.sha256(data).hexdigest()}")
        if meta.get("contentHash") != entry.name or meta.get("size") != len(data):
            problems.append(f"{entry.name}: metadata disagrees ({meta.get('contentHash')}, {meta.get('size')})")
        if not meta.get("uploads"):
            problems.append(f"{entry.name}: no uploads recorded")
    return problems


def fsck_summary(proc: subprocess.CompletedProcess) -> dict:
    """The JSON summary line of `falconproc fsck`."""
    last = [line for line in proc.stdout.splitlines() if line.startswith("{")][-1]
    return json.loads(last)


# -- in-process: uploads staged by hand ------------------------------------------------------


def record(drive: str = "drive-1", user: str = "user-1", name: str = "file.txt"):
    from falconproc.store import UploadRecord

    now = datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return UploadRecord(drive, user, name, now)


def metadata_for(data: bytes, rec) -> dict:
    return {
        "contentHash": sha256(data),
        "originalName": rec.original_name,
        "size": len(data),
        "mimeType": "text/plain",
        "uploadedAt": rec.uploaded_at,
        "uploadedBy": rec.user_id,
        "driveId": rec.drive_id,
        "uploads": [{"driveId": rec.drive_id, "userId": rec.user_id, "originalName": rec.original_name,
                     "uploadedAt": rec.uploaded_at}],
    }


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def stage(store, data: bytes):
    """A pending upload of a LocalContentStore holding ``data`` (as the probe would leave it)."""
    pending = store.begin_upload()
    write_all(pending.fd, data)
    return pending


def cached_bytes(path: Path) -> int:
    """How many bytes of ``path`` are in the page cache now (mincore(2) of a mapping)."""
    import ctypes
    import mmap

    size = os.path.getsize(path)
    if size == 0:
        return 0
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]
    fd = os.open(path, os.O_RDONLY)
    try:
        addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        assert addr not in (None, ctypes.c_void_p(-1).value), os.strerror(ctypes.get_errno())
        try:
            pages = (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE
            vec = ctypes.create_string_buffer(pages)
            assert libc.mincore(addr, size, vec) == 0, os.strerror(ctypes.get_errno())
            return sum(b & 1 for b in vec.raw) * mmap.PAGESIZE
        finally:
            libc.munmap(addr, size)
    finally:
        os.close(fd)
