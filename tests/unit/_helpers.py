"""Small helpers shared by the in-process unit tests (no gunicorn)."""
from __future__ import annotations

import hashlib
import os
from datetime import datetime, timezone
from pathlib import Path

from falconproc.config import Settings
from falconproc.store import UploadRecord
from falconproc.store.local import LocalContentStore

ROOT = Path(__file__).resolve().parents[2]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def text_blob(label: str, size: int = 4096) -> bytes:
    """Plain ASCII text (sniffed as text/plain) that is unique per label."""
    seed = hashlib.sha256(label.encode()).hexdigest()
    line = (seed + "\n").encode()
    return (f"{label}\n".encode() + line * (size // len(line) + 1))[:size]


def record(drive: str = "drive-1", user: str = "user-1", name: str = "file.txt") -> UploadRecord:
    now = datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return UploadRecord(drive, user, name, now)


def metadata_for(data: bytes, rec: UploadRecord) -> dict:
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


def stage(store: LocalContentStore, data: bytes):
    """A pending upload holding ``data`` (as the probe would leave it)."""
    pending = store.begin_upload()
    write_all(pending.fd, data)
    return pending


def visible_entries(root: Path) -> list[str]:
    return sorted(p.name for p in Path(root).iterdir() if p.name != ".tmp")


def temp_entries(root: Path) -> list[str]:
    tmp = Path(root) / ".tmp"
    return sorted(p.name for p in tmp.iterdir()) if tmp.exists() else []


def unit_settings(base: Path, **changes) -> Settings:
    values = {
        "file_storage_path": base / "files",
        "cache_path": base / "cache",
        "queue_path": base / "queue",
        "storage_reserve_bytes": 0,
        "read_chunk_bytes": 4096,
    }
    values.update(changes)
    return Settings(**values)


def subprocess_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("FILE_STORAGE", "CACHE_PATH", "QUEUE_PATH", "FALCONPROC_"))}
    # Settings variables of the calling shell must not leak into the child.
    for name in ("PORT", "HOST", "MAX_UPLOAD_BYTES", "MEMORY_LIMIT_BYTES", "FSYNC", "STORAGE_RESERVE_BYTES",
                 "PROCESSOR_AUTH_TOKEN", "WEB_WORKERS", "LOG_LEVEL"):
        env.pop(name, None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env.update(extra)
    return env
