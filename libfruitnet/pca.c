/*
 * pca.c — streaming, mergeable PCA in double precision.
 *
 * Statistics: rows arrive in chunks; each chunk's mean and centred
 * co-moment (x - m_c)(x - m_c)^T are computed (a blocked SYRK over the upper
 * triangle, both cores), then merged into the running (n, mean, M2) with
 * Chan et al.'s update  M2 += M2_c + d d^T n n_c / (n + n_c),  d = m_c - m.
 * No raw sums of squares: numerically stable, memory dim^2 doubles whatever
 * the number of rows.
 *
 * Eigen-decomposition: subspace iteration with Rayleigh-Ritz on the
 * covariance C = M2 / (n - 1). A block Q of p orthonormal columns is
 * iterated Z = C Q; H = Q^T Z is diagonalised by cyclic Jacobi (p x p);
 * the Ritz vectors Z U are re-orthonormalised (Gram-Schmidt, twice). It
 * stops when every wanted Ritz pair has residual ||C q - l q|| <=
 * 1e-12 * l_1 (eigenvalue error ~ residual^2 / gap). The block size p is
 * at least twice the number of wanted components (and >= 64); if the
 * variance target is not reached inside the block, p doubles.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CHUNK_ROWS 256
#define JB 64 /* SYRK column block */

int fn_pca_stats_init(fn_pca_stats *s, int dim, fn_error *err)
{
    memset(s, 0, sizeof *s);
    if (dim < 1 || dim > 65536)
        return fn_fail(err, FN_EARG, "pca: dimension %d out of range", dim);
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

/* C[i][j] += sum_r X[r][i] X[r][j] for i in [i0,i0+4), j in [j0,j0+16); X row-major, ld = dim. */
__attribute__((target_clones("avx512f", "avx2", "default"))) static void syrk_tile(const double *X, int rows, int ld,
                                                                                   int i0, int j0, double *C)
{
    typedef double v8 __attribute__((vector_size(64), aligned(8)));
    v8 a00 = {0}, a01 = {0}, a10 = {0}, a11 = {0}, a20 = {0}, a21 = {0}, a30 = {0}, a31 = {0};
    for (int r = 0; r < rows; r++) {
        const double *x = X + (size_t)r * ld;
        v8 b0, b1;
        memcpy(&b0, x + j0, 64);
        memcpy(&b1, x + j0 + 8, 64);
        double x0 = x[i0], x1 = x[i0 + 1], x2 = x[i0 + 2], x3 = x[i0 + 3];
        a00 += x0 * b0, a01 += x0 * b1;
        a10 += x1 * b0, a11 += x1 * b1;
        a20 += x2 * b0, a21 += x2 * b1;
        a30 += x3 * b0, a31 += x3 * b1;
    }
    v8 acc[4][2] = {{a00, a01}, {a10, a11}, {a20, a21}, {a30, a31}};
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 16; j++)
            C[(size_t)(i0 + i) * ld + j0 + j] += acc[i][j / 8][j % 8];
}

typedef struct syrk_job {
    const double *X;
    int rows, dim, full, nthreads;
    double *C;
} syrk_job;

typedef struct syrk_part {
    syrk_job *job;
    int tid;
} syrk_part;

/* Column blocks of JB go to threads in a zig-zag order, balancing the triangle's uneven work. */
static void *syrk_worker(void *arg)
{
    syrk_part *p = arg;
    syrk_job *j = p->job;
    int nb = (j->full + JB - 1) / JB, T = j->nthreads;
    for (int b = 0; b < nb; b++) {
        int owner = (b / T) % 2 == 0 ? b % T : T - 1 - b % T;
        if (owner != p->tid)
            continue;
        int jb1 = (b + 1) * JB < j->full ? (b + 1) * JB : j->full;
        for (int j0 = b * JB; j0 < jb1; j0 += 16)
            for (int i0 = 0; i0 < j0 + 16; i0 += 4)
                syrk_tile(j->X, j->rows, j->dim, i0, j0, j->C);
    }
    return NULL;
}

/* C (upper triangle incl. diagonal) += X^T X. Columns below a multiple of 16 use the SIMD
 * tiles (which also fill a few entries below the diagonal, ignored); the rest plain loops. */
static void syrk_upper(const double *X, int rows, int dim, double *C, int threads)
{
    int T = threads < 1 ? 1 : threads > 64 ? 64 : threads;
    syrk_job job = {X, rows, dim, dim / 16 * 16, T, C};
    pthread_t th[64];
    syrk_part parts[64];
    for (int t = 0; t < T; t++)
        parts[t].job = &job, parts[t].tid = t;
    for (int t = 1; t < T; t++)
        if (pthread_create(&th[t], NULL, syrk_worker, &parts[t]) != 0)
            parts[t].tid = -1 - t;
    syrk_worker(&parts[0]);
    for (int t = 1; t < T; t++) {
        if (parts[t].tid >= 0) {
            pthread_join(th[t], NULL);
        } else { /* the thread could not start: do its share here */
            parts[t].tid = t;
            syrk_worker(&parts[t]);
        }
    }
    for (int j = job.full; j < dim; j++)
        for (int i = 0; i <= j; i++) {
            double s = 0;
            for (int r = 0; r < rows; r++)
                s += X[(size_t)r * dim + i] * X[(size_t)r * dim + j];
            C[(size_t)i * dim + j] += s;
        }
}

static int add_chunk(fn_pca_stats *s, const float *rows, int nr, double *X, double *Cc, int threads, int64_t row0,
                     fn_error *err)
{
    const int d = s->dim;
    double *mc = calloc((size_t)d, sizeof(double));
    if (!mc)
        return fn_fail(err, FN_ENOMEM, "pca: out of memory");
    for (int r = 0; r < nr; r++)
        for (int i = 0; i < d; i++) {
            float v = rows[(size_t)r * d + i];
            if (!isfinite(v)) {
                free(mc);
                return fn_fail(err, FN_ENUMERIC, "pca: row %lld has a NaN or infinite value at index %d",
                               (long long)(row0 + r), i);
            }
            mc[i] += v;
        }
    for (int i = 0; i < d; i++)
        mc[i] /= nr;
    for (int r = 0; r < nr; r++)
        for (int i = 0; i < d; i++)
            X[(size_t)r * d + i] = rows[(size_t)r * d + i] - mc[i];
    memset(Cc, 0, (size_t)d * d * sizeof(double));
    syrk_upper(X, nr, d, Cc, threads);
    /* merge (upper triangle; mirrored when the statistics are used) */
    double n = (double)s->n, nc = nr, f = n * nc / (n + nc);
    for (int i = 0; i < d; i++) {
        double di = mc[i] - s->mean[i];
        double *row = s->m2 + (size_t)i * d;
        const double *crow = Cc + (size_t)i * d;
        for (int j = i; j < d; j++)
            row[j] += crow[j] + di * (mc[j] - s->mean[j]) * f;
    }
    for (int i = 0; i < d; i++)
        s->mean[i] += (mc[i] - s->mean[i]) * nc / (n + nc);
    s->n += nr;
    free(mc);
    return FN_OK;
}

int fn_pca_stats_add(fn_pca_stats *s, const float *rows, int nrows, int threads, fn_error *err)
{
    if (!s || !s->m2 || nrows < 0 || (nrows > 0 && !rows))
        return fn_fail(err, FN_EARG, "fn_pca_stats_add: invalid arguments");
    if (threads <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        threads = n > 0 ? (int)(n > 64 ? 64 : n) : 1;
    }
    const int d = s->dim;
    double *X = fn_aalloc((size_t)CHUNK_ROWS * d * sizeof(double));
    double *Cc = fn_aalloc((size_t)d * d * sizeof(double));
    int rc = FN_OK;
    if (!X || !Cc)
        rc = fn_fail(err, FN_ENOMEM, "pca: out of memory");
    for (int r = 0; r < nrows && !rc; r += CHUNK_ROWS) {
        int nr = nrows - r < CHUNK_ROWS ? nrows - r : CHUNK_ROWS;
        rc = add_chunk(s, rows + (size_t)r * d, nr, X, Cc, threads, s->n, err);
    }
    fn_afree(X);
    fn_afree(Cc);
    return rc;
}

int fn_pca_stats_merge(fn_pca_stats *dst, const fn_pca_stats *src, fn_error *err)
{
    if (!dst || !src || dst->dim != src->dim)
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

static int write_file_atomic(const char *path, const void *data, size_t n, fn_error *err)
{
    size_t tl = strlen(path) + 32;
    char *tmp = malloc(tl);
    if (!tmp)
        return fn_fail(err, FN_ENOMEM, "out of memory");
    snprintf(tmp, tl, "%s.tmp.%d", path, (int)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        int e = errno;
        free(tmp);
        return fn_fail(err, FN_EIO, "%s: cannot create: %s", path, strerror(e));
    }
    const unsigned char *p = data;
    size_t left = n;
    while (left) {
        ssize_t w = write(fd, p, left);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            int e = w < 0 ? errno : ENOSPC;
            close(fd);
            unlink(tmp);
            free(tmp);
            return fn_fail(err, FN_EIO, "%s: write failed: %s", path, strerror(e));
        }
        p += w;
        left -= (size_t)w;
    }
    if (fsync(fd) != 0 || close(fd) != 0 || rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        free(tmp);
        return fn_fail(err, FN_EIO, "%s: cannot finish writing: %s", path, strerror(e));
    }
    free(tmp);
    return FN_OK;
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

/* Cyclic Jacobi on a symmetric p x p matrix A (destroyed): eigenvalues w, eigenvectors in columns of V. */
static void jacobi(double *A, int p, double *w, double *V)
{
    for (int i = 0; i < p; i++)
        for (int j = 0; j < p; j++)
            V[(size_t)i * p + j] = i == j;
    for (int sweep = 0; sweep < 100; sweep++) {
        double off = 0, tot = 0;
        for (int i = 0; i < p; i++)
            for (int j = 0; j < p; j++) {
                double a = A[(size_t)i * p + j] * A[(size_t)i * p + j];
                tot += a;
                if (i != j)
                    off += a;
            }
        if (off <= 1e-30 * tot || off == 0)
            break;
        for (int i = 0; i < p - 1; i++)
            for (int j = i + 1; j < p; j++) {
                double aij = A[(size_t)i * p + j];
                if (fabs(aij) < 1e-300)
                    continue;
                double aii = A[(size_t)i * p + i], ajj = A[(size_t)j * p + j];
                double theta = (ajj - aii) / (2 * aij);
                double t = (theta >= 0 ? 1 : -1) / (fabs(theta) + sqrt(theta * theta + 1));
                double c = 1 / sqrt(t * t + 1), s = t * c;
                for (int k = 0; k < p; k++) { /* columns i, j */
                    double aki = A[(size_t)k * p + i], akj = A[(size_t)k * p + j];
                    A[(size_t)k * p + i] = c * aki - s * akj;
                    A[(size_t)k * p + j] = s * aki + c * akj;
                }
                for (int k = 0; k < p; k++) { /* rows i, j */
                    double aik = A[(size_t)i * p + k], ajk = A[(size_t)j * p + k];
                    A[(size_t)i * p + k] = c * aik - s * ajk;
                    A[(size_t)j * p + k] = s * aik + c * ajk;
                }
                for (int k = 0; k < p; k++) {
                    double vki = V[(size_t)k * p + i], vkj = V[(size_t)k * p + j];
                    V[(size_t)k * p + i] = c * vki - s * vkj;
                    V[(size_t)k * p + j] = s * vki + c * vkj;
                }
            }
    }
    for (int i = 0; i < p; i++)
        w[i] = A[(size_t)i * p + i];
}

typedef struct gemm_job {
    const double *C; /* d x d symmetric, full */
    const double *Q; /* p x d (rows = vectors) */
    double *Z;       /* p x d: Z = Q C = (C Q^T)^T */
    int d, p, nthreads;
} gemm_job;

#define GKB 256 /* k block: a 256 x 256 block of C (512 KiB) stays in L2 */
#define GJB 256

/* Z[r0..r0+4][j0..j0+16] += Q[r0..][k0..k1] C[k0..k1][j0..j0+16]; d % 16 == 0 */
__attribute__((target_clones("avx512f", "avx2", "default"))) static void zq_tile(const double *C, const double *Q,
                                                                                  double *Z, int d, int r0, int j0,
                                                                                  int k0, int k1)
{
    typedef double v8 __attribute__((vector_size(64), aligned(8)));
    v8 a00, a01, a10, a11, a20, a21, a30, a31;
    double *z0 = Z + (size_t)r0 * d + j0, *z1 = z0 + d, *z2 = z1 + d, *z3 = z2 + d;
    memcpy(&a00, z0, 64), memcpy(&a01, z0 + 8, 64), memcpy(&a10, z1, 64), memcpy(&a11, z1 + 8, 64);
    memcpy(&a20, z2, 64), memcpy(&a21, z2 + 8, 64), memcpy(&a30, z3, 64), memcpy(&a31, z3 + 8, 64);
    const double *q0 = Q + (size_t)r0 * d, *q1 = q0 + d, *q2 = q1 + d, *q3 = q2 + d;
    for (int k = k0; k < k1; k++) {
        v8 b0, b1;
        memcpy(&b0, C + (size_t)k * d + j0, 64);
        memcpy(&b1, C + (size_t)k * d + j0 + 8, 64);
        a00 += q0[k] * b0, a01 += q0[k] * b1;
        a10 += q1[k] * b0, a11 += q1[k] * b1;
        a20 += q2[k] * b0, a21 += q2[k] * b1;
        a30 += q3[k] * b0, a31 += q3[k] * b1;
    }
    memcpy(z0, &a00, 64), memcpy(z0 + 8, &a01, 64), memcpy(z1, &a10, 64), memcpy(z1 + 8, &a11, 64);
    memcpy(z2, &a20, 64), memcpy(z2 + 8, &a21, 64), memcpy(z3, &a30, 64), memcpy(z3 + 8, &a31, 64);
}

typedef struct cq_part {
    gemm_job *j;
    int tid;
} cq_part;

static void *cq_worker(void *arg)
{
    cq_part *pp = arg;
    gemm_job *j = pp->j;
    const int d = j->d, groups = j->p / 4;
    int g0 = groups * pp->tid / j->nthreads, g1 = groups * (pp->tid + 1) / j->nthreads;
    if (d % 16 == 0) {
        for (int kb = 0; kb < d; kb += GKB)
            for (int jb = 0; jb < d; jb += GJB)
                for (int g = g0; g < g1; g++)
                    for (int j0 = jb; j0 < jb + GJB && j0 < d; j0 += 16)
                        zq_tile(j->C, j->Q, j->Z, d, g * 4, j0, kb, kb + GKB < d ? kb + GKB : d);
    } else {
        for (int r = g0 * 4; r < g1 * 4; r++)
            for (int k = 0; k < d; k++) {
                double q = j->Q[(size_t)r * d + k];
                const double *c = j->C + (size_t)k * d;
                double *z = j->Z + (size_t)r * d;
                for (int i = 0; i < d; i++)
                    z[i] += q * c[i];
            }
    }
    if (pp->tid == 0) /* rows beyond the last group of 4 */
        for (int r = groups * 4; r < j->p; r++)
            for (int k = 0; k < d; k++) {
                double q = j->Q[(size_t)r * d + k];
                const double *c = j->C + (size_t)k * d;
                double *z = j->Z + (size_t)r * d;
                for (int i = 0; i < d; i++)
                    z[i] += q * c[i];
            }
    return NULL;
}

static void mul_cq(const double *C, const double *Q, double *Z, int d, int p, int threads)
{
    gemm_job j = {C, Q, Z, d, p, threads < 1 ? 1 : threads > 64 ? 64 : threads};
    memset(Z, 0, (size_t)p * d * sizeof(double));
    pthread_t th[64];
    cq_part parts[64];
    for (int t = 0; t < j.nthreads; t++)
        parts[t].j = &j, parts[t].tid = t;
    for (int t = 1; t < j.nthreads; t++)
        if (pthread_create(&th[t], NULL, cq_worker, &parts[t]) != 0)
            parts[t].tid = -1 - t;
    cq_worker(&parts[0]);
    for (int t = 1; t < j.nthreads; t++) {
        if (parts[t].tid >= 0)
            pthread_join(th[t], NULL);
        else {
            parts[t].tid = t;
            cq_worker(&parts[t]);
        }
    }
}

/* Orthonormalise the p rows of Q (d-vectors) by Gram-Schmidt, twice; degenerate rows get fresh random ones. */
static void orthonormalise(double *Q, int p, int d, uint64_t *seed)
{
    for (int c = 0; c < p; c++) {
        double *q = Q + (size_t)c * d;
        for (int attempt = 0; attempt < 4; attempt++) {
            double n0 = 0;
            for (int i = 0; i < d; i++)
                n0 += q[i] * q[i];
            for (int pass = 0; pass < 2; pass++)
                for (int o = 0; o < c; o++) {
                    const double *v = Q + (size_t)o * d;
                    double s = 0;
                    for (int i = 0; i < d; i++)
                        s += v[i] * q[i];
                    for (int i = 0; i < d; i++)
                        q[i] -= s * v[i];
                }
            double nn = 0;
            for (int i = 0; i < d; i++)
                nn += q[i] * q[i];
            if (nn > 1e-20 * (n0 > 0 ? n0 : 1) && nn > 0) {
                double inv = 1 / sqrt(nn);
                for (int i = 0; i < d; i++)
                    q[i] *= inv;
                break;
            }
            for (int i = 0; i < d; i++) { /* replace by a random vector */
                *seed ^= *seed << 13, *seed ^= *seed >> 7, *seed ^= *seed << 17;
                q[i] = (double)(*seed >> 11) / 9007199254740992.0 - 0.5;
            }
        }
    }
}

int fn_pca_fit(const fn_pca_stats *s, int k, double variance, fn_pca_model *out, fn_error *err)
{
    if (!s || !out || k < 0 || (k == 0 && !(variance > 0 && variance <= 1)))
        return fn_fail(err, FN_EARG, "fn_pca_fit: need k > 0 or a variance fraction in (0, 1]");
    memset(out, 0, sizeof *out);
    const int d = s->dim;
    if (s->n < 2)
        return fn_fail(err, FN_ENUMERIC, "pca: need at least 2 rows, got %lld", (long long)s->n);
    if (k > d)
        return fn_fail(err, FN_EARG, "pca: k = %d exceeds the dimension %d", k, d);
    /* covariance, full symmetric */
    double *C = fn_aalloc((size_t)d * d * sizeof(double));
    if (!C)
        return fn_fail(err, FN_ENOMEM, "pca: out of memory");
    double trace = 0, inv = 1.0 / (double)(s->n - 1);
    for (int i = 0; i < d; i++)
        for (int j = i; j < d; j++) {
            double v = s->m2[(size_t)i * d + j] * inv;
            C[(size_t)i * d + j] = C[(size_t)j * d + i] = v;
        }
    for (int i = 0; i < d; i++)
        trace += C[(size_t)i * d + i];
    if (!(trace > 0) || !isfinite(trace)) {
        fn_afree(C);
        return fn_fail(err, FN_ENUMERIC, "pca: total variance is %g (all rows identical?)", trace);
    }
    long nth = sysconf(_SC_NPROCESSORS_ONLN);
    int threads = nth > 0 ? (int)(nth > 64 ? 64 : nth) : 1;
    int want = k > 0 ? k : 8;
    int rc = FN_OK;
    uint64_t seed = 0x5DEECE66Dull;
    double *Q = NULL, *Z = NULL, *H = NULL, *U = NULL, *w = NULL, *T = NULL;
    for (;;) {
        int p = 2 * want > want + 32 ? 2 * want : want + 32;
        if (p < 64)
            p = 64;
        if (p > d)
            p = d;
        free(Q), free(Z), free(H), free(U), free(w), free(T);
        Q = malloc((size_t)p * d * sizeof(double));
        Z = malloc((size_t)p * d * sizeof(double));
        T = malloc((size_t)p * d * sizeof(double));
        H = malloc((size_t)p * p * sizeof(double));
        U = malloc((size_t)p * p * sizeof(double));
        w = malloc((size_t)p * sizeof(double));
        if (!Q || !Z || !T || !H || !U || !w) {
            rc = fn_fail(err, FN_ENOMEM, "pca: out of memory");
            break;
        }
        for (size_t i = 0; i < (size_t)p * d; i++) {
            seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
            Q[i] = (double)(seed >> 11) / 9007199254740992.0 - 0.5;
        }
        orthonormalise(Q, p, d, &seed);
        int converged = 0, nconv_need = want < p ? want : p;
        for (int it = 0; it < 1000 && !converged; it++) {
            mul_cq(C, Q, Z, d, p, threads);
            for (int a = 0; a < p; a++) /* H = Q Z^T (p x p), symmetrised */
                for (int b = a; b < p; b++) {
                    double sum = 0;
                    for (int i = 0; i < d; i++)
                        sum += Q[(size_t)a * d + i] * Z[(size_t)b * d + i];
                    H[(size_t)a * p + b] = H[(size_t)b * p + a] = sum;
                }
            jacobi(H, p, w, U);
            /* sort Ritz values descending */
            int *ord = malloc((size_t)p * sizeof(int));
            for (int i = 0; i < p; i++)
                ord[i] = i;
            for (int i = 1; i < p; i++) {
                int x = ord[i], j = i - 1;
                while (j >= 0 && w[ord[j]] < w[x])
                    ord[j + 1] = ord[j], j--;
                ord[j + 1] = x;
            }
            /* Ritz vectors: Q' = U^T Q, C Q' = U^T Z; residuals of the wanted ones */
            double worst = 0;
            for (int r = 0; r < p; r++) {
                int c = ord[r];
                double *tq = T + (size_t)r * d;
                memset(tq, 0, (size_t)d * sizeof(double));
                for (int a = 0; a < p; a++) {
                    double u = U[(size_t)a * p + c];
                    const double *qa = Q + (size_t)a * d;
                    for (int i = 0; i < d; i++)
                        tq[i] += u * qa[i];
                }
                if (r < nconv_need) {
                    double res = 0;
                    /* residual ||C q - l q||: C q = sum_a u_a Z_a */
                    for (int i = 0; i < d; i++) {
                        double cq = 0;
                        for (int a = 0; a < p; a++)
                            cq += U[(size_t)a * p + c] * Z[(size_t)a * d + i];
                        double rr = cq - w[c] * tq[i];
                        res += rr * rr;
                    }
                    res = sqrt(res);
                    if (res > worst)
                        worst = res;
                }
            }
            double l1 = w[ord[0]];
            double *sorted = malloc((size_t)p * sizeof(double));
            for (int r = 0; r < p; r++)
                sorted[r] = w[ord[r]];
            memcpy(w, sorted, (size_t)p * sizeof(double));
            free(sorted);
            free(ord);
            if (worst <= 1e-12 * l1 || (p == d && worst <= 1e-9 * l1))
                converged = 1;
            else {
                /* next basis: orthonormalised C Q' = rows of U^T Z */
                for (int r = 0; r < p; r++)
                    memcpy(Q + (size_t)r * d, T + (size_t)r * d, (size_t)d * sizeof(double));
                mul_cq(C, Q, Z, d, p, threads);
                memcpy(Q, Z, (size_t)p * d * sizeof(double));
                orthonormalise(Q, p, d, &seed);
            }
        }
        if (!converged) {
            rc = fn_fail(err, FN_ENUMERIC, "pca: subspace iteration did not converge");
            break;
        }
        int kk = k;
        if (k == 0) {
            double cum = 0;
            kk = 0;
            for (int r = 0; r < p && kk == 0; r++) {
                cum += w[r];
                if (cum >= variance * trace * (1 - 1e-12))
                    kk = r + 1;
            }
            if (kk == 0 || kk > want) {
                if (p == d && kk == 0)
                    kk = d; /* every component */
                else if (p < d) {
                    want = kk ? kk : 2 * want;
                    continue; /* grow the block */
                }
            }
        }
        if ((rc = model_alloc(out, d, kk, err)))
            break;
        out->n = s->n;
        out->total_var = trace;
        memcpy(out->mean, s->mean, (size_t)d * sizeof(double));
        for (int r = 0; r < kk; r++) {
            out->eigvals[r] = w[r];
            double *v = out->components + (size_t)r * d;
            memcpy(v, T + (size_t)r * d, (size_t)d * sizeof(double));
            int im = 0;
            for (int i = 1; i < d; i++)
                if (fabs(v[i]) > fabs(v[im]))
                    im = i;
            if (v[im] < 0)
                for (int i = 0; i < d; i++)
                    v[i] = -v[i];
        }
        break;
    }
    free(Q), free(Z), free(H), free(U), free(w), free(T);
    fn_afree(C);
    return rc;
}
