/* thrift.c — Thrift compact protocol writer and bounds-checked reader. */
#include "thrift.h"

#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 32

void tb_bytes(tbuf *b, const void *data, size_t n)
{
    if (b->oom)
        return;
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n)
            cap *= 2;
        unsigned char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p, b->cap = cap;
    }
    memcpy(b->p + b->n, data, n);
    b->n += n;
}

void tb_u32le(tbuf *b, uint32_t v)
{
    unsigned char x[4] = {(unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16), (unsigned char)(v >> 24)};
    tb_bytes(b, x, 4);
}

void tb_varint(tbuf *b, uint64_t v)
{
    unsigned char x[10];
    int n = 0;
    do {
        x[n] = (unsigned char)(v & 0x7f);
        v >>= 7;
        if (v)
            x[n] |= 0x80;
        n++;
    } while (v);
    tb_bytes(b, x, (size_t)n);
}

static uint64_t zz64(int64_t v) { return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63); }

void tb_field(tbuf *b, int16_t id, int type)
{
    int16_t *last = &b->last[b->depth];
    int delta = id - *last;
    if (delta > 0 && delta <= 15) {
        unsigned char c = (unsigned char)(delta << 4 | type);
        tb_bytes(b, &c, 1);
    } else {
        unsigned char c = (unsigned char)type;
        tb_bytes(b, &c, 1);
        tb_varint(b, zz64(id));
    }
    *last = id;
}

void tb_i32(tbuf *b, int16_t id, int32_t v) { tb_field(b, id, TT_I32), tb_varint(b, zz64(v)); }
void tb_i64(tbuf *b, int16_t id, int64_t v) { tb_field(b, id, TT_I64), tb_varint(b, zz64(v)); }
void tb_zz32(tbuf *b, int32_t v) { tb_varint(b, zz64(v)); }
void tb_bare_bin(tbuf *b, const void *s, size_t n) { tb_varint(b, n), tb_bytes(b, s, n); }
void tb_bin(tbuf *b, int16_t id, const void *s, size_t n) { tb_field(b, id, TT_BINARY), tb_bare_bin(b, s, n); }
void tb_str(tbuf *b, int16_t id, const char *s) { tb_bin(b, id, s, strlen(s)); }

void tb_list_begin(tbuf *b, int elem_type, uint32_t n)
{
    if (n < 15) {
        unsigned char c = (unsigned char)(n << 4 | (unsigned)elem_type);
        tb_bytes(b, &c, 1);
    } else {
        unsigned char c = (unsigned char)(0xf0 | elem_type);
        tb_bytes(b, &c, 1);
        tb_varint(b, n);
    }
}

void tb_list(tbuf *b, int16_t id, int elem_type, uint32_t n)
{
    tb_field(b, id, TT_LIST);
    tb_list_begin(b, elem_type, n);
}

static void push(tbuf *b)
{
    if (b->depth + 1 >= MAX_DEPTH) {
        b->oom = 1;
        return;
    }
    b->last[++b->depth] = 0;
}

void tb_struct_begin(tbuf *b, int16_t id) { tb_field(b, id, TT_STRUCT), push(b); }
void tb_elem_struct_begin(tbuf *b) { push(b); }

void tb_struct_end(tbuf *b)
{
    unsigned char c = 0;
    tb_bytes(b, &c, 1);
    if (b->depth > 0)
        b->depth--;
}

void tb_free(tbuf *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}

/* ---------------------------------------------------------------- reader */

uint64_t tr_varint(trd *r)
{
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (r->p >= r->end) {
            r->err = 1;
            return 0;
        }
        unsigned char c = *r->p++;
        v |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80))
            return v;
    }
    r->err = 1;
    return 0;
}

int64_t tr_zz(trd *r)
{
    uint64_t v = tr_varint(r);
    return (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
}

int tr_field(trd *r, int16_t *last, int16_t *id, int *type)
{
    if (r->err || r->p >= r->end) {
        r->err = 1;
        return 0;
    }
    unsigned char c = *r->p++;
    if (c == 0)
        return 0;
    *type = c & 0x0f;
    int delta = c >> 4;
    if (delta)
        *id = (int16_t)(*last + delta);
    else
        *id = (int16_t)tr_zz(r);
    *last = *id;
    if (*type == TT_STOP || *type > TT_STRUCT) {
        r->err = 1;
        return 0;
    }
    return !r->err;
}

const unsigned char *tr_bin(trd *r, size_t *len)
{
    uint64_t n = tr_varint(r);
    if (r->err || n > (uint64_t)(r->end - r->p)) {
        r->err = 1;
        *len = 0;
        return NULL;
    }
    const unsigned char *s = r->p;
    r->p += n;
    *len = (size_t)n;
    return s;
}

uint32_t tr_list(trd *r, int *elem_type)
{
    if (r->p >= r->end) {
        r->err = 1;
        return 0;
    }
    unsigned char c = *r->p++;
    uint64_t n = c >> 4;
    *elem_type = c & 0x0f;
    if (n == 15)
        n = tr_varint(r);
    /* every element takes at least one byte, except bools packed in lists (still 1 byte each) */
    if (r->err || n > (uint64_t)(r->end - r->p)) {
        r->err = 1;
        return 0;
    }
    return (uint32_t)n;
}

void tr_skip(trd *r, int type)
{
    if (r->err)
        return;
    if (++r->depth > MAX_DEPTH) {
        r->err = 1;
        return;
    }
    switch (type) {
    case TT_TRUE:
    case TT_FALSE:
        break;
    case TT_BYTE:
        if (r->p >= r->end)
            r->err = 1;
        else
            r->p++;
        break;
    case TT_I16:
    case TT_I32:
    case TT_I64:
        tr_varint(r);
        break;
    case TT_DOUBLE:
        if (r->end - r->p < 8)
            r->err = 1;
        else
            r->p += 8;
        break;
    case TT_BINARY: {
        size_t n;
        tr_bin(r, &n);
        break;
    }
    case TT_LIST:
    case TT_SET: {
        int et;
        uint32_t n = tr_list(r, &et);
        for (uint32_t i = 0; i < n && !r->err; i++)
            tr_skip(r, et == TT_TRUE || et == TT_FALSE ? TT_BYTE : et);
        break;
    }
    case TT_MAP: {
        uint64_t n = tr_varint(r);
        if (n == 0)
            break;
        if (r->p >= r->end || n > (uint64_t)(r->end - r->p)) {
            r->err = 1;
            break;
        }
        unsigned char kv = *r->p++;
        for (uint64_t i = 0; i < n && !r->err; i++) {
            tr_skip(r, kv >> 4);
            tr_skip(r, kv & 0x0f);
        }
        break;
    }
    case TT_STRUCT: {
        int16_t last = 0, id;
        int t;
        while (tr_field(r, &last, &id, &t))
            tr_skip(r, t);
        break;
    }
    default:
        r->err = 1;
    }
    r->depth--;
}
