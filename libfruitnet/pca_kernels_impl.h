/*
 * pca_kernels_impl.h — the PCA's three kernels written once over a vector of
 * PCA_VW doubles (GCC vector extensions) and included by pca_portable.c (2,
 * SSE2), pca_avx2.c (4) and pca_avx512.c (8), each defining PCA_VW, PCA_FMA
 * (a*b+c: fused where the ISA has FMA), PCA_BCAST(p) (*p in every element,
 * as one broadcast load: gcc otherwise loads 8 values and permutes them on the
 * shuffle port that the FMAs need, 1.6x slower), the tile's register block
 * PCA_TILE_RB x PCA_TILE_CB and PCA_NAME(x) (the exported names). Contracts in
 * pca_kernels.h.
 *
 * Agreement between ISAs: every tile element is one chain of PCA_FMA over the
 * K rows in order, whatever the blocking; the row kernels keep 16 partial sums
 * in 16 fixed lanes (element c goes to lane c mod 16) and add them in one fixed
 * order, so the AVX2 and AVX-512 builds (both with FMA) give the same bits
 * (tests/test_pca.c checks it). The portable build rounds a*b and +c apart.
 */
#include <stddef.h>

#if !defined(PCA_VW) || !defined(PCA_FMA) || !defined(PCA_BCAST) || !defined(PCA_NAME) || !defined(PCA_TILE_RB) ||  \
    !defined(PCA_TILE_CB)
#error "define PCA_VW, PCA_FMA, PCA_BCAST, PCA_NAME, PCA_TILE_RB and PCA_TILE_CB before including pca_kernels_impl.h"
#endif

typedef double pca_v __attribute__((vector_size(PCA_VW * sizeof(double))));
#define PCA_LANES 16
#define PCA_NV (PCA_LANES / PCA_VW) /* vectors per 16 lanes */

static inline pca_v pca_ld(const double *p)
{
    pca_v v;
    __builtin_memcpy(&v, p, sizeof v);
    return v;
}
static inline void pca_st(double *p, pca_v v) { __builtin_memcpy(p, &v, sizeof v); }
static inline pca_v pca_splat(double x) /* element-wise: one broadcast, straight from memory */
{
    pca_v v;
    for (int i = 0; i < PCA_VW; i++)
        v[i] = x;
    return v;
}

/* the 16 lanes added in one fixed order: pairwise, lane i + lane i+8, then +4, +2, +1 */
static inline double pca_reduce16(const double *l)
{
    double t[8];
    for (int i = 0; i < 8; i++)
        t[i] = l[i] + l[i + 8];
    for (int i = 0; i < 4; i++)
        t[i] += t[i + 4];
    t[0] += t[2], t[1] += t[3];
    return t[0] + t[1];
}

/* out[i*16 + j] = sum_{r<K} a[r*16 + i] b[r*16 + j], i < 8, j < 16, in PCA_TILE_RB x PCA_TILE_CB blocks. */
void PCA_NAME(tile)(const double *a, const double *b, int K, double *out)
{
    for (int i0 = 0; i0 < 8; i0 += PCA_TILE_RB)
        for (int j0 = 0; j0 < 16; j0 += PCA_TILE_CB) {
            pca_v c[PCA_TILE_RB][PCA_TILE_CB / PCA_VW];
            for (int i = 0; i < PCA_TILE_RB; i++)
                for (int j = 0; j < PCA_TILE_CB / PCA_VW; j++)
                    c[i][j] = (pca_v){0};
            for (int r = 0; r < K; r++) {
                const double *ar = a + (size_t)r * 16 + i0, *br = b + (size_t)r * 16 + j0;
                pca_v bv[PCA_TILE_CB / PCA_VW];
                for (int j = 0; j < PCA_TILE_CB / PCA_VW; j++)
                    bv[j] = pca_ld(br + j * PCA_VW);
                for (int i = 0; i < PCA_TILE_RB; i++) {
                    pca_v x = PCA_BCAST(ar + i);
                    for (int j = 0; j < PCA_TILE_CB / PCA_VW; j++)
                        c[i][j] = PCA_FMA(x, bv[j], c[i][j]);
                }
            }
            for (int i = 0; i < PCA_TILE_RB; i++)
                for (int j = 0; j < PCA_TILE_CB / PCA_VW; j++)
                    pca_st(out + (i0 + i) * 16 + j0 + j * PCA_VW, c[i][j]);
        }
}

/* The row update shared by the two row kernels: x = row - vr*pw - wr*pv (two fused steps), stored back. */
#define PCA_ROW_UPDATE(X, OFF)                                                                                     \
    pca_v X = PCA_FMA(-VR, pca_ld(pw + (OFF)), pca_ld(row + (OFF)));                                              \
    X = PCA_FMA(-WR, pca_ld(pv + (OFF)), X);                                                                       \
    pca_st(row + (OFF), X)

/* Body of both row kernels; SYM also adds vn * x into acc. */
static inline double pca_row_body(double *row, const double *pv, const double *pw, double vr, double wr,
                                  const double *v, double vn, double *acc, int m, int sym)
{
    pca_v s[PCA_NV], VR = pca_splat(vr), WR = pca_splat(wr), VN = pca_splat(vn);
    for (int q = 0; q < PCA_NV; q++)
        s[q] = (pca_v){0};
    int c = 0;
    for (; c + PCA_LANES <= m; c += PCA_LANES)
        for (int q = 0; q < PCA_NV; q++) {
            const int o = c + q * PCA_VW;
            PCA_ROW_UPDATE(x, o);
            s[q] = PCA_FMA(x, pca_ld(v + o), s[q]);
            if (sym)
                pca_st(acc + o, PCA_FMA(VN, x, pca_ld(acc + o)));
        }
    double lanes[PCA_LANES];
    for (int q = 0; q < PCA_NV; q++)
        pca_st(lanes + q * PCA_VW, s[q]);
    for (int l = 0; c < m; c++, l++) { /* the tail, one element at a time, into lanes 0.. in order */
        pca_v x = PCA_FMA(-VR, pca_splat(pw[c]), pca_splat(row[c]));
        x = PCA_FMA(-WR, pca_splat(pv[c]), x);
        row[c] = x[0];
        lanes[l] = PCA_FMA(x, pca_splat(v[c]), pca_splat(lanes[l]))[0];
        if (sym)
            acc[c] = PCA_FMA(VN, x, pca_splat(acc[c]))[0];
    }
    return pca_reduce16(lanes);
}

/* row[c] -= vr*pw[c] + wr*pv[c] for c < m; returns sum_c row[c] * v[c] (updated row). */
double PCA_NAME(row)(double *row, const double *pv, const double *pw, double vr, double wr, const double *v, int m)
{
    return pca_row_body(row, pv, pw, vr, wr, v, 0, NULL, m, 0);
}

/* As the row kernel, and also acc[c] += vn * row[c] (updated) for c < m. */
double PCA_NAME(rowsym)(double *row, const double *pv, const double *pw, double vr, double wr, const double *v,
                        double vn, double *acc, int m)
{
    return pca_row_body(row, pv, pw, vr, wr, v, vn, acc, m, 1);
}
