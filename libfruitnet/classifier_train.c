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
 *  2. Optionally project on the top pca_dim principal components of z: u = Q z. The L2 penalty is
 *     rotation-invariant, so this only drops the weakest directions. When pca_dim + oversampling < dim
 *     (the default 512 of 2048): randomised subspace iteration on the covariance, in float on the GEMM,
 *     Cholesky-QR between steps, then Rayleigh-Ritz (principal(): ~1.4 CPU-s instead of ~3 for the full
 *     2048-d eigen-decomposition); otherwise fn_pca_fit_ex. Small eigen-solves run on 1 thread.
 *  3. Folds: with options.order (blocked CV), each class's rows sorted by it (e.g. frame order) and cut into
 *     `folds` contiguous blocks, so near-duplicate neighbouring frames of a video are held out together
 *     (random folds saturate at 99.89% on Fruits-360 and cannot choose anything); else each class's rows
 *     shuffled by a seeded xorshift, dealt round-robin (class offsets rotate).
 *  4. One job per fold, run side by side on the threads (each job on min 1, threads/folds threads): the
 *     path of C values from the smallest (strongest penalty) up, each fit warm-started from the previous:
 *     L-BFGS (10 pairs) with a diagonal initial Hessian from the principal variances (h_j = s e_j +
 *     1/(C n)), Armijo backtracking; stop when max|grad| <= tol * max|grad at the fit's own (warm) start|
 *     or after max_iter iterations. A fold's results depend only on the fold; they are summed in fold order.
 *  5. C = the best mean out-of-fold accuracy; among equal ones the lowest out-of-fold log-loss (random
 *     folds saturate on Fruits-360 at 99.89% for C >= 0.316; blocked ones do not). Final fit on all rows at that C, started
 *     from the folds' mean solution there, to a 10x tighter tolerance, 3x max_iter. W is composed back to
 *     the standardised space: W Q.
 * The two products of each evaluation (logits = U W^T + b, gradient = [U 1]^T R: the intercepts' gradient
 * is the row of ones) run on the convolution layer's GEMM (a 1x1 convolution is a GEMM; conv.c, the ISA's
 * micro-kernel): every output element is summed in the same order whatever the number of threads, per-row
 * work is split in fixed ranges and every reduction runs serially in row order; the softmax's exp is a
 * polynomial in plain float arithmetic (exp_nonpos / exp_v4, no libm); so training is deterministic: the
 * same model, bit for bit, on any number of threads (on a given ISA).
 */
#include "classifier.h"
#include "conv.h"
#include "threadpool.h"
#include "util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdatomic.h>
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
    /* Chosen by blocked 5-fold CV on the training sample (frame order; random folds saturate at 99.89%),
     * fruitnet-train's own CV over the C path 0.316..31.6 (5 values): best 98.64% with 512 components,
     * 98.77% with 768, 98.73% with 1024 (each at C = 31.6; 0.316 the worst, 98.3-98.4%). 768's lead is
     * 6 rows of 4,560, within one standard error (0.17%): the one-standard-error rule keeps the cheaper
     * 512 (768 costs 1.4x the CPU time, over the 5 s budget). The path: the half-decades 1..31.6. */
    opt->c_min = 1;
    opt->c_max = 31.622776601683793;
    opt->path_len = 4;
    opt->pca_dim = 512;
    opt->transform = FN_CLS_SQRT;
    opt->max_iter = 20; /* CV fits: accuracy is settled long before the loss (converged fits at C = 1..10 score the same); the final fit gets 3x */
    opt->tol = 1e-2;
}

/* ---------------------------------------------------------------- one problem (a fold's rows) */

typedef struct prob {
    int n, k, K;          /* rows, dimensions, classes */
    const float *U;       /* [n][k] */
    const float *Ut;      /* [k+1][n]: U transposed, then a row of ones */
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

/* e^x for x <= 0 in plain float arithmetic (Cephes' expf: x = n ln2 + r, |r| <= ln2/2, degree-6 polynomial,
 * 2^n into the exponent bits), relative error < 2e-7, e^x ~ 0 below -80. exp_v4 is the same operations on
 * 4 lanes (SSE2 on plain x86-64; GCC vector extensions): the same bits as exp_nonpos, lane by lane, and no
 * FMA contraction in ISO C mode, so the results do not depend on the compiler's choices or the CPU. */
typedef float v4f __attribute__((vector_size(16)));
typedef int32_t v4i __attribute__((vector_size(16)));

#define EXP_BODY(T, x, tb, LO)                                                                                   \
    T t = x * 1.44269504088896341f + 12582912.0f; /* 1.5 * 2^23: n = round(x / ln 2) in the low bits */         \
    T nf = t - 12582912.0f;                                                                                      \
    T r = x - nf * 0.693359375f;                                                                                 \
    r = r - nf * -2.12194440e-4f;                                                                                \
    T q = r * 1.9875691500e-4f + 1.3981999507e-3f;                                                               \
    q = q * r + 8.3334519073e-3f;                                                                                \
    q = q * r + 4.1665795894e-2f;                                                                                \
    q = q * r + 1.6666665459e-1f;                                                                                \
    q = q * r + 5.0000001201e-1f;                                                                                \
    T e = q * r * r + r + 1.0f;

static inline float exp_nonpos(float x)
{
    x = x < -80.0f ? -80.0f : x;
    EXP_BODY(float, x, tb, lo)
    uint32_t tb, eb;
    memcpy(&tb, &t, 4), memcpy(&eb, &e, 4);
    eb += (tb - 0x4B400000u) << 23; /* + n in the exponent (n >= -116: stays normal) */
    memcpy(&e, &eb, 4);
    return e;
}

static inline v4f exp_v4(v4f x)
{
    const v4f lo = {-80.0f, -80.0f, -80.0f, -80.0f};
    v4i m = x < lo;
    x = (v4f)(((v4i)x & ~m) | ((v4i)lo & m));
    EXP_BODY(v4f, x, tb, lo)
    v4i n = (v4i)t - 0x4B400000;
    return (v4f)((v4i)e + (n << 23));
}

/* L (logits) -> R = (softmax - onehot)/n in place; rowloss[i] = CE of row i. Fixed row ranges. */
static void soft_task(void *arg, int tid, int nthreads)
{
    prob *p = ((soft_ctx *)arg)->p;
    const int K = p->K, K4 = K & ~3;
    int r0 = (int)((int64_t)p->n * tid / nthreads), r1 = (int)((int64_t)p->n * (tid + 1) / nthreads);
    const float inv = 1.0f / (float)p->n;
    for (int i = r0; i < r1; i++) {
        float *l = p->L + (size_t)i * K;
        float mx = l[0];
        if (K4) {
            v4f m4;
            memcpy(&m4, l, sizeof m4);
            for (int k = 4; k < K4; k += 4) {
                v4f a;
                memcpy(&a, l + k, sizeof a);
                v4i gt = a > m4;
                m4 = (v4f)(((v4i)a & gt) | ((v4i)m4 & ~gt));
            }
            for (int j = 0; j < 4; j++)
                mx = m4[j] > mx ? m4[j] : mx;
        }
        for (int k = K4; k < K; k++)
            mx = l[k] > mx ? l[k] : mx;
        float ly = l[p->y[i]];
        const v4f mx4 = {mx, mx, mx, mx};
        for (int k = 0; k < K4; k += 4) {
            v4f a;
            memcpy(&a, l + k, sizeof a);
            a = exp_v4(a - mx4);
            memcpy(l + k, &a, sizeof a);
        }
        for (int k = K4; k < K; k++)
            l[k] = exp_nonpos(l[k] - mx);
        double s = 0;
        for (int k = 0; k < K; k++)
            s += l[k];
        float is = (float)(1.0 / s) * inv;
        for (int k = 0; k < K; k++)
            l[k] *= is;
        l[p->y[i]] -= inv;
        p->rowloss[i] = log(s) + (double)mx - (double)ly;
    }
}

/* logits[nrows][K] = rows U[nrows][k] x W^T + b for x = [K][k+1] (column k: intercept), on the GEMM. */
static int logits(prob *p, const double *x, const float *U, int nrows, float *out, fn_error *err)
{
    const int k = p->k, K = p->K, k1 = k + 1;
    for (int c = 0; c < K; c++) {
        for (int j = 0; j < k; j++)
            p->wt[(size_t)j * K + c] = (float)x[(size_t)c * k1 + j];
        p->bias[c] = (float)x[(size_t)c * k1 + k];
    }
    fn_conv cv;
    int rc = fn_conv_init(&cv, 1, 1, 1, 0, k, K, p->wt, p->bias, 0, p->isa, err);
    if (rc)
        return rc;
    fn_conv_forward(&cv, p->pool, U, nrows, 1, 1, out, NULL, 0, p->scratch);
    fn_conv_free(&cv);
    return FN_OK;
}

/* f and gradient at x = [K][k+1] (column k: intercept). */
static int eval(prob *p, const double *x, double *g, double *f, fn_error *err)
{
    const int n = p->n, k = p->k, K = p->K, k1 = k + 1;
    int rc = logits(p, x, p->U, n, p->L, err);
    if (rc)
        return rc;
    soft_ctx sc = {p};
    fn_pool_run(p->pool, soft_task, &sc);
    /* gradient: G[k+1][K] = [U 1]^T R (R = L now; Ut's last row is ones: the intercepts' gradient) */
    fn_conv cv;
    if ((rc = fn_conv_init(&cv, 1, 1, 1, 0, n, K, p->L, p->zero, 0, p->isa, err)))
        return rc;
    fn_conv_forward(&cv, p->pool, p->Ut, k1, 1, 1, p->G, NULL, 0, p->scratch);
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
        gc[k] = (double)p->G[(size_t)k * K + c];
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
    double *g = work, *d = g + N, *xn = d + N, *gn = xn + N, *ip = gn + N, *S = ip + N, *Y = S + HIST * N;
    double rho[HIST], al[HIST];
    int m = 0, head = 0, it = 0, rc;
    double f, fn;
    for (size_t i = 0; i < N; i++) /* the inverse initial Hessian, element by element */
        ip[i] = 1 / prec[i % k1];
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
                yy += ys[i] * ys[i] * ip[i];
            gam = 1 / (rho[s] * yy);
        }
        for (size_t i = 0; i < N; i++)
            d[i] *= gam * ip[i];
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
                d[i] = g[i] * ip[i];
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

/* rows_max: the most rows logits() will be given (n, or a validation set's size if larger). */
static int prob_init(prob *p, int n, int rows_max, int k, int K, const float *U, const float *Ut, const int *y,
                     fn_pool *pool, fn_isa isa, fn_error *err)
{
    memset(p, 0, sizeof *p);
    p->n = n, p->k = k, p->K = K, p->U = U, p->Ut = Ut, p->y = y, p->pool = pool, p->isa = isa;
    p->nthreads = fn_pool_threads(pool);
    p->wt = malloc((size_t)k * K * sizeof(float));
    p->bias = calloc((size_t)K, sizeof(float));
    p->zero = calloc((size_t)K, sizeof(float));
    if (rows_max < n)
        rows_max = n;
    p->L = fn_aalloc((size_t)rows_max * K * sizeof(float));
    p->G = fn_aalloc((size_t)(k + 1) * K * sizeof(float));
    p->rowloss = malloc((size_t)n * sizeof(double));
    /* scratch: the larger of the two GEMMs' needs */
    fn_conv a, b;
    float *tmpw = calloc((size_t)(n > k ? n : k) * K, sizeof(float));
    size_t s1 = 0, s2 = 0;
    if (tmpw && !fn_conv_init(&a, 1, 1, 1, 0, k, K, tmpw, p->zero ? p->zero : tmpw, 0, isa, err)) {
        s1 = fn_conv_scratch_floats(&a, rows_max, 1, 1, p->nthreads);
        fn_conv_free(&a);
    }
    if (tmpw && !fn_conv_init(&b, 1, 1, 1, 0, n, K, tmpw, p->zero ? p->zero : tmpw, 0, isa, err)) {
        s2 = fn_conv_scratch_floats(&b, k + 1, 1, 1, p->nthreads);
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

/* argmax and log-loss (summed) of rows U[n][k] with labels y under x (logits on the GEMM, in float; the
 * log-sum-exp in double); returns the number correct, or a negative error. Uses p's logits buffer. */
static int score(prob *p, const float *U, int n, const int *y, const double *x, int *pred, double *logloss,
                 fn_error *err)
{
    const int K = p->K;
    int rc = logits(p, x, U, n, p->L, err);
    if (rc)
        return rc;
    int correct = 0;
    double ll = 0;
    for (int i = 0; i < n; i++) {
        const float *l = p->L + (size_t)i * K;
        int am = 0;
        for (int c = 1; c < K; c++)
            if (l[c] > l[am])
                am = c;
        double se = 0;
        for (int c = 0; c < K; c++)
            se += exp((double)l[c] - (double)l[am]);
        ll += log(se) + (double)l[am] - (double)l[y[i]];
        pred[i] = am;
        correct += am == y[i];
    }
    *logloss = ll;
    return correct;
}

/* ---------------------------------------------------------------- principal components */

/* out[rows][cout] = in[rows][cin] x w[cin][cout] on the GEMM (deterministic whatever the threads). */
static int matmul(fn_pool *pool, fn_isa isa, const float *in, int rows, int cin, const float *w, int cout, float *out,
                  fn_error *err)
{
    float *zero = calloc((size_t)cout, sizeof(float)), *scr = NULL;
    fn_conv cv;
    int rc = zero ? fn_conv_init(&cv, 1, 1, 1, 0, cin, cout, w, zero, 0, isa, err)
                  : fn_fail(err, FN_ENOMEM, "classifier: out of memory");
    if (!rc) {
        scr = fn_aalloc(fn_conv_scratch_floats(&cv, rows, 1, 1, fn_pool_threads(pool)) * sizeof(float));
        if (scr)
            fn_conv_forward(&cv, pool, in, rows, 1, 1, out, NULL, 0, scr);
        else
            rc = fn_fail(err, FN_ENOMEM, "classifier: out of memory");
        fn_conv_free(&cv);
    }
    fn_afree(scr), free(zero);
    return rc;
}

#define SUBSPACE_ITERS 3

/* W[p][p] (float) = R^-1 where R^T R = Y^T Y (Cholesky, double): Y W has orthonormal columns (Cholesky-QR; Y's
 * rows [rows][p] are followed by room for rows more, used for -Y so that the statistics' mean is 0 and their
 * co-moment 2 Y^T Y). A column dependent on the previous ones (pivot <= 1e-12 of the largest) becomes 0. */
static int orth_weights(float *Y, int rows, int p, fn_pool *pool, float *W, fn_error *err)
{
    for (size_t i = 0; i < (size_t)rows * p; i++)
        Y[(size_t)rows * p + i] = -Y[i];
    fn_pca_stats *st;
    int rc = fn_pca_stats_new(p, &st, err);
    if (rc)
        return rc;
    double *R = calloc((size_t)p * p, sizeof(double)), *X = calloc((size_t)p * p, sizeof(double));
    if (!R || !X) {
        rc = fn_fail(err, FN_ENOMEM, "classifier: out of memory");
        goto out;
    }
    if ((rc = fn_pca_stats_add(st, Y, 2 * rows, fn_pool_threads(pool), err)))
        goto out;
    const double *m2 = fn_pca_stats_m2(st);
    double top = 0;
    for (int i = 0; i < p; i++)
        top = m2[(size_t)i * p + i] > top ? m2[(size_t)i * p + i] : top;
    /* right-looking Cholesky on the upper triangle of G = m2 / 2 (R overwrites it row by row) */
    for (size_t i = 0; i < (size_t)p * p; i++)
        R[i] = m2[i] / 2;
    for (int i = 0; i < p; i++) {
        double *ri = R + (size_t)i * p, dd = ri[i];
        if (!(dd > 1e-12 * top / 2)) { /* dependent column: row i of R is 0, column i of Q dropped */
            memset(ri + i, 0, (size_t)(p - i) * sizeof(double));
            continue;
        }
        double rii = sqrt(dd), inv = 1 / rii;
        ri[i] = rii;
        for (int j = i + 1; j < p; j++)
            ri[j] *= inv;
        for (int j = i + 1; j < p; j++) {
            double *rj = R + (size_t)j * p, f = ri[j];
            for (int l = j; l < p; l++)
                rj[l] -= f * ri[l];
        }
    }
    for (int i = 0; i < p; i++) /* only the upper triangle is R */
        memset(R + (size_t)i * p, 0, (size_t)i * sizeof(double));
    for (int i = p - 1; i >= 0; i--) { /* X = R^-1 (upper), row by row from the bottom */
        const double *ri = R + (size_t)i * p;
        double *xi = X + (size_t)i * p;
        if (ri[i] == 0)
            continue;
        xi[i] = 1;
        for (int t = i + 1; t < p; t++) {
            const double *xt = X + (size_t)t * p;
            double f = ri[t];
            for (int j = t; j < p; j++)
                xi[j] -= f * xt[j];
        }
        double inv = 1 / ri[i];
        for (int j = i; j < p; j++)
            xi[j] *= inv;
    }
    for (size_t i = 0; i < (size_t)p * p; i++)
        W[i] = (float)X[i];
out:
    fn_pca_stats_free(st);
    free(R), free(X);
    return rc;
}

/* Top kk eigenpairs (model rows, eigenvalues) of the covariance of rows[nrows][d] (the statistics on the
 * pool; fn_pca_fit_ex on 1 thread: its rounding does not depend on the machine, and d is small here). */
static int pca_of(const float *rows, int nrows, int d, int kk, fn_pool *pool, fn_pca_model **pm, fn_error *err)
{
    fn_pca_stats *st;
    int rc = fn_pca_stats_new(d, &st, err);
    if (rc)
        return rc;
    rc = fn_pca_stats_add(st, rows, nrows, fn_pool_threads(pool), err);
    if (!rc)
        rc = fn_pca_fit_ex(st, kk, 0, 1, pm, NULL, err);
    fn_pca_stats_free(st);
    return rc;
}

/* The top k principal directions (comps[k][dim], unit rows) and variances (eig[k]) of Z[n][dim] (centred),
 * and U = Z comps^T. When k + k/8 (at least 16) oversampling columns fall short of dim: randomised subspace
 * iteration (Halko, Martinsson, Tropp 2011, alg. 4.4 + 5.3) on the covariance C in float on the GEMM,
 * Q <- orth(C Q) SUBSPACE_ITERS times from a seeded random start (orth: Y V S^-1/2 from the eigen-pairs
 * (V, S) of Y^T Y), then Rayleigh-Ritz: the PCA of the projected rows Z Q. Only the weakest of the k
 * directions are approximate (they converge as (l_j / l_p)^(2 iters + 1)); otherwise the exact PCA. */
static int principal(const float *Z, int n, int dim, int k, fn_pool *pool, fn_isa isa, double *comps, double *eig,
                     float *U, fn_error *err)
{
    int p = k + (k / 8 > 16 ? k / 8 : 16), rc;
    fn_pca_model *pm = NULL;
    if (p >= dim) { /* exact */
        float *Qf = malloc((size_t)k * dim * sizeof(float));
        if (!Qf)
            return fn_fail(err, FN_ENOMEM, "classifier: out of memory");
        if (!(rc = pca_of(Z, n, dim, k, pool, &pm, err))) {
            memcpy(comps, fn_pca_model_components(pm), (size_t)k * dim * sizeof(double));
            memcpy(eig, fn_pca_model_eigvals(pm), (size_t)k * sizeof(double));
            for (int j = 0; j < dim; j++) /* [dim][k]: the GEMM's weight layout */
                for (int q = 0; q < k; q++)
                    Qf[(size_t)j * k + q] = (float)comps[(size_t)q * dim + j];
            rc = matmul(pool, isa, Z, n, dim, Qf, k, U, err);
        }
        fn_pca_model_free(pm);
        free(Qf);
        return rc;
    }
    fn_pca_stats *st;
    if ((rc = fn_pca_stats_new(dim, &st, err)))
        return rc;
    float *C = fn_aalloc((size_t)dim * dim * sizeof(float)), *Q = fn_aalloc((size_t)dim * p * sizeof(float));
    float *Y = fn_aalloc((size_t)2 * dim * p * sizeof(float)), *W = fn_aalloc((size_t)p * p * sizeof(float));
    float *P = fn_aalloc((size_t)n * p * sizeof(float)), *Ct = NULL;
    if (!C || !Q || !Y || !W || !P) {
        rc = fn_fail(err, FN_ENOMEM, "classifier: out of memory");
        goto out;
    }
    if ((rc = fn_pca_stats_add(st, Z, n, fn_pool_threads(pool), err)))
        goto out;
    const double *m2 = fn_pca_stats_m2(st);
    for (int i = 0; i < dim; i++)
        for (int j = i; j < dim; j++)
            C[(size_t)i * dim + j] = C[(size_t)j * dim + i] = (float)(m2[(size_t)i * dim + j] / (n - 1));
    uint64_t seed = 0x2545F4914F6CDD1Dull;
    for (size_t i = 0; i < (size_t)dim * p; i++) {
        seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
        Q[i] = (float)((double)(seed >> 11) * 0x1.0p-53 * 2 - 1);
    }
    for (int it = 0; it < SUBSPACE_ITERS; it++) {
        if ((rc = matmul(pool, isa, C, dim, dim, Q, p, Y, err))) /* Y = C Q (C symmetric) */
            goto out;
        if ((rc = orth_weights(Y, dim, p, pool, W, err)))
            goto out;
        if ((rc = matmul(pool, isa, Y, dim, p, W, p, Q, err)))
            goto out;
    }
    /* Rayleigh-Ritz: P = Z Q, its top k principal directions V; comps = V Q^T, U = P V^T */
    if ((rc = matmul(pool, isa, Z, n, dim, Q, p, P, err)) || (rc = pca_of(P, n, p, k, pool, &pm, err)))
        goto out;
    memcpy(eig, fn_pca_model_eigvals(pm), (size_t)k * sizeof(double));
    for (int i = 0; i < p; i++)
        for (int q = 0; q < k; q++)
            W[(size_t)i * k + q] = (float)fn_pca_model_components(pm)[(size_t)q * p + i];
    if ((rc = matmul(pool, isa, P, n, p, W, k, U, err)))
        goto out;
    for (int q = 0; q < k; q++) /* Y <- V [k][p] */
        for (int i = 0; i < p; i++)
            Y[(size_t)q * p + i] = (float)fn_pca_model_components(pm)[(size_t)q * p + i];
    if (!(Ct = fn_aalloc((size_t)p * dim * sizeof(float)))) {
        rc = fn_fail(err, FN_ENOMEM, "classifier: out of memory");
        goto out;
    }
    for (int j = 0; j < dim; j++)
        for (int i = 0; i < p; i++)
            Ct[(size_t)i * dim + j] = Q[(size_t)j * p + i];
    if ((rc = matmul(pool, isa, Y, k, p, Ct, dim, C, err))) /* C <- V Q^T [k][dim] */
        goto out;
    for (int q = 0; q < k; q++) { /* unit rows in double */
        const float *v = C + (size_t)q * dim;
        double nn = 0;
        for (int j = 0; j < dim; j++)
            nn += (double)v[j] * v[j];
        double sc = nn > 0 ? 1 / sqrt(nn) : 0;
        for (int j = 0; j < dim; j++)
            comps[(size_t)q * dim + j] = v[j] * sc;
    }
out:
    fn_pca_model_free(pm);
    fn_pca_stats_free(st);
    fn_afree(C), fn_afree(Q), fn_afree(Y), fn_afree(W), fn_afree(P), fn_afree(Ct);
    return rc;
}

/* ---------------------------------------------------------------- out-of-set distance */

#define DIST_QUANTILE 0.99 /* of the training rows' nearest-class-mean distances: the threshold */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* cent[K][dim] = the class means of Z's rows; *th = the DIST_QUANTILE quantile of the rows' mean squared
 * distance per feature to the nearest class mean (||z||^2 - 2 z.m + ||m||^2, z.m on the GEMM), + 1e-4
 * relative (with few rows the quantile is the largest row, which must stay within under inference's rounding). */
static int class_means(const float *Z, int n, int dim, const int *y, int K, const int *count, fn_pool *pool,
                       fn_isa isa, float *cent, double *th, fn_error *err)
{
    double *acc = calloc((size_t)K * dim, sizeof(double)), *dist = malloc((size_t)n * sizeof(double)),
           *mm = calloc((size_t)K, sizeof(double));
    float *Mt = malloc((size_t)dim * K * sizeof(float)), *ZM = fn_aalloc((size_t)n * K * sizeof(float));
    int rc = FN_OK;
    if (!acc || !dist || !mm || !Mt || !ZM) {
        rc = fn_fail(err, FN_ENOMEM, "classifier: out of memory");
        goto out;
    }
    for (int i = 0; i < n; i++) {
        double *a = acc + (size_t)y[i] * dim;
        const float *z = Z + (size_t)i * dim;
        for (int j = 0; j < dim; j++)
            a[j] += z[j];
    }
    for (int c = 0; c < K; c++)
        for (int j = 0; j < dim; j++) {
            float v = (float)(acc[(size_t)c * dim + j] / count[c]);
            cent[(size_t)c * dim + j] = v;
            Mt[(size_t)j * K + c] = v;
            mm[c] += (double)v * v;
        }
    if ((rc = matmul(pool, isa, Z, n, dim, Mt, K, ZM, err)))
        goto out;
    for (int i = 0; i < n; i++) {
        const float *z = Z + (size_t)i * dim;
        double zz = 0, best = INFINITY;
        for (int j = 0; j < dim; j++)
            zz += (double)z[j] * z[j];
        for (int c = 0; c < K; c++) {
            double d2 = zz - 2.0 * ZM[(size_t)i * K + c] + mm[c];
            best = d2 < best ? d2 : best;
        }
        dist[i] = (best > 0 ? best : 0) / dim;
    }
    qsort(dist, (size_t)n, sizeof(double), cmp_double);
    int q = (int)ceil(DIST_QUANTILE * n) - 1;
    *th = dist[q < 0 ? 0 : q >= n ? n - 1 : q] * (1 + 1e-4); /* slack: these distances are float, inference's double */
    if (!(*th > 1e-12))
        *th = 1e-12;
out:
    free(acc), free(dist), free(mm), free(Mt);
    fn_afree(ZM);
    return rc;
}

/* ---------------------------------------------------------------- cross-validation jobs */

typedef struct cv_ctx {
    const float *U;    /* [n][k] all rows */
    const int *y, *fold;
    int n, k, K, path_len, folds;
    const double *cs, *eig;
    double tol;
    int max_iter;
    fn_isa isa;
    int inner;         /* threads of each job */
    int side;          /* folds [0, side) run side by side; the others one after the other on all threads */
    _Atomic int next;  /* the next fold to take */
    double *xsol;      /* [folds][path_len][N]: each fold's solution at each C */
    double *acc, *ll;  /* [folds][path_len]: correct rows and summed log-loss on the fold's held-out rows */
    int *it, *rc;      /* [folds] */
    int *preds;        /* [path_len][n]: out-of-fold predictions (each fold writes its own rows) */
    fn_error *errs;    /* [folds] */
} cv_ctx;

/* Fold f: train on the other folds' rows along the C path (each fit warm-started from the previous C's
 * solution), score the fold's rows. Everything it computes depends only on f, not on the thread running it. */
static int cv_fold(cv_ctx *c, int f, fn_pool *pool, fn_error *err)
{
    const int n = c->n, k = c->k, K = c->K, k1 = k + 1;
    const size_t N = (size_t)K * k1;
    float *Uf = fn_aalloc((size_t)n * k * sizeof(float)), *Utf = fn_aalloc((size_t)n * k1 * sizeof(float));
    int *yf = malloc((size_t)n * sizeof(int)), *pred = malloc((size_t)n * sizeof(int));
    double *work = malloc((5 + 2 * HIST) * N * sizeof(double)), *prec = malloc((size_t)k1 * sizeof(double));
    prob pb;
    memset(&pb, 0, sizeof pb);
    int rc = FN_OK;
    if (!Uf || !Utf || !yf || !pred || !work || !prec) {
        rc = fn_fail(err, FN_ENOMEM, "classifier: out of memory");
        goto out;
    }
    int nt = 0, nv = 0;
    for (int i = 0; i < n; i++)
        if (c->fold[i] != f) {
            memcpy(Uf + (size_t)nt * k, c->U + (size_t)i * k, (size_t)k * sizeof(float));
            yf[nt++] = c->y[i];
        }
    for (int i = 0; i < nt; i++)
        for (int q = 0; q < k; q++)
            Utf[(size_t)q * nt + i] = Uf[(size_t)i * k + q];
    for (int i = 0; i < nt; i++)
        Utf[(size_t)k * nt + i] = 1;
    float *Uv = Uf + (size_t)nt * k; /* validation rows after the training ones */
    int *yv = yf + nt;
    for (int i = 0; i < n; i++)
        if (c->fold[i] == f) {
            memcpy(Uv + (size_t)nv * k, c->U + (size_t)i * k, (size_t)k * sizeof(float));
            yv[nv++] = c->y[i];
        }
    if ((rc = prob_init(&pb, nt, nv, k, K, Uf, Utf, yf, pool, c->isa, err)))
        goto out;
    double *xw = c->xsol + (size_t)f * c->path_len * N;
    memset(xw, 0, N * sizeof(double));
    for (int p = 0; p < c->path_len; p++) {
        if (p)
            memcpy(xw + (size_t)p * N, xw + (size_t)(p - 1) * N, N * sizeof(double));
        double *xp = xw + (size_t)p * N;
        pb.lam = 1.0 / (c->cs[p] * nt);
        for (int q = 0; q < k; q++)
            prec[q] = PREC_S * c->eig[q] + pb.lam;
        prec[k] = PREC_S * c->eig[0];
        int it = lbfgs(&pb, xp, prec, 0, c->tol, c->max_iter, work, err);
        if (it < 0) {
            rc = it;
            goto out;
        }
        c->it[f] += it;
        double l = 0;
        int m = 0, ok = score(&pb, Uv, nv, yv, xp, pred, &l, err);
        if (ok < 0) {
            rc = ok;
            goto out;
        }
        c->acc[f * c->path_len + p] = ok;
        c->ll[f * c->path_len + p] = l;
        int *pv = c->preds + (size_t)p * n;
        for (int i = 0; i < n; i++)
            if (c->fold[i] == f)
                pv[i] = pred[m++];
    }
out:
    prob_free(&pb);
    fn_afree(Uf), fn_afree(Utf);
    free(yf), free(pred), free(work), free(prec);
    return rc;
}

/* Outer pool task: take folds until none is left (each job on its own inner pool of c->inner threads). */
static void cv_task(void *arg, int tid, int nthreads)
{
    cv_ctx *c = arg;
    if (tid >= c->side) /* more threads than folds: the others work inside the jobs (c->inner) */
        return;
    fn_pool *pool = fn_pool_create(c->inner);
    for (;;) {
        int f = atomic_fetch_add(&c->next, 1);
        if (f >= c->side)
            break;
        if (!pool) {
            c->rc[f] = fn_fail(&c->errs[f], FN_ENOMEM, "classifier: cannot create threads");
            continue;
        }
        c->rc[f] = cv_fold(c, f, pool, &c->errs[f]);
    }
    if (pool)
        fn_pool_destroy(pool);
}

/* ---------------------------------------------------------------- training */

/* qsort's comparison of row indices by options.order, ties by index (the keys: per thread, so that
 * trainings on several threads at once do not meet) */
static _Thread_local const int64_t *order_keys;
static int cmp_order(const void *a, const void *b)
{
    int i = *(const int *)a, j = *(const int *)b;
    int64_t ki = order_keys[i], kj = order_keys[j];
    return ki < kj ? -1 : ki > kj ? 1 : (i > j) - (i < j);
}

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
    double c_min = opt.c_min > 0 ? opt.c_min : 1, c_max = opt.c_max > 0 ? opt.c_max : 31.622776601683793;
    double tol = opt.tol > 0 ? opt.tol : 1e-2;
    int max_iter = opt.max_iter > 0 ? opt.max_iter : 20;
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
    const int na = opt.augment_n;
    if (na < 0 || (na > 0 && (!opt.augment_x || !opt.augment_y)) || (int64_t)n + na > 2000000000) {
        free(count);
        return fn_fail(err, FN_EARG, "classifier: invalid augmentation (%d rows)", na);
    }
    for (int i = 0; i < na; i++) {
        if (opt.augment_y[i] < 0 || opt.augment_y[i] >= nclasses) {
            free(count);
            return fn_fail(err, FN_EARG, "classifier: augmentation row %d has label %d outside [0, %d)", i,
                           opt.augment_y[i], nclasses);
        }
        const float *r = opt.augment_x + (size_t)i * dim;
        for (int j = 0; j < dim; j++)
            if (!isfinite(r[j])) {
                free(count);
                return fn_fail(err, FN_ENUMERIC, "classifier: augmentation row %d has a NaN or infinite value at "
                               "index %d", i, j);
            }
    }
    const int nt_all = n + na; /* rows of the final fit */
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
    float *Z = fn_aalloc((size_t)n * dim * sizeof(float)), *U = NULL, *Utf = NULL;
    double *eig = calloc((size_t)k, sizeof(double)), *prec = malloc((size_t)k1 * sizeof(double));
    /* xsum[p]: the sum of the folds' solutions at C p (the final fit's start) */
    double *xf = calloc(N, sizeof(double)),
           *xsum = calloc((size_t)path_len * N, sizeof(double));
    double *work = malloc((5 + 2 * HIST) * N * sizeof(double));
    int *fold = malloc((size_t)n * sizeof(int)), *preds = malloc((size_t)path_len * n * sizeof(int));
    double *acc = calloc((size_t)path_len, sizeof(double)), *ll = calloc((size_t)path_len, sizeof(double));
    double *comps = NULL; /* [k][dim] principal directions */
    fn_classifier *cl = NULL;
    float *xcopy = NULL, *Uall = NULL, *Za = NULL;
    int *yall = NULL;
    int total_it = 0;
    if (!pool || !mean || !scale || !Z || !eig || !prec || !xf || !xsum || !work || !fold || !preds ||
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
        U = fn_aalloc((size_t)n * k * sizeof(float));
        comps = malloc((size_t)k * dim * sizeof(double));
        if (!U || !comps) {
            rc = fn_fail(err, FN_ENOMEM, "classifier: out of memory");
            goto done;
        }
        if ((rc = principal(Z, n, dim, k, pool, isa, comps, eig, U, err)))
            goto done;
    } else {
        U = Z;
        for (int q = 0; q < k; q++)
            eig[q] = 1;
    }
    /* the augmentation rows: transformed, standardised and projected as the n rows were; the final fit's
     * rows are U's then theirs */
    if (na > 0) {
        Za = fn_aalloc((size_t)na * dim * sizeof(float));
        Uall = fn_aalloc((size_t)nt_all * k * sizeof(float));
        yall = malloc((size_t)nt_all * sizeof(int));
        float *Qf = k < dim ? malloc((size_t)k * dim * sizeof(float)) : NULL;
        if (!Za || !Uall || !yall || (k < dim && !Qf)) {
            free(Qf);
            rc = fn_fail(err, FN_ENOMEM, "classifier: out of memory for %d augmentation rows", na);
            goto done;
        }
        for (int i = 0; i < na; i++)
            for (int j = 0; j < dim; j++) {
                float v = opt.augment_x[(size_t)i * dim + j];
                if (opt.transform != FN_CLS_IDENTITY)
                    v = (float)fn_cls_transform(opt.transform, v);
                Za[(size_t)i * dim + j] = (float)((v - mean[j]) / scale[j]);
            }
        memcpy(Uall, U, (size_t)n * k * sizeof(float));
        if (k < dim) {
            for (int j = 0; j < dim; j++) /* [dim][k]: the GEMM's weight layout */
                for (int q = 0; q < k; q++)
                    Qf[(size_t)j * k + q] = (float)comps[(size_t)q * dim + j];
            rc = matmul(pool, isa, Za, na, dim, Qf, k, Uall + (size_t)n * k, err);
            free(Qf);
            if (rc)
                goto done;
        } else {
            memcpy(Uall + (size_t)n * k, Za, (size_t)na * k * sizeof(float));
        }
        memcpy(yall, y, (size_t)n * sizeof(int));
        memcpy(yall + n, opt.augment_y, (size_t)na * sizeof(int));
    }
    /* buffers for a fold's rows (and their transpose; the final fit's: every row) */
    Utf = fn_aalloc((size_t)nt_all * (k + 1) * sizeof(float));
    if (!Utf) {
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
            if (opt.order) { /* blocked: the class's rows in their order, cut into `folds` contiguous blocks */
                order_keys = opt.order;
                qsort(idx, (size_t)m, sizeof(int), cmp_order);
                for (int i = 0; i < m; i++)
                    fold[idx[i]] = (int)((int64_t)i * folds / m);
                continue;
            }
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
    /* 4. cross-validation: one job per fold, run side by side (each on its own share of the threads) */
    if (folds) {
        cv_ctx cc = {.U = U, .y = y, .fold = fold, .n = n, .k = k, .K = K, .path_len = path_len, .folds = folds,
                     .cs = cs, .eig = eig, .tol = tol, .max_iter = max_iter, .isa = isa, .preds = preds};
        int nt = fn_pool_threads(pool);
        cc.inner = nt / folds > 1 ? nt / folds : 1;
        /* e.g. 5 folds on 2 threads: 4 side by side, then the 5th on both threads (not on one, the other idle) */
        cc.side = nt >= folds ? folds : folds - folds % nt;
        cc.xsol = malloc((size_t)folds * path_len * N * sizeof(double));
        cc.acc = calloc((size_t)folds * path_len, sizeof(double));
        cc.ll = calloc((size_t)folds * path_len, sizeof(double));
        cc.it = calloc((size_t)folds, sizeof(int));
        cc.rc = calloc((size_t)folds, sizeof(int));
        cc.errs = calloc((size_t)folds, sizeof(fn_error));
        if (!cc.xsol || !cc.acc || !cc.ll || !cc.it || !cc.rc || !cc.errs)
            rc = fn_fail(err, FN_ENOMEM, "classifier: out of memory");
        else
            fn_pool_run(pool, cv_task, &cc);
        for (int f = cc.side; f < folds && !rc; f++)
            cc.rc[f] = cv_fold(&cc, f, pool, &cc.errs[f]);
        for (int f = 0; f < folds && !rc; f++) /* in fold order: the sums do not depend on the schedule */
            if (cc.rc[f]) {
                rc = cc.rc[f];
                if (err)
                    *err = cc.errs[f];
            }
        for (int f = 0; f < folds && !rc; f++) {
            total_it += cc.it[f];
            for (int p = 0; p < path_len; p++) {
                const double *xw = cc.xsol + ((size_t)f * path_len + p) * N;
                for (size_t q = 0; q < N; q++)
                    xsum[(size_t)p * N + q] += xw[q];
                acc[p] += cc.acc[f * path_len + p];
                ll[p] += cc.ll[f * path_len + p];
            }
        }
        free(cc.xsol), free(cc.acc), free(cc.ll), free(cc.it), free(cc.rc), free(cc.errs);
    }
    if (rc)
        goto done;
    int best = 0;
    for (int p = 0; p < path_len; p++) {
        acc[p] /= n, ll[p] /= n;
        if (folds && (acc[p] > acc[best] || (acc[p] == acc[best] && ll[p] < ll[best])))
            best = p; /* ties of the (saturated) accuracy: the lower out-of-fold log-loss */
    }
    /* 5. final fit on every row (and the augmentation rows), along the path up to the chosen C */
    {
        prob pb;
        const float *Uf = na > 0 ? Uall : U;
        const int *yf = na > 0 ? yall : y;
        for (int i = 0; i < nt_all; i++)
            for (int q = 0; q < k; q++)
                Utf[(size_t)q * nt_all + i] = Uf[(size_t)i * k + q];
        for (int i = 0; i < nt_all; i++)
            Utf[(size_t)k * nt_all + i] = 1;
        if ((rc = prob_init(&pb, nt_all, nt_all, k, K, Uf, Utf, yf, pool, isa, err))) {
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
            pb.lam = 1.0 / (cs[p] * nt_all);
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
    /* out-of-set threshold: class means of z, each training row's distance to the nearest one */
    float *cent = malloc((size_t)K * dim * sizeof(float));
    double dist_th = 0;
    if (!cent || (rc = class_means(Z, n, dim, y, K, count, pool, isa, cent, &dist_th, err))) {
        free(cent);
        if (!rc)
            rc = fn_fail(err, FN_ENOMEM, "classifier: out of memory");
        goto done;
    }
    /* compose back to the standardised space */
    char info[1024], aug_line[48] = "";
    if (na > 0)
        snprintf(aug_line, sizeof aug_line, "augment_rows=%d\n", na);
    snprintf(info, sizeof info,
             "format=fruitnet classifier\nmodel=multinomial logistic regression, L2\nfruitnet_version=%s\n"
             "transform=%s\nC=%.17g\ncv_folds=%d\ncv_accuracy=%.6f\ncv_log_loss=%.6f\nrows=%d\npca_dim=%d\n"
             "distance_threshold=%.6g\n%s%s%s%s",
             FRUITNET_VERSION, opt.transform ? "sqrt" : "identity", cs[best], folds, folds ? acc[best] : -1.0, folds ? ll[best] : -1.0, n, k,
             dist_th, aug_line, opt.info ? "info=" : "", opt.info ? opt.info : "", opt.info ? "\n" : "");
    if (!(cl = fn_cls_alloc(dim, K, class_names, info))) {
        free(cent);
        rc = fn_fail(err, FN_ENOMEM, "classifier: out of memory");
        goto done;
    }
    cl->centroids = cent, cl->dist_threshold = dist_th;
    cl->transform = opt.transform;
    memcpy(cl->mean, mean, (size_t)dim * sizeof(double));
    memcpy(cl->scale, scale, (size_t)dim * sizeof(double));
    for (int c = 0; c < K; c++) {
        const double *w = xf + (size_t)c * k1;
        double *o = cl->W + (size_t)c * dim;
        if (k < dim) {
            for (int q = 0; q < k; q++) {
                const double *v = comps + (size_t)q * dim;
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
    free(comps);
    if (U != Z)
        fn_afree(U);
    fn_afree(Z), fn_afree(Utf), fn_afree(Za), fn_afree(Uall);
    free(yall);
    free(count), free(mean), free(scale), free(eig), free(prec), free(xf), free(xsum), free(work);
    free(fold), free(preds), free(acc), free(ll), free(xcopy);
    return rc;
}
