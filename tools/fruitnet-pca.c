/*
 * fruitnet-pca — PCA of fruitnet features: streaming statistics, mergeable
 * across machines, eigen-decomposition, projection, and plots. See --help.
 */
#include "fruitnet.h"

#include <errno.h>
#include <math.h>
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
    fputs("fruitnet-pca: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(EXIT_FATAL);
}

typedef struct opts {
    const char *in, *out, *stats_in, *model;
    double variance;
    int k, threads, quiet;
    fn_codec codec;
} opts;

static int show_progress(const opts *o) { return !o->quiet && isatty(2); }

/* Row callback over every row of a features file or dataset. */
typedef int (*row_fn)(void *ctx, const fn_parquet_row *row);

static int64_t for_each_row(const char *in, row_fn fn, void *ctx, const opts *o)
{
    char **files;
    int nf;
    fn_error e;
    if (fn_parquet_dataset_files(in, &files, &nf, &e) != FN_OK)
        die("%s", e.msg);
    if (nf == 0)
        die("%s: no .parquet files found", in);
    int64_t rows = 0, total = 0;
    for (int f = 0; f < nf; f++) { /* count for progress */
        fn_parquet_reader *r;
        if (fn_parquet_reader_open(files[f], &r, &e) != FN_OK)
            die("%s", e.msg);
        total += fn_parquet_reader_rows(r);
        fn_parquet_reader_close(r);
    }
    for (int f = 0; f < nf; f++) {
        fn_parquet_reader *r;
        if (fn_parquet_reader_open(files[f], &r, &e) != FN_OK)
            die("%s", e.msg);
        fn_parquet_row row;
        int rc;
        while ((rc = fn_parquet_reader_next(r, &row, &e)) == 1) {
            if (fn(ctx, &row) != 0)
                die("%s: row %lld (%s): vector has %d values, expected the same length as the first row",
                    files[f], (long long)rows, row.path, row.n);
            rows++;
            if (show_progress(o) && rows % 256 == 0)
                fprintf(stderr, "\rreading %lld/%lld rows", (long long)rows, (long long)total);
        }
        if (rc < 0)
            die("%s", e.msg);
        fn_parquet_reader_close(r);
    }
    if (show_progress(o))
        fprintf(stderr, "\r\033[K");
    fn_free_list(files, nf);
    return rows;
}

/* ---------------------------------------------------------------- statistics */

typedef struct stats_ctx {
    fn_pca_stats s;
    int dim, threads;
    float *buf;
    int nbuf;
    const char *in;
} stats_ctx;

#define STATS_BATCH 1024

static void stats_flush(stats_ctx *c)
{
    fn_error e;
    if (c->nbuf && fn_pca_stats_add(&c->s, c->buf, c->nbuf, c->threads, &e) != FN_OK)
        die("%s: %s", c->in, e.msg);
    c->nbuf = 0;
}

static int stats_row(void *ctx, const fn_parquet_row *row)
{
    stats_ctx *c = ctx;
    fn_error e;
    if (c->dim == 0) {
        if (row->n < 1)
            return -1;
        c->dim = row->n;
        if (fn_pca_stats_init(&c->s, c->dim, &e) != FN_OK)
            die("%s", e.msg);
        c->buf = malloc((size_t)STATS_BATCH * c->dim * sizeof(float));
        if (!c->buf)
            die("out of memory");
    }
    if (row->n != c->dim)
        return -1;
    memcpy(c->buf + (size_t)c->nbuf * c->dim, row->vec, (size_t)c->dim * sizeof(float));
    if (++c->nbuf == STATS_BATCH)
        stats_flush(c);
    return 0;
}

static void compute_stats(const opts *o, fn_pca_stats *out)
{
    stats_ctx c = {.threads = o->threads, .in = o->in};
    int64_t rows = for_each_row(o->in, stats_row, &c, o);
    if (rows == 0)
        die("%s: no rows", o->in);
    stats_flush(&c);
    free(c.buf);
    *out = c.s;
}

/* ---------------------------------------------------------------- outputs */

static void write_text_atomic(const char *path, const char *text, size_t n)
{
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f)
        die("%s: cannot create: %s", path, strerror(errno));
    if (fwrite(text, 1, n, f) != n || fflush(f) != 0 || fsync(fileno(f)) != 0) {
        fclose(f);
        unlink(tmp);
        die("%s: write failed: %s", path, strerror(errno));
    }
    if (fclose(f) != 0 || rename(tmp, path) != 0) {
        unlink(tmp);
        die("%s: cannot finish writing: %s", path, strerror(errno));
    }
}

typedef struct sbuf {
    char *s;
    size_t n, cap;
} sbuf;

static void sb(sbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char tmp[1024];
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n >= sizeof tmp)
        n = sizeof tmp - 1;
    if (b->n + (size_t)n + 1 > b->cap) {
        b->cap = (b->cap + (size_t)n + 1) * 2;
        b->s = realloc(b->s, b->cap);
        if (!b->s)
            die("out of memory");
    }
    memcpy(b->s + b->n, tmp, (size_t)n + 1);
    b->n += (size_t)n;
}

static void xml_escape(sbuf *b, const char *s)
{
    for (; *s; s++) {
        if (*s == '<') sb(b, "&lt;");
        else if (*s == '>') sb(b, "&gt;");
        else if (*s == '&') sb(b, "&amp;");
        else if (*s == '"') sb(b, "&quot;");
        else sb(b, "%c", *s);
    }
}

static const char *path_join(const char *dir, const char *name)
{
    static char buf[4][4096];
    static int k;
    char *b = buf[k++ & 3];
    snprintf(b, 4096, "%s/%s", dir, name);
    return b;
}

/* explained_variance.csv (every component) and scree.svg (the first max(2k, 100)) from the full
 * spectrum ev[dim] (descending) and the total variance (trace). */
static void write_variance(const char *dir, const double *ev, int dim, double total, int k, double variance)
{
    sbuf c = {0};
    double cum = 0;
    sb(&c, "component,eigenvalue,ratio,cumulative\n");
    for (int i = 0; i < dim; i++) {
        cum += ev[i];
        sb(&c, "%d,%.17g,%.17g,%.17g\n", i + 1, ev[i], ev[i] / total, cum / total);
    }
    write_text_atomic(path_join(dir, "explained_variance.csv"), c.s, c.n);
    free(c.s);

    /* scree: bars (ratio, left axis) and the cumulative curve (right axis) */
    int n = 2 * k > 100 ? 2 * k : 100;
    if (n > dim)
        n = dim;
    const double W = 900, H = 480, L = 70, R = 70, T = 50, B = 60, pw = W - L - R, ph = H - T - B;
    double maxr = ev[0] / total;
    double ytop = ceil(maxr * 20) / 20;
    if (ytop <= 0)
        ytop = 0.05;
    sbuf s = {0};
    sb(&s, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" font-family=\"sans-serif\" "
           "font-size=\"12\">\n<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n", W, H);
    sb(&s, "<text x=\"%.0f\" y=\"24\" text-anchor=\"middle\" font-size=\"16\">Explained variance by principal "
           "component (%d components reach %.0f%%)</text>\n", W / 2, k, variance * 100);
    double bw = pw / n;
    for (int i = 0; i < n; i++) {
        double r = ev[i] / total, h = r / ytop * ph;
        sb(&s, "<rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" fill=\"%s\"/>\n", L + i * bw + bw * 0.1,
           T + ph - h, bw * 0.8, h, i < k ? "#4878cf" : "#a9bfe8");
    }
    cum = 0;
    sb(&s, "<polyline fill=\"none\" stroke=\"#d65f5f\" stroke-width=\"2\" points=\"");
    for (int i = 0; i < n; i++) {
        cum += ev[i] / total;
        sb(&s, "%.2f,%.2f ", L + (i + 0.5) * bw, T + ph - cum * ph);
    }
    sb(&s, "\"/>\n");
    double ty = T + ph - variance * ph;
    sb(&s, "<line x1=\"%.0f\" y1=\"%.2f\" x2=\"%.0f\" y2=\"%.2f\" stroke=\"#333\" stroke-dasharray=\"6,4\"/>\n", L, ty,
       L + pw, ty);
    sb(&s, "<text x=\"%.0f\" y=\"%.2f\" font-size=\"11\">%.0f%% threshold</text>\n", L + 4, ty - 4, variance * 100);
    double kx = L + (k - 0.5) * bw;
    sb(&s, "<line x1=\"%.2f\" y1=\"%.0f\" x2=\"%.2f\" y2=\"%.0f\" stroke=\"#2a2\" stroke-width=\"1.5\"/>\n", kx, T, kx,
       T + ph);
    sb(&s, "<text x=\"%.2f\" y=\"%.0f\" fill=\"#2a2\" font-size=\"11\">k = %d</text>\n", kx + 4, T + 12, k);
    /* axes */
    sb(&s, "<line x1=\"%.0f\" y1=\"%.0f\" x2=\"%.0f\" y2=\"%.0f\" stroke=\"black\"/>\n", L, T + ph, L + pw, T + ph);
    sb(&s, "<line x1=\"%.0f\" y1=\"%.0f\" x2=\"%.0f\" y2=\"%.0f\" stroke=\"black\"/>\n", L, T, L, T + ph);
    sb(&s, "<line x1=\"%.0f\" y1=\"%.0f\" x2=\"%.0f\" y2=\"%.0f\" stroke=\"#d65f5f\"/>\n", L + pw, T, L + pw, T + ph);
    for (int t = 0; t <= 5; t++) {
        double v = ytop * t / 5, y = T + ph - ph * t / 5;
        sb(&s, "<text x=\"%.0f\" y=\"%.1f\" text-anchor=\"end\">%.0f%%</text>\n", L - 6, y + 4, v * 100);
        sb(&s, "<text x=\"%.0f\" y=\"%.1f\" fill=\"#d65f5f\">%.0f%%</text>\n", L + pw + 6, y + 4, 20.0 * t);
    }
    int step = n <= 20 ? 1 : n <= 60 ? 5 : n <= 150 ? 10 : 50;
    for (int i = step; i <= n; i += step)
        sb(&s, "<text x=\"%.2f\" y=\"%.0f\" text-anchor=\"middle\">%d</text>\n", L + (i - 0.5) * bw, T + ph + 16, i);
    sb(&s, "<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"middle\">principal component</text>\n", L + pw / 2, H - 18);
    sb(&s, "<text transform=\"translate(18,%.0f) rotate(-90)\" text-anchor=\"middle\">explained variance (bars)</text>\n",
       T + ph / 2);
    sb(&s, "<text transform=\"translate(%.0f,%.0f) rotate(90)\" text-anchor=\"middle\" fill=\"#d65f5f\">cumulative "
           "(curve)</text>\n", W - 16, T + ph / 2);
    sb(&s, "</svg>\n");
    write_text_atomic(path_join(dir, "scree.svg"), s.s, s.n);
    free(s.s);
}

/* ---------------------------------------------------------------- transform */

typedef struct label_set {
    char **name;
    int n, cap;
} label_set;

static int label_index(label_set *ls, const char *l)
{
    for (int i = 0; i < ls->n; i++)
        if (!strcmp(ls->name[i], l))
            return i;
    if (ls->n == ls->cap) {
        ls->cap = ls->cap ? 2 * ls->cap : 64;
        ls->name = realloc(ls->name, (size_t)ls->cap * sizeof(char *));
        if (!ls->name)
            die("out of memory");
    }
    ls->name[ls->n] = strdup(l);
    return ls->n++;
}

typedef struct xf_ctx {
    const fn_pca_model *m;
    fn_parquet_writer *w;
    float *pcs;
    /* for the scatter plot */
    float *xy;
    int *lab;
    int64_t n, cap;
    label_set labels;
} xf_ctx;

static int xf_row(void *ctx, const fn_parquet_row *row)
{
    xf_ctx *c = ctx;
    fn_error e;
    if (row->n != c->m->dim)
        return -1;
    fn_pca_transform(c->m, row->vec, c->pcs);
    if (c->w && fn_parquet_writer_add(c->w, row->path, row->label, c->pcs, c->m->k, &e) != FN_OK)
        die("%s", e.msg);
    if (c->n == c->cap) {
        c->cap = c->cap ? 2 * c->cap : 4096;
        c->xy = realloc(c->xy, (size_t)c->cap * 2 * sizeof(float));
        c->lab = realloc(c->lab, (size_t)c->cap * sizeof(int));
        if (!c->xy || !c->lab)
            die("out of memory");
    }
    c->xy[c->n * 2] = c->pcs[0];
    c->xy[c->n * 2 + 1] = c->m->k > 1 ? c->pcs[1] : 0;
    c->lab[c->n] = label_index(&c->labels, row->label);
    c->n++;
    return 0;
}

static void colour(int i, int n, char *out)
{
    /* golden-angle hues, three lightness levels: distinct for 120+ classes */
    double h = fmod(i * 137.508, 360.0), l = (i % 3 == 0) ? 0.42 : (i % 3 == 1 ? 0.58 : 0.32), s = 0.75;
    (void)n;
    double c = (1 - fabs(2 * l - 1)) * s, x = c * (1 - fabs(fmod(h / 60.0, 2) - 1)), m = l - c / 2, r, g, b;
    if (h < 60) r = c, g = x, b = 0;
    else if (h < 120) r = x, g = c, b = 0;
    else if (h < 180) r = 0, g = c, b = x;
    else if (h < 240) r = 0, g = x, b = c;
    else if (h < 300) r = x, g = 0, b = c;
    else r = c, g = 0, b = x;
    snprintf(out, 8, "#%02x%02x%02x", (int)((r + m) * 255), (int)((g + m) * 255), (int)((b + m) * 255));
}

static void write_scatter(const char *dir, const xf_ctx *c, const fn_pca_model *m)
{
    int nl = c->labels.n, cols = nl <= 30 ? 1 : nl <= 60 ? 2 : nl <= 120 ? 4 : 6;
    int rows_per_col = (nl + cols - 1) / cols;
    const double PW = 640, PH = 640, L = 70, T = 50, B = 60, colw = 150, lh = 13;
    double legend_h = rows_per_col * lh + 40;
    double W = L + PW + 30 + cols * colw, H = T + (PH > legend_h ? PH : legend_h) + B;
    float xmin = 1e30f, xmax = -1e30f, ymin = 1e30f, ymax = -1e30f;
    for (int64_t i = 0; i < c->n; i++) {
        float x = c->xy[i * 2], y = c->xy[i * 2 + 1];
        xmin = x < xmin ? x : xmin, xmax = x > xmax ? x : xmax;
        ymin = y < ymin ? y : ymin, ymax = y > ymax ? y : ymax;
    }
    if (!(xmax > xmin))
        xmin -= 1, xmax += 1;
    if (!(ymax > ymin))
        ymin -= 1, ymax += 1;
    double dx = (xmax - xmin) * 0.05, dy = (ymax - ymin) * 0.05;
    xmin -= dx, xmax += dx, ymin -= dy, ymax += dy;
    sbuf s = {0};
    sb(&s, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" font-family=\"sans-serif\" "
           "font-size=\"11\">\n<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n", W, H);
    sb(&s, "<text x=\"%.0f\" y=\"26\" text-anchor=\"middle\" font-size=\"16\">Images on the first two principal "
           "components (%lld images, %d labels)</text>\n", L + PW / 2, (long long)c->n, nl);
    sb(&s, "<rect x=\"%.0f\" y=\"%.0f\" width=\"%.0f\" height=\"%.0f\" fill=\"none\" stroke=\"black\"/>\n", L, T, PW,
       PH);
    for (int t = 0; t <= 5; t++) {
        double vx = xmin + (xmax - xmin) * t / 5, vy = ymin + (ymax - ymin) * t / 5;
        double px = L + PW * t / 5, py = T + PH - PH * t / 5;
        sb(&s, "<line x1=\"%.1f\" y1=\"%.0f\" x2=\"%.1f\" y2=\"%.0f\" stroke=\"black\"/>", px, T + PH, px, T + PH + 5);
        sb(&s, "<text x=\"%.1f\" y=\"%.0f\" text-anchor=\"middle\">%.1f</text>\n", px, T + PH + 18, vx);
        sb(&s, "<line x1=\"%.0f\" y1=\"%.1f\" x2=\"%.0f\" y2=\"%.1f\" stroke=\"black\"/>", L - 5, py, L, py);
        sb(&s, "<text x=\"%.0f\" y=\"%.1f\" text-anchor=\"end\">%.1f</text>\n", L - 8, py + 4, vy);
    }
    sb(&s, "<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"middle\">PC1 (%.1f%% of variance)</text>\n", L + PW / 2,
       T + PH + 40, 100 * m->eigvals[0] / m->total_var);
    sb(&s, "<text transform=\"translate(20,%.0f) rotate(-90)\" text-anchor=\"middle\">PC2 (%.1f%% of variance)</text>\n",
       T + PH / 2, m->k > 1 ? 100 * m->eigvals[1] / m->total_var : 0.0);
    char col[8];
    for (int64_t i = 0; i < c->n; i++) {
        colour(c->lab[i], nl, col);
        double px = L + (c->xy[i * 2] - xmin) / (xmax - xmin) * PW;
        double py = T + PH - (c->xy[i * 2 + 1] - ymin) / (ymax - ymin) * PH;
        sb(&s, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"2.6\" fill=\"%s\" fill-opacity=\"0.8\"><title>", px, py, col);
        xml_escape(&s, c->labels.name[c->lab[i]]);
        sb(&s, "</title></circle>\n");
    }
    double lx = L + PW + 30;
    sb(&s, "<text x=\"%.0f\" y=\"%.0f\" font-size=\"13\">label</text>\n", lx, T + 4);
    for (int i = 0; i < nl; i++) {
        int cc = i / rows_per_col, rr = i % rows_per_col;
        colour(i, nl, col);
        double x = lx + cc * colw, y = T + 20 + rr * lh;
        sb(&s, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"4\" fill=\"%s\"/><text x=\"%.1f\" y=\"%.1f\">", x + 4, y - 4, col,
           x + 12, y);
        xml_escape(&s, c->labels.name[i]);
        sb(&s, "</text>\n");
    }
    sb(&s, "</svg>\n");
    write_text_atomic(path_join(dir, "scatter.svg"), s.s, s.n);
    free(s.s);
}

/* ---------------------------------------------------------------- main */

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

/* Fit, save model + variance files; returns the model. */
static void do_fit(const opts *o, fn_pca_stats *st, fn_pca_model *m)
{
    fn_error e;
    double t0 = now_s();
    double *ev = malloc((size_t)st->dim * sizeof(double));
    if (!ev)
        die("out of memory");
    if (fn_pca_fit_ex(st, o->k, o->variance, o->threads, m, ev, &e) != FN_OK)
        die("%s", e.msg);
    int k = m->k;
    mkdir_out(o->out);
    if (fn_pca_model_save(m, path_join(o->out, "model.fnpca"), &e) != FN_OK)
        die("%s", e.msg);
    double v = o->variance;
    if (o->k) { /* report the variance the k components reach */
        double cum = 0;
        for (int i = 0; i < k; i++)
            cum += m->eigvals[i];
        v = cum / m->total_var;
    }
    write_variance(o->out, ev, st->dim, m->total_var, k, v);
    free(ev);
    if (!o->quiet)
        fprintf(stderr, "fruitnet-pca: fitted %lld rows x %d dims in %.1f s\n", (long long)st->n, st->dim,
                now_s() - t0);
    if (o->k)
        printf("%d principal components explain %.2f%% of the total variance\n", k, 100 * v);
    else
        printf("%d principal components explain at least %g%% of the total variance\n", k, 100 * o->variance);
}

static void do_transform(const opts *o, const fn_pca_model *m, const char *out_parquet, int scatter)
{
    fn_error e;
    char kv_k[16];
    snprintf(kv_k, sizeof kv_k, "%d", m->k);
    fn_kv meta[] = {{"fruitnet.version", FRUITNET_VERSION}, {"fruitnet.pca_components", kv_k}};
    fn_parquet_options po = {.list_column = "pcs", .codec = o->codec, .meta = meta, .nmeta = 2};
    xf_ctx c = {.m = m};
    c.pcs = malloc((size_t)(m->k ? m->k : 1) * sizeof(float));
    if (fn_parquet_writer_open(out_parquet, &po, &c.w, &e) != FN_OK)
        die("%s", e.msg);
    for_each_row(o->in, xf_row, &c, o);
    if (fn_parquet_writer_close(c.w, &e) != FN_OK)
        die("%s", e.msg);
    if (scatter)
        write_scatter(o->out, &c, m);
    for (int i = 0; i < c.labels.n; i++)
        free(c.labels.name[i]);
    free(c.labels.name);
    free(c.xy), free(c.lab), free(c.pcs);
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
        fn_pca_stats st;
        compute_stats(&o, &st);
        fn_pca_model m;
        do_fit(&o, &st, &m);
        do_transform(&o, &m, path_join(o.out, "pcs.parquet"), 1);
        if (!o.quiet)
            fprintf(stderr, "fruitnet-pca: wrote %s/{model.fnpca,explained_variance.csv,scree.svg,pcs.parquet,scatter.svg}\n",
                    o.out);
        fn_pca_model_free(&m);
        fn_pca_stats_free(&st);
    } else if (!strcmp(cmd, "stats")) {
        if (!o.in || !o.out)
            die("stats needs -i FEATURES and -o FILE");
        fn_pca_stats st;
        compute_stats(&o, &st);
        if (fn_pca_stats_save(&st, o.out, &e) != FN_OK)
            die("%s", e.msg);
        if (!o.quiet)
            fprintf(stderr, "fruitnet-pca: %lld rows summarised in %s\n", (long long)st.n, o.out);
        fn_pca_stats_free(&st);
    } else if (!strcmp(cmd, "merge")) {
        if (!o.out || npos < 1)
            die("merge needs -o FILE and at least one statistics file");
        fn_pca_stats all;
        if (fn_pca_stats_load(&all, pos[0], &e) != FN_OK)
            die("%s", e.msg);
        for (int i = 1; i < npos; i++) {
            fn_pca_stats s;
            if (fn_pca_stats_load(&s, pos[i], &e) != FN_OK || fn_pca_stats_merge(&all, &s, &e) != FN_OK)
                die("%s: %s", pos[i], e.msg);
            fn_pca_stats_free(&s);
        }
        struct stat sbuf_;
        size_t ol = strlen(o.out);
        if ((stat(o.out, &sbuf_) == 0 && S_ISDIR(sbuf_.st_mode)) || (ol && o.out[ol - 1] == '/')) {
            fn_pca_model m; /* -o DIR: fit the merged statistics directly */
            do_fit(&o, &all, &m);
            fn_pca_model_free(&m);
        } else {
            if (fn_pca_stats_save(&all, o.out, &e) != FN_OK)
                die("%s", e.msg);
            if (!o.quiet)
                fprintf(stderr, "fruitnet-pca: merged %d files, %lld rows -> %s\n", npos, (long long)all.n, o.out);
        }
        fn_pca_stats_free(&all);
    } else if (!strcmp(cmd, "fit")) {
        if ((!o.in && !o.stats_in) || !o.out)
            die("fit needs -i FEATURES or --stats FILE, and -o OUTDIR");
        fn_pca_stats st;
        if (o.stats_in) {
            if (fn_pca_stats_load(&st, o.stats_in, &e) != FN_OK)
                die("%s", e.msg);
        } else {
            compute_stats(&o, &st);
        }
        fn_pca_model m;
        do_fit(&o, &st, &m);
        fn_pca_model_free(&m);
        fn_pca_stats_free(&st);
    } else { /* transform */
        if (!o.model || !o.in || !o.out)
            die("transform needs --model FILE, -i FEATURES and -o OUT.parquet");
        fn_pca_model m;
        if (fn_pca_model_load(&m, o.model, &e) != FN_OK)
            die("%s", e.msg);
        do_transform(&o, &m, o.out, 0);
        fn_pca_model_free(&m);
    }
    return EXIT_OK;
}
