/* fruitnet-classify — photos -> fruit label and probability with a trained classifier (.fncls). */
#include "fruitnet.h"
#include "tool_weights.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
               "      --ood               print 'unknown' when the features are farther from every class\n"
               "                          mean than 99%% of the training photos (the model's threshold)\n"
               "      --json              one JSON object per line instead\n"
               "      --weights FILE      ResNet50 weights (default $FRUITNET_WEIGHTS, weights/resnet50.fnw,\n"
               "                          PREFIX/share/fruitnet/ of the tool's prefix, " FN_DEFAULT_WEIGHTS ")\n"
               "      --threads N         network threads (default: all CPUs)\n"
               "Example: fruitnet-classify --classifier fruits.fncls --top 3 Banana/108_100.jpg\n"
               "Exit status: 0 all images classified, 1 some failed (reported on stderr), 2 fatal.\n");
}

/* An entry the listing left out (folder walking, @lists: the library's fn_inputs), with its reason. */
static void on_skip(void *ctx, const char *path, const char *reason, int is_error)
{
    char ep[4096], er[1024];
    fn_escape_path(path, ep, sizeof ep);
    fn_escape_path(reason ? reason : "", er, sizeof er);
    if (is_error)
        fprintf(stderr, "fruitnet-classify: %s: %s\n", ep, er), ++*(int *)ctx;
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
    int ood = 0;
    float dist = 0;
    const char **args = calloc((size_t)argc, sizeof(char *));
    int nargs = 0, failed = 0;
    if (!args) {
        fprintf(stderr, "fruitnet-classify: out of memory\n");
        return 2;
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        char *end = NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            free(args), usage(stdout);
            return 0;
        } else if (!strcmp(a, "-V") || !strcmp(a, "--version")) {
            free(args), printf("fruitnet-classify %s\n", FRUITNET_VERSION);
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
        } else if (!strcmp(a, "--ood")) {
            ood = 1;
        } else if (!strcmp(a, "--min-probability") && i + 1 < argc) {
            minp = strtod(argv[++i], &end);
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "fruitnet-classify: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        } else {
            args[nargs++] = a; /* an image, a folder (walked) or @LIST (@- = stdin), listed below */
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
    fn_inputs *in = NULL;
    int rc = fn_inputs_new(&in, &e);
    for (int i = 0; i < nargs && rc == FN_OK; i++)
        rc = !strcmp(args[i], "@-") ? fn_inputs_add_list_fd(in, 0, "stdin", on_skip, &failed, &e)
             : args[i][0] == '@'    ? fn_inputs_add_list(in, args[i] + 1, on_skip, &failed, &e)
                                    : fn_inputs_add(in, args[i], on_skip, &failed, &e);
    if (rc == FN_OK)
        rc = fn_inputs_finish(in, 1, 1, on_skip, &failed, &e);
    free(args);
    if (rc != FN_OK) {
        fprintf(stderr, "fruitnet-classify: %s\n", e.msg);
        return 2;
    }
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
    if (ood && !(fn_classifier_distance_threshold(cl) > 0)) {
        fprintf(stderr, "fruitnet-classify: %s: --ood needs a model with class means (retrain it with this "
                        "version)\n", model_path);
        return 2;
    }
    const int K = fn_classifier_classes(cl);
    if (top > K)
        top = K;
    float *input = malloc((size_t)FN_INPUT_SIZE * FN_INPUT_SIZE * 3 * sizeof(float)), feat[FN_FEATURE_DIM];
    float *probs = malloc((size_t)K * sizeof(float)), *val = malloc((size_t)top * sizeof(float));
    int *idx = malloc((size_t)top * sizeof(int));
    if (!input || !probs || !val || !idx) {
        fprintf(stderr, "fruitnet-classify: out of memory\n");
        return 2;
    }
    for (size_t i = 0; i < fn_inputs_count(in); i++) {
        char path[4096]; /* printed escaped like the dataset's path column (fn_unescape_path undoes it) */
        fn_escape_path(fn_inputs_path(in, i), path, sizeof path);
        if (fn_input_from_file(fn_inputs_path(in, i), FN_RESIZE_PIL, input, &e) != FN_OK ||
            fn_model_features(m, input, 1, feat, &e) != FN_OK ||
            fn_classifier_predict_proba(cl, feat, 1, probs, &e) != FN_OK ||
            (ood && fn_classifier_distance(cl, feat, 1, &dist, &e) != FN_OK)) {
            fprintf(stderr, "fruitnet-classify: %s (%s)\n", e.msg, fn_status_name(e.code));
            failed++;
            continue;
        }
        fn_topk(probs, K, top, idx, val);
        int unknown = val[0] < minp || (ood && dist > fn_classifier_distance_threshold(cl));
        if (json) {
            printf("{\"path\": ");
            json_str(path);
            printf(", \"label\": ");
            json_str(unknown ? "unknown" : fn_classifier_class_name(cl, idx[0]));
            printf(", \"probability\": %.6f, ", val[0]);
            if (ood)
                printf("\"distance\": %.6f, ", dist);
            printf("\"top\": [");
            for (int t = 0; t < top; t++) {
                printf("%s{\"label\": ", t ? ", " : "");
                json_str(fn_classifier_class_name(cl, idx[t]));
                printf(", \"probability\": %.6f}", val[t]);
            }
            printf("]}\n");
        } else {
            fputs(path, stdout);
            for (int t = 0; t < top; t++)
                printf("\t%s\t%.6f", t == 0 && unknown ? "unknown" : fn_classifier_class_name(cl, idx[t]),
                       val[t]);
            putchar('\n');
        }
        fflush(stdout);
    }
    fn_inputs_free(in);
    free(input), free(probs), free(val), free(idx);
    fn_model_close(m);
    fn_classifier_free(cl);
    return failed ? 1 : 0;
}
