/* testutil.c — helpers shared by the tests. */
#include "testutil.h"
#include "conv.h"
#include "conv_plan.h"
#include "gemm.h"
#include "model_hook.h"
#include "threadpool.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

void *tu_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 1 << 16, n = 0;
    unsigned char *buf = malloc(cap);
    for (;;) {
        if (n == cap) {
            cap *= 2;
            buf = realloc(buf, cap);
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        if (got == 0)
            break;
        n += got;
    }
    fclose(f);
    if (len)
        *len = n;
    return buf;
}

float *tu_read_f32(const char *path, size_t count)
{
    size_t len = 0;
    float *p = tu_read_file(path, &len);
    if (p && len != count * sizeof(float)) {
        free(p);
        return NULL;
    }
    return p;
}

const char *tu_path(const char *dir, const char *rel)
{
    static char buf[8][4096];
    static int k;
    char *b = buf[k++ & 7];
    snprintf(b, 4096, "%s/%s", dir, rel);
    return b;
}

static const char *data_dir(const char *env, const char *dflt)
{
    const char *p = getenv(env);
    if (!p || !*p)
        p = dflt;
    struct stat st;
    if (stat(p, &st) == 0)
        return p;
    const char *req = getenv("FRUITNET_REQUIRE_DATA");
    if (req && strcmp(req, "1") == 0)
        fail_msg("%s (%s) not found and FRUITNET_REQUIRE_DATA=1", env, p);
    return NULL;
}

const char *tu_golden_dir(void) { return data_dir("FRUITNET_GOLDEN", "../shared/golden"); }
const char *tu_sample_dir(void) { return data_dir("FRUITNET_SAMPLE", "../shared/data/fruits-360-sample"); }
const char *tu_weights_path(void) { return data_dir("FRUITNET_WEIGHTS", "weights/resnet50.fnw"); }

double tu_max_abs(const float *a, const float *b, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (d > m || d != d)
            m = d;
    }
    return m;
}

double tu_rel_l2(const float *a, const float *ref, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - (double)ref[i];
        num += d * d;
        den += (double)ref[i] * ref[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

double tu_cosine(const float *a, const float *b, size_t n)
{
    double ab = 0, aa = 0, bb = 0;
    for (size_t i = 0; i < n; i++) {
        ab += (double)a[i] * b[i];
        aa += (double)a[i] * a[i];
        bb += (double)b[i] * b[i];
    }
    return (aa > 0 && bb > 0) ? ab / sqrt(aa * bb) : 0.0;
}

void tu_fill_random(float *x, size_t n, uint64_t seed, float lo, float hi)
{
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < n; i++) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        x[i] = lo + (hi - lo) * (float)((s >> 40) * (1.0 / 16777216.0));
    }
}

void tu_conv_operands(size_t K, int cout, size_t nin, uint64_t seed, float **wt, float **bias, float **in)
{
    *wt = malloc(K * (size_t)cout * sizeof(float));
    *bias = malloc((size_t)cout * sizeof(float));
    *in = malloc(nin * sizeof(float));
    assert_true(*wt && *bias && *in);
    tu_fill_random(*wt, K * (size_t)cout, seed, -0.5f, 0.5f);
    tu_fill_random(*bias, (size_t)cout, seed + 1, -1, 1);
    tu_fill_random(*in, nin, seed + 2, -1, 3); /* then ReLU: a quarter zeros */
    for (size_t i = 0; i < nin; i++)
        (*in)[i] = (*in)[i] > 0 ? (*in)[i] : 0;
}

void tu_packed_chain(int fmt, int first_bf16, int wino, int n, int h, int w)
{
    enum { C0 = 64, F = 64, C3 = 128 };
    const int ks[3] = {1, 3, 1}, cin[3] = {C0, F, F}, cout[3] = {F, F, C3};
    const float act[3] = {0, 12.0f / 255, 40.0f / 255}; /* int8: the input scales of the 2nd and 3rd */
    fn_conv c[3];
    fn_error e;
    float *wt[3], *bias[3], *in[3];
    for (int i = 0; i < 3; i++) {
        const size_t K = (size_t)ks[i] * ks[i] * cin[i];
        tu_conv_operands(K, cout[i], (size_t)n * h * w * cin[i], 40 + 3 * (uint64_t)i, &wt[i], &bias[i], &in[i]);
        const int mid_wino = wino && i == 1;
        assert_int_equal(fn_conv_init(&c[i], ks[i], ks[i], 1, ks[i] / 2, cin[i], cout[i], wt[i], bias[i],
                                      mid_wino ? FN_WINO_F2 | FN_WINO_F4 : 0, FN_ISA_AVX512, &e), FN_OK);
        if (mid_wino)
            continue;
        if (fmt == FN_PACKED_BF16 || (i == 0 && first_bf16))
            assert_int_equal(fn_conv_enable_bf16(&c[i], wt[i], &e), FN_OK);
        else if (i > 0)
            assert_int_equal(fn_conv_enable_int8(&c[i], wt[i], act[i], &e), FN_OK);
    }
    fn_pool *pool = fn_pool_create(2);
    size_t sc = 0;
    for (int i = 0; i < 3; i++) {
        size_t s = fn_conv_scratch_floats(&c[i], n, h, w, 2);
        sc = s > sc ? s : sc;
    }
    float *scratch = fn_aalloc(sc * sizeof(float) + 64);
    const size_t px = (size_t)n * h * w, pb = fmt == FN_PACKED_U8 ? 1 : 2;
    int f0 = fmt; /* the first edge's form: float32 into a Winograd layer */
    if (wino) {
        conv_plan p;
        assert_int_equal(conv_plan_make(&c[1], n, h, w, 2, 0, &p), 1);
        assert_true(p.wino != 0);
        f0 = FN_PACKED_NONE;
    }
    assert_int_equal(fn_conv_packed_input(&c[1], n, h, w, 2), f0);
    assert_int_equal(fn_conv_packed_input(&c[2], n, h, w, 2), fmt);
    assert_true(fn_conv_packed_output_ok(&c[0], n, h, w, 2) && fn_conv_packed_output_ok(&c[1], n, h, w, 2));
    float *t[2], *o1 = malloc(px * C3 * sizeof(float)), *o2 = malloc(px * C3 * sizeof(float));
    unsigned char *pk[2], *want = malloc(px * F * pb);
    float *res = malloc(px * C3 * sizeof(float));
    tu_fill_random(res, px * C3, 49, -2, 2);
    for (int i = 0; i < 2; i++)
        t[i] = malloc(px * F * sizeof(float)), pk[i] = malloc(px * F * pb);
    /* float32 between the layers */
    fn_conv_forward(&c[0], pool, in[0], n, h, w, t[0], NULL, 1, scratch);
    fn_conv_forward(&c[1], pool, t[0], n, h, w, t[1], NULL, 1, scratch);
    fn_conv_forward(&c[2], pool, t[1], n, h, w, o1, res, 1, scratch);
    /* packed between the layers */
    fn_conv_forward_packed(&c[0], pool, in[0], FN_PACKED_NONE, n, h, w, f0 ? (void *)pk[0] : (void *)t[0], f0,
                           1.0f / act[1], NULL, 1, scratch);
    fn_conv_forward_packed(&c[1], pool, f0 ? (void *)pk[0] : (void *)t[0], f0, n, h, w, pk[1], fmt, 1.0f / act[2],
                           NULL, 1, scratch);
    fn_conv_forward_packed(&c[2], pool, pk[1], fmt, n, h, w, o2, FN_PACKED_NONE, 0, res, 1, scratch);
    for (int i = wino; i < 2; i++) {
        if (fmt == FN_PACKED_U8)
            fn_gemm_vnni_to_u8(t[i], px * F, 1.0f / act[i + 1], want);
        else
            fn_gemm_avx512bf16.to_bf16(t[i], px * F, want);
        assert_memory_equal(pk[i], want, px * F * pb);
    }
    assert_memory_equal(o1, o2, px * C3 * sizeof(float));
    for (int i = 0; i < 2; i++)
        free(t[i]), free(pk[i]);
    for (int i = 0; i < 3; i++)
        fn_conv_free(&c[i]), free(wt[i]), free(bias[i]), free(in[i]);
    free(o1), free(o2), free(want), free(res);
    fn_afree(scratch);
    fn_pool_destroy(pool);
}

static void count_convs(void *ctx, const char *name, const float *in, size_t n, int int8)
{
    (void)name, (void)in, (void)n, (void)int8;
    ++*(int *)ctx;
}

void tu_assert_same_unpacked(fn_model *m, const float *in, int n, const float *f)
{
    float *g = malloc((size_t)n * 2048 * sizeof(float));
    int convs = 0;
    fn_error e = {0};
    assert_non_null(g);
    fn_model_observe(m, count_convs, &convs);
    assert_int_equal(fn_model_features(m, in, n, g, &e), FN_OK);
    fn_model_observe(m, NULL, NULL);
    assert_true(convs > 0 && convs % 53 == 0); /* every conv observed, per run of max_batch: all float32 */
    assert_memory_equal(f, g, (size_t)n * 2048 * sizeof(float));
    free(g);
}

void tu_conv_ref(const float *in, int n, int h, int w, int cin, const float *W, const float *b, int k, int stride,
                 int pad, int cout, const float *res, int relu, double *out, int oh, int ow)
{
    for (int i = 0; i < n; i++)
        for (int oy = 0; oy < oh; oy++)
            for (int ox = 0; ox < ow; ox++)
                for (int co = 0; co < cout; co++) {
                    double s = b[co];
                    for (int ky = 0; ky < k; ky++)
                        for (int kx = 0; kx < k; kx++) {
                            int y = oy * stride - pad + ky, x = ox * stride - pad + kx;
                            if (y < 0 || y >= h || x < 0 || x >= w)
                                continue;
                            for (int ci = 0; ci < cin; ci++)
                                s += (double)in[(((size_t)i * h + y) * w + x) * cin + ci] *
                                     W[(((size_t)ky * k + kx) * cin + ci) * cout + co];
                        }
                    size_t o = (((size_t)i * oh + oy) * ow + ox) * cout + co;
                    if (res)
                        s += res[o];
                    if (relu && s < 0)
                        s = 0;
                    out[o] = s;
                }
}

int tu_decoder_is_pil(void) { return strncmp(fn_image_decoder_name(), "libjpeg", 7) == 0; }

int tu_supported_isas(fn_isa out[3])
{
    fn_isa best = fn_isa_detect();
    int n = 0;
    for (int i = FN_ISA_PORTABLE; i <= (int)best; i++)
        out[n++] = (fn_isa)i;
    return n;
}

/* ---------------------------------------------------------------- temporary folders and files */

char *tu_mkdtemp(char *buf, size_t cap, const char *tag)
{
    if (snprintf(buf, cap, "/tmp/fruitnet-test-%s-XXXXXX", tag) >= (int)cap)
        return NULL;
    return mkdtemp(buf);
}

/* Empty the folder open as dfd (closed here), depth first through openat: no path length limit. */
static int rm_under(int dfd)
{
    DIR *d = fdopendir(dfd);
    if (!d) {
        close(dfd);
        return -1;
    }
    int rc = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        if (unlinkat(dirfd(d), e->d_name, 0) == 0)
            continue;
        if (errno != EISDIR && errno != EPERM) {
            rc = -1;
            continue;
        }
        int sub = openat(dirfd(d), e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (sub < 0 || rm_under(sub) != 0 || unlinkat(dirfd(d), e->d_name, AT_REMOVEDIR) != 0)
            rc = -1;
    }
    closedir(d);
    return rc;
}

int tu_rm_rf(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return errno == ENOENT ? 0 : -1;
    if (!S_ISDIR(st.st_mode))
        return unlink(path);
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0 || rm_under(fd) != 0)
        return -1;
    return rmdir(path);
}

void tu_write(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        fail_msg("%s: cannot create: %s", path, strerror(errno));
    if (n && fwrite(data, 1, n, f) != n)
        fail_msg("%s: short write", path);
    if (fclose(f) != 0)
        fail_msg("%s: cannot close: %s", path, strerror(errno));
}

void tu_copy_file(const char *src, const char *dst)
{
    size_t n;
    unsigned char *b = tu_read_file(src, &n);
    if (!b)
        fail_msg("%s: cannot read", src);
    tu_write(dst, b, n);
    free(b);
}

float tu_half_to_float(uint16_t h)
{
    uint32_t s = (uint32_t)(h >> 15) << 31, e = (h >> 10) & 31, m = h & 1023, bits;
    if (e == 0) {
        if (m == 0)
            bits = s;
        else {
            e = 113;
            while (!(m & 1024))
                m <<= 1, e--;
            bits = s | (e << 23) | ((m & 1023) << 13);
        }
    } else if (e == 31)
        bits = s | 0x7f800000u | (m << 13);
    else
        bits = s | ((e + 112) << 23) | (m << 13);
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/* ---------------------------------------------------------------- dataset rows */

void tu_read_rows_ex(const char *path, int flags, tu_rows *r)
{
    char **files = NULL;
    int nf = 0;
    fn_error e = {0};
    memset(r, 0, sizeof *r);
    if (fn_dataset_files(path, flags, &files, &nf, &e) != FN_OK)
        fail_msg("%s", e.msg);
    for (int f = 0; f < nf; f++) {
        fn_parquet_reader *rd = NULL;
        if (fn_parquet_reader_open(files[f], &rd, &e) != FN_OK)
            fail_msg("%s", e.msg);
        fn_parquet_row row;
        int rc;
        while ((rc = fn_parquet_reader_next(rd, &row, &e)) == 1) {
            assert_true(r->n < TU_MAX_ROWS);
            assert_int_equal(row.n, FN_FEATURE_DIM);
            r->path[r->n] = strdup(row.path);
            r->label[r->n] = strdup(row.label);
            r->vec[r->n] = malloc(FN_FEATURE_DIM * sizeof(float));
            memcpy(r->vec[r->n], row.vec, FN_FEATURE_DIM * sizeof(float));
            r->n++;
        }
        if (rc != 0)
            fail_msg("%s", e.msg);
        fn_parquet_reader_close(rd);
    }
    fn_free_list(files, nf);
}

void tu_read_rows(const char *path, tu_rows *r) { tu_read_rows_ex(path, 0, r); }

void tu_free_rows(tu_rows *r)
{
    for (int i = 0; i < r->n; i++) {
        free(r->path[i]);
        free(r->label[i]);
        free(r->vec[i]);
    }
    r->n = 0;
}

int tu_find_row(const tu_rows *r, const char *path)
{
    for (int i = 0; i < r->n; i++)
        if (strcmp(r->path[i], path) == 0)
            return i;
    return -1;
}

fn_model *tu_open_model(fn_precision p, int max_batch)
{
    fn_model_options o;
    fn_model_options_default(&o);
    o.threads = 2, o.max_batch = max_batch, o.classifier = 1, o.precision = p;
    fn_model *m = NULL;
    fn_error e = {0};
    if (fn_model_open(tu_weights_path(), &o, &m, &e) != FN_OK)
        fail_msg("fn_model_open(%s): %s", fn_precision_name(p), e.msg);
    assert_int_equal(fn_model_precision(m), p);
    return m;
}

/* Components for 80% of the variance of n rows of FN_FEATURE_DIM. */
static int k80(const float *rows, int n)
{
    fn_pca_stats *st;
    fn_pca_model *pm;
    fn_error e = {0};
    assert_int_equal(fn_pca_stats_new(FN_FEATURE_DIM, &st, &e), FN_OK);
    assert_int_equal(fn_pca_stats_add(st, rows, n, 2, &e), FN_OK);
    if (fn_pca_fit(st, 0, 0.80, &pm, &e) != FN_OK)
        fail_msg("pca: %s", e.msg);
    int k = fn_pca_model_k(pm);
    fn_pca_model_free(pm);
    fn_pca_stats_free(st);
    return k;
}

static int argmax(const float *p, int n)
{
    int b = 0;
    for (int i = 1; i < n; i++)
        if (p[i] > p[b])
            b = i;
    return b;
}

void tu_precision_gate(const char *golden, const char *sample, fn_precision p, int step, tu_gate *out)
{
    enum { N2880 = 2880, D = FN_FEATURE_DIM, BATCH = 32 };
    const size_t in_floats = (size_t)FN_INPUT_SIZE * FN_INPUT_SIZE * 3;
    const int n = N2880 / step;
    memset(out, 0, sizeof *out);
    /* the golden float32 features (stored as float16) of rows 0, step, 2 step, ... */
    uint16_t *h = malloc((size_t)N2880 * D * 2);
    assert_non_null(h);
    gzFile gz = gzopen(tu_path(golden, "all2880/features_2880x2048.f16.gz"), "rb");
    assert_non_null(gz);
    assert_int_equal(gzread(gz, h, N2880 * D * 2), N2880 * D * 2);
    gzclose(gz);
    float *ref = malloc((size_t)n * D * sizeof(float)), *feat = malloc((size_t)n * D * sizeof(float));
    assert_true(ref && feat);
    for (int r = 0; r < n; r++)
        for (int k = 0; k < D; k++)
            ref[(size_t)r * D + k] = tu_half_to_float(h[(size_t)r * step * D + k]);
    free(h);
    /* the manifest's paths of the same rows */
    FILE *mf = fopen(tu_path(golden, "all2880/manifest.csv"), "r");
    assert_non_null(mf);
    char line[1024], (*paths)[512] = malloc((size_t)n * 512);
    assert_non_null(paths);
    int row = -1, got = 0;
    while (fgets(line, sizeof line, mf)) {
        if (row++ < 0)
            continue; /* header */
        if ((row - 1) % step)
            continue;
        char *a = strchr(line, ','), *b = a ? strrchr(line, ',') : NULL;
        assert_true(a && b && b > a && got < n);
        *b = 0;
        snprintf(paths[got++], 512, "%s/%s", sample, a + 1);
    }
    fclose(mf);
    assert_int_equal(got, n);
    fn_model *m = tu_open_model(p, BATCH);
    float *in = malloc(BATCH * in_floats * sizeof(float));
    assert_non_null(in);
    fn_error e = {0};
    for (int r0 = 0; r0 < n; r0 += BATCH) {
        int b = n - r0 < BATCH ? n - r0 : BATCH;
        for (int i = 0; i < b; i++)
            if (fn_input_from_file(paths[r0 + i], FN_RESIZE_PIL, in + (size_t)i * in_floats, &e) != FN_OK)
                fail_msg("%s: %s", paths[r0 + i], e.msg);
        assert_int_equal(fn_model_features(m, in, b, feat + (size_t)r0 * D, &e), FN_OK);
    }
    float *p1 = malloc(1000 * sizeof(float)), *p2 = malloc(1000 * sizeof(float));
    assert_true(p1 && p2);
    out->n = n, out->worst = 1;
    int worst_row = 0;
    for (int r = 0; r < n; r++) {
        double c = tu_cosine(feat + (size_t)r * D, ref + (size_t)r * D, D);
        out->mean += c / n;
        if (c < out->worst)
            out->worst = c, worst_row = r;
        assert_int_equal(fn_model_classify(m, feat + (size_t)r * D, 1, p1, &e), FN_OK);
        assert_int_equal(fn_model_classify(m, ref + (size_t)r * D, 1, p2, &e), FN_OK);
        int a = argmax(p1, 1000), a32 = argmax(p2, 1000);
        out->agree += a == a32;
        if (a != a32 && p2[a32] - p2[a] > out->widest)
            out->widest = p2[a32] - p2[a];
    }
    snprintf(out->worst_path, sizeof out->worst_path, "%s", paths[worst_row]);
    out->k80 = k80(feat, n), out->k80_ref = k80(ref, n);
    fn_model_close(m);
    free(in), free(feat), free(ref), free(paths), free(p1), free(p2);
}

const char *const tu_g8_names[TU_G8] = {"g0_banana",     "g1_apple_braeburn", "g2_lemon", "g3_pineapple",
                                        "g4_strawberry", "g5_cocos",          "g6_kiwi",  "g7_tomato_1"};

void tu_g8_load(const char *golden, float *in, float *ref)
{
    const size_t nin = (size_t)224 * 224 * 3, nf = 2048;
    for (int i = 0; i < TU_G8; i++) {
        char rel[256];
        snprintf(rel, sizeof rel, "img8/%s.input.f32", tu_g8_names[i]);
        float *x = tu_read_f32(tu_path(golden, rel), nin);
        snprintf(rel, sizeof rel, "img8/%s.avgpool.f32", tu_g8_names[i]);
        float *y = tu_read_f32(tu_path(golden, rel), nf);
        assert_non_null(x);
        assert_non_null(y);
        memcpy(in + i * nin, x, nin * sizeof(float));
        memcpy(ref + i * nf, y, nf * sizeof(float));
        free(x), free(y);
    }
}

double tu_g8_worst_cosine(const char *what, const float *f, const float *ref, double min_cos)
{
    double worst = 1;
    for (int i = 0; i < TU_G8; i++) {
        double c = tu_cosine(f + (size_t)i * 2048, ref + (size_t)i * 2048, 2048);
        if (!(c >= min_cos))
            fail_msg("%s, %s: cosine to Keras %.6f; needs >= %g", what, tu_g8_names[i], c, min_cos);
        worst = c < worst ? c : worst;
    }
    return worst;
}
