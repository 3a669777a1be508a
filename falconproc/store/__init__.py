"""Content stores: originals and their metadata, addressed by SHA-256."""
from __future__ import annotations

from falconproc.store.base import ContentStore, PendingUpload, StoredObject, UploadRecord, is_content_hash
from falconproc.store.local import LocalContentStore

__all__ = [
    "ContentStore",
    "LocalContentStore",
    "PendingUpload",
    "StoredObject",
    "UploadRecord",
    "create_store",
    "is_content_hash",
]


def create_store(settings) -> ContentStore:
    """The store backend named by settings (only ``local`` exists so far; ``s3`` is planned)."""
    return LocalContentStore(settings.file_storage_path, fsync=settings.fsync)
