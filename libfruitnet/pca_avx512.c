/*
 * pca_avx512.c — AVX-512 kernels of the PCA (see pca.c for the contracts):
 * the 8x16 co-moment tile of the chunk SYRK and the fused row update + dot
 * of the Householder tridiagonalisation. Compiled with -mavx512f etc.; only
 * called when fn_isa_resolve() reports AVX-512.
 */
#include <immintrin.h>

void fn_pca_tile_avx512(const double *a, const double *b, int K, double *out);
double fn_pca_row_avx512(double *row, const double *pv, const double *pw, double vr, double wr, const double *v,
                         int m);

/* out[i*16 + j] = sum_{r<K} a[r*16 + i] b[r*16 + j], i < 8, j < 16 (a, b: packed 16-wide panels). */
void fn_pca_tile_avx512(const double *a, const double *b, int K, double *out)
{
    __m512d c00 = _mm512_setzero_pd(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00, c31 = c00;
    __m512d c40 = c00, c41 = c00, c50 = c00, c51 = c00, c60 = c00, c61 = c00, c70 = c00, c71 = c00;
    for (int r = 0; r < K; r++) {
        const double *ar = a + (size_t)r * 16;
        __m512d b0 = _mm512_loadu_pd(b + (size_t)r * 16), b1 = _mm512_loadu_pd(b + (size_t)r * 16 + 8);
        __m512d x;
        x = _mm512_set1_pd(ar[0]), c00 = _mm512_fmadd_pd(x, b0, c00), c01 = _mm512_fmadd_pd(x, b1, c01);
        x = _mm512_set1_pd(ar[1]), c10 = _mm512_fmadd_pd(x, b0, c10), c11 = _mm512_fmadd_pd(x, b1, c11);
        x = _mm512_set1_pd(ar[2]), c20 = _mm512_fmadd_pd(x, b0, c20), c21 = _mm512_fmadd_pd(x, b1, c21);
        x = _mm512_set1_pd(ar[3]), c30 = _mm512_fmadd_pd(x, b0, c30), c31 = _mm512_fmadd_pd(x, b1, c31);
        x = _mm512_set1_pd(ar[4]), c40 = _mm512_fmadd_pd(x, b0, c40), c41 = _mm512_fmadd_pd(x, b1, c41);
        x = _mm512_set1_pd(ar[5]), c50 = _mm512_fmadd_pd(x, b0, c50), c51 = _mm512_fmadd_pd(x, b1, c51);
        x = _mm512_set1_pd(ar[6]), c60 = _mm512_fmadd_pd(x, b0, c60), c61 = _mm512_fmadd_pd(x, b1, c61);
        x = _mm512_set1_pd(ar[7]), c70 = _mm512_fmadd_pd(x, b0, c70), c71 = _mm512_fmadd_pd(x, b1, c71);
    }
    _mm512_storeu_pd(out + 0, c00), _mm512_storeu_pd(out + 8, c01);
    _mm512_storeu_pd(out + 16, c10), _mm512_storeu_pd(out + 24, c11);
    _mm512_storeu_pd(out + 32, c20), _mm512_storeu_pd(out + 40, c21);
    _mm512_storeu_pd(out + 48, c30), _mm512_storeu_pd(out + 56, c31);
    _mm512_storeu_pd(out + 64, c40), _mm512_storeu_pd(out + 72, c41);
    _mm512_storeu_pd(out + 80, c50), _mm512_storeu_pd(out + 88, c51);
    _mm512_storeu_pd(out + 96, c60), _mm512_storeu_pd(out + 104, c61);
    _mm512_storeu_pd(out + 112, c70), _mm512_storeu_pd(out + 120, c71);
}

/* row[c] -= vr*pw[c] + wr*pv[c] for c < m; returns sum_c row[c] * v[c] (updated row). */
double fn_pca_row_avx512(double *row, const double *pv, const double *pw, double vr, double wr, const double *v,
                         int m)
{
    __m512d s0 = _mm512_setzero_pd(), s1 = s0, VR = _mm512_set1_pd(vr), WR = _mm512_set1_pd(wr);
    int c = 0;
    for (; c + 16 <= m; c += 16) {
        __m512d x0 = _mm512_loadu_pd(row + c), x1 = _mm512_loadu_pd(row + c + 8);
        x0 = _mm512_fnmadd_pd(VR, _mm512_loadu_pd(pw + c), x0);
        x1 = _mm512_fnmadd_pd(VR, _mm512_loadu_pd(pw + c + 8), x1);
        x0 = _mm512_fnmadd_pd(WR, _mm512_loadu_pd(pv + c), x0);
        x1 = _mm512_fnmadd_pd(WR, _mm512_loadu_pd(pv + c + 8), x1);
        _mm512_storeu_pd(row + c, x0), _mm512_storeu_pd(row + c + 8, x1);
        s0 = _mm512_fmadd_pd(x0, _mm512_loadu_pd(v + c), s0);
        s1 = _mm512_fmadd_pd(x1, _mm512_loadu_pd(v + c + 8), s1);
    }
    for (; c < m; c += 8) {
        __mmask8 k = m - c >= 8 ? 0xff : (__mmask8)((1u << (m - c)) - 1);
        __m512d x0 = _mm512_maskz_loadu_pd(k, row + c);
        x0 = _mm512_fnmadd_pd(VR, _mm512_maskz_loadu_pd(k, pw + c), x0);
        x0 = _mm512_fnmadd_pd(WR, _mm512_maskz_loadu_pd(k, pv + c), x0);
        _mm512_mask_storeu_pd(row + c, k, x0);
        s0 = _mm512_fmadd_pd(x0, _mm512_maskz_loadu_pd(k, v + c), s0);
    }
    return _mm512_reduce_add_pd(_mm512_add_pd(s0, s1));
}

double fn_pca_rowsym_avx512(double *row, const double *pv, const double *pw, double vr, double wr, const double *v,
                            double vn, double *acc, int m);

/* As fn_pca_row_avx512, and also acc[c] += vn * row[c] (updated) for c < m. */
double fn_pca_rowsym_avx512(double *row, const double *pv, const double *pw, double vr, double wr, const double *v,
                            double vn, double *acc, int m)
{
    __m512d s0 = _mm512_setzero_pd(), s1 = s0, VR = _mm512_set1_pd(vr), WR = _mm512_set1_pd(wr),
            VN = _mm512_set1_pd(vn);
    int c = 0;
    for (; c + 16 <= m; c += 16) {
        __m512d x0 = _mm512_loadu_pd(row + c), x1 = _mm512_loadu_pd(row + c + 8);
        x0 = _mm512_fnmadd_pd(VR, _mm512_loadu_pd(pw + c), x0);
        x1 = _mm512_fnmadd_pd(VR, _mm512_loadu_pd(pw + c + 8), x1);
        x0 = _mm512_fnmadd_pd(WR, _mm512_loadu_pd(pv + c), x0);
        x1 = _mm512_fnmadd_pd(WR, _mm512_loadu_pd(pv + c + 8), x1);
        _mm512_storeu_pd(row + c, x0), _mm512_storeu_pd(row + c + 8, x1);
        s0 = _mm512_fmadd_pd(x0, _mm512_loadu_pd(v + c), s0);
        s1 = _mm512_fmadd_pd(x1, _mm512_loadu_pd(v + c + 8), s1);
        _mm512_storeu_pd(acc + c, _mm512_fmadd_pd(VN, x0, _mm512_loadu_pd(acc + c)));
        _mm512_storeu_pd(acc + c + 8, _mm512_fmadd_pd(VN, x1, _mm512_loadu_pd(acc + c + 8)));
    }
    for (; c < m; c += 8) {
        __mmask8 k = m - c >= 8 ? 0xff : (__mmask8)((1u << (m - c)) - 1);
        __m512d x0 = _mm512_maskz_loadu_pd(k, row + c);
        x0 = _mm512_fnmadd_pd(VR, _mm512_maskz_loadu_pd(k, pw + c), x0);
        x0 = _mm512_fnmadd_pd(WR, _mm512_maskz_loadu_pd(k, pv + c), x0);
        _mm512_mask_storeu_pd(row + c, k, x0);
        s0 = _mm512_fmadd_pd(x0, _mm512_maskz_loadu_pd(k, v + c), s0);
        _mm512_mask_storeu_pd(acc + c, k, _mm512_fmadd_pd(VN, x0, _mm512_maskz_loadu_pd(k, acc + c)));
    }
    return _mm512_reduce_add_pd(_mm512_add_pd(s0, s1));
}
