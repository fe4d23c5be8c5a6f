/*
 * pca_avx2.c — AVX2+FMA kernels of the PCA (see pca.c for the contracts):
 * the 8x16 co-moment tile of the chunk SYRK (as four 4x8 register blocks)
 * and the fused row update + dot of the Householder tridiagonalisation.
 */
#include <immintrin.h>

void fn_pca_tile_avx2(const double *a, const double *b, int K, double *out);
double fn_pca_row_avx2(double *row, const double *pv, const double *pw, double vr, double wr, const double *v,
                       int m);

void fn_pca_tile_avx2(const double *a, const double *b, int K, double *out)
{
    for (int i0 = 0; i0 < 8; i0 += 4)
        for (int j0 = 0; j0 < 16; j0 += 8) {
            __m256d c00 = _mm256_setzero_pd(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00,
                    c31 = c00;
            for (int r = 0; r < K; r++) {
                const double *ar = a + (size_t)r * 16 + i0, *br = b + (size_t)r * 16 + j0;
                __m256d b0 = _mm256_loadu_pd(br), b1 = _mm256_loadu_pd(br + 4), x;
                x = _mm256_broadcast_sd(ar + 0), c00 = _mm256_fmadd_pd(x, b0, c00), c01 = _mm256_fmadd_pd(x, b1, c01);
                x = _mm256_broadcast_sd(ar + 1), c10 = _mm256_fmadd_pd(x, b0, c10), c11 = _mm256_fmadd_pd(x, b1, c11);
                x = _mm256_broadcast_sd(ar + 2), c20 = _mm256_fmadd_pd(x, b0, c20), c21 = _mm256_fmadd_pd(x, b1, c21);
                x = _mm256_broadcast_sd(ar + 3), c30 = _mm256_fmadd_pd(x, b0, c30), c31 = _mm256_fmadd_pd(x, b1, c31);
            }
            double *o = out + i0 * 16 + j0;
            _mm256_storeu_pd(o, c00), _mm256_storeu_pd(o + 4, c01);
            _mm256_storeu_pd(o + 16, c10), _mm256_storeu_pd(o + 20, c11);
            _mm256_storeu_pd(o + 32, c20), _mm256_storeu_pd(o + 36, c21);
            _mm256_storeu_pd(o + 48, c30), _mm256_storeu_pd(o + 52, c31);
        }
}

double fn_pca_row_avx2(double *row, const double *pv, const double *pw, double vr, double wr, const double *v, int m)
{
    __m256d s0 = _mm256_setzero_pd(), s1 = s0, VR = _mm256_set1_pd(vr), WR = _mm256_set1_pd(wr);
    int c = 0;
    for (; c + 8 <= m; c += 8) {
        __m256d x0 = _mm256_loadu_pd(row + c), x1 = _mm256_loadu_pd(row + c + 4);
        x0 = _mm256_fnmadd_pd(VR, _mm256_loadu_pd(pw + c), x0);
        x1 = _mm256_fnmadd_pd(VR, _mm256_loadu_pd(pw + c + 4), x1);
        x0 = _mm256_fnmadd_pd(WR, _mm256_loadu_pd(pv + c), x0);
        x1 = _mm256_fnmadd_pd(WR, _mm256_loadu_pd(pv + c + 4), x1);
        _mm256_storeu_pd(row + c, x0), _mm256_storeu_pd(row + c + 4, x1);
        s0 = _mm256_fmadd_pd(x0, _mm256_loadu_pd(v + c), s0);
        s1 = _mm256_fmadd_pd(x1, _mm256_loadu_pd(v + c + 4), s1);
    }
    double t[4];
    _mm256_storeu_pd(t, _mm256_add_pd(s0, s1));
    double s = (t[0] + t[1]) + (t[2] + t[3]);
    for (; c < m; c++) {
        double x = row[c] - vr * pw[c] - wr * pv[c];
        row[c] = x;
        s += x * v[c];
    }
    return s;
}

double fn_pca_rowsym_avx2(double *row, const double *pv, const double *pw, double vr, double wr, const double *v,
                          double vn, double *acc, int m);

double fn_pca_rowsym_avx2(double *row, const double *pv, const double *pw, double vr, double wr, const double *v,
                          double vn, double *acc, int m)
{
    __m256d s0 = _mm256_setzero_pd(), s1 = s0, VR = _mm256_set1_pd(vr), WR = _mm256_set1_pd(wr),
            VN = _mm256_set1_pd(vn);
    int c = 0;
    for (; c + 8 <= m; c += 8) {
        __m256d x0 = _mm256_loadu_pd(row + c), x1 = _mm256_loadu_pd(row + c + 4);
        x0 = _mm256_fnmadd_pd(VR, _mm256_loadu_pd(pw + c), x0);
        x1 = _mm256_fnmadd_pd(VR, _mm256_loadu_pd(pw + c + 4), x1);
        x0 = _mm256_fnmadd_pd(WR, _mm256_loadu_pd(pv + c), x0);
        x1 = _mm256_fnmadd_pd(WR, _mm256_loadu_pd(pv + c + 4), x1);
        _mm256_storeu_pd(row + c, x0), _mm256_storeu_pd(row + c + 4, x1);
        s0 = _mm256_fmadd_pd(x0, _mm256_loadu_pd(v + c), s0);
        s1 = _mm256_fmadd_pd(x1, _mm256_loadu_pd(v + c + 4), s1);
        _mm256_storeu_pd(acc + c, _mm256_fmadd_pd(VN, x0, _mm256_loadu_pd(acc + c)));
        _mm256_storeu_pd(acc + c + 4, _mm256_fmadd_pd(VN, x1, _mm256_loadu_pd(acc + c + 4)));
    }
    double t[4];
    _mm256_storeu_pd(t, _mm256_add_pd(s0, s1));
    double s = (t[0] + t[1]) + (t[2] + t[3]);
    for (; c < m; c++) {
        double x = row[c] - vr * pw[c] - wr * pv[c];
        row[c] = x;
        s += x * v[c];
        acc[c] += vn * x;
    }
    return s;
}
