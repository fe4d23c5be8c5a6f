/*
 * resize.c — a bit-exact port of Pillow's bicubic resampler
 * (libImaging/Resample.c, Pillow 9.4, 8 bits per channel):
 *   - separable, horizontal pass first, over only the source rows the
 *     vertical pass needs; a pass is skipped when its size is unchanged;
 *   - Keys cubic, a = -0.5, support 2, scaled by in/out when shrinking;
 *   - sample centres (i + 0.5) * scale; window [int(c - s + .5), int(c + s + .5));
 *   - weights normalised in double, then fixed point with 22 fractional bits
 *     rounded half away from zero; each pass rounds and clamps to uint8.
 */
#include "internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define PRECISION_BITS (32 - 8 - 2)

static double bicubic(double x)
{
    const double a = -0.5;
    if (x < 0.0)
        x = -x;
    if (x < 1.0)
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0)
        return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

static inline uint8_t clip8(int v)
{
    if (v >= (1 << PRECISION_BITS << 8))
        return 255;
    if (v <= 0)
        return 0;
    return (uint8_t)(v >> PRECISION_BITS);
}

/* Fixed-point coefficients for in -> out: bounds[2*o] = first tap, bounds[2*o+1] = count. */
static int coeffs(int in, int out, int **bounds_p, int32_t **kk_p, int *ksize_p)
{
    double scale = (double)in / out, filterscale = scale < 1.0 ? 1.0 : scale;
    double support = 2.0 * filterscale;
    int ksize = (int)ceil(support) * 2 + 1;
    size_t n;
    if (!fn_mul_size((size_t)out, (size_t)ksize, &n))
        return -1;
    double *kd = malloc(n * sizeof(double) + 1);
    int32_t *kk = malloc(n * sizeof(int32_t) + 1);
    int *bounds = malloc((size_t)out * 2 * sizeof(int) + 1);
    if (!kd || !kk || !bounds) {
        free(kd), free(kk), free(bounds);
        return -1;
    }
    for (int xx = 0; xx < out; xx++) {
        double center = (xx + 0.5) * scale, ww = 0.0, ss = 1.0 / filterscale;
        int xmin = (int)(center - support + 0.5), xmax;
        if (xmin < 0)
            xmin = 0;
        xmax = (int)(center + support + 0.5);
        if (xmax > in)
            xmax = in;
        xmax -= xmin;
        double *k = kd + (size_t)xx * ksize;
        int x;
        for (x = 0; x < xmax; x++) {
            double w = bicubic((x + xmin - center + 0.5) * ss);
            k[x] = w;
            ww += w;
        }
        for (x = 0; x < xmax; x++)
            if (ww != 0.0)
                k[x] /= ww;
        for (; x < ksize; x++)
            k[x] = 0;
        bounds[xx * 2] = xmin;
        bounds[xx * 2 + 1] = xmax;
    }
    for (size_t i = 0; i < n; i++)
        kk[i] = kd[i] < 0 ? (int32_t)(-0.5 + kd[i] * (1 << PRECISION_BITS))
                          : (int32_t)(0.5 + kd[i] * (1 << PRECISION_BITS));
    free(kd);
    *bounds_p = bounds;
    *kk_p = kk;
    *ksize_p = ksize;
    return 0;
}

int fn_resize_pil_bicubic(const uint8_t *src, int sw, int sh, uint8_t *dst, int dw, int dh, fn_error *err)
{
    if (!src || !dst || sw < 1 || sh < 1 || dw < 1 || dh < 1)
        return fn_fail(err, FN_EARG, "resize: invalid sizes %dx%d -> %dx%d", sw, sh, dw, dh);
    if (sw > FN_IMAGE_MAX_SIDE || sh > FN_IMAGE_MAX_SIDE || dw > FN_IMAGE_MAX_SIDE || dh > FN_IMAGE_MAX_SIDE)
        return fn_fail(err, FN_ELIMIT, "resize: %dx%d -> %dx%d exceeds the size limit %d", sw, sh, dw, dh,
                       FN_IMAGE_MAX_SIDE);
    int *bh = NULL, *bv = NULL, kh = 0, kv = 0, rc = FN_OK;
    int32_t *kkh = NULL, *kkv = NULL;
    uint8_t *tmp = NULL;
    if (coeffs(sw, dw, &bh, &kkh, &kh) || coeffs(sh, dh, &bv, &kkv, &kv)) {
        rc = fn_fail(err, FN_ENOMEM, "resize: out of memory");
        goto done;
    }
    int need_h = dw != sw, need_v = dh != sh;
    int y_first = bv[0], y_last = bv[dh * 2 - 2] + bv[dh * 2 - 1];
    const uint8_t *vin = src; /* input of the vertical pass */
    int vin_w = sw;
    if (need_h) {
        int rows = y_last - y_first;
        tmp = malloc((size_t)rows * dw * 3 + 1);
        if (!tmp) {
            rc = fn_fail(err, FN_ENOMEM, "resize: out of memory");
            goto done;
        }
        for (int y = 0; y < rows; y++) {
            const uint8_t *row = src + (size_t)(y + y_first) * sw * 3;
            uint8_t *o = tmp + (size_t)y * dw * 3;
            for (int xx = 0; xx < dw; xx++) {
                int xmin = bh[xx * 2], xmax = bh[xx * 2 + 1];
                const int32_t *k = kkh + (size_t)xx * kh;
                int s0 = 1 << (PRECISION_BITS - 1), s1 = s0, s2 = s0;
                const uint8_t *p = row + (size_t)xmin * 3;
                for (int x = 0; x < xmax; x++, p += 3) {
                    s0 += p[0] * k[x];
                    s1 += p[1] * k[x];
                    s2 += p[2] * k[x];
                }
                o[xx * 3] = clip8(s0), o[xx * 3 + 1] = clip8(s1), o[xx * 3 + 2] = clip8(s2);
            }
        }
        for (int i = 0; i < dh; i++)
            bv[i * 2] -= y_first;
        vin = tmp;
        vin_w = dw;
    }
    if (need_v) {
        for (int yy = 0; yy < dh; yy++) {
            int ymin = bv[yy * 2], ymax = bv[yy * 2 + 1];
            const int32_t *k = kkv + (size_t)yy * kv;
            uint8_t *o = dst + (size_t)yy * dw * 3;
            for (int xx = 0; xx < vin_w * 3; xx++) {
                int s = 1 << (PRECISION_BITS - 1);
                const uint8_t *p = vin + (size_t)ymin * vin_w * 3 + xx;
                for (int y = 0; y < ymax; y++, p += (size_t)vin_w * 3)
                    s += *p * k[y];
                o[xx] = clip8(s);
            }
        }
    } else {
        memcpy(dst, vin, (size_t)dw * dh * 3);
    }
done:
    free(bh), free(bv), free(kkh), free(kkv), free(tmp);
    return rc;
}
