/* gemm_avx2.c — AVX2 + FMA micro-kernel, 6 x 16 (12 ymm accumulators, A broadcast through row pointers). */
#include "gemm.h"
#define WINO_VW 8
#include "winograd_impl.h"

#include <immintrin.h>

#define MR 6
#define NR 16

static inline __m256 epi(__m256 acc, __m256i m, const float *c, const float *bias, const float *r, int first,
                         int relu)
{
    if (first) {
        acc = _mm256_add_ps(acc, _mm256_maskload_ps(bias, m));
        if (r)
            acc = _mm256_add_ps(acc, _mm256_maskload_ps(r, m));
    } else {
        acc = _mm256_add_ps(acc, _mm256_maskload_ps(c, m));
    }
    return relu ? _mm256_max_ps(acc, _mm256_setzero_ps()) : acc;
}

static void kernel_avx2(const fn_ukargs *u)
{
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00, c31 = c00,
           c40 = c00, c41 = c00, c50 = c00, c51 = c00;
    const float *b = u->b;
    const int kt = u->kt;
    if (u->last) /* the epilogue's rows (written, maybe a residual read): fetched while the FMAs run */
        for (int i = 0; i < u->mr; i++) {
            __builtin_prefetch(u->c + (size_t)i * u->ldc, 1, 3);
            if (u->first && u->r)
                __builtin_prefetch(u->r + (size_t)i * u->ldr, 0, 3);
        }
    const char *pf = (const char *)u->pf;
    int pfn = u->pfn;
    for (int t = 0; t < u->ntaps; t++) {
        const float *const *p = u->a + t * MR;
        const float *a0 = p[0] + u->k0, *a1 = p[1] + u->k0, *a2 = p[2] + u->k0, *a3 = p[3] + u->k0,
                    *a4 = p[4] + u->k0, *a5 = p[5] + u->k0;
        for (int k = 0; k < kt; k++, b += NR) {
            __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8), s;
            if (pfn > 0) {
                __builtin_prefetch(pf, 0, 2);
                __builtin_prefetch(pf + 64, 0, 2);
                pf += 128, pfn -= 2;
            }
            s = _mm256_broadcast_ss(a0 + k), c00 = _mm256_fmadd_ps(s, b0, c00), c01 = _mm256_fmadd_ps(s, b1, c01);
            s = _mm256_broadcast_ss(a1 + k), c10 = _mm256_fmadd_ps(s, b0, c10), c11 = _mm256_fmadd_ps(s, b1, c11);
            s = _mm256_broadcast_ss(a2 + k), c20 = _mm256_fmadd_ps(s, b0, c20), c21 = _mm256_fmadd_ps(s, b1, c21);
            s = _mm256_broadcast_ss(a3 + k), c30 = _mm256_fmadd_ps(s, b0, c30), c31 = _mm256_fmadd_ps(s, b1, c31);
            s = _mm256_broadcast_ss(a4 + k), c40 = _mm256_fmadd_ps(s, b0, c40), c41 = _mm256_fmadd_ps(s, b1, c41);
            s = _mm256_broadcast_ss(a5 + k), c50 = _mm256_fmadd_ps(s, b0, c50), c51 = _mm256_fmadd_ps(s, b1, c51);
        }
    }
    __m256 acc[MR][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}};
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i m0 = _mm256_cmpgt_epi32(_mm256_set1_epi32(u->nr), idx);
    const __m256i m1 = _mm256_cmpgt_epi32(_mm256_set1_epi32(u->nr - 8), idx);
    const int relu = u->last && u->relu;
    for (int i = 0; i < u->mr; i++) {
        float *c = u->c + (size_t)i * u->ldc;
        const float *r = u->first && u->r ? u->r + (size_t)i * u->ldr : NULL;
        __m256 v0 = epi(acc[i][0], m0, c, u->bias, r, u->first, relu);
        __m256 v1 = epi(acc[i][1], m1, c + 8, u->bias + 8, r ? r + 8 : NULL, u->first, relu);
        _mm256_maskstore_ps(c, m0, v0);
        _mm256_maskstore_ps(c + 8, m1, v1);
    }
}

const fn_gemm_impl fn_gemm_avx2 = {MR, NR, kernel_avx2, wino_input, wino4_input, wino_output, wino4_output, NULL,
                                    /* the AVX-512 set, unmeasured on an AVX2-only core: mc a multiple of 6 */
                                    {2048, 168, 56, 28, 256 << 10, 2 << 20}};
