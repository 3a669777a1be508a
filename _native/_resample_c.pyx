# cython: language_level=3, boundscheck=False, wraparound=False
"""Lanczos resampling with Pillow's arithmetic and SIMD loops (resample_kernels.h).

Pillow's Image.resize(LANCZOS) runs its convolution one pixel and one channel at a
time; the same weights applied a whole row (vertical pass) or a whole pixel
(horizontal pass) at a time give the same bytes several times faster
(benchmarks/bench_resize_http.py). The GIL is released while the kernels run, so the
pipeline's stripes run on several cores. Modes other than L, RGB, RGBA and RGBa go to
Pillow itself. The pure-Python twin, falconproc/native/_resample_py.py, is Pillow's
resize; tests/native/test_resample.py compares the two byte for byte.
"""
from libc.stdint cimport uint8_t

from PIL import Image

__all__ = ["lanczos"]

cdef extern from "resample_kernels.h":
    int fp_resample(const uint8_t *src, int width, int height, int bpp, uint8_t *dst, int out_w, int out_h,
                    float x0, float y0, float x1, float y1) nogil

# Past this ratio the transposes of a large source cost more than the loops save; the
# pipeline reduces before it resamples, so its ratios stay under 2.
MAX_RATIO = 4.0
# Pillow mode -> (raw mode with whole-byte pixels, bytes per pixel)
# (Pillow packs RGB to 3 bytes ten times faster than to RGBX.)
_RAW = {"L": ("L", 1), "RGB": ("RGB", 3), "RGBa": ("RGBa", 4)}
_PREMULTIPLIED = {"RGBA": "RGBa"}


def lanczos(im, size, box):
    """``im.resize(size, Image.Resampling.LANCZOS, box=box)``, the same bytes."""
    if im.mode in _PREMULTIPLIED:  # Pillow resamples RGBA premultiplied, and so do we
        return lanczos(im.convert(_PREMULTIPLIED[im.mode]), size, box).convert(im.mode)
    cdef int out_w = size[0], out_h = size[1], width = im.width, height = im.height, bpp, status
    cdef float x0 = box[0], y0 = box[1], x1 = box[2], y1 = box[3]
    if im.mode not in _RAW or out_w <= 0 or out_h <= 0 or \
            (x1 - x0) > MAX_RATIO * out_w or (y1 - y0) > MAX_RATIO * out_h:
        return im.resize(size, Image.Resampling.LANCZOS, box=box)
    if (out_w, out_h) == (width, height) and (x0, y0, x1, y1) == (0, 0, width, height):
        return im.copy()
    rawmode, bpp = _RAW[im.mode]
    data = im.tobytes("raw", rawmode)
    out = bytearray(<size_t>out_w * out_h * bpp)
    cdef const uint8_t[::1] src = data
    cdef uint8_t[::1] dst = out
    with nogil:
        status = fp_resample(&src[0], width, height, bpp, &dst[0], out_w, out_h, x0, y0, x1, y1)
    if status != 0:
        raise MemoryError("resample buffers")
    return Image.frombytes(im.mode, (out_w, out_h), bytes(out), "raw", rawmode)
