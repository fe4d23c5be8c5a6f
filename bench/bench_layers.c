/*
 * bench_layers — `make bench`: per-layer performance of the ResNet50 forward
 * pass, against this machine's measured FMA peak, and ONNX Runtime on the
 * same weights and inputs in the same run (bench/run_peer.sh).
 *
 * The machine is shared and noisy, so the comparison is made in rounds: each
 * round times fruitnet (batch N, then batch 1) and then ONNX Runtime (batch 1
 * and N) back to back; the ratio reported is the median of the rounds'
 * ratios, and every round's ratio is printed.
 *
 * usage: bench_layers --weights W [--out DIR] [--threads N] [--batch N]
 *                     [--iters N] [--rounds R] [--isa I] [--precision fp32|bf16] [--no-peer]
 */
#include "fruitnet.h"

#include <immintrin.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define IN_FLOATS ((size_t)224 * 224 * 3)

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---------------------------------------------------------------- FMA peak */

#define FMA_ITERS 20000000L
__attribute__((target("avx512f"))) static double fma_loop_avx512(void)
{
    __m512 a[12], b = _mm512_set1_ps(1.0000001f), c = _mm512_set1_ps(1e-7f);
    for (int i = 0; i < 12; i++)
        a[i] = _mm512_set1_ps((float)i);
    for (long it = 0; it < FMA_ITERS / 12; it++)
        for (int i = 0; i < 12; i++)
            a[i] = _mm512_fmadd_ps(a[i], b, c);
    float s = 0;
    for (int i = 0; i < 12; i++)
        s += _mm512_reduce_add_ps(a[i]);
    return s;
}

__attribute__((target("avx2,fma"))) static double fma_loop_avx2(void)
{
    __m256 a[12], b = _mm256_set1_ps(1.0000001f), c = _mm256_set1_ps(1e-7f);
    for (int i = 0; i < 12; i++)
        a[i] = _mm256_set1_ps((float)i);
    for (long it = 0; it < FMA_ITERS / 12; it++)
        for (int i = 0; i < 12; i++)
            a[i] = _mm256_fmadd_ps(a[i], b, c);
    float t[8], s = 0;
    for (int i = 0; i < 12; i++) {
        _mm256_storeu_ps(t, a[i]);
        for (int j = 0; j < 8; j++)
            s += t[j];
    }
    return s;
}

typedef struct peak_arg {
    fn_isa isa;
    double gflops;
    volatile double sink;
} peak_arg;

static void *peak_thread(void *p)
{
    peak_arg *a = p;
    double t0 = now_s();
    int lanes;
    if (a->isa == FN_ISA_AVX512)
        a->sink = fma_loop_avx512(), lanes = 16;
    else
        a->sink = fma_loop_avx2(), lanes = 8;
    a->gflops = 2.0 * lanes * (double)(FMA_ITERS / 12 * 12) / (now_s() - t0) / 1e9;
    return NULL;
}

/* Aggregate FMA peak of nthreads threads for the ISA (0 for portable: no SIMD peak). */
static double measure_peak(fn_isa isa, int nthreads)
{
    if (isa == FN_ISA_PORTABLE)
        isa = fn_isa_detect() >= FN_ISA_AVX2 ? FN_ISA_AVX2 : FN_ISA_PORTABLE;
    if (isa == FN_ISA_PORTABLE)
        return 0;
    double best = 0;
    for (int rep = 0; rep < 3; rep++) {
        pthread_t t[64];
        peak_arg a[64];
        for (int i = 0; i < nthreads; i++) {
            a[i].isa = isa;
            pthread_create(&t[i], NULL, peak_thread, &a[i]);
        }
        double sum = 0;
        for (int i = 0; i < nthreads; i++) {
            pthread_join(t[i], NULL);
            sum += a[i].gflops;
        }
        if (sum > best)
            best = sum;
    }
    return best;
}

/* ---------------------------------------------------------------- helpers */

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Median of x[0..n-1] (n <= 64, x left as it is). */
static double median(const double *x, int n)
{
    double v[64];
    memcpy(v, x, sizeof(double) * (size_t)n);
    qsort(v, (size_t)n, sizeof(double), cmp_d);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static void cpu_model(char *buf, size_t n)
{
    snprintf(buf, n, "unknown CPU");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f)
        return;
    char line[512];
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "model name", 10)) {
            char *c = strchr(line, ':');
            if (c) {
                c += 2;
                c[strcspn(c, "\n")] = 0;
                snprintf(buf, n, "%s", c);
            }
            break;
        }
    fclose(f);
}

static double peak_rss_mb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss / 1024.0;
}

static void fill_inputs(float *x, int n)
{
    const char *g = getenv("FRUITNET_GOLDEN");
    static const char *names[8] = {"g0_banana",     "g1_apple_braeburn", "g2_lemon", "g3_pineapple",
                                   "g4_strawberry", "g5_cocos",          "g6_kiwi",  "g7_tomato_1"};
    for (int i = 0; i < n; i++) {
        char p[4096];
        int ok = 0;
        if (g) {
            snprintf(p, sizeof p, "%s/img8/%s.input.f32", g, names[i % 8]);
            FILE *f = fopen(p, "rb");
            if (f) {
                ok = fread(x + (size_t)i * IN_FLOATS, sizeof(float), IN_FLOATS, f) == IN_FLOATS;
                fclose(f);
            }
        }
        if (!ok) { /* deterministic pseudo-image */
            uint32_t s = 12345u + (uint32_t)i;
            for (size_t k = 0; k < IN_FLOATS; k++) {
                s = s * 1664525u + 1013904223u;
                x[(size_t)i * IN_FLOATS + k] = (float)(s >> 24) - 120.0f;
            }
        }
    }
}

typedef struct peer {
    int have;
    double ms, img_s, rss;
} peer;

static void run_peer(peer *p1, peer *p32, int threads, int batch)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "bash bench/run_peer.sh --threads %d --batch %d 2>bench/results/peer.log", threads,
             batch);
    FILE *f = popen(cmd, "r");
    if (!f)
        return;
    char line[1024];
    while (fgets(line, sizeof line, f)) {
        int b = 0;
        double ms = 0, ims = 0, rss = 0;
        const char *s;
        if (strncmp(line, "ort ", 4) != 0)
            continue;
        if ((s = strstr(line, "batch=")))
            b = atoi(s + 6);
        if ((s = strstr(line, "ms_per_batch=")))
            ms = atof(s + 13);
        if ((s = strstr(line, "img_per_s=")))
            ims = atof(s + 10);
        if ((s = strstr(line, "peak_rss_mb=")))
            rss = atof(s + 12);
        peer *p = b == 1 ? p1 : b == batch ? p32 : NULL;
        if (p)
            p->have = 1, p->ms = ms, p->img_s = ims, p->rss = rss;
    }
    pclose(f);
}

/* ---------------------------------------------------------------- main */

int main(int argc, char **argv)
{
    const char *weights = "weights/resnet50.fnw", *outdir = "bench/results";
    int threads = 2, batch = 32, iters = 3, rounds = 3, use_peer = 1;
    fn_isa isa = FN_ISA_AUTO;
    fn_precision prec = FN_PRECISION_FP32;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--weights") && i + 1 < argc)
            weights = argv[++i];
        else if (!strcmp(argv[i], "--out") && i + 1 < argc)
            outdir = argv[++i];
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc)
            batch = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--iters") && i + 1 < argc)
            iters = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--rounds") && i + 1 < argc)
            rounds = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--isa") && i + 1 < argc) {
            if (fn_isa_parse(argv[++i], &isa) != FN_OK) {
                fprintf(stderr, "bench_layers: bad --isa\n");
                return 2;
            }
        } else if (!strcmp(argv[i], "--precision") && i + 1 < argc) {
            if (fn_precision_parse(argv[++i], &prec) != FN_OK) {
                fprintf(stderr, "bench_layers: --precision: expected fp32 or bf16\n");
                return 2;
            }
        } else if (!strcmp(argv[i], "--no-peer"))
            use_peer = 0;
        else {
            fprintf(stderr, "usage: bench_layers --weights W [--out DIR] [--threads N] [--batch N] [--iters N] "
                            "[--rounds R] [--isa I] [--precision fp32|bf16] [--no-peer]\n");
            return 2;
        }
    }
    if (threads < 1 || batch < 1 || iters < 1 || rounds < 1 || rounds > 64) {
        fprintf(stderr, "bench_layers: threads, batch and iters must be >= 1, rounds 1..64\n");
        return 2;
    }
    fn_error err;
    fn_model_options o;
    fn_model_options_default(&o);
    o.threads = threads;
    o.max_batch = batch;
    o.isa = isa;
    o.precision = prec;
    fn_model *m;
    if (fn_model_open(weights, &o, &m, &err) != FN_OK) {
        fprintf(stderr, "bench_layers: %s\n", err.msg);
        return 1;
    }
    fn_isa used = fn_model_isa(m);
    char cpu[256];
    cpu_model(cpu, sizeof cpu);
    double peak = measure_peak(used, threads);

    float *in = malloc((size_t)batch * IN_FLOATS * sizeof(float));
    float *feat = malloc((size_t)batch * FN_FEATURE_DIM * sizeof(float));
    fill_inputs(in, batch);

    /* rounds: batch N (iters timed passes, per-layer profiling accumulated over all rounds), batch 1
     * (4 * iters passes), then the peer; each side's figure of a round is the median of its passes */
    fn_model_features(m, in, batch, feat, &err); /* warm-up */
    fn_model_profile_enable(m, 1);
    const int it1 = iters * 4;
    double *tb = calloc((size_t)iters, sizeof(double)), *t1 = calloc((size_t)it1, sizeof(double));
    double r_ims[64], r_lat[64], rss_batch = 0;
    peer r_p1[64], r_pb[64];
    fn_model_options o1 = o;
    o1.max_batch = 1;
    for (int r = 0; r < rounds; r++) {
        for (int it = 0; it < iters; it++) {
            double t0 = now_s();
            fn_model_features(m, in, batch, feat, &err);
            tb[it] = now_s() - t0;
        }
        if (r == 0)
            rss_batch = peak_rss_mb(); /* before the batch-1 model exists */
        qsort(tb, (size_t)iters, sizeof(double), cmp_d);
        r_ims[r] = batch / tb[iters / 2];
        fn_model *m1;
        if (fn_model_open(weights, &o1, &m1, &err) != FN_OK) {
            fprintf(stderr, "bench_layers: %s\n", err.msg);
            return 1;
        }
        fn_model_features(m1, in, 1, feat, &err);
        for (int it = 0; it < it1; it++) {
            double t0 = now_s();
            fn_model_features(m1, in, 1, feat, &err);
            t1[it] = now_s() - t0;
        }
        qsort(t1, (size_t)it1, sizeof(double), cmp_d);
        r_lat[r] = t1[it1 / 2];
        fn_model_close(m1);
        memset(&r_p1[r], 0, sizeof r_p1[r]);
        memset(&r_pb[r], 0, sizeof r_pb[r]);
        if (use_peer)
            run_peer(&r_p1[r], &r_pb[r], threads, batch);
        fprintf(stderr, "bench_layers: round %d/%d: fruitnet %.2f img/s, %.1f ms; ONNX Runtime %.2f img/s, %.1f ms\n",
                r + 1, rounds, r_ims[r], r_lat[r] * 1e3, r_pb[r].img_s, r_p1[r].ms);
    }
    const fn_layer_stats *st;
    int nl = fn_model_profile(m, &st);
    /* medians over the rounds: each side's figure, and the per-round ratios */
    double q_ims[64], q_lat[64];
    int nq = 0, nq1 = 0;
    peer p1 = {0}, pb = {0};
    for (int r = 0; r < rounds; r++) {
        if (r_pb[r].have)
            q_ims[nq++] = r_ims[r] / r_pb[r].img_s;
        if (r_p1[r].have)
            q_lat[nq1++] = r_p1[r].ms / (r_lat[r] * 1e3);
    }
    const double ims_med = median(r_ims, rounds), lat1 = median(r_lat, rounds);
    const double ratio_b = nq ? median(q_ims, nq) : 0, ratio_1 = nq1 ? median(q_lat, nq1) : 0;
    if (nq == rounds) {
        double a[64], rs[64];
        for (int r = 0; r < rounds; r++)
            a[r] = r_pb[r].img_s, rs[r] = r_pb[r].rss;
        pb.have = 1, pb.img_s = median(a, rounds), pb.rss = median(rs, rounds);
    }
    if (nq1 == rounds) {
        double a[64];
        for (int r = 0; r < rounds; r++)
            a[r] = r_p1[r].ms;
        p1.have = 1, p1.ms = median(a, rounds);
    }

    /* report */
    char path[4096];
    snprintf(path, sizeof path, "%s/bench.md", outdir);
    FILE *md = fopen(path, "w");
    FILE *outs[2] = {stdout, md};
    time_t now = time(NULL);
    char date[64];
    strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", gmtime(&now));
    double conv_flops = 0, conv_s = 0, tot_s = 0, dir_flops = 0, dir_s = 0;
    int ndir = 0;
    for (int l = 0; l < nl; l++) {
        tot_s += st[l].seconds;
        if (!strcmp(st[l].kind, "conv"))
            conv_flops += st[l].flops * st[l].calls, conv_s += st[l].seconds;
        if (!strcmp(st[l].kind, "conv") && !(st[l].kh == 3 && st[l].stride == 1)) /* never Winograd */
            dir_flops += st[l].flops * st[l].calls, dir_s += st[l].seconds, ndir++;
    }
    for (int k = 0; k < 2; k++) {
        FILE *f = outs[k];
        if (!f)
            continue;
        fprintf(f, "# fruitnet bench — %s\n\n", date);
        fprintf(f, "CPU: %s; fruitnet %s; ISA %s; precision %s; %d threads; batch %d; %d rounds of %d passes (layer "
                   "times: mean over all passes)\n\n", cpu, FRUITNET_VERSION, fn_isa_name(used),
                fn_precision_name(fn_model_precision(m)), threads, batch, rounds, iters);
        fprintf(f, "Measured FMA peak (%d threads): %.1f GFLOP/s\n\n", threads, peak);
        fprintf(f, "| layer | in (HxWxC) | out | k/s | GFLOP/img | ms/img | GFLOP/s | %% peak |\n");
        fprintf(f, "|---|---|---|---|---:|---:|---:|---:|\n");
        for (int l = 0; l < nl; l++) {
            double per = st[l].calls ? st[l].seconds / st[l].calls : 0;
            double gf = st[l].flops / 1e9, rate = per > 0 ? gf / per : 0;
            fprintf(f, "| %s | %dx%dx%d | %dx%dx%d | %dx%d/%d | %.3f | %.3f | %.1f | %s%.0f%s |\n", st[l].name,
                    st[l].in_h, st[l].in_w, st[l].in_c, st[l].out_h, st[l].out_w, st[l].out_c, st[l].kh, st[l].kw,
                    st[l].stride, gf, per * 1e3, rate, "", peak > 0 && gf > 0 ? 100 * rate / peak : 0, "");
        }
        double calls = st[0].calls ? (double)st[0].calls : 1;
        fprintf(f, "\n**Totals (batch %d):** convolutions %.2f GFLOP/img in %.2f ms/img = %.1f GFLOP/s = **%.0f%% of "
                   "peak**; all layers %.2f ms/img\n\n",
                batch, conv_flops / calls / 1e9, conv_s / calls * 1e3, conv_s > 0 ? conv_flops / conv_s / 1e9 : 0,
                peak > 0 && conv_s > 0 ? 100 * conv_flops / conv_s / 1e9 / peak : 0, tot_s / calls * 1e3);
        fprintf(f, "The 3x3 stride-1 layers run as Winograd F(2x2,3x3) or F(4x4,3x3) when the batch has tiles enough: "
                   "their FLOPs above are those of a direct convolution (2.25x to 4x the multiplications done), so "
                   "their %% of peak can pass 100. Without them, the other %d convolutions (1x1 and conv1, all direct): "
                   "%.2f GFLOP/img in %.2f ms/img = %.1f GFLOP/s = **%.0f%% of peak**.\n\n",
                ndir, dir_flops / calls / 1e9, dir_s / calls * 1e3, dir_s > 0 ? dir_flops / dir_s / 1e9 : 0,
                peak > 0 && dir_s > 0 ? 100 * dir_flops / dir_s / 1e9 / peak : 0);
        fprintf(f, "| | fruitnet | ONNX Runtime | ratio |\n|---|---:|---:|---:|\n");
        if (pb.have)
            fprintf(f, "| batch %d throughput (img/s) | %.2f | %.2f | %.2fx |\n", batch, ims_med, pb.img_s, ratio_b);
        else
            fprintf(f, "| batch %d throughput (img/s) | %.2f | n/a | |\n", batch, ims_med);
        if (p1.have)
            fprintf(f, "| batch 1 latency (ms) | %.1f | %.1f | %.2fx %s |\n", lat1 * 1e3, p1.ms,
                    ratio_1 >= 1 ? ratio_1 : 1 / ratio_1, ratio_1 >= 1 ? "faster" : "slower");
        else
            fprintf(f, "| batch 1 latency (ms) | %.1f | n/a | |\n", lat1 * 1e3);
        if (pb.have)
            fprintf(f, "| peak RSS, batch %d (MB) | %.0f | %.0f | %.2f |\n", batch, rss_batch, pb.rss, rss_batch / pb.rss);
        else
            fprintf(f, "| peak RSS, batch %d (MB) | %.0f | n/a | |\n", batch, rss_batch);
        if (pb.have && p1.have) {
            fprintf(f, "\nMedians of %d rounds, each timing fruitnet then ONNX Runtime back to back; the ratios are the "
                       "medians of the rounds' ratios. Rounds (batch %d img/s ratio; batch 1 speed-up):",
                    rounds, batch);
            for (int r = 0; r < rounds; r++)
                fprintf(f, "%s %.2fx; %.2fx", r ? "," : "", q_ims[r], q_lat[r]);
            fprintf(f, "\n");
        }
        if (!use_peer || !pb.have)
            fprintf(f, "\n(ONNX Runtime not measured: %s)\n",
                    use_peer ? "bench/run_peer.sh failed, see bench/results/peer.log" : "--no-peer");
    }
    if (md) {
        fclose(md);
        fprintf(stderr, "bench_layers: wrote %s\n", path);
    }
    free(tb);
    free(t1);
    free(in);
    free(feat);
    fn_model_close(m);
    return 0;
}
