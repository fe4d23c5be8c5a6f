/* pool.c — max pool, global average pool, dense and softmax layers (NHWC). */
#include "conv.h"
#include "layers.h"
#include "threadpool.h"

#include <float.h>
#include <math.h>
#include <string.h>

typedef struct maxpool_job {
    const float *in;
    float *out;
    int n, h, w, c, k, stride, pad, oh, ow;
} maxpool_job;

static void maxpool_task(void *arg, int tid, int nth)
{
    maxpool_job *j = arg;
    size_t rows = (size_t)j->n * j->oh;
    size_t r0 = rows * (size_t)tid / (size_t)nth, r1 = rows * (size_t)(tid + 1) / (size_t)nth;
    for (size_t r = r0; r < r1; r++) {
        size_t img = r / (size_t)j->oh;
        int oy = (int)(r % (size_t)j->oh);
        for (int ox = 0; ox < j->ow; ox++) {
            float *o = j->out + ((img * (size_t)j->oh + (size_t)oy) * (size_t)j->ow + (size_t)ox) * (size_t)j->c;
            int first = 1;
            for (int ky = 0; ky < j->k; ky++) {
                int y = oy * j->stride - j->pad + ky;
                for (int kx = 0; kx < j->k; kx++) {
                    int x = ox * j->stride - j->pad + kx;
                    if (y < 0 || y >= j->h || x < 0 || x >= j->w) {
                        /* Keras ZeroPadding2D: the padding is a real 0 in the window */
                        for (int ch = 0; ch < j->c; ch++)
                            o[ch] = first ? 0.0f : (o[ch] > 0.0f ? o[ch] : 0.0f);
                    } else {
                        const float *s = j->in + ((img * (size_t)j->h + (size_t)y) * (size_t)j->w + (size_t)x) * (size_t)j->c;
                        if (first)
                            memcpy(o, s, (size_t)j->c * sizeof(float));
                        else
                            for (int ch = 0; ch < j->c; ch++)
                                o[ch] = s[ch] > o[ch] ? s[ch] : o[ch];
                    }
                    first = 0;
                }
            }
        }
    }
}

void fn_maxpool(fn_pool *pool, const float *in, int n, int h, int w, int c, int k, int stride, int pad, float *out)
{
    maxpool_job j = {in, out, n, h, w, c, k, stride, pad, fn_conv_out_dim(h, k, stride, pad),
                     fn_conv_out_dim(w, k, stride, pad)};
    fn_pool_run(pool, maxpool_task, &j);
}

void fn_global_avgpool(const float *in, int n, int h, int w, int c, float *out)
{
    size_t hw = (size_t)h * w;
    for (int i = 0; i < n; i++) {
        float *o = out + (size_t)i * c;
        const float *s = in + (size_t)i * hw * c;
        /* float accumulation in pixel order like Keras' mean; then one division */
        for (int ch = 0; ch < c; ch++)
            o[ch] = 0.0f;
        for (size_t p = 0; p < hw; p++)
            for (int ch = 0; ch < c; ch++)
                o[ch] += s[p * c + ch];
        for (int ch = 0; ch < c; ch++)
            o[ch] /= (float)hw;
    }
}

void fn_dense(const float *in, int n, int in_dim, const float *W, const float *b, int out_dim, float *out)
{
    for (int i = 0; i < n; i++) {
        float *o = out + (size_t)i * out_dim;
        const float *x = in + (size_t)i * in_dim;
        memcpy(o, b, (size_t)out_dim * sizeof(float));
        for (int k = 0; k < in_dim; k++) {
            const float xv = x[k], *wr = W + (size_t)k * out_dim;
            for (int j = 0; j < out_dim; j++)
                o[j] += xv * wr[j];
        }
    }
}

void fn_softmax(float *x, int n, int d)
{
    for (int i = 0; i < n; i++) {
        float *r = x + (size_t)i * d, mx = -FLT_MAX;
        for (int j = 0; j < d; j++)
            mx = r[j] > mx ? r[j] : mx;
        double s = 0;
        for (int j = 0; j < d; j++) {
            r[j] = expf(r[j] - mx);
            s += r[j];
        }
        for (int j = 0; j < d; j++)
            r[j] = (float)(r[j] / s);
    }
}
