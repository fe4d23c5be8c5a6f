/*
 * extract.c — the extraction pipeline: decoder threads decode and resize the
 * next batches into a ring of batch slots while the calling thread runs the
 * network on the current one; results go to a callback in input order.
 */
#include "dataset.h"
#include "files.h"
#include "util.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define IN_FLOATS ((size_t)FN_INPUT_SIZE * FN_INPUT_SIZE * 3)

typedef struct slot {
    size_t batch; /* batch index held; SIZE_MAX = free */
    int ready, n;
    size_t first;
    float *input; /* [batch][224*224*3] */
    int *ok;
    char **errmsg;
} slot;

typedef struct pipe_s {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    slot *slots;
    int nslots, batch;
    size_t next_batch, nbatches, n;
    const char *const *paths;
    const void *const *bufs;
    const size_t *lens;
    fn_resize_mode resize;
    int mirror;
    int stop;
} pipe_s;

/* bytes -> model input, the image mirrored first when asked */
static int to_input(const pipe_s *p, const void *bytes, size_t len, const char *name, float *out, fn_error *e)
{
    if (!p->mirror)
        return fn_input_from_memory(bytes, len, name, p->resize, out, e);
    fn_image img;
    int rc = fn_image_decode(bytes, len, name, &img, e);
    if (rc == FN_OK) {
        fn_image_flip_lr(&img);
        rc = fn_image_to_input(&img, p->resize, out, e);
    }
    fn_image_free(&img);
    return rc;
}

static int decode_one(const pipe_s *p, size_t i, float *out, fn_error *e)
{
    const char *name = p->paths && p->paths[i] ? p->paths[i] : NULL;
    if (p->bufs) {
        char fallback[48];
        if (!name)
            snprintf(fallback, sizeof fallback, "input %zu", i), name = fallback;
        return to_input(p, p->bufs[i], p->lens ? p->lens[i] : 0, name, out, e);
    }
    if (!name)
        return fn_fail(e, FN_EARG, "input %zu: no path", i);
    unsigned char *buf;
    size_t len;
    int rc = fn_read_regular(name, FN_MAX_INPUT_BYTES, &buf, &len, e);
    if (rc == FN_OK)
        rc = to_input(p, buf, len, name, out, e);
    free(buf);
    return rc;
}

static void *decoder_main(void *arg)
{
    pipe_s *p = arg;
    for (;;) {
        pthread_mutex_lock(&p->mu);
        if (p->stop || p->next_batch >= p->nbatches) {
            pthread_mutex_unlock(&p->mu);
            return NULL;
        }
        size_t b = p->next_batch++;
        slot *s = &p->slots[b % (size_t)p->nslots];
        while (s->batch != SIZE_MAX && !p->stop)
            pthread_cond_wait(&p->cv, &p->mu);
        if (p->stop) {
            pthread_mutex_unlock(&p->mu);
            return NULL;
        }
        s->batch = b;
        s->ready = 0;
        pthread_mutex_unlock(&p->mu);

        s->first = b * (size_t)p->batch;
        s->n = (int)(p->n - s->first < (size_t)p->batch ? p->n - s->first : (size_t)p->batch);
        for (int i = 0; i < s->n; i++) {
            fn_error e = {0};
            int rc = decode_one(p, s->first + (size_t)i, s->input + (size_t)i * IN_FLOATS, &e);
            s->ok[i] = rc == FN_OK;
            free(s->errmsg[i]);
            s->errmsg[i] = rc == FN_OK ? NULL : strdup(e.msg[0] ? e.msg : fn_status_name(rc));
        }
        pthread_mutex_lock(&p->mu);
        s->ready = 1;
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
    }
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

int fn_extract_run(fn_model *m, const fn_extract_options *opt, size_t n, const char *const *paths,
                   const void *const *bufs, const size_t *lens, fn_row_fn row, void *ctx, double *net_seconds,
                   fn_error *err)
{
    if (net_seconds)
        *net_seconds = 0;
    if (!m || !row || (n && !paths && !bufs) || (bufs && !lens))
        return fn_fail(err, FN_EARG, "fn_extract_run: model, row callback and paths or buffers are required");
    if (n == 0)
        return FN_OK;
    fn_extract_options o = {0};
    if (opt)
        o = *opt;
    if (o.batch <= 0)
        o.batch = 8;
    if (o.decoders <= 0)
        o.decoders = 1;
    if (o.batch > 4096 || o.decoders > 256)
        return fn_fail(err, FN_EARG, "fn_extract_run: batch %d (1..4096) or decoders %d (1..256) out of range",
                       o.batch, o.decoders);
    pipe_s p = {.nslots = o.decoders + 2, .batch = o.batch, .n = n, .paths = paths, .bufs = bufs, .lens = lens,
                .resize = o.resize, .mirror = o.mirror != 0};
    p.nbatches = (n + (size_t)o.batch - 1) / (size_t)o.batch;
    int rc = FN_OK;
    float *feat = malloc((size_t)o.batch * FN_FEATURE_DIM * sizeof(float));
    p.slots = calloc((size_t)p.nslots, sizeof(slot));
    pthread_t *dec = calloc((size_t)o.decoders, sizeof(pthread_t));
    int started = 0;
    if (!feat || !p.slots || !dec)
        rc = fn_fail(err, FN_ENOMEM, "out of memory for the extraction pipeline");
    for (int s = 0; !rc && s < p.nslots; s++) {
        p.slots[s].batch = SIZE_MAX;
        p.slots[s].input = fn_aalloc((size_t)o.batch * IN_FLOATS * sizeof(float));
        p.slots[s].ok = calloc((size_t)o.batch, sizeof(int));
        p.slots[s].errmsg = calloc((size_t)o.batch, sizeof(char *));
        if (!p.slots[s].input || !p.slots[s].ok || !p.slots[s].errmsg)
            rc = fn_fail(err, FN_ENOMEM, "out of memory for %d batch slots of %d images", p.nslots, o.batch);
    }
    pthread_mutex_init(&p.mu, NULL);
    pthread_cond_init(&p.cv, NULL);
    for (; !rc && started < o.decoders; started++)
        if (pthread_create(&dec[started], NULL, decoder_main, &p) != 0)
            rc = fn_fail(err, FN_ENOMEM, "cannot start decoder thread %d", started);

    double t_net = 0;
    for (size_t b = 0; !rc && b < p.nbatches; b++) {
        slot *s = &p.slots[b % (size_t)p.nslots];
        pthread_mutex_lock(&p.mu);
        while (!(s->batch == b && s->ready))
            pthread_cond_wait(&p.cv, &p.mu);
        pthread_mutex_unlock(&p.mu);
        /* compact the decoded images, run the network on them */
        int nok = 0;
        for (int i = 0; i < s->n; i++) {
            if (!s->ok[i])
                continue;
            if (nok != i)
                memcpy(s->input + (size_t)nok * IN_FLOATS, s->input + (size_t)i * IN_FLOATS,
                       IN_FLOATS * sizeof(float));
            nok++;
        }
        double t0 = now_s();
        if (nok > 0)
            rc = fn_model_features(m, s->input, nok, feat, err);
        t_net += now_s() - t0;
        for (int i = 0, k = 0; !rc && i < s->n; i++) {
            size_t idx = s->first + (size_t)i;
            if (s->ok[i])
                rc = row(ctx, idx, feat + (size_t)k++ * FN_FEATURE_DIM, NULL, err);
            else
                rc = row(ctx, idx, NULL, s->errmsg[i] ? s->errmsg[i] : "out of memory", err);
        }
        pthread_mutex_lock(&p.mu);
        s->batch = SIZE_MAX;
        s->ready = 0;
        pthread_cond_broadcast(&p.cv);
        pthread_mutex_unlock(&p.mu);
    }
    pthread_mutex_lock(&p.mu);
    p.stop = 1;
    pthread_cond_broadcast(&p.cv);
    pthread_mutex_unlock(&p.mu);
    for (int d = 0; d < started; d++)
        pthread_join(dec[d], NULL);
    pthread_mutex_destroy(&p.mu);
    pthread_cond_destroy(&p.cv);
    for (int s = 0; p.slots && s < p.nslots; s++) {
        fn_afree(p.slots[s].input);
        free(p.slots[s].ok);
        for (int i = 0; p.slots[s].errmsg && i < o.batch; i++)
            free(p.slots[s].errmsg[i]);
        free(p.slots[s].errmsg);
    }
    free(p.slots);
    free(dec);
    free(feat);
    if (net_seconds)
        *net_seconds = t_net;
    return rc;
}

int fn_extract_inputs(fn_model *m, const fn_extract_options *opt, const fn_inputs *in, fn_row_fn row, void *ctx,
                      double *net_seconds, fn_error *err)
{
    if (net_seconds)
        *net_seconds = 0;
    if (!in)
        return fn_fail(err, FN_EARG, "fn_extract_inputs: invalid arguments");
    size_t n = fn_inputs_count(in);
    const char **paths = malloc((n + 1) * sizeof *paths);
    if (!paths)
        return fn_fail(err, FN_ENOMEM, "fn_extract_inputs: out of memory for %zu paths", n);
    for (size_t i = 0; i < n; i++)
        paths[i] = fn_inputs_path(in, i);
    int rc = fn_extract_run(m, opt, n, paths, NULL, NULL, row, ctx, net_seconds, err);
    free(paths);
    return rc;
}

int fn_extract_max_batch(const fn_extract_options *opt, size_t ninputs)
{
    int batch = opt && opt->batch > 0 ? opt->batch : 8;
    return ninputs >= 1 && ninputs < (size_t)batch ? (int)ninputs : batch;
}
