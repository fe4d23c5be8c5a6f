/*
 * parquet_write.c — a minimal Parquet writer for fruitnet's rows:
 *   required binary path (STRING); required binary label (STRING);
 *   optional group <list_column> (LIST) { repeated group list { required float element; } }
 * Spark reads it as (string, string, array<float>), pandas as a list column,
 * DuckDB as (VARCHAR, VARCHAR, FLOAT[]). Data pages v1, PLAIN values,
 * RLE levels, UNCOMPRESSED or GZIP, page CRC32 filled in. Rows are buffered
 * up to rows_per_group, then one row group is written, so memory stays flat.
 * The file is written as <dir>/.<name>.tmp.<pid> and renamed on close.
 */
#include "internal.h"
#include "parquet.h"
#include "thrift.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#define ROWS_PER_PAGE 128

typedef struct chunk_meta {
    int64_t num_values, uncompressed, compressed, data_page_offset;
} chunk_meta;

typedef struct group_meta {
    chunk_meta col[3];
    int64_t rows, total_bytes, file_offset;
} group_meta;

struct fn_parquet_writer {
    char *path, *tmp;
    int fd;
    int64_t offset;
    char *list_column;
    fn_codec codec;
    int rows_per_group;
    fn_kv *meta;
    int nmeta;
    /* buffered rows of the current group */
    int nrows;
    char **paths, **labels;
    float **vecs;
    int *lens;
    /* written groups */
    group_meta *groups;
    int ngroups, cap_groups;
    int64_t total_rows;
    int failed;
};

static int wfail(fn_parquet_writer *w, fn_error *err, int code, const char *what)
{
    w->failed = 1;
    return fn_fail(err, code, "%s: %s%s%s", w->path, what, code == FN_EIO ? ": " : "", code == FN_EIO ? strerror(errno) : "");
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

int fn_parquet_writer_open(const char *path, const fn_parquet_options *opt, fn_parquet_writer **out, fn_error *err)
{
    if (!path || !opt || !out || !opt->list_column || !opt->list_column[0])
        return fn_fail(err, FN_EARG, "fn_parquet_writer_open: path, options and list_column are required");
    if (opt->codec != FN_CODEC_UNCOMPRESSED && opt->codec != FN_CODEC_GZIP)
        return fn_fail(err, FN_EUNSUPPORTED, "%s: codec %d is not supported (UNCOMPRESSED or GZIP)", path, opt->codec);
    if (opt->nmeta < 0 || (opt->nmeta > 0 && !opt->meta) || opt->rows_per_group < 0)
        return fn_fail(err, FN_EARG, "%s: invalid metadata or rows_per_group", path);
    *out = NULL;
    fn_parquet_writer *w = calloc(1, sizeof *w);
    if (!w)
        return fn_fail(err, FN_ENOMEM, "out of memory");
    w->fd = -1;
    w->codec = opt->codec;
    w->rows_per_group = opt->rows_per_group ? opt->rows_per_group : 1024;
    w->path = dupstr(path);
    w->list_column = dupstr(opt->list_column);
    size_t tl = strlen(path) + 32;
    w->tmp = malloc(tl);
    w->paths = calloc((size_t)w->rows_per_group, sizeof(char *));
    w->labels = calloc((size_t)w->rows_per_group, sizeof(char *));
    w->vecs = calloc((size_t)w->rows_per_group, sizeof(float *));
    w->lens = calloc((size_t)w->rows_per_group, sizeof(int));
    w->meta = calloc((size_t)opt->nmeta + 1, sizeof(fn_kv));
    if (!w->path || !w->list_column || !w->tmp || !w->paths || !w->labels || !w->vecs || !w->lens || !w->meta) {
        fn_parquet_writer_abort(w);
        return fn_fail(err, FN_ENOMEM, "out of memory");
    }
    for (int i = 0; i < opt->nmeta; i++) {
        w->meta[i].key = dupstr(opt->meta[i].key ? opt->meta[i].key : "");
        w->meta[i].value = dupstr(opt->meta[i].value ? opt->meta[i].value : "");
        w->nmeta++;
        if (!w->meta[i].key || !w->meta[i].value) {
            fn_parquet_writer_abort(w);
            return fn_fail(err, FN_ENOMEM, "out of memory");
        }
    }
    /* hidden temporary name in the same folder: readers of the folder skip it */
    const char *slash = strrchr(path, '/');
    int dirlen = slash ? (int)(slash - path + 1) : 0;
    snprintf(w->tmp, tl, "%.*s.%s.tmp.%d", dirlen, path, slash ? slash + 1 : path, (int)getpid());
    w->fd = open(w->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (w->fd < 0) {
        int e = errno;
        fn_fail(err, FN_EIO, "%s: cannot create: %s", path, strerror(e));
        fn_parquet_writer_abort(w);
        return FN_EIO;
    }
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
    char *v = dupstr(value);
    if (!v)
        return fn_fail(err, FN_ENOMEM, "out of memory");
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
        return fn_fail(err, FN_ENOMEM, "out of memory");
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

/* Compress (or not) and write one data page; adds to the chunk's sizes. */
static int write_page(fn_parquet_writer *w, const tbuf *body, int32_t num_values, chunk_meta *cm, fn_error *err)
{
    const unsigned char *data = body->p;
    size_t clen = body->n;
    unsigned char *z = NULL;
    if (body->n > (size_t)INT32_MAX)
        return wfail(w, err, FN_ELIMIT, "page too large");
    if (w->codec == FN_CODEC_GZIP) {
        z_stream s;
        memset(&s, 0, sizeof s);
        if (deflateInit2(&s, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
            return wfail(w, err, FN_ENOMEM, "deflateInit failed");
        uLong bound = deflateBound(&s, (uLong)body->n) + 32;
        z = malloc(bound);
        if (!z) {
            deflateEnd(&s);
            return wfail(w, err, FN_ENOMEM, "out of memory");
        }
        s.next_in = (Bytef *)body->p;
        s.avail_in = (uInt)body->n;
        s.next_out = z;
        s.avail_out = (uInt)bound;
        int zr = deflate(&s, Z_FINISH);
        clen = s.total_out;
        deflateEnd(&s);
        if (zr != Z_STREAM_END) {
            free(z);
            return wfail(w, err, FN_ENOMEM, "gzip compression failed");
        }
        data = z;
    }
    tbuf h = {0};
    tb_i32(&h, 1, PQ_DATA_PAGE);
    tb_i32(&h, 2, (int32_t)body->n);
    tb_i32(&h, 3, (int32_t)clen);
    tb_i32(&h, 4, (int32_t)fn_crc32(0, data, clen));
    tb_struct_begin(&h, 5); /* DataPageHeader */
    tb_i32(&h, 1, num_values);
    tb_i32(&h, 2, PQ_ENC_PLAIN);
    tb_i32(&h, 3, PQ_ENC_RLE);
    tb_i32(&h, 4, PQ_ENC_RLE);
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

static int flush_group(fn_parquet_writer *w, fn_error *err)
{
    if (w->nrows == 0)
        return FN_OK;
    if (w->ngroups == w->cap_groups) {
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
    int rc = FN_OK;
    /* string columns */
    for (int c = 0; c < 2 && !rc; c++) {
        char **col = c == 0 ? w->paths : w->labels;
        g->col[c].data_page_offset = w->offset;
        for (int r0 = 0; r0 < w->nrows && !rc; r0 += ROWS_PER_PAGE) {
            int r1 = r0 + ROWS_PER_PAGE < w->nrows ? r0 + ROWS_PER_PAGE : w->nrows;
            tbuf b = {0};
            for (int r = r0; r < r1; r++) {
                size_t n = strlen(col[r]);
                tb_u32le(&b, (uint32_t)n);
                tb_bytes(&b, col[r], n);
            }
            rc = b.oom ? wfail(w, err, FN_ENOMEM, "out of memory") : write_page(w, &b, r1 - r0, &g->col[c], err);
            tb_free(&b);
        }
    }
    /* list column: rep levels (bit width 1), def levels (bit width 2), then values */
    g->col[2].data_page_offset = w->offset;
    for (int r0 = 0; r0 < w->nrows && !rc; r0 += ROWS_PER_PAGE) {
        int r1 = r0 + ROWS_PER_PAGE < w->nrows ? r0 + ROWS_PER_PAGE : w->nrows;
        size_t nlev = 0;
        for (int r = r0; r < r1; r++)
            nlev += w->lens[r] > 0 ? (size_t)w->lens[r] : 1;
        uint8_t *rep = malloc(nlev + 1), *def = malloc(nlev + 1);
        tbuf b = {0}, lv = {0};
        if (!rep || !def) {
            free(rep), free(def);
            rc = wfail(w, err, FN_ENOMEM, "out of memory");
            break;
        }
        size_t k = 0;
        for (int r = r0; r < r1; r++) {
            if (w->lens[r] == 0) { /* empty list: def 1 */
                rep[k] = 0, def[k] = 1, k++;
                continue;
            }
            for (int i = 0; i < w->lens[r]; i++)
                rep[k] = i ? 1 : 0, def[k] = 2, k++;
        }
        rle_levels(&lv, rep, nlev, 1);
        tb_u32le(&b, (uint32_t)lv.n);
        tb_bytes(&b, lv.p, lv.n);
        lv.n = 0;
        rle_levels(&lv, def, nlev, 2);
        tb_u32le(&b, (uint32_t)lv.n);
        tb_bytes(&b, lv.p, lv.n);
        for (int r = r0; r < r1; r++)
            tb_bytes(&b, w->vecs[r], (size_t)w->lens[r] * sizeof(float)); /* x86-64: little endian */
        rc = (b.oom || lv.oom) ? wfail(w, err, FN_ENOMEM, "out of memory") : write_page(w, &b, (int32_t)nlev, &g->col[2], err);
        tb_free(&b);
        tb_free(&lv);
        free(rep);
        free(def);
    }
    for (int c = 0; c < 3; c++)
        g->total_bytes += g->col[c].uncompressed;
    for (int r = 0; r < w->nrows; r++) {
        free(w->paths[r]), free(w->labels[r]), free(w->vecs[r]);
        w->paths[r] = w->labels[r] = NULL;
        w->vecs[r] = NULL;
    }
    w->total_rows += w->nrows;
    w->nrows = 0;
    if (!rc)
        w->ngroups++;
    return rc;
}

int fn_parquet_writer_add(fn_parquet_writer *w, const char *path, const char *label, const float *vec, int n,
                          fn_error *err)
{
    if (!w || !path || !label || n < 0 || (n > 0 && !vec))
        return fn_fail(err, FN_EARG, "fn_parquet_writer_add: invalid arguments");
    if (w->failed)
        return fn_fail(err, FN_EIO, "%s: writer is in a failed state", w->path);
    if (strlen(path) > (1u << 24) || strlen(label) > (1u << 24) || n > (1 << 24))
        return fn_fail(err, FN_ELIMIT, "%s: row too large", w->path);
    int r = w->nrows;
    w->paths[r] = dupstr(path);
    w->labels[r] = dupstr(label);
    w->vecs[r] = malloc((size_t)n * sizeof(float) + 1);
    if (!w->paths[r] || !w->labels[r] || !w->vecs[r]) {
        free(w->paths[r]), free(w->labels[r]), free(w->vecs[r]);
        w->paths[r] = w->labels[r] = NULL;
        w->vecs[r] = NULL;
        return fn_fail(err, FN_ENOMEM, "out of memory");
    }
    if (n)
        memcpy(w->vecs[r], vec, (size_t)n * sizeof(float));
    w->lens[r] = n;
    w->nrows++;
    if (w->nrows == w->rows_per_group)
        return flush_group(w, err);
    return FN_OK;
}

static void schema_leaf(tbuf *t, const char *name, int type, int rep, int ct, int logical_string)
{
    tb_elem_struct_begin(t);
    tb_i32(t, 1, type);
    tb_i32(t, 3, rep);
    tb_str(t, 4, name);
    if (ct >= 0)
        tb_i32(t, 6, ct);
    if (logical_string) {
        tb_struct_begin(t, 10);  /* LogicalType */
        tb_struct_begin(t, 1);   /* STRING */
        tb_struct_end(t);
        tb_struct_end(t);
    }
    tb_struct_end(t);
}

static void column_chunk(tbuf *t, const chunk_meta *cm, int type, const char *p0, const char *p1, const char *p2,
                         int codec)
{
    tb_elem_struct_begin(t);
    tb_i64(t, 2, cm->data_page_offset + cm->compressed); /* file_offset (deprecated; as parquet-mr writes) */
    tb_struct_begin(t, 3);
    tb_i32(t, 1, type);
    tb_list(t, 2, TT_I32, 2);
    tb_zz32(t, PQ_ENC_PLAIN);
    tb_zz32(t, PQ_ENC_RLE);
    int np = p2 ? 3 : 1;
    tb_list(t, 3, TT_BINARY, (uint32_t)np);
    tb_bare_bin(t, p0, strlen(p0));
    if (p2) {
        tb_bare_bin(t, p1, strlen(p1));
        tb_bare_bin(t, p2, strlen(p2));
    }
    tb_i32(t, 4, codec);
    tb_i64(t, 5, cm->num_values);
    tb_i64(t, 6, cm->uncompressed);
    tb_i64(t, 7, cm->compressed);
    tb_i64(t, 9, cm->data_page_offset);
    tb_struct_end(t);
    tb_struct_end(t);
}

int fn_parquet_writer_close(fn_parquet_writer *w, fn_error *err)
{
    if (!w)
        return fn_fail(err, FN_EARG, "fn_parquet_writer_close: NULL writer");
    int rc = w->failed ? fn_fail(err, FN_EIO, "%s: writer is in a failed state", w->path) : flush_group(w, err);
    tbuf t = {0};
    if (!rc) {
        int codec = w->codec == FN_CODEC_GZIP ? PQ_GZIP : PQ_UNCOMPRESSED;
        tb_i32(&t, 1, 1);
        tb_list(&t, 2, TT_STRUCT, 6);
        tb_elem_struct_begin(&t); /* root */
        tb_str(&t, 4, "schema");
        tb_i32(&t, 5, 3);
        tb_struct_end(&t);
        schema_leaf(&t, "path", PQ_BYTE_ARRAY, PQ_REQUIRED, PQ_CT_UTF8, 1);
        schema_leaf(&t, "label", PQ_BYTE_ARRAY, PQ_REQUIRED, PQ_CT_UTF8, 1);
        tb_elem_struct_begin(&t); /* optional group <list_column> (LIST) */
        tb_i32(&t, 3, PQ_OPTIONAL);
        tb_str(&t, 4, w->list_column);
        tb_i32(&t, 5, 1);
        tb_i32(&t, 6, PQ_CT_LIST);
        tb_struct_begin(&t, 10);
        tb_struct_begin(&t, 3); /* LIST */
        tb_struct_end(&t);
        tb_struct_end(&t);
        tb_struct_end(&t);
        tb_elem_struct_begin(&t); /* repeated group list */
        tb_i32(&t, 3, PQ_REPEATED);
        tb_str(&t, 4, "list");
        tb_i32(&t, 5, 1);
        tb_struct_end(&t);
        schema_leaf(&t, "element", PQ_FLOAT, PQ_REQUIRED, -1, 0);
        tb_i64(&t, 3, w->total_rows);
        tb_list(&t, 4, TT_STRUCT, (uint32_t)w->ngroups);
        for (int g = 0; g < w->ngroups; g++) {
            const group_meta *gm = &w->groups[g];
            tb_elem_struct_begin(&t);
            tb_list(&t, 1, TT_STRUCT, 3);
            column_chunk(&t, &gm->col[0], PQ_BYTE_ARRAY, "path", NULL, NULL, codec);
            column_chunk(&t, &gm->col[1], PQ_BYTE_ARRAY, "label", NULL, NULL, codec);
            column_chunk(&t, &gm->col[2], PQ_FLOAT, w->list_column, "list", "element", codec);
            tb_i64(&t, 2, gm->total_bytes);
            tb_i64(&t, 3, gm->rows);
            tb_i64(&t, 5, gm->file_offset);
            tb_i64(&t, 6, gm->col[0].compressed + gm->col[1].compressed + gm->col[2].compressed);
            tb_field(&t, 7, TT_I16);
            tb_varint(&t, (uint64_t)((g << 1) ^ (g >> 15)));
            tb_struct_end(&t);
        }
        tb_list(&t, 5, TT_STRUCT, (uint32_t)w->nmeta);
        for (int i = 0; i < w->nmeta; i++) {
            tb_elem_struct_begin(&t);
            tb_str(&t, 1, w->meta[i].key);
            tb_str(&t, 2, w->meta[i].value);
            tb_struct_end(&t);
        }
        tb_str(&t, 6, "fruitnet version " FRUITNET_VERSION);
        tb_struct_end(&t);
        if (t.oom)
            rc = wfail(w, err, FN_ENOMEM, "out of memory");
    }
    if (!rc)
        rc = write_all(w, t.p, t.n, err);
    if (!rc) {
        unsigned char tail[8] = {(unsigned char)t.n, (unsigned char)(t.n >> 8), (unsigned char)(t.n >> 16),
                                 (unsigned char)(t.n >> 24), 'P', 'A', 'R', '1'};
        rc = write_all(w, tail, 8, err);
    }
    tb_free(&t);
    if (!rc && fsync(w->fd) != 0)
        rc = wfail(w, err, FN_EIO, "fsync failed");
    if (!rc) {
        int fd = w->fd;
        w->fd = -1;
        if (close(fd) != 0)
            rc = wfail(w, err, FN_EIO, "close failed");
    }
    if (!rc && rename(w->tmp, w->path) != 0)
        rc = wfail(w, err, FN_EIO, "cannot rename the temporary file into place");
    if (!rc) {
        free(w->tmp);
        w->tmp = NULL; /* nothing to remove */
    }
    fn_parquet_writer_abort(w);
    return rc;
}

void fn_parquet_writer_abort(fn_parquet_writer *w)
{
    if (!w)
        return;
    if (w->fd >= 0)
        close(w->fd);
    if (w->tmp)
        unlink(w->tmp);
    for (int r = 0; r < w->nrows; r++)
        free(w->paths[r]), free(w->labels[r]), free(w->vecs[r]);
    for (int i = 0; i < w->nmeta; i++)
        free((char *)w->meta[i].key), free((char *)w->meta[i].value);
    free(w->meta);
    free(w->paths), free(w->labels), free(w->vecs), free(w->lens);
    free(w->groups);
    free(w->tmp);
    free(w->path);
    free(w->list_column);
    free(w);
}
