/* fruitnet-train — features Parquet (path, label, features) -> fruit classifier (.fncls) and its report. */
#include "fruitnet.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

static void usage(FILE *f)
{
    fprintf(f, "usage: fruitnet-train -i FEATURES.parquet -o MODEL.fncls [options]\n"
               "Trains a multinomial logistic regression on the features (labels from the 'label'\n"
               "column): standardisation, L2 penalty C chosen by stratified k-fold cross-validation\n"
               "on the training rows, written atomically with a CRC. Prints the cross-validated\n"
               "accuracy and writes a report: confusion_matrix.svg and per_class.csv (precision,\n"
               "recall) of the out-of-fold predictions, or of the --val rows when given.\n"
               "  -i, --input PATH    Parquet file or dataset folder written by fruitnet-extract\n"
               "  -o, --output FILE   the model (.fncls)\n"
               "      --report DIR    where the report goes (default: the folder of -o)\n"
               "      --val F         hold out a stratified fraction F (0..0.5) of the rows: trained\n"
               "                      without them, the report describes them\n"
               "      --folds K       cross-validation folds (default 5)\n"
               "      --c C           use this C (no cross-validation)\n"
               "      --c-range A:B:N N values of C from A to B, log-spaced (default 0.1:3.16:4)\n"
               "      --pca-dim K     principal components used (default 512; -1 = all features)\n"
               "      --threads N     threads (default: all CPUs; the model does not depend on it)\n"
               "  -q, --quiet         only errors\n"
               "Example: fruitnet-train -i train_features.parquet -o fruits.fncls --val 0.1\n"
               "Exit status: 0 ok, 1 error, 2 usage.\n");
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int find(char **names, int K, const char *s)
{
    int lo = 0, hi = K - 1;
    while (lo <= hi) {
        int m = (lo + hi) / 2, c = strcmp(s, names[m]);
        if (!c)
            return m;
        if (c < 0)
            hi = m - 1;
        else
            lo = m + 1;
    }
    return -1;
}

static void xml(FILE *f, const char *s)
{
    for (; *s; s++)
        if (*s == '<')
            fputs("&lt;", f);
        else if (*s == '>')
            fputs("&gt;", f);
        else if (*s == '&')
            fputs("&amp;", f);
        else if (*s == '"')
            fputs("&quot;", f);
        else
            fputc(*s, f);
}

static void csv(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++)
        fputs(*s == '"' ? "\"\"" : (char[]){*s, 0}, f);
    fputc('"', f);
}

/* p, or exit with "out of memory" (the tool's allocations are all-or-nothing). */
static void *need(void *p)
{
    if (!p) {
        fprintf(stderr, "fruitnet-train: out of memory\n");
        exit(1);
    }
    return p;
}

/* confusion_matrix.svg and per_class.csv of (truth, pred) pairs; returns 0 or 1 (message printed). */
static int write_report(const char *dir, char **names, int K, const int *truth, const int *pred, int m,
                        const char *what)
{
    long *cm = calloc((size_t)K * K, sizeof(long));
    char path[4096];
    if (!cm)
        return 1;
    for (int i = 0; i < m; i++)
        cm[(size_t)truth[i] * K + pred[i]]++;
    snprintf(path, sizeof path, "%s/per_class.csv", dir);
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "fruitnet-train: %s: cannot create: %s\n", path, strerror(errno));
        free(cm);
        return 1;
    }
    fprintf(f, "class,support,predicted,correct,precision,recall,f1\n");
    for (int c = 0; c < K; c++) {
        long sup = 0, prd = 0, ok = cm[(size_t)c * K + c];
        for (int j = 0; j < K; j++)
            sup += cm[(size_t)c * K + j], prd += cm[(size_t)j * K + c];
        double p = prd ? (double)ok / prd : 0, r = sup ? (double)ok / sup : 0, f1 = p + r > 0 ? 2 * p * r / (p + r) : 0;
        csv(f, names[c]);
        fprintf(f, ",%ld,%ld,%ld,%.4f,%.4f,%.4f\n", sup, prd, ok, p, r, f1);
    }
    int bad = fclose(f) != 0;
    snprintf(path, sizeof path, "%s/confusion_matrix.svg", dir);
    f = fopen(path, "w");
    if (!f || bad) {
        fprintf(stderr, "fruitnet-train: %s: cannot write: %s\n", path, strerror(errno));
        if (f)
            fclose(f);
        free(cm);
        return 1;
    }
    const int cell = 8, margin = 170, side = margin + K * cell + 20;
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" font-family=\"sans-serif\">\n",
            side, side + 30);
    fprintf(f, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n");
    fprintf(f, "<text x=\"10\" y=\"20\" font-size=\"14\">Confusion matrix (%s, %d rows): rows = true class, "
               "columns = predicted; colour = share of the row</text>\n",
            what, m);
    for (int c = 0; c < K; c++) {
        long sup = 0;
        for (int j = 0; j < K; j++)
            sup += cm[(size_t)c * K + j];
        int yy = margin + c * cell;
        fprintf(f, "<text x=\"%d\" y=\"%d\" font-size=\"7\" text-anchor=\"end\">", margin - 4, yy + cell - 1);
        xml(f, names[c]);
        fprintf(f, "</text>\n<text transform=\"translate(%d,%d) rotate(-90)\" font-size=\"7\">", margin + c * cell + cell - 1,
                margin - 4);
        xml(f, names[c]);
        fprintf(f, "</text>\n");
        for (int j = 0; j < K; j++) {
            long v = cm[(size_t)c * K + j];
            if (!v)
                continue;
            double s = sup ? (double)v / sup : 0;
            int shade = (int)(255 - 225 * s);
            fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"rgb(%d,%d,255)\"%s><title>", margin + j * cell,
                    yy, cell, cell, shade, shade, c == j ? "" : " stroke=\"red\" stroke-width=\"0.5\"");
            xml(f, names[c]);
            fprintf(f, " -&gt; ");
            xml(f, names[j]);
            fprintf(f, ": %ld</title></rect>\n", v);
        }
    }
    fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"black\" stroke-width=\"0.5\"/>\n",
            margin, margin, K * cell, K * cell);
    fprintf(f, "</svg>\n");
    bad = fclose(f) != 0;
    free(cm);
    if (bad)
        fprintf(stderr, "fruitnet-train: %s: write failed\n", path);
    return bad;
}

int main(int argc, char **argv)
{
    const char *in = NULL, *out = NULL, *report_dir = NULL;
    double val = 0;
    int quiet = 0;
    fn_classifier_options opt;
    fn_classifier_options_default(&opt);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        char *end = NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "-V") || !strcmp(a, "--version")) {
            printf("fruitnet-train %s (.fncls format version 1)\n", FRUITNET_VERSION);
            return 0;
        } else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
            quiet = 1;
            continue;
        } else if (!v) {
            fprintf(stderr, "fruitnet-train: %s: missing value or unknown option\n", a);
            usage(stderr);
            return 2;
        }
        i++;
        if (!strcmp(a, "-i") || !strcmp(a, "--input"))
            in = v;
        else if (!strcmp(a, "-o") || !strcmp(a, "--output"))
            out = v;
        else if (!strcmp(a, "--report"))
            report_dir = v;
        else if (!strcmp(a, "--val"))
            val = strtod(v, &end);
        else if (!strcmp(a, "--folds"))
            opt.folds = (int)strtol(v, &end, 10);
        else if (!strcmp(a, "--c"))
            opt.c = strtod(v, &end);
        else if (!strcmp(a, "--pca-dim"))
            opt.pca_dim = (int)strtol(v, &end, 10);
        else if (!strcmp(a, "--threads"))
            opt.threads = (int)strtol(v, &end, 10);
        else if (!strcmp(a, "--c-range")) {
            if (sscanf(v, "%lf:%lf:%d", &opt.c_min, &opt.c_max, &opt.path_len) != 3) {
                fprintf(stderr, "fruitnet-train: --c-range %s: expected MIN:MAX:N\n", v);
                return 2;
            }
            continue;
        } else {
            fprintf(stderr, "fruitnet-train: unexpected argument '%s'\n", a);
            usage(stderr);
            return 2;
        }
        if (end && (*end || end == v)) {
            fprintf(stderr, "fruitnet-train: %s %s: not a number\n", a, v);
            return 2;
        }
    }
    if (!in || !out || !(val >= 0 && val <= 0.5) || (opt.folds && (opt.folds < 2 || opt.folds > 50)) ||
        opt.pca_dim < -1 || opt.c < 0) {
        usage(stderr);
        return 2;
    }
    /* read every row */
    fn_error e;
    char **files = NULL, **labels = NULL, **paths = NULL;
    int nfiles = 0, n = 0, cap = 0, dim = 0;
    float *x = NULL;
    double t0 = now();
    if (fn_parquet_dataset_files(in, &files, &nfiles, &e) != FN_OK) {
        fprintf(stderr, "fruitnet-train: %s (%s)\n", e.msg, fn_status_name(e.code));
        return 1;
    }
    for (int fi = 0; fi < nfiles; fi++) {
        fn_parquet_reader *r;
        if (fn_parquet_reader_open(files[fi], &r, &e) != FN_OK) {
            fprintf(stderr, "fruitnet-train: %s (%s)\n", e.msg, fn_status_name(e.code));
            return 1;
        }
        fn_parquet_row row;
        int rc;
        while ((rc = fn_parquet_reader_next(r, &row, &e)) == 1) {
            if (!dim)
                dim = row.n;
            if (row.n != dim || !dim || !*row.label) {
                fprintf(stderr, "fruitnet-train: %s: row %d (%s): %s\n", files[fi], n, row.path,
                        !*row.label ? "no label" : "feature length differs from the first row's");
                return 1;
            }
            if (n == cap) {
                cap = cap ? 2 * cap : 4096;
                x = realloc(x, (size_t)cap * dim * sizeof(float));
                labels = realloc(labels, (size_t)cap * sizeof(char *));
                paths = realloc(paths, (size_t)cap * sizeof(char *));
                if (!x || !labels || !paths) {
                    fprintf(stderr, "fruitnet-train: out of memory\n");
                    return 1;
                }
            }
            memcpy(x + (size_t)n * dim, row.vec, (size_t)dim * sizeof(float));
            labels[n] = need(strdup(row.label));
            paths[n] = need(strdup(row.path));
            n++;
        }
        fn_parquet_reader_close(r);
        if (rc < 0) {
            fprintf(stderr, "fruitnet-train: %s (%s)\n", e.msg, fn_status_name(e.code));
            return 1;
        }
    }
    fn_free_list(files, nfiles);
    if (n < 2) {
        fprintf(stderr, "fruitnet-train: %s: %d rows; need at least 2\n", in, n);
        return 1;
    }
    /* classes: sorted unique labels (byte order) */
    char **names = need(malloc((size_t)n * sizeof(char *)));
    int K = 0, *y = need(malloc((size_t)n * sizeof(int))), *isval = need(calloc((size_t)n, sizeof(int)));
    memcpy(names, labels, (size_t)n * sizeof(char *));
    qsort(names, (size_t)n, sizeof(char *), cmp_str);
    for (int i = 0; i < n; i++)
        if (!K || strcmp(names[K - 1], names[i]))
            names[K++] = names[i];
    for (int i = 0; i < n; i++)
        y[i] = find(names, K, labels[i]);
    /* --val: per class, the rows after a seeded shuffle, first round(val * m) held out */
    int nv = 0;
    if (val > 0) {
        uint64_t s = 0x243F6A8885A308D3ull;
        int *idx = need(malloc((size_t)n * sizeof(int)));
        for (int c = 0; c < K; c++) {
            int m = 0;
            for (int i = 0; i < n; i++)
                if (y[i] == c)
                    idx[m++] = i;
            for (int i = m - 1; i > 0; i--) {
                s ^= s << 13, s ^= s >> 7, s ^= s << 17;
                int j = (int)(s % (uint64_t)(i + 1)), t = idx[i];
                idx[i] = idx[j], idx[j] = t;
            }
            int h = (int)(val * m + 0.5);
            if (h >= m)
                h = m - 1; /* every class keeps a training row */
            for (int i = 0; i < h; i++)
                isval[idx[i]] = 1, nv++;
        }
        free(idx);
    }
    int nt = n - nv, *yt = need(malloc((size_t)nt * sizeof(int))), *cvp = need(malloc((size_t)nt * sizeof(int)));
    float *xt = need(malloc((size_t)nt * dim * sizeof(float)));
    for (int i = 0, t = 0; i < n; i++)
        if (!isval[i]) {
            memcpy(xt + (size_t)t * dim, x + (size_t)i * dim, (size_t)dim * sizeof(float));
            yt[t++] = y[i];
        }
    const fn_parquet_reader *nr = NULL;
    (void)nr;
    char info[512];
    snprintf(info, sizeof info, "trained from %s (%d rows, %d held out)", in, n, nv);
    opt.info = info;
    double t1 = now();
    if (!quiet)
        fprintf(stderr, "fruitnet-train: %d rows x %d features, %d classes (read in %.2f s); training...\n", n, dim, K,
                t1 - t0);
    fn_classifier *cl;
    fn_classifier_report rep;
    memset(&rep, 0, sizeof rep);
    rep.cv_pred = cvp;
    if (fn_classifier_train(xt, nt, dim, yt, K, (const char *const *)names, &opt, &cl, &rep, &e) != FN_OK) {
        fprintf(stderr, "fruitnet-train: %s (%s)\n", e.msg, fn_status_name(e.code));
        return 1;
    }
    double t2 = now();
    if (fn_classifier_save(cl, out, &e) != FN_OK) {
        fprintf(stderr, "fruitnet-train: %s (%s)\n", e.msg, fn_status_name(e.code));
        return 1;
    }
    if (!quiet) {
        if (rep.folds) {
            printf("C\tcv_accuracy\tcv_log_loss\n");
            for (int p = 0; p < rep.path_len; p++)
                printf("%g\t%.4f\t%.4f%s\n", rep.c[p], rep.cv_accuracy[p], rep.cv_log_loss[p],
                       p == rep.best ? "\t<- chosen" : "");
            printf("cross-validated accuracy (%d folds, %d rows): %.2f%% at C = %g\n", rep.folds, nt,
                   100 * rep.cv_accuracy[rep.best], rep.c[rep.best]);
        } else {
            printf("C = %g (given; no cross-validation)\n", rep.c[0]);
        }
        printf("trained in %.2f s (%d optimiser iterations, %d dimensions); model: %s\n", t2 - t1, rep.iterations,
               rep.pca_dim, out);
    }
    /* the report: held-out rows, else out-of-fold predictions */
    char dirbuf[4096];
    if (!report_dir) {
        const char *sl = strrchr(out, '/');
        snprintf(dirbuf, sizeof dirbuf, "%.*s", sl ? (int)(sl - out) : 1, sl ? out : ".");
        report_dir = dirbuf;
    } else {
        mkdir(report_dir, 0755);
    }
    int rc = 0;
    if (nv) {
        float *xv = need(malloc((size_t)nv * dim * sizeof(float))), *pr = need(malloc((size_t)nv * K * sizeof(float)));
        int *tv = need(malloc((size_t)nv * sizeof(int))), *pv = need(malloc((size_t)nv * sizeof(int))), ok = 0;
        for (int i = 0, t = 0; i < n; i++)
            if (isval[i]) {
                memcpy(xv + (size_t)t * dim, x + (size_t)i * dim, (size_t)dim * sizeof(float));
                tv[t++] = y[i];
            }
        if (fn_classifier_predict_proba(cl, xv, nv, pr, &e) != FN_OK) {
            fprintf(stderr, "fruitnet-train: %s (%s)\n", e.msg, fn_status_name(e.code));
            return 1;
        }
        for (int i = 0; i < nv; i++) {
            float pmax;
            fn_topk(pr + (size_t)i * K, K, 1, &pv[i], &pmax);
            ok += pv[i] == tv[i];
        }
        if (!quiet)
            printf("validation accuracy (%d held-out rows): %.2f%%\n", nv, 100.0 * ok / nv);
        rc = write_report(report_dir, names, K, tv, pv, nv, "held-out rows");
        free(xv), free(pr), free(tv), free(pv);
    } else if (rep.folds) {
        rc = write_report(report_dir, names, K, yt, cvp, nt, "out-of-fold predictions");
    }
    if (!rc && !quiet && (nv || rep.folds))
        printf("report: %s/confusion_matrix.svg, %s/per_class.csv\n", report_dir, report_dir);
    fn_classifier_free(cl);
    for (int i = 0; i < n; i++)
        free(labels[i]), free(paths[i]);
    free(labels), free(paths), free(names), free(x), free(xt), free(y), free(yt), free(isval), free(cvp);
    return rc;
}
