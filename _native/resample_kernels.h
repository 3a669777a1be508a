/* Separable Lanczos-3 resampling of 8-bit images: the arithmetic of Pillow's
 * Image.resize(LANCZOS) (double-precision weights normalised per output pixel, then
 * 22-bit fixed point, a horizontal pass over the rows the vertical pass needs, clipped
 * to 8 bits, then a vertical pass), so the compiled twin gives Pillow's bytes. What
 * differs is the loop order: the vertical pass runs across whole rows (one weight times
 * a row of bytes, added into a row of 32-bit sums) and the horizontal pass across the
 * four bytes of a pixel, both of which the compiler turns into SIMD; on x86-64 the
 * kernels are also built for AVX2 and picked at load time (target_clones).
 *
 * Pixels are 1 (L), 3 (RGB) or 4 (RGBA premultiplied) bytes wide; rows are packed.
 */
#ifndef FALCONPROC_RESAMPLE_KERNELS_H
#define FALCONPROC_RESAMPLE_KERNELS_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define FP_PRECISION_BITS 22 /* 32 - 8 - 2: a sum of 8-bit products with room for negative lobes */
#define FP_LANCZOS_SUPPORT 3.0

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define FP_MULTIVERSION __attribute__((target_clones("avx2", "default")))
#else
#define FP_MULTIVERSION
#endif

static inline double fp_sinc(double x) {
    if (x == 0.0) return 1.0;
    x = x * M_PI;
    return sin(x) / x;
}

static inline double fp_lanczos(double x) {
    if (-FP_LANCZOS_SUPPORT <= x && x < FP_LANCZOS_SUPPORT) return fp_sinc(x) * fp_sinc(x / 3.0);
    return 0.0;
}

/* Weights of every output pixel along one axis: out_size rows of ksize fixed-point
 * weights and (first source index, count) bounds. The box edges are single-precision
 * floats and the scale is computed in float, as Pillow's are. Returns ksize, or -1
 * when out of memory (the caller frees *bounds_out and *weights_out on success). */
static int fp_coefficients(int in_size, float in0, float in1, int out_size,
                           int **bounds_out, int32_t **weights_out) {
    double scale = (double)(in1 - in0) / out_size; /* the width in float, the ratio in double */
    double filterscale = scale < 1.0 ? 1.0 : scale;
    double support = FP_LANCZOS_SUPPORT * filterscale;
    int ksize = (int)ceil(support) * 2 + 1;
    double *k = (double *)malloc(sizeof(double) * (size_t)ksize);
    int *bounds = (int *)malloc(sizeof(int) * 2 * (size_t)out_size);
    int32_t *weights = (int32_t *)calloc((size_t)out_size * (size_t)ksize, sizeof(int32_t));
    if (!k || !bounds || !weights) {
        free(k); free(bounds); free(weights);
        return -1;
    }
    for (int xx = 0; xx < out_size; xx++) {
        double center = in0 + (xx + 0.5) * scale;
        double ss = 1.0 / filterscale;
        double ww = 0.0;
        int xmin = (int)(center - support + 0.5);
        if (xmin < 0) xmin = 0;
        int xmax = (int)(center + support + 0.5);
        if (xmax > in_size) xmax = in_size;
        xmax -= xmin;
        for (int x = 0; x < xmax; x++) {
            double w = fp_lanczos((x + xmin - center + 0.5) * ss);
            k[x] = w;
            ww += w;
        }
        for (int x = 0; x < xmax; x++) {
            double w = ww != 0.0 ? k[x] / ww : k[x];
            weights[(size_t)xx * ksize + x] =
                (int32_t)(w < 0 ? -0.5 + w * (1 << FP_PRECISION_BITS) : 0.5 + w * (1 << FP_PRECISION_BITS));
        }
        bounds[xx * 2] = xmin;
        bounds[xx * 2 + 1] = xmax;
    }
    free(k);
    *bounds_out = bounds;
    *weights_out = weights;
    return ksize;
}

static inline uint8_t fp_clip8(int32_t v) {
    v >>= FP_PRECISION_BITS;
    return (uint8_t)(v < 0 ? 0 : (v > 255 ? 255 : v));
}

/* rows x cols pixels of bpp (1, 3 or 4) bytes -> cols x rows, in cache-sized tiles. */
static void fp_transpose(const uint8_t *src, int rows, int cols, int bpp, uint8_t *dst) {
    enum { TILE = 32 };
    for (int r0 = 0; r0 < rows; r0 += TILE) {
        int r1 = r0 + TILE < rows ? r0 + TILE : rows;
        for (int c0 = 0; c0 < cols; c0 += TILE) {
            int c1 = c0 + TILE < cols ? c0 + TILE : cols;
            if (bpp == 4) {
                for (int r = r0; r < r1; r++)
                    for (int c = c0; c < c1; c++)
                        memcpy(dst + ((size_t)c * rows + r) * 4, src + ((size_t)r * cols + c) * 4, 4);
            } else if (bpp == 3) {
                for (int r = r0; r < r1; r++)
                    for (int c = c0; c < c1; c++)
                        memcpy(dst + ((size_t)c * rows + r) * 3, src + ((size_t)r * cols + c) * 3, 3);
            } else {
                for (int r = r0; r < r1; r++)
                    for (int c = c0; c < c1; c++) dst[(size_t)c * rows + r] = src[(size_t)r * cols + c];
            }
        }
    }
}

/* src (rows of row_bytes) -> dst (out_h rows): each output row a weighted sum of
 * source rows, taken BLOCK bytes at a time so the block's sums stay in vector
 * registers across the taps; acc (row_bytes int32) holds the last partial block. */
#define FP_BLOCK 64
FP_MULTIVERSION
static void fp_vertical(const uint8_t *src, size_t row_bytes, uint8_t *dst, int out_h, int ksize,
                        const int *bounds, const int32_t *weights, int32_t *acc) {
    const int32_t half = 1 << (FP_PRECISION_BITS - 1);
    for (int yy = 0; yy < out_h; yy++) {
        const int32_t *k = weights + (size_t)yy * ksize;
        const uint8_t *first = src + (size_t)bounds[yy * 2] * row_bytes;
        int n = bounds[yy * 2 + 1];
        uint8_t *out = dst + (size_t)yy * row_bytes;
        size_t i0 = 0;
        for (; i0 + FP_BLOCK <= row_bytes; i0 += FP_BLOCK) {
            int32_t s[FP_BLOCK];
            for (int j = 0; j < FP_BLOCK; j++) s[j] = half;
            for (int y = 0; y < n; y++) {
                const uint8_t *in = first + (size_t)y * row_bytes + i0;
                const int32_t w = k[y];
                for (int j = 0; j < FP_BLOCK; j++) s[j] += in[j] * w;
            }
            for (int j = 0; j < FP_BLOCK; j++) out[i0 + j] = fp_clip8(s[j]);
        }
        if (i0 < row_bytes) {
            size_t rest = row_bytes - i0;
            for (size_t j = 0; j < rest; j++) acc[j] = half;
            for (int y = 0; y < n; y++) {
                const uint8_t *in = first + (size_t)y * row_bytes + i0;
                const int32_t w = k[y];
                for (size_t j = 0; j < rest; j++) acc[j] += in[j] * w;
            }
            for (size_t j = 0; j < rest; j++) out[i0 + j] = fp_clip8(acc[j]);
        }
    }
}

/* src (width x height pixels of bpp bytes) -> dst (out_w x out_h), the box (x0, y0,
 * x1, y1) of the source mapped onto the whole output. 0, or -1 when out of memory. */
static int fp_resample(const uint8_t *src, int width, int height, int bpp, uint8_t *dst, int out_w, int out_h,
                       float x0, float y0, float x1, float y1) {
    /* a pass is skipped when it would map the axis onto itself (as Pillow skips it) */
    int need_h = out_w != width || x0 != 0 || x1 != out_w;
    int need_v = out_h != height || y0 != 0 || y1 != out_h;
    int *hb = NULL, *vb = NULL;
    int32_t *hw = NULL, *vw = NULL, *acc = NULL;
    uint8_t *temp = NULL;
    const uint8_t *rows = src;
    size_t row_bytes = (size_t)out_w * bpp;
    int status = -1;
    int kv = fp_coefficients(height, y0, y1, out_h, &vb, &vw);
    if (kv < 0) return -1;
    if (!need_h && !need_v) {
        memcpy(dst, src, row_bytes * out_h);
        status = 0;
        goto done;
    }
    if (need_h) {
        /* The horizontal pass over only the rows the vertical pass reads (all of them
         * when there is none), run as a vertical pass over the transposed rows: the
         * same sums, whole rows at a time. */
        int first = need_v ? vb[0] : 0;
        int last = need_v ? vb[(out_h - 1) * 2] + vb[(out_h - 1) * 2 + 1] : height;
        int n = last - first;
        size_t in_col_bytes = (size_t)n * bpp;
        int kh = fp_coefficients(width, x0, x1, out_w, &hb, &hw);
        if (kh < 0) goto done;
        if (need_v)
            for (int i = 0; i < out_h; i++) vb[i * 2] -= first; /* bounds in the pass's rows */
        /* scratch: the transposed input (width x n), its pass (out_w x n), the result */
        temp = (uint8_t *)malloc(in_col_bytes * ((size_t)width + out_w) + row_bytes * (size_t)n + 1);
        acc = (int32_t *)malloc(sizeof(int32_t) * (in_col_bytes > row_bytes ? in_col_bytes : row_bytes));
        if (!temp || !acc) goto done;
        uint8_t *columns = temp, *passed = temp + in_col_bytes * width;
        uint8_t *result = need_v ? passed + in_col_bytes * out_w : dst;
        fp_transpose(src + (size_t)first * width * bpp, n, width, bpp, columns);
        fp_vertical(columns, in_col_bytes, passed, out_w, kh, hb, hw, acc);
        fp_transpose(passed, out_w, n, bpp, result);
        if (!need_v) {
            status = 0;
            goto done;
        }
        rows = result;
    }
    if (!acc) acc = (int32_t *)malloc(sizeof(int32_t) * row_bytes);
    if (!acc) goto done;
    fp_vertical(rows, row_bytes, dst, out_h, kv, vb, vw, acc);
    status = 0;
done:
    free(hb); free(hw); free(vb); free(vw); free(acc); free(temp);
    return status;
}

#endif
