/*
 * thrift.h — Thrift compact protocol (private): a growable output buffer
 * with struct/field/list writers, and a bounds-checked reader that can skip
 * unknown fields. Used for Parquet footers and page headers.
 */
#ifndef FRUITNET_THRIFT_H
#define FRUITNET_THRIFT_H

#include <stddef.h>
#include <stdint.h>

enum { TT_STOP = 0, TT_TRUE = 1, TT_FALSE = 2, TT_BYTE = 3, TT_I16 = 4, TT_I32 = 5, TT_I64 = 6, TT_DOUBLE = 7,
       TT_BINARY = 8, TT_LIST = 9, TT_SET = 10, TT_MAP = 11, TT_STRUCT = 12 };

/* ---- output buffer ---- */
typedef struct tbuf {
    unsigned char *p;
    size_t n, cap;
    int oom;
    int16_t last[32]; /* last field id per struct depth */
    int depth;
} tbuf;

void tb_bytes(tbuf *b, const void *data, size_t n);
void tb_u32le(tbuf *b, uint32_t v);
void tb_varint(tbuf *b, uint64_t v);
void tb_field(tbuf *b, int16_t id, int type);      /* field header */
void tb_i32(tbuf *b, int16_t id, int32_t v);
void tb_i64(tbuf *b, int16_t id, int64_t v);
void tb_bin(tbuf *b, int16_t id, const void *s, size_t n);
void tb_str(tbuf *b, int16_t id, const char *s);
void tb_list(tbuf *b, int16_t id, int elem_type, uint32_t n); /* then write elements */
void tb_list_begin(tbuf *b, int elem_type, uint32_t n);       /* list header without a field */
void tb_zz32(tbuf *b, int32_t v);                             /* bare i32 list element */
void tb_bare_bin(tbuf *b, const void *s, size_t n);           /* bare binary list element */
void tb_struct_begin(tbuf *b, int16_t id);                    /* a struct-valued field */
void tb_elem_struct_begin(tbuf *b);                           /* a struct list element */
void tb_struct_end(tbuf *b);                                  /* STOP + pop */
void tb_free(tbuf *b);

/* ---- reader ---- */
typedef struct trd {
    const unsigned char *p, *end;
    int err;      /* sticky: set on any out-of-bounds or malformed input */
    int depth;
} trd;

uint64_t tr_varint(trd *r);
int64_t tr_zz(trd *r);
/* Next field of the current struct: returns 0 at STOP, else 1 with *id and *type. */
int tr_field(trd *r, int16_t *last, int16_t *id, int *type);
/* Binary value: pointer into the input and its length. */
const unsigned char *tr_bin(trd *r, size_t *len);
/* List header: element type and count (count bounded by remaining bytes). */
uint32_t tr_list(trd *r, int *elem_type);
/* Skip a value of the given type (nested structs/lists included, depth-limited). */
void tr_skip(trd *r, int type);
/* Bool fields carry their value in the type. */
static inline int tr_bool(int type) { return type == TT_TRUE; }

#endif
