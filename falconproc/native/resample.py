"""Lanczos resampling: compiled ``_resample_c`` (Pillow's arithmetic in SIMD loops) or
its twin (Pillow's resize itself)."""
from __future__ import annotations

from falconproc.native import _resample_py as pure, choose, load_compiled

compiled, IMPORT_ERROR = load_compiled("_resample_c")
_selected = choose(compiled, pure)
IMPLEMENTATION = "cython" if _selected is compiled else "python"

lanczos = _selected.lanczos

__all__ = ["IMPLEMENTATION", "IMPORT_ERROR", "compiled", "lanczos", "pure"]
