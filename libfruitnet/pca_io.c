/*
 * pca_io.c — PCA statistics and model files (CRC32-checked, atomic writes) and the projection.
 */
#include "files.h"
#include "pca_internal.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* the library's one reader of whole files (inputs.c): regular files only, opened without blocking */
static int read_file(const char *path, unsigned char **buf, size_t *len, size_t max, fn_error *err)
{
    return fn_read_regular(path, max, buf, len, err);
}

/* The one check of both PCA files: read `path` whole, then its 8-byte magic, u32 version (1), u32 dim
 * (1..65536), for a model u32 k <= dim, the exact size the header implies, and the trailing CRC32 of all
 * before it. On FN_OK *buf (free it) holds the file, *dim and *k (0 for statistics) the header's values. */
static int read_pca_file(const char *path, int is_model, unsigned char **buf, size_t *dim, size_t *k, fn_error *err)
{
    const char *magic = is_model ? "FNPCAMOD" : "FNPCASTA", *what = is_model ? "model" : "statistics";
    size_t head = is_model ? 40 : 24, n;
    unsigned char *b;
    int rc = read_file(path, &b, &n, (size_t)1 << 34, err);
    if (rc)
        return rc;
    if (n < head + 4 || memcmp(b, magic, 8)) {
        free(b);
        return fn_fail(err, FN_EFORMAT, "%s: not a fruitnet PCA %s file", path, what);
    }
    uint32_t ver, d32, k32 = 0, crc;
    int64_t rows;
    memcpy(&ver, b + 8, 4), memcpy(&d32, b + 12, 4);
    if (is_model)
        memcpy(&k32, b + 16, 4);
    memcpy(&rows, b + (is_model ? 24 : 16), 8);
    size_t d = d32, kk = k32;
    size_t need = d32 < 1 || d32 > 65536 ? 0
                  : is_model             ? head + d * 8 + kk * 8 + kk * d * 8 + 4
                                         : head + d * 8 + d * (d + 1) / 2 * 8 + 4;
    if (ver != 1 || need == 0 || k32 > d32 || n != need || rows < 0) {
        free(b);
        if (is_model)
            return fn_fail(err, FN_EFORMAT, "%s: bad header or size (version %u, dim %u, k %u, %zu bytes)", path, ver,
                           d32, k32, n);
        return fn_fail(err, FN_EFORMAT, "%s: bad header or size (version %u, dim %u, %zu bytes)", path, ver, d32, n);
    }
    memcpy(&crc, b + n - 4, 4);
    if (fn_crc32(0, b, n - 4) != crc) {
        free(b);
        return fn_fail(err, FN_ECHECKSUM, "%s: checksum mismatch (corrupt file)", path);
    }
    *buf = b, *dim = d, *k = kk;
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

int fn_pca_stats_load(const char *path, fn_pca_stats **out, fn_error *err)
{
    if (!path || !out)
        return fn_fail(err, FN_EARG, "fn_pca_stats_load: invalid arguments");
    *out = NULL;
    unsigned char *b = NULL;
    size_t d = 0, k;
    fn_pca_stats *s;
    int rc = read_pca_file(path, 0, &b, &d, &k, err);
    if (!rc && (rc = fn_pca_stats_new((int)d, &s, err)) == FN_OK) {
        memcpy(&s->n, b + 16, 8);
        const unsigned char *p = b + 24;
        memcpy(s->mean, p, d * 8);
        p += d * 8;
        for (size_t i = 0; i < d; i++) {
            memcpy(s->m2 + i * d + i, p, (d - i) * 8);
            p += (d - i) * 8;
        }
        *out = s;
    }
    free(b);
    return rc;
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

void pca_model_clear(fn_pca_model *m)
{
    if (!m)
        return;
    free(m->mean), free(m->eigvals), free(m->components);
    m->mean = m->eigvals = m->components = NULL;
}

void fn_pca_model_free(fn_pca_model *m)
{
    pca_model_clear(m);
    free(m);
}

int fn_pca_model_dim(const fn_pca_model *m) { return m ? m->dim : 0; }
int fn_pca_model_k(const fn_pca_model *m) { return m ? m->k : 0; }
int64_t fn_pca_model_rows(const fn_pca_model *m) { return m ? m->n : 0; }
double fn_pca_model_total_var(const fn_pca_model *m) { return m ? m->total_var : 0; }
const double *fn_pca_model_mean(const fn_pca_model *m) { return m ? m->mean : NULL; }
const double *fn_pca_model_eigvals(const fn_pca_model *m) { return m ? m->eigvals : NULL; }
const double *fn_pca_model_components(const fn_pca_model *m) { return m ? m->components : NULL; }

int fn_pca_model_new(int dim, int k, int64_t n, double total_var, const double *mean, const double *eigvals,
                     const double *components, fn_pca_model **out, fn_error *err)
{
    if (!out)
        return fn_fail(err, FN_EARG, "fn_pca_model_new: invalid arguments");
    *out = NULL;
    if (dim < 1 || dim > 65536 || k < 0 || k > dim || n < 0 || !mean || (k > 0 && (!eigvals || !components)))
        return fn_fail(err, FN_EARG, "fn_pca_model_new: invalid model (dim %d, k %d, n %lld)", dim, k, (long long)n);
    fn_pca_model *m = calloc(1, sizeof *m);
    if (!m)
        return fn_fail(err, FN_ENOMEM, "pca: out of memory");
    int rc = pca_model_alloc(m, dim, k, err);
    if (rc) {
        free(m);
        return rc;
    }
    m->n = n, m->total_var = total_var;
    memcpy(m->mean, mean, (size_t)dim * sizeof(double));
    if (k > 0) {
        memcpy(m->eigvals, eigvals, (size_t)k * sizeof(double));
        memcpy(m->components, components, (size_t)k * dim * sizeof(double));
    }
    *out = m;
    return FN_OK;
}

int pca_model_alloc(fn_pca_model *m, int dim, int k, fn_error *err)
{
    m->dim = dim, m->k = k;
    m->mean = calloc((size_t)dim, sizeof(double));
    m->eigvals = calloc((size_t)(k ? k : 1), sizeof(double));
    m->components = calloc((size_t)(k ? k : 1) * (size_t)dim, sizeof(double));
    if (!m->mean || !m->eigvals || !m->components) {
        pca_model_clear(m);
        return fn_fail(err, FN_ENOMEM, "pca: out of memory");
    }
    return FN_OK;
}

int fn_pca_model_load(const char *path, fn_pca_model **out, fn_error *err)
{
    if (!path || !out)
        return fn_fail(err, FN_EARG, "fn_pca_model_load: invalid arguments");
    *out = NULL;
    unsigned char *b = NULL;
    size_t d = 0, kk = 0;
    int rc = read_pca_file(path, 1, &b, &d, &kk, err);
    fn_pca_model *m = rc ? NULL : calloc(1, sizeof *m);
    if (!rc && !m)
        rc = fn_fail(err, FN_ENOMEM, "pca: out of memory");
    if (!rc && (rc = pca_model_alloc(m, (int)d, (int)kk, err)) == FN_OK) {
        memcpy(&m->n, b + 24, 8);
        memcpy(&m->total_var, b + 32, 8);
        const unsigned char *p = b + 40;
        memcpy(m->mean, p, d * 8), p += d * 8;
        memcpy(m->eigvals, p, kk * 8), p += kk * 8;
        memcpy(m->components, p, kk * d * 8);
        *out = m;
    } else {
        free(m);
    }
    free(b);
    return rc;
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

