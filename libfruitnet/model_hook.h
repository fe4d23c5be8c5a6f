/*
 * model_hook.h — a look inside the running model (private; model.c), for the int8 calibration
 * (calibrate.c): the input of every convolution, as it runs.
 */
#ifndef FRUITNET_MODEL_HOOK_H
#define FRUITNET_MODEL_HOOK_H

#include "fruitnet.h"

#include <stddef.h>

/* Called before each convolution with its Keras name, its input (n floats, NHWC) and whether that input
 * is post-ReLU (every conv but conv1), so that the weight file keeps a '<name>/act_scale' for it (the int8
 * precision runs those it chooses on uint8 inputs: model.c int8_chosen). */
typedef void (*fn_conv_observer)(void *ctx, const char *name, const float *in, size_t n, int int8);
/* Observe every convolution's input from the next fn_model_features on (f NULL: stop). */
void fn_model_observe(fn_model *m, fn_conv_observer f, void *ctx);

#endif
