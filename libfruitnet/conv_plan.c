/*
 * conv_plan.c — the convolution's planning (conv_plan.h): which variant a call runs (direct, bf16 direct,
 * Winograd F(2x2,3x3) or F(4x4,3x3)), its blocking, its thread split and its scratch. The loops that run a
 * plan are conv.c's.
 */
#include "conv_plan.h"

#include <stdint.h>
#include <string.h>

#ifndef FN_WINO_MIN_TILES
#define FN_WINO_MIN_TILES 2 /* Winograd chunks per thread below which threads split the output channels */
#endif

#ifndef FN_WINO4_MIN_SIDE
#define FN_WINO4_MIN_SIDE 7
#endif
#ifndef FN_WINO2_MIN_SIDE
#define FN_WINO2_MIN_SIDE 14
#endif
#ifndef FN_WINO2_MAX_SIDE
#define FN_WINO2_MAX_SIDE 28
#endif

/* F(4x4,3x3) on maps of at least FN_WINO4_MIN_SIDE (all four ResNet50 stages: 1.15x faster than F(2x2) at
 * batch 32 on 56 and 28, and with the next weight sliver prefetched, on 14 and 7 too, where its 36
 * transformed weight sets are 9.4 and 37.7 MB a layer: stage 5 at batch 8 and 32 in 0.28-0.31 ms/img
 * against 0.37-0.41 with F(2x2)), and F(2x2,3x3) on the maps where batch 1 has too few 4x4 tiles and
 * F(2x2) is faster than direct (14 and 28). */
int fn_conv_wino_kinds(int k, int h)
{
    if (k != 3)
        return 0;
    return (h >= FN_WINO4_MIN_SIDE ? FN_WINO_F4 : 0) |
           (h >= FN_WINO2_MIN_SIDE && h <= FN_WINO2_MAX_SIDE ? FN_WINO_F2 : 0);
}

const fn_gemm_impl *conv_gemm(fn_isa isa)
{
    switch (isa) {
    case FN_ISA_AVX512: return &fn_gemm_avx512;
    case FN_ISA_AVX2: return &fn_gemm_avx2;
    default: return &fn_gemm_portable;
    }
}

const fn_gemm_impl *conv_gemm_int8(const fn_conv *c)
{
    return c->amx8 ? &fn_gemm_amxint8 : &fn_gemm_avx512vnni;
}

const fn_gemm_impl *conv_gemm_bf16(const fn_conv *c)
{
    return c->amx16 ? &fn_gemm_amxbf16 : &fn_gemm_avx512bf16;
}

fn_conv conv_bf16_view(const fn_conv *c)
{
    fn_conv v = *c;
    v.cin = c->cin / 2, v.packed = c->packed16, v.wino = 0, v.bf16 = 0;
    return v;
}

fn_conv conv_int8_view(const fn_conv *c)
{
    fn_conv v = *c;
    v.cin = c->cin / 4, v.packed = c->packed8, v.wino = 0, v.bf16 = 0, v.int8 = 0;
    return v;
}

/* The variant fn_conv_forward runs for n images with oh x ow outputs on nth threads, given the Winograd
 * weights the layer has (wino; 0 unless 3x3/1 pad 1): 4, 2, or 0 (direct). */
static int wino_pick(int wino, const fn_gemm_impl *g, int n, int oh, int ow, int nth)
{
    const size_t mr = (size_t)g->mr;
    const int has2 = (wino & FN_WINO_F2) != 0, has4 = (wino & FN_WINO_F4) != 0;
    size_t t2 = (size_t)n * (((size_t)oh + 1) / 2) * (((size_t)ow + 1) / 2);
    size_t t4 = (size_t)n * (((size_t)oh + 3) / 4) * (((size_t)ow + 3) / 4);
    const size_t many = (size_t)FN_WINO_MIN_TILES * (size_t)nth;
    /* F(4x4) when every thread gets >= FN_WINO_MIN_TILES chunks of its tiles, else F(2x2) (smaller chunks,
     * a quarter of the transformed weights to stream) when there are at least 3 MR tiles; else F(4x4) if
     * only it is there, else direct */
    if (has4 && (t4 >= many * conv_round_up((size_t)g->blk.tc4, mr) || (!has2 && t4 >= mr)))
        return 4;
    if (has2 && t2 >= 3 * mr) /* fewer: direct is faster (measured, 7x7 at batch 1) */
        return 2;
    return 0;
}

int fn_conv_wino_needed(int kh, int kw, int stride, int pad, int h, int w, int wino, fn_isa isa, int max_batch,
                        int nthreads)
{
    if (!conv_wino_ok(kh, kw, stride, pad) || max_batch < 1)
        return 0;
    const fn_gemm_impl *g = conv_gemm(isa);
    const int oh = fn_conv_out_dim(h, kh, stride, pad), ow = fn_conv_out_dim(w, kw, stride, pad);
    if (nthreads < 1)
        nthreads = 1;
    int used = 0;
    for (int n = 1; n <= max_batch; n++)
        used |= wino_pick(wino, g, n, oh, ow, nthreads);
    /* dropping a kind must not change any pick (F(4x4) is also taken on few tiles when F(2x2) is absent) */
    for (int n = 1; n <= max_batch; n++)
        if (wino_pick(used, g, n, oh, ow, nthreads) != wino_pick(wino, g, n, oh, ow, nthreads))
            return wino;
    return used;
}

static size_t g_l2_override; /* conv_plan_set_l2 (tests) */

void conv_plan_set_l2(size_t bytes) { g_l2_override = bytes; }

static size_t plan_l2(const fn_gemm_impl *g)
{
    size_t l2 = g_l2_override ? g_l2_override : fn_cpu_caches_get().l2;
    return l2 ? l2 : g->blk.ref_l2;
}

void conv_blocking(const fn_gemm_impl *g, size_t l2, size_t blk, size_t *mc, size_t *nc_bytes)
{
    const size_t mr = (size_t)g->mr;
    if (!l2)
        l2 = g->blk.ref_l2;
    size_t m = (size_t)g->blk.mc, fit = l2 / 3 * 2 / ((blk ? blk : 1) * sizeof(float));
    m = (fit < m ? fit : m) / mr * mr;
    *mc = m < mr ? mr : m;
    /* in proportion to the L2 (l2 / ref_l2 in 1/64ths, so that it cannot overflow) */
    *nc_bytes = g->blk.nc_bytes / 64 * ((l2 * 64 + g->blk.ref_l2 / 2) / g->blk.ref_l2);
}

/* a row stride (multiple of 16 floats) of an odd number of cache lines: consecutive rows on different L1 sets */
static size_t odd_lines(size_t ld) { return (ld / 16) % 2 ? ld : ld + 16; }

conv_geom conv_geometry(const fn_conv *c, const fn_gemm_impl *g, int wm)
{
    conv_geom q;
    size_t mr = (size_t)g->mr, cin = (size_t)c->cin;
    /* Short taps (conv1: 7x7x3): one tap per kernel row, its kw pixels being contiguous in NHWC. */
    const size_t KC = (size_t)g->blk.kc;
    q.rowtap = c->kw > 1 && cin < 16 && (size_t)c->kw * cin <= KC;
    q.ntaps = q.rowtap ? c->kh : c->kh * c->kw;
    q.tapk = q.rowtap ? (size_t)c->kw * cin : cin;
    const size_t tk = q.tapk;
    q.nsub = 1, q.ksub = tk, q.group = 1;
    if (tk > KC) {
        q.nsub = (tk + KC - 1) / KC;
        q.ksub = conv_round_up((tk + q.nsub - 1) / q.nsub, 8);
        q.nsub = (tk + q.ksub - 1) / q.ksub;
        q.nblocks = (size_t)q.ntaps * q.nsub;
    } else {
        q.group = KC / tk;
        q.nblocks = ((size_t)q.ntaps + q.group - 1) / q.group;
    }
    size_t blk = q.nsub > 1 ? q.ksub : (q.group < (size_t)q.ntaps ? q.group : (size_t)q.ntaps) * tk;
    /* Pack when rows 2 KiB-multiples apart would crowd into few L1 sets (cin*stride % 512 == 0: 14 rows
     * on one or two sets). */
    q.pack = !q.rowtap && (cin * (size_t)c->stride) % 512 == 0;
    q.ld = odd_lines(conv_round_up(blk, 16));
    conv_blocking(g, plan_l2(g), blk, &q.mc, &q.nc_bytes);
    q.zeros = conv_round_up(tk > 64 ? tk : 64, 16);
    q.wino = conv_wino_ok(c->kh, c->kw, c->stride, c->pad) && (c->wino & wm) ? wm : 0;
    q.wa = q.wino + 2, q.nxi = q.wino ? q.wa * q.wa : 0;
    q.tc = conv_round_up((size_t)(q.wino == 4 ? g->blk.tc4 : g->blk.tc), mr);
    q.ldv = odd_lines(conv_round_up(cin, 16));
    q.ldm = odd_lines(conv_round_up((size_t)c->cout, (size_t)g->nr));
    q.wnsub = (cin + KC - 1) / KC; /* the Winograd GEMMs' K (cin) split like a tap's */
    q.wksub = conv_round_up((cin + q.wnsub - 1) / q.wnsub, 8);
    q.wnsub = (cin + q.wksub - 1) / q.wksub;
    /* V, M, the GEMMs' row pointers, then one tile's output (m x m pixels of ldm floats: a packed output's) */
    q.wino_thr = q.wino ? (size_t)q.nxi * q.tc * (q.ldv + q.ldm) + PTR_FLOATS((size_t)q.nxi * q.tc) +
                              (size_t)q.wino * q.wino * q.ldm
                        : 0;
    q.ptr_floats = PTR_FLOATS(q.mc * (size_t)q.ntaps);
    q.pptr_floats = q.pack ? PTR_FLOATS(q.mc) : 0;
    q.edge_floats = q.rowtap ? q.mc * (size_t)q.ntaps * conv_round_up(tk, 16) : 0;
    q.otile = q.ptr_floats + q.pptr_floats + (q.pack ? q.mc * q.ld : 0) + q.edge_floats;
    q.per_thr = q.otile + FN_CONV_OTILE;
    q.cvt_ld = 0; /* (geom_rows_cvt) */
    return q;
}

/* A 1x1 pad-0 packed view (a row is one input pixel's channels, in words): each chunk's rows are
 * converted (bf16) or quantised (uint8) by the thread that runs it, into rows of cvt_ld words after its row
 * pointers, while they are hot, and read there (in place: never packed), instead of the whole input once
 * before the GEMM, which writes and reads a copy of it (stride 2: of every pixel, where a quarter are
 * used). The same conversion of the same floats: the same results. 0 when the view is not 1x1 pad 0. */
static int geom_rows_cvt(conv_geom *q, const fn_conv *view)
{
    if (view->kh != 1 || view->kw != 1 || view->pad != 0)
        return 0;
    q->pack = 0, q->pptr_floats = 0, q->edge_floats = 0;
    q->cvt_ld = odd_lines(conv_round_up((size_t)view->cin, 16));
    q->otile = q->ptr_floats + q->mc * q->cvt_ld;
    q->per_thr = q->otile + FN_CONV_OTILE;
    return 1;
}

/* The scratch of the direct path on a packed view (conv_bf16_view, a word = two channels, or
 * conv_int8_view, four) on table g: the view's own scratch per thread raises *per, and *in is the floats
 * (words) of the converted input at the front of scratch. 0 when that size overflows. */
static int scratch_packed(const fn_conv *c, fn_conv view, const fn_gemm_impl *g, int per_word, int n, int h,
                          int w, size_t *per, size_t *in)
{
    conv_geom qv = conv_geometry(&view, g, 0);
    const int by_chunk = geom_rows_cvt(&qv, &view);
    *per = qv.per_thr > *per ? qv.per_thr : *per;
    if (by_chunk)
        return *in = 0, 1;
    if (!fn_mul_size((size_t)(n > 0 ? n : 0) * (size_t)h, (size_t)w * (size_t)(c->cin / per_word), in))
        return 0;
    *in = conv_round_up(*in, 16);
    return 1;
}

size_t fn_conv_scratch_floats(const fn_conv *c, int n, int h, int w, int nthreads)
{
    size_t t = (size_t)(nthreads > 0 ? nthreads : 1), per = 0, s;
    conv_geom q;
    for (int wm = 0; wm <= 4; wm += 2) { /* direct, F(2x2), F(4x4): the largest */
        q = conv_geometry(c, conv_gemm(c->isa), wm);
        per = q.per_thr > per ? q.per_thr : per;
        per = q.wino_thr > per ? q.wino_thr : per;
    }
    /* the bf16 (int8: uint8) copy of the input first, then the packed view's own scratch */
    size_t in = 0;
    if (c->bf16 && !scratch_packed(c, conv_bf16_view(c), conv_gemm_bf16(c), 2, n, h, w, &per, &in))
        return SIZE_MAX;
    if (c->int8 && !scratch_packed(c, conv_int8_view(c), conv_gemm_int8(c), 4, n, h, w, &per, &in))
        return SIZE_MAX;
    if (!fn_mul_size(t, per, &s) || !fn_add_size(s, q.zeros, &s) || !fn_add_size(s, in, &s))
        return SIZE_MAX;
    return s;
}

/* few M tiles (of p->g) per thread: split the output channels instead */
static int plan_split_n(const conv_plan *p, const fn_conv *c, int nth)
{
    const size_t mr = (size_t)p->g->mr, nr = (size_t)p->g->nr;
    const size_t tiles = (p->M + mr - 1) / mr, panels = ((size_t)c->cout + nr - 1) / nr;
    return nth > 1 && tiles < 4 * (size_t)nth && panels >= (size_t)nth;
}

/* chunks: at most MC rows, and at least 4 per thread when M allows (small tail imbalance); whole MR tiles
 * of p->g. Of that size and down to half of it, the one whose chunks share out best among the threads
 * (the fewest tiles on the busiest thread, the chunks taken in turn; ties: the larger): 14 tiles on 2
 * threads (stage 4 at batch 1) in 14 chunks of 1 (7 each), not 7 of 2 (8 tiles on one thread, 6 on the
 * other); 224 (stage 2, 2 images) in 28 of 8, not 19 of 12. Never changes a result (conv_plan.h). */
static size_t plan_chunk(const conv_plan *p, int nth)
{
    const size_t mr = (size_t)p->g->mr, tiles = (p->M + mr - 1) / mr, t = (size_t)(nth > 0 ? nth : 1);
    size_t ct = (tiles + 4 * t - 1) / (4 * t), ctmax = p->q.mc / mr;
    ct = p->split_n ? ctmax : (ct < 1 ? 1 : ct > ctmax ? ctmax : ct);
    if (p->split_n || ct < 2)
        return ct * mr;
    size_t best = ct, best_load = SIZE_MAX;
    for (size_t c = ct; c >= (ct + 1) / 2 && c >= 1; c--) {
        const size_t chunks = (tiles + c - 1) / c, load = (chunks + t - 1) / t * c;
        if (load < best_load)
            best = c, best_load = load;
    }
    return best * mr;
}

/* Direct on a packed view of the layer (conv_bf16_view, a word = two channels, or conv_int8_view, a word
 * = four): the input converted once into the front of scratch (1x1: by chunk, geom_rows_cvt), then the
 * view on its table g (bf16: AVX512_BF16 or AMX, int8: VNNI or AMX), K in words. Returns the floats
 * (words) of that converted input (conv_plan.in16 or in8; 0 when by chunk). */
static size_t plan_packed_direct(conv_plan *p, const fn_conv *c, fn_conv view, const fn_gemm_impl *g, int per_word,
                                 int n, int h, int w, int nth, int in_packed)
{
    p->g = g;
    p->q = conv_geometry(&view, g, 0);
    const int by_chunk = !in_packed && geom_rows_cvt(&p->q, &view);
    p->K /= (size_t)per_word;
    p->split_n = plan_split_n(p, c, nth); /* (AMX: MR 32, fewer tiles) */
    p->chunk = plan_chunk(p, nth);
    if (by_chunk || in_packed)
        return 0;
    return conv_round_up((size_t)n * h * w * c->cin / per_word, 16);
}

int conv_plan_make(const fn_conv *c, int n, int h, int w, int nth, int in_packed, conv_plan *p)
{
    memset(p, 0, sizeof *p);
    p->g = conv_gemm(c->isa);
    p->q = conv_geometry(c, p->g, 0);
    p->oh = fn_conv_out_dim(h, c->kh, c->stride, c->pad);
    p->ow = fn_conv_out_dim(w, c->kw, c->stride, c->pad);
    if (n <= 0 || p->oh <= 0 || p->ow <= 0)
        return 0;
    p->M = (size_t)n * p->oh * p->ow;
    p->K = (size_t)c->kh * c->kw * c->cin;
    size_t panels = ((size_t)c->cout + (size_t)p->g->nr - 1) / (size_t)p->g->nr;
    p->split_n = plan_split_n(p, c, nth);
    p->chunk = plan_chunk(p, nth);
    /* Winograd (3x3/1 with transformed weights): F(4x4) when every thread gets >= FN_WINO_MIN_TILES
     * chunks of its tiles, else F(2x2) (smaller chunks, a quarter of the transformed weights to stream)
     * when there are at least 3 MR tiles, with the output channels split when there are few chunks; else
     * F(4x4) if only it is there, else direct. */
    /* (bf16 keeps the float32 Winograd where the layer has its weights: on AMX-BF16, model.c makes none for
     * the 3x3 layers of stages 4-5, which then run direct on bf16 tiles; direct bf16 on every 3x3 layer
     * would be faster still, but the sample's top-1 agreement with float32 falls to 98.85%, under 99%) */
    p->wino = c->int8 || in_packed ? 0
                                   : wino_pick(conv_wino_ok(c->kh, c->kw, c->stride, c->pad) ? c->wino : 0, p->g, n,
                                               p->oh, p->ow, nth);
    size_t t2 = (size_t)n * (((size_t)p->oh + 1) / 2) * (((size_t)p->ow + 1) / 2);
    size_t t4 = (size_t)n * (((size_t)p->oh + 3) / 4) * (((size_t)p->ow + 3) / 4);
    const size_t many = (size_t)FN_WINO_MIN_TILES * (size_t)nth;
    if (p->wino) {
        p->q = conv_geometry(c, p->g, p->wino);
        size_t wt = p->wino == 4 ? t4 : t2;
        p->split_n = nth > 1 && wt < many * p->q.tc && panels >= (size_t)nth;
        p->chunk = p->q.tc;
    } else if (c->bf16) {
        /* bf16: the input converted to bf16, a word = two channels, on AVX512_BF16 or AMX (conv_gemm_bf16) */
        p->bf16 = 1;
        p->in16 = plan_packed_direct(p, c, conv_bf16_view(c), conv_gemm_bf16(c), 2, n, h, w, nth, in_packed);
    } else if (c->int8) {
        /* int8 (never Winograd): the input quantised to uint8, a word = four channels, on VNNI or AMX
         * (conv_gemm_int8) */
        p->int8 = 1;
        p->in8 = plan_packed_direct(p, c, conv_int8_view(c), conv_gemm_int8(c), 4, n, h, w, nth, in_packed);
    }
    if (!p->wino) {
        /* direct, channels split on a single chunk with a single K block (the K blocks of a panel must
         * run in order on one thread, so only then): panel groups handed out as threads finish, about 4
         * per thread, instead of a fixed half each (same products, same order: same results) */
        p->dyn_n = FN_CONV_TILE_OUTER && p->split_n && p->M <= p->chunk && p->q.nblocks == 1;
        p->dyn_step = panels / (4 * (size_t)(nth > 0 ? nth : 1));
        p->dyn_step = p->dyn_step < 1 ? 1 : p->dyn_step;
    } else if (p->split_n) {
        /* Winograd on few tiles: (chunk, panel group) items handed out as threads finish, about 2 groups
         * per thread and chunk (each thread transforms the chunks it works on, as before) */
        p->dyn_n = 1;
        p->dyn_step = panels / (2 * (size_t)nth);
        p->dyn_step = p->dyn_step < 1 ? 1 : p->dyn_step;
    }
    return 1;
}

int fn_conv_packed_input(const fn_conv *c, int n, int h, int w, int nthreads)
{
    conv_plan p;
    if (!conv_plan_make(c, n, h, w, nthreads > 0 ? nthreads : 1, 0, &p))
        return FN_PACKED_NONE;
    return p.int8 ? FN_PACKED_U8 : p.bf16 ? FN_PACKED_BF16 : FN_PACKED_NONE;
}

int fn_conv_packed_output_ok(const fn_conv *c, int n, int h, int w, int nthreads)
{
    conv_plan p;
    if (!conv_plan_make(c, n, h, w, nthreads > 0 ? nthreads : 1, 0, &p))
        return 0;
    return c->isa == FN_ISA_AVX512 && (p.wino || (p.q.nblocks == 1 && FN_CONV_TILE_OUTER)) && c->cout % 2 == 0;
}
