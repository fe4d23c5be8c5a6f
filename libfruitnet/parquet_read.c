/*
 * parquet_read.c — reads what fruitnet writes (and compatible files): a
 * schema of two string columns and one LIST<FLOAT> column (any of the
 * standard 3-level or legacy 2-level layouts, required or optional), data
 * pages v1/v2, PLAIN values, RLE/bit-packed levels, UNCOMPRESSED or GZIP.
 * Every length and offset read from the file is bounds-checked; page CRCs
 * are verified when present. Memory is bounded by one row group. Anything
 * else (dictionary pages, SNAPPY, other types) is refused by name.
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

#define MAX_FOOTER ((size_t)64 << 20)
#define MAX_SCHEMA 64
#define MAX_GROUPS (1 << 20)
#define MAX_LEVELS ((int64_t)1 << 27) /* level entries of one column chunk (2048 floats x 65536 rows) */
#define MAX_INFLATE 1032              /* deflate's largest compression ratio */

static const char *codec_name(int c)
{
    static const char *names[] = {"UNCOMPRESSED", "SNAPPY", "GZIP", "LZO", "BROTLI", "LZ4", "ZSTD", "LZ4_RAW"};
    return c >= 0 && c < 8 ? names[c] : "unknown";
}

static const char *encoding_name(int e)
{
    static const char *names[] = {"PLAIN", "GROUP_VAR_INT", "PLAIN_DICTIONARY", "RLE", "BIT_PACKED",
                                  "DELTA_BINARY_PACKED", "DELTA_LENGTH_BYTE_ARRAY", "DELTA_BYTE_ARRAY",
                                  "RLE_DICTIONARY", "BYTE_STREAM_SPLIT"};
    return e >= 0 && e < 10 ? names[e] : "unknown";
}

typedef struct col_chunk {
    int64_t data_off, dict_off, comp_size, num_values;
    int codec, type;
    int bad_encoding; /* first value encoding fruitnet cannot decode, or -1 */
} col_chunk;

typedef struct rgroup {
    int64_t rows;
    col_chunk col[3];
} rgroup;

/* one decoded column of a row group */
typedef struct coldata {
    uint8_t *def, *rep;    /* per level entry */
    size_t nlev;
    unsigned char *vals;   /* PLAIN values (concatenated over pages) */
    size_t vlen, vcap;
} coldata;

struct fn_parquet_reader {
    char *path;
    int fd;
    int64_t file_size;
    int64_t num_rows;
    fn_kv *meta;
    int nmeta;
    rgroup *groups;
    int ngroups;
    int leaf_type[3], max_def[3], max_rep[3];
    int elem_def; /* list column: definition level of a list element (null element below max_def) */
    /* iteration */
    int cur_group;
    int64_t row_in_group;
    coldata cd[3];
    size_t lev_pos[3], val_pos[3];
    char *sbuf[2];
    size_t scap[2];
    float *vbuf;
    size_t vbcap;
};

static int rfail(const fn_parquet_reader *r, fn_error *err, int code, const char *what)
{
    return fn_fail(err, code, "%s: %s", r->path, what);
}

static int read_at(fn_parquet_reader *r, int64_t off, void *buf, size_t n, fn_error *err)
{
    if (off < 0 || (uint64_t)off > (uint64_t)r->file_size || n > (uint64_t)(r->file_size - off))
        return rfail(r, err, FN_EFORMAT, "offset or length outside the file");
    size_t got = 0;
    while (got < n) {
        ssize_t k = pread(r->fd, (char *)buf + got, n - got, off + (off_t)got);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return fn_fail(err, FN_EIO, "%s: read error: %s", r->path, k < 0 ? strerror(errno) : "unexpected end");
        got += (size_t)k;
    }
    return FN_OK;
}

static size_t le32(const unsigned char *p)
{
    return (size_t)p[0] | (size_t)p[1] << 8 | (size_t)p[2] << 16 | (size_t)p[3] << 24;
}

/* ---------------------------------------------------------------- footer */

typedef struct schema_el {
    int type, rep, nchildren, ct;
    char name[64];
} schema_el;

/* what parse_footer has seen, for the checks after it */
typedef struct footer {
    schema_el sch[MAX_SCHEMA];
    int nsch, seen_schema, seen_rows, seen_groups;
} footer;

/* One SchemaElement. */
static void parse_schema_el(trd *t, schema_el *e)
{
    int16_t last = 0, id;
    int ty;
    memset(e, 0, sizeof *e);
    e->type = -1, e->rep = -1, e->ct = -1;
    while (tr_field(t, &last, &id, &ty)) {
        if (id == PQ_SCHEMAELEMENT_TYPE && ty == TT_I32) e->type = (int)tr_zz(t);
        else if (id == PQ_SCHEMAELEMENT_REPETITION_TYPE && ty == TT_I32) e->rep = (int)tr_zz(t);
        else if (id == PQ_SCHEMAELEMENT_NAME && ty == TT_BINARY) {
            size_t n;
            const unsigned char *s = tr_bin(t, &n);
            if (s)
                memcpy(e->name, s, n < 63 ? n : 63);
        } else if (id == PQ_SCHEMAELEMENT_NUM_CHILDREN && ty == TT_I32) e->nchildren = (int)tr_zz(t);
        else if (id == PQ_SCHEMAELEMENT_CONVERTED_TYPE && ty == TT_I32) e->ct = (int)tr_zz(t);
        else tr_skip(t, ty);
    }
}

/* ColumnMetaData.encodings: notes the first one fruitnet cannot decode. */
static void parse_encodings(trd *t, col_chunk *c)
{
    int et;
    uint32_t n = tr_list(t, &et);
    for (uint32_t k = 0; k < n && !t->err; k++) {
        int64_t e = et == TT_I32 ? tr_zz(t) : -1;
        if (et != TT_I32)
            t->err = 1;
        else if (e != PQ_ENC_PLAIN && e != PQ_ENC_RLE && e != PQ_ENC_BIT_PACKED && c->bad_encoding < 0)
            c->bad_encoding = e >= 0 && e < 100 ? (int)e : 99;
    }
}

/* ColumnMetaData */
static void parse_column_meta(trd *t, col_chunk *c)
{
    int16_t last = 0, id;
    int ty;
    while (tr_field(t, &last, &id, &ty)) {
        if (id == PQ_COLUMNMETADATA_TYPE && ty == TT_I32) c->type = (int)tr_zz(t);
        else if (id == PQ_COLUMNMETADATA_ENCODINGS && ty == TT_LIST) parse_encodings(t, c);
        else if (id == PQ_COLUMNMETADATA_CODEC && ty == TT_I32) c->codec = (int)tr_zz(t);
        else if (id == PQ_COLUMNMETADATA_NUM_VALUES && ty == TT_I64) c->num_values = tr_zz(t);
        else if (id == PQ_COLUMNMETADATA_TOTAL_COMPRESSED_SIZE && ty == TT_I64) c->comp_size = tr_zz(t);
        else if (id == PQ_COLUMNMETADATA_DATA_PAGE_OFFSET && ty == TT_I64) c->data_off = tr_zz(t);
        else if (id == PQ_COLUMNMETADATA_DICTIONARY_PAGE_OFFSET && ty == TT_I64) c->dict_off = tr_zz(t);
        else tr_skip(t, ty);
    }
}

/* ColumnChunk: 1 when it had (its first) metadata. A file_path sets t->err = 2 (unsupported). */
static int parse_column_chunk(trd *t, col_chunk *c)
{
    int16_t last = 0, id;
    int ty, have = 0;
    c->dict_off = -1;
    c->bad_encoding = -1;
    while (tr_field(t, &last, &id, &ty)) {
        if (id == PQ_COLUMNCHUNK_META_DATA && ty == TT_STRUCT && !have) {
            have = 1;
            parse_column_meta(t, c);
        } else if (id == PQ_COLUMNCHUNK_FILE_PATH && ty == TT_BINARY) {
            t->err = 2; /* external file_path: unsupported */
            return 0;
        } else {
            tr_skip(t, ty);
        }
    }
    return have;
}

/* FileMetaData.schema */
static int parse_schema(fn_parquet_reader *r, trd *t, footer *f, fn_error *err)
{
    int et;
    uint32_t n = tr_list(t, &et);
    f->seen_schema = 1;
    if (et != TT_STRUCT || n > MAX_SCHEMA)
        return rfail(r, err, FN_EUNSUPPORTED, "schema too large or malformed");
    for (uint32_t i = 0; i < n && !t->err; i++)
        parse_schema_el(t, &f->sch[f->nsch++]);
    return FN_OK;
}

/* One RowGroup: path, label, list column chunks, each with metadata; trailing scalar columns (e.g. the
 * prediction and probability of fn_dataset_options.classifier) are skipped. */
static int parse_row_group(fn_parquet_reader *r, trd *t, rgroup *rg, fn_error *err)
{
    int16_t last = 0, id;
    int ty, ncols = 0;
    while (tr_field(t, &last, &id, &ty)) {
        if (id == PQ_ROWGROUP_COLUMNS && ty == TT_LIST) {
            int et;
            uint32_t nc = tr_list(t, &et);
            if (ncols)
                return rfail(r, err, FN_EFORMAT, "corrupt footer (a row group lists its columns twice)");
            if (et != TT_STRUCT || nc < 3 || nc > MAX_SCHEMA)
                return rfail(r, err, FN_EUNSUPPORTED, "row group does not have the 3 expected columns");
            for (uint32_t c = 0; c < nc && !t->err; c++) {
                col_chunk skip = {0};
                int have = parse_column_chunk(t, c < 3 ? &rg->col[c] : &skip);
                ncols += c < 3 ? have : 0;
            }
        } else if (id == PQ_ROWGROUP_NUM_ROWS && ty == TT_I64) {
            rg->rows = tr_zz(t);
        } else {
            tr_skip(t, ty);
        }
    }
    if (t->err == 2)
        return rfail(r, err, FN_EUNSUPPORTED, "column chunks in external files are not supported");
    if (!t->err && ncols != 3)
        return rfail(r, err, FN_EFORMAT, "column chunk without metadata");
    return FN_OK;
}

/* FileMetaData.row_groups */
static int parse_row_groups(fn_parquet_reader *r, trd *t, footer *f, fn_error *err)
{
    int et;
    f->seen_groups = 1;
    uint32_t n = tr_list(t, &et);
    if (et != TT_STRUCT || n > MAX_GROUPS)
        return rfail(r, err, FN_EFORMAT, "row group list malformed");
    r->groups = calloc(n ? n : 1, sizeof(rgroup));
    if (!r->groups)
        return rfail(r, err, FN_ENOMEM, "out of memory");
    for (uint32_t g = 0; g < n && !t->err; g++) {
        int rc = parse_row_group(r, t, &r->groups[g], err);
        if (rc)
            return rc;
        r->ngroups++;
    }
    return FN_OK;
}

/* One KeyValue appended to r->meta; 1 to stop reading the list (no key, or corrupt). */
static int parse_key_value(fn_parquet_reader *r, trd *t, int *stop, fn_error *err)
{
    int16_t last = 0, id;
    int ty;
    const unsigned char *k = NULL, *v = NULL;
    size_t kl = 0, vl = 0;
    while (tr_field(t, &last, &id, &ty)) {
        if (id == PQ_KEYVALUE_KEY && ty == TT_BINARY) k = tr_bin(t, &kl);
        else if (id == PQ_KEYVALUE_VALUE && ty == TT_BINARY) v = tr_bin(t, &vl);
        else tr_skip(t, ty);
    }
    *stop = t->err || !k;
    if (*stop)
        return FN_OK;
    char *ks = malloc(kl + 1), *vs = malloc(vl + 1);
    if (!ks || !vs) {
        free(ks), free(vs);
        return rfail(r, err, FN_ENOMEM, "out of memory");
    }
    memcpy(ks, k, kl), ks[kl] = 0;
    if (v)
        memcpy(vs, v, vl);
    vs[vl] = 0;
    r->meta[r->nmeta].key = ks;
    r->meta[r->nmeta].value = vs;
    r->nmeta++;
    return FN_OK;
}

/* FileMetaData.key_value_metadata: entries up to the first without a key. */
static int parse_key_values(fn_parquet_reader *r, trd *t, fn_error *err)
{
    int et, stop = 0;
    uint32_t n = tr_list(t, &et);
    if (et != TT_STRUCT)
        return rfail(r, err, FN_EFORMAT, "key/value metadata malformed");
    r->meta = calloc(n ? n : 1, sizeof(fn_kv));
    if (!r->meta)
        return rfail(r, err, FN_ENOMEM, "out of memory");
    for (uint32_t i = 0; i < n && !t->err && !stop; i++) {
        int rc = parse_key_value(r, t, &stop, err);
        if (rc)
            return rc;
    }
    return FN_OK;
}

/* FileMetaData: every field fruitnet needs, once; the rest skipped. */
static int parse_footer(fn_parquet_reader *r, trd *t, footer *f, fn_error *err)
{
    int16_t last = 0, id;
    int ty, rc = FN_OK;
    while (!rc && tr_field(t, &last, &id, &ty)) {
        if ((id == PQ_FILEMETADATA_SCHEMA && f->seen_schema) || (id == PQ_FILEMETADATA_NUM_ROWS && f->seen_rows) ||
            (id == PQ_FILEMETADATA_ROW_GROUPS && f->seen_groups) ||
            (id == PQ_FILEMETADATA_KEY_VALUE_METADATA && r->meta))
            return rfail(r, err, FN_EFORMAT, "corrupt footer (a field appears twice)");
        if (id == PQ_FILEMETADATA_SCHEMA && ty == TT_LIST) {
            rc = parse_schema(r, t, f, err);
        } else if (id == PQ_FILEMETADATA_NUM_ROWS && ty == TT_I64) {
            f->seen_rows = 1;
            r->num_rows = tr_zz(t);
        } else if (id == PQ_FILEMETADATA_ROW_GROUPS && ty == TT_LIST) {
            rc = parse_row_groups(r, t, f, err);
        } else if (id == PQ_FILEMETADATA_KEY_VALUE_METADATA && ty == TT_LIST) {
            rc = parse_key_values(r, t, err);
        } else {
            tr_skip(t, ty);
        }
    }
    if (rc)
        return rc;
    if (t->err)
        return rfail(r, err, FN_EFORMAT, "corrupt footer (Thrift metadata out of bounds)");
    if (!f->seen_schema || !f->seen_rows || !f->seen_groups)
        return rfail(r, err, FN_EFORMAT, "corrupt footer (schema, num_rows or row_groups missing)");
    return FN_OK;
}

/* The schema: root + path + label + the list column (3, 2 or 1 levels); sets the leaf types and levels. */
static int check_schema(fn_parquet_reader *r, const footer *f, fn_error *err)
{
    const schema_el *sch = f->sch;
    int nsch = f->nsch;
    if (nsch < 4 || sch[0].nchildren < 3)
        return rfail(r, err, FN_EUNSUPPORTED, "schema is not (path string, label string, list<float>)");
    for (int c = 0; c < 2; c++) {
        const schema_el *e = &sch[1 + c];
        if (strcmp(e->name, c ? "label" : "path"))
            return rfail(r, err, FN_EUNSUPPORTED, c ? "second column is not \"label\"" : "first column is not \"path\"");
        if (e->type != PQ_BYTE_ARRAY || e->nchildren || e->rep == PQ_REPEATED)
            return rfail(r, err, FN_EUNSUPPORTED, "path and label must be string (BYTE_ARRAY) columns");
        r->leaf_type[c] = PQ_BYTE_ARRAY;
        r->max_def[c] = e->rep == PQ_OPTIONAL;
        r->max_rep[c] = 0;
    }
    int def = 0, rep = 0, i = 3;
    r->elem_def = -1;
    for (; i < nsch; i++) {
        const schema_el *e = &sch[i];
        if (e->rep == PQ_OPTIONAL) def++;
        if (e->rep == PQ_REPEATED) def++, rep++, r->elem_def = def;
        if (e->nchildren == 0)
            break;
        if (e->nchildren != 1)
            return rfail(r, err, FN_EUNSUPPORTED, "list column has an unexpected nested structure");
    }
    if (i >= nsch || sch[i].type != PQ_FLOAT || rep != 1)
        return rfail(r, err, FN_EUNSUPPORTED, "third column is not a list of FLOAT");
    for (int x = i + 1; x < nsch; x++) /* trailing scalar columns, not read */
        if (sch[x].nchildren || sch[x].rep == PQ_REPEATED)
            return rfail(r, err, FN_EUNSUPPORTED, "a column after the list column is not a scalar");
    if (nsch - 1 - i != sch[0].nchildren - 3)
        return rfail(r, err, FN_EUNSUPPORTED, "schema is not (path string, label string, list<float>, scalars...)");
    r->leaf_type[2] = PQ_FLOAT;
    r->max_def[2] = def, r->max_rep[2] = 1;
    return FN_OK;
}

/* Column chunk c of row group g: the schema's type, a supported codec and encodings, sane counts and extent. */
static int check_column_chunk(fn_parquet_reader *r, int g, int c, fn_error *err)
{
    const col_chunk *cc = &r->groups[g].col[c];
    if (cc->type != r->leaf_type[c])
        return rfail(r, err, FN_EFORMAT, "column chunk type differs from the schema");
    if (cc->codec != PQ_UNCOMPRESSED && cc->codec != PQ_GZIP)
        return fn_fail(err, FN_EUNSUPPORTED, "%s: compression codec %s (%d) is not supported (UNCOMPRESSED and GZIP are)",
                       r->path, codec_name(cc->codec), cc->codec);
    if (cc->dict_off > 0 || cc->bad_encoding == PQ_ENC_PLAIN_DICTIONARY || cc->bad_encoding == PQ_ENC_RLE_DICTIONARY)
        return rfail(r, err, FN_EUNSUPPORTED, "dictionary-encoded columns are not supported (PLAIN only)");
    if (cc->bad_encoding >= 0)
        return fn_fail(err, FN_EUNSUPPORTED, "%s: encoding %s (%d) is not supported (PLAIN values only)", r->path,
                       encoding_name(cc->bad_encoding), cc->bad_encoding);
    if (cc->num_values < r->groups[g].rows || (c < 2 && cc->num_values != r->groups[g].rows))
        return rfail(r, err, FN_EFORMAT, "column chunk value count does not match the row count");
    if (cc->num_values > MAX_LEVELS)
        return rfail(r, err, FN_ELIMIT, "column chunk has too many values (row group too large)");
    if (cc->data_off < 4 || cc->comp_size < 0 || cc->data_off > r->file_size ||
        cc->comp_size > r->file_size - cc->data_off || cc->num_values < 0)
        return rfail(r, err, FN_EFORMAT, "column chunk outside the file");
    return FN_OK;
}

/* Row groups: sizes, their column chunks, and the total row count. */
static int check_row_groups(fn_parquet_reader *r, fn_error *err)
{
    if (r->num_rows < 0)
        return rfail(r, err, FN_EFORMAT, "negative row count");
    int64_t sum = 0;
    for (int g = 0; g < r->ngroups; g++) {
        if (r->groups[g].rows < 0 || r->groups[g].rows > (1 << 30))
            return rfail(r, err, FN_EFORMAT, "bad row group size");
        sum += r->groups[g].rows;
        for (int c = 0; c < 3; c++) {
            int rc = check_column_chunk(r, g, c, err);
            if (rc)
                return rc;
        }
    }
    if (sum != r->num_rows)
        return rfail(r, err, FN_EFORMAT, "row groups do not add up to the row count");
    return FN_OK;
}

/* The footer (FileMetaData) of len bytes: parsed, then checked against what fruitnet reads. */
static int load_footer(fn_parquet_reader *r, const unsigned char *buf, size_t len, fn_error *err)
{
    trd t = {buf, buf + len, 0, 0};
    footer f;
    memset(&f, 0, sizeof f);
    int rc = parse_footer(r, &t, &f, err);
    if (!rc)
        rc = check_schema(r, &f, err);
    if (!rc)
        rc = check_row_groups(r, err);
    return rc;
}

/* The file's frame (PAR1 ... footer, footer length, PAR1) and its footer, loaded. */
static int read_footer(fn_parquet_reader *r, fn_error *err)
{
    unsigned char head[4], tail[8];
    int rc;
    if (r->file_size < 12)
        return rfail(r, err, FN_EFORMAT, "too short to be a Parquet file");
    if ((rc = read_at(r, 0, head, 4, err)) || (rc = read_at(r, r->file_size - 8, tail, 8, err)))
        return rc;
    if (memcmp(head, "PAR1", 4) || memcmp(tail + 4, "PAR1", 4))
        return rfail(r, err, FN_EFORMAT, memcmp(tail + 4, "PARE", 4) ? "not a Parquet file (bad magic)"
                                                                    : "encrypted Parquet files are not supported");
    uint32_t flen = (uint32_t)le32(tail);
    if (flen == 0 || flen > MAX_FOOTER || (int64_t)flen > r->file_size - 12)
        return rfail(r, err, FN_EFORMAT, "footer length is out of range");
    unsigned char *fb = malloc(flen);
    if (!fb)
        return rfail(r, err, FN_ENOMEM, "out of memory");
    rc = read_at(r, r->file_size - 8 - flen, fb, flen, err);
    if (!rc)
        rc = load_footer(r, fb, flen, err);
    free(fb);
    return rc;
}

int fn_parquet_reader_open(const char *path, fn_parquet_reader **out, fn_error *err)
{
    if (!path || !out)
        return fn_fail(err, FN_EARG, "fn_parquet_reader_open: invalid arguments");
    *out = NULL;
    fn_parquet_reader *r = calloc(1, sizeof *r);
    if (!r)
        return fn_fail(err, FN_ENOMEM, "out of memory");
    r->path = malloc(strlen(path) + 1);
    if (!r->path) {
        free(r);
        return fn_fail(err, FN_ENOMEM, "out of memory");
    }
    strcpy(r->path, path);
    r->fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK); /* never blocks on a FIFO; regular files only */
    int rc;
    if (r->fd < 0) {
        rc = fn_fail(err, FN_EIO, "%s: cannot open: %s", path, strerror(errno));
        fn_parquet_reader_close(r);
        return rc;
    }
    struct stat st;
    if (fstat(r->fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        rc = fn_fail(err, FN_EIO, "%s: not a regular file", path);
        fn_parquet_reader_close(r);
        return rc;
    }
    r->file_size = st.st_size;
    if ((rc = read_footer(r, err))) {
        fn_parquet_reader_close(r);
        return rc;
    }
    r->cur_group = -1;
    *out = r;
    return FN_OK;
}

int64_t fn_parquet_reader_rows(const fn_parquet_reader *r) { return r ? r->num_rows : 0; }

const char *fn_parquet_reader_meta(const fn_parquet_reader *r, const char *key)
{
    for (int i = 0; r && key && i < r->nmeta; i++)
        if (!strcmp(r->meta[i].key, key))
            return r->meta[i].value;
    return NULL;
}

static void free_cols(fn_parquet_reader *r)
{
    for (int c = 0; c < 3; c++) {
        free(r->cd[c].def), free(r->cd[c].rep), free(r->cd[c].vals);
        memset(&r->cd[c], 0, sizeof r->cd[c]);
        r->lev_pos[c] = r->val_pos[c] = 0;
    }
}

void fn_parquet_reader_close(fn_parquet_reader *r)
{
    if (!r)
        return;
    if (r->fd >= 0)
        close(r->fd);
    free_cols(r);
    for (int i = 0; i < r->nmeta; i++)
        free((char *)r->meta[i].key), free((char *)r->meta[i].value);
    free(r->meta);
    free(r->groups);
    free(r->sbuf[0]), free(r->sbuf[1]), free(r->vbuf);
    free(r->path);
    free(r);
}

/* ---------------------------------------------------------------- pages */

/* Decode n levels of the RLE/bit-packed hybrid from [p, end). */
static int decode_levels(const unsigned char *p, const unsigned char *end, int bw, uint8_t *out, size_t n)
{
    size_t k = 0;
    trd t = {p, end, 0, 0};
    while (k < n) {
        uint64_t h = tr_varint(&t);
        if (t.err)
            return -1;
        if (h & 1) { /* bit-packed groups of 8 */
            uint64_t groups = h >> 1;
            if (groups > (uint64_t)(t.end - t.p) / (uint64_t)(bw ? bw : 1) + 1)
                return -1;
            size_t bytes = (size_t)groups * (size_t)bw;
            if (bytes > (size_t)(t.end - t.p))
                return -1;
            uint64_t bitpos = 0;
            for (uint64_t i = 0; i < groups * 8 && k < n; i++) {
                unsigned v = 0;
                for (int b = 0; b < bw; b++, bitpos++)
                    v |= (unsigned)((t.p[bitpos >> 3] >> (bitpos & 7)) & 1) << b;
                out[k++] = (uint8_t)v;
            }
            t.p += bytes;
        } else {
            uint64_t run = h >> 1;
            int nb = (bw + 7) / 8;
            if (t.end - t.p < nb || run == 0)
                return -1;
            unsigned v = 0;
            for (int b = 0; b < nb; b++)
                v |= (unsigned)t.p[b] << (8 * b);
            t.p += nb;
            if (v > 255)
                return -1;
            for (uint64_t i = 0; i < run && k < n; i++)
                out[k++] = (uint8_t)v;
        }
    }
    return 0;
}

static int bit_width(int v)
{
    int w = 0;
    while (v) w++, v >>= 1;
    return w;
}

static int append_vals(coldata *cd, const unsigned char *p, size_t n)
{
    if (n == 0)
        return 0;
    if (cd->vlen + n > cd->vcap) {
        size_t cap = cd->vcap ? cd->vcap : 4096;
        while (cap < cd->vlen + n)
            cap *= 2;
        unsigned char *v = realloc(cd->vals, cap);
        if (!v)
            return -1;
        cd->vals = v, cd->vcap = cap;
    }
    memcpy(cd->vals + cd->vlen, p, n);
    cd->vlen += n;
    return 0;
}

/* A data page's header (PageHeader with its DataPageHeader or DataPageHeaderV2); -1 where absent. */
typedef struct page_hdr {
    int type;
    int64_t usize, csize, crc, nvals, enc, dlen, rlen;
    int64_t denc, renc;    /* v1 level encodings (RLE when absent) */
    int v2, v2_compressed; /* v2: values compressed unless is_compressed is false */
} page_hdr;

/* DataPageHeader (v1) or DataPageHeaderV2 fields into h. */
static void parse_data_page_header(trd *t, page_hdr *h, int v2)
{
    int16_t last = 0, id;
    int ty;
    h->v2 = v2;
    while (tr_field(t, &last, &id, &ty)) {
        if (id == (v2 ? PQ_DATAPAGEHEADERV2_NUM_VALUES : PQ_DATAPAGEHEADER_NUM_VALUES) && ty == TT_I32)
            h->nvals = tr_zz(t);
        else if (!v2 && id == PQ_DATAPAGEHEADER_ENCODING && ty == TT_I32) h->enc = tr_zz(t);
        else if (!v2 && id == PQ_DATAPAGEHEADER_DEFINITION_LEVEL_ENCODING && ty == TT_I32) h->denc = tr_zz(t);
        else if (!v2 && id == PQ_DATAPAGEHEADER_REPETITION_LEVEL_ENCODING && ty == TT_I32) h->renc = tr_zz(t);
        else if (v2 && id == PQ_DATAPAGEHEADERV2_ENCODING && ty == TT_I32) h->enc = tr_zz(t);
        else if (v2 && id == PQ_DATAPAGEHEADERV2_DEFINITION_LEVELS_BYTE_LENGTH && ty == TT_I32) h->dlen = tr_zz(t);
        else if (v2 && id == PQ_DATAPAGEHEADERV2_REPETITION_LEVELS_BYTE_LENGTH && ty == TT_I32) h->rlen = tr_zz(t);
        else if (v2 && id == PQ_DATAPAGEHEADERV2_IS_COMPRESSED && (ty == TT_TRUE || ty == TT_FALSE))
            h->v2_compressed = tr_bool(ty);
        else tr_skip(t, ty);
    }
}

/* PageHeader */
static void parse_page_header(trd *t, page_hdr *h)
{
    int16_t last = 0, id;
    int ty;
    h->type = -1;
    h->usize = h->csize = h->crc = h->nvals = h->enc = h->dlen = h->rlen = -1;
    h->denc = h->renc = PQ_ENC_RLE;
    h->v2 = 0, h->v2_compressed = 1;
    while (tr_field(t, &last, &id, &ty)) {
        if (id == PQ_PAGEHEADER_TYPE && ty == TT_I32) h->type = (int)tr_zz(t);
        else if (id == PQ_PAGEHEADER_UNCOMPRESSED_PAGE_SIZE && ty == TT_I32) h->usize = tr_zz(t);
        else if (id == PQ_PAGEHEADER_COMPRESSED_PAGE_SIZE && ty == TT_I32) h->csize = tr_zz(t);
        else if (id == PQ_PAGEHEADER_CRC && ty == TT_I32) h->crc = (uint32_t)tr_zz(t);
        else if ((id == PQ_PAGEHEADER_DATA_PAGE_HEADER || id == PQ_PAGEHEADER_DATA_PAGE_HEADER_V2) && ty == TT_STRUCT)
            parse_data_page_header(t, h, id == PQ_PAGEHEADER_DATA_PAGE_HEADER_V2);
        else tr_skip(t, ty);
    }
}

/* What fruitnet decodes: a data page of PLAIN values and RLE levels, within the chunk (avail bytes after the
 * header) and the column's remaining level entries (left), with sizes that agree with the codec. */
static int check_page_header(const fn_parquet_reader *r, int c, int codec, const page_hdr *h, int64_t avail,
                             size_t left, fn_error *err)
{
    if (h->type == PQ_DICTIONARY_PAGE)
        return rfail(r, err, FN_EUNSUPPORTED, "dictionary pages are not supported");
    if ((h->type != PQ_DATA_PAGE && h->type != PQ_DATA_PAGE_V2) || h->usize < 0 || h->csize < 0 || h->nvals <= 0 ||
        h->csize > avail || (size_t)h->usize > PQ_MAX_PAGE_BYTES || (size_t)h->nvals > left)
        return rfail(r, err, h->type == PQ_INDEX_PAGE ? FN_EUNSUPPORTED : FN_EFORMAT, "bad or unsupported page header");
    if (h->enc != PQ_ENC_PLAIN) {
        int e = (int)(h->enc >= 0 && h->enc < 100 ? h->enc : 99);
        return fn_fail(err, FN_EUNSUPPORTED, "%s: page encoding %s (%d) is not supported (PLAIN values only)", r->path,
                       encoding_name(e), e);
    }
    /* v1 levels: RLE/bit-packed hybrid; the old BIT_PACKED encoding only where nothing is stored (max level 0) */
    if ((h->denc != PQ_ENC_RLE && (h->denc != PQ_ENC_BIT_PACKED || r->max_def[c])) ||
        (h->renc != PQ_ENC_RLE && (h->renc != PQ_ENC_BIT_PACKED || r->max_rep[c])))
        return rfail(r, err, FN_EUNSUPPORTED, "levels must be RLE-encoded (BIT_PACKED levels are not supported)");
    /* sizes before allocating: stored = uncompressed, or within deflate's largest ratio */
    if ((codec == PQ_UNCOMPRESSED && h->usize != h->csize) ||
        (codec == PQ_GZIP && h->usize > h->csize * MAX_INFLATE + 1024))
        return rfail(r, err, FN_EFORMAT, "page sizes disagree");
    return FN_OK;
}

/* The page header at [p, end), checked; *body: the page as stored, right after it. */
static int read_page_header(const fn_parquet_reader *r, int c, int codec, const unsigned char *p,
                            const unsigned char *end, size_t left, page_hdr *h, const unsigned char **body,
                            fn_error *err)
{
    trd t = {p, end, 0, 0};
    parse_page_header(&t, h);
    if (t.err)
        return rfail(r, err, FN_EFORMAT, "corrupt page header");
    *body = t.p;
    return check_page_header(r, c, codec, h, end - t.p, left, err);
}

/* Inflate n bytes of GZIP/zlib data into exactly want bytes: 0, -1 (zlib init failed) or -2 (corrupt). */
static int inflate_page(const unsigned char *src, size_t n, unsigned char *dst, size_t want)
{
    z_stream s;
    memset(&s, 0, sizeof s);
    if (inflateInit2(&s, 15 + 32) != Z_OK)
        return -1;
    s.next_in = (Bytef *)src;
    s.avail_in = (uInt)n;
    s.next_out = dst;
    s.avail_out = (uInt)want;
    int zr = inflate(&s, Z_FINISH);
    size_t got = s.total_out;
    inflateEnd(&s);
    return zr == Z_STREAM_END && got == want ? 0 : -2;
}

/* The page as stored (csize bytes at body), checked against its CRC, into a new buffer of usize (+1) bytes:
 * v2 levels are stored uncompressed before the (maybe compressed) values. Free *out. */
static int decompress_page(const fn_parquet_reader *r, int codec, const page_hdr *h, const unsigned char *body,
                           unsigned char **out, fn_error *err)
{
    if (h->crc >= 0 && fn_crc32(0, body, (size_t)h->csize) != (uint32_t)h->crc)
        return rfail(r, err, FN_ECHECKSUM, "page CRC32 mismatch (corrupt data)");
    size_t lv_bytes = 0;
    if (h->v2) {
        if (h->dlen < 0 || h->rlen < 0 || h->dlen > h->csize || h->rlen > h->csize - h->dlen ||
            h->dlen + h->rlen > h->usize)
            return rfail(r, err, FN_EFORMAT, "bad v2 page level lengths");
        lv_bytes = (size_t)(h->dlen + h->rlen);
    }
    unsigned char *page = malloc((size_t)h->usize + 1);
    if (!page)
        return rfail(r, err, FN_ENOMEM, "out of memory");
    memcpy(page, body, lv_bytes);
    size_t want = (size_t)h->usize - lv_bytes, have = (size_t)h->csize - lv_bytes;
    int rc = FN_OK;
    if (codec == PQ_GZIP && (!h->v2 || h->v2_compressed)) {
        int zr = inflate_page(body + lv_bytes, have, page + lv_bytes, want);
        if (zr)
            rc = zr == -1 ? rfail(r, err, FN_ENOMEM, "inflateInit failed") : rfail(r, err, FN_EFORMAT, "corrupt GZIP page");
    } else if (have != want) {
        rc = rfail(r, err, FN_EFORMAT, "page sizes disagree");
    } else {
        memcpy(page + lv_bytes, body + lv_bytes, want);
    }
    if (rc) {
        free(page);
        return rc;
    }
    *out = page;
    return FN_OK;
}

/* The repetition, then definition levels of a page's level entries into the column's arrays at done;
 * *q moves past them. 0, or -1 when they are corrupt. */
static int decode_page_levels(fn_parquet_reader *r, int c, const page_hdr *h, const unsigned char **q,
                              const unsigned char *qe, size_t done)
{
    size_t n = (size_t)h->nvals;
    for (int pass = 0; pass < 2; pass++) {
        int maxl = pass == 0 ? r->max_rep[c] : r->max_def[c];
        uint8_t *dst = (pass == 0 ? r->cd[c].rep : r->cd[c].def) + done;
        if (maxl == 0) {
            memset(dst, 0, n);
            continue;
        }
        size_t len;
        if (h->v2) {
            len = (size_t)(pass == 0 ? h->rlen : h->dlen);
        } else {
            if (qe - *q < 4)
                return -1;
            len = le32(*q);
            *q += 4;
        }
        if (len > (size_t)(qe - *q) || decode_levels(*q, *q + len, bit_width(maxl), dst, n))
            return -1;
        for (size_t i = 0; i < n; i++)
            if (dst[i] > maxl)
                return -1;
        *q += len;
    }
    return 0;
}

/* The PLAIN values at [q, qe) of the n level entries at done (one value per entry at max definition),
 * appended to the column: floats, or length-prefixed strings. */
static int decode_page_values(fn_parquet_reader *r, int c, const unsigned char *q, const unsigned char *qe,
                              size_t done, size_t n, fn_error *err)
{
    coldata *cd = &r->cd[c];
    const uint8_t *def = cd->def + done;
    size_t present = 0;
    for (size_t i = 0; i < n; i++)
        present += def[i] == r->max_def[c];
    if (c == 2 && r->elem_def < r->max_def[c]) {
        size_t nulls = 0;
        for (size_t i = 0; i < n; i++)
            nulls += def[i] >= r->elem_def && def[i] < r->max_def[c];
        if (nulls)
            return rfail(r, err, FN_EUNSUPPORTED, "null elements inside a list are not supported");
    }
    if (r->leaf_type[c] == PQ_FLOAT) {
        if ((size_t)(qe - q) < present * 4)
            return rfail(r, err, FN_EFORMAT, "page too short for its values");
        if (append_vals(cd, q, present * 4))
            return rfail(r, err, FN_ENOMEM, "out of memory");
        return FN_OK;
    }
    const unsigned char *s = q;
    for (size_t i = 0; i < present; i++) {
        if (qe - s < 4 || le32(s) > (size_t)(qe - s - 4))
            return rfail(r, err, FN_EFORMAT, "page too short for its strings");
        s += 4 + le32(s);
    }
    if (append_vals(cd, q, (size_t)(s - q)))
        return rfail(r, err, FN_ENOMEM, "out of memory");
    return FN_OK;
}

/* One page at *p (moved past it) of column c: its levels and values appended at *done (advanced). */
static int read_page(fn_parquet_reader *r, const col_chunk *cc, int c, const unsigned char **p,
                     const unsigned char *end, size_t *done, fn_error *err)
{
    page_hdr h;
    const unsigned char *body = NULL;
    int rc = read_page_header(r, c, cc->codec, *p, end, r->cd[c].nlev - *done, &h, &body, err);
    if (rc)
        return rc;
    *p = body + h.csize;
    unsigned char *page = NULL;
    if ((rc = decompress_page(r, cc->codec, &h, body, &page, err)))
        return rc;
    const unsigned char *q = page, *qe = page + h.usize;
    if (decode_page_levels(r, c, &h, &q, qe, *done))
        rc = rfail(r, err, FN_EFORMAT, "corrupt repetition/definition levels");
    if (!rc)
        rc = decode_page_values(r, c, q, qe, *done, (size_t)h.nvals, err);
    if (!rc)
        *done += (size_t)h.nvals;
    free(page);
    return rc;
}

/* Column chunk cc read whole into *out (free it), and column c's level arrays sized to its value count. */
static int read_chunk(fn_parquet_reader *r, const col_chunk *cc, int c, int64_t rows, unsigned char **out,
                      fn_error *err)
{
    coldata *cd = &r->cd[c];
    unsigned char *chunk = malloc((size_t)cc->comp_size + 1);
    if (!chunk)
        return rfail(r, err, FN_ENOMEM, "out of memory");
    int rc = read_at(r, cc->data_off, chunk, (size_t)cc->comp_size, err);
    if (!rc && (cc->num_values > (int64_t)1 << 31 || cc->num_values < rows))
        rc = rfail(r, err, FN_EFORMAT, "column chunk value count out of range");
    if (!rc) {
        cd->nlev = (size_t)cc->num_values;
        cd->def = calloc(cd->nlev + 1, 1);
        cd->rep = calloc(cd->nlev + 1, 1);
        if (!cd->def || !cd->rep)
            rc = rfail(r, err, FN_ENOMEM, "out of memory");
    }
    if (rc) {
        free(chunk);
        return rc;
    }
    *out = chunk;
    return FN_OK;
}

/* Column c of a row group: every page of its chunk, up to the declared value count. */
static int read_column(fn_parquet_reader *r, const col_chunk *cc, int c, int64_t rows, fn_error *err)
{
    unsigned char *chunk = NULL;
    int rc = read_chunk(r, cc, c, rows, &chunk, err);
    if (rc)
        return rc;
    const unsigned char *p = chunk, *end = chunk + cc->comp_size;
    size_t done = 0;
    while (!rc && done < r->cd[c].nlev)
        rc = read_page(r, cc, c, &p, end, &done, err);
    if (!rc && done != r->cd[c].nlev)
        rc = rfail(r, err, FN_EFORMAT, "column chunk has fewer values than declared");
    free(chunk);
    return rc;
}

static int load_group(fn_parquet_reader *r, int g, fn_error *err)
{
    free_cols(r);
    for (int c = 0; c < 3; c++) {
        int rc = read_column(r, &r->groups[g].col[c], c, r->groups[g].rows, err);
        if (rc)
            return rc;
    }
    /* string columns: one level per row */
    for (int c = 0; c < 2; c++)
        if ((int64_t)r->cd[c].nlev != r->groups[g].rows)
            return rfail(r, err, FN_EFORMAT, "string column value count differs from the row count");
    return FN_OK;
}

static int next_string(fn_parquet_reader *r, int c, const char **out, fn_error *err)
{
    coldata *cd = &r->cd[c];
    size_t li = r->lev_pos[c]++;
    size_t l = 0;
    const unsigned char *s = (const unsigned char *)"";
    if (cd->def[li] == r->max_def[c]) {
        if (cd->vlen - r->val_pos[c] < 4)
            return rfail(r, err, FN_EFORMAT, "string values exhausted");
        const unsigned char *p = cd->vals + r->val_pos[c];
        l = le32(p);
        s = p + 4;
        r->val_pos[c] += 4 + l;
    }
    if (l + 1 > r->scap[c - 0]) {
        char *b = realloc(r->sbuf[c], l + 1);
        if (!b)
            return rfail(r, err, FN_ENOMEM, "out of memory");
        r->sbuf[c] = b, r->scap[c] = l + 1;
    }
    memcpy(r->sbuf[c], s, l);
    r->sbuf[c][l] = 0;
    *out = r->sbuf[c];
    return FN_OK;
}

int fn_parquet_reader_next(fn_parquet_reader *r, fn_parquet_row *row, fn_error *err)
{
    if (!r || !row)
        return fn_fail(err, FN_EARG, "fn_parquet_reader_next: invalid arguments");
    while (r->cur_group < 0 || r->row_in_group >= r->groups[r->cur_group].rows) {
        if (r->cur_group + 1 >= r->ngroups)
            return 0;
        r->cur_group++;
        r->row_in_group = 0;
        int rc = load_group(r, r->cur_group, err);
        if (rc) {
            r->cur_group = r->ngroups; /* stop here */
            r->row_in_group = 0;
            return rc;
        }
    }
    int rc;
    if ((rc = next_string(r, 0, &row->path, err)) || (rc = next_string(r, 1, &row->label, err)))
        return rc;
    /* list: entries from lev_pos until the next rep == 0 */
    coldata *cd = &r->cd[2];
    size_t start = r->lev_pos[2], endl = start + 1;
    if (start >= cd->nlev || cd->rep[start] != 0)
        return rfail(r, err, FN_EFORMAT, "list levels out of step with the rows");
    while (endl < cd->nlev && cd->rep[endl] != 0)
        endl++;
    size_t n = 0;
    for (size_t i = start; i < endl; i++)
        n += cd->def[i] == r->max_def[2];
    if (n > (cd->vlen - r->val_pos[2]) / 4)
        return rfail(r, err, FN_EFORMAT, "list values exhausted");
    if (n > r->vbcap) {
        float *v = realloc(r->vbuf, n * sizeof(float));
        if (!v)
            return rfail(r, err, FN_ENOMEM, "out of memory");
        r->vbuf = v, r->vbcap = n;
    }
    static const float no_values[1] = {0};
    if (n)
        memcpy(r->vbuf, cd->vals + r->val_pos[2], n * 4);
    r->val_pos[2] += n * 4;
    r->lev_pos[2] = endl;
    row->vec = n ? r->vbuf : no_values; /* never NULL */
    row->n = (int)n;
    r->row_in_group++;
    return 1;
}
