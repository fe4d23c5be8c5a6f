/*
 * weights.c — the fruitnet weight file (.fnw) loader: mmap, validate, look up.
 * Format (weights/README.md): 64-byte header, tensor table, 64-byte aligned
 * data; CRC-32 of header, table and data all verified at open.
 */
#include "internal.h"
#include "fnw.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

struct fn_weights {
    const unsigned char *base;
    size_t size;
    int mapped;
    int count;
    fn_wtensor *t;
    char *names; /* NUL-terminated copies */
    uint32_t data_crc;
};

static uint32_t rd32(const unsigned char *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }
static uint64_t rd64(const unsigned char *p) { return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32; }

static int parse(fn_weights *w, const char *name, fn_error *err)
{
    const unsigned char *b = w->base;
    size_t size = w->size;
    if (size < FNW_HEADER_SIZE)
        return fn_fail(err, FN_EFORMAT, "%s: file too short for a weight header (%zu bytes)", name, size);
    if (memcmp(b, FNW_MAGIC, 8) != 0)
        return fn_fail(err, FN_EFORMAT, "%s: not a fruitnet weight file (bad magic)", name);
    if (rd32(b + 8) != FNW_VERSION)
        return fn_fail(err, FN_EUNSUPPORTED, "%s: weight file version %u is not supported (expected %d)", name,
                       rd32(b + 8), FNW_VERSION);
    if (rd32(b + 60) != 0)
        return fn_fail(err, FN_EFORMAT, "%s: reserved header field is not zero", name);
    if (fn_crc32(0, b, 56) != rd32(b + 56))
        return fn_fail(err, FN_ECHECKSUM, "%s: header checksum mismatch", name);
    uint32_t count = rd32(b + 12);
    uint64_t toff = rd64(b + 16), tbytes = rd64(b + 24), doff = rd64(b + 32), dbytes = rd64(b + 40);
    if (count > FNW_MAX_TENSORS)
        return fn_fail(err, FN_ELIMIT, "%s: %u tensors exceeds the limit of %d", name, count, FNW_MAX_TENSORS);
    if (toff != FNW_HEADER_SIZE || tbytes > size - toff)
        return fn_fail(err, FN_EFORMAT, "%s: tensor table (offset %llu, %llu bytes) outside the file", name,
                       (unsigned long long)toff, (unsigned long long)tbytes);
    if (doff % 64 || doff < toff + tbytes || doff > size || dbytes != size - doff)
        return fn_fail(err, FN_EFORMAT, "%s: data section (offset %llu, %llu bytes) does not match the file size %zu",
                       name, (unsigned long long)doff, (unsigned long long)dbytes, size);
    for (uint64_t i = toff + tbytes; i < doff; i++)
        if (b[i] != 0)
            return fn_fail(err, FN_EFORMAT, "%s: non-zero padding before the data section", name);
    if (fn_crc32(0, b + toff, (size_t)tbytes) != rd32(b + 52))
        return fn_fail(err, FN_ECHECKSUM, "%s: tensor table checksum mismatch", name);
    w->data_crc = rd32(b + 48);
    if (fn_crc32(0, b + doff, (size_t)dbytes) != w->data_crc)
        return fn_fail(err, FN_ECHECKSUM, "%s: data checksum mismatch (file corrupt or truncated)", name);
    w->t = calloc(count ? count : 1, sizeof(fn_wtensor));
    w->names = malloc((size_t)tbytes + count + 1);
    if (!w->t || !w->names)
        return fn_fail(err, FN_ENOMEM, "%s: out of memory", name);
    const unsigned char *p = b + toff, *end = p + tbytes;
    char *nm = w->names;
    for (uint32_t i = 0; i < count; i++) {
        fn_wtensor *t = &w->t[i];
        if (end - p < 2)
            return fn_fail(err, FN_EFORMAT, "%s: tensor table truncated at entry %u", name, i);
        unsigned nl = (unsigned)p[0] | (unsigned)p[1] << 8;
        p += 2;
        if (nl == 0 || nl > 255 || (size_t)(end - p) < nl + 2u)
            return fn_fail(err, FN_EFORMAT, "%s: tensor %u has a bad name length %u", name, i, nl);
        memcpy(nm, p, nl);
        nm[nl] = 0;
        t->name = nm;
        nm += nl + 1;
        p += nl;
        int dtype = p[0], ndim = p[1];
        p += 2;
        size_t esize = dtype == FN_DTYPE_F32 ? 4 : dtype == FN_DTYPE_U8 ? 1 : 0;
        if (!esize)
            return fn_fail(err, FN_EFORMAT, "%s: tensor '%s' has unknown dtype %d", name, t->name, dtype);
        if (ndim > 4 || (size_t)(end - p) < (size_t)ndim * 8 + 16)
            return fn_fail(err, FN_EFORMAT, "%s: tensor '%s' has a bad rank %d or truncated entry", name, t->name, ndim);
        size_t count_el = 1;
        for (int d = 0; d < ndim; d++) {
            uint64_t s = rd64(p);
            p += 8;
            if (s > INT64_MAX || !fn_mul_size(count_el, (size_t)s, &count_el))
                return fn_fail(err, FN_ELIMIT, "%s: tensor '%s' shape overflows", name, t->name);
            t->shape[d] = (int64_t)s;
        }
        uint64_t off = rd64(p), nbytes = rd64(p + 8);
        p += 16;
        size_t want;
        if (!fn_mul_size(count_el, esize, &want) || want != nbytes)
            return fn_fail(err, FN_EFORMAT, "%s: tensor '%s' size %llu does not match its shape", name, t->name,
                           (unsigned long long)nbytes);
        if (off % 64 || off > dbytes || nbytes > dbytes - off)
            return fn_fail(err, FN_EFORMAT, "%s: tensor '%s' (offset %llu, %llu bytes) extends past the data section",
                           name, t->name, (unsigned long long)off, (unsigned long long)nbytes);
        for (uint32_t k = 0; k < i; k++)
            if (!strcmp(w->t[k].name, t->name))
                return fn_fail(err, FN_EFORMAT, "%s: duplicate tensor name '%s'", name, t->name);
        t->dtype = (fn_dtype)dtype;
        t->ndim = ndim;
        t->count = (int64_t)count_el;
        t->data = b + doff + off;
    }
    if (p != end)
        return fn_fail(err, FN_EFORMAT, "%s: %zu unexpected bytes after the tensor table", name, (size_t)(end - p));
    w->count = (int)count;
    return FN_OK;
}

int fn_weights_open_memory(const void *data, size_t size, fn_weights **out, fn_error *err)
{
    if (!out || (!data && size))
        return fn_fail(err, FN_EARG, "fn_weights_open_memory: invalid arguments");
    *out = NULL;
    fn_weights *w = calloc(1, sizeof *w);
    if (!w)
        return fn_fail(err, FN_ENOMEM, "out of memory");
    w->base = data;
    w->size = size;
    int rc = parse(w, "<memory>", err);
    if (rc != FN_OK) {
        fn_weights_close(w);
        return rc;
    }
    *out = w;
    return FN_OK;
}

int fn_weights_open(const char *path, fn_weights **out, fn_error *err)
{
    if (!out || !path)
        return fn_fail(err, FN_EARG, "fn_weights_open: invalid arguments");
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return fn_fail(err, FN_EIO, "%s: cannot open weight file: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return fn_fail(err, FN_EIO, "%s: not a regular file", path);
    }
    if (st.st_size < FNW_HEADER_SIZE) {
        close(fd);
        return fn_fail(err, FN_EFORMAT, "%s: file too short for a weight header (%lld bytes)", path,
                       (long long)st.st_size);
    }
    void *map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED)
        return fn_fail(err, FN_EIO, "%s: mmap failed: %s", path, strerror(errno));
    fn_weights *w = calloc(1, sizeof *w);
    if (!w) {
        munmap(map, (size_t)st.st_size);
        return fn_fail(err, FN_ENOMEM, "out of memory");
    }
    w->base = map;
    w->size = (size_t)st.st_size;
    w->mapped = 1;
    int rc = parse(w, path, err);
    if (rc != FN_OK) {
        fn_weights_close(w);
        return rc;
    }
    *out = w;
    return FN_OK;
}

const fn_wtensor *fn_weights_find(const fn_weights *w, const char *name)
{
    for (int i = 0; w && i < w->count; i++)
        if (!strcmp(w->t[i].name, name))
            return &w->t[i];
    return NULL;
}

int fn_weights_count(const fn_weights *w) { return w ? w->count : 0; }
const fn_wtensor *fn_weights_at(const fn_weights *w, int i) { return (w && i >= 0 && i < w->count) ? &w->t[i] : NULL; }
uint32_t fn_weights_crc32(const fn_weights *w) { return w ? w->data_crc : 0; }

void fn_weights_close(fn_weights *w)
{
    if (!w)
        return;
    if (w->mapped)
        munmap((void *)w->base, w->size);
    free(w->t);
    free(w->names);
    free(w);
}
