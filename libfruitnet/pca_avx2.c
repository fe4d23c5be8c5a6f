/* pca_avx2.c — the PCA kernels (pca_kernels_impl.h) on 4-double vectors, 4 x 8 tile blocks. */
#include "pca_kernels.h"
#include <immintrin.h>
#define PCA_FMA(a, b, c) _mm256_fmadd_pd(a, b, c)
#define PCA_BCAST(p) _mm256_broadcast_sd(p)
#define PCA_VW 4
#define PCA_TILE_RB 4
#define PCA_TILE_CB 8
#define PCA_NAME(x) fn_pca_##x##_avx2
#include "pca_kernels_impl.h"
