/*
 * weights.c — the fruitnet weight file (.fnw) loader: mmap, validate, look up.
 * Format (weights/README.md): 64-byte header, tensor table, 64-byte aligned
 * data. Everything is validated at open with overflow-checked arithmetic:
 * magic, version, header CRC, table bounds and CRC, every entry (name, dtype,
 * rank, shape x dtype size == nbytes, alignment, bounds), no duplicate names,
 * and the data CRC. Names are indexed in a small open-addressing hash table.
 */
#include "fnw.h"
#include "util.h"

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
    char *names;     /* NUL-terminated copies of the names */
    int *index;      /* hash slots: tensor index or -1 */
    size_t nslots;   /* power of two, >= 2 * count */
    uint32_t data_crc;
};

static uint32_t rd32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t rd64(const unsigned char *p) { return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32; }

static uint64_t name_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

/* Slot holding `name`, or the empty slot where it would go. */
static size_t slot_of(const fn_weights *w, const char *name)
{
    size_t mask = w->nslots - 1, i = (size_t)name_hash(name) & mask;
    while (w->index[i] >= 0 && strcmp(w->t[w->index[i]].name, name) != 0)
        i = (i + 1) & mask;
    return i;
}

static int parse(fn_weights *w, const char *name, fn_error *err)
{
    const unsigned char *b = w->base;
    size_t size = w->size;
    if (size < FNW_HEADER_SIZE)
        return fn_fail(err, FN_EFORMAT, "%s: file too short for a weight header (%zu bytes, need %d)", name, size,
                       FNW_HEADER_SIZE);
    if (memcmp(b, FNW_MAGIC, 8) != 0)
        return fn_fail(err, FN_EFORMAT, "%s: not a fruitnet weight file (bad magic)", name);
    if (rd32(b + 8) != FNW_VERSION)
        return fn_fail(err, FN_EUNSUPPORTED, "%s: weight file version %u is not supported (expected %d)", name,
                       rd32(b + 8), FNW_VERSION);
    if (fn_crc32(0, b, 56) != rd32(b + 56))
        return fn_fail(err, FN_ECHECKSUM, "%s: header checksum mismatch", name);
    if (rd32(b + 60) != 0)
        return fn_fail(err, FN_EFORMAT, "%s: reserved header field is not zero", name);
    uint32_t count = rd32(b + 12);
    uint64_t toff = rd64(b + 16), tbytes = rd64(b + 24), doff = rd64(b + 32), dbytes = rd64(b + 40);
    if (count > FNW_MAX_TENSORS)
        return fn_fail(err, FN_ELIMIT, "%s: %u tensors exceeds the limit of %d", name, count, FNW_MAX_TENSORS);
    if (toff != FNW_HEADER_SIZE || tbytes > size - toff)
        return fn_fail(err, FN_EFORMAT, "%s: tensor table (offset %llu, %llu bytes) outside the file (%zu bytes)",
                       name, (unsigned long long)toff, (unsigned long long)tbytes, size);
    if (doff % 64 || doff < toff + tbytes || doff > size)
        return fn_fail(err, FN_EFORMAT, "%s: data offset %llu is misaligned, overlaps the table or is past the end",
                       name, (unsigned long long)doff);
    if (dbytes != size - doff)
        return fn_fail(err, FN_EFORMAT, "%s: data section (offset %llu, %llu bytes) does not end at the file size %zu",
                       name, (unsigned long long)doff, (unsigned long long)dbytes, size);
    for (uint64_t i = toff + tbytes; i < doff; i++)
        if (b[i] != 0)
            return fn_fail(err, FN_EFORMAT, "%s: non-zero padding before the data section", name);
    if (fn_crc32(0, b + toff, (size_t)tbytes) != rd32(b + 52))
        return fn_fail(err, FN_ECHECKSUM, "%s: tensor table checksum mismatch", name);

    w->t = calloc(count ? count : 1, sizeof(fn_wtensor));
    w->names = malloc((size_t)tbytes + count + 1);
    w->nslots = 16;
    while (w->nslots < 2 * (size_t)count)
        w->nslots *= 2;
    w->index = malloc(w->nslots * sizeof *w->index);
    if (!w->t || !w->names || !w->index)
        return fn_fail(err, FN_ENOMEM, "%s: out of memory", name);
    memset(w->index, 0xff, w->nslots * sizeof *w->index); /* all -1 */

    const unsigned char *p = b + toff, *end = p + tbytes;
    char *nm = w->names;
    for (uint32_t i = 0; i < count; i++) {
        fn_wtensor *t = &w->t[i];
        if (end - p < 2)
            return fn_fail(err, FN_EFORMAT, "%s: tensor table truncated at entry %u", name, i);
        unsigned nl = (unsigned)p[0] | (unsigned)p[1] << 8;
        p += 2;
        if (nl == 0 || nl > 255)
            return fn_fail(err, FN_EFORMAT, "%s: tensor %u has a bad name length %u (1..255)", name, i, nl);
        if ((size_t)(end - p) < nl + 2u)
            return fn_fail(err, FN_EFORMAT, "%s: tensor table truncated in entry %u", name, i);
        if (memchr(p, 0, nl))
            return fn_fail(err, FN_EFORMAT, "%s: tensor %u has a NUL byte in its name", name, i);
        memcpy(nm, p, nl);
        nm[nl] = 0;
        t->name = nm;
        nm += nl + 1;
        p += nl;
        int dtype = p[0], ndim = p[1];
        p += 2;
        size_t esize = dtype == FN_DTYPE_F32 ? 4 : dtype == FN_DTYPE_U8 ? 1 : 0;
        if (!esize)
            return fn_fail(err, FN_EFORMAT, "%s: tensor %u '%s' has unknown dtype %d", name, i, t->name, dtype);
        if (ndim > 4)
            return fn_fail(err, FN_EFORMAT, "%s: tensor %u '%s' has rank %d (at most 4)", name, i, t->name, ndim);
        if ((size_t)(end - p) < (size_t)ndim * 8 + 16)
            return fn_fail(err, FN_EFORMAT, "%s: tensor table truncated in entry %u '%s'", name, i, t->name);
        size_t count_el = 1;
        for (int d = 0; d < ndim; d++) {
            uint64_t s = rd64(p);
            p += 8;
            if (s > INT64_MAX || s > SIZE_MAX || !fn_mul_size(count_el, (size_t)s, &count_el))
                return fn_fail(err, FN_ELIMIT, "%s: tensor %u '%s': shape overflows", name, i, t->name);
            t->shape[d] = (int64_t)s;
        }
        uint64_t off = rd64(p), nbytes = rd64(p + 8);
        p += 16;
        size_t want;
        if (!fn_mul_size(count_el, esize, &want) || count_el > INT64_MAX)
            return fn_fail(err, FN_ELIMIT, "%s: tensor %u '%s': size of its shape overflows", name, i, t->name);
        if (want != nbytes)
            return fn_fail(err, FN_EFORMAT, "%s: tensor %u '%s' has %llu bytes but its shape needs %zu", name, i,
                           t->name, (unsigned long long)nbytes, want);
        if (off % 64)
            return fn_fail(err, FN_EFORMAT, "%s: tensor %u '%s' offset %llu is not a multiple of 64", name, i,
                           t->name, (unsigned long long)off);
        if (off > dbytes || nbytes > dbytes - off)
            return fn_fail(err, FN_EFORMAT,
                           "%s: tensor %u '%s' extends past end of data (offset %llu, size %llu, data %llu bytes)",
                           name, i, t->name, (unsigned long long)off, (unsigned long long)nbytes,
                           (unsigned long long)dbytes);
        t->dtype = (fn_dtype)dtype;
        t->ndim = ndim;
        t->count = (int64_t)count_el;
        t->data = b + doff + off;
        size_t sl = slot_of(w, t->name);
        if (w->index[sl] >= 0)
            return fn_fail(err, FN_EFORMAT, "%s: tensor %u: duplicate name '%s' (also tensor %d)", name, i, t->name,
                           w->index[sl]);
        w->index[sl] = (int)i;
    }
    if (p != end)
        return fn_fail(err, FN_EFORMAT, "%s: %zu unexpected bytes after the tensor table", name, (size_t)(end - p));
    w->data_crc = rd32(b + 48);
    if (fn_crc32(0, b + doff, (size_t)dbytes) != w->data_crc)
        return fn_fail(err, FN_ECHECKSUM, "%s: data checksum mismatch (file corrupt or truncated)", name);
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
        return fn_fail(err, FN_ENOMEM, "<memory>: out of memory");
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
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK); /* never blocks on a FIFO */
    if (fd < 0)
        return fn_fail(err, FN_EIO, "%s: cannot open weight file: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return fn_fail(err, FN_EIO, "%s: not a regular file", path);
    }
    if (st.st_size < FNW_HEADER_SIZE) {
        close(fd);
        return fn_fail(err, FN_EFORMAT, "%s: file too short for a weight header (%lld bytes, need %d)", path,
                       (long long)st.st_size, FNW_HEADER_SIZE);
    }
    if ((uint64_t)st.st_size > SIZE_MAX) {
        close(fd);
        return fn_fail(err, FN_ELIMIT, "%s: file too large to map", path);
    }
    /* Every page is read once for the data CRC right away: populate the mapping. */
    void *map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
    int e = errno;
    close(fd);
    if (map == MAP_FAILED)
        return fn_fail(err, FN_EIO, "%s: mmap failed: %s", path, strerror(e));
    fn_weights *w = calloc(1, sizeof *w);
    if (!w) {
        munmap(map, (size_t)st.st_size);
        return fn_fail(err, FN_ENOMEM, "%s: out of memory", path);
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
    if (!w || !name || !w->index)
        return NULL;
    int i = w->index[slot_of(w, name)];
    return i >= 0 ? &w->t[i] : NULL;
}

int fn_weights_count(const fn_weights *w) { return w ? w->count : 0; }

const fn_wtensor *fn_weights_at(const fn_weights *w, int i)
{
    return (w && i >= 0 && i < w->count) ? &w->t[i] : NULL;
}

uint32_t fn_weights_crc32(const fn_weights *w) { return w ? w->data_crc : 0; }

void fn_weights_close(fn_weights *w)
{
    if (!w)
        return;
    if (w->mapped)
        munmap((void *)w->base, w->size);
    free(w->t);
    free(w->names);
    free(w->index);
    free(w);
}
