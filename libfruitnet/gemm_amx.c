/*
 * gemm_amx.c — AMX micro-kernels, 32 x 32, on the int8 quads and bf16 pairs of the AVX-512 tables (gemm.h's
 * contract and B packing unchanged): fn_gemm_amxint8 (tdpbusd, as gemm_avx512vnni.c's vpdpbusd) and
 * fn_gemm_amxbf16 (tdpbf16ps, as gemm_avx512bf16.c's vdpbf16ps). Used only when isa.c's fn_amx_int8 /
 * fn_amx_bf16 say so (CPUID, XCR0 and the Linux grant of the tile state), chosen per layer by conv_plan.c.
 *
 * Eight tiles of 16 rows x 64 bytes: C in tiles 0..3 (rows 0-15 / 16-31 x columns 0-15 / 16-31, int32 or
 * float32), A in 4 and 5 (16 rows x 16 words of K), B in 6 and 7 (16 K words x 16 columns). The packed B
 * of a K block (rows of NR = 32 words) IS two B tiles per 16 K words: rows of 64 bytes at a stride of 128.
 * Per tap and per 16 K words: the A tiles straight from the input when their 16 row pointers are evenly
 * spaced (a stride), else gathered (16 or 32 zmm) into an aligned buffer; then 4 tile products (2 when
 * mr <= 16). A tap's last kt % 16 words go through the buffers zero-padded (A's words past the tail, B's
 * rows past it: reading on would leave the K block or the weights). The C tiles are then stored and the
 * epilogue of gemm_avx512_impl.h applied, the one of the 14 x 32 kernels: the int8 sums are exact either
 * way, so fn_gemm_amxint8's outputs are bit-identical to fn_gemm_avx512vnni's for the same K blocks (kc);
 * bf16 products are summed in another order (and AMX flushes denormals), so the bf16 ones are close only.
 *
 * The tile configuration is checked on every call and loaded when it is not the thread's (amx_config): no
 * state is kept per thread, so the kernel is safe in any thread, whatever else ran tile code (and released
 * or reconfigured the tiles) in it. The tiles are not released after a call (the thread keeps its tile
 * state, 8 KiB saved on a context switch).
 */
#include "gemm.h"
#include "gemm_avx512_impl.h"

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#define MR 32
#define NR 32
#define KW 16 /* K words per tile step (64 bytes of a row) */

typedef struct tilecfg {
    uint8_t palette, start_row;
    uint8_t reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} tilecfg;

/* The configuration above, loaded unless it is the thread's already: sttilecfg and a compare cost about as
 * much as a thread-local flag, where ldtilecfg on every call took ~65 ns (K = 64, one tile step per call:
 * 644 against 945 GOP/s in bench_ukernel), and unlike a flag they see a release (tilerelease, by any code
 * in this thread: then sttilecfg stores zeros) or another configuration. */
FN_INLINE void amx_config(void)
{
    static const tilecfg cfg __attribute__((aligned(64))) = {
        1, 0, {0}, {64, 64, 64, 64, 64, 64, 64, 64}, {16, 16, 16, 16, 16, 16, 16, 16}};
    tilecfg now __attribute__((aligned(64)));
    __asm__ volatile("sttilecfg %0" : "=m"(now)); /* (_tile_storeconfig's operand is 8 bytes, not 64) */
    if (memcmp(&now, &cfg, sizeof cfg) != 0)
        _tile_loadconfig(&cfg);
}

/* GCC's tileloadd (amxtileintrin.h) is an asm statement without a memory operand: what was just stored in a
 * buffer must be made visible to it */
#define STORES_DONE() __asm__ volatile("" ::: "memory")

/* rows p[0..15]: 1 and their stride in bytes in *s when they are evenly spaced (then tile 4 or 5 loads
 * them in place: any stride, the zero row repeated too), else 0 (gathered) */
FN_INLINE int even_rows(const float *const *p, long *s)
{
    const char *r0 = (const char *)p[0];
    *s = (long)((const char *)p[1] - r0);
    for (int i = 2; i < 16; i++)
        if ((const char *)p[i] != r0 + (long)i * *s)
            return 0;
    return 1;
}

/* 16 rows of 16 words (word w of row i: p[i][off + w]) into buf (16 x 64 bytes); n < 16: words n.. zeroed */
FN_INLINE void gather16(const float *const *p, int off, int n, int32_t *buf)
{
    if (n == KW) {
        for (int i = 0; i < 16; i++)
            _mm512_store_si512((void *)(buf + 16 * i), _mm512_loadu_si512((const void *)(p[i] + off)));
    } else {
        const __mmask16 m = (__mmask16)((1u << n) - 1);
        for (int i = 0; i < 16; i++)
            _mm512_store_si512((void *)(buf + 16 * i), _mm512_maskz_loadu_epi32(m, (const void *)(p[i] + off)));
    }
    STORES_DONE();
}

/* The B prefetch of gemm.h: at most 2 lines per K word, so up to 32 per tile step. */
FN_INLINE void prefetch_b(const char **pf, int *pfn)
{
    for (int n = 0; n < 2 * KW && *pfn > 0; n++, (*pfn)--, *pf += 64)
        __builtin_prefetch(*pf, 0, 2);
}

/* The tile products of one step, int8 (bf16 = 0) or bf16: C0 += A4 B6, C1 += A4 B7, and for rows 16..31
 * C2 += A5 B6, C3 += A5 B7. */
#define PRODUCTS(bf16, two)                                                                                            \
    do {                                                                                                               \
        if (bf16) {                                                                                                    \
            _tile_dpbf16ps(0, 4, 6);                                                                                   \
            _tile_dpbf16ps(1, 4, 7);                                                                                   \
            if (two) {                                                                                                 \
                _tile_dpbf16ps(2, 5, 6);                                                                               \
                _tile_dpbf16ps(3, 5, 7);                                                                               \
            }                                                                                                          \
        } else {                                                                                                       \
            _tile_dpbusd(0, 4, 6);                                                                                     \
            _tile_dpbusd(1, 4, 7);                                                                                     \
            if (two) {                                                                                                 \
                _tile_dpbusd(2, 5, 6);                                                                                 \
                _tile_dpbusd(3, 5, 7);                                                                                 \
            }                                                                                                          \
        }                                                                                                              \
    } while (0)

/* C tiles (zeroed) += the K block; then stored into acc (32 rows of 32 int32 or float32, 128-byte rows) */
FN_INLINE void amx_block(const fn_ukargs *u, int bf16, void *acc)
{
    int32_t abuf[2 * 16 * KW] __attribute__((aligned(64)));
    int32_t bbuf[KW * NR] __attribute__((aligned(64)));
    const int kt = u->kt, k0 = u->k0, kf = kt / KW * KW, tail = kt - kf, two = u->mr > 16;
    const char *b = (const char *)u->b, *pf = (const char *)u->pf;
    int pfn = u->pfn;
    amx_config();
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    for (int t = 0; t < u->ntaps; t++) {
        const float *const *p = u->a + t * MR;
        long s0 = 0, s1 = 0;
        const int e0 = even_rows(p, &s0), e1 = two && even_rows(p + 16, &s1);
        for (int k = 0; k < kf; k += KW, b += KW * NR * 4) {
            if (e0)
                _tile_loadd(4, p[0] + k0 + k, s0);
            else {
                gather16(p, k0 + k, KW, abuf);
                _tile_loadd(4, abuf, 64);
            }
            if (two) {
                if (e1)
                    _tile_loadd(5, p[16] + k0 + k, s1);
                else {
                    gather16(p + 16, k0 + k, KW, abuf + 16 * KW);
                    _tile_loadd(5, abuf + 16 * KW, 64);
                }
            }
            _tile_loadd(6, b, NR * 4);
            _tile_loadd(7, b + 64, NR * 4);
            prefetch_b(&pf, &pfn);
            PRODUCTS(bf16, two);
        }
        if (tail) { /* words kf..kt: zero-padded A words and B rows */
            gather16(p, k0 + kf, tail, abuf);
            _tile_loadd(4, abuf, 64);
            if (two) {
                gather16(p + 16, k0 + kf, tail, abuf + 16 * KW);
                _tile_loadd(5, abuf + 16 * KW, 64);
            }
            memcpy(bbuf, b, (size_t)tail * NR * 4);
            memset(bbuf + tail * NR, 0, (size_t)(KW - tail) * NR * 4);
            STORES_DONE();
            _tile_loadd(6, bbuf, NR * 4);
            _tile_loadd(7, bbuf + 16, NR * 4);
            PRODUCTS(bf16, two);
            b += (size_t)tail * NR * 4;
        }
    }
    char *c = acc;
    _tile_stored(0, c, 128);
    _tile_stored(1, c + 64, 128);
    if (two) {
        _tile_stored(2, c + 16 * 128, 128);
        _tile_stored(3, c + 16 * 128 + 64, 128);
    }
}

static void kernel_amx8(const fn_ukargs *u)
{
    __m512i acc[MR][2];
    avx512_prefetch_c(u);
    amx_block(u, 0, acc);
    avx512_epilogue_i32(u, (const __m512i(*)[2])acc);
}

static void kernel_amx16(const fn_ukargs *u)
{
    __m512 acc[MR][2];
    avx512_prefetch_c(u);
    amx_block(u, 1, acc);
    avx512_epilogue(u, acc);
}

/* kc as the AVX-512 tables' (the same K blocks: the same sums, bit for bit in int8); mc a multiple of 32 */
const fn_gemm_impl fn_gemm_amxint8 = {MR, NR, kernel_amx8, NULL, NULL, NULL, NULL, NULL,
                                      {2048, 192, 64, 32, 256 << 10, 2 << 20}};
const fn_gemm_impl fn_gemm_amxbf16 = {MR, NR, kernel_amx16, NULL, NULL, NULL, NULL, NULL,
                                      {2048, 192, 64, 32, 256 << 10, 2 << 20}};
