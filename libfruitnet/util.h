/*
 * util.h — the base of libfruitnet (private, util.c): errors, aligned memory,
 * overflow-checked sizes, FNV-1a. Every layer may include it; it includes
 * nothing private. The layering: libfruitnet/README.md.
 */
#ifndef FRUITNET_UTIL_H
#define FRUITNET_UTIL_H

#include "fruitnet.h"

#include <stddef.h>
#include <stdint.h>

/* Fill err (if not NULL) with code and a printf-style message; returns code. */
int fn_fail(fn_error *err, int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* 64-byte aligned allocation (NULL on failure or size overflow); free with fn_afree. */
void *fn_aalloc(size_t bytes);
void fn_afree(void *p);

/* Overflow-checked size arithmetic: return 0 on overflow, 1 otherwise. */
static inline int fn_mul_size(size_t a, size_t b, size_t *out)
{
    return !__builtin_mul_overflow(a, b, out);
}
static inline int fn_add_size(size_t a, size_t b, size_t *out)
{
    return !__builtin_add_overflow(a, b, out);
}

/* 64-bit FNV-1a, continuing from h (start with FN_FNV_INIT). */
#define FN_FNV_INIT 0xcbf29ce484222325ull
static inline uint64_t fn_fnv1a(const void *data, size_t n, uint64_t h)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

/* ---------------- the CPU (isa.c) ---------------- */

/* The data caches of one core as CPUID reports them (isa.c: leaf 4 on Intel, 0x8000001D on AMD, else
 * 0x80000005/6), in bytes; a level CPUID does not describe is 0. Read once, then cached. */
typedef struct fn_cpu_caches {
    size_t l1d, l2, l3;
} fn_cpu_caches;
fn_cpu_caches fn_cpu_caches_get(void);

/* AMX (isa.c): 1 when this CPU reports AMX-TILE and AMX-INT8 (fn_amx_int8) or AMX-BF16 (fn_amx_bf16) with
 * AVX-512, the OS enables the tile state (XCR0 bits 17 and 18) and grants it to the process (Linux:
 * arch_prctl ARCH_REQ_XCOMP_PERM, requested once, on the first call), and FRUITNET_AMX is not "0", nor the
 * other kind ("int8" keeps only fn_amx_int8, "bf16" only fn_amx_bf16; read on every call: the layers ask
 * when they are made, fn_conv_enable_int8 / _bf16, and model.c when it chooses their precision); else 0. */
int fn_amx_int8(void);
int fn_amx_bf16(void);

#endif /* FRUITNET_UTIL_H */
