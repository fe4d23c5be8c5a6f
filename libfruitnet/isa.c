/* isa.c — run-time instruction-set detection and selection (CPUID + XGETBV), and the cache sizes the
 * convolution's blocking scales to (fn_cpu_caches_get). */
#include "util.h"

#include <pthread.h>

#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

static unsigned long long xgetbv0(void)
{
    unsigned int eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return ((unsigned long long)edx << 32) | eax;
}

fn_isa fn_isa_detect(void)
{
    unsigned int a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d))
        return FN_ISA_PORTABLE;
    int osxsave = (c >> 27) & 1, fma = (c >> 12) & 1, avx = (c >> 28) & 1;
    if (!osxsave || !avx)
        return FN_ISA_PORTABLE;
    unsigned long long xcr0 = xgetbv0();
    if ((xcr0 & 0x6) != 0x6) /* XMM and YMM state enabled by the OS */
        return FN_ISA_PORTABLE;
    if (__get_cpuid_max(0, NULL) < 7)
        return FN_ISA_PORTABLE;
    __cpuid_count(7, 0, a, b, c, d);
    int avx2 = (b >> 5) & 1;
    int avx512f = (b >> 16) & 1, avx512dq = (b >> 17) & 1, avx512bw = (b >> 30) & 1,
        avx512vl = (b >> 31) & 1;
    if (avx512f && avx512dq && avx512bw && avx512vl && fma && avx2 && (xcr0 & 0xe6) == 0xe6)
        return FN_ISA_AVX512;
    if (avx2 && fma)
        return FN_ISA_AVX2;
    return FN_ISA_PORTABLE;
}

/* AVX512_BF16: CPUID.(EAX=7,ECX=1):EAX bit 5, with the AVX-512 ISA usable (which checks the OS's
 * ZMM state) */
static int has_avx512bf16(void)
{
    unsigned int a, b, c, d;
    if (fn_isa_detect() < FN_ISA_AVX512 || __get_cpuid_max(0, NULL) < 7)
        return 0;
    __cpuid_count(7, 0, a, b, c, d);
    if (a < 1) /* no subleaf 1 */
        return 0;
    __cpuid_count(7, 1, a, b, c, d);
    return (a >> 5) & 1;
}

/* AVX512-VNNI: CPUID.(EAX=7,ECX=0):ECX bit 11, with the AVX-512 ISA usable (F, DQ, BW, VL and the OS's ZMM
 * state: fn_isa_detect) */
static int has_avx512vnni(void)
{
    unsigned int a, b, c, d;
    if (fn_isa_detect() < FN_ISA_AVX512 || __get_cpuid_max(0, NULL) < 7)
        return 0;
    __cpuid_count(7, 0, a, b, c, d);
    return (c >> 11) & 1;
}

/* AMX (CPUID.(EAX=7,ECX=0):EDX bit 24 AMX-TILE, 25 AMX-INT8, 22 AMX-BF16), with the AVX-512 ISA usable, the
 * OS's tile state enabled (XCR0 bits 17 XTILECFG and 18 XTILEDATA) and, on Linux, this process granted the
 * tile data (arch_prctl ARCH_REQ_XCOMP_PERM for XFEATURE_XTILEDATA, once: without it the first tile
 * instruction raises SIGILL). Bit 0: AMX-INT8 usable, bit 1: AMX-BF16 usable; 0 when any of it fails. */
static int amx_detect(void)
{
    unsigned int a, b, c, d;
    if (fn_isa_detect() < FN_ISA_AVX512 || __get_cpuid_max(0, NULL) < 7)
        return 0;
    __cpuid_count(7, 0, a, b, c, d);
    const int tile = (d >> 24) & 1, i8 = (d >> 25) & 1, b16 = (d >> 22) & 1;
    if (!tile || !(i8 || b16) || (xgetbv0() & 0x60000) != 0x60000)
        return 0;
#if defined(__linux__) && defined(SYS_arch_prctl)
    if (syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */, 18 /* XFEATURE_XTILEDATA */) != 0)
        return 0;
#else
    return 0; /* another OS: how it grants the tile state is not known here */
#endif
    return (i8 ? 1 : 0) | (b16 ? 2 : 0);
}

/* The deterministic cache parameters of leaf 4 (Intel) or 0x8000001D (AMD, same layout): one subleaf per
 * cache until type 0; size = ways x partitions x line x sets. Data and unified caches only. */
static void caches_from_leaf(unsigned int leaf, fn_cpu_caches *out)
{
    for (unsigned int i = 0; i < 16; i++) {
        unsigned int a, b, c, d;
        __cpuid_count(leaf, i, a, b, c, d);
        unsigned int type = a & 0x1f, level = (a >> 5) & 7;
        if (type == 0)
            break;
        if (type != 1 && type != 3) /* 2 = instruction */
            continue;
        size_t bytes = (size_t)((b >> 22) + 1) * (((b >> 12) & 0x3ff) + 1) * ((b & 0xfff) + 1) * ((size_t)c + 1);
        if (level == 1)
            out->l1d = bytes;
        else if (level == 2)
            out->l2 = bytes;
        else if (level == 3)
            out->l3 = bytes;
    }
}

static void detect_caches(fn_cpu_caches *out)
{
    unsigned int max = __get_cpuid_max(0, NULL), a, b, c, d;
    unsigned int emax = __get_cpuid_max(0x80000000u, NULL);
    if (max == 0)
        return;
    __cpuid(0, a, b, c, d);
    const int intel = b == 0x756e6547u; /* "GenuineIntel" */
    if (intel && max >= 4) {
        caches_from_leaf(4, out);
        return;
    }
    if (emax >= 0x80000001u) {
        __cpuid(0x80000001u, a, b, c, d);
        if (((c >> 22) & 1) && emax >= 0x8000001Du) { /* TOPOEXT: AMD's copy of leaf 4 */
            caches_from_leaf(0x8000001Du, out);
            if (out->l2)
                return;
        }
    }
    if (emax >= 0x80000006u) { /* legacy AMD: L1d KB in 0x80000005 ECX[31:24], L2 KB in 0x80000006 ECX[31:16] */
        __cpuid(0x80000005u, a, b, c, d);
        out->l1d = (size_t)(c >> 24) << 10;
        __cpuid(0x80000006u, a, b, c, d);
        out->l2 = (size_t)(c >> 16) << 10;
        out->l3 = (size_t)(d >> 18) << 19; /* EDX[31:18]: 512 KB units */
    } else if (max >= 4) {
        caches_from_leaf(4, out);
    }
}
#else
fn_isa fn_isa_detect(void) { return FN_ISA_PORTABLE; }
static int has_avx512bf16(void) { return 0; }
static int has_avx512vnni(void) { return 0; }
static int amx_detect(void) { return 0; }
static void detect_caches(fn_cpu_caches *out) { (void)out; }
#endif

static fn_cpu_caches g_caches;
static pthread_once_t g_caches_once = PTHREAD_ONCE_INIT;
static void caches_init(void) { detect_caches(&g_caches); }

fn_cpu_caches fn_cpu_caches_get(void)
{
    pthread_once(&g_caches_once, caches_init);
    return g_caches;
}

static int g_amx;
static pthread_once_t g_amx_once = PTHREAD_ONCE_INIT;
static void amx_init(void) { g_amx = amx_detect(); }

/* FRUITNET_AMX=0 turns AMX off (the AVX-512 kernels then run, the reference), FRUITNET_AMX=int8 or bf16
 * keeps only that kind of tile (so one kind can be compared with its reference alone); read on every call */
static int amx_use(int bit)
{
    const char *env = getenv("FRUITNET_AMX");
    if (env && (!strcmp(env, "0") || (!strcmp(env, "int8") && bit != 1) || (!strcmp(env, "bf16") && bit != 2)))
        return 0;
    pthread_once(&g_amx_once, amx_init);
    return (g_amx & bit) != 0;
}

int fn_amx_int8(void) { return amx_use(1); }
int fn_amx_bf16(void) { return amx_use(2); }

const char *fn_precision_name(fn_precision p)
{
    switch (p) {
    case FN_PRECISION_FP32: return "fp32";
    case FN_PRECISION_BF16: return "bf16";
    case FN_PRECISION_INT8: return "int8";
    default: return "unknown";
    }
}

int fn_precision_parse(const char *name, fn_precision *out)
{
    if (name && (!strcmp(name, "fp32") || !strcmp(name, "float32")))
        return *out = FN_PRECISION_FP32, FN_OK;
    if (name && (!strcmp(name, "bf16") || !strcmp(name, "bfloat16")))
        return *out = FN_PRECISION_BF16, FN_OK;
    if (name && !strcmp(name, "int8"))
        return *out = FN_PRECISION_INT8, FN_OK;
    return FN_EARG;
}

int fn_precision_check(fn_precision p, fn_error *err)
{
    switch (p) {
    case FN_PRECISION_FP32: return FN_OK;
    case FN_PRECISION_BF16:
        if (!has_avx512bf16())
            return fn_fail(err, FN_EUNSUPPORTED,
                           "precision bf16 needs the AVX512_BF16 CPU feature (with AVX-512), which this CPU does "
                           "not report");
        return FN_OK;
    case FN_PRECISION_INT8:
        if (!has_avx512vnni())
            return fn_fail(err, FN_EUNSUPPORTED,
                           "precision int8 needs the AVX512_VNNI CPU feature (with AVX-512 F/DQ/BW/VL), which this "
                           "CPU does not report");
        return FN_OK;
    default: return fn_fail(err, FN_EARG, "unknown precision %d", (int)p);
    }
}

const char *fn_isa_name(fn_isa isa)
{
    switch (isa) {
    case FN_ISA_PORTABLE: return "portable";
    case FN_ISA_AVX2: return "avx2";
    case FN_ISA_AVX512: return "avx512";
    default: return "auto";
    }
}

int fn_isa_parse(const char *name, fn_isa *out)
{
    static const struct { const char *n; fn_isa v; } t[] = {
        {"auto", FN_ISA_AUTO}, {"portable", FN_ISA_PORTABLE}, {"c", FN_ISA_PORTABLE},
        {"avx2", FN_ISA_AVX2}, {"avx512", FN_ISA_AVX512},
    };
    for (size_t i = 0; name && i < sizeof t / sizeof t[0]; i++)
        if (strcmp(name, t[i].n) == 0) {
            *out = t[i].v;
            return FN_OK;
        }
    return FN_EARG;
}

int fn_isa_resolve(fn_isa requested, fn_isa *out, fn_error *err)
{
    fn_isa best = fn_isa_detect();
    if (requested == FN_ISA_AUTO) {
        const char *env = getenv("FRUITNET_ISA");
        if (env && *env) {
            if (fn_isa_parse(env, &requested) != FN_OK)
                return fn_fail(err, FN_EARG, "FRUITNET_ISA=%s: expected portable, avx2, avx512 or auto", env);
        }
    }
    if (requested == FN_ISA_AUTO) {
        *out = best;
        return FN_OK;
    }
    if (requested < FN_ISA_PORTABLE || requested > FN_ISA_AVX512)
        return fn_fail(err, FN_EARG, "unknown instruction set %d", (int)requested);
    if (requested > best)
        return fn_fail(err, FN_EUNSUPPORTED, "instruction set %s is not supported by this CPU (best: %s)",
                       fn_isa_name(requested), fn_isa_name(best));
    *out = requested;
    return FN_OK;
}
