# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Compiled twin of falconproc/native/_ingest_py.py: one pass over an upload stream.

Hashing (OpenSSL EVP SHA-256), writing (POSIX write()) and the streaming header
walkers run with the GIL released. Behaviour must match the pure-Python reference
exactly; every rule here mirrors a function of the same name over there.
"""
from libc.string cimport memcpy, memcmp, strerror
from libc.errno cimport errno, EINTR, EIO
from posix.unistd cimport write
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE
from cpython.mem cimport PyMem_Malloc, PyMem_Free
from cpython.exc cimport PyErr_CheckSignals
from cpython.bytes cimport PyBytes_FromStringAndSize

from falconproc.errors import UploadTooLarge
from falconproc.native.types import ProbeResult

__all__ = ["IngestProbe"]


cdef extern from "fcntl.h" nogil:
    # Linux: start writeback of a range without waiting for it (Python.h defines _GNU_SOURCE).
    int sync_file_range(int fd, long long offset, long long nbytes, unsigned int flags)
    unsigned int SYNC_FILE_RANGE_WRITE

# Kick off writeback every this many bytes, so the final fsync finds little left to
# flush: disk writes overlap receiving the rest of the upload.
DEF WRITEBACK_STEP = 8 * 1024 * 1024


cdef extern from "openssl/evp.h" nogil:
    ctypedef struct EVP_MD_CTX:
        pass
    ctypedef struct EVP_MD:
        pass
    ctypedef struct ENGINE:
        pass
    EVP_MD_CTX* EVP_MD_CTX_new()
    void EVP_MD_CTX_free(EVP_MD_CTX* ctx)
    const EVP_MD* EVP_sha256()
    int EVP_DigestInit_ex(EVP_MD_CTX* ctx, const EVP_MD* type, ENGINE* impl)
    int EVP_DigestUpdate(EVP_MD_CTX* ctx, const void* d, size_t cnt)
    int EVP_DigestFinal_ex(EVP_MD_CTX* ctx, unsigned char* md, unsigned int* s)


cdef enum:
    HEAD_MAX = 65536
    TEXT_SAMPLE = 8192
    TEXT_UNITS = 4096  # TEXT_SAMPLE // 2
    PDF_WINDOW = 1024
    EBML_WINDOW = 64  # the EBML header (where DocType sits) is some 30-40 bytes in practice
    KIND_DECIDE = 12
    JPEG_MAX_FILL = 1024

    K_UNDECIDED = -1
    K_NONE = 0
    K_JPEG = 1
    K_PNG = 2
    K_GIF = 3
    K_WEBP = 4

    J_SOI = 1
    J_MARK = 2
    J_MARK2 = 3
    J_LEN = 4
    J_SOF = 5
    P_SIG = 11
    P_HDR = 12
    P_IHDR = 13
    P_ACTL = 14
    G_HDR = 21
    G_BLOCK = 22
    G_DESC = 23
    G_LZW = 24
    G_EXT = 25
    G_SUB = 26
    W_RIFF = 31
    W_CHDR = 32
    W_VP8 = 33
    W_VP8L = 34
    W_VP8X = 35

# MIME codes returned by _sniff (indexes into MIMES).
cdef enum:
    M_OCTET = 0
    M_JPEG
    M_PNG
    M_GIF
    M_WEBP
    M_BMP
    M_TIFF
    M_HEIC
    M_AVIF
    M_PDF
    M_ZIP
    M_ELF
    M_EXE
    M_MACHO
    M_SHELL
    M_SVG
    M_XML
    M_HTML
    M_JSON
    M_CSV
    M_MARKDOWN
    M_TEXT
    M_MP4
    M_QUICKTIME
    M_M4V
    M_3GPP
    M_3GPP2
    M_WEBM
    M_MATROSKA
    M_AVI

MIMES = (
    "application/octet-stream",
    "image/jpeg",
    "image/png",
    "image/gif",
    "image/webp",
    "image/bmp",
    "image/tiff",
    "image/heic",
    "image/avif",
    "application/pdf",
    "application/zip",
    "application/x-executable",
    "application/x-msdownload",
    "application/x-mach-binary",
    "text/x-shellscript",
    "image/svg+xml",
    "application/xml",
    "text/html",
    "application/json",
    "text/csv",
    "text/markdown",
    "text/plain",
    "video/mp4",
    "video/quicktime",
    "video/x-m4v",
    "video/3gpp",
    "video/3gpp2",
    "video/webm",
    "video/x-matroska",
    "video/x-msvideo",
)


# --------------------------------------------------------------------------- byte helpers

cdef inline unsigned int _be16(const unsigned char* b) noexcept nogil:
    return (<unsigned int>b[0] << 8) | b[1]

cdef inline unsigned long long _be32(const unsigned char* b) noexcept nogil:
    return ((<unsigned long long>b[0] << 24) | (<unsigned long long>b[1] << 16)
            | (<unsigned long long>b[2] << 8) | b[3])

cdef inline unsigned int _le16(const unsigned char* b) noexcept nogil:
    return b[0] | (<unsigned int>b[1] << 8)

cdef inline unsigned long long _le24(const unsigned char* b) noexcept nogil:
    return b[0] | (<unsigned long long>b[1] << 8) | (<unsigned long long>b[2] << 16)

cdef inline unsigned long long _le32(const unsigned char* b) noexcept nogil:
    return (b[0] | (<unsigned long long>b[1] << 8) | (<unsigned long long>b[2] << 16)
            | (<unsigned long long>b[3] << 24))

cdef inline bint _is_sof(int m) noexcept nogil:
    return 0xC0 <= m <= 0xCF and m != 0xC4 and m != 0xC8 and m != 0xCC

cdef inline bint _eq(const unsigned char* p, Py_ssize_t n, const char* lit, Py_ssize_t k) noexcept nogil:
    """p[0:k] == lit (False when fewer than k bytes are available)."""
    return n >= k and memcmp(p, lit, <size_t>k) == 0

cdef inline bint _ws(unsigned char c) noexcept nogil:
    return c == 0x20 or c == 0x09 or c == 0x0A or c == 0x0D or c == 0x0C

cdef inline unsigned char _lower(unsigned char c) noexcept nogil:
    if 0x41 <= c <= 0x5A:
        return c + 32
    return c

cdef inline bint _istarts(const unsigned char* p, Py_ssize_t n, const char* lit, Py_ssize_t k) noexcept nogil:
    """ASCII case-insensitive p[0:k] == lit (lit is lower case)."""
    cdef Py_ssize_t j
    if n < k:
        return False
    for j in range(k):
        if _lower(p[j]) != <unsigned char>lit[j]:
            return False
    return True

cdef Py_ssize_t _find(const unsigned char* p, Py_ssize_t n, const char* lit, Py_ssize_t k) noexcept nogil:
    """First offset of lit in p[0:n], or -1."""
    cdef Py_ssize_t i
    i = 0
    while i + k <= n:
        if p[i] == <unsigned char>lit[0] and memcmp(p + i, lit, <size_t>k) == 0:
            return i
        i += 1
    return -1


# --------------------------------------------------------------------------- sniffing

cdef inline bint _brand_avif(const unsigned char* b) noexcept nogil:
    return memcmp(b, b"avif", 4) == 0 or memcmp(b, b"avis", 4) == 0

cdef inline bint _brand_heic(const unsigned char* b) noexcept nogil:
    return (memcmp(b, b"heic", 4) == 0 or memcmp(b, b"heix", 4) == 0 or memcmp(b, b"hevc", 4) == 0
            or memcmp(b, b"heim", 4) == 0 or memcmp(b, b"heis", 4) == 0)

cdef inline bint _brand_mp4(const unsigned char* b) noexcept nogil:
    """Major brands of ISO BMFF video (checked after the image brands)."""
    return (memcmp(b, b"isom", 4) == 0 or memcmp(b, b"iso2", 4) == 0 or memcmp(b, b"iso4", 4) == 0
            or memcmp(b, b"iso5", 4) == 0 or memcmp(b, b"iso6", 4) == 0 or memcmp(b, b"mp41", 4) == 0
            or memcmp(b, b"mp42", 4) == 0 or memcmp(b, b"avc1", 4) == 0 or memcmp(b, b"dash", 4) == 0
            or memcmp(b, b"mmp4", 4) == 0 or memcmp(b, b"MSNV", 4) == 0 or memcmp(b, b"f4v ", 4) == 0)

cdef int _isobmff_type(const unsigned char* h, Py_ssize_t n) noexcept nogil:
    cdef unsigned long long box
    cdef Py_ssize_t end, k
    cdef bint avif = False, heic = False
    if _brand_avif(h + 8):
        return M_AVIF
    if _brand_heic(h + 8):
        return M_HEIC
    box = _be32(h)
    if box == 0:
        end = n
    elif box < 16:
        end = 16
    else:
        end = <Py_ssize_t>box if box < <unsigned long long>n else n
    k = 16
    while k + 4 <= end:
        if _brand_avif(h + k):
            avif = True
        elif _brand_heic(h + k):
            heic = True
        k += 4
    if avif:
        return M_AVIF
    if heic:
        return M_HEIC
    if memcmp(h + 8, b"qt  ", 4) == 0:
        return M_QUICKTIME
    if memcmp(h + 8, b"M4V ", 4) == 0 or memcmp(h + 8, b"M4VH", 4) == 0 or memcmp(h + 8, b"M4VP", 4) == 0:
        return M_M4V
    if memcmp(h + 8, b"3gp", 3) == 0:
        return M_3GPP
    if memcmp(h + 8, b"3g2", 3) == 0:
        return M_3GPP2
    if _brand_mp4(h + 8):
        return M_MP4
    return M_OCTET

cdef int _ebml_type(const unsigned char* h, Py_ssize_t n) noexcept nogil:
    """WebM or Matroska, from the EBML header's DocType element (ID 0x4282, then its
    size as an EBML variable-length integer, then the ASCII doc type)."""
    cdef Py_ssize_t k, j, start, length
    cdef unsigned long long value
    cdef unsigned char first
    if n > EBML_WINDOW:
        n = EBML_WINDOW
    if n < 4:
        return M_OCTET
    k = _find(h + 4, n - 4, b"\x42\x82", 2)
    if k < 0:
        return M_OCTET
    k += 4
    if k + 2 >= n:
        return M_OCTET
    first = h[k + 2]
    if first == 0:
        return M_OCTET
    length = 1
    while not (first & (0x80 >> (length - 1))):
        length += 1
    start = k + 2 + length
    if start > n:
        return M_OCTET
    value = first & (0xFF >> length)
    for j in range(k + 3, start):
        value = (value << 8) | h[j]
    if value == 4 and start + 4 <= n and memcmp(h + start, b"webm", 4) == 0:
        return M_WEBM
    if value == 8 and start + 8 <= n and memcmp(h + start, b"matroska", 8) == 0:
        return M_MATROSKA
    return M_OCTET

cdef inline bint _is_control(unsigned char c) noexcept nogil:
    return (c <= 0x08 or c == 0x0B or (0x0E <= c <= 0x1A) or (0x1C <= c <= 0x1F) or c == 0x7F)

cdef bint _no_controls(const unsigned char* b, Py_ssize_t n) noexcept nogil:
    """Text is what has no control bytes: UTF-8 or a legacy single-byte code page
    (cp1252, latin-1), which the text extractor decodes. Binary data has controls."""
    cdef Py_ssize_t i
    for i in range(n):
        if _is_control(b[i]):
            return False
    return True

cdef bint _is_json_start(const unsigned char* s, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t j = 1, k, wl
    cdef unsigned char c
    cdef const char* word
    while j < n and _ws(s[j]):
        j += 1
    if j >= n:
        return False
    c = s[j]
    if s[0] == 0x7B:  # {
        return c == 0x22 or c == 0x7D
    if c == 0x22 or c == 0x7B or c == 0x5B or c == 0x5D or c == 0x2D or (0x30 <= c <= 0x39):
        return True
    if c == 0x74:
        word = b"true"
        wl = 4
    elif c == 0x66:
        word = b"false"
        wl = 5
    elif c == 0x6E:
        word = b"null"
        wl = 4
    else:
        return False
    k = 0
    while k < wl and j + k < n:
        if s[j + k] != <unsigned char>word[k]:
            return False
        k += 1
    return True

cdef bint _is_csv(const unsigned char* s, Py_ssize_t n, bint complete) noexcept nogil:
    cdef Py_ssize_t start = 0, end, stop, i
    cdef int nlines = 0
    cdef long c0[3]
    cdef long c[3]
    cdef bint same[3]
    cdef bint last
    while start <= n and nlines < 10:
        end = start
        while end < n and s[end] != 0x0A:
            end += 1
        last = end >= n  # no newline after this segment
        if last and not complete:
            break
        stop = end
        if stop > start and s[stop - 1] == 0x0D:
            stop -= 1
        if stop > start:
            c[0] = c[1] = c[2] = 0
            for i in range(start, stop):
                if s[i] == 0x2C:
                    c[0] += 1
                elif s[i] == 0x3B:
                    c[1] += 1
                elif s[i] == 0x09:
                    c[2] += 1
            if nlines == 0:
                c0[0] = c[0]
                c0[1] = c[1]
                c0[2] = c[2]
                same[0] = same[1] = same[2] = True
            else:
                for i in range(3):
                    if c[i] != c0[i]:
                        same[i] = False
            nlines += 1
        if last:
            break
        start = end + 1
    if nlines < 2:
        return False
    for i in range(3):
        if same[i] and c0[i] >= 1:
            return True
    return False

cdef bint _is_markdown(const unsigned char* s, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t start = 0, end, k, at, i
    while start <= n:
        end = start
        while end < n and s[end] != 0x0A:
            end += 1
        if _eq(s + start, end - start, b"```", 3):
            return True
        k = 0
        while start + k < end and k < 7 and s[start + k] == 0x23:
            k += 1
        if 1 <= k <= 6 and start + k < end and s[start + k] == 0x20:
            return True
        start = end + 1
    at = _find(s, n, b"](", 2)
    if at > 0:
        for i in range(at):
            if s[i] == 0x5B:
                return True
    return False

cdef int _classify_text(const unsigned char* t, Py_ssize_t n, bint complete) noexcept nogil:
    cdef Py_ssize_t i = 0, sn
    cdef const unsigned char* s
    while i < n and _ws(t[i]):
        i += 1
    s = t + i
    sn = n - i
    if _eq(s, sn, b"<?xml", 5):
        return M_SVG if _find(t, n, b"<svg", 4) >= 0 else M_XML
    if _istarts(s, sn, b"<svg", 4):
        return M_SVG
    if (_istarts(s, sn, b"<!doctype html", 14) or _istarts(s, sn, b"<html", 5)
            or _istarts(s, sn, b"<head", 5) or _istarts(s, sn, b"<body", 5)
            or _istarts(s, sn, b"<script", 7) or _istarts(s, sn, b"<iframe", 7)):
        return M_HTML
    if sn > 0 and (s[0] == 0x7B or s[0] == 0x5B) and _is_json_start(s, sn):
        return M_JSON
    if _is_csv(s, sn, complete):
        return M_CSV
    if _is_markdown(s, sn):
        return M_MARKDOWN
    return M_TEXT

cdef int _sniff(const unsigned char* h, Py_ssize_t n, unsigned long long size) noexcept nogil:
    cdef unsigned long long dib
    cdef Py_ssize_t sn, k, units
    cdef bint complete
    cdef unsigned int u
    cdef unsigned char tmp[TEXT_UNITS]
    if _eq(h, n, b"\xff\xd8\xff", 3):
        return M_JPEG
    if _eq(h, n, b"\x89PNG\r\n\x1a\n", 8):
        return M_PNG
    if _eq(h, n, b"GIF87a", 6) or _eq(h, n, b"GIF89a", 6):
        return M_GIF
    if n >= 12 and memcmp(h, b"RIFF", 4) == 0 and memcmp(h + 8, b"WEBP", 4) == 0:
        return M_WEBP
    if n >= 12 and memcmp(h, b"RIFF", 4) == 0 and memcmp(h + 8, b"AVI ", 4) == 0:
        return M_AVI
    if _eq(h, n, b"\x1a\x45\xdf\xa3", 4):
        return _ebml_type(h, n)
    if n >= 18 and h[0] == 0x42 and h[1] == 0x4D:
        dib = _le32(h + 14)
        if dib == 12 or dib == 40 or dib == 52 or dib == 56 or dib == 108 or dib == 124:
            return M_BMP
    if _eq(h, n, b"II*\x00", 4) or _eq(h, n, b"MM\x00*", 4):
        return M_TIFF
    if n >= 12 and memcmp(h + 4, b"ftyp", 4) == 0:
        return _isobmff_type(h, n)
    if _eq(h, n, b"PK\x03\x04", 4) or _eq(h, n, b"PK\x05\x06", 4):
        return M_ZIP
    if _eq(h, n, b"\x7fELF", 4):
        return M_ELF
    if (_eq(h, n, b"\xfe\xed\xfa\xce", 4) or _eq(h, n, b"\xfe\xed\xfa\xcf", 4)
            or _eq(h, n, b"\xce\xfa\xed\xfe", 4) or _eq(h, n, b"\xcf\xfa\xed\xfe", 4)):
        return M_MACHO
    if _eq(h, n, b"MZ", 2):
        return M_EXE
    if _eq(h, n, b"#!", 2):
        return M_SHELL
    if _find(h, n if n < PDF_WINDOW else PDF_WINDOW, b"%PDF-", 5) >= 0:
        return M_PDF
    if n == 0:
        return M_OCTET
    sn = n if n < TEXT_SAMPLE else TEXT_SAMPLE
    complete = size <= TEXT_SAMPLE
    if _eq(h, sn, b"\xef\xbb\xbf", 3):
        return _classify_text(h + 3, sn - 3, complete)
    if _eq(h, sn, b"\xff\xfe", 2) or _eq(h, sn, b"\xfe\xff", 2):
        units = (sn - 2) // 2
        for k in range(units):
            if h[0] == 0xFF:
                u = _le16(h + 2 + 2 * k)
            else:
                u = _be16(h + 2 + 2 * k)
            tmp[k] = <unsigned char>u if u < 0x80 else 0x80
        return _classify_text(tmp, units, complete)
    if not _no_controls(h, sn):
        return M_OCTET
    return _classify_text(h, sn, complete)


# --------------------------------------------------------------------------- BMP / TIFF

cdef bint _bmp_dims(const unsigned char* h, Py_ssize_t n, long long* w, long long* hh) noexcept nogil:
    cdef long long v
    if n < 22:
        return False
    if _le32(h + 14) == 12:
        w[0] = _le16(h + 18)
        hh[0] = _le16(h + 20)
        return True
    if n < 26:
        return False
    w[0] = <long long>_le32(h + 18)
    if w[0] >= 0x80000000LL:
        w[0] -= 0x100000000LL
    v = <long long>_le32(h + 22)
    if v >= 0x80000000LL:
        v -= 0x100000000LL
    hh[0] = -v if v < 0 else v
    return True

cdef inline unsigned long long _u16(const unsigned char* b, bint big) noexcept nogil:
    return _be16(b) if big else _le16(b)

cdef inline unsigned long long _u32(const unsigned char* b, bint big) noexcept nogil:
    return _be32(b) if big else _le32(b)

cdef bint _tiff_dims(const unsigned char* h, Py_ssize_t n, long long* w, long long* hh) noexcept nogil:
    cdef bint big
    cdef unsigned long long off, count, k, e, tag, typ
    cdef long long val, ww = -1, hv = -1
    if n < 8:
        return False
    big = h[0] == 0x4D
    off = _u32(h + 4, big)
    if off + 2 > <unsigned long long>n:
        return False
    count = _u16(h + off, big)
    e = off + 2
    for k in range(count):
        if e + 12 > <unsigned long long>n:
            break
        tag = _u16(h + e, big)
        typ = _u16(h + e + 2, big)
        if typ == 3:
            val = <long long>_u16(h + e + 8, big)
        elif typ == 4:
            val = <long long>_u32(h + e + 8, big)
        else:
            val = -1
        if val >= 0:
            if tag == 256 and ww < 0:
                ww = val
            elif tag == 257 and hv < 0:
                hv = val
        e += 12
    if ww < 0 or hv < 0:
        return False
    w[0] = ww
    hh[0] = hv
    return True


# --------------------------------------------------------------------------- streaming walkers

cdef struct Parser:
    int kind
    int st
    int need
    int acc_len
    unsigned char acc[16]
    unsigned long long skip
    bint done
    bint have
    long long w
    long long h
    long long count
    int fill
    int marker
    unsigned long long clen
    long long nchunks
    long long actl
    unsigned long long riff_end
    bint animated


cdef int _stream_kind(const unsigned char* h, Py_ssize_t n) noexcept nogil:
    if _eq(h, n, b"\xff\xd8\xff", 3):
        return K_JPEG
    if _eq(h, n, b"\x89PNG\r\n\x1a\n", 8):
        return K_PNG
    if _eq(h, n, b"GIF87a", 6) or _eq(h, n, b"GIF89a", 6):
        return K_GIF
    if n >= 12 and memcmp(h, b"RIFF", 4) == 0 and memcmp(h + 8, b"WEBP", 4) == 0:
        return K_WEBP
    return K_NONE


cdef void _start(Parser* p, int kind) noexcept nogil:
    p.kind = kind
    if kind == K_JPEG:
        p.st = J_SOI
        p.need = 2
    elif kind == K_PNG:
        p.st = P_SIG
        p.need = 8
    elif kind == K_GIF:
        p.st = G_HDR
        p.need = 13
    elif kind == K_WEBP:
        p.st = W_RIFF
        p.need = 12


cdef void _step(Parser* p, unsigned long long pos) noexcept nogil:
    """Consume p.acc (exactly p.need bytes, ending at stream offset pos)."""
    cdef const unsigned char* a = p.acc
    cdef int st = p.st
    cdef unsigned int b
    cdef unsigned long long ln, size, padded, bits
    cdef bint first
    # ---- JPEG
    if st == J_MARK2:
        b = a[0]
        if b == 0xFF:
            p.fill += 1
            if p.fill > JPEG_MAX_FILL:
                p.done = True
            return
        p.fill = 0
        if b == 0x00 or b == 0xD9 or b == 0xDA:
            p.done = True
        elif b == 0x01 or (0xD0 <= b <= 0xD8):
            p.st = J_MARK
            p.need = 1
        else:
            p.marker = b
            p.st = J_LEN
            p.need = 2
    elif st == J_MARK:
        if a[0] != 0xFF:
            p.done = True
        else:
            p.st = J_MARK2
            p.need = 1
    elif st == J_LEN:
        ln = _be16(a)
        if ln < 2:
            p.done = True
        elif _is_sof(p.marker):
            if ln < 7:
                p.done = True
            else:
                p.st = J_SOF
                p.need = 5
        else:
            p.skip = ln - 2
            p.st = J_MARK
            p.need = 1
    elif st == J_SOI:
        if a[0] != 0xFF or a[1] != 0xD8:
            p.done = True
        else:
            p.st = J_MARK
            p.need = 1
    elif st == J_SOF:
        p.h = _be16(a + 1)
        p.w = _be16(a + 3)
        p.have = True
        p.done = True
    # ---- PNG
    elif st == P_HDR:
        ln = _be32(a)
        p.clen = ln
        first = p.nchunks == 0
        p.nchunks += 1
        if first:
            if memcmp(a + 4, b"IHDR", 4) != 0 or ln < 8:
                p.done = True
            else:
                p.st = P_IHDR
                p.need = 8
        elif memcmp(a + 4, b"IDAT", 4) == 0 or memcmp(a + 4, b"IEND", 4) == 0:
            p.done = True
        elif memcmp(a + 4, b"acTL", 4) == 0 and p.actl < 0 and ln >= 8:
            p.st = P_ACTL
            p.need = 8
        else:
            p.skip = ln + 4
    elif st == P_IHDR:
        p.w = <long long>_be32(a)
        p.h = <long long>_be32(a + 4)
        p.have = True
        p.skip = p.clen - 8 + 4
        p.st = P_HDR
        p.need = 8
    elif st == P_ACTL:
        p.actl = <long long>_be32(a)
        p.skip = p.clen - 8 + 4
        p.st = P_HDR
        p.need = 8
    elif st == P_SIG:
        p.st = P_HDR
        p.need = 8
    # ---- GIF
    elif st == G_SUB:
        ln = a[0]
        if ln == 0:
            p.st = G_BLOCK
        else:
            p.skip = ln
    elif st == G_BLOCK:
        b = a[0]
        if b == 0x2C:
            p.count += 1
            p.st = G_DESC
            p.need = 9
        elif b == 0x21:
            p.st = G_EXT
        else:
            p.done = True
    elif st == G_DESC:
        if p.count == 1:
            # Pillow grows the canvas to a first frame larger than the logical screen.
            p.w = max(p.w, <long long>_le16(a) + <long long>_le16(a + 4))
            p.h = max(p.h, <long long>_le16(a + 2) + <long long>_le16(a + 6))
        b = a[8]
        if b & 0x80:
            p.skip = 3ULL << ((b & 7) + 1)
        p.st = G_LZW
        p.need = 1
    elif st == G_LZW or st == G_EXT:
        p.st = G_SUB
    elif st == G_HDR:
        p.w = _le16(a + 6)
        p.h = _le16(a + 8)
        p.have = True
        b = a[10]
        if b & 0x80:
            p.skip = 3ULL << ((b & 7) + 1)
        p.st = G_BLOCK
        p.need = 1
    # ---- WebP
    elif st == W_CHDR:
        if pos > p.riff_end:
            p.done = True
            return
        size = _le32(a + 4)
        padded = size + (size & 1)
        first = p.nchunks == 0
        p.nchunks += 1
        p.clen = padded
        if first:
            if memcmp(a, b"VP8 ", 4) == 0 and size >= 10:
                p.st = W_VP8
                p.need = 10
            elif memcmp(a, b"VP8L", 4) == 0 and size >= 5:
                p.st = W_VP8L
                p.need = 5
            elif memcmp(a, b"VP8X", 4) == 0 and size >= 10:
                p.st = W_VP8X
                p.need = 10
            else:
                p.done = True
        else:
            if memcmp(a, b"ANMF", 4) == 0:
                p.count += 1
            p.skip = padded
    elif st == W_VP8:
        if a[3] == 0x9D and a[4] == 0x01 and a[5] == 0x2A:
            p.w = _le16(a + 6) & 0x3FFF
            p.h = _le16(a + 8) & 0x3FFF
            p.have = True
        p.done = True
    elif st == W_VP8L:
        if a[0] == 0x2F:
            bits = _le32(a + 1)
            p.w = <long long>(bits & 0x3FFF) + 1
            p.h = <long long>((bits >> 14) & 0x3FFF) + 1
            p.have = True
        p.done = True
    elif st == W_VP8X:
        p.w = <long long>_le24(a + 4) + 1
        p.h = <long long>_le24(a + 7) + 1
        p.have = True
        if a[0] & 0x02:
            p.animated = True
            p.skip = p.clen - 10
            p.st = W_CHDR
            p.need = 8
        else:
            p.done = True
    elif st == W_RIFF:
        p.riff_end = 8 + _le32(a + 4)
        p.st = W_CHDR
        p.need = 8
    else:
        p.done = True


cdef void _parse(Parser* p, const unsigned char* d, Py_ssize_t n, unsigned long long base) noexcept nogil:
    """Run the walker over d[0:n], which starts at stream offset base."""
    cdef Py_ssize_t i = 0, k
    while i < n:
        if p.skip:
            k = n - i
            if <unsigned long long>k > p.skip:
                k = <Py_ssize_t>p.skip
            p.skip -= <unsigned long long>k
            i += k
            continue
        k = p.need - p.acc_len
        if k > n - i:
            k = n - i
        memcpy(p.acc + p.acc_len, d + i, <size_t>k)
        p.acc_len += <int>k
        i += k
        if p.acc_len < p.need:
            return
        _step(p, base + <unsigned long long>i)
        p.acc_len = 0
        if p.done:
            return


cdef int _write_all(int fd, const unsigned char* buf, Py_ssize_t n) except -1 nogil:
    """write() everything, looping on partial writes and retrying EINTR."""
    cdef ssize_t w
    cdef int e
    while n > 0:
        w = write(fd, buf, <size_t>n)
        if w < 0:
            e = errno
            if e == EINTR:
                with gil:
                    PyErr_CheckSignals()
                continue
            with gil:
                raise OSError(e, strerror(e).decode("utf-8", "replace"))
        if w == 0:  # never for files and pipes; do not spin if it happens
            with gil:
                raise OSError(EIO, strerror(EIO).decode("utf-8", "replace"))
        buf += w
        n -= w
    return 0


# --------------------------------------------------------------------------- the probe

cdef class IngestProbe:
    """Feed an upload chunk by chunk; ``finish()`` returns a ProbeResult."""

    cdef EVP_MD_CTX* _ctx
    cdef unsigned char* _head
    cdef Py_ssize_t _head_len
    cdef unsigned long long _size
    cdef unsigned long long _max_bytes
    cdef object _max_obj
    cdef int _fd
    cdef unsigned long long _writeback_from
    cdef bint _finished
    cdef bint _busy
    cdef Parser _p

    def __cinit__(self, max_bytes, fd=-1):
        self._ctx = NULL
        self._head = NULL
        self._head_len = 0
        self._size = 0
        self._finished = False
        self._busy = False
        self._p.kind = K_UNDECIDED
        self._p.st = 0
        self._p.need = 0
        self._p.acc_len = 0
        self._p.skip = 0
        self._p.done = False
        self._p.have = False
        self._p.w = 0
        self._p.h = 0
        self._p.count = 0
        self._p.fill = 0
        self._p.marker = 0
        self._p.clen = 0
        self._p.nchunks = 0
        self._p.actl = -1
        self._p.riff_end = 0
        self._p.animated = False
        self._head = <unsigned char*>PyMem_Malloc(HEAD_MAX)
        if self._head == NULL:
            raise MemoryError()
        self._ctx = EVP_MD_CTX_new()
        if self._ctx == NULL:
            raise MemoryError("EVP_MD_CTX_new failed")
        if EVP_DigestInit_ex(self._ctx, EVP_sha256(), NULL) != 1:
            raise RuntimeError("EVP_DigestInit_ex(SHA-256) failed")

    def __init__(self, max_bytes, fd=-1):
        max_bytes = int(max_bytes)
        fd = int(fd)
        if max_bytes < 0:
            raise ValueError("max_bytes must be >= 0")
        self._max_obj = max_bytes
        self._max_bytes = max_bytes if max_bytes < 0xFFFFFFFFFFFFFFFF else 0xFFFFFFFFFFFFFFFF
        self._fd = fd if fd >= 0 else -1

    def __dealloc__(self):
        if self._ctx != NULL:
            EVP_MD_CTX_free(self._ctx)
            self._ctx = NULL
        if self._head != NULL:
            PyMem_Free(self._head)
            self._head = NULL

    @property
    def size(self):
        """Bytes accepted so far."""
        return self._size

    def feed(self, chunk):
        cdef Py_buffer view
        cdef const unsigned char* d
        cdef Py_ssize_t n, take, hl
        cdef unsigned long long prev, size
        cdef int fd = self._fd
        cdef int ok = 1
        cdef Parser* p = &self._p
        if self._finished:
            raise RuntimeError("IngestProbe.feed() after finish()")
        if self._ctx == NULL:
            raise RuntimeError("IngestProbe is not initialised")
        PyObject_GetBuffer(chunk, &view, PyBUF_SIMPLE)
        try:
            d = <const unsigned char*>view.buf
            n = view.len
            prev = self._size
            if <unsigned long long>n > self._max_bytes - prev:
                raise UploadTooLarge(self._max_obj)
            if n == 0:
                return
            if self._busy:
                raise RuntimeError("IngestProbe.feed() called concurrently")
            self._busy = True
            try:
                with nogil:
                    if fd >= 0:
                        _write_all(fd, d, n)
                        if prev + <unsigned long long>n - self._writeback_from >= WRITEBACK_STEP:
                            # Advisory: errors (a pipe, an odd filesystem) change nothing.
                            sync_file_range(fd, <long long>self._writeback_from,
                                            <long long>(prev + <unsigned long long>n - self._writeback_from),
                                            SYNC_FILE_RANGE_WRITE)
                            self._writeback_from = prev + <unsigned long long>n
                    ok = EVP_DigestUpdate(self._ctx, d, <size_t>n)
                    if ok == 1:
                        hl = self._head_len
                        if hl < HEAD_MAX:
                            take = HEAD_MAX - hl
                            if take > n:
                                take = n
                            memcpy(self._head + hl, d, <size_t>take)
                            self._head_len = hl + take
                        size = prev + <unsigned long long>n
                        self._size = size
                        if p.kind == K_UNDECIDED:
                            if size >= KIND_DECIDE:
                                _start(p, _stream_kind(self._head, self._head_len))
                                if p.kind != K_NONE:
                                    hl = self._head_len
                                    _parse(p, self._head, hl, 0)
                                    if <unsigned long long>hl < size and not p.done:
                                        _parse(p, d + (hl - <Py_ssize_t>prev), n - (hl - <Py_ssize_t>prev),
                                               <unsigned long long>hl)
                        elif p.kind != K_NONE and not p.done:
                            _parse(p, d, n, prev)
            finally:
                self._busy = False
            if ok != 1:
                raise RuntimeError("EVP_DigestUpdate failed")
        finally:
            PyBuffer_Release(&view)

    def finish(self):
        cdef unsigned char md[64]
        cdef unsigned int mdlen = 0
        cdef int mime
        cdef long long w = 0, h = 0
        cdef bint have = False
        cdef Parser* p = &self._p
        if self._finished:
            raise RuntimeError("IngestProbe.finish() called twice")
        if self._ctx == NULL:
            raise RuntimeError("IngestProbe is not initialised")
        if self._busy:
            raise RuntimeError("IngestProbe.finish() during feed()")
        self._finished = True
        if EVP_DigestFinal_ex(self._ctx, md, &mdlen) != 1:
            raise RuntimeError("EVP_DigestFinal_ex failed")
        digest = PyBytes_FromStringAndSize(<char*>md, mdlen).hex()
        mime = _sniff(self._head, self._head_len, self._size)
        frames = None
        if mime == M_BMP:
            have = _bmp_dims(self._head, self._head_len, &w, &h)
        elif mime == M_TIFF:
            have = _tiff_dims(self._head, self._head_len, &w, &h)
        elif p.kind > K_NONE and p.have:
            have = True
            w = p.w
            h = p.h
            if p.kind == K_PNG:
                frames = p.actl if p.actl >= 0 else 1
            elif p.kind == K_GIF:
                frames = p.count
            elif p.kind == K_WEBP:
                frames = p.count if p.animated else 1
        if have:
            return ProbeResult(digest, self._size, MIMES[mime], w, h, frames)
        return ProbeResult(digest, self._size, MIMES[mime], None, None, frames)
