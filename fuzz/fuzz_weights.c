/* libFuzzer harness: the .fnw weight-file loader on arbitrary bytes. */
#include "fruitnet.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* the loader expects 64-byte aligned data, as mmap gives */
    void *buf = NULL;
    if (posix_memalign(&buf, 64, size ? size : 1) != 0)
        return 0;
    memcpy(buf, data, size);
    fn_weights *w;
    fn_error e;
    if (fn_weights_open_memory(buf, size, &w, &e) == FN_OK) {
        for (int i = 0; i < fn_weights_count(w); i++) {
            const fn_wtensor *t = fn_weights_at(w, i);
            /* every tensor lies inside the buffer */
            if ((const uint8_t *)t->data < (const uint8_t *)buf ||
                (const uint8_t *)t->data + t->count * (t->dtype == FN_DTYPE_F32 ? 4 : 1) > (const uint8_t *)buf + size)
                abort();
            if (fn_weights_find(w, t->name) == NULL)
                abort();
        }
        fn_weights_close(w);
    }
    free(buf);
    return 0;
}
