/* fruitnet-extract — images in, ResNet50 features out as a Parquet dataset. See --help. Options, progress and
 * messages only: listing, pipeline, resume and commit are the library's (fn_inputs_*, fn_extract_run,
 * fn_dataset_write; README "Datasets"). */
#include "fruitnet.h"
#include "tool_weights.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum { EXIT_OK = 0, EXIT_SOME_FAILED = 1, EXIT_FATAL = 2 };

static void usage(FILE *f)
{
    fputs("usage: fruitnet-extract [options] INPUT...\n\n"
"Compute Keras-ResNet50 (ImageNet) 2048-d avg_pool features of images and\n"
"write them as Parquet (path STRING, label STRING, features LIST<FLOAT>).\n\n"
"INPUT is an image file (JPEG or PNG), a folder (searched recursively for\n"
"*.jpg, *.jpeg, *.png; label = the image's parent folder name), or @LIST: a\n"
"file with one path per line (@- reads the list from stdin). One file named\n"
"several ways is read once. Paths and labels are written with invalid UTF-8,\n"
"%, \\ and control bytes escaped as %XX (README \"Datasets\").\n\n"
"Output\n"
"  -o, --output PATH     dataset directory like Spark writes (part-*.parquet\n"
"                        files, then _SUCCESS); default features.parquet\n"
"      --single-file     write PATH as one Parquet file instead (not with --shard)\n"
"      --codec C         gzip (default) or none\n"
"      --part-size N     images per part file (default 1024); part contents\n"
"                        depend only on the inputs, N and --shard\n"
"      --errors FILE     where to list failed inputs (default: PATH/_errors.tsv\n"
"                        for a dataset, PATH.errors.tsv for a single file);\n"
"                        a FILE that is not a regular file is refused\n"
"      --classifier F    add columns prediction (top class of the fruitnet-train\n"
"                        model F) and probability\n"
"      --top5            print the 5 most likely ImageNet classes of each image;\n"
"                        without -o, nothing is written\n"
"Work\n"
"      --shard K/N       process only shard K of N (1 <= K <= N): a fixed,\n"
"                        disjoint 1/N of the inputs chosen by a hash of the path\n"
"      --threads N       network threads (default: all CPUs)\n"
"      --batch N         images per network batch (default 8)\n"
"      --decoders N      image decoding threads (default 1)\n"
"      --resize M        pil (default: bit-exact PIL bicubic, parity with\n"
"                        Keras/PIL features) or stb (stb_image_resize)\n"
"      --mirror          flip each image left-right before the resize (mirrored\n"
"                        copies for fruitnet-train --augment)\n"
"      --isa I           auto (default), portable, avx2 or avx512\n"
"      --precision P     fp32 (default), bf16 (AVX512_BF16 CPUs) or int8 (AVX512-VNNI CPUs,\n"
"                        a weight file with activation scales: fruitnet-convert --calibrate); README\n"
"      --weights FILE    weight file (default $FRUITNET_WEIGHTS, else\n"
"                        weights/resnet50.fnw, else PREFIX/share/fruitnet/\n"
"                        of the tool's prefix, else " FN_DEFAULT_WEIGHTS ")\n"
"Display\n"
"      --progress        show the progress bar even when stderr is not a TTY\n"
"  -q, --quiet           no progress bar and no summary (errors still shown)\n"
"  -h, --help            this help;  -V, --version  version\n\n"
"A run that was interrupted (even by SIGKILL) resumes when run again: finished\n"
"parts whose images (path, size, mtime) and options are unchanged are kept,\n"
"everything else of the shard is redone; _SUCCESS appears when every shard is\n"
"complete. A second run writing the same shard at the same time is refused.\n\n"
"Exit status: 0 all inputs processed; 1 some inputs failed (reported on\n"
"stderr and in the errors file; all other images are in the output);\n"
"2 fatal error (bad usage, weights, output not writable).\n\n"
"Examples\n"
"  fruitnet-extract -o out/features.parquet ../shared/data/fruits-360-sample\n"
"  find /data -name '*.jpg' | fruitnet-extract -o f.parquet --shard 2/4 @-\n"
"  fruitnet-extract --top5 Banana/108_100.jpg\n", f);
}

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("fruitnet-extract: ", stderr), vfprintf(stderr, fmt, ap), fputc('\n', stderr);
    va_end(ap);
    exit(EXIT_FATAL);
}

/* v must be a or b (returns 0 or 1). */
static int pick(const char *v, const char *a, const char *b, const char *what)
{
    if (strcmp(v, a) && strcmp(v, b))
        die("%s: '%s' is not %s or %s", what, v, a, b);
    return strcmp(v, a) != 0;
}

static int parse_int(const char *s, int lo, int hi, const char *what)
{
    char *end;
    long v = (errno = 0, strtol(s, &end, 10));
    if (errno || *end || end == s || v < lo || v > hi)
        die("%s: '%s' is not a number in %d..%d", what, s, lo, hi);
    return (int)v;
}

typedef struct ui {
    int bar, quiet, top5;
    fn_model *model;
    const fn_inputs *in;
    size_t list_errors, duplicates, failed;
    double t0, t_bar;
} ui;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* A message line that may hold file names: escaped like the output (no raw control bytes on the terminal). */
static void say(const ui *u, const char *a, const char *b)
{
    char ea[1024], eb[1024];
    fn_escape_path(a, ea, sizeof ea);
    fn_escape_path(b ? b : "", eb, sizeof eb);
    fprintf(stderr, "%sfruitnet-extract: %s%s%s\n", u->bar ? "\r\033[K" : "", ea, b ? ": " : "", eb);
}

static void on_skip(void *ctx, const char *path, const char *reason, int is_error)
{
    ui *u = ctx;
    is_error ? (void)u->list_errors++, say(u, path, reason) : (void)u->duplicates++;
}

static void on_failure(void *ctx, const char *path, const char *reason)
{
    ((ui *)ctx)->failed++, say(ctx, reason ? reason : path, NULL); /* the reason names the file */
}

static void on_note(void *ctx, const char *msg) { ((ui *)ctx)->quiet ? (void)0 : say(ctx, msg, NULL); }

static void on_progress(void *ctx, size_t done, size_t total, size_t failed)
{
    ui *u = ctx;
    double t = now_s();
    if (!u->bar || (t - u->t_bar < 0.2 && done < total))
        return;
    u->t_bar = t;
    double el = t - u->t0, rate = el > 0 ? done / el : 0, eta = rate > 0 ? (total - done) / rate : 0;
    char bar[31] = {0};
    for (int i = 0; i < 30; i++)
        bar[i] = i < (total ? (int)(30.0 * done / total) : 30) ? '#' : '.';
    fprintf(stderr, "\r[%s] %zu/%zu %3.0f%%  %.1f img/s  ETA %d:%02d  failed %zu ", bar, done, total,
            total ? 100.0 * done / total : 100.0, rate, (int)eta / 60, (int)eta % 60, failed);
}

static int print_top5(void *ctx, size_t i, const char *path, const float *feat)
{
    ui *u = ctx;
    float probs[FN_NUM_CLASSES], val[5];
    int idx[5];
    char ep[4096];
    fn_error e;
    if (fn_model_classify(u->model, feat, 1, probs, &e) != FN_OK)
        die("input %zu: %s", i, e.msg);
    fn_topk(probs, FN_NUM_CLASSES, 5, idx, val);
    fn_escape_path(path, ep, sizeof ep);
    fputs(u->bar ? "\r\033[K" : "", stderr), printf("%s", ep);
    for (int r = 0; r < 5; r++)
        printf("\t%s (%.4f)", fn_model_label(u->model, idx[r]), val[r]);
    return printf("\n") < 0 ? FN_EIO : FN_OK;
}

/* --top5 without -o: the pipeline alone. */
static int top5_row(void *ctx, size_t i, const float *feat, const char *error, fn_error *err)
{
    ui *u = ((void)err, ctx);
    feat ? (void)print_top5(u, i, fn_inputs_path(u->in, i), feat) : on_failure(u, fn_inputs_path(u->in, i), error);
    on_progress(u, i + 1, fn_inputs_count(u->in), u->failed);
    return FN_OK;
}

int main(int argc, char **argv)
{
    fn_dataset_options o = {.part_size = 1024, .codec = FN_CODEC_GZIP, .shard_k = 1, .shard_n = 1,
                            .extract = {.batch = 8, .decoders = 1, .resize = FN_RESIZE_PIL}};
    fn_model_options mo;
    fn_model_options_default(&mo);
    fn_error err = {0};
    const char *output = NULL, *weights = NULL;
    int progress = 0, ninputs = 0;
    ui u = {0};
    fn_classifier *cls = NULL;
    const char **inputs = calloc((size_t)argc, sizeof *inputs);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
#define NEXT() (i + 1 < argc ? argv[++i] : (die("%s needs a value", a), ""))
#define IS(s) (!strcmp(a, s))
        if (IS("-h") || IS("--help"))
            return free(inputs), usage(stdout), EXIT_OK;
        else if (IS("-V") || IS("--version"))
            return free(inputs), printf("fruitnet-extract %s\n", FRUITNET_VERSION), EXIT_OK;
        else if (IS("-o") || IS("--output")) output = NEXT();
        else if (IS("--weights")) weights = NEXT();
        else if (IS("--classifier")) {
            if (fn_classifier_load(NEXT(), &cls, &err) != FN_OK)
                die("--classifier %s", err.msg);
        }
        else if (IS("--errors")) o.errors_path = NEXT();
        else if (IS("--single-file")) o.single_file = 1;
        else if (IS("--mirror")) o.extract.mirror = 1;
        else if (IS("--top5")) u.top5 = 1;
        else if (IS("-q") || IS("--quiet")) u.quiet = 1;
        else if (IS("--progress")) progress = 1;
        else if (IS("--threads")) mo.threads = parse_int(NEXT(), 1, 1024, "--threads");
        else if (IS("--batch")) o.extract.batch = parse_int(NEXT(), 1, 1024, "--batch");
        else if (IS("--decoders")) o.extract.decoders = parse_int(NEXT(), 1, 64, "--decoders");
        else if (IS("--part-size")) o.part_size = parse_int(NEXT(), 1, 100000000, "--part-size");
        else if (IS("--codec"))
            o.codec = pick(NEXT(), "gzip", "none", a) ? FN_CODEC_UNCOMPRESSED : FN_CODEC_GZIP;
        else if (IS("--resize"))
            o.extract.resize = pick(NEXT(), "pil", "stb", a) ? FN_RESIZE_STB : FN_RESIZE_PIL;
        else if (IS("--isa")) {
            if (fn_isa_parse(NEXT(), &mo.isa) != FN_OK)
                die("--isa: '%s' is not auto, portable, avx2 or avx512", argv[i]);
        } else if (IS("--precision")) {
            if (fn_precision_parse(NEXT(), &mo.precision) != FN_OK)
                die("--precision: '%s' is not fp32, bf16 or int8", argv[i]);
        } else if (IS("--shard")) {
            const char *c = NEXT();
            char tail;
            if (sscanf(c, "%d/%d%c", &o.shard_k, &o.shard_n, &tail) != 2 || o.shard_n < 1 || o.shard_k < 1 ||
                o.shard_k > o.shard_n)
                die("--shard: '%s' is not K/N with 1 <= K <= N", c);
        } else if (IS("--")) {
            while (++i < argc)
                inputs[ninputs++] = argv[i];
        } else if (a[0] == '-' && a[1])
            die("unknown option %s (see --help)", a);
        else
            inputs[ninputs++] = a;
    }
    if (ninputs == 0)
        return free(inputs), usage(stderr), EXIT_FATAL;
    o.classifier = cls;
    if (o.single_file && o.shard_n > 1)
        die("--single-file cannot be combined with --shard %d/%d: shards write into one dataset folder, which "
            "commits when every shard is complete", o.shard_k, o.shard_n);
    if (!output && !u.top5)
        output = "features.parquet";
    weights = tool_weights(weights);
    if (o.errors_path && fn_atomic_check(o.errors_path, 0, &err) != FN_OK)
        die("--errors %s", err.msg);
    u.bar = !u.quiet && (progress || isatty(2));

    /* 1. inputs: expand, de-duplicate, shard */
    fn_inputs *in = NULL;
    if (fn_inputs_new(&in, &err) != FN_OK)
        die("%s", err.msg);
    for (int i = 0; i < ninputs; i++)
        if (fn_inputs_add_arg(in, inputs[i], on_skip, &u, &err) != FN_OK) /* @-: stdin, @LIST, file, folder */
            die("%s", err.msg);
    free(inputs);
    if (fn_inputs_finish(in, o.shard_k, o.shard_n, on_skip, &u, &err) != FN_OK)
        die("%s", err.msg);

    /* 2. model */
    mo.max_batch = fn_extract_max_batch(&o.extract, fn_inputs_count(in)); /* no batch holds more than the inputs */
    mo.classifier = u.top5;
    if (fn_model_open(weights, &mo, &u.model, &err) != FN_OK)
        die("%s (run `make weights`, or pass --weights FILE)", err.msg);

    /* 3. run */
    fn_dataset_report rep = {0};
    fn_dataset_callbacks cb = {&u, on_failure, on_progress, u.top5 ? print_top5 : NULL, on_note};
    u.t0 = u.t_bar = now_s();
    int rc = output ? fn_dataset_write(output, u.model, in, &o, &cb, &rep, &err) : FN_OK;
    if (!output) {
        u.in = in;
        rc = fn_extract_inputs(u.model, &o.extract, in, top5_row, &u, &rep.net_seconds, &err);
        rep.inputs = fn_inputs_count(in), rep.failed = u.failed + u.list_errors, rep.ok = rep.inputs - u.failed;
    }
    double secs = now_s() - u.t0;
    fputs(u.bar ? "\n" : "", stderr);
    if (rc != FN_OK)
        say(&u, err.msg, NULL);
    size_t computed = rep.inputs - rep.resumed_inputs; /* images decoded in this run */
    if (!u.quiet && rc == FN_OK) {
        fprintf(stderr, "fruitnet-extract: %zu ok, %zu failed, %.1f s, %.1f img/s (network alone %.1f img/s, %s, %d "
                        "threads)", rep.ok, rep.failed, secs, secs > 0 ? computed / secs : 0.0,
                rep.net_seconds > 0 ? computed / rep.net_seconds : 0.0, fn_isa_name(fn_model_isa(u.model)),
                mo.threads ? mo.threads : (int)sysconf(_SC_NPROCESSORS_ONLN));
        if (rep.resumed_parts)
            fprintf(stderr, "; resumed %zu finished part(s) with %zu images", rep.resumed_parts, rep.resumed_inputs);
        if (u.duplicates)
            fprintf(stderr, "; %zu second spelling(s) of a file read once", u.duplicates);
        fprintf(stderr, "%s%s%s%s%s%s\n", output ? " -> " : "", output ? output : "",
                !output || o.single_file || rep.committed ? "" : " (not committed yet)",
                rep.errors_path[0] && rep.failed ? " (failures listed in " : "",
                rep.errors_path[0] && rep.failed ? rep.errors_path : "", rep.errors_path[0] && rep.failed ? ")" : "");
    }
    fn_model_close(u.model), fn_inputs_free(in), fn_classifier_free(cls);
    if (fflush(stdout) != 0)
        rc = FN_EIO;
    return rc != FN_OK ? EXIT_FATAL : rep.failed ? EXIT_SOME_FAILED : EXIT_OK; /* this shard's failures */
}
