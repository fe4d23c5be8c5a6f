/*
 * test_pca.c — the PCA against ../shared/golden/all2880/pca (numpy float64
 * eigh of the covariance of the 2,880 reference features), sharded statistics
 * merged through files, degenerate input and corrupt files.
 *
 * The golden features are stored as float16; the golden eigenvalues were
 * computed from the float32 originals. Rounding to float16 moves the
 * eigenvalues by up to 2.3e-5 relative over the top 50 (measured: numpy on
 * the float16 data shows the same deviation), so the comparison with the
 * golden file uses 5e-5 (top 50) and 2e-4 (top 100, where the eigenvalues
 * are ~100x smaller than the first and the rounding weighs more: measured
 * 3.3e-5). The comparison with numpy on the *same* input, when
 * /usr/bin/python3 has numpy, uses 1e-9 (measured ~1e-14), far inside the
 * 1e-6 the specification asks for. n80/n90/n95/n99 and the trace are read
 * from pca_summary.json.
 */
#include "testutil.h"

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define N 2880
#define D 2048

static float *X; /* the golden features as float32 */

static int setup(void **s)
{
    (void)s;
    const char *g = tu_golden_dir();
    if (!g)
        return 0;
    gzFile gz = gzopen(tu_path(g, "all2880/features_2880x2048.f16.gz"), "rb");
    if (!gz)
        return -1;
    uint16_t *h = malloc((size_t)N * D * 2);
    int ok = gzread(gz, h, N * D * 2) == N * D * 2;
    gzclose(gz);
    X = malloc((size_t)N * D * sizeof(float));
    for (size_t i = 0; ok && i < (size_t)N * D; i++)
        X[i] = tu_half_to_float(h[i]);
    free(h);
    return ok ? 0 : -1;
}

static int teardown(void **s)
{
    (void)s;
    free(X);
    return 0;
}

static double json_number(const char *path, const char *key)
{
    size_t n;
    char *t = tu_read_file(path, &n);
    assert_non_null(t);
    t = realloc(t, n + 1);
    t[n] = 0;
    char pat[128];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    char *p = strstr(t, pat);
    assert_non_null(p);
    double v = strtod(p + strlen(pat), NULL);
    free(t);
    return v;
}

static void test_golden_pca(void **s)
{
    (void)s;
    const char *g = tu_golden_dir();
    TU_REQUIRE(g);
    fn_pca_stats *st;
    fn_error e;
    assert_int_equal(fn_pca_stats_new(D, &st, &e), FN_OK);
    assert_int_equal(fn_pca_stats_add(st, X, N, 0, &e), FN_OK);
    assert_int_equal(fn_pca_stats_rows(st), N);
    /* mean vs the golden float64 mean (float16 storage: |diff| well below 1e-3) */
    double *mean = (double *)tu_read_file(tu_path(g, "all2880/pca/pca_mean.f64"), NULL);
    assert_non_null(mean);
    double md = 0;
    for (int i = 0; i < D; i++)
        md = fmax(md, fabs(fn_pca_stats_mean(st)[i] - mean[i]));
    assert_true(md < 1e-3);
    free(mean);
    const char *summary = tu_path(g, "all2880/pca/pca_summary.json");
    int n80 = (int)json_number(summary, "n_components_80"), n90 = (int)json_number(summary, "n_components_90");
    int n95 = (int)json_number(summary, "n_components_95"), n99 = (int)json_number(summary, "n_components_99");
    double trace = json_number(summary, "total_variance_trace");
    fn_pca_model *m;
    assert_int_equal(fn_pca_fit(st, 0, 0.80, &m, &e), FN_OK);
    print_message("[ pca      ] %d components for 80%% (golden %d); trace %.6f (golden %.6f)\n", fn_pca_model_k(m), n80,
                  fn_pca_model_total_var(m), trace);
    assert_int_equal(fn_pca_model_k(m), n80);
    assert_true(fabs(fn_pca_model_total_var(m) - trace) / trace < 1e-5);
    /* FRUITNET_SKIP_SLOW=1 (the sanitizer run) checks the 47 components of the 80% fit only */
    const char *sk = getenv("FRUITNET_SKIP_SLOW");
    int full = !(sk && !strcmp(sk, "1"));
    /* eigenvalues: top 100 (or the 80% ones) vs golden, and the full spectrum */
    fn_pca_model *m100;
    double *spec = malloc(D * sizeof(double));
    assert_int_equal(fn_pca_fit_ex(st, full ? 100 : fn_pca_model_k(m), 0, 0, &m100, spec, &e), FN_OK);
    {
        /* n90/n95/n99 from the spectrum with the reference rule: fewest components whose cumulative
         * share of the trace reaches the target; the spectrum sums to the trace */
        int want[3] = {n90, n95, n99}, got[3] = {0, 0, 0};
        double tgt[3] = {0.90, 0.95, 0.99}, cum = 0, sum = 0;
        for (int r = 0; r < D; r++) {
            cum += spec[r];
            for (int t = 0; t < 3; t++)
                if (!got[t] && cum / fn_pca_model_total_var(m100) >= tgt[t])
                    got[t] = r + 1;
            assert_true(r == 0 || spec[r] <= spec[r - 1]);
        }
        for (int r = D - 1; r >= 0; r--)
            sum += spec[r];
        print_message("[ pca      ] n90 %d n95 %d n99 %d (golden %d %d %d); sum of eigenvalues / trace - 1 = %.1e\n",
                      got[0], got[1], got[2], n90, n95, n99, sum / fn_pca_model_total_var(m100) - 1);
        for (int t = 0; t < 3; t++)
            assert_int_equal(got[t], want[t]);
        assert_true(fabs(sum / fn_pca_model_total_var(m100) - 1) < 1e-12);
        for (int r = 0; r < fn_pca_model_k(m100); r++)
            assert_true(spec[r] == fn_pca_model_eigvals(m100)[r]);
    }
    free(spec);
    /* the components are orthonormal eigenvectors of the covariance: |C v - l v| <= 1e-10 l_1 */
    {
        const int kk = fn_pca_model_k(m100);
        double worst_res = 0, worst_orth = 0, inv = 1.0 / (double)(fn_pca_stats_rows(st) - 1);
        double *cv = malloc(D * sizeof(double));
        for (int q = 0; q < kk; q++) {
            const double *v = fn_pca_model_components(m100) + (size_t)q * D;
            for (int i = 0; i < D; i++)
                cv[i] = 0;
            for (int i = 0; i < D; i++) /* C v from the upper triangle of M2 */
                for (int j = i; j < D; j++) {
                    double c = fn_pca_stats_m2(st)[(size_t)i * D + j] * inv;
                    cv[i] += c * v[j];
                    if (j != i)
                        cv[j] += c * v[i];
                }
            double r2 = 0;
            for (int i = 0; i < D; i++)
                r2 += (cv[i] - fn_pca_model_eigvals(m100)[q] * v[i]) * (cv[i] - fn_pca_model_eigvals(m100)[q] * v[i]);
            worst_res = fmax(worst_res, sqrt(r2) / fn_pca_model_eigvals(m100)[0]);
            for (int o = 0; o <= q; o++) {
                double dot = 0;
                for (int i = 0; i < D; i++)
                    dot += v[i] * fn_pca_model_components(m100)[(size_t)o * D + i];
                worst_orth = fmax(worst_orth, fabs(dot - (o == q)));
            }
        }
        free(cv);
        print_message("[ pca      ] %d components: max residual |Cv - lv|/l1 %.1e, max |V V^T - I| %.1e\n", kk,
                      worst_res, worst_orth);
        assert_true(worst_res <= 1e-10);
        assert_true(worst_orth <= 1e-10);
    }
    FILE *f = fopen(tu_path(g, "all2880/pca/pca_eigenvalues_top100.txt"), "r");
    assert_non_null(f);
    char line[256];
    double lam[100];
    int nl = 0;
    while (nl < 100 && fgets(line, sizeof line, f)) {
        int k;
        double l, r, c;
        if (line[0] != '#' && sscanf(line, "%d %lf %lf %lf", &k, &l, &r, &c) == 4)
            lam[nl++] = l;
    }
    fclose(f);
    assert_int_equal(nl, 100);
    double worst50 = 0, worst100 = 0;
    for (int k = 0; k < fn_pca_model_k(m100); k++) {
        double d = fabs(fn_pca_model_eigvals(m100)[k] - lam[k]) / lam[k];
        if (k < 50)
            worst50 = fmax(worst50, d);
        worst100 = fmax(worst100, d);
        if (k < fn_pca_model_k(m)) /* the variance fit and the fixed-k fit agree */
            assert_true(fabs(fn_pca_model_eigvals(m)[k] - fn_pca_model_eigvals(m100)[k]) <=
                        1e-10 * fn_pca_model_eigvals(m100)[0]);
    }
    print_message("[ pca      ] eigenvalues vs golden (float32 features): top-50 max rel %.2e, top-100 %.2e\n",
                  worst50, worst100);
    assert_true(worst50 <= 5e-5);
    assert_true(worst100 <= 2e-4);
    /* components vs golden top-10, where the eigenvalue gap is clear */
    float *comp = tu_read_f32(tu_path(g, "all2880/pca/pca_components_top10.f32"), 10 * D);
    assert_non_null(comp);
    for (int k = 0; k < 10; k++) {
        double gap = fmin(k ? lam[k - 1] - lam[k] : 1e9, lam[k] - lam[k + 1]) / lam[k];
        double c = 0;
        for (int i = 0; i < D; i++)
            c += comp[k * D + i] * fn_pca_model_components(m100)[(size_t)k * D + i];
        print_message("[ pca      ] component %d: 1 - cos %.1e (relative gap %.3f)\n", k + 1, 1 - c, gap);
        if (gap > 0.01)
            assert_true(c >= 0.9999); /* signs are fixed the same way: largest entry positive */
    }
    free(comp);
    /* numpy on identical input (FRUITNET_PYTHON: the test venv's python, set by make test): 1e-9; a python
     * without numpy fails the test when FRUITNET_REQUIRE_DATA=1 (CI), else the comparison is skipped with a note */
    const char *py = getenv("FRUITNET_PYTHON") && *getenv("FRUITNET_PYTHON") ? getenv("FRUITNET_PYTHON") : "python3";
    char probe[600];
    snprintf(probe, sizeof probe, "'%s' -c 'import numpy' >/dev/null 2>&1", py);
    int have_numpy = system(probe) == 0;
    if (!have_numpy) {
        const char *req = getenv("FRUITNET_REQUIRE_DATA");
        if (req && !strcmp(req, "1"))
            fail_msg("%s has no numpy (FRUITNET_REQUIRE_DATA=1): run make venv", py);
        print_message("[ pca      ] note: %s has no numpy: the numpy comparison is skipped\n", py);
    }
    if (have_numpy) {
        char dir[] = "/tmp/fruitnet-test-pca-XXXXXX";
        assert_non_null(mkdtemp(dir));
        char cmd[1024], p[256];
        snprintf(p, sizeof p, "%s/x.f32", dir);
        FILE *xf = fopen(p, "wb");
        assert_int_equal(fwrite(X, sizeof(float), (size_t)N * D, xf), (size_t)N * D);
        fclose(xf);
        snprintf(cmd, sizeof cmd,
                 "'%s' -c \"import numpy as np; x=np.fromfile('%s/x.f32','<f4').reshape(%d,%d)"
                 ".astype(np.float64); c=np.cov(x, rowvar=False); w=np.linalg.eigvalsh(c)[::-1][:100]; "
                 "np.savetxt('%s/w.txt', w, fmt='%%.17g')\"",
                 py, dir, N, D, dir);
        assert_int_equal(system(cmd), 0);
        snprintf(p, sizeof p, "%s/w.txt", dir);
        f = fopen(p, "r");
        double worst = 0;
        for (int k = 0; k < 100; k++) {
            double l;
            assert_int_equal(fscanf(f, "%lf", &l), 1);
            if (k < fn_pca_model_k(m100))
                worst = fmax(worst, fabs(fn_pca_model_eigvals(m100)[k] - l) / l);
        }
        fclose(f);
        print_message("[ pca      ] eigenvalues vs numpy eigvalsh on the same input: top-100 max rel %.2e\n", worst);
        assert_true(worst <= 1e-9);
        assert_int_equal(tu_rm_rf(dir), 0);
    } else {
        print_message("[ pca      ] numpy not available: same-input comparison skipped\n");
    }
    fn_pca_model_free(m), fn_pca_model_free(m100);
    fn_pca_stats_free(st);
}

/* Three uneven shards, saved and loaded, merged == single pass. */
static void test_merge_shards(void **s)
{
    (void)s;
    const int n = 1000, d = 96;
    float *x = malloc((size_t)n * d * sizeof(float));
    tu_fill_random(x, (size_t)n * d, 77, -1, 1);
    for (int r = 0; r < n; r++) /* some structure and a large offset (stability) */
        for (int i = 0; i < d; i++)
            x[(size_t)r * d + i] = 1000.0f + x[(size_t)r * d + i] * (1 + i % 7) + x[(size_t)r * d] * (i % 3);
    fn_error e;
    fn_pca_stats *one, *part[3], *all;
    assert_int_equal(fn_pca_stats_new(d, &one, &e), FN_OK);
    assert_int_equal(fn_pca_stats_add(one, x, n, 1, &e), FN_OK);
    int cuts[4] = {0, 1, 377, n};
    char dir[] = "/tmp/fruitnet-test-merge-XXXXXX";
    assert_non_null(mkdtemp(dir));
    for (int k = 0; k < 3; k++) {
        char p[128];
        snprintf(p, sizeof p, "%s/p%d.stats", dir, k);
        fn_pca_stats *t;
        assert_int_equal(fn_pca_stats_new(d, &t, &e), FN_OK);
        assert_int_equal(fn_pca_stats_add(t, x + (size_t)cuts[k] * d, cuts[k + 1] - cuts[k], 2, &e), FN_OK);
        assert_int_equal(fn_pca_stats_save(t, p, &e), FN_OK);
        fn_pca_stats_free(t);
        assert_int_equal(fn_pca_stats_load(p, &part[k], &e), FN_OK);
    }
    { /* stats file corruption: a flipped byte -> FN_ECHECKSUM, truncation / bad magic -> FN_EFORMAT */
        char p0[128];
        snprintf(p0, sizeof p0, "%s/p1.stats", dir);
        size_t len;
        unsigned char *raw = tu_read_file(p0, &len);
        assert_non_null(raw);
        char pb[160];
        snprintf(pb, sizeof pb, "%s/bad.stats", dir);
        fn_pca_stats *bad;
        raw[len - 100] ^= 0x10;
        tu_write(pb, raw, len);
        assert_int_equal(fn_pca_stats_load(pb, &bad, &e), FN_ECHECKSUM);
        assert_non_null(strstr(e.msg, pb));
        raw[len - 100] ^= 0x10;
        tu_write(pb, raw, len - 9);
        assert_int_equal(fn_pca_stats_load(pb, &bad, &e), FN_EFORMAT);
        raw[0] = 'X';
        tu_write(pb, raw, len);
        assert_int_equal(fn_pca_stats_load(pb, &bad, &e), FN_EFORMAT);
        free(raw);
    }
    all = part[0];
    assert_int_equal(fn_pca_stats_merge(all, part[1], &e), FN_OK);
    assert_int_equal(fn_pca_stats_merge(all, part[2], &e), FN_OK);
    assert_int_equal(fn_pca_stats_rows(all), n);
    double dm = 0, dc = 0, sc = 0;
    for (int i = 0; i < d; i++) {
        dm = fmax(dm, fabs(fn_pca_stats_mean(all)[i] - fn_pca_stats_mean(one)[i]) / fabs(fn_pca_stats_mean(one)[i]));
        for (int j = i; j < d; j++) {
            dc = fmax(dc, fabs(fn_pca_stats_m2(all)[i * d + j] - fn_pca_stats_m2(one)[i * d + j]));
            sc = fmax(sc, fabs(fn_pca_stats_m2(one)[i * d + j]));
        }
    }
    assert_true(dm <= 1e-12);
    assert_true(dc / sc <= 1e-12);
    fn_pca_model *a, *b;
    assert_int_equal(fn_pca_fit(one, 10, 0, &a, &e), FN_OK);
    assert_int_equal(fn_pca_fit(all, 10, 0, &b, &e), FN_OK);
    for (int k = 0; k < 10; k++)
        assert_true(fabs(fn_pca_model_eigvals(a)[k] - fn_pca_model_eigvals(b)[k]) / fn_pca_model_eigvals(a)[k] <= 1e-9);
    /* model file round trip and transform */
    char p[128];
    snprintf(p, sizeof p, "%s/m.fnpca", dir);
    assert_int_equal(fn_pca_model_save(a, p, &e), FN_OK);
    fn_pca_model *c;
    assert_int_equal(fn_pca_model_load(p, &c, &e), FN_OK);
    assert_int_equal(fn_pca_model_k(c), 10);
    assert_memory_equal(fn_pca_model_components(c), fn_pca_model_components(a), 10 * d * sizeof(double));
    float y1[10], y2[10];
    fn_pca_transform(a, x, y1);
    fn_pca_transform(c, x, y2);
    assert_memory_equal(y1, y2, sizeof y1);
    /* corruption is detected */
    size_t len;
    unsigned char *raw = tu_read_file(p, &len);
    raw[len / 2] ^= 1;
    FILE *f = fopen(p, "wb");
    fwrite(raw, 1, len, f);
    fclose(f);
    fn_pca_model *bad;
    assert_int_equal(fn_pca_model_load(p, &bad, &e), FN_ECHECKSUM);
    f = fopen(p, "wb");
    fwrite(raw, 1, 20, f);
    fclose(f);
    assert_int_equal(fn_pca_model_load(p, &bad, &e), FN_EFORMAT);
    free(raw);
    fn_pca_model_free(a), fn_pca_model_free(b), fn_pca_model_free(c);
    for (int k = 1; k < 3; k++)
        fn_pca_stats_free(part[k]);
    fn_pca_stats_free(all);
    fn_pca_stats_free(one);
    free(x);
    assert_int_equal(tu_rm_rf(dir), 0);
}

/* The opaque objects: made from their parts (copied), read back through the accessors, refused when invalid. */
static void test_opaque_objects(void **s)
{
    (void)s;
    const int n = 50, d = 6;
    float x[50 * 6];
    tu_fill_random(x, (size_t)n * d, 5, -1, 1);
    fn_error e;
    fn_pca_stats *st, *copy;
    assert_int_equal(fn_pca_stats_new(d, &st, &e), FN_OK);
    assert_int_equal(fn_pca_stats_add(st, x, n, 1, &e), FN_OK);
    assert_int_equal(fn_pca_stats_dim(st), d);
    assert_int_equal(fn_pca_stats_rows(st), n);
    /* from the moments: the same statistics, the same fit */
    assert_int_equal(fn_pca_stats_from_moments(d, n, fn_pca_stats_mean(st), fn_pca_stats_m2(st), &copy, &e), FN_OK);
    assert_int_equal(fn_pca_stats_rows(copy), n);
    assert_memory_equal(fn_pca_stats_mean(copy), fn_pca_stats_mean(st), d * sizeof(double));
    for (int i = 0; i < d; i++)
        for (int j = i; j < d; j++)
            assert_true(fn_pca_stats_m2(copy)[i * d + j] == fn_pca_stats_m2(st)[i * d + j]);
    fn_pca_model *m, *m2, *built;
    assert_int_equal(fn_pca_fit(st, 3, 0, &m, &e), FN_OK);
    assert_int_equal(fn_pca_fit(copy, 3, 0, &m2, &e), FN_OK);
    assert_int_equal(fn_pca_model_dim(m), d);
    assert_int_equal(fn_pca_model_k(m), 3);
    assert_int_equal(fn_pca_model_rows(m), n);
    assert_memory_equal(fn_pca_model_components(m2), fn_pca_model_components(m), 3 * d * sizeof(double));
    double tr = 0;
    for (int i = 0; i < d; i++)
        tr += fn_pca_stats_m2(st)[i * d + i] / (n - 1);
    assert_true(fabs(fn_pca_model_total_var(m) - tr) <= 1e-12 * tr);
    assert_true(fn_pca_model_eigvals(m)[0] >= fn_pca_model_eigvals(m)[1]);
    /* a model from its parts projects as the fitted one */
    assert_int_equal(fn_pca_model_new(d, 3, n, fn_pca_model_total_var(m), fn_pca_model_mean(m), fn_pca_model_eigvals(m),
                                      fn_pca_model_components(m), &built, &e),
                     FN_OK);
    float y1[3], y2[3];
    fn_pca_transform(m, x, y1);
    fn_pca_transform(built, x, y2);
    assert_memory_equal(y1, y2, sizeof y1);
    assert_true(fn_pca_model_components(built) != fn_pca_model_components(m)); /* a copy */
    /* refusals: NULL for out, k > dim, NaN moments; accessors of NULL */
    fn_pca_model *none = (fn_pca_model *)1;
    assert_int_equal(fn_pca_model_new(d, d + 1, n, 1, fn_pca_model_mean(m), fn_pca_model_eigvals(m),
                                      fn_pca_model_components(m), &none, &e),
                     FN_EARG);
    assert_null(none);
    assert_non_null(strstr(e.msg, "k 7"));
    double mean[6] = {0, 0, NAN, 0, 0, 0};
    fn_pca_stats *bad = (fn_pca_stats *)1;
    assert_int_equal(fn_pca_stats_from_moments(d, n, mean, fn_pca_stats_m2(st), &bad, &e), FN_ENUMERIC);
    assert_null(bad);
    assert_int_equal(fn_pca_stats_new(0, &bad, &e), FN_EARG);
    assert_int_equal(fn_pca_fit(st, 3, 0, NULL, &e), FN_EARG);
    assert_int_equal(fn_pca_stats_load("/nonexistent/x.stats", NULL, &e), FN_EARG);
    assert_int_equal(fn_pca_model_dim(NULL), 0);
    assert_null(fn_pca_model_components(NULL));
    assert_int_equal(fn_pca_stats_rows(NULL), 0);
    assert_null(fn_pca_stats_m2(NULL));
    fn_pca_model_free(NULL), fn_pca_stats_free(NULL);
    fn_pca_model_free(m), fn_pca_model_free(m2), fn_pca_model_free(built);
    fn_pca_stats_free(st), fn_pca_stats_free(copy);
}

/* Both PCA files go through one header check: magic, version, dim, k <= dim, rows >= 0, exact size, CRC. */
static void test_file_headers(void **s)
{
    (void)s;
    const int n = 20, d = 5;
    float x[20 * 5];
    tu_fill_random(x, (size_t)n * d, 9, -1, 1);
    char dir[] = "/tmp/fruitnet-test-headers-XXXXXX", ps[96], pm[96], pb[96];
    assert_non_null(mkdtemp(dir));
    snprintf(ps, sizeof ps, "%s/a.stats", dir);
    snprintf(pm, sizeof pm, "%s/a.fnpca", dir);
    snprintf(pb, sizeof pb, "%s/bad", dir);
    fn_error e;
    fn_pca_stats *st, *st2;
    fn_pca_model *m, *m2;
    assert_int_equal(fn_pca_stats_new(d, &st, &e), FN_OK);
    assert_int_equal(fn_pca_stats_add(st, x, n, 1, &e), FN_OK);
    assert_int_equal(fn_pca_fit(st, 2, 0, &m, &e), FN_OK);
    assert_int_equal(fn_pca_stats_save(st, ps, &e), FN_OK);
    assert_int_equal(fn_pca_model_save(m, pm, &e), FN_OK);
    size_t ls, lm;
    unsigned char *rs = tu_read_file(ps, &ls), *rm = tu_read_file(pm, &lm);
    assert_non_null(rs);
    assert_non_null(rm);
    /* untouched: they load, with the same values */
    assert_int_equal(fn_pca_stats_load(ps, &st2, &e), FN_OK);
    assert_int_equal(fn_pca_stats_rows(st2), n);
    assert_memory_equal(fn_pca_stats_mean(st2), fn_pca_stats_mean(st), d * sizeof(double));
    assert_int_equal(fn_pca_model_load(pm, &m2, &e), FN_OK);
    assert_int_equal(fn_pca_model_k(m2), 2);
    assert_memory_equal(fn_pca_model_components(m2), fn_pca_model_components(m), 2 * d * sizeof(double));
    fn_pca_stats_free(st2), fn_pca_model_free(m2);
    /* version 2 */
    rs[8] = 2, rm[8] = 2;
    tu_write(pb, rs, ls);
    assert_int_equal(fn_pca_stats_load(pb, &st2, &e), FN_EFORMAT);
    assert_non_null(strstr(e.msg, "version 2, dim 5"));
    assert_non_null(strstr(e.msg, pb));
    tu_write(pb, rm, lm);
    assert_int_equal(fn_pca_model_load(pb, &m2, &e), FN_EFORMAT);
    assert_non_null(strstr(e.msg, "version 2, dim 5, k 2"));
    rs[8] = 1, rm[8] = 1;
    /* a model with k > dim, and one fitted on a negative number of rows */
    rm[16] = 6;
    tu_write(pb, rm, lm);
    assert_int_equal(fn_pca_model_load(pb, &m2, &e), FN_EFORMAT);
    assert_non_null(strstr(e.msg, "k 6"));
    rm[16] = 2;
    memset(rm + 24, 0xff, 8);
    tu_write(pb, rm, lm);
    assert_int_equal(fn_pca_model_load(pb, &m2, &e), FN_EFORMAT);
    assert_null(m2);
    /* a statistics file read as a model, and the reverse */
    assert_int_equal(fn_pca_model_load(ps, &m2, &e), FN_EFORMAT);
    assert_non_null(strstr(e.msg, "not a fruitnet PCA model file"));
    assert_int_equal(fn_pca_stats_load(pm, &st2, &e), FN_EFORMAT);
    assert_non_null(strstr(e.msg, "not a fruitnet PCA statistics file"));
    free(rs), free(rm);
    fn_pca_stats_free(st), fn_pca_model_free(m);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

static void test_degenerate(void **s)
{
    (void)s;
    fn_pca_stats *st;
    fn_pca_model *m;
    fn_error e;
    float row[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    assert_int_equal(fn_pca_stats_new(8, &st, &e), FN_OK);
    assert_int_equal(fn_pca_stats_add(st, row, 1, 1, &e), FN_OK);
    assert_int_equal(fn_pca_fit(st, 0, 0.8, &m, &e), FN_ENUMERIC); /* one row */
    assert_non_null(strstr(e.msg, "at least 2 rows"));
    assert_int_equal(fn_pca_stats_add(st, row, 1, 1, &e), FN_OK);
    assert_int_equal(fn_pca_fit(st, 0, 0.8, &m, &e), FN_ENUMERIC); /* identical rows: no variance */
    assert_non_null(strstr(e.msg, "identical"));
    float nan_row[8] = {1, 2, NAN, 4, 5, 6, 7, 8};
    assert_int_equal(fn_pca_stats_add(st, nan_row, 1, 1, &e), FN_ENUMERIC);
    assert_non_null(strstr(e.msg, "index 2"));
    float inf_row[8] = {1, 2, 3, 4, 5, 6, 7, INFINITY};
    assert_int_equal(fn_pca_stats_add(st, inf_row, 1, 1, &e), FN_ENUMERIC);
    assert_int_equal(fn_pca_stats_rows(st), 2); /* rejected chunks change nothing */
    float two[16] = {0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, -1};
    assert_int_equal(fn_pca_stats_add(st, two, 2, 1, &e), FN_OK);
    assert_int_equal(fn_pca_fit(st, 0, 0.8, &m, &e), FN_OK);
    assert_true(fn_pca_model_k(m) >= 1);
    fn_pca_model_free(m);
    assert_int_equal(fn_pca_fit(st, 9, 0, &m, &e), FN_EARG); /* k > dim */
    fn_pca_stats_free(st);
}

/* Independent reference: covariance by a two-pass long double sum straight from the rows and cyclic
 * Jacobi (no code shared with the library). 40 rows x 72 dims: rank 39, so 33 zero eigenvalues
 * (the rank-deficient case, a tridiagonal with zero blocks). Every ISA the CPU has is checked. */
static void jacobi_ref(long double *A, int n, double *w)
{
    for (int sweep = 0; sweep < 60; sweep++) {
        long double off = 0;
        for (int i = 0; i < n; i++)
            for (int j = i + 1; j < n; j++)
                off += A[i * n + j] * A[i * n + j];
        if (off < 1e-40L)
            break;
        for (int p = 0; p < n - 1; p++)
            for (int q = p + 1; q < n; q++) {
                long double apq = A[p * n + q];
                if (fabsl(apq) < 1e-300L)
                    continue;
                long double th = (A[q * n + q] - A[p * n + p]) / (2 * apq);
                long double t = (th >= 0 ? 1 : -1) / (fabsl(th) + sqrtl(th * th + 1));
                long double c = 1 / sqrtl(t * t + 1), sn = t * c;
                for (int k = 0; k < n; k++) {
                    long double akp = A[k * n + p], akq = A[k * n + q];
                    A[k * n + p] = c * akp - sn * akq, A[k * n + q] = sn * akp + c * akq;
                }
                for (int k = 0; k < n; k++) {
                    long double apk = A[p * n + k], aqk = A[q * n + k];
                    A[p * n + k] = c * apk - sn * aqk, A[q * n + k] = sn * apk + c * aqk;
                }
            }
    }
    for (int i = 0; i < n; i++)
        w[i] = (double)A[i * n + i];
    for (int i = 1; i < n; i++) /* descending */
        for (int j = i; j > 0 && w[j] > w[j - 1]; j--) {
            double t = w[j];
            w[j] = w[j - 1], w[j - 1] = t;
        }
}

static void test_reference_small(void **s)
{
    (void)s;
    const int n = 40, d = 72;
    float *x = malloc((size_t)n * d * sizeof(float));
    tu_fill_random(x, (size_t)n * d, 5, -1, 1);
    for (int r = 0; r < n; r++)
        for (int i = 0; i < d; i++)
            x[r * d + i] = 3.0f + x[r * d + i] * (float)(1.0 / (1 + i)) + 0.5f * x[r * d + (i * 7) % d];
    long double mean[72] = {0}, *C = calloc((size_t)d * d, sizeof(long double));
    for (int r = 0; r < n; r++)
        for (int i = 0; i < d; i++)
            mean[i] += x[r * d + i];
    for (int i = 0; i < d; i++)
        mean[i] /= n;
    for (int r = 0; r < n; r++)
        for (int i = 0; i < d; i++)
            for (int j = 0; j < d; j++)
                C[i * d + j] += (x[r * d + i] - mean[i]) * (x[r * d + j] - mean[j]) / (n - 1);
    long double tr = 0;
    for (int i = 0; i < d; i++)
        tr += C[i * d + i];
    double w[72];
    jacobi_ref(C, d, w);
    const char *isas[3] = {"portable", "avx2", "avx512"};
    fn_isa best = fn_isa_detect();
    char *old = getenv("FRUITNET_ISA") ? strdup(getenv("FRUITNET_ISA")) : NULL;
    for (int t = 0; t < 3 && t < (int)best; t++) {
        setenv("FRUITNET_ISA", isas[t], 1);
        fn_pca_stats *st;
        fn_error e;
        assert_int_equal(fn_pca_stats_new(d, &st, &e), FN_OK);
        assert_int_equal(fn_pca_stats_add(st, x, 17, 2, &e), FN_OK); /* two calls, odd sizes */
        assert_int_equal(fn_pca_stats_add(st, x + 17 * d, n - 17, 1, &e), FN_OK);
        fn_pca_model *m;
        double spec[72];
        assert_int_equal(fn_pca_fit_ex(st, d, 0, 2, &m, spec, &e), FN_OK);
        double worst = 0, worst_res = 0;
        for (int k = 0; k < d; k++)
            worst = fmax(worst, fabs(spec[k] - w[k]) / w[0]);
        for (int k = 0; k < 39; k++) { /* nonzero eigenvalues: residual with the long double covariance */
            const double *v = fn_pca_model_components(m) + (size_t)k * d;
            double r2 = 0;
            long double mx = 0;
            int im = 0;
            for (int i = 0; i < d; i++) {
                long double cv = 0;
                for (int j = 0; j < d; j++) { /* C was destroyed by Jacobi: recompute row i */
                    long double c = 0;
                    for (int r = 0; r < n; r++)
                        c += (x[r * d + i] - mean[i]) * (x[r * d + j] - mean[j]);
                    cv += c / (n - 1) * v[j];
                }
                r2 += (double)((cv - fn_pca_model_eigvals(m)[k] * v[i]) * (cv - fn_pca_model_eigvals(m)[k] * v[i]));
                if (fabsl(v[i]) > mx)
                    mx = fabsl(v[i]), im = i;
            }
            assert_true(v[im] > 0); /* sign convention */
            worst_res = fmax(worst_res, sqrt(r2) / w[0]);
        }
        print_message("[ pca      ] %s: %dx%d vs long double Jacobi: eigenvalues max |dl|/l1 %.1e, residual %.1e, "
                      "trace rel %.1e\n", isas[t], n, d, worst, worst_res,
                      fabs(fn_pca_model_total_var(m) - (double)tr) / (double)tr);
        assert_true(worst <= 1e-12);
        assert_true(worst_res <= 1e-12);
        assert_true(fabs(fn_pca_model_total_var(m) - (double)tr) <= 1e-13 * (double)tr);
        for (int k = 39; k < d; k++) /* rank n-1: the rest is zero up to rounding */
            assert_true(fabs(spec[k]) <= 1e-13 * w[0]);
        fn_pca_model_free(m);
        fn_pca_stats_free(st);
    }
    if (old) {
        setenv("FRUITNET_ISA", old, 1);
        free(old);
    } else {
        unsetenv("FRUITNET_ISA");
    }
    free(C);
    free(x);
}

/* The AVX2 and AVX-512 kernels come from one source (pca_kernels_impl.h) with the same FMA chains and
 * 16 fixed partial-sum lanes: the fitted spectrum and components agree bit for bit. d = 203 is not a
 * multiple of 16 (panel padding and the row kernels' tails), n = 300 spans two chunks. */
static void test_isas_bit_identical(void **s)
{
    (void)s;
    if (fn_isa_detect() < FN_ISA_AVX512) {
        print_message("[ pca      ] this CPU has no AVX-512: AVX2 vs AVX-512 not compared\n");
        return;
    }
    const int n = 300, d = 203, k = 12;
    float *x = malloc((size_t)n * d * sizeof(float));
    tu_fill_random(x, (size_t)n * d, 11, -2, 2);
    for (int r = 0; r < n; r++)
        for (int i = 0; i < d; i++)
            x[r * d + i] += 0.7f * x[r * d + (i * 5 + 1) % d] * (float)(1.0 / (1 + i % 9));
    const char *isas[2] = {"avx2", "avx512"};
    double spec[2][203], comp[2][12 * 203];
    char *old = getenv("FRUITNET_ISA") ? strdup(getenv("FRUITNET_ISA")) : NULL;
    for (int t = 0; t < 2; t++) {
        setenv("FRUITNET_ISA", isas[t], 1);
        fn_pca_stats *st;
        fn_pca_model *m;
        fn_error e;
        assert_int_equal(fn_pca_stats_new(d, &st, &e), FN_OK);
        assert_int_equal(fn_pca_stats_add(st, x, n, 2, &e), FN_OK);
        assert_int_equal(fn_pca_fit_ex(st, k, 0, 2, &m, spec[t], &e), FN_OK);
        memcpy(comp[t], fn_pca_model_components(m), sizeof comp[t]);
        fn_pca_model_free(m);
        fn_pca_stats_free(st);
    }
    if (old) {
        setenv("FRUITNET_ISA", old, 1);
        free(old);
    } else {
        unsetenv("FRUITNET_ISA");
    }
    int diff = 0;
    for (int i = 0; i < d; i++)
        diff += memcmp(&spec[0][i], &spec[1][i], sizeof(double)) != 0;
    for (int i = 0; i < k * d; i++)
        diff += memcmp(&comp[0][i], &comp[1][i], sizeof(double)) != 0;
    print_message("[ pca      ] AVX2 vs AVX-512, %dx%d: %d of %d eigenvalues and component values differ\n", n, d,
                  diff, d + k * d);
    assert_int_equal(diff, 0);
    free(x);
}

/* A FIFO (or device) named as a statistics or model file is refused at once: fopen() blocked on it until a
 * writer came (for ever in a batch job). Run in a child with an alarm so a regression fails, not hangs. */
static void test_load_fifo_refused(void **s)
{
    (void)s;
    char dir[] = "/tmp/fruitnet-test-pca-fifo-XXXXXX", p[128];
    assert_non_null(mkdtemp(dir));
    snprintf(p, sizeof p, "%s/model.fnpca", dir);
    assert_int_equal(mkfifo(p, 0600), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        alarm(5);
        fn_pca_model *m;
        fn_pca_stats *st;
        fn_error e1, e2;
        int r1 = fn_pca_model_load(p, &m, &e1), r2 = fn_pca_stats_load(p, &st, &e2);
        _exit(r1 != FN_OK && r2 != FN_OK && strstr(e1.msg, "not a regular file") && strstr(e1.msg, p) &&
                      strstr(e2.msg, "not a regular file")
                  ? 0
                  : 1);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    unlink(p);
    rmdir(dir);
    assert_true(WIFEXITED(status)); /* killed by SIGALRM: the load blocked on the FIFO */
    assert_int_equal(WEXITSTATUS(status), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden_pca),
        cmocka_unit_test(test_merge_shards),
        cmocka_unit_test(test_degenerate),
        cmocka_unit_test(test_opaque_objects),
        cmocka_unit_test(test_file_headers),
        cmocka_unit_test(test_reference_small),
        cmocka_unit_test(test_isas_bit_identical),
        cmocka_unit_test(test_load_fifo_refused),
    };
    return cmocka_run_group_tests_name("pca", tests, setup, teardown);
}
