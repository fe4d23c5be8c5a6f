/*
 * bench_open — where the time of opening the model goes, and the first image.
 *
 * Each run: fn_weights_open alone, then every conv layer's fn_conv_init as
 * fn_model_open would do it (direct panels only, then with its Winograd
 * weights), then fn_model_open + one image at batch 1 (process CPU time and
 * wall). Prints the minimum over the runs (the machine is shared and noisy).
 *
 * usage: bench_open --weights W [--runs N] [--threads N] [--max-batch N] [--isa I]
 */
#include "fruitnet.h"
#include "conv.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double clk(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}
#define WALL() clk(CLOCK_MONOTONIC)
#define CPU() clk(CLOCK_PROCESS_CPUTIME_ID)
#define MIN(a, b) ((a) < (b) ? (a) : (b))

int main(int argc, char **argv)
{
    const char *weights = NULL, *isa_name = "auto";
    int runs = 5, threads = 0, max_batch = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--weights") && i + 1 < argc)
            weights = argv[++i];
        else if (!strcmp(argv[i], "--runs") && i + 1 < argc)
            runs = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--max-batch") && i + 1 < argc)
            max_batch = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--isa") && i + 1 < argc)
            isa_name = argv[++i];
        else {
            fprintf(stderr, "usage: bench_open --weights W [--runs N] [--threads N] [--max-batch N] [--isa I]\n");
            return 2;
        }
    }
    if (!weights)
        weights = getenv("FRUITNET_WEIGHTS");
    if (!weights) {
        fprintf(stderr, "bench_open: --weights is required\n");
        return 2;
    }
    fn_error err;
    fn_isa isa;
    if (fn_isa_parse(isa_name, &isa) != FN_OK || fn_isa_resolve(isa, &isa, &err) != FN_OK) {
        fprintf(stderr, "bench_open: ISA %s: %s\n", isa_name, err.msg);
        return 1;
    }
    float *img = fn_aalloc((size_t)FN_INPUT_SIZE * FN_INPUT_SIZE * 3 * sizeof(float));
    float feat[FN_FEATURE_DIM];
    for (size_t i = 0; i < (size_t)FN_INPUT_SIZE * FN_INPUT_SIZE * 3; i++)
        img[i] = (float)(i % 251) - 125.0f;
    double w_open = 1e9, w_open_cpu = 1e9, direct = 1e9, wino = 1e9, open = 1e9, open_cpu = 1e9, first = 1e9,
           first_cpu = 1e9, total = 1e9, total_cpu = 1e9;
    for (int r = 0; r < runs; r++) {
        /* phase 1: the weight file */
        fn_weights *w;
        double t0 = WALL(), c0 = CPU();
        if (fn_weights_open(weights, &w, &err) != FN_OK) {
            fprintf(stderr, "bench_open: %s\n", err.msg);
            return 1;
        }
        w_open = MIN(w_open, WALL() - t0), w_open_cpu = MIN(w_open_cpu, CPU() - c0);
        /* phase 2: conv packing, every 'kernel' tensor of rank 4, direct then direct + Winograd */
        double td = 0, tw = 0;
        for (int i = 0; i < fn_weights_count(w); i++) {
            const fn_wtensor *k = fn_weights_at(w, i);
            size_t nl = strlen(k->name);
            if (k->ndim != 4 || nl < 7 || strcmp(k->name + nl - 7, "/kernel"))
                continue;
            char bname[64];
            snprintf(bname, sizeof bname, "%.*s/bias", (int)(nl - 7), k->name);
            const fn_wtensor *b = fn_weights_find(w, bname);
            int kk = (int)k->shape[0], cin = (int)k->shape[2], cout = (int)k->shape[3];
            int stride = kk == 7 ? 2 : 1; /* packing ignores the stride but for Winograd (3x3/1 here) */
            int pad = kk / 2;
            /* the map side of a 3x3: 56 >> stage offset */
            int h = kk == 3 ? 56 >> (k->name[3] - '2') : 0;
            fn_conv c;
            double a = WALL();
            if (fn_conv_init(&c, kk, kk, stride, pad, cin, cout, k->data, b->data, 0, isa, &err) != FN_OK) {
                fprintf(stderr, "bench_open: %s\n", err.msg);
                return 1;
            }
            td += WALL() - a;
            fn_conv_free(&c);
            if (kk == 3) {
                a = WALL();
                fn_conv_init(&c, kk, kk, stride, pad, cin, cout, k->data, b->data, fn_conv_wino_kinds(3, h), isa,
                             &err);
                tw += WALL() - a;
                fn_conv_free(&c);
                a = WALL();
                fn_conv_init(&c, kk, kk, stride, pad, cin, cout, k->data, b->data, 0, isa, &err);
                tw -= WALL() - a; /* Winograd share only */
                fn_conv_free(&c);
            }
        }
        direct = MIN(direct, td), wino = MIN(wino, tw);
        fn_weights_close(w);
        /* phase 3: the real thing */
        fn_model_options o;
        fn_model_options_default(&o);
        o.threads = threads, o.max_batch = max_batch, o.isa = isa;
        fn_model *m;
        t0 = WALL(), c0 = CPU();
        if (fn_model_open(weights, &o, &m, &err) != FN_OK) {
            fprintf(stderr, "bench_open: %s\n", err.msg);
            return 1;
        }
        double t1 = WALL(), c1 = CPU();
        fn_model_features(m, img, 1, feat, &err);
        double t2 = WALL(), c2 = CPU();
        fn_model_close(m);
        open = MIN(open, t1 - t0), open_cpu = MIN(open_cpu, c1 - c0);
        first = MIN(first, t2 - t1), first_cpu = MIN(first_cpu, c2 - c1);
        total = MIN(total, t2 - t0), total_cpu = MIN(total_cpu, c2 - c0);
    }
    printf("bench_open: isa %s, max_batch %d, threads %d, min of %d runs (shared machine: noisy)\n",
           fn_isa_name(isa), max_batch, threads, runs);
    printf("  fn_weights_open           %8.1f ms wall %8.1f ms cpu\n", w_open * 1e3, w_open_cpu * 1e3);
    printf("  conv init, direct panels  %8.1f ms (one thread)\n", direct * 1e3);
    printf("  conv init, Winograd share %8.1f ms (one thread, every kind fn_conv_wino_kinds gives)\n", wino * 1e3);
    printf("  fn_model_open             %8.1f ms wall %8.1f ms cpu\n", open * 1e3, open_cpu * 1e3);
    printf("  first image, batch 1      %8.1f ms wall %8.1f ms cpu\n", first * 1e3, first_cpu * 1e3);
    printf("  open + first image        %8.1f ms wall %8.1f ms cpu\n", total * 1e3, total_cpu * 1e3);
    fn_afree(img);
    return 0;
}
