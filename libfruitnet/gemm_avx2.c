/* gemm_avx2.c — AVX2 + FMA micro-kernel, 6 x 16 (12 ymm accumulators). */
#include "gemm.h"

#include <immintrin.h>

#define MR 6
#define NR 16

static void kernel_avx2(int K, const float *Ap, const float *Bp, float *C, size_t ldc, int mr, int nr,
                        const float *bias, const float *R, size_t ldr, int relu)
{
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00, c31 = c00,
           c40 = c00, c41 = c00, c50 = c00, c51 = c00;
    for (int k = 0; k < K; k++) {
        const float *a = Ap + (size_t)k * MR;
        __m256 b0 = _mm256_loadu_ps(Bp + (size_t)k * NR), b1 = _mm256_loadu_ps(Bp + (size_t)k * NR + 8), t;
        t = _mm256_broadcast_ss(a + 0), c00 = _mm256_fmadd_ps(t, b0, c00), c01 = _mm256_fmadd_ps(t, b1, c01);
        t = _mm256_broadcast_ss(a + 1), c10 = _mm256_fmadd_ps(t, b0, c10), c11 = _mm256_fmadd_ps(t, b1, c11);
        t = _mm256_broadcast_ss(a + 2), c20 = _mm256_fmadd_ps(t, b0, c20), c21 = _mm256_fmadd_ps(t, b1, c21);
        t = _mm256_broadcast_ss(a + 3), c30 = _mm256_fmadd_ps(t, b0, c30), c31 = _mm256_fmadd_ps(t, b1, c31);
        t = _mm256_broadcast_ss(a + 4), c40 = _mm256_fmadd_ps(t, b0, c40), c41 = _mm256_fmadd_ps(t, b1, c41);
        t = _mm256_broadcast_ss(a + 5), c50 = _mm256_fmadd_ps(t, b0, c50), c51 = _mm256_fmadd_ps(t, b1, c51);
    }
    __m256 acc[MR][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}};
    __m256 zero = _mm256_setzero_ps();
    if (nr == NR) {
        __m256 bb0 = _mm256_loadu_ps(bias), bb1 = _mm256_loadu_ps(bias + 8);
        for (int i = 0; i < mr; i++) {
            __m256 v0 = _mm256_add_ps(acc[i][0], bb0), v1 = _mm256_add_ps(acc[i][1], bb1);
            if (R) {
                v0 = _mm256_add_ps(v0, _mm256_loadu_ps(R + i * ldr));
                v1 = _mm256_add_ps(v1, _mm256_loadu_ps(R + i * ldr + 8));
            }
            if (relu)
                v0 = _mm256_max_ps(v0, zero), v1 = _mm256_max_ps(v1, zero);
            _mm256_storeu_ps(C + i * ldc, v0);
            _mm256_storeu_ps(C + i * ldc + 8, v1);
        }
        return;
    }
    /* N edge: masked loads and stores */
    __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    __m256i m0 = _mm256_cmpgt_epi32(_mm256_set1_epi32(nr), idx);
    __m256i m1 = _mm256_cmpgt_epi32(_mm256_set1_epi32(nr - 8), idx);
    __m256 bb0 = _mm256_maskload_ps(bias, m0), bb1 = _mm256_maskload_ps(bias + 8, m1);
    for (int i = 0; i < mr; i++) {
        __m256 v0 = _mm256_add_ps(acc[i][0], bb0), v1 = _mm256_add_ps(acc[i][1], bb1);
        if (R) {
            v0 = _mm256_add_ps(v0, _mm256_maskload_ps(R + i * ldr, m0));
            v1 = _mm256_add_ps(v1, _mm256_maskload_ps(R + i * ldr + 8, m1));
        }
        if (relu)
            v0 = _mm256_max_ps(v0, zero), v1 = _mm256_max_ps(v1, zero);
        _mm256_maskstore_ps(C + i * ldc, m0, v0);
        _mm256_maskstore_ps(C + i * ldc + 8, m1, v1);
    }
}

const fn_gemm_impl fn_gemm_avx2 = {MR, NR, kernel_avx2};
