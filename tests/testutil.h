/* testutil.h — shared helpers for the cmocka tests (tests/testutil.c). */
#ifndef FRUITNET_TESTUTIL_H
#define FRUITNET_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "fruitnet.h"

/* Whole file into a malloc'd buffer (NULL if unreadable); *len gets its size. */
void *tu_read_file(const char *path, size_t *len);
/* Raw little-endian float32 file with exactly `count` values, or NULL. */
float *tu_read_f32(const char *path, size_t count);
/* Path join into a static rotating buffer: tu_path(dir, "a/b"). */
const char *tu_path(const char *dir, const char *rel);

/* Temporary folders and files. tu_mkdtemp: a new folder /tmp/fruitnet-test-<tag>-XXXXXX in buf (cap bytes),
 * or NULL. tu_rm_rf: remove path and everything under it, at any depth (paths over PATH_MAX too), links not
 * followed; 0 when done (an absent path counts), -1 else. tu_write: path gets the n bytes (created or
 * truncated), the test fails if not. tu_copy_file: dst gets src's bytes, the test fails if not. */
char *tu_mkdtemp(char *buf, size_t cap, const char *tag);
int tu_rm_rf(const char *path);
void tu_write(const char *path, const void *data, size_t n);
void tu_copy_file(const char *src, const char *dst);

/* IEEE 754 binary16 to float (the golden *.f16 files). */
float tu_half_to_float(uint16_t h);

/* Every row of a dataset folder (fn_dataset_files, committed unless flags has FN_DATASET_UNCOMMITTED) or of
 * one Parquet file, in part order, each vector FN_FEATURE_DIM floats; any read error fails the test. */
#define TU_MAX_ROWS 512
typedef struct tu_rows {
    int n;
    char *path[TU_MAX_ROWS];
    char *label[TU_MAX_ROWS];
    float *vec[TU_MAX_ROWS];
} tu_rows;
void tu_read_rows_ex(const char *path, int flags, tu_rows *r);
void tu_read_rows(const char *path, tu_rows *r); /* flags 0 */
void tu_free_rows(tu_rows *r);
/* Index of the row with that path, or -1. */
int tu_find_row(const tu_rows *r, const char *path);

/* $FRUITNET_GOLDEN (default ../shared/golden) if it exists, else NULL;
 * with FRUITNET_REQUIRE_DATA=1 (set by CI) a missing folder fails the test. */
const char *tu_golden_dir(void);
/* $FRUITNET_SAMPLE (default ../shared/data/fruits-360-sample), same rules. */
const char *tu_sample_dir(void);
/* $FRUITNET_WEIGHTS (default weights/resnet50.fnw), same rules. */
const char *tu_weights_path(void);
/* Skip the current test (cmocka skip) when p is NULL. */
#define TU_REQUIRE(p)                                                                                  \
    do {                                                                                               \
        if (!(p)) {                                                                                    \
            print_message("[  SKIPPED ] data not found: " #p "\n");                                    \
            skip();                                                                                    \
        }                                                                                              \
    } while (0)

/* Metrics. */
double tu_max_abs(const float *a, const float *b, size_t n);
double tu_rel_l2(const float *a, const float *ref, size_t n);
double tu_cosine(const float *a, const float *b, size_t n);

/* Deterministic pseudo-random floats in [lo, hi). */
void tu_fill_random(float *x, size_t n, uint64_t seed, float lo, float hi);

/* A convolution's operands, malloc'd: weights (K x cout, in [-0.5, 0.5)), biases (in [-1, 1)) and nin
 * post-ReLU inputs (a quarter zeros), from seeds seed, seed + 1, seed + 2. */
void tu_conv_operands(size_t K, int cout, size_t nin, uint64_t seed, float **wt, float **bias, float **in);

/* The reference convolution in double: in [n][h][w][cin] (NHWC), W [k][k][cin][cout], bias b, then + res
 * (NULL: none) and ReLU when relu; out [n][oh][ow][cout]. */
void tu_conv_ref(const float *in, int n, int h, int w, int cin, const float *W, const float *b, int k, int stride,
                 int pad, int cout, const float *res, int relu, double *out, int oh, int ow);

/* Packed tensors between layers (conv.h fn_conv_forward_packed), fmt FN_PACKED_U8 (int8 layers after a
 * float32 one, or a bf16 one when first_bf16) or FN_PACKED_BF16 (bf16 layers): a 1x1 -> 3x3 -> 1x1
 * (+ residual) chain on n x h x w, run with float32 tensors between the layers and then packed. wino: the
 * 3x3 is float32 Winograd instead (asserted), so only its output is packed. Asserts that the edges are
 * taken packed, that each packed tensor is its float32 one converted (bit for bit), and that the outputs
 * are equal. */
void tu_packed_chain(int fmt, int first_bf16, int wino, int n, int h, int w);
/* Model m's features of in (n images) are f also with float32 tensors between every two layers: run again
 * with an observer installed (model_hook.h; it keeps every conv's input float32), bit for bit. */
void tu_assert_same_unpacked(fn_model *m, const float *in, int n, const float *f);

/* 1 when JPEGs are decoded by libjpeg(-turbo), PIL's decoder (the default build), 0 for make JPEG=stb. */
int tu_decoder_is_pil(void);

/* Features of the same images at different batch sizes (or batch compositions) agree to this max abs
 * difference: the batch size picks the algorithm per stage (stage 4 Winograd F(4x4) at 8 and F(2x2) at 3
 * and 1, stage 5 F(4x4) at 8 and direct at 3 and 1), each within the golden tolerance of Keras, so they
 * agree to twice the worst error seen against Keras (1.3e-5), not to the last bit; a batching fault (an
 * image's rows or offsets mixed up) is off by 0.1 or more. */
#define TU_BATCH_TOL 2.5e-5

/* A model of weights tu_weights_path() on 2 threads with fc1000 (fn_model_classify), in precision p;
 * the test fails naming the precision if it does not open. */
fn_model *tu_open_model(fn_precision p, int max_batch);

/* A reduced precision against Keras on the sample (tests/test_precision.c, test_int8.c): every step-th
 * image of the golden manifest (../shared/golden all2880) through a precision-p model at batch 32, each
 * compared with its golden float32 features (stored as float16). */
typedef struct tu_gate {
    int n;              /* images */
    double worst, mean; /* cosine to Keras: the least and the mean */
    char worst_path[512];
    int agree;     /* images whose ImageNet top-1 (fc1000 on the features) equals the Keras features' */
    double widest; /* the largest float32 top-1 - (its top-1 in float32) probability gap among the others */
    int k80, k80_ref; /* components for 80% of the variance: of these features, of Keras' */
} tu_gate;
void tu_precision_gate(const char *golden, const char *sample, fn_precision p, int step, tu_gate *out);

/* The 8 golden images (../shared/golden/img8, its README): their names, and their Keras inputs
 * in[8][224*224*3] (BGR, Caffe means off) and features ref[8][2048] (.input.f32, .avgpool.f32); a missing
 * or short file fails the test. */
#define TU_G8 8
extern const char *const tu_g8_names[TU_G8];
void tu_g8_load(const char *golden, float *in, float *ref);
/* The least cosine of the features f[8][2048] to ref[8][2048]; the test fails naming `what` and the image
 * when one is below min_cos. */
double tu_g8_worst_cosine(const char *what, const float *f, const float *ref, double min_cos);

/* The ISAs this CPU supports, portable first; returns how many (<= 3). */
int tu_supported_isas(fn_isa out[3]);

#endif
