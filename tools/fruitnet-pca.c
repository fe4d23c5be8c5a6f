/* fruitnet-pca — PCA of fruitnet features: streaming statistics, mergeable across machines, eigen-decomposition,
 * projection, and plots. See --help. Options and messages only: the work is the library's (fn_pca_*). */
#include "fruitnet.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum { EXIT_OK = 0, EXIT_USAGE = 1, EXIT_FATAL = 2 };

static void usage(FILE *f)
{
    fprintf(f,
"usage: fruitnet-pca -i FEATURES -o OUTDIR [--variance F | --k N]    (fit + transform + plots)\n"
"       fruitnet-pca stats -i FEATURES -o PART.stats                   (partial statistics)\n"
"       fruitnet-pca merge -o ALL.stats PART.stats...                  (combine partials)\n"
"       fruitnet-pca merge -o OUTDIR/ PART.stats... [--variance F | --k N]  (combine + fit)\n"
"       fruitnet-pca fit (-i FEATURES | --stats ALL.stats) -o OUTDIR [--variance F | --k N]\n"
"       fruitnet-pca transform --model OUTDIR/model.fnpca -i FEATURES -o pcs.parquet\n"
"\n"
"FEATURES is a Parquet file or dataset folder written by fruitnet-extract\n"
"(path, label, features LIST<FLOAT>). Statistics are computed in one streaming\n"
"pass in double precision (memory independent of the number of rows) and can\n"
"be computed per shard and merged, so N machines can each summarise their part.\n"
"\n"
"Outputs of the one-shot form and of fit, in OUTDIR:\n"
"  model.fnpca              mean, components, eigenvalues (for transform)\n"
"  explained_variance.csv   component,eigenvalue,ratio,cumulative (all components)\n"
"  scree.svg                explained variance of the first max(2k,100) components,\n"
"                           cumulative curve, threshold line, marker at k\n"
"  pcs.parquet              path, label, pcs LIST<FLOAT> (one-shot form only)\n"
"  scatter.svg              PC1 vs PC2, one colour per label (one-shot form only)\n"
"\n"
"Options\n"
"  --variance F   keep the fewest components explaining at least F of the\n"
"                 variance (default 0.80)\n"
"  --k N          keep exactly N components instead\n"
"  --threads N    threads for the statistics and the fit (default: all CPUs)\n"
"  --codec C      gzip (default) or none, for pcs.parquet\n"
"  -q, --quiet    no progress and no summary\n"
"  -h, --help     this help;  -V, --version  version\n"
"\n"
"Exit status: 0 ok, 1 usage error, 2 fatal error (unreadable input, bad data).\n"
"\n"
"Examples\n"
"  fruitnet-pca -i out/features.parquet -o out/pca\n"
"  fruitnet-pca stats -i part1.parquet -o p1.stats   # on each machine\n"
"  fruitnet-pca merge -o all.stats p1.stats p2.stats && fruitnet-pca fit --stats all.stats -o pca\n"
"  fruitnet-pca merge -o pca/ p1.stats p2.stats --k 50   # merge and fit in one step\n"
"  fruitnet-pca transform --model pca/model.fnpca -i features.parquet -o pcs.parquet\n");
}

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("fruitnet-pca: ", stderr), vfprintf(stderr, fmt, ap), fputc('\n', stderr);
    va_end(ap);
    exit(EXIT_FATAL);
}

typedef struct opts {
    const char *in, *out, *stats_in, *model;
    double variance;
    int k, threads, quiet;
    fn_codec codec;
} opts;

static void on_progress(void *ctx, int64_t done, int64_t total)
{
    (void)ctx;
    fprintf(stderr, "\rreading %lld/%lld rows", (long long)done, (long long)total);
}

static fn_pca_stats *compute_stats(const opts *o)
{
    fn_error e;
    fn_pca_stats *out;
    int bar = !o->quiet && isatty(2);
    if (fn_pca_stats_from_dataset(o->in, 0, o->threads, &out, bar ? on_progress : NULL, NULL, &e) != FN_OK)
        die("%s", e.msg);
    if (bar)
        fprintf(stderr, "\r\033[K");
    return out;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void mkdir_out(const char *dir)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s", dir);
    for (char *p = tmp + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            mkdir(tmp, 0777);
            *p = '/';
        }
    if (mkdir(tmp, 0777) != 0 && errno != EEXIST)
        die("%s: cannot create folder: %s", dir, strerror(errno));
}

static const char *path_join(const char *dir, const char *name)
{
    static char buf[4096];
    snprintf(buf, sizeof buf, "%s/%s", dir, name);
    return buf;
}

/* Fit, save model + variance files. */
static fn_pca_model *do_fit(const opts *o, const fn_pca_stats *st)
{
    fn_error e;
    fn_pca_model *m;
    double t0 = now_s();
    double *ev = malloc((size_t)fn_pca_stats_dim(st) * sizeof(double));
    if (!ev)
        die("out of memory");
    if (fn_pca_fit_ex(st, o->k, o->variance, o->threads, &m, ev, &e) != FN_OK)
        die("%s", e.msg);
    int k = fn_pca_model_k(m);
    double total = fn_pca_model_total_var(m);
    mkdir_out(o->out);
    if (fn_pca_model_save(m, path_join(o->out, "model.fnpca"), &e) != FN_OK)
        die("%s", e.msg);
    double v = o->variance;
    if (o->k) { /* report the variance the k components reach */
        double cum = 0;
        for (int i = 0; i < k; i++)
            cum += fn_pca_model_eigvals(m)[i];
        v = cum / total;
    }
    if (fn_pca_write_variance(o->out, ev, fn_pca_stats_dim(st), total, k, v, &e) != FN_OK)
        die("%s", e.msg);
    free(ev);
    if (!o->quiet)
        fprintf(stderr, "fruitnet-pca: fitted %lld rows x %d dims in %.1f s\n", (long long)fn_pca_stats_rows(st),
                fn_pca_stats_dim(st),
                now_s() - t0);
    if (o->k)
        printf("%d principal components explain %.2f%% of the total variance\n", k, 100 * v);
    else
        printf("%d principal components explain at least %g%% of the total variance\n", k, 100 * o->variance);
    return m;
}

static void do_transform(const opts *o, const fn_pca_model *m, const char *out_parquet, int scatter)
{
    fn_error e;
    int bar = !o->quiet && isatty(2);
    if (fn_pca_transform_dataset(m, o->in, 0, out_parquet, o->codec, scatter ? o->out : NULL,
                                 bar ? on_progress : NULL, NULL, &e) != FN_OK)
        die("%s", e.msg);
    if (bar)
        fprintf(stderr, "\r\033[K");
}

int main(int argc, char **argv)
{
    opts o = {.variance = 0.80, .codec = FN_CODEC_GZIP};
    const char *cmd = NULL;
    static const char *pos[4096];
    if (argc > 4096) {
        fprintf(stderr, "fruitnet-pca: too many arguments\n");
        return EXIT_USAGE;
    }
    int npos = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
#define NEXT() (i + 1 < argc ? argv[++i] : (fprintf(stderr, "fruitnet-pca: %s needs a value\n", a), exit(EXIT_USAGE), ""))
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return EXIT_OK;
        } else if (!strcmp(a, "-V") || !strcmp(a, "--version")) {
            printf("fruitnet-pca %s\n", FRUITNET_VERSION);
            return EXIT_OK;
        } else if (!strcmp(a, "-i") || !strcmp(a, "--input")) o.in = NEXT();
        else if (!strcmp(a, "-o") || !strcmp(a, "--output")) o.out = NEXT();
        else if (!strcmp(a, "--stats")) o.stats_in = NEXT();
        else if (!strcmp(a, "--model")) o.model = NEXT();
        else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) o.quiet = 1;
        else if (!strcmp(a, "--variance")) {
            char *end;
            o.variance = strtod(NEXT(), &end);
            if (*end || !(o.variance > 0 && o.variance <= 1)) {
                fprintf(stderr, "fruitnet-pca: --variance must be in (0, 1]\n");
                return EXIT_USAGE;
            }
        } else if (!strcmp(a, "--k")) {
            o.k = atoi(NEXT());
            if (o.k < 1) {
                fprintf(stderr, "fruitnet-pca: --k must be >= 1\n");
                return EXIT_USAGE;
            }
        } else if (!strcmp(a, "--threads")) o.threads = atoi(NEXT());
        else if (!strcmp(a, "--codec")) {
            const char *c = NEXT();
            if (!strcmp(c, "gzip")) o.codec = FN_CODEC_GZIP;
            else if (!strcmp(c, "none")) o.codec = FN_CODEC_UNCOMPRESSED;
            else {
                fprintf(stderr, "fruitnet-pca: --codec must be gzip or none\n");
                return EXIT_USAGE;
            }
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "fruitnet-pca: unknown option %s (see --help)\n", a);
            return EXIT_USAGE;
        } else if (!cmd && npos == 0 && (!strcmp(a, "fit") || !strcmp(a, "transform") || !strcmp(a, "stats") ||
                                         !strcmp(a, "merge"))) {
            cmd = a;
        } else {
            pos[npos++] = a;
        }
#undef NEXT
    }
    fn_error e;
    if (!cmd) { /* one shot */
        if (!o.in || !o.out || npos) {
            usage(stderr);
            return EXIT_USAGE;
        }
        fn_pca_stats *st = compute_stats(&o);
        fn_pca_model *m = do_fit(&o, st);
        do_transform(&o, m, path_join(o.out, "pcs.parquet"), 1);
        if (!o.quiet)
            fprintf(stderr, "fruitnet-pca: wrote %s/{model.fnpca,explained_variance.csv,scree.svg,pcs.parquet,scatter.svg}\n",
                    o.out);
        fn_pca_model_free(m);
        fn_pca_stats_free(st);
    } else if (!strcmp(cmd, "stats")) {
        if (!o.in || !o.out)
            die("stats needs -i FEATURES and -o FILE");
        fn_pca_stats *st = compute_stats(&o);
        if (fn_pca_stats_save(st, o.out, &e) != FN_OK)
            die("%s", e.msg);
        if (!o.quiet)
            fprintf(stderr, "fruitnet-pca: %lld rows summarised in %s\n", (long long)fn_pca_stats_rows(st), o.out);
        fn_pca_stats_free(st);
    } else if (!strcmp(cmd, "merge")) {
        if (!o.out || npos < 1)
            die("merge needs -o FILE and at least one statistics file");
        fn_pca_stats *all;
        if (fn_pca_stats_load(pos[0], &all, &e) != FN_OK)
            die("%s", e.msg);
        for (int i = 1; i < npos; i++) {
            fn_pca_stats *s;
            if (fn_pca_stats_load(pos[i], &s, &e) != FN_OK || fn_pca_stats_merge(all, s, &e) != FN_OK)
                die("%s: %s", pos[i], e.msg);
            fn_pca_stats_free(s);
        }
        struct stat sbuf_;
        size_t ol = strlen(o.out);
        if ((stat(o.out, &sbuf_) == 0 && S_ISDIR(sbuf_.st_mode)) || (ol && o.out[ol - 1] == '/')) {
            fn_pca_model_free(do_fit(&o, all)); /* -o DIR: fit the merged statistics directly */
        } else {
            if (fn_pca_stats_save(all, o.out, &e) != FN_OK)
                die("%s", e.msg);
            if (!o.quiet)
                fprintf(stderr, "fruitnet-pca: merged %d files, %lld rows -> %s\n", npos, (long long)fn_pca_stats_rows(all),
                        o.out);
        }
        fn_pca_stats_free(all);
    } else if (!strcmp(cmd, "fit")) {
        if ((!o.in && !o.stats_in) || !o.out)
            die("fit needs -i FEATURES or --stats FILE, and -o OUTDIR");
        fn_pca_stats *st = NULL;
        if (o.stats_in && fn_pca_stats_load(o.stats_in, &st, &e) != FN_OK)
            die("%s", e.msg);
        if (!o.stats_in)
            st = compute_stats(&o);
        fn_pca_model_free(do_fit(&o, st));
        fn_pca_stats_free(st);
    } else { /* transform */
        if (!o.model || !o.in || !o.out)
            die("transform needs --model FILE, -i FEATURES and -o OUT.parquet");
        fn_pca_model *m;
        if (fn_pca_model_load(o.model, &m, &e) != FN_OK)
            die("%s", e.msg);
        do_transform(&o, m, o.out, 0);
        fn_pca_model_free(m);
    }
    return EXIT_OK;
}
