/*
 * test_dataset_hostile.c — hostile input for the dataset readers and the @list parser: a dataset folder
 * tampered with or written by another process (_SUCCESS listing a part twice, a folder or FIFO named like a
 * part, malformed lines), lock files and output paths that are not regular files or folders, and list texts with a 1 MB line, NUL bytes, CRLF endings. Regressions of the
 * findings of fuzz/fuzz_dataset.c and fuzz/fuzz_inputs.c.
 */
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmp[256];

static int setup(void **s)
{
    (void)s;
    return tu_mkdtemp(tmp, sizeof tmp, "hostile") ? 0 : -1;
}

static int teardown(void **s)
{
    (void)s;
    return tu_rm_rf(tmp);
}

static void put_s(const char *dir, const char *name, const char *text) { tu_write(tu_path(dir, name), text, strlen(text)); }

static const char *new_dir(const char *name)
{
    static char d[512];
    snprintf(d, sizeof d, "%s/%s", tmp, name);
    assert_int_equal(mkdir(d, 0777), 0);
    return d;
}

/* Fuzz finding: a _SUCCESS listing one part twice made the count of listed parts equal the number of part
 * files, so a part file not listed at all (written after the commit) was returned as part of the dataset. */
static void test_success_listed_twice(void **s)
{
    (void)s;
    const char *d = new_dir("twice");
    put_s(d, "part-00000.parquet", "abc");
    put_s(d, "part-00001.parquet", "stale");
    put_s(d, "_SUCCESS", "fruitnet-dataset\t1\npart-00000.parquet\t3\t1\npart-00000.parquet\t3\t1\n");
    char **files = NULL;
    int nf = 0;
    fn_error e;
    assert_int_equal(fn_dataset_files(d, 0, &files, &nf, &e), FN_EFORMAT);
    assert_non_null(strstr(e.msg, "part-00000.parquet: listed twice in _SUCCESS"));
    assert_non_null(strstr(e.msg, d));
}

/* Fuzz finding: a folder (or FIFO) named like a part file was returned as a Parquet file of the dataset. */
static void test_part_not_regular(void **s)
{
    (void)s;
    const char *d = new_dir("odd");
    put_s(d, "part-00000.parquet", "abc");
    assert_int_equal(mkdir(tu_path(d, "part-00001.parquet"), 0777), 0);
    put_s(d, "_SUCCESS", ""); /* Spark's: every part file */
    char **files = NULL;
    int nf = 0;
    fn_error e;
    for (int flags = 0; flags <= FN_DATASET_UNCOMMITTED; flags++) {
        assert_int_equal(fn_dataset_files(d, flags, &files, &nf, &e), FN_EFORMAT);
        assert_non_null(strstr(e.msg, "part-00001.parquet: not a regular file (a folder)"));
    }
    /* fruitnet's record naming the folder with its own st_size */
    struct stat st;
    assert_int_equal(stat(tu_path(d, "part-00001.parquet"), &st), 0);
    char rec[256];
    snprintf(rec, sizeof rec, "fruitnet-dataset\t1\npart-00000.parquet\t3\t1\npart-00001.parquet\t%lld\t1\n",
             (long long)st.st_size);
    put_s(d, "_SUCCESS", rec);
    assert_int_equal(fn_dataset_files(d, 0, &files, &nf, &e), FN_EFORMAT);
    assert_non_null(strstr(e.msg, "not a regular file (a folder)"));
    /* a FIFO: refused, never opened */
    assert_int_equal(rmdir(tu_path(d, "part-00001.parquet")), 0);
    assert_int_equal(mkfifo(tu_path(d, "part-00001.parquet"), 0600), 0);
    assert_int_equal(fn_dataset_files(d, FN_DATASET_UNCOMMITTED, &files, &nf, &e), FN_EFORMAT);
    assert_non_null(strstr(e.msg, "part-00001.parquet: not a regular file (a FIFO)"));
    /* gone: the good part alone */
    assert_int_equal(unlink(tu_path(d, "part-00001.parquet")), 0);
    put_s(d, "_SUCCESS", "");
    assert_int_equal(fn_dataset_files(d, 0, &files, &nf, &e), FN_OK);
    assert_int_equal(nf, 1);
    assert_non_null(strstr(files[0], "part-00000.parquet"));
    fn_free_list(files, nf);
}

/* Malformed commit records: the message names the file and the line; a name never spans lines. */
static void test_success_malformed(void **s)
{
    (void)s;
    const char *d = new_dir("malformed");
    put_s(d, "part-00000.parquet", "abc");
    static const char *bad[] = {
        "fruitnet-dataset\t1\npart-00000.parquet\t3\t1\n\n",            /* an empty line */
        "fruitnet-dataset\t1\npart-00000.parquet\t3\t1\nxx\n",          /* no fields */
        "fruitnet-dataset\t1\npart-00000.parquet\t3\t1\nx\t\t\n",       /* empty numbers */
        "fruitnet-dataset\t1\npart-00000.parquet\t3\t1\nab\npart-00000.parquet\t3\t1\n", /* a name over 2 lines */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        put_s(d, "_SUCCESS", bad[i]);
        char **files = NULL;
        int nf = 0;
        fn_error e;
        assert_int_equal(fn_dataset_files(d, 0, &files, &nf, &e), FN_EFORMAT);
        assert_non_null(strstr(e.msg, "/_SUCCESS: malformed line 3 (expected NAME<TAB>BYTES<TAB>ROWS)"));
        assert_non_null(strstr(e.msg, d));
    }
    /* a path outside the folder, an absolute path: refused, naming them */
    put_s(d, "_SUCCESS", "fruitnet-dataset\t1\n../malformed/part-00000.parquet\t3\t1\n");
    char **files = NULL;
    int nf = 0;
    fn_error e;
    assert_int_equal(fn_dataset_files(d, 0, &files, &nf, &e), FN_EFORMAT);
    assert_non_null(strstr(e.msg, "../malformed/part-00000.parquet: listed in _SUCCESS but not a visible part"));
    /* CRLF line ends (edited on Windows) and no final newline: still read */
    put_s(d, "_SUCCESS", "fruitnet-dataset\t1\npart-00000.parquet\t3\t1\r\n");
    assert_int_equal(fn_dataset_files(d, 0, &files, &nf, &e), FN_OK);
    assert_int_equal(nf, 1);
    fn_free_list(files, nf);
    put_s(d, "_SUCCESS", "fruitnet-dataset\t1\npart-00000.parquet\t3\t1");
    assert_int_equal(fn_dataset_files(d, 0, &files, &nf, &e), FN_OK);
    assert_int_equal(nf, 1);
    fn_free_list(files, nf);
}

typedef struct skips {
    int n;
    char path[8][64];
    char why[8][160];
} skips;

static void on_skip(void *ctx, const char *path, const char *reason, int is_error)
{
    skips *k = ctx;
    assert_true(is_error);
    if (k->n < 8) {
        snprintf(k->path[k->n], sizeof k->path[0], "%s", path);
        snprintf(k->why[k->n], sizeof k->why[0], "%s", reason);
    }
    k->n++;
}

/* @list texts: a 1 MB line, NUL bytes, CRLF endings, comments; every good line is listed. */
static void test_list_hostile(void **s)
{
    (void)s;
    const char *d = new_dir("Kiwi");
    put_s(d, "a.jpg", "a");
    put_s(d, "b.png", "bb");
    char la[600], lb[600];
    snprintf(la, sizeof la, "%s/a.jpg", d);
    snprintf(lb, sizeof lb, "%s/b.png", d);
    size_t big = (size_t)1 << 20;
    char *text = malloc(big + 2048);
    assert_non_null(text);
    size_t n = 0;
    n += (size_t)sprintf(text + n, "# a comment\r\n%s\r\n\r\n", la);
    memset(text + n, 'x', big); /* one line of 1 MB: a name too long for any file system */
    n += big;
    text[n++] = '\n';
    memcpy(text + n, "nul\0.jpg\n", 9); /* a NUL byte inside a line */
    n += 9;
    n += (size_t)sprintf(text + n, "%s", lb); /* the last line, no newline */
    fn_inputs *in;
    fn_error e;
    skips k = {0};
    assert_int_equal(fn_inputs_new(&in, &e), FN_OK);
    assert_int_equal(fn_inputs_add_list_memory(in, text, n, "hostile.list", on_skip, &k, &e), FN_OK);
    assert_int_equal(fn_inputs_finish(in, 1, 1, on_skip, &k, &e), FN_OK);
    assert_int_equal(fn_inputs_count(in), 2);
    assert_string_equal(fn_inputs_path(in, 0), la); /* CR stripped */
    assert_string_equal(fn_inputs_path(in, 1), lb);
    assert_string_equal(fn_inputs_label(in, 0), "Kiwi");
    assert_int_equal(fn_inputs_size(in, 1), 2);
    assert_int_equal(k.n, 2);
    assert_string_equal(k.path[0], "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
    assert_non_null(strstr(k.why[0], "cannot open: File name too long"));
    assert_string_equal(k.path[1], "nul");
    assert_string_equal(k.why[1], "line of hostile.list holds a NUL byte");
    fn_inputs_free(in);
    free(text);
}

/* Lock files and the output path that are not what they should be: refused, named, never opened blocking,
 * never removed (before the fix a FIFO _lock was opened and flock'ed as if it were the lock file). */
static void test_write_refusals(void **s)
{
    (void)s;
    const char *w = tu_weights_path();
    if (!w)
        skip();
    fn_model *m;
    fn_error e;
    assert_int_equal(fn_model_open(w, NULL, &m, &e), FN_OK);
    fn_inputs *in;
    assert_int_equal(fn_inputs_new(&in, &e), FN_OK);
    assert_int_equal(fn_inputs_finish(in, 1, 1, NULL, NULL, &e), FN_OK); /* no inputs: a dataset of 0 rows */
    fn_dataset_options o = {.part_size = 2};
    fn_dataset_report rep;
    static const char *locks[] = {"_lock", "_lock-s00001of00001"};
    for (int i = 0; i < 2; i++) {
        char d[512];
        snprintf(d, sizeof d, "%s/lock%d", tmp, i);
        assert_int_equal(mkdir(d, 0777), 0);
        assert_int_equal(mkfifo(tu_path(d, locks[i]), 0600), 0);
        assert_int_equal(fn_dataset_write(d, m, in, &o, NULL, &rep, &e), FN_EIO);
        char want[600];
        snprintf(want, sizeof want, "%s/%s: not a regular file (a FIFO)", d, locks[i]);
        assert_non_null(strstr(e.msg, want));
        struct stat st;
        assert_int_equal(lstat(tu_path(d, locks[i]), &st), 0);
        assert_true(S_ISFIFO(st.st_mode));
        assert_int_equal(access(tu_path(d, "_SUCCESS"), F_OK), -1);
        /* removed: the run goes through */
        assert_int_equal(unlink(tu_path(d, locks[i])), 0);
        assert_int_equal(fn_dataset_write(d, m, in, &o, NULL, &rep, &e), FN_OK);
        assert_int_equal(rep.committed, 1);
    }
    /* the dataset path is a regular file: named, left as it was */
    char f[512];
    snprintf(f, sizeof f, "%s/file-ds", tmp);
    tu_write(f, "keep", 4);
    assert_int_equal(fn_dataset_write(f, m, in, &o, NULL, &rep, &e), FN_EIO);
    assert_non_null(strstr(e.msg, f));
    assert_non_null(strstr(e.msg, "exists and is not a folder (a regular file)"));
    size_t len;
    char *b = tu_read_file(f, &len);
    assert_non_null(b);
    assert_int_equal(len, 4);
    assert_memory_equal(b, "keep", 4);
    free(b);
    fn_inputs_free(in);
    fn_model_close(m);
}

/* A _SUCCESS that is there but cannot be read (a folder, a FIFO) is named with the reason; before, the
 * reader said "no _SUCCESS: the dataset is not committed". Never opened in blocking mode. */
static void test_success_unreadable(void **s)
{
    (void)s;
    const char *d = new_dir("badsuccess");
    put_s(d, "part-00000.parquet", "abc");
    char **files = NULL;
    int nf = 0;
    fn_error e;
    for (int kind = 0; kind < 2; kind++) {
        const char *sp = tu_path(d, "_SUCCESS");
        assert_int_equal(kind ? mkfifo(sp, 0600) : mkdir(sp, 0777), 0);
        assert_int_equal(fn_dataset_files(d, 0, &files, &nf, &e), FN_EFORMAT);
        assert_non_null(strstr(e.msg, "/_SUCCESS: not a regular file"));
        assert_non_null(strstr(e.msg, "commit record of the dataset cannot be read"));
        assert_null(strstr(e.msg, "not committed"));
        /* FN_DATASET_UNCOMMITTED reads what is there */
        assert_int_equal(fn_dataset_files(d, FN_DATASET_UNCOMMITTED, &files, &nf, &e), FN_OK);
        assert_int_equal(nf, 1);
        fn_free_list(files, nf);
        assert_int_equal(kind ? unlink(sp) : rmdir(sp), 0);
    }
    assert_int_equal(fn_dataset_files(d, 0, &files, &nf, &e), FN_EFORMAT); /* really absent */
    assert_non_null(strstr(e.msg, "no _SUCCESS: the dataset is not committed"));
}

static char last_note[1024];
static void on_note(void *ctx, const char *msg)
{
    (void)ctx;
    if (strstr(msg, "no _SUCCESS"))
        snprintf(last_note, sizeof last_note, "%s", msg);
}

static int write_shard(fn_model *m, const char *d, int k, int n, fn_dataset_report *rep, fn_error *e)
{
    fn_inputs *in;
    assert_int_equal(fn_inputs_new(&in, e), FN_OK);
    assert_int_equal(fn_inputs_finish(in, k, n, NULL, NULL, e), FN_OK);
    fn_dataset_options o = {.part_size = 2, .shard_k = k, .shard_n = n};
    fn_dataset_callbacks cb = {.note = on_note};
    int rc = fn_dataset_write(d, m, in, &o, &cb, rep, e);
    fn_inputs_free(in);
    return rc;
}

/* Fuzz finding: the last shard wrote _SUCCESS from the other shards' manifests without looking at the
 * folder, so a part removed after its shard finished, or a manifest tampered with (a part line naming
 * another file, a line missing), gave a committed dataset that every reader refuses. Now it is not
 * committed, with a note naming the file; running the shard at fault again commits. */
static void test_commit_checks_parts(void **s)
{
    (void)s;
    const char *w = tu_weights_path();
    if (!w)
        skip();
    fn_model *m;
    fn_error e;
    assert_int_equal(fn_model_open(w, NULL, &m, &e), FN_OK);
    char d[512];
    snprintf(d, sizeof d, "%s/shards", tmp);
    fn_dataset_report rep;
    char **files;
    int nf;
    for (int round = 0; round < 2; round++) {
        assert_int_equal(write_shard(m, d, 2, 2, &rep, &e), FN_OK);
        assert_int_equal(rep.committed, round); /* round 1: shard 1 is complete from round 0 */
        if (round == 0) { /* its part removed */
            assert_int_equal(unlink(tu_path(d, "part-00000-s00002of00002.parquet")), 0);
        } else { /* its manifest names another part */
            size_t len;
            char *t = tu_read_file(tu_path(d, "_manifest-s00002of00002.tsv"), &len);
            assert_non_null(t);
            char *p = strstr(t, "part\tpart-00000-s00002of00002.parquet");
            assert_non_null(p);
            memcpy(p + 5, "part-00007", 10);
            tu_write(tu_path(d, "_manifest-s00002of00002.tsv"), t, len);
            free(t);
        }
        last_note[0] = 0;
        assert_int_equal(write_shard(m, d, 1, 2, &rep, &e), FN_OK);
        assert_int_equal(rep.committed, 0);
        assert_non_null(strstr(last_note, "no _SUCCESS: the part files do not match the shards' manifests"));
        assert_non_null(strstr(last_note, round == 0 ? "part-00000-s00002of00002.parquet: listed in _SUCCESS but missing"
                                                     : "part-00007-s00002of00002.parquet: listed in _SUCCESS but missing"));
        assert_int_equal(access(tu_path(d, "_SUCCESS"), F_OK), -1);
        assert_int_equal(fn_dataset_files(d, 0, &files, &nf, &e), FN_EFORMAT);
        assert_non_null(strstr(e.msg, "no _SUCCESS"));
        /* the shard at fault again: committed and readable */
        assert_int_equal(write_shard(m, d, 2, 2, &rep, &e), FN_OK);
        assert_int_equal(rep.committed, 1);
        assert_int_equal(fn_dataset_files(d, 0, &files, &nf, &e), FN_OK);
        assert_int_equal(nf, 2);
        fn_free_list(files, nf);
    }
    fn_model_close(m);
}

int main(void)
{
    const struct CMUnitTest t[] = {
        cmocka_unit_test(test_success_listed_twice), cmocka_unit_test(test_part_not_regular),
        cmocka_unit_test(test_success_malformed),    cmocka_unit_test(test_list_hostile),
        cmocka_unit_test(test_write_refusals),       cmocka_unit_test(test_commit_checks_parts),
        cmocka_unit_test(test_success_unreadable),
    };
    return cmocka_run_group_tests(t, setup, teardown);
}
