/*
 * conv.c — the convolution layer on the GEMM micro-kernels (gemm.h).
 *
 * out[M = n*oh*ow][cout] = patches[M][K = kh*kw*cin] x W[K][cout] (+bias,
 * +residual, ReLU fused in the micro-kernel's epilogue, on the last K block,
 * so each output is written once per K block and finished while hot).
 *
 * Weights are packed once at init into NR-wide column panels (K x NR,
 * zero-padded in N). Activations are not packed: the micro-kernel reads A
 * through MR row pointers per "tap" (indirect GEMM). For a 1x1 convolution a
 * row is an input pixel's cin channels (stride 2: every other pixel, no
 * copy); for kxk each (ky,kx) is a tap whose row is the shifted input pixel
 * or, outside the image, a zero buffer — the im2col is never materialised.
 * Only when cin is tiny (conv1: 7x7x3) are patch rows gathered into a small
 * per-thread buffer, MC rows at a time. Blocking (BLIS style): MC rows of A
 * per chunk, K split in blocks of at most KC floats. With one K block (every
 * 1x1 here) each MR-row tile is finished across all NR-wide panels before the
 * next (its A rows stay in L1, its output rows are written once, in order);
 * with several, panels are the outer loop so a B sliver is reused by all the
 * chunk's tiles while their partial C stays in L2. Threads split M (or N when
 * M is small). 3x3 stride-1 layers use Winograd F(2x2,3x3) or F(4x4,3x3)
 * instead when the batch has enough tiles (wino_task).
 *
 * Which of these a call runs, its blocking and its thread split are decided in conv_plan.c (conv_plan.h);
 * this file packs the weights and runs a plan.
 */
#include "conv.h"
#include "conv_plan.h"
#include "gemm.h"
#include "threadpool.h"
#include "util.h"

#include <math.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int fn_conv_init(fn_conv *c, int kh, int kw, int stride, int pad, int cin, int cout, const float *w,
                 const float *bias, int wino, fn_isa isa, fn_error *err)
{
    memset(c, 0, sizeof *c);
    if (kh < 1 || kw < 1 || stride < 1 || pad < 0 || pad >= kh || pad >= kw || cin < 1 || cout < 1 || kh > 64 ||
        kw > 64 || stride > 64 || cin > (1 << 20) || cout > (1 << 20) || !w || !bias)
        return fn_fail(err, FN_EARG, "conv: invalid shape %dx%d/%d pad %d, %d->%d", kh, kw, stride, pad, cin, cout);
    if (wino & ~(FN_WINO_F2 | FN_WINO_F4))
        return fn_fail(err, FN_EARG, "conv: Winograd set %d is not 0, 2 (F(2x2,3x3)), 4 (F(4x4,3x3)) or 6", wino);
    if (isa != FN_ISA_PORTABLE && isa != FN_ISA_AVX2 && isa != FN_ISA_AVX512)
        return fn_fail(err, FN_EARG, "conv: ISA %d is not resolved", (int)isa);
    const fn_gemm_impl *g = conv_gemm(isa);
    if (g->nr > FN_CONV_NR_MAX)
        return fn_fail(err, FN_EARG, "conv: micro-kernel NR %d is over %d", g->nr, FN_CONV_NR_MAX);
    size_t K = (size_t)kh * kw * cin, NR = (size_t)g->nr;
    size_t panels = ((size_t)cout + NR - 1) / NR, len, bytes;
    /* 3x3/1 pad 1: Winograd F(2x2,3x3) then F(4x4,3x3) weights ((m+2)^2 x cin x cout each) follow the
     * direct ones */
    if (!conv_wino_ok(kh, kw, stride, pad))
        wino = 0;
    size_t kw_len = (size_t)((wino & FN_WINO_F2 ? 16 : 0) + (wino & FN_WINO_F4 ? 36 : 0)) * (size_t)cin;
    if (K > INT32_MAX || !fn_mul_size(panels * NR, K + kw_len, &len) || !fn_mul_size(len, sizeof(float), &bytes) ||
        !(c->packed = fn_aalloc(bytes)))
        return fn_fail(err, FN_ENOMEM, "conv: out of memory packing %zux%d weights", K, cout);
    size_t bias_bytes = panels * NR * sizeof(float);
    if (!(c->bias = fn_aalloc(bias_bytes))) {
        fn_afree(c->packed);
        c->packed = NULL;
        return fn_fail(err, FN_ENOMEM, "conv: out of memory for %d biases", cout);
    }
    memset(c->bias, 0, bias_bytes);
    memcpy(c->bias, bias, (size_t)cout * sizeof(float));
    /* panel p: K rows of NR floats, columns past cout zero */
    for (size_t p = 0; p < panels; p++) {
        size_t ncol = (size_t)cout - p * NR < NR ? (size_t)cout - p * NR : NR;
        for (size_t k = 0; k < K; k++) {
            float *dst = c->packed + (p * K + k) * NR;
            memcpy(dst, w + k * (size_t)cout + p * NR, ncol * sizeof(float));
            for (size_t j = ncol; j < NR; j++)
                dst[j] = 0.0f;
        }
    }
    size_t uoff = panels * NR * K;
    for (int wm = 2; wm <= 4; wm += 2) { /* U[xi] = G g G^T per (ci, co), in double, panels like B */
        static const double G2[4][3] = {{1, 0, 0}, {0.5, 0.5, 0.5}, {0.5, -0.5, 0.5}, {0, 0, 1}};
        static const double G4[6][3] = {{1.0 / 4, 0, 0},           {-1.0 / 6, -1.0 / 6, -1.0 / 6},
                                        {-1.0 / 6, 1.0 / 6, -1.0 / 6}, {1.0 / 24, 1.0 / 12, 1.0 / 6},
                                        {1.0 / 24, -1.0 / 12, 1.0 / 6}, {0, 0, 1}};
        if (!(wino & wm))
            continue;
        const double(*G)[3] = wm == 2 ? G2 : G4;
        const int wa = wm + 2;
        float *U = c->packed + uoff;
        size_t xs = panels * NR * (size_t)cin; /* floats per xi */
        c->uoff[wm / 4] = uoff;
        uoff += (size_t)(wa * wa) * xs;
        /* one panel's NR columns at a time, the column loop innermost so it vectorises; every element's
         * arithmetic (order and rounding) is that of the scalar formula */
        double gk[3][3][FN_CONV_NR_MAX], t[6][3][FN_CONV_NR_MAX];
        for (size_t ci = 0; ci < (size_t)cin; ci++)
            for (size_t p = 0; p < panels; p++) {
                size_t co0 = p * NR, ncol = (size_t)cout - co0 < NR ? (size_t)cout - co0 : NR;
                for (int ky = 0; ky < 3; ky++)
                    for (int kx = 0; kx < 3; kx++) {
                        const float *src = w + ((size_t)(ky * 3 + kx) * cin + ci) * (size_t)cout + co0;
                        for (size_t j = 0; j < NR; j++)
                            gk[ky][kx][j] = j < ncol ? src[j] : 0.0;
                    }
                for (int a = 0; a < wa; a++)
                    for (int kx = 0; kx < 3; kx++)
                        for (size_t j = 0; j < NR; j++)
                            t[a][kx][j] = G[a][0] * gk[0][kx][j] + G[a][1] * gk[1][kx][j] + G[a][2] * gk[2][kx][j];
                float *dst = U + (p * (size_t)cin + ci) * NR;
                for (int a = 0; a < wa; a++)
                    for (int b2 = 0; b2 < wa; b2++) {
                        float *d = dst + (size_t)(a * wa + b2) * xs;
                        for (size_t j = 0; j < NR; j++)
                            d[j] = (float)(t[a][0][j] * G[b2][0] + t[a][1][j] * G[b2][1] + t[a][2][j] * G[b2][2]);
                    }
            }
    }
    c->wino = wino;
    c->packed_len = len;
    c->kh = kh, c->kw = kw, c->stride = stride, c->pad = pad, c->cin = cin, c->cout = cout, c->isa = isa;
    return FN_OK;
}

void fn_conv_free(fn_conv *c)
{
    fn_afree(c->packed);
    fn_afree(c->bias);
    fn_afree(c->packed16);
    fn_afree(c->packed8);
    fn_afree(c->scale8);
    c->packed = c->bias = c->packed16 = c->packed8 = c->scale8 = NULL;
}

/* float -> bf16, round to nearest even (as vcvtne2ps2bf16; NaN stays a quiet NaN) */
static uint16_t bf16_rne(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

static int bf16_ok(const fn_conv *c)
{
    return c->isa == FN_ISA_AVX512 && c->cin % 2 == 0 && !(c->kw > 1 && c->cin < 16);
}

int fn_conv_enable_bf16(fn_conv *c, const float *w, fn_error *err)
{
    if (!bf16_ok(c))
        return fn_fail(err, FN_EUNSUPPORTED, "conv: bf16 needs an AVX-512 layer with an even cin >= 16 (%dx%d, cin %d)",
                       c->kh, c->kw, c->cin);
    const fn_gemm_impl *g = &fn_gemm_avx512bf16;
    const size_t K2 = (size_t)c->kh * c->kw * c->cin / 2, NR = (size_t)g->nr, cout = (size_t)c->cout;
    const size_t panels = (cout + NR - 1) / NR;
    uint32_t *d = fn_aalloc(panels * NR * K2 * sizeof(uint32_t));
    if (!d)
        return fn_fail(err, FN_ENOMEM, "conv: out of memory packing %zux%d bf16 weights", 2 * K2, c->cout);
    /* panel p: K/2 rows of NR words, word j of row kk = (bf16 w[2kk][j], bf16 w[2kk+1][j]); K is tap-major
     * and cin even, so a pair never straddles two taps */
    for (size_t p = 0; p < panels; p++)
        for (size_t kk = 0; kk < K2; kk++)
            for (size_t j = 0; j < NR; j++) {
                size_t co = p * NR + j;
                uint32_t lo = 0, hi = 0;
                if (co < cout)
                    lo = bf16_rne(w[(2 * kk) * cout + co]), hi = bf16_rne(w[(2 * kk + 1) * cout + co]);
                d[(p * K2 + kk) * NR + j] = lo | hi << 16;
            }
    fn_afree(c->packed16);
    c->packed16 = (float *)(void *)d;
    c->bf16 = 1;
    c->amx16 = fn_amx_bf16();
    return FN_OK;
}

int fn_conv_enable_int8(fn_conv *c, const float *w, float act_scale, fn_error *err)
{
    if (c->isa != FN_ISA_AVX512 || c->cin % 4 || (c->kw > 1 && c->cin < 64))
        return fn_fail(err, FN_EUNSUPPORTED,
                       "conv: int8 needs an AVX-512 layer with cin a multiple of 4 (and >= 64 for %dx%d; cin %d)",
                       c->kh, c->kw, c->cin);
    if (!(act_scale > 0) || !(act_scale < 1e30f))
        return fn_fail(err, FN_EARG, "conv: int8 activation scale %g is not a positive finite number",
                       (double)act_scale);
    const fn_gemm_impl *g = &fn_gemm_avx512vnni;
    const size_t K = (size_t)c->kh * c->kw * c->cin, K4 = K / 4, NR = (size_t)g->nr, cout = (size_t)c->cout;
    const size_t panels = (cout + NR - 1) / NR;
    uint32_t *d = fn_aalloc(panels * NR * K4 * sizeof(uint32_t));
    float *sc = fn_aalloc(panels * NR * sizeof(float)), *inv = calloc(cout, sizeof(float));
    if (!d || !sc || !inv) {
        fn_afree(d), fn_afree(sc), free(inv);
        return fn_fail(err, FN_ENOMEM, "conv: out of memory packing %zux%d int8 weights", K, c->cout);
    }
    /* per output channel, symmetric: w_scale = max |w| / 127 (a zero column keeps scale 0 and weights 0).
     * (A clip at the least squared error, among max |w| x (1, 0.99, ... 0.69) or (1, 0.96, ... 0.72), was
     * tried: on the sample, within the noise of the max's accuracy either way, at 5x the open time.) */
    memset(sc, 0, panels * NR * sizeof(float));
    for (size_t co = 0; co < cout; co++) {
        float mx = 0;
        for (size_t k = 0; k < K; k++) {
            float a = fabsf(w[k * cout + co]);
            mx = a > mx ? a : mx;
        }
        inv[co] = mx > 0 ? 127.0f / mx : 0;
        sc[co] = mx / 127.0f * act_scale;
    }
    /* panel p: K/4 rows of NR words, word j of row kk = int8 w[4kk + b][j] in byte b (b = 0..3); K is
     * tap-major and cin a multiple of 4, so a quad never straddles two taps */
    for (size_t p = 0; p < panels; p++)
        for (size_t kk = 0; kk < K4; kk++)
            for (size_t j = 0; j < NR; j++) {
                size_t co = p * NR + j;
                uint32_t word = 0;
                for (int b = 0; co < cout && b < 4; b++) {
                    long q = lrintf(fminf(fmaxf(w[(4 * kk + (size_t)b) * cout + co] * inv[co], -127.0f), 127.0f));
                    q = q > 127 ? 127 : q < -127 ? -127 : q;
                    word |= (uint32_t)(uint8_t)(int8_t)q << (8 * b);
                }
                d[(p * K4 + kk) * NR + j] = word;
            }
    free(inv);
    fn_afree(c->packed8);
    fn_afree(c->scale8);
    c->packed8 = (float *)(void *)d;
    c->scale8 = sc;
    c->act_scale = act_scale;
    c->int8 = 1;
    c->amx8 = fn_amx_int8();
    return FN_OK;
}

/* ---------------------------------------------------------------- forward */

typedef struct conv_job {
    const fn_conv *c;
    const fn_gemm_impl *g;
    conv_geom q;
    const float *in, *res, *zeros;
    float *out, *scratch;
    int n, h, w, oh, ow, relu, split_n, wino;
    size_t split; /* fn_conv_forward_split: channels [split, cout) go to out2 (relu2); else 0 */
    float *out2;
    int relu2;
    int dyn_n;       /* split_n with one chunk and one K block: panel groups taken dynamically (next) */
    size_t dyn_step; /* panels per dynamic group */
    size_t M, K;
    size_t chunk;      /* rows (or Winograd tiles) per chunk handed out */
    /* q.cvt_ld: the float32 input (src, cin_src floats a pixel) whose chunks' rows each thread converts
     * (to_bf16) or quantises (to_u8, at inv) itself (cvt_rows) */
    const float *src;
    size_t cin_src;
    float inv;
    void (*to_bf16)(const float *src, size_t n, void *dst);
    void (*to_u8)(const float *src, size_t n, float inv, void *dst);
    /* the output packed (fn_conv_forward_packed): each micro-kernel call's tile written as float32 into the
     * thread's output tile (q.otile), then converted into opk (ofmt: bf16 pairs, or uint8 at oinv) */
    int ofmt;
    float oinv;
    unsigned char *opk;
    atomic_size_t next; /* next chunk: threads take chunks as they finish (a stalled thread delays no one) */
} conv_job;

/* n floats of a packed output converted into the output tensor from element `at` (j->ofmt: uint8 at oinv,
 * or bf16) */
static void put_packed(const conv_job *j, const float *src, size_t n, size_t at)
{
    if (j->ofmt == FN_PACKED_U8)
        fn_gemm_vnni_to_u8(src, n, j->oinv, j->opk + at);
    else
        fn_gemm_avx512bf16.to_bf16(src, n, j->opk + at * 2);
}

/* A packed output's tile (rows of u->nr floats at ldc NR in the thread's output tile) converted into the
 * output tensor at row m, panel p (cout channels a row) */
static void store_packed(const conv_job *j, const fn_ukargs *u, size_t m, size_t p)
{
    const size_t N = (size_t)j->c->cout, col = p * (size_t)j->g->nr;
    for (int i = 0; i < u->mr; i++)
        put_packed(j, u->c + (size_t)i * u->ldc, (size_t)u->nr, (m + (size_t)i) * N + col);
}

/* Row pointers, tile-major then tap (ptr[(tile*ntaps + t)*MR + i]), for rows [m0, m0 + rows). Row taps
 * whose window crosses the left or right edge point at a zero-filled copy in edge (slot r*ntaps + t). */
static void build_rows(const conv_job *j, size_t m0, size_t rows, const float **ptr, float *edge)
{
    const fn_conv *c = j->c;
    const size_t mr = (size_t)j->g->mr, cin = (size_t)c->cin, ohw = (size_t)j->oh * j->ow, nt = (size_t)j->q.ntaps;
    const size_t rows_pad = conv_round_up(rows, mr);
    /* row r is output pixel (img, oy, ox) of m0 + r and row ri of tile ti: both stepped, not divided (a
     * division per row was 13% of conv1's time) */
    size_t img = m0 / ohw, rem = m0 % ohw, ti = 0, ri = 0;
    int oy = (int)(rem / (size_t)j->ow), ox = (int)(rem % (size_t)j->ow);
    for (size_t r = 0; r < rows_pad; r++) {
        const float **dst = ptr + ti * nt * mr + ri; /* tap t at dst[t * mr] */
        if (++ri == mr)
            ri = 0, ti++;
        if (r >= rows) { /* M edge: rows of zeros, never stored */
            for (size_t t = 0; t < nt; t++)
                dst[t * mr] = j->zeros;
            continue;
        }
        if (r > 0 && ++ox == j->ow) {
            ox = 0;
            if (++oy == j->oh)
                oy = 0, img++;
        }
        const float *base = j->in + img * (size_t)j->h * j->w * cin;
        size_t t = 0;
        if (j->q.rowtap) {
            const size_t es = conv_round_up(j->q.tapk, 16);
            int x0 = ox * c->stride - c->pad;
            for (int ky = 0; ky < c->kh; ky++, t++) {
                int y = oy * c->stride - c->pad + ky;
                if (y < 0 || y >= j->h) {
                    dst[t * mr] = j->zeros;
                } else if (x0 >= 0 && x0 + c->kw <= j->w) {
                    dst[t * mr] = base + ((size_t)y * j->w + (size_t)x0) * cin;
                } else {
                    float *e = edge + (r * nt + t) * es;
                    for (int kx = 0; kx < c->kw; kx++) {
                        int x = x0 + kx;
                        if (x >= 0 && x < j->w)
                            memcpy(e + (size_t)kx * cin, base + ((size_t)y * j->w + (size_t)x) * cin, cin * 4);
                        else
                            memset(e + (size_t)kx * cin, 0, cin * 4);
                    }
                    dst[t * mr] = e;
                }
            }
            continue;
        }
        for (int ky = 0; ky < c->kh; ky++) {
            int y = oy * c->stride - c->pad + ky;
            for (int kx = 0; kx < c->kw; kx++, t++) {
                int x = ox * c->stride - c->pad + kx;
                int inside = y >= 0 && y < j->h && x >= 0 && x < j->w;
                dst[t * mr] = inside ? base + ((size_t)y * j->w + (size_t)x) * cin : j->zeros;
            }
        }
    }
}

/* A 1x1 pad-0 packed view (q.cvt_ld): the chunk's rows [m0, m0 + rows), each one input pixel's cin_src
 * floats, converted into rows of cvt_ld words in buf; their pointers in ptr (one tap), M-edge rows at zeros. */
static void cvt_rows(const conv_job *j, size_t m0, size_t rows, const float **ptr, float *buf)
{
    const size_t mr = (size_t)j->g->mr, ld = j->q.cvt_ld, ohw = (size_t)j->oh * j->ow, s = (size_t)j->c->stride;
    const size_t rows_pad = conv_round_up(rows, mr);
    size_t img = m0 / ohw, rem = m0 % ohw, oy = rem / (size_t)j->ow, ox = rem % (size_t)j->ow; /* stepped */
    for (size_t r = 0; r < rows_pad; r++) {
        if (r >= rows) {
            ptr[r] = j->zeros;
            continue;
        }
        if (r > 0 && ++ox == (size_t)j->ow) {
            ox = 0;
            if (++oy == (size_t)j->oh)
                oy = 0, img++;
        }
        const float *px = j->src + ((img * (size_t)j->h + oy * s) * (size_t)j->w + ox * s) * j->cin_src;
        if (j->to_u8)
            j->to_u8(px, j->cin_src, j->inv, buf + r * ld);
        else
            j->to_bf16(px, j->cin_src, buf + r * ld);
        ptr[r] = buf + r * ld;
    }
}

/* Copy K block (taps t0..t0+nt, floats k0..k0+kt of each) of the chunk's rows into rows of ld floats. */
static void pack_block(const conv_job *j, const float *const *ptr, size_t rows_pad, size_t t0, size_t nt,
                       size_t k0, size_t kt, float *dst)
{
    const size_t mr = (size_t)j->g->mr, ntaps = (size_t)j->q.ntaps, ld = j->q.ld;
    for (size_t r = 0; r < rows_pad; r++) {
        const float *const *src = ptr + ((r / mr) * ntaps + t0) * mr + r % mr;
        float *d = dst + r * ld;
        for (size_t t = 0; t < nt;) { /* taps adjacent in memory (same ky, kx run inside the image): one copy */
            const float *s0 = src[t * mr] + k0;
            size_t run = 1;
            while (t + run < nt && k0 == 0 && kt == j->q.tapk && s0 != j->zeros &&
                   src[(t + run) * mr] == s0 + run * kt)
                run++;
            memcpy(d, s0, run * kt * sizeof(float));
            d += run * kt, t += run;
        }
    }
}

/* Prefetch of the B sliver needed next: `lines` cache lines split over `calls` micro-kernel calls (those
 * after a sliver's first tile, which find theirs in L2), per = lines per call. */
static size_t prefetch_per(size_t lines, size_t calls)
{
    return FN_CONV_PREFETCH && calls ? (lines + calls - 1) / calls : 0;
}

/* Call number `call` of a sliver's: 0 (its first tile) prefetches nothing, call i > 0 share i - 1 of nb. */
static void prefetch_share(fn_ukargs *u, const float *nb, size_t lines, size_t call, size_t per)
{
    size_t done = call ? (call - 1) * per : lines;
    u->pf = nb ? nb + done * 16 : NULL;
    u->pfn = nb && done < lines ? (int)(lines - done < per ? lines - done : per) : 0;
}

/* Winograd F(m x m,3x3): per chunk of tiles, input transform -> (m+2)^2 GEMMs (tiles x cin by cin x cout)
 * -> output transform with bias, residual and ReLU. */
static void wino_task(void *arg, int tid, int nth)
{
    conv_job *j = arg;
    const fn_conv *c = j->c;
    const conv_geom *q = &j->q;
    const fn_gemm_impl *g = j->g;
    const size_t mr = (size_t)g->mr, nr = (size_t)g->nr, N = (size_t)c->cout, cin = (size_t)c->cin;
    const int wm = q->wino, wa = q->wa, nxi = q->nxi;
    const size_t panels = (N + nr - 1) / nr, tc = q->tc;
    const size_t ty = (size_t)(j->oh + wm - 1) / (size_t)wm, tx = (size_t)(j->ow + wm - 1) / (size_t)wm;
    const fn_wino_in win = wm == 2 ? g->wino_in : g->wino4_in;
    const fn_wino_out wout = wm == 2 ? g->wino_out : g->wino4_out;
    const size_t T = (size_t)j->n * ty * tx, xs = panels * nr * cin;
    const float *U = c->packed + c->uoff[wm / 4];
    float *V = j->scratch + q->zeros + (size_t)tid * q->wino_thr, *Mb = V + (size_t)nxi * tc * q->ldv;
    const float **pp = (const float **)(void *)(Mb + (size_t)nxi * tc * q->ldm);
    const size_t vstride = tc * q->ldv, mstride = tc * q->ldm, ck = j->chunk;
    const size_t nsub = q->wnsub, ksub = q->wksub; /* K (cin) pieces */
    size_t p_begin = 0, p_end = panels;
    if (j->split_n && !j->dyn_n) { /* few tiles: every thread transforms all of them, takes its panels */
        p_begin = panels * (size_t)tid / (size_t)nth;
        p_end = panels * (size_t)(tid + 1) / (size_t)nth;
        if (p_begin >= p_end)
            return;
    }
    /* dyn_n: work items (chunk, group of dyn_step panels) taken in order as threads finish; a thread
     * transforms a chunk's tiles when its first item of that chunk comes (the tiles' V is its own) */
    const size_t step = j->dyn_n ? j->dyn_step : panels, ngroups = (panels + step - 1) / step;
    size_t have = (size_t)-1; /* the chunk whose tiles V holds */
    fn_ukargs u;
    u.ldc = q->ldm, u.ldr = 0, u.r = NULL, u.scale = NULL, u.relu = 0, u.ntaps = 1, u.bias = j->zeros, u.pf = NULL, u.pfn = 0;
    size_t split_next = 0;
    for (;;) {
        size_t ci;
        if (j->dyn_n) {
            size_t item = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed);
            ci = item / ngroups, p_begin = item % ngroups * step;
            p_end = p_begin + step < panels ? p_begin + step : panels;
        } else {
            ci = j->split_n ? split_next++ : atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed);
        }
        size_t t0 = ci * ck;
        if (t0 >= T)
            break;
        const size_t c0 = p_begin * nr, cn = (p_end * nr < N ? p_end * nr : N) - c0;
        size_t rows = T - t0 < ck ? T - t0 : ck, tiles = (rows + mr - 1) / mr;
        for (size_t r = 0; ci != have && r < tiles * mr; r++) {
            if (r >= rows) {
                for (int xi = 0; xi < nxi; xi++)
                    pp[(size_t)xi * tc + r] = j->zeros;
                continue;
            }
            size_t t = t0 + r, img = t / (ty * tx), rem = t % (ty * tx);
            int y0 = wm * (int)(rem / tx) - 1, x0 = wm * (int)(rem % tx) - 1;
            const float *base = j->in + img * (size_t)j->h * j->w * cin, *d[36];
            for (int a = 0; a < wa; a++)
                for (int b2 = 0; b2 < wa; b2++) {
                    int y = y0 + a, x = x0 + b2;
                    d[a * wa + b2] = y >= 0 && y < j->h && x >= 0 && x < j->w
                                         ? base + ((size_t)y * j->w + x) * cin
                                         : j->zeros;
                }
            win(d, cin, V + r * q->ldv, vstride);
            for (int xi = 0; xi < nxi; xi++)
                pp[(size_t)xi * tc + r] = V + (size_t)xi * vstride + r * q->ldv;
        }
        have = ci;
        for (int xi = 0; xi < nxi; xi++)
            for (size_t kb = 0; kb < nsub; kb++) {
                size_t k0 = kb * ksub;
                u.k0 = (int)k0, u.kt = (int)(cin - k0 < ksub ? cin - k0 : ksub);
                u.first = kb == 0, u.last = kb + 1 == nsub;
                for (size_t p = p_begin; p < p_end; p++) {
                    u.b = U + (size_t)xi * xs + (p * cin + k0) * nr;
                    u.nr = (int)(N - p * nr < nr ? N - p * nr : nr);
                    /* the sliver needed next (next panel, K block or component) is prefetched by the
                     * tiles after the first, as in conv_task */
                    const float *nb = NULL;
                    size_t nk = 0;
                    if (p + 1 < p_end)
                        nb = u.b + cin * nr, nk = (size_t)u.kt;
                    else if (kb + 1 < nsub)
                        nb = U + (size_t)xi * xs + (p_begin * cin + k0 + ksub) * nr,
                        nk = cin - k0 - ksub < ksub ? cin - k0 - ksub : ksub;
                    else if (xi + 1 < nxi)
                        nb = U + (size_t)(xi + 1) * xs + p_begin * cin * nr, nk = cin < ksub ? cin : ksub;
                    const size_t nl = nk * nr / 16, per = prefetch_per(nl, tiles - 1);
                    for (size_t ti = 0; ti < tiles; ti++) {
                        prefetch_share(&u, nb, nl, ti, per);
                        u.a = pp + (size_t)xi * tc + ti * mr;
                        u.mr = (int)(rows - ti * mr < mr ? rows - ti * mr : mr);
                        u.c = Mb + (size_t)xi * mstride + ti * mr * q->ldm + p * nr;
                        g->kernel(&u);
                    }
                }
            }
        for (size_t r = 0; r < rows; r++) {
            size_t t = t0 + r, img = t / (ty * tx), rem = t % (ty * tx);
            int oy = wm * (int)(rem / tx), ox = wm * (int)(rem % tx);
            size_t off = (((img * (size_t)j->oh) + (size_t)oy) * (size_t)j->ow + (size_t)ox) * N + c0;
            const int ny = j->oh - oy < wm ? j->oh - oy : wm, nx = j->ow - ox < wm ? j->ow - ox : wm;
            if (!j->ofmt) {
                wout(Mb + r * q->ldm + c0, mstride, cn, c->bias + c0, j->out + off, j->res ? j->res + off : NULL,
                     (size_t)j->ow * N, N, ny, nx, j->relu);
                continue;
            }
            /* packed output: the tile's pixels into the thread's tile buffer, then converted into place */
            float *ot = Mb + (size_t)nxi * tc * q->ldm + PTR_FLOATS((size_t)nxi * tc);
            wout(Mb + r * q->ldm + c0, mstride, cn, c->bias + c0, ot, NULL, (size_t)wm * cn, cn, ny, nx, j->relu);
            for (int y = 0; y < ny; y++)
                for (int x = 0; x < nx; x++)
                    put_packed(j, ot + ((size_t)y * wm + (size_t)x) * cn, cn,
                               off + ((size_t)y * j->ow + (size_t)x) * N);
        }
    }
}

/* The output of the tile whose first row is m, in panel p: out (cout channels a row, with the residual), or
 * with a split, out (channels below split) or out2 (the others), each its own tensor with its own ReLU. */
static inline void conv_tile_out(const conv_job *j, size_t m, size_t p, fn_ukargs *u)
{
    const size_t N = (size_t)j->c->cout, col = p * (size_t)j->g->nr;
    if (!j->split) {
        u->c = j->out + m * N + col;
        u->r = j->res ? j->res + m * N + col : NULL;
        u->ldc = N, u->relu = j->relu;
    } else if (col < j->split) {
        u->c = j->out + m * j->split + col, u->r = NULL;
        u->ldc = j->split, u->relu = j->relu;
    } else {
        u->c = j->out2 + m * (N - j->split) + (col - j->split), u->r = NULL;
        u->ldc = N - j->split, u->relu = j->relu2;
    }
}

static void conv_task(void *arg, int tid, int nth)
{
    conv_job *j = arg;
    const fn_conv *c = j->c;
    const conv_geom *q = &j->q;
    const size_t mr = (size_t)j->g->mr, nr = (size_t)j->g->nr, N = (size_t)c->cout;
    const size_t panels = (N + nr - 1) / nr, nt = (size_t)q->ntaps, tapk = q->tapk;
    size_t p_begin = 0, p_end = panels;
    if (j->split_n && !j->dyn_n) { /* small M: static split of the panels, every thread walks all rows */
        p_begin = panels * (size_t)tid / (size_t)nth;
        p_end = panels * (size_t)(tid + 1) / (size_t)nth;
        if (p_begin >= p_end)
            return;
    }
    float *mine = j->scratch + q->zeros + (size_t)tid * q->per_thr;
    const float **ptr = (const float **)(void *)mine;
    const float **pptr = (const float **)(void *)(mine + q->ptr_floats);
    float *packed = mine + q->ptr_floats + q->pptr_floats;
    float *edge = packed + (q->pack ? q->mc * q->ld : 0);
    if (q->pack)
        for (size_t r = 0; r < q->mc; r++)
            pptr[r] = packed + r * q->ld;

    fn_ukargs u;
    u.ldc = u.ldr = N;
    u.relu = j->relu;
    u.pf = NULL, u.pfn = 0;
    size_t split_next = 0;
    for (;;) {
        size_t m0 = (j->split_n ? split_next++ : atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed)) *
                    j->chunk;
        if (m0 >= j->M)
            break;
        size_t rows = j->M - m0 < j->chunk ? j->M - m0 : j->chunk, tiles = (rows + mr - 1) / mr;
        if (q->cvt_ld)
            cvt_rows(j, m0, rows, ptr, mine + q->ptr_floats);
        else
            build_rows(j, m0, rows, ptr, edge);
        for (size_t kb = 0; kb < q->nblocks; kb++) {
            size_t t0, k0, tn, kt;
            conv_k_block(q, kb, &t0, &k0, &tn, &kt);
            if (q->pack) {
                pack_block(j, ptr, tiles * mr, t0, tn, k0, kt, packed);
                u.ntaps = 1, u.kt = (int)(tn * kt), u.k0 = 0;
            } else {
                u.ntaps = (int)tn, u.kt = (int)kt, u.k0 = (int)k0;
            }
            u.first = kb == 0, u.last = kb + 1 == q->nblocks;
            if (FN_CONV_TILE_OUTER && q->nblocks == 1) {
                /* one K block: a tile's rows are finished across a group of panels (whose B slivers
                 * fit in the plan's nc_bytes of L2) before the next tile */
                size_t group = q->nc_bytes / (j->K * nr * sizeof(float));
                group = group < 1 ? 1 : group;
                /* dyn_n (one chunk, channels split): groups of at most `step` panels taken as threads
                 * finish (a descheduled thread delays no one), else this thread's range in order */
                const size_t step = j->dyn_n && j->dyn_step < group ? j->dyn_step : group;
                /* dyn_n: a thread claims its next group before it runs the current one, so that what it
                 * prefetches is what it will run (claimed in turn, the group after its own is usually the
                 * other thread's, and a prefetch fills the L2 of the core that issues it) */
                size_t pg = j->dyn_n ? atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed) * step : p_begin;
                while (pg < p_end) {
                    size_t pe = pg + step < p_end ? pg + step : p_end;
                    size_t pn = j->dyn_n ? atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed) * step : pe;
                    /* the next group's slivers are prefetched by the calls after the first tile, which find
                     * this group's in L2 */
                    size_t nx = pn < p_end ? (pn + step < p_end ? pn + step : p_end) - pn : 0;
                    const float *nb = nx ? c->packed + pn * j->K * nr : NULL;
                    const size_t lines = nx * j->K * nr / 16, per = prefetch_per(lines, (tiles - 1) * (pe - pg));
                    for (size_t ti = 0; ti < tiles; ti++) {
                        size_t r0 = ti * mr;
                        u.a = q->pack ? pptr + r0 : ptr + (ti * nt + t0) * mr;
                        u.mr = (int)(rows - r0 < mr ? rows - r0 : mr);
                        for (size_t p = pg; p < pe; p++) {
                            /* call 0: the first tile's; then one share per (tile, panel) */
                            prefetch_share(&u, nb, lines, ti ? (ti - 1) * (pe - pg) + (p - pg) + 1 : 0, per);
                            u.b = c->packed + (p * j->K + t0 * tapk + k0) * nr;
                            u.bias = c->bias + p * nr;
                            u.scale = c->scale8 ? c->scale8 + p * nr : NULL;
                            u.nr = (int)(N - p * nr < nr ? N - p * nr : nr);
                            conv_tile_out(j, m0 + r0, p, &u);
                            if (j->ofmt)
                                u.c = mine + q->otile, u.ldc = nr;
                            j->g->kernel(&u);
                            if (j->ofmt)
                                store_packed(j, &u, m0 + r0, p);
                        }
                    }
                    pg = pn;
                }
                continue;
            }
            /* several K blocks: panel p's sliver is used by every tile; the calls after the first tile
             * prefetch the next panel's (same K block; after the last panel, the next block's first) */
            const size_t lines = tn * kt * nr / 16, per = prefetch_per(lines, tiles - 1);
            size_t nx_lines = 0;
            const float *nx_b = NULL;
            if (kb + 1 < q->nblocks) {
                size_t t1, k1, tn1, kt1;
                conv_k_block(q, kb + 1, &t1, &k1, &tn1, &kt1);
                nx_b = c->packed + (p_begin * j->K + t1 * tapk + k1) * nr;
                nx_lines = tn1 * kt1 * nr / 16;
            }
            for (size_t p = p_begin; p < p_end; p++) {
                u.b = c->packed + (p * j->K + t0 * tapk + k0) * nr;
                u.bias = c->bias + p * nr;
                u.scale = c->scale8 ? c->scale8 + p * nr : NULL;
                u.nr = (int)(N - p * nr < nr ? N - p * nr : nr);
                for (size_t ti = 0; ti < tiles; ti++) {
                    if (p + 1 < p_end)
                        prefetch_share(&u, u.b + j->K * nr, lines, ti, per);
                    else
                        prefetch_share(&u, nx_b, nx_lines, ti, per);
                    size_t r0 = ti * mr;
                    u.a = q->pack ? pptr + r0 : ptr + (ti * nt + t0) * mr;
                    u.mr = (int)(rows - r0 < mr ? rows - r0 : mr);
                    conv_tile_out(j, m0 + r0, p, &u);
                    j->g->kernel(&u);
                }
            }
        }
    }
}

typedef struct cvt_job {
    const float *src;
    size_t n; /* floats, even */
    void *dst;
    void (*to_bf16)(const float *src, size_t n, void *dst);
} cvt_job;

typedef struct q8_job {
    const float *src;
    size_t n; /* floats */
    float inv;
    void *dst;
    void (*to_u8)(const float *src, size_t n, float inv, void *dst);
} q8_job;

static void q8_task(void *arg, int tid, int nth)
{
    const q8_job *qj = arg;
    size_t a = conv_round_up(qj->n * (size_t)tid / (size_t)nth, 64), b = conv_round_up(qj->n * (size_t)(tid + 1) / (size_t)nth, 64);
    b = b < qj->n ? b : qj->n;
    if (a < b)
        qj->to_u8(qj->src + a, b - a, qj->inv, (uint8_t *)qj->dst + a);
}

static void cvt_task(void *arg, int tid, int nth)
{
    const cvt_job *cj = arg;
    size_t a = conv_round_up(cj->n * (size_t)tid / (size_t)nth, 32), b = conv_round_up(cj->n * (size_t)(tid + 1) / (size_t)nth, 32);
    b = b < cj->n ? b : cj->n;
    if (a < b)
        cj->to_bf16(cj->src + a, b - a, (uint16_t *)cj->dst + a);
}

static void conv_run(const fn_conv *c, fn_pool *pool, const float *in, int in_fmt, int n, int h, int w, float *out,
                     const float *residual, int relu, size_t split, float *out2, int relu2, int out_fmt, float out_inv,
                     float *scratch)
{
    conv_plan p;
    if (!conv_plan_make(c, n, h, w, fn_pool_threads(pool), in_fmt != FN_PACKED_NONE, &p))
        return;
    fn_conv view;
    conv_job j;
    j.c = c;
    j.g = p.g;
    j.q = p.q;
    j.in = in, j.res = residual, j.out = out, j.scratch = scratch;
    j.n = n, j.h = h, j.w = w, j.relu = relu;
    j.oh = p.oh, j.ow = p.ow, j.M = p.M, j.K = p.K;
    j.split_n = p.split_n, j.chunk = p.chunk, j.wino = p.wino;
    j.dyn_n = p.dyn_n, j.dyn_step = p.dyn_step;
    j.split = split, j.out2 = out2, j.relu2 = relu2;
    j.src = in, j.cin_src = (size_t)c->cin, j.inv = 0, j.to_bf16 = NULL, j.to_u8 = NULL;
    j.ofmt = out_fmt, j.oinv = out_inv, j.opk = (unsigned char *)out;
    if (in_fmt != FN_PACKED_NONE) {
        /* the input is the packed view already (the layer before wrote it so): read in place */
        view = p.bf16 ? conv_bf16_view(c) : conv_int8_view(c);
        j.c = &view;
    } else if (p.q.cvt_ld) {
        /* 1x1 on a packed view: each thread converts its chunks' rows (cvt_rows), no copy of the input */
        view = p.bf16 ? conv_bf16_view(c) : conv_int8_view(c);
        if (p.bf16)
            j.to_bf16 = fn_gemm_avx512bf16.to_bf16;
        else
            j.to_u8 = fn_gemm_vnni_to_u8, j.inv = 1.0f / c->act_scale;
        j.c = &view;
    } else if (p.bf16) {
        /* the input converted once (in parallel) into the front of scratch, then the bf16 view of the
         * layer (a word = two channels) on the bf16 kernel */
        view = conv_bf16_view(c);
        cvt_job cj = {in, (size_t)n * h * w * c->cin, scratch, fn_gemm_avx512bf16.to_bf16};
        fn_pool_run(pool, cvt_task, &cj);
        j.c = &view;
        j.in = scratch, j.scratch = scratch + p.in16;
    } else if (p.int8) {
        /* the input quantised once (in parallel) to uint8 steps of act_scale into the front of scratch,
         * then the int8 view of the layer (a word = four channels) on the VNNI or AMX kernel */
        view = conv_int8_view(c);
        q8_job qj = {in, (size_t)n * h * w * c->cin, 1.0f / c->act_scale, scratch, fn_gemm_vnni_to_u8};
        fn_pool_run(pool, q8_task, &qj);
        j.c = &view;
        j.in = scratch, j.scratch = scratch + p.in8;
    }
    memset(j.scratch, 0, j.q.zeros * sizeof(float));
    j.zeros = j.scratch;
    atomic_init(&j.next, 0);
    fn_pool_run(pool, j.wino ? wino_task : conv_task, &j);
}

void fn_conv_forward(const fn_conv *c, fn_pool *pool, const float *in, int n, int h, int w, float *out,
                     const float *residual, int relu, float *scratch)
{
    conv_run(c, pool, in, FN_PACKED_NONE, n, h, w, out, residual, relu, 0, NULL, 0, FN_PACKED_NONE, 0, scratch);
}

void fn_conv_forward_packed(const fn_conv *c, fn_pool *pool, const void *in, int in_fmt, int n, int h, int w,
                            void *out, int out_fmt, float out_inv, const float *residual, int relu, float *scratch)
{
    if (out_fmt != FN_PACKED_NONE && (residual || !fn_conv_packed_output_ok(c, n, h, w, fn_pool_threads(pool))))
        return;
    if (in_fmt != FN_PACKED_NONE && in_fmt != fn_conv_packed_input(c, n, h, w, fn_pool_threads(pool)))
        return;
    conv_run(c, pool, in, in_fmt, n, h, w, out, residual, relu, 0, NULL, 0, out_fmt, out_inv, scratch);
}

int fn_conv_split_ok(int kh, int kw, int stride, int pad, int split, int cout)
{
    /* whole panels of every table (NR 8, 16, 32 divide FN_CONV_NR_MAX), never Winograd (whose output
     * transform writes one tensor) */
    return split > 0 && split < cout && split % FN_CONV_NR_MAX == 0 && !conv_wino_ok(kh, kw, stride, pad);
}

void fn_conv_forward_split(const fn_conv *c, fn_pool *pool, const float *in, int n, int h, int w, int split,
                           float *out, int relu, float *out2, int relu2, float *scratch)
{
    if (!fn_conv_split_ok(c->kh, c->kw, c->stride, c->pad, split, c->cout) || c->wino)
        return;
    conv_run(c, pool, in, FN_PACKED_NONE, n, h, w, out, NULL, relu, (size_t)split, out2, relu2, FN_PACKED_NONE, 0,
             scratch);
}
