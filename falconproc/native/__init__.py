"""The native hot path: compiled modules (``_native/*.pyx``) and their pure-Python twins.

One selector module per twin pair, each with one public name per object:

- ``falconproc.native.ingest``: ``IngestProbe`` (SHA-256 + sniff + header probe + write)
- ``falconproc.native.resize``: ``plan_resize`` and the planner's constants
- ``falconproc.native.webp``: ``features`` / ``decode_scaled`` (libwebp shrink-on-load)
- ``falconproc.native.types``: the value types both twins return

Each selector also exposes ``pure`` (the twin module), ``compiled`` (the compiled
module, or None and ``IMPORT_ERROR`` saying why) and ``IMPLEMENTATION``, so tests
compare the two without importing a private module. The compiled one is used when it
was built and ``FALCONPROC_NO_EXTENSIONS`` is not set. The flag is read here rather
than in config.py because the choice is made at import time, before any Settings
object exists (as falcon, yarl and multidict do).
"""
from __future__ import annotations

import importlib
import os
from types import ModuleType

NO_EXTENSIONS = bool(os.environ.get("FALCONPROC_NO_EXTENSIONS"))


def load_compiled(name: str) -> tuple[ModuleType | None, str | None]:
    """The compiled module ``falconproc.native.<name>``, or None and why it is missing
    (not built: no compiler or libwebp-dev at install time)."""
    try:
        return importlib.import_module(f"falconproc.native.{name}"), None
    except ImportError as exc:
        return None, str(exc)


def choose(compiled: ModuleType | None, pure: ModuleType) -> ModuleType:
    return compiled if compiled is not None and not NO_EXTENSIONS else pure
