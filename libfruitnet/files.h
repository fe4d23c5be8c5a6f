/*
 * files.h — private file helpers of the I/O layer (files.c, atomic.c): the
 * one reader of whole files and the pieces of the one atomic writer
 * (fn_atomic_* in fruitnet.h). Knows nothing of kernels, layers or the model.
 */
#ifndef FRUITNET_FILES_H
#define FRUITNET_FILES_H

#include "fruitnet.h"

#include <stddef.h>

/* fsync the folder holding path (EINVAL, a filesystem that cannot, is not an error). */
int fn_sync_parent(const char *path, fn_error *err);
/* Remove path if it is a regular file (absent: FN_OK); anything else is refused and left. */
int fn_unlink_regular(const char *path, fn_error *err);
/* open(2) that also works for paths longer than PATH_MAX (component by component with openat). */
int fn_open_long(const char *path, int flags);
/* Read a whole regular file (opened O_NONBLOCK: never blocks on a FIFO; at most max bytes; a file that
 * shrinks while read gives what was there). what, when not NULL, names what the file should be, for a
 * folder's message: "PATH: is a directory, not <what>" (e.g. "an image file"); else "not a regular file". */
int fn_read_file(const char *path, size_t max, const char *what, unsigned char **buf, size_t *len, fn_error *err);
static inline int fn_read_regular(const char *path, size_t max, unsigned char **buf, size_t *len, fn_error *err)
{
    return fn_read_file(path, max, NULL, buf, len, err);
}

#endif /* FRUITNET_FILES_H */
