/*
 * fnw_write.c — the one writer of .fnw weight files (format: weights/README.md), used by the converter
 * (convert_tfjs.c) and the int8 calibration (calibrate.c). The file is put in place by fn_atomic_*.
 */
#include "files.h"
#include "fnw.h"
#include "util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void wr32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}
static void wr64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static int write_all(int fd, const void *p, size_t n)
{
    const unsigned char *b = p;
    while (n) {
        ssize_t r = write(fd, b, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        b += r, n -= (size_t)r;
    }
    return 0;
}

static const unsigned char zeros[64];

int fnw_write(const fnw_tensor *ts, int n, const char *out_path, fn_error *err)
{
    if (n < 0 || n > FNW_MAX_TENSORS || (n && !ts) || !out_path)
        return fn_fail(err, FN_EARG, "fnw_write: invalid arguments");
    size_t tbytes = 0, dbytes = 0;
    for (int i = 0; i < n; i++) {
        size_t nl = strlen(ts[i].name);
        if (nl < 1 || nl > 255 || ts[i].ndim < 0 || ts[i].ndim > 4)
            return fn_fail(err, FN_EARG, "%s: tensor %d has an invalid name or rank", out_path, i);
        tbytes += 2 + nl + 2 + 8 * (size_t)ts[i].ndim + 16;
        dbytes = (dbytes + 63) & ~(size_t)63;
        dbytes += ts[i].nbytes;
    }
    size_t doff = (FNW_HEADER_SIZE + tbytes + 63) & ~(size_t)63;
    dbytes = (dbytes + 63) & ~(size_t)63;
    unsigned char *head = calloc(1, doff); /* header, table, zero padding */
    if (!head)
        return fn_fail(err, FN_ENOMEM, "%s: out of memory", out_path);
    unsigned char *t = head + FNW_HEADER_SIZE;
    uint32_t dcrc = 0;
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        const fnw_tensor *o = &ts[i];
        size_t nl = strlen(o->name), pad = (64 - off % 64) % 64;
        t[0] = (unsigned char)nl, t[1] = (unsigned char)(nl >> 8);
        memcpy(t + 2, o->name, nl);
        t += 2 + nl;
        t[0] = (unsigned char)o->dtype, t[1] = (unsigned char)o->ndim;
        t += 2;
        for (int d = 0; d < o->ndim; d++, t += 8)
            wr64(t, o->shape[d]);
        dcrc = fn_crc32(dcrc, zeros, pad);
        off += pad;
        wr64(t, off);
        wr64(t + 8, o->nbytes);
        t += 16;
        dcrc = fn_crc32(dcrc, o->data, o->nbytes);
        off += o->nbytes;
    }
    size_t tail = dbytes - off;
    dcrc = fn_crc32(dcrc, zeros, tail);
    memcpy(head, FNW_MAGIC, 8);
    wr32(head + 8, FNW_VERSION);
    wr32(head + 12, (uint32_t)n);
    wr64(head + 16, FNW_HEADER_SIZE);
    wr64(head + 24, tbytes);
    wr64(head + 32, doff);
    wr64(head + 40, dbytes);
    wr32(head + 48, dcrc);
    wr32(head + 52, fn_crc32(0, head + FNW_HEADER_SIZE, tbytes));
    wr32(head + 56, fn_crc32(0, head, 56));

    fn_atomic *at;
    int rc = fn_atomic_begin(out_path, 0, &at, err);
    if (rc) {
        free(head);
        return rc;
    }
    int fd = fn_atomic_fd(at);
    int bad = write_all(fd, head, doff);
    free(head);
    off = 0;
    for (int i = 0; i < n && !bad; i++) {
        size_t pad = (64 - off % 64) % 64;
        bad = write_all(fd, zeros, pad) || write_all(fd, ts[i].data, ts[i].nbytes);
        off += pad + ts[i].nbytes;
    }
    if (!bad)
        bad = write_all(fd, zeros, tail);
    if (bad) {
        int e = errno;
        fn_atomic_abort(at);
        return fn_fail(err, FN_EIO, "%s: write failed: %s", out_path, strerror(e));
    }
    return fn_atomic_commit(at, err); /* fsync, rename, fsync the folder */
}
