/* fnw.h — constants of the .fnw weight file format (private). */
#ifndef FRUITNET_FNW_H
#define FRUITNET_FNW_H
#define FNW_MAGIC "FNWEIGHT"
#define FNW_VERSION 1
#define FNW_HEADER_SIZE 64
#define FNW_MAX_TENSORS 65536

#include "fruitnet.h"

#include <stddef.h>
#include <stdint.h>

/* One tensor to write: dtype FN_DTYPE_F32 or FN_DTYPE_U8, nbytes = product(shape) x dtype size. */
typedef struct fnw_tensor {
    const char *name;
    int dtype, ndim;
    uint64_t shape[4];
    const void *data;
    size_t nbytes;
} fnw_tensor;

/* Write n tensors, in order, as a .fnw file (weights/README.md) at path: header, table, 64-aligned data,
 * all CRCs, put in place by fn_atomic_* (hidden temporary, fsync, rename, folder fsync). fnw_write.c. */
int fnw_write(const fnw_tensor *t, int n, const char *path, fn_error *err);
#endif
