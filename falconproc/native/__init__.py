"""Selector for the native hot path.

Each compiled module in ``_native/`` has a pure-Python twin here. The compiled
one is used when it was built and ``FALCONPROC_NO_EXTENSIONS`` is not set;
``IMPLEMENTATION`` says which one this process runs ("cython" or "python").
The flag is read here rather than in config.py because the choice has to be
made at import time, before any Settings object exists (as falcon, yarl and
multidict do).
"""
from __future__ import annotations

import importlib
import os

from falconproc.native._ingest_py import IngestProbe as PyIngestProbe
from falconproc.native._plan_types import ResizePlan, ResizeStep
from falconproc.native._resize_py import plan_resize as py_plan_resize
from falconproc.native._types import ProbeResult
from falconproc.native._webp_py import decode_scaled as py_webp_decode, features as py_webp_features

NO_EXTENSIONS = bool(os.environ.get("FALCONPROC_NO_EXTENSIONS"))


def _compiled(name: str):
    """The compiled module ``falconproc.native.<name>``, or None and why it is missing
    (not built: no compiler or libwebp-dev at install time)."""
    try:
        return importlib.import_module(f"falconproc.native.{name}"), None
    except ImportError as exc:
        return None, str(exc)


_ingest_c, IMPORT_ERROR = _compiled("_ingest_c")
_resize_c, RESIZE_IMPORT_ERROR = _compiled("_resize_c")
# Shrink-on-load for WebP: libwebp's scaled decode, or its twin (Pillow full decode +
# the same area average).
_webp_c, WEBP_IMPORT_ERROR = _compiled("_webp_c")

CIngestProbe = _ingest_c.IngestProbe if _ingest_c else None
c_plan_resize = _resize_c.plan_resize if _resize_c else None
c_webp_features, c_webp_decode = (_webp_c.features, _webp_c.decode_scaled) if _webp_c else (None, None)

IngestProbe = CIngestProbe if CIngestProbe is not None and not NO_EXTENSIONS else PyIngestProbe
IMPLEMENTATION = "cython" if IngestProbe is CIngestProbe else "python"
plan_resize = c_plan_resize if c_plan_resize is not None and not NO_EXTENSIONS else py_plan_resize
webp_features, webp_decode = ((c_webp_features, c_webp_decode) if c_webp_decode is not None and not NO_EXTENSIONS
                              else (py_webp_features, py_webp_decode))

__all__ = ["IngestProbe", "PyIngestProbe", "CIngestProbe", "ProbeResult", "IMPLEMENTATION", "NO_EXTENSIONS",
           "plan_resize", "py_plan_resize", "c_plan_resize", "ResizePlan", "ResizeStep",
           "webp_features", "webp_decode", "py_webp_features", "py_webp_decode", "c_webp_features",
           "c_webp_decode", "WEBP_IMPORT_ERROR"]
