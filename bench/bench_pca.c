/*
 * bench_pca — fruitnet's streaming PCA fit on N x 2048 synthetic features
 * with a realistic decaying spectrum, against scikit-learn's PCA on the same
 * data (bench/pca_sklearn.py) in the same run. Only the fit is timed: rows are
 * generated into a file first, then both sides read that file.
 *
 * usage: bench_pca [--rows 90000] [--dim 2048] [--out bench/results] [--no-sklearn]
 *
 * scikit-learn runs in $FRUITNET_PYTHON (make bench: the venv's python, which has scikit-learn from PyPI
 * with its own OpenBLAS), else python3 from PATH.
 *
 * Rows are generated in chunks (x = sum_j sqrt(l_j) z_j v_j + noise with
 * l_j = 66 / j over 256 latent directions, small isotropic noise: about 50 components
 * reach 80%, as on the real Fruits-360 features), fed to fn_pca_stats_add and
 * written to a float32 file for scikit-learn; fruitnet never holds more than
 * one chunk, so its memory does not depend on the number of rows.
 */
#include "fruitnet.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static double unif(void)
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return ((rng >> 11) + 0.5) / 9007199254740992.0;
}
static double gauss(void) { return sqrt(-2 * log(unif())) * cos(6.283185307179586 * unif()); }
/* cheap approximately normal noise (Irwin-Hall of 4 uniforms), for the bulk of the values */
static float noise(void)
{
    uint64_t a = (rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17);
    float s = (float)(a & 0xffff) + (float)((a >> 16) & 0xffff) + (float)((a >> 32) & 0xffff) + (float)(a >> 48);
    return (s / 65536.0f - 2.0f) * 1.7320508f;
}

int main(int argc, char **argv)
{
    int rows = 90000, dim = 2048, latent = 256, use_sk = 1;
    const char *out = "bench/results";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--rows") && i + 1 < argc) rows = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--dim") && i + 1 < argc) dim = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--out") && i + 1 < argc) out = argv[++i];
        else if (!strcmp(argv[i], "--no-sklearn")) use_sk = 0;
        else {
            fprintf(stderr, "usage: bench_pca [--rows N] [--dim D] [--out DIR] [--no-sklearn]\n");
            return 2;
        }
    }
    /* latent basis: random unit vectors (nearly orthogonal in 2048-d) */
    float *V = malloc((size_t)latent * dim * sizeof(float));
    double *sl = malloc((size_t)latent * sizeof(double));
    for (int j = 0; j < latent; j++) {
        double n = 0;
        for (int i = 0; i < dim; i++) {
            float g = (float)gauss();
            V[(size_t)j * dim + i] = g;
            n += (double)g * g;
        }
        for (int i = 0; i < dim; i++)
            V[(size_t)j * dim + i] /= (float)sqrt(n);
        sl[j] = sqrt(66.0 * pow(j + 1, -1.0)); /* like the real features: l1 ~ 66, ~50 components for 80% */
    }
    const int CH = 1024;
    float *x = malloc((size_t)CH * dim * sizeof(float));
    char datapath[512];
    snprintf(datapath, sizeof datapath, "/tmp/fruitnet-bench-pca-%d.f32", (int)getpid());
    FILE *df = fopen(datapath, "wb");
    if (!df) {
        perror(datapath);
        return 1;
    }
    /* generate once to the file (timed separately), then time fruitnet streaming the file */
    for (int r0 = 0; r0 < rows; r0 += CH) {
        int n = rows - r0 < CH ? rows - r0 : CH;
        for (int r = 0; r < n; r++) {
            float *row = x + (size_t)r * dim;
            for (int i = 0; i < dim; i++)
                row[i] = 5.0f + 0.05f * noise();
            for (int j = 0; j < latent; j++) {
                float z = (float)(sl[j] * gauss());
                const float *v = V + (size_t)j * dim;
                for (int i = 0; i < dim; i++)
                    row[i] += z * v[i];
            }
        }
        if (df && fwrite(x, sizeof(float), (size_t)n * dim, df) != (size_t)n * dim) {
            perror(datapath);
            return 1;
        }
    }
    fclose(df);
    free(V);
    /* fruitnet: stream the same rows from the file, chunk by chunk */
    struct rusage ru0;
    getrusage(RUSAGE_SELF, &ru0);
    double t0 = now_s();
    fn_pca_stats *st;
    fn_error e;
    if (fn_pca_stats_new(dim, &st, &e) != FN_OK) {
        fprintf(stderr, "%s\n", e.msg);
        return 1;
    }
    FILE *in = fopen(datapath, "rb");
    if (!in) {
        perror(datapath);
        return 1;
    }
    for (int r0 = 0; r0 < rows; r0 += CH) {
        int n = rows - r0 < CH ? rows - r0 : CH;
        if (fread(x, sizeof(float), (size_t)n * dim, in) != (size_t)n * dim)
            return 1;
        if (fn_pca_stats_add(st, x, n, 0, &e) != FN_OK) {
            fprintf(stderr, "%s\n", e.msg);
            return 1;
        }
    }
    fclose(in);
    double t_stats = now_s() - t0;
    fn_pca_model *m;
    if (fn_pca_fit(st, 0, 0.80, &m, &e) != FN_OK) {
        fprintf(stderr, "%s\n", e.msg);
        return 1;
    }
    double t_fit = now_s() - t0;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double rss = ru.ru_maxrss / 1024.0;
    printf("fruitnet  rows=%d dim=%d k80=%d stats=%.2fs total=%.2fs peak_rss_mb=%.0f\n", rows, dim, fn_pca_model_k(m),
           t_stats, t_fit, rss);
    double sk_s = 0, sk_rss = 0;
    int sk_k = 0;
    if (use_sk) {
        char cmd[1024];
        const char *py = getenv("FRUITNET_PYTHON");
        snprintf(cmd, sizeof cmd, "'%s' bench/pca_sklearn.py '%s' %d %d", py && *py ? py : "python3", datapath, rows,
                 dim);
        FILE *p = popen(cmd, "r");
        char line[512];
        while (p && fgets(line, sizeof line, p)) {
            fputs(line, stdout);
            sscanf(line, "sklearn k80=%d seconds=%lf peak_rss_mb=%lf", &sk_k, &sk_s, &sk_rss);
        }
        if (p)
            pclose(p);
    }
    unlink(datapath);
    char path[512];
    snprintf(path, sizeof path, "%s/pca.md", out);
    FILE *md = fopen(path, "w");
    if (md) {
        fprintf(md, "# PCA fit: fruitnet vs scikit-learn (same data, same run)\n\n");
        fprintf(md, "%d x %d synthetic features (decaying spectrum), 80%% variance, 2 cores.\n\n", rows, dim);
        fprintf(md, "| | seconds | peak RSS (MB) | components for 80%% |\n|---|---:|---:|---:|\n");
        fprintf(md, "| fruitnet (stream + fit) | %.1f | %.0f | %d |\n", t_fit, rss, fn_pca_model_k(m));
        if (sk_s > 0)
            fprintf(md, "| scikit-learn PCA(0.8, svd_solver='full') | %.1f | %.0f | %d |\n| ratio | **%.1fx faster** | %.1fx less | |\n",
                    sk_s, sk_rss, sk_k, sk_s / t_fit, sk_rss / rss);
        fclose(md);
    }
    if (sk_s > 0)
        printf("ratio: fruitnet %.1fx faster, %.1fx less memory\n", sk_s / t_fit, sk_rss / rss);
    fn_pca_model_free(m);
    fn_pca_stats_free(st);
    free(x);
    free(sl);
    return 0;
}
