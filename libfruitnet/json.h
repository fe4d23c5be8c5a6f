/* json.h — a small strict JSON parser (private): whole document -> tree. */
#ifndef FRUITNET_JSON_H
#define FRUITNET_JSON_H

#include <stddef.h>

typedef enum { JSON_NULL, JSON_BOOL, JSON_NUM, JSON_STR, JSON_ARR, JSON_OBJ } json_type;

typedef struct json {
    json_type type;
    double num;          /* JSON_NUM, JSON_BOOL (0/1) */
    char *str;           /* JSON_STR (NUL-terminated, unescaped) */
    char *key;           /* member name when inside an object */
    struct json *child;  /* first element/member */
    struct json *next;   /* next sibling */
    size_t len;          /* number of children */
} json;

/* Parse text[0..len); NULL on error with a reason (and byte offset) in why. */
json *json_parse(const char *text, size_t len, char *why, size_t why_len);
void json_free(json *j);
/* Member of an object by name, or NULL. */
const json *json_get(const json *obj, const char *key);
/* i-th element of an array, or NULL. */
const json *json_at(const json *arr, size_t i);

#endif
