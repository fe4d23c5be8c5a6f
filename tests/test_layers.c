/*
 * test_layers.c — every layer against a naive double-precision reference on
 * random data, on every instruction set this CPU supports: convolutions with
 * stride/padding variants and odd sizes (residual, ReLU, 1 and 2 threads),
 * max pool with padding, global average pool, dense, softmax, thread pool.
 */
#include "testutil.h"
#include "conv.h"
#include "conv_plan.h"
#include "gemm.h"
#include "layers.h"
#include "threadpool.h"
#include "util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct conv_case {
    int n, h, w, cin, cout, k, stride, pad;
} conv_case;

static void run_conv_case(fn_isa isa, const conv_case *c, int with_res, int relu, int threads, int in_place, int wino)
{
    int oh = fn_conv_out_dim(c->h, c->k, c->stride, c->pad), ow = fn_conv_out_dim(c->w, c->k, c->stride, c->pad);
    size_t nin = (size_t)c->n * c->h * c->w * c->cin, nout = (size_t)c->n * oh * ow * c->cout;
    size_t nw = (size_t)c->k * c->k * c->cin * c->cout;
    float *in = malloc(nin * 4), *W = malloc(nw * 4), *b = malloc((size_t)c->cout * 4);
    float *res = malloc(nout * 4), *out = malloc(nout * 4);
    double *ref = malloc(nout * sizeof(double));
    tu_fill_random(in, nin, 1 + c->cin, -1, 1);
    tu_fill_random(W, nw, 2 + c->cout, -0.5f, 0.5f);
    tu_fill_random(b, (size_t)c->cout, 3, -1, 1);
    tu_fill_random(res, nout, 4, -1, 1);
    tu_conv_ref(in, c->n, c->h, c->w, c->cin, W, b, c->k, c->stride, c->pad, c->cout, with_res ? res : NULL, relu, ref,
             oh, ow);
    fn_conv conv;
    fn_error e;
    assert_int_equal(fn_conv_init(&conv, c->k, c->k, c->stride, c->pad, c->cin, c->cout, W, b, wino, isa, &e), FN_OK);
    fn_pool *pool = fn_pool_create(threads);
    float *scratch = fn_aalloc(fn_conv_scratch_floats(&conv, c->n, c->h, c->w, threads) * 4 + 64);
    if (in_place) { /* residual in the output buffer, as the model does */
        memcpy(out, res, nout * 4);
        fn_conv_forward(&conv, pool, in, c->n, c->h, c->w, out, with_res ? out : NULL, relu, scratch);
    } else {
        fn_conv_forward(&conv, pool, in, c->n, c->h, c->w, out, with_res ? res : NULL, relu, scratch);
    }
    /* float accumulation of K products |x*w| <= 0.5 with random signs: partial sums ~ 0.2*sqrt(K), each
     * of the K roundings <= eps/2 of that, random-walk total ~ 6e-8 * 0.2 * K; the bound 4e-6*(1+sqrt(K))
     * is ~10x that for K <= 5000 yet far below any indexing error (O(0.1)) */
    double K = (double)c->k * c->k * c->cin, tol = 1e-6 * (1 + sqrt(K)) * 4, worst = 0;
    /* F(4x4,3x3)'s transforms (entries up to 5 in B^T, 8 in A^T, 1/24 in G) amplify the rounding of the
     * transformed products: measured 10-17x the direct error on these cases, allowed 16x the bound (still
     * 100x below an indexing error on outputs of magnitude ~10) */
    if (conv.wino & FN_WINO_F4)
        tol *= 16;
    for (size_t i = 0; i < nout; i++) {
        double d = fabs(out[i] - ref[i]);
        if (d > worst)
            worst = d;
    }
    if (getenv("FRUITNET_TEST_VERBOSE"))
        print_message("%s conv %dx%d/%d pad %d n%d %dx%dx%d->%d res %d relu %d thr %d wino %d: max err %.3g (tol %.3g)\n",
                 fn_isa_name(isa), c->k, c->k, c->stride, c->pad, c->n, c->h, c->w, c->cin, c->cout, with_res, relu,
                 threads, conv.wino, worst, tol);
    if (!(worst <= tol))
        fail_msg("%s conv %dx%d/%d pad %d n%d %dx%dx%d->%d res %d relu %d thr %d wino %d: max err %.3g > %.3g",
                 fn_isa_name(isa), c->k, c->k, c->stride, c->pad, c->n, c->h, c->w, c->cin, c->cout, with_res, relu,
                 threads, conv.wino, worst, tol);
    fn_afree(scratch);
    fn_pool_destroy(pool);
    fn_conv_free(&conv);
    free(in), free(W), free(b), free(res), free(out), free(ref);
}

static void test_conv_all_isas(void **s)
{
    (void)s;
    static const conv_case cases[] = {
        {1, 7, 7, 64, 256, 1, 1, 0},  {2, 5, 5, 33, 70, 1, 1, 0},   {3, 13, 13, 17, 33, 1, 2, 0},
        {1, 14, 14, 64, 128, 1, 2, 0}, {2, 7, 7, 32, 48, 3, 1, 1},  {1, 13, 5, 3, 17, 3, 1, 1},
        {1, 1, 1, 70, 3, 3, 1, 1},     {1, 23, 23, 3, 64, 7, 2, 3}, {3, 5, 7, 3, 16, 7, 2, 3},
        {1, 1, 1, 1, 1, 1, 1, 0},      {2, 9, 9, 40, 31, 3, 2, 1},  {1, 56, 56, 8, 64, 1, 1, 0},
        /* A blocks copied into padded rows (cin*stride a multiple of 512: rows would share L1 sets) */
        {1, 5, 5, 256, 40, 1, 2, 0},   {1, 5, 5, 512, 33, 3, 1, 1}, {3, 7, 5, 512, 70, 1, 1, 0},
        /* K split inside a tap (cin > KC) and over many blocks, read in place */
        {1, 5, 7, 600, 17, 1, 1, 0},   {2, 5, 7, 600, 17, 3, 1, 1}, {3, 7, 5, 17, 70, 3, 1, 1},
        {1, 13, 1, 33, 3, 3, 1, 1},
        /* enough 2x2 tiles for the Winograd F(2x2,3x3) path (odd sizes: partial tiles at the edges) */
        {2, 23, 21, 17, 33, 3, 1, 1},  {1, 30, 29, 70, 40, 3, 1, 1}, {4, 14, 14, 600, 20, 3, 1, 1},
        /* enough 4x4 tiles for F(4x4,3x3) when both are there (>= 2 chunks per thread), partial edge tiles */
        {2, 43, 38, 24, 35, 3, 1, 1},
    };
    fn_isa isas[3];
    int ni = tu_supported_isas(isas);
    for (int i = 0; i < ni; i++)
        for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
            for (int v = 0; v < 4; v++)
                for (int wino = 0; wino <= 6; wino += 2) /* direct, F(2x2,3x3), F(4x4,3x3), both (3x3/1 only) */
                    if (wino == 0 || (cases[c].k == 3 && cases[c].stride == 1 && cases[c].pad == 1))
                        run_conv_case(isas[i], &cases[c], v & 1, (v >> 1) & 1, 1 + (int)(c % 2), 0, wino);
    print_message("[ layers   ] conv: %zu shapes x 4 variants on %d ISA(s) match the naive reference\n",
                  sizeof cases / sizeof cases[0], ni);
}

static void test_conv_inplace_residual(void **s)
{
    (void)s;
    /* one K block, K split in a tap (in place: the first block reads the residual, the others the output),
     * packed blocks, and Winograd with the output channels split */
    static const conv_case cases[] = {{2, 7, 7, 64, 96, 1, 1, 0}, {1, 5, 5, 600, 64, 1, 1, 0}, {1, 5, 5, 512, 40, 3, 1, 1},
                                     {2, 23, 21, 17, 48, 3, 1, 1},
                                     /* few Winograd tiles, many panels: on 2 threads the (chunk, panel group)
                                      * items are shared out dynamically, over one chunk and over three */
                                     {1, 14, 14, 64, 160, 3, 1, 1}, {3, 14, 14, 40, 100, 3, 1, 1}};
    fn_isa isas[3];
    int ni = tu_supported_isas(isas);
    for (int i = 0; i < ni; i++)
        for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
            for (int t = 1; t <= 2; t++)
                for (int wino = 0; wino <= 6; wino += 2)
                    run_conv_case(isas[i], &cases[c], 1, 1, t, 1, wino);
}

/* fn_conv_forward_split: two layers' weights side by side in one conv give, byte for byte, what each layer
 * gives on its own (its outputs summed in the same order), each part in its own tensor with its own ReLU */
static void test_conv_split(void **s)
{
    (void)s;
    /* n, h, w, cin, c1, c2, stride: one K block (tile-outer loop; channels split at batch 1), packed A
     * blocks (cin*stride % 512 == 0), several K blocks (cin > KC), a partial last panel */
    static const int cases[][7] = {{2, 9, 9, 40, 64, 40, 2},   {1, 14, 14, 64, 256, 64, 1}, {1, 7, 7, 256, 512, 128, 2},
                                   {3, 5, 5, 600, 32, 17, 1},  {1, 5, 5, 256, 96, 40, 2},   {1, 3, 3, 2500, 64, 33, 1}};
    fn_isa isas[3];
    int ni = tu_supported_isas(isas);
    for (int i = 0; i < ni; i++)
        for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
            for (int t = 1; t <= 2; t++) {
                const int n = cases[c][0], h = cases[c][1], w = cases[c][2], cin = cases[c][3], c1 = cases[c][4],
                          c2 = cases[c][5], st = cases[c][6], ct = c1 + c2;
                const int oh = fn_conv_out_dim(h, 1, st, 0), ow = fn_conv_out_dim(w, 1, st, 0);
                const size_t nin = (size_t)n * h * w * cin, m = (size_t)n * oh * ow;
                float *in = malloc(nin * 4), *W = malloc((size_t)cin * ct * 4), *b = malloc((size_t)ct * 4);
                float *W1 = malloc((size_t)cin * c1 * 4), *W2 = malloc((size_t)cin * c2 * 4);
                float *o1 = malloc(m * c1 * 4), *o2 = malloc(m * c2 * 4), *r1 = malloc(m * c1 * 4),
                      *r2 = malloc(m * c2 * 4);
                tu_fill_random(in, nin, 5 + cin, -1, 1);
                tu_fill_random(W, (size_t)cin * ct, 6 + ct, -0.5f, 0.5f);
                tu_fill_random(b, (size_t)ct, 7, -1, 1);
                for (int k = 0; k < cin; k++) {
                    memcpy(W1 + (size_t)k * c1, W + (size_t)k * ct, (size_t)c1 * 4);
                    memcpy(W2 + (size_t)k * c2, W + (size_t)k * ct + c1, (size_t)c2 * 4);
                }
                fn_conv cv, cv1, cv2;
                fn_error e;
                assert_true(fn_conv_split_ok(1, 1, st, 0, c1, ct));
                assert_int_equal(fn_conv_init(&cv, 1, 1, st, 0, cin, ct, W, b, 0, isas[i], &e), FN_OK);
                assert_int_equal(fn_conv_init(&cv1, 1, 1, st, 0, cin, c1, W1, b, 0, isas[i], &e), FN_OK);
                assert_int_equal(fn_conv_init(&cv2, 1, 1, st, 0, cin, c2, W2, b + c1, 0, isas[i], &e), FN_OK);
                fn_pool *pool = fn_pool_create(t);
                float *scratch = fn_aalloc(fn_conv_scratch_floats(&cv, n, h, w, t) * 4 + 64);
                fn_conv_forward(&cv1, pool, in, n, h, w, r1, NULL, 0, scratch);
                fn_conv_forward(&cv2, pool, in, n, h, w, r2, NULL, 1, scratch);
                memset(o1, 0xff, m * c1 * 4), memset(o2, 0xff, m * c2 * 4);
                fn_conv_forward_split(&cv, pool, in, n, h, w, c1, o1, 0, o2, 1, scratch);
                if (memcmp(o1, r1, m * c1 * 4) || memcmp(o2, r2, m * c2 * 4))
                    fail_msg("%s split conv n%d %dx%dx%d->%d+%d /%d thr %d: not the separate layers' bytes",
                             fn_isa_name(isas[i]), n, h, w, cin, c1, c2, st, t);
                fn_afree(scratch);
                fn_pool_destroy(pool);
                fn_conv_free(&cv), fn_conv_free(&cv1), fn_conv_free(&cv2);
                free(in), free(W), free(b), free(W1), free(W2), free(o1), free(o2), free(r1), free(r2);
            }
    /* not on a panel boundary of every table, not a split, or Winograd's (one output tensor) */
    assert_false(fn_conv_split_ok(1, 1, 1, 0, 48, 96));
    assert_false(fn_conv_split_ok(1, 1, 1, 0, 64, 64));
    assert_false(fn_conv_split_ok(1, 1, 1, 0, 0, 64));
    assert_false(fn_conv_split_ok(3, 3, 1, 1, 64, 128));
}

/* A tile of fewer rows than MR (a GEMM's tail: kernel_avx512_7 for <= 7 rows on AVX-512) gives each of its
 * rows the bytes that row gets in a full tile, over several taps, with and without the residual and ReLU. */
static void test_ukernel_tail_rows(void **s)
{
    (void)s;
    fn_isa isas[3];
    int ni = tu_supported_isas(isas);
    for (int ii = 0; ii < ni; ii++) {
        const fn_gemm_impl *g = conv_gemm(isas[ii]);
        const int MR = g->mr, NR = g->nr, ntaps = 3, kt = 37;
        float *A = malloc((size_t)MR * ntaps * kt * 4), *B = malloc((size_t)ntaps * kt * NR * 4);
        float *bias = malloc((size_t)NR * 4), *R = malloc((size_t)MR * NR * 4);
        float *full = malloc((size_t)MR * NR * 4), *part = malloc((size_t)MR * NR * 4);
        const float **ptr = malloc((size_t)MR * ntaps * sizeof *ptr);
        tu_fill_random(A, (size_t)MR * ntaps * kt, 11, -1, 1);
        tu_fill_random(B, (size_t)ntaps * kt * NR, 12, -0.5f, 0.5f);
        tu_fill_random(bias, (size_t)NR, 13, -1, 1);
        tu_fill_random(R, (size_t)MR * NR, 14, -1, 1);
        for (int t = 0; t < ntaps; t++)
            for (int i = 0; i < MR; i++)
                ptr[t * MR + i] = A + ((size_t)i * ntaps + t) * kt;
        for (int v = 0; v < 4; v++)
            for (int mr = 1; mr < MR; mr++) {
                fn_ukargs u;
                memset(&u, 0, sizeof u);
                u.a = ptr, u.b = B, u.bias = bias, u.r = v & 1 ? R : NULL, u.ldc = u.ldr = (size_t)NR;
                u.ntaps = ntaps, u.kt = kt, u.nr = NR, u.first = u.last = 1, u.relu = v >> 1;
                u.mr = MR, u.c = full;
                g->kernel(&u);
                memset(part, 0, (size_t)MR * NR * 4);
                u.mr = mr, u.c = part;
                g->kernel(&u);
                if (memcmp(part, full, (size_t)mr * NR * 4))
                    fail_msg("%s micro-kernel: a %d-row tile differs from the full tile's rows (variant %d)",
                             fn_isa_name(isas[ii]), mr, v);
            }
        free(A), free(B), free(bias), free(R), free(full), free(part), free(ptr);
    }
}

static void test_conv_bad_args(void **s)
{
    (void)s;
    fn_conv c;
    fn_error e;
    float w[4] = {0}, b[1] = {0};
    assert_int_equal(fn_conv_init(&c, 0, 1, 1, 0, 1, 1, w, b, 0, FN_ISA_PORTABLE, &e), FN_EARG);
    assert_int_equal(fn_conv_init(&c, 1, 1, 0, 0, 1, 1, w, b, 0, FN_ISA_PORTABLE, &e), FN_EARG);
    assert_int_equal(fn_conv_init(&c, 1, 1, 1, 0, 1, 1, NULL, b, 0, FN_ISA_PORTABLE, &e), FN_EARG);
    assert_int_equal(fn_conv_init(&c, 3, 3, 1, 1, 1, 1, w, b, 8, FN_ISA_PORTABLE, &e), FN_EARG); /* no such variant */
}

/* The Winograd weights worth making at open: on 2 threads at batch 1 the 56x56 maps take F(4x4), 28 and 14
 * F(2x2), 7 direct (F(4x4) there only from batch 4 up on AVX-512), and larger batches keep every kind. */
static void test_conv_wino_needed(void **s)
{
    (void)s;
    const int all56 = fn_conv_wino_kinds(3, 56), all28 = fn_conv_wino_kinds(3, 28), all7 = fn_conv_wino_kinds(3, 7);
    assert_int_equal(all7, FN_WINO_F4);
    assert_int_equal(fn_conv_wino_needed(3, 3, 1, 1, 56, 56, all56, FN_ISA_AVX512, 1, 2), FN_WINO_F4);
    assert_int_equal(fn_conv_wino_needed(3, 3, 1, 1, 28, 28, all28, FN_ISA_AVX512, 1, 2), FN_WINO_F2);
    assert_int_equal(fn_conv_wino_needed(3, 3, 1, 1, 14, 14, all28, FN_ISA_AVX512, 1, 2), FN_WINO_F2);
    assert_int_equal(fn_conv_wino_needed(3, 3, 1, 1, 7, 7, all7, FN_ISA_AVX512, 1, 2), 0);
    assert_int_equal(fn_conv_wino_needed(3, 3, 1, 1, 7, 7, all7, FN_ISA_AVX512, 3, 2), 0);
    assert_int_equal(fn_conv_wino_needed(3, 3, 1, 1, 7, 7, all7, FN_ISA_AVX512, 4, 2), FN_WINO_F4);
    assert_int_equal(fn_conv_wino_needed(3, 3, 1, 1, 28, 28, all28, FN_ISA_AVX512, 64, 2), all28);
    /* portable (MR 4), one thread, up to batch 8: 14x14 maps take F(2x2) at batch 1, F(4x4) from batch 4 */
    assert_int_equal(fn_conv_wino_needed(3, 3, 1, 1, 14, 14, all28, FN_ISA_PORTABLE, 8, 1), all28);
    /* not Winograd-shaped: nothing */
    assert_int_equal(fn_conv_wino_needed(3, 3, 2, 1, 56, 56, all56, FN_ISA_AVX512, 64, 2), 0);
    assert_int_equal(fn_conv_wino_needed(1, 1, 1, 0, 56, 56, all56, FN_ISA_AVX512, 64, 2), 0);
}

/* The blocking follows the cache sizes CPUID reports: the A block of mc rows fills at most 2/3 of the L2
 * (at most the table's mc, at least MR), nc is in proportion to the L2; and since K blocks stay fixed, a
 * conv planned for a small L2 gives the same bits as one planned for this machine's. */
static void test_conv_blocking(void **s)
{
    (void)s;
    fn_cpu_caches k = fn_cpu_caches_get();
    print_message("[ layers   ] CPUID caches: L1d %zu KB, L2 %zu KB, L3 %zu KB\n", k.l1d >> 10, k.l2 >> 10, k.l3 >> 10);
#if defined(__x86_64__)
    assert_true(k.l1d >= (4 << 10) && k.l1d <= (4 << 20));
    assert_true(k.l2 >= k.l1d && k.l2 <= (1u << 30));
#endif
    size_t mc, nc;
    conv_blocking(&fn_gemm_avx512, 2 << 20, 2048, &mc, &nc); /* the table's reference: its own values */
    assert_int_equal(mc, 168);
    assert_int_equal(nc, 256 << 10);
    conv_blocking(&fn_gemm_avx512, 1 << 20, 2048, &mc, &nc); /* 1 MB: 699050 / 8192 = 85 rows -> 84 */
    assert_int_equal(mc, 84);
    assert_int_equal(nc, 128 << 10);
    conv_blocking(&fn_gemm_avx512, 1 << 20, 256, &mc, &nc); /* narrow blocks: the table's mc */
    assert_int_equal(mc, 168);
    conv_blocking(&fn_gemm_avx2, 256 << 10, 2048, &mc, &nc); /* 174762 / 8192 = 21 rows -> 18 (MR 6) */
    assert_int_equal(mc, 18);
    assert_int_equal(nc, 32 << 10);
    conv_blocking(&fn_gemm_portable, 32 << 10, 2048, &mc, &nc); /* never below MR */
    assert_int_equal(mc, 4);
    conv_blocking(&fn_gemm_avx512, 0, 2048, &mc, &nc); /* no L2 known: the reference */
    assert_int_equal(mc, 168);

    static const conv_case cases[] = {{2, 14, 14, 600, 40, 1, 1, 0}, {1, 9, 9, 512, 40, 3, 1, 1},
                                      {1, 23, 23, 3, 64, 7, 2, 3},   {3, 7, 5, 512, 70, 1, 1, 0}};
    fn_isa isas[3];
    int ni = tu_supported_isas(isas);
    for (int i = 0; i < ni; i++)
        for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
            const conv_case *q = &cases[c];
            int oh = fn_conv_out_dim(q->h, q->k, q->stride, q->pad), ow = fn_conv_out_dim(q->w, q->k, q->stride, q->pad);
            size_t nin = (size_t)q->n * q->h * q->w * q->cin, nout = (size_t)q->n * oh * ow * q->cout;
            size_t nw = (size_t)q->k * q->k * q->cin * q->cout;
            float *in = malloc(nin * 4), *W = malloc(nw * 4), *b = malloc((size_t)q->cout * 4);
            float *o1 = malloc(nout * 4), *o2 = malloc(nout * 4);
            tu_fill_random(in, nin, 11, -1, 1);
            tu_fill_random(W, nw, 12, -0.5f, 0.5f);
            tu_fill_random(b, (size_t)q->cout, 13, -1, 1);
            fn_conv conv;
            fn_error e;
            assert_int_equal(fn_conv_init(&conv, q->k, q->k, q->stride, q->pad, q->cin, q->cout, W, b, 0, isas[i], &e),
                             FN_OK);
            fn_pool *pool = fn_pool_create(2);
            for (int v = 0; v < 2; v++) {
                conv_plan_set_l2(v ? 16 << 10 : 0); /* 16 KB: chunks of 1 to 4 MR tiles */
                conv_plan p;
                assert_int_equal(conv_plan_make(&conv, q->n, q->h, q->w, 2, 0, &p), 1);
                const size_t mr = (size_t)conv_gemm(isas[i])->mr;
                if (v)
                    assert_true(p.q.mc <= 4 * mr && p.q.mc % mr == 0 && p.chunk <= p.q.mc);
                float *scratch = fn_aalloc(fn_conv_scratch_floats(&conv, q->n, q->h, q->w, 2) * 4 + 64);
                fn_conv_forward(&conv, pool, in, q->n, q->h, q->w, v ? o2 : o1, NULL, 1, scratch);
                fn_afree(scratch);
            }
            conv_plan_set_l2(0);
            assert_memory_equal(o1, o2, nout * 4);
            fn_pool_destroy(pool);
            fn_conv_free(&conv);
            free(in), free(W), free(b), free(o1), free(o2);
        }
}

static void test_maxpool(void **s)
{
    (void)s;
    int n = 2, h = 9, w = 8, c = 5, k = 3, st = 2, pad = 1;
    int oh = fn_conv_out_dim(h, k, st, pad), ow = fn_conv_out_dim(w, k, st, pad);
    float *in = malloc((size_t)n * h * w * c * 4), *out = malloc((size_t)n * oh * ow * c * 4);
    tu_fill_random(in, (size_t)n * h * w * c, 9, -2, 1); /* negative values: zero padding shows */
    fn_pool *pool = fn_pool_create(2);
    fn_maxpool(pool, in, n, h, w, c, k, st, pad, out);
    for (int i = 0; i < n; i++)
        for (int oy = 0; oy < oh; oy++)
            for (int ox = 0; ox < ow; ox++)
                for (int ch = 0; ch < c; ch++) {
                    float m = -1e30f;
                    for (int ky = 0; ky < k; ky++)
                        for (int kx = 0; kx < k; kx++) {
                            int y = oy * st - pad + ky, x = ox * st - pad + kx;
                            float v = (y < 0 || y >= h || x < 0 || x >= w) ? 0.0f
                                                                           : in[(((size_t)i * h + y) * w + x) * c + ch];
                            m = v > m ? v : m;
                        }
                    assert_true(out[(((size_t)i * oh + oy) * ow + ox) * c + ch] == m);
                }
    fn_pool_destroy(pool);
    free(in), free(out);
}

static void test_avgpool_dense_softmax(void **s)
{
    (void)s;
    int n = 3, h = 7, w = 7, c = 37;
    float *in = malloc((size_t)n * h * w * c * 4), *out = malloc((size_t)n * c * 4);
    tu_fill_random(in, (size_t)n * h * w * c, 11, 0, 5);
    fn_global_avgpool(in, n, h, w, c, out);
    for (int i = 0; i < n; i++)
        for (int ch = 0; ch < c; ch++) {
            double sum = 0;
            for (int p = 0; p < h * w; p++)
                sum += in[((size_t)i * h * w + p) * c + ch];
            assert_true(fabs(out[i * c + ch] - sum / (h * w)) < 1e-5);
        }
    int di = 29, dout = 13;
    float *W = malloc((size_t)di * dout * 4), *b = malloc((size_t)dout * 4), *x = malloc((size_t)n * di * 4);
    float *y = malloc((size_t)n * dout * 4);
    tu_fill_random(W, (size_t)di * dout, 12, -1, 1);
    tu_fill_random(b, (size_t)dout, 13, -1, 1);
    tu_fill_random(x, (size_t)n * di, 14, -1, 1);
    fn_dense(x, n, di, W, b, dout, y);
    for (int i = 0; i < n; i++)
        for (int o = 0; o < dout; o++) {
            double sum = b[o];
            for (int k = 0; k < di; k++)
                sum += (double)x[i * di + k] * W[k * dout + o];
            assert_true(fabs(y[i * dout + o] - sum) < 1e-5);
        }
    float sm[2][4] = {{1000, 1001, 999, -1000}, {-1000, -1000, -1000, -1000}};
    fn_softmax(&sm[0][0], 2, 4);
    for (int i = 0; i < 2; i++) {
        double t = 0;
        for (int j = 0; j < 4; j++) {
            assert_true(isfinite(sm[i][j]) && sm[i][j] >= 0);
            t += sm[i][j];
        }
        assert_true(fabs(t - 1) < 1e-6);
    }
    assert_true(sm[0][1] > sm[0][0] && sm[0][0] > sm[0][2]);
    assert_true(fabs(sm[1][0] - 0.25f) < 1e-6);
    int idx[3];
    float val[3];
    float p[6] = {0.1f, 0.5f, 0.05f, 0.3f, 0.5f, 0.05f};
    fn_topk(p, 6, 3, idx, val);
    assert_int_equal(idx[0], 1); /* ties keep the lower index first */
    assert_int_equal(idx[1], 4);
    assert_int_equal(idx[2], 3);
    free(in), free(out), free(W), free(b), free(x), free(y);
}

static void count_task(void *arg, int tid, int nth)
{
    int *hits = arg;
    __atomic_fetch_add(&hits[tid], 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&hits[63], nth, __ATOMIC_RELAXED);
}

static void test_threadpool(void **s)
{
    (void)s;
    for (int t = 1; t <= 4; t++) {
        fn_pool *p = fn_pool_create(t);
        assert_non_null(p);
        assert_int_equal(fn_pool_threads(p), t);
        int hits[64] = {0};
        for (int r = 0; r < 500; r++)
            fn_pool_run(p, count_task, hits);
        for (int i = 0; i < t; i++)
            assert_int_equal(hits[i], 500);
        assert_int_equal(hits[63], 500 * t * t);
        fn_pool_destroy(p);
    }
}

static void test_isa_selection(void **s)
{
    (void)s;
    fn_isa out;
    assert_int_equal(fn_isa_resolve(FN_ISA_PORTABLE, &out, NULL), FN_OK);
    assert_int_equal(out, FN_ISA_PORTABLE);
    assert_int_equal(fn_isa_resolve(FN_ISA_AUTO, &out, NULL), FN_OK);
    assert_true(out >= FN_ISA_PORTABLE && out <= fn_isa_detect());
    setenv("FRUITNET_ISA", "portable", 1);
    assert_int_equal(fn_isa_resolve(FN_ISA_AUTO, &out, NULL), FN_OK);
    assert_int_equal(out, FN_ISA_PORTABLE);
    setenv("FRUITNET_ISA", "bogus", 1);
    fn_error e;
    assert_int_equal(fn_isa_resolve(FN_ISA_AUTO, &out, &e), FN_EARG);
    assert_non_null(strstr(e.msg, "bogus"));
    unsetenv("FRUITNET_ISA");
    if (fn_isa_detect() < FN_ISA_AVX512)
        assert_int_equal(fn_isa_resolve(FN_ISA_AVX512, &out, &e), FN_EUNSUPPORTED);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_isa_selection),       cmocka_unit_test(test_threadpool),
        cmocka_unit_test(test_conv_all_isas),       cmocka_unit_test(test_conv_inplace_residual),
        cmocka_unit_test(test_conv_split),          cmocka_unit_test(test_ukernel_tail_rows),
        cmocka_unit_test(test_conv_bad_args),       cmocka_unit_test(test_maxpool),
        cmocka_unit_test(test_conv_wino_needed),    cmocka_unit_test(test_conv_blocking),
        cmocka_unit_test(test_avgpool_dense_softmax),
    };
    return cmocka_run_group_tests_name("layers", tests, NULL, NULL);
}
