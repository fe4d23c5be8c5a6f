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
        static float in[224 * 224 * 3];
        if (fn_image_to_input(&img, FN_RESIZE_PIL, in, &e) != FN_OK)
            abort();
        fn_image_free(&img);
    }
    return 0;
}
