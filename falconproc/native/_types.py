"""Value types shared by the compiled and pure-Python native modules."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """What one pass over an upload learned about it."""

    sha256: str  # 64 lowercase hex characters
    size: int
    mime_type: str  # sniffed from the bytes; "application/octet-stream" when unknown
    width: int | None = None  # images only, from the header
    height: int | None = None
    frames: int | None = None  # animated formats, where cheap to count
