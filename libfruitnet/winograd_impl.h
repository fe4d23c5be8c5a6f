/*
 * winograd_impl.h — Winograd F(2x2,3x3) and F(4x4,3x3) input and output transforms, written
 * once over a vector of WINO_VW channels (GCC vector extensions) and included
 * by each gemm_<isa>.c with its own width (16 for AVX-512, 8 for AVX2, 4 for
 * the portable SSE2 baseline), so every ISA gets its own compiled copy (static
 * functions, reached only through that ISA's fn_gemm_impl table: no vector
 * code leaks across ISAs). Channels past the last full vector go through the
 * same arithmetic one at a time; every output is the same sequence of float
 * additions whatever the width, so all ISAs agree bit for bit.
 *
 * Input tile d (4x4 pixels, each `c` channels; padding pixels point at zeros):
 *   V = B^T d B, B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]; V[xi] at v + xi*vstride.
 * Output: Y = A^T M A, A^T = [1 1 1 0; 0 1 -1 -1]; M[xi] at m + xi*mstride;
 *   y = act(Y + bias (+ r)) for the ny x nx valid outputs at out[(oy*ldo_row) + ox*ldo_px].
 *   r may alias out (each element is read before it is written).
 */
#include <stddef.h>

#ifndef WINO_VW
#error "define WINO_VW (floats per vector) before including winograd_impl.h"
#endif

typedef float wino_v __attribute__((vector_size(WINO_VW * sizeof(float))));
typedef float wino_s; /* the one-channel tail */

static inline wino_v wino_ldv(const float *p)
{
    wino_v v;
    __builtin_memcpy(&v, p, sizeof v);
    return v;
}
static inline void wino_stv(float *p, wino_v v) { __builtin_memcpy(p, &v, sizeof v); }
static inline wino_s wino_lds(const float *p) { return *p; }
static inline void wino_sts(float *p, wino_s v) { *p = v; }
typedef int wino_vi __attribute__((vector_size(WINO_VW * sizeof(int))));
static inline wino_v wino_maxv(wino_v a) /* relu as the scalar one: negative -> +0, -0 and NaN kept */
{
    wino_vi neg = a < (wino_v){0}, bits;
    __builtin_memcpy(&bits, &a, sizeof bits);
    bits &= ~neg;
    __builtin_memcpy(&a, &bits, sizeof a);
    return a;
}
static inline wino_s wino_maxs(wino_s a) { return a < 0 ? 0 : a; }

/* STEP over every channel ch: full vectors, then the tail one channel at a time. */
#define WINO_CHANNELS(STEP)                                                                                          \
    do {                                                                                                             \
        size_t ch = 0;                                                                                               \
        for (; ch + WINO_VW <= c; ch += WINO_VW)                                                                     \
            STEP(wino_v, wino_ldv, wino_stv, wino_maxv);                                                             \
        for (; ch < c; ch++)                                                                                         \
            STEP(wino_s, wino_lds, wino_sts, wino_maxs);                                                             \
    } while (0)

/* 16 loads, 32 additions, 16 stores of type T at channel ch. */
#define WINO_INPUT_STEP(T, LD, ST, MAX)                                                                            \
    do {                                                                                                             \
        T x[16], t[16];                                                                                              \
        for (int i = 0; i < 16; i++)                                                                                 \
            x[i] = LD(d[i] + ch);                                                                                    \
        for (int col = 0; col < 4; col++) { /* t = B^T x (rows) */                                                   \
            t[0 * 4 + col] = x[0 * 4 + col] - x[2 * 4 + col];                                                        \
            t[1 * 4 + col] = x[1 * 4 + col] + x[2 * 4 + col];                                                        \
            t[2 * 4 + col] = x[2 * 4 + col] - x[1 * 4 + col];                                                        \
            t[3 * 4 + col] = x[1 * 4 + col] - x[3 * 4 + col];                                                        \
        }                                                                                                            \
        for (int row = 0; row < 4; row++) { /* V = t B (columns) */                                                  \
            const T *r = t + row * 4;                                                                                \
            ST(v + (size_t)(row * 4 + 0) * vstride + ch, r[0] - r[2]);                                               \
            ST(v + (size_t)(row * 4 + 1) * vstride + ch, r[1] + r[2]);                                               \
            ST(v + (size_t)(row * 4 + 2) * vstride + ch, r[2] - r[1]);                                               \
            ST(v + (size_t)(row * 4 + 3) * vstride + ch, r[1] - r[3]);                                               \
        }                                                                                                            \
    } while (0)

static void wino_input(const float *const d[], size_t c, float *v, size_t vstride)
{
    WINO_CHANNELS(WINO_INPUT_STEP);
}

/* The ny x nx valid outputs y[oy * side + ox] of channel ch: + bias (+ residual) (ReLU), stored. */
#define WINO_STORE(T, LD, ST, MAX, y, side)                                                                          \
    do {                                                                                                             \
        const T bv = LD(bias + ch);                                                                                  \
        for (int oy = 0; oy < ny; oy++)                                                                              \
            for (int ox = 0; ox < nx; ox++) {                                                                        \
                size_t off = (size_t)oy * ldo_row + (size_t)ox * ldo_px + ch;                                        \
                T val = y[oy * (side) + ox] + bv;                                                                    \
                if (res)                                                                                             \
                    val = val + LD(res + off);                                                                       \
                ST(out + off, relu ? MAX(val) : val);                                                                \
            }                                                                                                        \
    } while (0)

/* Y = A^T M A for channel ch, then bias (+ residual) (+ ReLU) and the valid outputs stored. */
#define WINO_OUTPUT_STEP(T, LD, ST, MAX)                                                                             \
    do {                                                                                                             \
        T x[16], t[8], y[4];                                                                                         \
        for (int i = 0; i < 16; i++)                                                                                 \
            x[i] = LD(m + (size_t)i * mstride + ch);                                                                 \
        for (int col = 0; col < 4; col++) { /* t = A^T x */                                                          \
            t[0 * 4 + col] = x[0 * 4 + col] + x[1 * 4 + col] + x[2 * 4 + col];                                       \
            t[1 * 4 + col] = x[1 * 4 + col] - x[2 * 4 + col] - x[3 * 4 + col];                                       \
        }                                                                                                            \
        for (int row = 0; row < 2; row++) { /* Y = t A */                                                            \
            y[row * 2 + 0] = t[row * 4 + 0] + t[row * 4 + 1] + t[row * 4 + 2];                                       \
            y[row * 2 + 1] = t[row * 4 + 1] - t[row * 4 + 2] - t[row * 4 + 3];                                       \
        }                                                                                                            \
        WINO_STORE(T, LD, ST, MAX, y, 2);                                                                            \
    } while (0)

static void wino_output(float *m, size_t mstride, size_t c, const float *bias, float *out, const float *res,
                        size_t ldo_row, size_t ldo_px, int ny, int nx, int relu)
{
    WINO_CHANNELS(WINO_OUTPUT_STEP);
}

/*
 * Winograd F(4x4, 3x3) (Lavin & Gray, points 0, +-1, +-2, inf): 6x6 input tiles, 36 GEMMs, 4x4 outputs.
 *   B^T = [4 0 -5 0 1 0; 0 -4 -4 1 1 0; 0 4 -4 -1 1 0; 0 -2 -1 2 1 0; 0 2 -1 -2 1 0; 0 4 0 -5 0 1]
 *   A^T = [1 1 1 1 1 0; 0 1 -1 2 -2 0; 0 1 1 4 4 0; 0 1 -1 8 -8 1]
 * (G = [1/4 0 0; -1/6 -1/6 -1/6; -1/6 1/6 -1/6; 1/24 1/12 1/6; 1/24 -1/12 1/6; 0 0 1] is applied to the
 * weights at init, in double.) Same layout rules as F(2x2): d[36] row-major, V[xi] at v + xi*vstride.
 */
/* o[0..5 * os] = B^T (x[0], x[s], ..., x[5s]) */
#define WINO4_BT(T, x, s, o, os)                                                                                     \
    do {                                                                                                             \
        T a_ = x[4 * (s)] - x[2 * (s)] * 4, b_ = x[3 * (s)] - x[1 * (s)] * 4;                                        \
        T c_ = x[4 * (s)] - x[2 * (s)], e_ = (x[3 * (s)] - x[1 * (s)]) * 2;                                          \
        o[0 * (os)] = x[0] * 4 - x[2 * (s)] * 5 + x[4 * (s)];                                                        \
        o[1 * (os)] = a_ + b_;                                                                                       \
        o[2 * (os)] = a_ - b_;                                                                                       \
        o[3 * (os)] = c_ + e_;                                                                                       \
        o[4 * (os)] = c_ - e_;                                                                                       \
        o[5 * (os)] = x[1 * (s)] * 4 - x[3 * (s)] * 5 + x[5 * (s)];                                                  \
    } while (0)

/* o[0..3 * os] = A^T (x[0], x[s], ..., x[5s]) */
#define WINO4_AT(T, x, s, o, os)                                                                                     \
    do {                                                                                                             \
        T s12_ = x[1 * (s)] + x[2 * (s)], d12_ = x[1 * (s)] - x[2 * (s)];                                            \
        T s34_ = x[3 * (s)] + x[4 * (s)], d34_ = x[3 * (s)] - x[4 * (s)];                                            \
        o[0 * (os)] = x[0] + s12_ + s34_;                                                                            \
        o[1 * (os)] = d12_ + d34_ * 2;                                                                               \
        o[2 * (os)] = s12_ + s34_ * 4;                                                                               \
        o[3 * (os)] = d12_ + d34_ * 8 + x[5 * (s)];                                                                  \
    } while (0)

#define WINO4_INPUT_STEP(T, LD, ST, MAX)                                                                            \
    do {                                                                                                             \
        T x[36], t[36], o[6];                                                                                        \
        for (int i = 0; i < 36; i++)                                                                                 \
            x[i] = LD(d[i] + ch);                                                                                    \
        for (int col = 0; col < 6; col++) /* t = B^T x: down each column */                                          \
            WINO4_BT(T, (x + col), 6, (t + col), 6);                                                                 \
        for (int row = 0; row < 6; row++) { /* V = t B: along each row */                                            \
            WINO4_BT(T, (t + row * 6), 1, o, 1);                                                                     \
            for (int col = 0; col < 6; col++)                                                                        \
                ST(v + (size_t)(row * 6 + col) * vstride + ch, o[col]);                                              \
        }                                                                                                            \
    } while (0)

static void wino4_input(const float *const d[], size_t c, float *v, size_t vstride)
{
    WINO_CHANNELS(WINO4_INPUT_STEP);
}

#define WINO4_OUTPUT_STEP(T, LD, ST, MAX)                                                                            \
    do {                                                                                                             \
        T x[36], t[24], y[16];                                                                                       \
        for (int i = 0; i < 36; i++)                                                                                 \
            x[i] = LD(m + (size_t)i * mstride + ch);                                                                 \
        for (int col = 0; col < 6; col++) /* t = A^T x (4 x 6) */                                                    \
            WINO4_AT(T, (x + col), 6, (t + col), 6);                                                                 \
        for (int row = 0; row < 4; row++) /* Y = t A (4 x 4) */                                                      \
            WINO4_AT(T, (t + row * 6), 1, (y + row * 4), 1);                                                         \
        WINO_STORE(T, LD, ST, MAX, y, 4);                                                                            \
    } while (0)

static void wino4_output(float *m, size_t mstride, size_t c, const float *bias, float *out, const float *res,
                         size_t ldo_row, size_t ldo_px, int ny, int nx, int relu)
{
    WINO_CHANNELS(WINO4_OUTPUT_STEP);
}
