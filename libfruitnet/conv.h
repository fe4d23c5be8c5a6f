/*
 * conv.h — the convolution layer (private, conv.c on the gemm.h micro-kernels).
 */
#ifndef FRUITNET_CONV_H
#define FRUITNET_CONV_H

#include "fruitnet.h"
#include "threadpool.h"

#include <stddef.h>

/*
 * A convolution over NHWC input with HWIO weights [kh][kw][cin][cout]
 * (batch norm already folded in), bias [cout], symmetric zero padding.
 * Computed as out[M = n*oh*ow][cout] = patches[M][K = kh*kw*cin] x W[K][cout];
 * 1x1 stride-1 convolutions are a plain GEMM on the input, no im2col.
 */
typedef struct fn_conv {
    int kh, kw, stride, pad, cin, cout;
    fn_isa isa;        /* resolved ISA the weights were packed for */
    float *packed;     /* weights packed for the ISA's micro-kernel (owned) */
    size_t packed_len; /* floats in packed */
    float *bias;       /* [cout] (owned copy, padded as the kernel needs) */
    int wino;          /* FN_WINO_F2 | FN_WINO_F4: Winograd weights that follow the direct ones */
    size_t uoff[2];    /* float offsets in packed of the F(2x2,3x3) [0] and F(4x4,3x3) [1] weights */
    int bf16;          /* direct convolutions run on bf16 (fn_conv_enable_bf16); Winograd stays float32 */
    float *packed16;   /* bf16 weights, two per word along K (gemm.h), panels like packed (owned) */
    int int8;          /* every call direct on uint8 x int8 (fn_conv_enable_int8); no Winograd */
    float *packed8;    /* int8 weights, four per word along K (gemm.h), panels like packed (owned) */
    float *scale8;     /* per output column act_scale * w_scale, padded to the panels (owned) */
    float act_scale;   /* input value of one uint8 step (the calibrated clip / 255) */
    int amx8, amx16;   /* the int8 / bf16 calls may run on AMX (gemm_amx.c): fn_amx_int8() / fn_amx_bf16()
                        * when int8 / bf16 were enabled (conv_plan.c still picks per call) */
} fn_conv;

#define FN_WINO_F2 2 /* Winograd F(2x2,3x3) */
#define FN_WINO_F4 4 /* Winograd F(4x4,3x3) */
/* Pack weights for isa (must be resolved, not AUTO). w is not kept. wino (FN_WINO_F2 and/or FN_WINO_F4)
 * also transforms the weights for Winograd, used when the layer is 3x3/1 pad 1 and a batch has enough
 * tiles (fn_conv_forward picks the variant per call); 0 = direct convolution only. */
int fn_conv_init(fn_conv *c, int kh, int kw, int stride, int pad, int cin, int cout, const float *w,
                 const float *bias, int wino, fn_isa isa, fn_error *err);
void fn_conv_free(fn_conv *c);
/* Also pack the weights w (as given to fn_conv_init) as bf16 pairs, so that the direct convolution runs
 * on AVX512_BF16 (gemm_avx512bf16.c; the input converted to bf16 once per call); needs an AVX-512 conv,
 * an even cin and no row taps (cin >= 16). Winograd, when picked, stays float32. */
int fn_conv_enable_bf16(fn_conv *c, const float *w, fn_error *err);
/* Also quantise the weights w (as given to fn_conv_init) to int8, symmetric per output channel (w_scale =
 * max |w| / 127), packed four per word along K, so that every call runs direct on AVX512-VNNI
 * (gemm_avx512vnni.c): the input (>= 0: post-ReLU) quantised once per call to uint8 steps of act_scale.
 * Needs an AVX-512 conv with cin a multiple of 4 and no row taps (cin >= 64 when kw > 1); Winograd weights,
 * if any, are not used. */
int fn_conv_enable_int8(fn_conv *c, const float *w, float act_scale, fn_error *err);
/* The Winograd weights (FN_WINO_F2 | FN_WINO_F4) worth making for a k x k layer on h x h maps: those that
 * fn_conv_forward picks at some batch size and that beat the alternatives there (measured on ResNet50). */
int fn_conv_wino_kinds(int k, int h);
/* Of the Winograd kinds wino, those fn_conv_forward would pick for a kh x kw/stride pad layer on h x w
 * maps at some batch 1..max_batch on nthreads (the model's pool), when leaving out the others changes no
 * pick (else wino): the weights worth transforming at open (at batch 1, not the 7x7 maps' F(4x4)). */
int fn_conv_wino_needed(int kh, int kw, int stride, int pad, int h, int w, int wino, fn_isa isa, int max_batch,
                        int nthreads);
static inline int fn_conv_out_dim(int in, int k, int stride, int pad)
{
    return (in + 2 * pad - k) / stride + 1;
}
/* Scratch floats fn_conv_forward needs for an n x h x w input on nthreads. */
size_t fn_conv_scratch_floats(const fn_conv *c, int n, int h, int w, int nthreads);
/*
 * out = act(conv(in) + bias [+ residual]); act = ReLU when relu != 0.
 * residual (may be NULL) has the output's shape and MAY BE THE SAME POINTER
 * as out (in-place residual add: each element is read before it is written). scratch holds
 * fn_conv_scratch_floats() floats, 64-byte aligned.
 */
void fn_conv_forward(const fn_conv *c, fn_pool *pool, const float *in, int n, int h, int w, float *out,
                     const float *residual, int relu, float *scratch);
/* Two 1x1 layers on the same input with the same stride (a projection block's branch1 and branch2a) run as
 * one GEMM: c holds their weights side by side (cout = split + the second's), and channels [0, split) go
 * to out (ReLU when relu), [split, cout) to out2 (ReLU when relu2), each its own NHWC tensor. Every output
 * is summed in the same order as by its own layer: the same results, the input read once. */
int fn_conv_split_ok(int kh, int kw, int stride, int pad, int split, int cout); /* whole panels, not Winograd */
void fn_conv_forward_split(const fn_conv *c, fn_pool *pool, const float *in, int n, int h, int w, int split,
                           float *out, int relu, float *out2, int relu2, float *scratch);

/* Packed tensors between two layers. A bf16 or int8 layer converts its float32 input to its packed view
 * first (bf16 pairs, to_bf16; uint8 quads, fn_gemm_vnni_to_u8 at 1 / act_scale). When the layer before it
 * writes its output in that form instead (each output tile converted in the thread's cache, by the same
 * function: the same bits), the float32 tensor is neither written nor read back, nor converted in a pass
 * of its own. */
enum { FN_PACKED_NONE, FN_PACKED_BF16, FN_PACKED_U8 };
/* The packed form fn_conv_forward_packed would take the input of this call in (n x h x w on nthreads):
 * FN_PACKED_BF16 or FN_PACKED_U8 when it runs direct on that view, else FN_PACKED_NONE (float32: the
 * layer's float32 path or Winograd). */
int fn_conv_packed_input(const fn_conv *c, int n, int h, int w, int nthreads);
/* Whether this call can write its output packed: Winograd (a tile's output transform is final), or direct
 * with one K block (each output tile is final after one micro-kernel call); AVX-512, an even cout; not with
 * a residual or a split. */
int fn_conv_packed_output_ok(const fn_conv *c, int n, int h, int w, int nthreads);
/* fn_conv_forward with in given in the packed form in_fmt (FN_PACKED_NONE: float32; else the one
 * fn_conv_packed_input returns for this call) and out written in the form out_fmt (FN_PACKED_NONE: float32;
 * else the next layer's fn_conv_packed_input, uint8 in steps of 1 / out_inv: only when
 * fn_conv_packed_output_ok). Does nothing when in_fmt or out_fmt is not one this call can take. */
void fn_conv_forward_packed(const fn_conv *c, fn_pool *pool, const void *in, int in_fmt, int n, int h, int w,
                            void *out, int out_fmt, float out_inv, const float *residual, int relu, float *scratch);
#endif /* FRUITNET_CONV_H */
