"""Bytes to upload: unique per call or per label, sniffed as the type a test needs."""
from __future__ import annotations

import hashlib
import io
import os
import uuid

DOCX_TYPE = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def text_blob(label: str, size: int = 4096) -> bytes:
    """Plain ASCII text (sniffed as text/plain, an accepted type) that is unique per label."""
    seed = hashlib.sha256(label.encode()).hexdigest()
    line = (seed + "\n").encode()
    return (f"{label}\n".encode() + line * (size // len(line) + 1))[:size]


def unique_text(lines: int = 20) -> bytes:
    """Bytes no other test sends, sniffed as text/plain (no CSV separators, no Markdown)."""
    tag = uuid.uuid4().hex
    return "".join(f"blackbox {tag} line {i:06d} {os.urandom(8).hex()}\n" for i in range(lines)).encode()


def unique_png(width: int = 37, height: int = 23) -> bytes:
    from PIL import Image

    img = Image.frombytes("RGB", (width, height), os.urandom(width * height * 3))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def chunks(data: bytes, size: int) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]
