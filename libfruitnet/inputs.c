/*
 * inputs.c — what a run reads: path escaping, long-path stats, the folder
 * walker, @list files, de-duplication by file identity, labels and shards.
 */
#include "dataset.h"
#include "files.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---------------------------------------------------------------- escaping */

/* Length (1-4) of the valid UTF-8 sequence at p, 0 when p starts no valid sequence. */
static int utf8_len(const unsigned char *p)
{
    if (p[0] < 0x80)
        return 1;
    int n = (p[0] & 0xE0) == 0xC0 ? 2 : (p[0] & 0xF0) == 0xE0 ? 3 : (p[0] & 0xF8) == 0xF0 ? 4 : 0;
    if (n == 0 || (n == 2 && p[0] < 0xC2))
        return 0;
    unsigned cp = p[0] & (0x7F >> n);
    for (int i = 1; i < n; i++) {
        if ((p[i] & 0xC0) != 0x80)
            return 0;
        cp = cp << 6 | (p[i] & 0x3F);
    }
    if ((n == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) || (n == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
        return 0;
    return n;
}

size_t fn_escape_path(const char *raw, char *out, size_t cap)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = 0;
#define PUT(c) (n + 1 < cap ? (void)(out[n] = (char)(c)) : (void)0, n++)
    for (const unsigned char *p = (const unsigned char *)(raw ? raw : ""); *p;) {
        int len = utf8_len(p);
        if (len == 0 || (len == 1 && (*p == '%' || *p == '\\' || *p < 0x20 || *p == 0x7F))) {
            PUT('%'), PUT(hex[*p >> 4]), PUT(hex[*p & 15]);
            p++;
            continue;
        }
        for (int i = 0; i < len; i++)
            PUT(p[i]);
        p += len;
    }
#undef PUT
    if (cap)
        out[n < cap ? n : cap - 1] = 0;
    return n;
}

static int hexval(int c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

size_t fn_unescape_path(const char *escaped, char *out, size_t cap)
{
    size_t n = 0;
    for (const char *p = escaped ? escaped : ""; *p;) {
        int hi, lo;
        char c = *p;
        if (c == '%' && (hi = hexval((unsigned char)p[1])) >= 0 && (lo = hexval((unsigned char)p[2])) >= 0) {
            c = (char)(hi << 4 | lo);
            p += 3;
        } else {
            p++;
        }
        if (n + 1 < cap)
            out[n] = c;
        n++;
    }
    if (cap)
        out[n < cap ? n : cap - 1] = 0;
    return n;
}

char *fn_escape_dup(const char *raw)
{
    size_t n = fn_escape_path(raw, NULL, 0);
    char *s = malloc(n + 1);
    if (s)
        fn_escape_path(raw, s, n + 1);
    return s;
}

/* ---------------------------------------------------------------- files */

static int stat_long(const char *path, struct stat *st)
{
    if (stat(path, st) == 0)
        return 0;
    if (errno != ENAMETOOLONG)
        return -1;
    int fd = fn_open_long(path, O_PATH | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fstat(fd, st);
    close(fd);
    return rc;
}

/* ---------------------------------------------------------------- the list */

int fn_inputs_new(fn_inputs **out, fn_error *err)
{
    if (!out)
        return fn_fail(err, FN_EARG, "fn_inputs_new: out is NULL");
    *out = calloc(1, sizeof **out);
    return *out ? FN_OK : fn_fail(err, FN_ENOMEM, "out of memory");
}

void fn_inputs_free(fn_inputs *in)
{
    if (!in)
        return;
    for (size_t i = 0; i < in->n; i++)
        free(in->v[i].path), free(in->v[i].label);
    for (size_t i = 0; i < in->nskip; i++)
        free(in->skip_path[i]), free(in->skip_reason[i]);
    free(in->skip_path), free(in->skip_reason);
    free(in->v);
    free(in);
}

size_t fn_inputs_count(const fn_inputs *in) { return in ? in->n : 0; }
const char *fn_inputs_path(const fn_inputs *in, size_t i) { return in && i < in->n ? in->v[i].path : NULL; }
const char *fn_inputs_label(const fn_inputs *in, size_t i) { return in && i < in->n ? in->v[i].label : NULL; }
int64_t fn_inputs_size(const fn_inputs *in, size_t i) { return in && i < in->n ? in->v[i].size : -1; }
int64_t fn_inputs_mtime_ns(const fn_inputs *in, size_t i) { return in && i < in->n ? in->v[i].mtime_ns : -1; }

static int push(fn_inputs *in, const char *path, const char *label, const struct stat *st, fn_error *err)
{
    if (in->n == in->cap) {
        size_t cap = in->cap ? 2 * in->cap : 1024;
        fn_input_entry *v = realloc(in->v, cap * sizeof *v);
        if (!v)
            return fn_fail(err, FN_ENOMEM, "out of memory listing inputs");
        in->v = v, in->cap = cap;
    }
    fn_input_entry *e = &in->v[in->n];
    e->path = strdup(path);
    e->label = strdup(label);
    if (!e->path || !e->label) {
        free(e->path), free(e->label);
        return fn_fail(err, FN_ENOMEM, "out of memory listing inputs");
    }
    e->dev = st->st_dev, e->ino = st->st_ino, e->size = st->st_size;
    e->mtime_ns = (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
    in->n++;
    return FN_OK;
}

/* "a//b/./c/" -> "a/b/c"; "./x" -> "x"; "" or "." -> "."; ".." kept (symlinks make it non-lexical). */
static char *normalise(const char *p)
{
    size_t n = strlen(p);
    char *out = malloc(n + 2), *o = out;
    if (!out)
        return NULL;
    if (p[0] == '/')
        *o++ = '/';
    for (const char *s = p; *s;) {
        while (*s == '/')
            s++;
        const char *e = s;
        while (*e && *e != '/')
            e++;
        size_t len = (size_t)(e - s);
        if (len && !(len == 1 && s[0] == '.')) {
            if (o > out && o[-1] != '/')
                *o++ = '/';
            memcpy(o, s, len);
            o += len;
        }
        s = e;
    }
    if (o == out)
        *o++ = '.';
    *o = 0;
    return out;
}

/* The name of folder `dir` (normalised): its last component, or its real name for ".", ".." and "/". */
static char *dir_label(const char *dir)
{
    const char *slash = strrchr(dir, '/');
    const char *last = slash ? slash + 1 : dir;
    if (*last && strcmp(last, ".") && strcmp(last, ".."))
        return strdup(last);
    char *real = realpath(dir, NULL);
    if (!real)
        return strdup("");
    const char *b = strrchr(real, '/');
    char *l = strdup(b ? b + 1 : real);
    free(real);
    return l;
}

/* The label of file `path` (normalised): the name of its parent folder. */
static char *file_label(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        return dir_label(".");
    if (slash == path)
        return dir_label("/");
    char *dir = strndup(path, (size_t)(slash - path));
    char *l = dir ? dir_label(dir) : NULL;
    free(dir);
    return l;
}

static int has_image_ext(const char *name)
{
    const char *dot = strrchr(name, '.');
    return dot && (!strcasecmp(dot, ".jpg") || !strcasecmp(dot, ".jpeg") || !strcasecmp(dot, ".png"));
}

typedef struct visited {
    dev_t dev;
    ino_t ino;
    const struct visited *up;
} visited;

typedef struct walker {
    fn_inputs *in;
    fn_skip_fn skip;
    void *ctx;
    fn_error *err;
} walker;

static void report(const walker *w, const char *path, int is_error, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;
static void report(const walker *w, const char *path, int is_error, const char *fmt, ...)
{
    char why[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    fn_inputs *in = w->in;
    if (is_error) { /* kept for the errors file of the dataset */
        if (in->nskip == in->skip_cap) {
            size_t cap = in->skip_cap ? 2 * in->skip_cap : 64;
            char **a = realloc(in->skip_path, cap * sizeof(char *));
            if (a)
                in->skip_path = a;
            char **b = realloc(in->skip_reason, cap * sizeof(char *));
            if (b)
                in->skip_reason = b;
            if (a && b)
                in->skip_cap = cap;
        }
        if (in->nskip < in->skip_cap) {
            in->skip_path[in->nskip] = strdup(path);
            in->skip_reason[in->nskip] = strdup(why);
            if (in->skip_path[in->nskip] && in->skip_reason[in->nskip])
                in->nskip++;
            else
                free(in->skip_path[in->nskip]), free(in->skip_reason[in->nskip]);
        }
    }
    if (w->skip)
        w->skip(w->ctx, path, why, is_error);
}

static char *join(const char *dir, const char *name)
{
    size_t dl = strlen(dir), nl = strlen(name);
    int bare = dl == 1 && dir[0] == '.';      /* "." + x -> "x" */
    int root = dl == 1 && dir[0] == '/';      /* "/" + x -> "/x" */
    char *p = malloc(dl + nl + 2);
    if (!p)
        return NULL;
    if (bare)
        memcpy(p, name, nl + 1);
    else
        snprintf(p, dl + nl + 2, "%s%s%s", dir, root ? "" : "/", name);
    return p;
}

/* Walk the open folder dfd (closed here) named `dir`, whose files get `label`. */
static int walk(walker *w, int dfd, const char *dir, const char *label, const visited *me)
{
    DIR *d = fdopendir(dfd);
    if (!d) {
        report(w, dir, 1, "cannot open folder: %s", strerror(errno));
        close(dfd);
        return FN_OK;
    }
    int rc = FN_OK;
    struct dirent *e;
    while (rc == FN_OK && (e = readdir(d))) {
        const char *name = e->d_name;
        if (name[0] == '.')
            continue;
        char *child = join(dir, name);
        if (!child) {
            rc = fn_fail(w->err, FN_ENOMEM, "out of memory listing inputs");
            break;
        }
        struct stat st;
        if (fstatat(dirfd(d), name, &st, 0) != 0) {
            if (has_image_ext(name))
                report(w, child, 1, "cannot open: %s", strerror(errno));
        } else if (S_ISDIR(st.st_mode)) {
            int loop = 0;
            for (const visited *v = me; v && !loop; v = v->up)
                loop = v->dev == st.st_dev && v->ino == st.st_ino;
            if (loop) {
                report(w, child, 1, "directory loop (symlink), skipped");
            } else {
                int cfd = openat(dirfd(d), name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NONBLOCK);
                if (cfd < 0) {
                    report(w, child, 1, "cannot open folder: %s", strerror(errno));
                } else {
                    visited sub = {st.st_dev, st.st_ino, me};
                    rc = walk(w, cfd, child, name, &sub);
                }
            }
        } else if (has_image_ext(name)) {
            if (!S_ISREG(st.st_mode))
                report(w, child, 1, "not a regular file");
            else
                rc = push(w->in, child, label, &st, w->err);
        }
        free(child);
    }
    closedir(d);
    return rc;
}

/* One path: a folder is walked when allowed, a regular file is listed, anything else is reported. */
static int add_one(fn_inputs *in, const char *raw, int folders, fn_skip_fn skip, void *ctx, fn_error *err)
{
    if (in->finished)
        return fn_fail(err, FN_EARG, "fn_inputs_add: the list is already finished");
    walker w = {in, skip, ctx, err};
    char *p = normalise(raw);
    if (!p)
        return fn_fail(err, FN_ENOMEM, "out of memory listing inputs");
    struct stat st;
    int rc = FN_OK;
    if (stat_long(p, &st) != 0) {
        report(&w, p, 1, "cannot open: %s", strerror(errno));
    } else if (S_ISDIR(st.st_mode) && folders) {
        int fd = fn_open_long(p, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NONBLOCK);
        char *label = dir_label(p);
        if (!label)
            rc = fn_fail(err, FN_ENOMEM, "out of memory listing inputs");
        else if (fd < 0)
            report(&w, p, 1, "cannot open folder: %s", strerror(errno));
        else {
            visited me = {st.st_dev, st.st_ino, NULL};
            rc = walk(&w, fd, p, label, &me);
        }
        free(label);
    } else if (S_ISDIR(st.st_mode)) {
        report(&w, p, 1, "is a folder (a list file names image files)");
    } else if (!S_ISREG(st.st_mode)) {
        report(&w, p, 1, "not a regular file");
    } else {
        char *label = file_label(p);
        rc = label ? push(in, p, label, &st, err) : fn_fail(err, FN_ENOMEM, "out of memory listing inputs");
        free(label);
    }
    free(p);
    return rc;
}

int fn_inputs_add(fn_inputs *in, const char *path, fn_skip_fn skip, void *ctx, fn_error *err)
{
    if (!in || !path)
        return fn_fail(err, FN_EARG, "fn_inputs_add: invalid arguments");
    return add_one(in, path, 1, skip, ctx, err);
}

int fn_inputs_add_list_memory(fn_inputs *in, const char *text, size_t len, const char *name, fn_skip_fn skip,
                              void *ctx, fn_error *err)
{
    if (!in || (!text && len))
        return fn_fail(err, FN_EARG, "fn_inputs_add_list_memory: invalid arguments");
    size_t i = 0;
    int rc = FN_OK;
    while (rc == FN_OK && i < len) {
        size_t e = i;
        while (e < len && text[e] != '\n')
            e++;
        size_t l = e - i;
        while (l > 0 && text[i + l - 1] == '\r')
            l--;
        if (l > 0 && text[i] != '#') {
            char *line = strndup(text + i, l);
            if (!line)
                return fn_fail(err, FN_ENOMEM, "%s: out of memory", name ? name : "list");
            if (strlen(line) != l) { /* a NUL byte inside a line */
                walker w = {in, skip, ctx, err};
                report(&w, line, 1, "line of %s holds a NUL byte", name ? name : "the list");
            } else {
                rc = add_one(in, line, 0, skip, ctx, err);
            }
            free(line);
        }
        i = e + 1;
    }
    return rc;
}

int fn_inputs_add_list(fn_inputs *in, const char *list_path, fn_skip_fn skip, void *ctx, fn_error *err)
{
    if (!in || !list_path)
        return fn_fail(err, FN_EARG, "fn_inputs_add_list: invalid arguments");
    unsigned char *buf;
    size_t len;
    fn_error e2;
    if (fn_read_regular(list_path, (size_t)1 << 34, &buf, &len, &e2) != FN_OK)
        return fn_fail(err, e2.code, "%s (list file)", e2.msg);
    int rc = fn_inputs_add_list_memory(in, (const char *)buf, len, list_path, skip, ctx, err);
    free(buf);
    return rc;
}

int fn_inputs_add_list_fd(fn_inputs *in, int fd, const char *name, fn_skip_fn skip, void *ctx, fn_error *err)
{
    if (!in || fd < 0)
        return fn_fail(err, FN_EARG, "fn_inputs_add_list_fd: invalid arguments");
    size_t n = 0, cap = 1 << 16;
    char *buf = malloc(cap);
    for (;;) {
        if (!buf)
            return fn_fail(err, FN_ENOMEM, "%s: out of memory reading the list", name ? name : "list");
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = errno;
            free(buf);
            return fn_fail(err, FN_EIO, "%s: cannot read the list: %s", name ? name : "list", strerror(e));
        }
        if (r == 0)
            break;
        if ((n += (size_t)r) == cap) {
            char *b = realloc(buf, cap *= 2);
            if (!b)
                free(buf);
            buf = b;
        }
    }
    int rc = fn_inputs_add_list_memory(in, buf, n, name, skip, ctx, err);
    free(buf);
    return rc;
}

int fn_inputs_add_arg(fn_inputs *in, const char *arg, fn_skip_fn skip, void *ctx, fn_error *err)
{
    if (!in || !arg)
        return fn_fail(err, FN_EARG, "fn_inputs_add_arg: invalid arguments");
    if (!strcmp(arg, "@-"))
        return fn_inputs_add_list_fd(in, 0, "stdin", skip, ctx, err);
    return arg[0] == '@' ? fn_inputs_add_list(in, arg + 1, skip, ctx, err) : fn_inputs_add(in, arg, skip, ctx, err);
}

static int cmp_identity(const void *a, const void *b)
{
    const fn_input_entry *x = a, *y = b;
    if (x->dev != y->dev)
        return x->dev < y->dev ? -1 : 1;
    if (x->ino != y->ino)
        return x->ino < y->ino ? -1 : 1;
    return strcmp(x->path, y->path);
}

static int cmp_path(const void *a, const void *b)
{
    return strcmp(((const fn_input_entry *)a)->path, ((const fn_input_entry *)b)->path);
}

int fn_inputs_finish(fn_inputs *in, int shard_k, int shard_n, fn_skip_fn skip, void *ctx, fn_error *err)
{
    if (!in)
        return fn_fail(err, FN_EARG, "fn_inputs_finish: NULL list");
    if (shard_n == 0 && shard_k == 0)
        shard_k = shard_n = 1;
    if (shard_n < 1 || shard_k < 1 || shard_k > shard_n)
        return fn_fail(err, FN_EARG, "shard %d/%d: need 1 <= K <= N", shard_k, shard_n);
    if (in->finished)
        return fn_fail(err, FN_EARG, "fn_inputs_finish: called twice");
    /* one entry per file: the first spelling in byte order */
    if (in->n)
        qsort(in->v, in->n, sizeof *in->v, cmp_identity);
    size_t w = 0;
    for (size_t i = 0; i < in->n; i++) {
        if (w > 0 && in->v[w - 1].dev == in->v[i].dev && in->v[w - 1].ino == in->v[i].ino) {
            if (skip) {
                char why[600];
                char *kept = fn_escape_dup(in->v[w - 1].path);
                snprintf(why, sizeof why, "same file as %s, listed once", kept ? kept : "another input");
                free(kept);
                skip(ctx, in->v[i].path, why, 0);
            }
            free(in->v[i].path), free(in->v[i].label);
            continue;
        }
        in->v[w++] = in->v[i];
    }
    in->n = w;
    if (in->n)
        qsort(in->v, in->n, sizeof *in->v, cmp_path);
    uint64_t all = FN_FNV_INIT;
    w = 0;
    for (size_t i = 0; i < in->n; i++) {
        const char *p = in->v[i].path;
        all = fn_fnv1a(p, strlen(p) + 1, all);
        if (shard_n == 1 || fn_fnv1a(p, strlen(p), FN_FNV_INIT) % (uint64_t)shard_n == (uint64_t)(shard_k - 1))
            in->v[w++] = in->v[i];
        else
            free(in->v[i].path), free(in->v[i].label);
    }
    in->n = w;
    in->all_hash = all;
    /* each shard's errors file reports the listing failures of its own paths */
    w = 0;
    for (size_t i = 0; i < in->nskip; i++) {
        const char *p = in->skip_path[i];
        if (shard_n == 1 || fn_fnv1a(p, strlen(p), FN_FNV_INIT) % (uint64_t)shard_n == (uint64_t)(shard_k - 1))
            in->skip_path[w] = in->skip_path[i], in->skip_reason[w++] = in->skip_reason[i];
        else
            free(in->skip_path[i]), free(in->skip_reason[i]);
    }
    in->nskip = w;
    in->shard_k = shard_k, in->shard_n = shard_n;
    in->finished = 1;
    return FN_OK;
}
