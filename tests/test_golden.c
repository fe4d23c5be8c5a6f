/*
 * test_golden.c — the whole network against the Keras reference outputs in
 * ../shared/golden/img8 (see its README for formats and tolerances), on
 * every instruction set this CPU supports.
 */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NIMG 8
#define IN_FLOATS ((size_t)224 * 224 * 3)

static const char *names[NIMG] = {"g0_banana",     "g1_apple_braeburn", "g2_lemon", "g3_pineapple",
                                  "g4_strawberry", "g5_cocos",          "g6_kiwi",  "g7_tomato_1"};
static const char *rel_paths[NIMG] = {"Banana/108_100.jpg",    "Apple Braeburn/321_100.jpg",
                                      "Lemon/321_100.jpg",     "Pineapple/15_100.jpg",
                                      "Strawberry/321_100.jpg", "Cocos/0_100.jpg",
                                      "Kiwi/39_100.jpg",       "Tomato 1/186_100.jpg"};

typedef struct golden {
    float *input;    /* [8][224][224][3] */
    float *avgpool;  /* [8][2048] */
    float *fc1000;   /* [8][1000] */
    int top5[NIMG][5];
} golden;

static golden G;
static int have_golden;

/* dst[NIMG][count] from dir/sub/<name>.<kind>.f32 of each golden image (float32 LE, exactly count values). */
static void load_per_image(const char *dir, const char *sub, const char *kind, size_t count, float *dst)
{
    for (int i = 0; i < NIMG; i++) {
        char rel[256];
        snprintf(rel, sizeof rel, "%s/%s.%s.f32", sub, names[i], kind);
        float *x = tu_read_f32(tu_path(dir, rel), count);
        if (!x)
            fail_msg("%s/%s: missing or not %zu float32 values", dir, rel, count);
        memcpy(dst + i * count, x, count * sizeof(float));
        free(x);
    }
}

static int setup(void **state)
{
    const char *dir = tu_golden_dir();
    if (!dir)
        return 0;
    G.input = malloc(NIMG * IN_FLOATS * sizeof(float));
    G.avgpool = malloc(NIMG * 2048 * sizeof(float));
    G.fc1000 = malloc(NIMG * 1000 * sizeof(float));
    load_per_image(dir, "img8", "input", IN_FLOATS, G.input);
    load_per_image(dir, "img8", "avgpool", 2048, G.avgpool);
    load_per_image(dir, "img8", "fc1000", 1000, G.fc1000);
    for (int i = 0; i < NIMG; i++) {
        char rel[256];
        snprintf(rel, sizeof rel, "img8/%s.top5.txt", names[i]);
        FILE *f = fopen(tu_path(dir, rel), "r");
        assert_non_null(f);
        char line[256];
        int r = 0;
        while (r < 5 && fgets(line, sizeof line, f)) {
            int rank, cls;
            double p;
            char label[128];
            if (line[0] == '#')
                continue;
            assert_int_equal(sscanf(line, "%d %d %lf %127s", &rank, &cls, &p, label), 4);
            assert_int_equal(rank, r);
            G.top5[i][r++] = cls;
        }
        assert_int_equal(r, 5);
        fclose(f);
    }
    have_golden = 1;
    (void)state;
    return 0;
}

static int teardown(void **state)
{
    free(G.input);
    free(G.avgpool);
    free(G.fc1000);
    (void)state;
    return 0;
}

static fn_model *open_model(fn_isa isa, int threads, int max_batch)
{
    fn_model_options o;
    fn_model_options_default(&o);
    o.isa = isa;
    o.threads = threads;
    o.max_batch = max_batch;
    o.classifier = 1;
    fn_model *m = NULL;
    fn_error e = {0};
    int rc = fn_model_open(tu_weights_path(), &o, &m, &e);
    if (rc != FN_OK)
        fail_msg("fn_model_open(%s): %s", fn_isa_name(isa), e.msg);
    assert_int_equal(fn_model_isa(m), isa);
    return m;
}

/* FRUITNET_GOLDEN_QUICK=1 (used under valgrind) checks one ISA only: the best one. */
static int quick(void)
{
    const char *q = getenv("FRUITNET_GOLDEN_QUICK");
    return q && !strcmp(q, "1");
}

/* Features of the 8 golden inputs on one ISA, checked against Keras. */
static void check_isa(fn_isa isa)
{
    TU_REQUIRE(have_golden);
    TU_REQUIRE(tu_weights_path());
    const int nimg = quick() ? 2 : NIMG; /* under valgrind: two images */
    fn_model *m = open_model(isa, 2, NIMG);
    float *feat = malloc(NIMG * 2048 * sizeof(float));
    float *probs = malloc(NIMG * 1000 * sizeof(float));
    fn_error e = {0};
    assert_int_equal(fn_model_features(m, G.input, nimg, feat, &e), FN_OK);
    assert_int_equal(fn_model_classify(m, feat, nimg, probs, &e), FN_OK);
    double worst_rel = 0, worst_abs = 0, worst_pabs = 0;
    for (int i = 0; i < nimg; i++) {
        double rel = tu_rel_l2(feat + i * 2048, G.avgpool + i * 2048, 2048);
        double mx = tu_max_abs(feat + i * 2048, G.avgpool + i * 2048, 2048);
        double pm = tu_max_abs(probs + i * 1000, G.fc1000 + i * 1000, 1000);
        if (rel > worst_rel) worst_rel = rel;
        if (mx > worst_abs) worst_abs = mx;
        if (pm > worst_pabs) worst_pabs = pm;
        /* README tolerance: rel-L2 <= 1e-4 and max abs <= 1e-3 per image */
        if (!(rel <= 1e-4 && mx <= 1e-3))
            fail_msg("%s %s: rel-L2 %.3g max abs %.3g", fn_isa_name(isa), names[i], rel, mx);
        assert_true(pm <= 1e-4);
        int idx[5];
        float val[5];
        fn_topk(probs + i * 1000, 1000, 5, idx, val);
        for (int r = 0; r < 5; r++) {
            if (idx[r] == G.top5[i][r])
                continue;
            /* a swap is only acceptable between near-ties (README: 1e-4) */
            float pg = G.fc1000[i * 1000 + G.top5[i][r]];
            if (fabsf(pg - val[r]) > 1e-4f)
                fail_msg("%s %s: top-5 rank %d is class %d, Keras says %d", fn_isa_name(isa), names[i], r + 1,
                         idx[r], G.top5[i][r]);
        }
    }
    double all_rel = tu_rel_l2(feat, G.avgpool, (size_t)nimg * 2048);
    print_message("[ golden   ] %-8s features: max abs %.3g, rel-L2 all %.3g, worst image %.3g; probs max abs %.3g\n",
                  fn_isa_name(isa), worst_abs, all_rel, worst_rel, worst_pabs);
    assert_string_equal(fn_model_label(m, G.top5[0][0]), "banana");
    free(feat);
    free(probs);
    fn_model_close(m);
}

static void test_golden_portable(void **s)
{
    (void)s;
    if (quick() && fn_isa_detect() != FN_ISA_PORTABLE) skip();
    check_isa(FN_ISA_PORTABLE);
}
static void test_golden_avx2(void **s)
{
    (void)s;
    if (fn_isa_detect() < FN_ISA_AVX2 || (quick() && fn_isa_detect() != FN_ISA_AVX2)) skip();
    check_isa(FN_ISA_AVX2);
}
static void test_golden_avx512(void **s)
{
    (void)s;
    if (fn_isa_detect() < FN_ISA_AVX512) skip();
    check_isa(FN_ISA_AVX512);
}

/* Batches larger than max_batch, odd sizes and 1 thread give the same features as one batch, to
 * TU_BATCH_TOL (testutil.h: why not to the last bit). */
static void test_batching_consistent(void **s)
{
    (void)s;
    if (quick()) skip();
    TU_REQUIRE(have_golden);
    TU_REQUIRE(tu_weights_path());
    fn_isa best = fn_isa_detect();
    fn_model *m8 = open_model(best, 2, 8), *m3 = open_model(best, 1, 3);
    float *a = malloc(NIMG * 2048 * sizeof(float)), *b = malloc(NIMG * 2048 * sizeof(float));
    assert_int_equal(fn_model_features(m8, G.input, NIMG, a, NULL), FN_OK);
    assert_int_equal(fn_model_features(m3, G.input, NIMG, b, NULL), FN_OK);
    double d = tu_max_abs(a, b, NIMG * 2048);
    print_message("[ golden   ] batch 8/2 threads vs batch 3/1 thread: max abs %.3g\n", d);
    assert_true(d <= TU_BATCH_TOL);
    /* one image alone */
    assert_int_equal(fn_model_features(m3, G.input + 5 * IN_FLOATS, 1, b, NULL), FN_OK);
    assert_true(tu_max_abs(a + 5 * 2048, b, 2048) <= TU_BATCH_TOL);
    /* n = 0 is a no-op, bad arguments are refused */
    assert_int_equal(fn_model_features(m3, G.input, 0, b, NULL), FN_OK);
    fn_error e = {0};
    assert_int_equal(fn_model_features(m3, NULL, 1, b, &e), FN_EARG);
    assert_true(strlen(e.msg) > 0);
    free(a);
    free(b);
    fn_model_close(m8);
    fn_model_close(m3);
}

/* A model opened for batch 1 transforms only the Winograd weights batch 1 picks (fn_conv_wino_needed):
 * its features must be bit for bit those of a model that has them all (max_batch 64), on every ISA. */
static void test_max_batch_one_bitwise(void **s)
{
    (void)s;
    TU_REQUIRE(have_golden);
    TU_REQUIRE(tu_weights_path());
    static const fn_isa isas[] = {FN_ISA_PORTABLE, FN_ISA_AVX2, FN_ISA_AVX512};
    float *a = malloc(2048 * sizeof(float)), *b = malloc(2048 * sizeof(float));
    for (int i = 0; i < 3; i++) {
        fn_isa got;
        if (fn_isa_resolve(isas[i], &got, NULL) != FN_OK || (quick() && isas[i] != fn_isa_detect()))
            continue;
        fn_model *m1 = open_model(isas[i], 2, 1), *m64 = open_model(isas[i], 2, 64);
        assert_int_equal(fn_model_features(m1, G.input + 3 * IN_FLOATS, 1, a, NULL), FN_OK);
        assert_int_equal(fn_model_features(m64, G.input + 3 * IN_FLOATS, 1, b, NULL), FN_OK);
        assert_memory_equal(a, b, 2048 * sizeof(float));
        fn_model_close(m1);
        fn_model_close(m64);
    }
    free(a);
    free(b);
}

/* From the JPEG files in imgdir: our decoder + PIL-exact resize against the Keras features ref[8][2048]:
 * rel-L2 <= 1e-5 per image with libjpeg-turbo (default, PIL's decoder), cosine >= 0.999 with stb_image. */
static void end_to_end(const char *imgdir_in, const float *ref, const char *what)
{
    char imgdir[4096]; /* tu_path's buffers rotate: keep our own copy */
    snprintf(imgdir, sizeof imgdir, "%s", imgdir_in);
    fn_model *m = open_model(fn_isa_detect(), 2, NIMG);
    float *in = malloc(NIMG * IN_FLOATS * sizeof(float)), *feat = malloc(NIMG * 2048 * sizeof(float));
    for (int i = 0; i < NIMG; i++) {
        fn_error e = {0};
        int rc = fn_input_from_file(tu_path(imgdir, rel_paths[i]), FN_RESIZE_PIL, in + i * IN_FLOATS, &e);
        if (rc != FN_OK)
            fail_msg("%s", e.msg);
    }
    assert_int_equal(fn_model_features(m, in, NIMG, feat, NULL), FN_OK);
    double worst = 1, worst_rel = 0;
    int worst_i = 0;
    for (int i = 0; i < NIMG; i++) {
        double c = tu_cosine(feat + i * 2048, ref + i * 2048, 2048);
        double rl = tu_rel_l2(feat + i * 2048, ref + i * 2048, 2048);
        if (c < worst)
            worst = c, worst_i = i;
        if (rl > worst_rel)
            worst_rel = rl;
    }
    int turbo = tu_decoder_is_pil();
    print_message("[ golden   ] JPEG end to end, %s (%s): worst cosine %.6f (%s), worst rel-L2 %.2e\n", what,
                  fn_image_decoder_name(), worst, names[worst_i], worst_rel);
    if (turbo)
        assert_true(worst_rel <= 1e-5); /* the README's parity promise */
    else
        assert_true(worst >= 0.999); /* make JPEG=stb: a few levels off libjpeg's pixels */
    free(in);
    free(feat);
    fn_model_close(m);
}

static void test_end_to_end_jpeg(void **s)
{
    (void)s;
    if (quick()) skip();
    TU_REQUIRE(have_golden);
    TU_REQUIRE(tu_weights_path());
    const char *sample = tu_sample_dir();
    TU_REQUIRE(sample);
    end_to_end(sample, G.avgpool, "../shared sample");
}

/* The same from the repository's own copy (tests/data/fruits-360-mini: the 8 golden JPEGs and their Keras
 * features, copied from ../shared): runs in a clone with no ../shared beside it. */
static void test_end_to_end_bundled(void **s)
{
    (void)s;
    if (quick()) skip();
    TU_REQUIRE(tu_weights_path());
    const char *dir = "tests/data/fruits-360-mini";
    float *ref = malloc(NIMG * 2048 * sizeof(float));
    load_per_image(dir, "golden", "avgpool", 2048, ref);
    end_to_end(tu_path(dir, "images"), ref, "repository copy");
    free(ref);
}

static void test_open_errors(void **s)
{
    (void)s;
    fn_model *m = NULL;
    fn_error e = {0};
    assert_int_equal(fn_model_open("/nonexistent/w.fnw", NULL, &m, &e), FN_EIO);
    assert_null(m);
    assert_non_null(strstr(e.msg, "/nonexistent/w.fnw"));
    fn_model_options o;
    fn_model_options_default(&o);
    o.threads = -1;
    assert_int_equal(fn_model_open("x", &o, &m, &e), FN_EARG);
    fn_model_options_default(&o);
    o.isa = (fn_isa)42;
    assert_int_equal(fn_model_open("x", &o, &m, &e), FN_EARG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_open_errors),
        cmocka_unit_test(test_golden_portable),
        cmocka_unit_test(test_golden_avx2),
        cmocka_unit_test(test_golden_avx512),
        cmocka_unit_test(test_batching_consistent),
        cmocka_unit_test(test_max_batch_one_bitwise),
        cmocka_unit_test(test_end_to_end_jpeg),
        cmocka_unit_test(test_end_to_end_bundled),
    };
    return cmocka_run_group_tests_name("golden", tests, setup, teardown);
}
