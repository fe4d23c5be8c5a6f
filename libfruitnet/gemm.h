/*
 * gemm.h — the GEMM micro-kernel interface (private), one implementation per
 * instruction set: gemm_portable.c, gemm_avx2.c, gemm_avx512.c. Nothing in
 * this header is ISA-specific, so no vector code leaks into other files.
 * gemm_avx512bf16.c is the bf16 table (AVX512_BF16; see the end of this comment), gemm_avx512vnni.c the int8
 * one, gemm_amx.c their AMX twins (32 x 32 tiles, same units and packing).
 *
 * A micro-kernel computes one MR x NR tile of C = A x B over one K block.
 * A is NOT packed: it is read through row pointers ("indirect GEMM"). The K
 * block is `ntaps` taps of `kt` consecutive floats each; for tap t the MR
 * rows are a[t*MR + i] + k0 (i < MR; rows past mr point at zeros). For a 1x1
 * convolution a tap is an input pixel's channels, for a kxk one each (ky,kx)
 * is a tap, and a padding tap points at a zero buffer. B is packed: the K
 * block's rows of NR floats, contiguous (b[k*NR + j]).
 *   first: v = acc + bias[j] (+ r[i][j])    else: v = acc + c[i][j]
 *   last && relu: v = max(v, 0);  c[i][j] = v   for i < mr, j < nr
 * r may alias c (each element is read before it is written).
 * pf, pfn: pfn cache lines from pf (B the caller needs next) to prefetch into L2 while the FMAs run,
 * at most 2 per k step; 0 for none.
 *
 * bf16 tables (gemm_avx512bf16.c) keep this contract with one change of unit: a "float" of A and B is a
 * 32-bit word holding two bf16 values that are consecutive along K (the lower half the even k). So kt,
 * k0 and the row pointers count K pairs, a B row is NR such words (column j's pair), and a tap of cin
 * channels is cin/2 words; the accumulation, bias, residual and output stay float32. to_bf16 converts
 * n floats (n even) to bf16, round to nearest even, two per word: how activations reach such a kernel.
 *
 * int8 tables (gemm_avx512vnni.c) change the unit again: a "float" of A is a 32-bit word of four uint8
 * activations consecutive along K (channels 4k..4k+3, the lowest byte first), a "float" of B a word of
 * four int8 weights of one column (same K order), so kt, k0 and the row pointers count K quads and a tap
 * of cin channels is cin/4 words. Products are summed exactly in int32 (vpdpbusd) over the K block, then
 * acc * scale[j] (+ bias ...) as above in float32: scale (NR floats, zero-padded) is the column's
 * act_scale * w_scale[j], NULL for the other tables. Exactness bound (weights in -127..127):
 * |acc| <= 255 * 127 * 4 * kt < 2^31 for kt <= 16,577 words (66,308 channels; the blocking's kc is
 * 2,048). fn_gemm_vnni_to_u8 quantises n floats (post-ReLU, >= 0) to min(255, round(x * inv_scale)),
 * one byte each (four per word): how activations reach such a kernel.
 */
#ifndef FRUITNET_GEMM_H
#define FRUITNET_GEMM_H

#include <stddef.h>

typedef struct fn_ukargs {
    const float *const *a; /* ntaps * MR row pointers, tap-major */
    const float *b;        /* packed B: ntaps * kt rows of NR floats */
    float *c;              /* tile's top-left output element */
    const float *bias;     /* NR floats (zero-padded past nr) */
    const float *r;        /* residual tile or NULL; used when first */
    const float *pf;       /* prefetch hint (see above) */
    const float *scale;    /* int8 tables: NR column scales (see above); NULL for the others */
    size_t ldc, ldr;
    int ntaps, kt, k0, mr, nr, pfn;
    int first, last, relu;
} fn_ukargs;

typedef void (*fn_ukernel)(const fn_ukargs *a);

/* Winograd F(2x2,3x3) and F(4x4,3x3) transforms (winograd_impl.h), compiled per ISA: d has 16 or 36
 * pixel pointers, the output up to 2x2 or 4x4 valid pixels. */
typedef void (*fn_wino_in)(const float *const d[], size_t c, float *v, size_t vstride);
typedef void (*fn_wino_out)(float *m, size_t mstride, size_t c, const float *bias, float *out, const float *res,
                            size_t ldo_row, size_t ldo_px, int ny, int nx, int relu);

/* The blocking of the convolution's macro-kernel on one table (as BLIS's bli_cntx_init_<arch>.c: the
 * values sit beside each kernel), for a core with ref_l2 bytes of L2. conv_plan.c scales mc and nc_bytes
 * to the L2 that CPUID reports (fn_cpu_caches). kc is never scaled: the K blocks fix the summation order
 * (each block's products are summed by the kernel, then added to the output), so a machine's results do
 * not depend on its cache sizes; tc and tc4 bound the transformed-weight reuse, not a cache footprint. */
typedef struct fn_gemm_blocking {
    int kc;          /* floats of K per block (words for bf16 tables) */
    int mc;          /* most rows of A per chunk (a multiple of mr) */
    int tc, tc4;     /* Winograd F(2x2,3x3) and F(4x4,3x3) tiles per chunk */
    size_t nc_bytes; /* B slivers of a panel group in the one-K-block (tile-outer) loop, at ref_l2 */
    size_t ref_l2;   /* bytes of L2 per core the values above were measured with */
} fn_gemm_blocking;

typedef struct fn_gemm_impl {
    int mr, nr;
    fn_ukernel kernel;
    fn_wino_in wino_in, wino4_in;
    fn_wino_out wino_out, wino4_out;
    void (*to_bf16)(const float *src, size_t n, void *dst); /* bf16 tables only (else NULL) */
    fn_gemm_blocking blk;
} fn_gemm_impl;

extern const fn_gemm_impl fn_gemm_portable;
extern const fn_gemm_impl fn_gemm_avx2;
extern const fn_gemm_impl fn_gemm_avx512;
extern const fn_gemm_impl fn_gemm_avx512bf16; /* vdpbf16ps on bf16 pairs (see above); no Winograd */
extern const fn_gemm_impl fn_gemm_avx512vnni; /* vpdpbusd on uint8 x int8 quads (see above); no Winograd */
/* AMX (gemm_amx.c), 32 x 32, the contract and B packing of the two above: tdpbusd (int32 sums bit-identical
 * to fn_gemm_avx512vnni's for the same kc) and tdpbf16ps (close to fn_gemm_avx512bf16's). Only where isa.c's
 * fn_amx_int8 / fn_amx_bf16 say so (else the first tile instruction faults). */
extern const fn_gemm_impl fn_gemm_amxint8;
extern const fn_gemm_impl fn_gemm_amxbf16;
/* The activations of fn_gemm_avx512vnni (see above; compiled with it, AVX-512 only). */
void fn_gemm_vnni_to_u8(const float *src, size_t n, float inv_scale, void *dst);

#endif
