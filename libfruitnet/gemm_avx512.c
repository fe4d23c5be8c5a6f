/*
 * gemm_avx512.c — AVX-512 micro-kernel, 14 x 32: 28 zmm accumulators, two
 * zmm of packed B per k, A broadcast straight from the activation rows
 * (embedded-broadcast FMA operands; no packing of A).
 */
#include "gemm.h"
#define WINO_VW 16
#include "winograd_impl.h"
#include "gemm_avx512_impl.h"

#include <immintrin.h>

#define MR 14
#define NR 32

#define ROW(i)                                                                                                         \
    s = _mm512_set1_ps(a##i[k]);                                                                                       \
    c##i##0 = _mm512_fmadd_ps(s, b0, c##i##0);                                                                         \
    c##i##1 = _mm512_fmadd_ps(s, b1, c##i##1);
#define PTR(i) const float *a##i = p[i] + k0;

/* The tail tile of at most 7 rows (M = 49 at batch 1 in stage 5, 7 Winograd tiles of 14x14 maps): the same
 * sums as kernel_avx512's first 7 rows (each accumulator is its own), without the FMAs of the 7 rows that
 * would only be dropped. */
static void kernel_avx512_7(const fn_ukargs *u)
{
    const __m512 z = _mm512_setzero_ps();
    __m512 c00 = z, c01 = z, c10 = z, c11 = z, c20 = z, c21 = z, c30 = z, c31 = z, c40 = z, c41 = z, c50 = z, c51 = z,
           c60 = z, c61 = z;
    const float *b = u->b;
    const int kt = u->kt, k0 = u->k0;
    avx512_prefetch_c(u);
    const char *pf = (const char *)u->pf;
    int pfn = u->pfn;
    for (int t = 0; t < u->ntaps; t++) {
        const float *const *p = u->a + t * MR;
        PTR(0) PTR(1) PTR(2) PTR(3) PTR(4) PTR(5) PTR(6)
        for (int k = 0; k < kt; k++, b += NR) {
            __m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16), s;
            avx512_prefetch_b(&pf, &pfn);
            ROW(0) ROW(1) ROW(2) ROW(3) ROW(4) ROW(5) ROW(6)
        }
    }
    __m512 acc[7][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}, {c60, c61}};
    avx512_epilogue(u, acc);
}

static void kernel_avx512(const fn_ukargs *u)
{
    const __m512 z = _mm512_setzero_ps();
    __m512 c00 = z, c01 = z, c10 = z, c11 = z, c20 = z, c21 = z, c30 = z, c31 = z, c40 = z, c41 = z, c50 = z, c51 = z,
           c60 = z, c61 = z, c70 = z, c71 = z, c80 = z, c81 = z, c90 = z, c91 = z, c100 = z, c101 = z, c110 = z,
           c111 = z, c120 = z, c121 = z, c130 = z, c131 = z;
    if (u->mr <= 7) {
        kernel_avx512_7(u);
        return;
    }
    const float *b = u->b;
    const int kt = u->kt, k0 = u->k0;
    avx512_prefetch_c(u); /* the epilogue's rows, fetched while the FMAs run */
    const char *pf = (const char *)u->pf;
    int pfn = u->pfn;
    for (int t = 0; t < u->ntaps; t++) {
        const float *const *p = u->a + t * MR;
        PTR(0) PTR(1) PTR(2) PTR(3) PTR(4) PTR(5) PTR(6) PTR(7) PTR(8) PTR(9) PTR(10) PTR(11) PTR(12) PTR(13)
        for (int k = 0; k < kt; k++, b += NR) {
            __m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16), s;
            avx512_prefetch_b(&pf, &pfn);
            ROW(0) ROW(1) ROW(2) ROW(3) ROW(4) ROW(5) ROW(6) ROW(7) ROW(8) ROW(9) ROW(10) ROW(11) ROW(12) ROW(13)
        }
    }
    __m512 acc[MR][2] = {{c00, c01},   {c10, c11},   {c20, c21},   {c30, c31},  {c40, c41},
                         {c50, c51},   {c60, c61},   {c70, c71},   {c80, c81},  {c90, c91},
                         {c100, c101}, {c110, c111}, {c120, c121}, {c130, c131}};
    avx512_epilogue(u, acc);
}

const fn_gemm_impl fn_gemm_avx512 = {MR, NR, kernel_avx512, wino_input, wino4_input, wino_output, wino4_output, NULL,
                                      /* Sapphire Rapids class (2 MB L2): the set measured in issue 16 */
                                      {2048, 168, 56, 28, 256 << 10, 2 << 20}};
