"""Storage: originals (ContentStore) and derived files (DerivedCache), each an ABC with
backends chosen by STORAGE_BACKEND in falconproc/wiring.py."""
from __future__ import annotations

from falconproc.store.base import ContentStore, PendingUpload, StoredObject, UploadRecord, is_content_hash
from falconproc.store.cache import DerivedCache

__all__ = ["ContentStore", "DerivedCache", "PendingUpload", "StoredObject", "UploadRecord", "is_content_hash"]
