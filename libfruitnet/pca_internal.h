/*
 * pca_internal.h — private to the PCA (pca_stats.c, pca_eigen.c, pca_io.c), on
 * its per-ISA kernels (contract: pca_kernels.h). The algorithm is described in
 * pca_stats.c (statistics) and pca_eigen.c (eigen-decomposition).
 */
#ifndef FN_PCA_INTERNAL_H
#define FN_PCA_INTERNAL_H

#include "fruitnet.h"
#include "pca_kernels.h"

#include <sys/mman.h>
#include <unistd.h>

#ifndef CHUNK_ROWS
#define CHUNK_ROWS 256
#endif
#define PW 16 /* panel width (columns) */
#ifndef IBLK
#define IBLK 16 /* panels per L2 block of the SYRK (16 x 256 x 16 doubles = 512 KiB) */
#endif

/* Large scratch buffers are mapped and unmapped directly: handed back to the system at once (through
 * malloc, repeated 4 MiB chunk buffers fragmented the heap and the RSS grew by 4 MiB per call), and only
 * the pages touched count (the tridiagonalisation touches the upper triangle only). Page aligned. */
static inline void *pca_big_alloc(size_t bytes)
{
    void *p = mmap(NULL, bytes ? bytes : 1, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

static inline void pca_big_free(void *p, size_t bytes)
{
    if (p)
        munmap(p, bytes ? bytes : 1);
}

static inline int pca_threads(int threads)
{
    if (threads > 0)
        return threads > 64 ? 64 : threads;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)(n > 64 ? 64 : n) : 1;
}

/* Allocate a model of k components of dimension dim (pca_io.c); frees nothing on failure. */
int pca_model_alloc(fn_pca_model *m, int dim, int k, fn_error *err);

#endif
