/*
 * gemm_avx512vnni.c — AVX512-VNNI micro-kernel, 14 x 32, on uint8 x int8 quads (gemm.h: a "float" of A
 * is a word of four uint8 activations consecutive along K, of B a word of four int8 weights). Per K quad:
 * two zmm of packed B (16 columns' quads each), and for each of the 14 rows its quad broadcast to every
 * lane, then vpdpbusd: each int32 lane adds a[4k..4k+3] . b[4k..4k+3][j], exactly. 28 zmm accumulators;
 * the epilogue converts them to float32, multiplies by the column's scale (act_scale * w_scale[j]) and
 * then adds the bias / residual / previous K blocks and applies ReLU as gemm_avx512.c does.
 */
#include "gemm.h"
#include "gemm_avx512_impl.h"

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#define MR 14
#define NR 32

#define ROW(i)                                                                                                         \
    s = _mm512_set1_epi32(a##i[k]);                                                                                    \
    c##i##0 = _mm512_dpbusd_epi32(c##i##0, s, b0);                                                                     \
    c##i##1 = _mm512_dpbusd_epi32(c##i##1, s, b1);
#define PTR(i) const int32_t *a##i = (const int32_t *)(const void *)(p[i] + k0);

static void kernel_vnni(const fn_ukargs *u)
{
    const __m512i z = _mm512_setzero_si512();
    __m512i c00 = z, c01 = z, c10 = z, c11 = z, c20 = z, c21 = z, c30 = z, c31 = z, c40 = z, c41 = z, c50 = z,
            c51 = z, c60 = z, c61 = z, c70 = z, c71 = z, c80 = z, c81 = z, c90 = z, c91 = z, c100 = z, c101 = z,
            c110 = z, c111 = z, c120 = z, c121 = z, c130 = z, c131 = z;
    const float *b = u->b;
    const int kt = u->kt, k0 = u->k0;
    avx512_prefetch_c(u);
    const char *pf = (const char *)u->pf;
    int pfn = u->pfn;
    for (int t = 0; t < u->ntaps; t++) {
        const float *const *p = u->a + t * MR;
        PTR(0) PTR(1) PTR(2) PTR(3) PTR(4) PTR(5) PTR(6) PTR(7) PTR(8) PTR(9) PTR(10) PTR(11) PTR(12) PTR(13)
        for (int k = 0; k < kt; k++, b += NR) {
            __m512i b0 = _mm512_loadu_si512((const void *)b), b1 = _mm512_loadu_si512((const void *)(b + 16)), s;
            avx512_prefetch_b(&pf, &pfn);
            ROW(0) ROW(1) ROW(2) ROW(3) ROW(4) ROW(5) ROW(6) ROW(7) ROW(8) ROW(9) ROW(10) ROW(11) ROW(12) ROW(13)
        }
    }
    __m512i acc[MR][2] = {{c00, c01},   {c10, c11},   {c20, c21},   {c30, c31},  {c40, c41},
                          {c50, c51},   {c60, c61},   {c70, c71},   {c80, c81},  {c90, c91},
                          {c100, c101}, {c110, c111}, {c120, c121}, {c130, c131}};
    avx512_epilogue_i32(u, (const __m512i(*)[2])acc);
}

/* n floats -> n uint8 = min(255, round-to-nearest-even(x * inv)) (x >= 0; a negative x gives 0), 16 per
 * step (vcvtps2dq, then unsigned saturation vpmovusdb), the tail masked. */
void fn_gemm_vnni_to_u8(const float *src, size_t n, float inv, void *dst)
{
    uint8_t *d = dst;
    const __m512 vi = _mm512_set1_ps(inv);
    const __m512i zero = _mm512_setzero_si512();
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512i q = _mm512_max_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(src + i), vi)), zero);
        _mm_storeu_si128((__m128i *)(void *)(d + i), _mm512_cvtusepi32_epi8(q));
    }
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        __m512i q = _mm512_max_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(_mm512_maskz_loadu_ps(m, src + i), vi)), zero);
        _mm512_mask_cvtusepi32_storeu_epi8(d + i, m, q);
    }
}

const fn_gemm_impl fn_gemm_avx512vnni = {MR, NR, kernel_vnni, NULL, NULL, NULL, NULL, NULL,
                                          /* as the float32 AVX-512 table (a K word is four channels) */
                                          {2048, 168, 56, 28, 256 << 10, 2 << 20}};
