"""Fixtures for the image tests.

Black-box: the real service (``falconproc serve`` under gunicorn, 2 web workers).
``service`` (default settings, job supervisor on) and
``ondemand_service`` (RUN_SUPERVISOR=0: nothing renders a preset before a GET asks) are
shared by the whole package; tests/conftest.py's ``fresh_service(**env)`` starts a private one.

In-process: ``imaging`` builds a store, the ingest path (the same native header probe) and
an ImageService over temp dirs, no HTTP.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import pytest

from falconproc.config import Settings
from falconproc.services.image_service import ImageService
from falconproc.services.ingest import IngestService, UploadRequest
from falconproc.store import create_store
from falconproc.store.cache import DerivedCache
from tests.support.service import make_service


@pytest.fixture(scope="package")
def service(tmp_path_factory):
    svc = make_service(tmp_path_factory.mktemp("imgsvc")).start()
    yield svc
    svc.stop()


@pytest.fixture(scope="package")
def ondemand_service(tmp_path_factory):
    # A gthread worker accepts up to worker_connections (default 1000) and queues them for
    # its threads, so one worker could take all of a burst; capped at 5 here, a burst of 10
    # connections must reach both workers (the render-once test relies on it).
    svc = make_service(tmp_path_factory.mktemp("imgondemand"), RUN_SUPERVISOR="0",
                       GUNICORN_CMD_ARGS="--worker-connections 5").start()
    yield svc
    svc.stop()


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
    values = {"file_storage_path": base / "files", "cache_path": base / "cache", "queue_path": base / "queue",
              "storage_reserve_bytes": 0, "fsync": False}
    values.update(changes)
    settings = Settings(**values)
    store = create_store(settings)
    cache = DerivedCache(settings.cache_path, fsync=False)
    return Imaging(settings, store, cache, IngestService(settings, store), ImageService(settings, store, cache))


@pytest.fixture
def imaging(tmp_path) -> Imaging:
    return build_imaging(tmp_path)


@pytest.fixture(scope="module")
def module_imaging(tmp_path_factory) -> Imaging:
    return build_imaging(tmp_path_factory.mktemp("imaging"))
