/*
 * conv_plan.h — the convolution's plan (private; conv_plan.c), shared with its macro-kernel (conv.c).
 *
 * conv_plan.c decides, per fn_conv_forward call, everything that is not arithmetic: the variant (direct,
 * direct on bf16, Winograd F(2x2,3x3) or F(4x4,3x3)), the blocking (K blocks, rows per chunk, panel
 * groups, Winograd tiles per chunk), the thread split (rows/tiles, or output channels when they are few)
 * and the scratch layout. conv.c packs the weights at init and runs a plan: it builds the row pointers,
 * packs A blocks when the plan says so and calls the micro-kernel (gemm.h) and the Winograd transforms.
 *
 * The summation order of an output is fixed by the K blocking alone (each K block's products are summed
 * by the micro-kernel, then added to the output of the previous blocks): chunking, panel groups and the
 * thread split never change a result.
 */
#ifndef FRUITNET_CONV_PLAN_H
#define FRUITNET_CONV_PLAN_H

#include "conv.h"
#include "threadpool.h"
#include "util.h"
#include "gemm.h"

#include <stddef.h>

/* The blocking (kc, mc, nc, Winograd tiles per chunk) comes from the micro-kernel's table (gemm.h,
 * fn_gemm_blocking), mc and nc scaled to this core's L2 (conv_blocking). */
#ifndef FN_CONV_TILE_OUTER
#define FN_CONV_TILE_OUTER 1
#endif
#ifndef FN_CONV_PREFETCH
#define FN_CONV_PREFETCH 1 /* prefetch the next B slivers into L2 while the current ones are reused */
#endif
#define FN_CONV_NR_MAX 32 /* widest NR of the micro-kernels (gemm_*.c) */
#define FN_CONV_OTILE (32 * FN_CONV_NR_MAX) /* floats of a thread's output tile (largest MR x NR: AMX's), the last
                                             * of its scratch: a packed output's float32 tile (conv.c) */

/* The blocking of one variant of a layer: K blocks, chunk rows, scratch per thread (floats). */
typedef struct conv_geom {
    int pack;       /* copy each A block into padded rows (else read the input in place) */
    int rowtap;     /* small cin: a tap is one kernel row, kw pixels x cin contiguous floats (edge
                     * windows copied, zero-filled, into a per-thread buffer) */
    int ntaps;      /* kh * kw, or kh for row taps */
    size_t tapk;    /* floats per tap (cin, or kw * cin) */
    size_t nsub;    /* tapk > KC: pieces per tap, of ksub floats */
    size_t ksub;
    size_t group;   /* else: taps per K block */
    size_t nblocks; /* K blocks */
    size_t ld;      /* packed row stride (floats) */
    size_t mc;      /* rows per chunk (multiple of MR) */
    size_t nc_bytes; /* B slivers of one panel group (one K block: tile-outer loop) */
    size_t zeros;   /* floats of the zero row (also the zero bias of Winograd's GEMMs) */
    int wino;       /* Winograd F(m x m,3x3) possible: m (2 or 4), else 0 */
    int wa, nxi;    /* input tile side m + 2, transformed components (m + 2)^2 */
    size_t tc, ldv, ldm, wino_thr; /* tiles per chunk, V/M row strides, scratch floats per thread */
    size_t wnsub, wksub;           /* Winograd GEMMs: K (cin) pieces, of wksub floats */
    size_t ptr_floats, pptr_floats, edge_floats, per_thr; /* scratch per thread */
    size_t cvt_ld;  /* a 1x1 pad-0 packed view (bf16, int8): each chunk's rows converted into rows of cvt_ld
                     * words in the thread's scratch, after its row pointers (conv_plan.c geom_rows_cvt); else 0 */
    size_t otile;   /* floats from the thread's scratch to its output tile (FN_CONV_OTILE floats) */
} conv_geom;

/* What fn_conv_forward runs for one call. */
typedef struct conv_plan {
    const fn_gemm_impl *g; /* the micro-kernel table (the bf16 one for bf16) */
    conv_geom q;
    int oh, ow;
    size_t M, K;       /* GEMM rows (n*oh*ow) and depth (kh*kw*cin; in words for bf16) */
    int wino;          /* 0 direct, else Winograd F(m x m,3x3) with m = 2 or 4 */
    int bf16;          /* direct on the bf16 view (conv_bf16_view): the input converted first (1x1: by chunk,
                        * q.cvt_ld) */
    int split_n;       /* few rows or tiles: threads split the output channels (panels) */
    int dyn_n;         /* split_n, direct on one chunk and one K block, or Winograd: (chunk,) groups of
                        * dyn_step panels taken as threads finish instead of a static share each */
    size_t dyn_step;
    size_t chunk;      /* rows (or Winograd tiles) per chunk handed out */
    size_t in16;       /* bf16: floats at the front of scratch for the converted input (0: by chunk) */
    int int8;          /* direct on the int8 view (conv_int8_view): the input quantised first (1x1: by chunk) */
    size_t in8;        /* int8: floats (words) at the front of scratch for the quantised input (0: by chunk) */
} conv_plan;

static inline size_t conv_round_up(size_t x, size_t m) { return (x + m - 1) / m * m; }
/* floats of scratch that hold n pointers (whole cache lines) */
#define PTR_FLOATS(n) conv_round_up((n) * (sizeof(void *) / sizeof(float)), 16)

/* 3x3, stride 1, pad 1: Winograd possible */
static inline int conv_wino_ok(int kh, int kw, int stride, int pad)
{
    return kh == 3 && kw == 3 && stride == 1 && pad == 1;
}

/* Rows per chunk (mc, a multiple of MR) and panel-group bytes (nc) of table g for K blocks of blk floats on
 * a core with l2 bytes of L2 (0: the table's reference): A blocks of mc rows fill at most 2/3 of the L2,
 * at most the table's mc; nc in proportion to the L2. Neither changes a result (conv_plan.h). */
void conv_blocking(const fn_gemm_impl *g, size_t l2, size_t blk, size_t *mc, size_t *nc_bytes);
/* Tests only: plan as if the L2 had `bytes` (0: as CPUID reports). Not thread-safe. */
void conv_plan_set_l2(size_t bytes);

/* The micro-kernel table of a resolved ISA. */
const fn_gemm_impl *conv_gemm(fn_isa isa);
/* The table of a layer's int8 calls: AMX (fn_gemm_amxint8) when it may run there (fn_conv.amx8), else
 * AVX512-VNNI. */
const fn_gemm_impl *conv_gemm_int8(const fn_conv *c);
/* The same for bf16 calls: AMX (fn_gemm_amxbf16) when fn_conv.amx16, else AVX512_BF16. */
const fn_gemm_impl *conv_gemm_bf16(const fn_conv *c);
/* The bf16 view of a conv for the direct path: the same shape in words (a word = two channels), its
 * bf16 weights, no Winograd. */
fn_conv conv_bf16_view(const fn_conv *c);
/* The int8 view of a conv: the same shape in words (a word = four channels), its int8 weights and column
 * scales, no Winograd. */
fn_conv conv_int8_view(const fn_conv *c);
/* The layer's blocking on table g for variant wm (0 direct, 2 or 4 Winograd). */
conv_geom conv_geometry(const fn_conv *c, const fn_gemm_impl *g, int wm);
/* The plan of fn_conv_forward(c, n x h x w) on nthreads; 0 when there is nothing to compute. in_packed: the
 * input is already the layer's packed view (bf16 pairs or uint8 quads: fn_conv_packed_input), so it is
 * neither converted first nor by chunk. */
int conv_plan_make(const fn_conv *c, int n, int h, int w, int nthreads, int in_packed, conv_plan *p);

/* K block kb: taps t0..t0+tn, floats k0..k0+kt of each. */
static inline void conv_k_block(const conv_geom *q, size_t kb, size_t *t0, size_t *k0, size_t *tn, size_t *kt)
{
    if (q->nsub > 1) {
        *t0 = kb / q->nsub, *k0 = (kb % q->nsub) * q->ksub;
        *tn = 1, *kt = q->tapk - *k0 < q->ksub ? q->tapk - *k0 : q->ksub;
    } else {
        *t0 = kb * q->group, *k0 = 0;
        *tn = (size_t)q->ntaps - *t0 < q->group ? (size_t)q->ntaps - *t0 : q->group, *kt = q->tapk;
    }
}

#endif
