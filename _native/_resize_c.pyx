# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Compiled twin of falconproc/native/_resize_py.py: the resize scheduler.

Behaviour must match the pure-Python reference exactly (the tests compare the two
plans on random inputs); every block here mirrors the numbered step of the same name
over there. Sizes are validated to 0..2**31-1 before they reach C, so every product
below (at most 2 * 2**31 * 2**31 + 2**31) fits a signed 64-bit integer; the memory
estimate (sizes times bands, summed) could exceed that and is computed with Python
integers. Comparisons with the float constants are done in C doubles, which is what
Python's int * float does too (all operands here are exactly representable).
"""
from libc.stdlib cimport qsort
from cpython.mem cimport PyMem_Malloc, PyMem_Free
from operator import index as _index

from falconproc.native.types import DECODED as _DECODED_OBJ, ResizePlan, ResizeStep

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

# Same values and rationale as in _resize_py.py (the tests check they are equal).
CASCADE_MIN_RATIO = 1.0
DRAFT_MARGIN = 1.0
REDUCE_GAP = 1
SMALL_OUTPUT = 256
SMALL_REDUCE_GAP = 2
DRAFT_SCALES = (8, 4, 2)
OVERHEAD_BYTES = 16 * 1024 * 1024
ENCODE_COPIES = 2
ALPHA_BANDS = 4
MAX_DIMENSION = 2**31 - 1
MAX_BANDS = 64

# C copies of the constants above (edit the Python-level values only).
cdef double C_CASCADE_MIN_RATIO = CASCADE_MIN_RATIO
cdef double C_DRAFT_MARGIN = DRAFT_MARGIN
cdef long long C_REDUCE_GAP = REDUCE_GAP
cdef long long C_SMALL_OUTPUT = SMALL_OUTPUT
cdef long long C_SMALL_REDUCE_GAP = SMALL_REDUCE_GAP
cdef int[3] C_DRAFT_SCALES = DRAFT_SCALES
cdef long long C_DECODED = -1

if _DECODED_OBJ != C_DECODED:  # pragma: no cover - guards an edit of one side only
    raise ImportError("_plan_types.DECODED changed; update _native/_resize_c.pyx")


ctypedef struct Out:
    long long w
    long long h
    long long area
    Py_ssize_t idx


cdef int _cmp_out(const void* a, const void* b) noexcept nogil:
    # Largest area first; ties: wider first, then target order (a total order,
    # so any correct sort gives the same sequence as Python's sorted()).
    cdef const Out* x = <const Out*>a
    cdef const Out* y = <const Out*>b
    if x.area != y.area:
        return -1 if x.area > y.area else 1
    if x.w != y.w:
        return -1 if x.w > y.w else 1
    if x.idx != y.idx:
        return -1 if x.idx < y.idx else 1
    return 0


cdef long long _dim(object value, str what, bint allow_zero) except -1:
    v = _index(value)  # TypeError for floats, like the pure twin
    if v < 0 or (v == 0 and not allow_zero) or v > MAX_DIMENSION:
        raise ValueError(f"{what} must be {'0..' if allow_zero else '1..'}{MAX_DIMENSION}, got {v}")
    return <long long>v


cdef inline void _fit(long long width, long long height, long long mw, long long mh,
                      long long* ow, long long* oh) noexcept nogil:
    cdef long long v
    if (mw == 0 or width <= mw) and (mh == 0 or height <= mh):
        ow[0] = width
        oh[0] = height
    elif mh == 0 or (mw != 0 and mw * height <= mh * width):
        v = (2 * height * mw + width) // (2 * width)
        ow[0] = mw
        oh[0] = v if v > 1 else 1
    else:
        v = (2 * width * mh + height) // (2 * height)
        ow[0] = v if v > 1 else 1
        oh[0] = mh


def fit_box(width, height, max_width, max_height):
    """Size of a ``width`` x ``height`` image fitted inside ``max_width`` x ``max_height``.

    0 means unbounded on that axis. Keeps the aspect ratio, never upscales (an image
    that already fits keeps its size), the binding side equals the box exactly and
    the other is rounded half up, at least 1 px.
    """
    cdef long long w = _dim(width, "width", False)
    cdef long long h = _dim(height, "height", False)
    cdef long long mw = _dim(max_width, "max_width", True)
    cdef long long mh = _dim(max_height, "max_height", True)
    cdef long long ow, oh
    _fit(w, h, mw, mh, &ow, &oh)
    return ow, oh


def plan_resize(src_width, src_height, targets, *, is_jpeg, bands=3, orientation_swaps=False):
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
    cdef long long sw = _dim(src_width, "src_width", False)
    cdef long long sh = _dim(src_height, "src_height", False)
    b = _index(bands)
    if not 1 <= b <= MAX_BANDS:
        raise ValueError(f"bands must be 1..{MAX_BANDS}, got {b}")
    cdef long long nb = <long long>b
    cdef bint swap = bool(orientation_swaps)
    cdef bint jpeg = bool(is_jpeg)
    cdef bint alpha = b >= ALPHA_BANDS

    # Validate every box before allocating anything (same errors, same order as Python).
    boxes = []
    for i, target in enumerate(targets):
        mw_o, mh_o = target
        mw_o = _dim(mw_o, f"targets[{i}] max_width", True)
        mh_o = _dim(mh_o, f"targets[{i}] max_height", True)
        if mw_o == 0 and mh_o == 0:
            raise ValueError(f"targets[{i}] is unbounded on both axes")
        boxes.append((mw_o, mh_o))
    cdef Py_ssize_t n = len(boxes)

    cdef long long uw = sh if swap else sw
    cdef long long uh = sw if swap else sh
    cdef long long scale = 1, s, dw, dh, pw, ph, dec_w, dec_h, udw, udh
    cdef long long ow, oh, src, src_w, src_h, jw, jh, area, best_area, k, kx, ky, gap, rw, rh
    cdef Py_ssize_t a, c
    cdef bint ok

    cdef Out* outs = NULL      # by target index
    cdef Out* order = NULL     # execution order
    cdef Py_ssize_t* srcs = NULL   # per execution position: source target index or -1
    cdef long long* reds = NULL    # per execution position: reduce factor
    if n:
        outs = <Out*>PyMem_Malloc(n * sizeof(Out))
        order = <Out*>PyMem_Malloc(n * sizeof(Out))
        srcs = <Py_ssize_t*>PyMem_Malloc(n * sizeof(Py_ssize_t))
        reds = <long long*>PyMem_Malloc(n * sizeof(long long))
        if outs == NULL or order == NULL or srcs == NULL or reds == NULL:
            PyMem_Free(outs)
            PyMem_Free(order)
            PyMem_Free(srcs)
            PyMem_Free(reds)
            raise MemoryError()
    try:
        for a in range(n):
            mw_o, mh_o = boxes[a]
            _fit(uw, uh, <long long>mw_o, <long long>mh_o, &outs[a].w, &outs[a].h)
            outs[a].area = outs[a].w * outs[a].h
            outs[a].idx = a
            order[a] = outs[a]

        # 1. Draft scale, compared in the stored orientation (outputs transposed back).
        if jpeg and n:
            for c in range(3):
                s = C_DRAFT_SCALES[c]
                if s > sw or s > sh:  # draft_request() could not ask Pillow for exactly s
                    continue
                dw = (sw + s - 1) // s
                dh = (sh + s - 1) // s
                ok = True
                for a in range(n):
                    if swap:
                        pw = outs[a].h
                        ph = outs[a].w
                    else:
                        pw = outs[a].w
                        ph = outs[a].h
                    if <double>dw < <double>pw * C_DRAFT_MARGIN or <double>dh < <double>ph * C_DRAFT_MARGIN:
                        ok = False
                        break
                if ok:
                    scale = s
                    break
        dec_w = (sw + scale - 1) // scale
        dec_h = (sh + scale - 1) // scale
        udw = dec_h if swap else dec_w
        udh = dec_w if swap else dec_h

        # 2. Execution order.
        if n > 1:
            qsort(order, n, sizeof(Out), _cmp_out)

        # 3. Cascade and reduce factors (and 4a, the memory each step holds: Python
        # integers, sizes times bands may pass 2**63).
        made = 0
        steps_peak = 0
        for a in range(n):
            ow = order[a].w
            oh = order[a].h
            src = C_DECODED
            src_w = udw
            src_h = udh
            for c in range(a):  # a same-size output: copy it
                if order[c].w == ow and order[c].h == oh:
                    src = order[c].idx
                    src_w = ow
                    src_h = oh
                    break
            if src == C_DECODED:
                best_area = -1
                for c in range(a):
                    jw = order[c].w
                    jh = order[c].h
                    if <double>jw >= <double>ow * C_CASCADE_MIN_RATIO and <double>jh >= <double>oh * C_CASCADE_MIN_RATIO:
                        area = order[c].area
                        if best_area < 0 or area < best_area:  # smallest; ties: earliest made
                            best_area = area
                            src = order[c].idx
                            src_w = jw
                            src_h = jh
            gap = C_REDUCE_GAP if (ow if ow > oh else oh) >= C_SMALL_OUTPUT else C_SMALL_REDUCE_GAP
            kx = src_w // (gap * ow)
            ky = src_h // (gap * oh)
            k = kx if kx < ky else ky
            if k < 1:
                k = 1
            srcs[a] = <Py_ssize_t>src
            reds[a] = k

            # 4a. What this step holds besides the decoded image, its copy and the
            # earlier outputs; then what stays: the output and its encoder's working set.
            out_bytes = (<object>ow) * oh * nb
            kept = (1 + ENCODE_COPIES) * out_bytes
            if src != C_DECODED and src_w == ow and src_h == oh:
                step_bytes = out_bytes  # a copy: the service gives its encoder a copy of its own
            elif src == C_DECODED and scale == 1 and src_w == ow and src_h == oh:
                step_bytes = 0  # the decoded image itself: no new pixels
                kept = ENCODE_COPIES * out_bytes
            else:
                rw = (src_w + k - 1) // k  # the resampled source: the reduce buffer, or the source
                rh = (src_h + k - 1) // k
                reduced = (<object>rw) * rh * nb if k > 1 else 0
                premultiplied = (<object>rw) * rh * nb if alpha else 0
                intermediate = (<object>(ow * rh if ow * rh > rw * oh else rw * oh)) * nb
                step_bytes = reduced + premultiplied + out_bytes + intermediate
                if 2 * reduced > step_bytes:
                    step_bytes = 2 * reduced
            if made + step_bytes > steps_peak:
                steps_peak = made + step_bytes
            made += kept
        if made > steps_peak:
            steps_peak = made

        # 4b. Peak memory estimate (Python integers: may exceed 64 bits).
        step_list = []
        for a in range(n):
            step_list.append(ResizeStep(order[a].idx, order[a].w, order[a].h, srcs[a], reds[a]))
        steps = tuple(step_list)
        decoded_bytes = (<object>dec_w) * dec_h * nb
        peak = 2 * decoded_bytes + (steps_peak if steps_peak > decoded_bytes else decoded_bytes) + OVERHEAD_BYTES
        return ResizePlan(<object>scale, <object>dec_w, <object>dec_h, steps, peak)
    finally:
        PyMem_Free(outs)
        PyMem_Free(order)
        PyMem_Free(srcs)
        PyMem_Free(reds)
