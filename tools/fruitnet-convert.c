/* fruitnet-convert — TF.js layers model -> fruitnet weight file; --info shows a .fnw. */
#include "fruitnet.h"

#include <stdio.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f, "usage: fruitnet-convert --model model.json --labels labels.json [--integrity SRI] -o out.fnw\n"
               "       fruitnet-convert --info file.fnw\n"
               "Converts a TF.js layers model (Keras ResNet50: model.json + weight shards beside it)\n"
               "into fruitnet's weight file, folding batch norm into the convolutions.\n"
               "Example: fruitnet-convert --model package/ResNet50/model.json \\\n"
               "           --labels package/assets/labels.json -o weights/resnet50.fnw\n"
               "Exit status: 0 ok, 1 error, 2 usage.\n");
}

static int info(const char *path, int verbose)
{
    fn_weights *w;
    fn_error e;
    if (fn_weights_open(path, &w, &e) != FN_OK) {
        fprintf(stderr, "fruitnet-convert: %s\n", e.msg);
        return 1;
    }
    int n = fn_weights_count(w);
    long long floats = 0;
    for (int i = 0; i < n; i++) {
        const fn_wtensor *t = fn_weights_at(w, i);
        if (t->dtype == FN_DTYPE_F32)
            floats += t->count;
    }
    printf("%s: %d tensors, %lld float32 values, data CRC32 %08x\n", path, n, floats, fn_weights_crc32(w));
    for (int i = 0; verbose && i < n; i++) {
        const fn_wtensor *t = fn_weights_at(w, i);
        printf("  %-28s %s [", t->name, t->dtype == FN_DTYPE_F32 ? "f32" : "u8 ");
        for (int d = 0; d < t->ndim; d++)
            printf("%s%lld", d ? "," : "", (long long)t->shape[d]);
        printf("]\n");
    }
    const fn_wtensor *m = fn_weights_find(w, "meta");
    if (m && verbose)
        printf("meta:\n%.*s", (int)m->count, (const char *)m->data);
    fn_weights_close(w);
    return 0;
}

int main(int argc, char **argv)
{
    const char *model = NULL, *labels = NULL, *out = NULL, *integ = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "-V") || !strcmp(argv[i], "--version")) {
            printf("fruitnet-convert %s\n", FRUITNET_VERSION);
            return 0;
        } else if (!strcmp(argv[i], "--info") && i + 1 < argc) {
            return info(argv[++i], 1);
        } else if (!strcmp(argv[i], "--model") && i + 1 < argc) {
            model = argv[++i];
        } else if (!strcmp(argv[i], "--labels") && i + 1 < argc) {
            labels = argv[++i];
        } else if (!strcmp(argv[i], "--integrity") && i + 1 < argc) {
            integ = argv[++i];
        } else if (!strcmp(argv[i], "-o") && i + 1 < argc) {
            out = argv[++i];
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (!model || !labels || !out) {
        usage(stderr);
        return 2;
    }
    fn_error e;
    if (fn_convert_tfjs(model, labels, integ, out, &e) != FN_OK) {
        fprintf(stderr, "fruitnet-convert: %s\n", e.msg);
        return 1;
    }
    return info(out, 0);
}
