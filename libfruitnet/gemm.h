/*
 * gemm.h — the GEMM micro-kernel interface (private), one implementation per
 * instruction set: gemm_portable.c, gemm_avx2.c, gemm_avx512.c.
 *
 * A micro-kernel computes one MR x NR tile of C over the full K:
 *   acc = Ap (K x MR, packed k-major: Ap[k*MR + i]) x Bp (K x NR, Bp[k*NR + j])
 *   C[i][j] = act(acc + bias[j] (+ R[i][j]))  for i < mr, j < nr
 * R may alias C (each element is read before it is written). Packing and
 * blocking live in conv.c; no kernel knows about files or layers.
 */
#ifndef FRUITNET_GEMM_H
#define FRUITNET_GEMM_H

#include <stddef.h>

typedef void (*fn_ukernel)(int K, const float *Ap, const float *Bp, float *C, size_t ldc, int mr, int nr,
                           const float *bias, const float *R, size_t ldr, int relu);

typedef struct fn_gemm_impl {
    int mr, nr;
    fn_ukernel kernel;
} fn_gemm_impl;

extern const fn_gemm_impl fn_gemm_portable;
extern const fn_gemm_impl fn_gemm_avx2;
extern const fn_gemm_impl fn_gemm_avx512;

#endif
