"""Resize scheduler: plan every wanted output of one image from a single decode.

This is the pure-Python reference implementation; ``_native/_resize_c.pyx`` is its
compiled twin and must return equal plans for every input (the tests compare them
on random inputs). Every rule below is integer arithmetic (or a comparison of an
integer with an integer times one of the float constants, identical in C doubles),
so the two cannot drift apart.

The plan, in the order the pipeline executes it:

1. **Draft** (JPEG shrink-on-load): decode at 1/``draft_scale`` (1, 2, 4, 8). Pillow
   rounds the decoded size up: ``ceil(w / s)`` x ``ceil(h / s)``. The service passes
   ``is_jpeg=True`` for a still WebP too when libwebp's scaled decode is built
   (falconproc.native.webp_decode): it decodes straight to that size, the whole image
   valid (no partial last row/column). The largest scale
   is chosen whose decoded size is still >= ``DRAFT_MARGIN`` times every output in
   both dimensions, so nothing is upscaled and the final resample still has
   enough pixels to average over. Ask Pillow for it with
   ``im.draft("RGB", draft_request(w, h, s))`` (see ``_plan_types.draft_request``).
2. **Transpose**: the EXIF orientation is applied to the decoded image. Decoding
   and drafting happen BEFORE the rotation, so ``draft_scale`` and
   ``decoded_width``/``decoded_height`` are in the file's stored (pre-rotation)
   orientation; everything after (boxes, output sizes, cascade, reduce) is upright.
3. **Cascade**: outputs are made largest first; each one is derived from the
   smallest already-made output that is at least ``CASCADE_MIN_RATIO`` times larger
   in both dimensions, else from the decoded image. A target whose output size
   equals an earlier one's is a copy of it.
4. **Reduce + resample**: ``Image.reduce(k)`` with the largest k that keeps the
   source at least ``REDUCE_GAP`` times the output (``SMALL_REDUCE_GAP`` for outputs
   whose longer side is under ``SMALL_OUTPUT``), then LANCZOS to the final size (like
   Pillow's ``resize(..., reducing_gap=...)``, but planned up front). When the
   reduced image already has the output's size, the reduce is the whole step.

The executor must resample the exact valid region (``box=``) in two places, as
Pillow's own ``thumbnail()`` and ``resize(reducing_gap=...)`` do: the draft holds
``w/s`` x ``h/s`` source-equivalent pixels (the last column/row is partial when s
does not divide the side; after the EXIF transpose that edge may be the top or left),
and ``reduce(k)`` of a ``sw`` x ``sh`` image holds ``sw/k`` x ``sh/k``. Ignoring the
boxes shifts the output by up to half a pixel (measured down to 33.6 dB PSNR).
tests/native/test_resize_plan.py has a reference executor.
"""
from __future__ import annotations

import operator

from falconproc.native.types import DECODED, ResizePlan, ResizeStep

__all__ = [
    "plan_resize",
    "fit_box",
    "CASCADE_MIN_RATIO",
    "DRAFT_MARGIN",
    "REDUCE_GAP",
    "SMALL_OUTPUT",
    "SMALL_REDUCE_GAP",
    "DRAFT_SCALES",
    "OVERHEAD_BYTES",
    "ENCODE_COPIES",
    "ALPHA_BANDS",
    "MAX_DIMENSION",
    "MAX_BANDS",
]

# An output may be derived from an earlier output (instead of the decoded image)
# only if that one is at least this many times larger in BOTH dimensions. 1.0: any
# earlier output at least as large, e.g. ai-chat 1920x1200 from ai-vision 2048x1280
# instead of from a 2560x1600 decode (measured on this 2-core VM: 0.087 s from
# 2560, 0.059 s from 2048). Measured with REDUCE_GAP below: the cascaded
# outputs' PSNR against a direct LANCZOS resize of the full image is the same at
# 1.0 as at 2.0 on the corpus (worst 38.2 dB without the small-output gap, 44.5 dB
# with it; ai-chat from ai-vision: 54 dB); tests/native/test_resize_plan.py holds the
# bar (38 dB). The reduce() before the resample must be followed by
# resize(..., box=(0, 0, src_w/k, src_h/k)) when k does not divide the source:
# without it the storm photo's cascaded 200x133 thumbnail measured 36.8 dB, with it
# 52.7 dB.
CASCADE_MIN_RATIO = 1.0

# A draft scale is chosen only if the decoded image stays >= DRAFT_MARGIN x every
# output in both dimensions (the planner's only quality knob besides the cascade
# ratio). 1.0 -- "never upscale" and nothing more -- is enough, PROVIDED the executor
# resamples the exact valid region of the draft: libjpeg's scaled decode of a side not
# divisible by the scale ends in a partial pixel, so the image holds w/s (not
# ceil(w/s)) source-equivalent pixels; resize(..., box=(0, 0, w/s, h/s)) (transposed
# with the image) and, after reduce(k), box=(0, 0, src_w/k, src_h/k). Measured with
# that executor: drafted outputs >= 46 dB PSNR against a direct LANCZOS resize of the
# full image on the corpus and >= 42 dB over random boxes incl. odd-sized JPEGs, where
# margins 1.5/2.0 bought nothing (worst cases there are tiny undrafted outputs).
# WITHOUT the boxes, odd-sized JPEGs dropped to 33.6 dB at margin 1.0 and still 34.4 dB
# at 1.5: the fix is the box, not a bigger decode. Raise this only if a real file
# fails the 38 dB bar in tests/native/test_resize_plan.py.
DRAFT_MARGIN = 1.0

# Image.reduce(k) (a k x k box average, ~10x cheaper than LANCZOS) takes the largest
# integer k that keeps the source at least REDUCE_GAP x the output, then LANCZOS
# resamples the remaining factor (< 2): what libvips' thumbnail does (shrink, then
# lanczos3). Pillow's resize(reducing_gap=2.0) keeps 2x, which left e.g. a 4096x4096
# WebP's 2048 ai-vision to a full LANCZOS (0.26 s) where reduce(2) costs 0.03 s.
# Measured on the corpus (bench_presets.py, tests/native/test_resize_plan.py): gap 1
# instead of 2 cut the presets' total from 1.40 to 0.93 s; the default presets'
# outputs stay >= 42.6 dB PSNR against a direct LANCZOS resize, but tiny outputs at
# the end of a long cascade dropped to 38.1 dB (40x32 from 100x80), too close to the
# 38 dB bar. Outputs whose longer side is under SMALL_OUTPUT therefore keep the gap
# of 2 (their resample costs ~2 ms): worst 44.1 dB over the test's box sets,
# including odd-sized drafted JPEGs.
REDUCE_GAP = 1
SMALL_OUTPUT = 256
SMALL_REDUCE_GAP = 2

DRAFT_SCALES = (8, 4, 2)  # tried largest first; 1 (no draft) is the fallback

OVERHEAD_BYTES = 16 * 1024 * 1024  # interpreter, thread arenas, codec row buffers: added to every estimate

# Memory model (peak_memory). The executor (falconproc/images/pipeline.py decode_for,
# render, _reduce, _lanczos, _stitch; image_service.generate) holds:
# - the decoded image TWICE: the caller keeps the decoded file image (``with
#   open_checked(...) as im``) alive through the render, and normalising it (EXIF
#   transpose, ICC to sRGB, CMYK/palette/16-bit to RGB(A)) makes a second one; while
#   normalising, up to two copies exist beside the original (transpose, then convert);
# - EVERY output until render returns (the outputs dict; generate encodes each on the
#   pool while the next is made), each with its encoder's working set, at most
#   ENCODE_COPIES output-sized buffers (WebP measured 1.8x the output in Pillow 13,
#   JPEG of RGBA flattens onto a new RGB image);
# - during one step, on top of that: a reduce(k) in stripes (the stripes and the
#   stitched image: 2x the reduce buffer), then the LANCZOS from the reduced image
#   (still alive): a premultiplied (RGBa) copy of it when the image may have alpha
#   (bands >= ALPHA_BANDS; _lanczos converts once, Pillow's resize does it per call),
#   the resampler's intermediate pass (output width x source height, or source width x
#   output height: the larger), and the output (stripes + stitched, or stitched + the
#   converted-back copy: 2x the output, which the intermediate bound covers since the
#   intermediate is at least the output). A copy of an earlier output is one more
#   output (generate copies it for its own encode).
ENCODE_COPIES = 2
ALPHA_BANDS = 4  # bytes per pixel from which the image may be RGBA (Pillow stores RGB in 4 too)

# Largest side accepted: Pillow's (and PNG/TIFF headers') 2**31 - 1. Keeps every size
# product of the compiled twin inside a signed 64-bit integer.
MAX_DIMENSION = 2**31 - 1
MAX_BANDS = 64  # bytes per pixel accepted for the memory estimate (RGBA 16-bit is 8)


def _dim(value, what: str, allow_zero: bool) -> int:
    v = operator.index(value)  # TypeError for floats, like the compiled twin
    if v < 0 or (v == 0 and not allow_zero) or v > MAX_DIMENSION:
        raise ValueError(f"{what} must be {'0..' if allow_zero else '1..'}{MAX_DIMENSION}, got {v}")
    return v


def fit_box(width: int, height: int, max_width: int, max_height: int) -> tuple[int, int]:
    """Size of a ``width`` x ``height`` image fitted inside ``max_width`` x ``max_height``.

    0 means unbounded on that axis. Keeps the aspect ratio, never upscales (an image
    that already fits keeps its size), the binding side equals the box exactly and
    the other is rounded half up, at least 1 px.
    """
    if (max_width == 0 or width <= max_width) and (max_height == 0 or height <= max_height):
        return width, height
    # Width binds when it is the only bound or when mw/W <= mh/H (cross-multiplied, exact).
    if max_height == 0 or (max_width != 0 and max_width * height <= max_height * width):
        return max_width, max(1, (2 * height * max_width + width) // (2 * width))
    return max(1, (2 * width * max_height + height) // (2 * height)), max_height


def plan_resize(
    src_width: int,
    src_height: int,
    targets,
    *,
    is_jpeg: bool,
    bands: int = 3,
    orientation_swaps: bool = False,
) -> ResizePlan:
    """Plan all ``targets`` of one ``src_width`` x ``src_height`` image from one decode.

    ``src_width``/``src_height`` are the stored (header) size, before the EXIF
    orientation. ``targets`` holds one ``(max_width, max_height)`` box per wanted
    output (0 = unbounded on that axis); boxes apply to the UPRIGHT image. With
    ``orientation_swaps`` (EXIF orientation 5-8, a 90/270 degree rotation) the
    planner works on the transposed source and reports upright output sizes, while
    ``draft_scale`` and ``decoded_width``/``decoded_height`` stay pre-rotation: the
    pipeline drafts and decodes first, then transposes, then runs the steps.

    ``bands`` is bytes per pixel for the memory estimate (note that Pillow stores
    "RGB" with 4 bytes per pixel internally). Raises ValueError for non-positive
    source sizes, negative box sides or a box with both sides 0.

    ``peak_memory`` (bytes, an upper bound for the service's executor; every size
    below times ``bands``) = 2 x decoded (the decoded file image, which the caller
    keeps, and its normalised copy: transposed / converted to sRGB RGB(A))
    + the larger of (a) one more decoded-size copy (while normalising, transpose then
    convert) and (b) the worst step: the outputs made before it, each with
    ``ENCODE_COPIES`` encoder working copies (every output stays alive until the render
    returns and is encoded meanwhile), plus the step's own transient:
    max(2 x reduce buffer (stripes + stitched), reduce buffer + a premultiplied copy of
    the resampled source (when ``bands >= ALPHA_BANDS``: it may be RGBA) + the output
    + the resampler's intermediate pass (max(out_w x src_h, src_w x out_h), of the
    reduced source)); a copy of an earlier output holds one output, an undrafted
    decode of exactly the output's size none; after the last step (b) is at least all
    outputs with their encoder copies. + ``OVERHEAD_BYTES``. The memory model is
    spelled out above ENCODE_COPIES in ``_resize_py.py``.
    """
    sw = _dim(src_width, "src_width", False)
    sh = _dim(src_height, "src_height", False)
    bands = operator.index(bands)
    if not 1 <= bands <= MAX_BANDS:
        raise ValueError(f"bands must be 1..{MAX_BANDS}, got {bands}")
    swap = bool(orientation_swaps)
    jpeg = bool(is_jpeg)
    alpha = bands >= ALPHA_BANDS

    boxes = []
    for i, target in enumerate(targets):
        mw, mh = target
        mw = _dim(mw, f"targets[{i}] max_width", True)
        mh = _dim(mh, f"targets[{i}] max_height", True)
        if mw == 0 and mh == 0:
            raise ValueError(f"targets[{i}] is unbounded on both axes")
        boxes.append((mw, mh))
    n = len(boxes)

    # Upright source: the boxes are for the image as displayed.
    uw, uh = (sh, sw) if swap else (sw, sh)
    outs = [fit_box(uw, uh, mw, mh) for mw, mh in boxes]

    # 1. Draft scale, compared in the stored orientation (outputs transposed back).
    scale = 1
    if jpeg and n:
        for s in DRAFT_SCALES:
            if s > sw or s > sh:  # draft_request() could not ask Pillow for exactly s
                continue
            dw = (sw + s - 1) // s
            dh = (sh + s - 1) // s
            ok = True
            for ow, oh in outs:
                pw, ph = (oh, ow) if swap else (ow, oh)
                if dw < pw * DRAFT_MARGIN or dh < ph * DRAFT_MARGIN:
                    ok = False
                    break
            if ok:
                scale = s
                break
    dec_w = (sw + scale - 1) // scale
    dec_h = (sh + scale - 1) // scale
    udw, udh = (dec_h, dec_w) if swap else (dec_w, dec_h)  # decoded, upright

    # 2. Execution order: largest area first; ties: wider first, then target order.
    order = sorted(range(n), key=lambda i: (-outs[i][0] * outs[i][1], -outs[i][0], i))

    # 3. Cascade and reduce factors.
    steps = []
    done = []  # target indices already produced, in execution order
    made = 0  # bytes of the outputs made so far, each with its encoder's working set
    steps_peak = 0  # the most any step needs on top of the decoded image and its copy
    for i in order:
        ow, oh = outs[i]
        src = DECODED
        src_w, src_h = udw, udh
        for j in done:  # a same-size output: copy it
            if outs[j] == (ow, oh):
                src = j
                src_w, src_h = ow, oh
                break
        if src == DECODED:
            best_area = -1
            for j in done:
                jw, jh = outs[j]
                if jw >= ow * CASCADE_MIN_RATIO and jh >= oh * CASCADE_MIN_RATIO:
                    area = jw * jh
                    if best_area < 0 or area < best_area:  # smallest; ties: earliest made
                        best_area = area
                        src = j
                        src_w, src_h = jw, jh
        gap = REDUCE_GAP if max(ow, oh) >= SMALL_OUTPUT else SMALL_REDUCE_GAP
        k = max(1, min(src_w // (gap * ow), src_h // (gap * oh)))
        steps.append(ResizeStep(i, ow, oh, src, k))
        done.append(i)

        # 4a. What this step holds besides the decoded image, its copy and the earlier
        # outputs; then what stays: the output and its encoder's working set.
        out_bytes = ow * oh * bands
        kept = (1 + ENCODE_COPIES) * out_bytes
        if src != DECODED and src_w == ow and src_h == oh:
            step_bytes = out_bytes  # a copy: the service gives its encoder a copy of its own
        elif src == DECODED and scale == 1 and src_w == ow and src_h == oh:
            # the decoded image itself (an undrafted decode's box is exact): no new pixels
            step_bytes = 0
            kept = ENCODE_COPIES * out_bytes
        else:
            rw = (src_w + k - 1) // k  # the resampled source: the reduce buffer, or the source
            rh = (src_h + k - 1) // k
            reduced = rw * rh * bands if k > 1 else 0
            premultiplied = rw * rh * bands if alpha else 0
            intermediate = max(ow * rh, rw * oh) * bands
            step_bytes = max(2 * reduced, reduced + premultiplied + out_bytes + intermediate)
        if made + step_bytes > steps_peak:
            steps_peak = made + step_bytes
        made += kept
    if made > steps_peak:
        steps_peak = made

    # 4b. Peak memory estimate.
    decoded_bytes = dec_w * dec_h * bands
    peak = 2 * decoded_bytes + max(decoded_bytes, steps_peak) + OVERHEAD_BYTES

    return ResizePlan(scale, dec_w, dec_h, tuple(steps), peak)
