/*
 * bench_ukernel — the GEMM micro-kernels alone, B and A in cache (one MR x 32 tile, K = 2 x kt), float32
 * (gemm_avx512.c, FMA) against bf16 (gemm_avx512bf16.c, vdpbf16ps: half the instructions for the same
 * K) and int8 (gemm_avx512vnni.c, vpdpbusd: a quarter), and where the CPU has AMX the 32 x 32 AMX kernels
 * (gemm_amx.c, tdpbusd / tdpbf16ps): GFLOP/s (GOP/s) of each, interleaved in short bursts and the best burst
 * kept, so the shared machine's load weighs on all alike. Says whether bf16 can pay on this CPU at all.
 *
 * usage: bench_ukernel [--kt K] [--bursts N]
 */
#include "gemm.h"
#include "fruitnet.h"
#include "util.h"

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

/* GFLOP/s of `calls` calls of g's kernel on one tile of K = kfloats (kfloats, / 2 for bf16 (word_pairs 1)
 * or / 4 for int8 (word_pairs 2) rows of B) */
static double burst(const fn_gemm_impl *g, int kfloats, int word_pairs, int calls)
{
    static float a[32][4096 + 16] __attribute__((aligned(64))), b[4096 * 32] __attribute__((aligned(64)));
    static float c[32 * 32] __attribute__((aligned(64))), bias[32], scale[32];
    static const float *rows[32];
    static int init;
    if (!init) {
        for (int i = 0; i < 32; i++) {
            for (int k = 0; k < 4096; k++)
                a[i][k] = (float)((i * 7 + k) % 13) * 0.01f;
            rows[i] = a[i];
        }
        for (int k = 0; k < 4096 * 32; k++)
            b[k] = (float)(k % 17) * 0.01f;
        init = 1;
    }
    fn_ukargs u;
    memset(&u, 0, sizeof u);
    u.a = rows, u.b = b, u.c = c, u.bias = bias, u.scale = scale, u.ldc = 32, u.ntaps = 1;
    u.kt = word_pairs == 2 ? kfloats / 4 : word_pairs ? kfloats / 2 : kfloats, u.mr = g->mr, u.nr = 32, u.first = 1, u.last = 1;
    double t0 = now_s();
    for (int i = 0; i < calls; i++)
        g->kernel(&u);
    return 2.0 * g->mr * 32 * kfloats * (double)calls / (now_s() - t0) / 1e9;
}

int main(int argc, char **argv)
{
    int kt = 256, bursts = 30;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--kt") && i + 1 < argc)
            kt = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--bursts") && i + 1 < argc)
            bursts = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: bench_ukernel [--kt K (even, <= 4096)] [--bursts N]\n");
            return 2;
        }
    }
    if (kt < 2 || kt > 4096 || kt % 2) {
        fprintf(stderr, "bench_ukernel: --kt must be even, 2..4096\n");
        return 2;
    }
    if (fn_isa_detect() < FN_ISA_AVX512) {
        printf("bench_ukernel: no AVX-512 on this CPU\n");
        return 0;
    }
    int bf = fn_precision_check(FN_PRECISION_BF16, NULL) == FN_OK;
    int vn = fn_precision_check(FN_PRECISION_INT8, NULL) == FN_OK && kt % 4 == 0; /* int8: K in quads */
    int ax8 = vn && fn_amx_int8(), ax16 = bf && fn_amx_bf16();
    double best32 = 0, best16 = 0, best8 = 0, bestx8 = 0, bestx16 = 0;
    int calls = (int)(2e8 / (2.0 * 14 * 32 * kt)) + 1; /* ~0.2 GFLOP a burst (14 rows; AMX: 32, 2.3x) */
    for (int r = 0; r < bursts; r++) {
        double g32 = burst(&fn_gemm_avx512, kt, 0, calls);
        best32 = g32 > best32 ? g32 : best32;
        if (bf) {
            double g16 = burst(&fn_gemm_avx512bf16, kt, 1, calls);
            best16 = g16 > best16 ? g16 : best16;
        }
        if (vn) {
            double g8 = burst(&fn_gemm_avx512vnni, kt, 2, calls);
            best8 = g8 > best8 ? g8 : best8;
        }
        if (ax8) {
            double g8 = burst(&fn_gemm_amxint8, kt, 2, calls);
            bestx8 = g8 > bestx8 ? g8 : bestx8;
        }
        if (ax16) {
            double g16 = burst(&fn_gemm_amxbf16, kt, 1, calls);
            bestx16 = g16 > bestx16 ? g16 : bestx16;
        }
    }
    printf("micro-kernels 14x32 (AMX 32x32), K=%d, in cache, 1 thread, best of %d interleaved bursts:\n", kt, bursts);
    printf("  fp32 FMA       %7.1f GFLOP/s\n", best32);
    if (bf)
        printf("  bf16 vdpbf16ps %7.1f GFLOP/s  (%.2fx fp32)\n", best16, best16 / best32);
    else
        printf("  bf16: this CPU has no AVX512_BF16\n");
    if (vn)
        printf("  int8 vpdpbusd  %7.1f GOP/s    (%.2fx fp32)\n", best8, best8 / best32);
    else
        printf("  int8: this CPU has no AVX512_VNNI\n");
    if (ax8)
        printf("  int8 AMX tdpbusd    %7.1f GOP/s    (%.2fx fp32, %.2fx vpdpbusd)\n", bestx8, bestx8 / best32,
               bestx8 / best8);
    else
        printf("  int8 AMX: not on this CPU (or FRUITNET_AMX=0)\n");
    if (ax16)
        printf("  bf16 AMX tdpbf16ps  %7.1f GFLOP/s  (%.2fx fp32, %.2fx vdpbf16ps)\n", bestx16, bestx16 / best32,
               bestx16 / best16);
    else
        printf("  bf16 AMX: not on this CPU (or FRUITNET_AMX=0)\n");
    return 0;
}
