"""The service's parts built over temp dirs, without HTTP or gunicorn."""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

from falconproc.config import Settings
from falconproc.services.image_service import ImageService
from falconproc.services.ingest import IngestService, UploadRequest
from falconproc.store import create_store
from falconproc.store.cache import DerivedCache


def unit_settings(base: Path, **changes) -> Settings:
    """Settings with the store, cache and queue under ``base``, no reserve, small reads."""
    values = {
        "file_storage_path": base / "files",
        "cache_path": base / "cache",
        "queue_path": base / "queue",
        "storage_reserve_bytes": 0,
        "read_chunk_bytes": 4096,
    }
    values.update(changes)
    return Settings(**values)


@dataclass
class Imaging:
    """The image pipeline in-process: put() stores bytes the way an upload does."""

    settings: Settings
    store: object
    cache: DerivedCache
    ingest: IngestService
    images: ImageService

    def put(self, data: bytes, name: str = "image.bin") -> str:
        outcome = self.ingest.ingest(UploadRequest(name, "drive-1", "user-1", None, len(data)), io.BytesIO(data))
        return outcome.content_hash

    def with_settings(self, **changes) -> "Imaging":
        """Another ImageService over the same store and cache, with other settings."""
        settings = self.settings.replace(**changes)
        return Imaging(settings, self.store, self.cache, self.ingest,
                       ImageService(settings, self.store, self.cache))

    def cached(self, content_hash: str, filename: str) -> Path:
        return self.cache.path(content_hash, filename)


def build_imaging(base: Path, **changes) -> Imaging:
    """A store, the ingest path (the same native header probe) and an ImageService over ``base``."""
    values = {"file_storage_path": base / "files", "cache_path": base / "cache", "queue_path": base / "queue",
              "storage_reserve_bytes": 0, "fsync": False}
    values.update(changes)
    settings = Settings(**values)
    store = create_store(settings)
    cache = DerivedCache(settings.cache_path, fsync=False)
    return Imaging(settings, store, cache, IngestService(settings, store), ImageService(settings, store, cache))
