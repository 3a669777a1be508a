"""plan_resize: the pure-Python reference and the Cython twin must return equal plans.

Every case runs on both implementations (fixture ``plan_fn``). The compiled case
FAILS when falconproc.native._resize_c cannot be imported, unless
FALCONPROC_NO_EXTENSIONS is set (the switch falconproc.native reads), in which case
only the compiled parameter is skipped.

The visual tests execute plans with Pillow (``execute`` below, a reference executor
for the service's own) and compare every output with a direct LANCZOS resize of the
full-resolution upright image: PSNR >= 38 dB (images with alpha: RGBA, compared
premultiplied).
"""
from __future__ import annotations

import io
import math
from fractions import Fraction
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from falconproc import native
from falconproc.native.types import DECODED, ResizePlan, ResizeStep, draft_request
from falconproc.native import resize as native_resize
from tests.support.corpus import IMAGE_CORPUS, IMAGES_DIR

IMAGES = [p for p in IMAGE_CORPUS if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp")]

DEFAULT_BOXES = [(1920, 0), (2048, 0), (200, 200), (800, 0)]  # ai-chat, ai-vision, thumbnail, preview
AI_CHAT, AI_VISION, THUMB, PREVIEW = range(4)
MIB16 = 16 * 1024 * 1024
PSNR_MIN = 38.0
RATIO = native_resize.pure.CASCADE_MIN_RATIO


def gap_for(w: int, h: int) -> int:
    """The reducing gap the planner must keep for a w x h output."""
    return native_resize.pure.REDUCE_GAP if max(w, h) >= native_resize.pure.SMALL_OUTPUT else native_resize.pure.SMALL_REDUCE_GAP


# --------------------------------------------------------------------------- fixtures

def _compiled_or_bail():
    if native_resize.compiled is not None:
        return native_resize.compiled.plan_resize
    if native.NO_EXTENSIONS:
        pytest.skip("compiled falconproc.native._resize_c not built (FALCONPROC_NO_EXTENSIONS set)")
    pytest.fail(
        "compiled falconproc.native._resize_c is not importable "
        f"({native_resize.IMPORT_ERROR}); build it with "
        "`FALCONPROC_REQUIRE_EXTENSIONS=1 python setup.py build_ext --inplace` "
        "or set FALCONPROC_NO_EXTENSIONS=1"
    )


@pytest.fixture(params=["python", "cython"])
def plan_fn(request):
    """The pure-Python and the compiled plan_resize."""
    if request.param == "python":
        return native_resize.pure.plan_resize
    return _compiled_or_bail()


@pytest.fixture(scope="module")
def plan_pair():
    """(pure, compiled) for differential tests; skipped/failed like the cython case above."""
    return native_resize.pure.plan_resize, _compiled_or_bail()


def sizes(plan: ResizePlan) -> dict[int, tuple[int, int]]:
    return {s.target_index: (s.width, s.height) for s in plan.steps}


# --------------------------------------------------------------------------- selector / constants

def test_selector_exports():
    if native_resize.compiled is not None and not native.NO_EXTENSIONS:
        assert native_resize.plan_resize is native_resize.compiled.plan_resize
        assert native_resize.IMPLEMENTATION == "cython"
    else:
        assert native_resize.plan_resize is native_resize.pure.plan_resize
        assert native_resize.IMPLEMENTATION == "python"
    for name in ("plan_resize", "fit_box", "OVERHEAD_BYTES", "ResizePlan", "ResizeStep", "pure", "compiled"):
        assert name in native_resize.__all__


def test_constants_agree(plan_pair):
    c_mod = native_resize.compiled

    for name in ("CASCADE_MIN_RATIO", "DRAFT_MARGIN", "REDUCE_GAP", "SMALL_OUTPUT", "SMALL_REDUCE_GAP",
                 "DRAFT_SCALES", "OVERHEAD_BYTES", "ENCODE_COPIES", "ALPHA_BANDS", "MAX_DIMENSION", "MAX_BANDS"):
        assert getattr(c_mod, name) == getattr(native_resize.pure, name), name
    # the hand-computed plans below assume these
    assert native_resize.pure.CASCADE_MIN_RATIO == 1.0
    assert (native_resize.pure.REDUCE_GAP, native_resize.pure.SMALL_OUTPUT, native_resize.pure.SMALL_REDUCE_GAP) == (1, 256, 2)
    assert (native_resize.pure.ENCODE_COPIES, native_resize.pure.ALPHA_BANDS) == (2, 4)
    assert native_resize.pure.OVERHEAD_BYTES == MIB16


# --------------------------------------------------------------------------- hand cases

@pytest.mark.parametrize(
    ("src", "expected"),
    [
        ((2560, 1600), {AI_CHAT: (1920, 1200), AI_VISION: (2048, 1280), THUMB: (200, 125), PREVIEW: (800, 500)}),
        ((1920, 1280), {AI_CHAT: (1920, 1280), AI_VISION: (1920, 1280), THUMB: (200, 133), PREVIEW: (800, 533)}),
        ((1280, 1024), {AI_CHAT: (1280, 1024), AI_VISION: (1280, 1024), THUMB: (200, 160), PREVIEW: (800, 640)}),
        ((1600, 1200), {AI_CHAT: (1600, 1200), AI_VISION: (1600, 1200), THUMB: (200, 150), PREVIEW: (800, 600)}),
        ((4096, 4096), {AI_CHAT: (1920, 1920), AI_VISION: (2048, 2048), THUMB: (200, 200), PREVIEW: (800, 800)}),
    ],
)
def test_default_presets_output_sizes(plan_fn, src, expected):
    for is_jpeg in (True, False):
        plan = plan_fn(*src, DEFAULT_BOXES, is_jpeg=is_jpeg)
        assert sizes(plan) == expected
        # the full-size presets need every pixel, except a 4096 JPEG: 1/2 is 2048 = ai-vision
        scale = 2 if is_jpeg and src == (4096, 4096) else 1
        assert plan.draft_scale == scale
        assert (plan.decoded_width, plan.decoded_height) == (src[0] // scale, src[1] // scale)


def test_default_presets_cascade_2560x1600(plan_fn):
    plan = plan_fn(2560, 1600, DEFAULT_BOXES, is_jpeg=True)
    assert plan == ResizePlan(
        draft_scale=1,
        decoded_width=2560,
        decoded_height=1600,
        steps=(
            ResizeStep(AI_VISION, 2048, 1280, DECODED, 1),  # 2560/2048 < 2: no reduce
            ResizeStep(AI_CHAT, 1920, 1200, AI_VISION, 1),  # any earlier output >= 1x will do
            # the smallest source >= 800x500 is ai-chat; 1920/800 = 2.4: reduce(2) 960x600 -> 800x500
            ResizeStep(PREVIEW, 800, 500, AI_CHAT, 2),
            # 200 < SMALL_OUTPUT: gap 2, 800x500 -> reduce(2) 400x250 -> 200x125
            ResizeStep(THUMB, 200, 125, PREVIEW, 2),
        ),
        # bands=3 (< ALPHA_BANDS: no premultiplied copy). The decoded image twice (the
        # file image and its normalised copy), then the worst step: the preview's, with
        # ai-vision and ai-chat made (each + ENCODE_COPIES=2 encoder copies) and its own
        # transient: the 960x600 reduce buffer + the output + the LANCZOS intermediate
        # (800x600 = 960x500). (ai-chat's step: 3 x ai-vision + 1920x1200 + 2048x1200
        # intermediate, less; after the thumbnail: 3 x all four outputs, less.)
        peak_memory=2 * 2560 * 1600 * 3
        + 3 * (2048 * 1280 + 1920 * 1200) * 3
        + (960 * 600 + 800 * 500 + 800 * 600) * 3
        + MIB16,
    )


def test_reduce_gap_depends_on_output_size(plan_fn):
    # 256 px is not small: gap 1, reduce(4) gives exactly 256x256 (the reduce is the whole step)
    assert plan_fn(1024, 1024, [(256, 256)], is_jpeg=False).steps == (ResizeStep(0, 256, 256, DECODED, 4),)
    # 255 px is: gap 2, 1024 // 510 = 2 -> reduce(2) 512x512 -> LANCZOS 255x255
    assert plan_fn(1024, 1024, [(255, 255)], is_jpeg=False).steps == (ResizeStep(0, 255, 255, DECODED, 2),)
    # the longer side decides: 1000x200 -> 500x100 keeps gap 1 (k = min(2, 2))
    assert plan_fn(1000, 200, [(500, 0)], is_jpeg=False).steps == (ResizeStep(0, 500, 100, DECODED, 2),)
    # a 4096 square (the corpus WebP) to ai-vision: reduce(2) is exactly 2048
    assert plan_fn(4096, 4096, [(2048, 0)], is_jpeg=False).steps == (ResizeStep(0, 2048, 2048, DECODED, 2),)


def test_thumbnail_only_drafts_at_eighth(plan_fn):
    plan = plan_fn(2560, 1600, [(200, 200)], is_jpeg=True)
    assert (plan.draft_scale, plan.decoded_width, plan.decoded_height) == (8, 320, 200)
    assert plan.steps == (ResizeStep(0, 200, 125, DECODED, 1),)
    # decoded twice + (the 200x125 output + its 2 encoder copies: more than the step's
    # output + 200x200 intermediate, and more than a third decoded copy)
    assert plan.peak_memory == 2 * 320 * 200 * 3 + 3 * 200 * 125 * 3 + MIB16
    # Not a JPEG: no draft, the reduce does the shrinking instead.
    plan = plan_fn(2560, 1600, [(200, 200)], is_jpeg=False)
    assert (plan.draft_scale, plan.decoded_width, plan.decoded_height) == (1, 2560, 1600)
    assert plan.steps == (ResizeStep(0, 200, 125, DECODED, 6),)  # 2560/6=426 >= 400, 1600/6=266 >= 250


@pytest.mark.parametrize(
    ("src", "boxes", "scale", "decoded"),
    [
        ((2560, 1600), [(800, 0)], 2, (1280, 800)),
        ((2560, 1600), [(800, 0), (200, 200)], 2, (1280, 800)),
        ((1920, 1280), [(200, 200)], 8, (240, 160)),
        ((1280, 1024), [(200, 200)], 4, (320, 256)),  # 1/8 would be 160x128 < 200x160
        ((1280, 1024), [(800, 0)], 1, (1280, 1024)),
        ((1921, 1281), [(200, 200)], 8, (241, 161)),  # Pillow rounds the draft size up
        ((4032, 3024), [(512, 512)], 4, (1008, 756)),
    ],
)
def test_draft_scale(plan_fn, src, boxes, scale, decoded):
    plan = plan_fn(*src, boxes, is_jpeg=True)
    assert plan.draft_scale == scale
    assert (plan.decoded_width, plan.decoded_height) == decoded


def test_never_upscale_small_image(plan_fn):
    for is_jpeg in (True, False):
        plan = plan_fn(100, 80, DEFAULT_BOXES, is_jpeg=is_jpeg)
        assert plan.draft_scale == 1
        assert (plan.decoded_width, plan.decoded_height) == (100, 80)
        assert sizes(plan) == {i: (100, 80) for i in range(4)}
        # The first is resampled from the decoded image (a same-size "resize" = copy),
        # the rest copy it.
        assert plan.steps[0] == ResizeStep(0, 100, 80, DECODED, 1)
        assert [(s.source, s.reduce) for s in plan.steps[1:]] == [(0, 1)] * 3


def test_orientation_swap(plan_fn):
    plan = plan_fn(1920, 1280, DEFAULT_BOXES, is_jpeg=True, orientation_swaps=True)
    # Upright the image is 1280x1920: every box applies to that.
    assert sizes(plan) == {AI_CHAT: (1280, 1920), AI_VISION: (1280, 1920), THUMB: (133, 200), PREVIEW: (800, 1200)}
    # Decode (and draft) happen before the rotation: pre-rotation dims.
    assert (plan.draft_scale, plan.decoded_width, plan.decoded_height) == (1, 1920, 1280)
    # ai-chat and ai-vision are the same size (a copy); 800x1200 derives from ai-chat
    # (1280x1920, the earliest of the two equal smallest), 1.6x: no reduce.
    assert plan.steps[:2] == (ResizeStep(AI_CHAT, 1280, 1920, DECODED, 1), ResizeStep(AI_VISION, 1280, 1920, AI_CHAT, 1))
    assert plan.steps[2] == ResizeStep(PREVIEW, 800, 1200, AI_CHAT, 1)
    # 133x200 is small (gap 2): 800 // 266 = 3, 1200 // 400 = 3
    assert plan.steps[3] == ResizeStep(THUMB, 133, 200, PREVIEW, 3)
    # Memory (bands=3: no premultiplied copies), decoded twice plus the worst step, the
    # thumbnail's: made before it are ai-chat (the undrafted decoded image itself: only
    # its 2 encoder copies), ai-vision (a copy + 2 encoder copies) and the preview (+ 2);
    # its own transient is the striped reduce(3): 267x400 stripes + the stitched image
    # (more than reduce + 133x200 output + 267x200 intermediate).
    made = 2 * 1280 * 1920 + 3 * 1280 * 1920 + 3 * 800 * 1200
    assert 2 * 267 * 400 > 267 * 400 + 133 * 200 + 267 * 200
    assert plan.peak_memory == 2 * 1920 * 1280 * 3 + (made + 2 * 267 * 400) * 3 + MIB16

    plan = plan_fn(1920, 1280, [(200, 200)], is_jpeg=True, orientation_swaps=True)
    assert (plan.draft_scale, plan.decoded_width, plan.decoded_height) == (8, 240, 160)
    assert plan.steps == (ResizeStep(0, 133, 200, DECODED, 1),)
    # decoded + its transposed copy + the 133x200 output with its 2 encoder copies
    assert plan.peak_memory == 2 * 240 * 160 * 3 + 3 * 133 * 200 * 3 + MIB16
    # A box binding the upright height: pre-rotation 1/4 would be 480x320, < 512 tall upright.
    plan = plan_fn(1920, 1280, [(0, 512)], is_jpeg=True, orientation_swaps=True)
    assert sizes(plan) == {0: (341, 512)}
    assert (plan.draft_scale, plan.decoded_width, plan.decoded_height) == (2, 960, 640)


def test_fit_rules(plan_fn):
    def one(w, h, box, **kw):
        return sizes(plan_fn(w, h, [box], is_jpeg=False, **kw))[0]

    assert one(2560, 1600, (1920, 0)) == (1920, 1200)
    assert one(2560, 1600, (200, 200)) == (200, 125)
    assert one(2560, 1600, (0, 100)) == (160, 100)
    assert one(1000, 3, (10, 0)) == (10, 1)  # 0.03 px -> at least 1
    assert one(3, 1000, (0, 10)) == (1, 10)
    assert one(1001, 1000, (500, 0)) == (500, 500)  # 499.5 rounds half up
    assert one(999, 1000, (0, 500)) == (500, 500)  # 499.5 rounds half up
    assert one(1000, 1000, (2000, 300)) == (300, 300)  # only the height binds
    assert one(640, 480, (640, 480)) == (640, 480)  # exactly fits: untouched
    assert one(641, 480, (640, 480)) == (640, 479)


def test_duplicates_are_copies(plan_fn):
    plan = plan_fn(3000, 2000, [(800, 0), (200, 200), (800, 800), (0, 533)], is_jpeg=False)
    assert sizes(plan) == {0: (800, 533), 1: (200, 133), 2: (800, 533), 3: (800, 533)}
    # gap 1: 3000 // 800 = 3, 2000 // 533 = 3 -> reduce(3) 1000x667 -> LANCZOS 800x533
    assert plan.steps[0] == ResizeStep(0, 800, 533, DECODED, 3)
    assert plan.steps[1:3] == (ResizeStep(2, 800, 533, 0, 1), ResizeStep(3, 800, 533, 0, 1))
    assert plan.steps[3] == ResizeStep(1, 200, 133, 0, 2)  # small: gap 2


def test_empty_targets(plan_fn):
    # the decoded image, its normalised copy and a third copy while normalising
    assert plan_fn(640, 480, [], is_jpeg=True) == ResizePlan(1, 640, 480, (), 3 * 640 * 480 * 3 + MIB16)


def test_bands_scale_memory(plan_fn):
    p3 = plan_fn(2560, 1600, DEFAULT_BOXES, is_jpeg=True, bands=3)
    p4 = plan_fn(2560, 1600, DEFAULT_BOXES, is_jpeg=True, bands=4)
    p8 = plan_fn(2560, 1600, DEFAULT_BOXES, is_jpeg=True, bands=8)
    assert (p8.peak_memory - MIB16) == (p4.peak_memory - MIB16) * 2
    # from 4 bands the image may be RGBA: the preview step also holds the premultiplied
    # copy of its 960x600 source
    assert (p4.peak_memory - MIB16) == (p3.peak_memory - MIB16) // 3 * 4 + 960 * 600 * 4
    assert p3.steps == p4.steps == p8.steps


@pytest.mark.parametrize(
    ("args", "kwargs", "exc"),
    [
        ((0, 100, [(10, 10)]), {}, ValueError),
        ((100, -1, [(10, 10)]), {}, ValueError),
        ((100, 100, [(0, 0)]), {}, ValueError),
        ((100, 100, [(10, 10), (0, 0)]), {}, ValueError),
        ((100, 100, [(-5, 10)]), {}, ValueError),
        ((100, 100, [(10, 10)]), {"bands": 0}, ValueError),
        ((2**31, 100, [(10, 10)]), {}, ValueError),
        ((100.0, 100, [(10, 10)]), {}, TypeError),
        ((100, 100, [(10.5, 10)]), {}, TypeError),
    ],
)
def test_validation(plan_fn, args, kwargs, exc):
    with pytest.raises(exc):
        plan_fn(*args, is_jpeg=True, **kwargs)


def test_huge_sizes_do_not_overflow(plan_fn):
    plan = plan_fn(65000, 65000, DEFAULT_BOXES, is_jpeg=True)
    assert (plan.draft_scale, plan.decoded_width, plan.decoded_height) == (8, 8125, 8125)
    assert sizes(plan) == {AI_CHAT: (1920, 1920), AI_VISION: (2048, 2048), THUMB: (200, 200), PREVIEW: (800, 800)}
    assert plan.peak_memory > 8125 * 8125 * 3
    plan = plan_fn(65000, 65000, [(65000, 65000)], is_jpeg=False, bands=8)
    # the decoded image twice, and the output (the decoded image itself) with its 2 encoder copies
    assert plan.peak_memory == 4 * 65000 * 65000 * 8 + MIB16
    big = native_resize.pure.MAX_DIMENSION
    plan = plan_fn(big, big, [(big, 0), (0, 1), (big - 1, big - 1)], is_jpeg=True, bands=64,
                   orientation_swaps=True)
    assert sizes(plan) == {0: (big, big), 1: (1, 1), 2: (big - 1, big - 1)}
    assert plan.peak_memory > 2**64  # Python integers, no wrap-around
    assert plan == native_resize.pure.plan_resize(big, big, [(big, 0), (0, 1), (big - 1, big - 1)], is_jpeg=True,
                                         bands=64, orientation_swaps=True)


# --------------------------------------------------------------------------- properties

def oracle_fit(w: int, h: int, mw: int, mh: int) -> tuple[int, int]:
    """Independent fit: exact scale as a Fraction, the binding side exact, the other rounded half up."""
    scales = [Fraction(1)]
    if mw:
        scales.append(Fraction(mw, w))
    if mh:
        scales.append(Fraction(mh, h))
    s = min(scales)
    if s == 1:
        return w, h
    ow, oh = w * s, h * s

    def half_up(x):
        return max(1, math.floor(x + Fraction(1, 2)))

    return half_up(ow), half_up(oh)


dims = st.integers(1, 12000) | st.integers(1, 65000) | st.sampled_from([1, 2, 3, 7, 8, 9, 15, 16, 17])
box_side = st.integers(0, 3000) | st.sampled_from([0, 1, 2, 200, 800, 1920, 2048])
boxes_st = st.lists(st.tuples(box_side, box_side).filter(lambda b: b != (0, 0)), min_size=0, max_size=7)
plan_args = st.tuples(dims, dims, boxes_st, st.booleans(), st.integers(1, 8), st.booleans())

PROP = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@PROP
@given(args=plan_args)
def test_properties(plan_fn, args):
    sw, sh, boxes, is_jpeg, bands, swaps = args
    plan = plan_fn(sw, sh, boxes, is_jpeg=is_jpeg, bands=bands, orientation_swaps=swaps)
    uw, uh = (sh, sw) if swaps else (sw, sh)
    out = sizes(plan)
    assert sorted(out) == list(range(len(boxes)))
    assert len(plan.steps) == len(boxes)

    for i, (mw, mh) in enumerate(boxes):
        w, h = out[i]
        assert (w, h) == oracle_fit(uw, uh, mw, mh)
        assert w >= 1 and h >= 1
        assert (mw == 0 or w <= mw) and (mh == 0 or h <= mh), "fits its box"
        assert w <= uw and h <= uh, "never upscaled"
        # not smaller than asked: the constrained side reaches its box (within 1 px),
        # unless the source itself is smaller
        if (mw == 0 or uw <= mw) and (mh == 0 or uh <= mh):
            assert (w, h) == (uw, uh)
        else:
            assert (mw and abs(w - mw) <= 1) or (mh and abs(h - mh) <= 1)
        # and keeps the aspect ratio: the other side is the exact scaled one rounded
        assert abs(w * uh - h * uw) <= max(uw, uh)

    # draft: JPEG only, a power of two, the decoded size Pillow's draft gives
    assert plan.draft_scale in ((1, 2, 4, 8) if is_jpeg else (1,))
    s = plan.draft_scale
    assert (plan.decoded_width, plan.decoded_height) == (-(-sw // s), -(-sh // s))
    dw_up, dh_up = (plan.decoded_height, plan.decoded_width) if swaps else (plan.decoded_width, plan.decoded_height)
    for w, h in out.values():
        assert dw_up >= w and dh_up >= h, "decoded image is >= every output"
    # ... and the scale is the largest such
    if is_jpeg and boxes:
        for bigger in (2, 4, 8):
            if bigger <= s or bigger > min(sw, sh):
                continue
            bw, bh = -(-sw // bigger), -(-sh // bigger)
            if swaps:
                bw, bh = bh, bw
            assert any(bw < w * native_resize.pure.DRAFT_MARGIN or bh < h * native_resize.pure.DRAFT_MARGIN
                       for w, h in out.values())

    # steps: largest first; every source made earlier and big enough; reduce keeps the gap
    made: dict[int, tuple[int, int]] = {}
    areas = [st_.width * st_.height for st_ in plan.steps]
    assert areas == sorted(areas, reverse=True)
    # Memory, replayed as the executor's phases (in pixels; x bands at the end): what
    # is alive in each phase, the peak is the largest. Held throughout: the decoded file
    # image and its normalised copy; while normalising, one more copy.
    decoded = plan.decoded_width * plan.decoded_height
    held = 2 * decoded
    phases = [held + decoded]
    outputs = 0  # every output stays alive until render returns, with its encoder's copies
    encode = native_resize.pure.ENCODE_COPIES
    alpha = bands >= native_resize.pure.ALPHA_BANDS
    for step in plan.steps:
        w, h = step.width, step.height
        if step.source == DECODED:
            src_w, src_h = dw_up, dh_up
            # no earlier output was eligible (a copy or >= RATIO x in both dimensions)
            for mw_, mh_ in made.values():
                assert (mw_, mh_) != (w, h)
                assert not (mw_ >= w * RATIO and mh_ >= h * RATIO)
        else:
            assert step.source in made, "source produced earlier"
            src_w, src_h = made[step.source]
            if (src_w, src_h) == (w, h):
                assert step.reduce == 1  # a copy
            else:
                assert src_w >= w * RATIO and src_h >= h * RATIO
                assert all((mw_, mh_) != (w, h) for mw_, mh_ in made.values())
                # the smallest eligible one
                for mw_, mh_ in made.values():
                    if mw_ >= w * RATIO and mh_ >= h * RATIO:
                        assert mw_ * mh_ >= src_w * src_h
        k = step.reduce
        gap = gap_for(w, h)
        assert k >= 1
        if k > 1:
            assert src_w // k >= gap * w and src_h // k >= gap * h, "never reduced below the output"
        assert not (src_w // (k + 1) >= gap * w and src_h // (k + 1) >= gap * h), "largest k"
        made[step.target_index] = (w, h)

        base = held + outputs
        if step.source != DECODED and (src_w, src_h) == (w, h):
            phases.append(base + w * h)  # the copy generate() makes for its encoder
            outputs += (1 + encode) * w * h
        elif step.source == DECODED and plan.draft_scale == 1 and (src_w, src_h) == (w, h):
            outputs += encode * w * h  # the output is the decoded image itself
        else:
            rw, rh = -(-src_w // k), -(-src_h // k)
            reduced = rw * rh if k > 1 else 0
            if k > 1:
                phases.append(base + 2 * reduced)  # stripes + the stitched reduce
            # LANCZOS from the reduced image: its premultiplied copy (may be RGBA), one pass's
            # intermediate (w x rh or rw x h), the output (stripes / stitched / converted back)
            phases.append(base + reduced + (rw * rh if alpha else 0) + max(w * rh, rw * h) + w * h)
            outputs += (1 + encode) * w * h
        phases.append(held + outputs)

    assert plan.peak_memory == max(phases) * bands + MIB16


@PROP
@given(args=plan_args)
def test_pure_and_compiled_agree(plan_pair, args):
    py, c = plan_pair
    sw, sh, boxes, is_jpeg, bands, swaps = args
    assert py(sw, sh, boxes, is_jpeg=is_jpeg, bands=bands, orientation_swaps=swaps) == \
        c(sw, sh, boxes, is_jpeg=is_jpeg, bands=bands, orientation_swaps=swaps)


@settings(max_examples=200, deadline=None)
@given(sw=dims, sh=dims, mw=st.integers(-3, 3), mh=st.integers(-3, 3))
def test_pure_and_compiled_agree_on_errors(plan_pair, sw, sh, mw, mh):
    py, c = plan_pair
    results = []
    for fn in (py, c):
        try:
            results.append(fn(sw - 2, sh, [(mw, mh)], is_jpeg=True))
        except (ValueError, TypeError) as exc:
            results.append(type(exc))
    assert results[0] == results[1]


# --------------------------------------------------------------------------- executing plans

TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _transpose_box(method, box, w, h):
    """Where the region ``box`` of a w x h image lands after ``transpose(method)``."""
    T = Image.Transpose
    f = {
        T.FLIP_LEFT_RIGHT: lambda x, y: (w - x, y),
        T.FLIP_TOP_BOTTOM: lambda x, y: (x, h - y),
        T.ROTATE_180: lambda x, y: (w - x, h - y),
        T.ROTATE_90: lambda x, y: (y, w - x),  # counter-clockwise
        T.ROTATE_270: lambda x, y: (h - y, x),
        T.TRANSPOSE: lambda x, y: (y, x),
        T.TRANSVERSE: lambda x, y: (h - y, w - x),
    }[method]
    (x0, y0), (x1, y1) = f(box[0], box[1]), f(box[2], box[3])
    return min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)


def orientation_of(im: Image.Image) -> int:
    return int(im.getexif().get(0x0112, 1) or 1)


def working_mode(im: Image.Image) -> str:
    """RGBA for images with alpha, else RGB.

    The corpus PNGs are white RGB everywhere with the picture in the alpha channel:
    convert("RGB") would make them one flat colour and the comparison vacuous.
    """
    return "RGBA" if im.has_transparency_data else "RGB"


@lru_cache(maxsize=2)  # consecutive plans of one file share the decode (the test's cost is decoding)
def _decode(path: Path, scale: int, decoded_width: int, decoded_height: int, literal_draft: bool) -> Image.Image:
    with Image.open(path) as im:
        if scale > 1:
            request = (decoded_width, decoded_height) if literal_draft else draft_request(*im.size, scale)
            im.draft("RGB", request)
        assert im.size == (decoded_width, decoded_height)
        return im.convert(working_mode(im))


def execute(path, plan_fn, boxes, *, literal_draft: bool = False):
    """Reference executor: draft, decode, transpose, then the steps (reduce + LANCZOS).

    Resamples the exact valid region of each source, as Pillow's thumbnail() does:
    the draft holds w/s x h/s source pixels (its last row/column is partial when s
    does not divide the side), reduce(k) holds src/k.
    """
    with Image.open(path) as im:
        orientation = orientation_of(im)
        sw, sh = im.size
        plan = plan_fn(sw, sh, boxes, is_jpeg=im.format == "JPEG",
                       orientation_swaps=orientation in (5, 6, 7, 8))
    method = TRANSPOSE.get(orientation)
    decoded = _decode(Path(path), plan.draft_scale, plan.decoded_width, plan.decoded_height, literal_draft)
    s = plan.draft_scale
    box = (0, 0, sw / s, sh / s)
    if method is not None:
        box = _transpose_box(method, box, decoded.width, decoded.height)
        decoded = decoded.transpose(method)
    outputs: dict[int, Image.Image] = {}
    for step in plan.steps:
        if step.source == DECODED:
            src, src_box = decoded, box
        else:
            src = outputs[step.source]
            src_box = (0, 0, src.width, src.height)
        size = (step.width, step.height)
        if src.size == size and src_box == (0, 0, src.width, src.height):
            outputs[step.target_index] = src.copy()
            continue
        if step.reduce > 1:
            k = step.reduce
            # reduce from the k-aligned corner that holds the valid region
            rb = (int(src_box[0]) // k * k, int(src_box[1]) // k * k, src.width, src.height)
            src = src.reduce(k, box=rb)
            src_box = tuple((v - rb[i % 2]) / k for i, v in enumerate(src_box))
        outputs[step.target_index] = src.resize(size, Image.Resampling.LANCZOS, box=src_box)
    return plan, outputs


@lru_cache(maxsize=8)  # the whole corpus, upright: shared by both implementations' runs
def upright_full(path: Path) -> Image.Image:
    with Image.open(path) as im:
        method = TRANSPOSE.get(orientation_of(im))
        full = im.convert(working_mode(im))
    return full.transpose(method) if method is not None else full


@lru_cache(maxsize=128)
def direct(path: Path, size: tuple[int, int]) -> np.ndarray:
    """The reference: a direct LANCZOS resize of the full-resolution upright image."""
    return np.asarray(upright_full(path).resize(size, Image.Resampling.LANCZOS))


def visible(a: np.ndarray) -> np.ndarray:
    """RGB as float; RGBA as premultiplied RGB (the image over black) plus alpha.

    Premultiplied, because Pillow resamples RGBA premultiplied and the colour of a
    nearly transparent pixel is noise that nobody sees.
    """
    a = a.astype(np.float64)
    if a.ndim == 3 and a.shape[2] == 4:
        alpha = a[..., 3:4]
        return np.concatenate([a[..., :3] * alpha / 255.0, alpha], axis=2)
    return a


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((visible(a) - visible(b)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


VISUAL_BOX_SETS = [
    DEFAULT_BOXES,
    [(200, 200)],  # thumbnail alone: the deepest draft
    [(800, 0)],
    [(512, 512)],
    [(800, 0), (200, 200)],
    [(1024, 0), (320, 320), (100, 100), (40, 40)],  # a long cascade
]


def check_visual(path, plan_fn, boxes, **kw):
    plan, outputs = execute(path, plan_fn, boxes, **kw)
    worst = math.inf
    for i in range(len(boxes)):
        out = outputs[i]
        value = psnr(np.asarray(out), direct(Path(path), out.size))
        assert value >= PSNR_MIN, f"{Path(path).name} {boxes} -> output {i} {out.size}: {value:.2f} dB, plan {plan}"
        worst = min(worst, value)
    return plan, worst


@pytest.mark.parametrize("path", IMAGES, ids=[p.name for p in IMAGES])
def test_visual_equality_corpus(plan_fn, path):
    assert len(IMAGES) >= 5
    drafted = 0
    for boxes in VISUAL_BOX_SETS:
        plan, _ = check_visual(path, plan_fn, boxes)
        drafted += plan.draft_scale > 1
    if path.suffix == ".jpg":
        assert drafted, "the corpus JPEGs exercise the draft path"
        # the corpus JPEG sizes are multiples of 8: the literal draft request works too
        check_visual(path, plan_fn, [(200, 200)], literal_draft=True)


@pytest.fixture(scope="module")
def odd_jpegs(tmp_path_factory):
    """Corpus photos cropped to sizes not divisible by 8 (one with EXIF orientation 6)."""
    root = tmp_path_factory.mktemp("odd")
    made = []
    for name, crop, orientation in [
        ("garden-2560x1600.jpg", (3, 5, 2557, 1599), 1),
        ("storm-1920x1280.jpg", (0, 0, 1917, 1277), 6),
        ("meadow-1280x1024.jpg", (1, 1, 1270, 1019), 8),
    ]:
        with Image.open(IMAGES_DIR / name) as im:
            im = im.convert("RGB").crop(crop)
        exif = Image.Exif()
        exif[0x0112] = orientation
        p = root / f"odd-{im.width}x{im.height}-o{orientation}.jpg"
        im.save(p, quality=92, exif=exif)
        made.append(p)
    return made


def test_visual_equality_odd_sizes(plan_fn, odd_jpegs):
    for path in odd_jpegs:
        for boxes in VISUAL_BOX_SETS + [[(654, 299)], [(158, 1378)], [(2484, 85)]]:
            check_visual(path, plan_fn, boxes)


@pytest.mark.parametrize("size", [(37, 29), (64, 48), (1917, 1277), (2554, 1594), (9, 17)])
def test_draft_request_gets_exactly_the_planned_scale(size):
    buf = io.BytesIO()
    Image.new("RGB", size, (120, 30, 200)).save(buf, "JPEG")
    for s in (2, 4, 8):
        if s > min(size):
            continue
        with Image.open(io.BytesIO(buf.getvalue())) as im:
            im.draft("RGB", draft_request(*size, s))
            assert im.size == (-(-size[0] // s), -(-size[1] // s))
            im.load()
            assert im.size == (-(-size[0] // s), -(-size[1] // s))
