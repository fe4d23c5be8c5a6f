/*
 * calibrate.c — the int8 activation scales (fn_weights_calibrate_int8): a weight file's float32 network
 * is run on calibration images and, for every convolution that the int8 precision runs on uint8 inputs,
 * the clip of its input that minimises the expected squared quantisation error is stored in the file as
 * '<conv>/act_scale' (float32 [1], = clip / 255: the value of one uint8 step).
 *
 * Two passes over the images (the float32 network is deterministic): the first finds each input's
 * largest value, the second fills a histogram of NBINS bins over (0, max] (exact zeros, half of a
 * post-ReLU map, are counted apart: they quantise exactly). For a clip c at a bin edge the error is
 *   sum over values below c of (c/255)^2 / 12  (rounding, uniform)  +  sum over values above c of (x - c)^2
 * (bin centres), and the c with the least error is kept. (Against the 99.99th percentile, measured on the
 * sample: README "Precision".)
 */
#include "fnw.h"
#include "model_hook.h"
#include "util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NBINS 2048
#define MAX_CONV 64
#define MAX_IMAGES 1000
#define BATCH 8

typedef struct calib_layer {
    char name[48];
    int int8;
    double max;
    int64_t zeros;
    int64_t hist[NBINS];
} calib_layer;

typedef struct calib {
    calib_layer *l; /* MAX_CONV */
    int n, at, pass, overflow;
} calib;

static void observe(void *ctx, const char *name, const float *in, size_t n, int int8)
{
    calib *c = ctx;
    if (c->pass == 0 && c->at == c->n) { /* first sight of this conv (the order is the model's) */
        if (c->n == MAX_CONV) {
            c->overflow = 1;
            return;
        }
        snprintf(c->l[c->n].name, sizeof c->l[c->n].name, "%s", name);
        c->l[c->n].int8 = int8;
        c->n++;
    }
    if (c->at >= c->n)
        return;
    calib_layer *L = &c->l[c->at++];
    if (!L->int8)
        return;
    if (c->pass == 0) {
        float mx = 0;
        for (size_t i = 0; i < n; i++)
            mx = in[i] > mx ? in[i] : mx;
        L->max = mx > L->max ? mx : L->max;
        return;
    }
    const double k = L->max > 0 ? NBINS / L->max : 0;
    for (size_t i = 0; i < n; i++) {
        if (!(in[i] > 0)) {
            L->zeros++;
            continue;
        }
        int b = (int)(in[i] * k);
        L->hist[b < NBINS ? b : NBINS - 1]++;
    }
}

/* The clip (a bin edge) with the least expected squared error, as above. */
static double best_clip(const calib_layer *L)
{
    const double w = L->max / NBINS;
    double s0 = 0, s1 = 0, s2 = 0; /* count, sum x, sum x^2 of the bins at and above t */
    double below = 0, best = -1, best_c = L->max;
    for (int b = 0; b < NBINS; b++) {
        double x = (b + 0.5) * w, n = (double)L->hist[b];
        s0 += n, s1 += n * x, s2 += n * x * x;
    }
    for (int t = 1; t <= NBINS; t++) {
        double n = (double)L->hist[t - 1], x = (t - 0.5) * w;
        s0 -= n, s1 -= n * x, s2 -= n * x * x, below += n;
        double c = t * w, step = c / 255;
        double e = below * step * step / 12 + (s2 - 2 * c * s1 + c * c * s0);
        if (best < 0 || e < best)
            best = e, best_c = c;
    }
    return best_c;
}

/* Run the model over the images (pass 0 or 1). A file that cannot be decoded is left out (counted). */
static int run_pass(fn_model *m, const fn_inputs *in, size_t count, float *buf, float *feat, calib *c, int pass,
                    int *used, fn_error *err)
{
    const size_t per = (size_t)FN_INPUT_SIZE * FN_INPUT_SIZE * 3;
    int nb = 0;
    *used = 0;
    c->pass = pass;
    for (size_t i = 0; i <= count; i++) {
        fn_error e;
        if (i < count && fn_input_from_file(fn_inputs_path(in, i), FN_RESIZE_PIL, buf + (size_t)nb * per, &e) == FN_OK)
            nb++;
        if (nb == BATCH || (i == count && nb > 0)) {
            for (int k = 0; k < nb; k++) { /* one image at a time through the observer: same sums per image */
                c->at = 0;
                int rc = fn_model_features(m, buf + (size_t)k * per, 1, feat, err);
                if (rc)
                    return rc;
            }
            *used += nb, nb = 0;
        }
    }
    return FN_OK;
}

int fn_weights_calibrate_int8(const char *weights_in, const char *images, const char *weights_out, int threads,
                              fn_error *err)
{
    if (!weights_in || !images || !weights_out || !weights_out[0] || threads < 0)
        return fn_fail(err, FN_EARG, "fn_weights_calibrate_int8: weights, images and output are required");
    fn_inputs *in = NULL;
    fn_model *m = NULL;
    calib c = {0};
    float *buf = NULL, *feat = NULL;
    fnw_tensor *t = NULL;
    char *meta = NULL, (*names)[64] = NULL;
    float *scales = NULL;
    int rc;
    if ((rc = fn_inputs_new(&in, err)) || (rc = fn_inputs_add_arg(in, images, NULL, NULL, err)) ||
        (rc = fn_inputs_finish(in, 1, 1, NULL, NULL, err)))
        goto done;
    size_t count = fn_inputs_count(in);
    if (count == 0) {
        rc = fn_fail(err, FN_EARG, "%s: no images (*.jpg, *.jpeg, *.png) to calibrate on", images);
        goto done;
    }
    count = count < MAX_IMAGES ? count : MAX_IMAGES;
    fn_model_options opt;
    fn_model_options_default(&opt);
    /* the portable kernels: the scales (and so the file's bytes and CRC) are then the same on every machine,
     * where each ISA's float32 sums round a little differently and could move a clip by a histogram bin */
    opt.threads = threads, opt.max_batch = 1, opt.precision = FN_PRECISION_FP32, opt.isa = FN_ISA_PORTABLE;
    if ((rc = fn_model_open(weights_in, &opt, &m, err)))
        goto done;
    c.l = calloc(MAX_CONV, sizeof *c.l);
    buf = malloc((size_t)BATCH * FN_INPUT_SIZE * FN_INPUT_SIZE * 3 * sizeof(float));
    feat = malloc(FN_FEATURE_DIM * sizeof(float));
    if (!c.l || !buf || !feat) {
        rc = fn_fail(err, FN_ENOMEM, "out of memory");
        goto done;
    }
    fn_model_observe(m, observe, &c);
    int used = 0;
    for (int pass = 0; pass < 2; pass++)
        if ((rc = run_pass(m, in, count, buf, feat, &c, pass, &used, err)))
            goto done;
    fn_model_observe(m, NULL, NULL);
    if (used == 0) {
        rc = fn_fail(err, FN_EFORMAT, "%s: none of the %zu images could be decoded", images, count);
        goto done;
    }
    if (c.overflow) {
        rc = fn_fail(err, FN_ELIMIT, "%s: more than %d convolutions", weights_in, MAX_CONV);
        goto done;
    }
    /* the output: the file's tensors (old act_scale tensors and meta replaced), then one scale per int8 conv */
    const fn_weights *w = fn_model_weights(m);
    int nw = fn_weights_count(w), nt = 0;
    t = calloc((size_t)nw + MAX_CONV + 1, sizeof *t);
    names = calloc(MAX_CONV, sizeof *names);
    scales = calloc(MAX_CONV, sizeof *scales);
    const fn_wtensor *mt = fn_weights_find(w, "meta");
    size_t ml = mt && mt->dtype == FN_DTYPE_U8 ? (size_t)mt->count : 0;
    meta = malloc(ml + 128);
    if (!t || !names || !scales || !meta) {
        rc = fn_fail(err, FN_ENOMEM, "out of memory");
        goto done;
    }
    /* meta: its lines but an old int8_calibration, then the new one */
    size_t mo = 0;
    for (size_t p = 0; p < ml;) {
        const char *s = (const char *)mt->data + p, *nl = memchr(s, '\n', ml - p);
        size_t len = nl ? (size_t)(nl - s) + 1 : ml - p;
        if (strncmp(s, "int8_calibration=", len < 17 ? len : 17)) {
            memcpy(meta + mo, s, len);
            mo += len;
            if (!nl)
                meta[mo++] = '\n';
        }
        p += len;
    }
    mo += (size_t)snprintf(meta + mo, 128, "int8_calibration=mse-clip,%d-images\n", used);
    for (int i = 0; i < nw; i++) {
        const fn_wtensor *x = fn_weights_at(w, i);
        size_t nl = strlen(x->name);
        if (nl > 10 && !strcmp(x->name + nl - 10, "/act_scale"))
            continue;
        fnw_tensor *o = &t[nt++];
        o->name = x->name, o->dtype = x->dtype, o->ndim = x->ndim;
        for (int d = 0; d < x->ndim; d++)
            o->shape[d] = (uint64_t)x->shape[d];
        o->data = x->data, o->nbytes = (size_t)x->count * (x->dtype == FN_DTYPE_F32 ? 4 : 1);
        if (x == mt)
            o->data = meta, o->nbytes = mo, o->shape[0] = mo;
    }
    for (int i = 0; i < c.n; i++) {
        const calib_layer *L = &c.l[i];
        if (!L->int8)
            continue;
        double clip = best_clip(L);
        scales[i] = clip > 0 ? (float)(clip / 255) : 1.0f; /* an all-zero input: any scale is exact */
        snprintf(names[i], sizeof names[i], "%s/act_scale", L->name);
        fnw_tensor *o = &t[nt++];
        o->name = names[i], o->dtype = FN_DTYPE_F32, o->ndim = 1, o->shape[0] = 1;
        o->data = &scales[i], o->nbytes = sizeof(float);
    }
    rc = fnw_write(t, nt, weights_out, err); /* the model (and its mapping of weights_in) is still open */
done:
    fn_model_close(m);
    fn_inputs_free(in);
    free(c.l), free(buf), free(feat), free(t), free(names), free(scales), free(meta);
    return rc;
}
