/*
 * parquet_write.c — a minimal Parquet writer for fruitnet's rows, with the
 * schema Spark writes for (path string, label string, <list> array<float>):
 *
 *   message schema {
 *     optional binary path (STRING);
 *     optional binary label (STRING);
 *     optional group <list_column> (LIST) {
 *       repeated group list { optional float element; }
 *     }
 *   }
 *
 * Spark reads it as (string, string, array<float>), pandas as a list column,
 * DuckDB as (VARCHAR, VARCHAR, FLOAT[]). fruitnet never writes nulls, but the
 * nullability is Spark's, so fruitnet parts and Spark parts share one schema.
 * Data pages v1 (~1 MiB, split on row boundaries), PLAIN values, RLE levels,
 * UNCOMPRESSED or GZIP, page CRC32, chunk statistics (null_count; exact
 * min/max of short strings with TYPE_ORDER column orders). Rows are buffered
 * up to rows_per_group, then one row group is written: memory stays flat.
 * The file is put in place by fn_atomic_* (atomic.c): a hidden temporary
 * file in the same folder, fsynced, renamed on close, the folder fsynced; a
 * target that is not a regular file is refused.
 */
#include "parquet.h"
#include "parquet_thrift.h"
#include "thrift.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define PAGE_TARGET ((size_t)1 << 20) /* bytes of values per data page (a single bigger row gets its own page) */
#define STAT_MAX 256                  /* strings longer than this get no min/max statistics */
#define MAX_ROWS_PER_GROUP (1 << 24)
#define MAX_STRING ((size_t)1 << 24)
#define MAX_VECTOR (1 << 24)

#ifndef FRUITNET_BUILD
#if defined(__clang__)
#define FRUITNET_BUILD "clang " __clang_version__
#elif defined(__GNUC__)
#define FRUITNET_BUILD "gcc " __VERSION__
#else
#define FRUITNET_BUILD "unknown"
#endif
#endif

typedef struct chunk_meta {
    int64_t num_values, uncompressed, compressed, data_page_offset, null_count;
    const char *min, *max; /* string columns: pointers into the buffered rows (valid during the flush) */
    size_t min_len, max_len;
    int no_minmax;
} chunk_meta;

typedef struct group_meta {
    chunk_meta col[3 + FN_PARQUET_MAX_EXTRA];
    int64_t rows, total_bytes, file_offset;
    /* min/max copies kept for the footer (strings only) */
    char *minmax[2][2];
    size_t minmax_len[2][2];
} group_meta;

struct fn_parquet_writer {
    char *path;
    fn_atomic *at; /* the temporary file until close */
    int fd;
    int64_t offset;
    char *list_column;
    fn_codec codec;
    int rows_per_group;
    fn_kv *meta;
    int nmeta;
    /* buffered rows of the current group */
    int nrows, cap_rows;
    char **paths, **labels;
    float **vecs;
    int *lens;
    int nextra;
    fn_parquet_column extra[FN_PARQUET_MAX_EXTRA]; /* names owned */
    fn_parquet_value *xv;  /* [cap_rows][nextra]: strings owned */
    /* written groups */
    group_meta *groups;
    int ngroups, cap_groups;
    int64_t total_rows;
    int failed;
};

static int wfail(fn_parquet_writer *w, fn_error *err, int code, const char *what)
{
    int e = errno;
    w->failed = 1;
    if (code == FN_EIO)
        return fn_fail(err, code, "%s: %s: %s", w->path, what, strerror(e));
    return fn_fail(err, code, "%s: %s", w->path, what);
}

static int write_all(fn_parquet_writer *w, const void *data, size_t n, fn_error *err)
{
    const unsigned char *p = data;
    while (n > 0) {
        ssize_t r = write(w->fd, p, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            if (r == 0)
                errno = ENOSPC;
            return wfail(w, err, FN_EIO, "write failed");
        }
        p += r;
        n -= (size_t)r;
        w->offset += r;
    }
    return FN_OK;
}

static char *dupstr(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

/* Strict UTF-8 (no overlongs, surrogates or code points past U+10FFFF). */
static int valid_utf8(const unsigned char *s)
{
    while (*s) {
        unsigned c = *s;
        int n;
        unsigned min;
        if (c < 0x80) {
            s++;
            continue;
        } else if ((c & 0xe0) == 0xc0) n = 1, min = 0x80, c &= 0x1f;
        else if ((c & 0xf0) == 0xe0) n = 2, min = 0x800, c &= 0x0f;
        else if ((c & 0xf8) == 0xf0) n = 3, min = 0x10000, c &= 0x07;
        else return 0;
        for (int i = 1; i <= n; i++) {
            if ((s[i] & 0xc0) != 0x80)
                return 0;
            c = c << 6 | (s[i] & 0x3f);
        }
        if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
            return 0;
        s += n + 1;
    }
    return 1;
}

int fn_parquet_writer_open(const char *path, const fn_parquet_options *opt, fn_parquet_writer **out, fn_error *err)
{
    if (!out)
        return fn_fail(err, FN_EARG, "fn_parquet_writer_open: out is NULL");
    *out = NULL;
    if (!path || !path[0] || !opt || !opt->list_column || !opt->list_column[0])
        return fn_fail(err, FN_EARG, "fn_parquet_writer_open: path, options and list_column are required");
    if (!valid_utf8((const unsigned char *)opt->list_column) || !strcmp(opt->list_column, "path") ||
        !strcmp(opt->list_column, "label"))
        return fn_fail(err, FN_EARG, "%s: list_column \"%s\" must be UTF-8 and differ from path and label", path,
                       opt->list_column);
    if (opt->codec != FN_CODEC_UNCOMPRESSED && opt->codec != FN_CODEC_GZIP)
        return fn_fail(err, FN_EUNSUPPORTED, "%s: codec %d is not supported (UNCOMPRESSED or GZIP)", path,
                       (int)opt->codec);
    if (opt->nmeta < 0 || (opt->nmeta > 0 && !opt->meta) || opt->rows_per_group < 0 ||
        opt->rows_per_group > MAX_ROWS_PER_GROUP)
        return fn_fail(err, FN_EARG, "%s: invalid metadata or rows_per_group (0..%d)", path, MAX_ROWS_PER_GROUP);
    if (opt->nextra < 0 || opt->nextra > FN_PARQUET_MAX_EXTRA || (opt->nextra && !opt->extra))
        return fn_fail(err, FN_EARG, "%s: invalid extra columns (0..%d)", path, FN_PARQUET_MAX_EXTRA);
    for (int i = 0; i < opt->nextra; i++) {
        const char *nm = opt->extra[i].name;
        int bad = !nm || !nm[0] || !valid_utf8((const unsigned char *)nm) || !strcmp(nm, "path") ||
                  !strcmp(nm, "label") || !strcmp(nm, opt->list_column) ||
                  (opt->extra[i].type != FN_PQ_STRING && opt->extra[i].type != FN_PQ_FLOAT);
        for (int j = 0; j < i && !bad; j++)
            bad = !strcmp(nm, opt->extra[j].name);
        if (bad)
            return fn_fail(err, FN_EARG, "%s: extra column %d (%s): empty, not UTF-8, a duplicate name or a bad type",
                           path, i, nm ? nm : "NULL");
    }
    for (int i = 0; i < opt->nmeta; i++)
        if (!opt->meta[i].key || !valid_utf8((const unsigned char *)opt->meta[i].key) ||
            (opt->meta[i].value && !valid_utf8((const unsigned char *)opt->meta[i].value)))
            return fn_fail(err, FN_EARG, "%s: metadata entry %d: key missing or not UTF-8", path, i);
    fn_parquet_writer *w = calloc(1, sizeof *w);
    if (!w)
        return fn_fail(err, FN_ENOMEM, "%s: out of memory", path);
    w->fd = -1;
    w->codec = opt->codec;
    w->rows_per_group = opt->rows_per_group ? opt->rows_per_group : 1024;
    w->path = dupstr(path);
    w->list_column = dupstr(opt->list_column);
    w->meta = calloc((size_t)opt->nmeta + 1, sizeof(fn_kv));
    if (!w->path || !w->list_column || !w->meta) {
        fn_parquet_writer_abort(w);
        return fn_fail(err, FN_ENOMEM, "%s: out of memory", path);
    }
    for (int i = 0; i < opt->nextra; i++) {
        w->extra[i].type = opt->extra[i].type;
        if (!(w->extra[i].name = dupstr(opt->extra[i].name))) {
            fn_parquet_writer_abort(w);
            return fn_fail(err, FN_ENOMEM, "%s: out of memory", path);
        }
        w->nextra++;
    }
    for (int i = 0; i < opt->nmeta; i++) {
        w->meta[i].key = dupstr(opt->meta[i].key);
        w->meta[i].value = dupstr(opt->meta[i].value ? opt->meta[i].value : "");
        w->nmeta++;
        if (!w->meta[i].key || !w->meta[i].value) {
            fn_parquet_writer_abort(w);
            return fn_fail(err, FN_ENOMEM, "%s: out of memory", path);
        }
    }
    /* hidden, unique temporary name in the same folder (rename stays atomic; readers of the folder skip it) */
    int arc = fn_atomic_begin(path, 0, &w->at, err);
    if (arc) {
        fn_parquet_writer_abort(w);
        return arc;
    }
    w->fd = fn_atomic_fd(w->at);
    int rc = write_all(w, "PAR1", 4, err);
    if (rc) {
        fn_parquet_writer_abort(w);
        return rc;
    }
    *out = w;
    return FN_OK;
}

int fn_parquet_writer_set_meta(fn_parquet_writer *w, const char *key, const char *value, fn_error *err)
{
    if (!w || !key || !value)
        return fn_fail(err, FN_EARG, "fn_parquet_writer_set_meta: invalid arguments");
    if (!valid_utf8((const unsigned char *)key) || !valid_utf8((const unsigned char *)value))
        return fn_fail(err, FN_EARG, "%s: metadata key or value \"%s\" is not UTF-8", w->path, key);
    char *v = dupstr(value);
    if (!v)
        return fn_fail(err, FN_ENOMEM, "%s: out of memory", w->path);
    for (int i = 0; i < w->nmeta; i++)
        if (!strcmp(w->meta[i].key, key)) {
            free((char *)w->meta[i].value);
            w->meta[i].value = v;
            return FN_OK;
        }
    fn_kv *m = realloc(w->meta, (size_t)(w->nmeta + 1) * sizeof(fn_kv));
    char *k = dupstr(key);
    if (!m || !k) {
        free(v);
        free(k);
        if (m)
            w->meta = m;
        return fn_fail(err, FN_ENOMEM, "%s: out of memory", w->path);
    }
    w->meta = m;
    w->meta[w->nmeta].key = k;
    w->meta[w->nmeta].value = v;
    w->nmeta++;
    return FN_OK;
}

/* RLE/bit-packed hybrid, RLE runs only (levels are long runs here). */
static void rle_levels(tbuf *b, const uint8_t *lv, size_t n, int bit_width)
{
    size_t i = 0;
    while (i < n) {
        size_t j = i;
        while (j < n && lv[j] == lv[i])
            j++;
        tb_varint(b, (uint64_t)(j - i) << 1);
        unsigned char v = lv[i];
        tb_bytes(b, &v, (size_t)((bit_width + 7) / 8));
        i = j;
    }
}

/* Length-prefixed (v1 data page) RLE levels. */
static void page_levels(tbuf *b, const uint8_t *lv, size_t n, int bit_width)
{
    tbuf l = {0};
    rle_levels(&l, lv, n, bit_width);
    tb_u32le(b, (uint32_t)l.n);
    tb_bytes(b, l.p, l.n);
    if (l.oom)
        b->oom = 1;
    tb_free(&l);
}

/* zlib's level for GZIP pages. 1, not zlib's default 6: on a page of 128 images' features (float32,
 * fruitnet-extract's largest column), level 1 takes 0.14 ms an image against 0.27 (60 against 30 MB/s),
 * for pages 3.4% larger (ratio 0.743 against 0.719). The pages are written by the thread that runs the
 * network, between batches, so at int8 speed level 6 cost 5% of fruitnet-extract's rate (1,024 images:
 * 164-181 against 183-186 img/s). Readers do not see the level. */
#define GZIP_LEVEL 1

/* GZIP (level GZIP_LEVEL, gzip wrapper) of a page body into a new buffer *z (free it) of *zlen bytes. */
static int gzip_page(fn_parquet_writer *w, const tbuf *body, unsigned char **z, size_t *zlen, fn_error *err)
{
    z_stream s;
    memset(&s, 0, sizeof s);
    if (deflateInit2(&s, GZIP_LEVEL, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return wfail(w, err, FN_ENOMEM, "deflateInit2 failed");
    uLong bound = deflateBound(&s, (uLong)body->n) + 32;
    unsigned char *out = malloc(bound);
    if (!out) {
        deflateEnd(&s);
        return wfail(w, err, FN_ENOMEM, "out of memory");
    }
    s.next_in = (Bytef *)body->p;
    s.avail_in = (uInt)body->n;
    s.next_out = out;
    s.avail_out = (uInt)bound;
    int zr = deflate(&s, Z_FINISH);
    *zlen = s.total_out;
    deflateEnd(&s);
    if (zr != Z_STREAM_END) {
        free(out);
        return wfail(w, err, FN_ENOMEM, "gzip compression failed");
    }
    *z = out;
    return FN_OK;
}

/* Compress (or not) and write one data page; adds to the chunk's sizes. */
static int write_page(fn_parquet_writer *w, const tbuf *body, int32_t num_values, chunk_meta *cm, fn_error *err)
{
    const unsigned char *data = body->p;
    size_t clen = body->n;
    unsigned char *z = NULL;
    if (body->n > (size_t)INT32_MAX / 2)
        return wfail(w, err, FN_ELIMIT, "data page too large");
    if (w->codec == FN_CODEC_GZIP) {
        int zrc = gzip_page(w, body, &z, &clen, err);
        if (zrc)
            return zrc;
        data = z;
    }
    tbuf h = {0};
    tb_i32(&h, PQ_PAGEHEADER_TYPE, PQ_DATA_PAGE);
    tb_i32(&h, PQ_PAGEHEADER_UNCOMPRESSED_PAGE_SIZE, (int32_t)body->n);
    tb_i32(&h, PQ_PAGEHEADER_COMPRESSED_PAGE_SIZE, (int32_t)clen);
    tb_i32(&h, PQ_PAGEHEADER_CRC, (int32_t)fn_crc32(0, data, clen)); /* CRC-32 of the page as stored (compressed) */
    tb_struct_begin(&h, PQ_PAGEHEADER_DATA_PAGE_HEADER);
    tb_i32(&h, PQ_DATAPAGEHEADER_NUM_VALUES, num_values);
    tb_i32(&h, PQ_DATAPAGEHEADER_ENCODING, PQ_ENC_PLAIN);
    tb_i32(&h, PQ_DATAPAGEHEADER_DEFINITION_LEVEL_ENCODING, PQ_ENC_RLE);
    tb_i32(&h, PQ_DATAPAGEHEADER_REPETITION_LEVEL_ENCODING, PQ_ENC_RLE);
    tb_struct_end(&h);
    tb_struct_end(&h);
    int rc = h.oom ? wfail(w, err, FN_ENOMEM, "out of memory") : FN_OK;
    if (!rc)
        rc = write_all(w, h.p, h.n, err);
    if (!rc)
        rc = write_all(w, data, clen, err);
    cm->uncompressed += (int64_t)(h.n + body->n);
    cm->compressed += (int64_t)(h.n + clen);
    cm->num_values += num_values;
    tb_free(&h);
    free(z);
    return rc;
}

/* Unsigned byte-wise order (the Parquet order of BYTE_ARRAY / STRING). */
static int bytes_cmp(const char *a, size_t al, const char *b, size_t bl)
{
    int c = memcmp(a, b, al < bl ? al : bl);
    return c ? c : (al > bl) - (al < bl);
}

/* A string column: pages of ~PAGE_TARGET bytes; def level 1 for every (non-null) value. */
static int write_string_chunk(fn_parquet_writer *w, char **col, chunk_meta *cm, fn_error *err)
{
    int rc = FN_OK;
    cm->data_page_offset = w->offset;
    for (int r0 = 0; r0 < w->nrows && !rc;) {
        int r1 = r0;
        size_t bytes = 0;
        while (r1 < w->nrows && (r1 == r0 || bytes < PAGE_TARGET))
            bytes += 4 + strlen(col[r1++]);
        uint8_t *def = malloc((size_t)(r1 - r0));
        tbuf b = {0};
        if (!def)
            return wfail(w, err, FN_ENOMEM, "out of memory");
        memset(def, 1, (size_t)(r1 - r0));
        page_levels(&b, def, (size_t)(r1 - r0), 1);
        for (int r = r0; r < r1; r++) {
            size_t n = strlen(col[r]);
            tb_u32le(&b, (uint32_t)n);
            tb_bytes(&b, col[r], n);
            if (n > STAT_MAX)
                cm->no_minmax = 1;
            if (!cm->min || bytes_cmp(col[r], n, cm->min, cm->min_len) < 0)
                cm->min = col[r], cm->min_len = n;
            if (!cm->max || bytes_cmp(col[r], n, cm->max, cm->max_len) > 0)
                cm->max = col[r], cm->max_len = n;
        }
        rc = b.oom ? wfail(w, err, FN_ENOMEM, "out of memory") : write_page(w, &b, r1 - r0, cm, err);
        tb_free(&b);
        free(def);
        r0 = r1;
    }
    return rc;
}

/* An extra FLOAT column: def level 1 for every (non-null) value, PLAIN floats. No min/max. */
static int write_float_chunk(fn_parquet_writer *w, int x, chunk_meta *cm, fn_error *err)
{
    int rc = FN_OK;
    cm->data_page_offset = w->offset;
    for (int r0 = 0; r0 < w->nrows && !rc;) {
        int r1 = r0 + (int)(PAGE_TARGET / 4) < w->nrows ? r0 + (int)(PAGE_TARGET / 4) : w->nrows;
        uint8_t *def = malloc((size_t)(r1 - r0));
        tbuf b = {0};
        if (!def)
            return wfail(w, err, FN_ENOMEM, "out of memory");
        memset(def, 1, (size_t)(r1 - r0));
        page_levels(&b, def, (size_t)(r1 - r0), 1);
        for (int r = r0; r < r1; r++)
            tb_bytes(&b, &w->xv[(size_t)r * w->nextra + x].f, sizeof(float));
        rc = b.oom ? wfail(w, err, FN_ENOMEM, "out of memory") : write_page(w, &b, r1 - r0, cm, err);
        tb_free(&b);
        free(def);
        r0 = r1;
    }
    return rc;
}

/* An extra STRING column: the values gathered, then as path and label (min/max not kept). */
static int write_extra_chunk(fn_parquet_writer *w, int x, chunk_meta *cm, fn_error *err)
{
    if (w->extra[x].type == FN_PQ_FLOAT)
        return write_float_chunk(w, x, cm, err);
    char **col = malloc((size_t)w->nrows * sizeof *col);
    if (!col)
        return wfail(w, err, FN_ENOMEM, "out of memory");
    for (int r = 0; r < w->nrows; r++)
        col[r] = (char *)w->xv[(size_t)r * w->nextra + x].s;
    int rc = write_string_chunk(w, col, cm, err);
    free(col);
    cm->min = cm->max = NULL;
    cm->no_minmax = 1;
    return rc;
}

/* The list column: rep levels (bit width 1), def levels (bit width 2:
 * 0 null list, 1 empty list, 2 null element, 3 value), then the floats. */
static int write_list_chunk(fn_parquet_writer *w, chunk_meta *cm, fn_error *err)
{
    int rc = FN_OK;
    cm->data_page_offset = w->offset;
    for (int r0 = 0; r0 < w->nrows && !rc;) {
        int r1 = r0;
        size_t nlev = 0, bytes = 0;
        while (r1 < w->nrows && (r1 == r0 || bytes < PAGE_TARGET)) {
            nlev += w->lens[r1] > 0 ? (size_t)w->lens[r1] : 1;
            bytes += (size_t)w->lens[r1++] * sizeof(float);
        }
        if (nlev > INT32_MAX)
            return wfail(w, err, FN_ELIMIT, "data page has too many values");
        uint8_t *rep = malloc(nlev), *def = malloc(nlev);
        tbuf b = {0};
        if (!rep || !def) {
            free(rep), free(def);
            return wfail(w, err, FN_ENOMEM, "out of memory");
        }
        size_t k = 0;
        for (int r = r0; r < r1; r++) {
            if (w->lens[r] == 0) { /* empty list */
                rep[k] = 0, def[k] = 1, k++;
                cm->null_count++; /* a leaf entry without a value counts as a null (as parquet-mr counts) */
                continue;
            }
            for (int i = 0; i < w->lens[r]; i++)
                rep[k] = i ? 1 : 0, def[k] = 3, k++;
        }
        page_levels(&b, rep, nlev, 1);
        page_levels(&b, def, nlev, 2);
        for (int r = r0; r < r1; r++)
            tb_bytes(&b, w->vecs[r], (size_t)w->lens[r] * sizeof(float)); /* x86-64: little endian, as PLAIN */
        rc = b.oom ? wfail(w, err, FN_ENOMEM, "out of memory") : write_page(w, &b, (int32_t)nlev, cm, err);
        tb_free(&b);
        free(rep);
        free(def);
        r0 = r1;
    }
    return rc;
}

static void free_rows(fn_parquet_writer *w)
{
    for (int r = 0; r < w->nrows; r++) {
        free(w->paths[r]), free(w->labels[r]), free(w->vecs[r]);
        w->paths[r] = w->labels[r] = NULL;
        w->vecs[r] = NULL;
        for (int x = 0; x < w->nextra; x++) {
            free((char *)w->xv[(size_t)r * w->nextra + x].s);
            w->xv[(size_t)r * w->nextra + x].s = NULL;
        }
    }
    w->nrows = 0;
}

static int flush_group(fn_parquet_writer *w, fn_error *err)
{
    if (w->nrows == 0)
        return FN_OK;
    if (w->ngroups == w->cap_groups) {
        if (w->cap_groups > INT32_MAX / 4)
            return wfail(w, err, FN_ELIMIT, "too many row groups");
        int cap = w->cap_groups ? 2 * w->cap_groups : 8;
        group_meta *g = realloc(w->groups, (size_t)cap * sizeof *g);
        if (!g)
            return wfail(w, err, FN_ENOMEM, "out of memory");
        w->groups = g, w->cap_groups = cap;
    }
    group_meta *g = &w->groups[w->ngroups];
    memset(g, 0, sizeof *g);
    g->rows = w->nrows;
    g->file_offset = w->offset;
    int rc = write_string_chunk(w, w->paths, &g->col[0], err);
    if (!rc)
        rc = write_string_chunk(w, w->labels, &g->col[1], err);
    if (!rc)
        rc = write_list_chunk(w, &g->col[2], err);
    for (int x = 0; x < w->nextra && !rc; x++)
        rc = write_extra_chunk(w, x, &g->col[3 + x], err);
    for (int c = 0; c < 2 && !rc; c++) { /* keep min/max for the footer: the rows are freed below */
        chunk_meta *cm = &g->col[c];
        if (cm->no_minmax || !cm->min)
            continue;
        g->minmax[c][0] = malloc(cm->min_len + 1);
        g->minmax[c][1] = malloc(cm->max_len + 1);
        if (!g->minmax[c][0] || !g->minmax[c][1]) {
            free(g->minmax[c][0]), free(g->minmax[c][1]);
            g->minmax[c][0] = g->minmax[c][1] = NULL;
            cm->no_minmax = 1;
            continue;
        }
        memcpy(g->minmax[c][0], cm->min, cm->min_len + 1);
        memcpy(g->minmax[c][1], cm->max, cm->max_len + 1);
        g->minmax_len[c][0] = cm->min_len, g->minmax_len[c][1] = cm->max_len;
    }
    for (int c = 0; c < 3 + w->nextra; c++) {
        g->col[c].min = g->col[c].max = NULL;
        g->total_bytes += g->col[c].uncompressed;
    }
    w->total_rows += w->nrows;
    free_rows(w);
    if (!rc)
        w->ngroups++;
    else
        for (int c = 0; c < 2; c++)
            free(g->minmax[c][0]), free(g->minmax[c][1]);
    return rc;
}

int fn_parquet_writer_add(fn_parquet_writer *w, const char *path, const char *label, const float *vec, int n,
                          fn_error *err)
{
    return fn_parquet_writer_add_ex(w, path, label, vec, n, NULL, err);
}

int fn_parquet_writer_add_ex(fn_parquet_writer *w, const char *path, const char *label, const float *vec, int n,
                             const fn_parquet_value *extra, fn_error *err)
{
    if (!w || !path || !label || n < 0 || (n > 0 && !vec))
        return fn_fail(err, FN_EARG, "fn_parquet_writer_add: invalid arguments");
    if (w->nextra && !extra)
        return fn_fail(err, FN_EARG, "%s: the writer has %d extra columns: add rows with fn_parquet_writer_add_ex",
                       w->path, w->nextra);
    for (int x = 0; x < w->nextra; x++)
        if (w->extra[x].type == FN_PQ_STRING &&
            (!extra[x].s || strlen(extra[x].s) > MAX_STRING || !valid_utf8((const unsigned char *)extra[x].s)))
            return fn_fail(err, FN_EARG, "%s: row %lld: column %s: missing, too long or not valid UTF-8", w->path,
                           (long long)(w->total_rows + w->nrows), w->extra[x].name);
    if (w->failed)
        return fn_fail(err, FN_EIO, "%s: the writer failed earlier; abort it", w->path);
    if (strlen(path) > MAX_STRING || strlen(label) > MAX_STRING || n > MAX_VECTOR)
        return fn_fail(err, FN_ELIMIT, "%s: row too large (strings up to %zu bytes, vectors up to %d floats)", w->path,
                       MAX_STRING, MAX_VECTOR);
    if (!valid_utf8((const unsigned char *)path) || !valid_utf8((const unsigned char *)label))
        return fn_fail(err, FN_EARG, "%s: row %lld: path or label is not valid UTF-8 (Parquet STRING)", w->path,
                       (long long)(w->total_rows + w->nrows));
    if (w->nrows == w->cap_rows) { /* grow the row buffers up to rows_per_group */
        int cap = w->cap_rows ? 2 * w->cap_rows : 64;
        if (cap > w->rows_per_group)
            cap = w->rows_per_group;
        char **p = realloc(w->paths, (size_t)cap * sizeof *p);
        if (p)
            w->paths = p;
        char **l = p ? realloc(w->labels, (size_t)cap * sizeof *l) : NULL;
        if (l)
            w->labels = l;
        float **v = l ? realloc(w->vecs, (size_t)cap * sizeof *v) : NULL;
        if (v)
            w->vecs = v;
        int *ln = v ? realloc(w->lens, (size_t)cap * sizeof *ln) : NULL;
        if (ln)
            w->lens = ln;
        fn_parquet_value *xv = ln && w->nextra ? realloc(w->xv, (size_t)cap * w->nextra * sizeof *xv) : NULL;
        if (!ln || (w->nextra && !xv))
            return fn_fail(err, FN_ENOMEM, "%s: out of memory", w->path);
        if (xv)
            w->xv = xv;
        w->cap_rows = cap;
    }
    int r = w->nrows;
    w->paths[r] = dupstr(path);
    w->labels[r] = dupstr(label);
    w->vecs[r] = malloc((size_t)n * sizeof(float) + 1);
    if (!w->paths[r] || !w->labels[r] || !w->vecs[r]) {
        free(w->paths[r]), free(w->labels[r]), free(w->vecs[r]);
        return fn_fail(err, FN_ENOMEM, "%s: out of memory", w->path);
    }
    for (int x = 0; x < w->nextra; x++) {
        fn_parquet_value *v = &w->xv[(size_t)r * w->nextra + x];
        v->f = w->extra[x].type == FN_PQ_FLOAT ? extra[x].f : 0;
        v->s = w->extra[x].type == FN_PQ_STRING ? dupstr(extra[x].s) : NULL;
        if (w->extra[x].type == FN_PQ_STRING && !v->s) {
            for (int q = 0; q < x; q++)
                free((char *)w->xv[(size_t)r * w->nextra + q].s), w->xv[(size_t)r * w->nextra + q].s = NULL;
            free(w->paths[r]), free(w->labels[r]), free(w->vecs[r]);
            return fn_fail(err, FN_ENOMEM, "%s: out of memory", w->path);
        }
    }
    if (n)
        memcpy(w->vecs[r], vec, (size_t)n * sizeof(float));
    w->lens[r] = n;
    w->nrows++;
    if (w->nrows == w->rows_per_group)
        return flush_group(w, err);
    return FN_OK;
}

static void schema_element(tbuf *t, const char *name, int type, int rep, int nchildren, int ct, int logical)
{
    tb_elem_struct_begin(t);
    if (type >= 0)
        tb_i32(t, PQ_SCHEMAELEMENT_TYPE, type);
    tb_i32(t, PQ_SCHEMAELEMENT_REPETITION_TYPE, rep);
    tb_str(t, PQ_SCHEMAELEMENT_NAME, name);
    if (nchildren > 0)
        tb_i32(t, PQ_SCHEMAELEMENT_NUM_CHILDREN, nchildren);
    if (ct >= 0)
        tb_i32(t, PQ_SCHEMAELEMENT_CONVERTED_TYPE, ct);
    if (logical > 0) {
        tb_struct_begin(t, PQ_SCHEMAELEMENT_LOGICALTYPE); /* union */
        tb_struct_begin(t, (int16_t)logical);             /* PQ_LOGICALTYPE_STRING or _LIST: empty structs */
        tb_struct_end(t);
        tb_struct_end(t);
    }
    tb_struct_end(t);
}

static void column_chunk(tbuf *t, const chunk_meta *cm, const char *minv, size_t minl, const char *maxv, size_t maxl,
                         int type, const char *p0, const char *p1, const char *p2, int codec)
{
    tb_elem_struct_begin(t);
    /* file_offset: deprecated; written as parquet-mr writes it */
    tb_i64(t, PQ_COLUMNCHUNK_FILE_OFFSET, cm->data_page_offset + cm->compressed);
    tb_struct_begin(t, PQ_COLUMNCHUNK_META_DATA);
    tb_i32(t, PQ_COLUMNMETADATA_TYPE, type);
    tb_list(t, PQ_COLUMNMETADATA_ENCODINGS, TT_I32, 2);
    tb_zz32(t, PQ_ENC_PLAIN);
    tb_zz32(t, PQ_ENC_RLE);
    int np = p2 ? 3 : 1;
    tb_list(t, PQ_COLUMNMETADATA_PATH_IN_SCHEMA, TT_BINARY, (uint32_t)np);
    tb_bare_bin(t, p0, strlen(p0));
    if (p2) {
        tb_bare_bin(t, p1, strlen(p1));
        tb_bare_bin(t, p2, strlen(p2));
    }
    tb_i32(t, PQ_COLUMNMETADATA_CODEC, codec);
    tb_i64(t, PQ_COLUMNMETADATA_NUM_VALUES, cm->num_values);
    tb_i64(t, PQ_COLUMNMETADATA_TOTAL_UNCOMPRESSED_SIZE, cm->uncompressed);
    tb_i64(t, PQ_COLUMNMETADATA_TOTAL_COMPRESSED_SIZE, cm->compressed);
    tb_i64(t, PQ_COLUMNMETADATA_DATA_PAGE_OFFSET, cm->data_page_offset);
    tb_struct_begin(t, PQ_COLUMNMETADATA_STATISTICS);
    tb_i64(t, PQ_STATISTICS_NULL_COUNT, cm->null_count);
    if (minv && maxv) {
        tb_bin(t, PQ_STATISTICS_MAX_VALUE, maxv, maxl);
        tb_bin(t, PQ_STATISTICS_MIN_VALUE, minv, minl);
    }
    tb_struct_end(t);
    tb_struct_end(t);
    tb_struct_end(t);
}

/* FileMetaData.schema: the root, path, label, and the 3-level LIST<FLOAT> column */
static void write_schema(tbuf *t, const char *list_column, const fn_parquet_column *extra, int nextra)
{
    tb_list(t, PQ_FILEMETADATA_SCHEMA, TT_STRUCT, 6 + (uint32_t)nextra);
    schema_element(t, "schema", -1, PQ_REQUIRED, 3 + nextra, -1, 0);
    schema_element(t, "path", PQ_BYTE_ARRAY, PQ_OPTIONAL, 0, PQ_CT_UTF8, PQ_LOGICALTYPE_STRING);
    schema_element(t, "label", PQ_BYTE_ARRAY, PQ_OPTIONAL, 0, PQ_CT_UTF8, PQ_LOGICALTYPE_STRING);
    schema_element(t, list_column, -1, PQ_OPTIONAL, 1, PQ_CT_LIST, PQ_LOGICALTYPE_LIST);
    schema_element(t, "list", -1, PQ_REPEATED, 1, -1, 0);
    schema_element(t, "element", PQ_FLOAT, PQ_OPTIONAL, 0, -1, 0);
    for (int x = 0; x < nextra; x++) {
        if (extra[x].type == FN_PQ_FLOAT)
            schema_element(t, extra[x].name, PQ_FLOAT, PQ_OPTIONAL, 0, -1, 0);
        else
            schema_element(t, extra[x].name, PQ_BYTE_ARRAY, PQ_OPTIONAL, 0, PQ_CT_UTF8, PQ_LOGICALTYPE_STRING);
    }
}

/* One RowGroup element of FileMetaData.row_groups. */
static void write_row_group(tbuf *t, const group_meta *gm, int g, const char *list_column, int codec,
                            const fn_parquet_column *extra, int nextra)
{
    tb_elem_struct_begin(t);
    tb_list(t, PQ_ROWGROUP_COLUMNS, TT_STRUCT, 3 + (uint32_t)nextra);
    for (int c = 0; c < 2; c++)
        column_chunk(t, &gm->col[c], gm->minmax[c][0], gm->minmax_len[c][0], gm->minmax[c][1], gm->minmax_len[c][1],
                     PQ_BYTE_ARRAY, c ? "label" : "path", NULL, NULL, codec);
    column_chunk(t, &gm->col[2], NULL, 0, NULL, 0, PQ_FLOAT, list_column, "list", "element", codec);
    int64_t compressed = gm->col[0].compressed + gm->col[1].compressed + gm->col[2].compressed;
    for (int x = 0; x < nextra; x++) {
        column_chunk(t, &gm->col[3 + x], NULL, 0, NULL, 0, extra[x].type == FN_PQ_FLOAT ? PQ_FLOAT : PQ_BYTE_ARRAY,
                     extra[x].name, NULL, NULL, codec);
        compressed += gm->col[3 + x].compressed;
    }
    tb_i64(t, PQ_ROWGROUP_TOTAL_BYTE_SIZE, gm->total_bytes);
    tb_i64(t, PQ_ROWGROUP_NUM_ROWS, gm->rows);
    tb_i64(t, PQ_ROWGROUP_FILE_OFFSET, gm->file_offset);
    tb_i64(t, PQ_ROWGROUP_TOTAL_COMPRESSED_SIZE, compressed);
    if (g <= INT16_MAX) {
        tb_field(t, PQ_ROWGROUP_ORDINAL, TT_I16);
        tb_zz32(t, g);
    }
    tb_struct_end(t);
}

/* FileMetaData.key_value_metadata */
static void write_key_values(tbuf *t, const fn_kv *meta, int nmeta)
{
    tb_list(t, PQ_FILEMETADATA_KEY_VALUE_METADATA, TT_STRUCT, (uint32_t)nmeta);
    for (int i = 0; i < nmeta; i++) {
        tb_elem_struct_begin(t);
        tb_str(t, PQ_KEYVALUE_KEY, meta[i].key);
        tb_str(t, PQ_KEYVALUE_VALUE, meta[i].value);
        tb_struct_end(t);
    }
}

/* FileMetaData.column_orders: TYPE_ORDER for every leaf (min/max are meaningful) */
static void write_column_orders(tbuf *t, int ncols)
{
    tb_list(t, PQ_FILEMETADATA_COLUMN_ORDERS, TT_STRUCT, (uint32_t)ncols);
    for (int c = 0; c < ncols; c++) {
        tb_elem_struct_begin(t);
        tb_struct_begin(t, PQ_COLUMNORDER_TYPE_ORDER);
        tb_struct_end(t);
        tb_struct_end(t);
    }
}

static int write_footer(fn_parquet_writer *w, fn_error *err)
{
    int codec = w->codec == FN_CODEC_GZIP ? PQ_GZIP : PQ_UNCOMPRESSED;
    tbuf t = {0};
    tb_i32(&t, PQ_FILEMETADATA_VERSION, 1);
    write_schema(&t, w->list_column, w->extra, w->nextra);
    tb_i64(&t, PQ_FILEMETADATA_NUM_ROWS, w->total_rows);
    tb_list(&t, PQ_FILEMETADATA_ROW_GROUPS, TT_STRUCT, (uint32_t)w->ngroups);
    for (int g = 0; g < w->ngroups; g++)
        write_row_group(&t, &w->groups[g], g, w->list_column, codec, w->extra, w->nextra);
    write_key_values(&t, w->meta, w->nmeta);
    tb_str(&t, PQ_FILEMETADATA_CREATED_BY, "fruitnet version " FRUITNET_VERSION " (build " FRUITNET_BUILD ")");
    write_column_orders(&t, 3 + w->nextra);
    tb_struct_end(&t);
    int rc = FN_OK;
    if (t.oom || t.n > (size_t)UINT32_MAX)
        rc = wfail(w, err, FN_ENOMEM, "out of memory (footer)");
    if (!rc)
        rc = write_all(w, t.p, t.n, err);
    if (!rc) {
        unsigned char tail[8] = {(unsigned char)t.n, (unsigned char)(t.n >> 8), (unsigned char)(t.n >> 16),
                                 (unsigned char)(t.n >> 24), 'P', 'A', 'R', '1'};
        rc = write_all(w, tail, 8, err);
    }
    tb_free(&t);
    return rc;
}

int fn_parquet_writer_close(fn_parquet_writer *w, fn_error *err)
{
    if (!w)
        return fn_fail(err, FN_EARG, "fn_parquet_writer_close: NULL writer");
    int rc = w->failed ? fn_fail(err, FN_EIO, "%s: the writer failed earlier; nothing was written", w->path)
                       : flush_group(w, err);
    if (!rc)
        rc = write_footer(w, err);
    if (!rc) {
        fn_atomic *at = w->at;
        w->at = NULL, w->fd = -1;
        rc = fn_atomic_commit(at, err); /* fsync, rename into place, fsync the folder */
    }
    fn_parquet_writer_abort(w);
    return rc;
}

void fn_parquet_writer_abort(fn_parquet_writer *w)
{
    if (!w)
        return;
    fn_atomic_abort(w->at); /* closes and removes the temporary file */
    free_rows(w);
    for (int i = 0; i < w->nmeta; i++)
        free((char *)w->meta[i].key), free((char *)w->meta[i].value);
    for (int g = 0; g < w->ngroups; g++)
        for (int c = 0; c < 2; c++)
            free(w->groups[g].minmax[c][0]), free(w->groups[g].minmax[c][1]);
    free(w->meta);
    free(w->paths), free(w->labels), free(w->vecs), free(w->lens), free(w->xv);
    for (int x = 0; x < w->nextra; x++)
        free((char *)w->extra[x].name);
    free(w->groups);
    free(w->path);
    free(w->list_column);
    free(w);
}
