# cython: language_level=3, boundscheck=False, wraparound=False
"""Shrink-on-load for WebP: libwebp's WebPDecode with ``use_scaling``.

libwebp can rescale while it decodes (area-averaging, row by row), so a 4096x4096
WebP wanted at 2048 is never held at full size; libvips' webpload ``scale`` uses the
same call. Pillow's WebP plugin has no such option, so this module links the
system libwebp (Debian ``libwebp-dev`` at build time, ``libwebp7`` at run time).
Its pure-Python twin, falconproc/native/_webp_py.py, decodes at full size with Pillow
and takes the same area average (tests/native/test_webp_decode.py compares them).
"""
from libc.stdint cimport uint8_t

__all__ = ["features", "decode_scaled"]


cdef extern from "webp/decode.h":
    ctypedef enum WEBP_CSP_MODE:
        MODE_RGB
        MODE_RGBA
    ctypedef enum VP8StatusCode:
        VP8_STATUS_OK
    ctypedef struct WebPBitstreamFeatures:
        int width
        int height
        int has_alpha
        int has_animation
    ctypedef struct WebPRGBABuffer:
        uint8_t* rgba
        int stride
        size_t size
    ctypedef struct _DecBufferViews:
        WebPRGBABuffer RGBA
    ctypedef struct WebPDecBuffer:
        WEBP_CSP_MODE colorspace
        int width
        int height
        int is_external_memory
        _DecBufferViews u
    ctypedef struct WebPDecoderOptions:
        int use_scaling
        int scaled_width
        int scaled_height
        int use_threads
    ctypedef struct WebPDecoderConfig:
        WebPBitstreamFeatures input
        WebPDecBuffer output
        WebPDecoderOptions options
    int WebPInitDecoderConfig(WebPDecoderConfig* config) nogil
    VP8StatusCode WebPGetFeatures(const uint8_t* data, size_t size, WebPBitstreamFeatures* features) nogil
    VP8StatusCode WebPDecode(const uint8_t* data, size_t size, WebPDecoderConfig* config) nogil
    void WebPFreeDecBuffer(WebPDecBuffer* buffer) nogil


def features(const uint8_t[::1] data):
    """``(width, height, has_alpha, has_animation)`` from the bitstream header; ValueError if invalid."""
    cdef WebPBitstreamFeatures f
    cdef VP8StatusCode status
    if data.shape[0] == 0:  # &data[0] of an empty buffer is out of bounds (no bounds checks)
        raise ValueError("not a readable WebP (no data)")
    with nogil:
        status = WebPGetFeatures(&data[0], data.shape[0], &f)
    if status != VP8_STATUS_OK:
        raise ValueError(f"not a readable WebP (libwebp status {<int>status})")
    return f.width, f.height, bool(f.has_alpha), bool(f.has_animation)


def decode_scaled(const uint8_t[::1] data, int width, int height, bint alpha):
    """Decode a still WebP straight to ``width`` x ``height`` RGB (or straight-alpha
    RGBA with ``alpha``) pixels, rows packed; returns a bytearray. ValueError when
    libwebp refuses the data (corrupt, truncated, animated)."""
    if width < 1 or height < 1:
        raise ValueError("the scaled size must be positive")
    if data.shape[0] == 0:
        raise ValueError("the WebP cannot be decoded (no data)")
    cdef int bpp = 4 if alpha else 3
    out = bytearray(<Py_ssize_t>width * height * bpp)
    cdef uint8_t[::1] buf = out
    cdef WebPDecoderConfig config
    cdef VP8StatusCode status
    if not WebPInitDecoderConfig(&config):
        raise RuntimeError("libwebp ABI mismatch")
    config.options.use_scaling = 1
    config.options.scaled_width = width
    config.options.scaled_height = height
    config.options.use_threads = 1  # the in-loop filter on a second thread (lossy files)
    config.output.colorspace = MODE_RGBA if alpha else MODE_RGB
    config.output.is_external_memory = 1
    config.output.u.RGBA.rgba = &buf[0]
    config.output.u.RGBA.stride = width * bpp
    config.output.u.RGBA.size = buf.shape[0]
    with nogil:
        status = WebPDecode(&data[0], data.shape[0], &config)
        WebPFreeDecBuffer(&config.output)
    if status != VP8_STATUS_OK:
        raise ValueError(f"the WebP cannot be decoded (libwebp status {<int>status})")
    return out
