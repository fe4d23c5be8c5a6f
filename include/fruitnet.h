/*
 * fruitnet.h — the one public header of libfruitnet.
 *
 * libfruitnet turns images into Keras-ResNet50 (ImageNet) 2048-d avg_pool
 * features, reduces them with PCA and reads/writes Parquet. Pure C11, no BLAS.
 *
 * Conventions
 *  - Status: a function that can fail returns FN_OK (0) or a negative FN_E* code and fills `err` when not
 *    NULL (err->code = the status; msg names the file or argument at fault). Constructors set their `**out`
 *    to an opaque object (read through accessors), or to NULL on failure; every _free/_close accepts NULL.
 *    Exceptions: fn_isa_parse, fn_precision_parse (no fn_error), fn_parquet_reader_next (1 row, 0 end),
 *    fn_escape_path, fn_unescape_path (a length, as snprintf). The library never prints.
 *  - Tensors are NHWC float32, row-major. A model input is [n,224,224,3] with
 *    channels in BGR order and the Caffe means subtracted (see
 *    fn_preprocess_rgb224).
 *
 * Thread safety
 *  - There is no hidden global state: the CPU instruction set is detected
 *    per call and the env variables FRUITNET_ISA and FRUITNET_AMX (0: no AMX
 *    tiles for bf16 and int8) are read when a model opens; where the CPU has
 *    AMX, the tile state is requested from Linux once per process.
 *  - An fn_model may be used by one thread at a time (it owns its scratch
 *    arena and thread pool). Different fn_model objects may be used from
 *    different threads at the same time. fn_model_features() itself spreads
 *    its work over `threads` worker threads.
 *  - Image, resize, Parquet and PCA functions are reentrant: they touch only
 *    the objects passed to them.
 */
#ifndef FRUITNET_H
#define FRUITNET_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FRUITNET_VERSION "0.2.0"
/* The ABI number: the shared library is libfruitnet.so.FRUITNET_ABI. It grows at every change that
 * breaks programs built against an earlier header (1: the opaque PCA objects of 0.2.0); additions (new
 * functions, enum values appended at the end) keep it. */
#define FRUITNET_ABI 1

/* Symbol visibility: libfruitnet is built with -fvisibility=hidden, and what
 * this header declares between the push and the pop below is exported; no
 * other symbol of the library is (tests/check_abi.sh checks it). */
#if defined(__GNUC__)
#pragma GCC visibility push(default)
#endif

/* The library's version, FRUITNET_VERSION of the build ("0.2.0"): compare with
 * the header's to detect a mismatched shared library. */
const char *fn_version(void);

/* ------------------------------------------------------------------ */
/* Errors                                                              */
/* ------------------------------------------------------------------ */

enum {
    FN_OK = 0,
    FN_EARG = -1,         /* invalid argument */
    FN_EIO = -2,          /* open/read/write/rename failed (errno in msg) */
    FN_ENOMEM = -3,       /* allocation failed */
    FN_EFORMAT = -4,      /* malformed or truncated file */
    FN_ECHECKSUM = -5,    /* CRC mismatch */
    FN_EUNSUPPORTED = -6, /* valid but unsupported feature (codec, dtype…) */
    FN_EIMAGE = -7,       /* image cannot be decoded */
    FN_ELIMIT = -8,       /* size limit exceeded (dimensions, lengths) */
    FN_ENUMERIC = -9      /* NaN/Inf or degenerate numeric input */
};

/* Error report filled by failing calls: code (FN_E*) and a readable reason. */
typedef struct fn_error {
    int code;
    char msg[512];
} fn_error;

/* Static name of a status code, e.g. "FN_EFORMAT". */
const char *fn_status_name(int code);

/* ------------------------------------------------------------------ */
/* CPU dispatch                                                        */
/* ------------------------------------------------------------------ */

typedef enum fn_isa {
    FN_ISA_AUTO = 0,     /* best supported; overridable with FRUITNET_ISA=portable|avx2|avx512 */
    FN_ISA_PORTABLE = 1, /* plain C, any x86-64 (or other) CPU */
    FN_ISA_AVX2 = 2,     /* AVX2 + FMA */
    FN_ISA_AVX512 = 3    /* AVX-512 F/BW/DQ/VL */
} fn_isa;

/* Best instruction set this CPU and OS support (never FN_ISA_AUTO). */
fn_isa fn_isa_detect(void);
/* Resolve a request: AUTO reads FRUITNET_ISA then detects; an unsupported
 * explicit request fails with FN_EUNSUPPORTED. */
int fn_isa_resolve(fn_isa requested, fn_isa *out, fn_error *err);
/* "portable", "avx2", "avx512" (or "auto"). */
const char *fn_isa_name(fn_isa isa);
/* Parse a name as above; returns FN_OK or FN_EARG. */
int fn_isa_parse(const char *name, fn_isa *out);

/* Arithmetic of the network's convolutions (fn_model_options.precision). */
typedef enum fn_precision {
    FN_PRECISION_FP32 = 0, /* float32 everywhere (the default) */
    FN_PRECISION_BF16 = 1, /* direct convolutions on bf16 inputs and weights with float32 sums
                              (AVX512_BF16 vdpbf16ps, or AMX-BF16 tiles where the CPU has them); conv1,
                              Winograd layers and the rest stay float32 */
    FN_PRECISION_INT8 = 2  /* the 2b and 2c convolutions of stages 3-5 direct on uint8 inputs (the weight
                              file's calibrated activation scales) and int8 weights (per-channel scales),
                              int32 sums, float32 outputs (AVX512-VNNI vpdpbusd, or AMX-INT8 tiles where the
                              CPU has them: the same outputs, bit for bit); the convolutions that read the
                              residual stream (branch1, branch2a) and stage 2's run bf16 on AMX-BF16 tiles,
                              else float32; conv1, residuals and pools stay float32 */
} fn_precision;

/* "fp32", "bf16" or "int8". */
const char *fn_precision_name(fn_precision p);
/* Parse "fp32", "bf16" or "int8"; returns FN_OK or FN_EARG. */
int fn_precision_parse(const char *name, fn_precision *out);
/* FN_OK if this CPU can run precision p, else FN_EUNSUPPORTED with the missing CPU feature named in err. */
int fn_precision_check(fn_precision p, fn_error *err);

/* ------------------------------------------------------------------ */
/* Weight file (format documented in weights/README.md)                */
/* ------------------------------------------------------------------ */

typedef enum fn_dtype { FN_DTYPE_F32 = 1, FN_DTYPE_U8 = 2 } fn_dtype;

/* One named tensor of a weight file; data points into the mapping. */
typedef struct fn_wtensor {
    const char *name;
    fn_dtype dtype;
    int ndim;
    int64_t shape[4];
    int64_t count;     /* number of elements */
    const void *data;  /* 64-byte aligned */
} fn_wtensor;

typedef struct fn_weights fn_weights;

/* Map and validate a weight file (magic, version, table bounds, CRC32). */
int fn_weights_open(const char *path, fn_weights **out, fn_error *err);
/* Validate a weight file held in memory (not copied: keep it alive). */
int fn_weights_open_memory(const void *data, size_t size, fn_weights **out, fn_error *err);
/* Tensor by name, or NULL. */
const fn_wtensor *fn_weights_find(const fn_weights *w, const char *name);
/* Number of tensors, and the i-th one (NULL when out of range). */
int fn_weights_count(const fn_weights *w);
const fn_wtensor *fn_weights_at(const fn_weights *w, int i);
/* CRC32 of the data section as stored in the header (identifies the weights). */
uint32_t fn_weights_crc32(const fn_weights *w);
/* Unmap and free; NULL is allowed. */
void fn_weights_close(fn_weights *w);

/* Convert a TF.js layers model (model.json + shards beside it) and its labels.json
 * into a .fnw file, folding batch norm into the convolutions (atomic write).
 * `integrity` (may be NULL) is recorded in the file's "meta" tensor. */
int fn_convert_tfjs(const char *model_json, const char *labels_json, const char *integrity, const char *out_path,
                    fn_error *err);

/* CRC-32 (IEEE, zlib's polynomial) of a buffer, continuing from `crc` (start with 0). */
uint32_t fn_crc32(uint32_t crc, const void *data, size_t len);

/* ------------------------------------------------------------------ */
/* Images                                                              */
/* ------------------------------------------------------------------ */

#define FN_INPUT_SIZE 224
#define FN_FEATURE_DIM 2048
#define FN_NUM_CLASSES 1000
/* Images whose declared size exceeds either limit are refused before decoding (FN_ELIMIT). */
#define FN_IMAGE_MAX_SIDE 16384
#define FN_IMAGE_MAX_PIXELS (64 * 1024 * 1024)
/* A JPEG's scans (each a pass over all its coefficients, e.g. 10 in a usual progressive file): at most
 * FN_JPEG_MAX_SCANS, and scans x pixels at most FN_JPEG_MAX_PIXEL_SCANS (16 scans of the largest image),
 * counted from the markers before decoding and again as the decoder reads them; else FN_ELIMIT. */
#define FN_JPEG_MAX_SCANS 256
#define FN_JPEG_MAX_PIXEL_SCANS ((int64_t)16 * FN_IMAGE_MAX_PIXELS)

/* An 8-bit RGB image, rows packed (stride = 3*w). */
typedef struct fn_image {
    int w, h;
    uint8_t *rgb;
} fn_image;

typedef enum fn_resize_mode {
    FN_RESIZE_PIL = 0, /* bit-exact PIL Image.resize(BICUBIC) (default; parity with Keras/PIL pipelines) */
    FN_RESIZE_STB = 1  /* stb_image_resize Catmull-Rom (not PIL-exact) */
} fn_resize_mode;

/* Decode JPEG/PNG bytes to RGB, the pixels of PIL's Image.open(f).convert('RGB') (README "Decoders and
 * parity"). Other formats are named in the error ("GIF image: not supported"). `name` is for errors (may be NULL). */
int fn_image_decode(const void *bytes, size_t len, const char *name, fn_image *out, fn_error *err);
/* Read and decode a file. */
int fn_image_load(const char *path, fn_image *out, fn_error *err);
/* Free the pixels; the struct may be reused. */
void fn_image_free(fn_image *img);
/* Mirror the image left-right in place (PIL's img.transpose(Image.FLIP_LEFT_RIGHT)). */
void fn_image_flip_lr(fn_image *img);
/* The JPEG decoder compiled in: "libjpeg-turbo 2.1.5" (default: PIL-identical pixels with the same
 * libjpeg-turbo) or "stb_image" (make JPEG=stb). PNG is always fruitnet's own decoder (png.c, on zlib). */
const char *fn_image_decoder_name(void);
/* PIL-exact bicubic resize of an RGB image (src sw x sh -> dst dw x dh). */
int fn_resize_pil_bicubic(const uint8_t *src, int sw, int sh, uint8_t *dst, int dw, int dh, fn_error *err);
/* stb_image_resize Catmull-Rom resize of an RGB image. */
int fn_resize_stb(const uint8_t *src, int sw, int sh, uint8_t *dst, int dw, int dh, fn_error *err);
/* RGB uint8 224x224 -> model input: BGR float32, means 103.939/116.779/123.68 subtracted. */
void fn_preprocess_rgb224(const uint8_t *rgb, float *out);
/* Decoded image -> model input [224,224,3] (resize + preprocess). */
int fn_image_to_input(const fn_image *img, fn_resize_mode mode, float *out, fn_error *err);
/* Bytes -> model input in one call. */
int fn_input_from_memory(const void *bytes, size_t len, const char *name, fn_resize_mode mode,
                         float *out, fn_error *err);
/* File -> model input in one call. */
int fn_input_from_file(const char *path, fn_resize_mode mode, float *out, fn_error *err);

/* ------------------------------------------------------------------ */
/* Model                                                               */
/* ------------------------------------------------------------------ */

typedef struct fn_model fn_model;

typedef struct fn_model_options {
    int threads;    /* worker threads; 0 = number of online CPUs */
    int max_batch;  /* largest n passed to fn_model_features; 0 = 8 */
    fn_isa isa;     /* FN_ISA_AUTO by default */
    int classifier; /* nonzero: also load fc1000 for fn_model_classify */
    fn_precision precision; /* FN_PRECISION_FP32 by default; bf16 needs AVX512_BF16, int8 AVX512_VNNI
                               (fn_precision_check) and a calibrated weight file (fn_weights_calibrate_int8) */
} fn_model_options;

/* Per-layer timing record (see fn_model_profile). */
typedef struct fn_layer_stats {
    const char *name;  /* Keras layer name, e.g. "res3a_branch2b" */
    const char *kind;  /* "conv", "maxpool", "avgpool", "dense" */
    int in_h, in_w, in_c, out_h, out_w, out_c, kh, kw, stride;
    double flops;      /* per image, 2*MACs */
    double seconds;    /* accumulated since fn_model_profile_reset */
    int64_t calls;
} fn_layer_stats;

/* Fill defaults: threads 0, max_batch 8, FN_ISA_AUTO, no classifier. */
void fn_model_options_default(fn_model_options *opt);
/* Open ResNet50 from a fruitnet weight file (opt may be NULL). */
int fn_model_open(const char *weights_path, const fn_model_options *opt, fn_model **out, fn_error *err);
/* The instruction set the model runs with. */
fn_isa fn_model_isa(const fn_model *m);
/* The precision the model runs with (for the extraction metadata: fn_precision_name). */
fn_precision fn_model_precision(const fn_model *m);
/* The weight file of this model (for its CRC and metadata). */
const fn_weights *fn_model_weights(const fn_model *m);
/* n preprocessed inputs [n,224,224,3] -> n avg_pool features [n,2048]. n may exceed max_batch. */
int fn_model_features(fn_model *m, const float *input, int n, float *features, fn_error *err);
/* features [n,2048] -> softmax probabilities [n,1000] (needs opt.classifier). */
int fn_model_classify(fn_model *m, const float *features, int n, float *probs, fn_error *err);
/* Indices (and values) of the k largest probabilities, descending. */
void fn_topk(const float *probs, int nclasses, int k, int *idx, float *val);
/* ImageNet label of class i ("banana"), or NULL. */
const char *fn_model_label(const fn_model *m, int i);
/* Number of layers and a pointer to their live statistics. */
int fn_model_profile(const fn_model *m, const fn_layer_stats **stats);
/* Turn per-layer timing on/off (off by default) and zero the counters. */
void fn_model_profile_enable(fn_model *m, int on);
/* Free everything; NULL is allowed. */
void fn_model_close(fn_model *m);

/* ------------------------------------------------------------------ */
/* Parquet (the subset fruitnet writes: path, label, LIST<FLOAT>)      */
/* ------------------------------------------------------------------ */

typedef enum fn_codec { FN_CODEC_UNCOMPRESSED = 0, FN_CODEC_GZIP = 2 } fn_codec;

typedef struct fn_kv {
    const char *key;
    const char *value;
} fn_kv;

typedef struct fn_parquet_writer fn_parquet_writer;

typedef struct fn_parquet_options {
    const char *list_column; /* name of the LIST<FLOAT> column, e.g. "features" or "pcs" */
    fn_codec codec;
    int rows_per_group;      /* rows buffered before a row group is flushed; 0 = 1024 */
    const fn_kv *meta;       /* key/value metadata for the footer */
    int nmeta;
    const struct fn_parquet_column *extra; /* optional scalar columns after the list column (NULL: none) */
    int nextra;              /* their number, 0..FN_PARQUET_MAX_EXTRA; rows then need fn_parquet_writer_add_ex */
} fn_parquet_options;

#define FN_PARQUET_MAX_EXTRA 8
typedef enum fn_parquet_type { FN_PQ_STRING = 0, FN_PQ_FLOAT = 1 } fn_parquet_type;
/* An extra column: its name (UTF-8, unique) and type; written optional, as Spark writes nullable columns. */
typedef struct fn_parquet_column {
    const char *name;
    fn_parquet_type type;
} fn_parquet_column;
/* A value of an extra column: s for FN_PQ_STRING (UTF-8), f for FN_PQ_FLOAT. */
typedef struct fn_parquet_value {
    const char *s;
    float f;
} fn_parquet_value;

/* Create `path` (written as the hidden <dir>/.<name>.tmp.<pid>.XXXXXX, renamed by close).
 * Schema as Spark writes it: optional path, label (STRING), optional LIST of optional FLOAT. */
int fn_parquet_writer_open(const char *path, const fn_parquet_options *opt, fn_parquet_writer **out,
                           fn_error *err);
/* Append one row; `vec` has n floats (n may differ between rows); path/label must be UTF-8. */
int fn_parquet_writer_add(fn_parquet_writer *w, const char *path, const char *label, const float *vec,
                          int n, fn_error *err);
/* fn_parquet_writer_add with the row's values of the options' extra columns: extra[nextra] (NULL when none). */
int fn_parquet_writer_add_ex(fn_parquet_writer *w, const char *path, const char *label, const float *vec, int n,
                             const fn_parquet_value *extra, fn_error *err);
/* Set (or replace) a footer key/value before close, e.g. a summary known only at the end. */
int fn_parquet_writer_set_meta(fn_parquet_writer *w, const char *key, const char *value, fn_error *err);
/* Flush, write the footer, fsync and rename into place; frees w in all cases. */
int fn_parquet_writer_close(fn_parquet_writer *w, fn_error *err);
/* Discard: remove the temporary file and free w. */
void fn_parquet_writer_abort(fn_parquet_writer *w);

typedef struct fn_parquet_reader fn_parquet_reader;

/* One row as returned by the reader; pointers stay valid until the next call.
 * A null path/label reads as "", a null list as n == 0 (null list elements are refused). */
typedef struct fn_parquet_row {
    const char *path;
    const char *label;
    const float *vec;
    int n;
} fn_parquet_row;

/* Open one Parquet file written by fruitnet (or compatible: PLAIN, UNCOMPRESSED/GZIP). */
int fn_parquet_reader_open(const char *path, fn_parquet_reader **out, fn_error *err);
/* Total rows in the file. */
int64_t fn_parquet_reader_rows(const fn_parquet_reader *r);
/* Footer key/value metadata, or NULL. */
const char *fn_parquet_reader_meta(const fn_parquet_reader *r, const char *key);
/* Next row: returns 1 with a row, 0 at the end, or a negative FN_E* code. */
int fn_parquet_reader_next(fn_parquet_reader *r, fn_parquet_row *row, fn_error *err);
/* Close; NULL is allowed. */
void fn_parquet_reader_close(fn_parquet_reader *r);
/* List the .parquet files of a path: a file itself, or a committed dataset directory's part files
 * sorted by name: fn_dataset_files(path, 0, ...) (an uncommitted folder is refused). Free with fn_free_list. */
int fn_parquet_dataset_files(const char *path, char ***files, int *nfiles, fn_error *err);
/* Free a list returned by the library. */
void fn_free_list(char **list, int n);

/* ------------------------------------------------------------------ */
/* PCA                                                                 */
/* ------------------------------------------------------------------ */

/* PCA objects are opaque: made by the functions below, read through accessors, freed by their _free. */
/* Streaming, mergeable first and second moments (double precision) of dim-d rows. */
typedef struct fn_pca_stats fn_pca_stats;
/* A fitted PCA: k components of dimension dim. */
typedef struct fn_pca_model fn_pca_model;

/* Empty statistics of dimension dim (1..65536). */
int fn_pca_stats_new(int dim, fn_pca_stats **out, fn_error *err);
/* Statistics from their moments: n rows, mean[dim], m2[dim*dim] (the centred co-moment sum
 * (x-mean)(x-mean)^T; only its upper triangle i <= j is read). Both are copied. */
int fn_pca_stats_from_moments(int dim, int64_t n, const double *mean, const double *m2, fn_pca_stats **out,
                              fn_error *err);
/* Add nrows rows of dim floats (rejects NaN/Inf with FN_ENUMERIC). Uses `threads` threads (0 = all). */
int fn_pca_stats_add(fn_pca_stats *s, const float *rows, int nrows, int threads, fn_error *err);
/* dst += src (Chan et al. pairwise merge). */
int fn_pca_stats_merge(fn_pca_stats *dst, const fn_pca_stats *src, fn_error *err);
/* Save statistics to a small binary file (atomic write, CRC32-checked). */
int fn_pca_stats_save(const fn_pca_stats *s, const char *path, fn_error *err);
/* Read statistics written by fn_pca_stats_save (magic, version, size and CRC32 checked). */
int fn_pca_stats_load(const char *path, fn_pca_stats **out, fn_error *err);
/* Dimension, and rows seen (0 for NULL). */
int fn_pca_stats_dim(const fn_pca_stats *s);
int64_t fn_pca_stats_rows(const fn_pca_stats *s);
/* The mean row [dim], and the centred co-moment sum [dim*dim] (upper triangle i <= j valid; the lower is
 * unspecified). Owned by s: valid until the next add, merge or free. */
const double *fn_pca_stats_mean(const fn_pca_stats *s);
const double *fn_pca_stats_m2(const fn_pca_stats *s);
/* Free; NULL is allowed. */
void fn_pca_stats_free(fn_pca_stats *s);

/* Fit: k > 0 takes k components; k == 0 takes the fewest reaching `variance` (e.g. 0.80). */
int fn_pca_fit(const fn_pca_stats *s, int k, double variance, fn_pca_model **out, fn_error *err);
/* fn_pca_fit on `threads` threads (0 = all); if spectrum is not NULL it receives all dim eigenvalues,
 * descending. Errors: FN_ENUMERIC for fewer than 2 rows or zero total variance (identical rows). */
int fn_pca_fit_ex(const fn_pca_stats *s, int k, double variance, int threads, fn_pca_model **out, double *spectrum,
                  fn_error *err);
/* A model from its parts (copied): mean[dim], eigvals[k], components[k*dim] (unit rows), fitted on n rows
 * whose covariance has trace total_var; 0 <= k <= dim. */
int fn_pca_model_new(int dim, int k, int64_t n, double total_var, const double *mean, const double *eigvals,
                     const double *components, fn_pca_model **out, fn_error *err);
/* Project one row: out[k] = components * (x - mean). */
void fn_pca_transform(const fn_pca_model *m, const float *x, float *out);
/* Save a model (atomic write, CRC32-checked). */
int fn_pca_model_save(const fn_pca_model *m, const char *path, fn_error *err);
/* Read a model written by fn_pca_model_save (magic, version, size and CRC32 checked). */
int fn_pca_model_load(const char *path, fn_pca_model **out, fn_error *err);
/* Dimension, number of components, rows fitted on, and trace of the covariance (0 for NULL). */
int fn_pca_model_dim(const fn_pca_model *m);
int fn_pca_model_k(const fn_pca_model *m);
int64_t fn_pca_model_rows(const fn_pca_model *m);
double fn_pca_model_total_var(const fn_pca_model *m);
/* mean [dim]; eigvals [k] descending (covariance with ddof = 1); components [k*dim], unit rows, each with
 * its largest-magnitude entry positive. Owned by m (NULL for NULL). */
const double *fn_pca_model_mean(const fn_pca_model *m);
const double *fn_pca_model_eigvals(const fn_pca_model *m);
const double *fn_pca_model_components(const fn_pca_model *m);
/* Free; NULL is allowed. */
void fn_pca_model_free(fn_pca_model *m);

/* PCA over a features dataset (pca_dataset.c). flags: 0, or FN_DATASET_UNCOMMITTED (see fn_dataset_files). */
typedef void (*fn_pca_progress_fn)(void *ctx, int64_t rows_done, int64_t rows_total);
/* Statistics of every row of a committed dataset or file (one streaming pass; progress may be NULL). */
int fn_pca_stats_from_dataset(const char *path, int flags, int threads, fn_pca_stats **out,
                              fn_pca_progress_fn progress, void *ctx, fn_error *err);
/* Project every row into out_parquet (path, label, pcs LIST<FLOAT>); scatter_dir (may be NULL) also gets
 * scatter.svg (PC1 vs PC2, one colour per label). */
int fn_pca_transform_dataset(const fn_pca_model *m, const char *in, int flags, const char *out_parquet, fn_codec codec,
                             const char *scatter_dir, fn_pca_progress_fn progress, void *ctx, fn_error *err);
/* dir/explained_variance.csv (every component) and dir/scree.svg (the first max(2k, 100)) from the spectrum
 * ev[dim] (descending), the total variance, the k kept and the variance they reach. */
int fn_pca_write_variance(const char *dir, const double *ev, int dim, double total, int k, double variance,
                          fn_error *err);

/* ------------------------------------------------------------------ */
/* Atomic files (atomic.c): the one way every writer puts a file in place */
/* ------------------------------------------------------------------ */

/* Policy: a hidden temporary ".<name>.tmp.<pid>.XXXXXX" in the target's folder, fsync, rename over the
 * target, fsync the folder. A target that exists and is not a regular file (device, FIFO, socket, folder;
 * a symlink unless FN_ATOMIC_REPLACE_SYMLINK) is refused (FN_EARG) and never renamed over or unlinked. */
#define FN_ATOMIC_REPLACE_SYMLINK 1 /* allow replacing a symlink (the link itself) */
typedef struct fn_atomic fn_atomic;
/* FN_OK when `path` could be replaced under this policy (absent or a regular file). */
int fn_atomic_check(const char *path, int flags, fn_error *err);
/* Create the temporary file for `path`; write to fn_atomic_fd() or with fn_atomic_write(). */
int fn_atomic_begin(const char *path, int flags, fn_atomic **out, fn_error *err);
/* The temporary file's descriptor (-1 for NULL). */
int fn_atomic_fd(const fn_atomic *a);
/* Append bytes to the temporary file. */
int fn_atomic_write(fn_atomic *a, const void *data, size_t n, fn_error *err);
/* fsync, check the target again, rename into place, fsync the folder; frees a in all cases. */
int fn_atomic_commit(fn_atomic *a, fn_error *err);
/* Remove the temporary file and free a (NULL allowed). */
void fn_atomic_abort(fn_atomic *a);
/* The whole sequence for a buffer. */
int fn_atomic_write_file(const char *path, const void *data, size_t n, int flags, fn_error *err);

/* ------------------------------------------------------------------ */
/* Datasets (inputs.c, extract.c, dataset.c; layout in README "Datasets") */
/* ------------------------------------------------------------------ */

/* Path escaping for the `path`/`label` columns, _errors.tsv and messages: every byte that is not part of
 * valid UTF-8, '%', '\\', and the control bytes 0x01-0x1F and 0x7F (tab, newline, CR...) become %XX
 * (two upper-case hex digits); everything else is kept. Reversible by fn_unescape_path.
 * Both write at most cap bytes (NUL included, when cap > 0) and return the length the full result needs
 * (excluding the NUL), as snprintf does. */
size_t fn_escape_path(const char *raw, char *out, size_t cap);
/* %XX -> byte (either hex case); a '%' not followed by two hex digits is kept as is. */
size_t fn_unescape_path(const char *escaped, char *out, size_t cap);

/* Reported for every entry left out while listing inputs (raw path bytes, readable reason);
 * is_error = 0 for an entry that is not a failure (a second spelling of a file already listed). */
typedef void (*fn_skip_fn)(void *ctx, const char *path, const char *reason, int is_error);

/* A list of image inputs: normalised paths, labels, file identities, sizes and mtimes. */
typedef struct fn_inputs fn_inputs;
int fn_inputs_new(fn_inputs **out, fn_error *err);
/* Add a file or a folder (walked recursively for *.jpg, *.jpeg, *.png, any case; hidden entries skipped;
 * symlinks followed, loops reported). Only regular files are listed; paths longer than PATH_MAX work.
 * The path is normalised ("a//b", "./", trailing "/"); label = the parent folder's name (the real name
 * when the path says "." or ".."). Entries that cannot be listed go to skip (may be NULL). */
int fn_inputs_add(fn_inputs *in, const char *path, fn_skip_fn skip, void *ctx, fn_error *err);
/* Add every line of a list file (one path per line; empty lines and lines starting with '#' ignored). */
int fn_inputs_add_list(fn_inputs *in, const char *list_path, fn_skip_fn skip, void *ctx, fn_error *err);
/* The same from a buffer (e.g. stdin read by the caller); `name` is used in messages. */
int fn_inputs_add_list_memory(fn_inputs *in, const char *text, size_t len, const char *name, fn_skip_fn skip,
                              void *ctx, fn_error *err);
/* The same from an open descriptor read to its end (e.g. 0 for stdin; a pipe is fine here). */
int fn_inputs_add_list_fd(fn_inputs *in, int fd, const char *name, fn_skip_fn skip, void *ctx, fn_error *err);
/* Sort by path (byte order), keep one spelling per file (st_dev/st_ino; the first in byte order; the others
 * go to skip with is_error = 0), then keep shard k of n (1 <= k <= n; FNV-1a of the path mod n == k-1). */
int fn_inputs_finish(fn_inputs *in, int shard_k, int shard_n, fn_skip_fn skip, void *ctx, fn_error *err);
/* One command-line input: "@-" is a list read from stdin (fd 0), "@FILE" a list file (fn_inputs_add_list),
 * anything else a file or folder (fn_inputs_add). */
int fn_inputs_add_arg(fn_inputs *in, const char *arg, fn_skip_fn skip, void *ctx, fn_error *err);
size_t fn_inputs_count(const fn_inputs *in);
/* Raw bytes of the i-th path / label (NULL when out of range). */
const char *fn_inputs_path(const fn_inputs *in, size_t i);
const char *fn_inputs_label(const fn_inputs *in, size_t i);
/* Size in bytes and modification time (ns since the epoch) seen when listed. */
int64_t fn_inputs_size(const fn_inputs *in, size_t i);
int64_t fn_inputs_mtime_ns(const fn_inputs *in, size_t i);
void fn_inputs_free(fn_inputs *in);

/* The extraction pipeline: decoder threads decode and resize the next batches while the model runs. */
typedef struct fn_extract_options {
    int batch;             /* images per network batch; 0 = 8 */
    int decoders;          /* decoding threads; 0 = 1 */
    fn_resize_mode resize; /* FN_RESIZE_PIL (default) */
    int mirror;            /* 1: flip each decoded image left-right before the resize (training augmentation; PIL:
                              img.transpose(Image.FLIP_LEFT_RIGHT).resize((224, 224), BICUBIC)); 0 = as is */
} fn_extract_options;
/* Called in input order on the calling thread: features [FN_FEATURE_DIM] of input i, or NULL and the
 * reason when it failed. Return FN_OK to go on; anything else stops the run (fill err). */
typedef int (*fn_row_fn)(void *ctx, size_t i, const float *features, const char *error, fn_error *err);
/* Features of n inputs: files paths[i] (opened without blocking, regular files only, any length), or, when
 * bufs is not NULL, the bytes bufs[i][0..lens[i]) (paths[i], may be NULL, then names them in errors).
 * One bad input never stops the run. `net_seconds` (may be NULL) receives the time spent in the network. */
int fn_extract_run(fn_model *m, const fn_extract_options *opt, size_t n, const char *const *paths,
                   const void *const *bufs, const size_t *lens, fn_row_fn row, void *ctx, double *net_seconds,
                   fn_error *err);

/* fn_extract_run on the files of a finished input list: input i is fn_inputs_path(in, i). */
int fn_extract_inputs(fn_model *m, const fn_extract_options *opt, const fn_inputs *in, fn_row_fn row, void *ctx,
                      double *net_seconds, fn_error *err);
/* The fn_model_options.max_batch to open a model with for ninputs inputs: opt's batch (0 = 8), or fewer when
 * there are fewer inputs (less to pack at open; the same features). */
int fn_extract_max_batch(const fn_extract_options *opt, size_t ninputs);

/* Writing a dataset folder (or one file) with its commit protocol (README "Datasets"). */
typedef struct fn_dataset_options {
    int part_size;           /* inputs per part file; 0 = 1024 */
    int shard_k, shard_n;    /* this run is shard k of n; 0, 0 = 1 of 1 */
    fn_codec codec;          /* FN_CODEC_GZIP is recommended */
    int single_file;         /* write `path` as one Parquet file (refused with n > 1 shards) */
    const char *errors_path; /* NULL: <dir>/_errors.tsv (_errors-sKKKKKofNNNNN.tsv per shard), or PATH.errors.tsv */
    fn_extract_options extract;
    const struct fn_classifier *classifier; /* NULL, or add prediction (STRING: top class) and probability
                                                (FLOAT) columns; the model is part of the parts' identity */
} fn_dataset_options;

typedef struct fn_dataset_callbacks {
    void *ctx;
    /* a failed input: raw path and reason (may be NULL) */
    void (*failure)(void *ctx, const char *path, const char *reason);
    /* after every input: done/total of the inputs computed in this run (may be NULL) */
    void (*progress)(void *ctx, size_t done, size_t total, size_t failed);
    /* every computed row, in input order (may be NULL); a non-FN_OK return stops the run */
    int (*row)(void *ctx, size_t input_index, const char *path, const float *features);
    /* a notice worth showing: resuming, starting clean and why, committed or waiting for shards */
    void (*note)(void *ctx, const char *msg);
} fn_dataset_callbacks;

typedef struct fn_dataset_report {
    size_t inputs, ok, failed;           /* inputs of this shard; rows written or kept; failed inputs */
    size_t parts, resumed_parts, resumed_inputs;
    int committed;                       /* 1 when _SUCCESS was written (every shard complete) */
    double net_seconds;                  /* time in the network */
    char errors_path[4096];              /* the errors file written ("" when none) */
} fn_dataset_report;

/* Extract the features of `in` (after fn_inputs_finish with the same shard) into the dataset at `path`:
 * takes the shard's lock (a second writer is refused), removes _SUCCESS, writes the shard manifest, keeps
 * the finished parts whose inputs (path, label, size, mtime) and options are unchanged, removes every other
 * file of this shard and those of other shard counts, writes the rest, the errors file, and, when every
 * shard is complete and they agree, _SUCCESS. Failed inputs are reported, never fatal. */
int fn_dataset_write(const char *path, fn_model *m, const fn_inputs *in, const fn_dataset_options *opt,
                     const fn_dataset_callbacks *cb, fn_dataset_report *report, fn_error *err);

#define FN_DATASET_UNCOMMITTED 1 /* also read a dataset folder without _SUCCESS (all complete parts) */
/* The Parquet files of a committed dataset: a file itself, or the parts listed in _SUCCESS (each must exist
 * with its recorded size; a part-*.parquet not listed is refused); an empty _SUCCESS (Spark) means every
 * part file. Without _SUCCESS: FN_EFORMAT unless flags has FN_DATASET_UNCOMMITTED. Free with fn_free_list. */
int fn_dataset_files(const char *path, int flags, char ***files, int *nfiles, fn_error *err);


/* ------------------------------------------------------------------ */
/* Bindings                                                            */
/* ------------------------------------------------------------------ */

/* Append nrows rows in one call (as nrows fn_parquet_writer_add): row i is paths[i], labels[i]
 * (NULL reads as "") and the dim floats at vecs + i*dim. Stops at the first failing row. */
int fn_parquet_writer_add_rows(fn_parquet_writer *w, int nrows, const char *const *paths, const char *const *labels,
                               const float *vecs, int dim, fn_error *err);

/* ------------------------------------------------------------------ */
/* Classifier: multinomial logistic regression on the features (.fncls) */
/* ------------------------------------------------------------------ */

/* A trained classifier: standardisation (mean, scale), weights, intercepts and class names. Immutable after
 * training or loading: fn_classifier_predict_proba may run on several threads at once. */
typedef struct fn_classifier fn_classifier;

#define FN_CLASSIFIER_MAX_PATH 32 /* most C values on the cross-validated regularisation path */

typedef struct fn_classifier_options {
    int folds;        /* stratified k-fold cross-validation choosing C: k (2..50); 0 = 5 */
    double c;         /* > 0: train with this C and skip the cross-validation; 0 = choose C by cross-validation */
    double c_min;     /* the path of C values, log-spaced from c_min to c_max (both included); 0 = 1 */
    double c_max;     /* 0 = 10^1.5 (31.6) */
    int path_len;     /* number of C values on the path (1..FN_CLASSIFIER_MAX_PATH); 0 = 4 */
    int pca_dim;      /* train on the top principal components of the standardised features: their number;
                         0 = the default (512, or the dimension if smaller); -1 = no reduction */
    int threads;      /* 0 = all online CPUs; the result is the same whatever the number */
    int max_iter;     /* optimiser iterations per fit (the final fit: 3x); 0 = 20 */
    double tol;       /* stop when the gradient's max-norm <= tol x its value at the fit's (warm) start; 0 = 1e-2 */
    uint64_t seed;    /* of the fold assignment; 0 = the default seed */
    const char *info; /* free text (UTF-8, no NUL) kept in the model file, e.g. where the features come from */
    int transform;    /* applied to each feature before standardisation: FN_CLS_SQRT (default) or FN_CLS_IDENTITY */
    const int64_t *order; /* NULL: random stratified folds; else n keys (e.g. fn_frame_order's): blocked folds,
                             each class's rows sorted by key and cut into `folds` contiguous blocks */
    const float *augment_x; /* NULL, or augment_n extra rows [augment_n][dim] (e.g. mirrored copies of the images)
                               with labels augment_y, added to the final fit only: C is chosen by the CV on the
                               n rows, the standardisation and PCA are fitted on them, C's n counts both */
    const int *augment_y;
    int augment_n;
} fn_classifier_options;

enum { FN_CLS_IDENTITY = 0, FN_CLS_SQRT = 1 /* sign(x) sqrt(|x|): +0.7 points of top-1 on Fruits-360 */ };

/* What training did: the regularisation path and its cross-validated scores. */
typedef struct fn_classifier_report {
    int path_len;                              /* C values tried (1 when options.c was given) */
    int best;                                  /* index of the chosen C */
    int folds;                                 /* 0 when no cross-validation ran */
    int pca_dim;                               /* dimensions the model was trained in */
    int iterations;                            /* optimiser iterations, all fits together */
    double c[FN_CLASSIFIER_MAX_PATH];          /* C values (inverse L2 strength, scikit-learn's convention) */
    double cv_accuracy[FN_CLASSIFIER_MAX_PATH]; /* out-of-fold top-1 accuracy at each C */
    double cv_log_loss[FN_CLASSIFIER_MAX_PATH]; /* out-of-fold mean log-loss at each C */
    int *cv_pred;     /* in: NULL, or room for n ints: receives each row's out-of-fold prediction at the chosen C */
} fn_classifier_report;

/* Defaults: 5 folds, C chosen on 4 values from 1 to 31.6, signed square root, 512 principal components. */
void fn_classifier_options_default(fn_classifier_options *opt);
/* Train on n rows of dim floats x with labels y[i] in [0, nclasses) named class_names[] (unique, UTF-8):
 * standardisation, L2-regularised softmax regression whose C is chosen by cross-validation on these rows only.
 * Deterministic: the same inputs give the same model, bit for bit, on any number of threads. opt and report
 * may be NULL. */
int fn_classifier_train(const float *x, int n, int dim, const int *y, int nclasses, const char *const *class_names,
                        const fn_classifier_options *opt, fn_classifier **out, fn_classifier_report *report,
                        fn_error *err);
/* Class probabilities of n feature rows: probs[n][nclasses] (each row sums to 1). FN_ENUMERIC names a row
 * holding a NaN or infinite value. */
int fn_classifier_predict_proba(const fn_classifier *c, const float *x, int n, float *probs, fn_error *err);
/* Number of classes, feature dimension, and the name of class i (NULL when out of range). */
int fn_classifier_classes(const fn_classifier *c);
int fn_classifier_dim(const fn_classifier *c);
const char *fn_classifier_class_name(const fn_classifier *c, int i);
/* The model's "key=value" lines (C, cross-validated accuracy, folds, rows, fruitnet version, options.info). */
const char *fn_classifier_info(const fn_classifier *c);
/* Write a .fncls file (CRC32-protected) with fn_atomic_write_file's policy: a device or FIFO is refused. */
int fn_classifier_save(const fn_classifier *c, const char *path, fn_error *err);
/* Read and validate a .fncls file (magic, version, sizes, CRC32, names, finite numbers). */
int fn_classifier_load(const char *path, fn_classifier **out, fn_error *err);
/* Same from bytes in memory (copied); `name` is used in errors (may be NULL). */
int fn_classifier_load_from_memory(const void *data, size_t size, const char *name, fn_classifier **out,
                                   fn_error *err);
/* Free; NULL is allowed. */
void fn_classifier_free(fn_classifier *c);
/* Out-of-set score of n feature rows: dist[i] = mean squared difference per feature between the standardised
 * row and the nearest class mean. FN_EUNSUPPORTED for a model without class means (a version-1 file). */
int fn_classifier_distance(const fn_classifier *c, const float *x, int n, float *dist, fn_error *err);
/* The distance beyond which a row is out of set: the 99th percentile over the training rows; 0 when none. */
double fn_classifier_distance_threshold(const fn_classifier *c);

/* ------------------------------------------------------------------ */
/* Classifier training data: labelled rows, split, frame order, report (classifier_data.c) */
/* ------------------------------------------------------------------ */

/* Labelled feature rows; owns everything (free with fn_labeled_set_free). */
typedef struct fn_labeled_set {
    int n, dim, nclasses;
    float *x;     /* [n][dim] */
    int *y;       /* [n] class index */
    char **names; /* [nclasses] the distinct labels, sorted (byte order) */
    char **paths; /* [n] each row's path ("" when none) */
} fn_labeled_set;

/* Every row (path, label, features) of a features Parquet file or committed dataset folder; a row without a
 * label or with another feature length is refused, naming the file and the row (FN_EFORMAT); FN_ENOMEM. */
int fn_labeled_set_read(const char *path, fn_labeled_set *out, fn_error *err);
/* The same from rows in memory (copied; paths may be NULL); `name` is used in errors (may be NULL). */
int fn_labeled_set_from_rows(int n, int dim, const float *x, const char *const *labels, const char *const *paths,
                             const char *name, fn_labeled_set *out, fn_error *err);
/* Stratified split, per class round(fraction x rows) held out (fraction 0..0.5; every class keeps a training
 * row): order NULL, after a seeded shuffle (seed 0: the default); else the class's last rows by order (e.g.
 * fn_frame_order's: a block of frames, no near-duplicate on both sides). Copies with all's classes. */
int fn_labeled_set_split(const fn_labeled_set *all, double fraction, uint64_t seed, const int64_t *order,
                         fn_labeled_set *train, fn_labeled_set *held, fn_error *err);
/* Free a set's arrays and zero it; NULL is allowed. */
void fn_labeled_set_free(fn_labeled_set *s);
/* Frame order of video-frame file names, for blocked cross-validation (fn_classifier_options.order):
 * order[i] = row i's rank by (folder, name before the frame number, frame number, path), the frame number
 * being the name's first all-digit token ("r2_151_100.jpg": sequence "r2_", frame 151). */
int fn_frame_order(const char *const *paths, int n, int64_t *order, fn_error *err);
/* Write DIR/per_class.csv (support, precision, recall, F1 per class) and DIR/confusion_matrix.svg of n
 * (truth, pred) class pairs, each atomically; `what` titles the matrix (e.g. "out-of-fold predictions"). */
int fn_classifier_write_report(const char *dir, const char *const *names, int nclasses, const int *truth,
                               const int *pred, int n, const char *what, fn_error *err);

/* ------------------------------------------------------------------ */
/* int8 calibration (FN_PRECISION_INT8)                                */
/* ------------------------------------------------------------------ */

/* Run weights_in's float32 network on the images of `images` (a file, folder or @list, as the tools'
 * inputs; the first 1,000 in path order; undecodable files left out) and write weights_out (may be
 * weights_in; written atomically): the same tensors plus, for every convolution int8 runs on uint8
 * inputs, '<conv>/act_scale' float32 [1] = the MSE-optimal clip of its input / 255 (weights/README.md).
 * threads: 0 = all cores. */
int fn_weights_calibrate_int8(const char *weights_in, const char *images, const char *weights_out, int threads,
                              fn_error *err);

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif

#ifdef __cplusplus
}
#endif
#endif /* FRUITNET_H */
