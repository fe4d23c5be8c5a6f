/*
 * pca_eigen.c — eigen-decomposition of the PCA statistics (fn_pca_fit_ex).
 *
 * Eigen-decomposition of C = M2 / (n - 1) (fn_pca_fit_ex):
 *  1. Householder tridiagonalisation Q^T C Q = T (LAPACK dsytd2 algebra:
 *     p = tau A v, w = p - tau/2 (p.v) v, A -= v w^T + w v^T) on a full
 *     symmetric copy, the rank-2 update of step j fused with the
 *     matrix-vector product of step j+1 (each trailing row is read and
 *     written once per step, rows split between threads). The Householder
 *     vectors are kept in the rows of the copy.
 *  2. All eigenvalues of T by implicit QL with Wilkinson shifts (tqli); an
 *     off-diagonal e_m is deflated when |e_m| <= eps max(|d_m| + |d_m+1|, ||T||); at
 *     most 60 iterations per eigenvalue (else FN_ENUMERIC). Backward stable:
 *     absolute error ~ eps ||C||.
 *  3. Eigenvectors of T for the wanted (largest) k eigenvalues by inverse
 *     iteration (LU with partial pivoting of T - l I, 3 iterations from a
 *     fixed pseudo-random start, modified Gram-Schmidt against the previous
 *     vectors of the same cluster |l_i - l_i-1| <= 1e-3 ||T||, eigenvalues
 *     closer than 10 eps ||T|| nudged apart as in LAPACK dstein), then back-
 *     transformed by the Householder reflectors (columns split between
 *     threads). Signs: largest-magnitude entry positive.
 * Cost for dim 2048: ~dim^3 flops for step 1 (about 1 s on 2 cores), O(dim^2)
 * for step 2, O(dim^2 k) for step 3.
 */
#include "pca_internal.h"
#include "threadpool.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- eigen */

typedef struct tri_ctx {
    double *A;              /* n x n, upper triangle (trailing part current up to the pending update) */
    int n, j;               /* step: sweep rows j+1..n-1, columns r..n-1 of row r */
    const double *pv, *pw;  /* pending rank-2 update (global indices) */
    const double *v;        /* new Householder vector (global indices) */
    double *dot;            /* dot[r] = A[r][r..] . v[r..] */
    double *acc;            /* per thread [n]: acc[c] += v[r] A[r][c] for r < c (the lower triangle's part) */
    rowsym_fn rowsym;
} tri_ctx;

/* Rows j+1..n-1 split so that each thread gets an equal share of the trailing triangle. */
static void tri_sweep(void *arg, int tid, int nthreads)
{
    tri_ctx *c = arg;
    const int n = c->n, j = c->j, m = n - j - 1;
    int r0 = n - (int)lround(m * sqrt(1.0 - (double)tid / nthreads));
    int r1 = n - (int)lround(m * sqrt(1.0 - (double)(tid + 1) / nthreads));
    double *acc = c->acc + (size_t)tid * n;
    for (int i = j + 1; i < n; i++)
        acc[i] = 0;
    for (int r = r0; r < r1; r++) {
        double *a = c->A + (size_t)r * n + r;
        c->dot[r] = c->rowsym(a, c->pv + r, c->pw + r, c->pv[r], c->pw[r], c->v + r, c->v[r], acc + r, n - r);
        acc[r] -= c->v[r] * a[0]; /* the diagonal is counted once, in dot */
    }
}

/* Householder tridiagonalisation of the symmetric A (n x n, destroyed): diagonal dg[n], off-diagonal
 * e[n-1] (e[j] couples j, j+1), reflector j = I - tau[j] v v^T with v[j+1] = 1, v[j+2..] in A[j][j+2..]. */
static int tridiagonalise(double *A, int n, double *dg, double *e, double *tau, fn_pool *pool, const pca_kernels *k)
{
    const int T = fn_pool_threads(pool);
    double *buf = calloc((size_t)(5 + T) * n, sizeof(double));
    if (!buf)
        return FN_ENOMEM;
    double *pv = buf, *pw = buf + n, *v = buf + 2 * n, *w = buf + 3 * n; /* pending (pv, pw), new (v, w) */
    double *dot = buf + 4 * n, *acc = buf + 5 * n;
    row_fn row = k->row;
    for (int j = 0; j < n - 1; j++) {
        double *aj = A + (size_t)j * n;
        /* (a) row j gets the pending update of step j-1 */
        row(aj + j, pv + j, pw + j, pv[j], pw[j], pv + j, n - j);
        dg[j] = aj[j];
        /* (b) reflector for x = A[j][j+1..n-1] (LAPACK dlarfg) */
        const int m = n - j - 1;
        double alpha = aj[j + 1], xn = 0;
        for (int i = j + 2; i < n; i++)
            xn += aj[i] * aj[i];
        xn = sqrt(xn);
        for (int i = 0; i <= j; i++)
            v[i] = 0;
        v[j + 1] = 1;
        if (xn == 0) {
            tau[j] = 0;
            e[j] = alpha;
            for (int i = j + 2; i < n; i++)
                v[i] = 0;
        } else {
            double beta = -copysign(hypot(alpha, xn), alpha), sc = 1 / (alpha - beta);
            tau[j] = (beta - alpha) / beta;
            e[j] = beta;
            for (int i = j + 2; i < n; i++)
                v[i] = aj[i] *= sc;
        }
        aj[j + 1] = 1;
        /* (c) rows j+1..n-1: pending update, then p = tau A v from the upper triangle */
        tri_ctx c = {A, n, j, pv, pw, v, dot, acc, k->rowsym};
        int nt = m >= 256 ? T : 1;
        if (nt > 1)
            fn_pool_run(pool, tri_sweep, &c);
        else
            tri_sweep(&c, 0, 1);
        for (int i = j + 1; i < n; i++) {
            double p = dot[i];
            for (int t = 0; t < nt; t++)
                p += acc[(size_t)t * n + i];
            w[i] = tau[j] * p;
        }
        /* (d) w = p - tau/2 (p.v) v becomes the pending update with v */
        double pvd = 0;
        for (int i = j + 1; i < n; i++)
            pvd += w[i] * v[i];
        double K = 0.5 * tau[j] * pvd;
        for (int i = 0; i <= j; i++)
            w[i] = 0;
        for (int i = j + 1; i < n; i++)
            w[i] -= K * v[i];
        double *t = pv;
        pv = v, v = t;
        t = pw, pw = w, w = t;
    }
    double *last = A + (size_t)(n - 1) * n + n - 1;
    dg[n - 1] = *last - 2 * pv[n - 1] * pw[n - 1];
    free(buf);
    return FN_OK;
}

/* All eigenvalues of the symmetric tridiagonal (d, e) by implicit QL (tqli); d is overwritten, e destroyed
 * (e[n-1] is scratch). e_m is deflated when |e_m| <= eps (|d_m| + |d_m+1|) or |e_m| <= eps ||T|| (the
 * absolute error the tridiagonalisation already has; needed when rank-deficient data gives zero blocks). Returns 0, or -1 if an eigenvalue needs more than 60 iterations. */
static int tql_values(double *d, double *e, int n)
{
    double tnorm = 0;
    for (int i = 0; i < n; i++)
        tnorm = fmax(tnorm, fabs(d[i]) + (i ? fabs(e[i - 1]) : 0) + (i < n - 1 ? fabs(e[i]) : 0));
    const double eps = 2.220446049250313e-16, small = eps * tnorm;
    e[n - 1] = 0;
    for (int l = 0; l < n; l++) {
        int iter = 0, m;
        do {
            for (m = l; m < n - 1; m++) {
                double dd = fabs(d[m]) + fabs(d[m + 1]);
                if (fabs(e[m]) <= eps * dd || fabs(e[m]) <= small)
                    break;
            }
            if (m != l) {
                if (iter++ == 60)
                    return -1;
                double g = (d[l + 1] - d[l]) / (2 * e[l]), r = hypot(g, 1.0);
                g = d[m] - d[l] + e[l] / (g + copysign(r, g));
                double s = 1, c = 1, p = 0;
                int i;
                for (i = m - 1; i >= l; i--) {
                    double f = s * e[i], b = c * e[i];
                    e[i + 1] = (r = hypot(f, g));
                    if (r == 0) {
                        d[i + 1] -= p;
                        e[m] = 0;
                        break;
                    }
                    s = f / r, c = g / r;
                    g = d[i + 1] - p;
                    r = (d[i] - g) * s + 2 * c * b;
                    d[i + 1] = g + (p = s * r);
                    g = c * r - b;
                }
                if (r == 0 && i >= l)
                    continue;
                d[l] -= p, e[l] = g, e[m] = 0;
            }
        } while (m != l);
    }
    return 0;
}

static int desc(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* Solve (T - lam I) x = b in place (b -> x) for the tridiagonal (dg, e), Gaussian elimination with
 * partial pivoting; zero pivots replaced by tiny (eps ||T||). u0,u1,u2,l: scratch [n]; sw: [n]. */
static void tri_solve(const double *dg, const double *e, int n, double lam, double tiny, double *x, double *u0,
                      double *u1, double *u2, double *l, unsigned char *sw)
{
    double p0 = dg[0] - lam, p1 = n > 1 ? e[0] : 0, p2 = 0;
    for (int i = 0; i < n - 1; i++) {
        double q0 = e[i], q1 = dg[i + 1] - lam, q2 = i + 1 < n - 1 ? e[i + 1] : 0;
        if (fabs(p0) >= fabs(q0)) {
            if (fabs(p0) < tiny)
                p0 = copysign(tiny, p0);
            l[i] = q0 / p0, sw[i] = 0;
            u0[i] = p0, u1[i] = p1, u2[i] = p2;
            p0 = q1 - l[i] * p1, p1 = q2 - l[i] * p2;
        } else {
            l[i] = p0 / q0, sw[i] = 1;
            u0[i] = q0, u1[i] = q1, u2[i] = q2;
            double np0 = p1 - l[i] * q1, np1 = p2 - l[i] * q2;
            p0 = np0, p1 = np1;
        }
        p2 = 0;
    }
    u0[n - 1] = fabs(p0) < tiny ? copysign(tiny, p0) : p0;
    for (int i = 0; i < n - 1; i++) {
        if (sw[i]) {
            double t = x[i];
            x[i] = x[i + 1], x[i + 1] = t;
        }
        x[i + 1] -= l[i] * x[i];
    }
    x[n - 1] /= u0[n - 1];
    if (n > 1)
        x[n - 2] = (x[n - 2] - u1[n - 2] * x[n - 1]) / u0[n - 2];
    for (int i = n - 3; i >= 0; i--)
        x[i] = (x[i] - u1[i] * x[i + 1] - u2[i] * x[i + 2]) / u0[i];
}

/* Eigenvectors of T for the k eigenvalues w[0..k-1] (descending): rows of Y (k x n). */
static int tri_vectors(const double *dg, const double *e, int n, const double *w, int k, double *Y)
{
    double tnorm = 0;
    for (int i = 0; i < n; i++) {
        double r = fabs(dg[i]) + (i ? fabs(e[i - 1]) : 0) + (i < n - 1 ? fabs(e[i]) : 0);
        tnorm = r > tnorm ? r : tnorm;
    }
    if (tnorm == 0)
        tnorm = 1;
    const double eps = 2.220446049250313e-16, tiny = eps * tnorm, ortol = 1e-3 * tnorm;
    double *sc = malloc((size_t)4 * n * sizeof(double));
    unsigned char *sw = malloc((size_t)n);
    if (!sc || !sw) {
        free(sc), free(sw);
        return FN_ENOMEM;
    }
    uint64_t seed = 0x2545F4914F6CDD1Dull;
    int c0 = 0;          /* first vector of the current cluster */
    double lprev = 0;    /* eigenvalue used for the previous vector */
    for (int q = 0; q < k; q++) {
        double lam = w[q];
        if (q > 0) {
            if (fabs(w[q - 1] - w[q]) > ortol)
                c0 = q;
            else if (lprev - lam < 10 * tiny) /* nudge coincident eigenvalues apart (dstein) */
                lam = lprev - 10 * tiny;
        }
        lprev = lam;
        double *y = Y + (size_t)q * n;
        for (int i = 0; i < n; i++) {
            seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
            y[i] = (double)(seed >> 11) / 9007199254740992.0 - 0.5;
        }
        for (int it = 0; it < 3; it++) {
            tri_solve(dg, e, n, lam, tiny, y, sc, sc + n, sc + 2 * n, sc + 3 * n, sw);
            double nn = 0;
            for (int i = 0; i < n; i++)
                nn += y[i] * y[i];
            double inv = 1 / sqrt(nn);
            for (int i = 0; i < n; i++)
                y[i] *= inv;
            for (int o = c0; o < q; o++) { /* modified Gram-Schmidt within the cluster */
                const double *z = Y + (size_t)o * n;
                double s = 0;
                for (int i = 0; i < n; i++)
                    s += z[i] * y[i];
                for (int i = 0; i < n; i++)
                    y[i] -= s * z[i];
            }
            nn = 0;
            for (int i = 0; i < n; i++)
                nn += y[i] * y[i];
            inv = 1 / sqrt(nn);
            for (int i = 0; i < n; i++)
                y[i] *= inv;
        }
    }
    free(sc), free(sw);
    return FN_OK;
}

typedef struct back_ctx {
    const double *A, *tau; /* reflectors */
    double *Y;             /* n x k, row-major (column q = vector q) */
    int n, k;
} back_ctx;

/* y <- H_0 H_1 ... H_{n-2} y for this thread's columns of Y. */
static void back_task(void *arg, int tid, int nthreads)
{
    back_ctx *c = arg;
    const int n = c->n, k = c->k;
    int q0 = (int)((int64_t)k * tid / nthreads), q1 = (int)((int64_t)k * (tid + 1) / nthreads), nq = q1 - q0;
    if (nq <= 0)
        return;
    double *s = malloc((size_t)nq * sizeof(double));
    if (!s)
        return; /* cannot happen in practice; leaves the columns untransformed */
    for (int j = n - 2; j >= 0; j--) {
        double t = c->tau[j];
        if (t == 0)
            continue;
        const double *v = c->A + (size_t)j * n; /* v[j+1] == 1 */
        for (int q = 0; q < nq; q++)
            s[q] = 0;
        for (int r = j + 1; r < n; r++) {
            const double *yr = c->Y + (size_t)r * k + q0;
            double vr = v[r];
            for (int q = 0; q < nq; q++)
                s[q] += vr * yr[q];
        }
        for (int q = 0; q < nq; q++)
            s[q] *= t;
        for (int r = j + 1; r < n; r++) {
            double *yr = c->Y + (size_t)r * k + q0;
            double vr = v[r];
            for (int q = 0; q < nq; q++)
                yr[q] -= s[q] * vr;
        }
    }
    free(s);
}

int fn_pca_fit(const fn_pca_stats *s, int k, double variance, fn_pca_model **out, fn_error *err)
{
    return fn_pca_fit_ex(s, k, variance, 0, out, NULL, err);
}

static int fit_into(const fn_pca_stats *s, int k, double variance, int threads, fn_pca_model *out, double *spectrum,
                    fn_error *err);

int fn_pca_fit_ex(const fn_pca_stats *s, int k, double variance, int threads, fn_pca_model **out, double *spectrum,
                  fn_error *err)
{
    if (!out)
        return fn_fail(err, FN_EARG, "fn_pca_fit: invalid arguments");
    *out = NULL;
    fn_pca_model *m = calloc(1, sizeof *m);
    if (!m)
        return fn_fail(err, FN_ENOMEM, "pca: out of memory");
    int rc = fit_into(s, k, variance, threads, m, spectrum, err);
    if (rc)
        fn_pca_model_free(m);
    else
        *out = m;
    return rc;
}

static int fit_into(const fn_pca_stats *s, int k, double variance, int threads, fn_pca_model *out, double *spectrum,
                    fn_error *err)
{
    if (!s || !out || !s->m2 || !s->mean || k < 0 || (k == 0 && !(variance > 0 && variance <= 1)))
        return fn_fail(err, FN_EARG, "fn_pca_fit: need k > 0 or a variance fraction in (0, 1]");
    memset(out, 0, sizeof *out);
    const int d = s->dim;
    if (s->n < 2)
        return fn_fail(err, FN_ENUMERIC, "pca: need at least 2 rows, got %lld", (long long)s->n);
    if (k > d)
        return fn_fail(err, FN_EARG, "pca: k = %d exceeds the dimension %d", k, d);
    pca_kernels kern;
    int rc = pca_kernels_pick(&kern, err);
    if (rc)
        return rc;
    /* covariance (upper triangle; the lower one is never touched) */
    const size_t asize = (size_t)d * d * sizeof(double);
    double *A = pca_big_alloc(asize);
    double *dg = malloc((size_t)d * sizeof(double)), *e = malloc((size_t)d * sizeof(double));
    double *tau = malloc((size_t)d * sizeof(double)), *w = malloc((size_t)d * sizeof(double));
    double *Y = NULL, *Yt = NULL;
    fn_pool *pool = NULL;
    if (!A || !dg || !e || !tau || !w) {
        rc = fn_fail(err, FN_ENOMEM, "pca: out of memory for the %dx%d covariance", d, d);
        goto done;
    }
    double trace = 0, inv = 1.0 / (double)(s->n - 1);
    for (int i = 0; i < d; i++)
        for (int j = i; j < d; j++)
            A[(size_t)i * d + j] = s->m2[(size_t)i * d + j] * inv;
    for (int i = 0; i < d; i++)
        trace += A[(size_t)i * d + i];
    if (!isfinite(trace)) {
        rc = fn_fail(err, FN_ENUMERIC, "pca: total variance is not finite");
        goto done;
    }
    if (!(trace > 0)) {
        rc = fn_fail(err, FN_ENUMERIC, "pca: total variance is %g (all rows identical?)", trace);
        goto done;
    }
    if (!(pool = fn_pool_create(pca_threads(threads)))) {
        rc = fn_fail(err, FN_ENOMEM, "pca: cannot create threads");
        goto done;
    }
    if (tridiagonalise(A, d, dg, e, tau, pool, &kern)) {
        rc = fn_fail(err, FN_ENOMEM, "pca: out of memory");
        goto done;
    }
    memcpy(w, dg, (size_t)d * sizeof(double));
    double *e2 = malloc((size_t)d * sizeof(double));
    if (!e2) {
        rc = fn_fail(err, FN_ENOMEM, "pca: out of memory");
        goto done;
    }
    memcpy(e2, e, (size_t)(d - 1) * sizeof(double));
    int ql = tql_values(w, e2, d);
    free(e2);
    if (ql) {
        rc = fn_fail(err, FN_ENUMERIC, "pca: QL iteration did not converge");
        goto done;
    }
    qsort(w, (size_t)d, sizeof(double), desc);
    if (spectrum)
        memcpy(spectrum, w, (size_t)d * sizeof(double));
    int kk = k;
    if (k == 0) { /* fewest components whose cumulative share of the trace reaches `variance` */
        double cum = 0;
        kk = d;
        for (int r = 0; r < d; r++) {
            cum += w[r];
            if (cum >= variance * trace * (1 - 1e-12)) {
                kk = r + 1;
                break;
            }
        }
    }
    Y = malloc((size_t)kk * d * sizeof(double));
    Yt = malloc((size_t)kk * d * sizeof(double));
    if (!Y || !Yt) {
        rc = fn_fail(err, FN_ENOMEM, "pca: out of memory for %d components", kk);
        goto done;
    }
    if (tri_vectors(dg, e, d, w, kk, Y)) {
        rc = fn_fail(err, FN_ENOMEM, "pca: out of memory");
        goto done;
    }
    for (int q = 0; q < kk; q++) /* Yt: d x kk, column q = vector q */
        for (int i = 0; i < d; i++)
            Yt[(size_t)i * kk + q] = Y[(size_t)q * d + i];
    back_ctx bc = {A, tau, Yt, d, kk};
    fn_pool_run(pool, back_task, &bc);
    if ((rc = pca_model_alloc(out, d, kk, err)))
        goto done;
    out->n = s->n;
    out->total_var = trace;
    memcpy(out->mean, s->mean, (size_t)d * sizeof(double));
    for (int q = 0; q < kk; q++) {
        out->eigvals[q] = w[q];
        double *v = out->components + (size_t)q * d, nn = 0;
        for (int i = 0; i < d; i++)
            v[i] = Yt[(size_t)i * kk + q], nn += v[i] * v[i];
        int im = 0;
        for (int i = 1; i < d; i++)
            if (fabs(v[i]) > fabs(v[im]))
                im = i;
        double sc = (v[im] < 0 ? -1 : 1) / sqrt(nn);
        for (int i = 0; i < d; i++)
            v[i] *= sc;
    }
done:
    if (pool)
        fn_pool_destroy(pool);
    pca_big_free(A, asize);
    free(dg), free(e), free(tau), free(w), free(Y), free(Yt);
    return rc;
}
