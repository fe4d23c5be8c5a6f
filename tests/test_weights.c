/*
 * test_weights.c — the .fnw loader on the real converted weights, the TF.js
 * converter on a small synthetic model (batch-norm folding checked against a
 * double-precision reference), and corrupt files of every kind.
 */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void test_real_weights(void **s)
{
    (void)s;
    const char *p = tu_weights_path();
    TU_REQUIRE(p);
    fn_weights *w;
    fn_error e;
    if (fn_weights_open(p, &w, &e) != FN_OK)
        fail_msg("%s", e.msg);
    int convs = 0;
    for (int i = 0; i < fn_weights_count(w); i++) {
        const fn_wtensor *t = fn_weights_at(w, i);
        assert_int_equal((uintptr_t)t->data % 64, 0);
        size_t l = strlen(t->name);
        if (l > 7 && !strcmp(t->name + l - 7, "/kernel") && t->ndim == 4)
            convs++;
    }
    assert_int_equal(convs, 53);
    const fn_wtensor *c1 = fn_weights_find(w, "conv1/kernel");
    assert_non_null(c1);
    assert_int_equal(c1->shape[0], 7), assert_int_equal(c1->shape[1], 7);
    assert_int_equal(c1->shape[2], 3), assert_int_equal(c1->shape[3], 64);
    const fn_wtensor *last = fn_weights_find(w, "res5c_branch2c/kernel");
    assert_non_null(last);
    assert_int_equal(last->shape[2], 512), assert_int_equal(last->shape[3], 2048);
    assert_non_null(fn_weights_find(w, "res3a_branch1/bias"));
    assert_null(fn_weights_find(w, "bn_conv1/gamma")); /* folded away */
    const fn_wtensor *fc = fn_weights_find(w, "fc1000/kernel");
    assert_int_equal(fc->shape[0], 2048), assert_int_equal(fc->shape[1], 1000);
    const fn_wtensor *lab = fn_weights_find(w, "labels"), *meta = fn_weights_find(w, "meta");
    assert_non_null(lab);
    assert_non_null(meta);
    int lines = 0;
    const char *tx = lab->data, *banana = NULL;
    for (int64_t i = 0, start = 0; i < lab->count; i++)
        if (tx[i] == '\n') {
            if (lines == 954)
                banana = tx + start;
            lines++, start = i + 1;
        }
    assert_int_equal(lines, 1000);
    assert_int_equal(strncmp(banana, "banana\n", 7), 0);
    assert_non_null(memmem(meta->data, (size_t)meta->count, "bn=folded", 9));
    assert_int_not_equal(fn_weights_crc32(w), 0);
    fn_weights_close(w);
}

/* A synthetic TF.js model: one conv (2x2x3->4) + BN, one Dense, written here. */
static char dir[64];

static void write_file(const char *name, const void *data, size_t n)
{
    char p[256];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, n, f), n);
    fclose(f);
}

static const char *model_json =
    "{\"format\":\"layers-model\",\"modelTopology\":{\"model_config\":{\"class_name\":\"Model\",\"config\":{\"layers\":["
    "{\"class_name\":\"Conv2D\",\"name\":\"c\",\"config\":{\"use_bias\":true},\"inbound_nodes\":[]},"
    "{\"class_name\":\"BatchNormalization\",\"name\":\"bn_c\",\"config\":{\"epsilon\":0.001},"
    "\"inbound_nodes\":[[[\"c\",0,0,{}]]]},"
    "{\"class_name\":\"Dense\",\"name\":\"fc\",\"config\":{\"use_bias\":true},\"inbound_nodes\":[[[\"bn_c\",0,0,{}]]]}"
    "]}}},\"weightsManifest\":[{\"paths\":[\"s1.bin\",\"s2.bin\"],\"weights\":["
    "{\"name\":\"c/kernel\",\"shape\":[2,2,3,4],\"dtype\":\"float32\"},"
    "{\"name\":\"c/bias\",\"shape\":[4],\"dtype\":\"float32\"},"
    "{\"name\":\"bn_c/gamma\",\"shape\":[4],\"dtype\":\"float32\"},"
    "{\"name\":\"bn_c/beta\",\"shape\":[4],\"dtype\":\"float32\"},"
    "{\"name\":\"bn_c/moving_mean\",\"shape\":[4],\"dtype\":\"float32\"},"
    "{\"name\":\"bn_c/moving_variance\",\"shape\":[4],\"dtype\":\"float32\"},"
    "{\"name\":\"fc/kernel\",\"shape\":[4,2],\"dtype\":\"float32\"},"
    "{\"name\":\"fc/bias\",\"shape\":[2],\"dtype\":\"float32\"}]}]}";

#define NVALS (48 + 4 * 5 + 8 + 2)

static void write_labels(void)
{
    char *t = malloc(20000), *p = t;
    p += sprintf(p, "{");
    for (int i = 0; i < 1000; i++)
        p += sprintf(p, "%s\"%d\": \"label_%d\"", i ? "," : "", i, i);
    sprintf(p, "}");
    write_file("labels.json", t, strlen(t));
    free(t);
}

static void test_convert_synthetic(void **s)
{
    (void)s;
    snprintf(dir, sizeof dir, "/tmp/fruitnet-test-weights-XXXXXX");
    assert_non_null(mkdtemp(dir));
    float v[NVALS];
    tu_fill_random(v, NVALS, 5, -1, 1);
    for (int i = 48 + 4 * 4; i < 48 + 4 * 5; i++) /* variances > 0 */
        v[i] = fabsf(v[i]) + 0.1f;
    write_file("model.json", model_json, strlen(model_json));
    write_file("s1.bin", v, 40 * 4); /* split across two shards */
    write_file("s2.bin", v + 40, sizeof v - 40 * 4);
    write_labels();
    char mj[128], lj[128], out[128];
    snprintf(mj, sizeof mj, "%s/model.json", dir);
    snprintf(lj, sizeof lj, "%s/labels.json", dir);
    snprintf(out, sizeof out, "%s/x.fnw", dir);
    fn_error e;
    if (fn_convert_tfjs(mj, lj, "sha512-test", out, &e) != FN_OK)
        fail_msg("%s", e.msg);
    fn_weights *w;
    assert_int_equal(fn_weights_open(out, &w, &e), FN_OK);
    const fn_wtensor *k = fn_weights_find(w, "c/kernel"), *b = fn_weights_find(w, "c/bias");
    assert_non_null(k);
    assert_non_null(b);
    const float *kd = k->data, *bd = b->data;
    const float *K = v, *B = v + 48, *G = v + 52, *BE = v + 56, *MU = v + 60, *VAR = v + 64;
    for (int i = 0; i < 48; i++) {
        int co = i % 4;
        double sc = G[co] / sqrt((double)VAR[co] + 1e-3);
        assert_true(fabs(kd[i] - (float)(K[i] * sc)) <= 1e-7 * fabs(K[i] * sc) + 1e-12);
    }
    for (int co = 0; co < 4; co++) {
        double sc = G[co] / sqrt((double)VAR[co] + 1e-3), want = (B[co] - MU[co]) * sc + BE[co];
        assert_true(fabs(bd[co] - want) <= 1e-6 * fabs(want) + 1e-7);
    }
    const fn_wtensor *fk = fn_weights_find(w, "fc/kernel");
    assert_memory_equal(fk->data, v + 68, 8 * 4); /* dense copied as is */
    fn_weights_close(w);

    /* converter errors: missing shard, short shard, bad JSON, wrong dtype */
    write_file("s2.bin", v + 40, 8);
    assert_int_equal(fn_convert_tfjs(mj, lj, NULL, out, &e), FN_EFORMAT);
    assert_non_null(strstr(e.msg, "model.json"));
    snprintf(out, sizeof out, "%s/s2.bin", dir);
    unlink(out);
    snprintf(out, sizeof out, "%s/y.fnw", dir);
    assert_int_equal(fn_convert_tfjs(mj, lj, NULL, out, &e), FN_EIO);
    assert_non_null(strstr(e.msg, "s2.bin"));
    write_file("model.json", "{\"format\": \"layers-model\", ", 28);
    assert_int_equal(fn_convert_tfjs(mj, lj, NULL, out, &e), FN_EFORMAT);
    assert_non_null(strstr(e.msg, "JSON"));
    write_file("s2.bin", v + 40, sizeof v - 40 * 4);
    char *m2 = strdup(model_json);
    char *f32 = strstr(m2, "float32");
    memcpy(f32, "float16", 7);
    write_file("model.json", m2, strlen(m2));
    assert_int_equal(fn_convert_tfjs(mj, lj, NULL, out, &e), FN_EUNSUPPORTED);
    assert_non_null(strstr(e.msg, "float16"));
    free(m2);
    assert_int_not_equal(access(out, F_OK), 0); /* nothing written on failure */
}

static void test_corrupt_weight_files(void **s)
{
    (void)s;
    char p[128];
    snprintf(p, sizeof p, "%s/x.fnw", dir);
    size_t n;
    unsigned char *b = tu_read_file(p, &n);
    TU_REQUIRE(b);
    fn_weights *w;
    fn_error e;
    assert_int_equal(fn_weights_open_memory(b, n, &w, &e), FN_OK);
    fn_weights_close(w);
    unsigned char *c = malloc(n);
    /* every truncation fails cleanly */
    for (size_t cut = 0; cut < n; cut++)
        assert_true(fn_weights_open_memory(b, cut, &w, &e) < 0);
    /* a flipped byte anywhere is detected (header, table or data CRC) */
    for (size_t i = 0; i < n; i++) {
        memcpy(c, b, n);
        c[i] ^= 0x10;
        int rc = fn_weights_open_memory(c, n, &w, &e);
        if (rc == FN_OK) { /* only padding bytes between tensors may flip unnoticed... but they are in the data CRC */
            fn_weights_close(w);
            fail_msg("flipped byte %zu not detected", i);
        }
    }
    memcpy(c, b, n);
    memcpy(c, "NOTFNW!!", 8);
    assert_int_equal(fn_weights_open_memory(c, n, &w, &e), FN_EFORMAT);
    assert_non_null(strstr(e.msg, "magic"));
    free(c);
    free(b);
    assert_int_equal(fn_weights_open("/nonexistent.fnw", &w, &e), FN_EIO);
    assert_non_null(strstr(e.msg, "/nonexistent.fnw"));
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_real_weights),
        cmocka_unit_test(test_convert_synthetic),
        cmocka_unit_test(test_corrupt_weight_files),
    };
    return cmocka_run_group_tests_name("weights", tests, NULL, NULL);
}
