/*
 * atomic.c — the one way libfruitnet (and its tools) put a file in place.
 *
 * Policy (README "Durability"):
 *  1. the data goes to a hidden temporary file in the target's folder,
 *     ".<name>.tmp.<pid>.XXXXXX" (dataset readers skip hidden names), mode 0644;
 *  2. the temporary file is fsynced and closed;
 *  3. the target is checked again: if it exists it must be a regular file
 *     (a symlink only with FN_ATOMIC_REPLACE_SYMLINK, which replaces the link
 *     itself); a device, FIFO, socket or folder is never renamed over or
 *     unlinked — the temporary file is removed and the call fails;
 *  4. rename() over the target, then the folder is fsynced (EINVAL, a
 *     filesystem that cannot sync folders, is not an error).
 * Any failure removes the temporary file and leaves the target untouched.
 */
#include "files.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct fn_atomic {
    char *path, *tmp;
    int fd, flags;
};

/* The target may be replaced: absent, a regular file, or (when allowed) a symlink. */
static int check_target(const char *path, int flags, fn_error *err)
{
    struct stat st;
    if (lstat(path, &st) != 0) {
        if (errno == ENOENT)
            return FN_OK;
        return fn_fail(err, FN_EIO, "%s: %s", path, strerror(errno));
    }
    if (S_ISREG(st.st_mode) || (S_ISLNK(st.st_mode) && (flags & FN_ATOMIC_REPLACE_SYMLINK)))
        return FN_OK;
    return fn_fail(err, FN_EARG, "%s: exists and is not a regular file (%s); refusing to replace it", path,
                   S_ISLNK(st.st_mode) ? "a symlink" : S_ISDIR(st.st_mode) ? "a folder" : S_ISCHR(st.st_mode) ? "a character device"
                   : S_ISBLK(st.st_mode) ? "a block device" : S_ISFIFO(st.st_mode) ? "a FIFO" : S_ISSOCK(st.st_mode) ? "a socket" : "special");
}

int fn_atomic_check(const char *path, int flags, fn_error *err)
{
    if (!path || !path[0])
        return fn_fail(err, FN_EARG, "fn_atomic_check: empty path");
    return check_target(path, flags, err);
}

void fn_atomic_abort(fn_atomic *a)
{
    if (!a)
        return;
    if (a->fd >= 0)
        close(a->fd);
    if (a->tmp)
        unlink(a->tmp);
    free(a->tmp);
    free(a->path);
    free(a);
}

int fn_atomic_begin(const char *path, int flags, fn_atomic **out, fn_error *err)
{
    if (!out)
        return fn_fail(err, FN_EARG, "fn_atomic_begin: out is NULL");
    *out = NULL;
    if (!path || !path[0])
        return fn_fail(err, FN_EARG, "fn_atomic_begin: empty path");
    int rc = check_target(path, flags, err);
    if (rc)
        return rc;
    fn_atomic *a = calloc(1, sizeof *a);
    size_t tl = strlen(path) + 48;
    if (!a || !(a->path = strdup(path)) || !(a->tmp = malloc(tl))) {
        if (a)
            free(a->path), free(a);
        return fn_fail(err, FN_ENOMEM, "%s: out of memory", path);
    }
    a->flags = flags;
    const char *slash = strrchr(path, '/');
    int dirlen = slash ? (int)(slash - path + 1) : 0;
    snprintf(a->tmp, tl, "%.*s.%s.tmp.%d.XXXXXX", dirlen, path, slash ? slash + 1 : path, (int)getpid());
    a->fd = mkostemp(a->tmp, O_CLOEXEC);
    if (a->fd < 0) {
        int e = errno;
        free(a->tmp);
        a->tmp = NULL;
        fn_atomic_abort(a);
        return fn_fail(err, FN_EIO, "%s: cannot create the file: %s", path, strerror(e));
    }
    if (fchmod(a->fd, 0644) != 0) {
        int e = errno;
        fn_atomic_abort(a);
        return fn_fail(err, FN_EIO, "%s: cannot set the file mode: %s", path, strerror(e));
    }
    *out = a;
    return FN_OK;
}

int fn_atomic_fd(const fn_atomic *a) { return a ? a->fd : -1; }

int fn_atomic_write(fn_atomic *a, const void *data, size_t n, fn_error *err)
{
    const unsigned char *p = data;
    while (n) {
        ssize_t w = write(a->fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return fn_fail(err, FN_EIO, "%s: write failed: %s", a->path, strerror(w < 0 ? errno : ENOSPC));
        p += w;
        n -= (size_t)w;
    }
    return FN_OK;
}

/* fsync the folder holding path (so that a rename in it is durable). */
int fn_sync_parent(const char *path, fn_error *err)
{
    const char *slash = strrchr(path, '/');
    char *dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
    if (!dir)
        return fn_fail(err, FN_ENOMEM, "%s: out of memory", path);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rc = FN_OK;
    if (fd < 0)
        rc = fn_fail(err, FN_EIO, "%s: cannot open the folder to sync it: %s", dir, strerror(errno));
    else if (fsync(fd) != 0 && errno != EINVAL)
        rc = fn_fail(err, FN_EIO, "%s: folder fsync failed: %s", dir, strerror(errno));
    if (fd >= 0)
        close(fd);
    free(dir);
    return rc;
}

int fn_atomic_commit(fn_atomic *a, fn_error *err)
{
    if (!a)
        return fn_fail(err, FN_EARG, "fn_atomic_commit: NULL");
    int rc = FN_OK;
    if (fsync(a->fd) != 0)
        rc = fn_fail(err, FN_EIO, "%s: fsync failed: %s", a->path, strerror(errno));
    int fd = a->fd;
    a->fd = -1;
    if (close(fd) != 0 && !rc)
        rc = fn_fail(err, FN_EIO, "%s: close failed: %s", a->path, strerror(errno));
    if (!rc)
        rc = check_target(a->path, a->flags, err); /* it may have changed since begin */
    if (!rc && rename(a->tmp, a->path) != 0)
        rc = fn_fail(err, FN_EIO, "%s: cannot rename the temporary file into place: %s", a->path, strerror(errno));
    if (!rc) {
        free(a->tmp);
        a->tmp = NULL; /* in place: nothing to remove */
        rc = fn_sync_parent(a->path, err);
    }
    fn_atomic_abort(a);
    return rc;
}

int fn_atomic_write_file(const char *path, const void *data, size_t n, int flags, fn_error *err)
{
    fn_atomic *a;
    int rc = fn_atomic_begin(path, flags, &a, err);
    if (rc)
        return rc;
    rc = fn_atomic_write(a, data, n, err);
    if (rc) {
        fn_atomic_abort(a);
        return rc;
    }
    return fn_atomic_commit(a, err);
}

int fn_unlink_regular(const char *path, fn_error *err)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return errno == ENOENT ? FN_OK : fn_fail(err, FN_EIO, "%s: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return fn_fail(err, FN_EARG, "%s: is not a regular file; refusing to remove it", path);
    if (unlink(path) != 0 && errno != ENOENT)
        return fn_fail(err, FN_EIO, "%s: cannot remove: %s", path, strerror(errno));
    return FN_OK;
}
