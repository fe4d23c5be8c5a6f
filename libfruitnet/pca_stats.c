/*
 * pca_stats.c — streaming, mergeable PCA statistics in double precision.
 *
 * Statistics (one pass, memory dim^2 doubles whatever the number of rows):
 * rows arrive in chunks of CHUNK_ROWS; each chunk is centred on its own mean
 * m_c (in double) and packed into 16-column panels; its co-moment
 * sum (x - m_c)(x - m_c)^T is computed by a blocked SYRK over the upper
 * triangle (8x16 register tiles, per-ISA kernels from pca_kernels_impl.h
 * picked by fn_isa_resolve, work items taken from an atomic
 * counter by every pool thread) and merged into the running (n, mean, M2)
 * with Chan et al.'s update  M2 += M2_c + d d^T n n_c / (n + n_c),
 * d = m_c - mean, in the same write-back of each tile. No raw sums of
 * squares. Only the upper triangle (i <= j) of M2 is maintained.
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

int pca_stats_init(fn_pca_stats *s, int dim, fn_error *err)
{
    memset(s, 0, sizeof *s);
    if (dim < 1 || dim > 65536)
        return fn_fail(err, FN_EARG, "pca: dimension %d out of range [1, 65536]", dim);
    s->dim = dim;
    s->mean = calloc((size_t)dim, sizeof(double));
    s->m2 = fn_aalloc((size_t)dim * dim * sizeof(double));
    if (!s->mean || !s->m2) {
        pca_stats_clear(s);
        return fn_fail(err, FN_ENOMEM, "pca: out of memory for %dx%d statistics", dim, dim);
    }
    memset(s->m2, 0, (size_t)dim * dim * sizeof(double));
    return FN_OK;
}

void pca_stats_clear(fn_pca_stats *s)
{
    if (!s)
        return;
    free(s->mean);
    fn_afree(s->m2);
    s->mean = s->m2 = NULL;
}

fn_pca_stats *pca_stats_box(const fn_pca_stats *s)
{
    fn_pca_stats *b = malloc(sizeof *b);
    if (b)
        *b = *s;
    return b;
}

int fn_pca_stats_new(int dim, fn_pca_stats **out, fn_error *err)
{
    if (!out)
        return fn_fail(err, FN_EARG, "fn_pca_stats_new: invalid arguments");
    *out = NULL;
    fn_pca_stats s;
    int rc = pca_stats_init(&s, dim, err);
    if (rc)
        return rc;
    if (!(*out = pca_stats_box(&s))) {
        pca_stats_clear(&s);
        return fn_fail(err, FN_ENOMEM, "pca: out of memory");
    }
    return FN_OK;
}

int fn_pca_stats_from_moments(int dim, int64_t n, const double *mean, const double *m2, fn_pca_stats **out,
                              fn_error *err)
{
    if (!out || n < 0 || (n > 0 && (!mean || !m2)))
        return fn_fail(err, FN_EARG, "fn_pca_stats_from_moments: invalid arguments");
    int rc = fn_pca_stats_new(dim, out, err);
    if (rc || n == 0)
        return rc;
    fn_pca_stats *s = *out;
    size_t d = (size_t)dim;
    for (size_t i = 0; i < d; i++) {
        if (!isfinite(mean[i]))
            goto bad;
        for (size_t j = i; j < d; j++)
            if (!isfinite(m2[i * d + j]))
                goto bad;
    }
    s->n = n;
    memcpy(s->mean, mean, d * sizeof(double));
    for (size_t i = 0; i < d; i++) /* the upper triangle; the lower stays zero */
        memcpy(s->m2 + i * d + i, m2 + i * d + i, (d - i) * sizeof(double));
    return FN_OK;
bad:
    fn_pca_stats_free(s), *out = NULL;
    return fn_fail(err, FN_ENUMERIC, "fn_pca_stats_from_moments: the moments hold NaN or Inf");
}

void fn_pca_stats_free(fn_pca_stats *s)
{
    pca_stats_clear(s);
    free(s);
}

int fn_pca_stats_dim(const fn_pca_stats *s) { return s ? s->dim : 0; }
int64_t fn_pca_stats_rows(const fn_pca_stats *s) { return s ? s->n : 0; }
const double *fn_pca_stats_mean(const fn_pca_stats *s) { return s ? s->mean : NULL; }
const double *fn_pca_stats_m2(const fn_pca_stats *s) { return s ? s->m2 : NULL; }

/* ---------------------------------------------------------------- SYRK */

typedef struct syrk_ctx {
    const double *P;     /* np panels of K x 16 (centred chunk, zero-padded columns) */
    int K, np, d;
    double *m2;          /* d x d, upper triangle */
    const double *delta; /* chunk mean - running mean */
    double f;            /* n n_c / (n + n_c) */
    tile_fn tile;
    int nitems;
    atomic_int next;
} syrk_ctx;

/* Work item (block ib of IBLK panels, column panel J >= first panel of ib): every 8x16 tile of
 * rows in ib, columns in J, on or above the diagonal; write-back adds the Chan rank-1 term. */
static void syrk_item(syrk_ctx *c, int ib, int J)
{
    const int d = c->d, K = c->K, j0 = J * PW;
    const double *B = c->P + (size_t)J * K * PW;
    double t[8 * 16];
    int ilast = (ib + 1) * IBLK * PW; /* exclusive */
    if (ilast > j0 + PW)
        ilast = j0 + PW;
    if (ilast > d)
        ilast = d;
    for (int i0 = ib * IBLK * PW; i0 < ilast; i0 += 8) {
        const double *A = c->P + (size_t)(i0 / PW) * K * PW + i0 % PW;
        for (int i = 0; i < 8 && i0 + i < d; i++) { /* the M2 rows written below: fetched during the tile */
            const double *mrow = c->m2 + (size_t)(i0 + i) * d + j0;
            __builtin_prefetch(mrow, 1), __builtin_prefetch(mrow + 8, 1);
        }
        c->tile(A, B, K, t);
        for (int i = 0; i < 8 && i0 + i < d; i++) {
            int gi = i0 + i, jstart = gi > j0 ? gi - j0 : 0, jend = d - j0 < PW ? d - j0 : PW;
            double *row = c->m2 + (size_t)gi * d + j0;
            double fdi = c->f * c->delta[gi];
            const double *dj = c->delta + j0;
            for (int j = jstart; j < jend; j++)
                row[j] += t[i * 16 + j] + fdi * dj[j];
        }
    }
}

static void syrk_task(void *arg, int tid, int nthreads)
{
    syrk_ctx *c = arg;
    const int nb = (c->np + IBLK - 1) / IBLK;
    for (;;) {
        int it = atomic_fetch_add(&c->next, 1);
        if (it >= c->nitems)
            break;
        /* map the item index to (ib, J): block ib has np - ib*IBLK items */
        int ib = 0;
        while (ib < nb && it >= c->np - ib * IBLK)
            it -= c->np - ib * IBLK, ib++;
        syrk_item(c, ib, ib * IBLK + it);
    }
}

typedef struct center_ctx {
    const float *x;
    int nr, d, np;
    double *P, *mc;
} center_ctx;

/* The chunk's column means and its centred panels, panels split between the threads (each column's sum
 * is in row order whatever the thread count). */
static void center_task(void *arg, int tid, int nthreads)
{
    center_ctx *c = arg;
    const int d = c->d, nr = c->nr;
    for (int J = c->np * tid / nthreads; J < c->np * (tid + 1) / nthreads; J++) {
        const int w = d - J * PW < PW ? d - J * PW : PW;
        double *m = c->mc + J * PW, *pj = c->P + (size_t)J * nr * PW;
        for (int j = 0; j < w; j++)
            m[j] = 0;
        for (int r = 0; r < nr; r++) {
            const float *xr = c->x + (size_t)r * d + J * PW;
            for (int j = 0; j < w; j++)
                m[j] += xr[j];
        }
        for (int j = 0; j < w; j++)
            m[j] /= nr;
        for (int r = 0; r < nr; r++) {
            const float *xr = c->x + (size_t)r * d + J * PW;
            double *o = pj + (size_t)r * PW;
            for (int j = 0; j < w; j++)
                o[j] = (double)xr[j] - m[j];
            for (int j = w; j < PW; j++)
                o[j] = 0;
        }
    }
}

/* Add one chunk (rows already checked finite) to s. P has room for CHUNK_ROWS x np panels. */
static void add_chunk(fn_pca_stats *s, const float *x, int nr, double *P, double *mc, fn_pool *pool, tile_fn tile)
{
    const int d = s->dim, np = (d + PW - 1) / PW;
    center_ctx cc = {.x = x, .nr = nr, .d = d, .np = np, .P = P, .mc = mc};
    fn_pool_run(pool, center_task, &cc);
    double n = (double)s->n, nc = nr;
    for (int i = 0; i < d; i++) /* delta, kept in mc */
        mc[i] -= s->mean[i];
    syrk_ctx c = {.P = P, .K = nr, .np = np, .d = d, .m2 = s->m2, .delta = mc, .f = n * nc / (n + nc), .tile = tile};
    int nb = (np + IBLK - 1) / IBLK;
    for (int b = 0; b < nb; b++)
        c.nitems += np - b * IBLK;
    atomic_init(&c.next, 0);
    fn_pool_run(pool, syrk_task, &c);
    for (int i = 0; i < d; i++)
        s->mean[i] += mc[i] * nc / (n + nc);
    s->n += nr;
}

int fn_pca_stats_add(fn_pca_stats *s, const float *rows, int nrows, int threads, fn_error *err)
{
    if (!s || !s->m2 || nrows < 0 || (nrows > 0 && !rows))
        return fn_fail(err, FN_EARG, "fn_pca_stats_add: invalid arguments");
    const int d = s->dim;
    /* every row is checked before any is added: a rejected call changes nothing (a branch-free pass
     * that vectorises; the position is looked for only when there is a bad value) */
    for (int r = 0; r < nrows; r++) {
        const float *x = rows + (size_t)r * d;
        int bad = 0;
        for (int i = 0; i < d; i++)
            bad |= !(fabsf(x[i]) <= FLT_MAX);
        if (bad)
            for (int i = 0; i < d; i++)
                if (!isfinite(x[i]))
                    return fn_fail(err, FN_ENUMERIC, "pca: row %lld has a NaN or infinite value at index %d",
                                   (long long)(s->n + r), i);
    }
    if (nrows == 0)
        return FN_OK;
    pca_kernels kern;
    int rc = pca_kernels_pick(&kern, err);
    if (rc)
        return rc;
    const int np = (d + PW - 1) / PW;
    const size_t psize = (size_t)CHUNK_ROWS * np * PW * sizeof(double);
    double *P = pca_big_alloc(psize);
    double *mc = malloc((size_t)d * sizeof(double));
    fn_pool *pool = fn_pool_create(pca_threads(threads));
    if (!P || !mc || !pool)
        rc = fn_fail(err, FN_ENOMEM, "pca: out of memory");
    for (int r = 0; r < nrows && !rc; r += CHUNK_ROWS) {
        int nr = nrows - r < CHUNK_ROWS ? nrows - r : CHUNK_ROWS;
        add_chunk(s, rows + (size_t)r * d, nr, P, mc, pool, kern.tile);
    }
    if (pool)
        fn_pool_destroy(pool);
    pca_big_free(P, psize);
    free(mc);
    return rc;
}

int fn_pca_stats_merge(fn_pca_stats *dst, const fn_pca_stats *src, fn_error *err)
{
    if (!dst || !src || !dst->m2 || !src->m2 || dst->dim != src->dim)
        return fn_fail(err, FN_EARG, "pca: cannot merge statistics of dimensions %d and %d", dst ? dst->dim : 0,
                       src ? src->dim : 0);
    if (src->n == 0)
        return FN_OK;
    const int d = dst->dim;
    double n = (double)dst->n, nc = (double)src->n, f = n * nc / (n + nc);
    for (int i = 0; i < d; i++) {
        double di = src->mean[i] - dst->mean[i];
        for (int j = i; j < d; j++)
            dst->m2[(size_t)i * d + j] += src->m2[(size_t)i * d + j] + di * (src->mean[j] - dst->mean[j]) * f;
    }
    for (int i = 0; i < d; i++)
        dst->mean[i] += (src->mean[i] - dst->mean[i]) * nc / (n + nc);
    dst->n += src->n;
    return FN_OK;
}
