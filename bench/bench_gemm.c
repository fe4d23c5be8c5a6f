/*
 * bench_gemm — GEMM/convolution kernel micro-benchmark for tuning conv.c and
 * gemm_*.c: GFLOP/s of every distinct ResNet50 convolution shape (224x224
 * input) per ISA at 1 and 2 threads, against this machine's FMA peak measured
 * with an FMA-throughput loop (AVX-512 and AVX2). Weighted totals cover all
 * 53 convolutions (7.71 GFLOP per image).
 *
 * usage: bench_gemm [--isa portable|avx2|avx512|all] [--batch N]... [--threads N]... [--reps N] [--only SUBSTR]
 */
#include "conv.h"
#include "gemm.h"
#include "threadpool.h"
#include "util.h"

#include <immintrin.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---------------------------------------------------------------- FMA peak */

#define FMA_ITERS 6000000L
#define NACC 12
__attribute__((target("avx512f"))) static float fma_loop_avx512(void)
{
    __m512 a[NACC], b = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-7f);
    for (int i = 0; i < NACC; i++)
        a[i] = _mm512_set1_ps((float)i);
    for (long it = 0; it < FMA_ITERS / NACC; it++)
        for (int i = 0; i < NACC; i++)
            a[i] = _mm512_fmadd_ps(a[i], b, c);
    float s = 0;
    for (int i = 0; i < NACC; i++)
        s += _mm512_reduce_add_ps(a[i]);
    return s;
}

__attribute__((target("avx2,fma"))) static float fma_loop_avx2(void)
{
    __m256 a[NACC], b = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
    for (int i = 0; i < NACC; i++)
        a[i] = _mm256_set1_ps((float)i);
    for (long it = 0; it < FMA_ITERS / NACC; it++)
        for (int i = 0; i < NACC; i++)
            a[i] = _mm256_fmadd_ps(a[i], b, c);
    float t[8], s = 0;
    for (int i = 0; i < NACC; i++) {
        _mm256_storeu_ps(t, a[i]);
        for (int j = 0; j < 8; j++)
            s += t[j];
    }
    return s;
}

typedef struct peak_arg {
    int avx512;
    double gflops;
    volatile float sink;
} peak_arg;

static void *peak_thread(void *p)
{
    peak_arg *a = p;
    double t0 = now_s();
    a->sink = a->avx512 ? fma_loop_avx512() : fma_loop_avx2();
    double lanes = a->avx512 ? 16 : 8;
    a->gflops = 2.0 * lanes * (double)(FMA_ITERS / NACC * NACC) / (now_s() - t0) / 1e9;
    return NULL;
}

/* Sum of the per-thread FMA throughput with nthreads running at once; best of
 * 8 short runs, since the machine may be shared (timings are best-of too). */
static double fma_peak1(int avx512, int nthreads);
static double fma_peak(int avx512, int nthreads)
{
    double best = 0;
    for (int r = 0; r < 8; r++) {
        double g = fma_peak1(avx512, nthreads);
        best = g > best ? g : best;
    }
    return best;
}

static double fma_peak1(int avx512, int nthreads)
{
    pthread_t th[64];
    peak_arg a[64];
    for (int i = 0; i < nthreads; i++) {
        a[i].avx512 = avx512;
        pthread_create(&th[i], NULL, peak_thread, &a[i]);
    }
    double s = 0;
    for (int i = 0; i < nthreads; i++) {
        pthread_join(th[i], NULL);
        s += a[i].gflops;
    }
    return s;
}

/* ---------------------------------------------------------------- shapes */

typedef struct shape {
    const char *name;
    int count, h, w, cin, cout, k, stride, pad, residual;
} shape;

static const shape shapes[] = {
    {"conv1 7x7/2", 1, 224, 224, 3, 64, 7, 2, 3, 0},
    {"s2 1x1 64->64", 1, 56, 56, 64, 64, 1, 1, 0, 0},
    {"s2 1x1 64->256 (b1)", 1, 56, 56, 64, 256, 1, 1, 0, 0},
    {"s2 3x3 64->64", 3, 56, 56, 64, 64, 3, 1, 1, 0},
    {"s2 1x1 64->256 +res", 3, 56, 56, 64, 256, 1, 1, 0, 1},
    {"s2 1x1 256->64", 2, 56, 56, 256, 64, 1, 1, 0, 0},
    {"s3 1x1/2 256->128", 1, 56, 56, 256, 128, 1, 2, 0, 0},
    {"s3 1x1/2 256->512 (b1)", 1, 56, 56, 256, 512, 1, 2, 0, 0},
    {"s3 3x3 128->128", 4, 28, 28, 128, 128, 3, 1, 1, 0},
    {"s3 1x1 128->512 +res", 4, 28, 28, 128, 512, 1, 1, 0, 1},
    {"s3 1x1 512->128", 3, 28, 28, 512, 128, 1, 1, 0, 0},
    {"s4 1x1/2 512->256", 1, 28, 28, 512, 256, 1, 2, 0, 0},
    {"s4 1x1/2 512->1024 (b1)", 1, 28, 28, 512, 1024, 1, 2, 0, 0},
    {"s4 3x3 256->256", 6, 14, 14, 256, 256, 3, 1, 1, 0},
    {"s4 1x1 256->1024 +res", 6, 14, 14, 256, 1024, 1, 1, 0, 1},
    {"s4 1x1 1024->256", 5, 14, 14, 1024, 256, 1, 1, 0, 0},
    {"s5 1x1/2 1024->512", 1, 14, 14, 1024, 512, 1, 2, 0, 0},
    {"s5 1x1/2 1024->2048 (b1)", 1, 14, 14, 1024, 2048, 1, 2, 0, 0},
    {"s5 3x3 512->512", 3, 7, 7, 512, 512, 3, 1, 1, 0},
    {"s5 1x1 512->2048 +res", 3, 7, 7, 512, 2048, 1, 1, 0, 1},
    {"s5 1x1 2048->512", 2, 7, 7, 2048, 512, 1, 1, 0, 0},
};
#define NSHAPES (sizeof shapes / sizeof shapes[0])

static double shape_flop(const shape *s) /* per image */
{
    int oh = fn_conv_out_dim(s->h, s->k, s->stride, s->pad), ow = fn_conv_out_dim(s->w, s->k, s->stride, s->pad);
    return 2.0 * oh * ow * s->cout * (double)s->k * s->k * s->cin;
}

static void fill(float *x, size_t n, unsigned seed, float scale)
{
    unsigned v = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        v = v * 1664525u + 1013904223u;
        x[i] = ((float)(v >> 8) / 16777216.0f - 0.5f) * scale;
    }
}

/* Best-of-reps seconds for one forward of shape s at batch n. */
static double time_shape(const shape *s, fn_isa isa, fn_pool *pool, int nthreads, int n, int reps)
{
    int oh = fn_conv_out_dim(s->h, s->k, s->stride, s->pad), ow = fn_conv_out_dim(s->w, s->k, s->stride, s->pad);
    size_t nin = (size_t)n * s->h * s->w * s->cin, nout = (size_t)n * oh * ow * s->cout;
    size_t nw = (size_t)s->k * s->k * s->cin * s->cout;
    float *in = fn_aalloc(nin * 4), *out = fn_aalloc(nout * 4), *res = s->residual ? fn_aalloc(nout * 4) : NULL;
    float *W = malloc(nw * 4), *b = malloc((size_t)s->cout * 4);
    fill(in, nin, 1, 2.0f), fill(W, nw, 2, 0.1f), fill(b, (size_t)s->cout, 3, 0.1f);
    if (res)
        fill(res, nout, 4, 1.0f);
    memset(out, 0, nout * 4);
    fn_conv c;
    fn_error e;
    /* Winograd weights as the model makes them (fn_conv picks per batch), or FRUITNET_BENCH_WINO=0|2|4|6 */
    const char *wv = getenv("FRUITNET_BENCH_WINO");
    int wino = s->k != 3 ? 0 : wv ? atoi(wv) : fn_conv_wino_kinds(s->k, s->h);
    if (fn_conv_init(&c, s->k, s->k, s->stride, s->pad, s->cin, s->cout, W, b, wino, isa, &e) != FN_OK) {
        fprintf(stderr, "bench_gemm: %s\n", e.msg);
        exit(1);
    }
    float *scratch = fn_aalloc(fn_conv_scratch_floats(&c, n, s->h, s->w, nthreads) * 4 + 64);
    double best = 1e30;
    for (int r = 0; r < reps + 1; r++) { /* first run warms up */
        double t0 = now_s();
        fn_conv_forward(&c, pool, in, n, s->h, s->w, out, res, 1, scratch);
        double t = now_s() - t0;
        if (r > 0 && t < best)
            best = t;
    }
    fn_afree(scratch);
    fn_conv_free(&c);
    fn_afree(in), fn_afree(out), fn_afree(res), free(W), free(b);
    return best;
}

/* The bare micro-kernel on L1/L2-resident operands: K floats in `taps` taps. */
static double kernel_gflops(fn_isa isa, int K, int taps)
{
    const fn_gemm_impl *g = isa == FN_ISA_AVX512 ? &fn_gemm_avx512 : isa == FN_ISA_AVX2 ? &fn_gemm_avx2 : &fn_gemm_portable;
    float *A = fn_aalloc((size_t)g->mr * K * 4), *B = fn_aalloc((size_t)K * g->nr * 4), *C = fn_aalloc((size_t)g->mr * g->nr * 4);
    float *bias = fn_aalloc((size_t)g->nr * 4);
    const float *ptr[64 * 16];
    fill(A, (size_t)g->mr * K, 5, 1.0f), fill(B, (size_t)K * g->nr, 6, 1.0f), fill(bias, (size_t)g->nr, 7, 1.0f);
    for (int t = 0; t < taps; t++)
        for (int i = 0; i < g->mr; i++)
            ptr[t * g->mr + i] = A + (size_t)i * K + (size_t)t * (K / taps);
    fn_ukargs u = {.a = ptr, .b = B, .c = C, .bias = bias, .ldc = (size_t)g->nr, .ntaps = taps, .kt = K / taps,
                   .mr = g->mr, .nr = g->nr, .first = 1, .last = 1, .relu = 1};
    long iters = 400000000L / ((long)K * g->mr * g->nr);
    double best = 0;
    for (int r = 0; r < 5; r++) {
        double t0 = now_s();
        for (long it = 0; it < iters; it++)
            g->kernel(&u);
        double gf = 2.0 * iters * K * g->mr * g->nr / (now_s() - t0) / 1e9;
        best = gf > best ? gf : best;
    }
    fn_afree(A), fn_afree(B), fn_afree(C), fn_afree(bias);
    return best;
}

int main(int argc, char **argv)
{
    int batches[8] = {0}, nb = 0, threads[8] = {0}, nt = 0, reps = 5;
    const char *isa_arg = "best", *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--isa") && i + 1 < argc)
            isa_arg = argv[++i];
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc && nb < 8)
            batches[nb++] = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc && nt < 8)
            threads[nt++] = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
            reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--only") && i + 1 < argc)
            only = argv[++i];
        else {
            fprintf(stderr, "usage: bench_gemm [--isa portable|avx2|avx512|all|best] [--batch N]... "
                            "[--threads N]... [--reps N] [--only SUBSTR]\n");
            return 2;
        }
    }
    if (!nb)
        batches[nb++] = 1, batches[nb++] = 32;
    if (!nt)
        threads[nt++] = 1, threads[nt++] = 2;
    fn_isa best = fn_isa_detect(), isas[3];
    int ni = 0;
    if (!strcmp(isa_arg, "all")) {
        for (int i = FN_ISA_PORTABLE; i <= (int)best; i++)
            isas[ni++] = (fn_isa)i;
    } else if (!strcmp(isa_arg, "best")) {
        isas[ni++] = best;
    } else {
        fn_isa want;
        fn_error e;
        if (fn_isa_parse(isa_arg, &want) != FN_OK || fn_isa_resolve(want, &isas[0], &e) != FN_OK) {
            fprintf(stderr, "bench_gemm: unusable ISA %s\n", isa_arg);
            return 2;
        }
        ni = 1;
    }
    double peak512[8] = {0}, peak256[8] = {0};
    for (int t = 0; t < nt; t++) {
        if (best >= FN_ISA_AVX2)
            peak256[t] = fma_peak(0, threads[t]);
        if (best >= FN_ISA_AVX512)
            peak512[t] = fma_peak(1, threads[t]);
        printf("FMA peak, %d thread(s): AVX-512 %.1f GFLOP/s, AVX2 %.1f GFLOP/s\n", threads[t], peak512[t],
               peak256[t]);
    }
    for (int ii = 0; ii < ni; ii++) {
        printf("micro-kernel %s, 1 thread:", fn_isa_name(isas[ii]));
        static const int kk[][2] = {{64, 1}, {128, 1}, {256, 1}, {576, 9}, {1024, 1}};
        for (size_t q = 0; q < sizeof kk / sizeof kk[0]; q++)
            printf("  K=%d/%dtap %.1f", kk[q][0], kk[q][1], kernel_gflops(isas[ii], kk[q][0], kk[q][1]));
        printf(" GFLOP/s\n");
    }
    for (int ii = 0; ii < ni; ii++)
        for (int t = 0; t < nt; t++) {
            double peak = isas[ii] == FN_ISA_AVX512 ? peak512[t] : peak256[t];
            if (peak <= 0) /* portable: compare with the SSE-free scalar... just report AVX2's peak */
                peak = peak256[t] > 0 ? peak256[t] : 1;
            fn_pool *pool = fn_pool_create(threads[t]);
            for (int bi = 0; bi < nb; bi++) {
                int n = batches[bi];
                printf("\n== ISA %s, %d thread(s), batch %d (peak %.1f GFLOP/s)\n", fn_isa_name(isas[ii]), threads[t],
                       n, peak);
                printf("%-26s %3s %9s %9s %8s %6s\n", "shape", "x", "GFLOP/img", "ms/img", "GFLOP/s", "%peak");
                double tot_s = 0, tot_f = 0;
                for (size_t si = 0; si < NSHAPES; si++) {
                    const shape *s = &shapes[si];
                    if (only && !strstr(s->name, only))
                        continue;
                    double sec = time_shape(s, isas[ii], pool, threads[t], n, reps);
                    double f = shape_flop(s) * n, gf = f / sec / 1e9;
                    printf("%-26s %3d %9.3f %9.3f %8.1f %6.1f\n", s->name, s->count, shape_flop(s) / 1e9,
                           sec * 1e3 / n, gf, 100 * gf / peak);
                    tot_s += s->count * sec, tot_f += s->count * f;
                    fflush(stdout);
                }
                printf("%-26s %3s %9.3f %9.3f %8.1f %6.1f\n", "TOTAL (weighted)", "", tot_f / n / 1e9,
                       tot_s * 1e3 / n, tot_f / tot_s / 1e9, 100 * tot_f / tot_s / 1e9 / peak);
            }
            fn_pool_destroy(pool);
        }
    return 0;
}
