/*
 * jpeg_turbo.c — optional JPEG decoding with libjpeg(-turbo), the decoder
 * Pillow uses, configured as Pillow 9.4's JpegDecode.c does (libjpeg
 * defaults: JDCT_ISLOW, fancy upsampling, out_color_space JCS_RGB), so that
 * the decoded pixels equal PIL's Image.open(f).convert('RGB') bit for bit
 * (with the same libjpeg-turbo version; tests/test_image.c checks it).
 *
 * Compiled in by default (make JPEG=turbo: -DFN_HAVE_TURBOJPEG, -ljpeg);
 * image.c routes JPEG data (FF D8 FF) here, PNG data to png.c.
 *
 * As in PIL: grey JPEGs are replicated to RGB; CMYK/YCCK JPEGs are decoded to
 * CMYK, inverted when an Adobe marker is present ("CMYK;I") and converted with
 * PIL's cmyk2rgb; truncated data is an error ("image file is truncated");
 * other libjpeg warnings (extraneous bytes, ...) are ignored.
 */
#include "util.h"

#ifdef FN_HAVE_TURBOJPEG

#include <setjmp.h>
#include <stdio.h> /* jpeglib.h needs FILE */
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <jerror.h>

#define FN_STR2(x) #x
#define FN_STR(x) FN_STR2(x)

/* A progressive file may declare any number of scans; each costs a full pass
 * over the coefficients. image.c counts them from the markers before calling
 * us; the progress monitor checks the scans libjpeg really reads against the
 * same limits (FN_JPEG_MAX_SCANS, FN_JPEG_MAX_PIXEL_SCANS in fruitnet.h). */

typedef struct {
    struct jpeg_error_mgr pub;
    jmp_buf jb;
    int truncated, too_many_scans;
    char msg[JMSG_LENGTH_MAX];
} err_mgr;

static void on_error(j_common_ptr cinfo)
{
    err_mgr *e = (err_mgr *)cinfo->err;
    (*cinfo->err->format_message)(cinfo, e->msg);
    longjmp(e->jb, 1);
}

static void on_message(j_common_ptr cinfo, int level)
{
    err_mgr *e = (err_mgr *)cinfo->err;
    if (level < 0 && cinfo->err->msg_code == JWRN_JPEG_EOF)
        e->truncated = 1; /* jpeg_mem_src inserts a fake EOI; PIL reports truncation */
}

static void bail(err_mgr *e, const char *why)
{
    snprintf(e->msg, sizeof e->msg, "%s", why);
    longjmp(e->jb, 1);
}

static void on_progress(j_common_ptr cinfo)
{
    j_decompress_ptr d = (j_decompress_ptr)cinfo;
    err_mgr *e = (err_mgr *)cinfo->err;
    int64_t px = (int64_t)d->image_width * d->image_height;
    if (d->input_scan_number > FN_JPEG_MAX_SCANS ||
        (px > 0 && (int64_t)d->input_scan_number * px > FN_JPEG_MAX_PIXEL_SCANS)) {
        e->too_many_scans = 1;
        snprintf(e->msg, sizeof e->msg, "%s JPEG with more than %lld scans: refused",
                 d->progressive_mode ? "progressive" : "multi-scan",
                 (long long)(d->input_scan_number > FN_JPEG_MAX_SCANS ? FN_JPEG_MAX_SCANS
                                                                       : FN_JPEG_MAX_PIXEL_SCANS / px));
        longjmp(e->jb, 1);
    }
}

const char *fn_jpeg_turbo_name(void);
int fn_jpeg_turbo_decode(const void *bytes, size_t len, const char *name, fn_image *out, fn_error *err);

const char *fn_jpeg_turbo_name(void)
{
#ifdef LIBJPEG_TURBO_VERSION
    return "libjpeg-turbo " FN_STR(LIBJPEG_TURBO_VERSION);
#else
    return "libjpeg " FN_STR(JPEG_LIB_VERSION);
#endif
}

/* PIL's MULDIV255 and cmyk2rgb (libImaging/Convert.c). */
static inline int muldiv255(int a, int b)
{
    int t = a * b + 128;
    return ((t >> 8) + t) >> 8;
}

int fn_jpeg_turbo_decode(const void *bytes, size_t len, const char *name, fn_image *out, fn_error *err)
{
    struct jpeg_decompress_struct ci;
    struct jpeg_progress_mgr prog;
    err_mgr em;
    /* volatile: modified between setjmp and longjmp */
    unsigned char *volatile px = NULL;
    JSAMPLE *volatile row = NULL;
    memset(&ci, 0, sizeof ci);
    ci.err = jpeg_std_error(&em.pub);
    em.pub.error_exit = on_error;
    em.pub.emit_message = on_message;
    em.truncated = em.too_many_scans = 0;
    em.msg[0] = 0;
    if (setjmp(em.jb)) {
        jpeg_destroy_decompress(&ci);
        free(px);
        free(row);
        if (em.too_many_scans)
            return fn_fail(err, FN_ELIMIT, "%s: %s", name, em.msg);
        return fn_fail(err, FN_EIMAGE, "%s: cannot decode JPEG (%s)", name, em.msg);
    }
    jpeg_create_decompress(&ci);
    prog.progress_monitor = on_progress;
    ci.progress = &prog;
    jpeg_mem_src(&ci, (const unsigned char *)bytes, (unsigned long)len);
    jpeg_read_header(&ci, TRUE);
    if (em.truncated) {
        jpeg_destroy_decompress(&ci);
        return fn_fail(err, FN_EIMAGE, "%s: cannot decode JPEG (image file is truncated)", name);
    }
    unsigned w = ci.image_width, h = ci.image_height;
    if (w < 1 || h < 1 || w > FN_IMAGE_MAX_SIDE || h > FN_IMAGE_MAX_SIDE ||
        (uint64_t)w * h > (uint64_t)FN_IMAGE_MAX_PIXELS) {
        jpeg_destroy_decompress(&ci);
        return fn_fail(err, FN_ELIMIT, "%s: declared size %ux%u exceeds the limits (%d per side, %d pixels)", name, w,
                       h, FN_IMAGE_MAX_SIDE, FN_IMAGE_MAX_PIXELS);
    }
    int cmyk = 0;
    switch (ci.jpeg_color_space) {
    case JCS_GRAYSCALE:
    case JCS_YCbCr:
    case JCS_RGB:
        ci.out_color_space = JCS_RGB;
        break;
    case JCS_CMYK:
    case JCS_YCCK:
        ci.out_color_space = JCS_CMYK;
        cmyk = 1;
        break;
    default:
        jpeg_destroy_decompress(&ci);
        return fn_fail(err, FN_EUNSUPPORTED, "%s: unsupported JPEG colour space (%d components)", name,
                       ci.num_components);
    }
    jpeg_start_decompress(&ci);
    if (em.truncated)
        bail(&em, "image file is truncated");
    size_t stride = (size_t)w * 3;
    px = malloc(stride * h);
    row = malloc((size_t)w * 4);
    if (!px || !row) {
        jpeg_destroy_decompress(&ci);
        free(px);
        free(row);
        return fn_fail(err, FN_ENOMEM, "%s: out of memory for %ux%u pixels", name, w, h);
    }
    while (ci.output_scanline < h) {
        unsigned y = ci.output_scanline;
        JSAMPROW r = cmyk ? row : px + stride * y;
        if (jpeg_read_scanlines(&ci, &r, 1) != 1 || em.truncated)
            bail(&em, "image file is truncated");
        if (cmyk) {
            unsigned char *o = px + stride * y;
            int inv = ci.saw_Adobe_marker ? 255 : 0; /* PIL: "CMYK;I" for Adobe files */
            for (unsigned x = 0; x < w; x++) {
                int c = row[4 * x] ^ inv, m = row[4 * x + 1] ^ inv, yy = row[4 * x + 2] ^ inv,
                    nk = 255 - (row[4 * x + 3] ^ inv);
                int v0 = nk - muldiv255(c, nk), v1 = nk - muldiv255(m, nk), v2 = nk - muldiv255(yy, nk);
                o[3 * x] = (unsigned char)(v0 < 0 ? 0 : v0);
                o[3 * x + 1] = (unsigned char)(v1 < 0 ? 0 : v1);
                o[3 * x + 2] = (unsigned char)(v2 < 0 ? 0 : v2);
            }
        }
    }
    /* the rest of the file (markers after the last scan) does not affect the pixels */
    jpeg_destroy_decompress(&ci);
    free(row);
    out->w = (int)w;
    out->h = (int)h;
    out->rgb = px;
    return FN_OK;
}

#else
typedef int fn_jpeg_turbo_not_compiled; /* keep the translation unit non-empty */
#endif
