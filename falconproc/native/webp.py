"""WebP shrink-on-load: libwebp's scaled decode (compiled ``_webp_c``), or its twin
(Pillow full decode + the same area average)."""
from __future__ import annotations

from falconproc.native import _webp_py as pure, choose, load_compiled

compiled, IMPORT_ERROR = load_compiled("_webp_c")
_selected = choose(compiled, pure)
IMPLEMENTATION = "cython" if _selected is compiled else "python"
#: True when libwebp rescales while decoding (no full-size canvases in memory).
SCALED_DECODE = _selected is compiled

features = _selected.features
decode_scaled = _selected.decode_scaled

__all__ = ["IMPLEMENTATION", "IMPORT_ERROR", "SCALED_DECODE", "compiled", "decode_scaled", "features", "pure"]
