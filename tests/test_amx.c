/*
 * test_amx.c — the AMX micro-kernels (gemm_amx.c) against the AVX-512 ones, the reference (issue 16):
 *  - fn_gemm_amxint8 bit-identical to fn_gemm_avx512vnni: every mr 1..32, nr 1/16/17/32, kt 1/15/16/17/48/100,
 *    1..3 taps, one or two K blocks (first/last), ReLU and residual on and off, rows evenly spaced (tiles
 *    loaded in place) or not (gathered), rows past mr at zeros, the tiles released between some calls;
 *  - the int8 convolution with AMX and without (FRUITNET_AMX=0) bit-identical (1x1, 1x1/2 packed rows, 3x3
 *    padded, a K tail, two K blocks), and the int8 features of the 8 golden images (batch 8 and 1) on
 *    AMX-INT8 alone (FRUITNET_AMX=int8); with AMX-BF16 too, the convs int8 keeps out on bf16 tiles: other
 *    features, within cosine 0.999 of those and within the int8 gate to Keras;
 *  - fn_gemm_amxbf16 close to fn_gemm_avx512bf16 (the same products, summed in another order, AMX flushing
 *    denormals): the same kernel cases within 1e-5 per product, bf16 convolutions within 1e-5 of the
 *    outputs' scale, the golden bf16 features within cosine 0.99999.
 * On a CPU (or OS) without AMX each test says so and is skipped.
 */
#include "testutil.h"
#include "conv.h"
#include "gemm.h"
#include "threadpool.h"
#include "util.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define IN_FLOATS ((size_t)224 * 224 * 3)
#define D 2048
#define NIMG 8

static int have_amx(int bf16, const char *what)
{
    int ok = bf16 ? fn_amx_bf16() && fn_precision_check(FN_PRECISION_BF16, NULL) == FN_OK
                  : fn_amx_int8() && fn_precision_check(FN_PRECISION_INT8, NULL) == FN_OK;
    if (!ok) {
        const char *env = getenv("FRUITNET_AMX");
        print_message("[  SKIPPED ] %s: %s%s\n", what, env && *env ? "FRUITNET_AMX=" : "",
                      env && *env ? env
                      : bf16 ? "this CPU has no AMX-BF16 (with AVX512_BF16), or the OS does not grant the tile state"
                             : "this CPU has no AMX-INT8 (with AVX512_VNNI), or the OS does not grant the tile state");
    }
    return ok;
}

static uint32_t rng(uint32_t *s) { return *s = *s * 1664525u + 1013904223u, *s >> 8; }

/* ---------------------------------------------------------------- micro-kernels */

enum { MRA = 32, NR = 32, NT = 3, LDA = 112, LDC = 40, K0MAX = 5, KTMAX = 100 };

/* C (MRA x LDC) of the K blocks kb = 0..nb-1 on table g: its MR-row tiles, each with its rows' pointers per
 * tap (rows past the tile's mr, and past mr, at zeros); block kb's B at b[kb]. */
static void run_tiles(const fn_gemm_impl *g, const float *const *rows, const float *zeros, const float *const b[2],
                      int nb, int mr, int nr, int ntaps, int kt, int k0, int relu, const float *bias,
                      const float *scale, const float *r, float *c)
{
    const float *p[NT * MRA];
    for (int i0 = 0; i0 < mr; i0 += g->mr) {
        int m = mr - i0 < g->mr ? mr - i0 : g->mr;
        for (int t = 0; t < ntaps; t++)
            for (int i = 0; i < g->mr; i++)
                p[t * g->mr + i] = i < m ? rows[t * MRA + i0 + i] : zeros;
        for (int kb = 0; kb < nb; kb++) {
            fn_ukargs u;
            memset(&u, 0, sizeof u);
            u.a = p, u.b = b[kb], u.c = c + (size_t)i0 * LDC, u.bias = bias, u.r = r ? r + (size_t)i0 * LDC : NULL;
            u.scale = scale, u.ldc = u.ldr = LDC, u.ntaps = ntaps, u.kt = kt, u.k0 = k0, u.mr = m, u.nr = nr;
            u.first = kb == 0, u.last = kb == nb - 1, u.relu = relu;
            g->kernel(&u);
        }
    }
}

/* every case of the header on tables ga (AMX) and gb (reference); int8: bit-identical, bf16: within tol */
static void kernel_cases(const fn_gemm_impl *ga, const fn_gemm_impl *gb, int bf16)
{
    assert_int_equal(ga->mr, MRA);
    assert_int_equal(ga->nr, NR);
    assert_int_equal(gb->nr, NR);
    assert_int_equal(ga->blk.kc, gb->blk.kc); /* the same K blocks: the same sums */
    uint32_t seed = bf16 ? 99 : 7;
    /* A: NT x MRA rows of LDA words, in one buffer (row stride LDA: evenly spaced) */
    uint32_t *a = malloc((size_t)NT * MRA * LDA * 4), *zeros = calloc(LDA, 4);
    uint32_t *b[2];
    float *ca = malloc(MRA * LDC * 4), *cb = malloc(MRA * LDC * 4), *r = malloc(MRA * LDC * 4);
    float bias[NR], scale[NR];
    assert_true(a && zeros && ca && cb && r);
    for (size_t k = 0; k < (size_t)NT * MRA * LDA; k++) {
        uint32_t x = rng(&seed) ^ (rng(&seed) << 16);
        if (bf16) /* two bf16 in -4..4 (exponent 125..129), any mantissa, either sign */
            x = (((x & 0x807F) | ((125 + x % 5) << 7)) & 0xFFFF) |
                ((((x >> 16) & 0x807F) | ((125 + (x >> 20) % 5) << 7)) << 16);
        a[k] = k % 97 == 0 && !bf16 ? 0xFFFFFFFFu : x; /* some words at the uint8 bound */
    }
    b[0] = b[1] = NULL; /* per kt and ntaps: exactly ntaps * kt rows each */
    for (int j = 0; j < NR; j++)
        bias[j] = (float)((int)(rng(&seed) % 200) - 100) * 0.5f, scale[j] = bf16 ? 0 : 1e-4f * (float)(1 + j);
    for (int k = 0; k < MRA * LDC; k++)
        r[k] = (float)((int)(rng(&seed) % 2000) - 1000) * 0.25f;
    static const int nrs[] = {1, 16, 17, 32}, kts[] = {1, 15, 16, 17, 48, 100};
    double worst = 0;
    int cases = 0;
    for (int kti = 0; kti < 6; kti++)
        for (int ntaps = 1; ntaps <= NT; ntaps++) {
            const int kt = kts[kti];
            for (int kb = 0; kb < 2; kb++) {
                free(b[kb]);
                b[kb] = malloc((size_t)ntaps * kt * NR * 4);
                assert_non_null(b[kb]);
                for (int k = 0; k < ntaps * kt * NR; k++) {
                    uint32_t x = rng(&seed) ^ (rng(&seed) << 16);
                    if (bf16)
                        x = (((x & 0x807F) | ((123 + x % 5) << 7)) & 0xFFFF) |
                            ((((x >> 16) & 0x807F) | ((123 + (x >> 20) % 5) << 7)) << 16);
                    else /* int8 weights in -127..127 */
                        for (int q = 0; q < 4; q++) {
                            int8_t v = (int8_t)((int)((x >> (8 * q)) & 0xFF) % 255 - 127);
                            x = (x & ~(0xFFu << (8 * q))) | ((uint32_t)(uint8_t)v << (8 * q));
                        }
                    b[kb][k] = x;
                }
            }
            for (int mr = 1; mr <= MRA; mr++)
                for (int ni = 0; ni < 4; ni++) {
                    const int nr = nrs[ni], v = cases++;
                    const int relu = v & 1, res = (v >> 1) & 1, nb = 1 + ((v >> 2) & 1), perm = (v >> 3) & 1;
                    const int k0 = (v >> 4) % (K0MAX + 1);
                    /* rows: evenly spaced, or (perm) rows i and i ^ 5 swapped (gathered) */
                    const float *rows[NT * MRA];
                    for (int t = 0; t < ntaps; t++)
                        for (int i = 0; i < MRA; i++)
                            rows[t * MRA + i] = i < mr ? (const float *)(const void *)(a + ((size_t)t * MRA +
                                                                                           (size_t)(perm ? (i ^ 5) % MRA : i)) * LDA)
                                                       : (const float *)(const void *)zeros;
                    for (int k = 0; k < MRA * LDC; k++)
                        ca[k] = cb[k] = -999.0f;
                    const float *bb[2] = {(const float *)(const void *)b[0], (const float *)(const void *)b[1]};
                    if (v % 7 == 3) /* tilerelease (by other code in this thread): the kernel configures again */
                        __asm__ volatile(".byte 0xc4, 0xe2, 0x78, 0x49, 0xc0" ::: "memory");
                    run_tiles(ga, rows, (const float *)(const void *)zeros, bb, nb, mr, nr, ntaps, kt, k0, relu,
                              bias, bf16 ? NULL : scale, res ? r : NULL, ca);
                    run_tiles(gb, rows, (const float *)(const void *)zeros, bb, nb, mr, nr, ntaps, kt, k0, relu,
                              bias, bf16 ? NULL : scale, res ? r : NULL, cb);
                    if (!bf16) {
                        if (memcmp(ca, cb, MRA * LDC * 4) != 0)
                            for (int k = 0; k < MRA * LDC; k++)
                                if (memcmp(&ca[k], &cb[k], 4))
                                    fail_msg("int8 mr %d nr %d kt %d ntaps %d k0 %d blocks %d relu %d res %d perm %d: "
                                             "c[%d][%d] AMX %.9g, VNNI %.9g",
                                             mr, nr, kt, ntaps, k0, nb, relu, res, perm, k / LDC, k % LDC, ca[k], cb[k]);
                    } else {
                        for (int k = 0; k < MRA * LDC; k++) {
                            const int i = k / LDC, j = k % LDC;
                            if (i >= mr || j >= nr) { /* untouched */
                                if (ca[k] != -999.0f)
                                    fail_msg("bf16 mr %d nr %d: c[%d][%d] written (%g)", mr, nr, i, j, ca[k]);
                                continue;
                            }
                            /* |a b| <= 16 * 0.25 per product, 2 * ntaps * kt * nb products: the error
                             * bound scales with their magnitudes' sum, not the value */
                            double d = fabs((double)ca[k] - cb[k]) / (1.0 + 2.0 * ntaps * kt * nb);
                            worst = d > worst ? d : worst;
                            if (d > 1e-5)
                                fail_msg("bf16 mr %d nr %d kt %d ntaps %d blocks %d: c[%d][%d] AMX %.9g, AVX512_BF16 %.9g",
                                         mr, nr, kt, ntaps, nb, i, j, ca[k], cb[k]);
                        }
                    }
                }
        }
    print_message("[ amx      ] %s: %d kernel cases %s\n", bf16 ? "bf16" : "int8", cases,
                  bf16 ? "within tolerance" : "bit-identical to AVX512-VNNI");
    if (bf16)
        print_message("[ amx      ] bf16: worst |AMX - AVX512_BF16| / (1 + products) %.3g (bound 1e-5)\n", worst);
    free(a), free(zeros), free(b[0]), free(b[1]), free(ca), free(cb), free(r);
}

static void test_kernel_int8(void **s)
{
    (void)s;
    if (!have_amx(0, "AMX-INT8 micro-kernel"))
        skip();
    kernel_cases(&fn_gemm_amxint8, &fn_gemm_avx512vnni, 0);
}

static void test_kernel_bf16(void **s)
{
    (void)s;
    if (!have_amx(1, "AMX-BF16 micro-kernel"))
        skip();
    kernel_cases(&fn_gemm_amxbf16, &fn_gemm_avx512bf16, 1);
}

/* ---------------------------------------------------------------- convolution */

/* out of an int8 (bf16: bf16) conv made with FRUITNET_AMX=amx ("0" or unset) */
static float *conv_out(int bf16, int amx, int k, int stride, int pad, int cin, int cout, int n, int h, int w, const float *wt,
                       const float *bias, const float *in, const float *res, size_t no)
{
    fn_conv c;
    fn_error e;
    if (amx)
        unsetenv("FRUITNET_AMX");
    else
        setenv("FRUITNET_AMX", "0", 1);
    assert_int_equal(fn_conv_init(&c, k, k, stride, pad, cin, cout, wt, bias, 0, FN_ISA_AVX512, &e), FN_OK);
    if (bf16)
        assert_int_equal(fn_conv_enable_bf16(&c, wt, &e), FN_OK);
    else
        assert_int_equal(fn_conv_enable_int8(&c, wt, 3.0f / 255, &e), FN_OK);
    unsetenv("FRUITNET_AMX");
    assert_int_equal(bf16 ? c.amx16 : c.amx8, amx); /* the AMX path is the one taken */
    float *out = malloc(no * sizeof(float));
    fn_pool *pool = fn_pool_create(2);
    float *scratch = fn_aalloc(fn_conv_scratch_floats(&c, n, h, w, 2) * sizeof(float) + 64);
    fn_conv_forward(&c, pool, in, n, h, w, out, res, 1, scratch);
    fn_afree(scratch);
    fn_pool_destroy(pool);
    fn_conv_free(&c);
    return out;
}

static double g_bf16_worst; /* conv_case on bf16: the largest max |AMX - AVX512_BF16| / (1 + max |out|) */

static void conv_case(int bf16, int k, int stride, int pad, int cin, int cout, int n, int h, int w)
{
    const size_t K = (size_t)k * k * cin;
    float *wt, *bias, *in;
    tu_conv_operands(K, cout, (size_t)n * h * w * cin, 21, &wt, &bias, &in);
    int oh = fn_conv_out_dim(h, k, stride, pad), ow = fn_conv_out_dim(w, k, stride, pad);
    size_t no = (size_t)n * oh * ow * cout;
    float *res = malloc(no * sizeof(float));
    tu_fill_random(res, no, 24, -2, 2);
    float *o1 = conv_out(bf16, 1, k, stride, pad, cin, cout, n, h, w, wt, bias, in, res, no);
    float *o0 = conv_out(bf16, 0, k, stride, pad, cin, cout, n, h, w, wt, bias, in, res, no);
    if (bf16) { /* the same bf16 products, summed in another order: close, relative to the outputs' scale */
        double mx = 0, d = tu_max_abs(o1, o0, no);
        for (size_t i = 0; i < no; i++)
            mx = fabs(o0[i]) > mx ? fabs(o0[i]) : mx;
        d /= 1 + mx;
        g_bf16_worst = d > g_bf16_worst ? d : g_bf16_worst;
        if (!(d < 1e-5))
            fail_msg("bf16 conv %dx%d/%d pad %d %d->%d on %dx%dx%d: max |AMX - AVX512_BF16| / (1 + max |out|) %.3g",
                     k, k, stride, pad, cin, cout, n, h, w, d);
    } else if (memcmp(o1, o0, no * sizeof(float)) != 0)
        for (size_t i = 0; i < no; i++)
            if (memcmp(&o1[i], &o0[i], 4))
                fail_msg("int8 conv %dx%d/%d pad %d %d->%d on %dx%dx%d: out[%zu] AMX %.9g, VNNI %.9g", k, k, stride,
                         pad, cin, cout, n, h, w, i, o1[i], o0[i]);
    free(wt), free(bias), free(in), free(res), free(o1), free(o0);
}

static void test_conv_int8(void **s)
{
    (void)s;
    if (!have_amx(0, "AMX-INT8 convolution"))
        skip();
    conv_case(0, 1, 1, 0, 64, 72, 2, 9, 7);    /* 1x1, M and N tails */
    conv_case(0, 1, 1, 0, 256, 64, 1, 14, 14); /* 1x1, 16 K words a tap x 4 */
    conv_case(0, 1, 2, 0, 128, 64, 1, 11, 11); /* 1x1 stride 2, packed A rows */
    conv_case(0, 3, 1, 1, 64, 40, 3, 8, 6);    /* 3x3 pad 1: zero taps */
    conv_case(0, 3, 2, 1, 68, 33, 2, 9, 9);    /* 3x3/2, 17 words a tap (a K tail) */
    conv_case(0, 1, 1, 0, 8224, 32, 1, 2, 2);  /* K over one block (2 blocks of words) */
}

static void test_conv_bf16(void **s)
{
    (void)s;
    if (!have_amx(1, "AMX-BF16 convolution"))
        skip();
    g_bf16_worst = 0;
    conv_case(1, 1, 1, 0, 64, 72, 2, 9, 7);    /* 1x1, M and N tails */
    conv_case(1, 1, 2, 0, 256, 64, 1, 11, 11); /* 1x1 stride 2, packed A rows */
    conv_case(1, 3, 1, 1, 64, 40, 3, 8, 6);    /* 3x3 pad 1 (direct: no Winograd weights made) */
    conv_case(1, 3, 2, 1, 34, 33, 2, 9, 9);    /* 3x3/2, 17 words a tap (a K tail) */
    conv_case(1, 1, 1, 0, 4160, 32, 1, 2, 2);  /* K over one block (2 blocks of words) */
    print_message("[ amx      ] bf16 convolutions: max |AMX - AVX512_BF16| / (1 + max |out|) %.3g (bound 1e-5)\n",
                  g_bf16_worst);
}

/* ---------------------------------------------------------------- the model */

/* the features of the NIMG images on a model made with FRUITNET_AMX=amx (NULL: unset, every AMX kind) */
static void features(fn_precision p, const char *amx, int batch, const float *in, float *out)
{
    if (!amx)
        unsetenv("FRUITNET_AMX");
    else
        setenv("FRUITNET_AMX", amx, 1);
    fn_model *m = tu_open_model(p, batch); /* the layers ask fn_amx_int8 / fn_amx_bf16 when they are made */
    unsetenv("FRUITNET_AMX");
    fn_error e = {0};
    for (int i = 0; i < NIMG; i += batch)
        assert_int_equal(fn_model_features(m, in + (size_t)i * IN_FLOATS, batch, out + (size_t)i * D, &e), FN_OK);
    fn_model_close(m);
}

static double worst_pair_cosine(const float *a, const float *b)
{
    double worst = 1;
    for (int i = 0; i < NIMG; i++) {
        double c = tu_cosine(a + i * D, b + i * D, D);
        worst = c < worst ? c : worst;
    }
    return worst;
}

static void golden8(int bf16)
{
    const char *g = tu_golden_dir();
    TU_REQUIRE(g);
    TU_REQUIRE(tu_weights_path());
    float *in = malloc(NIMG * IN_FLOATS * sizeof(float)), *ref = malloc(NIMG * D * sizeof(float)), *f[5];
    for (int v = 0; v < 5; v++)
        f[v] = malloc(NIMG * D * sizeof(float));
    tu_g8_load(g, in, ref);
    const fn_precision p = bf16 ? FN_PRECISION_BF16 : FN_PRECISION_INT8;
    /* int8 on AMX-INT8 tiles alone (FRUITNET_AMX=int8: the layers int8 keeps out stay float32, as on VNNI) */
    const char *on = bf16 ? NULL : "int8";
    features(p, on, NIMG, in, f[0]);
    features(p, "0", NIMG, in, f[1]);
    features(p, on, 1, in, f[2]);
    features(p, "0", 1, in, f[3]);
    /* the AMX features meet the precision's own gate against Keras (test_precision.c, test_int8.c) */
    tu_g8_worst_cosine(bf16 ? "bf16 AMX batch 8" : "int8 AMX batch 8", f[0], ref, bf16 ? 0.9995 : 0.995);
    tu_g8_worst_cosine(bf16 ? "bf16 AMX batch 1" : "int8 AMX batch 1", f[2], ref, bf16 ? 0.9995 : 0.995);
    if (!bf16) {
        assert_memory_equal(f[0], f[1], NIMG * D * sizeof(float)); /* batch 8: AMX == VNNI, bit for bit */
        assert_memory_equal(f[2], f[3], NIMG * D * sizeof(float)); /* batch 1 */
        print_message("[ amx      ] golden 8: int8 features with AMX-INT8 bit-identical to AVX512-VNNI (batch 8 and 1); "
                      "batch 8 vs 1 max abs %.3g\n", tu_max_abs(f[0], f[2], NIMG * D));
        if (fn_amx_bf16()) {
            /* with every AMX kind, the convs int8 keeps out (model.c int8_chosen) run on AMX-BF16 tiles:
             * other features (the bf16 path is taken), close to the float32 ones, within the int8 gate */
            features(p, NULL, NIMG, in, f[4]);
            double w = worst_pair_cosine(f[4], f[0]), d = tu_max_abs(f[4], f[0], NIMG * D);
            tu_g8_worst_cosine("int8 AMX-INT8+BF16 batch 8", f[4], ref, 0.995);
            print_message("[ amx      ] golden 8: int8 with the kept-out convs on AMX-BF16 against float32 ones: worst "
                          "cosine %.7f, max abs %.3g\n", w, d);
            assert_true(d > 0);
            assert_true(w > 0.999); /* (int8 rounds differently downstream of any change: 0.99984 measured) */
        } else {
            print_message("[  SKIPPED ] int8 with AMX-BF16 for the kept-out convs: no AMX-BF16 here\n");
        }
    } else { /* per image: cosine to the AVX512_BF16 features */
        double worst = worst_pair_cosine(f[0], f[1]), w1 = worst_pair_cosine(f[2], f[3]);
        worst = w1 < worst ? w1 : worst;
        print_message("[ amx      ] golden 8: bf16 features with AMX against AVX512_BF16: worst cosine %.7f, max abs "
                      "%.3g (batch 8), %.3g (batch 1)\n",
                      worst, tu_max_abs(f[0], f[1], NIMG * D), tu_max_abs(f[2], f[3], NIMG * D));
        assert_true(worst > 0.99999);
    }
    for (int v = 0; v < 5; v++)
        free(f[v]);
    free(in), free(ref);
}

static void test_golden8_int8(void **s)
{
    (void)s;
    if (!have_amx(0, "AMX-INT8 features"))
        skip();
    golden8(0);
}

static void test_golden8_bf16(void **s)
{
    (void)s;
    if (!have_amx(1, "AMX-BF16 features"))
        skip();
    golden8(1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kernel_int8),
        cmocka_unit_test(test_kernel_bf16),
        cmocka_unit_test(test_conv_int8),
        cmocka_unit_test(test_conv_bf16),
        cmocka_unit_test(test_golden8_int8),
        cmocka_unit_test(test_golden8_bf16),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
