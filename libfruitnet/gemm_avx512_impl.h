/*
 * gemm_avx512_impl.h — what the AVX-512 micro-kernels share (the 14 x 32 gemm_avx512.c, gemm_avx512bf16.c,
 * gemm_avx512vnni.c and the 32 x 32 AMX gemm_amx.c), included by each and compiled with its flags, as
 * winograd_impl.h is: the prefetch of the rows the epilogue touches, the 14 x 32 kernels' prefetch of the
 * next B in their k loop, the column masks of a partial tile, and the float32 epilogue of gemm.h's
 * contract (the float32 and bf16 kernels) and the int8 one, which scales the int32 sums first (the VNNI and
 * AMX kernels). One copy of each, so the kernels cannot drift apart.
 */
#ifndef FRUITNET_GEMM_AVX512_IMPL_H
#define FRUITNET_GEMM_AVX512_IMPL_H

#include "gemm.h"

#include <immintrin.h>

#define FN_INLINE static inline __attribute__((always_inline))

/* On the last K block, the rows the epilogue writes (and the residual rows it reads) are fetched while the
 * kernel's FMAs run. */
FN_INLINE void avx512_prefetch_c(const fn_ukargs *u)
{
    if (!u->last)
        return;
    for (int i = 0; i < u->mr; i++) {
        const float *c = u->c + (size_t)i * u->ldc;
        __builtin_prefetch(c, 1, 3);
        __builtin_prefetch(c + 16, 1, 3);
        if (u->first && u->r) {
            const float *r = u->r + (size_t)i * u->ldr;
            __builtin_prefetch(r, 0, 3);
            __builtin_prefetch(r + 16, 0, 3);
        }
    }
}

/* In the k loop: the next two of the pfn cache lines from *pf (gemm.h: B the caller needs next) into L2 while
 * the FMAs run, one pair a k step until none is left; the caller's pf = u->pf, pfn = u->pfn. */
FN_INLINE void avx512_prefetch_b(const char **pf, int *pfn)
{
    if (*pfn > 0) {
        __builtin_prefetch(*pf, 0, 2);
        __builtin_prefetch(*pf + 64, 0, 2);
        *pf += 128, *pfn -= 2;
    }
}

/* The masks of a tile's nr (<= 32) valid columns: m0 for columns 0..15, m1 for 16..31. */
FN_INLINE void avx512_col_masks(int nr, __mmask16 *m0, __mmask16 *m1)
{
    *m0 = nr >= 16 ? 0xFFFF : (__mmask16)((1u << nr) - 1);
    *m1 = nr >= 32 ? 0xFFFF : nr <= 16 ? 0 : (__mmask16)((1u << (nr - 16)) - 1);
}

/* gemm.h's epilogue on float32 sums: bias (+ residual) or the partial sums so far, ReLU on the last K block;
 * acc holds u->mr rows of two zmm. */
FN_INLINE void avx512_epilogue(const fn_ukargs *u, __m512 acc[][2])
{
    const __m512 z = _mm512_setzero_ps();
    __mmask16 m0, m1;
    avx512_col_masks(u->nr, &m0, &m1);
    const int relu = u->last && u->relu;
    __m512 bb0 = z, bb1 = z;
    if (u->first)
        bb0 = _mm512_loadu_ps(u->bias), bb1 = _mm512_loadu_ps(u->bias + 16);
    for (int i = 0; i < u->mr; i++) {
        float *c = u->c + (size_t)i * u->ldc;
        __m512 v0 = acc[i][0], v1 = acc[i][1];
        if (u->first) {
            v0 = _mm512_add_ps(v0, bb0), v1 = _mm512_add_ps(v1, bb1);
            if (u->r) {
                const float *r = u->r + (size_t)i * u->ldr;
                v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, r));
                v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, r + 16));
            }
        } else {
            v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, c));
            v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, c + 16));
        }
        if (relu)
            v0 = _mm512_max_ps(v0, z), v1 = _mm512_max_ps(v1, z);
        _mm512_mask_storeu_ps(c, m0, v0);
        _mm512_mask_storeu_ps(c + 16, m1, v1);
    }
}

/* gemm.h's epilogue on int32 sums (the int8 tables: gemm_avx512vnni.c, gemm_amx.c): acc * scale[j] (one
 * fused multiply-add) onto bias (+ residual) or the partial sums so far, ReLU on the last K block; acc holds
 * u->mr rows of two zmm. One copy, so that the VNNI and AMX kernels round alike, bit for bit. */
FN_INLINE void avx512_epilogue_i32(const fn_ukargs *u, const __m512i acc[][2])
{
    __mmask16 m0, m1;
    avx512_col_masks(u->nr, &m0, &m1);
    const int relu = u->last && u->relu;
    const __m512 zf = _mm512_setzero_ps();
    const __m512 s0 = _mm512_loadu_ps(u->scale), s1 = _mm512_loadu_ps(u->scale + 16);
    __m512 bb0 = zf, bb1 = zf;
    if (u->first)
        bb0 = _mm512_loadu_ps(u->bias), bb1 = _mm512_loadu_ps(u->bias + 16);
    for (int i = 0; i < u->mr; i++) {
        float *c = u->c + (size_t)i * u->ldc;
        __m512 v0, v1;
        if (u->first) {
            v0 = bb0, v1 = bb1;
            if (u->r) {
                const float *r = u->r + (size_t)i * u->ldr;
                v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, r));
                v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, r + 16));
            }
        } else {
            v0 = _mm512_maskz_loadu_ps(m0, c), v1 = _mm512_maskz_loadu_ps(m1, c + 16);
        }
        v0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[i][0]), s0, v0);
        v1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[i][1]), s1, v1);
        if (relu)
            v0 = _mm512_max_ps(v0, zf), v1 = _mm512_max_ps(v1, zf);
        _mm512_mask_storeu_ps(c, m0, v0);
        _mm512_mask_storeu_ps(c + 16, m1, v1);
    }
}

#endif
