/* json.c — strict JSON (RFC 8259) parser with depth and size limits. */
#include "json.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JSON_MAX_DEPTH 64

typedef struct parser {
    const char *s;
    size_t i, n;
    char *why;
    size_t why_len;
    int failed;
} parser;

static void fail(parser *p, const char *msg)
{
    if (!p->failed && p->why)
        snprintf(p->why, p->why_len, "JSON error at byte %zu: %s", p->i, msg);
    p->failed = 1;
}

static void ws(parser *p)
{
    while (p->i < p->n && (p->s[p->i] == ' ' || p->s[p->i] == '\t' || p->s[p->i] == '\n' || p->s[p->i] == '\r'))
        p->i++;
}

static json *node(parser *p, json_type t)
{
    json *j = calloc(1, sizeof *j);
    if (!j)
        fail(p, "out of memory");
    else
        j->type = t;
    return j;
}

static int hex4(parser *p, unsigned *out)
{
    if (p->n - p->i < 4)
        return 0;
    unsigned v = 0;
    for (int k = 0; k < 4; k++) {
        char c = p->s[p->i++];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
        else return 0;
    }
    *out = v;
    return 1;
}

static char *parse_string(parser *p)
{
    /* p->s[p->i] == '"' */
    p->i++;
    size_t cap = 16, n = 0;
    char *out = malloc(cap);
    if (!out) {
        fail(p, "out of memory");
        return NULL;
    }
    for (;;) {
        if (p->i >= p->n) {
            fail(p, "unterminated string");
            break;
        }
        unsigned char c = (unsigned char)p->s[p->i++];
        unsigned cp;
        if (c == '"') {
            out[n] = 0;
            return out;
        }
        if (c < 0x20) {
            fail(p, "control character in string");
            break;
        }
        if (n + 8 >= cap) {
            cap *= 2;
            char *t = realloc(out, cap);
            if (!t) {
                fail(p, "out of memory");
                break;
            }
            out = t;
        }
        if (c != '\\') {
            out[n++] = (char)c;
            continue;
        }
        if (p->i >= p->n) {
            fail(p, "unterminated escape");
            break;
        }
        c = (unsigned char)p->s[p->i++];
        switch (c) {
        case '"': out[n++] = '"'; continue;
        case '\\': out[n++] = '\\'; continue;
        case '/': out[n++] = '/'; continue;
        case 'b': out[n++] = '\b'; continue;
        case 'f': out[n++] = '\f'; continue;
        case 'n': out[n++] = '\n'; continue;
        case 'r': out[n++] = '\r'; continue;
        case 't': out[n++] = '\t'; continue;
        case 'u':
            if (!hex4(p, &cp)) {
                fail(p, "bad \\u escape");
                goto bad;
            }
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                unsigned lo;
                if (p->n - p->i < 6 || p->s[p->i] != '\\' || p->s[p->i + 1] != 'u') {
                    fail(p, "lone surrogate");
                    goto bad;
                }
                p->i += 2;
                if (!hex4(p, &lo) || lo < 0xDC00 || lo > 0xDFFF) {
                    fail(p, "bad surrogate pair");
                    goto bad;
                }
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                fail(p, "lone surrogate");
                goto bad;
            }
            if (cp < 0x80) {
                out[n++] = (char)cp;
            } else if (cp < 0x800) {
                out[n++] = (char)(0xC0 | (cp >> 6));
                out[n++] = (char)(0x80 | (cp & 0x3F));
            } else if (cp < 0x10000) {
                out[n++] = (char)(0xE0 | (cp >> 12));
                out[n++] = (char)(0x80 | ((cp >> 6) & 0x3F));
                out[n++] = (char)(0x80 | (cp & 0x3F));
            } else {
                out[n++] = (char)(0xF0 | (cp >> 18));
                out[n++] = (char)(0x80 | ((cp >> 12) & 0x3F));
                out[n++] = (char)(0x80 | ((cp >> 6) & 0x3F));
                out[n++] = (char)(0x80 | (cp & 0x3F));
            }
            continue;
        default:
            fail(p, "bad escape");
            goto bad;
        }
    }
bad:
    free(out);
    return NULL;
}

static json *value(parser *p, int depth);

static json *container(parser *p, int depth, int is_obj)
{
    json *j = node(p, is_obj ? JSON_OBJ : JSON_ARR), **tail;
    if (!j)
        return NULL;
    tail = &j->child;
    p->i++; /* [ or { */
    ws(p);
    char close = is_obj ? '}' : ']';
    if (p->i < p->n && p->s[p->i] == close) {
        p->i++;
        return j;
    }
    for (;;) {
        char *key = NULL;
        ws(p);
        if (is_obj) {
            if (p->i >= p->n || p->s[p->i] != '"') {
                fail(p, "expected a member name");
                break;
            }
            if (!(key = parse_string(p)))
                break;
            ws(p);
            if (p->i >= p->n || p->s[p->i] != ':') {
                free(key);
                fail(p, "expected ':'");
                break;
            }
            p->i++;
        }
        json *v = value(p, depth + 1);
        if (!v) {
            free(key);
            break;
        }
        v->key = key;
        *tail = v;
        tail = &v->next;
        j->len++;
        ws(p);
        if (p->i < p->n && p->s[p->i] == ',') {
            p->i++;
            continue;
        }
        if (p->i < p->n && p->s[p->i] == close) {
            p->i++;
            return j;
        }
        fail(p, is_obj ? "expected ',' or '}'" : "expected ',' or ']'");
        break;
    }
    json_free(j);
    return NULL;
}

static json *value(parser *p, int depth)
{
    if (depth > JSON_MAX_DEPTH) {
        fail(p, "nesting too deep");
        return NULL;
    }
    ws(p);
    if (p->i >= p->n) {
        fail(p, "unexpected end of input");
        return NULL;
    }
    char c = p->s[p->i];
    if (c == '{' || c == '[')
        return container(p, depth, c == '{');
    if (c == '"') {
        json *j = node(p, JSON_STR);
        if (j && !(j->str = parse_string(p))) {
            free(j);
            return NULL;
        }
        return j;
    }
    static const struct { const char *w; json_type t; double v; } lit[] = {
        {"true", JSON_BOOL, 1}, {"false", JSON_BOOL, 0}, {"null", JSON_NULL, 0}};
    for (int k = 0; k < 3; k++) {
        size_t l = strlen(lit[k].w);
        if (p->n - p->i >= l && !memcmp(p->s + p->i, lit[k].w, l)) {
            p->i += l;
            json *j = node(p, lit[k].t);
            if (j)
                j->num = lit[k].v;
            return j;
        }
    }
    /* number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
    size_t st = p->i;
    if (p->i < p->n && p->s[p->i] == '-')
        p->i++;
    size_t digits = p->i;
    while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9')
        p->i++;
    if (p->i == digits) {
        fail(p, "unexpected character");
        return NULL;
    }
    if (p->i < p->n && p->s[p->i] == '.') {
        p->i++;
        size_t f = p->i;
        while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9')
            p->i++;
        if (p->i == f) {
            fail(p, "bad number");
            return NULL;
        }
    }
    if (p->i < p->n && (p->s[p->i] == 'e' || p->s[p->i] == 'E')) {
        p->i++;
        if (p->i < p->n && (p->s[p->i] == '+' || p->s[p->i] == '-'))
            p->i++;
        size_t e = p->i;
        while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9')
            p->i++;
        if (p->i == e) {
            fail(p, "bad exponent");
            return NULL;
        }
    }
    char buf[64];
    size_t len = p->i - st;
    if (len >= sizeof buf) {
        fail(p, "number too long");
        return NULL;
    }
    memcpy(buf, p->s + st, len);
    buf[len] = 0;
    json *j = node(p, JSON_NUM);
    if (j)
        j->num = strtod(buf, NULL);
    return j;
}

json *json_parse(const char *text, size_t len, char *why, size_t why_len)
{
    parser p = {text, 0, len, why, why_len, 0};
    json *j = value(&p, 0);
    if (j) {
        ws(&p);
        if (p.i != p.n) {
            fail(&p, "trailing characters");
            json_free(j);
            j = NULL;
        }
    }
    return j;
}

void json_free(json *j)
{
    while (j) {
        json *next = j->next;
        json_free(j->child);
        free(j->str);
        free(j->key);
        free(j);
        j = next;
    }
}

const json *json_get(const json *obj, const char *key)
{
    if (!obj || obj->type != JSON_OBJ)
        return NULL;
    for (const json *c = obj->child; c; c = c->next)
        if (c->key && !strcmp(c->key, key))
            return c;
    return NULL;
}

const json *json_at(const json *arr, size_t i)
{
    if (!arr || arr->type != JSON_ARR)
        return NULL;
    const json *c = arr->child;
    while (c && i--)
        c = c->next;
    return c;
}
