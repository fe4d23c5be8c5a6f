/* testutil.c — helpers shared by the tests. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

void *tu_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 1 << 16, n = 0;
    unsigned char *buf = malloc(cap);
    for (;;) {
        if (n == cap) {
            cap *= 2;
            buf = realloc(buf, cap);
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        if (got == 0)
            break;
        n += got;
    }
    fclose(f);
    if (len)
        *len = n;
    return buf;
}

float *tu_read_f32(const char *path, size_t count)
{
    size_t len = 0;
    float *p = tu_read_file(path, &len);
    if (p && len != count * sizeof(float)) {
        free(p);
        return NULL;
    }
    return p;
}

const char *tu_path(const char *dir, const char *rel)
{
    static char buf[8][4096];
    static int k;
    char *b = buf[k++ & 7];
    snprintf(b, 4096, "%s/%s", dir, rel);
    return b;
}

static const char *data_dir(const char *env, const char *dflt)
{
    const char *p = getenv(env);
    if (!p || !*p)
        p = dflt;
    struct stat st;
    if (stat(p, &st) == 0)
        return p;
    const char *req = getenv("FRUITNET_REQUIRE_DATA");
    if (req && strcmp(req, "1") == 0)
        fail_msg("%s (%s) not found and FRUITNET_REQUIRE_DATA=1", env, p);
    return NULL;
}

const char *tu_golden_dir(void) { return data_dir("FRUITNET_GOLDEN", "../shared/golden"); }
const char *tu_sample_dir(void) { return data_dir("FRUITNET_SAMPLE", "../shared/data/fruits-360-sample"); }
const char *tu_weights_path(void) { return data_dir("FRUITNET_WEIGHTS", "weights/resnet50.fnw"); }

double tu_max_abs(const float *a, const float *b, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (d > m || d != d)
            m = d;
    }
    return m;
}

double tu_rel_l2(const float *a, const float *ref, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - (double)ref[i];
        num += d * d;
        den += (double)ref[i] * ref[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

double tu_cosine(const float *a, const float *b, size_t n)
{
    double ab = 0, aa = 0, bb = 0;
    for (size_t i = 0; i < n; i++) {
        ab += (double)a[i] * b[i];
        aa += (double)a[i] * a[i];
        bb += (double)b[i] * b[i];
    }
    return (aa > 0 && bb > 0) ? ab / sqrt(aa * bb) : 0.0;
}

void tu_fill_random(float *x, size_t n, uint64_t seed, float lo, float hi)
{
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < n; i++) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        x[i] = lo + (hi - lo) * (float)((s >> 40) * (1.0 / 16777216.0));
    }
}

int tu_decoder_is_pil(void) { return strncmp(fn_image_decoder_name(), "libjpeg", 7) == 0; }

int tu_supported_isas(fn_isa out[3])
{
    fn_isa best = fn_isa_detect();
    int n = 0;
    for (int i = FN_ISA_PORTABLE; i <= (int)best; i++)
        out[n++] = (fn_isa)i;
    return n;
}
