/* fn_parquet_writer_add_rows: n rows in one call give the same file as n single adds; bad arguments
 * and a bad row are refused with a message. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { NROWS = 2500, DIM = 5 };

static void write_file(const char *path, int batched, const char *const *paths, const char *const *labels,
                       const float *v)
{
    fn_parquet_options o = {.list_column = "features", .codec = FN_CODEC_GZIP, .rows_per_group = 1000};
    fn_parquet_writer *w;
    fn_error err;
    assert_int_equal(fn_parquet_writer_open(path, &o, &w, &err), FN_OK);
    if (batched) {
        assert_int_equal(fn_parquet_writer_add_rows(w, 1000, paths, labels, v, DIM, &err), FN_OK);
        assert_int_equal(fn_parquet_writer_add_rows(w, NROWS - 1000, paths + 1000, labels + 1000, v + 1000 * DIM,
                                                    DIM, &err), FN_OK);
    } else {
        for (int i = 0; i < NROWS; i++)
            assert_int_equal(fn_parquet_writer_add(w, paths[i], labels[i] ? labels[i] : "", v + i * DIM, DIM, &err),
                             FN_OK);
    }
    assert_int_equal(fn_parquet_writer_close(w, &err), FN_OK);
}

static void test_rows_equal_single_adds(void **state)
{
    static char names[NROWS][16];
    static const char *paths[NROWS], *labels[NROWS];
    static float v[NROWS * DIM];
    for (int i = 0; i < NROWS; i++) {
        snprintf(names[i], sizeof names[i], "img%d.jpg", i);
        paths[i] = names[i];
        labels[i] = i % 7 == 0 ? NULL : (i % 2 ? "Apple" : "Kiwi"); /* NULL reads as "" */
        for (int j = 0; j < DIM; j++)
            v[i * DIM + j] = (float)(i * 0.5 - j);
    }
    char a[] = "/tmp/fn_rows_a_XXXXXX", b[] = "/tmp/fn_rows_b_XXXXXX";
    close(mkstemp(a)), close(mkstemp(b));
    write_file(a, 1, paths, labels, v);
    write_file(b, 0, paths, labels, v);
    size_t la, lb;
    void *da = tu_read_file(a, &la), *db = tu_read_file(b, &lb);
    assert_non_null(da);
    assert_non_null(db);
    assert_int_equal(la, lb);
    assert_memory_equal(da, db, la);
    free(da), free(db);
    unlink(a), unlink(b);
}

static void test_bad_arguments(void **state)
{
    char p[] = "/tmp/fn_rows_c_XXXXXX";
    close(mkstemp(p));
    fn_parquet_options o = {.list_column = "features", .codec = FN_CODEC_UNCOMPRESSED};
    fn_parquet_writer *w;
    fn_error err;
    assert_int_equal(fn_parquet_writer_open(p, &o, &w, &err), FN_OK);
    float v[2] = {1, 2};
    const char *paths[2] = {"a", "b\xff"}, *labels[2] = {"x", "y"};
    assert_int_equal(fn_parquet_writer_add_rows(w, -1, paths, labels, v, 1, &err), FN_EARG);
    assert_non_null(strstr(err.msg, "fn_parquet_writer_add_rows"));
    assert_int_equal(fn_parquet_writer_add_rows(w, 2, NULL, labels, v, 1, &err), FN_EARG);
    assert_int_equal(fn_parquet_writer_add_rows(w, 0, NULL, NULL, NULL, 0, &err), FN_OK);
    /* row 1 is not UTF-8: refused, naming the file and the row; row 0 stays */
    assert_int_equal(fn_parquet_writer_add_rows(w, 2, paths, labels, v, 1, &err), FN_EARG);
    assert_non_null(strstr(err.msg, "row 1"));
    assert_non_null(strstr(err.msg, "UTF-8"));
    fn_parquet_writer_abort(w);
    unlink(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rows_equal_single_adds),
        cmocka_unit_test(test_bad_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
