/*
 * classifier.h — private: the classifier's structure, shared by classifier.c
 * (file, inference) and classifier_train.c (training), and the per-ISA
 * kernels of training (classifier_impl.h, compiled once per vector width).
 */
#ifndef FRUITNET_CLASSIFIER_H
#define FRUITNET_CLASSIFIER_H

#include "fruitnet.h"

#include <math.h>
#include <stddef.h>

struct fn_classifier {
    int dim, nclasses;
    int transform;      /* FN_CLS_IDENTITY or FN_CLS_SQRT, before standardisation */
    char **names;       /* nclasses pointers into names_buf */
    char *names_buf;    /* the names, each NUL-terminated */
    size_t names_bytes;
    char *info;         /* "key=value\n" lines */
    double *mean, *scale; /* [dim] standardisation: z = (x - mean) / scale */
    double *W;          /* [nclasses][dim] weights on z */
    double *b;          /* [nclasses] intercepts */
    float *centroids;   /* [nclasses][dim] class means of z (file version 2); NULL: none (version 1) */
    double dist_threshold; /* fn_classifier_distance's threshold; 0 with no centroids */
};

/* A classifier with these names and info, numbers zeroed; NULL when out of memory. */
fn_classifier *fn_cls_alloc(int dim, int nclasses, const char *const *names, const char *info);
/* FNV-1a of everything the classifier computes with (transform, names, standardisation, weights). */
uint64_t fn_cls_fingerprint(const fn_classifier *c);
/* 1 when s is valid UTF-8. */
int fn_cls_valid_utf8(const char *s);
/* The feature transform t applied before standardisation. */
static inline double fn_cls_transform(int transform, double v)
{
    return transform == FN_CLS_SQRT ? (v < 0 ? -sqrt(-v) : sqrt(v)) : v;
}

#endif
