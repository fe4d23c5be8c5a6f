/*
 * tool_weights.h — where every tool finds the ResNet50 weights, one rule:
 * --weights FILE, else $FRUITNET_WEIGHTS, else weights/resnet50.fnw (a clone),
 * else <the executable's folder>/../share/fruitnet/resnet50.fnw (what
 * `make install PREFIX=...` installs beside the tools), else
 * FN_DEFAULT_WEIGHTS. Header-only, included by the tools that open a model.
 */
#ifndef FRUITNET_TOOL_WEIGHTS_H
#define FRUITNET_TOOL_WEIGHTS_H

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef FN_DEFAULT_WEIGHTS
#define FN_DEFAULT_WEIGHTS "/usr/local/share/fruitnet/resnet50.fnw"
#endif

/* The weight file to open, given the --weights argument (NULL when none). */
static inline const char *tool_weights(const char *given)
{
    static char buf[PATH_MAX + 64];
    const char *env = getenv("FRUITNET_WEIGHTS");
    if (given && *given)
        return given;
    if (env && *env)
        return env;
    if (access("weights/resnet50.fnw", R_OK) == 0)
        return "weights/resnet50.fnw";
    ssize_t n = readlink("/proc/self/exe", buf, PATH_MAX);
    char *slash = n > 0 && n < PATH_MAX ? (buf[n] = 0, strrchr(buf, '/')) : NULL;
    if (slash) {
        strcpy(slash, "/../share/fruitnet/resnet50.fnw");
        if (access(buf, R_OK) == 0)
            return buf;
    }
    return FN_DEFAULT_WEIGHTS;
}

#endif
