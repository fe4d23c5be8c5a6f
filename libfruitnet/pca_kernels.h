/*
 * pca_kernels.h — the PCA's kernel contract (private, kernel layer): the three
 * kernels of pca_kernels_impl.h, one table per ISA (pca_portable.c,
 * pca_avx2.c, pca_avx512.c), and the pick. The PCA itself: pca_internal.h.
 */
#ifndef FN_PCA_KERNELS_H
#define FN_PCA_KERNELS_H

#include "fruitnet.h"

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

#endif
