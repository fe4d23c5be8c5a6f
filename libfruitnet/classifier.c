/*
 * classifier.c — the fruit classifier: a multinomial logistic regression on
 * standardised features, its .fncls file and its inference. Training is in
 * classifier_train.c.
 *
 * Model: z = (t(x) - mean) / scale (per feature, t the transform), logits = W z + b,
 * p = softmax(logits). W is nclasses x dim, in the standardised space
 * (whatever space training worked in: a PCA-reduced model is composed back).
 * Inference runs in double precision.
 *
 * Out-of-set score (version 2): the mean squared distance per feature of z to the nearest class mean
 * (the nearest-centroid distance in the standardised space), against a threshold set by training (the
 * 99th percentile over the training rows).
 *
 * File (.fncls), little-endian, version 2 (version 1: the same without the last two fields; still read):
 *   0   "FNCLSMOD"                     magic
 *   8   u32 version (1 or 2)
 *   12  u32 dim                        1..65536
 *   16  u32 nclasses                   2..65536
 *   20  u32 names_bytes                class names, each NUL-terminated, in class order
 *   24  u32 info_bytes                 "key=value\n" text, NUL-terminated
 *   28  u32 transform                  0: none, 1: sign(x) sqrt(|x|) before standardisation
 *   32  names, info, zero padding to a multiple of 8
 *       f64 mean[dim], f64 scale[dim], f64 W[nclasses][dim], f64 b[nclasses]
 *       (version 2) f64 distance threshold (> 0), f32 class means of z [nclasses][dim]
 *   end u32 CRC32 of every byte before it
 * Written by the library's one atomic writer (fn_atomic_write_file): a hidden
 * temporary in the target's folder, fsync, rename, folder fsync; an existing
 * non-regular target (e.g. /dev/null) is refused and left as it is.
 */
#include "classifier.h"
#include "files.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAGIC "FNCLSMOD"
#define VERSION 2 /* written when the model has class means (trained by this version); else 1 */
#define HEADER 32
#define MAX_DIM 65536
#define MAX_CLASSES 65536
#define MAX_TEXT ((size_t)64 << 20)

void fn_classifier_free(fn_classifier *c)
{
    if (!c)
        return;
    free(c->names);
    free(c->names_buf);
    free(c->info);
    free(c->mean), free(c->scale), free(c->W), free(c->b), free(c->centroids);
    free(c);
}

int fn_classifier_classes(const fn_classifier *c) { return c ? c->nclasses : 0; }
int fn_classifier_dim(const fn_classifier *c) { return c ? c->dim : 0; }
const char *fn_classifier_info(const fn_classifier *c) { return c && c->info ? c->info : ""; }

const char *fn_classifier_class_name(const fn_classifier *c, int i)
{
    return c && i >= 0 && i < c->nclasses ? c->names[i] : NULL;
}

int fn_cls_valid_utf8(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        int n = *p < 0x80 ? 0 : (*p & 0xe0) == 0xc0 ? 1 : (*p & 0xf0) == 0xe0 ? 2 : (*p & 0xf8) == 0xf0 ? 3 : -1;
        if (n < 0 || (n == 1 && *p < 0xc2))
            return 0;
        p++;
        for (int k = 0; k < n; k++, p++)
            if ((*p & 0xc0) != 0x80)
                return 0;
    }
    return 1;
}

fn_classifier *fn_cls_alloc(int dim, int nclasses, const char *const *names, const char *info)
{
    fn_classifier *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->dim = dim, c->nclasses = nclasses;
    size_t nb = 0;
    for (int k = 0; k < nclasses; k++)
        nb += strlen(names[k]) + 1;
    c->names_buf = malloc(nb ? nb : 1);
    c->names = malloc((size_t)nclasses * sizeof(char *));
    c->info = strdup(info ? info : "");
    c->mean = calloc((size_t)dim, sizeof(double));
    c->scale = calloc((size_t)dim, sizeof(double));
    c->W = calloc((size_t)nclasses * dim, sizeof(double));
    c->b = calloc((size_t)nclasses, sizeof(double));
    if (!c->names_buf || !c->names || !c->info || !c->mean || !c->scale || !c->W || !c->b) {
        fn_classifier_free(c);
        return NULL;
    }
    char *p = c->names_buf;
    for (int k = 0; k < nclasses; k++) {
        size_t l = strlen(names[k]) + 1;
        memcpy(p, names[k], l);
        c->names[k] = p;
        p += l;
    }
    c->names_bytes = nb;
    return c;
}

/* ---------------------------------------------------------------- inference */

/* probs[k] of one row; zrow: dim doubles of scratch. */
static void predict_row(const fn_classifier *c, const float *x, double *zrow, double *logit, float *probs)
{
    const int d = c->dim, K = c->nclasses;
    for (int j = 0; j < d; j++)
        zrow[j] = (fn_cls_transform(c->transform, x[j]) - c->mean[j]) / c->scale[j];
    double mx = -INFINITY;
    for (int k = 0; k < K; k++) {
        const double *w = c->W + (size_t)k * d;
        double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        int j = 0;
        for (; j + 4 <= d; j += 4)
            s0 += w[j] * zrow[j], s1 += w[j + 1] * zrow[j + 1], s2 += w[j + 2] * zrow[j + 2],
                s3 += w[j + 3] * zrow[j + 3];
        for (; j < d; j++)
            s0 += w[j] * zrow[j];
        logit[k] = c->b[k] + ((s0 + s1) + (s2 + s3));
        mx = logit[k] > mx ? logit[k] : mx;
    }
    double sum = 0;
    for (int k = 0; k < K; k++)
        sum += (logit[k] = exp(logit[k] - mx));
    for (int k = 0; k < K; k++)
        probs[k] = (float)(logit[k] / sum);
}

int fn_classifier_predict_proba(const fn_classifier *c, const float *x, int n, float *probs, fn_error *err)
{
    if (!c || n < 0 || (n > 0 && (!x || !probs)))
        return fn_fail(err, FN_EARG, "fn_classifier_predict_proba: invalid arguments");
    const int d = c->dim;
    for (int i = 0; i < n; i++) {
        const float *r = x + (size_t)i * d;
        int bad = 0;
        for (int j = 0; j < d; j++)
            bad |= !(fabsf(r[j]) <= 3.402823466e38f);
        if (bad)
            for (int j = 0; j < d; j++)
                if (!isfinite(r[j]))
                    return fn_fail(err, FN_ENUMERIC, "classifier: feature row %d has a NaN or infinite value at index %d",
                                   i, j);
    }
    double *buf = malloc(((size_t)d + (size_t)c->nclasses) * sizeof(double));
    if (!buf)
        return fn_fail(err, FN_ENOMEM, "classifier: out of memory");
    for (int i = 0; i < n; i++)
        predict_row(c, x + (size_t)i * d, buf, buf + d, probs + (size_t)i * c->nclasses);
    free(buf);
    return FN_OK;
}

double fn_classifier_distance_threshold(const fn_classifier *c) { return c && c->centroids ? c->dist_threshold : 0; }

int fn_classifier_distance(const fn_classifier *c, const float *x, int n, float *dist, fn_error *err)
{
    if (!c || n < 0 || (n > 0 && (!x || !dist)))
        return fn_fail(err, FN_EARG, "fn_classifier_distance: invalid arguments");
    if (!c->centroids)
        return fn_fail(err, FN_EUNSUPPORTED, "classifier: this model has no class means (a version-1 file): "
                                             "retrain it to get out-of-set distances");
    const int d = c->dim, K = c->nclasses;
    double *z = malloc((size_t)d * sizeof(double));
    if (!z)
        return fn_fail(err, FN_ENOMEM, "classifier: out of memory");
    for (int i = 0; i < n; i++) {
        const float *r = x + (size_t)i * d;
        for (int j = 0; j < d; j++) {
            if (!isfinite(r[j])) {
                free(z);
                return fn_fail(err, FN_ENUMERIC, "classifier: feature row %d has a NaN or infinite value at index %d",
                               i, j);
            }
            z[j] = (fn_cls_transform(c->transform, r[j]) - c->mean[j]) / c->scale[j];
        }
        double best = INFINITY;
        for (int k = 0; k < K; k++) {
            const float *m = c->centroids + (size_t)k * d;
            double s = 0;
            for (int j = 0; j < d; j++) {
                double t = z[j] - m[j];
                s += t * t;
            }
            best = s < best ? s : best;
        }
        dist[i] = (float)(best / d);
    }
    free(z);
    return FN_OK;
}

/* ---------------------------------------------------------------- file */

static void wr32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v, p[1] = (unsigned char)(v >> 8), p[2] = (unsigned char)(v >> 16),
    p[3] = (unsigned char)(v >> 24);
}
static uint32_t rd32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static size_t pad8(size_t n) { return (n + 7) & ~(size_t)7; }

/* Bytes of the file for these sizes (0 on overflow). */
static size_t file_size(uint32_t ver, size_t dim, size_t K, size_t names_bytes, size_t info_bytes)
{
    size_t nums = 2 * dim + K * dim + K + (ver >= 2), total;
    if (!fn_mul_size(nums, 8, &nums) || (ver >= 2 && !fn_add_size(nums, K * dim * 4, &nums)) || !fn_add_size(pad8(HEADER + names_bytes + info_bytes), nums, &total) ||
        !fn_add_size(total, 4, &total))
        return 0;
    return total;
}

int fn_classifier_save(const fn_classifier *c, const char *path, fn_error *err)
{
    if (!c || !path || !*path)
        return fn_fail(err, FN_EARG, "fn_classifier_save: invalid arguments");
    const size_t d = (size_t)c->dim, K = (size_t)c->nclasses, ib = strlen(c->info) + 1;
    const uint32_t ver = c->centroids ? 2 : 1;
    size_t n = file_size(ver, d, K, c->names_bytes, ib);
    unsigned char *buf = n ? calloc(1, n) : NULL;
    if (!buf)
        return fn_fail(err, FN_ENOMEM, "%s: out of memory", path);
    memcpy(buf, MAGIC, 8);
    wr32(buf + 8, ver), wr32(buf + 12, (uint32_t)d), wr32(buf + 16, (uint32_t)K);
    wr32(buf + 20, (uint32_t)c->names_bytes), wr32(buf + 24, (uint32_t)ib), wr32(buf + 28, (uint32_t)c->transform);
    memcpy(buf + HEADER, c->names_buf, c->names_bytes);
    memcpy(buf + HEADER + c->names_bytes, c->info, ib);
    unsigned char *p = buf + pad8(HEADER + c->names_bytes + ib);
    memcpy(p, c->mean, d * 8), p += d * 8; /* x86-64: little-endian IEEE doubles */
    memcpy(p, c->scale, d * 8), p += d * 8;
    memcpy(p, c->W, K * d * 8), p += K * d * 8;
    memcpy(p, c->b, K * 8), p += K * 8;
    if (ver >= 2) {
        memcpy(p, &c->dist_threshold, 8), p += 8;
        memcpy(p, c->centroids, K * d * 4), p += K * d * 4;
    }
    wr32(p, fn_crc32(0, buf, n - 4));
    int rc = fn_atomic_write_file(path, buf, n, 0, err); /* the library's one atomic writer (atomic.c) */
    free(buf);
    return rc;
}

static int all_finite(const double *v, size_t n)
{
    int bad = 0;
    for (size_t i = 0; i < n; i++)
        bad |= !(fabs(v[i]) <= 1.7976931348623157e308);
    return !bad;
}

static int parse(const unsigned char *b, size_t size, const char *name, fn_classifier **out, fn_error *err)
{
    if (size < 8 || memcmp(b, MAGIC, 8) != 0)
        return fn_fail(err, FN_EFORMAT, "%s: not a fruitnet classifier file (bad magic)", name);
    if (size < HEADER + 4)
        return fn_fail(err, FN_EFORMAT, "%s: truncated: %zu bytes, shorter than the %d-byte header", name, size,
                       HEADER + 4);
    uint32_t ver = rd32(b + 8), dim = rd32(b + 12), K = rd32(b + 16), nb = rd32(b + 20), ib = rd32(b + 24);
    if (ver != 1 && ver != VERSION)
        return fn_fail(err, FN_EUNSUPPORTED, "%s: classifier file version %u is not supported (expected 1 to %d)",
                       name, ver, VERSION);
    if (rd32(b + 28) > FN_CLS_SQRT)
        return fn_fail(err, FN_EUNSUPPORTED, "%s: unknown feature transform %u", name, rd32(b + 28));
    if (dim < 1 || dim > MAX_DIM || K < 2 || K > MAX_CLASSES || nb > MAX_TEXT || ib < 1 || ib > MAX_TEXT)
        return fn_fail(err, FN_EFORMAT, "%s: bad header (dim %u, classes %u, names %u bytes, info %u bytes)", name,
                       dim, K, nb, ib);
    size_t want = file_size(ver, dim, K, nb, ib);
    if (size < want)
        return fn_fail(err, FN_EFORMAT, "%s: truncated: %zu bytes, the header announces %zu", name, size, want);
    if (size > want)
        return fn_fail(err, FN_EFORMAT, "%s: %zu unexpected bytes after the end of the model", name, size - want);
    if (fn_crc32(0, b, size - 4) != rd32(b + size - 4))
        return fn_fail(err, FN_ECHECKSUM, "%s: checksum mismatch (corrupt file)", name);
    /* names: exactly K NUL-terminated, non-empty, UTF-8, unique */
    const char *names = (const char *)b + HEADER, *info = names + nb;
    const char **nv = malloc((size_t)K * sizeof(char *));
    if (!nv)
        return fn_fail(err, FN_ENOMEM, "%s: out of memory", name);
    uint32_t k = 0;
    size_t off = 0;
    int rc = FN_OK;
    while (off < nb && k < K) {
        const char *s = names + off, *z = memchr(s, 0, nb - off);
        if (!z)
            break;
        nv[k++] = s;
        off += (size_t)(z - s) + 1;
    }
    if (k != K || off != nb)
        rc = fn_fail(err, FN_EFORMAT, "%s: the class names block does not hold exactly %u names", name, K);
    for (uint32_t i = 0; !rc && i < K; i++)
        if (!*nv[i] || !fn_cls_valid_utf8(nv[i]))
            rc = fn_fail(err, FN_EFORMAT, "%s: class %u has an empty or non-UTF-8 name", name, i);
    for (uint32_t i = 0; !rc && i < K; i++) /* class names are sorted and unique when trained by fruitnet, but */
        for (uint32_t j = i + 1; !rc && j < K; j++) /* only uniqueness is required */
            if (!strcmp(nv[i], nv[j]))
                rc = fn_fail(err, FN_EFORMAT, "%s: class name \"%s\" appears twice", name, nv[i]);
    if (!rc && (memchr(info, 0, ib) != info + ib - 1 || !fn_cls_valid_utf8(info)))
        rc = fn_fail(err, FN_EFORMAT, "%s: the info text is not one NUL-terminated UTF-8 string", name);
    fn_classifier *c = rc ? NULL : fn_cls_alloc((int)dim, (int)K, nv, info);
    free(nv);
    if (rc)
        return rc;
    if (!c)
        return fn_fail(err, FN_ENOMEM, "%s: out of memory", name);
    c->transform = (int)rd32(b + 28);
    const unsigned char *p = b + pad8(HEADER + (size_t)nb + ib);
    for (const unsigned char *q = b + HEADER + nb + ib; q < p; q++)
        if (*q)
            rc = fn_fail(err, FN_EFORMAT, "%s: non-zero padding after the info text", name);
    memcpy(c->mean, p, (size_t)dim * 8), p += (size_t)dim * 8;
    memcpy(c->scale, p, (size_t)dim * 8), p += (size_t)dim * 8;
    memcpy(c->W, p, (size_t)K * dim * 8), p += (size_t)K * dim * 8;
    memcpy(c->b, p, (size_t)K * 8), p += (size_t)K * 8;
    if (!rc && ver >= 2) {
        memcpy(&c->dist_threshold, p, 8), p += 8;
        if (!(c->centroids = malloc((size_t)K * dim * 4)))
            rc = fn_fail(err, FN_ENOMEM, "%s: out of memory", name);
        else
            memcpy(c->centroids, p, (size_t)K * dim * 4);
        int bad = !(c->dist_threshold > 0 && c->dist_threshold <= 1.7976931348623157e308);
        for (size_t i = 0; !rc && c->centroids && i < (size_t)K * dim; i++)
            bad |= !(fabsf(c->centroids[i]) <= 3.402823466e38f);
        if (!rc && bad)
            rc = fn_fail(err, FN_EFORMAT, "%s: a NaN, infinite or non-positive number in the class means", name);
    }
    if (!rc && (!all_finite(c->mean, dim) || !all_finite(c->scale, dim) || !all_finite(c->W, (size_t)K * dim) ||
                !all_finite(c->b, K)))
        rc = fn_fail(err, FN_EFORMAT, "%s: a NaN or infinite number in the model", name);
    for (uint32_t j = 0; !rc && j < dim; j++)
        if (!(c->scale[j] > 0))
            rc = fn_fail(err, FN_EFORMAT, "%s: feature %u has a non-positive scale %g", name, j, c->scale[j]);
    if (rc) {
        fn_classifier_free(c);
        return rc;
    }
    *out = c;
    return FN_OK;
}

int fn_classifier_load_from_memory(const void *data, size_t size, const char *name, fn_classifier **out,
                                   fn_error *err)
{
    if (!out || (!data && size))
        return fn_fail(err, FN_EARG, "fn_classifier_load_from_memory: invalid arguments");
    *out = NULL;
    return parse(data, size, name ? name : "<memory>", out, err);
}

int fn_classifier_load(const char *path, fn_classifier **out, fn_error *err)
{
    if (!out || !path)
        return fn_fail(err, FN_EARG, "fn_classifier_load: invalid arguments");
    *out = NULL;
    unsigned char *b; /* the library's one reader of whole files: regular files only, never blocks on a FIFO */
    size_t n;
    int rc = fn_read_regular(path, file_size(VERSION, MAX_DIM, MAX_CLASSES, MAX_TEXT, MAX_TEXT), &b, &n, err);
    if (rc != FN_OK)
        return rc;
    rc = parse(b, n, path, out, err);
    free(b);
    return rc;
}

uint64_t fn_cls_fingerprint(const fn_classifier *c)
{
    uint64_t h = fn_fnv1a(&c->dim, sizeof c->dim, FN_FNV_INIT);
    h = fn_fnv1a(&c->nclasses, sizeof c->nclasses, h);
    h = fn_fnv1a(&c->transform, sizeof c->transform, h);
    h = fn_fnv1a(c->names_buf, c->names_bytes, h);
    h = fn_fnv1a(c->mean, (size_t)c->dim * sizeof(double), h);
    h = fn_fnv1a(c->scale, (size_t)c->dim * sizeof(double), h);
    h = fn_fnv1a(c->W, (size_t)c->nclasses * c->dim * sizeof(double), h);
    return fn_fnv1a(c->b, (size_t)c->nclasses * sizeof(double), h);
}
