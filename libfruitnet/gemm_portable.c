/* gemm_portable.c — plain C micro-kernel (4 x 16), any CPU. */
#include "gemm.h"

#define MR 4
#define NR 16

static void kernel_portable(int K, const float *Ap, const float *Bp, float *C, size_t ldc, int mr, int nr,
                            const float *bias, const float *R, size_t ldr, int relu)
{
    float acc[MR][NR] = {{0}};
    for (int k = 0; k < K; k++) {
        const float *a = Ap + (size_t)k * MR, *b = Bp + (size_t)k * NR;
        for (int i = 0; i < MR; i++)
            for (int j = 0; j < NR; j++)
                acc[i][j] += a[i] * b[j];
    }
    for (int i = 0; i < mr; i++) {
        float *c = C + (size_t)i * ldc;
        const float *r = R ? R + (size_t)i * ldr : 0;
        for (int j = 0; j < nr; j++) {
            float v = acc[i][j] + bias[j];
            if (r)
                v += r[j];
            if (relu && v < 0)
                v = 0;
            c[j] = v;
        }
    }
}

const fn_gemm_impl fn_gemm_portable = {MR, NR, kernel_portable};
