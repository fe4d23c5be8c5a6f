/*
 * model.c — Keras ResNet50 (v1) as a list of layers you can read.
 *
 *   conv1 7x7/2 pad 3 (+folded BN) + ReLU
 *   maxpool 3x3/2 pad 1
 *   stages 2..5: 3, 4, 6, 3 bottleneck blocks (filters f, f, 4f with f = 64..512);
 *     branch2a 1x1 (stride 2 in the first block of stages 3..5) + ReLU
 *     branch2b 3x3 pad 1 + ReLU
 *     branch2c 1x1, + shortcut (identity, or branch1 1x1 projection in each
 *     stage's first block, same stride as branch2a), + ReLU
 *     (branch1 and branch2a, on the same input, run as one GEMM: add_conv_pair)
 *   avg_pool (global average) -> 2048-d features
 *   fc1000 + softmax (optional classifier)
 *
 * Batch norm was folded into the conv weights by the converter
 * (convert_tfjs.c), so every conv here is conv + bias.
 *
 * Activations live in four arena slots sized at open time for max_batch:
 * X/Y (block input/output) and T1/T2 (inside a block). A projection block
 * goes from one of X/Y to the other: its shortcut is written into the
 * output slot and branch2c adds itself to it in place. An identity block
 * adds branch2c to its input in place. No fifth slot is needed.
 */
#include "conv.h"
#include "layers.h"
#include "model_hook.h"
#include "threadpool.h"
#include "util.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum { SLOT_X, SLOT_Y, SLOT_T1, SLOT_T2, NSLOTS, SLOT_INPUT = -1, SLOT_NONE = -2 };
enum { L_CONV, L_MAXPOOL, L_AVGPOOL };

typedef struct layer {
    int kind;
    char name[32];
    int in, out, res; /* slots; res = residual slot or SLOT_NONE */
    int relu;
    int h, w, cin;    /* input shape */
    int oh, ow, cout; /* output shape */
    int k, stride, pad;
    fn_conv conv;
    const float *wk, *wb; /* the weights to pack (mapped from the file), and the Winograd kinds to make */
    int wino;
    int int8;        /* int8 precision: this layer runs on AVX512-VNNI or AMX-INT8 (int8_chosen) */
    int bf16;        /* this layer runs on bf16 (fn_conv_enable_bf16): see add_conv */
    float act_scale; /* its input's calibrated scale (the file's <name>/act_scale), 0 when absent */
    int split, out2, relu2; /* a merged pair (add_conv_pair): channels from split go to slot out2 */
    float *wcat;            /* its weights then biases side by side (owned until packed) */
    char part[2][32];       /* a merged pair's two Keras layer names (what fn_model_observe reports) */
} layer;

#define MAX_LAYERS 64

struct fn_model {
    fn_weights *weights;
    fn_isa isa;
    fn_precision precision;
    int threads, max_batch;
    fn_pool *pool;
    int nlayers;
    layer layers[MAX_LAYERS];
    fn_layer_stats stats[MAX_LAYERS];
    int profile;
    int head, head_batch; /* layers [0, head) run head_batch images at a time (run_batch) */
    float *slot[NSLOTS];
    float *scratch;
    const float *fc_w, *fc_b; /* NULL unless classifier */
    char *label_text;
    const char *labels[FN_NUM_CLASSES];
    fn_conv_observer observe; /* fn_model_observe (calibration), else NULL */
    void *observe_ctx;
};

/* the convs whose input is post-ReLU (every one but conv1, cin 3): those with an int8 activation scale */
static int int8_layer(int cin) { return cin % 4 == 0 && cin >= 64; }

/* int8: the convs whose input is post-ReLU (int8_layer), direct only, at the file's scale, but those that
 * read the residual stream (the 4 projection shortcuts, branch1, and every block's branch2a: block outputs,
 * whose range is wide and whose channels differ most) and stage 2 (the first, least abstract features):
 * int8 is kept to the 2b and 2c layers of stages 3-5 (26 of 53 convs), the others running bf16 on AMX-BF16,
 * else float32. Measured on the 2,880 sample images (README "Precision"): ImageNet top-1 equal to float32's on
 * 95.97% with only branch1 kept out, 97.12% with every branch2a too, 97.81% with stage 2 too. */
static int int8_chosen(const char *name)
{
    return !strstr(name, "_branch1") && !strstr(name, "_branch2a") && strncmp(name, "res2", 4) != 0;
}

/* ---------------------------------------------------------------- building */

static int add_conv(fn_model *m, const char *name, int in, int out, int res, int relu, int h, int w, int cin,
                    int k, int stride, int pad, fn_error *err)
{
    char key[64];
    if (m->nlayers >= MAX_LAYERS)
        return fn_fail(err, FN_EARG, "too many layers");
    layer *L = &m->layers[m->nlayers];
    memset(L, 0, sizeof *L);
    snprintf(L->name, sizeof L->name, "%s", name);
    snprintf(key, sizeof key, "%s/kernel", name);
    const fn_wtensor *wk = fn_weights_find(m->weights, key);
    snprintf(key, sizeof key, "%s/bias", name);
    const fn_wtensor *wb = fn_weights_find(m->weights, key);
    if (!wk || !wb)
        return fn_fail(err, FN_EFORMAT, "weights: tensor %s/%s missing", name, wk ? "bias" : "kernel");
    if (wk->dtype != FN_DTYPE_F32 || wk->ndim != 4 || wk->shape[0] != k || wk->shape[1] != k ||
        wk->shape[2] != cin || wb->dtype != FN_DTYPE_F32 || wb->ndim != 1 || wb->shape[0] != wk->shape[3])
        return fn_fail(err, FN_EFORMAT, "weights: %s has an unexpected shape or type (expected [%d,%d,%d,cout])",
                       name, k, k, cin);
    int cout = (int)wk->shape[3];
    /* which Winograd weights: fn_conv picks per batch, so only those it would pick up to max_batch on the
     * model's threads (at batch 1, skipping the F(4x4) weights of the 7x7 maps saves most of the open) */
    L->wino = fn_conv_wino_needed(k, k, stride, pad, h, w, fn_conv_wino_kinds(k, h), m->isa, m->max_batch,
                                  m->threads);
    L->int8 = m->precision == FN_PRECISION_INT8 && int8_chosen(name) && int8_layer(cin);
    /* bf16: every conv but conv1 (cin 3: its taps are 7 pixels x 3 channels, odd); in int8, the convs kept
     * out of int8 (int8_chosen) where AMX-BF16 runs them (1.6-4.9x float32 there, with bf16's accuracy; on
     * AVX512_BF16 alone bf16 is slower than float32, so they stay float32) */
    L->bf16 = m->precision == FN_PRECISION_BF16 ? cin % 2 == 0 && cin >= 16
                                                : m->precision == FN_PRECISION_INT8 && int8_layer(cin) && !L->int8 &&
                                                      fn_amx_bf16();
    /* bf16 on AMX-BF16 tiles: the 3x3 convs of stages 4 and 5 (14- and 7-pixel maps) direct on the tiles
     * rather than float32 Winograd (bf16 at batch 32 98 -> 121 img/s; no F(4x4) weights to make, 9.4 and
     * 37.7 MB a layer). The earlier stages keep Winograd: direct bf16 there costs ImageNet top-1 agreement
     * with float32 on the 2,880 sample images (99.17% with Winograd on every stage, 99.13% direct on stages 4
     * and 5, 99.03% on 3-5, 98.85% on all: the gate is 99%). */
    if (m->precision == FN_PRECISION_BF16 && L->bf16 && k == 3 && h <= 14 && fn_amx_bf16())
        L->wino = 0;
    if (L->int8) {
        snprintf(key, sizeof key, "%s/act_scale", name);
        const fn_wtensor *as = fn_weights_find(m->weights, key);
        L->wino = 0;
        L->act_scale = as && as->dtype == FN_DTYPE_F32 && as->count == 1 ? *(const float *)as->data : 0;
    }
    L->wk = wk->data, L->wb = wb->data; /* packed by pack_layers, once all are known */
    L->kind = L_CONV;
    L->in = in, L->out = out, L->res = res, L->relu = relu;
    L->h = h, L->w = w, L->cin = cin;
    L->k = k, L->stride = stride, L->pad = pad;
    L->oh = fn_conv_out_dim(h, k, stride, pad);
    L->ow = fn_conv_out_dim(w, k, stride, pad);
    L->cout = cout;
    m->nlayers++;
    return FN_OK;
}

/* Two 1x1 layers on the same input and stride (a projection block's branch1 and branch2a) as one layer: one
 * GEMM with their output channels side by side, each part written to its own slot with its own ReLU
 * (fn_conv_forward_split: the same results, the input read once). Two layers when they cannot merge. */
static int add_conv_pair(fn_model *m, const char *name1, const char *name2, int in, int out1, int relu1, int out2,
                         int relu2, int h, int w, int cin, int stride, fn_error *err)
{
    int rc;
    if ((rc = add_conv(m, name1, in, out1, SLOT_NONE, relu1, h, w, cin, 1, stride, 0, err)) ||
        (rc = add_conv(m, name2, in, out2, SLOT_NONE, relu2, h, w, cin, 1, stride, 0, err)))
        return rc;
    layer *A = &m->layers[m->nlayers - 2], *B = A + 1;
    const size_t c1 = (size_t)A->cout, c2 = (size_t)B->cout, ct = c1 + c2;
    /* two of different precisions stay two layers (none today: int8 keeps branch1 and branch2a both out) */
    if (A->int8 != B->int8 || A->bf16 != B->bf16 || !fn_conv_split_ok(1, 1, stride, 0, A->cout, A->cout + B->cout))
        return FN_OK;
    float *wc = malloc(((size_t)cin + 1) * ct * sizeof(float));
    if (!wc)
        return fn_fail(err, FN_ENOMEM, "out of memory merging %s and %s", name1, name2);
    for (size_t k = 0; k <= (size_t)cin; k++) { /* rows of the kernel [cin][cout], then the bias row */
        memcpy(wc + k * ct, k < (size_t)cin ? A->wk + k * c1 : A->wb, c1 * sizeof(float));
        memcpy(wc + k * ct + c1, k < (size_t)cin ? B->wk + k * c2 : B->wb, c2 * sizeof(float));
    }
    snprintf(A->part[0], sizeof A->part[0], "%s", name1);
    snprintf(A->part[1], sizeof A->part[1], "%s", name2);
    snprintf(A->name, sizeof A->name, "%.24s+%.2s", name1, name2 + strlen(name2) - 2);
    A->wcat = wc, A->wk = wc, A->wb = wc + (size_t)cin * ct;
    A->split = A->cout, A->cout = (int)ct, A->out2 = out2, A->relu2 = relu2;
    m->nlayers--;
    return FN_OK;
}

static void add_pool(fn_model *m, int kind, const char *name, int in, int out, int h, int w, int c, int k,
                     int stride, int pad)
{
    layer *L = &m->layers[m->nlayers++];
    memset(L, 0, sizeof *L);
    snprintf(L->name, sizeof L->name, "%s", name);
    L->kind = kind;
    L->in = in, L->out = out, L->res = SLOT_NONE;
    L->h = h, L->w = w, L->cin = c, L->cout = c;
    L->k = k, L->stride = stride, L->pad = pad;
    L->oh = kind == L_MAXPOOL ? fn_conv_out_dim(h, k, stride, pad) : 1;
    L->ow = kind == L_MAXPOOL ? fn_conv_out_dim(w, k, stride, pad) : 1;
}

/* One bottleneck block; x is the slot holding the input. A projection block's result goes to the other of
 * X/Y (branch1 there, then branch2c adds itself to it); an identity block's replaces its input in place
 * (branch2c reads each residual element before it writes it), so each of X and Y is sized for the largest
 * tensor of its own stages: Y for conv1 and stage 2, X for stage 3. */
static int add_block(fn_model *m, int stage, char blk, int *x, int *h, int *w, int *c, int f, int stride,
                     int project, fn_error *err)
{
    char n[32];
    int out = !project ? *x : *x == SLOT_X ? SLOT_Y : SLOT_X, rc;
    int oh = fn_conv_out_dim(*h, 1, stride, 0), ow = fn_conv_out_dim(*w, 1, stride, 0);
#define NAME(br) (snprintf(n, sizeof n, "res%d%c_branch%s", stage, blk, br), n)
    char n1[32];
    snprintf(n1, sizeof n1, "res%d%c_branch1", stage, blk);
    if (project ? (rc = add_conv_pair(m, n1, NAME("2a"), *x, out, 0, SLOT_T1, 1, *h, *w, *c, stride, err))
                : (rc = add_conv(m, NAME("2a"), *x, SLOT_T1, SLOT_NONE, 1, *h, *w, *c, 1, stride, 0, err)))
        return rc;
    if ((rc = add_conv(m, NAME("2b"), SLOT_T1, SLOT_T2, SLOT_NONE, 1, oh, ow, f, 3, 1, 1, err)) ||
        (rc = add_conv(m, NAME("2c"), SLOT_T2, out, out, 1, oh, ow, f, 1, 1, 0, err)))
        return rc;
#undef NAME
    *x = out, *h = oh, *w = ow, *c = 4 * f;
    return FN_OK;
}

static int build_resnet50(fn_model *m, fn_error *err)
{
    static const int blocks[4] = {3, 4, 6, 3};
    int h = FN_INPUT_SIZE, w = FN_INPUT_SIZE, c = 3, x = SLOT_X, rc;
    if ((rc = add_conv(m, "conv1", SLOT_INPUT, SLOT_Y, SLOT_NONE, 1, h, w, c, 7, 2, 3, err)))
        return rc;
    h = w = 112, c = 64;
    add_pool(m, L_MAXPOOL, "max_pooling2d", SLOT_Y, SLOT_X, h, w, c, 3, 2, 1);
    h = w = 56;
    for (int s = 0; s < 4; s++)
        for (int b = 0; b < blocks[s]; b++) {
            if (s == 1 && b == 0)
                m->head = m->nlayers; /* conv1, the max-pool and stage 2: run_batch */
            if ((rc = add_block(m, s + 2, (char)('a' + b), &x, &h, &w, &c, 64 << s, (s > 0 && b == 0) ? 2 : 1,
                                b == 0, err)))
                return rc;
        }
    add_pool(m, L_AVGPOOL, "avg_pool", x, SLOT_NONE, h, w, c, h, 1, 0);
    return FN_OK;
}

/* ---------------------------------------------------------------- packing */

/* Pack every conv layer's weights (fn_conv_init, + bf16), the layers shared among the pool's threads,
 * largest (last) first; the first failing layer in model order names the error. */
typedef struct pack_job {
    fn_model *m;
    _Atomic int next;
    int rc[MAX_LAYERS];
    fn_error err[MAX_LAYERS];
} pack_job;

static void pack_task(void *arg, int tid, int nth)
{
    pack_job *j = arg;
    fn_model *m = j->m;
    for (;;) {
        int i = m->nlayers - 1 - atomic_fetch_add(&j->next, 1);
        if (i < 0)
            return;
        layer *L = &m->layers[i];
        if (L->kind != L_CONV)
            continue;
        int rc = fn_conv_init(&L->conv, L->k, L->k, L->stride, L->pad, L->cin, L->cout, L->wk, L->wb, L->wino,
                              m->isa, &j->err[i]);
        if (rc == FN_OK && L->bf16)
            rc = fn_conv_enable_bf16(&L->conv, L->wk, &j->err[i]);
        if (rc == FN_OK && L->int8)
            rc = fn_conv_enable_int8(&L->conv, L->wk, L->act_scale, &j->err[i]);
        j->rc[i] = rc;
    }
}

static int pack_layers(fn_model *m, fn_error *err)
{
    pack_job *j = calloc(1, sizeof *j);
    if (!j)
        return fn_fail(err, FN_ENOMEM, "out of memory");
    j->m = m;
    atomic_init(&j->next, 0);
    fn_pool_run(m->pool, pack_task, j);
    int rc = FN_OK;
    for (int i = 0; i < m->nlayers && rc == FN_OK; i++)
        if (j->rc[i] != FN_OK) {
            rc = j->rc[i];
            if (err)
                *err = j->err[i];
        }
    free(j);
    for (int i = 0; i < m->nlayers; i++) /* merged weights: only their packed copy is used from here */
        if (m->layers[i].wcat) {
            free(m->layers[i].wcat);
            m->layers[i].wcat = NULL;
            m->layers[i].wk = m->layers[i].wb = NULL;
        }
    return rc;
}

/* ---------------------------------------------------------------- open/close */

void fn_model_options_default(fn_model_options *opt)
{
    memset(opt, 0, sizeof *opt);
    opt->max_batch = 8;
    opt->isa = FN_ISA_AUTO;
}

static int load_labels(fn_model *m, fn_error *err)
{
    const fn_wtensor *t = fn_weights_find(m->weights, "labels");
    if (!t || t->dtype != FN_DTYPE_U8)
        return fn_fail(err, FN_EFORMAT, "weights: 'labels' tensor missing");
    m->label_text = malloc((size_t)t->count + 1);
    if (!m->label_text)
        return fn_fail(err, FN_ENOMEM, "out of memory");
    memcpy(m->label_text, t->data, (size_t)t->count);
    m->label_text[t->count] = 0;
    char *p = m->label_text;
    for (int i = 0; i < FN_NUM_CLASSES; i++) {
        char *nl = strchr(p, '\n');
        if (!nl)
            return fn_fail(err, FN_EFORMAT, "weights: 'labels' has %d labels, expected %d", i, FN_NUM_CLASSES);
        *nl = 0;
        m->labels[i] = p;
        p = nl + 1;
    }
    return FN_OK;
}

int fn_model_open(const char *weights_path, const fn_model_options *opt_in, fn_model **out, fn_error *err)
{
    fn_model_options opt;
    int rc;
    if (!out)
        return fn_fail(err, FN_EARG, "fn_model_open: out is NULL");
    *out = NULL;
    if (opt_in)
        opt = *opt_in;
    else
        fn_model_options_default(&opt);
    if (opt.threads < 0 || opt.threads > 1024 || opt.max_batch < 0 || opt.max_batch > 4096)
        return fn_fail(err, FN_EARG, "fn_model_open: threads must be 0..1024 and max_batch 0..4096");
    fn_model *m = calloc(1, sizeof *m);
    if (!m)
        return fn_fail(err, FN_ENOMEM, "out of memory");
    if ((rc = fn_isa_resolve(opt.isa, &m->isa, err)) != FN_OK)
        goto fail;
    if ((rc = fn_precision_check(opt.precision, err)) != FN_OK)
        goto fail;
    if ((opt.precision == FN_PRECISION_BF16 || opt.precision == FN_PRECISION_INT8) && m->isa != FN_ISA_AVX512) {
        rc = fn_fail(err, FN_EUNSUPPORTED, "precision %s runs on the avx512 instruction set, not %s",
                     fn_precision_name(opt.precision), fn_isa_name(m->isa));
        goto fail;
    }
    m->precision = opt.precision;
    if (opt.threads == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        opt.threads = n > 0 ? (int)(n > 256 ? 256 : n) : 1;
    }
    m->threads = opt.threads;
    m->max_batch = opt.max_batch ? opt.max_batch : 8;
    m->head_batch = m->threads > 2 ? m->threads : 2; /* (one image a thread, at least 2: run_batch) */
    if ((rc = fn_weights_open(weights_path, &m->weights, err)) != FN_OK)
        goto fail;
    if (!(m->pool = fn_pool_create(m->threads))) {
        rc = fn_fail(err, FN_ENOMEM, "cannot start %d threads", m->threads);
        goto fail;
    }
    if ((rc = build_resnet50(m, err)) != FN_OK)
        goto fail;
    for (int i = 0; i < m->nlayers; i++)
        if (m->layers[i].int8 && !(m->layers[i].act_scale > 0 && m->layers[i].act_scale < 1e30f)) {
            rc = fn_fail(err, FN_EFORMAT,
                         "%s: no int8 activation scale for %s (tensor '%s/act_scale' missing or invalid): make an "
                         "int8-ready file with fruitnet-convert --calibrate (weights/README.md)",
                         weights_path, m->layers[i].name, m->layers[i].name);
            goto fail;
        }
    if ((rc = pack_layers(m, err)) != FN_OK)
        goto fail;
    if ((rc = load_labels(m, err)) != FN_OK)
        goto fail;
    if (opt.classifier) {
        const fn_wtensor *k = fn_weights_find(m->weights, "fc1000/kernel");
        const fn_wtensor *b = fn_weights_find(m->weights, "fc1000/bias");
        if (!k || !b || k->dtype != FN_DTYPE_F32 || k->count != (int64_t)FN_FEATURE_DIM * FN_NUM_CLASSES ||
            b->dtype != FN_DTYPE_F32 || b->count != FN_NUM_CLASSES) {
            rc = fn_fail(err, FN_EFORMAT, "%s: fc1000 tensors missing or malformed", weights_path);
            goto fail;
        }
        m->fc_w = k->data, m->fc_b = b->data;
    }
    /* Size the arena: each slot holds the largest tensor any layer puts there. */
    size_t slot_floats[NSLOTS] = {0}, scratch = 0;
    for (int i = 0; i < m->nlayers; i++) {
        layer *L = &m->layers[i];
        fn_layer_stats *S = &m->stats[i];
        size_t per = (size_t)L->oh * L->ow * (L->split ? L->split : L->cout);
        if (L->out >= 0 && per > slot_floats[L->out])
            slot_floats[L->out] = per;
        if (L->split && (per = (size_t)L->oh * L->ow * (L->cout - L->split)) > slot_floats[L->out2])
            slot_floats[L->out2] = per;
        if (L->kind == L_CONV) {
            size_t s = fn_conv_scratch_floats(&L->conv, m->max_batch, L->h, L->w, m->threads);
            if (s > scratch)
                scratch = s;
        }
        S->name = L->name;
        S->kind = L->kind == L_CONV ? "conv" : L->kind == L_MAXPOOL ? "maxpool" : "avgpool";
        S->in_h = L->h, S->in_w = L->w, S->in_c = L->cin;
        S->out_h = L->oh, S->out_w = L->ow, S->out_c = L->cout;
        S->kh = S->kw = L->k, S->stride = L->stride;
        S->flops = L->kind == L_CONV ? 2.0 * L->oh * L->ow * L->cout * (double)L->k * L->k * L->cin : 0;
    }
    for (int s = 0; s < NSLOTS; s++) {
        size_t bytes;
        if (!fn_mul_size(slot_floats[s], (size_t)m->max_batch, &bytes) || !fn_mul_size(bytes, 4, &bytes) ||
            !(m->slot[s] = fn_aalloc(bytes))) {
            rc = fn_fail(err, FN_ENOMEM, "out of memory for activations (max_batch %d)", m->max_batch);
            goto fail;
        }
    }
    if (!(m->scratch = fn_aalloc(scratch * sizeof(float) + 64))) {
        rc = fn_fail(err, FN_ENOMEM, "out of memory for scratch");
        goto fail;
    }
    *out = m;
    return FN_OK;
fail:
    fn_model_close(m);
    return rc;
}

void fn_model_close(fn_model *m)
{
    if (!m)
        return;
    for (int i = 0; i < m->nlayers; i++)
        if (m->layers[i].kind == L_CONV) {
            fn_conv_free(&m->layers[i].conv);
            free(m->layers[i].wcat);
        }
    for (int s = 0; s < NSLOTS; s++)
        fn_afree(m->slot[s]);
    fn_afree(m->scratch);
    if (m->pool)
        fn_pool_destroy(m->pool);
    fn_weights_close(m->weights);
    free(m->label_text);
    free(m);
}

void fn_model_observe(fn_model *m, fn_conv_observer f, void *ctx)
{
    m->observe = f, m->observe_ctx = ctx;
}

fn_isa fn_model_isa(const fn_model *m) { return m->isa; }
fn_precision fn_model_precision(const fn_model *m) { return m->precision; }
const fn_weights *fn_model_weights(const fn_model *m) { return m->weights; }

const char *fn_model_label(const fn_model *m, int i)
{
    return (m && i >= 0 && i < FN_NUM_CLASSES) ? m->labels[i] : NULL;
}

int fn_model_profile(const fn_model *m, const fn_layer_stats **stats)
{
    *stats = m->stats;
    return m->nlayers;
}

void fn_model_profile_enable(fn_model *m, int on)
{
    m->profile = on;
    for (int i = 0; i < m->nlayers; i++)
        m->stats[i].seconds = 0, m->stats[i].calls = 0;
}

/* ---------------------------------------------------------------- running */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* The packed form (conv.h: bf16 pairs, uint8 quads) in which layer i writes its output for layer i + 1 on this
 * call, FN_PACKED_NONE for float32: when i + 1 reads it packed (fn_conv_packed_input: a bf16 or int8 layer
 * running direct) and nothing else reads it (the 2a -> 2b and 2b -> 2c tensors inside a block, T1 and T2),
 * and layer i can write it so (fn_conv_packed_output_ok). Never while observing (calibration reads every
 * conv's float32 input). The same conversion of the same floats: the same features (test_int8). */
static int packed_out(const fn_model *m, int i, int last, int n)
{
    const layer *L = &m->layers[i], *N = L + 1;
    if (m->observe || i + 1 >= last || L->kind != L_CONV || N->kind != L_CONV || L->split ||
        L->res != SLOT_NONE || (L->out != SLOT_T1 && L->out != SLOT_T2) || N->in != L->out)
        return FN_PACKED_NONE;
    int f = fn_conv_packed_input(&N->conv, n, N->h, N->w, m->threads);
    if (f == FN_PACKED_NONE || !fn_conv_packed_output_ok(&L->conv, n, L->h, L->w, m->threads))
        return FN_PACKED_NONE;
    return f;
}

static void run_layers(fn_model *m, int first, int last, const float *input, size_t o, int n, float *features)
{
    int in_fmt = FN_PACKED_NONE; /* the packed form of the current layer's input (packed_out of the one before) */
    for (int i = first; i < last; i++) {
        layer *L = &m->layers[i];
        const int out_fmt = packed_out(m, i, last, n);
        const size_t out_per = (size_t)L->oh * L->ow * (size_t)(L->split ? L->split : L->cout);
        const float *in = (L->in == SLOT_INPUT ? input : m->slot[L->in]) + o * L->h * L->w * L->cin;
        float *out = (L->out >= 0 ? m->slot[L->out] : features) + o * out_per;
        /* (a packed tensor of images o.. starts where their float32 one would, so that whatever the slot holds
         * for other images is where it always is) */
        double t0 = m->profile ? now_s() : 0;
        switch (L->kind) {
        case L_CONV:
            if (m->observe) { /* a merged pair is reported as its two layers, on the same input */
                const size_t nin = (size_t)n * L->h * L->w * L->cin;
                m->observe(m->observe_ctx, L->split ? L->part[0] : L->name, in, nin, int8_layer(L->cin));
                if (L->split)
                    m->observe(m->observe_ctx, L->part[1], in, nin, int8_layer(L->cin));
            }
            if (L->split) {
                fn_conv_forward_split(&L->conv, m->pool, in, n, L->h, L->w, L->split, out, L->relu,
                                      m->slot[L->out2] + o * L->oh * L->ow * (L->cout - L->split), L->relu2,
                                      m->scratch);
                break;
            }
            if (in_fmt != FN_PACKED_NONE || out_fmt != FN_PACKED_NONE) {
                const float inv = out_fmt == FN_PACKED_U8 ? 1.0f / L[1].conv.act_scale : 0;
                fn_conv_forward_packed(&L->conv, m->pool, in, in_fmt, n, L->h, L->w, out, out_fmt, inv,
                                       L->res == SLOT_NONE ? NULL : m->slot[L->res] + o * out_per, L->relu,
                                       m->scratch);
                break;
            }
            fn_conv_forward(&L->conv, m->pool, in, n, L->h, L->w, out,
                            L->res == SLOT_NONE ? NULL : m->slot[L->res] + o * out_per, L->relu, m->scratch);
            break;
        case L_MAXPOOL:
            fn_maxpool(m->pool, in, n, L->h, L->w, L->cin, L->k, L->stride, L->pad, out);
            break;
        case L_AVGPOOL:
            fn_global_avgpool(in, n, L->h, L->w, L->cin, out);
            break;
        }
        if (m->profile) {
            m->stats[i].seconds += now_s() - t0;
            m->stats[i].calls += n;
        }
        in_fmt = out_fmt;
    }
}

/* The layers on the 112- and 56-pixel maps (conv1, the max-pool, stage 2: m->head) run a few images at a
 * time, the rest on the whole batch. Stage 2's tensors are 0.8-3.2 MB an image in float32 and its layers
 * are bound by reading and writing them: on a batch of 32 each layer streams them from memory, on 2
 * images the next layer finds them in cache. bench_precision, batch 32, the same runs (2 cores, Xeon with
 * AMX): float32 +1-3%, bf16 +4-7%, int8 +8-10% with 2 images at a time (1: less; 3 or 4: the same or
 * less; stage 3 too: no better). Each image's arithmetic is the same (the plans pick per call, and on these
 * maps they pick alike at 2 images as at 32): the same features (test_golden). Not while observing
 * (calibration sees each layer's whole batch). */
static void run_batch(fn_model *m, const float *input, int n, float *features)
{
    const int s = m->head_batch;
    if (n <= s || m->observe) {
        run_layers(m, 0, m->nlayers, input, 0, n, features);
        return;
    }
    for (int o = 0; o < n; o += s)
        run_layers(m, 0, m->head, input, (size_t)o, n - o < s ? n - o : s, features);
    run_layers(m, m->head, m->nlayers, input, 0, n, features);
}

int fn_model_features(fn_model *m, const float *input, int n, float *features, fn_error *err)
{
    if (!m || (!input && n > 0) || (!features && n > 0) || n < 0)
        return fn_fail(err, FN_EARG, "fn_model_features: invalid arguments");
    const size_t in_per = (size_t)FN_INPUT_SIZE * FN_INPUT_SIZE * 3;
    for (int done = 0; done < n; done += m->max_batch) {
        int b = n - done < m->max_batch ? n - done : m->max_batch;
        run_batch(m, input + (size_t)done * in_per, b, features + (size_t)done * FN_FEATURE_DIM);
    }
    return FN_OK;
}

int fn_model_classify(fn_model *m, const float *features, int n, float *probs, fn_error *err)
{
    if (!m || n < 0 || (n > 0 && (!features || !probs)))
        return fn_fail(err, FN_EARG, "fn_model_classify: invalid arguments");
    if (!m->fc_w)
        return fn_fail(err, FN_EARG, "fn_model_classify: model opened without the classifier option");
    fn_dense(features, n, FN_FEATURE_DIM, m->fc_w, m->fc_b, FN_NUM_CLASSES, probs);
    fn_softmax(probs, n, FN_NUM_CLASSES);
    return FN_OK;
}

void fn_topk(const float *probs, int nclasses, int k, int *idx, float *val)
{
    if (k > nclasses)
        k = nclasses;
    for (int j = 0; j < k; j++)
        idx[j] = -1;
    for (int i = 0; i < nclasses; i++) {
        /* insertion into the sorted top-k list; ties keep the lower index first */
        int pos = k;
        while (pos > 0 && (idx[pos - 1] < 0 || probs[i] > probs[idx[pos - 1]]))
            pos--;
        if (pos >= k)
            continue;
        for (int j = k - 1; j > pos; j--)
            idx[j] = idx[j - 1];
        idx[pos] = i;
    }
    if (val)
        for (int j = 0; j < k; j++)
            val[j] = probs[idx[j]];
}
