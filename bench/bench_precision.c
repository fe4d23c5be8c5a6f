/*
 * bench_precision — fp32 against bf16, layer by layer, in one process: two models (one per precision) at
 * the same batch and threads take turns, one forward pass each, `passes` times, so the shared machine's
 * load weighs on both alike; per layer the mean time of each and the ratio, then the whole pass (median
 * of the per-pass ratios, and their range).
 *
 * usage: bench_precision [--weights W] [--batch N] [--threads T] [--passes P] [--out FILE.md]
 */
#include "fruitnet.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define IN_FLOATS ((size_t)224 * 224 * 3)

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    const char *weights = "weights/resnet50.fnw", *out = NULL;
    int batch = 32, threads = 2, passes = 6;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--weights") && i + 1 < argc)
            weights = argv[++i];
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc)
            batch = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--passes") && i + 1 < argc)
            passes = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--out") && i + 1 < argc)
            out = argv[++i];
        else {
            fprintf(stderr, "usage: bench_precision [--weights W] [--batch N] [--threads T] [--passes P] [--out F]\n");
            return 2;
        }
    }
    if (batch < 1 || threads < 1 || passes < 1 || passes > 1000) {
        fprintf(stderr, "bench_precision: batch, threads >= 1, passes 1..1000\n");
        return 2;
    }
    fn_error err;
    if (fn_precision_check(FN_PRECISION_BF16, &err) != FN_OK) {
        printf("bench_precision: %s; nothing to compare\n", err.msg);
        return 0;
    }
    fn_model *m[2];
    for (int p = 0; p < 2; p++) {
        fn_model_options o;
        fn_model_options_default(&o);
        o.threads = threads, o.max_batch = batch, o.precision = p ? FN_PRECISION_BF16 : FN_PRECISION_FP32;
        if (fn_model_open(weights, &o, &m[p], &err) != FN_OK) {
            fprintf(stderr, "bench_precision: %s\n", err.msg);
            return 1;
        }
    }
    float *in = malloc((size_t)batch * IN_FLOATS * sizeof(float)), *feat = malloc((size_t)batch * 2048 * sizeof(float));
    uint32_t s = 12345u;
    for (size_t k = 0; k < (size_t)batch * IN_FLOATS; k++)
        s = s * 1664525u + 1013904223u, in[k] = (float)(s >> 24) - 120.0f;
    double *q = malloc((size_t)passes * sizeof(double)), tp[2] = {0, 0};
    for (int p = 0; p < 2; p++) { /* warm-up, then profile from zero */
        fn_model_features(m[p], in, batch, feat, &err);
        fn_model_profile_enable(m[p], 1);
    }
    for (int i = 0; i < passes; i++) {
        double t[2];
        for (int p = 0; p < 2; p++) {
            double t0 = now_s();
            fn_model_features(m[(p + i) % 2], in, batch, feat, &err); /* alternate which goes first */
            t[(p + i) % 2] = now_s() - t0;
        }
        tp[0] += t[0], tp[1] += t[1];
        q[i] = t[0] / t[1];
    }
    qsort(q, (size_t)passes, sizeof(double), cmp_d);
    const fn_layer_stats *a, *b;
    int n = fn_model_profile(m[0], &a);
    fn_model_profile(m[1], &b);
    FILE *f = out ? fopen(out, "w") : NULL;
    FILE *outs[2] = {stdout, f};
    for (int k = 0; k < 2; k++) {
        FILE *o = outs[k];
        if (!o)
            continue;
        fprintf(o, "# fp32 vs bf16, batch %d, %d threads, %d alternating passes each\n\n", batch, threads, passes);
        fprintf(o, "| layer | k/s | fp32 ms/img | bf16 ms/img | bf16 speed-up |\n|---|---|---:|---:|---:|\n");
        double g[3][2] = {{0}};
        for (int l = 0; l < n; l++) {
            double x = a[l].calls ? a[l].seconds / a[l].calls * 1e3 : 0, y = b[l].calls ? b[l].seconds / b[l].calls * 1e3 : 0;
            int grp = !strcmp(a[l].kind, "conv") ? (a[l].kh == 1 ? 0 : a[l].kh == 3 ? 1 : 2) : 2;
            g[grp][0] += x, g[grp][1] += y;
            fprintf(o, "| %s | %dx%d/%d | %.3f | %.3f | %.2fx |\n", a[l].name, a[l].kh, a[l].kw, a[l].stride, x, y,
                    y > 0 ? x / y : 0);
        }
        static const char *gn[3] = {"1x1 convolutions (bf16)", "3x3 convolutions (Winograd fp32 when picked, else direct bf16)",
                                    "conv1 and pools (fp32)"};
        fprintf(o, "\n");
        for (int k2 = 0; k2 < 3; k2++)
            fprintf(o, "- %s: fp32 %.2f ms/img, bf16 %.2f ms/img, %.2fx\n", gn[k2], g[k2][0], g[k2][1],
                    g[k2][1] > 0 ? g[k2][0] / g[k2][1] : 0);
        fprintf(o, "- whole pass: fp32 %.2f ms/img, bf16 %.2f ms/img; bf16 speed-up median of passes %.2fx (range %.2f-%.2f)\n",
                tp[0] / passes / batch * 1e3, tp[1] / passes / batch * 1e3, q[passes / 2], q[0], q[passes - 1]);
    }
    if (f)
        fclose(f);
    fn_model_close(m[0]);
    fn_model_close(m[1]);
    free(in), free(feat), free(q);
    return 0;
}
