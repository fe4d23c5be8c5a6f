/* pca_avx512.c — the PCA kernels (pca_kernels_impl.h) on 8-double vectors, 8 x 16 tile blocks. */
#include "pca_kernels.h"
#include <immintrin.h>
#define PCA_FMA(a, b, c) _mm512_fmadd_pd(a, b, c)
#define PCA_BCAST(p) _mm512_set1_pd(*(p))
#define PCA_VW 8
#define PCA_TILE_RB 8
#define PCA_TILE_CB 16
#define PCA_NAME(x) fn_pca_##x##_avx512
#include "pca_kernels_impl.h"
