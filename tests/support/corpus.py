"""Paths into the repository and its test corpus (tests/data, described in tests/data/SOURCES.md)."""
from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"
# Every corpus file (images, documents, OCR pages), not the description of their sources.
CORPUS_FILES = sorted(p for p in DATA.rglob("*") if p.is_file() and p.name != "SOURCES.md")
IMAGES_DIR = DATA / "images"
IMAGE_CORPUS = sorted(p for p in IMAGES_DIR.iterdir() if p.is_file())
DOCS = DATA / "docs"
OCR_PNG = DATA / "ocr" / "outline-p2-200dpi.png"
OCR_TRUTH = DATA / "ocr" / "outline-p2.truth.txt"
MEADOW = IMAGES_DIR / "meadow-1280x1024.jpg"  # a plain JPEG several tests upload
