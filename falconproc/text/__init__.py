"""Text: one extractor module per format (plain, docx, pdf), each registering the MIME
types it handles in ``extraction``; OCR with tesseract; the service behind the text
route; the `text` and `ocr` jobs."""
from __future__ import annotations

# Importing an extractor module registers it: every user of the package gets all three.
from falconproc.text import docx, pdf, plain  # noqa: F401
