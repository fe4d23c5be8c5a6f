/* gemm_avx512.c — AVX-512 micro-kernel, 14 x 32 (28 zmm accumulators, A broadcast from memory). */
#include "gemm.h"

#include <immintrin.h>

#define MR 14
#define NR 32

#define ROW(i)                                                                                                         \
    t = _mm512_set1_ps(a[i]);                                                                                          \
    c##i##0 = _mm512_fmadd_ps(t, b0, c##i##0);                                                                         \
    c##i##1 = _mm512_fmadd_ps(t, b1, c##i##1);

static void kernel_avx512(int K, const float *Ap, const float *Bp, float *C, size_t ldc, int mr, int nr,
                          const float *bias, const float *R, size_t ldr, int relu)
{
    __m512 z = _mm512_setzero_ps();
    __m512 c00 = z, c01 = z, c10 = z, c11 = z, c20 = z, c21 = z, c30 = z, c31 = z, c40 = z, c41 = z, c50 = z, c51 = z,
           c60 = z, c61 = z, c70 = z, c71 = z, c80 = z, c81 = z, c90 = z, c91 = z;
    __m512 cA0 = z, cA1 = z, cB0 = z, cB1 = z, cC0 = z, cC1 = z, cD0 = z, cD1 = z;
    for (int k = 0; k < K; k++) {
        const float *a = Ap + (size_t)k * MR;
        const float *b = Bp + (size_t)k * NR;
        __m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16), t;
        _mm_prefetch((const char *)(b + 8 * NR), _MM_HINT_T0);
        ROW(0) ROW(1) ROW(2) ROW(3) ROW(4) ROW(5) ROW(6) ROW(7) ROW(8) ROW(9)
        t = _mm512_set1_ps(a[10]), cA0 = _mm512_fmadd_ps(t, b0, cA0), cA1 = _mm512_fmadd_ps(t, b1, cA1);
        t = _mm512_set1_ps(a[11]), cB0 = _mm512_fmadd_ps(t, b0, cB0), cB1 = _mm512_fmadd_ps(t, b1, cB1);
        t = _mm512_set1_ps(a[12]), cC0 = _mm512_fmadd_ps(t, b0, cC0), cC1 = _mm512_fmadd_ps(t, b1, cC1);
        t = _mm512_set1_ps(a[13]), cD0 = _mm512_fmadd_ps(t, b0, cD0), cD1 = _mm512_fmadd_ps(t, b1, cD1);
    }
    __m512 acc[MR][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}, {c60, c61},
                         {c70, c71}, {c80, c81}, {c90, c91}, {cA0, cA1}, {cB0, cB1}, {cC0, cC1}, {cD0, cD1}};
    __mmask16 m0 = nr >= 16 ? 0xFFFF : (__mmask16)((1u << nr) - 1);
    __mmask16 m1 = nr >= 32 ? 0xFFFF : nr <= 16 ? 0 : (__mmask16)((1u << (nr - 16)) - 1);
    __m512 bb0 = _mm512_maskz_loadu_ps(m0, bias), bb1 = _mm512_maskz_loadu_ps(m1, bias + 16);
    for (int i = 0; i < mr; i++) {
        __m512 v0 = _mm512_add_ps(acc[i][0], bb0), v1 = _mm512_add_ps(acc[i][1], bb1);
        if (R) {
            v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, R + i * ldr));
            v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, R + i * ldr + 16));
        }
        if (relu)
            v0 = _mm512_max_ps(v0, z), v1 = _mm512_max_ps(v1, z);
        _mm512_mask_storeu_ps(C + i * ldc, m0, v0);
        _mm512_mask_storeu_ps(C + i * ldc + 16, m1, v1);
    }
}

const fn_gemm_impl fn_gemm_avx512 = {MR, NR, kernel_avx512};
