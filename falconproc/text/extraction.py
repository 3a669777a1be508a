"""What every text extractor returns, and the registry that picks one by MIME type.

Each extractor module (plain, docx, pdf) registers the MIME types it handles (sets
from falconproc/mediatypes.py) with ``register_extractor``; the text job and the
text route ask ``extract``/``can_extract``. Extractors run inside job processes
(killed on timeout, capped in memory); each bounds its work before a parser sees
hostile input.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from falconproc.config import Settings
from falconproc.errors import FalconprocError


class ExtractionError(FalconprocError, ValueError):
    """A document that cannot be extracted; ``code`` is the state clients see."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


@dataclass
class Extraction:
    source: str  # pdf | docx | text | ocr
    pages: list[dict[str, Any]]  # [{"page": 1, "text": "..."}]
    properties: dict[str, Any] = field(default_factory=dict)
    page_count: int = 0
    truncated: bool = False
    pages_without_text: list[int] = field(default_factory=list)  # PDF pages for OCR
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return "\n\n".join(p["text"] for p in self.pages if p["text"])


def clip_pages(pages: list[dict[str, Any]], max_chars: int) -> tuple[list[dict[str, Any]], bool]:
    total = 0
    for index, page in enumerate(pages):
        total += len(page["text"])
        if total > max_chars:
            keep = len(page["text"]) - (total - max_chars)
            return pages[:index] + [{**page, "text": page["text"][:keep]}], True
    return pages, False


def iso_date(value: Any) -> str | None:
    """A document property's date as ISO 8601, or None."""
    return value.isoformat() if isinstance(value, datetime) else None


Extractor = Callable[[Path, Settings], Extraction]
_EXTRACTORS: dict[str, Extractor] = {}


def register_extractor(mime_types: Iterable[str], extractor: Extractor) -> None:
    for mime_type in mime_types:
        _EXTRACTORS[mime_type] = extractor


def can_extract(mime_type: str | None) -> bool:
    return mime_type in _EXTRACTORS


def extract(path: Path, mime_type: str, settings: Settings) -> Extraction:
    extractor = _EXTRACTORS.get(mime_type)
    if extractor is None:
        raise ExtractionError("unsupported", f"{mime_type} has no text to extract")
    return extractor(path, settings)
