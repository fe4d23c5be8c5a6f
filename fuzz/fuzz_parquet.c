/* libFuzzer harness: the Parquet reader (footer, page headers, pages) on arbitrary bytes. */
#define _GNU_SOURCE
#include "fruitnet.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int fd = memfd_create("fuzz.parquet", 0);
    if (fd < 0)
        return 0;
    if (write(fd, data, size) != (ssize_t)size) {
        close(fd);
        return 0;
    }
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    fn_parquet_reader *r;
    fn_error e;
    if (fn_parquet_reader_open(path, &r, &e) == FN_OK) {
        fn_parquet_row row;
        int64_t n = 0;
        while (fn_parquet_reader_next(r, &row, &e) == 1) {
            volatile float s = 0;
            for (int i = 0; i < row.n; i++) /* every value is readable */
                s += row.vec[i];
            if (row.path[0] == 1 && row.label[0] == 2)
                s = 0;
            n++;
        }
        if (n > fn_parquet_reader_rows(r))
            abort();
        fn_parquet_reader_close(r);
    }
    close(fd);
    return 0;
}
