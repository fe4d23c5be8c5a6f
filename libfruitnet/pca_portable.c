/* pca_portable.c — the PCA kernels (pca_kernels_impl.h) on 2-double vectors, 2 x 8 tile blocks. */
#include "pca_kernels.h"
#define PCA_FMA(a, b, c) ((a) * (b) + (c)) /* no FMA on plain x86-64: rounded twice */
#define PCA_BCAST(p) ((double __attribute__((vector_size(16)))){*(p), *(p)})
#define PCA_VW 2
#define PCA_TILE_RB 2
#define PCA_TILE_CB 8
#define PCA_NAME(x) fn_pca_##x##_portable
#include "pca_kernels_impl.h"
