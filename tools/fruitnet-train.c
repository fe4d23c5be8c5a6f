/* fruitnet-train — features Parquet (path, label, features) -> fruit classifier (.fncls) and its report. */
#include "fruitnet.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

static void usage(FILE *f)
{
    fprintf(f, "usage: fruitnet-train -i FEATURES.parquet -o MODEL.fncls [options]\n"
               "Trains a multinomial logistic regression on the features (labels from the 'label'\n"
               "column): standardisation, L2 penalty C chosen by k-fold cross-validation on the\n"
               "training rows, written atomically with a CRC. Folds are blocked by frame order\n"
               "(each class's rows sorted by the frame number in their file names, cut into\n"
               "contiguous blocks: neighbouring video frames are near-duplicates). Prints the\n"
               "cross-validated accuracy and writes a report: confusion_matrix.svg and\n"
               "per_class.csv (precision, recall) of the out-of-fold predictions, or of the --val\n"
               "rows when given.\n"
               "  -i, --input PATH    Parquet file or dataset folder written by fruitnet-extract\n"
               "  -o, --output FILE   the model (.fncls)\n"
               "      --report DIR    where the report goes (default: the folder of -o)\n"
               "      --val F         hold out a fraction F (0..0.5) of each class's rows, the last in\n"
               "                      frame order (random with --random-folds): trained without\n"
               "                      them, the report describes them\n"
               "      --folds K       cross-validation folds (default 5)\n"
               "      --random-folds  random stratified folds (and --val rows) instead of blocked\n"
               "      --c C           use this C (no cross-validation)\n"
               "      --c-range A:B:N N values of C from A to B, log-spaced (default 1:31.6:4)\n"
               "      --pca-dim K     principal components used (default 512; -1 = all features)\n"
               "      --augment PATH  extra labelled rows (e.g. fruitnet-extract --mirror of the same\n"
               "                      images) added to the final fit only: C is still chosen by the\n"
               "                      cross-validation on -i's rows; rows of --val images are dropped\n"
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

static int fail(const fn_error *e)
{
    fprintf(stderr, "fruitnet-train: %s (%s)\n", e->msg, fn_status_name(e->code));
    return 1;
}

int main(int argc, char **argv)
{
    const char *in = NULL, *out = NULL, *report_dir = NULL, *augment = NULL;
    double val = 0;
    int quiet = 0, random_folds = 0;
    fn_classifier_options opt;
    fn_classifier_options_default(&opt);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        char *end = NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "-V") || !strcmp(a, "--version")) {
            printf("fruitnet-train %s (.fncls format version 2)\n", FRUITNET_VERSION);
            return 0;
        } else if (!strcmp(a, "-q") || !strcmp(a, "--quiet") || !strcmp(a, "--random-folds")) {
            *(a[2] == 'r' ? &random_folds : &quiet) = 1;
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
        else if (!strcmp(a, "--augment"))
            augment = v;
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
        else if (!strcmp(a, "--c-range") && sscanf(v, "%lf:%lf:%d", &opt.c_min, &opt.c_max, &opt.path_len) != 3) {
            fprintf(stderr, "fruitnet-train: --c-range %s: expected MIN:MAX:N\n", v);
            return 2;
        } else if (strcmp(a, "--c-range")) {
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
    fn_error e;
    fn_labeled_set all, tr, va;
    double t0 = now();
    if (fn_labeled_set_read(in, &all, &e))
        return fail(&e);
    int64_t *order = malloc((size_t)all.n * sizeof(int64_t));
    if (!order) {
        fprintf(stderr, "fruitnet-train: out of memory\n");
        return 1;
    }
    if ((!random_folds && fn_frame_order((const char *const *)all.paths, all.n, order, &e)) ||
        fn_labeled_set_split(&all, val, 0, random_folds ? NULL : order, &tr, &va, &e))
        return fail(&e);
    int *cvp = malloc((size_t)tr.n * sizeof(int)), *pv = malloc((size_t)(va.n ? va.n : 1) * sizeof(int));
    float *pr = malloc((size_t)(va.n ? va.n : 1) * tr.nclasses * sizeof(float));
    if (!cvp || !pv || !pr) {
        fprintf(stderr, "fruitnet-train: out of memory\n");
        return 1;
    }
    if (!random_folds && fn_frame_order((const char *const *)tr.paths, tr.n, order, &e))
        return fail(&e);
    /* --augment: its rows in tr's classes, without those of held-out images (same path) */
    fn_labeled_set aug = {0};
    int *ay = NULL, na = 0;
    if (augment) {
        if (fn_labeled_set_read(augment, &aug, &e))
            return fail(&e);
        if (aug.dim != tr.dim) {
            fprintf(stderr, "fruitnet-train: %s: %d features per row, %s has %d\n", augment, aug.dim, in, tr.dim);
            return 1;
        }
        char **held = malloc((size_t)(va.n ? va.n : 1) * sizeof(char *));
        ay = malloc((size_t)(aug.n ? aug.n : 1) * sizeof(int));
        if (!held || !ay) {
            fprintf(stderr, "fruitnet-train: out of memory\n");
            return 1;
        }
        memcpy(held, va.paths, (size_t)va.n * sizeof(char *));
        qsort(held, (size_t)va.n, sizeof(char *), cmp_str);
        for (int i = 0; i < aug.n; i++) {
            const char *nm = aug.names[aug.y[i]], *p = aug.paths[i];
            char **c = bsearch(&nm, tr.names, (size_t)tr.nclasses, sizeof(char *), cmp_str);
            if (!c) {
                fprintf(stderr, "fruitnet-train: %s: row %d (%s) has label '%s', not a class of %s\n", augment, i,
                        p, nm, in);
                return 1;
            }
            if (va.n && bsearch(&p, held, (size_t)va.n, sizeof(char *), cmp_str))
                continue;
            memmove(aug.x + (size_t)na * aug.dim, aug.x + (size_t)i * aug.dim, (size_t)aug.dim * sizeof(float));
            ay[na++] = (int)(c - tr.names);
        }
        free(held);
        opt.augment_x = aug.x, opt.augment_y = ay, opt.augment_n = na;
    }
    char info[768];
    snprintf(info, sizeof info, "trained from %s (%d rows, %d held out, %s folds)%s%s%s", in, all.n, va.n,
             random_folds ? "random" : "blocked", augment ? ", augmented with " : "", augment ? augment : "",
             augment ? " (final fit only)" : "");
    opt.info = info, opt.order = random_folds ? NULL : order;
    double t1 = now();
    if (!quiet)
        fprintf(stderr, "fruitnet-train: %d rows x %d features, %d classes, %d augmentation rows (read in %.2f s); "
                "training...\n", all.n, all.dim, all.nclasses, na, t1 - t0);
    fn_classifier *cl;
    fn_classifier_report rep = {.cv_pred = cvp};
    if (fn_classifier_train(tr.x, tr.n, tr.dim, tr.y, tr.nclasses, (const char *const *)tr.names, &opt, &cl, &rep,
                            &e) ||
        fn_classifier_save(cl, out, &e))
        return fail(&e);
    double t2 = now();
    if (!quiet) {
        if (rep.folds) {
            printf("C\tcv_accuracy\tcv_log_loss\n");
            for (int p = 0; p < rep.path_len; p++)
                printf("%g\t%.4f\t%.4f%s\n", rep.c[p], rep.cv_accuracy[p], rep.cv_log_loss[p],
                       p == rep.best ? "\t<- chosen" : "");
            printf("cross-validated accuracy (%d %s folds, %d rows): %.2f%% at C = %g\n", rep.folds,
                   random_folds ? "random" : "blocked", tr.n, 100 * rep.cv_accuracy[rep.best], rep.c[rep.best]);
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
    int ok = 0;
    if (va.n && fn_classifier_predict_proba(cl, va.x, va.n, pr, &e))
        return fail(&e);
    for (int i = 0; i < va.n; i++) {
        float pmax;
        fn_topk(pr + (size_t)i * tr.nclasses, tr.nclasses, 1, &pv[i], &pmax);
        ok += pv[i] == va.y[i];
    }
    if (va.n && !quiet)
        printf("validation accuracy (%d held-out rows): %.2f%%\n", va.n, 100.0 * ok / va.n);
    if ((va.n || rep.folds) &&
        fn_classifier_write_report(report_dir, (const char *const *)tr.names, tr.nclasses, va.n ? va.y : tr.y,
                                   va.n ? pv : cvp, va.n ? va.n : tr.n,
                                   va.n ? "held-out rows" : "out-of-fold predictions", &e))
        return fail(&e);
    if (!quiet && (va.n || rep.folds))
        printf("report: %s/confusion_matrix.svg, %s/per_class.csv\n", report_dir, report_dir);
    fn_classifier_free(cl);
    fn_labeled_set_free(&all), fn_labeled_set_free(&tr), fn_labeled_set_free(&va);
    fn_labeled_set_free(&aug);
    free(order), free(cvp), free(pv), free(pr), free(ay);
    return 0;
}
