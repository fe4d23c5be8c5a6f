/*
 * bench_peak — this CPU's arithmetic ceilings, per core and for T threads: how many multiply-adds per
 * second the vector units can retire when nothing but the instruction under test runs, with enough
 * independent accumulators (24 zmm, 12 ymm) to cover its latency. These tell what each precision can gain at all:
 * bf16 (vdpbf16ps, 2 products per 32-bit lane) beats fp32 (vfmadd231ps) only if the CPU issues it at the
 * FMA's rate.
 *
 *   fma_ymm   vfmadd231ps ymm   (AVX2+FMA)      8 lanes x 2 flop
 *   fma_zmm   vfmadd231ps zmm   (AVX-512F)     16 lanes x 2 flop
 *   bf16_zmm  vdpbf16ps zmm     (AVX512_BF16)  32 bf16 products x 2 flop
 *   vnni_ymm  vpdpbusd ymm      (AVX-VNNI or AVX512_VNNI+VL) 32 u8*s8 products x 2 op
 *   vnni_zmm  vpdpbusd zmm      (AVX512_VNNI)  64 u8*s8 products x 2 op
 *
 * Instructions the CPU (CPUID, and the OS's XSAVE state) lacks are skipped with a message. The clock is
 * estimated with a chain of dependent integer adds (1 cycle each), so each figure is also given per cycle
 * and core: an instruction issued on 2 ports at full width shows as 2 instructions per cycle.
 *
 * Times are each thread's CPU time (CLOCK_THREAD_CPUTIME_ID), so the figures hold on a loaded machine as
 * long as the cores themselves are not shared (another process on the SMT sibling still slows them).
 *
 * usage: bench_peak [--threads T] [--ms M] [--out FILE.md]
 * stdout: one `peak kind=.. threads=.. gops=.. per_core_per_cycle=.. ghz=..` line per measure, then the
 * markdown table (also written to FILE.md).
 */
#include <stdint.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* This thread's CPU time: on a shared machine a thread that waits for a core does not count that wait. */
static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* independent accumulators: zmm code has 32 registers, ymm code (VEX) 16; both cover latency x 2 ports */
#define ACC_Z 24
#define ACC_Y 12

/* Each loop runs `iters` x acc instructions of one kind on acc independent accumulators, written in
 * assembly so that the compiler can neither spill the accumulators nor add moves between them (it does
 * both with intrinsics): zmm0..zmm23 (ymm0..ymm11) accumulate, zmm30/zmm31 (ymm14/ymm15) are the
 * operands, all set from broadcast 32-bit patterns. */
#define IRP_Z ".irp r,0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23\n\t"
#define IRP_Y ".irp r,0,1,2,3,4,5,6,7,8,9,10,11\n\t"
#define CLOB_Z "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", \
               "xmm12", "xmm13", "xmm14", "xmm15", "xmm16", "xmm17", "xmm18", "xmm19", "xmm20", "xmm21", "xmm22", \
               "xmm23", "xmm30", "xmm31", "cc"
#define CLOB_Y "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", \
               "xmm14", "xmm15", "cc"
#define LOOP_Z(insn)                                                                                        \
    __asm__ volatile("vpbroadcastd %1, %%zmm30\n\t"                                                        \
                     "vpbroadcastd %2, %%zmm31\n\t" IRP_Z "vmovdqa32 %%zmm31, %%zmm\\r\n\t.endr\n"       \
                     "1:\n\t" IRP_Z insn " %%zmm30, %%zmm31, %%zmm\\r\n\t.endr\n\t"                      \
                     "dec %0\n\tjnz 1b"                                                                     \
                     : "+r"(iters)                                                                          \
                     : "m"(x), "m"(y)                                                                       \
                     : CLOB_Z)
#define LOOP_Y(insn)                                                                                        \
    __asm__ volatile("vpbroadcastd %1, %%ymm14\n\t"                                                        \
                     "vpbroadcastd %2, %%ymm15\n\t" IRP_Y "vmovdqa %%ymm15, %%ymm\\r\n\t.endr\n"         \
                     "1:\n\t" IRP_Y insn " %%ymm14, %%ymm15, %%ymm\\r\n\t.endr\n\t"                      \
                     "dec %0\n\tjnz 1b"                                                                     \
                     : "+r"(iters)                                                                          \
                     : "m"(x), "m"(y)                                                                       \
                     : CLOB_Y)

__attribute__((target("avx2,fma"))) static float loop_fma_ymm(long iters)
{
    float x = 0.999999f, y = 1e-7f;
    LOOP_Y("vfmadd231ps");
    return (float)iters;
}

__attribute__((target("avx512f"))) static float loop_fma_zmm(long iters)
{
    float x = 0.999999f, y = 1e-7f;
    LOOP_Z("vfmadd231ps");
    return (float)iters;
}

__attribute__((target("avx512f,avx512bf16"))) static float loop_bf16_zmm(long iters)
{
    uint32_t x = 0x3f803f80u, y = 0x33803380u; /* bf16 pairs (1, 1) and (~6e-8, ~6e-8) */
    LOOP_Z("vdpbf16ps");
    return (float)iters;
}

__attribute__((target("avx512f,avx512vnni"))) static float loop_vnni_zmm(long iters)
{
    uint32_t x = 0x03030303u, y = 0xfefefefeu; /* u8 3 and s8 -2 */
    LOOP_Z("vpdpbusd");
    return (float)iters;
}

/* The 256-bit vpdpbusd: VEX (AVX-VNNI) or EVEX (AVX512_VNNI+VL), whichever the CPU has. */
__attribute__((target("avx2,avxvnni"))) static float loop_vnni_ymm_vex(long iters)
{
    uint32_t x = 0x03030303u, y = 0xfefefefeu;
    LOOP_Y("%{vex%} vpdpbusd"); /* %{ %}: braces escaped in asm templates */
    return (float)iters;
}

__attribute__((target("avx512f,avx512vl,avx512vnni"))) static float loop_vnni_ymm_evex(long iters)
{
    uint32_t x = 0x03030303u, y = 0xfefefefeu;
    LOOP_Y("vpdpbusd");
    return (float)iters;
}

/* 64 dependent 1-cycle register-register integer adds per iteration: iterations x 64 / seconds = the core
 * clock. (Not add-immediate: recent cores fold chains of those at rename, faster than 1 a cycle.) */
static float loop_clock(long iters)
{
    unsigned long x = 0, one = 1;
    for (long it = 0; it < iters; it++)
        __asm__ volatile(".rept 64\n\taddq %1, %0\n\t.endr" : "+r"(x) : "r"(one));
    return (float)x;
}

typedef struct kind {
    const char *name, *insn, *needs;
    double ops_per_insn; /* flops (or int ops) per instruction: 2 per multiply-add */
    int have, acc; /* acc: instructions per loop iteration */
    float (*loop)(long);
} kind;

typedef struct job {
    float (*loop)(long);
    long iters;
    double seconds;
    volatile float sink;
    pthread_barrier_t *start;
} job;

static void *run_job(void *p)
{
    job *j = p;
    pthread_barrier_wait(j->start);
    double t0 = now_s();
    j->sink = j->loop(j->iters);
    j->seconds = now_s() - t0;
    return NULL;
}

/* Instructions per second of `loop` (per_iter instructions per iteration: 64 adds for loop_clock) summed over
 * `threads` threads running it at once; the best of 5 repeats (the machine may be shared). */
static double rate(float (*loop)(long), int threads, long iters, double per_iter)
{
    double best = 0;
    for (int rep = 0; rep < 5; rep++) {
        pthread_t t[64];
        job j[64];
        pthread_barrier_t bar;
        pthread_barrier_init(&bar, NULL, (unsigned)threads);
        for (int i = 0; i < threads; i++) {
            j[i] = (job){loop, iters, 0, 0, &bar};
            if (pthread_create(&t[i], NULL, run_job, &j[i]) != 0) {
                fprintf(stderr, "bench_peak: cannot start thread %d\n", i);
                exit(1);
            }
        }
        double sum = 0;
        for (int i = 0; i < threads; i++) {
            pthread_join(t[i], NULL);
            sum += per_iter * (double)iters / j[i].seconds;
        }
        pthread_barrier_destroy(&bar);
        if (sum > best)
            best = sum;
    }
    return best;
}

/* Iterations that take about `ms` milliseconds on one thread. */
static long calibrate(float (*loop)(long), double ms)
{
    long n = 1000;
    for (;;) {
        double t0 = now_s();
        volatile float s = loop(n);
        (void)s;
        double dt = now_s() - t0;
        if (dt > 0.02 || n > (1L << 40))
            return (long)((double)n * ms * 1e-3 / (dt > 0 ? dt : 1e-6)) + 1;
        n *= 4;
    }
}

int main(int argc, char **argv)
{
    int threads = 2;
    double ms = 300;
    const char *out = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--ms") && i + 1 < argc)
            ms = atof(argv[++i]);
        else if (!strcmp(argv[i], "--out") && i + 1 < argc)
            out = argv[++i];
        else {
            fprintf(stderr, "usage: bench_peak [--threads T] [--ms M] [--out FILE.md]\n");
            return 2;
        }
    }
    if (threads < 1 || threads > 64 || ms < 1) {
        fprintf(stderr, "bench_peak: threads 1..64, ms >= 1\n");
        return 2;
    }
    __builtin_cpu_init();
    int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    int avx512 = __builtin_cpu_supports("avx512f");
    int vnni512 = avx512 && __builtin_cpu_supports("avx512vnni");
    int vnni256 = avx2 && __builtin_cpu_supports("avxvnni");
    kind kinds[] = {
        {"fma_ymm", "vfmadd231ps ymm", "AVX2+FMA", 16, avx2, ACC_Y, loop_fma_ymm},
        {"fma_zmm", "vfmadd231ps zmm", "AVX-512F", 32, avx512, ACC_Z, loop_fma_zmm},
        {"bf16_zmm", "vdpbf16ps zmm", "AVX512_BF16", 64, avx512 && __builtin_cpu_supports("avx512bf16"), ACC_Z, loop_bf16_zmm},
        {"vnni_ymm", "vpdpbusd ymm", "AVX-VNNI or AVX512_VNNI+VL", 64,
         vnni256 || (vnni512 && __builtin_cpu_supports("avx512vl")), ACC_Y, vnni256 ? loop_vnni_ymm_vex : loop_vnni_ymm_evex},
        {"vnni_zmm", "vpdpbusd zmm", "AVX512_VNNI", 128, vnni512, ACC_Z, loop_vnni_zmm},
    };
    enum { NK = sizeof kinds / sizeof kinds[0] };
    long ci = calibrate(loop_clock, ms);
    double ghz1 = rate(loop_clock, 1, ci, 64) / 1e9, ghzt = rate(loop_clock, threads, ci, 64) / 1e9;
    printf("peak kind=clock threads=1 ghz=%.2f\npeak kind=clock threads=%d ghz=%.2f\n", ghz1, threads, ghzt);
    double g[NK][2] = {{0}};
    for (int k = 0; k < NK; k++) {
        if (!kinds[k].have) {
            printf("bench_peak: %s skipped: this CPU has no %s\n", kinds[k].insn, kinds[k].needs);
            continue;
        }
        long it = calibrate(kinds[k].loop, ms);
        for (int t = 0; t < 2; t++) {
            int n = t ? threads : 1;
            double ips = rate(kinds[k].loop, n, it, kinds[k].acc);
            g[k][t] = ips * kinds[k].ops_per_insn / 1e9;
            printf("peak kind=%s threads=%d gops=%.1f per_core_per_cycle=%.2f ghz=%.2f\n", kinds[k].name, n,
                   g[k][t], ips / n / ((t ? ghzt / threads : ghz1) * 1e9), t ? ghzt / threads : ghz1);
        }
    }
    FILE *f = out ? fopen(out, "w") : NULL;
    if (out && !f) {
        fprintf(stderr, "bench_peak: cannot write %s\n", out);
        return 1;
    }
    FILE *os[2] = {stdout, f};
    for (int o = 0; o < 2; o++) {
        if (!os[o])
            continue;
        fprintf(os[o], "| instruction | ops / instruction | 1 thread GOP/s | %d threads GOP/s | instructions / cycle / core (1 thread) |\n"
                       "|---|---:|---:|---:|---:|\n", threads);
        for (int k = 0; k < NK; k++) {
            if (!kinds[k].have)
                fprintf(os[o], "| %s | %.0f | (no %s) | | |\n", kinds[k].insn, kinds[k].ops_per_insn, kinds[k].needs);
            else
                fprintf(os[o], "| %s | %.0f | %.1f | %.1f | %.2f |\n", kinds[k].insn, kinds[k].ops_per_insn, g[k][0],
                        g[k][1], g[k][0] / kinds[k].ops_per_insn / ghz1);
        }
        fprintf(os[o], "\nClock (dependent integer adds): %.2f GHz on 1 thread, %.2f GHz per core on %d. "
                       "GOP/s: 2 per multiply-add (flops for fp32 and bf16, integer ops for u8*s8); %d (zmm) or %d (ymm) "
                       "independent accumulators per thread; best of 5 repeats of ~%.0f ms of each thread's CPU time.\n", ghz1, ghzt / threads, threads, ACC_Z, ACC_Y, ms);
    }
    if (f && fclose(f) != 0) {
        fprintf(stderr, "bench_peak: cannot write %s\n", out);
        return 1;
    }
    return 0;
}
