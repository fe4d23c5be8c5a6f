/*
 * pca_internal.h — private to the PCA (pca_stats.c, pca_eigen.c, pca_io.c and
 * the per-ISA kernels pca_portable.c / pca_avx2.c / pca_avx512.c, one source:
 * pca_kernels_impl.h). The algorithm is described in pca_stats.c (statistics)
 * and pca_eigen.c (eigen-decomposition).
 */
#ifndef FN_PCA_INTERNAL_H
#define FN_PCA_INTERNAL_H

#include "internal.h"

#include <sys/mman.h>
#include <unistd.h>

#ifndef CHUNK_ROWS
#define CHUNK_ROWS 256
#endif
#define PW 16 /* panel width (columns) */
#ifndef IBLK
#define IBLK 16 /* panels per L2 block of the SYRK (16 x 256 x 16 doubles = 512 KiB) */
#endif

/* The kernels' contracts (one table per ISA, picked by pca_kernels_pick):
 *  tile:   out[i*16 + j] = sum_{r<K} a[r*16 + i] b[r*16 + j], i < 8, j < 16 (a, b: packed 16-wide panels);
 *  row:    row[c] -= vr*pw[c] + wr*pv[c] for c < m; returns sum_c row[c] * v[c] of the updated row;
 *  rowsym: as row, and also acc[c] += vn * row[c] (updated) for c < m. */
typedef void (*tile_fn)(const double *a, const double *b, int K, double *out);
typedef double (*row_fn)(double *row, const double *pv, const double *pw, double vr, double wr, const double *v,
                         int m);
typedef double (*rowsym_fn)(double *row, const double *pv, const double *pw, double vr, double wr, const double *v,
                            double vn, double *acc, int m);
typedef struct pca_kernels {
    tile_fn tile;
    row_fn row;
    rowsym_fn rowsym;
} pca_kernels;

#define FN_PCA_KERNELS_DECL(isa)                                                                                   \
    void fn_pca_tile_##isa(const double *a, const double *b, int K, double *out);                                 \
    double fn_pca_row_##isa(double *row, const double *pv, const double *pw, double vr, double wr, const double *v, \
                            int m);                                                                                \
    double fn_pca_rowsym_##isa(double *row, const double *pv, const double *pw, double vr, double wr,             \
                               const double *v, double vn, double *acc, int m);
FN_PCA_KERNELS_DECL(portable)
FN_PCA_KERNELS_DECL(avx2)
FN_PCA_KERNELS_DECL(avx512)

/* The kernels of the instruction set fn_isa_resolve(FN_ISA_AUTO) picks (FRUITNET_ISA honoured). */
static inline int pca_kernels_pick(pca_kernels *k, fn_error *err)
{
    fn_isa isa;
    int rc = fn_isa_resolve(FN_ISA_AUTO, &isa, err);
    if (rc)
        return rc;
    if (isa == FN_ISA_AVX512)
        *k = (pca_kernels){fn_pca_tile_avx512, fn_pca_row_avx512, fn_pca_rowsym_avx512};
    else if (isa == FN_ISA_AVX2)
        *k = (pca_kernels){fn_pca_tile_avx2, fn_pca_row_avx2, fn_pca_rowsym_avx2};
    else
        *k = (pca_kernels){fn_pca_tile_portable, fn_pca_row_portable, fn_pca_rowsym_portable};
    return FN_OK;
}

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
