/*
 * test_classifier.c — the fruit classifier: a small separable problem, probabilities, determinism (same
 * file bytes on 1 and 2 threads), corrupt files (bad magic, version, truncation, CRC) and, on the real
 * data, the top-1 accuracy on the test sample's 114 classes shared with the training sample.
 *
 * Real data: the training sample's features are extracted once with build/fruitnet-extract into
 * build/classifier-data/train_features.parquet (about 90 s; reused afterwards); the test sample's
 * features are ../shared/golden/all2880 (float16). $FRUITNET_TRAIN_SAMPLE overrides
 * ../shared/data/fruits-360-train-sample; with FRUITNET_REQUIRE_DATA=1 missing data fails.
 */
#include "testutil.h"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

/* Issue 17's target is 98.5% top-1 on the 114 shared classes. Trained on the training sample plus the
 * mirrored copies of its images (fruitnet-extract --mirror, final fit only; C = 10 chosen by the blocked CV
 * on the originals, CV 98.68%): measured 98.72% (35 wrong), ECE 0.0046. Without the mirrored copies the same
 * settings give 98.43% (43 wrong). The scikit-learn anchor, StandardScaler + LogisticRegression(C=1):
 * 97.26% (bench/classifier_bench.py). Asserted: the target. */
#define FN_TEST_MIN_ACCURACY 0.985

/* K well-separated clusters in d dimensions, m rows each (deterministic). */
static float *clusters(int K, int d, int m, int **yout)
{
    float *x = malloc((size_t)K * m * d * sizeof(float)), *noise = malloc((size_t)K * m * d * sizeof(float));
    int *y = malloc((size_t)K * m * sizeof(int));
    tu_fill_random(noise, (size_t)K * m * d, 7, -1, 1);
    for (int c = 0; c < K; c++)
        for (int i = 0; i < m; i++) {
            int r = c * m + i;
            y[r] = c;
            for (int j = 0; j < d; j++)
                x[(size_t)r * d + j] = noise[(size_t)r * d + j] + (j % K == c ? 4.0f : 0.0f);
        }
    free(noise);
    *yout = y;
    return x;
}

static const char *names3[] = {"Apple", "Banana", "Cherry"};

static void test_separable(void **state)
{
    (void)state;
    int *y, K = 3, d = 6, m = 20, n = K * m;
    float *x = clusters(K, d, m, &y);
    fn_classifier_options o;
    fn_classifier_options_default(&o);
    o.folds = 3;
    fn_classifier *c;
    fn_classifier_report r;
    memset(&r, 0, sizeof r);
    int cvp[60];
    r.cv_pred = cvp;
    fn_error e;
    assert_int_equal(fn_classifier_train(x, n, d, y, K, names3, &o, &c, &r, &e), FN_OK);
    assert_int_equal(fn_classifier_classes(c), 3);
    assert_int_equal(fn_classifier_dim(c), d);
    assert_string_equal(fn_classifier_class_name(c, 1), "Banana");
    assert_null(fn_classifier_class_name(c, 3));
    /* CV picked a finite C on the path, and the out-of-fold predictions are right */
    assert_true(r.folds == 3 && r.best >= 0 && r.best < r.path_len);
    assert_true(isfinite(r.c[r.best]) && r.c[r.best] > 0);
    assert_true(r.cv_accuracy[r.best] == 1.0);
    for (int i = 0; i < n; i++)
        assert_int_equal(cvp[i], y[i]);
    float *p = malloc((size_t)n * K * sizeof(float));
    assert_int_equal(fn_classifier_predict_proba(c, x, n, p, &e), FN_OK);
    for (int i = 0; i < n; i++) {
        double s = 0;
        int am = 0;
        for (int k = 0; k < K; k++) {
            s += p[i * K + k];
            am = p[i * K + k] > p[i * K + am] ? k : am;
        }
        assert_true(fabs(s - 1) < 1e-5);
        assert_int_equal(am, y[i]);
    }
    assert_non_null(strstr(fn_classifier_info(c), "cv_folds=3"));
    /* NaN input is refused by row */
    x[5 * d + 2] = NAN;
    assert_int_equal(fn_classifier_predict_proba(c, x, n, p, &e), FN_ENUMERIC);
    assert_non_null(strstr(e.msg, "row 5"));
    fn_classifier_free(c);
    /* argument errors name the problem */
    y[0] = 7;
    x[5 * d + 2] = 0;
    assert_int_equal(fn_classifier_train(x, n, d, y, K, names3, &o, &c, NULL, &e), FN_EARG);
    assert_non_null(strstr(e.msg, "label 7"));
    y[0] = 0;
    const char *dup[] = {"Apple", "Apple", "Cherry"};
    assert_int_equal(fn_classifier_train(x, n, d, y, K, dup, &o, &c, NULL, &e), FN_EARG);
    assert_non_null(strstr(e.msg, "duplicate"));
    free(p), free(x), free(y);
}

/* pca_dim 12 of 40: randomised subspace iteration (12 + 16 oversampling < 40); 30: the exact PCA. */
static unsigned char *train_bytes(int threads, int pca_dim, size_t *len)
{
    int *y, K = 3, d = 40, m = 30, n = K * m;
    float *x = clusters(K, d, m, &y);
    fn_classifier_options o;
    fn_classifier_options_default(&o);
    o.folds = 3, o.pca_dim = pca_dim, o.threads = threads;
    fn_classifier *c;
    fn_error e;
    assert_int_equal(fn_classifier_train(x, n, d, y, K, names3, &o, &c, NULL, &e), FN_OK);
    char path[] = "/tmp/fn_cls_det_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(fn_classifier_save(c, path, &e), FN_OK);
    unsigned char *b = tu_read_file(path, len);
    unlink(path);
    fn_classifier_free(c);
    free(x), free(y);
    return b;
}

static void test_deterministic(void **state)
{
    (void)state;
    /* 1 thread; 2 (the 3 fold jobs on 1 thread each); 7 (fold jobs of 2 threads each, one idle) */
    for (int pd = 12; pd <= 30; pd += 18) {
        size_t n1, n2, n3, n4;
        unsigned char *a = train_bytes(1, pd, &n1), *b = train_bytes(2, pd, &n2), *c = train_bytes(2, pd, &n3),
                      *d = train_bytes(7, pd, &n4);
        assert_true(n1 > 100 && n1 == n2 && n2 == n3 && n3 == n4);
        assert_memory_equal(a, b, n1);
        assert_memory_equal(b, c, n1);
        assert_memory_equal(a, d, n1);
        free(a), free(b), free(c), free(d);
    }
}

/* options.augment_*: the rows join the final fit only (the CV's figures are those without them), the model
 * changes, reruns give the same bytes, and bad augmentation rows are refused with a reason. */
static void test_augment(void **state)
{
    (void)state;
    int *y, K = 3, d = 40, m = 30, n = K * m;
    float *x = clusters(K, d, m, &y);
    float *xa = malloc((size_t)n * d * sizeof(float));
    for (int i = 0; i < n; i++) /* "augmentation" rows: the same clusters, scaled and shifted */
        for (int j = 0; j < d; j++)
            xa[(size_t)i * d + j] = x[(size_t)i * d + j] * 0.9f + 0.05f * (float)((i + j) % 7);
    fn_classifier_options o;
    fn_classifier_options_default(&o);
    o.folds = 3, o.pca_dim = 12;
    fn_classifier *c0, *c1, *c2;
    fn_classifier_report r0, r1;
    memset(&r0, 0, sizeof r0), memset(&r1, 0, sizeof r1);
    fn_error e;
    assert_int_equal(fn_classifier_train(x, n, d, y, K, names3, &o, &c0, &r0, &e), FN_OK);
    o.augment_x = xa, o.augment_y = y, o.augment_n = n;
    assert_int_equal(fn_classifier_train(x, n, d, y, K, names3, &o, &c1, &r1, &e), FN_OK);
    assert_int_equal(fn_classifier_train(x, n, d, y, K, names3, &o, &c2, NULL, &e), FN_OK);
    assert_int_equal(r0.best, r1.best);
    assert_memory_equal(r0.cv_accuracy, r1.cv_accuracy, sizeof r0.cv_accuracy);
    assert_memory_equal(r0.cv_log_loss, r1.cv_log_loss, sizeof r0.cv_log_loss);
    assert_non_null(strstr(fn_classifier_info(c1), "augment_rows=90\n"));
    assert_null(strstr(fn_classifier_info(c0), "augment_rows"));
    float p0[90 * 3], p1[90 * 3], p2[90 * 3];
    assert_int_equal(fn_classifier_predict_proba(c0, x, n, p0, &e), FN_OK);
    assert_int_equal(fn_classifier_predict_proba(c1, x, n, p1, &e), FN_OK);
    assert_int_equal(fn_classifier_predict_proba(c2, x, n, p2, &e), FN_OK);
    assert_memory_equal(p1, p2, sizeof p1);
    assert_true(memcmp(p0, p1, sizeof p0) != 0);
    fn_classifier_free(c0), fn_classifier_free(c1), fn_classifier_free(c2);
    /* refusals */
    int bad[90];
    memcpy(bad, y, sizeof bad);
    bad[5] = 3;
    o.augment_y = bad;
    assert_int_equal(fn_classifier_train(x, n, d, y, K, names3, &o, &c1, NULL, &e), FN_EARG);
    assert_non_null(strstr(e.msg, "augmentation row 5 has label 3 outside [0, 3)"));
    assert_null(c1);
    o.augment_y = y;
    xa[7 * d + 2] = NAN;
    assert_int_equal(fn_classifier_train(x, n, d, y, K, names3, &o, &c1, NULL, &e), FN_ENUMERIC);
    assert_non_null(strstr(e.msg, "augmentation row 7 has a NaN or infinite value at index 2"));
    o.augment_x = NULL;
    assert_int_equal(fn_classifier_train(x, n, d, y, K, names3, &o, &c1, NULL, &e), FN_EARG);
    assert_non_null(strstr(e.msg, "invalid augmentation (90 rows)"));
    free(x), free(xa), free(y);
}

static void test_file_errors(void **state)
{
    (void)state;
    int *y, K = 3, d = 6, m = 10;
    float *x = clusters(K, d, m, &y);
    fn_classifier_options o;
    fn_classifier_options_default(&o);
    o.c = 1; /* no cross-validation */
    fn_classifier *c, *c2;
    fn_error e;
    assert_int_equal(fn_classifier_train(x, K * m, d, y, K, names3, &o, &c, NULL, &e), FN_OK);
    char dir[] = "/tmp/fn_cls_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof path, "%s/m.fncls", dir);
    assert_int_equal(fn_classifier_save(c, path, &e), FN_OK);
    size_t n;
    unsigned char *b = tu_read_file(path, &n);
    assert_int_equal(fn_classifier_load(path, &c2, &e), FN_OK);
    float p1[30 * 3], p2[30 * 3];
    assert_int_equal(fn_classifier_predict_proba(c, x, K * m, p1, &e), FN_OK);
    assert_int_equal(fn_classifier_predict_proba(c2, x, K * m, p2, &e), FN_OK);
    assert_memory_equal(p1, p2, sizeof p1);
    fn_classifier_free(c2);
    assert_int_equal(fn_classifier_load_from_memory(b, n, "mem", &c2, &e), FN_OK);
    fn_classifier_free(c2);
    /* CRC: one flipped bit in the weights */
    b[n - 20] ^= 1;
    assert_int_equal(fn_classifier_load_from_memory(b, n, "flip.fncls", &c2, &e), FN_ECHECKSUM);
    assert_non_null(strstr(e.msg, "flip.fncls: checksum mismatch"));
    b[n - 20] ^= 1;
    /* truncation */
    assert_int_equal(fn_classifier_load_from_memory(b, n - 9, "cut.fncls", &c2, &e), FN_EFORMAT);
    assert_non_null(strstr(e.msg, "cut.fncls: truncated"));
    assert_int_equal(fn_classifier_load_from_memory(b, 20, "cut.fncls", &c2, &e), FN_EFORMAT);
    assert_non_null(strstr(e.msg, "truncated"));
    /* version */
    b[8] = 9;
    assert_int_equal(fn_classifier_load_from_memory(b, n, "v.fncls", &c2, &e), FN_EUNSUPPORTED);
    assert_non_null(strstr(e.msg, "version 9"));
    b[8] = 2;
    /* version 1 (before the class means): still read, predicts the same; distances refused by name */
    {
        size_t n1 = n - 4 - 8 - (size_t)K * d * 4;
        unsigned char *v1 = malloc(n);
        memcpy(v1, b, n1);
        v1[8] = 1;
        uint32_t crc = (uint32_t)crc32(0, v1, (uInt)n1);
        for (int i = 0; i < 4; i++)
            v1[n1 + i] = (unsigned char)(crc >> (8 * i));
        assert_int_equal(fn_classifier_load_from_memory(v1, n1 + 4, "v1.fncls", &c2, &e), FN_OK);
        assert_true(fn_classifier_distance_threshold(c2) == 0);
        float dd;
        assert_int_equal(fn_classifier_distance(c2, x, 1, &dd, &e), FN_EUNSUPPORTED);
        assert_non_null(strstr(e.msg, "version-1"));
        assert_int_equal(fn_classifier_predict_proba(c2, x, K * m, p2, &e), FN_OK);
        assert_memory_equal(p1, p2, sizeof p1);
        fn_classifier_free(c2);
        /* a v2 file whose threshold is not positive is refused */
        memcpy(v1, b, n);
        memset(v1 + n - 4 - (size_t)K * d * 4 - 8, 0, 8);
        crc = (uint32_t)crc32(0, v1, (uInt)(n - 4));
        for (int i = 0; i < 4; i++)
            v1[n - 4 + i] = (unsigned char)(crc >> (8 * i));
        assert_int_equal(fn_classifier_load_from_memory(v1, n, "th.fncls", &c2, &e), FN_EFORMAT);
        assert_non_null(strstr(e.msg, "th.fncls: a NaN, infinite or non-positive number in the class means"));
        free(v1);
    }
    /* distances: every training row within the threshold (the 99th percentile of 30 rows is their
     * largest; float GEMM vs double: 1e-4 slack), a row far from all three clusters beyond it */
    {
        float dd[30], farrow[6] = {40, -40, 40, -40, 40, -40};
        double th = fn_classifier_distance_threshold(c);
        assert_true(th > 0);
        assert_int_equal(fn_classifier_distance(c, x, K * m, dd, &e), FN_OK);
        for (int i = 0; i < K * m; i++)
            assert_true(dd[i] <= th * (1 + 1e-4));
        assert_int_equal(fn_classifier_distance(c, farrow, 1, dd, &e), FN_OK);
        assert_true(dd[0] > 10 * th);
        farrow[2] = NAN;
        assert_int_equal(fn_classifier_distance(c, farrow, 1, dd, &e), FN_ENUMERIC);
        assert_non_null(strstr(e.msg, "row 0"));
    }
    /* bad magic, on disk: the file is named */
    b[0] = 'X';
    tu_write(path, b, n);
    assert_int_equal(fn_classifier_load(path, &c2, &e), FN_EFORMAT);
    assert_non_null(strstr(e.msg, "m.fncls: not a fruitnet classifier file (bad magic)"));
    assert_int_equal(fn_classifier_load("/nonexistent/x.fncls", &c2, &e), FN_EIO);
    assert_non_null(strstr(e.msg, "/nonexistent/x.fncls"));
    assert_int_equal(fn_classifier_load(dir, &c2, &e), FN_EIO); /* a folder */
    assert_non_null(strstr(e.msg, "not a regular file"));
    /* /dev/null (or any device) is refused by the atomic writer and left as it is: never renamed over */
    assert_int_not_equal(fn_classifier_save(c, "/dev/null", &e), FN_OK);
    assert_non_null(strstr(e.msg, "/dev/null"));
    struct stat st;
    assert_int_equal(stat("/dev/null", &st), 0);
    assert_true(S_ISCHR(st.st_mode));
    /* no temporary left behind */
    char cmd[300];
    snprintf(cmd, sizeof cmd, "test $(ls -A %s | wc -l) = 1", dir);
    assert_int_equal(system(cmd), 0);
    unlink(path);
    rmdir(dir);
    free(b), free(x), free(y);
    fn_classifier_free(c);
}


/* ---------------------------------------------------------------- training data (classifier_data.c) */

static void test_frame_order(void **state)
{
    (void)state;
    const char *p[] = {"d/B/r_12_100.jpg", "d/B/103_100.jpg", "d/A/16_100.jpg", "d/B/16_100.jpg",
                       "d/B/r2_151_100.jpg", "d/B/r_108_100.jpg", "d/B/r2_9_100.jpg", "d/B/160_100.jpg",
                       "noframe.jpg", "d/B/2_100.jpg"};
    int64_t o[10];
    fn_error e;
    assert_int_equal(fn_frame_order(p, 10, o, &e), FN_OK);
    /* by folder, then the name's text before the frame number ("", "r2_", "r_"), then the number:
     * A/16; B/2, 16, 103, 160; B/r2_9, r2_151; B/r_12, r_108; then noframe.jpg (no folder, byte order) */
    const int64_t want[10] = {7, 3, 0, 2, 6, 8, 5, 4, 9, 1};
    for (int i = 0; i < 10; i++)
        assert_int_equal(o[i], want[i]);
    assert_int_equal(fn_frame_order(NULL, 3, o, &e), FN_EARG);
    assert_int_equal(fn_frame_order(p, 0, o, &e), FN_OK);
}

/* Each class: 3 sub-clusters of 10 rows in row order, each on a dimension of its own. Random folds see
 * every sub-cluster in training (all right); blocked folds hold a whole sub-cluster out at a time, whose
 * dimension training never saw varying: they must score far lower. */
static void test_blocked_folds(void **state)
{
    (void)state;
    const int K = 2, S = 3, m = 10, n = K * S * m, d = K * S;
    float *x = calloc((size_t)n * d, sizeof(float)), noise[60];
    int y[60], cvp[60];
    int64_t order[60];
    tu_fill_random(noise, 60, 3, -0.2f, 0.2f);
    for (int c = 0; c < K; c++)
        for (int i = 0; i < S * m; i++) {
            int r = c * S * m + i;
            y[r] = c, order[r] = i;
            x[(size_t)r * d + c * S + i / m] = 4 + noise[r];
        }
    fn_classifier_options o;
    fn_classifier_options_default(&o);
    o.folds = 3;
    fn_classifier *c;
    fn_classifier_report r;
    fn_error e;
    memset(&r, 0, sizeof r);
    r.cv_pred = cvp;
    assert_int_equal(fn_classifier_train(x, n, d, y, K, names3, &o, &c, &r, &e), FN_OK);
    double random_acc = r.cv_accuracy[r.best];
    fn_classifier_free(c);
    o.order = order;
    assert_int_equal(fn_classifier_train(x, n, d, y, K, names3, &o, &c, &r, &e), FN_OK);
    double blocked_acc = r.cv_accuracy[r.best];
    fn_classifier_free(c);
    print_message("CV accuracy: random folds %.3f, blocked folds %.3f\n", random_acc, blocked_acc);
    assert_true(random_acc == 1.0);
    assert_true(blocked_acc < 0.8);
    free(x);
}

static void test_labeled_set(void **state)
{
    (void)state;
    const int n = 40, d = 3;
    float x[120];
    const char *lab[40], *paths[40];
    char pbuf[40][32];
    const char *cls[] = {"Pear", "Apple", "Kiwi"};
    for (int i = 0; i < n; i++) {
        lab[i] = cls[i % 3];
        snprintf(pbuf[i], sizeof pbuf[i], "%s/%d_100.jpg", lab[i], i);
        paths[i] = pbuf[i];
        for (int j = 0; j < d; j++)
            x[i * d + j] = (float)(i * 10 + j);
    }
    fn_labeled_set s, tr, va;
    fn_error e;
    assert_int_equal(fn_labeled_set_from_rows(n, d, x, lab, paths, "mem", &s, &e), FN_OK);
    assert_int_equal(s.nclasses, 3);
    assert_string_equal(s.names[0], "Apple");
    assert_string_equal(s.names[2], "Pear");
    for (int i = 0; i < n; i++) {
        assert_string_equal(s.names[s.y[i]], lab[i]);
        assert_string_equal(s.paths[i], paths[i]);
    }
    assert_memory_equal(s.x, x, sizeof x);
    /* split: per class round(0.25 m) held out; the held-out rows and the training rows partition the set */
    assert_int_equal(fn_labeled_set_split(&s, 0.25, 0, NULL, &tr, &va, &e), FN_OK);
    assert_int_equal(tr.n + va.n, n);
    assert_int_equal(va.n, 4 + 3 + 3); /* Pear 14 rows: round(3.5) = 4; Apple, Kiwi 13: round(3.25) = 3 */
    int seen[40] = {0};
    for (int i = 0; i < tr.n + va.n; i++) {
        const fn_labeled_set *t = i < tr.n ? &tr : &va;
        int k = i < tr.n ? i : i - tr.n, row = (int)(t->x[(size_t)k * d] / 10);
        assert_int_equal(seen[row]++, 0);
        assert_string_equal(t->names[t->y[k]], lab[row]);
        assert_string_equal(t->paths[k], paths[row]);
    }
    fn_labeled_set tr2, va2;
    assert_int_equal(fn_labeled_set_split(&s, 0.25, 0, NULL, &tr2, &va2, &e), FN_OK); /* deterministic */
    assert_int_equal(va2.n, va.n);
    assert_memory_equal(va2.x, va.x, (size_t)va.n * d * sizeof(float));
    fn_labeled_set_free(&tr2), fn_labeled_set_free(&va2), fn_labeled_set_free(&tr), fn_labeled_set_free(&va);
    /* blocked: by frame order, each class's last frames held out (Pear: frames 30, 33, 36, 39) */
    int64_t ord[40];
    assert_int_equal(fn_frame_order(paths, n, ord, &e), FN_OK);
    assert_int_equal(fn_labeled_set_split(&s, 0.25, 0, ord, &tr, &va, &e), FN_OK);
    assert_int_equal(va.n, 10);
    int maxtr[3] = {-1, -1, -1}, minva[3] = {99, 99, 99}, pear = 0;
    for (int i = 0; i < tr.n; i++) {
        int f = (int)(tr.x[(size_t)i * d] / 10);
        maxtr[tr.y[i]] = f > maxtr[tr.y[i]] ? f : maxtr[tr.y[i]];
    }
    for (int i = 0; i < va.n; i++) {
        int f = (int)(va.x[(size_t)i * d] / 10);
        minva[va.y[i]] = f < minva[va.y[i]] ? f : minva[va.y[i]];
        pear += va.y[i] == 2 && f >= 30;
    }
    for (int c = 0; c < 3; c++)
        assert_true(maxtr[c] < minva[c]);
    assert_int_equal(pear, 4);
    fn_labeled_set_free(&tr), fn_labeled_set_free(&va);
    assert_int_equal(fn_labeled_set_split(&s, 0.6, 0, NULL, &tr, &va, &e), FN_EARG);
    assert_non_null(strstr(e.msg, "0.6"));
    /* the same rows through a Parquet file */
    char dir[256], path[300];
    assert_non_null(tu_mkdtemp(dir, sizeof dir, "lset"));
    snprintf(path, sizeof path, "%s/f.parquet", dir);
    fn_parquet_writer *w;
    fn_parquet_options po = {.list_column = "features"};
    assert_int_equal(fn_parquet_writer_open(path, &po, &w, &e), FN_OK);
    assert_int_equal(fn_parquet_writer_add_rows(w, n, paths, lab, x, d, &e), FN_OK);
    assert_int_equal(fn_parquet_writer_close(w, &e), FN_OK);
    fn_labeled_set r;
    assert_int_equal(fn_labeled_set_read(path, &r, &e), FN_OK);
    assert_int_equal(r.n, n);
    assert_int_equal(r.nclasses, 3);
    assert_memory_equal(r.x, s.x, sizeof x);
    assert_memory_equal(r.y, s.y, sizeof(int) * n);
    fn_labeled_set_free(&r);
    /* a row without a label is refused, naming the file and the row */
    lab[7] = "";
    assert_int_equal(fn_parquet_writer_open(path, &po, &w, &e), FN_OK);
    assert_int_equal(fn_parquet_writer_add_rows(w, n, paths, lab, x, d, &e), FN_OK);
    assert_int_equal(fn_parquet_writer_close(w, &e), FN_OK);
    assert_int_equal(fn_labeled_set_read(path, &r, &e), FN_EFORMAT);
    assert_non_null(strstr(e.msg, "f.parquet: row 7 (Apple/7_100.jpg): no label"));
    assert_int_equal(fn_labeled_set_from_rows(n, d, x, lab, paths, "mem", &r, &e), FN_EFORMAT);
    assert_non_null(strstr(e.msg, "mem: row 7 (Apple/7_100.jpg) has no label"));
    assert_int_equal(fn_labeled_set_read("/nonexistent/f.parquet", &r, &e), FN_EIO);
    assert_non_null(strstr(e.msg, "/nonexistent/f.parquet"));
    /* the report: per_class.csv and confusion_matrix.svg, atomically */
    int truth[6] = {0, 0, 1, 1, 2, 2}, pred[6] = {0, 1, 1, 1, 2, 0};
    const char *nm[3] = {"Apple", "Kiwi \"gold\"", "Pear <red>"};
    assert_int_equal(fn_classifier_write_report(dir, nm, 3, truth, pred, 6, "held-out rows", &e), FN_OK);
    snprintf(path, sizeof path, "%s/per_class.csv", dir);
    size_t len;
    char *csv = tu_read_file(path, &len);
    assert_non_null(csv);
    const char *want = "class,support,predicted,correct,precision,recall,f1\n"
                       "\"Apple\",2,2,1,0.5000,0.5000,0.5000\n"
                       "\"Kiwi \"\"gold\"\"\",2,3,2,0.6667,1.0000,0.8000\n"
                       "\"Pear <red>\",2,1,1,1.0000,0.5000,0.6667\n";
    assert_int_equal(len, strlen(want));
    assert_memory_equal(csv, want, len);
    free(csv);
    snprintf(path, sizeof path, "%s/confusion_matrix.svg", dir);
    char *svg = tu_read_file(path, &len);
    assert_non_null(svg);
    assert_true(len > 100 && !strncmp(svg, "<svg", 4) && strstr(svg, "Pear &lt;red&gt; -&gt; Apple: 1"));
    free(svg);
    pred[0] = 3;
    assert_int_equal(fn_classifier_write_report(dir, nm, 3, truth, pred, 6, NULL, &e), FN_EARG);
    assert_non_null(strstr(e.msg, "row 0"));
    pred[0] = 0;
    assert_int_not_equal(fn_classifier_write_report("/nonexistent/rep", nm, 3, truth, pred, 6, NULL, &e), FN_OK);
    assert_non_null(strstr(e.msg, "/nonexistent/rep/per_class.csv"));
    fn_labeled_set_free(&s);
    tu_rm_rf(dir);
}

/* Out of memory is an error that names the data, not a crash (fruitnet-train's rows once dereferenced a
 * failed allocation): a child process whose address space is capped copies 256 MiB of rows. */
static void test_out_of_memory(void **state)
{
    (void)state;
#if defined(__SANITIZE_ADDRESS__)
    print_message("not run under AddressSanitizer (it reserves the address space that the cap needs)\n");
#else
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) { /* a crash here must end the child, not return into cmocka's handler */
        signal(SIGSEGV, SIG_DFL), signal(SIGBUS, SIG_DFL), signal(SIGABRT, SIG_DFL);
        close(fds[0]);
        const int n = 32768, d = 2048;
        float *x = calloc((size_t)n * d, sizeof(float)); /* 256 MiB, reserved before the cap */
        const char **lab = malloc((size_t)n * sizeof(char *));
        if (!x || !lab)
            _exit(3);
        for (int i = 0; i < n; i++)
            lab[i] = "Apple";
        FILE *f = fopen("/proc/self/statm", "r");
        unsigned long pages = 0;
        if (!f || fscanf(f, "%lu", &pages) != 1)
            _exit(4);
        fclose(f);
        struct rlimit rl;
        rl.rlim_cur = rl.rlim_max = (rlim_t)pages * (rlim_t)sysconf(_SC_PAGESIZE) + ((rlim_t)64 << 20);
        if (setrlimit(RLIMIT_AS, &rl))
            _exit(5);
        fn_labeled_set s;
        fn_error e;
        int rc = fn_labeled_set_from_rows(n, d, x, lab, NULL, "big.parquet", &s, &e);
        char msg[600];
        int len = snprintf(msg, sizeof msg, "%d %s", rc, rc ? e.msg : "");
        if (write(fds[1], msg, (size_t)len) != len)
            _exit(6);
        _exit(0);
    }
    close(fds[1]);
    char buf[600] = {0};
    ssize_t got = read(fds[0], buf, sizeof buf - 1);
    close(fds[0]);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_true(got > 0);
    char want[64];
    snprintf(want, sizeof want, "%d big.parquet: out of memory for 32768 rows x 2048 features", FN_ENOMEM);
    assert_string_equal(buf, want);
#endif
    /* a size that cannot be held is refused before any allocation */
    fn_labeled_set s;
    fn_error e;
    float one = 0;
    const char *lab = "A";
    assert_int_equal(fn_labeled_set_from_rows(2000000000, 65536, &one, &lab, NULL, "huge", &s, &e), FN_ELIMIT);
    assert_non_null(strstr(e.msg, "huge: 2000000000 rows x 65536 features: too large"));
}

/* ---------------------------------------------------------------- real data */

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void test_accuracy(void **state)
{
    (void)state;
    const char *g = tu_golden_dir(), *tr = getenv("FRUITNET_TRAIN_SAMPLE");
    if (!tr || !*tr)
        tr = "../shared/data/fruits-360-train-sample";
    struct stat st;
    if (!g || stat(tr, &st) != 0 || !tu_weights_path()) {
        const char *req = getenv("FRUITNET_REQUIRE_DATA");
        if (req && !strcmp(req, "1"))
            fail_msg("%s or the golden data not found and FRUITNET_REQUIRE_DATA=1", tr);
        print_message("skipped: no training sample at %s\n", tr);
        return;
    }
    const char *cache = "build/classifier-data/train_features.parquet";
    if (stat(cache, &st) != 0) {
        char cmd[1024];
        snprintf(cmd, sizeof cmd,
                 "mkdir -p build/classifier-data && build/fruitnet-extract -q --single-file --weights '%s' -o %s '%s'",
                 tu_weights_path(), cache, tr);
        print_message("extracting the training sample's features once (cached in %s)\n", cache);
        assert_int_equal(system(cmd), 0);
    }
    /* training rows */
    fn_parquet_reader *r;
    fn_error e;
    assert_int_equal(fn_parquet_reader_open(cache, &r, &e), FN_OK);
    int n = (int)fn_parquet_reader_rows(r), D = FN_FEATURE_DIM, i = 0;
    float *x = malloc((size_t)n * D * sizeof(float));
    char **lab = malloc((size_t)n * sizeof(char *)), **names = malloc((size_t)n * sizeof(char *));
    char **paths = malloc((size_t)n * sizeof(char *));
    fn_parquet_row row;
    while (fn_parquet_reader_next(r, &row, &e) == 1) {
        assert_int_equal(row.n, D);
        memcpy(x + (size_t)i * D, row.vec, (size_t)D * sizeof(float));
        paths[i] = strdup(row.path);
        lab[i++] = strdup(row.label);
    }
    fn_parquet_reader_close(r);
    assert_int_equal(i, n);
    assert_int_equal(n, 4560);
    memcpy(names, lab, (size_t)n * sizeof(char *));
    qsort(names, (size_t)n, sizeof(char *), cmp_str);
    int K = 0;
    for (int j = 0; j < n; j++)
        if (!K || strcmp(names[K - 1], names[j]))
            names[K++] = names[j];
    assert_int_equal(K, 114);
    int *y = malloc((size_t)n * sizeof(int));
    for (int j = 0; j < n; j++)
        for (y[j] = 0; strcmp(names[y[j]], lab[j]); y[j]++)
            ;
    /* the mirrored copies of the training images (fruitnet-extract --mirror), cached the same way */
    const char *mcache = "build/classifier-data/train_mirror.parquet";
    if (stat(mcache, &st) != 0) {
        char cmd[1024];
        snprintf(cmd, sizeof cmd,
                 "mkdir -p build/classifier-data && build/fruitnet-extract -q --single-file --mirror --weights '%s' "
                 "-o %s '%s'", tu_weights_path(), mcache, tr);
        print_message("extracting the mirrored training images' features once (cached in %s)\n", mcache);
        assert_int_equal(system(cmd), 0);
    }
    assert_int_equal(fn_parquet_reader_open(mcache, &r, &e), FN_OK);
    const char *pre = fn_parquet_reader_meta(r, "fruitnet.preprocessing");
    assert_true(pre && strstr(pre, "mirror=left-right"));
    int na = (int)fn_parquet_reader_rows(r), ia = 0;
    assert_int_equal(na, n);
    float *xa = malloc((size_t)na * D * sizeof(float));
    int *ya = malloc((size_t)na * sizeof(int));
    while (fn_parquet_reader_next(r, &row, &e) == 1) {
        assert_int_equal(row.n, D);
        memcpy(xa + (size_t)ia * D, row.vec, (size_t)D * sizeof(float));
        for (ya[ia] = 0; ya[ia] < K && strcmp(names[ya[ia]], row.label); ya[ia]++)
            ;
        assert_true(ya[ia] < K);
        ia++;
    }
    fn_parquet_reader_close(r);
    assert_int_equal(ia, na);
    /* blocked folds by frame order, as fruitnet-train does (random folds saturate: near-duplicate frames) */
    int64_t *order = malloc((size_t)n * sizeof(int64_t));
    assert_int_equal(fn_frame_order((const char *const *)paths, n, order, &e), FN_OK);
    fn_classifier_options o;
    fn_classifier_options_default(&o);
    o.order = order;
    o.augment_x = xa, o.augment_y = ya, o.augment_n = na; /* the final fit only */
    fn_classifier *c;
    fn_classifier_report rep;
    memset(&rep, 0, sizeof rep);
    assert_int_equal(fn_classifier_train(x, n, D, y, K, (const char *const *)names, &o, &c, &rep, &e), FN_OK);
    /* blocked CV does not saturate (random folds: 99.89% at every C from 0.316) */
    assert_true(rep.cv_accuracy[rep.best] > 0.97 && rep.cv_accuracy[rep.best] < 0.995);
    /* the test sample: golden features, manifest classes */
    gzFile gz = gzopen(tu_path(g, "all2880/features_2880x2048.f16.gz"), "rb");
    assert_non_null(gz);
    const int NT = 2880;
    uint16_t *h = malloc((size_t)NT * D * 2);
    assert_int_equal(gzread(gz, h, NT * D * 2), NT * D * 2);
    gzclose(gz);
    float *xt = malloc((size_t)NT * D * sizeof(float)), *p = malloc((size_t)NT * K * sizeof(float));
    for (size_t j = 0; j < (size_t)NT * D; j++)
        xt[j] = tu_half_to_float(h[j]);
    assert_int_equal(fn_classifier_predict_proba(c, xt, NT, p, &e), FN_OK);
    float *dist = malloc((size_t)NT * sizeof(float));
    assert_int_equal(fn_classifier_distance(c, xt, NT, dist, &e), FN_OK);
    const double th = fn_classifier_distance_threshold(c);
    int far_shared = 0, far_unseen = 0;
    FILE *mf = fopen(tu_path(g, "all2880/manifest.csv"), "r");
    assert_non_null(mf);
    char line[1024];
    int shared = 0, correct = 0;
    double ece_bins[15][3] = {{0}};
    assert_non_null(fgets(line, sizeof line, mf)); /* header */
    for (int j = 0; j < NT && fgets(line, sizeof line, mf); j++) {
        line[strcspn(line, "\r\n")] = 0;
        const char *cls = strrchr(line, ',') + 1;
        int t = -1;
        for (int k = 0; k < K; k++)
            if (!strcmp(names[k], cls))
                t = k;
        if (t < 0) {
            far_unseen += dist[j] > th;
            continue;
        }
        far_shared += dist[j] > th;
        int am;
        float pm;
        fn_topk(p + (size_t)j * K, K, 1, &am, &pm);
        double s = 0;
        for (int k = 0; k < K; k++)
            s += p[(size_t)j * K + k];
        assert_true(fabs(s - 1) < 1e-4);
        shared++, correct += am == t;
        int b = pm >= 1 ? 14 : (int)(pm * 15);
        ece_bins[b][0]++, ece_bins[b][1] += pm, ece_bins[b][2] += am == t;
    }
    fclose(mf);
    double ece = 0;
    for (int b = 0; b < 15; b++)
        if (ece_bins[b][0])
            ece += fabs(ece_bins[b][1] - ece_bins[b][2]) / shared;
    double acc = (double)correct / shared;
    print_message("test sample, %d images of the 114 shared classes: top-1 %.2f%% (%d wrong), ECE %.4f; "
                  "C = %g, CV accuracy %.2f%% (trained with the %d mirrored copies)\n",
                  shared, 100 * acc, shared - correct, ece, rep.c[rep.best], 100 * rep.cv_accuracy[rep.best], na);
    assert_int_equal(shared, 2736);
    assert_true(acc >= FN_TEST_MIN_ACCURACY);
    /* out-of-set distance: 1% of the training rows lie beyond the threshold by construction; the test
     * sample's photos of the same classes about as few (measured 2.0%); uniform noise always */
    float xmax = 0, *noise = malloc((size_t)200 * D * sizeof(float)), dn[200];
    for (size_t j = 0; j < (size_t)n * D; j++)
        xmax = x[j] > xmax ? x[j] : xmax;
    tu_fill_random(noise, (size_t)200 * D, 11, 0, xmax);
    assert_int_equal(fn_classifier_distance(c, noise, 200, dn, &e), FN_OK);
    int far_noise = 0;
    for (int j = 0; j < 200; j++)
        far_noise += dn[j] > th;
    print_message("out-of-set distance > %.3f: %d of %d test photos of the shared classes, %d of %d of the 6 "
                  "unseen classes, %d of 200 noise vectors\n", th, far_shared, shared, far_unseen, NT - shared,
                  far_noise);
    assert_true(th > 0 && far_shared < 0.04 * shared);
    assert_int_equal(far_noise, 200);
    free(noise), free(dist);
    fn_classifier_free(c);
    for (int j = 0; j < n; j++)
        free(lab[j]), free(paths[j]);
    free(lab), free(paths), free(order), free(names), free(x), free(y), free(h), free(xt), free(p);
    free(xa), free(ya);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_separable),
        cmocka_unit_test(test_deterministic),
        cmocka_unit_test(test_augment),
        cmocka_unit_test(test_file_errors),
        cmocka_unit_test(test_frame_order),
        cmocka_unit_test(test_blocked_folds),
        cmocka_unit_test(test_labeled_set),
        cmocka_unit_test(test_out_of_memory),
        cmocka_unit_test(test_accuracy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
