/*
 * image.c — the decoding entry points (format sniffing, limits, routing:
 * PNG to png.c, JPEG to jpeg_turbo.c or with make JPEG=stb to stb_image),
 * the stb resize option and the Keras "caffe" preprocessing.
 */
#include "files.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

/* stb declares functions static that this file does not use */
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wshadow"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#pragma GCC diagnostic ignored "-Wunused-but-set-variable"
#if defined(__clang__)
#pragma GCC diagnostic ignored "-Wunknown-warning-option"
#endif
#ifndef FN_HAVE_TURBOJPEG /* make JPEG=stb: stb_image decodes JPEG (only JPEG: PNG is png.c's) */
#define STB_IMAGE_STATIC
#define STB_IMAGE_IMPLEMENTATION
#define STBI_ONLY_JPEG
#define STBI_NO_STDIO
#define STBI_NO_LINEAR
#define STBI_NO_HDR
#define STBI_MAX_DIMENSIONS (1 << 24) /* our own, tighter limits are checked before decoding */
#include <stb_image.h>
#endif
#define STB_IMAGE_RESIZE_STATIC
#define STB_IMAGE_RESIZE_IMPLEMENTATION
#include <stb_image_resize.h>
#pragma GCC diagnostic pop

#define MAX_FILE_BYTES ((size_t)256 << 20)

/* png.c: every PNG, in every build. */
int fn_png_decode(const void *bytes, size_t len, const char *name, fn_image *out, fn_error *err);
#ifdef FN_HAVE_TURBOJPEG
/* jpeg_turbo.c (make JPEG=turbo): JPEG decoding as PIL does it. */
const char *fn_jpeg_turbo_name(void);
int fn_jpeg_turbo_decode(const void *bytes, size_t len, const char *name, fn_image *out, fn_error *err);
#endif

const char *fn_image_decoder_name(void)
{
#ifdef FN_HAVE_TURBOJPEG
    return fn_jpeg_turbo_name();
#else
    return "stb_image";
#endif
}

static const unsigned char png_sig[8] = {0x89, 'P', 'N', 'G', 0x0d, 0x0a, 0x1a, 0x0a};

/* What a JPEG's markers declare, read before any decoder sees the data. */
typedef struct {
    int sof;        /* the SOFn marker (0xC0..0xCF), 0 if none */
    int precision;  /* sample bits of the frame */
    int64_t w, h;
    int scans;      /* SOS markers up to EOI */
} jpeg_info;

/*
 * Walk a JPEG's markers as libjpeg does (garbage between markers skipped, as
 * its next_marker; entropy-coded data after each SOS skipped up to the next
 * marker that is not a restart), recording the first SOF and counting scans.
 */
static void jpeg_sniff(const unsigned char *b, size_t len, jpeg_info *ji)
{
    memset(ji, 0, sizeof *ji);
    size_t i = 2;
    for (;;) {
        while (i < len && b[i] != 0xFF) /* extraneous bytes */
            i++;
        while (i < len && b[i] == 0xFF) /* fill bytes */
            i++;
        if (i >= len)
            return;
        unsigned m = b[i++];
        if (m == 0x00 || m == 0x01 || (m >= 0xD0 && m <= 0xD8))
            continue;
        if (m == 0xD9 || i + 2 > len)
            return;
        size_t seg = (size_t)b[i] << 8 | b[i + 1];
        if (m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC && !ji->sof && i + 7 <= len) {
            ji->sof = (int)m;
            ji->precision = b[i + 2];
            ji->h = b[i + 3] << 8 | b[i + 4];
            ji->w = b[i + 5] << 8 | b[i + 6];
        }
        i += seg < 2 ? 2 : seg;
        if (m == 0xDA) { /* a scan: its entropy-coded data runs to the next marker other than RSTn */
            ji->scans++;
            while (i + 1 < len && !(b[i] == 0xFF && b[i + 1] != 0x00 && b[i + 1] != 0xFF &&
                                    !(b[i + 1] >= 0xD0 && b[i + 1] <= 0xD7)))
                i++;
        }
    }
}

/* The format of data that is neither JPEG nor PNG, by its signature; NULL if unknown. */
static const char *other_format(const unsigned char *b, size_t len)
{
    if (len >= 6 && (!memcmp(b, "GIF87a", 6) || !memcmp(b, "GIF89a", 6)))
        return "GIF image";
    if (len >= 12 && !memcmp(b, "RIFF", 4) && !memcmp(b + 8, "WEBP", 4))
        return "WebP image";
    if (len >= 2 && !memcmp(b, "BM", 2))
        return "BMP image";
    if (len >= 4 && (!memcmp(b, "II*\0", 4) || !memcmp(b, "MM\0*", 4) || !memcmp(b, "II+\0", 4) ||
                     !memcmp(b, "MM\0+", 4)))
        return "TIFF image";
    if (len >= 12 && !memcmp(b + 4, "ftyp", 4)) {
        const unsigned char *br = b + 8;
        if (!memcmp(br, "avif", 4) || !memcmp(br, "avis", 4))
            return "AVIF image";
        if (!memcmp(br, "heic", 4) || !memcmp(br, "heix", 4) || !memcmp(br, "hevc", 4) || !memcmp(br, "hevx", 4) ||
            !memcmp(br, "heim", 4) || !memcmp(br, "heis", 4))
            return "HEIC image";
        if (!memcmp(br, "mif1", 4) || !memcmp(br, "msf1", 4))
            return "HEIF image";
    }
    if ((len >= 12 && !memcmp(b, "\0\0\0\x0cjP  \r\n\x87\n", 12)) || (len >= 4 && !memcmp(b, "\xff\x4f\xff\x51", 4)))
        return "JPEG 2000 image";
    if (len >= 4 && (!memcmp(b, "\0\0\1\0", 4) || !memcmp(b, "\0\0\2\0", 4)))
        return "ICO image";
    if (len >= 4 && !memcmp(b, "8BPS", 4))
        return "Photoshop image";
    if (len >= 4 && !memcmp(b, "qoif", 4))
        return "QOI image";
    return NULL;
}

#ifndef FN_HAVE_TURBOJPEG
/*
 * Walk a JPEG's markers (skipping entropy-coded data after each SOS) and check
 * every Huffman table: the 16 code counts must add up to at most 256 symbols.
 * The stb_image of Debian 12 writes past its 257-byte size table otherwise
 * (found by fuzz/fuzz_image.c); such files are refused before stb sees them.
 */
static int jpeg_tables_ok(const unsigned char *b, size_t len)
{
    size_t i = 0;
    while (i + 2 <= len) {
        if (b[i] != 0xFF) { /* entropy-coded data: find the next real marker */
            i++;
            continue;
        }
        unsigned m = b[i + 1];
        if (m == 0xFF) { /* fill byte */
            i++;
            continue;
        }
        if (m == 0x00 || m == 0x01 || m == 0xD8 || (m >= 0xD0 && m <= 0xD7)) { /* no length field */
            i += 2;
            continue;
        }
        if (m == 0xD9 || i + 4 > len)
            return 1;
        size_t seg = (size_t)b[i + 2] << 8 | b[i + 3];
        if (m == 0xC4) { /* like stb: tables are read while bytes of the declared length remain */
            size_t p = i + 4, end = i + 2 + seg;
            while (p < end && p < len) {
                unsigned n = 0; /* stb reads missing bytes at the end of the data as 0 */
                for (int k = 1; k <= 16 && p + k < len; k++)
                    n += b[p + k];
                if (n > 256)
                    return 0;
                p += 17 + n;
            }
        }
        i += 2 + (seg < 2 ? 2 : seg);
    }
    return 1;
}

static int stb_jpeg_decode(const unsigned char *bytes, size_t len, const char *name, fn_image *out, fn_error *err)
{
    if (!jpeg_tables_ok(bytes, len))
        return fn_fail(err, FN_EIMAGE, "%s: corrupt JPEG (Huffman table with more than 256 codes)", name);
    int w, h, comp;
    if (!stbi_info_from_memory(bytes, (int)len, &w, &h, &comp)) {
        const char *why = stbi_failure_reason();
        return fn_fail(err, FN_EIMAGE, "%s: cannot decode JPEG (%s)", name, why ? why : "corrupt data");
    }
    if (w < 1 || h < 1 || w > FN_IMAGE_MAX_SIDE || h > FN_IMAGE_MAX_SIDE ||
        (int64_t)w * h > (int64_t)FN_IMAGE_MAX_PIXELS)
        return fn_fail(err, FN_ELIMIT, "%s: declared size %dx%d exceeds the limits (%d per side, %d pixels)", name, w,
                       h, FN_IMAGE_MAX_SIDE, FN_IMAGE_MAX_PIXELS);
    int dw, dh, dc;
    unsigned char *px = stbi_load_from_memory(bytes, (int)len, &dw, &dh, &dc, 3);
    if (!px) {
        const char *why = stbi_failure_reason();
        return fn_fail(err, FN_EIMAGE, "%s: cannot decode JPEG (%s)", name, why ? why : "corrupt data");
    }
    out->w = dw;
    out->h = dh;
    out->rgb = px;
    return FN_OK;
}
#endif

int fn_image_decode(const void *bytes, size_t len, const char *name, fn_image *out, fn_error *err)
{
    if (!name)
        name = "<memory>";
    if (!out)
        return fn_fail(err, FN_EARG, "%s: no output image", name);
    out->w = out->h = 0;
    out->rgb = NULL;
    const unsigned char *b = bytes;
    if (!bytes || len == 0)
        return fn_fail(err, FN_EIMAGE, "%s: empty file", name);
    if (len > (size_t)INT32_MAX)
        return fn_fail(err, FN_ELIMIT, "%s: %zu bytes is too large", name, len);
    if (len >= 8 && !memcmp(b, png_sig, 8))
        return fn_png_decode(b, len, name, out, err);
    if (len < 8 && !memcmp(b, png_sig, len))
        return fn_fail(err, FN_EIMAGE, "%s: truncated PNG (%zu bytes of its signature)", name, len);
    if (len < 3 && !memcmp(b, "\xff\xd8", len))
        return fn_fail(err, FN_EIMAGE, "%s: truncated JPEG (%zu bytes)", name, len);
    if (len < 3 || b[0] != 0xFF || b[1] != 0xD8 || b[2] != 0xFF) { /* PIL's JPEG signature, FF D8 FF */
        const char *what = other_format(b, len);
        if (what)
            return fn_fail(err, FN_EUNSUPPORTED, "%s: %s: not supported (fruitnet reads JPEG and PNG)", name, what);
        return fn_fail(err, FN_EIMAGE, "%s: unknown image format (not a JPEG or PNG file)", name);
    }
    jpeg_info ji;
    jpeg_sniff(b, len, &ji);
    int sof = ji.sof;
#ifdef FN_HAVE_TURBOJPEG
    int arith_ok = 1; /* libjpeg-turbo decodes arithmetic coding, as in PIL */
#else
    int arith_ok = 0;
#endif
    if (sof == 0xC3 || sof == 0xC7 || sof == 0xCB || sof == 0xCF)
        return fn_fail(err, FN_EUNSUPPORTED, "%s: lossless JPEG: not supported", name);
    if (sof == 0xC5 || sof == 0xC6 || sof == 0xCD || sof == 0xCE)
        return fn_fail(err, FN_EUNSUPPORTED, "%s: hierarchical JPEG: not supported", name);
    if (sof && ji.precision != 8)
        return fn_fail(err, FN_EUNSUPPORTED, "%s: %d-bit JPEG: not supported (8-bit samples only)", name,
                       ji.precision);
    if ((sof == 0xC9 || sof == 0xCA) && !arith_ok)
        return fn_fail(err, FN_EUNSUPPORTED, "%s: arithmetic-coded JPEG: not supported (by stb_image: make JPEG=turbo)",
                       name);
    if (sof && (ji.w > FN_IMAGE_MAX_SIDE || ji.h > FN_IMAGE_MAX_SIDE || ji.w * ji.h > (int64_t)FN_IMAGE_MAX_PIXELS))
        return fn_fail(err, FN_ELIMIT, "%s: declared size %lldx%lld exceeds the limits (%d per side, %d pixels)", name,
                       (long long)ji.w, (long long)ji.h, FN_IMAGE_MAX_SIDE, FN_IMAGE_MAX_PIXELS);
    /* every scan is a pass over the whole coefficient buffer: bound their number, and pixels x scans */
    int progressive = sof == 0xC2 || sof == 0xCA;
    if (ji.scans > FN_JPEG_MAX_SCANS)
        return fn_fail(err, FN_ELIMIT, "%s: %s with more than %d scans: refused (%d)", name,
                       progressive ? "progressive JPEG" : "JPEG", FN_JPEG_MAX_SCANS, ji.scans);
    if (sof && (int64_t)ji.scans * ji.w * ji.h > FN_JPEG_MAX_PIXEL_SCANS)
        return fn_fail(err, FN_ELIMIT, "%s: %s with more than %lld scans of %lldx%lld pixels: refused (%d; limit %lld "
                       "pixels x scans)", name, progressive ? "progressive JPEG" : "JPEG",
                       (long long)(FN_JPEG_MAX_PIXEL_SCANS / (ji.w * ji.h)), (long long)ji.w, (long long)ji.h, ji.scans,
                       (long long)FN_JPEG_MAX_PIXEL_SCANS);
#ifdef FN_HAVE_TURBOJPEG
    return fn_jpeg_turbo_decode(b, len, name, out, err);
#else
    return stb_jpeg_decode(b, len, name, out, err);
#endif
}

int fn_image_load(const char *path, fn_image *out, fn_error *err)
{
    if (!path || !out)
        return fn_fail(err, FN_EARG, "fn_image_load: invalid arguments");
    out->w = out->h = 0;
    out->rgb = NULL;
    /* the library's one reader (files.c): regular files only, never blocks on a FIFO, long paths */
    unsigned char *buf;
    size_t size;
    int rc = fn_read_file(path, MAX_FILE_BYTES, "an image file", &buf, &size, err);
    if (rc)
        return rc;
    rc = fn_image_decode(buf, size, path, out, err);
    free(buf);
    return rc;
}

void fn_image_free(fn_image *img)
{
    if (!img)
        return;
    free(img->rgb);
    img->rgb = NULL;
    img->w = img->h = 0;
}

void fn_image_flip_lr(fn_image *img)
{
    if (!img || !img->rgb)
        return;
    for (int y = 0; y < img->h; y++) {
        uint8_t *r = img->rgb + (size_t)y * img->w * 3;
        for (int a = 0, b = img->w - 1; a < b; a++, b--)
            for (int c = 0; c < 3; c++) {
                uint8_t t = r[(size_t)a * 3 + c];
                r[(size_t)a * 3 + c] = r[(size_t)b * 3 + c], r[(size_t)b * 3 + c] = t;
            }
    }
}

int fn_resize_stb(const uint8_t *src, int sw, int sh, uint8_t *dst, int dw, int dh, fn_error *err)
{
    if (!src || !dst || sw < 1 || sh < 1 || dw < 1 || dh < 1)
        return fn_fail(err, FN_EARG, "resize: invalid sizes %dx%d -> %dx%d", sw, sh, dw, dh);
    if (!stbir_resize_uint8_generic(src, sw, sh, 0, dst, dw, dh, 0, 3, STBIR_ALPHA_CHANNEL_NONE, 0, STBIR_EDGE_CLAMP,
                                    STBIR_FILTER_CATMULLROM, STBIR_COLORSPACE_LINEAR, NULL))
        return fn_fail(err, FN_ENOMEM, "resize: stb_image_resize failed");
    return FN_OK;
}

void fn_preprocess_rgb224(const uint8_t *rgb, float *out)
{
    /* Keras imagenet_utils 'caffe' mode, float32 arithmetic: BGR, minus the means */
    const float mb = 103.939f, mg = 116.779f, mr = 123.68f;
    for (size_t i = 0; i < (size_t)FN_INPUT_SIZE * FN_INPUT_SIZE; i++) {
        out[i * 3 + 0] = (float)rgb[i * 3 + 2] - mb;
        out[i * 3 + 1] = (float)rgb[i * 3 + 1] - mg;
        out[i * 3 + 2] = (float)rgb[i * 3 + 0] - mr;
    }
}

int fn_image_to_input(const fn_image *img, fn_resize_mode mode, float *out, fn_error *err)
{
    if (!img || !img->rgb || !out)
        return fn_fail(err, FN_EARG, "fn_image_to_input: invalid arguments");
    uint8_t *r = malloc((size_t)FN_INPUT_SIZE * FN_INPUT_SIZE * 3);
    if (!r)
        return fn_fail(err, FN_ENOMEM, "out of memory");
    int rc = mode == FN_RESIZE_STB
                 ? fn_resize_stb(img->rgb, img->w, img->h, r, FN_INPUT_SIZE, FN_INPUT_SIZE, err)
                 : fn_resize_pil_bicubic(img->rgb, img->w, img->h, r, FN_INPUT_SIZE, FN_INPUT_SIZE, err);
    if (rc == FN_OK)
        fn_preprocess_rgb224(r, out);
    free(r);
    return rc;
}

int fn_input_from_memory(const void *bytes, size_t len, const char *name, fn_resize_mode mode, float *out,
                         fn_error *err)
{
    fn_image img;
    int rc = fn_image_decode(bytes, len, name, &img, err);
    if (rc == FN_OK)
        rc = fn_image_to_input(&img, mode, out, err);
    fn_image_free(&img);
    return rc;
}

int fn_input_from_file(const char *path, fn_resize_mode mode, float *out, fn_error *err)
{
    fn_image img;
    int rc = fn_image_load(path, &img, err);
    if (rc == FN_OK)
        rc = fn_image_to_input(&img, mode, out, err);
    fn_image_free(&img);
    return rc;
}
