/* fruitnet-convert — TF.js layers model -> fruitnet weight file (.fnw); --info describes a .fnw. */
#include "fruitnet.h"

#include <stdio.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f, "usage: fruitnet-convert --model model.json --labels labels.json [--integrity SRI] -o out.fnw\n"
               "       fruitnet-convert --info file.fnw\n"
               "       fruitnet-convert --calibrate IMAGES --weights in.fnw -o out.fnw\n"
               "       fruitnet-convert --help | --version\n"
               "Converts a TF.js layers model (Keras ResNet50: model.json + weight shards beside it)\n"
               "and its labels.json into fruitnet's weight file, folding batch norm into the\n"
               "convolutions (written atomically). --integrity records the npm tarball's sha512\n"
               "in the file's metadata. --info validates a weight file (all CRCs) and prints its\n"
               "header, tensor table and metadata. --calibrate runs in.fnw's float32 network on\n"
               "IMAGES (a folder, file or @list) and writes out.fnw (may be in.fnw) with the int8\n"
               "activation scales that --precision int8 needs (weights/README.md).\n"
               "Example: fruitnet-convert --model package/ResNet50/model.json \\\n"
               "           --labels package/assets/labels.json -o weights/resnet50.fnw\n"
               "Exit status: 0 ok, 1 error, 2 usage.\n");
}

static unsigned long long le(const unsigned char *p, int n)
{
    unsigned long long v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static int info(const char *path, int verbose)
{
    fn_weights *w;
    fn_error e;
    if (fn_weights_open(path, &w, &e) != FN_OK) {
        fprintf(stderr, "fruitnet-convert: %s (%s)\n", e.msg, fn_status_name(e.code));
        return 1;
    }
    int n = fn_weights_count(w);
    long long floats = 0, bytes = 0;
    for (int i = 0; i < n; i++) {
        const fn_wtensor *t = fn_weights_at(w, i);
        floats += t->dtype == FN_DTYPE_F32 ? t->count : 0;
        bytes += t->count * (t->dtype == FN_DTYPE_F32 ? 4 : 1);
    }
    printf("%s: %d tensors, %lld float32 values (%lld tensor bytes), data CRC32 %08x\n", path, n, floats, bytes,
           fn_weights_crc32(w));
    if (verbose) {
        unsigned char h[64];
        FILE *f = fopen(path, "rb"); /* already validated: just show the header fields */
        if (f && fread(h, 1, 64, f) == 64) {
            printf("header: magic %.8s, version %llu, tensors %llu, table %llu+%llu, data %llu+%llu,\n"
                   "        data_crc32 %08llx, table_crc32 %08llx, header_crc32 %08llx\n",
                   (const char *)h, le(h + 8, 4), le(h + 12, 4), le(h + 16, 8), le(h + 24, 8), le(h + 32, 8),
                   le(h + 40, 8), le(h + 48, 4), le(h + 52, 4), le(h + 56, 4));
        }
        if (f)
            fclose(f);
        printf("tensors:\n");
        for (int i = 0; i < n; i++) {
            const fn_wtensor *t = fn_weights_at(w, i);
            char shape[96] = "";
            size_t l = 0;
            for (int d = 0; d < t->ndim && l < sizeof shape; d++)
                l += (size_t)snprintf(shape + l, sizeof shape - l, "%s%lld", d ? "," : "", (long long)t->shape[d]);
            printf("  %3d %-28s %s [%s]\n", i, t->name, t->dtype == FN_DTYPE_F32 ? "f32" : "u8 ", shape);
        }
        const fn_wtensor *m = fn_weights_find(w, "meta");
        if (m && m->dtype == FN_DTYPE_U8)
            printf("meta:\n%.*s", (int)m->count, (const char *)m->data);
    }
    fn_weights_close(w);
    return 0;
}

int main(int argc, char **argv)
{
    const char *model = NULL, *labels = NULL, *out = NULL, *integ = NULL, *calib = NULL, *weights = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "-V") || !strcmp(argv[i], "--version")) {
            printf("fruitnet-convert %s (.fnw format version 1)\n", FRUITNET_VERSION);
            return 0;
        } else if (!strcmp(argv[i], "--info") && i + 1 < argc) {
            return info(argv[i + 1], 1);
        } else if (!strcmp(argv[i], "--model") && i + 1 < argc) {
            model = argv[++i];
        } else if (!strcmp(argv[i], "--labels") && i + 1 < argc) {
            labels = argv[++i];
        } else if (!strcmp(argv[i], "--calibrate") && i + 1 < argc) {
            calib = argv[++i];
        } else if (!strcmp(argv[i], "--weights") && i + 1 < argc) {
            weights = argv[++i];
        } else if (!strcmp(argv[i], "--integrity") && i + 1 < argc) {
            integ = argv[++i];
        } else if ((!strcmp(argv[i], "-o") || !strcmp(argv[i], "--output")) && i + 1 < argc) {
            out = argv[++i];
        } else {
            fprintf(stderr, "fruitnet-convert: unexpected argument '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    fn_error e;
    if (calib) {
        if (!weights || !out || model || labels) {
            usage(stderr);
            return 2;
        }
        if (fn_weights_calibrate_int8(weights, calib, out, 0, &e) != FN_OK) {
            fprintf(stderr, "fruitnet-convert: %s (%s)\n", e.msg, fn_status_name(e.code));
            return 1;
        }
        return info(out, 0);
    }
    if (!model || !labels || !out) {
        usage(stderr);
        return 2;
    }
    if (fn_convert_tfjs(model, labels, integ, out, &e) != FN_OK) {
        fprintf(stderr, "fruitnet-convert: %s (%s)\n", e.msg, fn_status_name(e.code));
        return 1;
    }
    return info(out, 0);
}
