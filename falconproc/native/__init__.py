"""Selector for the native hot path.

Each compiled module in ``_native/`` has a pure-Python twin here. The compiled
one is used when it was built and ``FALCONPROC_NO_EXTENSIONS`` is not set;
``IMPLEMENTATION`` says which one this process runs ("cython" or "python").
The flag is read here rather than in config.py because the choice has to be
made at import time, before any Settings object exists (as falcon, yarl and
multidict do).
"""
from __future__ import annotations

import os

from falconproc.native._ingest_py import IngestProbe as PyIngestProbe
from falconproc.native._plan_types import ResizePlan, ResizeStep
from falconproc.native._resize_py import plan_resize as py_plan_resize
from falconproc.native._types import ProbeResult
from falconproc.native._webp_py import decode_scaled as py_webp_decode, features as py_webp_features

NO_EXTENSIONS = bool(os.environ.get("FALCONPROC_NO_EXTENSIONS"))

CIngestProbe = None
IMPORT_ERROR: str | None = None
try:
    from falconproc.native._ingest_c import IngestProbe as CIngestProbe  # type: ignore[no-redef]
except ImportError as exc:  # not built: pure mode
    IMPORT_ERROR = str(exc)

if CIngestProbe is not None and not NO_EXTENSIONS:
    IngestProbe = CIngestProbe
    IMPLEMENTATION = "cython"
else:
    IngestProbe = PyIngestProbe
    IMPLEMENTATION = "python"

c_plan_resize = None
RESIZE_IMPORT_ERROR: str | None = None
try:
    from falconproc.native._resize_c import plan_resize as c_plan_resize  # type: ignore[no-redef]
except ImportError as exc:  # not built: pure mode
    RESIZE_IMPORT_ERROR = str(exc)

if c_plan_resize is not None and not NO_EXTENSIONS:
    plan_resize = c_plan_resize
else:
    plan_resize = py_plan_resize

# Shrink-on-load for WebP: libwebp's scaled decode (needs libwebp-dev at build time),
# or its twin (Pillow full decode + the same area average).
c_webp_features = c_webp_decode = None
WEBP_IMPORT_ERROR: str | None = None
try:
    from falconproc.native._webp_c import decode_scaled as c_webp_decode, features as c_webp_features
except ImportError as exc:  # not built: pure twin
    WEBP_IMPORT_ERROR = str(exc)

if c_webp_decode is not None and not NO_EXTENSIONS:
    webp_features, webp_decode = c_webp_features, c_webp_decode
else:
    webp_features, webp_decode = py_webp_features, py_webp_decode

__all__ = ["IngestProbe", "PyIngestProbe", "CIngestProbe", "ProbeResult", "IMPLEMENTATION", "NO_EXTENSIONS",
           "plan_resize", "py_plan_resize", "c_plan_resize", "ResizePlan", "ResizeStep",
           "webp_features", "webp_decode", "py_webp_features", "py_webp_decode", "c_webp_features",
           "c_webp_decode", "WEBP_IMPORT_ERROR"]
