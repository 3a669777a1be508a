"""Value types shared by the compiled modules and their pure-Python twins.

The ingest probe returns a :class:`ProbeResult`; ``plan_resize`` (the resize
scheduler) returns a :class:`ResizePlan`. Both implementations of each build these
same frozen dataclasses, so their results compare equal with ``==``.
"""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ProbeResult", "ResizeStep", "ResizePlan", "DECODED", "draft_request"]


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """What one pass over an upload learned about it."""

    sha256: str  # 64 lowercase hex characters
    size: int
    mime_type: str  # sniffed from the bytes; "application/octet-stream" when unknown
    width: int | None = None  # images only, from the header
    height: int | None = None
    frames: int | None = None  # animated formats, where cheap to count


DECODED = -1  # ResizeStep.source value meaning "the decoded (and transposed) image"


@dataclass(frozen=True, slots=True)
class ResizeStep:
    """Produce output ``target_index`` (its index in the ``targets`` list).

    Take ``source`` (``DECODED`` = -1 for the decoded, upright image, else the
    ``target_index`` of an earlier step's output), apply ``Image.reduce(reduce)``
    when ``reduce > 1``, then resample it to ``width`` x ``height`` with LANCZOS.
    When the source has exactly this size (a duplicate target) the step is a copy.
    Resample the source's exact valid region: ``box=(0, 0, w/k, h/k)`` after a reduce
    of a ``w`` x ``h`` source (reduce rounds up, its last row/column is partial), and
    for the decoded image the draft's region ``(0, 0, W/s, H/s)`` carried through the
    EXIF transpose (see the reference executor in tests/native/test_resize_plan.py).
    ``width``/``height`` are upright (after the EXIF orientation is applied).
    """

    target_index: int
    width: int
    height: int
    source: int
    reduce: int


@dataclass(frozen=True, slots=True)
class ResizePlan:
    """How to make every wanted output from one decode.

    ``draft_scale`` (1, 2, 4 or 8; JPEG, or a still WebP through libwebp's scaled
    decode) is the shrink-on-load factor and
    ``decoded_width`` x ``decoded_height`` the size the decoder returns, both BEFORE
    the EXIF rotation (the pipeline decodes, then transposes). ``steps`` are in
    execution order; ``peak_memory`` bounds the bytes the image pipeline holds at its
    peak (decode, render and the encodes; the model is in ``plan_resize``).
    """

    draft_scale: int
    decoded_width: int
    decoded_height: int
    steps: tuple[ResizeStep, ...]
    peak_memory: int


def draft_request(src_width: int, src_height: int, draft_scale: int) -> tuple[int, int]:
    """The size to pass to ``JpegImageFile.draft(mode, size)`` to get exactly ``draft_scale``.

    Pillow picks the largest scale s in (8, 4, 2, 1) with
    ``s <= min(w // req_w, h // req_h)`` and then decodes at ``ceil(w / s)`` x
    ``ceil(h / s)``. Passing the decoded size itself, ``(ceil(w/s), ceil(h/s))``,
    gives ``w // ceil(w/s) < s`` whenever ``s`` does not divide ``w``, i.e. a
    smaller scale than planned (a bigger, slower decode than the plan's memory
    estimate). ``(w // s, h // s)`` always yields exactly ``s`` (for s <= w, h,
    which the planner guarantees), and the decoded size is then the plan's.
    """
    s = draft_scale
    return max(1, src_width // s), max(1, src_height // s)
