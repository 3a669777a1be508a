"""falconproc: content-addressed file storage and processing behind a Falcon API."""
from __future__ import annotations

__version__ = "0.1.0"
