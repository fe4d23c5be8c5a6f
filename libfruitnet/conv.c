/*
 * conv.c — the convolution layer on the GEMM micro-kernels (gemm.h).
 *
 * out[M = n*oh*ow][cout] = patches[M][K = kh*kw*cin] x W[K][cout] (+bias,
 * +residual, ReLU fused in the micro-kernel's epilogue, so each output is
 * written once). Weights are packed once at init into NR-wide column panels.
 * Activations are packed per thread, MC rows at a time, into MR-row panels:
 * for 1x1 stride-1 convolutions that is a transpose of input rows (no
 * im2col), for strided 1x1 a subsampled one, and for kxk the im2col is done
 * inside this packing (no full im2col buffer). The full K is kept in a panel,
 * so the epilogue runs once per tile and a residual may alias the output.
 * Work is split over M between threads, or over N panels when M is small.
 */
#include "internal.h"
#include "gemm.h"

#include <stdlib.h>
#include <string.h>

#define A_CHUNK_FLOATS (96 * 1024) /* target size of one thread's packed A block */

static const fn_gemm_impl *impl_for(fn_isa isa)
{
    switch (isa) {
    case FN_ISA_AVX512: return &fn_gemm_avx512;
    case FN_ISA_AVX2: return &fn_gemm_avx2;
    default: return &fn_gemm_portable;
    }
}

int fn_conv_init(fn_conv *c, int kh, int kw, int stride, int pad, int cin, int cout, const float *w,
                 const float *bias, fn_isa isa, fn_error *err)
{
    memset(c, 0, sizeof *c);
    if (kh < 1 || kw < 1 || stride < 1 || pad < 0 || cin < 1 || cout < 1 || kh > 64 || kw > 64 || cin > (1 << 20) ||
        cout > (1 << 20) || !w || !bias)
        return fn_fail(err, FN_EARG, "conv: invalid shape %dx%d/%d pad %d, %d->%d", kh, kw, stride, pad, cin, cout);
    const fn_gemm_impl *g = impl_for(isa);
    size_t K = (size_t)kh * kw * cin, NR = (size_t)g->nr;
    size_t panels = ((size_t)cout + NR - 1) / NR, len;
    if (!fn_mul_size(panels * NR, K, &len) || !(c->packed = fn_aalloc(len * sizeof(float))))
        return fn_fail(err, FN_ENOMEM, "conv: out of memory packing %zux%d weights", K, cout);
    c->bias = fn_aalloc(panels * NR * sizeof(float) + 64);
    if (!c->bias) {
        fn_afree(c->packed);
        c->packed = NULL;
        return fn_fail(err, FN_ENOMEM, "conv: out of memory");
    }
    memset(c->bias, 0, panels * NR * sizeof(float) + 64);
    memcpy(c->bias, bias, (size_t)cout * sizeof(float));
    for (size_t p = 0; p < panels; p++)
        for (size_t k = 0; k < K; k++) {
            float *dst = c->packed + (p * K + k) * NR;
            for (size_t j = 0; j < NR; j++) {
                size_t col = p * NR + j;
                dst[j] = col < (size_t)cout ? w[k * (size_t)cout + col] : 0.0f;
            }
        }
    c->packed_len = len;
    c->kh = kh, c->kw = kw, c->stride = stride, c->pad = pad, c->cin = cin, c->cout = cout, c->isa = isa;
    return FN_OK;
}

void fn_conv_free(fn_conv *c)
{
    fn_afree(c->packed);
    fn_afree(c->bias);
    c->packed = c->bias = NULL;
}

static size_t mc_rows(const fn_conv *c, int mr)
{
    size_t K = (size_t)c->kh * c->kw * c->cin;
    size_t mc = A_CHUNK_FLOATS / K;
    mc = (mc + (size_t)mr - 1) / (size_t)mr * (size_t)mr;
    if (mc < (size_t)mr)
        mc = (size_t)mr;
    if (mc > 64 * (size_t)mr)
        mc = 64 * (size_t)mr;
    return mc;
}

size_t fn_conv_scratch_floats(const fn_conv *c, int n, int h, int w, int nthreads)
{
    const fn_gemm_impl *g = impl_for(c->isa);
    size_t K = (size_t)c->kh * c->kw * c->cin;
    return (size_t)(nthreads > 0 ? nthreads : 1) * (mc_rows(c, g->mr) * K + 16);
}

/* Pack rows [m0, m0+rows) of the patch matrix into MR-row panels: Ap[panel][k][MR]. */
static void pack_a(const fn_conv *c, const float *in, int h, int w, int oh, int ow, size_t m0, size_t rows, int mr,
                   float *Ap)
{
    const size_t K = (size_t)c->kh * c->kw * c->cin, cin = (size_t)c->cin;
    const size_t ohw = (size_t)oh * ow;
    for (size_t p0 = 0; p0 < rows; p0 += (size_t)mr) {
        float *panel = Ap + p0 * K;
        for (int i = 0; i < mr; i++) {
            size_t r = p0 + (size_t)i;
            if (r >= rows) { /* M edge: zero rows */
                for (size_t k = 0; k < K; k++)
                    panel[k * (size_t)mr + (size_t)i] = 0.0f;
                continue;
            }
            size_t m = m0 + r, img = m / ohw, rem = m % ohw;
            int oy = (int)(rem / (size_t)ow), ox = (int)(rem % (size_t)ow);
            if (c->kh == 1 && c->kw == 1 && c->pad == 0) {
                const float *src = in + ((img * (size_t)h + (size_t)(oy * c->stride)) * (size_t)w +
                                         (size_t)(ox * c->stride)) * cin;
                float *dst = panel + i;
                for (size_t k = 0; k < K; k++)
                    dst[k * (size_t)mr] = src[k];
                continue;
            }
            size_t k = 0;
            for (int ky = 0; ky < c->kh; ky++) {
                int y = oy * c->stride - c->pad + ky;
                for (int kx = 0; kx < c->kw; kx++, k += cin) {
                    int x = ox * c->stride - c->pad + kx;
                    float *dst = panel + k * (size_t)mr + (size_t)i;
                    if (y < 0 || y >= h || x < 0 || x >= w) {
                        for (size_t ci = 0; ci < cin; ci++)
                            dst[ci * (size_t)mr] = 0.0f;
                    } else {
                        const float *src = in + ((img * (size_t)h + (size_t)y) * (size_t)w + (size_t)x) * cin;
                        for (size_t ci = 0; ci < cin; ci++)
                            dst[ci * (size_t)mr] = src[ci];
                    }
                }
            }
        }
    }
}

typedef struct conv_job {
    const fn_conv *c;
    const fn_gemm_impl *g;
    const float *in;
    const float *res;
    float *out, *scratch;
    int n, h, w, oh, ow, relu, split_n;
    size_t M, K, mc, scratch_per;
} conv_job;

static void conv_task(void *arg, int tid, int nth)
{
    conv_job *j = arg;
    const fn_conv *c = j->c;
    const int mr = j->g->mr, nr = j->g->nr;
    const size_t N = (size_t)c->cout, panels = (N + (size_t)nr - 1) / (size_t)nr;
    size_t m_begin = 0, m_end = j->M, p_begin = 0, p_end = panels;
    if (j->split_n) {
        p_begin = panels * (size_t)tid / (size_t)nth;
        p_end = panels * (size_t)(tid + 1) / (size_t)nth;
    } else {
        size_t tiles = (j->M + (size_t)mr - 1) / (size_t)mr;
        m_begin = tiles * (size_t)tid / (size_t)nth * (size_t)mr;
        m_end = tiles * (size_t)(tid + 1) / (size_t)nth * (size_t)mr;
        if (m_end > j->M)
            m_end = j->M;
    }
    if (m_begin >= m_end || p_begin >= p_end)
        return;
    float *Ap = j->scratch + (size_t)tid * j->scratch_per;
    for (size_t m0 = m_begin; m0 < m_end; m0 += j->mc) {
        size_t rows = m_end - m0 < j->mc ? m_end - m0 : j->mc;
        pack_a(c, j->in, j->h, j->w, j->oh, j->ow, m0, rows, mr, Ap);
        for (size_t p = p_begin; p < p_end; p++) {
            const float *Bp = c->packed + p * j->K * (size_t)nr;
            int ncols = (int)(N - p * (size_t)nr < (size_t)nr ? N - p * (size_t)nr : (size_t)nr);
            for (size_t r0 = 0; r0 < rows; r0 += (size_t)mr) {
                int mrows = (int)(rows - r0 < (size_t)mr ? rows - r0 : (size_t)mr);
                size_t off = (m0 + r0) * N + p * (size_t)nr;
                j->g->kernel((int)j->K, Ap + r0 * j->K, Bp, j->out + off, N, mrows, ncols, c->bias + p * (size_t)nr,
                             j->res ? j->res + off : NULL, N, j->relu);
            }
        }
    }
}

void fn_conv_forward(const fn_conv *c, fn_pool *pool, const float *in, int n, int h, int w, float *out,
                     const float *residual, int relu, float *scratch)
{
    conv_job j;
    j.c = c;
    j.g = impl_for(c->isa);
    j.in = in, j.res = residual, j.out = out, j.scratch = scratch;
    j.n = n, j.h = h, j.w = w, j.relu = relu;
    j.oh = fn_conv_out_dim(h, c->kh, c->stride, c->pad);
    j.ow = fn_conv_out_dim(w, c->kw, c->stride, c->pad);
    j.M = (size_t)n * j.oh * j.ow;
    j.K = (size_t)c->kh * c->kw * c->cin;
    j.mc = mc_rows(c, j.g->mr);
    j.scratch_per = j.mc * j.K + 16;
    int nth = fn_pool_threads(pool);
    size_t tiles = (j.M + (size_t)j.g->mr - 1) / (size_t)j.g->mr;
    size_t panels = ((size_t)c->cout + (size_t)j.g->nr - 1) / (size_t)j.g->nr;
    /* few M tiles per thread: split the output channels instead */
    j.split_n = nth > 1 && tiles < 8 * (size_t)nth && panels >= (size_t)nth;
    if (j.M == 0)
        return;
    fn_pool_run(pool, conv_task, &j);
}
