/*
 * files.c — the library's one reader of whole files, and opens of paths longer
 * than PATH_MAX (files.h). The writer is atomic.c.
 */
#include "files.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int fn_open_long(const char *path, int flags)
{
    int fd = open(path, flags);
    if (fd >= 0 || errno != ENAMETOOLONG)
        return fd;
    /* longer than PATH_MAX: one component at a time */
    char *copy = strdup(path);
    if (!copy) {
        errno = ENOMEM;
        return -1;
    }
    int dfd = open(path[0] == '/' ? "/" : ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
    char *save = NULL, *comp = strtok_r(copy, "/", &save);
    fd = -1;
    while (dfd >= 0 && comp) {
        char *next = strtok_r(NULL, "/", &save);
        int nfd = next ? openat(dfd, comp, O_PATH | O_DIRECTORY | O_CLOEXEC) : openat(dfd, comp, flags);
        int e = errno;
        close(dfd);
        errno = e;
        if (!next) {
            fd = nfd;
            break;
        }
        dfd = nfd;
        comp = next;
    }
    int e = errno;
    free(copy);
    errno = e;
    return fd;
}

int fn_read_file(const char *path, size_t max, const char *what, unsigned char **buf, size_t *len, fn_error *err)
{
    *buf = NULL;
    *len = 0;
    int fd = fn_open_long(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK); /* never blocks on a FIFO */
    if (fd < 0)
        return fn_fail(err, FN_EIO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    int stat_ok = fstat(fd, &st) == 0;
    if (!stat_ok || !S_ISREG(st.st_mode)) {
        int dir = what && stat_ok && S_ISDIR(st.st_mode);
        close(fd);
        if (dir)
            return fn_fail(err, FN_EIO, "%s: is a directory, not %s", path, what);
        return fn_fail(err, FN_EIO, "%s: not a regular file", path);
    }
    if ((uint64_t)st.st_size > max) {
        close(fd);
        return fn_fail(err, FN_ELIMIT, "%s: %lld bytes is over the %zu MiB limit", path, (long long)st.st_size,
                       max >> 20);
    }
    size_t size = (size_t)st.st_size, got = 0;
    unsigned char *b = malloc(size ? size : 1);
    if (!b) {
        close(fd);
        return fn_fail(err, FN_ENOMEM, "%s: out of memory", path);
    }
    while (got < size) {
        ssize_t r = read(fd, b + got, size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = errno;
            free(b);
            close(fd);
            return fn_fail(err, FN_EIO, "%s: read error: %s", path, strerror(e));
        }
        if (r == 0)
            break; /* shrank while reading: decode what is there */
        got += (size_t)r;
    }
    close(fd);
    *buf = b;
    *len = got;
    return FN_OK;
}
