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

/* The opaque objects of fruitnet.h (callers use the accessors; the library, these fields). */
struct fn_pca_stats {
    int64_t n;     /* rows seen */
    int dim;
    double *mean;  /* [dim] */
    double *m2;    /* [dim*dim] centred co-moment sum (x-mean)(x-mean)^T; only the upper triangle (i <= j) is kept */
};

struct fn_pca_model {
    int dim, k;
    int64_t n;            /* rows the model was fitted on */
    double total_var;     /* trace of the covariance */
    double *mean;         /* [dim] */
    double *eigvals;      /* [k] descending (covariance with ddof = 1) */
    double *components;   /* [k*dim] unit rows, sign: largest-magnitude entry positive */
};

/* Statistics in place (pca_stats.c): empty ones of dimension dim, and freeing their arrays only. */
int pca_stats_init(fn_pca_stats *s, int dim, fn_error *err);
void pca_stats_clear(fn_pca_stats *s);
/* A heap copy of the struct *s (its arrays moved, not copied): NULL when out of memory (s then untouched). */
fn_pca_stats *pca_stats_box(const fn_pca_stats *s);

/* Allocate a model's arrays of k components of dimension dim in place (pca_io.c); frees them on failure. */
int pca_model_alloc(fn_pca_model *m, int dim, int k, fn_error *err);
/* Free a model's arrays only. */
void pca_model_clear(fn_pca_model *m);

#endif
