/*
 * bench_precision — fp32 against the reduced precisions this CPU runs (bf16: AVX512_BF16; int8:
 * AVX512-VNNI and a weight file with activation scales; each also on AMX where the CPU has it, and then again
 * with FRUITNET_AMX=0, "int8 vnni" / "bf16 avx512"), layer by layer, in one process: one model per
 * precision at the same batch and threads take turns, one forward pass each, `passes` times (the order
 * rotating), so the shared machine's load weighs on all alike; per layer the mean time of each and the
 * speed-up over fp32, then the whole pass (img/s, and the median of the per-pass ratios with their range).
 * Then the same at batch 1 (ms per image), on models of max_batch 1.
 *
 * usage: bench_precision [--weights W] [--batch N] [--threads T] [--passes P] [--out FILE.md]
 */
#include "fruitnet.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define IN_FLOATS ((size_t)224 * 224 * 3)
#define NP 5

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

/* Alternating passes of the np models on batch images: total seconds per model in tp, per-pass ratios
 * fp32 / model p (sorted) in q[p][0..passes). */
static void run(fn_model **m, int np, const float *in, int batch, float *feat, int passes, double *tp, double **q)
{
    fn_error err;
    for (int p = 0; p < np; p++) { /* warm-up, then profile from zero */
        fn_model_features(m[p], in, batch, feat, &err);
        fn_model_profile_enable(m[p], 1);
        tp[p] = 0;
    }
    for (int i = 0; i < passes; i++) {
        double t[NP];
        for (int k = 0; k < np; k++) {
            int p = (k + i) % np; /* rotate which goes first */
            double t0 = now_s();
            fn_model_features(m[p], in, batch, feat, &err);
            t[p] = now_s() - t0;
        }
        for (int p = 0; p < np; p++)
            tp[p] += t[p], q[p][i] = t[0] / t[p];
    }
    for (int p = 0; p < np; p++)
        qsort(q[p], (size_t)passes, sizeof(double), cmp_d);
}

/* ms per call of layer `name` among the n of st; a fused "resXy_branch1+2a" is the sum of the model's
 * resXy_branch1 and resXy_branch2a when it runs them apart (model.c add_conv_pair: when they differ in
 * precision) */
static double layer_ms(const fn_layer_stats *st, int n, const char *name)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(st[i].name, name))
            return st[i].calls ? st[i].seconds / st[i].calls * 1e3 : 0;
    const char *plus = strstr(name, "_branch1+2a");
    if (!plus)
        return 0;
    char a[128], b[128];
    snprintf(a, sizeof a, "%.*s_branch1", (int)(plus - name), name);
    snprintf(b, sizeof b, "%.*s_branch2a", (int)(plus - name), name);
    return layer_ms(st, n, a) + layer_ms(st, n, b);
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
    fn_precision prec[NP] = {FN_PRECISION_FP32};
    const char *name[NP] = {"fp32"};
    int noamx[NP] = {0};
    int np = 1;
    char notes[2][600] = {"", ""};
    const fn_precision cand[2] = {FN_PRECISION_BF16, FN_PRECISION_INT8};
    fn_model *m[NP] = {0}, *m1[NP] = {0};
    for (int c = 0; c < 2; c++) {
        if (fn_precision_check(cand[c], &err) != FN_OK) {
            snprintf(notes[c], sizeof notes[c], "%s not measured: %s", fn_precision_name(cand[c]), err.msg);
            continue;
        }
        const int amx = c ? fn_amx_int8() : fn_amx_bf16();
        prec[np] = cand[c], name[np++] = c ? (amx ? "int8 amx" : "int8") : (amx ? "bf16 amx" : "bf16");
        if (amx) /* the AVX-512 kernels too, the reference */
            prec[np] = cand[c], noamx[np] = 1, name[np++] = c ? "int8 vnni" : "bf16 avx512";
    }
    for (int p = 0; p < np; p++) {
        fn_model_options o;
        fn_model_options_default(&o);
        o.threads = threads, o.max_batch = batch, o.precision = prec[p];
        if (noamx[p]) /* read by the layers as the model opens */
            setenv("FRUITNET_AMX", "0", 1);
        int rc = fn_model_open(weights, &o, &m[p], &err);
        o.max_batch = 1;
        if (rc == FN_OK)
            rc = fn_model_open(weights, &o, &m1[p], &err);
        if (noamx[p])
            unsetenv("FRUITNET_AMX");
        if (rc != FN_OK) {
            if (p == 0) {
                fprintf(stderr, "bench_precision: %s\n", err.msg);
                return 1;
            }
            /* e.g. int8 on a file without activation scales: said in the report, the others measured */
            snprintf(notes[prec[p] == FN_PRECISION_INT8], sizeof notes[0], "%s not measured: %s", name[p], err.msg);
            fn_model_close(m[p]), fn_model_close(m1[p]);
            m[p] = m1[p] = NULL;
            for (int k = p; k + 1 < np; k++)
                prec[k] = prec[k + 1], name[k] = name[k + 1], noamx[k] = noamx[k + 1];
            np--, p--;
        }
    }
    if (np == 1) {
        printf("bench_precision: %s%s%s; nothing to compare\n", notes[0], notes[0][0] && notes[1][0] ? "; " : "",
               notes[1]);
        fn_model_close(m[0]), fn_model_close(m1[0]);
        return 0;
    }
    float *in = malloc((size_t)batch * IN_FLOATS * sizeof(float)), *feat = malloc((size_t)batch * 2048 * sizeof(float));
    uint32_t s = 12345u;
    for (size_t k = 0; k < (size_t)batch * IN_FLOATS; k++)
        s = s * 1664525u + 1013904223u, in[k] = (float)(s >> 24) - 120.0f;
    double *q[NP], *q1[NP], tp[NP], tp1[NP];
    for (int p = 0; p < NP; p++)
        q[p] = malloc((size_t)passes * sizeof(double)), q1[p] = malloc((size_t)passes * 4 * sizeof(double));
    run(m, np, in, batch, feat, passes, tp, q);
    const fn_layer_stats *st[NP];
    int nl[NP], n;
    for (int p = 0; p < np; p++)
        nl[p] = fn_model_profile(m[p], &st[p]);
    n = nl[0]; /* the rows: fp32's layers */
    run(m1, np, in, 1, feat, passes * 4, tp1, q1); /* batch 1: 4x the passes (each is ~1/20 of batch 32's) */
    FILE *f = out ? fopen(out, "w") : NULL;
    FILE *outs[2] = {stdout, f};
    for (int k = 0; k < 2; k++) {
        FILE *o = outs[k];
        if (!o)
            continue;
        fprintf(o, "# fp32 vs reduced precision, batch %d, %d threads, %d rotating passes each\n\n", batch, threads,
                passes);
        fprintf(o, "| layer | k/s |");
        for (int p = 0; p < np; p++)
            fprintf(o, " %s ms/img |", name[p]);
        for (int p = 1; p < np; p++)
            fprintf(o, " %s speed-up |", name[p]);
        fprintf(o, "\n|---|---|");
        for (int p = 1; p < 2 * np; p++)
            fprintf(o, "---:|");
        fprintf(o, "\n");
        double g[3][NP] = {{0}};
        for (int l = 0; l < n; l++) {
            const fn_layer_stats *a = &st[0][l];
            int grp = !strcmp(a->kind, "conv") ? (a->kh == 1 ? 0 : a->kh == 3 ? 1 : 2) : 2;
            double x[NP];
            fprintf(o, "| %s | %dx%d/%d |", a->name, a->kh, a->kw, a->stride);
            for (int p = 0; p < np; p++) {
                x[p] = layer_ms(st[p], nl[p], a->name);
                g[grp][p] += x[p];
                fprintf(o, " %.3f |", x[p]);
            }
            for (int p = 1; p < np; p++)
                fprintf(o, " %.2fx |", x[p] > 0 ? x[0] / x[p] : 0);
            fprintf(o, "\n");
        }
        static const char *gn[3] = {"1x1 convolutions", "3x3 convolutions (fp32/bf16: Winograd when picked; int8: direct)",
                                    "conv1 and pools (fp32 in every precision)"};
        fprintf(o, "\n");
        for (int k2 = 0; k2 < 3; k2++) {
            fprintf(o, "- %s:", gn[k2]);
            for (int p = 0; p < np; p++)
                fprintf(o, " %s %.2f ms/img%s", name[p], g[k2][p], p + 1 < np ? "," : "");
            for (int p = 1; p < np; p++)
                fprintf(o, "; %s %.2fx", name[p], g[k2][p] > 0 ? g[k2][0] / g[k2][p] : 0);
            fprintf(o, "\n");
        }
        for (int p = 0; p < np; p++) {
            fprintf(o, "- %s: batch %d %.1f img/s, batch 1 %.2f ms", name[p], batch,
                    passes * batch / tp[p], tp1[p] / (passes * 4) * 1e3);
            if (p)
                fprintf(o, "; speed-up over fp32 (median of passes): batch %d %.2fx (range %.2f-%.2f), batch 1 "
                           "%.2fx (range %.2f-%.2f)",
                        batch, q[p][passes / 2], q[p][0], q[p][passes - 1], q1[p][passes * 2], q1[p][0],
                        q1[p][passes * 4 - 1]);
            fprintf(o, "\n");
        }
        for (int c = 0; c < 2; c++)
            if (notes[c][0])
                fprintf(o, "- %s\n", notes[c]);
    }
    if (f)
        fclose(f);
    for (int p = 0; p < np; p++)
        fn_model_close(m[p]), fn_model_close(m1[p]);
    for (int p = 0; p < NP; p++)
        free(q[p]), free(q1[p]);
    free(in), free(feat);
    return 0;
}
