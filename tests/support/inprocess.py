"""The service's parts built over temp dirs, without HTTP or gunicorn."""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

from falconproc.config import Settings
from falconproc.images.service import ImageService
from falconproc.ingest.service import IngestService, UploadRequest
from falconproc.store import DerivedCache
from falconproc.wiring import Components


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

    components: Components
    ingest: IngestService
    images: ImageService

    @property
    def settings(self) -> Settings:
        return self.components.settings

    @property
    def store(self):
        return self.components.store

    @property
    def cache(self) -> DerivedCache:
        return self.components.cache

    def original_bytes(self, content_hash: str) -> bytes:
        with self.store.open(content_hash) as fh:
            return fh.read()

    def preset_path(self, content_hash: str, name: str):
        """Make the preset if missing (as a GET does) and return it with its cached file."""
        preset = self.images.preset(name)
        self.images.ensure_preset(content_hash, preset)
        return preset, self.cache.path(content_hash, preset.filename)

    def put(self, data: bytes, name: str = "image.bin") -> str:
        outcome = self.ingest.ingest(UploadRequest(name, "drive-1", "user-1", None, len(data)), io.BytesIO(data))
        return outcome.content_hash

    def with_settings(self, **changes) -> "Imaging":
        """Another ImageService over the same store and cache, with other settings."""
        settings = self.settings.replace(**changes)
        components = Components(settings)
        components.store, components.cache = self.store, self.cache  # the same store and cache
        return Imaging(components, self.ingest, ImageService(settings, self.store, self.cache))

    def cached(self, content_hash: str, filename: str) -> Path:
        return self.cache.path(content_hash, filename)


def build_imaging(base: Path, **changes) -> Imaging:
    """A store, the ingest path (the same native header probe) and an ImageService over ``base``."""
    values = {"file_storage_path": base / "files", "cache_path": base / "cache", "queue_path": base / "queue",
              "storage_reserve_bytes": 0, "fsync": False}
    values.update(changes)
    components = Components(Settings(**values))
    return Imaging(components, IngestService(components.settings, components.store), components.images)
