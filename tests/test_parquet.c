/*
 * test_parquet.c — the Parquet writer and reader: round trips (0 rows, 1 row,
 * several row groups, unicode, empty and special float vectors, both codecs),
 * atomic writes, corrupt and truncated files, and interoperability with two
 * independent readers (DuckDB and hyparquet, tests/interop/check.mjs).
 */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[64];

static int setup(void **s)
{
    (void)s;
    snprintf(dir, sizeof dir, "/tmp/fruitnet-test-parquet-XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **s)
{
    (void)s;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* Deterministic test rows: row r has len(r) floats, including special values. */
static int row_len(int r, int mode) { return mode == 1 ? (r % 5 == 3 ? 0 : 1 + (r * 37) % 300) : 2048; }

static void row_values(int r, int n, float *v)
{
    tu_fill_random(v, (size_t)n, (uint64_t)r + 1, -10, 10);
    if (n > 4 && r % 2 == 0) {
        uint32_t bits[4] = {0x80000000u /* -0.0 */, 0x00000001u /* denormal */, 0x7f7fffffu /* max */,
                            0x7fc00001u /* NaN payload */};
        memcpy(v, bits, sizeof bits);
    }
}

static void row_path(int r, char *p, size_t n)
{
    if (r % 7 == 1)
        snprintf(p, n, "Äpfel/苹果 %d.jpg", r);
    else
        snprintf(p, n, "s3://bucket/fruits/Class %d/img_%05d.jpg", r % 13, r);
}

typedef struct pq_case {
    const char *file;
    int rows, mode, group;
    fn_codec codec;
} pq_case;

static const pq_case cases[] = {
    {"empty.parquet", 0, 0, 0, FN_CODEC_UNCOMPRESSED},   {"one.parquet", 1, 0, 0, FN_CODEC_GZIP},
    {"groups.parquet", 2500, 0, 1000, FN_CODEC_GZIP},    {"groups_plain.parquet", 700, 0, 256, FN_CODEC_UNCOMPRESSED},
    {"varlen.parquet", 300, 1, 64, FN_CODEC_GZIP},
};

static void write_case(const pq_case *c)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, c->file);
    fn_kv meta[] = {{"fruitnet.version", FRUITNET_VERSION}, {"case", c->file}, {"unicode", "✓ é"}};
    fn_parquet_options o = {.list_column = "features", .codec = c->codec, .rows_per_group = c->group,
                            .meta = meta, .nmeta = 3};
    fn_parquet_writer *w;
    fn_error e;
    unlink(path);
    assert_int_equal(fn_parquet_writer_open(path, &o, &w, &e), FN_OK);
    /* atomic: nothing at the final path until close */
    assert_int_not_equal(access(path, F_OK), 0);
    float *v = malloc(2048 * sizeof(float));
    for (int r = 0; r < c->rows; r++) {
        char p[128];
        int n = row_len(r, c->mode);
        row_path(r, p, sizeof p);
        row_values(r, n, v);
        assert_int_equal(fn_parquet_writer_add(w, p, r % 3 ? "Banana" : "Äpfel", v, n, &e), FN_OK);
    }
    assert_int_equal(fn_parquet_writer_set_meta(w, "late", "added before close", &e), FN_OK);
    assert_int_equal(fn_parquet_writer_close(w, &e), FN_OK);
    assert_int_equal(access(path, F_OK), 0);
    free(v);
}

static void check_case(const pq_case *c)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, c->file);
    fn_parquet_reader *r;
    fn_error e;
    if (fn_parquet_reader_open(path, &r, &e) != FN_OK)
        fail_msg("%s", e.msg);
    assert_int_equal(fn_parquet_reader_rows(r), c->rows);
    assert_string_equal(fn_parquet_reader_meta(r, "case"), c->file);
    assert_string_equal(fn_parquet_reader_meta(r, "unicode"), "✓ é");
    assert_string_equal(fn_parquet_reader_meta(r, "late"), "added before close");
    assert_null(fn_parquet_reader_meta(r, "missing"));
    float *v = malloc(2048 * sizeof(float));
    fn_parquet_row row;
    int n = 0, rc;
    while ((rc = fn_parquet_reader_next(r, &row, &e)) == 1) {
        char p[128];
        row_path(n, p, sizeof p);
        assert_string_equal(row.path, p);
        assert_string_equal(row.label, n % 3 ? "Banana" : "Äpfel");
        assert_int_equal(row.n, row_len(n, c->mode));
        row_values(n, row.n, v);
        assert_memory_equal(row.vec, v, (size_t)row.n * sizeof(float)); /* bit for bit, NaN payload too */
        n++;
    }
    assert_int_equal(rc, 0);
    assert_int_equal(n, c->rows);
    fn_parquet_reader_close(r);
    free(v);
}

static void test_round_trips(void **s)
{
    (void)s;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        write_case(&cases[i]);
        check_case(&cases[i]);
    }
}

static void test_abort_and_errors(void **s)
{
    (void)s;
    char path[256];
    snprintf(path, sizeof path, "%s/aborted.parquet", dir);
    fn_parquet_options o = {.list_column = "features"};
    fn_parquet_writer *w;
    fn_error e;
    assert_int_equal(fn_parquet_writer_open(path, &o, &w, &e), FN_OK);
    float v[3] = {1, 2, 3};
    assert_int_equal(fn_parquet_writer_add(w, "a", "b", v, 3, &e), FN_OK);
    fn_parquet_writer_abort(w);
    assert_int_not_equal(access(path, F_OK), 0);
    char **files;
    int nf;
    assert_int_equal(fn_parquet_dataset_files(dir, &files, &nf, &e), FN_OK);
    for (int i = 0; i < nf; i++) /* no temporary file left */
        assert_null(strstr(files[i], ".tmp"));
    fn_free_list(files, nf);
    /* unwritable place: a clear error naming the path */
    assert_int_equal(fn_parquet_writer_open("/nonexistent-dir/x.parquet", &o, &w, &e), FN_EIO);
    assert_non_null(strstr(e.msg, "/nonexistent-dir/x.parquet"));
    fn_parquet_options bad = {.list_column = "features", .codec = (fn_codec)1};
    assert_int_equal(fn_parquet_writer_open(path, &bad, &w, &e), FN_EUNSUPPORTED);
}

static void test_corrupt_files(void **s)
{
    (void)s;
    char src[256], bad[256];
    snprintf(src, sizeof src, "%s/one.parquet", dir);
    snprintf(bad, sizeof bad, "%s/bad.bin", dir);
    write_case(&cases[1]);
    size_t n;
    unsigned char *b = tu_read_file(src, &n);
    assert_non_null(b);
    fn_parquet_reader *r;
    fn_error e;
    /* every truncation: an error, never a crash */
    for (size_t cut = 0; cut < n; cut++) {
        FILE *f = fopen(bad, "wb");
        fwrite(b, 1, cut, f);
        fclose(f);
        int rc = fn_parquet_reader_open(bad, &r, &e);
        if (rc == FN_OK) { /* a cut that keeps a valid footer cannot exist: the footer is at the end */
            fn_parquet_reader_close(r);
            fail_msg("truncated file of %zu/%zu bytes was accepted", cut, n);
        }
        assert_non_null(strstr(e.msg, "bad.bin"));
    }
    /* a flipped byte inside the first data page: the page CRC catches it */
    unsigned char *c = malloc(n);
    memcpy(c, b, n);
    c[40] ^= 0x5a;
    FILE *f = fopen(bad, "wb");
    fwrite(c, 1, n, f);
    fclose(f);
    int rc = fn_parquet_reader_open(bad, &r, &e);
    if (rc == FN_OK) {
        fn_parquet_row row;
        rc = fn_parquet_reader_next(r, &row, &e);
        fn_parquet_reader_close(r);
    }
    assert_true(rc == FN_ECHECKSUM || rc == FN_EFORMAT);
    /* flipped bytes anywhere: never a crash */
    for (size_t i = 0; i < n; i += 3) {
        memcpy(c, b, n);
        c[i] ^= 0xff;
        f = fopen(bad, "wb");
        fwrite(c, 1, n, f);
        fclose(f);
        if (fn_parquet_reader_open(bad, &r, &e) == FN_OK) {
            fn_parquet_row row;
            while (fn_parquet_reader_next(r, &row, &e) == 1)
                ;
            fn_parquet_reader_close(r);
        }
    }
    /* bad magic */
    memcpy(c, b, n);
    memcpy(c, "PAR2", 4);
    f = fopen(bad, "wb");
    fwrite(c, 1, n, f);
    fclose(f);
    assert_int_equal(fn_parquet_reader_open(bad, &r, &e), FN_EFORMAT);
    assert_non_null(strstr(e.msg, "magic"));
    free(c);
    free(b);
}

/* Write every case plus expected values, then read them with DuckDB and hyparquet. */
static void test_interop(void **s)
{
    (void)s;
    if (system("node --version >/dev/null 2>&1") != 0 || access("tests/interop/node_modules", F_OK) != 0) {
        const char *req = getenv("FRUITNET_REQUIRE_DATA");
        if (req && !strcmp(req, "1"))
            fail_msg("node or tests/interop/node_modules missing (run `make interop-deps`)");
        print_message("[  SKIPPED ] node or tests/interop/node_modules missing\n");
        skip();
    }
    char p[300];
    snprintf(p, sizeof p, "%s/expected.json", dir);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fprintf(f, "[\n");
    float *v = malloc(2048 * sizeof(float));
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const pq_case *c = &cases[i];
        write_case(c);
        fprintf(f, "%s{\"file\": \"%s\", \"list\": \"features\", \"rows\": [", i ? "," : "", c->file);
        for (int r = 0; r < c->rows; r++) {
            char path[128];
            int n = row_len(r, c->mode);
            row_path(r, path, sizeof path);
            row_values(r, n, v);
            fprintf(f, "%s{\"path\": \"%s\", \"label\": \"%s\", \"bits\": [", r ? "," : "", path,
                    r % 3 ? "Banana" : "Äpfel");
            for (int j = 0; j < n; j++) {
                uint32_t b;
                memcpy(&b, &v[j], 4);
                fprintf(f, "%s%u", j ? "," : "", b);
            }
            fprintf(f, "]}");
        }
        fprintf(f, "]}\n");
    }
    fprintf(f, "]\n");
    fclose(f);
    free(v);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "node tests/interop/check.mjs '%s' > '%s/interop.log' 2>&1", dir, dir);
    int rc = system(cmd);
    snprintf(p, sizeof p, "%s/interop.log", dir);
    size_t n;
    char *log = tu_read_file(p, &n);
    if (log) {
        log = realloc(log, n + 1);
        log[n] = 0;
        print_message("%s", log);
        free(log);
    }
    assert_int_equal(rc, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trips),
        cmocka_unit_test(test_abort_and_errors),
        cmocka_unit_test(test_corrupt_files),
        cmocka_unit_test(test_interop),
    };
    return cmocka_run_group_tests_name("parquet", tests, setup, teardown);
}
