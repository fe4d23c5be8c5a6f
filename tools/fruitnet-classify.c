/* fruitnet-classify — photos -> fruit label and probability with a trained classifier (.fncls). */
#include "fruitnet.h"
#include "tool_weights.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>


static void usage(FILE *f)
{
    fprintf(f, "usage: fruitnet-classify --classifier MODEL.fncls [options] INPUT...\n"
               "Prints one line per image: path<TAB>label<TAB>probability (the top K pairs).\n"
               "INPUT: an image (JPEG/PNG), a folder (searched recursively), or @LIST (one path per\n"
               "line; @- reads stdin).\n"
               "  -c, --classifier FILE   model written by fruitnet-train (required)\n"
               "  -k, --top K             labels per image (default 1)\n"
               "      --min-probability P print 'unknown' when the top probability is below P\n"
               "      --json              one JSON object per line instead\n"
               "      --weights FILE      ResNet50 weights (default $FRUITNET_WEIGHTS, weights/resnet50.fnw,\n"
               "                          PREFIX/share/fruitnet/ of the tool's prefix, " FN_DEFAULT_WEIGHTS ")\n"
               "      --threads N         network threads (default: all CPUs)\n"
               "Example: fruitnet-classify --classifier fruits.fncls --top 3 Banana/108_100.jpg\n"
               "Exit status: 0 all images classified, 1 some failed (reported on stderr), 2 fatal.\n");
}

typedef struct list {
    char **v;
    int n, cap;
} list;

static void push(list *l, const char *s)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 64;
        l->v = realloc(l->v, (size_t)l->cap * sizeof(char *));
    }
    if (!l->v || !(l->v[l->n++] = strdup(s))) {
        fprintf(stderr, "fruitnet-classify: out of memory\n");
        exit(2);
    }
}

static int is_image(const char *name)
{
    const char *dot = strrchr(name, '.');
    return dot && (!strcasecmp(dot, ".jpg") || !strcasecmp(dot, ".jpeg") || !strcasecmp(dot, ".png"));
}

static int cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Images under dir, sorted; depth bounds symlink loops. */
static void walk(list *l, const char *dir, int depth)
{
    DIR *d = depth < 64 ? opendir(dir) : NULL;
    if (!d) {
        fprintf(stderr, "fruitnet-classify: %s: cannot open folder: %s\n", dir, depth < 64 ? strerror(errno) : "too deep");
        return;
    }
    list here = {0};
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.') {
            char p[4096];
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            push(&here, p);
        }
    closedir(d);
    if (here.n)
        qsort(here.v, (size_t)here.n, sizeof(char *), cmp);
    for (int i = 0; i < here.n; i++) {
        struct stat st;
        if (stat(here.v[i], &st) == 0 && S_ISDIR(st.st_mode))
            walk(l, here.v[i], depth + 1);
        else if (is_image(here.v[i]))
            push(l, here.v[i]);
        free(here.v[i]);
    }
    free(here.v);
}

static void json_str(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c < 0x20)
            printf("\\u%04x", c);
        else
            putchar(c);
    }
    putchar('"');
}

int main(int argc, char **argv)
{
    const char *model_path = NULL, *weights = NULL;
    int top = 1, json = 0, threads = 0;
    double minp = 0;
    list in = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        char *end = NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "-V") || !strcmp(a, "--version")) {
            printf("fruitnet-classify %s\n", FRUITNET_VERSION);
            return 0;
        } else if (!strcmp(a, "--json")) {
            json = 1;
        } else if ((!strcmp(a, "-c") || !strcmp(a, "--classifier")) && i + 1 < argc) {
            model_path = argv[++i];
        } else if (!strcmp(a, "--weights") && i + 1 < argc) {
            weights = argv[++i];
        } else if ((!strcmp(a, "-k") || !strcmp(a, "--top")) && i + 1 < argc) {
            top = (int)strtol(argv[++i], &end, 10);
        } else if (!strcmp(a, "--threads") && i + 1 < argc) {
            threads = (int)strtol(argv[++i], &end, 10);
        } else if (!strcmp(a, "--min-probability") && i + 1 < argc) {
            minp = strtod(argv[++i], &end);
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "fruitnet-classify: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        } else if (a[0] == '@') {
            FILE *f = strcmp(a + 1, "-") ? fopen(a + 1, "r") : stdin;
            if (!f) {
                fprintf(stderr, "fruitnet-classify: %s: cannot open list: %s\n", a + 1, strerror(errno));
                return 2;
            }
            char *line = NULL;
            size_t cap = 0;
            ssize_t len;
            while ((len = getline(&line, &cap, f)) >= 0) {
                while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
                    line[--len] = 0;
                if (len && line[0] != '#')
                    push(&in, line);
            }
            free(line);
            if (f != stdin)
                fclose(f);
        } else {
            struct stat st;
            if (stat(a, &st) == 0 && S_ISDIR(st.st_mode))
                walk(&in, a, 0);
            else
                push(&in, a); /* a missing file is reported when read */
        }
        if (end && *end) {
            fprintf(stderr, "fruitnet-classify: %s %s: not a number\n", a, argv[i]);
            return 2;
        }
    }
    if (!model_path || top < 1 || !(minp >= 0 && minp <= 1)) {
        usage(stderr);
        return 2;
    }
    weights = tool_weights(weights);
    fn_error e;
    fn_classifier *cl;
    if (fn_classifier_load(model_path, &cl, &e) != FN_OK) {
        fprintf(stderr, "fruitnet-classify: %s (%s)\n", e.msg, fn_status_name(e.code));
        return 2;
    }
    if (fn_classifier_dim(cl) != FN_FEATURE_DIM) {
        fprintf(stderr, "fruitnet-classify: %s: trained on %d-d features, not the network's %d\n", model_path,
                fn_classifier_dim(cl), FN_FEATURE_DIM);
        return 2;
    }
    fn_model_options mo;
    fn_model_options_default(&mo);
    mo.threads = threads, mo.max_batch = 1;
    fn_model *m;
    if (fn_model_open(weights, &mo, &m, &e) != FN_OK) {
        fprintf(stderr, "fruitnet-classify: %s (%s)\n", e.msg, fn_status_name(e.code));
        return 2;
    }
    const int K = fn_classifier_classes(cl);
    if (top > K)
        top = K;
    float *input = malloc((size_t)FN_INPUT_SIZE * FN_INPUT_SIZE * 3 * sizeof(float)), feat[FN_FEATURE_DIM];
    float *probs = malloc((size_t)K * sizeof(float)), *val = malloc((size_t)top * sizeof(float));
    int *idx = malloc((size_t)top * sizeof(int)), failed = 0;
    if (!input || !probs || !val || !idx) {
        fprintf(stderr, "fruitnet-classify: out of memory\n");
        return 2;
    }
    for (int i = 0; i < in.n; i++) {
        if (fn_input_from_file(in.v[i], FN_RESIZE_PIL, input, &e) != FN_OK ||
            fn_model_features(m, input, 1, feat, &e) != FN_OK ||
            fn_classifier_predict_proba(cl, feat, 1, probs, &e) != FN_OK) {
            fprintf(stderr, "fruitnet-classify: %s (%s)\n", e.msg, fn_status_name(e.code));
            failed++;
            continue;
        }
        fn_topk(probs, K, top, idx, val);
        if (json) {
            printf("{\"path\": ");
            json_str(in.v[i]);
            printf(", \"label\": ");
            json_str(val[0] < minp ? "unknown" : fn_classifier_class_name(cl, idx[0]));
            printf(", \"probability\": %.6f, \"top\": [", val[0]);
            for (int t = 0; t < top; t++) {
                printf("%s{\"label\": ", t ? ", " : "");
                json_str(fn_classifier_class_name(cl, idx[t]));
                printf(", \"probability\": %.6f}", val[t]);
            }
            printf("]}\n");
        } else {
            fputs(in.v[i], stdout);
            for (int t = 0; t < top; t++)
                printf("\t%s\t%.6f", t == 0 && val[0] < minp ? "unknown" : fn_classifier_class_name(cl, idx[t]),
                       val[t]);
            putchar('\n');
        }
        fflush(stdout);
    }
    for (int i = 0; i < in.n; i++)
        free(in.v[i]);
    free(in.v), free(input), free(probs), free(val), free(idx);
    fn_model_close(m);
    fn_classifier_free(cl);
    return failed ? 1 : 0;
}
