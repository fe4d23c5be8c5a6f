/*
 * test_parquet.c — the Parquet writer and reader: round trips (0 rows, 1 row,
 * several row groups, unicode, empty, special and >1 MiB float vectors, both
 * codecs), metadata, atomic writes, a full disk (RLIMIT_FSIZE), every
 * truncation, flipped bytes (page CRC), bad footer lengths and magic,
 * unsupported codecs/encodings/pages, hostile footers, dataset listing, and
 * interoperability with two independent readers (DuckDB and hyparquet,
 * tests/interop/check.mjs, every value compared bit for bit).
 */
#include "testutil.h"
#include "parquet.h" /* private constants */
#include "thrift.h"  /* private: only to locate fields in files and to build hostile footers */

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
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
    if (getenv("FRUITNET_KEEP_TEST_DIR")) { /* debugging: keep the files (and the interop cases) */
        printf("kept %s\n", dir);
        return 0;
    }
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* ---------------------------------------------------------------- test rows */

#define MAX_LEN 400000

/* mode 0: 2048 floats; 1: 0..300 floats (every 5th row empty); 2: big rows (> 1 MiB) and tiny ones;
 * 3: a few floats (every 3rd row empty) */
static int row_len(int r, int mode)
{
    static const int big[5] = {300000, 0, 1, MAX_LEN, 2048};
    switch (mode) {
    case 1: return r % 5 == 3 ? 0 : 1 + (r * 37) % 300;
    case 2: return big[r % 5];
    case 3: return r % 3 == 1 ? 0 : 9 + r;
    default: return 2048;
    }
}

static void row_values(int r, int n, float *v)
{
    tu_fill_random(v, (size_t)n, (uint64_t)r + 1, -10, 10);
    if (n > 8 && r % 2 == 0) {
        uint32_t bits[8] = {0x80000000u /* -0.0 */, 0x00000001u /* smallest denormal */, 0x007fffffu /* largest denormal */,
                            0x7f7fffffu /* FLT_MAX */, 0xff7fffffu /* -FLT_MAX */, 0x7fc00001u /* quiet NaN, payload */,
                            0xffc12345u /* negative NaN, payload */, 0x7f800000u /* +inf */};
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

static const char *row_label(int r) { return r % 3 ? "Banana" : r % 2 ? "Äpfel 🍎" : "Apple Braeburn"; }

typedef struct pq_case {
    const char *file;
    int rows, mode, group;
    fn_codec codec;
} pq_case;

static const pq_case cases[] = {
    {"empty.parquet", 0, 0, 0, FN_CODEC_UNCOMPRESSED},
    {"one.parquet", 1, 0, 0, FN_CODEC_GZIP},
    {"groups.parquet", 2500, 0, 1000, FN_CODEC_GZIP},
    {"groups_plain.parquet", 700, 0, 256, FN_CODEC_UNCOMPRESSED},
    {"varlen.parquet", 300, 1, 64, FN_CODEC_GZIP},
    {"bigrows.parquet", 10, 2, 4, FN_CODEC_UNCOMPRESSED},
    {"bigrows_gzip.parquet", 7, 2, 0, FN_CODEC_GZIP},
    {"tiny.parquet", 5, 3, 2, FN_CODEC_GZIP}, /* last: small enough for every truncation and every flip */
};
enum { NCASES = sizeof cases / sizeof cases[0] };

static void case_path(const pq_case *c, char *p, size_t n) { snprintf(p, n, "%s/%s", dir, c->file); }

static void write_case(const pq_case *c)
{
    char path[256];
    case_path(c, path, sizeof path);
    fn_kv meta[] = {{"fruitnet.version", FRUITNET_VERSION}, {"case", c->file}, {"unicode", "✓ é"}};
    fn_parquet_options o = {.list_column = "features", .codec = c->codec, .rows_per_group = c->group,
                            .meta = meta, .nmeta = 3};
    fn_parquet_writer *w;
    fn_error e;
    unlink(path);
    if (fn_parquet_writer_open(path, &o, &w, &e) != FN_OK)
        fail_msg("%s", e.msg);
    float *v = malloc(MAX_LEN * sizeof(float));
    for (int r = 0; r < c->rows; r++) {
        char p[128];
        int n = row_len(r, c->mode);
        row_path(r, p, sizeof p);
        row_values(r, n, v);
        if (fn_parquet_writer_add(w, p, row_label(r), v, n, &e) != FN_OK)
            fail_msg("%s", e.msg);
        /* atomic: nothing at the final path until close (even after row groups were written) */
        assert_int_not_equal(access(path, F_OK), 0);
    }
    assert_int_equal(fn_parquet_writer_set_meta(w, "late", "added before close", &e), FN_OK);
    assert_int_equal(fn_parquet_writer_set_meta(w, "case", c->file, &e), FN_OK); /* replaces, no duplicate */
    if (fn_parquet_writer_close(w, &e) != FN_OK)
        fail_msg("%s", e.msg);
    assert_int_equal(access(path, F_OK), 0);
    free(v);
}

static void check_case(const pq_case *c)
{
    char path[256];
    case_path(c, path, sizeof path);
    fn_parquet_reader *r;
    fn_error e;
    if (fn_parquet_reader_open(path, &r, &e) != FN_OK)
        fail_msg("%s", e.msg);
    assert_int_equal(fn_parquet_reader_rows(r), c->rows);
    assert_string_equal(fn_parquet_reader_meta(r, "case"), c->file);
    assert_string_equal(fn_parquet_reader_meta(r, "unicode"), "✓ é");
    assert_string_equal(fn_parquet_reader_meta(r, "late"), "added before close");
    assert_string_equal(fn_parquet_reader_meta(r, "fruitnet.version"), FRUITNET_VERSION);
    assert_null(fn_parquet_reader_meta(r, "missing"));
    float *v = malloc(MAX_LEN * sizeof(float));
    fn_parquet_row row;
    int n = 0, rc;
    while ((rc = fn_parquet_reader_next(r, &row, &e)) == 1) {
        char p[128];
        row_path(n, p, sizeof p);
        assert_string_equal(row.path, p);
        assert_string_equal(row.label, row_label(n));
        assert_int_equal(row.n, row_len(n, c->mode));
        row_values(n, row.n, v);
        if (row.n)
            assert_memory_equal(row.vec, v, (size_t)row.n * sizeof(float)); /* bit for bit, NaN payloads too */
        n++;
    }
    if (rc)
        fail_msg("%s", e.msg);
    assert_int_equal(n, c->rows);
    assert_int_equal(fn_parquet_reader_next(r, &row, &e), 0); /* stays at the end */
    fn_parquet_reader_close(r);
    free(v);
}

static void test_round_trips(void **s)
{
    (void)s;
    for (int i = 0; i < NCASES; i++) {
        write_case(&cases[i]);
        check_case(&cases[i]);
    }
}

/* ---------------------------------------------------------------- helpers on files */

static unsigned char *load(const char *path, size_t *n)
{
    unsigned char *b = tu_read_file(path, n);
    assert_non_null(b);
    return b;
}

static void save(const char *path, const void *b, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

/* Open and read every row: the first error code, or FN_OK. */
static int read_all(const char *path, fn_error *e)
{
    fn_parquet_reader *r;
    int rc = fn_parquet_reader_open(path, &r, e);
    if (rc)
        return rc;
    fn_parquet_row row;
    while ((rc = fn_parquet_reader_next(r, &row, e)) == 1)
        ;
    fn_parquet_reader_close(r);
    return rc;
}

/* The first page header at offset 4: its length, the body length, and where
 * the DataPageHeader's encoding value sits (located with the Thrift reader). */
static void first_page(const unsigned char *b, size_t n, size_t *hdr, size_t *body, size_t *type_at, size_t *enc_at)
{
    trd t = {b + 4, b + n, 0, 0};
    int16_t last = 0, id;
    int ty;
    int64_t csize = -1;
    while (tr_field(&t, &last, &id, &ty)) {
        if (id == 1) {
            *type_at = (size_t)(t.p - b);
            tr_zz(&t);
        } else if (id == 3) {
            csize = tr_zz(&t);
        } else if (id == 5 && ty == TT_STRUCT) {
            int16_t l2 = 0, i2;
            int t2;
            while (tr_field(&t, &l2, &i2, &t2)) {
                if (i2 == 2)
                    *enc_at = (size_t)(t.p - b);
                tr_skip(&t, t2);
            }
        } else {
            tr_skip(&t, ty);
        }
    }
    assert_false(t.err);
    *hdr = (size_t)(t.p - (b + 4));
    *body = (size_t)csize;
}

/* ---------------------------------------------------------------- writer errors */

static void test_abort_and_errors(void **s)
{
    (void)s;
    char path[256];
    snprintf(path, sizeof path, "%s/aborted.parquet", dir);
    fn_parquet_options o = {.list_column = "features", .rows_per_group = 2};
    fn_parquet_writer *w;
    fn_error e;
    assert_int_equal(fn_parquet_writer_open(path, &o, &w, &e), FN_OK);
    float v[3] = {1, 2, 3};
    for (int i = 0; i < 5; i++) /* two row groups already in the temporary file */
        assert_int_equal(fn_parquet_writer_add(w, "a", "b", v, 3, &e), FN_OK);
    /* invalid UTF-8 (Parquet STRING): refused, naming the file */
    assert_int_equal(fn_parquet_writer_add(w, "bad\xff.jpg", "b", v, 3, &e), FN_EARG);
    assert_non_null(strstr(e.msg, "aborted.parquet"));
    assert_int_equal(fn_parquet_writer_add(w, "overlong\xc0\xaf", "b", v, 3, &e), FN_EARG);
    assert_int_equal(fn_parquet_writer_add(w, "a", "b", NULL, 3, &e), FN_EARG);
    fn_parquet_writer_abort(w);
    assert_int_not_equal(access(path, F_OK), 0);
    /* nothing else left in the folder: no temporary file */
    char cmd[256];
    snprintf(cmd, sizeof cmd, "test -z \"$(ls -A '%s' | grep tmp)\"", dir);
    assert_int_equal(system(cmd), 0);
    /* unwritable place: a clear error naming the path */
    assert_int_equal(fn_parquet_writer_open("/nonexistent-dir/x.parquet", &o, &w, &e), FN_EIO);
    assert_non_null(strstr(e.msg, "/nonexistent-dir/x.parquet"));
    fn_parquet_options bad = {.list_column = "features", .codec = (fn_codec)1};
    assert_int_equal(fn_parquet_writer_open(path, &bad, &w, &e), FN_EUNSUPPORTED);
    fn_parquet_options clash = {.list_column = "label"};
    assert_int_equal(fn_parquet_writer_open(path, &clash, &w, &e), FN_EARG);
    fn_parquet_options neg = {.list_column = "pcs", .rows_per_group = -1};
    assert_int_equal(fn_parquet_writer_open(path, &neg, &w, &e), FN_EARG);
    assert_int_not_equal(access(path, F_OK), 0);
}

/* A full disk, simulated with RLIMIT_FSIZE in a child: FN_EIO naming the file,
 * never a short file at the final path, no temporary file left. */
static void test_full_disk(void **s)
{
    (void)s;
    char path[256];
    snprintf(path, sizeof path, "%s/full/x.parquet", dir);
    char sub[200];
    snprintf(sub, sizeof sub, "%s/full", dir);
    assert_int_equal(mkdir(sub, 0755), 0);
    for (int at_close = 0; at_close < 2; at_close++) {
        fflush(NULL);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            signal(SIGXFSZ, SIG_IGN);
            struct rlimit rl = {64 * 1024, 64 * 1024};
            if (setrlimit(RLIMIT_FSIZE, &rl))
                _exit(10);
            fn_parquet_options o = {.list_column = "features", .rows_per_group = at_close ? 100000 : 16};
            fn_parquet_writer *w;
            fn_error e;
            if (fn_parquet_writer_open(path, &o, &w, &e))
                _exit(11);
            static float v[2048];
            int rc = FN_OK;
            for (int i = 0; i < 100 && !rc; i++) /* 800 KB of floats */
                rc = fn_parquet_writer_add(w, "p", "l", v, 2048, &e);
            if (at_close && rc)
                _exit(12); /* everything buffered: the failure must come at close */
            if (rc) {
                if (rc != FN_EIO || !strstr(e.msg, "x.parquet") || !strstr(e.msg, "large"))
                    _exit(13);
                if (fn_parquet_writer_add(w, "p", "l", v, 2048, &e) != FN_EIO) /* stays failed */
                    _exit(14);
            }
            rc = fn_parquet_writer_close(w, &e);
            if (rc != FN_EIO || !strstr(e.msg, "x.parquet"))
                _exit(15);
            _exit(0);
        }
        int st;
        assert_int_equal(waitpid(pid, &st, 0), pid);
        assert_true(WIFEXITED(st));
        assert_int_equal(WEXITSTATUS(st), 0);
        assert_int_not_equal(access(path, F_OK), 0);
        char cmd[256];
        snprintf(cmd, sizeof cmd, "test -z \"$(ls -A '%s')\"", sub);
        assert_int_equal(system(cmd), 0); /* no temporary file left */
    }
}

/* ---------------------------------------------------------------- reader errors */

static void test_truncations_and_flips(void **s)
{
    (void)s;
    char src[256], bad[256];
    const pq_case *tiny = &cases[NCASES - 1];
    case_path(tiny, src, sizeof src);
    snprintf(bad, sizeof bad, "%s/bad.bin", dir);
    write_case(tiny);
    size_t n;
    unsigned char *b = load(src, &n);
    fn_error e;
    /* every truncation: an error naming the file, never a crash */
    for (size_t cut = 0; cut < n; cut++) {
        save(bad, b, cut);
        int rc = read_all(bad, &e);
        if (rc == FN_OK)
            fail_msg("truncated file of %zu/%zu bytes was accepted", cut, n);
        assert_true(rc == FN_EFORMAT || rc == FN_EIO);
        assert_non_null(strstr(e.msg, "bad.bin"));
    }
    unsigned char *c = malloc(n);
    /* a flipped byte inside a page body: the page CRC catches it (GZIP and UNCOMPRESSED) */
    for (int k = 1; k <= 3; k += 2) {
        unsigned char *f = k == 1 ? b : NULL;
        size_t fn = n;
        if (k == 3) {
            char p[256];
            write_case(&cases[3]);
            case_path(&cases[3], p, sizeof p);
            f = load(p, &fn);
        }
        size_t hdr, body, tat = 0, eat = 0;
        first_page(f, fn, &hdr, &body, &tat, &eat);
        unsigned char *g = malloc(fn);
        for (size_t at = 4 + hdr; at < 4 + hdr + body; at += body / 7 + 1) {
            memcpy(g, f, fn);
            g[at] ^= 0x10;
            save(bad, g, fn);
            assert_int_equal(read_all(bad, &e), FN_ECHECKSUM);
            assert_non_null(strstr(e.msg, "bad.bin"));
            assert_non_null(strstr(e.msg, "CRC"));
        }
        free(g);
        if (f != b)
            free(f);
    }
    /* flipped bytes anywhere: an error or (flip in unchecked metadata) a file that still reads, never a crash */
    for (size_t i = 0; i < n; i++) {
        memcpy(c, b, n);
        c[i] ^= 0xff;
        save(bad, c, n);
        read_all(bad, &e);
    }
    /* bad magic at either end */
    memcpy(c, b, n);
    memcpy(c, "PAR2", 4);
    save(bad, c, n);
    assert_int_equal(read_all(bad, &e), FN_EFORMAT);
    assert_non_null(strstr(e.msg, "magic"));
    memcpy(c, b, n);
    memcpy(c + n - 4, "PAR0", 4);
    save(bad, c, n);
    assert_int_equal(read_all(bad, &e), FN_EFORMAT);
    assert_non_null(strstr(e.msg, "magic"));
    /* corrupted footer length: 0, larger than the file, huge */
    uint32_t lens[] = {0, (uint32_t)n - 8, (uint32_t)n, 0x7fffffffu, 0xffffffffu};
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        memcpy(c, b, n);
        for (int k = 0; k < 4; k++)
            c[n - 8 + k] = (unsigned char)(lens[i] >> (8 * k));
        save(bad, c, n);
        assert_int_equal(read_all(bad, &e), FN_EFORMAT);
        assert_non_null(strstr(e.msg, "footer length"));
        assert_non_null(strstr(e.msg, "bad.bin"));
    }
    /* a footer length one or a few bytes off: an error, never a crash */
    uint32_t flen = (uint32_t)b[n - 8] | (uint32_t)b[n - 7] << 8 | (uint32_t)b[n - 6] << 16 | (uint32_t)b[n - 5] << 24;
    for (int d = -3; d <= 3; d++) {
        if (!d)
            continue;
        memcpy(c, b, n);
        uint32_t l = flen + (uint32_t)d;
        for (int k = 0; k < 4; k++)
            c[n - 8 + k] = (unsigned char)(l >> (8 * k));
        save(bad, c, n);
        assert_int_not_equal(read_all(bad, &e), FN_OK);
    }
    free(c);
    free(b);
}

/* Patch a field in a valid file: the reader refuses with FN_EUNSUPPORTED naming the feature and the file. */
static void test_unsupported(void **s)
{
    (void)s;
    char src[256], bad[256];
    case_path(&cases[2], src, sizeof src); /* GZIP, several row groups */
    write_case(&cases[2]);
    snprintf(bad, sizeof bad, "%s/unsupported.parquet", dir);
    size_t n;
    unsigned char *b = load(src, &n);
    unsigned char *c = malloc(n);
    uint32_t flen = (uint32_t)b[n - 8] | (uint32_t)b[n - 7] << 8 | (uint32_t)b[n - 6] << 16 | (uint32_t)b[n - 5] << 24;
    size_t f0 = n - 8 - flen;
    fn_error e;
    /* codec: ColumnMetaData field 4 (i32 GZIP = zigzag 4) followed by field 5 (i64) */
    struct { int zz; const char *name; } codecs[] = {{2, "SNAPPY"}, {12, "ZSTD"}, {8, "BROTLI"}, {10, "LZ4"}};
    for (size_t k = 0; k < sizeof codecs / sizeof codecs[0]; k++) {
        memcpy(c, b, n);
        int patched = 0;
        for (size_t i = f0; i + 2 < n - 8; i++)
            if (c[i] == 0x15 && c[i + 1] == 0x04 && c[i + 2] == 0x16)
                c[i + 1] = (unsigned char)codecs[k].zz, patched++;
        assert_int_equal(patched, 3 * 3); /* 3 row groups x 3 columns */
        save(bad, c, n);
        fn_parquet_reader *r;
        assert_int_equal(fn_parquet_reader_open(bad, &r, &e), FN_EUNSUPPORTED);
        assert_non_null(strstr(e.msg, codecs[k].name));
        assert_non_null(strstr(e.msg, "unsupported.parquet"));
    }
    /* first page turned into a dictionary page, and its values into RLE_DICTIONARY */
    size_t hdr, body, tat = 0, eat = 0;
    first_page(b, n, &hdr, &body, &tat, &eat);
    assert_int_equal(b[tat], 0);
    assert_int_equal(b[eat], 0);
    memcpy(c, b, n);
    c[tat] = 4; /* zigzag(2) = DICTIONARY_PAGE */
    save(bad, c, n);
    assert_int_equal(read_all(bad, &e), FN_EUNSUPPORTED);
    assert_non_null(strstr(e.msg, "dictionary"));
    memcpy(c, b, n);
    c[eat] = 16; /* zigzag(8) = RLE_DICTIONARY */
    save(bad, c, n);
    assert_int_equal(read_all(bad, &e), FN_EUNSUPPORTED);
    assert_non_null(strstr(e.msg, "RLE_DICTIONARY"));
    assert_non_null(strstr(e.msg, "unsupported.parquet"));
    free(c);
    free(b);
}

/* Footers built by hand: duplicated fields, absurd counts and offsets, deep nesting. */
static void write_footer_file(const char *path, const tbuf *t)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fwrite("PAR1", 1, 4, f);
    fwrite(t->p, 1, t->n, f);
    unsigned char tail[8] = {(unsigned char)t->n, (unsigned char)(t->n >> 8), (unsigned char)(t->n >> 16),
                             (unsigned char)(t->n >> 24), 'P', 'A', 'R', '1'};
    fwrite(tail, 1, 8, f);
    fclose(f);
}

static void schema(tbuf *t, int n)
{
    tb_list(t, 2, TT_STRUCT, (uint32_t)n);
    for (int i = 0; i < n; i++) {
        tb_elem_struct_begin(t);
        tb_i32(t, 1, PQ_FLOAT);
        tb_str(t, 4, "x");
        tb_struct_end(t);
    }
}

static void test_hostile_footers(void **s)
{
    (void)s;
    char bad[256];
    snprintf(bad, sizeof bad, "%s/hostile.parquet", dir);
    fn_error e;
    for (int k = 0; k < 7; k++) {
        tbuf t = {0};
        tb_i32(&t, 1, 1);
        switch (k) {
        case 0: /* schema list twice, 64 elements each (more than the reader's schema table) */
            schema(&t, 64);
            schema(&t, 64);
            break;
        case 1: /* row_groups twice */
            schema(&t, 4);
            tb_i64(&t, 3, 0);
            tb_list(&t, 4, TT_STRUCT, 0);
            tb_list(&t, 4, TT_STRUCT, 0);
            break;
        case 2: /* key/value list twice */
            tb_list(&t, 5, TT_STRUCT, 1);
            tb_elem_struct_begin(&t);
            tb_str(&t, 1, "k");
            tb_struct_end(&t);
            tb_list(&t, 5, TT_STRUCT, 1);
            tb_elem_struct_begin(&t);
            tb_str(&t, 1, "k");
            tb_struct_end(&t);
            break;
        case 3: /* a list claiming 2^31 elements */
            tb_field(&t, 2, TT_LIST);
            tb_list_begin(&t, TT_STRUCT, 0x7fffffffu);
            break;
        case 4: /* binary longer than the footer */
            tb_field(&t, 6, TT_BINARY);
            tb_varint(&t, 1u << 30);
            break;
        case 5: /* nesting deeper than any real footer: unknown struct fields inside each other */
            for (int d = 0; d < 200; d++)
                tb_field(&t, 20, TT_STRUCT), t.last[t.depth] = 0;
            break;
        case 6: /* missing schema / row groups */
            tb_i64(&t, 3, 5);
            break;
        }
        tb_bytes(&t, "", 1); /* STOP */
        write_footer_file(bad, &t);
        tb_free(&t);
        fn_parquet_reader *r = NULL;
        int rc = fn_parquet_reader_open(bad, &r, &e);
        if (rc == FN_OK) {
            fn_parquet_reader_close(r);
            fail_msg("hostile footer %d accepted", k);
        }
        assert_true(rc == FN_EFORMAT || rc == FN_EUNSUPPORTED);
        assert_non_null(strstr(e.msg, "hostile.parquet"));
    }
}

/* ---------------------------------------------------------------- datasets */

static void touch(const char *d, const char *name)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", d, name);
    save(p, "x", 1);
}

static void test_dataset_files(void **s)
{
    (void)s;
    char d[256];
    snprintf(d, sizeof d, "%s/dataset.parquet", dir);
    assert_int_equal(mkdir(d, 0755), 0);
    const char *names[] = {"part-00002.parquet", "part-00000.parquet", "_SUCCESS", "_common_metadata.parquet",
                           ".part-00003.parquet.tmp.12.AbCdEf", "part-00004.parquet.tmp.99", ".hidden.parquet",
                           "notes.txt", "part-00001.parquet", "part-00005.parquet.crc"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        touch(d, names[i]);
    char **files;
    int nf;
    fn_error e;
    assert_int_equal(fn_parquet_dataset_files(d, &files, &nf, &e), FN_OK);
    assert_int_equal(nf, 3);
    for (int i = 0; i < nf; i++) {
        char want[300];
        snprintf(want, sizeof want, "%s/part-%05d.parquet", d, i);
        assert_string_equal(files[i], want);
    }
    fn_free_list(files, nf);
    /* a file is itself */
    char f[300];
    snprintf(f, sizeof f, "%s/part-00001.parquet", d);
    assert_int_equal(fn_parquet_dataset_files(f, &files, &nf, &e), FN_OK);
    assert_int_equal(nf, 1);
    assert_string_equal(files[0], f);
    fn_free_list(files, nf);
    /* missing: an error naming it */
    snprintf(f, sizeof f, "%s/missing.parquet", dir);
    assert_int_equal(fn_parquet_dataset_files(f, &files, &nf, &e), FN_EIO);
    assert_non_null(strstr(e.msg, "missing.parquet"));
}

/* ---------------------------------------------------------------- interoperability */

/* Write every case with expected values: expected.json (paths, labels,
 * lengths, metadata, row-group size) and <file>.f32 (all floats, raw), then
 * read them with DuckDB and hyparquet (tests/interop/check.mjs). */
static void test_interop(void **s)
{
    (void)s;
    if (system("node --version >/dev/null 2>&1") != 0 || access("tests/interop/node_modules/.installed", F_OK) != 0) {
        const char *req = getenv("FRUITNET_REQUIRE_DATA");
        if (req && !strcmp(req, "1"))
            fail_msg("node or tests/interop/node_modules missing (run `make interop-deps`)");
        print_message("[  SKIPPED ] node or tests/interop/node_modules missing (make interop-deps)\n");
        skip();
    }
    char p[300];
    snprintf(p, sizeof p, "%s/expected.json", dir);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fprintf(f, "[\n");
    float *v = malloc(MAX_LEN * sizeof(float));
    for (int i = 0; i < NCASES; i++) {
        const pq_case *c = &cases[i];
        write_case(c);
        snprintf(p, sizeof p, "%s/%s.f32", dir, c->file);
        FILE *fv = fopen(p, "wb");
        assert_non_null(fv);
        fprintf(f, "%s{\"file\": \"%s\", \"list\": \"features\", \"codec\": \"%s\", \"group\": %d,\n", i ? "," : "",
                c->file, c->codec == FN_CODEC_GZIP ? "GZIP" : "UNCOMPRESSED", c->group ? c->group : 1024);
        fprintf(f, " \"meta\": {\"fruitnet.version\": \"%s\", \"case\": \"%s\", \"unicode\": \"✓ é\", "
                   "\"late\": \"added before close\"},\n \"rows\": [",
                FRUITNET_VERSION, c->file);
        for (int r = 0; r < c->rows; r++) {
            char path[128];
            int n = row_len(r, c->mode);
            row_path(r, path, sizeof path);
            row_values(r, n, v);
            fprintf(f, "%s{\"path\": \"%s\", \"label\": \"%s\", \"n\": %d}", r ? ",\n  " : "", path, row_label(r), n);
            assert_int_equal(fwrite(v, sizeof(float), (size_t)n, fv), (size_t)n);
        }
        fprintf(f, "]}\n");
        assert_int_equal(fclose(fv), 0);
    }
    fprintf(f, "]\n");
    assert_int_equal(fclose(f), 0);
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
        fputs(log, stdout); /* print_message() truncates long text */
        fflush(stdout);
        free(log);
    }
    assert_int_equal(rc, 0);
}

/* Extra scalar columns (fn_parquet_options.extra, fn_parquet_writer_add_ex): written after the list column,
 * skipped by fruitnet's reader (same rows), named in the footer; misuse is refused with a clear message. */
static void test_extra_columns(void **state)
{
    (void)state;
    char path[] = "/tmp/fn_pq_extra_XXXXXX";
    close(mkstemp(path));
    fn_parquet_column cols[] = {{"prediction", FN_PQ_STRING}, {"probability", FN_PQ_FLOAT}};
    fn_parquet_options o = {.list_column = "features", .codec = FN_CODEC_GZIP, .rows_per_group = 3,
                            .extra = cols, .nextra = 2};
    fn_parquet_writer *w;
    fn_error e;
    assert_int_equal(fn_parquet_writer_open(path, &o, &w, &e), FN_OK);
    float v[4] = {1, 2, 3, 4};
    assert_int_equal(fn_parquet_writer_add(w, "a.jpg", "A", v, 4, &e), FN_EARG);
    assert_non_null(strstr(e.msg, "2 extra columns"));
    fn_parquet_value bad[2] = {{"\xff", 0}, {NULL, 0.5f}};
    assert_int_equal(fn_parquet_writer_add_ex(w, "a.jpg", "A", v, 4, bad, &e), FN_EARG);
    assert_non_null(strstr(e.msg, "prediction"));
    for (int r = 0; r < 7; r++) {
        fn_parquet_value xv[2] = {{r % 2 ? "Banana" : "Apple", 0}, {NULL, r / 8.0f}};
        v[0] = (float)r;
        assert_int_equal(fn_parquet_writer_add_ex(w, r % 2 ? "b.jpg" : "a.jpg", "L", v, 4, xv, &e), FN_OK);
    }
    assert_int_equal(fn_parquet_writer_close(w, &e), FN_OK);
    fn_parquet_reader *r;
    assert_int_equal(fn_parquet_reader_open(path, &r, &e), FN_OK);
    assert_int_equal(fn_parquet_reader_rows(r), 7);
    fn_parquet_row row;
    int n = 0;
    while (fn_parquet_reader_next(r, &row, &e) == 1) {
        assert_int_equal(row.n, 4);
        assert_true(row.vec[0] == (float)n && row.vec[3] == 4);
        assert_string_equal(row.path, n % 2 ? "b.jpg" : "a.jpg");
        n++;
    }
    assert_int_equal(n, 7);
    fn_parquet_reader_close(r);
    size_t len;
    unsigned char *b = tu_read_file(path, &len);
    assert_non_null(memmem(b, len, "probability", 11));
    assert_non_null(memmem(b, len, "prediction", 10));
    free(b);
    unlink(path);
    fn_parquet_column dup[] = {{"prediction", FN_PQ_STRING}, {"prediction", FN_PQ_FLOAT}};
    o.extra = dup;
    assert_int_equal(fn_parquet_writer_open(path, &o, &w, &e), FN_EARG);
    assert_non_null(strstr(e.msg, "duplicate"));
    fn_parquet_column clash[] = {{"features", FN_PQ_FLOAT}};
    o.extra = clash, o.nextra = 1;
    assert_int_equal(fn_parquet_writer_open(path, &o, &w, &e), FN_EARG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trips),
        cmocka_unit_test(test_abort_and_errors),
        cmocka_unit_test(test_full_disk),
        cmocka_unit_test(test_truncations_and_flips),
        cmocka_unit_test(test_unsupported),
        cmocka_unit_test(test_hostile_footers),
        cmocka_unit_test(test_dataset_files),
        cmocka_unit_test(test_extra_columns),
        cmocka_unit_test(test_interop),
    };
    return cmocka_run_group_tests_name("parquet", tests, setup, teardown);
}
