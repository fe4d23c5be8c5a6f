/*
 * winograd_impl.h — Winograd F(2x2, 3x3) input and output transforms, plain C
 * written to auto-vectorise over channels. Included by each gemm_<isa>.c so
 * every ISA gets its own compiled copy (static functions, reached only
 * through that ISA's fn_gemm_impl table: no vector code leaks across ISAs).
 *
 * Input tile d (4x4 pixels, each `c` channels; padding pixels point at zeros):
 *   V = B^T d B, B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]; V[xi] at v + xi*vstride.
 * Output: Y = A^T M A, A^T = [1 1 1 0; 0 1 -1 -1]; M[xi] at m + xi*mstride;
 *   y = act(Y + bias (+ r)) for the ny x nx valid outputs at out[(oy*ldo_row) + ox*ldo_px].
 */
#include <stddef.h>

static void wino_input(const float *const d[16], size_t c, float *v, size_t vstride)
{
    for (size_t ch = 0; ch < c; ch++) {
        float x[16], t[16];
        for (int i = 0; i < 16; i++)
            x[i] = d[i][ch];
        for (int col = 0; col < 4; col++) { /* t = B^T x (rows) */
            t[0 * 4 + col] = x[0 * 4 + col] - x[2 * 4 + col];
            t[1 * 4 + col] = x[1 * 4 + col] + x[2 * 4 + col];
            t[2 * 4 + col] = x[2 * 4 + col] - x[1 * 4 + col];
            t[3 * 4 + col] = x[1 * 4 + col] - x[3 * 4 + col];
        }
        for (int row = 0; row < 4; row++) { /* V = t B (columns) */
            const float *r = t + row * 4;
            v[(size_t)(row * 4 + 0) * vstride + ch] = r[0] - r[2];
            v[(size_t)(row * 4 + 1) * vstride + ch] = r[1] + r[2];
            v[(size_t)(row * 4 + 2) * vstride + ch] = r[2] - r[1];
            v[(size_t)(row * 4 + 3) * vstride + ch] = r[1] - r[3];
        }
    }
}

static void wino_output(float *m, size_t mstride, size_t c, const float *bias, float *out, const float *res,
                        size_t ldo_row, size_t ldo_px, int ny, int nx, int relu)
{
    for (size_t ch = 0; ch < c; ch++) { /* Y overwrites M[0..3] (all 16 read first) */
        float x[16], t[8];
        for (int i = 0; i < 16; i++)
            x[i] = m[(size_t)i * mstride + ch];
        for (int col = 0; col < 4; col++) { /* t = A^T x */
            t[0 * 4 + col] = x[0 * 4 + col] + x[1 * 4 + col] + x[2 * 4 + col];
            t[1 * 4 + col] = x[1 * 4 + col] - x[2 * 4 + col] - x[3 * 4 + col];
        }
        for (int row = 0; row < 2; row++) { /* Y = t A */
            m[(size_t)(row * 2 + 0) * mstride + ch] = t[row * 4 + 0] + t[row * 4 + 1] + t[row * 4 + 2];
            m[(size_t)(row * 2 + 1) * mstride + ch] = t[row * 4 + 1] - t[row * 4 + 2] - t[row * 4 + 3];
        }
    }
    for (int oy = 0; oy < ny; oy++)
        for (int ox = 0; ox < nx; ox++) {
            const float *y = m + (size_t)(oy * 2 + ox) * mstride;
            float *o = out + (size_t)oy * ldo_row + (size_t)ox * ldo_px;
            const float *r = res ? res + (size_t)oy * ldo_row + (size_t)ox * ldo_px : NULL;
            if (r) /* r may alias o: read before write, element by element */
                for (size_t ch = 0; ch < c; ch++) {
                    float val = y[ch] + bias[ch] + r[ch];
                    o[ch] = relu && val < 0 ? 0 : val;
                }
            else
                for (size_t ch = 0; ch < c; ch++) {
                    float val = y[ch] + bias[ch];
                    o[ch] = relu && val < 0 ? 0 : val;
                }
        }
}
