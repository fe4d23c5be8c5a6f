/* gemm_portable.c — plain C micro-kernel (4 x 8), any CPU; auto-vectorisable (SSE2: 8 xmm accumulators). */
#include "gemm.h"
#define WINO_VW 4
#include "winograd_impl.h"

#define MR 4
#define NR 8

static void kernel_portable(const fn_ukargs *u)
{
    float acc[MR][NR] = {{0}};
    const float *b = u->b;
    for (int t = 0; t < u->ntaps; t++) {
        const float *a0 = u->a[t * MR + 0] + u->k0, *a1 = u->a[t * MR + 1] + u->k0;
        const float *a2 = u->a[t * MR + 2] + u->k0, *a3 = u->a[t * MR + 3] + u->k0;
        for (int k = 0; k < u->kt; k++, b += NR) {
            for (int j = 0; j < NR; j++) {
                acc[0][j] += a0[k] * b[j];
                acc[1][j] += a1[k] * b[j];
                acc[2][j] += a2[k] * b[j];
                acc[3][j] += a3[k] * b[j];
            }
        }
    }
    for (int i = 0; i < u->mr; i++) {
        float *c = u->c + (size_t)i * u->ldc;
        const float *r = u->first && u->r ? u->r + (size_t)i * u->ldr : 0;
        for (int j = 0; j < u->nr; j++) {
            float v = acc[i][j];
            if (u->first) {
                v += u->bias[j];
                if (r)
                    v += r[j];
            } else {
                v += c[j];
            }
            if (u->last && u->relu && v < 0)
                v = 0;
            c[j] = v;
        }
    }
}

const fn_gemm_impl fn_gemm_portable = {MR, NR, kernel_portable, wino_input, wino4_input, wino_output, wino4_output, NULL,
                                        /* the AVX-512 set (mc a multiple of 4) */
                                        {2048, 168, 56, 28, 256 << 10, 2 << 20}};
