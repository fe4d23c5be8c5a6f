/*
 * pca.c — streaming, mergeable PCA in double precision.
 *
 * Statistics (one pass, memory dim^2 doubles whatever the number of rows):
 * rows arrive in chunks of CHUNK_ROWS; each chunk is centred on its own mean
 * m_c (in double) and packed into 16-column panels; its co-moment
 * sum (x - m_c)(x - m_c)^T is computed by a blocked SYRK over the upper
 * triangle (8x16 register tiles, per-ISA kernels in pca_avx2.c /
 * pca_avx512.c picked by fn_isa_resolve, work items taken from an atomic
 * counter by every pool thread) and merged into the running (n, mean, M2)
 * with Chan et al.'s update  M2 += M2_c + d d^T n n_c / (n + n_c),
 * d = m_c - mean, in the same write-back of each tile. No raw sums of
 * squares. Only the upper triangle (i <= j) of M2 is maintained.
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
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#ifndef CHUNK_ROWS
#define CHUNK_ROWS 256
#endif
#define PW 16 /* panel width (columns) */
#ifndef IBLK
#define IBLK 16 /* panels per L2 block of the SYRK (16 x 256 x 16 doubles = 512 KiB) */
#endif

/* per-ISA kernels (pca_avx2.c, pca_avx512.c; the portable ones below) */
void fn_pca_tile_avx2(const double *a, const double *b, int K, double *out);
void fn_pca_tile_avx512(const double *a, const double *b, int K, double *out);
double fn_pca_row_avx2(double *row, const double *pv, const double *pw, double vr, double wr, const double *v,
                       int m);
double fn_pca_row_avx512(double *row, const double *pv, const double *pw, double vr, double wr, const double *v,
                         int m);

double fn_pca_rowsym_avx2(double *row, const double *pv, const double *pw, double vr, double wr, const double *v,
                          double vn, double *acc, int m);
double fn_pca_rowsym_avx512(double *row, const double *pv, const double *pw, double vr, double wr, const double *v,
                            double vn, double *acc, int m);

typedef void (*tile_fn)(const double *a, const double *b, int K, double *out);
typedef double (*row_fn)(double *row, const double *pv, const double *pw, double vr, double wr, const double *v,
                         int m);
typedef double (*rowsym_fn)(double *row, const double *pv, const double *pw, double vr, double wr, const double *v,
                            double vn, double *acc, int m);
typedef struct pca_kernels {
    tile_fn tile;
    row_fn row;
    rowsym_fn rowsym;
} pca_kernels;

/* out[i*16 + j] = sum_{r<K} a[r*16 + i] b[r*16 + j], i < 8, j < 16; 2x8 blocks whose accumulators
 * fit the 16 SSE2 registers of plain x86-64. */
static void tile_portable(const double *a, const double *b, int K, double *out)
{
    for (int i0 = 0; i0 < 8; i0 += 2)
        for (int j0 = 0; j0 < 16; j0 += 8) {
            double c0[8] = {0}, c1[8] = {0};
            for (int r = 0; r < K; r++) {
                const double *br = b + (size_t)r * PW + j0;
                double a0 = a[(size_t)r * PW + i0], a1 = a[(size_t)r * PW + i0 + 1];
                for (int j = 0; j < 8; j++) {
                    c0[j] += a0 * br[j];
                    c1[j] += a1 * br[j];
                }
            }
            memcpy(out + i0 * 16 + j0, c0, sizeof c0);
            memcpy(out + (i0 + 1) * 16 + j0, c1, sizeof c1);
        }
}

/* row[c] -= vr*pw[c] + wr*pv[c] (c < m); returns sum row[c] v[c] of the updated row. */
static double row_portable(double *row, const double *pv, const double *pw, double vr, double wr, const double *v,
                           int m)
{
    double s0 = 0, s1 = 0;
    int c = 0;
    for (; c + 2 <= m; c += 2) {
        double x0 = row[c] - (vr * pw[c] + wr * pv[c]), x1 = row[c + 1] - (vr * pw[c + 1] + wr * pv[c + 1]);
        row[c] = x0, row[c + 1] = x1;
        s0 += x0 * v[c], s1 += x1 * v[c + 1];
    }
    for (; c < m; c++) {
        double x = row[c] - (vr * pw[c] + wr * pv[c]);
        row[c] = x;
        s0 += x * v[c];
    }
    return s0 + s1;
}

/* As row_portable, and also acc[c] += vn * row[c] (updated) for c < m. */
static double rowsym_portable(double *row, const double *pv, const double *pw, double vr, double wr, const double *v,
                              double vn, double *acc, int m)
{
    double s0 = 0, s1 = 0;
    int c = 0;
    for (; c + 2 <= m; c += 2) {
        double x0 = row[c] - (vr * pw[c] + wr * pv[c]), x1 = row[c + 1] - (vr * pw[c + 1] + wr * pv[c + 1]);
        row[c] = x0, row[c + 1] = x1;
        s0 += x0 * v[c], s1 += x1 * v[c + 1];
        acc[c] += vn * x0, acc[c + 1] += vn * x1;
    }
    for (; c < m; c++) {
        double x = row[c] - (vr * pw[c] + wr * pv[c]);
        row[c] = x;
        s0 += x * v[c];
        acc[c] += vn * x;
    }
    return s0 + s1;
}

static int pick_kernels(pca_kernels *k, fn_error *err)
{
    fn_isa isa;
    int rc = fn_isa_resolve(FN_ISA_AUTO, &isa, err);
    if (rc)
        return rc;
    if (isa == FN_ISA_AVX512)
        *k = (pca_kernels){fn_pca_tile_avx512, fn_pca_row_avx512, fn_pca_rowsym_avx512};
    else if (isa == FN_ISA_AVX2)
        *k = (pca_kernels){fn_pca_tile_avx2, fn_pca_row_avx2, fn_pca_rowsym_avx2};
    else
        *k = (pca_kernels){tile_portable, row_portable, rowsym_portable};
    return FN_OK;
}

/* Large scratch buffers are mapped and unmapped directly: handed back to the system at once (through
 * malloc, repeated 4 MiB chunk buffers fragmented the heap and the RSS grew by 4 MiB per call), and only
 * the pages touched count (the tridiagonalisation touches the upper triangle only). Page aligned. */
static void *big_alloc(size_t bytes)
{
    void *p = mmap(NULL, bytes ? bytes : 1, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

static void big_free(void *p, size_t bytes)
{
    if (p)
        munmap(p, bytes ? bytes : 1);
}

static int default_threads(int threads)
{
    if (threads > 0)
        return threads > 64 ? 64 : threads;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)(n > 64 ? 64 : n) : 1;
}

int fn_pca_stats_init(fn_pca_stats *s, int dim, fn_error *err)
{
    memset(s, 0, sizeof *s);
    if (dim < 1 || dim > 65536)
        return fn_fail(err, FN_EARG, "pca: dimension %d out of range [1, 65536]", dim);
    s->dim = dim;
    s->mean = calloc((size_t)dim, sizeof(double));
    s->m2 = fn_aalloc((size_t)dim * dim * sizeof(double));
    if (!s->mean || !s->m2) {
        fn_pca_stats_free(s);
        return fn_fail(err, FN_ENOMEM, "pca: out of memory for %dx%d statistics", dim, dim);
    }
    memset(s->m2, 0, (size_t)dim * dim * sizeof(double));
    return FN_OK;
}

void fn_pca_stats_free(fn_pca_stats *s)
{
    if (!s)
        return;
    free(s->mean);
    fn_afree(s->m2);
    s->mean = s->m2 = NULL;
}

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
    int rc = pick_kernels(&kern, err);
    if (rc)
        return rc;
    const int np = (d + PW - 1) / PW;
    const size_t psize = (size_t)CHUNK_ROWS * np * PW * sizeof(double);
    double *P = big_alloc(psize);
    double *mc = malloc((size_t)d * sizeof(double));
    fn_pool *pool = fn_pool_create(default_threads(threads));
    if (!P || !mc || !pool)
        rc = fn_fail(err, FN_ENOMEM, "pca: out of memory");
    for (int r = 0; r < nrows && !rc; r += CHUNK_ROWS) {
        int nr = nrows - r < CHUNK_ROWS ? nrows - r : CHUNK_ROWS;
        add_chunk(s, rows + (size_t)r * d, nr, P, mc, pool, kern.tile);
    }
    if (pool)
        fn_pool_destroy(pool);
    big_free(P, psize);
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

/* ---------------------------------------------------------------- files */

static void put(unsigned char **p, const void *v, size_t n)
{
    memcpy(*p, v, n);
    *p += n;
}

/* the library's one atomic writer (atomic.c): a regular file or nothing is replaced */
static int write_file_atomic(const char *path, const void *data, size_t n, fn_error *err)
{
    return fn_atomic_write_file(path, data, n, 0, err);
}

static int read_file(const char *path, unsigned char **buf, size_t *len, size_t max, fn_error *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return fn_fail(err, FN_EIO, "%s: cannot open: %s", path, strerror(errno));
    if (fseek(f, 0, SEEK_END) != 0) {
        fclose(f);
        return fn_fail(err, FN_EIO, "%s: cannot seek", path);
    }
    long sz = ftell(f);
    rewind(f);
    if (sz < 0 || (size_t)sz > max) {
        fclose(f);
        return fn_fail(err, FN_ELIMIT, "%s: unexpected size %ld", path, sz);
    }
    unsigned char *b = malloc((size_t)sz + 1);
    if (!b || fread(b, 1, (size_t)sz, f) != (size_t)sz) {
        free(b);
        fclose(f);
        return fn_fail(err, FN_EIO, "%s: read error", path);
    }
    fclose(f);
    *buf = b;
    *len = (size_t)sz;
    return FN_OK;
}

/* stats file: "FNPCASTA" u32 version u32 dim i64 n, mean[dim], upper(M2) row-major, u32 crc of all before */
int fn_pca_stats_save(const fn_pca_stats *s, const char *path, fn_error *err)
{
    if (!s || !path)
        return fn_fail(err, FN_EARG, "fn_pca_stats_save: invalid arguments");
    size_t d = (size_t)s->dim, tri = d * (d + 1) / 2;
    size_t n = 8 + 4 + 4 + 8 + d * 8 + tri * 8 + 4;
    unsigned char *b = malloc(n), *p = b;
    if (!b)
        return fn_fail(err, FN_ENOMEM, "out of memory");
    uint32_t ver = 1, dim = (uint32_t)d;
    put(&p, "FNPCASTA", 8);
    put(&p, &ver, 4);
    put(&p, &dim, 4);
    put(&p, &s->n, 8);
    put(&p, s->mean, d * 8);
    for (size_t i = 0; i < d; i++)
        put(&p, s->m2 + i * d + i, (d - i) * 8);
    uint32_t crc = fn_crc32(0, b, n - 4);
    put(&p, &crc, 4);
    int rc = write_file_atomic(path, b, n, err);
    free(b);
    return rc;
}

int fn_pca_stats_load(fn_pca_stats *s, const char *path, fn_error *err)
{
    unsigned char *b;
    size_t n;
    memset(s, 0, sizeof *s);
    int rc = read_file(path, &b, &n, (size_t)1 << 34, err);
    if (rc)
        return rc;
    uint32_t ver, dim, crc;
    int64_t rows;
    if (n < 28 || memcmp(b, "FNPCASTA", 8)) {
        free(b);
        return fn_fail(err, FN_EFORMAT, "%s: not a fruitnet PCA statistics file", path);
    }
    memcpy(&ver, b + 8, 4), memcpy(&dim, b + 12, 4), memcpy(&rows, b + 16, 8);
    size_t d = dim, need = 24 + d * 8 + d * (d + 1) / 2 * 8 + 4;
    if (ver != 1 || dim < 1 || dim > 65536 || n != need || rows < 0) {
        free(b);
        return fn_fail(err, FN_EFORMAT, "%s: bad header or size (version %u, dim %u, %zu bytes)", path, ver, dim, n);
    }
    memcpy(&crc, b + n - 4, 4);
    if (fn_crc32(0, b, n - 4) != crc) {
        free(b);
        return fn_fail(err, FN_ECHECKSUM, "%s: checksum mismatch (corrupt file)", path);
    }
    if ((rc = fn_pca_stats_init(s, (int)dim, err))) {
        free(b);
        return rc;
    }
    s->n = rows;
    const unsigned char *p = b + 24;
    memcpy(s->mean, p, d * 8);
    p += d * 8;
    for (size_t i = 0; i < d; i++) {
        memcpy(s->m2 + i * d + i, p, (d - i) * 8);
        p += (d - i) * 8;
    }
    free(b);
    return FN_OK;
}

/* model file: "FNPCAMOD" u32 ver u32 dim u32 k u32 pad i64 n f64 total_var, mean[dim], eigvals[k], comps[k*dim], crc */
int fn_pca_model_save(const fn_pca_model *m, const char *path, fn_error *err)
{
    if (!m || !path)
        return fn_fail(err, FN_EARG, "fn_pca_model_save: invalid arguments");
    size_t d = (size_t)m->dim, k = (size_t)m->k;
    size_t n = 8 + 16 + 16 + d * 8 + k * 8 + k * d * 8 + 4;
    unsigned char *b = malloc(n), *p = b;
    if (!b)
        return fn_fail(err, FN_ENOMEM, "out of memory");
    uint32_t ver = 1, dim = (uint32_t)d, kk = (uint32_t)k, pad = 0;
    put(&p, "FNPCAMOD", 8);
    put(&p, &ver, 4), put(&p, &dim, 4), put(&p, &kk, 4), put(&p, &pad, 4);
    put(&p, &m->n, 8), put(&p, &m->total_var, 8);
    put(&p, m->mean, d * 8);
    put(&p, m->eigvals, k * 8);
    put(&p, m->components, k * d * 8);
    uint32_t crc = fn_crc32(0, b, n - 4);
    put(&p, &crc, 4);
    int rc = write_file_atomic(path, b, n, err);
    free(b);
    return rc;
}

void fn_pca_model_free(fn_pca_model *m)
{
    if (!m)
        return;
    free(m->mean), free(m->eigvals), free(m->components);
    m->mean = m->eigvals = m->components = NULL;
}

static int model_alloc(fn_pca_model *m, int dim, int k, fn_error *err)
{
    m->dim = dim, m->k = k;
    m->mean = calloc((size_t)dim, sizeof(double));
    m->eigvals = calloc((size_t)(k ? k : 1), sizeof(double));
    m->components = calloc((size_t)(k ? k : 1) * (size_t)dim, sizeof(double));
    if (!m->mean || !m->eigvals || !m->components) {
        fn_pca_model_free(m);
        return fn_fail(err, FN_ENOMEM, "pca: out of memory");
    }
    return FN_OK;
}

int fn_pca_model_load(fn_pca_model *m, const char *path, fn_error *err)
{
    unsigned char *b;
    size_t n;
    memset(m, 0, sizeof *m);
    int rc = read_file(path, &b, &n, (size_t)1 << 34, err);
    if (rc)
        return rc;
    uint32_t ver, dim, k, crc;
    if (n < 44 || memcmp(b, "FNPCAMOD", 8)) {
        free(b);
        return fn_fail(err, FN_EFORMAT, "%s: not a fruitnet PCA model file", path);
    }
    memcpy(&ver, b + 8, 4), memcpy(&dim, b + 12, 4), memcpy(&k, b + 16, 4);
    size_t d = dim, kk = k;
    if (ver != 1 || dim < 1 || dim > 65536 || k > dim || n != 40 + d * 8 + kk * 8 + kk * d * 8 + 4) {
        free(b);
        return fn_fail(err, FN_EFORMAT, "%s: bad header or size", path);
    }
    memcpy(&crc, b + n - 4, 4);
    if (fn_crc32(0, b, n - 4) != crc) {
        free(b);
        return fn_fail(err, FN_ECHECKSUM, "%s: checksum mismatch (corrupt file)", path);
    }
    if ((rc = model_alloc(m, (int)dim, (int)k, err))) {
        free(b);
        return rc;
    }
    memcpy(&m->n, b + 24, 8);
    memcpy(&m->total_var, b + 32, 8);
    const unsigned char *p = b + 40;
    memcpy(m->mean, p, d * 8), p += d * 8;
    memcpy(m->eigvals, p, kk * 8), p += kk * 8;
    memcpy(m->components, p, kk * d * 8);
    free(b);
    return FN_OK;
}

void fn_pca_transform(const fn_pca_model *m, const float *x, float *out)
{
    for (int c = 0; c < m->k; c++) {
        const double *v = m->components + (size_t)c * m->dim;
        double s = 0;
        for (int i = 0; i < m->dim; i++)
            s += v[i] * ((double)x[i] - m->mean[i]);
        out[c] = (float)s;
    }
}


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

int fn_pca_fit(const fn_pca_stats *s, int k, double variance, fn_pca_model *out, fn_error *err)
{
    return fn_pca_fit_ex(s, k, variance, 0, out, NULL, err);
}

int fn_pca_fit_ex(const fn_pca_stats *s, int k, double variance, int threads, fn_pca_model *out, double *spectrum,
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
    int rc = pick_kernels(&kern, err);
    if (rc)
        return rc;
    /* covariance (upper triangle; the lower one is never touched) */
    const size_t asize = (size_t)d * d * sizeof(double);
    double *A = big_alloc(asize);
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
    if (!(pool = fn_pool_create(default_threads(threads)))) {
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
    if ((rc = model_alloc(out, d, kk, err)))
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
    big_free(A, asize);
    free(dg), free(e), free(tau), free(w), free(Y), free(Yt);
    return rc;
}
