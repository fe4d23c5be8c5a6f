/*
 * test_conventions.c — the return convention of include/fruitnet.h, checked
 * on every constructor: a failure returns a negative FN_E* code, fills
 * fn_error with that code and a reason naming the file or function at fault,
 * and sets the out pointer to NULL (never left as it was).
 */
#include "testutil.h"

#include <stdio.h>
#include <string.h>

#define SENTINEL ((void *)0x1)

/* rc < 0, err.code == rc, err.msg holds `names`, *out == NULL */
#define EXPECT_FAIL(call, out, names)                                                                    \
    do {                                                                                                 \
        fn_error e_ = {0};                                                                               \
        fn_error *err = &e_;                                                                             \
        out = SENTINEL;                                                                                  \
        int rc_ = (call);                                                                                \
        if (rc_ >= 0 || e_.code != rc_ || !strstr(e_.msg, names) || out != NULL)                         \
            fail_msg("%s: rc %d, err.code %d, msg \"%s\" (want \"%s\"), out %s", #call, rc_, e_.code,   \
                     e_.msg, names, out == NULL ? "NULL" : out == SENTINEL ? "left unchanged" : "set"); \
    } while (0)

static void test_constructors_fail_cleanly(void **s)
{
    (void)s;
    const char *missing = "/nonexistent-fruitnet/x";
    fn_weights *w;
    fn_model *m;
    fn_parquet_writer *pw;
    fn_parquet_reader *pr;
    fn_atomic *a;
    fn_classifier *c;
    fn_pca_stats *ps;
    fn_pca_model *pm;
    char **files;
    int nf;
    fn_parquet_options po = {.list_column = "features"};
    EXPECT_FAIL(fn_weights_open(missing, &w, err), w, missing);
    EXPECT_FAIL(fn_weights_open_memory("garbage", 7, &w, err), w, "weight");
    EXPECT_FAIL(fn_model_open(missing, NULL, &m, err), m, missing);
    EXPECT_FAIL(fn_parquet_writer_open(missing, &po, &pw, err), pw, missing);
    EXPECT_FAIL(fn_parquet_reader_open(missing, &pr, err), pr, missing);
    EXPECT_FAIL(fn_atomic_begin(missing, 0, &a, err), a, missing);
    EXPECT_FAIL(fn_classifier_load(missing, &c, err), c, missing);
    EXPECT_FAIL(fn_classifier_load_from_memory("garbage", 7, "mem.fncls", &c, err), c, "mem.fncls");
    float x[4] = {0};
    int y[2] = {0, 1};
    const char *names[2] = {"a", "b"};
    EXPECT_FAIL(fn_classifier_train(x, 2, 2, y, 1, names, NULL, &c, NULL, err), c, "fn_classifier_train");
    EXPECT_FAIL(fn_dataset_files(missing, 0, &files, &nf, err), files, missing);
    EXPECT_FAIL(fn_parquet_dataset_files(missing, &files, &nf, err), files, missing);
    EXPECT_FAIL(fn_pca_stats_new(0, &ps, err), ps, "dimension 0");
    EXPECT_FAIL(fn_pca_stats_load(missing, &ps, err), ps, missing);
    EXPECT_FAIL(fn_pca_stats_from_dataset(missing, 0, 1, &ps, NULL, NULL, err), ps, missing);
    EXPECT_FAIL(fn_pca_model_load(missing, &pm, err), pm, missing);
    double zero[4] = {0};
    EXPECT_FAIL(fn_pca_model_new(2, 3, 1, 1, zero, zero, zero, &pm, err), pm, "fn_pca_model_new");
    EXPECT_FAIL(fn_pca_stats_new(4, &ps, err) ? -1 : fn_pca_fit(ps, 0, 0.8, &pm, err), pm, "at least 2 rows");
    fn_pca_stats_free(ps);
}

/* err may be NULL: the status alone is returned. */
static void test_err_may_be_null(void **s)
{
    (void)s;
    fn_weights *w = SENTINEL;
    assert_int_equal(fn_weights_open("/nonexistent-fruitnet/x", &w, NULL), FN_EIO);
    assert_null(w);
    fn_pca_stats *ps = SENTINEL;
    assert_int_equal(fn_pca_stats_new(-1, &ps, NULL), FN_EARG);
    assert_null(ps);
}

/* Every _free / _close / _abort accepts NULL. */
static void test_free_null(void **s)
{
    (void)s;
    fn_weights_close(NULL);
    fn_model_close(NULL);
    fn_parquet_writer_abort(NULL);
    fn_parquet_reader_close(NULL);
    fn_free_list(NULL, 0);
    fn_pca_stats_free(NULL);
    fn_pca_model_free(NULL);
    fn_atomic_abort(NULL);
    fn_inputs_free(NULL);
    fn_classifier_free(NULL);
    fn_image_free(NULL);
    fn_image img = {0};
    fn_image_free(&img);
    fn_error e;
    assert_int_equal(fn_parquet_writer_close(NULL, &e), FN_EARG);
    assert_int_equal(e.code, FN_EARG);
    assert_int_equal(fn_atomic_commit(NULL, &e), FN_EARG);
    assert_int_equal(e.code, FN_EARG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_constructors_fail_cleanly),
        cmocka_unit_test(test_err_may_be_null),
        cmocka_unit_test(test_free_null),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
