/*
 * classifier_train.c — training of the classifier (classifier.c): L2-regularised
 * multinomial logistic regression (softmax, unpenalised intercepts) whose C
 * is chosen by stratified k-fold cross-validation on the training rows.
 *
 * Objective (scikit-learn's, divided by n): f(W, b) = mean_i CE(softmax(W u_i + b), y_i) + ||W||^2 / (2 C n).
 *
 * Steps:
 *  1. Transform (default sign(x) sqrt(|x|): the features are averages of ReLU outputs, heavy-tailed; the
 *     root is worth 0.7 points of test accuracy), standardise: mean and scale (population std; 1 for constant features) in double, z = (x - mean)/scale.
 *  2. Optionally project on the top pca_dim principal components of z (fn_pca_* of this library; the
 *     eigen-decomposition on a fixed 2 threads so that its rounding does not depend on the machine):
 *     u = Q z. The L2 penalty is rotation-invariant, so this only drops the weakest directions.
 *  3. Folds: each class's rows shuffled by a seeded xorshift, dealt round-robin (class offsets rotate).
 *  4. For each fold, the path of C values from the smallest (strongest penalty) up, each fit warm-started
 *     from the previous: L-BFGS (10 pairs) with a diagonal initial Hessian from the principal variances
 *     (h_j = s e_j + 1/(C n)), Armijo backtracking; stop when max|grad| <= tol * max|grad at the
 *     fit's own (warm) start|, so that every C of the path is optimised, not only the first.
 *  5. C = the best mean out-of-fold accuracy; among equal ones the smallest C (the strongest penalty: the
 *     larger ones differ by a row or two of the CV and fit the training rows harder). Final fit on all
 *     rows at that C, started from the folds' mean solution there, to a 10x tighter tolerance. W is composed back to the standardised space: W Q.
 * The two products of each evaluation (logits = U W^T + b, gradient = U^T R) run on the convolution
 * layer's GEMM (a 1x1 convolution is a GEMM; conv.c, the ISA's micro-kernel): every output element is
 * summed in the same order whatever the number of threads, per-row work is split in fixed ranges and
 * every reduction runs serially in row order, so training is deterministic.
 */
#include "classifier.h"
#include "conv.h"
#include "threadpool.h"
#include "util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define HIST 10
#define PREC_S 0.05 /* curvature scale of the initial Hessian's data part */

static int default_threads(int threads)
{
    if (threads > 0)
        return threads > 64 ? 64 : threads;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)(n > 64 ? 64 : n) : 1;
}

void fn_classifier_options_default(fn_classifier_options *opt)
{
    memset(opt, 0, sizeof *opt);
    opt->folds = 5;
    opt->c_min = 0.1; /* half-decades 0.1 .. 3.16: converged fits choose 0.316 or 1 on Fruits-360 */
    opt->c_max = 3.1622776601683795;
    opt->path_len = 4;
    opt->pca_dim = 512;
    opt->transform = FN_CLS_SQRT;
    opt->max_iter = 30; /* CV fits: accuracy is settled long before the loss; the final fit gets 10x tighter */
    opt->tol = 1e-2;
}

/* ---------------------------------------------------------------- one problem (a fold's rows) */

typedef struct prob {
    int n, k, K;          /* rows, dimensions, classes */
    const float *U;       /* [n][k] */
    const float *Ut;      /* [k][n] */
    const int *y;         /* [n] */
    double lam;           /* 1/(C n_all) with n = this problem's rows */
    fn_pool *pool;
    fn_isa isa;
    /* scratch */
    float *wt, *bias, *L, *scratch, *G, *zero;
    size_t scratch_floats;
    double *rowloss;
    int nthreads;
} prob;

typedef struct soft_ctx {
    prob *p;
} soft_ctx;

/* L (logits) -> R = (softmax - onehot)/n in place; rowloss[i] = CE of row i. Fixed row ranges. */
static void soft_task(void *arg, int tid, int nthreads)
{
    prob *p = ((soft_ctx *)arg)->p;
    const int K = p->K;
    int r0 = (int)((int64_t)p->n * tid / nthreads), r1 = (int)((int64_t)p->n * (tid + 1) / nthreads);
    const float inv = 1.0f / (float)p->n;
    for (int i = r0; i < r1; i++) {
        float *l = p->L + (size_t)i * K;
        float mx = l[0];
        for (int k = 1; k < K; k++)
            mx = l[k] > mx ? l[k] : mx;
        float ly = l[p->y[i]];
        double s = 0;
        for (int k = 0; k < K; k++) {
            float e = expf(l[k] - mx);
            l[k] = e;
            s += e;
        }
        float is = (float)(1.0 / s);
        for (int k = 0; k < K; k++)
            l[k] = l[k] * is * inv;
        l[p->y[i]] -= inv;
        p->rowloss[i] = log(s) + (double)mx - (double)ly;
    }
}

/* f and gradient at x = [K][k+1] (column k: intercept). */
static int eval(prob *p, const double *x, double *g, double *f, fn_error *err)
{
    const int n = p->n, k = p->k, K = p->K, k1 = k + 1;
    for (int c = 0; c < K; c++) {
        for (int j = 0; j < k; j++)
            p->wt[(size_t)j * K + c] = (float)x[(size_t)c * k1 + j];
        p->bias[c] = (float)x[(size_t)c * k1 + k];
    }
    fn_conv cv;
    int rc = fn_conv_init(&cv, 1, 1, 1, 0, k, K, p->wt, p->bias, 0, p->isa, err);
    if (rc)
        return rc;
    fn_conv_forward(&cv, p->pool, p->U, n, 1, 1, p->L, NULL, 0, p->scratch);
    fn_conv_free(&cv);
    soft_ctx sc = {p};
    fn_pool_run(p->pool, soft_task, &sc);
    /* gradient: G[k][K] = U^T R (R = L now) */
    if ((rc = fn_conv_init(&cv, 1, 1, 1, 0, n, K, p->L, p->zero, 0, p->isa, err)))
        return rc;
    fn_conv_forward(&cv, p->pool, p->Ut, k, 1, 1, p->G, NULL, 0, p->scratch);
    fn_conv_free(&cv);
    double loss = 0, reg = 0;
    for (int i = 0; i < n; i++)
        loss += p->rowloss[i];
    loss /= n;
    for (int c = 0; c < K; c++) {
        const double *xc = x + (size_t)c * k1;
        double *gc = g + (size_t)c * k1;
        for (int j = 0; j < k; j++) {
            gc[j] = (double)p->G[(size_t)j * K + c] + p->lam * xc[j];
            reg += xc[j] * xc[j];
        }
        double gb = 0;
        for (int i = 0; i < n; i++)
            gb += p->L[(size_t)i * K + c];
        gc[k] = gb;
    }
    *f = loss + 0.5 * p->lam * reg;
    return FN_OK;
}

static double dot(const double *a, const double *b, size_t n)
{
    double s0 = 0, s1 = 0;
    size_t i = 0;
    for (; i + 2 <= n; i += 2)
        s0 += a[i] * b[i], s1 += a[i + 1] * b[i + 1];
    for (; i < n; i++)
        s0 += a[i] * b[i];
    return s0 + s1;
}

static double maxabs(const double *a, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++)
        m = fabs(a[i]) > m ? fabs(a[i]) : m;
    return m;
}

/* L-BFGS from x (updated in place). prec[k+1]: diagonal initial Hessian shape per column. gref: the
 * gradient scale the tolerance is relative to; <= 0: the gradient at x (a warm start's own scale, so that
 * every fit of a path moves, however close the previous C's solution already is). Returns iterations (>= 0) or a negative error. */
static int lbfgs(prob *p, double *x, const double *prec, double gref, double tol, int max_iter, double *work,
                 fn_error *err)
{
    const int k1 = p->k + 1;
    const size_t N = (size_t)p->K * k1;
    double *g = work, *d = g + N, *xn = d + N, *gn = xn + N, *S = gn + N, *Y = S + HIST * N;
    double rho[HIST], al[HIST];
    int m = 0, head = 0, it = 0, rc;
    double f, fn;
    if ((rc = eval(p, x, g, &f, err)))
        return rc;
    if (gref <= 0) /* relative to the gradient at the (warm) start */
        gref = maxabs(g, N);
    for (; it < max_iter; it++) {
        if (maxabs(g, N) <= tol * gref)
            break;
        /* two-loop recursion */
        memcpy(d, g, N * sizeof(double));
        for (int q = 0; q < m; q++) {
            int s = (head - 1 - q + HIST) % HIST;
            al[s] = rho[s] * dot(S + s * N, d, N);
            for (size_t i = 0; i < N; i++)
                d[i] -= al[s] * Y[s * N + i];
        }
        double gam = 1;
        if (m) {
            int s = (head - 1 + HIST) % HIST;
            const double *ys = Y + s * N;
            double yy = 0;
            for (size_t i = 0; i < N; i++)
                yy += ys[i] * ys[i] / prec[i % k1];
            gam = 1 / (rho[s] * yy);
        }
        for (size_t i = 0; i < N; i++)
            d[i] *= gam / prec[i % k1];
        if (!m) { /* first step: length 0.1 / max|d| at most */
            double md = maxabs(d, N);
            if (md > 0)
                for (size_t i = 0; i < N; i++)
                    d[i] *= 0.1 / md > 1 ? 1 : 0.1 / md;
        }
        for (int q = m - 1; q >= 0; q--) {
            int s = (head - 1 - q + HIST) % HIST;
            double be = rho[s] * dot(Y + s * N, d, N);
            for (size_t i = 0; i < N; i++)
                d[i] += S[s * N + i] * (al[s] - be);
        }
        double gd = -dot(g, d, N); /* direction is -d */
        if (!(gd < 0)) {           /* not a descent direction: restart from the scaled gradient */
            m = 0;
            for (size_t i = 0; i < N; i++)
                d[i] = g[i] / prec[i % k1];
            double md = maxabs(d, N);
            for (size_t i = 0; i < N; i++)
                d[i] *= 0.1 / (md > 0 ? md : 1);
            gd = -dot(g, d, N);
        }
        double t = 1;
        for (int ls = 0;; ls++) {
            for (size_t i = 0; i < N; i++)
                xn[i] = x[i] - t * d[i];
            if ((rc = eval(p, xn, gn, &fn, err)))
                return rc;
            if (fn <= f + 1e-4 * t * gd || ls == 30)
                break;
            t *= 0.5;
        }
        double *sv = S + head * N, *yv = Y + head * N;
        for (size_t i = 0; i < N; i++)
            sv[i] = xn[i] - x[i], yv[i] = gn[i] - g[i];
        double sy = dot(sv, yv, N);
        if (sy > 1e-12 * sqrt(dot(sv, sv, N) * dot(yv, yv, N)) && sy > 0) {
            rho[head] = 1 / sy;
            head = (head + 1) % HIST;
            m = m < HIST ? m + 1 : HIST;
        }
        memcpy(x, xn, N * sizeof(double));
        memcpy(g, gn, N * sizeof(double));
        if (fabs(f - fn) <= 1e-15 * fabs(f) && t < 1e-6) {
            f = fn;
            break; /* no progress possible in double precision */
        }
        f = fn;
    }
    return it;
}

static int prob_init(prob *p, int n, int k, int K, const float *U, const float *Ut, const int *y, fn_pool *pool,
                     fn_isa isa, fn_error *err)
{
    memset(p, 0, sizeof *p);
    p->n = n, p->k = k, p->K = K, p->U = U, p->Ut = Ut, p->y = y, p->pool = pool, p->isa = isa;
    p->nthreads = fn_pool_threads(pool);
    p->wt = malloc((size_t)k * K * sizeof(float));
    p->bias = calloc((size_t)K, sizeof(float));
    p->zero = calloc((size_t)K, sizeof(float));
    p->L = fn_aalloc((size_t)n * K * sizeof(float));
    p->G = fn_aalloc((size_t)k * K * sizeof(float));
    p->rowloss = malloc((size_t)n * sizeof(double));
    /* scratch: the larger of the two GEMMs' needs */
    fn_conv a, b;
    float *tmpw = calloc((size_t)(n > k ? n : k) * K, sizeof(float));
    size_t s1 = 0, s2 = 0;
    if (tmpw && !fn_conv_init(&a, 1, 1, 1, 0, k, K, tmpw, p->zero ? p->zero : tmpw, 0, isa, err)) {
        s1 = fn_conv_scratch_floats(&a, n, 1, 1, p->nthreads);
        fn_conv_free(&a);
    }
    if (tmpw && !fn_conv_init(&b, 1, 1, 1, 0, n, K, tmpw, p->zero ? p->zero : tmpw, 0, isa, err)) {
        s2 = fn_conv_scratch_floats(&b, k, 1, 1, p->nthreads);
        fn_conv_free(&b);
    }
    free(tmpw);
    p->scratch_floats = s1 > s2 ? s1 : s2;
    p->scratch = p->scratch_floats ? fn_aalloc(p->scratch_floats * sizeof(float)) : NULL;
    if (!p->wt || !p->bias || !p->zero || !p->L || !p->G || !p->rowloss || !p->scratch)
        return fn_fail(err, FN_ENOMEM, "classifier: out of memory");
    return FN_OK;
}

static void prob_free(prob *p)
{
    free(p->wt), free(p->bias), free(p->zero), free(p->rowloss);
    fn_afree(p->L), fn_afree(p->G), fn_afree(p->scratch);
}

/* argmax and log-loss of rows of U under x; returns the number correct. */
static int score(const float *U, int n, int k, int K, const int *y, const double *x, int *pred, double *logloss)
{
    const int k1 = k + 1;
    double *l = malloc((size_t)K * sizeof(double));
    int correct = 0;
    double ll = 0;
    for (int i = 0; i < n; i++) {
        const float *u = U + (size_t)i * k;
        double mx = -INFINITY;
        int am = 0;
        for (int c = 0; c < K; c++) {
            const double *w = x + (size_t)c * k1;
            double s = w[k];
            for (int j = 0; j < k; j++)
                s += w[j] * u[j];
            l[c] = s;
            if (s > mx)
                mx = s, am = c;
        }
        double se = 0;
        for (int c = 0; c < K; c++)
            se += exp(l[c] - mx);
        ll += log(se) + mx - l[y[i]];
        pred[i] = am;
        correct += am == y[i];
    }
    free(l);
    *logloss = ll;
    return correct;
}

/* ---------------------------------------------------------------- training */

static uint64_t xorshift(uint64_t *s)
{
    *s ^= *s << 13, *s ^= *s >> 7, *s ^= *s << 17;
    return *s;
}

int fn_classifier_train(const float *x, int n, int dim, const int *y, int nclasses, const char *const *class_names,
                        const fn_classifier_options *opt_in, fn_classifier **out, fn_classifier_report *report,
                        fn_error *err)
{
    fn_classifier_options opt;
    if (opt_in)
        opt = *opt_in;
    else
        fn_classifier_options_default(&opt);
    if (out)
        *out = NULL; /* on every failure (fruitnet.h's convention) */
    if (!out || !x || !y || !class_names || n < 2 || dim < 1 || dim > 65536 || nclasses < 2 || nclasses > 65536)
        return fn_fail(err, FN_EARG, "fn_classifier_train: invalid arguments (need >= 2 rows and >= 2 classes)");
    int folds = opt.folds ? opt.folds : 5, path_len = opt.path_len ? opt.path_len : 4;
    double c_min = opt.c_min > 0 ? opt.c_min : 0.1, c_max = opt.c_max > 0 ? opt.c_max : 3.1622776601683795;
    double tol = opt.tol > 0 ? opt.tol : 1e-2;
    int max_iter = opt.max_iter > 0 ? opt.max_iter : 30;
    int k = opt.pca_dim == 0 ? 512 : opt.pca_dim < 0 ? dim : opt.pca_dim;
    if (k > dim)
        k = dim;
    if (opt.c > 0)
        path_len = 1, c_min = c_max = opt.c, folds = 0;
    if ((folds && (folds < 2 || folds > 50)) || path_len < 1 || path_len > FN_CLASSIFIER_MAX_PATH ||
        c_min > c_max || !isfinite(c_max) || opt.transform < 0 || opt.transform > FN_CLS_SQRT || opt.pca_dim < -1 || max_iter < 1 || !isfinite(tol))
        return fn_fail(err, FN_EARG, "classifier: invalid options (folds %d, path %d, C %g..%g, pca_dim %d)", folds,
                       path_len, c_min, c_max, opt.pca_dim);
    if (opt.info && !fn_cls_valid_utf8(opt.info))
        return fn_fail(err, FN_EARG, "classifier: options.info is not UTF-8");
    /* labels and names */
    int *count = calloc((size_t)nclasses, sizeof(int));
    if (!count)
        return fn_fail(err, FN_ENOMEM, "classifier: out of memory");
    for (int i = 0; i < n; i++) {
        if (y[i] < 0 || y[i] >= nclasses) {
            free(count);
            return fn_fail(err, FN_EARG, "classifier: row %d has label %d outside [0, %d)", i, y[i], nclasses);
        }
        count[y[i]]++;
    }
    for (int c = 0; c < nclasses; c++) {
        const char *nm = class_names[c];
        int bad = !nm || !*nm || !fn_cls_valid_utf8(nm);
        for (int c2 = 0; !bad && c2 < c; c2++)
            bad = !strcmp(nm, class_names[c2]);
        if (bad || !count[c]) {
            free(count);
            return fn_fail(err, FN_EARG, "classifier: class %d (%s) is %s", c, nm ? nm : "NULL",
                           bad ? "empty, not UTF-8 or a duplicate name" : "never seen in the labels");
        }
    }
    for (int i = 0; i < n; i++) {
        const float *r = x + (size_t)i * dim;
        for (int j = 0; j < dim; j++)
            if (!isfinite(r[j])) {
                free(count);
                return fn_fail(err, FN_ENUMERIC, "classifier: row %d has a NaN or infinite value at index %d", i, j);
            }
    }
    int rc = FN_OK;
    const int K = nclasses, k1 = k + 1;
    const size_t N = (size_t)K * k1;
    fn_isa isa;
    if ((rc = fn_isa_resolve(FN_ISA_AUTO, &isa, err))) {
        free(count);
        return rc;
    }
    fn_pool *pool = fn_pool_create(default_threads(opt.threads));
    double *mean = calloc((size_t)dim, sizeof(double)), *scale = calloc((size_t)dim, sizeof(double));
    float *Z = fn_aalloc((size_t)n * dim * sizeof(float)), *U = NULL, *Uf = NULL, *Utf = NULL;
    double *eig = calloc((size_t)k, sizeof(double)), *prec = malloc((size_t)k1 * sizeof(double));
    /* xs: a fold's solution; xsum[p]: the sum of the folds' solutions at C p (the final fit's start) */
    double *xs = calloc(N, sizeof(double)), *xf = calloc(N, sizeof(double)),
           *xsum = calloc((size_t)path_len * N, sizeof(double));
    double *work = malloc((4 + 2 * HIST) * N * sizeof(double));
    int *fold = malloc((size_t)n * sizeof(int)), *pred = malloc((size_t)n * sizeof(int)),
        *preds = malloc((size_t)path_len * n * sizeof(int)), *yf = malloc((size_t)n * sizeof(int));
    double *acc = calloc((size_t)path_len, sizeof(double)), *ll = calloc((size_t)path_len, sizeof(double));
    fn_pca_model *pm = NULL;
    fn_classifier *cl = NULL;
    float *xcopy = NULL;
    int total_it = 0;
    if (!pool || !mean || !scale || !Z || !eig || !prec || !xs || !xf || !xsum || !work || !fold || !pred || !preds || !yf ||
        !acc || !ll) {
        rc = fn_fail(err, FN_ENOMEM, "classifier: out of memory for %d x %d rows", n, dim);
        goto done;
    }
    /* 1. transform, standardise */
    if (opt.transform != FN_CLS_IDENTITY) {
        float *tx = malloc((size_t)n * dim * sizeof(float));
        if (!tx) {
            rc = fn_fail(err, FN_ENOMEM, "classifier: out of memory");
            goto done;
        }
        for (size_t i = 0; i < (size_t)n * dim; i++)
            tx[i] = (float)fn_cls_transform(opt.transform, x[i]);
        x = xcopy = tx;
    }
    for (int i = 0; i < n; i++) {
        const float *r = x + (size_t)i * dim;
        for (int j = 0; j < dim; j++)
            mean[j] += r[j];
    }
    for (int j = 0; j < dim; j++)
        mean[j] /= n;
    for (int i = 0; i < n; i++) {
        const float *r = x + (size_t)i * dim;
        for (int j = 0; j < dim; j++) {
            double t = r[j] - mean[j];
            scale[j] += t * t;
        }
    }
    for (int j = 0; j < dim; j++) {
        scale[j] = sqrt(scale[j] / n);
        if (!(scale[j] > 1e-12 * (fabs(mean[j]) > 1 ? fabs(mean[j]) : 1)))
            scale[j] = 1;
    }
    for (int i = 0; i < n; i++)
        for (int j = 0; j < dim; j++)
            Z[(size_t)i * dim + j] = (float)((x[(size_t)i * dim + j] - mean[j]) / scale[j]);
    /* 2. principal components (or the identity) */
    if (k < dim) {
        fn_pca_stats *st;
        if ((rc = fn_pca_stats_new(dim, &st, err)))
            goto done;
        rc = fn_pca_stats_add(st, Z, n, fn_pool_threads(pool), err);
        if (!rc)
            rc = fn_pca_fit_ex(st, k, 0, 2, &pm, NULL, err);
        fn_pca_stats_free(st);
        if (rc)
            goto done;
        for (int q = 0; q < k; q++)
            eig[q] = fn_pca_model_eigvals(pm)[q];
        U = fn_aalloc((size_t)n * k * sizeof(float));
        float *Qf = malloc((size_t)k * dim * sizeof(float)), *zero = calloc((size_t)k, sizeof(float));
        fn_conv cv;
        if (!U || !Qf || !zero) {
            free(Qf), free(zero);
            rc = fn_fail(err, FN_ENOMEM, "classifier: out of memory");
            goto done;
        }
        for (int j = 0; j < dim; j++) /* [dim][k]: the GEMM's weight layout */
            for (int q = 0; q < k; q++)
                Qf[(size_t)j * k + q] = (float)fn_pca_model_components(pm)[(size_t)q * dim + j];
        rc = fn_conv_init(&cv, 1, 1, 1, 0, dim, k, Qf, zero, 0, isa, err);
        if (!rc) {
            size_t sf = fn_conv_scratch_floats(&cv, n, 1, 1, fn_pool_threads(pool));
            float *scr = fn_aalloc(sf * sizeof(float));
            if (scr)
                fn_conv_forward(&cv, pool, Z, n, 1, 1, U, NULL, 0, scr);
            else
                rc = fn_fail(err, FN_ENOMEM, "classifier: out of memory");
            fn_afree(scr);
            fn_conv_free(&cv);
        }
        free(Qf), free(zero);
        if (rc)
            goto done;
    } else {
        U = Z;
        for (int q = 0; q < k; q++)
            eig[q] = 1;
    }
    /* buffers for a fold's rows (and their transpose) */
    Uf = fn_aalloc((size_t)n * k * sizeof(float));
    Utf = fn_aalloc((size_t)n * k * sizeof(float));
    if (!Uf || !Utf) {
        rc = fn_fail(err, FN_ENOMEM, "classifier: out of memory");
        goto done;
    }
    /* 3. folds */
    if (folds) {
        uint64_t seed = opt.seed ? opt.seed : 0x9E3779B97F4A7C15ull;
        int *idx = malloc((size_t)n * sizeof(int)), off = 0;
        if (!idx) {
            rc = fn_fail(err, FN_ENOMEM, "classifier: out of memory");
            goto done;
        }
        for (int c = 0; c < K; c++) {
            int m = 0;
            for (int i = 0; i < n; i++)
                if (y[i] == c)
                    idx[m++] = i;
            for (int i = m - 1; i > 0; i--) {
                int j = (int)(xorshift(&seed) % (uint64_t)(i + 1)), t = idx[i];
                idx[i] = idx[j], idx[j] = t;
            }
            for (int i = 0; i < m; i++)
                fold[idx[i]] = (off + i) % folds;
            off = (off + m) % folds;
        }
        free(idx);
    }
    double cs[FN_CLASSIFIER_MAX_PATH];
    for (int p = 0; p < path_len; p++)
        cs[p] = path_len == 1 ? c_max : c_min * pow(c_max / c_min, (double)p / (path_len - 1));
    /* 4. cross-validation */
    for (int f = 0; f < folds && !rc; f++) {
        int nt = 0;
        for (int i = 0; i < n; i++)
            if (fold[i] != f) {
                memcpy(Uf + (size_t)nt * k, U + (size_t)i * k, (size_t)k * sizeof(float));
                yf[nt++] = y[i];
            }
        for (int i = 0; i < nt; i++)
            for (int q = 0; q < k; q++)
                Utf[(size_t)q * nt + i] = Uf[(size_t)i * k + q];
        int nv = 0;
        float *Uv = Uf + (size_t)nt * k; /* validation rows after the training ones */
        int *yv = yf + nt;
        for (int i = 0; i < n; i++)
            if (fold[i] == f) {
                memcpy(Uv + (size_t)nv * k, U + (size_t)i * k, (size_t)k * sizeof(float));
                yv[nv++] = y[i];
            }
        prob pb;
        if ((rc = prob_init(&pb, nt, k, K, Uf, Utf, yf, pool, isa, err))) {
            prob_free(&pb);
            break;
        }
        double *xw = xs;
        memset(xw, 0, N * sizeof(double));
        for (int p = 0; p < path_len && !rc; p++) {
            pb.lam = 1.0 / (cs[p] * nt);
            for (int q = 0; q < k; q++)
                prec[q] = PREC_S * eig[q] + pb.lam;
            prec[k] = PREC_S * eig[0];
            int it = lbfgs(&pb, xw, prec, 0, tol, max_iter, work, err);
            if (it < 0) {
                rc = it;
                break;
            }
            total_it += it;
            for (size_t q = 0; q < N; q++)
                xsum[(size_t)p * N + q] += xw[q];
            double l;
            int *pv = preds + (size_t)p * n, m = 0;
            acc[p] += score(Uv, nv, k, K, yv, xw, pred, &l);
            ll[p] += l;
            for (int i = 0; i < n; i++)
                if (fold[i] == f)
                    pv[i] = pred[m++];
        }
        prob_free(&pb);
    }
    if (rc)
        goto done;
    int best = 0;
    for (int p = 0; p < path_len; p++) {
        acc[p] /= n, ll[p] /= n;
        if (folds && acc[p] > acc[best])
            best = p;
    }
    /* 5. final fit on every row, along the path up to the chosen C */
    {
        prob pb;
        for (int i = 0; i < n; i++)
            for (int q = 0; q < k; q++)
                Utf[(size_t)q * n + i] = U[(size_t)i * k + q];
        if ((rc = prob_init(&pb, n, k, K, U, Utf, y, pool, isa, err))) {
            prob_free(&pb);
            goto done;
        }
        memset(xf, 0, N * sizeof(double));
        int p0 = 0;
        if (folds) { /* start from the folds' mean solution at the chosen C: one fit instead of a path */
            for (size_t q = 0; q < N; q++)
                xf[q] = xsum[(size_t)best * N + q] / folds;
            p0 = best;
        }
        for (int p = p0; p <= best && !rc; p++) {
            pb.lam = 1.0 / (cs[p] * n);
            for (int q = 0; q < k; q++)
                prec[q] = PREC_S * eig[q] + pb.lam;
            prec[k] = PREC_S * eig[0];
            int it = lbfgs(&pb, xf, prec, 0, tol / 10, 3 * max_iter, work, err);
            if (it < 0)
                rc = it;
            else
                total_it += it;
        }
        prob_free(&pb);
        if (rc)
            goto done;
    }
    /* compose back to the standardised space */
    char info[1024];
    snprintf(info, sizeof info,
             "format=fruitnet classifier\nmodel=multinomial logistic regression, L2\nfruitnet_version=%s\n"
             "transform=%s\nC=%.17g\ncv_folds=%d\ncv_accuracy=%.6f\ncv_log_loss=%.6f\nrows=%d\npca_dim=%d\n%s%s%s",
             FRUITNET_VERSION, opt.transform ? "sqrt" : "identity", cs[best], folds, folds ? acc[best] : -1.0, folds ? ll[best] : -1.0, n, k,
             opt.info ? "info=" : "", opt.info ? opt.info : "", opt.info ? "\n" : "");
    if (!(cl = fn_cls_alloc(dim, K, class_names, info))) {
        rc = fn_fail(err, FN_ENOMEM, "classifier: out of memory");
        goto done;
    }
    cl->transform = opt.transform;
    memcpy(cl->mean, mean, (size_t)dim * sizeof(double));
    memcpy(cl->scale, scale, (size_t)dim * sizeof(double));
    for (int c = 0; c < K; c++) {
        const double *w = xf + (size_t)c * k1;
        double *o = cl->W + (size_t)c * dim;
        if (k < dim) {
            for (int q = 0; q < k; q++) {
                const double *v = fn_pca_model_components(pm) + (size_t)q * dim;
                for (int j = 0; j < dim; j++)
                    o[j] += w[q] * v[j];
            }
        } else {
            memcpy(o, w, (size_t)dim * sizeof(double));
        }
        cl->b[c] = w[k];
    }
    if (report) {
        int *cvp = report->cv_pred;
        memset(report, 0, sizeof *report);
        report->cv_pred = cvp;
        report->path_len = path_len, report->best = best, report->folds = folds, report->pca_dim = k;
        report->iterations = total_it;
        for (int p = 0; p < path_len; p++) {
            report->c[p] = cs[p];
            report->cv_accuracy[p] = folds ? acc[p] : NAN;
            report->cv_log_loss[p] = folds ? ll[p] : NAN;
        }
        if (cvp && folds)
            memcpy(cvp, preds + (size_t)best * n, (size_t)n * sizeof(int));
    }
    *out = cl;
done:
    if (pool)
        fn_pool_destroy(pool);
    fn_pca_model_free(pm);
    if (U != Z)
        fn_afree(U);
    fn_afree(Z), fn_afree(Uf), fn_afree(Utf);
    free(count), free(mean), free(scale), free(eig), free(prec), free(xs), free(xf), free(xsum), free(work);
    free(fold), free(pred), free(preds), free(yf), free(acc), free(ll), free(xcopy);
    return rc;
}
