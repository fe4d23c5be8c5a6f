/*
 * classifier_data.c — the classifier's training data beside the model: labelled feature rows read from a
 * features Parquet file or dataset (fn_labeled_set), their stratified held-out split, the frame order of
 * Fruits-360-like file names (blocked cross-validation), and the training report (per_class.csv,
 * confusion_matrix.svg). Uses the Parquet reader and the atomic writer; knows nothing of training.
 */
#include "fruitnet.h"
#include "util.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void fn_labeled_set_free(fn_labeled_set *s)
{
    if (!s)
        return;
    if (s->paths)
        for (int i = 0; i < s->n; i++)
            free(s->paths[i]);
    if (s->names)
        for (int c = 0; c < s->nclasses; c++)
            free(s->names[c]);
    free(s->paths), free(s->names), free(s->x), free(s->y);
    memset(s, 0, sizeof *s);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int find(char *const *names, int K, const char *s)
{
    int lo = 0, hi = K - 1;
    while (lo <= hi) {
        int m = lo + (hi - lo) / 2, c = strcmp(s, names[m]);
        if (!c)
            return m;
        if (c < 0)
            hi = m - 1;
        else
            lo = m + 1;
    }
    return -1;
}

int fn_labeled_set_from_rows(int n, int dim, const float *x, const char *const *labels, const char *const *paths,
                             const char *name, fn_labeled_set *out, fn_error *err)
{
    if (!out)
        return fn_fail(err, FN_EARG, "fn_labeled_set_from_rows: invalid arguments");
    memset(out, 0, sizeof *out);
    name = name ? name : "rows";
    if (n < 0 || dim < 1 || (n > 0 && (!x || !labels)))
        return fn_fail(err, FN_EARG, "%s: invalid arguments (%d rows of %d features)", name, n, dim);
    size_t xb;
    if (!fn_mul_size((size_t)n, (size_t)dim, &xb) || !fn_mul_size(xb, sizeof(float), &xb) || xb > ((size_t)1 << 40))
        return fn_fail(err, FN_ELIMIT, "%s: %d rows x %d features: too large to hold in memory (over 1 TiB)", name,
                       n, dim);
    for (int i = 0; i < n; i++)
        if (!labels[i] || !*labels[i])
            return fn_fail(err, FN_EFORMAT, "%s: row %d (%s) has no label", name, i,
                           paths && paths[i] ? paths[i] : "");
    out->n = n, out->dim = dim;
    out->x = malloc(xb ? xb : 1);
    out->y = malloc((size_t)(n ? n : 1) * sizeof(int));
    out->paths = calloc((size_t)(n ? n : 1), sizeof(char *));
    const char **sorted = malloc((size_t)(n ? n : 1) * sizeof(char *));
    if (!out->x || !out->y || !out->paths || !sorted)
        goto oom;
    memcpy(out->x, x, xb);
    for (int i = 0; i < n; i++)
        if (!(out->paths[i] = strdup(paths && paths[i] ? paths[i] : "")))
            goto oom;
    /* classes: the distinct labels in byte order */
    memcpy(sorted, labels, (size_t)n * sizeof(char *));
    qsort(sorted, (size_t)n, sizeof(char *), cmp_str);
    int K = 0;
    for (int i = 0; i < n; i++)
        if (!K || strcmp(sorted[K - 1], sorted[i]))
            sorted[K++] = sorted[i];
    if (!(out->names = calloc((size_t)(K ? K : 1), sizeof(char *))))
        goto oom;
    out->nclasses = K;
    for (int c = 0; c < K; c++)
        if (!(out->names[c] = strdup(sorted[c])))
            goto oom;
    for (int i = 0; i < n; i++)
        out->y[i] = find(out->names, K, labels[i]);
    free(sorted);
    return FN_OK;
oom:
    free(sorted);
    fn_labeled_set_free(out);
    return fn_fail(err, FN_ENOMEM, "%s: out of memory for %d rows x %d features", name, n, dim);
}

int fn_labeled_set_read(const char *path, fn_labeled_set *out, fn_error *err)
{
    if (!out || !path)
        return fn_fail(err, FN_EARG, "fn_labeled_set_read: invalid arguments");
    memset(out, 0, sizeof *out);
    char **files = NULL;
    int nfiles = 0, rc;
    if ((rc = fn_parquet_dataset_files(path, &files, &nfiles, err)))
        return rc;
    float *x = NULL;
    char **labels = NULL, **paths = NULL;
    int n = 0, cap = 0, dim = 0;
    for (int fi = 0; fi < nfiles && !rc; fi++) {
        fn_parquet_reader *r;
        if ((rc = fn_parquet_reader_open(files[fi], &r, err)))
            break;
        fn_parquet_row row;
        int got;
        while ((got = fn_parquet_reader_next(r, &row, err)) == 1) {
            if (!dim)
                dim = row.n;
            if (row.n != dim || !dim || !*row.label) {
                rc = fn_fail(err, FN_EFORMAT, "%s: row %d (%s): %s", files[fi], n, row.path,
                             !*row.label ? "no label" : !dim ? "no features"
                                                             : "feature length differs from the first row's");
                break;
            }
            if (n == cap) {
                int nc = cap ? 2 * cap : 1024;
                size_t xb;
                float *nx = NULL;
                char **nl = NULL, **np = NULL;
                if (nc > 0 && fn_mul_size((size_t)nc * sizeof(float), (size_t)dim, &xb) && xb <= ((size_t)1 << 40))
                    nx = realloc(x, xb);
                if (nx)
                    x = nx, nl = realloc(labels, (size_t)nc * sizeof(char *));
                if (nl)
                    labels = nl, np = realloc(paths, (size_t)nc * sizeof(char *));
                if (!np) {
                    rc = fn_fail(err, FN_ENOMEM, "%s: out of memory after %d rows of %d features", files[fi], n, dim);
                    break;
                }
                paths = np, cap = nc;
            }
            memcpy(x + (size_t)n * dim, row.vec, (size_t)dim * sizeof(float));
            labels[n] = strdup(row.label);
            paths[n] = strdup(row.path);
            n++;
            if (!labels[n - 1] || !paths[n - 1]) {
                rc = fn_fail(err, FN_ENOMEM, "%s: out of memory after %d rows of %d features", files[fi], n, dim);
                break;
            }
        }
        if (got < 0 && !rc)
            rc = got;
        fn_parquet_reader_close(r);
    }
    if (!rc && n < 1)
        rc = fn_fail(err, FN_EFORMAT, "%s: no rows", path);
    if (!rc) {
        rc = fn_labeled_set_from_rows(n, dim, x, (const char *const *)labels, (const char *const *)paths, path, out,
                                      err);
    }
    for (int i = 0; i < n; i++)
        free(labels[i]), free(paths[i]);
    free(labels), free(paths), free(x);
    fn_free_list(files, nfiles);
    return rc;
}

/* dst <- the rows i of src with (keep[i] != 0) == want; names copied. */
static int gather(const fn_labeled_set *src, const unsigned char *keep, int want, fn_labeled_set *dst)
{
    memset(dst, 0, sizeof *dst);
    int m = 0;
    for (int i = 0; i < src->n; i++)
        m += (keep[i] != 0) == want;
    dst->n = m, dst->dim = src->dim, dst->nclasses = src->nclasses;
    dst->x = malloc((size_t)(m ? m : 1) * src->dim * sizeof(float));
    dst->y = malloc((size_t)(m ? m : 1) * sizeof(int));
    dst->paths = calloc((size_t)(m ? m : 1), sizeof(char *));
    dst->names = calloc((size_t)src->nclasses, sizeof(char *));
    if (!dst->x || !dst->y || !dst->paths || !dst->names)
        return -1;
    for (int c = 0; c < src->nclasses; c++)
        if (!(dst->names[c] = strdup(src->names[c])))
            return -1;
    for (int i = 0, t = 0; i < src->n; i++)
        if ((keep[i] != 0) == want) {
            memcpy(dst->x + (size_t)t * src->dim, src->x + (size_t)i * src->dim, (size_t)src->dim * sizeof(float));
            dst->y[t] = src->y[i];
            if (!(dst->paths[t++] = strdup(src->paths[i])))
                return -1;
        }
    return 0;
}

static _Thread_local const int64_t *split_keys;
static int cmp_split(const void *a, const void *b)
{
    int i = *(const int *)a, j = *(const int *)b;
    return split_keys[i] < split_keys[j] ? -1 : split_keys[i] > split_keys[j] ? 1 : (i > j) - (i < j);
}

int fn_labeled_set_split(const fn_labeled_set *all, double fraction, uint64_t seed, const int64_t *order,
                         fn_labeled_set *train, fn_labeled_set *held, fn_error *err)
{
    if (!all || !train || !held || !(fraction >= 0 && fraction <= 0.5) || all->n < 0 || all->nclasses < 0)
        return fn_fail(err, FN_EARG, "fn_labeled_set_split: invalid arguments (fraction %g: 0 to 0.5)", fraction);
    memset(train, 0, sizeof *train), memset(held, 0, sizeof *held);
    const int n = all->n;
    unsigned char *isval = calloc((size_t)(n ? n : 1), 1);
    int *idx = malloc((size_t)(n ? n : 1) * sizeof(int));
    int rc = FN_OK;
    if (!isval || !idx)
        goto oom;
    uint64_t s = seed ? seed : 0x243F6A8885A308D3ull;
    for (int c = 0; c < all->nclasses; c++) {
        int m = 0;
        for (int i = 0; i < n; i++)
            if (all->y[i] == c)
                idx[m++] = i;
        if (order) { /* blocked: the class's last rows in order (idx reversed: they come first) */
            split_keys = order;
            qsort(idx, (size_t)m, sizeof(int), cmp_split);
            for (int i = 0; i < m / 2; i++) {
                int t = idx[i];
                idx[i] = idx[m - 1 - i], idx[m - 1 - i] = t;
            }
        } else {
            for (int i = m - 1; i > 0; i--) {
                s ^= s << 13, s ^= s >> 7, s ^= s << 17;
                int j = (int)(s % (uint64_t)(i + 1)), t = idx[i];
                idx[i] = idx[j], idx[j] = t;
            }
        }
        int h = (int)(fraction * m + 0.5);
        if (h >= m)
            h = m - 1; /* every class keeps a training row */
        for (int i = 0; i < h; i++)
            isval[idx[i]] = 1;
    }
    if (gather(all, isval, 0, train) || gather(all, isval, 1, held))
        goto oom;
    free(isval), free(idx);
    return rc;
oom:
    free(isval), free(idx);
    fn_labeled_set_free(train), fn_labeled_set_free(held);
    return fn_fail(err, FN_ENOMEM, "split: out of memory for %d rows", n);
}

/* ---------------------------------------------------------------- frame order */

typedef struct frame_key {
    const char *path;    /* the whole path (the last tie-break) */
    size_t seq_len;      /* path[0..seq_len): the folder and the name's text before its frame number */
    long long frame;     /* the frame number; -1: none */
    int row;
} frame_key;

static int cmp_frame(const void *a, const void *b)
{
    const frame_key *p = a, *q = b;
    size_t l = p->seq_len < q->seq_len ? p->seq_len : q->seq_len;
    int c = memcmp(p->path, q->path, l);
    if (c)
        return c;
    if (p->seq_len != q->seq_len)
        return p->seq_len < q->seq_len ? -1 : 1;
    if (p->frame != q->frame)
        return p->frame < q->frame ? -1 : 1;
    c = strcmp(p->path, q->path);
    return c ? c : (p->row > q->row) - (p->row < q->row);
}

/* The frame number of a path: the first run of digits of its file name that is a whole token (delimited by
 * the name's start or end or a character that is neither a letter nor a digit): "r2_151_100.jpg" -> 151
 * (the "2" of "r2" is part of a word). */
static void frame_of(const char *path, frame_key *k)
{
    const char *name = strrchr(path, '/');
    name = name ? name + 1 : path;
    const char *dot = strrchr(name, '.'), *end = dot ? dot : name + strlen(name);
    k->path = path, k->frame = -1, k->seq_len = (size_t)(end - path);
    for (const char *p = name; p < end;) {
        if (!isdigit((unsigned char)*p)) {
            p++;
            continue;
        }
        const char *q = p;
        while (q < end && isdigit((unsigned char)*q))
            q++;
        int before = p == name || !isalnum((unsigned char)p[-1]), after = q == end || !isalnum((unsigned char)*q);
        if (before && after && q - p <= 15) {
            k->frame = strtoll(p, NULL, 10);
            k->seq_len = (size_t)(p - path);
            return;
        }
        p = q;
    }
}

int fn_frame_order(const char *const *paths, int n, int64_t *order, fn_error *err)
{
    if (n < 0 || (n > 0 && (!paths || !order)))
        return fn_fail(err, FN_EARG, "fn_frame_order: invalid arguments");
    frame_key *k = malloc((size_t)(n ? n : 1) * sizeof *k);
    if (!k)
        return fn_fail(err, FN_ENOMEM, "frame order: out of memory for %d paths", n);
    for (int i = 0; i < n; i++) {
        frame_of(paths[i] ? paths[i] : "", &k[i]);
        k[i].row = i;
    }
    qsort(k, (size_t)n, sizeof *k, cmp_frame);
    for (int i = 0; i < n; i++)
        order[k[i].row] = i;
    free(k);
    return FN_OK;
}

/* ---------------------------------------------------------------- report */

typedef struct sbuf {
    char *p;
    size_t n, cap;
    int oom;
} sbuf;

static void put(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(sbuf *b, const char *fmt, ...)
{
    if (b->oom)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int l = vsnprintf(b->p ? b->p + b->n : NULL, b->p ? b->cap - b->n : 0, fmt, ap);
        va_end(ap);
        if (l < 0) {
            b->oom = 1;
            return;
        }
        if (b->p && b->n + (size_t)l < b->cap) {
            b->n += (size_t)l;
            return;
        }
        size_t nc = (b->cap ? 2 * b->cap : 65536) + (size_t)l;
        char *np = realloc(b->p, nc);
        if (!np) {
            b->oom = 1;
            return;
        }
        b->p = np, b->cap = nc;
    }
}

static void put_xml(sbuf *b, const char *s)
{
    for (; *s; s++)
        put(b, "%s", *s == '<' ? "&lt;" : *s == '>' ? "&gt;" : *s == '&' ? "&amp;" : *s == '"' ? "&quot;"
                                                                                           : (char[]){*s, 0});
}

static void put_csv(sbuf *b, const char *s)
{
    put(b, "\"");
    for (; *s; s++)
        put(b, "%s", *s == '"' ? "\"\"" : (char[]){*s, 0});
    put(b, "\"");
}

int fn_classifier_write_report(const char *dir, const char *const *names, int nclasses, const int *truth,
                               const int *pred, int n, const char *what, fn_error *err)
{
    const int K = nclasses;
    if (!dir || !*dir || !names || K < 1 || K > 65536 || n < 0 || (n > 0 && (!truth || !pred)))
        return fn_fail(err, FN_EARG, "fn_classifier_write_report: invalid arguments");
    for (int i = 0; i < n; i++)
        if (truth[i] < 0 || truth[i] >= K || pred[i] < 0 || pred[i] >= K)
            return fn_fail(err, FN_EARG, "%s: report row %d: class %d or %d outside [0, %d)", dir, i, truth[i],
                           pred[i], K);
    long *cm = calloc((size_t)K * K, sizeof(long));
    char path[4096];
    sbuf b = {0};
    int rc = FN_OK;
    if (!cm)
        return fn_fail(err, FN_ENOMEM, "%s: out of memory for the confusion matrix", dir);
    for (int i = 0; i < n; i++)
        cm[(size_t)truth[i] * K + pred[i]]++;
    put(&b, "class,support,predicted,correct,precision,recall,f1\n");
    for (int c = 0; c < K; c++) {
        long sup = 0, prd = 0, ok = cm[(size_t)c * K + c];
        for (int j = 0; j < K; j++)
            sup += cm[(size_t)c * K + j], prd += cm[(size_t)j * K + c];
        double p = prd ? (double)ok / prd : 0, r = sup ? (double)ok / sup : 0, f1 = p + r > 0 ? 2 * p * r / (p + r) : 0;
        put_csv(&b, names[c]);
        put(&b, ",%ld,%ld,%ld,%.4f,%.4f,%.4f\n", sup, prd, ok, p, r, f1);
    }
    snprintf(path, sizeof path, "%s/per_class.csv", dir);
    if (b.oom)
        rc = fn_fail(err, FN_ENOMEM, "%s: out of memory", path);
    else
        rc = fn_atomic_write_file(path, b.p, b.n, 0, err);
    b.n = 0;
    const int cell = 8, margin = 170, side = margin + K * cell + 20;
    put(&b, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" font-family=\"sans-serif\">\n", side,
        side + 30);
    put(&b, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n");
    put(&b, "<text x=\"10\" y=\"20\" font-size=\"14\">Confusion matrix (");
    put_xml(&b, what ? what : "predictions");
    put(&b, ", %d rows): rows = true class, columns = predicted; colour = share of the row</text>\n", n);
    for (int c = 0; c < K; c++) {
        long sup = 0;
        for (int j = 0; j < K; j++)
            sup += cm[(size_t)c * K + j];
        int yy = margin + c * cell;
        put(&b, "<text x=\"%d\" y=\"%d\" font-size=\"7\" text-anchor=\"end\">", margin - 4, yy + cell - 1);
        put_xml(&b, names[c]);
        put(&b, "</text>\n<text transform=\"translate(%d,%d) rotate(-90)\" font-size=\"7\">", margin + c * cell + cell - 1,
            margin - 4);
        put_xml(&b, names[c]);
        put(&b, "</text>\n");
        for (int j = 0; j < K; j++) {
            long v = cm[(size_t)c * K + j];
            if (!v)
                continue;
            double s = sup ? (double)v / sup : 0;
            int shade = (int)(255 - 225 * s);
            put(&b, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"rgb(%d,%d,255)\"%s><title>",
                margin + j * cell, yy, cell, cell, shade, shade, c == j ? "" : " stroke=\"red\" stroke-width=\"0.5\"");
            put_xml(&b, names[c]);
            put(&b, " -&gt; ");
            put_xml(&b, names[j]);
            put(&b, ": %ld</title></rect>\n", v);
        }
    }
    put(&b, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"black\" stroke-width=\"0.5\"/>\n",
        margin, margin, K * cell, K * cell);
    put(&b, "</svg>\n");
    snprintf(path, sizeof path, "%s/confusion_matrix.svg", dir);
    if (!rc)
        rc = b.oom ? fn_fail(err, FN_ENOMEM, "%s: out of memory", path) : fn_atomic_write_file(path, b.p, b.n, 0, err);
    free(b.p), free(cm);
    return rc;
}
