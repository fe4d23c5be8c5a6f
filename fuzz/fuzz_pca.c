/* libFuzzer harness: PCA statistics and model files on arbitrary bytes. */
#define _GNU_SOURCE
#include "fruitnet.h"

#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int fd = memfd_create("fuzz.pca", 0);
    if (fd < 0)
        return 0;
    if (write(fd, data, size) != (ssize_t)size) {
        close(fd);
        return 0;
    }
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    fn_pca_stats *s;
    fn_pca_model *m;
    fn_error e;
    if (fn_pca_stats_load(path, &s, &e) == FN_OK)
        fn_pca_stats_free(s);
    if (fn_pca_model_load(path, &m, &e) == FN_OK) {
        float x[64] = {0}, y[64];
        if (fn_pca_model_dim(m) <= 64 && fn_pca_model_k(m) <= 64)
            fn_pca_transform(m, x, y);
        fn_pca_model_free(m);
    }
    close(fd);
    return 0;
}
