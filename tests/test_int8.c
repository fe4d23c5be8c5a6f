/*
 * test_int8.c — the int8 precision (FN_PRECISION_INT8, AVX512-VNNI):
 *  - the micro-kernel (gemm_avx512vnni.c) against a scalar reference (exact int32 sums, then the scaled
 *    float epilogue), partial tiles, two K blocks, taps through row pointers, residual and ReLU;
 *  - the int8 convolution (1x1 strided, 3x3 padded) against the same arithmetic in double on the quantised
 *    weights and inputs;
 *  - the activation scales: written by fn_weights_calibrate_int8 (every other tensor byte-identical, the
 *    same scales twice), read back by an int8 model; a file without them refused naming the file;
 *  - accuracy against the Keras features: cosine >= 0.995 per image on the 8 golden inputs (batch 8 and
 *    1) and on the 2,880 sample images, the PCA's 80% component count within 1 of float32's, and ImageNet
 *    top-1 equal to float32's on >= 97% of the sample (issue 16's gates). int8 runs the 2b and 2c convs of
 *    stages 3-5 (model.c int8_chosen); the convs that read the residual stream (branch1, branch2a) and
 *    stage 2 stay float32 (bf16 on AMX-BF16). Measured: top-1 equal on 2,817 = 97.81% with AMX-BF16 (2,816
 *    = 97.78% with FRUITNET_AMX=0), worst cosine 0.99848, PCA 46 against 47. With only branch1 kept out:
 *    95.97%; with every conv but conv1 in int8: worst cosine 0.99501, top-1 94.55%. These fruit photos are
 *    near-ties among ImageNet classes: every flip is within 0.08 of probability in float32.
 * On a CPU without AVX512-VNNI everything that needs it is skipped with a message, and the refusal
 * (FN_EUNSUPPORTED naming the feature) is tested instead.
 */
#include "testutil.h"
#include "conv.h"
#include "fnw.h"
#include "gemm.h"
#include "threadpool.h"
#include "util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define IN_FLOATS ((size_t)224 * 224 * 3)
#define D 2048
#define NIMG 8
#define N2880 2880

static int have_vnni(const char *what)
{
    fn_error e = {0};
    int rc = fn_precision_check(FN_PRECISION_INT8, &e);
    if (rc != FN_OK)
        print_message("[  SKIPPED ] %s: %s\n", what, e.msg);
    return rc == FN_OK;
}

static void test_names_and_refusal(void **s)
{
    (void)s;
    fn_precision p = FN_PRECISION_FP32;
    assert_int_equal(fn_precision_parse("int8", &p), FN_OK);
    assert_int_equal(p, FN_PRECISION_INT8);
    assert_string_equal(fn_precision_name(FN_PRECISION_INT8), "int8");
    assert_int_equal(fn_precision_parse("INT8", &p), FN_EARG);
    TU_REQUIRE(tu_weights_path());
    fn_model_options o;
    fn_model_options_default(&o);
    o.precision = FN_PRECISION_INT8;
    fn_model *m = NULL;
    fn_error e = {0};
    if (fn_precision_check(FN_PRECISION_INT8, NULL) != FN_OK) {
        assert_int_equal(fn_model_open(tu_weights_path(), &o, &m, &e), FN_EUNSUPPORTED);
        assert_non_null(strstr(e.msg, "AVX512_VNNI"));
    } else {
        o.isa = FN_ISA_AVX2;
        assert_int_equal(fn_model_open(tu_weights_path(), &o, &m, &e), FN_EUNSUPPORTED);
        assert_non_null(strstr(e.msg, "int8 runs on the avx512 instruction set, not avx2"));
    }
    assert_null(m);
}

/* ---------------------------------------------------------------- micro-kernel */

static uint32_t rng(uint32_t *s) { return *s = *s * 1664525u + 1013904223u, *s >> 8; }

static void test_kernel(void **s)
{
    (void)s;
    if (!have_vnni("int8 micro-kernel"))
        skip();
    const fn_gemm_impl *g = &fn_gemm_avx512vnni;
    enum { MR = 14, NR = 32, NT = 3, KT = 37, K0 = 5, LDA = 64, LDC = 40 };
    assert_int_equal(g->mr, MR);
    assert_int_equal(g->nr, NR);
    uint32_t seed = 7;
    /* A: per row and tap a row of LDA words (4 u8 each); the kernel reads words k0..k0+kt */
    static uint8_t a[MR][NT][LDA * 4];
    static int8_t b[2][NT * KT][NR][4]; /* two K blocks */
    static float c[MR * LDC], r[MR * LDC], ref[MR * LDC];
    float bias[NR], scale[NR];
    for (int i = 0; i < MR; i++)
        for (int t = 0; t < NT; t++)
            for (int k = 0; k < LDA * 4; k++)
                a[i][t][k] = (uint8_t)(i == 3 ? 255 : rng(&seed)); /* one row at the bound */
    for (int kb = 0; kb < 2; kb++)
        for (int k = 0; k < NT * KT; k++)
            for (int j = 0; j < NR; j++)
                for (int q = 0; q < 4; q++)
                    b[kb][k][j][q] = (int8_t)(j == 5 ? -127 : (int)(rng(&seed) % 255) - 127);
    for (int j = 0; j < NR; j++)
        bias[j] = (float)((int)(rng(&seed) % 200) - 100) * 0.5f, scale[j] = 1e-4f * (float)(1 + j);
    for (int k = 0; k < MR * LDC; k++)
        r[k] = (float)((int)(rng(&seed) % 2000) - 1000) * 0.25f;
    for (int mr = MR; mr >= 5; mr -= 9)
        for (int nr = NR; nr >= 19; nr -= 13) {
            const float *rows[NT * MR];
            for (int t = 0; t < NT; t++)
                for (int i = 0; i < MR; i++)
                    rows[t * MR + i] = (const float *)(const void *)a[i][t];
            for (int k = 0; k < MR * LDC; k++)
                c[k] = -999.0f;
            for (int kb = 0; kb < 2; kb++) {
                fn_ukargs u;
                memset(&u, 0, sizeof u);
                u.a = rows, u.b = (const float *)(const void *)b[kb], u.c = c, u.bias = bias, u.r = r;
                u.scale = scale, u.ldc = u.ldr = LDC, u.ntaps = NT, u.kt = KT, u.k0 = K0, u.mr = mr, u.nr = nr;
                u.first = kb == 0, u.last = kb == 1, u.relu = 1;
                g->kernel(&u);
            }
            for (int i = 0; i < MR; i++)
                for (int j = 0; j < LDC; j++) {
                    double v = -999.0;
                    if (i < mr && j < nr) {
                        v = bias[j] + r[i * LDC + j];
                        for (int kb = 0; kb < 2; kb++) {
                            long long acc = 0;
                            for (int t = 0; t < NT; t++)
                                for (int k = 0; k < KT; k++)
                                    for (int q = 0; q < 4; q++)
                                        acc += (long long)a[i][t][(K0 + k) * 4 + q] * b[kb][t * KT + k][j][q];
                            v += (double)acc * scale[j];
                        }
                        v = v > 0 ? v : 0;
                    }
                    ref[i * LDC + j] = (float)v;
                }
            for (int k = 0; k < MR * LDC; k++)
                if (fabsf(c[k] - ref[k]) > 1e-5f * (1 + fabsf(ref[k])))
                    fail_msg("mr %d nr %d: c[%d][%d] = %.7g, reference %.7g", mr, nr, k / LDC, k % LDC, c[k], ref[k]);
        }
    /* the activations' quantisation: round to nearest even, clamp to 0..255 */
    float x[37];
    uint8_t q[40];
    for (int i = 0; i < 37; i++)
        x[i] = (float)i * 8.25f - 10.0f;
    memset(q, 0xAB, sizeof q);
    fn_gemm_vnni_to_u8(x, 37, 0.5f, q);
    for (int i = 0; i < 37; i++) {
        long e = lrintf(x[i] * 0.5f);
        assert_int_equal(q[i], e < 0 ? 0 : e > 255 ? 255 : e);
    }
    assert_int_equal(q[37], 0xAB);
}

/* ---------------------------------------------------------------- convolution */

static void conv_case(int k, int stride, int pad, int cin, int cout, int n, int h, int w)
{
    const size_t K = (size_t)k * k * cin;
    float *wt, *bias, *in;
    tu_conv_operands(K, cout, (size_t)n * h * w * cin, 11, &wt, &bias, &in);
    const float act = 3.0f / 255;
    fn_conv c;
    fn_error e;
    assert_int_equal(fn_conv_init(&c, k, k, stride, pad, cin, cout, wt, bias, k == 3 ? FN_WINO_F2 | FN_WINO_F4 : 0,
                                  FN_ISA_AVX512, &e), FN_OK);
    assert_int_equal(fn_conv_enable_int8(&c, wt, act, &e), FN_OK);
    int oh = fn_conv_out_dim(h, k, stride, pad), ow = fn_conv_out_dim(w, k, stride, pad);
    size_t no = (size_t)n * oh * ow * cout;
    float *out = malloc(no * sizeof(float)), *res = malloc(no * sizeof(float));
    tu_fill_random(res, no, 14, -2, 2);
    fn_pool *pool = fn_pool_create(2);
    float *scratch = fn_aalloc(fn_conv_scratch_floats(&c, n, h, w, 2) * sizeof(float) + 64);
    fn_conv_forward(&c, pool, in, n, h, w, out, res, 1, scratch);
    /* reference: the per-channel int8 weights and uint8 inputs, in double */
    double worst = 0;
    for (int co = 0; co < cout; co++) {
        float mx = 0;
        for (size_t kk = 0; kk < K; kk++)
            mx = fabsf(wt[kk * cout + co]) > mx ? fabsf(wt[kk * cout + co]) : mx;
        const float inv = 127.0f / mx;
        for (int b = 0; b < n; b++)
            for (int oy = 0; oy < oh; oy++)
                for (int ox = 0; ox < ow; ox++) {
                    long long acc = 0;
                    for (int ky = 0; ky < k; ky++)
                        for (int kx = 0; kx < k; kx++) {
                            int y = oy * stride - pad + ky, x = ox * stride - pad + kx;
                            if (y < 0 || y >= h || x < 0 || x >= w)
                                continue;
                            for (int ci = 0; ci < cin; ci++) {
                                long qa = lrintf(in[(((size_t)b * h + y) * w + x) * cin + ci] * (1.0f / act));
                                long qw = lrintf(wt[((size_t)(ky * k + kx) * cin + ci) * cout + co] * inv);
                                acc += (long long)(qa > 255 ? 255 : qa) * qw;
                            }
                        }
                    size_t o = (((size_t)b * oh + oy) * ow + ox) * cout + co;
                    double v = (double)acc * (act * (mx / 127.0f)) + bias[co] + res[o];
                    v = v > 0 ? v : 0;
                    double d = fabs(out[o] - v) / (1 + fabs(v));
                    worst = d > worst ? d : worst;
                }
    }
    if (worst > 1e-5)
        fail_msg("int8 conv %dx%d/%d pad %d %d->%d on %dx%dx%d: worst relative difference %.3g", k, k, stride, pad,
                 cin, cout, n, h, w, worst);
    fn_afree(scratch);
    fn_pool_destroy(pool);
    fn_conv_free(&c);
    free(wt), free(bias), free(in), free(out), free(res);
}

static void test_conv(void **s)
{
    (void)s;
    if (!have_vnni("int8 convolution"))
        skip();
    conv_case(1, 1, 0, 64, 72, 2, 9, 7);   /* 1x1 (nr tail) */
    conv_case(1, 2, 0, 128, 64, 1, 11, 11); /* 1x1 stride 2, packed A rows (cin * stride % 512 == 0 in words) */
    conv_case(3, 1, 1, 64, 40, 3, 8, 6);    /* 3x3 pad 1: zero taps, never Winograd */
    conv_case(1, 1, 0, 8224, 32, 1, 2, 2);  /* K over one block (2 blocks of words) */
    /* refused where it cannot run */
    fn_conv c;
    fn_error e;
    float wt[7 * 7 * 3 * 8] = {0}, bias[8] = {0};
    assert_int_equal(fn_conv_init(&c, 7, 7, 2, 3, 3, 8, wt, bias, 0, FN_ISA_AVX512, &e), FN_OK);
    assert_int_equal(fn_conv_enable_int8(&c, wt, 0.1f, &e), FN_EUNSUPPORTED);
    assert_non_null(strstr(e.msg, "cin a multiple of 4"));
    fn_conv_free(&c);
}

/* uint8 tensors between layers (conv.h fn_conv_forward_packed): written by the layer before an int8 one,
 * float32 (or bf16, where there is AVX512_BF16: the model's branch2a on AMX) then int8, read in place; the
 * same bits as quantising the float32 tensor. 2 x 9 x 9: rows over whole tiles; 1 x 7 x 7: few tiles, the
 * output channels split between the threads (taken as they finish). */
static void test_packed(void **s)
{
    (void)s;
    if (!have_vnni("uint8 tensors between layers"))
        skip();
    fn_error e = {0};
    const int bf = fn_precision_check(FN_PRECISION_BF16, &e) == FN_OK;
    for (int first = 0; first <= bf; first++) {
        tu_packed_chain(FN_PACKED_U8, first, 0, 2, 9, 9);
        tu_packed_chain(FN_PACKED_U8, first, 0, 1, 7, 7);
    }
    tu_packed_chain(FN_PACKED_U8, 0, 1, 2, 16, 16); /* out of Winograd F(2x2) (the model's stage 2 2b) */
    tu_packed_chain(FN_PACKED_U8, 0, 1, 8, 16, 16); /* F(4x4) */
}

/* ---------------------------------------------------------------- the scales in the file */

static int is_scale(const char *name)
{
    size_t n = strlen(name);
    return n > 10 && !strcmp(name + n - 10, "/act_scale");
}

/* A copy of src without its act_scale tensors (meta kept). */
static void write_without_scales(const char *src, const char *dst)
{
    fn_weights *w;
    fn_error e;
    assert_int_equal(fn_weights_open(src, &w, &e), FN_OK);
    int n = fn_weights_count(w), k = 0;
    fnw_tensor *t = calloc((size_t)n, sizeof *t);
    for (int i = 0; i < n; i++) {
        const fn_wtensor *x = fn_weights_at(w, i);
        if (is_scale(x->name))
            continue;
        t[k].name = x->name, t[k].dtype = x->dtype, t[k].ndim = x->ndim, t[k].data = x->data;
        for (int d = 0; d < x->ndim; d++)
            t[k].shape[d] = (uint64_t)x->shape[d];
        t[k++].nbytes = (size_t)x->count * (x->dtype == FN_DTYPE_F32 ? 4 : 1);
    }
    if (fnw_write(t, k, dst, &e) != FN_OK)
        fail_msg("%s", e.msg);
    free(t);
    fn_weights_close(w);
}

static void test_scales_file(void **s)
{
    (void)s;
    TU_REQUIRE(tu_weights_path());
    char dir[256];
    assert_non_null(tu_mkdtemp(dir, sizeof dir, "int8"));
    char bare[300], cal[300], again[300];
    snprintf(bare, sizeof bare, "%s/bare.fnw", dir);
    snprintf(cal, sizeof cal, "%s/cal.fnw", dir);
    snprintf(again, sizeof again, "%s/again.fnw", dir);
    write_without_scales(tu_weights_path(), bare);
    fn_error e = {0};
    fn_model *m = NULL;
    fn_model_options o;
    fn_model_options_default(&o);
    o.precision = FN_PRECISION_INT8, o.threads = 2, o.max_batch = 1;
    if (have_vnni("int8 on a file without scales")) { /* refused, naming the file and the tensor */
        assert_int_equal(fn_model_open(bare, &o, &m, &e), FN_EFORMAT);
        assert_null(m);
        assert_non_null(strstr(e.msg, bare));
        assert_non_null(strstr(e.msg, "res3a_branch2b/act_scale")); /* the first int8 conv (model.c int8_chosen) */
        assert_non_null(strstr(e.msg, "--calibrate"));
    }
    /* calibrate on the repository's own images: every other tensor unchanged, one scale per conv but conv1 */
    const char *mini = "tests/data/fruits-360-mini/images";
    /* FRUITNET_SKIP_SLOW (make sanitize: the portable kernels under ASan take minutes per image): 2 of them,
     * and the comparison with the repository's file (calibrated on all 24) is left out */
    const char *slow = getenv("FRUITNET_SKIP_SLOW");
    const int quick = slow && !strcmp(slow, "1");
    char two[300];
    snprintf(two, sizeof two, "@%s/two.txt", dir);
    if (quick) {
        static const char list[] = "tests/data/fruits-360-mini/images/Banana/108_100.jpg\n"
                                   "tests/data/fruits-360-mini/images/Cocos/13_100.jpg\n";
        tu_write(two + 1, list, sizeof list - 1);
        mini = two;
        print_message("[  int8    ] calibrating on 2 images (FRUITNET_SKIP_SLOW=1)\n");
    }
    if (fn_weights_calibrate_int8(bare, mini, cal, 2, &e) != FN_OK)
        fail_msg("calibrate: %s", e.msg);
    /* again on the calibrated file, under another instruction set: the same scales (the calibration runs the
     * portable kernels, so make weights writes the same file, and CRC, on every machine). AVX2 and AVX-512
     * agree bit for bit (winograd_impl.h), the portable kernels do not: the first calibration ran with the
     * CPU's best, this one with FRUITNET_ISA=portable */
    setenv("FRUITNET_ISA", "portable", 1);
    assert_int_equal(fn_weights_calibrate_int8(cal, mini, again, 2, &e), FN_OK); /* a file that has them */
    unsetenv("FRUITNET_ISA");
    fn_weights *wb, *wc, *wa;
    assert_int_equal(fn_weights_open(bare, &wb, &e), FN_OK);
    assert_int_equal(fn_weights_open(cal, &wc, &e), FN_OK);
    assert_int_equal(fn_weights_open(again, &wa, &e), FN_OK);
    assert_int_equal(fn_weights_count(wc), fn_weights_count(wb) + 52);
    assert_int_equal(fn_weights_count(wa), fn_weights_count(wc));
    for (int i = 0; i < fn_weights_count(wb); i++) {
        const fn_wtensor *x = fn_weights_at(wb, i), *y = fn_weights_find(wc, x->name);
        assert_non_null(y);
        if (!strcmp(x->name, "meta")) {
            assert_non_null(strstr((const char *)y->data, quick ? "int8_calibration=mse-clip,2-images\n"
                                                                : "int8_calibration=mse-clip,24-images\n"));
            continue;
        }
        assert_int_equal(x->count, y->count);
        assert_memory_equal(x->data, y->data, (size_t)x->count * (x->dtype == FN_DTYPE_F32 ? 4 : 1));
    }
    int nscale = 0, nref = 0;
    fn_weights *wr = NULL; /* the repository's weight file, calibrated by make weights on the same images */
    if (!quick)
        assert_int_equal(fn_weights_open(tu_weights_path(), &wr, &e), FN_OK);
    for (int i = 0; i < fn_weights_count(wc); i++) {
        const fn_wtensor *y = fn_weights_at(wc, i), *z;
        if (!is_scale(y->name))
            continue;
        nscale++;
        assert_int_equal(y->dtype, FN_DTYPE_F32);
        assert_int_equal(y->count, 1);
        float v = *(const float *)y->data;
        assert_true(v > 1e-4f && v < 1.0f); /* post-ReLU maps of this network clip at 0.03 .. 255 */
        assert_non_null(z = fn_weights_find(wa, y->name));
        assert_memory_equal(y->data, z->data, 4); /* deterministic, whatever the instruction set */
        if (wr && (z = fn_weights_find(wr, y->name))) /* and equal to the ones make weights calibrated */
            assert_memory_equal(y->data, z->data, 4), nref++;
    }
    assert_int_equal(nscale, 52);
    assert_int_equal(nref, quick ? 0 : 52); /* make weights calibrates the file (Makefile) */
    fn_weights_close(wr);
    assert_null(fn_weights_find(wc, "conv1/act_scale"));
    assert_non_null(fn_weights_find(wc, "res5c_branch2c/act_scale"));
    const fn_wtensor *meta = fn_weights_find(wa, "meta");
    const char *p = strstr((const char *)meta->data, "int8_calibration=");
    assert_non_null(p);
    assert_null(strstr(p + 1, "int8_calibration=")); /* replaced, not repeated */
    fn_weights_close(wb), fn_weights_close(wc), fn_weights_close(wa);
    /* the scales are read back: an int8 model opens on the calibrated file */
    if (have_vnni("int8 model on the calibrated file")) {
        if (fn_model_open(cal, &o, &m, &e) != FN_OK)
            fail_msg("%s", e.msg);
        assert_int_equal(fn_model_precision(m), FN_PRECISION_INT8);
        fn_model_close(m);
    }
    /* no images: an error naming the folder */
    assert_int_equal(fn_weights_calibrate_int8(bare, dir, again, 2, &e), FN_EARG);
    assert_non_null(strstr(e.msg, "no images"));
    assert_int_equal(tu_rm_rf(dir), 0);
}

/* ---------------------------------------------------------------- accuracy */

static void test_golden8(void **s)
{
    (void)s;
    if (!have_vnni("int8 accuracy"))
        skip();
    const char *g = tu_golden_dir();
    TU_REQUIRE(g);
    TU_REQUIRE(tu_weights_path());
    float *in = malloc(NIMG * IN_FLOATS * sizeof(float)), *ref = malloc(NIMG * D * sizeof(float));
    float *f8 = malloc(NIMG * D * sizeof(float)), *f1 = malloc(NIMG * D * sizeof(float));
    tu_g8_load(g, in, ref);
    fn_model *m = tu_open_model(FN_PRECISION_INT8, NIMG), *m1 = tu_open_model(FN_PRECISION_INT8, 1);
    fn_error e = {0};
    assert_int_equal(fn_model_features(m, in, NIMG, f8, &e), FN_OK);
    assert_int_equal(fn_model_features(m1, in, NIMG, f1, &e), FN_OK);
    double worst8 = tu_g8_worst_cosine("int8 batch 8", f8, ref, 0.995);
    double worst1 = tu_g8_worst_cosine("int8 batch 1", f1, ref, 0.995);
    /* int8 is the same arithmetic at every batch size (direct only, exact int32 sums): equal features */
    double d = tu_max_abs(f8, f1, NIMG * D);
    print_message("[ int8     ] golden 8: worst cosine to Keras %.6f (batch 8), %.6f (batch 1); batch 8 vs 1 max abs %.3g\n",
                  worst8, worst1, d);
    assert_true(d < 1e-4);
    assert_true(tu_max_abs(f8, ref, NIMG * D) > 1e-3); /* the int8 path is taken (fp32 is within 1e-3) */
    /* uint8 (and bf16) tensors between layers: the same features as float32 ones */
    tu_assert_same_unpacked(m, in, NIMG, f8);
    tu_assert_same_unpacked(m1, in, NIMG, f1);
    fn_model_close(m), fn_model_close(m1);
    free(in), free(ref), free(f8), free(f1);
}

static void test_sample(void **s)
{
    (void)s;
    const char *slow = getenv("FRUITNET_SKIP_SLOW");
    if (slow && !strcmp(slow, "1")) {
        print_message("[  SKIPPED ] int8 on the sample: FRUITNET_SKIP_SLOW=1\n");
        skip();
    }
    if (!have_vnni("int8 on the sample"))
        skip();
    const char *g = tu_golden_dir(), *sample = tu_sample_dir();
    TU_REQUIRE(g);
    TU_REQUIRE(sample);
    TU_REQUIRE(tu_weights_path());
    tu_gate r;
    tu_precision_gate(g, sample, FN_PRECISION_INT8, 1, &r);
    print_message("[ int8     ] %d sample images: worst cosine to Keras %.6f (%s), mean %.6f, top-1 equal to fp32 on "
                  "%d (%.2f%%; the others within %.4f of probability in fp32), PCA 80%%: %d components (fp32 %d)\n",
                  r.n, r.worst, r.worst_path, r.mean, r.agree, 100.0 * r.agree / r.n, r.widest, r.k80, r.k80_ref);
    if (r.worst < 0.995)
        fail_msg("int8 %s: cosine to Keras %.6f < 0.995", r.worst_path, r.worst);
    if (r.agree < 0.97 * r.n)
        fail_msg("int8: top-1 equal to float32's on %.2f%% of the sample, under issue 16's 97%%", 100.0 * r.agree / r.n);
    assert_true(abs(r.k80 - r.k80_ref) <= 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names_and_refusal), cmocka_unit_test(test_kernel),   cmocka_unit_test(test_conv),
        cmocka_unit_test(test_packed),            cmocka_unit_test(test_scales_file), cmocka_unit_test(test_golden8),
        cmocka_unit_test(test_sample),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
