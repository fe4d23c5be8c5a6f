/*
 * gemm_avx512bf16.c — AVX512_BF16 micro-kernel, 14 x 32, on bf16 pairs (gemm.h: a "float" of A and B
 * is a word of two bf16 consecutive along K). Per K pair: two zmm of packed B (16 columns' pairs each),
 * and for each of the 14 rows its pair broadcast to every lane, then vdpbf16ps: each float32 lane adds
 * a[2k] b[2k][j] + a[2k+1] b[2k+1][j]. 28 zmm accumulators, the epilogue of gemm_avx512_impl.h (as gemm_avx512.c's).
 */
#include "gemm.h"
#include "gemm_avx512_impl.h"

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#define MR 14
#define NR 32

#define ROW(i)                                                                                                         \
    s = (__m512bh)_mm512_set1_ps(a##i[k]);                                                                             \
    c##i##0 = _mm512_dpbf16_ps(c##i##0, s, b0);                                                                        \
    c##i##1 = _mm512_dpbf16_ps(c##i##1, s, b1);
#define PTR(i) const float *a##i = p[i] + k0;

static void kernel_bf16(const fn_ukargs *u)
{
    const __m512 z = _mm512_setzero_ps();
    __m512 c00 = z, c01 = z, c10 = z, c11 = z, c20 = z, c21 = z, c30 = z, c31 = z, c40 = z, c41 = z, c50 = z, c51 = z,
           c60 = z, c61 = z, c70 = z, c71 = z, c80 = z, c81 = z, c90 = z, c91 = z, c100 = z, c101 = z, c110 = z,
           c111 = z, c120 = z, c121 = z, c130 = z, c131 = z;
    const float *b = u->b;
    const int kt = u->kt, k0 = u->k0;
    avx512_prefetch_c(u);
    const char *pf = (const char *)u->pf;
    int pfn = u->pfn;
    for (int t = 0; t < u->ntaps; t++) {
        const float *const *p = u->a + t * MR;
        PTR(0) PTR(1) PTR(2) PTR(3) PTR(4) PTR(5) PTR(6) PTR(7) PTR(8) PTR(9) PTR(10) PTR(11) PTR(12) PTR(13)
        for (int k = 0; k < kt; k++, b += NR) {
            __m512bh b0 = (__m512bh)_mm512_loadu_ps(b), b1 = (__m512bh)_mm512_loadu_ps(b + 16), s;
            avx512_prefetch_b(&pf, &pfn);
            ROW(0) ROW(1) ROW(2) ROW(3) ROW(4) ROW(5) ROW(6) ROW(7) ROW(8) ROW(9) ROW(10) ROW(11) ROW(12) ROW(13)
        }
    }
    __m512 acc[MR][2] = {{c00, c01},   {c10, c11},   {c20, c21},   {c30, c31},  {c40, c41},
                         {c50, c51},   {c60, c61},   {c70, c71},   {c80, c81},  {c90, c91},
                         {c100, c101}, {c110, c111}, {c120, c121}, {c130, c131}};
    avx512_epilogue(u, acc);
}

/* n floats (n even) -> n bf16, round to nearest even (vcvtne2ps2bf16), 32 per step, the tail masked. */
static void to_bf16(const float *src, size_t n, void *dst)
{
    uint16_t *d = dst;
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m512bh v = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(src + i + 16), _mm512_loadu_ps(src + i));
        _mm512_storeu_si512((void *)(d + i), (__m512i)v);
    }
    if (i < n) {
        size_t r = n - i; /* 1..31 */
        __mmask16 lo = (__mmask16)(r >= 16 ? 0xFFFF : (1u << r) - 1);
        __mmask16 hi = (__mmask16)(r <= 16 ? 0 : (1u << (r - 16)) - 1);
        __m512bh v = _mm512_cvtne2ps_pbh(_mm512_maskz_loadu_ps(hi, src + i + 16), _mm512_maskz_loadu_ps(lo, src + i));
        __mmask32 m = (__mmask32)(r == 32 ? 0xFFFFFFFFu : (1u << r) - 1);
        _mm512_mask_storeu_epi16(d + i, m, (__m512i)v);
    }
}

const fn_gemm_impl fn_gemm_avx512bf16 = {MR, NR, kernel_bf16, NULL, NULL, NULL, NULL, to_bf16,
                                          /* as the float32 AVX-512 table (a K word is two channels) */
                                          {2048, 168, 56, 28, 256 << 10, 2 << 20}};
