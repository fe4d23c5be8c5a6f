/*
 * pca_dataset.c — PCA over a features dataset, and its report files: streaming
 * statistics from a committed dataset, projection into a Parquet file, and
 * explained_variance.csv, scree.svg and scatter.svg. Every file is written
 * with fn_atomic_write_file (a regular file or nothing is replaced).
 */
#include "util.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- text */

typedef struct sbuf {
    char *s;
    size_t n, cap;
    int oom;
} sbuf;

static void sb(sbuf *b, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
static void sb(sbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char tmp[1024];
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0 || b->oom)
        return;
    if ((size_t)n >= sizeof tmp)
        n = sizeof tmp - 1;
    if (b->n + (size_t)n + 1 > b->cap) {
        size_t cap = (b->cap + (size_t)n + 1) * 2;
        char *s = realloc(b->s, cap);
        if (!s) {
            b->oom = 1;
            return;
        }
        b->s = s, b->cap = cap;
    }
    memcpy(b->s + b->n, tmp, (size_t)n + 1);
    b->n += (size_t)n;
}

static int sb_save(sbuf *b, const char *dir, const char *name, fn_error *err)
{
    size_t l = strlen(dir) + strlen(name) + 2;
    char *p = malloc(l);
    int rc = !p || b->oom ? fn_fail(err, FN_ENOMEM, "%s/%s: out of memory", dir, name) : FN_OK;
    if (!rc) {
        snprintf(p, l, "%s/%s", dir, name);
        rc = fn_atomic_write_file(p, b->s ? b->s : "", b->n, 0, err);
    }
    free(p);
    free(b->s);
    return rc;
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

/* ---------------------------------------------------------------- reading a dataset */

typedef int (*row_fn)(void *ctx, const fn_parquet_row *row, fn_error *err);

/* Every row of a committed dataset (or a file), in part order. */
static int for_each_row(const char *in, int flags, row_fn fn, void *ctx, fn_pca_progress_fn progress, void *pctx,
                        int64_t *nrows, fn_error *err)
{
    char **files;
    int nf;
    int rc = fn_dataset_files(in, flags, &files, &nf, err);
    if (rc)
        return rc;
    if (nf == 0) {
        fn_free_list(files, nf);
        return fn_fail(err, FN_EFORMAT, "%s: no .parquet files found", in);
    }
    int64_t rows = 0, total = 0;
    for (int f = 0; f < nf && !rc; f++) { /* count for progress */
        fn_parquet_reader *r;
        rc = fn_parquet_reader_open(files[f], &r, err);
        if (!rc)
            total += fn_parquet_reader_rows(r);
        fn_parquet_reader_close(r);
    }
    for (int f = 0; f < nf && !rc; f++) {
        fn_parquet_reader *r;
        rc = fn_parquet_reader_open(files[f], &r, err);
        fn_parquet_row row;
        int got;
        while (!rc && (got = fn_parquet_reader_next(r, &row, err)) == 1) {
            if ((rc = fn(ctx, &row, err)) != FN_OK)
                fn_fail(err, rc, "%s: row %lld (%s): %s", files[f], (long long)rows, row.path, err->msg);
            rows++;
            if (progress && rows % 256 == 0)
                progress(pctx, rows, total);
        }
        if (!rc && got < 0)
            rc = got;
        fn_parquet_reader_close(r);
    }
    fn_free_list(files, nf);
    if (nrows)
        *nrows = rows;
    return rc;
}

/* ---------------------------------------------------------------- statistics */

#define STATS_BATCH 1024

typedef struct stats_ctx {
    fn_pca_stats *s;
    int dim, threads;
    float *buf;
    int nbuf;
} stats_ctx;

static int stats_flush(stats_ctx *c, fn_error *err)
{
    int rc = c->nbuf ? fn_pca_stats_add(c->s, c->buf, c->nbuf, c->threads, err) : FN_OK;
    c->nbuf = 0;
    return rc;
}

static int stats_row(void *ctx, const fn_parquet_row *row, fn_error *err)
{
    stats_ctx *c = ctx;
    if (c->dim == 0) {
        if (row->n < 1)
            return fn_fail(err, FN_EFORMAT, "empty vector");
        int rc = fn_pca_stats_new(row->n, &c->s, err);
        if (rc)
            return rc;
        c->dim = row->n;
        if (!(c->buf = malloc((size_t)STATS_BATCH * c->dim * sizeof(float))))
            return fn_fail(err, FN_ENOMEM, "out of memory");
    }
    if (row->n != c->dim)
        return fn_fail(err, FN_EFORMAT, "vector has %d values, expected %d like the first row", row->n, c->dim);
    memcpy(c->buf + (size_t)c->nbuf * c->dim, row->vec, (size_t)c->dim * sizeof(float));
    return ++c->nbuf == STATS_BATCH ? stats_flush(c, err) : FN_OK;
}

int fn_pca_stats_from_dataset(const char *path, int flags, int threads, fn_pca_stats **out,
                              fn_pca_progress_fn progress, void *ctx, fn_error *err)
{
    if (!path || !out)
        return fn_fail(err, FN_EARG, "fn_pca_stats_from_dataset: invalid arguments");
    *out = NULL;
    stats_ctx c = {.threads = threads};
    int64_t rows = 0;
    int rc = for_each_row(path, flags, stats_row, &c, progress, ctx, &rows, err);
    if (!rc && rows == 0)
        rc = fn_fail(err, FN_EFORMAT, "%s: no rows", path);
    if (!rc)
        rc = stats_flush(&c, err);
    free(c.buf);
    if (rc)
        fn_pca_stats_free(c.s);
    else
        *out = c.s;
    return rc;
}

/* ---------------------------------------------------------------- report files */

/* explained_variance.csv (every component) and scree.svg (the first max(2k, 100)) from the full
 * spectrum ev[dim] (descending) and the total variance (trace). */
int fn_pca_write_variance(const char *dir, const double *ev, int dim, double total, int k, double variance, fn_error *err)
{
    if (!dir || !ev || dim < 1 || k < 1 || k > dim || !(total > 0))
        return fn_fail(err, FN_EARG, "fn_pca_write_variance: invalid arguments");
    sbuf c = {0};
    double cum = 0;
    sb(&c, "component,eigenvalue,ratio,cumulative\n");
    for (int i = 0; i < dim; i++) {
        cum += ev[i];
        sb(&c, "%d,%.17g,%.17g,%.17g\n", i + 1, ev[i], ev[i] / total, cum / total);
    }
    int rc = sb_save(&c, dir, "explained_variance.csv", err);
    if (rc)
        return rc;

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
    return sb_save(&s, dir, "scree.svg", err);
}

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
        int cap = ls->cap ? 2 * ls->cap : 64;
        char **v = realloc(ls->name, (size_t)cap * sizeof(char *));
        if (!v)
            return -1;
        ls->name = v, ls->cap = cap;
    }
    if (!(ls->name[ls->n] = strdup(l)))
        return -1;
    return ls->n++;
}

typedef struct xf_ctx {
    const fn_pca_model *m;
    fn_parquet_writer *w;
    float *pcs;
    float *xy; /* for the scatter plot */
    int *lab;
    int64_t n, cap;
    label_set labels;
    int keep_xy;
} xf_ctx;

static int xf_row(void *ctx, const fn_parquet_row *row, fn_error *err)
{
    xf_ctx *c = ctx;
    if (row->n != fn_pca_model_dim(c->m))
        return fn_fail(err, FN_EFORMAT, "vector has %d values, the model %d", row->n, fn_pca_model_dim(c->m));
    fn_pca_transform(c->m, row->vec, c->pcs);
    int rc = fn_parquet_writer_add(c->w, row->path, row->label, c->pcs, fn_pca_model_k(c->m), err);
    if (rc || !c->keep_xy)
        return rc;
    if (c->n == c->cap) {
        c->cap = c->cap ? 2 * c->cap : 4096;
        float *xy = realloc(c->xy, (size_t)c->cap * 2 * sizeof(float));
        if (xy)
            c->xy = xy;
        int *lab = realloc(c->lab, (size_t)c->cap * sizeof(int));
        if (lab)
            c->lab = lab;
        if (!xy || !lab)
            return fn_fail(err, FN_ENOMEM, "out of memory");
    }
    c->xy[c->n * 2] = c->pcs[0];
    c->xy[c->n * 2 + 1] = fn_pca_model_k(c->m) > 1 ? c->pcs[1] : 0;
    int li = label_index(&c->labels, row->label);
    if (li < 0)
        return fn_fail(err, FN_ENOMEM, "out of memory");
    c->lab[c->n++] = li;
    return FN_OK;
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

static int write_scatter(const char *dir, const xf_ctx *c, const fn_pca_model *m, fn_error *err)
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
       T + PH + 40, 100 * fn_pca_model_eigvals(m)[0] / fn_pca_model_total_var(m));
    sb(&s, "<text transform=\"translate(20,%.0f) rotate(-90)\" text-anchor=\"middle\">PC2 (%.1f%% of variance)</text>\n",
       T + PH / 2, fn_pca_model_k(m) > 1 ? 100 * fn_pca_model_eigvals(m)[1] / fn_pca_model_total_var(m) : 0.0);
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
    return sb_save(&s, dir, "scatter.svg", err);
}

int fn_pca_transform_dataset(const fn_pca_model *m, const char *in, int flags, const char *out_parquet, fn_codec codec,
                             const char *scatter_dir, fn_pca_progress_fn progress, void *ctx, fn_error *err)
{
    if (!m || !in || !out_parquet)
        return fn_fail(err, FN_EARG, "fn_pca_transform_dataset: invalid arguments");
    char kv_k[16];
    snprintf(kv_k, sizeof kv_k, "%d", fn_pca_model_k(m));
    fn_kv meta[] = {{"fruitnet.version", FRUITNET_VERSION}, {"fruitnet.pca_components", kv_k}};
    fn_parquet_options po = {.list_column = "pcs", .codec = codec, .meta = meta, .nmeta = 2};
    xf_ctx c = {.m = m, .keep_xy = scatter_dir != NULL};
    c.pcs = malloc((size_t)(fn_pca_model_k(m) ? fn_pca_model_k(m) : 1) * sizeof(float));
    int rc = c.pcs ? fn_parquet_writer_open(out_parquet, &po, &c.w, err) : fn_fail(err, FN_ENOMEM, "out of memory");
    if (!rc)
        rc = for_each_row(in, flags, xf_row, &c, progress, ctx, NULL, err);
    if (c.w)
        rc = rc ? (fn_parquet_writer_abort(c.w), rc) : fn_parquet_writer_close(c.w, err);
    if (!rc && scatter_dir)
        rc = write_scatter(scatter_dir, &c, m, err);
    for (int i = 0; i < c.labels.n; i++)
        free(c.labels.name[i]);
    free(c.labels.name);
    free(c.xy), free(c.lab), free(c.pcs);
    return rc;
}
