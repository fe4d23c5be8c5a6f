/* libFuzzer harness: image decoding + PIL resize + preprocessing on arbitrary bytes. */
#include "fruitnet.h"

#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fn_image img;
    fn_error e;
    if (fn_image_decode(data, size, "fuzz", &img, &e) == FN_OK) {
        if (img.w < 1 || img.h < 1 || img.w > FN_IMAGE_MAX_SIDE || img.h > FN_IMAGE_MAX_SIDE ||
            (int64_t)img.w * img.h > FN_IMAGE_MAX_PIXELS)
            abort();
        /* the resize of the decoded pixels, up to 4 Mpx: beyond, a 64 Mpx image (a 188-byte progressive JPEG
         * of 8192 x 8192 decodes to one) takes seconds under the sanitizers and libFuzzer's timeout hits on a
         * busy machine; large resizes are covered by tests/test_image.c */
        static float in[224 * 224 * 3];
        if ((int64_t)img.w * img.h <= (int64_t)1 << 22 && fn_image_to_input(&img, FN_RESIZE_PIL, in, &e) != FN_OK)
            abort();
        fn_image_free(&img);
    }
    return 0;
}
