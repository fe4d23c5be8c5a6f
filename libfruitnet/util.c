/* util.c — errors, aligned allocation, CRC32, small shared helpers. */
#include "util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <zlib.h>

int fn_fail(fn_error *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        err->code = code;
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return code;
}

const char *fn_version(void) { return FRUITNET_VERSION; }

const char *fn_status_name(int code)
{
    switch (code) {
    case FN_OK: return "FN_OK";
    case FN_EARG: return "FN_EARG";
    case FN_EIO: return "FN_EIO";
    case FN_ENOMEM: return "FN_ENOMEM";
    case FN_EFORMAT: return "FN_EFORMAT";
    case FN_ECHECKSUM: return "FN_ECHECKSUM";
    case FN_EUNSUPPORTED: return "FN_EUNSUPPORTED";
    case FN_EIMAGE: return "FN_EIMAGE";
    case FN_ELIMIT: return "FN_ELIMIT";
    case FN_ENUMERIC: return "FN_ENUMERIC";
    default: return "FN_E?";
    }
}

#ifndef FN_HUGE_MIN
#define FN_HUGE_MIN ((size_t)4 << 20)
#endif

void *fn_aalloc(size_t bytes)
{
    void *p = NULL;
    size_t rounded;
    if (!fn_add_size(bytes, 63, &rounded))
        return NULL;
    rounded &= ~(size_t)63;
    if (rounded == 0)
        rounded = 64;
    size_t align = 64;
#ifdef MADV_HUGEPAGE
    /* Large buffers (activations at batch 32 are 100 MB, packed weights up to 38 MB): 2 MiB aligned and
     * backed by transparent huge pages where the kernel offers them only on request (THP "madvise"),
     * so that streaming them does not walk the page tables every 4 KiB. */
    const size_t huge = (size_t)2 << 20;
    if (rounded >= FN_HUGE_MIN) {
        if (!fn_add_size(rounded, huge - 1, &rounded))
            return NULL;
        rounded &= ~(huge - 1), align = huge;
    }
#endif
    if (posix_memalign(&p, align, rounded) != 0)
        return NULL;
#ifdef MADV_HUGEPAGE
    if (align == huge)
        (void)madvise(p, rounded, MADV_HUGEPAGE); /* advice only: without it the buffer is still valid */
#endif
    return p;
}

void fn_afree(void *p) { free(p); }

uint32_t fn_crc32(uint32_t crc, const void *data, size_t len)
{
    const unsigned char *p = data;
    uLong c = crc;
    while (len > 0) { /* zlib takes uInt lengths */
        uInt chunk = len > (1u << 30) ? (1u << 30) : (uInt)len;
        c = crc32(c, p, chunk);
        p += chunk;
        len -= chunk;
    }
    return (uint32_t)c;
}

void fn_free_list(char **list, int n)
{
    if (!list)
        return;
    for (int i = 0; i < n; i++)
        free(list[i]);
    free(list);
}
