/*
 * layers.h — the layers other than the convolution (private, pool.c): max and
 * average pooling, dense, softmax.
 */
#ifndef FRUITNET_LAYERS_H
#define FRUITNET_LAYERS_H

#include "threadpool.h"

/* Max pool k x k / stride with zero padding `pad` (Keras ZeroPadding2D + valid MaxPool). */
void fn_maxpool(fn_pool *pool, const float *in, int n, int h, int w, int c, int k, int stride, int pad,
                float *out);
/* Global average pool: [n,h,w,c] -> [n,c]. */
void fn_global_avgpool(const float *in, int n, int h, int w, int c, float *out);
/* Dense: out[n][o] = in[n][i] . W[i][o] + b[o] (W row-major [in][out]). */
void fn_dense(const float *in, int n, int in_dim, const float *W, const float *b, int out_dim, float *out);
/* In-place softmax over rows of length d. */
void fn_softmax(float *x, int n, int d);

#endif /* FRUITNET_LAYERS_H */
