/* dataset.h — private interfaces shared by inputs.c, extract.c and dataset.c. */
#ifndef FRUITNET_DATASET_H
#define FRUITNET_DATASET_H

#include "fruitnet.h"

#include <sys/types.h>

typedef struct fn_input_entry {
    char *path;  /* normalised, raw bytes */
    char *label; /* parent folder's name, raw bytes */
    dev_t dev;
    ino_t ino;
    int64_t size, mtime_ns;
} fn_input_entry;

struct fn_inputs {
    fn_input_entry *v;
    size_t n, cap;
    int finished, shard_k, shard_n;
    uint64_t all_hash; /* FNV-1a of every path before sharding: the same for all shards of one input set */
    /* entries that could not be listed (errors only; after finish: those of this shard) */
    char **skip_path, **skip_reason;
    size_t nskip, skip_cap;
};

/* Escaped copy (fn_escape_path) in a malloc'd string, or NULL when out of memory. */
char *fn_escape_dup(const char *raw);

/* Largest image file read (as image.c). */
#define FN_MAX_INPUT_BYTES ((size_t)256 << 20)

#endif
