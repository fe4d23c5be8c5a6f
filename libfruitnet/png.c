/*
 * png.c — PNG decoding on zlib, to the pixels of PIL's
 * Image.open(f).convert('RGB') (Pillow 9.4, the PIL of the golden data;
 * tests/data/png-modes/ holds its reference pixels for every mode).
 *
 * Every colour type and bit depth, Adam7 interlace, all five filters. PIL's
 * conversion rules, each checked against PIL itself (tests/data/png-modes/make.py):
 *  - grey 1/2/4 bit scaled to 0..255 (x255, x85, x17); grey 16 bit is PIL's
 *    mode I, clipped to 0..255 by convert('RGB') (not its high byte);
 *  - 16-bit RGB, RGBA and grey+alpha: the high byte of each sample;
 *  - alpha and tRNS are dropped, never composited;
 *  - palette: PLTE entries (at most 256, a partial last entry ignored), the
 *    indices PLTE does not cover, or all of them without PLTE, map to grey
 *    (i, i, i): PIL's default palette.
 *
 * Refused, with the reason, as PIL refuses them: a bad CRC in any chunk up to
 * the image data, a broken chunk type, an unknown mode, an unknown filter
 * category or filter type, a PLTE of more than 256 entries, short IHDR, gAMA,
 * cHRM, sRGB or pHYs chunks, a bad zlib stream or Adler-32 checksum, image data
 * that ends early, a chunk after the image data that runs past the end of the
 * file. Stricter than PIL: the CRC of the IDAT chunks is checked too, and the
 * zlib stream must end with its Adler-32 (PIL stops reading once it has every
 * row). Like PIL: chunks after the image data are not CRC-checked and a missing
 * IEND is no error (the pixels are complete and checksummed by then).
 *
 * Bounded: the declared size is checked against FN_IMAGE_MAX_SIDE/PIXELS
 * before any allocation; image data that could not inflate to the declared
 * size (deflate expands at most 1032:1) is refused before the pixels are
 * allocated; the decoder holds the RGB output plus two rows, inflating row by
 * row; the zlib stream may run on past the last row by FN_PNG_MAX_EXTRA bytes.
 */
#include "util.h"

#include <stdlib.h>
#include <string.h>
#include <zlib.h>

int fn_png_decode(const void *bytes, size_t len, const char *name, fn_image *out, fn_error *err);

/* inflated bytes tolerated after the last row before the stream's end (PIL ignores any) */
#define FN_PNG_MAX_EXTRA ((size_t)1 << 20)

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* PIL's is_cid: four "word" characters [A-Za-z0-9_] */
static int is_cid(const unsigned char *t)
{
    for (int i = 0; i < 4; i++) {
        unsigned c = t[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_'))
            return 0;
    }
    return 1;
}

/* a chunk type for messages: printable, else '?' */
static void cid_str(const unsigned char *t, char s[5])
{
    for (int i = 0; i < 4; i++)
        s[i] = t[i] >= 0x20 && t[i] < 0x7f ? (char)t[i] : '?';
    s[4] = 0;
}

static const int adam7[7][4] = {{0, 0, 8, 8}, {4, 0, 8, 8}, {0, 4, 4, 8}, {2, 0, 4, 4},
                                {0, 2, 2, 4}, {1, 0, 2, 2}, {0, 1, 1, 2}}; /* x0, y0, dx, dy */

typedef struct {
    const unsigned char *b;
    size_t len;
    size_t chunk;   /* offset of the current IDAT chunk */
    size_t end;     /* end of the IDAT run (offset of the first chunk after it) */
    z_stream z;
    uint64_t taken; /* compressed bytes given to zlib */
} idat_reader;

/* Feed zlib the next non-empty IDAT chunk of the run; 0 when the run is over. */
static int idat_next(idat_reader *r)
{
    while (r->chunk < r->end) {
        uint32_t n = be32(r->b + r->chunk);
        const unsigned char *d = r->b + r->chunk + 8;
        r->chunk += 12 + (size_t)n;
        if (n) {
            r->z.next_in = (Bytef *)d;
            r->z.avail_in = n;
            r->taken += n;
            return 1;
        }
    }
    return 0;
}

static inline unsigned paeth(unsigned a, unsigned b, unsigned c)
{
    int p = (int)a + (int)b - (int)c, pa = abs(p - (int)a), pb = abs(p - (int)b), pc = abs(p - (int)c);
    return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
}

/* Undo the row's filter in place; prev is the unfiltered previous row of the pass (zeros for the first). */
static int unfilter(unsigned char *row, const unsigned char *prev, size_t n, size_t bpp, int type)
{
    size_t i;
    switch (type) {
    case 0:
        break;
    case 1:
        for (i = bpp; i < n; i++)
            row[i] = (unsigned char)(row[i] + row[i - bpp]);
        break;
    case 2:
        for (i = 0; i < n; i++)
            row[i] = (unsigned char)(row[i] + prev[i]);
        break;
    case 3:
        for (i = 0; i < bpp && i < n; i++)
            row[i] = (unsigned char)(row[i] + (prev[i] >> 1));
        for (; i < n; i++)
            row[i] = (unsigned char)(row[i] + ((row[i - bpp] + prev[i]) >> 1));
        break;
    case 4:
        for (i = 0; i < bpp && i < n; i++)
            row[i] = (unsigned char)(row[i] + prev[i]);
        for (; i < n; i++)
            row[i] = (unsigned char)(row[i] + paeth(row[i - bpp], prev[i], prev[i - bpp]));
        break;
    default:
        return 0;
    }
    return 1;
}

typedef struct {
    int ctype, depth;
    unsigned char pal[256][3];
} png_fmt;

/* One unfiltered row of pw pixels -> RGB at out, every dx-th pixel (3*dx bytes apart). */
static void row_to_rgb(const png_fmt *f, const unsigned char *s, int pw, unsigned char *o, int dx)
{
    size_t step = (size_t)3 * dx;
    int d = f->depth;
    for (int x = 0; x < pw; x++, o += step) {
        unsigned v;
        switch (f->ctype) {
        case 0:
            if (d == 16) {
                v = (unsigned)s[2 * x] << 8 | s[2 * x + 1];
                v = v > 255 ? 255 : v; /* PIL: mode I, clipped by convert('RGB') */
            } else if (d == 8) {
                v = s[x];
            } else {
                int per = 8 / d, sh = 8 - d * (x % per + 1);
                v = (unsigned)(s[x / per] >> sh) & ((1u << d) - 1);
                v = v * (255u / ((1u << d) - 1)); /* x255, x85, x17 */
            }
            o[0] = o[1] = o[2] = (unsigned char)v;
            break;
        case 2:
            if (d == 16)
                o[0] = s[6 * x], o[1] = s[6 * x + 2], o[2] = s[6 * x + 4];
            else
                o[0] = s[3 * x], o[1] = s[3 * x + 1], o[2] = s[3 * x + 2];
            break;
        case 3:
            if (d == 8) {
                v = s[x];
            } else {
                int per = 8 / d, sh = 8 - d * (x % per + 1);
                v = (unsigned)(s[x / per] >> sh) & ((1u << d) - 1);
            }
            o[0] = f->pal[v][0], o[1] = f->pal[v][1], o[2] = f->pal[v][2];
            break;
        case 4:
            o[0] = o[1] = o[2] = d == 16 ? s[4 * x] : s[2 * x];
            break;
        default: /* 6 */
            if (d == 16)
                o[0] = s[8 * x], o[1] = s[8 * x + 2], o[2] = s[8 * x + 4];
            else
                o[0] = s[4 * x], o[1] = s[4 * x + 1], o[2] = s[4 * x + 2];
            break;
        }
    }
}

static int channels_of(int ctype)
{
    return ctype == 2 ? 3 : ctype == 4 ? 2 : ctype == 6 ? 4 : 1;
}

static int mode_ok(int ctype, int d)
{
    switch (ctype) {
    case 0:
        return d == 1 || d == 2 || d == 4 || d == 8 || d == 16;
    case 3:
        return d == 1 || d == 2 || d == 4 || d == 8;
    case 2:
    case 4:
    case 6:
        return d == 8 || d == 16;
    }
    return 0;
}

static uint64_t row_bytes(uint64_t pw, int ctype, int depth)
{
    return (pw * (uint64_t)channels_of(ctype) * (uint64_t)depth + 7) / 8;
}

int fn_png_decode(const void *bytes, size_t len, const char *name, fn_image *out, fn_error *err)
{
    const unsigned char *b = bytes;
    static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', 0x0d, 0x0a, 0x1a, 0x0a};
    out->w = out->h = 0;
    out->rgb = NULL;
    if (len < 8 || memcmp(b, sig, 8))
        return fn_fail(err, FN_EIMAGE, "%s: not a PNG file", name);

    /* ---- the chunks up to the image data, as PIL's PngImageFile._open reads them */
    png_fmt f;
    for (int i = 0; i < 256; i++)
        f.pal[i][0] = f.pal[i][1] = f.pal[i][2] = (unsigned char)i;
    int have_ihdr = 0, interlace = 0;
    int64_t w = 0, h = 0;
    f.ctype = f.depth = -1;
    size_t p = 8, idat = 0;
    char t[5];
    for (;;) {
        if (len - p < 8)
            return fn_fail(err, FN_EIMAGE, "%s: truncated PNG (the file ends before the image data)", name);
        uint32_t n = be32(b + p);
        const unsigned char *ty = b + p + 4, *d = b + p + 8;
        cid_str(ty, t);
        if (!is_cid(ty))
            return fn_fail(err, FN_EIMAGE, "%s: broken PNG file (chunk type '%s' at offset %zu)", name, t, p);
        if (n > len - p - 8 || len - p - 8 - n < 4)
            return fn_fail(err, FN_EIMAGE, "%s: truncated PNG (chunk %s declares %lu bytes, %zu left in the file)",
                           name, t, (unsigned long)n, len - p - 8);
        uint32_t crc = (uint32_t)crc32(crc32(0, ty, 4), d, n), stored = be32(d + n);
        if (crc != stored && !memcmp(ty, "IHDR", 4) && n >= 13) /* the declared size, for the record */
            return fn_fail(err, FN_EIMAGE,
                           "%s: broken PNG file (bad CRC in chunk IHDR declaring %lux%lu: stored %08lx, computed %08lx)",
                           name, (unsigned long)be32(d), (unsigned long)be32(d + 4), (unsigned long)stored,
                           (unsigned long)crc);
        if (crc != stored)
            return fn_fail(err, FN_EIMAGE, "%s: broken PNG file (bad CRC in chunk %s: stored %08lx, computed %08lx)",
                           name, t, (unsigned long)stored, (unsigned long)crc);
        if (!memcmp(ty, "IDAT", 4)) {
            idat = p;
            break;
        }
        if (!memcmp(ty, "IEND", 4))
            return fn_fail(err, FN_EIMAGE, "%s: PNG without image data (IEND before any IDAT chunk)", name);
        if (!memcmp(ty, "IHDR", 4)) {
            if (n < 13)
                return fn_fail(err, FN_EIMAGE, "%s: truncated IHDR chunk (%lu bytes)", name, (unsigned long)n);
            w = be32(d);
            h = be32(d + 4);
            f.depth = d[8];
            f.ctype = d[9];
            interlace = d[12] != 0; /* PIL: any non-zero method is Adam7; the compression byte is not read */
            if (d[11])
                return fn_fail(err, FN_EIMAGE, "%s: unknown PNG filter category %d", name, d[11]);
            if (w < 1 || h < 1 || w > FN_IMAGE_MAX_SIDE || h > FN_IMAGE_MAX_SIDE || w * h > (int64_t)FN_IMAGE_MAX_PIXELS)
                return fn_fail(err, FN_ELIMIT, "%s: declared size %lldx%lld exceeds the limits (%d per side, %d pixels)",
                               name, (long long)w, (long long)h, FN_IMAGE_MAX_SIDE, FN_IMAGE_MAX_PIXELS);
            have_ihdr = 1;
        } else if (!memcmp(ty, "PLTE", 4)) {
            if (f.ctype == 3) { /* PIL keeps a palette only for a palette image */
                if (n / 3 > 256) /* PIL: "invalid palette size" (769 and 770 bytes still pass) */
                    return fn_fail(err, FN_EIMAGE, "%s: invalid PNG palette size (%lu bytes)", name, (unsigned long)n);
                for (int i = 0; i < 256; i++) /* the grey default for the entries this PLTE does not cover */
                    f.pal[i][0] = f.pal[i][1] = f.pal[i][2] = (unsigned char)i;
                memcpy(f.pal, d, n / 3 * 3);
            }
        } else if ((!memcmp(ty, "gAMA", 4) && n < 4) || (!memcmp(ty, "cHRM", 4) && n % 4) ||
                   (!memcmp(ty, "sRGB", 4) && n < 1) || (!memcmp(ty, "pHYs", 4) && n < 9)) {
            return fn_fail(err, FN_EIMAGE, "%s: truncated %s chunk (%lu bytes)", name, t, (unsigned long)n);
        }
        p += 12 + (size_t)n;
    }
    if (!have_ihdr)
        return fn_fail(err, FN_EIMAGE, "%s: PNG image data before the IHDR chunk", name);
    if (!mode_ok(f.ctype, f.depth))
        return fn_fail(err, FN_EUNSUPPORTED, "%s: unknown PNG mode (bit depth %d, colour type %d)", name, f.depth,
                       f.ctype);

    /* ---- the run of consecutive IDAT chunks (CRC-checked), then the chunks after it, as PIL's load_end */
    uint64_t comp = 0;
    size_t q = idat, run_end;
    for (;;) {
        if (len - q < 12 || memcmp(b + q + 4, "IDAT", 4))
            break;
        uint32_t n = be32(b + q);
        if (n > len - q - 8 || len - q - 8 - n < 4)
            return fn_fail(err, FN_EIMAGE, "%s: truncated PNG (chunk IDAT declares %lu bytes, %zu left in the file)",
                           name, (unsigned long)n, len - q - 8);
        uint32_t crc = q == idat ? 0 : (uint32_t)crc32(0, b + q + 4, n + 4), stored = q == idat ? 0 : be32(b + q + 8 + n);
        if (crc != stored) /* (the first IDAT's CRC was checked above) */
            return fn_fail(err, FN_EIMAGE, "%s: broken PNG file (bad CRC in chunk IDAT: stored %08lx, computed %08lx)",
                           name, (unsigned long)stored, (unsigned long)crc);
        comp += n;
        q += 12 + (size_t)n;
    }
    run_end = q;
    for (;;) { /* PIL reads on to IEND: a chunk cut by the end of the file or a short known chunk is an error */
        if (len - q < 8)
            break;
        uint32_t n = be32(b + q);
        const unsigned char *ty = b + q + 4;
        if (!is_cid(ty) || !memcmp(ty, "IEND", 4))
            break;
        cid_str(ty, t);
        if (n > len - q - 8)
            return fn_fail(err, FN_EIMAGE, "%s: truncated PNG (chunk %s declares %lu bytes, %zu left in the file)",
                           name, t, (unsigned long)n, len - q - 8);
        if ((!memcmp(ty, "gAMA", 4) && n < 4) || (!memcmp(ty, "cHRM", 4) && n % 4) ||
            (!memcmp(ty, "sRGB", 4) && n < 1) || (!memcmp(ty, "pHYs", 4) && n < 9))
            return fn_fail(err, FN_EIMAGE, "%s: truncated %s chunk (%lu bytes)", name, t, (unsigned long)n);
        q += 8 + (size_t)n;
        q += len - q < 4 ? len - q : 4; /* the CRC, not checked (as PIL) */
    }

    /* ---- sizes: raw bytes the declared image needs, per pass */
    int npass = interlace ? 7 : 1;
    uint64_t raw = 0, maxrow = 0;
    int pw[7], ph[7];
    for (int k = 0; k < npass; k++) {
        int x0 = interlace ? adam7[k][0] : 0, y0 = interlace ? adam7[k][1] : 0;
        int dx = interlace ? adam7[k][2] : 1, dy = interlace ? adam7[k][3] : 1;
        pw[k] = w > x0 ? (int)((w - x0 + dx - 1) / dx) : 0;
        ph[k] = h > y0 ? (int)((h - y0 + dy - 1) / dy) : 0;
        if (!pw[k] || !ph[k])
            continue;
        uint64_t rb = row_bytes((uint64_t)pw[k], f.ctype, f.depth);
        raw += (rb + 1) * (uint64_t)ph[k];
        maxrow = rb > maxrow ? rb : maxrow;
    }
    /* deflate expands at most 1032:1 (a 258-byte match in 2 bits): less data cannot be this image */
    if (raw > comp * 1032 + 1024)
        return fn_fail(err, FN_EIMAGE,
                       "%s: truncated PNG (%llu bytes of compressed image data cannot hold the %llu bytes of a "
                       "%lldx%lld image)",
                       name, (unsigned long long)comp, (unsigned long long)raw, (long long)w, (long long)h);

    /* ---- inflate row by row */
    size_t stride = (size_t)w * 3;
    unsigned char *px = malloc(stride * (size_t)h);
    unsigned char *rows = malloc(2 * ((size_t)maxrow + 1) + 4096);
    if (!px || !rows) {
        free(px);
        free(rows);
        return fn_fail(err, FN_ENOMEM, "%s: out of memory for %lldx%lld pixels", name, (long long)w, (long long)h);
    }
    unsigned char *cur = rows, *prev = rows + maxrow + 1, *scratch = rows + 2 * (maxrow + 1);
    idat_reader r;
    memset(&r, 0, sizeof r);
    r.b = b;
    r.len = len;
    r.chunk = idat;
    r.end = run_end;
    int rc = FN_OK;
    if (inflateInit(&r.z) != Z_OK) {
        free(px);
        free(rows);
        return fn_fail(err, FN_ENOMEM, "%s: out of memory (zlib)", name);
    }
    size_t bpp = (size_t)(channels_of(f.ctype) * f.depth + 7) / 8;
    uint64_t done = 0;
    int zr = Z_OK;
    for (int k = 0; k < npass && rc == FN_OK; k++) {
        if (!pw[k] || !ph[k])
            continue;
        int x0 = interlace ? adam7[k][0] : 0, y0 = interlace ? adam7[k][1] : 0;
        int dx = interlace ? adam7[k][2] : 1, dy = interlace ? adam7[k][3] : 1;
        size_t rb = (size_t)row_bytes((uint64_t)pw[k], f.ctype, f.depth);
        memset(prev, 0, rb + 1);
        for (int y = 0; y < ph[k]; y++) {
            r.z.next_out = cur;
            r.z.avail_out = (uInt)(rb + 1);
            while (r.z.avail_out) {
                if (!r.z.avail_in && !idat_next(&r)) {
                    rc = fn_fail(err, FN_EIMAGE, "%s: truncated PNG (image data ends after %llu of %llu bytes)", name,
                                 (unsigned long long)(done + rb + 1 - r.z.avail_out), (unsigned long long)raw);
                    break;
                }
                zr = inflate(&r.z, Z_NO_FLUSH);
                if (zr == Z_STREAM_END && r.z.avail_out) {
                    rc = fn_fail(err, FN_EIMAGE, "%s: truncated PNG (zlib stream ends after %llu of %llu bytes)", name,
                                 (unsigned long long)(done + rb + 1 - r.z.avail_out), (unsigned long long)raw);
                    break;
                }
                if (zr != Z_OK && zr != Z_STREAM_END && zr != Z_BUF_ERROR) {
                    rc = fn_fail(err, zr == Z_MEM_ERROR ? FN_ENOMEM : FN_EIMAGE,
                                 "%s: corrupt PNG image data (zlib: %s)", name,
                                 zr == Z_DATA_ERROR && r.z.msg && !strcmp(r.z.msg, "incorrect data check")
                                     ? "Adler-32 checksum mismatch"
                                     : r.z.msg ? r.z.msg : "error");
                    break;
                }
                if (zr == Z_STREAM_END)
                    break;
            }
            if (rc != FN_OK)
                break;
            done += rb + 1;
            if (!unfilter(cur + 1, prev + 1, rb, bpp, cur[0])) {
                rc = fn_fail(err, FN_EIMAGE, "%s: corrupt PNG image data (filter type %d in row %d%s)", name, cur[0],
                             y, interlace ? " of an interlace pass" : "");
                break;
            }
            row_to_rgb(&f, cur + 1, pw[k], px + (size_t)(y0 + (int64_t)y * dy) * stride + (size_t)x0 * 3, dx);
            unsigned char *tmp = prev;
            prev = cur;
            cur = tmp;
        }
    }
    /* every row is there: the stream must end (its Adler-32 checked) within FN_PNG_MAX_EXTRA more bytes */
    size_t extra = 0;
    while (rc == FN_OK && zr != Z_STREAM_END) {
        if (!r.z.avail_in && !idat_next(&r)) {
            rc = fn_fail(err, FN_EIMAGE, "%s: truncated PNG (zlib stream without its end and Adler-32 checksum)", name);
            break;
        }
        r.z.next_out = scratch;
        r.z.avail_out = 4096;
        zr = inflate(&r.z, Z_NO_FLUSH);
        extra += 4096 - r.z.avail_out;
        if (zr != Z_OK && zr != Z_STREAM_END && zr != Z_BUF_ERROR)
            rc = fn_fail(err, FN_EIMAGE, "%s: corrupt PNG image data (zlib: %s)", name,
                         zr == Z_DATA_ERROR && r.z.msg && !strcmp(r.z.msg, "incorrect data check")
                             ? "Adler-32 checksum mismatch"
                             : r.z.msg ? r.z.msg : "error");
        else if (extra > FN_PNG_MAX_EXTRA)
            rc = fn_fail(err, FN_ELIMIT, "%s: PNG zlib stream runs on for more than %zu bytes past the image", name,
                         FN_PNG_MAX_EXTRA);
    }
    inflateEnd(&r.z);
    free(rows);
    if (rc != FN_OK) {
        free(px);
        return rc;
    }
    out->w = (int)w;
    out->h = (int)h;
    out->rgb = px;
    return FN_OK;
}
