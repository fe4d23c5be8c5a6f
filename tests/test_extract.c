/*
 * test_extract.c — fruitnet-extract end to end, as a user runs it:
 * dataset output read back with the library's Parquet reader and compared to
 * the golden features, bad inputs, sharding, and SIGKILL + resume.
 * The tool is found in $FRUITNET_BUILD (set by the Makefile).
 */
#include "testutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char tool[4096];
static char tmp[256];

static const char *golden_rel[8] = {"Banana/108_100.jpg",     "Apple Braeburn/321_100.jpg", "Lemon/321_100.jpg",
                                    "Pineapple/15_100.jpg",   "Strawberry/321_100.jpg",     "Cocos/0_100.jpg",
                                    "Kiwi/39_100.jpg",        "Tomato 1/186_100.jpg"};

static int setup(void **s)
{
    (void)s;
    const char *b = getenv("FRUITNET_BUILD");
    snprintf(tool, sizeof tool, "%s/fruitnet-extract", b && *b ? b : "build");
    snprintf(tmp, sizeof tmp, "/tmp/fruitnet-test-extract-XXXXXX");
    if (!mkdtemp(tmp))
        return -1;
    return 0;
}

static int teardown(void **s)
{
    (void)s;
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    return system(cmd) == 0 ? 0 : -1;
}

/* Start the tool with args (NULL-terminated), stdout/stderr to files in tmp. */
static pid_t spawn(const char *tag, const char **args)
{
    const char *argv[64];
    int n = 0;
    argv[n++] = tool;
    for (int i = 0; args[i]; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    pid_t pid = fork();
    if (pid == 0) {
        char p[512];
        snprintf(p, sizeof p, "%s/%s.out", tmp, tag);
        int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(fd, 1);
        snprintf(p, sizeof p, "%s/%s.err", tmp, tag);
        int fe = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(fe, 2);
        execv(tool, (char *const *)argv);
        _exit(127);
    }
    return pid;
}

static int run(const char *tag, const char **args)
{
    int st = 0;
    pid_t pid = spawn(tag, args);
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static char *slurp(const char *tag, const char *ext)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s.%s", tmp, tag, ext);
    size_t n;
    char *s = tu_read_file(p, &n);
    if (!s)
        return strdup("");
    s = realloc(s, n + 1);
    s[n] = 0;
    return s;
}

/* All rows of a dataset (or file), in part order. */
typedef struct rows {
    int n;
    char *path[512];
    char *label[512];
    float *vec[512];
} rows;

static void read_rows(const char *path, rows *r)
{
    char **files = NULL;
    int nf = 0;
    fn_error e = {0};
    memset(r, 0, sizeof *r);
    if (fn_parquet_dataset_files(path, &files, &nf, &e) != FN_OK)
        fail_msg("%s", e.msg);
    for (int f = 0; f < nf; f++) {
        fn_parquet_reader *rd = NULL;
        if (fn_parquet_reader_open(files[f], &rd, &e) != FN_OK)
            fail_msg("%s", e.msg);
        fn_parquet_row row;
        int rc;
        while ((rc = fn_parquet_reader_next(rd, &row, &e)) == 1) {
            assert_true(r->n < 512);
            assert_int_equal(row.n, 2048);
            r->path[r->n] = strdup(row.path);
            r->label[r->n] = strdup(row.label);
            r->vec[r->n] = malloc(2048 * sizeof(float));
            memcpy(r->vec[r->n], row.vec, 2048 * sizeof(float));
            r->n++;
        }
        if (rc != 0)
            fail_msg("%s", e.msg);
        fn_parquet_reader_close(rd);
    }
    fn_free_list(files, nf);
}

static void free_rows(rows *r)
{
    for (int i = 0; i < r->n; i++) {
        free(r->path[i]);
        free(r->label[i]);
        free(r->vec[i]);
    }
    r->n = 0;
}

static int find_row(const rows *r, const char *path)
{
    for (int i = 0; i < r->n; i++)
        if (strcmp(r->path[i], path) == 0)
            return i;
    return -1;
}

static void write_list(const char *name, const char **paths, int n)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", tmp, name);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    for (int i = 0; i < n; i++)
        fprintf(f, "%s\n", paths[i]);
    fclose(f);
}

/* The 8 golden images through the tool: Parquet rows match the Keras features. */
static void test_golden_dataset(void **s)
{
    (void)s;
    const char *g = tu_golden_dir(), *sample = tu_sample_dir(), *w = tu_weights_path();
    TU_REQUIRE(g);
    TU_REQUIRE(sample);
    TU_REQUIRE(w);
    const char *paths[8];
    for (int i = 0; i < 8; i++)
        paths[i] = strdup(tu_path(sample, golden_rel[i]));
    write_list("golden.lst", paths, 8);
    char out[512], lst[512];
    snprintf(out, sizeof out, "%s/golden.parquet", tmp);
    snprintf(lst, sizeof lst, "@%s/golden.lst", tmp);
    const char *args[] = {"--weights", w, "-o", out, "--part-size", "3", "--batch", "4", lst, NULL};
    int rc = run("golden", args);
    char *err = slurp("golden", "err");
    if (rc != 0)
        fail_msg("exit %d: %s", rc, err);
    free(err);
    rows r;
    read_rows(out, &r);
    assert_int_equal(r.n, 8);
    float *ref = tu_read_f32(tu_path(g, "img8/all8.avgpool.f32"), 8 * 2048);
    assert_non_null(ref);
    double worst = 1;
    for (int i = 0; i < 8; i++) {
        int k = find_row(&r, paths[i]);
        assert_true(k >= 0);
        const char *cls = golden_rel[i];
        assert_int_equal(strncmp(r.label[k], cls, strlen(r.label[k])), 0);
        assert_int_equal(cls[strlen(r.label[k])], '/');
        double c = tu_cosine(r.vec[k], ref + i * 2048, 2048);
        if (c < worst)
            worst = c;
    }
    print_message("[ extract  ] 8 golden JPEGs through fruitnet-extract: worst cosine %.6f\n", worst);
    assert_true(worst >= 0.999);
    /* three parts of at most 3 rows, a _SUCCESS marker, no temp files */
    char p[600];
    snprintf(p, sizeof p, "%s/_SUCCESS", out);
    assert_int_equal(access(p, F_OK), 0);
    snprintf(p, sizeof p, "%s/part-00002.parquet", out);
    assert_int_equal(access(p, F_OK), 0);
    snprintf(p, sizeof p, "%s/part-00003.parquet", out);
    assert_int_not_equal(access(p, F_OK), 0);
    free(ref);
    free_rows(&r);
    for (int i = 0; i < 8; i++)
        free((void *)paths[i]);
}

static void write_bytes(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    if (n)
        assert_int_equal(fwrite(data, 1, n, f), n);
    fclose(f);
}

/* Bad inputs are reported with file and reason, skipped and counted; the good ones are all written. */
static void test_bad_inputs(void **s)
{
    (void)s;
    const char *sample = tu_sample_dir(), *w = tu_weights_path();
    TU_REQUIRE(sample);
    TU_REQUIRE(w);
    char d[512], p[700];
    snprintf(d, sizeof d, "%s/bad/Mixed", tmp);
    snprintf(p, sizeof p, "%s/bad", tmp);
    mkdir(p, 0777);
    mkdir(d, 0777);
    size_t n;
    unsigned char *jpg = tu_read_file(tu_path(sample, golden_rel[0]), &n);
    assert_non_null(jpg);
    snprintf(p, sizeof p, "%s/good1.jpg", d);
    write_bytes(p, jpg, n);
    snprintf(p, sizeof p, "%s/good2.jpg", d);
    write_bytes(p, jpg, n);
    snprintf(p, sizeof p, "%s/empty.jpg", d);
    write_bytes(p, "", 0);
    snprintf(p, sizeof p, "%s/text.jpg", d);
    write_bytes(p, "this is not an image\n", 21);
    snprintf(p, sizeof p, "%s/truncated.jpg", d);
    write_bytes(p, jpg, 200);
    /* a PNG header declaring 60000 x 60000 */
    static const unsigned char huge[] = {0x89, 'P', 'N', 'G', 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13, 'I', 'H', 'D', 'R',
                                         0, 0, 0xea, 0x60, 0, 0, 0xea, 0x60, 8, 2, 0, 0, 0, 0, 0, 0, 0};
    snprintf(p, sizeof p, "%s/huge.png", d);
    write_bytes(p, huge, sizeof huge);
    free(jpg);
    char out[512], in[512], missing[512];
    snprintf(out, sizeof out, "%s/bad.parquet", tmp);
    snprintf(in, sizeof in, "%s/bad", tmp);
    snprintf(missing, sizeof missing, "%s/does-not-exist.jpg", tmp);
    const char *args[] = {"--weights", w, "-o", out, in, missing, NULL};
    int rc = run("bad", args);
    char *err = slurp("bad", "err");
    print_message("[ extract  ] stderr of the bad-input run:\n%s", err);
    assert_int_equal(rc, 1); /* some inputs failed */
    const char *bad[] = {"empty.jpg", "text.jpg", "huge.png", "does-not-exist.jpg"};
    for (int i = 0; i < 4; i++)
        if (!strstr(err, bad[i]))
            fail_msg("stderr does not name %s", bad[i]);
    free(err);
    /* the errors file lists each failure with a reason */
    snprintf(p, sizeof p, "%s/_errors.tsv", out);
    size_t en;
    char *errs = tu_read_file(p, &en);
    assert_non_null(errs);
    errs = realloc(errs, en + 1);
    errs[en] = 0;
    for (int i = 0; i < 4; i++)
        assert_non_null(strstr(errs, bad[i]));
    /* the reasons are specific */
    const char *h = strstr(errs, "huge.png");
    assert_non_null(strstr(h, "60000x60000"));
    assert_non_null(strstr(strstr(errs, "empty.jpg"), "empty file"));
    rows r;
    read_rows(out, &r);
    /* good1, good2 and perhaps the truncated JPEG (stb may decode a partial image) */
    int has_trunc = 0;
    for (int i = 0; i < r.n; i++)
        has_trunc += strstr(r.path[i], "truncated.jpg") != NULL;
    assert_int_equal(r.n, 2 + has_trunc);
    assert_int_equal(has_trunc, strstr(errs, "truncated.jpg") == NULL);
    assert_true(find_row(&r, tu_path(d, "good1.jpg")) >= 0);
    assert_true(find_row(&r, tu_path(d, "good2.jpg")) >= 0);
    assert_string_equal(r.label[0], "Mixed");
    free(errs);
    free_rows(&r);
}

/* --shard K/N: disjoint parts whose union is the whole input, same features as one run. */
static void test_sharding(void **s)
{
    (void)s;
    const char *sample = tu_sample_dir(), *w = tu_weights_path();
    TU_REQUIRE(sample);
    TU_REQUIRE(w);
    const char *paths[12];
    const char *cls[3] = {"Banana", "Kiwi", "Lemon"};
    int np = 0;
    for (int c = 0; c < 3; c++) {
        DIR *dd = opendir(tu_path(sample, cls[c]));
        assert_non_null(dd);
        struct dirent *e;
        char *names[64];
        int nn = 0;
        while ((e = readdir(dd)) && nn < 64)
            if (strstr(e->d_name, ".jpg"))
                names[nn++] = strdup(e->d_name);
        closedir(dd);
        for (int i = 0; i < nn; i++) {
            if (i < 4) {
                char rel[300];
                snprintf(rel, sizeof rel, "%s/%s", cls[c], names[i]);
                paths[np++] = strdup(tu_path(sample, rel));
            }
            free(names[i]);
        }
    }
    write_list("shard.lst", paths, np);
    char out[512], lst[512], one[512];
    snprintf(out, sizeof out, "%s/sharded.parquet", tmp);
    snprintf(one, sizeof one, "%s/single.parquet", tmp);
    snprintf(lst, sizeof lst, "@%s/shard.lst", tmp);
    const char *shards[3] = {"1/3", "2/3", "3/3"};
    char succ[600];
    snprintf(succ, sizeof succ, "%s/_SUCCESS", out);
    for (int k = 0; k < 3; k++) {
        const char *args[] = {"--weights", w, "-o", out, "--shard", shards[k], "--part-size", "2", lst, NULL};
        assert_int_equal(run("shard", args), 0);
        /* _SUCCESS only once every shard is done */
        assert_int_equal(access(succ, F_OK) == 0, k == 2);
    }
    const char *args1[] = {"--weights", w, "-o", one, "--single-file", lst, NULL};
    assert_int_equal(run("single", args1), 0);
    rows a, b;
    read_rows(out, &a);
    read_rows(one, &b);
    assert_int_equal(a.n, np);
    assert_int_equal(b.n, np);
    for (int i = 0; i < np; i++) {
        int ka = find_row(&a, paths[i]), kb = find_row(&b, paths[i]);
        assert_true(ka >= 0 && kb >= 0);
        for (int j = 0; j < a.n; j++) /* no duplicates */
            assert_true(j == ka || strcmp(a.path[j], paths[i]) != 0);
        /* the runs batch the images differently */
        assert_true(tu_max_abs(a.vec[ka], b.vec[kb], 2048) <= TU_BATCH_TOL);
    }
    free_rows(&a);
    free_rows(&b);
    for (int i = 0; i < np; i++)
        free((void *)paths[i]);
}

static int count_parts(const char *dir, int *tmpfiles)
{
    DIR *d = opendir(dir);
    int n = 0;
    *tmpfiles = 0;
    if (!d)
        return 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strstr(e->d_name, ".tmp"))
            (*tmpfiles)++;
        else if (strncmp(e->d_name, "part-", 5) == 0)
            n++;
    }
    closedir(d);
    return n;
}

/* SIGKILL half way, run again: finished parts kept, no duplicate, no missing image. */
static void test_kill_and_resume(void **s)
{
    (void)s;
    const char *sample = tu_sample_dir(), *w = tu_weights_path();
    TU_REQUIRE(sample);
    TU_REQUIRE(w);
    char in[512], out[512];
    snprintf(in, sizeof in, "%s/Apple Braeburn", sample);
    snprintf(out, sizeof out, "%s/resume.parquet", tmp);
    /* 24 images, parts of 3: kill once at least 2 parts are on disk */
    const char *args[] = {"--weights", w, "-o", out, "--part-size", "3", "--batch", "3", "--threads", "1", in, NULL};
    pid_t pid = spawn("kill", args);
    int tmpf = 0, parts = 0;
    for (int i = 0; i < 6000 && parts < 2; i++) {
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
        parts = count_parts(out, &tmpf);
    }
    kill(pid, SIGKILL);
    int st;
    waitpid(pid, &st, 0);
    parts = count_parts(out, &tmpf);
    print_message("[ extract  ] killed with %d finished part(s) and %d temporary file(s) on disk\n", parts, tmpf);
    assert_true(parts >= 2);
    assert_true(parts < 8); /* it really was killed half way */
    /* every part on disk is complete and readable */
    rows r;
    read_rows(out, &r);
    assert_int_equal(r.n, 3 * parts);
    free_rows(&r);
    char succ[600];
    snprintf(succ, sizeof succ, "%s/_SUCCESS", out);
    assert_int_not_equal(access(succ, F_OK), 0);
    /* the same command again resumes */
    assert_int_equal(run("resume", args), 0);
    char *err = slurp("resume", "err");
    assert_non_null(strstr(err, "resumed"));
    free(err);
    read_rows(out, &r);
    assert_int_equal(r.n, 24);
    for (int i = 0; i < r.n; i++)
        for (int j = i + 1; j < r.n; j++)
            assert_int_not_equal(strcmp(r.path[i], r.path[j]), 0);
    free_rows(&r);
    assert_int_equal(count_parts(out, &tmpf), 8);
    assert_int_equal(tmpf, 0); /* stale temporary files of the killed run are gone */
    assert_int_equal(access(succ, F_OK), 0);
}

static void test_usage_errors(void **s)
{
    (void)s;
    const char *a1[] = {"--shard", "4/3", "x.jpg", NULL};
    assert_int_equal(run("usage1", a1), 2);
    char *err = slurp("usage1", "err");
    assert_non_null(strstr(err, "--shard"));
    free(err);
    const char *a2[] = {"--weights", "/nonexistent.fnw", "x.jpg", NULL};
    assert_int_equal(run("usage2", a2), 2);
    err = slurp("usage2", "err");
    assert_non_null(strstr(err, "/nonexistent.fnw"));
    free(err);
    const char *a3[] = {"--help", NULL};
    assert_int_equal(run("usage3", a3), 0);
    char *out = slurp("usage3", "out");
    assert_non_null(strstr(out, "--shard K/N"));
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_usage_errors),   cmocka_unit_test(test_golden_dataset),
        cmocka_unit_test(test_bad_inputs),     cmocka_unit_test(test_sharding),
        cmocka_unit_test(test_kill_and_resume),
    };
    return cmocka_run_group_tests_name("extract", tests, setup, teardown);
}
