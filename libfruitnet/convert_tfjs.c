/*
 * convert_tfjs.c — TF.js layers model (Keras ResNet50) -> .fnw weight file.
 *
 * Batch norm is folded here, once, in double precision: for a Conv2D whose
 * output feeds a BatchNormalization (gamma, beta, moving mean/variance, eps
 * from the layer config), s = gamma / sqrt(var + eps),
 *   kernel'[..][co] = kernel[..][co] * s[co]
 *   bias'[co]       = (bias[co] - mean[co]) * s[co] + beta[co]
 * Dense layers are copied as they are. A BatchNormalization that cannot be
 * folded into a Conv2D is refused (the engine has no BN layer).
 *
 * Input (model.json): {"format": "layers-model", "modelTopology": {...
 * "layers": [...]}, "weightsManifest": [{"paths": [shards], "weights":
 * [{"name", "shape", "dtype"}]}]}; each group's weights are the concatenation
 * of its shards in order, float32 only. Every read is bounds-checked and
 * lookups are sorted (O(n log n)): this code is fuzzed.
 */
#include "files.h"
#include "fnw.h"
#include "json.h"
#include "util.h"

#include <errno.h>
#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_JSON_BYTES ((size_t)64 << 20)
#define MAX_SHARD_BYTES ((size_t)1 << 31)
#define MAX_TOTAL_BYTES ((size_t)8 << 30)
#define MAX_LAYER_NAME 200 /* + "/kernel" stays under the format's 255 */

typedef struct src_tensor {
    const char *name;
    int ndim;
    int64_t shape[4];
    size_t count;
    size_t off; /* byte offset into the concatenated shards (ctx->blob) */
} src_tensor;

typedef struct out_tensor {
    char name[MAX_LAYER_NAME + 32];
    int dtype, ndim;
    uint64_t shape[4];
    void *data; /* owned */
    size_t nbytes;
} out_tensor;

typedef struct layer_ref {
    const char *key;  /* layer name, or (BN index) the name of the layer feeding it */
    const json *layer;
    struct layer_ref *self; /* BN index: the entry in the by-name index */
    int is_bn, used;
} layer_ref;

typedef struct conv_ctx {
    src_tensor *src;
    int nsrc, srccap;
    unsigned char *blob;
    size_t blob_len;
    out_tensor *out;
    int nout, cap;
    layer_ref *layers; /* sorted by name */
    int nlayers;
    layer_ref *bns; /* BatchNormalization layers sorted by their input's name */
    int nbns;
    double eps;     /* common BN epsilon; NAN when they differ, 0 when no BN */
    const char *path;
    fn_error *err;
} conv_ctx;

/* ------------------------------------------------------------------ files */

/* Append the whole file at `path` (at most `max` bytes) to *buf (length *len, capacity grown), read by the
 * library's one reader (files.c). The buffer stays NUL-terminated. */
static int read_append(const char *path, size_t max, unsigned char **buf, size_t *len, fn_error *err)
{
    unsigned char *f;
    size_t n, total;
    int rc = fn_read_regular(path, max, &f, &n, err);
    if (rc)
        return rc;
    if (!fn_add_size(*len, n, &total) || total > MAX_TOTAL_BYTES) {
        free(f);
        return fn_fail(err, FN_ELIMIT, "%s: %zu bytes is over the limit", path, n);
    }
    unsigned char *b = realloc(*buf, total + 1);
    if (!b) {
        free(f);
        return fn_fail(err, FN_ENOMEM, "%s: out of memory (%zu bytes)", path, total + 1);
    }
    memcpy(b + *len, f, n);
    free(f);
    *buf = b;
    *len = total;
    b[total] = 0;
    return FN_OK;
}

/* Read and parse a JSON file; errors name the file. */
static int read_json(const char *path, json **out, fn_error *err)
{
    unsigned char *buf = NULL;
    size_t len = 0;
    char why[160];
    int rc = read_append(path, MAX_JSON_BYTES, &buf, &len, err);
    if (rc) {
        free(buf);
        return rc;
    }
    *out = json_parse((const char *)buf, len, why, sizeof why);
    free(buf);
    if (!*out)
        return fn_fail(err, FN_EFORMAT, "%s: %s", path, why);
    return FN_OK;
}

/* ------------------------------------------------------------------ manifest */

static int cmp_src(const void *a, const void *b)
{
    return strcmp(((const src_tensor *)a)->name, ((const src_tensor *)b)->name);
}

static const src_tensor *find_src(const conv_ctx *c, const char *name)
{
    src_tensor key = {.name = name};
    return c->nsrc ? bsearch(&key, c->src, (size_t)c->nsrc, sizeof key, cmp_src) : NULL;
}

/* Read every group's shards into ctx->blob and describe its tensors in ctx->src (sorted by name). */
static int load_manifest(conv_ctx *c, const json *manifest, const char *dir)
{
    fn_error *err = c->err;
    if (!manifest || manifest->type != JSON_ARR || manifest->len == 0)
        return fn_fail(err, FN_EFORMAT, "%s: 'weightsManifest' missing, empty or not an array", c->path);
    int gi = 0;
    for (const json *g = manifest->child; g; g = g->next, gi++) {
        const json *paths = json_get(g, "paths"), *ws = json_get(g, "weights");
        if (!paths || paths->type != JSON_ARR || !ws || ws->type != JSON_ARR)
            return fn_fail(err, FN_EFORMAT, "%s: manifest group %d lacks a 'paths' or 'weights' array", c->path, gi);
        size_t gstart = c->blob_len;
        for (const json *p = paths->child; p; p = p->next) {
            if (p->type != JSON_STR || !p->str[0] || strstr(p->str, "..") || strchr(p->str, '/') ||
                strlen(p->str) > 255)
                return fn_fail(err, FN_EFORMAT, "%s: manifest group %d has a bad shard path (plain file names only)",
                               c->path, gi);
            char sp[4096];
            if (snprintf(sp, sizeof sp, "%s/%s", dir, p->str) >= (int)sizeof sp)
                return fn_fail(err, FN_ELIMIT, "%s: shard path too long", c->path);
            int rc = read_append(sp, MAX_SHARD_BYTES, &c->blob, &c->blob_len, err);
            if (rc)
                return rc;
        }
        size_t pos = gstart, gend = c->blob_len;
        for (const json *w = ws->child; w; w = w->next) {
            const json *name = json_get(w, "name"), *shape = json_get(w, "shape"), *dtype = json_get(w, "dtype");
            if (!name || name->type != JSON_STR || !name->str[0] || !shape || shape->type != JSON_ARR)
                return fn_fail(err, FN_EFORMAT, "%s: a weight of manifest group %d lacks a name or shape", c->path, gi);
            if (json_get(w, "quantization"))
                return fn_fail(err, FN_EUNSUPPORTED, "%s: weight '%s' is quantized; only float32 is supported",
                               c->path, name->str);
            if (!dtype || dtype->type != JSON_STR || strcmp(dtype->str, "float32"))
                return fn_fail(err, FN_EUNSUPPORTED, "%s: weight '%s' has dtype %s; only float32 is supported",
                               c->path, name->str, dtype && dtype->type == JSON_STR ? dtype->str : "(missing)");
            if (shape->len > 4)
                return fn_fail(err, FN_EUNSUPPORTED, "%s: weight '%s' has rank %zu > 4", c->path, name->str,
                               shape->len);
            if (c->nsrc == c->srccap) {
                if (c->nsrc >= FNW_MAX_TENSORS)
                    return fn_fail(err, FN_ELIMIT, "%s: more than %d weights", c->path, FNW_MAX_TENSORS);
                int cap = c->srccap ? 2 * c->srccap : 256;
                src_tensor *ns = realloc(c->src, (size_t)cap * sizeof *ns);
                if (!ns)
                    return fn_fail(err, FN_ENOMEM, "%s: out of memory", c->path);
                c->src = ns, c->srccap = cap;
            }
            src_tensor *t = &c->src[c->nsrc];
            memset(t, 0, sizeof *t);
            t->name = name->str;
            t->count = 1;
            for (const json *d = shape->child; d; d = d->next) {
                if (d->type != JSON_NUM || !(d->num >= 0 && d->num <= 1e12) || d->num != floor(d->num))
                    return fn_fail(err, FN_EFORMAT, "%s: weight '%s' has a bad dimension", c->path, name->str);
                t->shape[t->ndim++] = (int64_t)d->num;
                if (!fn_mul_size(t->count, (size_t)d->num, &t->count))
                    return fn_fail(err, FN_ELIMIT, "%s: weight '%s' is too large", c->path, name->str);
            }
            size_t bytes, end;
            if (!fn_mul_size(t->count, 4, &bytes) || !fn_add_size(pos, bytes, &end) || end > gend)
                return fn_fail(err, FN_EFORMAT, "%s: the shards of manifest group %d hold %zu bytes, too few for "
                               "weight '%s' (needs bytes %zu..%zu)", c->path, gi, gend - gstart, name->str,
                               pos - gstart, pos - gstart + (bytes ? bytes : 0));
            t->off = pos;
            pos = end;
            c->nsrc++;
        }
        if (pos != gend)
            return fn_fail(err, FN_EFORMAT, "%s: the shards of manifest group %d hold %zu bytes but its weights "
                           "need %zu", c->path, gi, gend - gstart, pos - gstart);
    }
    if (c->nsrc)
        qsort(c->src, (size_t)c->nsrc, sizeof *c->src, cmp_src);
    for (int i = 1; i < c->nsrc; i++)
        if (!strcmp(c->src[i - 1].name, c->src[i].name))
            return fn_fail(err, FN_EFORMAT, "%s: weight '%s' appears twice in the manifest", c->path, c->src[i].name);
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

static double getf(const conv_ctx *c, const src_tensor *t, size_t i)
{
    float v;
    memcpy(&v, c->blob + t->off + i * 4, 4);
    return v;
}

/* ------------------------------------------------------------------ layers */

static int cmp_ref(const void *a, const void *b)
{
    return strcmp(((const layer_ref *)a)->key, ((const layer_ref *)b)->key);
}

static layer_ref *find_ref(layer_ref *arr, int n, const char *key)
{
    layer_ref k = {.key = key};
    return n ? bsearch(&k, arr, (size_t)n, sizeof k, cmp_ref) : NULL;
}

static const char *str_of(const json *j) { return j && j->type == JSON_STR ? j->str : NULL; }

/* Name of the layer feeding `layer` (first input of its first inbound node), or NULL. */
static const char *inbound(const json *layer)
{
    return str_of(json_at(json_at(json_at(json_get(layer, "inbound_nodes"), 0), 0), 0));
}

/* Index the layers by name (refusing duplicates) and the BN layers by their input. */
static int index_layers(conv_ctx *c, const json *layers)
{
    if (layers->len > (size_t)FNW_MAX_TENSORS * 4)
        return fn_fail(c->err, FN_ELIMIT, "%s: too many layers (%zu)", c->path, layers->len);
    c->layers = calloc(layers->len + 1, sizeof *c->layers);
    c->bns = calloc(layers->len + 1, sizeof *c->bns);
    if (!c->layers || !c->bns)
        return fn_fail(c->err, FN_ENOMEM, "%s: out of memory", c->path);
    int i = 0;
    for (const json *L = layers->child; L; L = L->next, i++) {
        const char *cls = str_of(json_get(L, "class_name")), *nm = str_of(json_get(L, "name"));
        if (!cls || !nm || !nm[0])
            return fn_fail(c->err, FN_EFORMAT, "%s: layer %d lacks a class_name or name", c->path, i);
        if (strlen(nm) > MAX_LAYER_NAME)
            return fn_fail(c->err, FN_ELIMIT, "%s: layer %d has a name longer than %d bytes", c->path, i,
                           MAX_LAYER_NAME);
        c->layers[c->nlayers++] = (layer_ref){.key = nm, .layer = L, .is_bn = !strcmp(cls, "BatchNormalization")};
    }
    qsort(c->layers, (size_t)c->nlayers, sizeof *c->layers, cmp_ref);
    for (int k = 1; k < c->nlayers; k++)
        if (!strcmp(c->layers[k - 1].key, c->layers[k].key))
            return fn_fail(c->err, FN_EFORMAT, "%s: two layers are named '%s'", c->path, c->layers[k].key);
    for (int k = 0; k < c->nlayers; k++) {
        const char *in = c->layers[k].is_bn ? inbound(c->layers[k].layer) : NULL;
        if (in)
            c->bns[c->nbns++] = (layer_ref){.key = in, .layer = c->layers[k].layer, .self = &c->layers[k]};
    }
    if (c->nbns)
        qsort(c->bns, (size_t)c->nbns, sizeof *c->bns, cmp_ref);
    return FN_OK;
}

/* The BatchNormalization to fold into conv `name`: the one its output feeds (inbound_nodes),
 * else, for a BN without inputs, the Keras ResNet naming rule (conv1 -> bn_conv1, resXY.. -> bnXY..). */
static int find_bn(conv_ctx *c, const char *name, layer_ref **out)
{
    *out = NULL;
    layer_ref *r = find_ref(c->bns, c->nbns, name);
    if (r) {
        while (r > c->bns && !strcmp(r[-1].key, name))
            r--;
        if (r + 1 < c->bns + c->nbns && !strcmp(r[1].key, name))
            return fn_fail(c->err, FN_EUNSUPPORTED, "%s: Conv2D '%s' feeds two BatchNormalization layers ('%s', '%s')",
                           c->path, name, r[0].self->key, r[1].self->key);
        *out = r->self;
        return FN_OK;
    }
    char bn[MAX_LAYER_NAME + 8];
    if (!strncmp(name, "res", 3))
        snprintf(bn, sizeof bn, "bn%s", name + 3);
    else
        snprintf(bn, sizeof bn, "bn_%s", name);
    r = find_ref(c->layers, c->nlayers, bn);
    if (r && r->is_bn && !inbound(r->layer))
        *out = r;
    return FN_OK;
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

/* Epsilon of a BN layer (Keras default 1e-3 when absent); channel axis must be the last one. */
static int bn_config(conv_ctx *c, const char *bname, const json *cfg, double *eps, int *center, int *scale)
{
    const json *e = json_get(cfg, "epsilon"), *ax = json_get(cfg, "axis");
    *eps = 1e-3;
    if (e && (e->type != JSON_NUM || !(e->num > 0) || !isfinite(e->num)))
        return fn_fail(c->err, FN_EFORMAT, "%s: BatchNormalization '%s' has a bad epsilon", c->path, bname);
    if (e)
        *eps = e->num;
    if (ax && ax->type == JSON_ARR && ax->len == 1)
        ax = ax->child;
    if (ax && (ax->type != JSON_NUM || (ax->num != 3 && ax->num != -1)))
        return fn_fail(c->err, FN_EUNSUPPORTED, "%s: BatchNormalization '%s' is not over the channel axis (3 or -1)",
                       c->path, bname);
    const json *ce = json_get(cfg, "center"), *sc = json_get(cfg, "scale");
    *center = !(ce && ce->type == JSON_BOOL && ce->num == 0);
    *scale = !(sc && sc->type == JSON_BOOL && sc->num == 0);
    return FN_OK;
}

/* One Conv2D (BN folded) or Dense layer -> "<name>/kernel" and "<name>/bias". */
static int convert_layer(conv_ctx *c, const char *nm, const json *cfg, int is_conv, double *s, double *bias)
{
    char key[MAX_LAYER_NAME + 32];
    int rc;
    const src_tensor *k, *b = NULL;
    const json *ub = json_get(cfg, "use_bias");
    if (ub && ub->type != JSON_BOOL)
        return fn_fail(c->err, FN_EFORMAT, "%s: layer '%s': use_bias is not a boolean", c->path, nm);
    int use_bias = !ub || ub->num != 0;
    snprintf(key, sizeof key, "%s/kernel", nm);
    if ((rc = want(c, key, is_conv ? 4 : 2, &k)))
        return rc;
    size_t cout = (size_t)k->shape[k->ndim - 1];
    if (k->count == 0)
        return fn_fail(c->err, FN_EFORMAT, "%s: weight '%s' is empty", c->path, key);
    if (use_bias) {
        snprintf(key, sizeof key, "%s/bias", nm);
        if ((rc = want(c, key, 1, &b)))
            return rc;
        if ((size_t)b->shape[0] != cout)
            return fn_fail(c->err, FN_EFORMAT, "%s: '%s' has %lld values for %zu outputs", c->path, key,
                           (long long)b->shape[0], cout);
    }
    for (size_t o = 0; o < cout; o++) {
        s[o] = 1.0;
        bias[o] = b ? getf(c, b, o) : 0.0;
    }
    layer_ref *bn = NULL;
    if (is_conv && (rc = find_bn(c, nm, &bn)))
        return rc;
    if (bn) {
        const char *bname = bn->key;
        double eps;
        int center = 1, scale = 1;
        if ((rc = bn_config(c, bname, json_get(bn->layer, "config"), &eps, &center, &scale)))
            return rc;
        const src_tensor *g = NULL, *be = NULL, *mu, *var;
        const char *what[4] = {"gamma", "beta", "moving_mean", "moving_variance"};
        const src_tensor **dst[4] = {&g, &be, &mu, &var};
        for (int q = 0; q < 4; q++) {
            if ((q == 0 && !scale) || (q == 1 && !center))
                continue;
            snprintf(key, sizeof key, "%s/%s", bname, what[q]);
            if ((rc = want(c, key, 1, dst[q])))
                return rc;
            if ((size_t)(*dst[q])->shape[0] != cout)
                return fn_fail(c->err, FN_EFORMAT, "%s: '%s' has %lld values but Conv2D '%s' has %zu outputs", c->path,
                               key, (long long)(*dst[q])->shape[0], nm, cout);
        }
        for (size_t o = 0; o < cout; o++) {
            double v = getf(c, var, o) + eps;
            if (!(v > 0) || !isfinite(v))
                return fn_fail(c->err, FN_ENUMERIC, "%s: '%s/moving_variance'[%zu] + eps is not positive", c->path,
                               bname, o);
            s[o] = (g ? getf(c, g, o) : 1.0) / sqrt(v);
            bias[o] = (bias[o] - getf(c, mu, o)) * s[o] + (be ? getf(c, be, o) : 0.0);
        }
        if (c->eps == 0)
            c->eps = eps;
        else if (c->eps != eps)
            c->eps = NAN;
        bn->used = 1;
    }
    uint64_t shp[4];
    for (int d = 0; d < k->ndim; d++)
        shp[d] = (uint64_t)k->shape[d];
    snprintf(key, sizeof key, "%s/kernel", nm);
    out_tensor *ok = new_out(c, key, FN_DTYPE_F32, k->ndim, shp, k->count * 4);
    if (!ok)
        return fn_fail(c->err, FN_ENOMEM, "%s: out of memory", c->path);
    float *kd = ok->data;
    for (size_t i = 0, o = 0; i < k->count; i++) {
        kd[i] = (float)(getf(c, k, i) * s[o]);
        if (!isfinite(kd[i]))
            return fn_fail(c->err, FN_ENUMERIC, "%s: '%s' has a NaN/Inf value after folding", c->path, key);
        if (++o == cout)
            o = 0;
    }
    snprintf(key, sizeof key, "%s/bias", nm);
    uint64_t bs = cout;
    out_tensor *ob = new_out(c, key, FN_DTYPE_F32, 1, &bs, cout * 4);
    if (!ob)
        return fn_fail(c->err, FN_ENOMEM, "%s: out of memory", c->path);
    for (size_t o = 0; o < cout; o++) {
        ((float *)ob->data)[o] = (float)bias[o];
        if (!isfinite(((float *)ob->data)[o]))
            return fn_fail(c->err, FN_ENUMERIC, "%s: '%s' has a NaN/Inf value after folding", c->path, key);
    }
    return FN_OK;
}

static int convert_layers(conv_ctx *c, const json *layers)
{
    int rc, n = 0;
    if ((rc = index_layers(c, layers)))
        return rc;
    for (const json *L = layers->child; L; L = L->next) {
        const char *cls = str_of(json_get(L, "class_name")), *nm = str_of(json_get(L, "name"));
        int is_conv = !strcmp(cls, "Conv2D"), is_dense = !strcmp(cls, "Dense");
        if (!is_conv && !is_dense)
            continue;
        /* channel count: the kernel's last dimension (validated in convert_layer) */
        char key[MAX_LAYER_NAME + 16];
        snprintf(key, sizeof key, "%s/kernel", nm);
        const src_tensor *k = find_src(c, key);
        size_t cout = k && k->ndim ? (size_t)k->shape[k->ndim - 1] : 1;
        double *s = calloc(cout ? cout : 1, sizeof(double)), *bias = calloc(cout ? cout : 1, sizeof(double));
        rc = (s && bias) ? convert_layer(c, nm, json_get(L, "config"), is_conv, s, bias)
                         : fn_fail(c->err, FN_ENOMEM, "%s: out of memory", c->path);
        free(s);
        free(bias);
        if (rc)
            return rc;
        n++;
    }
    if (n == 0)
        return fn_fail(c->err, FN_EFORMAT, "%s: no Conv2D or Dense layers found", c->path);
    for (int k = 0; k < c->nlayers; k++)
        if (c->layers[k].is_bn && !c->layers[k].used)
            return fn_fail(c->err, FN_EUNSUPPORTED,
                           "%s: BatchNormalization '%s' does not directly follow a Conv2D; it cannot be folded",
                           c->path, c->layers[k].key);
    return FN_OK;
}

/* ------------------------------------------------------------------ labels, meta */

static int add_labels(conv_ctx *c, const char *labels_json)
{
    json *j = NULL;
    int rc = read_json(labels_json, &j, c->err);
    if (rc)
        return rc;
    if (j->type != JSON_OBJ || j->len != FN_NUM_CLASSES) {
        rc = fn_fail(c->err, FN_EFORMAT, "%s: expected an object with exactly %d labels (keys \"0\"..\"%d\"), got %s%zu",
                     labels_json, FN_NUM_CLASSES, FN_NUM_CLASSES - 1, j->type == JSON_OBJ ? "" : "a non-object of ",
                     j->len);
        goto done;
    }
    const char *lab[FN_NUM_CLASSES] = {0};
    size_t total = 0;
    for (const json *m = j->child; m; m = m->next) {
        char *end;
        errno = 0;
        long i = strtol(m->key, &end, 10);
        char canon[16];
        snprintf(canon, sizeof canon, "%ld", i);
        if (errno || *end || i < 0 || i >= FN_NUM_CLASSES || strcmp(canon, m->key)) {
            rc = fn_fail(c->err, FN_EFORMAT, "%s: unexpected key \"%.40s\" (keys must be \"0\"..\"%d\")", labels_json,
                         m->key, FN_NUM_CLASSES - 1);
            goto done;
        }
        if (lab[i]) {
            rc = fn_fail(c->err, FN_EFORMAT, "%s: label \"%ld\" appears twice", labels_json, i);
            goto done;
        }
        if (m->type != JSON_STR || !m->str[0] || strpbrk(m->str, "\n\r")) {
            rc = fn_fail(c->err, FN_EFORMAT, "%s: label \"%ld\" is not a non-empty one-line string", labels_json, i);
            goto done;
        }
        lab[i] = m->str;
        total += strlen(m->str) + 1;
    }
    uint64_t n = total;
    out_tensor *t = new_out(c, "labels", FN_DTYPE_U8, 1, &n, total);
    if (!t) {
        rc = fn_fail(c->err, FN_ENOMEM, "%s: out of memory", labels_json);
        goto done;
    }
    char *p = t->data;
    for (int i = 0; i < FN_NUM_CLASSES; i++) {
        size_t l = strlen(lab[i]);
        memcpy(p, lab[i], l);
        p[l] = '\n';
        p += l + 1;
    }
done:
    json_free(j);
    return rc;
}

/* A printable one-line value for meta (no control characters), else NULL. */
static const char *meta_value(const char *v)
{
    if (!v || !v[0] || strlen(v) > 200)
        return NULL;
    for (const unsigned char *p = (const unsigned char *)v; *p; p++)
        if (*p < 0x20 || *p == 0x7f)
            return NULL;
    return v;
}

/* "npm:<name>@<version>" from the package.json one level above the model's folder, if any. */
static void package_source(const char *dir, char *out, size_t n)
{
    char pj[4200];
    json *j = NULL;
    snprintf(out, n, "unknown");
    if (snprintf(pj, sizeof pj, "%s/../package.json", dir) >= (int)sizeof pj || access(pj, R_OK) != 0)
        return;
    if (read_json(pj, &j, NULL) == FN_OK) {
        const char *name = meta_value(str_of(json_get(j, "name"))), *ver = meta_value(str_of(json_get(j, "version")));
        if (name && ver)
            snprintf(out, n, "npm:%s@%s", name, ver);
    }
    json_free(j);
}

static int add_meta(conv_ctx *c, const json *root, const char *dir, const char *integrity)
{
    char src[420], keras[208] = "unknown", eps[40], meta[1024];
    package_source(dir, src, sizeof src);
    const char *kv = meta_value(str_of(json_get(json_get(root, "modelTopology"), "keras_version")));
    if (kv) {
        snprintf(keras, sizeof keras, "%s", kv);
        keras[strcspn(keras, "-")] = 0; /* "2.2.4-tf" -> "2.2.4" */
    }
    if (c->eps == 0)
        snprintf(eps, sizeof eps, "none");
    else if (isnan(c->eps))
        snprintf(eps, sizeof eps, "mixed");
    else
        snprintf(eps, sizeof eps, "%.17g", c->eps);
    if (!isnan(c->eps) && c->eps != 0 && strtod(eps, NULL) == c->eps) { /* shortest round-trip form */
        for (int prec = 1; prec <= 17; prec++) {
            snprintf(eps, sizeof eps, "%.*g", prec, c->eps);
            if (strtod(eps, NULL) == c->eps)
                break;
        }
    }
    int ml = snprintf(meta, sizeof meta,
                      "format=fnw1\nsource=%s\nintegrity=%s\nkeras=%s\nbn_eps=%s\nbn=folded\nlayout=NHWC/HWIO\n", src,
                      integrity ? integrity : "unknown", keras, eps);
    if (ml < 0 || ml >= (int)sizeof meta)
        return fn_fail(c->err, FN_ELIMIT, "%s: metadata too long", c->path);
    uint64_t n = (uint64_t)ml;
    out_tensor *mt = new_out(c, "meta", FN_DTYPE_U8, 1, &n, (size_t)ml);
    if (!mt)
        return fn_fail(c->err, FN_ENOMEM, "%s: out of memory", c->path);
    memcpy(mt->data, meta, (size_t)ml);
    return FN_OK;
}

/* ------------------------------------------------------------------ writer */

/* The tensors, in order, to fnw_write (the one .fnw writer, fnw_write.c). */
static int write_fnw(conv_ctx *c, const char *out_path)
{
    fnw_tensor *t = calloc((size_t)(c->nout ? c->nout : 1), sizeof *t);
    if (!t)
        return fn_fail(c->err, FN_ENOMEM, "%s: out of memory", out_path);
    for (int i = 0; i < c->nout; i++) {
        t[i].name = c->out[i].name, t[i].dtype = c->out[i].dtype, t[i].ndim = c->out[i].ndim;
        memcpy(t[i].shape, c->out[i].shape, sizeof t[i].shape);
        t[i].data = c->out[i].data, t[i].nbytes = c->out[i].nbytes;
    }
    int rc = fnw_write(t, c->nout, out_path, c->err);
    free(t);
    return rc;
}

/* ------------------------------------------------------------------ entry point */

int fn_convert_tfjs(const char *model_json, const char *labels_json, const char *integrity, const char *out_path,
                    fn_error *err)
{
    if (!model_json || !labels_json || !out_path || !out_path[0])
        return fn_fail(err, FN_EARG, "fn_convert_tfjs: model, labels and output paths are required");
    if (integrity && !meta_value(integrity))
        return fn_fail(err, FN_EARG, "fn_convert_tfjs: integrity must be a one-line string of 1..200 characters");
    conv_ctx c = {.path = model_json, .err = err};
    char dir[4096];
    json *j = NULL;
    int rc = read_json(model_json, &j, err);
    if (rc)
        return rc;
    const json *fmt = json_get(j, "format");
    if (j->type != JSON_OBJ || !fmt || fmt->type != JSON_STR || strcmp(fmt->str, "layers-model")) {
        rc = fn_fail(err, FN_EUNSUPPORTED, "%s: not a TF.js layers model (\"format\" is not \"layers-model\")",
                     model_json);
        goto done;
    }
    if (snprintf(dir, sizeof dir, "%s", model_json) >= (int)sizeof dir) {
        rc = fn_fail(err, FN_ELIMIT, "%s: path too long", model_json);
        goto done;
    }
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = 0;
    else
        snprintf(dir, sizeof dir, ".");
    const json *topo = json_get(j, "modelTopology");
    const json *mc = json_get(topo, "model_config");
    const json *layers = json_get(json_get(mc ? mc : topo, "config"), "layers");
    if (!layers || layers->type != JSON_ARR) {
        rc = fn_fail(err, FN_EFORMAT, "%s: modelTopology has no layer list", model_json);
        goto done;
    }
    if ((rc = load_manifest(&c, json_get(j, "weightsManifest"), dir)) || (rc = convert_layers(&c, layers)) ||
        (rc = add_labels(&c, labels_json)) || (rc = add_meta(&c, j, dir, integrity)))
        goto done;
    rc = write_fnw(&c, out_path);
done:
    for (int i = 0; i < c.nout; i++)
        free(c.out[i].data);
    free(c.out);
    free(c.src);
    free(c.blob);
    free(c.layers);
    free(c.bns);
    json_free(j);
    return rc;
}
