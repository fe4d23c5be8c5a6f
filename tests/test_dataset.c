/*
 * test_dataset.c — the dataset layer through its C API: path escaping, input
 * listing (normalisation, identity, labels, shards, FIFOs, deep paths), the
 * atomic writer's refusals, the checked reader, and the pipeline on paths and
 * on in-memory buffers.
 */
#include "testutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

static char tmp[256], mini[4096];

static int setup(void **s)
{
    (void)s;
    if (!tu_mkdtemp(tmp, sizeof tmp, "dataset") || !realpath("tests/data/fruits-360-mini/images", mini))
        return -1;
    return 0;
}

static int teardown(void **s)
{
    (void)s;
    return tu_rm_rf(tmp);
}

/* Every byte value, valid and invalid UTF-8: escaped text is valid UTF-8 without %-ambiguity, tabs or
 * newlines, and unescapes to the same bytes. */
static void test_escape_round_trip(void **s)
{
    (void)s;
    char raw[600], esc[2000], back[600];
    int n = 0;
    for (int b = 1; b < 256; b++)
        raw[n++] = (char)b;
    const char *extra = "\xc3\xa9|\xe2\x82\xac|\xf0\x9f\x8d\x8c|\xc0\xaf|\xed\xa0\x80|\xf4\x90\x80\x80|\xe2\x82";
    n += snprintf(raw + n, sizeof raw - (size_t)n, "%s", extra);
    size_t need = fn_escape_path(raw, NULL, 0);
    assert_true(need < sizeof esc);
    assert_int_equal(fn_escape_path(raw, esc, sizeof esc), need);
    assert_null(strchr(esc, '\t'));
    assert_null(strchr(esc, '\n'));
    assert_null(strchr(esc, '\r'));
    assert_null(strchr(esc, '\\'));
    /* valid sequences stay, invalid bytes (overlong, surrogate, > U+10FFFF, cut) are escaped */
    assert_non_null(strstr(esc, "\xc3\xa9|\xe2\x82\xac|\xf0\x9f\x8d\x8c|%C0%AF|%ED%A0%80|%F4%90%80%80|%E2%82"));
    assert_non_null(strstr(esc, "%25"));
    assert_non_null(strstr(esc, "%09%0A%0B%0C%0D"));
    assert_non_null(strstr(esc, "%5C"));
    assert_non_null(strstr(esc, "%7F"));
    assert_int_equal(fn_unescape_path(esc, back, sizeof back), (size_t)n);
    assert_memory_equal(back, raw, (size_t)n + 1);
    /* plain names are unchanged; truncation still terminates and reports the full length */
    char small[8];
    assert_int_equal(fn_escape_path("Banana/108_100.jpg", esc, sizeof esc), 18);
    assert_string_equal(esc, "Banana/108_100.jpg");
    assert_int_equal(fn_escape_path("Banana/108_100.jpg", small, sizeof small), 18);
    assert_string_equal(small, "Banana/");
    assert_int_equal(fn_unescape_path("100%zz%4", back, sizeof back), 8); /* not escapes: kept */
    assert_string_equal(back, "100%zz%4");
}

typedef struct skips {
    int errors, dups;
    char last[1024];
} skips;

static void on_skip(void *ctx, const char *path, const char *reason, int is_error)
{
    skips *k = ctx;
    is_error ? k->errors++ : k->dups++;
    snprintf(k->last, sizeof k->last, "%s: %s", path, reason);
}

static int find(const fn_inputs *in, const char *path)
{
    for (size_t i = 0; i < fn_inputs_count(in); i++)
        if (!strcmp(fn_inputs_path(in, i), path))
            return (int)i;
    return -1;
}

/* Normalised spellings, one entry per file, labels from real folder names, FIFOs reported not opened. */
static void test_inputs_listing(void **s)
{
    (void)s;
    char d[512], cwd[4096];
    snprintf(d, sizeof d, "%s/list/Kiwi", tmp);
    mkdir(tu_path(tmp, "list"), 0777);
    mkdir(d, 0777);
    tu_write(tu_path(d, "a.jpg"), "x", 1);
    tu_write(tu_path(d, "b.PNG"), "y", 1);
    tu_write(tu_path(d, "notes.txt"), "z", 1);
    tu_write(tu_path(d, ".hidden.jpg"), "z", 1);
    assert_int_equal(mkfifo(tu_path(d, "pipe.jpg"), 0600), 0); /* opening it blocking would hang */
    assert_non_null(getcwd(cwd, sizeof cwd));
    assert_int_equal(chdir(tu_path(tmp, "list")), 0);
    fn_inputs *in;
    fn_error e;
    skips k = {0};
    assert_int_equal(fn_inputs_new(&in, &e), FN_OK);
    assert_int_equal(fn_inputs_add(in, "Kiwi//a.jpg", on_skip, &k, &e), FN_OK);
    assert_int_equal(fn_inputs_add(in, "./Kiwi/./a.jpg", on_skip, &k, &e), FN_OK);
    assert_int_equal(fn_inputs_add(in, "Kiwi/", on_skip, &k, &e), FN_OK);
    assert_int_equal(fn_inputs_add(in, "missing.jpg", on_skip, &k, &e), FN_OK);
    const char *list = "# comment\n\nKiwi/b.PNG\r\nKiwi\n";
    assert_int_equal(fn_inputs_add_list_memory(in, list, strlen(list), "mem", on_skip, &k, &e), FN_OK);
    assert_int_equal(chdir("Kiwi"), 0);
    assert_int_equal(fn_inputs_add(in, ".", on_skip, &k, &e), FN_OK); /* a.jpg, b.PNG again, as "a.jpg" */
    assert_int_equal(fn_inputs_finish(in, 1, 1, on_skip, &k, &e), FN_OK);
    assert_int_equal(chdir(cwd), 0);
    /* pipe.jpg (x2 walks), missing.jpg, the folder in the list */
    assert_int_equal(k.errors, 4);
    assert_int_equal(fn_inputs_count(in), 2);
    int a = find(in, "Kiwi/a.jpg"), b = find(in, "Kiwi/b.PNG");
    assert_true(a >= 0 && b >= 0);
    assert_string_equal(fn_inputs_label(in, (size_t)a), "Kiwi");
    assert_string_equal(fn_inputs_label(in, (size_t)b), "Kiwi");
    assert_int_equal(fn_inputs_size(in, (size_t)a), 1);
    assert_true(fn_inputs_mtime_ns(in, (size_t)a) > 0);
    assert_int_equal(k.dups, 5); /* Kiwi//a, ./Kiwi/./a (same text), walk's a and b, "." walk's a and b */
    fn_inputs_free(in);
    /* a folder where "." is the only name: the label is the real folder name */
    assert_int_equal(chdir(d), 0);
    assert_int_equal(fn_inputs_new(&in, &e), FN_OK);
    assert_int_equal(fn_inputs_add(in, "./a.jpg", NULL, NULL, &e), FN_OK);
    assert_int_equal(fn_inputs_add(in, "../Kiwi/b.PNG", NULL, NULL, &e), FN_OK);
    assert_int_equal(fn_inputs_finish(in, 0, 0, NULL, NULL, &e), FN_OK);
    assert_int_equal(chdir(cwd), 0);
    assert_int_equal(fn_inputs_count(in), 2);
    assert_string_equal(fn_inputs_path(in, 0), "../Kiwi/b.PNG");
    assert_string_equal(fn_inputs_path(in, 1), "a.jpg");
    assert_string_equal(fn_inputs_label(in, 0), "Kiwi");
    assert_string_equal(fn_inputs_label(in, 1), "Kiwi");
    fn_inputs_free(in);
}

/* Shards are disjoint and cover everything; a listing failure goes to exactly one shard. */
static void test_inputs_shards(void **s)
{
    (void)s;
    size_t total = 0, n1 = 0;
    for (int k = 1; k <= 3; k++) {
        fn_inputs *in;
        fn_error e;
        assert_int_equal(fn_inputs_new(&in, &e), FN_OK);
        assert_int_equal(fn_inputs_add(in, mini, NULL, NULL, &e), FN_OK);
        assert_int_equal(fn_inputs_finish(in, k, 3, NULL, NULL, &e), FN_OK);
        total += fn_inputs_count(in);
        for (size_t i = 0; i < fn_inputs_count(in); i++)
            assert_non_null(strstr(fn_inputs_path(in, i), mini));
        n1 += fn_inputs_count(in) > 0;
        fn_inputs_free(in);
    }
    assert_int_equal(total, 24);
    assert_true(n1 >= 2);
    fn_inputs *in;
    fn_error e;
    assert_int_equal(fn_inputs_new(&in, &e), FN_OK);
    assert_int_equal(fn_inputs_finish(in, 4, 3, NULL, NULL, &e), FN_EARG);
    assert_non_null(strstr(e.msg, "4/3"));
    fn_inputs_free(in);
}

typedef struct cap {
    float *f;
    int calls;
} cap;
static int row(void *ctx, size_t i, const float *f, const char *error, fn_error *err)
{
    cap *c = ctx;
    (void)i, (void)err;
    if (!f)
        fail_msg("unexpected failure: %s", error);
    memcpy(c->f, f, 2048 * sizeof(float));
    c->calls++;
    return FN_OK;
}

/* A folder chain longer than PATH_MAX is listed and its image decoded. */
static void test_deep_path(void **s)
{
    (void)s;
    const char *w = tu_weights_path();
    TU_REQUIRE(w);
    char top[512];
    snprintf(top, sizeof top, "%s/deep", tmp);
    assert_int_equal(mkdir(top, 0777), 0);
    int fd = open(top, O_RDONLY | O_DIRECTORY);
    char name[201];
    memset(name, 'p', 200);
    name[200] = 0;
    for (int i = 0; i < 22; i++) {
        name[0] = (char)('a' + i);
        assert_int_equal(mkdirat(fd, name, 0777), 0);
        int nfd = openat(fd, name, O_RDONLY | O_DIRECTORY);
        close(fd);
        fd = nfd;
    }
    size_t n;
    unsigned char *jpg = tu_read_file(tu_path(mini, "Banana/108_100.jpg"), &n);
    assert_non_null(jpg);
    int ffd = openat(fd, "deep.jpg", O_WRONLY | O_CREAT, 0644);
    assert_int_equal(write(ffd, jpg, n), (ssize_t)n);
    close(ffd);
    close(fd);
    fn_inputs *in;
    fn_error e;
    skips k = {0};
    assert_int_equal(fn_inputs_new(&in, &e), FN_OK);
    assert_int_equal(fn_inputs_add(in, top, on_skip, &k, &e), FN_OK);
    assert_int_equal(fn_inputs_finish(in, 1, 1, on_skip, &k, &e), FN_OK);
    if (k.errors)
        fail_msg("%s", k.last);
    assert_int_equal(fn_inputs_count(in), 1);
    const char *p = fn_inputs_path(in, 0);
    assert_true(strlen(p) > PATH_MAX);
    assert_int_equal(fn_inputs_label(in, 0)[0], 'v');
    /* through the pipeline: the same features as the bytes in memory */
    fn_model *m;
    fn_model_options mo;
    fn_model_options_default(&mo);
    mo.max_batch = 2;
    assert_int_equal(fn_model_open(w, &mo, &m, &e), FN_OK);
    static float fa[2048], fb[2048];
    cap ca = {fa, 0}, cb = {fb, 0};
    const void *bufs[1] = {jpg};
    size_t lens[1] = {n};
    assert_int_equal(fn_extract_run(m, NULL, 1, &p, NULL, NULL, row, &ca, NULL, &e), FN_OK);
    assert_int_equal(fn_extract_run(m, NULL, 1, NULL, bufs, lens, row, &cb, NULL, &e), FN_OK);
    assert_int_equal(ca.calls, 1);
    assert_int_equal(cb.calls, 1);
    assert_true(tu_max_abs(fa, fb, 2048) == 0);
    /* fn_extract_inputs: the pipeline on the list's own paths */
    static float fc[2048];
    cap cc = {fc, 0};
    double net = -1;
    assert_int_equal(fn_extract_inputs(m, NULL, in, row, &cc, &net, &e), FN_OK);
    assert_int_equal(cc.calls, 1);
    assert_true(net > 0);
    assert_true(tu_max_abs(fa, fc, 2048) == 0);
    assert_int_equal(fn_extract_inputs(m, NULL, NULL, row, &cc, NULL, &e), FN_EARG);
    assert_non_null(strstr(e.msg, "fn_extract_inputs"));
    fn_model_close(m);
    fn_inputs_free(in);
    free(jpg);
}

/* Command-line inputs: "@-" reads the list from stdin, "@FILE" a list file, anything else a path; the batch
 * a model is opened with never exceeds the inputs. */
static void test_inputs_add_arg(void **s)
{
    (void)s;
    char list[512], body[8192];
    snprintf(list, sizeof list, "%s/args.txt", tmp);
    int len = snprintf(body, sizeof body, "%s\n", tu_path(mini, "Kiwi/39_100.jpg"));
    tu_write(list, body, (size_t)len);
    int fds[2], saved = dup(0);
    assert_int_equal(pipe(fds), 0);
    len = snprintf(body, sizeof body, "# from stdin\n%s\n", tu_path(mini, "Lemon/321_100.jpg"));
    assert_int_equal(write(fds[1], body, (size_t)len), len);
    close(fds[1]);
    assert_int_equal(dup2(fds[0], 0), 0);
    close(fds[0]);
    char at[520];
    snprintf(at, sizeof at, "@%s", list);
    fn_inputs *in;
    fn_error e;
    skips k = {0};
    assert_int_equal(fn_inputs_new(&in, &e), FN_OK);
    assert_int_equal(fn_inputs_add_arg(in, at, on_skip, &k, &e), FN_OK);
    assert_int_equal(fn_inputs_add_arg(in, "@-", on_skip, &k, &e), FN_OK);
    assert_int_equal(dup2(saved, 0), 0);
    close(saved);
    assert_int_equal(fn_inputs_add_arg(in, tu_path(mini, "Banana/108_100.jpg"), on_skip, &k, &e), FN_OK);
    assert_int_equal(fn_inputs_add_arg(in, tu_path(tmp, "no-such.jpg"), on_skip, &k, &e), FN_OK);
    assert_int_equal(k.errors, 1);
    assert_non_null(strstr(k.last, "no-such.jpg"));
    snprintf(at, sizeof at, "@%s/no-such-list", tmp);
    assert_int_not_equal(fn_inputs_add_arg(in, at, on_skip, &k, &e), FN_OK); /* a list that cannot be read */
    assert_non_null(strstr(e.msg, "no-such-list"));
    assert_int_equal(fn_inputs_add_arg(in, NULL, on_skip, &k, &e), FN_EARG);
    assert_int_equal(fn_inputs_finish(in, 1, 1, on_skip, &k, &e), FN_OK);
    assert_int_equal(fn_inputs_count(in), 3);
    assert_true(find(in, tu_path(mini, "Kiwi/39_100.jpg")) >= 0);
    assert_true(find(in, tu_path(mini, "Lemon/321_100.jpg")) >= 0);
    assert_true(find(in, tu_path(mini, "Banana/108_100.jpg")) >= 0);
    fn_inputs_free(in);
    fn_extract_options xo = {.batch = 16};
    assert_int_equal(fn_extract_max_batch(&xo, 3), 3);
    assert_int_equal(fn_extract_max_batch(&xo, 0), 16);
    assert_int_equal(fn_extract_max_batch(&xo, 100), 16);
    assert_int_equal(fn_extract_max_batch(NULL, 100), 8);
}

typedef struct rowlog {
    size_t idx[32];
    int ok[32], n;
    char err0[600];
} rowlog;

static int log_row(void *ctx, size_t i, const float *f, const char *error, fn_error *err)
{
    rowlog *l = ctx;
    (void)err;
    l->idx[l->n] = i;
    l->ok[l->n] = f != NULL;
    if (!f && !l->err0[0])
        snprintf(l->err0, sizeof l->err0, "%s", error);
    l->n++;
    return FN_OK;
}

/* Buffers and paths mixed with failures: every input reported once, in order, the bad one with its name. */
static void test_pipeline_order(void **s)
{
    (void)s;
    const char *w = tu_weights_path();
    TU_REQUIRE(w);
    fn_model *m;
    fn_error e;
    fn_model_options mo;
    fn_model_options_default(&mo);
    mo.max_batch = 3;
    assert_int_equal(fn_model_open(w, &mo, &m, &e), FN_OK);
    char fifo[512];
    snprintf(fifo, sizeof fifo, "%s/p.jpg", tmp);
    mkfifo(fifo, 0600);
    const char *paths[7] = {tu_path(mini, "Kiwi/39_100.jpg"), fifo, tu_path(mini, "Lemon/321_100.jpg"),
                            "/nonexistent/x.jpg", tu_path(mini, "Cocos/0_100.jpg"), tu_path(mini, "Banana/108_100.jpg"),
                            tu_path(mini, "Banana/108_100.jpg")};
    char *own[7];
    for (int i = 0; i < 7; i++)
        own[i] = strdup(paths[i]);
    fn_extract_options xo = {.batch = 3, .decoders = 2};
    rowlog l = {0};
    assert_int_equal(fn_extract_run(m, &xo, 7, (const char *const *)own, NULL, NULL, log_row, &l, NULL, &e), FN_OK);
    assert_int_equal(l.n, 7);
    for (int i = 0; i < 7; i++) {
        assert_int_equal(l.idx[i], (size_t)i);
        assert_int_equal(l.ok[i], i != 1 && i != 3);
    }
    assert_non_null(strstr(l.err0, "p.jpg"));
    assert_non_null(strstr(l.err0, "not a regular file"));
    for (int i = 0; i < 7; i++)
        free(own[i]);
    fn_model_close(m);
}

/* The atomic writer never replaces a device, FIFO, folder or (unless asked) a symlink. */
static void test_atomic_refusals(void **s)
{
    (void)s;
    char f[512], fifo[512], dev[512], lnk[512], dir[512];
    snprintf(f, sizeof f, "%s/a.txt", tmp);
    snprintf(fifo, sizeof fifo, "%s/fifo", tmp);
    snprintf(dev, sizeof dev, "%s/dev", tmp);
    snprintf(lnk, sizeof lnk, "%s/lnk", tmp);
    snprintf(dir, sizeof dir, "%s/dir", tmp);
    fn_error e;
    assert_int_equal(fn_atomic_write_file(f, "one", 3, 0, &e), FN_OK);
    assert_int_equal(fn_atomic_write_file(f, "two!", 4, 0, &e), FN_OK);
    size_t n;
    char *t = tu_read_file(f, &n);
    assert_int_equal(n, 4);
    assert_memory_equal(t, "two!", 4);
    free(t);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    assert_int_equal(mkdir(dir, 0700), 0);
    assert_int_equal(symlink(f, lnk), 0);
    int have_dev = mknod(dev, S_IFCHR | 0666, makedev(1, 3)) == 0;
    const char *bad[4] = {fifo, dir, lnk, dev};
    const char *what[4] = {"a FIFO", "a folder", "a symlink", "a character device"};
    for (int i = 0; i < 3 + have_dev; i++) {
        assert_int_equal(fn_atomic_write_file(bad[i], "x", 1, 0, &e), FN_EARG);
        assert_non_null(strstr(e.msg, bad[i]));
        assert_non_null(strstr(e.msg, what[i]));
        assert_int_equal(fn_atomic_check(bad[i], 0, &e), FN_EARG);
    }
    struct stat st;
    assert_int_equal(lstat(fifo, &st), 0);
    assert_true(S_ISFIFO(st.st_mode));
    if (have_dev) {
        assert_int_equal(lstat(dev, &st), 0);
        assert_true(S_ISCHR(st.st_mode));
    }
    /* no temporary file left behind */
    DIR *d = opendir(tmp);
    struct dirent *de;
    while ((de = readdir(d)))
        assert_null(strstr(de->d_name, ".tmp."));
    closedir(d);
    /* asked: the symlink itself is replaced, its target untouched */
    assert_int_equal(fn_atomic_write_file(lnk, "new", 3, FN_ATOMIC_REPLACE_SYMLINK, &e), FN_OK);
    assert_int_equal(lstat(lnk, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    t = tu_read_file(f, &n);
    assert_memory_equal(t, "two!", 4);
    free(t);
    /* the Parquet writer follows the same policy */
    fn_parquet_writer *pw;
    fn_parquet_options po = {.list_column = "features"};
    assert_int_equal(fn_parquet_writer_open(fifo, &po, &pw, &e), FN_EARG);
    assert_non_null(strstr(e.msg, "not a regular file"));
    /* and PCA files */
    fn_pca_stats *ps;
    assert_int_equal(fn_pca_stats_new(2, &ps, &e), FN_OK);
    assert_int_equal(fn_pca_stats_save(ps, fifo, &e), FN_EARG);
    fn_pca_stats_free(ps);
}

/* The reader: a committed dataset's listed parts only; refusals name the file and the reason. */
static void test_reader_checks(void **s)
{
    (void)s;
    char d[512];
    snprintf(d, sizeof d, "%s/ds", tmp);
    mkdir(d, 0777);
    tu_write(tu_path(d, "part-00000.parquet"), "abc", 3);
    tu_write(tu_path(d, "part-00001.parquet"), "defg", 4);
    char **files;
    int nf;
    fn_error e;
    assert_int_equal(fn_dataset_files(d, 0, &files, &nf, &e), FN_EFORMAT);
    assert_non_null(strstr(e.msg, "not committed"));
    assert_int_equal(fn_parquet_dataset_files(d, &files, &nf, &e), FN_EFORMAT);
    assert_int_equal(fn_dataset_files(d, FN_DATASET_UNCOMMITTED, &files, &nf, &e), FN_OK);
    assert_int_equal(nf, 2);
    fn_free_list(files, nf);
    const char *ok = "fruitnet-dataset\t1\npart-00000.parquet\t3\t1\npart-00001.parquet\t4\t2\n";
    tu_write(tu_path(d, "_SUCCESS"), ok, strlen(ok));
    assert_int_equal(fn_dataset_files(d, 0, &files, &nf, &e), FN_OK);
    assert_int_equal(nf, 2);
    fn_free_list(files, nf);
    tu_write(tu_path(d, "part-00002.parquet"), "stale", 5); /* not in the commit record */
    assert_int_equal(fn_dataset_files(d, 0, &files, &nf, &e), FN_EFORMAT);
    assert_non_null(strstr(e.msg, "part-00002.parquet"));
    assert_non_null(strstr(e.msg, "not part of the committed dataset"));
    unlink(tu_path(d, "part-00002.parquet"));
    tu_write(tu_path(d, "part-00001.parquet"), "changed", 7);
    assert_int_equal(fn_dataset_files(d, 0, &files, &nf, &e), FN_EFORMAT);
    assert_non_null(strstr(e.msg, "changed after the commit"));
    unlink(tu_path(d, "part-00001.parquet"));
    assert_int_equal(fn_dataset_files(d, 0, &files, &nf, &e), FN_EFORMAT);
    assert_non_null(strstr(e.msg, "part-00001.parquet: listed in _SUCCESS but missing"));
    /* Spark's empty _SUCCESS: every part file */
    tu_write(tu_path(d, "_SUCCESS"), "", 0);
    assert_int_equal(fn_dataset_files(d, 0, &files, &nf, &e), FN_OK);
    assert_int_equal(nf, 1);
    fn_free_list(files, nf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_escape_round_trip), cmocka_unit_test(test_inputs_listing),
        cmocka_unit_test(test_inputs_shards),     cmocka_unit_test(test_atomic_refusals),
        cmocka_unit_test(test_reader_checks),     cmocka_unit_test(test_pipeline_order),
        cmocka_unit_test(test_deep_path),         cmocka_unit_test(test_inputs_add_arg),
    };
    return cmocka_run_group_tests_name("dataset", tests, setup, teardown);
}
