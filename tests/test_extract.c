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
#include <stdarg.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <limits.h>
#include <math.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char tool[4096], pca_tool[4096];
static char tmp[256];
static char mini[4096];           /* the repository's 24 real images, 8 classes x 3 */
static const char *spawn_cwd;     /* working folder of the next spawned tool (NULL: ours) */

static const char *golden_rel[8] = {"Banana/108_100.jpg",     "Apple Braeburn/321_100.jpg", "Lemon/321_100.jpg",
                                    "Pineapple/15_100.jpg",   "Strawberry/321_100.jpg",     "Cocos/0_100.jpg",
                                    "Kiwi/39_100.jpg",        "Tomato 1/186_100.jpg"};

static int setup(void **s)
{
    (void)s;
    const char *b = getenv("FRUITNET_BUILD");
    snprintf(tool, sizeof tool, "%s/fruitnet-extract", b && *b ? b : "build");
    snprintf(pca_tool, sizeof pca_tool, "%s/fruitnet-pca", b && *b ? b : "build");
    char abs_[4096];
    if (realpath(tool, abs_)) /* spawned from other folders too */
        snprintf(tool, sizeof tool, "%s", abs_);
    if (realpath(pca_tool, abs_))
        snprintf(pca_tool, sizeof pca_tool, "%s", abs_);
    if (!realpath("tests/data/fruits-360-mini/images", mini))
        return -1; /* part of the repository: must exist */
    if (!tu_mkdtemp(tmp, sizeof tmp, "extract"))
        return -1;
    return 0;
}

static int teardown(void **s)
{
    (void)s;
    return tu_rm_rf(tmp);
}

/* Start the tool with args (NULL-terminated), stdout/stderr to files in tmp. */
static pid_t spawn(const char *tag, const char **args)
{
    const char *argv[64];
    int n = 0;
    argv[n++] = args[0] && !strcmp(args[0], "@pca") ? pca_tool : tool;
    for (int i = argv[0] == pca_tool; args[i]; i++)
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
        if (spawn_cwd && chdir(spawn_cwd) != 0)
            _exit(126);
        execv(argv[0], (char *const *)argv);
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
    tu_rows r;
    tu_read_rows(out, &r);
    assert_int_equal(r.n, 8);
    float *ref = tu_read_f32(tu_path(g, "img8/all8.avgpool.f32"), 8 * 2048);
    assert_non_null(ref);
    double worst = 1;
    for (int i = 0; i < 8; i++) {
        int k = tu_find_row(&r, paths[i]);
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
    tu_free_rows(&r);
    for (int i = 0; i < 8; i++)
        free((void *)paths[i]);
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
    tu_write(p, jpg, n);
    snprintf(p, sizeof p, "%s/good2.jpg", d);
    tu_write(p, jpg, n);
    snprintf(p, sizeof p, "%s/empty.jpg", d);
    tu_write(p, "", 0);
    snprintf(p, sizeof p, "%s/text.jpg", d);
    tu_write(p, "this is not an image\n", 21);
    snprintf(p, sizeof p, "%s/truncated.jpg", d);
    tu_write(p, jpg, 200);
    /* a PNG header declaring 60000 x 60000 */
    static const unsigned char huge[] = {0x89, 'P', 'N', 'G', 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13, 'I', 'H', 'D', 'R',
                                         0, 0, 0xea, 0x60, 0, 0, 0xea, 0x60, 8, 2, 0, 0, 0, 0, 0, 0, 0};
    snprintf(p, sizeof p, "%s/huge.png", d);
    tu_write(p, huge, sizeof huge);
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
    tu_rows r;
    tu_read_rows(out, &r);
    /* good1, good2 and perhaps the truncated JPEG (stb may decode a partial image) */
    int has_trunc = 0;
    for (int i = 0; i < r.n; i++)
        has_trunc += strstr(r.path[i], "truncated.jpg") != NULL;
    assert_int_equal(r.n, 2 + has_trunc);
    assert_int_equal(has_trunc, strstr(errs, "truncated.jpg") == NULL);
    assert_true(tu_find_row(&r, tu_path(d, "good1.jpg")) >= 0);
    assert_true(tu_find_row(&r, tu_path(d, "good2.jpg")) >= 0);
    assert_string_equal(r.label[0], "Mixed");
    free(errs);
    tu_free_rows(&r);
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
    tu_rows a, b;
    tu_read_rows(out, &a);
    tu_read_rows(one, &b);
    assert_int_equal(a.n, np);
    assert_int_equal(b.n, np);
    for (int i = 0; i < np; i++) {
        int ka = tu_find_row(&a, paths[i]), kb = tu_find_row(&b, paths[i]);
        assert_true(ka >= 0 && kb >= 0);
        for (int j = 0; j < a.n; j++) /* no duplicates */
            assert_true(j == ka || strcmp(a.path[j], paths[i]) != 0);
        /* the runs batch the images differently */
        assert_true(tu_max_abs(a.vec[ka], b.vec[kb], 2048) <= TU_BATCH_TOL);
    }
    tu_free_rows(&a);
    tu_free_rows(&b);
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
    /* every part on disk is complete and readable; the dataset is not committed */
    tu_rows r;
    tu_read_rows_ex(out, FN_DATASET_UNCOMMITTED, &r);
    assert_int_equal(r.n, 3 * parts);
    tu_free_rows(&r);
    char succ[600];
    snprintf(succ, sizeof succ, "%s/_SUCCESS", out);
    assert_int_not_equal(access(succ, F_OK), 0);
    /* the same command again resumes */
    assert_int_equal(run("resume", args), 0);
    char *err = slurp("resume", "err");
    assert_non_null(strstr(err, "resumed"));
    free(err);
    tu_read_rows(out, &r);
    assert_int_equal(r.n, 24);
    for (int i = 0; i < r.n; i++)
        for (int j = i + 1; j < r.n; j++)
            assert_int_not_equal(strcmp(r.path[i], r.path[j]), 0);
    tu_free_rows(&r);
    assert_int_equal(count_parts(out, &tmpf), 8);
    assert_int_equal(tmpf, 0); /* stale temporary files of the killed run are gone */
    assert_int_equal(access(succ, F_OK), 0);
}

/* ---------------------------------------------------------------- dataset protocol (issue 13) */

static void sh(const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    assert_int_equal(system(cmd), 0);
}

/* n images (copies of the repository's real ones, each its own file) under dir/<Class>/, 8 classes. */
static void make_set(const char *dir, int n)
{
    static const char *cls[8] = {"Apple Braeburn", "Banana", "Cocos", "Kiwi", "Lemon", "Pineapple", "Strawberry",
                                 "Tomato 1"};
    for (int i = 0; i < n; i++) {
        char src[4600], d[1024], dst[1200];
        DIR *dd = opendir(tu_path(mini, cls[i % 8]));
        assert_non_null(dd);
        struct dirent *e;
        int k = 0;
        while ((e = readdir(dd)))
            if (strstr(e->d_name, ".jpg") && k++ == (i / 8) % 3)
                break;
        assert_non_null(e);
        snprintf(src, sizeof src, "%s/%s/%s", mini, cls[i % 8], e->d_name);
        closedir(dd);
        snprintf(d, sizeof d, "%s/%s", dir, cls[i % 8]);
        mkdir(dir, 0777);
        mkdir(d, 0777);
        snprintf(dst, sizeof dst, "%s/%03d.jpg", d, i);
        tu_copy_file(src, dst);
    }
}

static int count_distinct(const tu_rows *r)
{
    int d = 0;
    for (int i = 0; i < r->n; i++) {
        int seen = 0;
        for (int j = 0; j < i && !seen; j++)
            seen = !strcmp(r->path[i], r->path[j]);
        d += !seen;
    }
    return d;
}

static int exists(const char *dir, const char *name) { return access(tu_path(dir, name), F_OK) == 0; }

/* --part-size 3 then --part-size 10 on the same 13 images: 13 rows, 13 distinct (was 20 rows). */
static void test_part_size_rerun(void **s)
{
    (void)s;
    const char *w = tu_weights_path();
    TU_REQUIRE(w);
    char in[512], out[512];
    snprintf(in, sizeof in, "%s/ps-in", tmp);
    snprintf(out, sizeof out, "%s/ps.parquet", tmp);
    make_set(in, 13);
    const char *a1[] = {"--weights", w, "-o", out, "--part-size", "3", in, NULL};
    assert_int_equal(run("ps1", a1), 0);
    const char *a2[] = {"--weights", w, "-o", out, "--part-size", "10", in, NULL};
    assert_int_equal(run("ps2", a2), 0);
    tu_rows r;
    tu_read_rows(out, &r);
    assert_int_equal(r.n, 13);
    assert_int_equal(count_distinct(&r), 13);
    tu_free_rows(&r);
    char *err = slurp("ps2", "err");
    assert_non_null(strstr(err, "part_size 3 -> 10")); /* and the tool says why it started clean */
    free(err);
    assert_false(exists(out, "part-00002.parquet"));
    /* removing a class folder between runs: no stale rows (was 13 rows, 9 distinct) */
    sh("rm -rf '%s/Banana'", in);
    assert_int_equal(run("ps3", a2), 0);
    tu_read_rows(out, &r);
    assert_int_equal(r.n, 11);
    assert_int_equal(count_distinct(&r), 11);
    for (int i = 0; i < r.n; i++)
        assert_null(strstr(r.path[i], "/Banana/"));
    tu_free_rows(&r);
}

/* --mirror: other features than the plain run's, recorded in the metadata; switching it between runs redoes
 * every part (mirrored and plain rows never mix), the same option again resumes them all. */
static void test_mirror_rerun(void **s)
{
    (void)s;
    const char *w = tu_weights_path();
    TU_REQUIRE(w);
    char in[512], out[512], part[600];
    snprintf(in, sizeof in, "%s/mi-in", tmp);
    snprintf(out, sizeof out, "%s/mi.parquet", tmp);
    make_set(in, 3);
    const char *plain[] = {"--weights", w, "-o", out, "--part-size", "1", in, NULL};
    const char *mirror[] = {"--weights", w, "-o", out, "--part-size", "1", "--mirror", in, NULL};
    assert_int_equal(run("mi1", plain), 0);
    tu_rows a, b;
    tu_read_rows(out, &a);
    assert_int_equal(a.n, 3);
    assert_int_equal(run("mi2", mirror), 0);
    char *err = slurp("mi2", "err");
    assert_non_null(strstr(err, "mirror 0 -> 1")); /* the tool says why it started clean */
    assert_null(strstr(err, "resuming"));
    free(err);
    tu_read_rows(out, &b);
    assert_int_equal(b.n, 3);
    for (int i = 0; i < 3; i++) {
        assert_string_equal(a.path[i], b.path[i]);
        double d = 0;
        for (int j = 0; j < 2048; j++)
            d = fmax(d, fabs((double)a.vec[i][j] - b.vec[i][j]));
        assert_true(d > 1e-3); /* every row recomputed from the mirrored image */
    }
    snprintf(part, sizeof part, "%s/part-00000.parquet", out);
    fn_parquet_reader *r;
    fn_error e;
    assert_int_equal(fn_parquet_reader_open(part, &r, &e), FN_OK);
    const char *pre = fn_parquet_reader_meta(r, "fruitnet.preprocessing");
    assert_non_null(pre);
    assert_non_null(strstr(pre, "mirror=left-right"));
    fn_parquet_reader_close(r);
    assert_int_equal(run("mi3", mirror), 0); /* the same options: everything kept */
    err = slurp("mi3", "err");
    assert_non_null(strstr(err, "already finished"));
    free(err);
    tu_rows c;
    tu_read_rows(out, &c);
    for (int i = 0; i < 3; i++)
        assert_memory_equal(c.vec[i], b.vec[i], 2048 * sizeof(float));
    tu_free_rows(&b), tu_free_rows(&c);
    assert_int_equal(run("mi4", plain), 0); /* back to plain: the plain features again, bit for bit */
    err = slurp("mi4", "err");
    assert_non_null(strstr(err, "mirror 1 -> 0"));
    free(err);
    tu_read_rows(out, &b);
    for (int i = 0; i < 3; i++)
        assert_memory_equal(a.vec[i], b.vec[i], 2048 * sizeof(float));
    tu_free_rows(&a), tu_free_rows(&b);
}

/* --shard 1/2, 2/2, then a plain run: 40 rows, 40 distinct (was 80); single-file shards refused. */
static void test_shards_then_plain(void **s)
{
    (void)s;
    const char *w = tu_weights_path();
    TU_REQUIRE(w);
    char in[512], out[512], one[512];
    snprintf(in, sizeof in, "%s/sh-in", tmp);
    snprintf(out, sizeof out, "%s/sh.parquet", tmp);
    snprintf(one, sizeof one, "%s/one.parquet", tmp);
    make_set(in, 40);
    const char *a1[] = {"--weights", w, "-o", out, "--shard", "1/2", "--part-size", "8", in, NULL};
    assert_int_equal(run("sh1", a1), 0);
    assert_false(exists(out, "_SUCCESS"));
    /* not committed: the reader refuses, fruitnet-pca too */
    char **files;
    int nf;
    fn_error e;
    assert_int_equal(fn_dataset_files(out, 0, &files, &nf, &e), FN_EFORMAT);
    assert_non_null(strstr(e.msg, "_SUCCESS"));
    const char *p1[] = {"@pca", "stats", "-i", out, "-o", tu_path(tmp, "x.stats"), NULL};
    assert_int_equal(run("pca1", p1), 2);
    char *err = slurp("pca1", "err");
    assert_non_null(strstr(err, "not committed"));
    free(err);
    const char *a2[] = {"--weights", w, "-o", out, "--shard", "2/2", "--part-size", "8", in, NULL};
    assert_int_equal(run("sh2", a2), 0);
    assert_true(exists(out, "_SUCCESS"));
    tu_rows r;
    tu_read_rows(out, &r);
    assert_int_equal(r.n, 40);
    assert_int_equal(count_distinct(&r), 40);
    tu_free_rows(&r);
    const char *a3[] = {"--weights", w, "-o", out, "--part-size", "16", in, NULL};
    assert_int_equal(run("sh3", a3), 0);
    tu_read_rows(out, &r);
    assert_int_equal(r.n, 40);
    assert_int_equal(count_distinct(&r), 40);
    tu_free_rows(&r);
    assert_false(exists(out, "part-00000-s00001of00002.parquet"));
    /* a part removed after the commit: the reader and fruitnet-pca say so */
    assert_int_equal(unlink(tu_path(out, "part-00001.parquet")), 0);
    assert_int_equal(fn_dataset_files(out, 0, &files, &nf, &e), FN_EFORMAT);
    assert_non_null(strstr(e.msg, "part-00001.parquet"));
    assert_non_null(strstr(e.msg, "missing"));
    const char *p2[] = {"@pca", "-i", out, "-o", tu_path(tmp, "pca-out"), NULL};
    assert_int_equal(run("pca2", p2), 2);
    err = slurp("pca2", "err");
    assert_non_null(strstr(err, "missing"));
    free(err);
    /* --single-file with shards: refused, nothing written (was: 24 of 40 rows, exit 0) */
    const char *a4[] = {"--weights", w, "-o", one, "--single-file", "--shard", "1/2", in, NULL};
    assert_int_equal(run("sf", a4), 2);
    err = slurp("sf", "err");
    assert_non_null(strstr(err, "--single-file"));
    free(err);
    assert_int_not_equal(access(one, F_OK), 0);
}

/* _SUCCESS is removed when a run starts; a changed image is noticed on resume. */
static void test_success_cleared_and_changed_image(void **s)
{
    (void)s;
    const char *w = tu_weights_path();
    TU_REQUIRE(w);
    char in[512], out[512];
    snprintf(in, sizeof in, "%s/ch-in", tmp);
    snprintf(out, sizeof out, "%s/ch.parquet", tmp);
    make_set(in, 16);
    const char *a1[] = {"--weights", w, "-o", out, "--part-size", "2", "--batch", "2", "--threads", "1", in, NULL};
    assert_int_equal(run("ch1", a1), 0);
    tu_rows before;
    tu_read_rows(out, &before);
    assert_int_equal(before.n, 16);
    /* a.jpg gets b.jpg's bytes (another size, a later mtime) */
    char a[700], b[700];
    snprintf(a, sizeof a, "%s/Banana/001.jpg", in);
    snprintf(b, sizeof b, "%s/Kiwi/003.jpg", in);
    struct timespec ts = {0, 20 * 1000 * 1000};
    nanosleep(&ts, NULL);
    tu_copy_file(b, a);
    /* the re-run: killed once it has started, _SUCCESS must already be gone */
    pid_t pid = spawn("ch2", a1);
    int gone = 0;
    for (int i = 0; i < 3000 && !gone; i++) {
        nanosleep(&ts, NULL);
        gone = !exists(out, "_SUCCESS");
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    assert_true(gone);
    assert_false(exists(out, "_SUCCESS"));
    assert_int_equal(run("ch3", a1), 0);
    char *err = slurp("ch3", "err");
    assert_non_null(strstr(err, "resum"));
    free(err);
    tu_rows after;
    tu_read_rows(out, &after);
    assert_int_equal(after.n, 16);
    int ka = tu_find_row(&after, a), kb = tu_find_row(&after, b), k0 = tu_find_row(&before, a);
    assert_true(ka >= 0 && kb >= 0 && k0 >= 0);
    assert_true(tu_max_abs(after.vec[ka], after.vec[kb], 2048) <= TU_BATCH_TOL); /* the new content */
    assert_true(tu_max_abs(after.vec[ka], before.vec[k0], 2048) > 0.01);           /* not the old one */
    tu_free_rows(&before);
    tu_free_rows(&after);
}

/* --errors naming a device node or a FIFO: refused, left intact (as root the old code deleted it). */
static void test_errors_device_refused(void **s)
{
    (void)s;
    const char *w = tu_weights_path();
    TU_REQUIRE(w);
    char dev[512], fifo[512], out[512], img[4200];
    snprintf(dev, sizeof dev, "%s/null-dev", tmp);
    snprintf(fifo, sizeof fifo, "%s/errors-fifo", tmp);
    snprintf(out, sizeof out, "%s/dev.parquet", tmp);
    snprintf(img, sizeof img, "%s/Banana/108_100.jpg", mini);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    int have_dev = mknod(dev, S_IFCHR | 0666, makedev(1, 3)) == 0;
    if (!have_dev)
        print_message("[ extract  ] mknod needs root (%s): the device case runs as root in CI\n", strerror(errno));
    const char *targets[2] = {fifo, dev};
    for (int t = 0; t < 1 + have_dev; t++) {
        const char *args[] = {"--weights", w, "-o", out, "--errors", targets[t], img, NULL};
        assert_int_equal(run("dev", args), 2);
        char *err = slurp("dev", "err");
        assert_non_null(strstr(err, targets[t]));
        assert_non_null(strstr(err, "not a regular file"));
        free(err);
        struct stat st;
        assert_int_equal(lstat(targets[t], &st), 0);
        assert_true(t == 0 ? S_ISFIFO(st.st_mode) : S_ISCHR(st.st_mode));
    }
    /* a single-file output that is a FIFO: refused too */
    const char *a2[] = {"--weights", w, "--single-file", "-o", fifo, img, NULL};
    assert_int_equal(run("dev2", a2), 2);
    struct stat st;
    assert_int_equal(lstat(fifo, &st), 0);
    assert_true(S_ISFIFO(st.st_mode));
}

/* Paths longer than PATH_MAX, "." and "//" labels, one file by six spellings, a non-UTF-8 name. */
static void test_paths_and_labels(void **s)
{
    (void)s;
    const char *w = tu_weights_path();
    TU_REQUIRE(w);
    char root[512], out[512], img[4200];
    snprintf(root, sizeof root, "%s/names", tmp);
    snprintf(out, sizeof out, "%s/names.parquet", tmp);
    snprintf(img, sizeof img, "%s/Banana/108_100.jpg", mini);
    mkdir(root, 0777);
    /* a folder chain of 24 x 200-byte names (> 4800 bytes), the image at the bottom */
    int fd = open(root, O_RDONLY | O_DIRECTORY);
    char name[201];
    memset(name, 'd', 200);
    name[200] = 0;
    for (int i = 0; i < 24; i++) {
        name[0] = (char)('A' + i);
        assert_int_equal(mkdirat(fd, name, 0777), 0);
        int nfd = openat(fd, name, O_RDONLY | O_DIRECTORY);
        close(fd);
        fd = nfd;
        assert_true(fd >= 0);
    }
    size_t n;
    unsigned char *jpg = tu_read_file(img, &n);
    int ffd = openat(fd, "deep.jpg", O_WRONLY | O_CREAT, 0644);
    assert_int_equal(write(ffd, jpg, n), (ssize_t)n);
    close(ffd);
    close(fd);
    /* a Latin-1 name with a tab and a percent sign */
    char odd[700];
    snprintf(odd, sizeof odd, "%s/Caf\xe9/\xe9t\xe9\t100%%.jpg", root);
    char oddd[600];
    snprintf(oddd, sizeof oddd, "%s/Caf\xe9", root);
    mkdir(oddd, 0777);
    tu_write(odd, jpg, n);
    /* one file, six spellings: a//b, ./a, a/./b, absolute, a symlink, a hard link */
    char cls[600], f[700], link_[700], hard[700];
    snprintf(cls, sizeof cls, "%s/Six", root);
    mkdir(cls, 0777);
    snprintf(f, sizeof f, "%s/six.jpg", cls);
    tu_write(f, jpg, n);
    free(jpg);
    snprintf(link_, sizeof link_, "%s/link.jpg", tmp);
    snprintf(hard, sizeof hard, "%s/hard.jpg", tmp);
    assert_int_equal(symlink(f, link_), 0);
    assert_int_equal(link(f, hard), 0);
    const char *args[] = {"--weights", w, "-o", out, "names//Six//six.jpg", "./names/Six/six.jpg",
                          "names/./Six/six.jpg", f, "link.jpg", "hard.jpg", "names", NULL};
    spawn_cwd = tmp;
    int rc = run("names", args);
    spawn_cwd = NULL;
    char *err = slurp("names", "err");
    if (rc != 0)
        fail_msg("exit %d: %s", rc, err);
    assert_non_null(strstr(err, "second spelling"));
    free(err);
    tu_rows r;
    tu_read_rows(out, &r);
    assert_int_equal(r.n, 3); /* deep, odd, six */
    int deep = -1, six = -1, oddk = -1;
    for (int i = 0; i < r.n; i++) {
        if (strstr(r.path[i], "deep.jpg"))
            deep = i;
        else if (strstr(r.path[i], "six.jpg"))
            six = i;
        else
            oddk = i;
    }
    assert_true(deep >= 0 && six >= 0 && oddk >= 0);
    assert_true(strlen(r.path[deep]) > 4096);
    assert_int_equal(r.label[deep][0], 'X');
    assert_string_equal(r.path[six], f); /* the first spelling in byte order: the absolute one */
    assert_string_equal(r.label[six], "Six");
    /* the odd name: escaped, and unescaped it is the real bytes */
    assert_string_equal(r.path[oddk], "names/Caf%E9/%E9t%E9%09100%25.jpg");
    assert_string_equal(r.label[oddk], "Caf%E9");
    char raw[600];
    fn_unescape_path(r.path[oddk], raw, sizeof raw);
    assert_string_equal(raw, "names/Caf\xe9/\xe9t\xe9\t100%.jpg");
    tu_free_rows(&r);
    /* "." inside a class folder: the label is the folder's real name, not "." (nor "" for a//b) */
    char out2[512];
    snprintf(out2, sizeof out2, "%s/dot.parquet", tmp);
    const char *a2[] = {"--weights", w, "-o", out2, ".", NULL};
    spawn_cwd = cls;
    rc = run("dot", a2);
    spawn_cwd = NULL;
    assert_int_equal(rc, 0);
    tu_read_rows(out2, &r);
    assert_int_equal(r.n, 1);
    assert_string_equal(r.path[0], "six.jpg");
    assert_string_equal(r.label[0], "Six");
    tu_free_rows(&r);
}

/* A second writer of the same dataset at the same time is refused; the first one completes. */
static void test_concurrent_writer(void **s)
{
    (void)s;
    const char *w = tu_weights_path();
    TU_REQUIRE(w);
    char out[512];
    snprintf(out, sizeof out, "%s/conc.parquet", tmp);
    const char *a1[] = {"--weights", w, "-o", out, "--part-size", "4", "--threads", "1", mini, NULL};
    pid_t pid = spawn("conc1", a1);
    int started = 0;
    for (int i = 0; i < 3000 && !started; i++) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
        int tmpf = 0;
        started = count_parts(out, &tmpf) > 0 || tmpf > 0; /* the first writer is working */
    }
    assert_true(started);
    /* hold the first writer where it is (its lock stays held) while the second one tries: on a loaded machine
     * the first could otherwise finish before the second has even opened its model (seen in CI) */
    assert_int_equal(kill(pid, SIGSTOP), 0);
    int st;
    assert_int_equal(waitpid(pid, &st, WUNTRACED), pid); /* returns once it has stopped */
    assert_true(WIFSTOPPED(st));
    const char *a2[] = {"--weights", w, "-o", out, "--part-size", "6", mini, NULL};
    int rc2 = run("conc2", a2);
    kill(pid, SIGCONT);
    assert_int_equal(rc2, 2);
    char *err = slurp("conc2", "err");
    assert_non_null(strstr(err, "another run is writing"));
    free(err);
    waitpid(pid, &st, 0);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    tu_rows r;
    tu_read_rows(out, &r);
    assert_int_equal(r.n, 24);
    assert_int_equal(count_distinct(&r), 24);
    tu_free_rows(&r);
}

/* SIGKILL at random points (listing, mid-part, commit), then a re-run: exactly one row per input. */
static void test_kill_random(void **s)
{
    (void)s;
    const char *w = tu_weights_path();
    TU_REQUIRE(w);
    char in[512], out[512];
    snprintf(in, sizeof in, "%s/kr-in", tmp);
    snprintf(out, sizeof out, "%s/kr.parquet", tmp);
    make_set(in, 12);
    const char *a[] = {"--weights", w, "-o", out, "--part-size", "2", "--batch", "3", "--threads", "1", in, NULL};
    srand((unsigned)time(NULL));
    for (int k = 0; k < 4; k++) {
        pid_t pid = spawn("kr", a);
        struct timespec ts = {0, (long)(rand() % 1000) * 1000 * 1000 * (k + 1) / 2};
        nanosleep(&ts, NULL);
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        print_message("[ extract  ] SIGKILL after %ld ms\n", ts.tv_nsec / 1000000 + ts.tv_sec * 1000);
        tu_rows r;
        char **files;
        int nf;
        fn_error e;
        if (fn_dataset_files(out, FN_DATASET_UNCOMMITTED, &files, &nf, &e) == FN_OK) {
            fn_free_list(files, nf);
            tu_read_rows_ex(out, FN_DATASET_UNCOMMITTED, &r); /* whatever is on disk is readable */
            assert_int_equal(count_distinct(&r), r.n);
            tu_free_rows(&r);
        }
    }
    assert_int_equal(run("kr2", a), 0);
    tu_rows r;
    tu_read_rows(out, &r);
    assert_int_equal(r.n, 12);
    assert_int_equal(count_distinct(&r), 12);
    tu_free_rows(&r);
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
        cmocka_unit_test(test_part_size_rerun), cmocka_unit_test(test_mirror_rerun),
        cmocka_unit_test(test_shards_then_plain),
        cmocka_unit_test(test_success_cleared_and_changed_image), cmocka_unit_test(test_errors_device_refused),
        cmocka_unit_test(test_paths_and_labels), cmocka_unit_test(test_concurrent_writer),
        cmocka_unit_test(test_kill_random),
    };
    return cmocka_run_group_tests_name("extract", tests, setup, teardown);
}
