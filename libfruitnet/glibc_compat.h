/*
 * glibc_compat.h — keep the glibc floor of libfruitnet and the tools at 2.17.
 *
 * Force-included in every translation unit (Makefile: -include). On x86-64
 * glibc the few functions whose default symbol version is newer than 2.17
 * are bound to their older version, which every later glibc still exports:
 *
 *   hypot 2.35, expf 2.27, pow/exp/log 2.29 -> GLIBC_2.2.5 (same function, older implementation)
 *   pthread_create/join/once 2.34    -> GLIBC_2.2.5 (libpthread.so.0 before 2.34: the
 *                                       library is linked with libpthread.so.0 too)
 *   stat/fstat/lstat 2.33            -> __xstat/__fxstat/__lxstat@GLIBC_2.2.5 (what the
 *                                       inline stat() of glibc < 2.33 called)
 *   fstatat 2.33                     -> __fxstatat@GLIBC_2.4
 *
 * The floor is checked by python/tests/test_glibc_floor.py (objdump -T). Other
 * C libraries and architectures are left alone, and so are sanitizer builds
 * (make sanitize, fuzz: ld 2.40 then emits an R_X86_64_NONE PLT slot for __xstat
 * that ld.so refuses, "unexpected PLT reloc type 0x00"); FN_NO_GLIBC_COMPAT
 * turns it off (the Makefile defines it when SAN is set).
 */
#ifndef FN_GLIBC_COMPAT_H
#define FN_GLIBC_COMPAT_H

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define FN_NO_GLIBC_COMPAT 1
#endif
#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || __has_feature(memory_sanitizer)
#define FN_NO_GLIBC_COMPAT 1
#endif
#endif

#if defined(__x86_64__) && defined(__linux__) && !defined(FN_NO_GLIBC_COMPAT)
#include <features.h>
#if defined(__GLIBC__) && !defined(__UCLIBC__)
#include <sys/stat.h>

__asm__(".symver hypot,hypot@GLIBC_2.2.5");
__asm__(".symver expf,expf@GLIBC_2.2.5");
__asm__(".symver pow,pow@GLIBC_2.2.5");
__asm__(".symver exp,exp@GLIBC_2.2.5");
__asm__(".symver log,log@GLIBC_2.2.5");
__asm__(".symver pthread_create,pthread_create@GLIBC_2.2.5");
__asm__(".symver pthread_join,pthread_join@GLIBC_2.2.5");
__asm__(".symver pthread_once,pthread_once@GLIBC_2.2.5");

#if __GLIBC__ == 2 && __GLIBC_MINOR__ >= 33
extern int __xstat(int ver, const char *path, struct stat *buf);
extern int __fxstat(int ver, int fd, struct stat *buf);
extern int __lxstat(int ver, const char *path, struct stat *buf);
extern int __fxstatat(int ver, int dirfd, const char *path, struct stat *buf, int flags);
__asm__(".symver __xstat,__xstat@GLIBC_2.2.5");
__asm__(".symver __fxstat,__fxstat@GLIBC_2.2.5");
__asm__(".symver __lxstat,__lxstat@GLIBC_2.2.5");
__asm__(".symver __fxstatat,__fxstatat@GLIBC_2.4");
/* _STAT_VER_LINUX of x86-64 */
static inline int fn_compat_stat(const char *path, struct stat *buf) { return __xstat(1, path, buf); }
static inline int fn_compat_fstat(int fd, struct stat *buf) { return __fxstat(1, fd, buf); }
static inline int fn_compat_lstat(const char *path, struct stat *buf) { return __lxstat(1, path, buf); }
static inline int fn_compat_fstatat(int dirfd, const char *path, struct stat *buf, int flags)
{
    return __fxstatat(1, dirfd, path, buf, flags);
}
#define stat(path, buf) fn_compat_stat(path, buf)
#define fstat(fd, buf) fn_compat_fstat(fd, buf)
#define lstat(path, buf) fn_compat_lstat(path, buf)
#define fstatat(dirfd, path, buf, flags) fn_compat_fstatat(dirfd, path, buf, flags)
#endif
#endif
#endif
#endif /* FN_GLIBC_COMPAT_H */
