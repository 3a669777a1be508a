"""The resize scheduler: ``plan_resize`` plans every preset of an image from one decode
(draft scale, cascade, peak memory); compiled ``_resize_c`` or its twin."""
from __future__ import annotations

from falconproc.native import _resize_py as pure, choose, load_compiled
from falconproc.native.types import DECODED, ResizePlan, ResizeStep, draft_request

compiled, IMPORT_ERROR = load_compiled("_resize_c")
_selected = choose(compiled, pure)
IMPLEMENTATION = "cython" if _selected is compiled else "python"

plan_resize = _selected.plan_resize
# The same in both twins (tests/native compare them): the pure ones are the reference.
fit_box = pure.fit_box
OVERHEAD_BYTES = pure.OVERHEAD_BYTES

__all__ = ["DECODED", "IMPLEMENTATION", "IMPORT_ERROR", "OVERHEAD_BYTES", "ResizePlan", "ResizeStep",
           "compiled", "draft_request", "fit_box", "plan_resize", "pure"]
