/*
 * test_sample.c — the user's main job on the whole sample: fruitnet-extract
 * over ../shared/data/fruits-360-sample (2,880 JPEGs), every row compared to
 * the reference features in ../shared/golden/all2880, then the PCA of our
 * features against the golden PCA figures.
 *
 * Slow (about a minute on 2 cores): skipped when FRUITNET_SKIP_SLOW=1 (the
 * sanitizer run sets it; the plain `make test` runs it).
 */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#define N 2880
#define D 2048

/* The golden features are stored as float16 (README: rounding alone gives rel-L2 up to 2.62e-4 per row), so
 * parity is measured beyond that rounding: per value, the distance from ours to the float16 interval
 * [ref - ulp/2, ref + ulp/2] that the exact float32 feature lies in; rel-L2 of those distances. */
static double rel_l2_beyond_f16(const float *a, const float *ref, int n)
{
    double num = 0, den = 0;
    for (int i = 0; i < n; i++) {
        double r = ref[i], m = fabs(r), ulp;
        if (m < 0x1p-14) {
            ulp = 0x1p-24; /* float16 subnormals (and zero) */
        } else {
            int e;
            frexp(m, &e);
            ulp = ldexp(1.0, e - 11);
        }
        double d = fabs((double)a[i] - r) - ulp / 2;
        if (d > 0)
            num += d * d;
        den += r * r;
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

static void test_full_sample(void **state)
{
    (void)state;
    const char *slow = getenv("FRUITNET_SKIP_SLOW");
    if (slow && !strcmp(slow, "1")) {
        print_message("[  SKIPPED ] FRUITNET_SKIP_SLOW=1\n");
        skip();
    }
    const char *g = tu_golden_dir(), *sample = tu_sample_dir(), *w = tu_weights_path();
    TU_REQUIRE(g);
    TU_REQUIRE(sample);
    TU_REQUIRE(w);

    /* reference features (float16) and their manifest */
    gzFile gz = gzopen(tu_path(g, "all2880/features_2880x2048.f16.gz"), "rb");
    assert_non_null(gz);
    uint16_t *h = malloc((size_t)N * D * 2);
    assert_int_equal(gzread(gz, h, N * D * 2), N * D * 2);
    gzclose(gz);
    float *ref = malloc((size_t)N * D * sizeof(float));
    for (size_t i = 0; i < (size_t)N * D; i++)
        ref[i] = tu_half_to_float(h[i]);
    free(h);
    FILE *mf = fopen(tu_path(g, "all2880/manifest.csv"), "r");
    assert_non_null(mf);
    char line[1024];
    char **rel = calloc(N, sizeof(char *));
    assert_non_null(fgets(line, sizeof line, mf)); /* header */
    for (int i = 0; i < N; i++) {
        assert_non_null(fgets(line, sizeof line, mf));
        char *c1 = strchr(line, ','), *c2 = strrchr(line, ',');
        assert_true(c1 && c2 && c2 > c1);
        *c2 = 0;
        assert_int_equal(atoi(line), i);
        rel[i] = strdup(c1 + 1);
    }
    fclose(mf);

    /* run the tool as a user would */
    char tmp[] = "/tmp/fruitnet-test-sample-XXXXXX";
    assert_non_null(mkdtemp(tmp));
    char out[256], cmd[4096];
    snprintf(out, sizeof out, "%s/features.parquet", tmp);
    const char *b = getenv("FRUITNET_BUILD");
    snprintf(cmd, sizeof cmd, "'%s/fruitnet-extract' --weights '%s' -o '%s' '%s'", b && *b ? b : "build", w, out,
             sample);
    int rc = system(cmd);
    assert_true(WIFEXITED(rc) && WEXITSTATUS(rc) == 0);

    /* read every row back, match by relative path */
    char **files;
    int nf;
    fn_error e = {0};
    assert_int_equal(fn_parquet_dataset_files(out, &files, &nf, &e), FN_OK);
    int *seen = calloc(N, sizeof(int));
    size_t slen = strlen(sample);
    double worst = 1, sum_rel = 0, worst_rel = 0, worst_beyond = 0;
    int rows = 0, worst_row = -1;
    fn_pca_stats *st;
    assert_int_equal(fn_pca_stats_new(D, &st, &e), FN_OK);
    float *buf = malloc((size_t)256 * D * sizeof(float));
    int nbuf = 0;
    for (int f = 0; f < nf; f++) {
        fn_parquet_reader *r;
        if (fn_parquet_reader_open(files[f], &r, &e) != FN_OK)
            fail_msg("%s", e.msg);
        fn_parquet_row row;
        while ((rc = fn_parquet_reader_next(r, &row, &e)) == 1) {
            assert_int_equal(row.n, D);
            assert_int_equal(strncmp(row.path, sample, slen), 0);
            const char *rp = row.path + slen + (row.path[slen] == '/');
            int k = -1;
            for (int i = 0; i < N && k < 0; i++)
                if (!strcmp(rel[i], rp))
                    k = i;
            if (k < 0)
                fail_msg("row %s is not in the golden manifest", row.path);
            assert_int_equal(seen[k], 0);
            seen[k] = 1;
            double c = tu_cosine(row.vec, ref + (size_t)k * D, D);
            double rl = tu_rel_l2(row.vec, ref + (size_t)k * D, D);
            sum_rel += rl;
            if (rl > worst_rel)
                worst_rel = rl;
            double rb = rel_l2_beyond_f16(row.vec, ref + (size_t)k * D, D);
            if (rb > worst_beyond)
                worst_beyond = rb;
            if (c < worst)
                worst = c, worst_row = k;
            memcpy(buf + (size_t)nbuf * D, row.vec, D * sizeof(float));
            if (++nbuf == 256) {
                assert_int_equal(fn_pca_stats_add(st, buf, nbuf, 0, &e), FN_OK);
                nbuf = 0;
            }
            rows++;
        }
        assert_int_equal(rc, 0);
        fn_parquet_reader_close(r);
    }
    if (nbuf)
        assert_int_equal(fn_pca_stats_add(st, buf, nbuf, 0, &e), FN_OK);
    fn_free_list(files, nf);
    print_message("[ sample   ] %d rows; cosine to golden: worst %.6f (%s); rel-L2 mean %.2e worst %.2e\n", rows, worst,
                  worst_row >= 0 ? rel[worst_row] : "-", sum_rel / (rows ? rows : 1), worst_rel);
    print_message("[ sample   ] %s: worst rel-L2 beyond the references' float16 rounding %.2e\n", fn_image_decoder_name(),
                  worst_beyond);
    assert_int_equal(rows, N);
    if (tu_decoder_is_pil())
        assert_true(worst_beyond <= 1e-5); /* default decoder, as PIL's: parity with existing features */
    else
        assert_true(worst >= 0.999); /* make JPEG=stb */

    /* PCA of our features: same n80 as the golden PCA, top-10 eigenvalues within 1e-3 */
    fn_pca_model *pm;
    assert_int_equal(fn_pca_fit(st, 0, 0.80, &pm, &e), FN_OK);
    FILE *ev = fopen(tu_path(g, "all2880/pca/pca_eigenvalues_top100.txt"), "r");
    assert_non_null(ev);
    double lam[100];
    int nl = 0;
    while (nl < 100 && fgets(line, sizeof line, ev)) {
        int k;
        double l, ratio, cum;
        if (line[0] == '#')
            continue;
        if (sscanf(line, "%d %lf %lf %lf", &k, &l, &ratio, &cum) == 4)
            lam[nl++] = l;
    }
    fclose(ev);
    assert_int_equal(nl, 100);
    int n80 = 0;
    { /* golden n80 from the golden eigenvalue list and trace: first k with cumulative >= 0.8 */
        FILE *sf = fopen(tu_path(g, "all2880/pca/pca_summary.json"), "r");
        assert_non_null(sf);
        while (fgets(line, sizeof line, sf)) {
            char *p = strstr(line, "\"n_components_80\":");
            if (p)
                n80 = atoi(p + strlen("\"n_components_80\":"));
        }
        fclose(sf);
    }
    double worst_ev = 0;
    for (int k = 0; k < 10 && k < fn_pca_model_k(pm); k++) {
        double d = fabs(fn_pca_model_eigvals(pm)[k] - lam[k]) / lam[k];
        if (d > worst_ev)
            worst_ev = d;
    }
    print_message("[ sample   ] PCA of fruitnet features: %d components for 80%% (golden %d); top-10 eigenvalues max "
                  "rel diff %.2e\n",
                  fn_pca_model_k(pm), n80, worst_ev);
    assert_int_equal(fn_pca_model_k(pm), n80);
    assert_true(worst_ev <= 1e-3);
    fn_pca_model_free(pm);
    fn_pca_stats_free(st);
    free(buf);
    free(seen);
    for (int i = 0; i < N; i++)
        free(rel[i]);
    free(rel);
    free(ref);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_full_sample)};
    return cmocka_run_group_tests_name("sample", tests, NULL, NULL);
}
