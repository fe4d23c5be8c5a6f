/*
 * image.c — decoding (stb_image: JPEG and PNG), size limits, the stb
 * resize option and the Keras "caffe" preprocessing.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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
#define STB_IMAGE_STATIC
#define STB_IMAGE_IMPLEMENTATION
#define STBI_ONLY_JPEG
#define STBI_ONLY_PNG
#define STBI_NO_STDIO
#define STBI_NO_LINEAR
#define STBI_NO_HDR
#define STBI_MAX_DIMENSIONS (1 << 24) /* our own, tighter limits are checked before decoding */
#include <stb_image.h>
#define STB_IMAGE_RESIZE_STATIC
#define STB_IMAGE_RESIZE_IMPLEMENTATION
#include <stb_image_resize.h>
#pragma GCC diagnostic pop

#define MAX_FILE_BYTES ((size_t)256 << 20)

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

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Declared size from a PNG IHDR or a JPEG SOF marker, without decoding; 0 if not found. */
static int sniff_dims(const unsigned char *b, size_t len, int64_t *w, int64_t *h)
{
    if (len >= 24 && !memcmp(b, png_sig, 8) && !memcmp(b + 12, "IHDR", 4)) {
        *w = be32(b + 16);
        *h = be32(b + 20);
        return 1;
    }
    if (len < 4 || b[0] != 0xFF || b[1] != 0xD8)
        return 0;
    size_t i = 2;
    while (i + 4 <= len) {
        if (b[i] != 0xFF)
            return 0;
        unsigned m = b[i + 1];
        if (m == 0xFF) {
            i++;
            continue;
        }
        size_t seg = (size_t)b[i + 2] << 8 | b[i + 3];
        if (m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC) {
            if (i + 9 > len)
                return 0;
            *h = b[i + 5] << 8 | b[i + 6];
            *w = b[i + 7] << 8 | b[i + 8];
            return 1;
        }
        if (seg < 2)
            return 0;
        i += 2 + seg;
    }
    return 0;
}

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

/*
 * Walk a PNG's chunks up to IEND: a chunk whose declared length runs past the end of the data is refused
 * (returns its type in bad[5]). stb_image reallocates its IDAT buffer to the declared length before it finds
 * the bytes missing: a 90-byte file asked for 2 GiB (found by fuzz/fuzz_image.c).
 */
static int png_chunks_ok(const unsigned char *b, size_t len, char bad[5], uint32_t *blen)
{
    size_t p = 8;
    while (p + 8 <= len) {
        uint32_t n = be32(b + p);
        const unsigned char *t = b + p + 4;
        if (n > len - p - 8 || len - p - 8 - n < 4) { /* data + CRC past the end */
            for (int i = 0; i < 4; i++)
                bad[i] = t[i] >= 0x20 && t[i] < 0x7f ? (char)t[i] : '?';
            bad[4] = 0;
            *blen = n;
            return 0;
        }
        if (!memcmp(t, "IEND", 4))
            return 1;
        p += 12 + (size_t)n;
    }
    return 1; /* no IEND: left to the decoder */
}

int fn_image_decode(const void *bytes, size_t len, const char *name, fn_image *out, fn_error *err)
{
    if (!name)
        name = "<memory>";
    if (!out)
        return fn_fail(err, FN_EARG, "%s: no output image", name);
    out->w = out->h = 0;
    out->rgb = NULL;
    if (!bytes || len == 0)
        return fn_fail(err, FN_EIMAGE, "%s: empty file", name);
    if (len > (size_t)INT32_MAX)
        return fn_fail(err, FN_ELIMIT, "%s: %zu bytes is too large", name, len);
    int64_t sw, sh;
    if (sniff_dims(bytes, len, &sw, &sh) &&
        (sw > FN_IMAGE_MAX_SIDE || sh > FN_IMAGE_MAX_SIDE || sw * sh > (int64_t)FN_IMAGE_MAX_PIXELS))
        return fn_fail(err, FN_ELIMIT, "%s: declared size %lldx%lld exceeds the limits (%d per side, %d pixels)",
                       name, (long long)sw, (long long)sh, FN_IMAGE_MAX_SIDE, FN_IMAGE_MAX_PIXELS);
#ifdef FN_HAVE_TURBOJPEG
    if (len >= 2 && ((const unsigned char *)bytes)[0] == 0xFF && ((const unsigned char *)bytes)[1] == 0xD8)
        return fn_jpeg_turbo_decode(bytes, len, name, out, err);
#endif
    char ctype[5];
    uint32_t clen;
    if (len >= 8 && !memcmp(bytes, png_sig, 8) && !png_chunks_ok(bytes, len, ctype, &clen))
        return fn_fail(err, FN_EIMAGE, "%s: truncated or corrupt PNG (chunk %s declares %lu bytes past the end)", name,
                       ctype, (unsigned long)clen);
    if (len >= 2 && ((const unsigned char *)bytes)[0] == 0xFF && !jpeg_tables_ok(bytes, len))
        return fn_fail(err, FN_EIMAGE, "%s: corrupt JPEG (Huffman table with more than 256 codes)", name);
    int w, h, comp;
    if (!stbi_info_from_memory(bytes, (int)len, &w, &h, &comp)) {
        const char *why = stbi_failure_reason();
        return fn_fail(err, FN_EIMAGE, "%s: not a readable JPEG or PNG (%s)", name, why ? why : "unknown format");
    }
    if (w < 1 || h < 1 || w > FN_IMAGE_MAX_SIDE || h > FN_IMAGE_MAX_SIDE ||
        (int64_t)w * h > (int64_t)FN_IMAGE_MAX_PIXELS)
        return fn_fail(err, FN_ELIMIT, "%s: declared size %dx%d exceeds the limits (%d per side, %d pixels)", name, w,
                       h, FN_IMAGE_MAX_SIDE, FN_IMAGE_MAX_PIXELS);
    int dw, dh, dc;
    unsigned char *px = stbi_load_from_memory(bytes, (int)len, &dw, &dh, &dc, 3);
    if (!px) {
        const char *why = stbi_failure_reason();
        return fn_fail(err, FN_EIMAGE, "%s: cannot decode (%s)", name, why ? why : "corrupt data");
    }
    out->w = dw;
    out->h = dh;
    out->rgb = px;
    return FN_OK;
}

int fn_image_load(const char *path, fn_image *out, fn_error *err)
{
    if (!path || !out)
        return fn_fail(err, FN_EARG, "fn_image_load: invalid arguments");
    out->w = out->h = 0;
    out->rgb = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK); /* never blocks on a FIFO */
    if (fd < 0)
        return fn_fail(err, FN_EIO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return fn_fail(err, FN_EIO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (S_ISDIR(st.st_mode)) {
        close(fd);
        return fn_fail(err, FN_EIO, "%s: is a directory, not an image file", path);
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return fn_fail(err, FN_EIO, "%s: not a regular file", path);
    }
    if ((uint64_t)st.st_size > MAX_FILE_BYTES) {
        close(fd);
        return fn_fail(err, FN_ELIMIT, "%s: %lld bytes is over the %zu MiB limit", path, (long long)st.st_size,
                       MAX_FILE_BYTES >> 20);
    }
    size_t size = (size_t)st.st_size, got = 0;
    unsigned char *buf = malloc(size ? size : 1);
    if (!buf) {
        close(fd);
        return fn_fail(err, FN_ENOMEM, "%s: out of memory", path);
    }
    while (got < size) {
        ssize_t r = read(fd, buf + got, size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            int e = errno;
            free(buf);
            close(fd);
            return fn_fail(err, FN_EIO, "%s: read error: %s", path, r < 0 ? strerror(e) : "file shrank");
        }
        got += (size_t)r;
    }
    close(fd);
    int rc = fn_image_decode(buf, size, path, out, err);
    free(buf);
    return rc;
}

void fn_image_free(fn_image *img)
{
    if (!img)
        return;
    stbi_image_free(img->rgb);
    img->rgb = NULL;
    img->w = img->h = 0;
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
