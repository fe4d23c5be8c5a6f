/*
 * test_image.c — decoding, the PIL-exact resampler (bit for bit against
 * ../shared/golden/resize), preprocessing (bit for bit against the golden
 * input tensors) and bad inputs.
 */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STB_IMAGE_WRITE_STATIC
#pragma GCC diagnostic ignored "-Wunused-function"
#include <stb_image_write.h>

static void test_resize_golden_bit_exact(void **s)
{
    (void)s;
    const char *g = tu_golden_dir();
    TU_REQUIRE(g);
    FILE *m = fopen(tu_path(g, "resize/manifest.csv"), "r");
    assert_non_null(m);
    char line[512];
    int cases = 0;
    assert_non_null(fgets(line, sizeof line, m));
    while (fgets(line, sizeof line, m)) {
        char name[128];
        int w, h;
        if (sscanf(line, "%127[^,],%d,%d", name, &w, &h) != 3)
            continue;
        char rel[256];
        size_t n_in, n_ref;
        snprintf(rel, sizeof rel, "resize/%s.rgb.u8", name);
        uint8_t *in = tu_read_file(tu_path(g, rel), &n_in);
        snprintf(rel, sizeof rel, "resize/%s.224.rgb.u8", name);
        uint8_t *ref = tu_read_file(tu_path(g, rel), &n_ref);
        assert_non_null(in);
        assert_non_null(ref);
        assert_int_equal(n_in, (size_t)w * h * 3);
        assert_int_equal(n_ref, 224 * 224 * 3);
        uint8_t out[224 * 224 * 3];
        fn_error e;
        assert_int_equal(fn_resize_pil_bicubic(in, w, h, out, 224, 224, &e), FN_OK);
        int diff = 0, maxd = 0;
        for (size_t i = 0; i < n_ref; i++)
            if (out[i] != ref[i]) {
                diff++;
                int d = abs((int)out[i] - (int)ref[i]);
                maxd = d > maxd ? d : maxd;
            }
        /* stb's Catmull-Rom on the same pixels, for the record */
        uint8_t stb[224 * 224 * 3];
        assert_int_equal(fn_resize_stb(in, w, h, stb, 224, 224, &e), FN_OK);
        int sd = 0, smax = 0;
        for (size_t i = 0; i < n_ref; i++)
            if (stb[i] != ref[i]) {
                sd++;
                int d = abs((int)stb[i] - (int)ref[i]);
                smax = d > smax ? d : smax;
            }
        print_message("[ resize   ] %-18s %4dx%-4d PIL-exact: %d bytes differ (max %d); stb: %.1f%% differ, max %d\n",
                      name, w, h, diff, maxd, 100.0 * sd / n_ref, smax);
        assert_int_equal(diff, 0);
        free(in);
        free(ref);
        cases++;
    }
    fclose(m);
    assert_int_equal(cases, 11);
}

static void test_preprocess_golden_bit_exact(void **s)
{
    (void)s;
    const char *g = tu_golden_dir();
    TU_REQUIRE(g);
    const char *names[8] = {"g0_banana", "g1_apple_braeburn", "g2_lemon", "g3_pineapple",
                            "g4_strawberry", "g5_cocos", "g6_kiwi", "g7_tomato_1"};
    for (int i = 0; i < 8; i++) {
        char rel[256];
        size_t n;
        snprintf(rel, sizeof rel, "resize/%s.224.rgb.u8", names[i]);
        uint8_t *px = tu_read_file(tu_path(g, rel), &n);
        snprintf(rel, sizeof rel, "img8/%s.input.f32", names[i]);
        float *ref = tu_read_f32(tu_path(g, rel), 224 * 224 * 3);
        assert_non_null(px);
        assert_non_null(ref);
        float *out = malloc(224 * 224 * 3 * sizeof(float));
        fn_preprocess_rgb224(px, out);
        assert_memory_equal(out, ref, 224 * 224 * 3 * sizeof(float));
        /* and through the whole path from the PIL-decoded pixels: resize + preprocess */
        snprintf(rel, sizeof rel, "resize/%s.rgb.u8", names[i]);
        fn_image img = {100, 100, tu_read_file(tu_path(g, rel), &n)};
        assert_non_null(img.rgb);
        assert_int_equal(fn_image_to_input(&img, FN_RESIZE_PIL, out, NULL), FN_OK);
        assert_memory_equal(out, ref, 224 * 224 * 3 * sizeof(float));
        free(img.rgb);
        free(px);
        free(ref);
        free(out);
    }
}

/* stb_image vs PIL (libjpeg-turbo) decoding of the same JPEGs: small differences only. */
static void test_jpeg_decode_close_to_pil(void **s)
{
    (void)s;
    const char *g = tu_golden_dir(), *sample = tu_sample_dir();
    TU_REQUIRE(g);
    TU_REQUIRE(sample);
    const char *names[8] = {"g0_banana", "g1_apple_braeburn", "g2_lemon", "g3_pineapple",
                            "g4_strawberry", "g5_cocos", "g6_kiwi", "g7_tomato_1"};
    const char *paths[8] = {"Banana/108_100.jpg", "Apple Braeburn/321_100.jpg", "Lemon/321_100.jpg",
                            "Pineapple/15_100.jpg", "Strawberry/321_100.jpg", "Cocos/0_100.jpg", "Kiwi/39_100.jpg",
                            "Tomato 1/186_100.jpg"};
    int worst = 0;
    double worst_frac = 0;
    for (int i = 0; i < 8; i++) {
        fn_image img;
        fn_error e;
        if (fn_image_load(tu_path(sample, paths[i]), &img, &e) != FN_OK)
            fail_msg("%s", e.msg);
        assert_int_equal(img.w, 100);
        assert_int_equal(img.h, 100);
        char rel[256];
        size_t n;
        snprintf(rel, sizeof rel, "resize/%s.rgb.u8", names[i]);
        uint8_t *ref = tu_read_file(tu_path(g, rel), &n);
        assert_int_equal(n, 100 * 100 * 3);
        int maxd = 0, nd = 0;
        for (size_t k = 0; k < n; k++) {
            int d = abs((int)img.rgb[k] - (int)ref[k]);
            nd += d != 0;
            maxd = d > maxd ? d : maxd;
        }
        worst = maxd > worst ? maxd : worst;
        worst_frac = (double)nd / n > worst_frac ? (double)nd / n : worst_frac;
        free(ref);
        fn_image_free(&img);
    }
    print_message("[ decode   ] stb_image vs PIL on the 8 golden JPEGs: max diff %d levels, worst %.1f%% of values differ\n",
                  worst, 100 * worst_frac);
    assert_true(worst <= 8);
    assert_true(worst_frac < 0.2);
}

static void test_resize_properties(void **s)
{
    (void)s;
    int sizes[][4] = {{1, 1, 224, 224}, {7, 3, 224, 224}, {300, 1, 224, 224}, {1, 500, 13, 224},
                      {224, 224, 224, 224}, {640, 480, 17, 5}, {5, 5, 1, 1}};
    for (size_t c = 0; c < sizeof sizes / sizeof sizes[0]; c++) {
        int sw = sizes[c][0], sh = sizes[c][1], dw = sizes[c][2], dh = sizes[c][3];
        uint8_t *in = malloc((size_t)sw * sh * 3), *out = malloc((size_t)dw * dh * 3);
        for (int i = 0; i < sw * sh * 3; i++)
            in[i] = (uint8_t)(i % 3 == 0 ? 200 : i % 3 == 1 ? 17 : 99);
        assert_int_equal(fn_resize_pil_bicubic(in, sw, sh, out, dw, dh, NULL), FN_OK);
        for (int i = 0; i < dw * dh * 3; i++) /* a constant image stays constant */
            assert_int_equal(out[i], i % 3 == 0 ? 200 : i % 3 == 1 ? 17 : 99);
        free(in);
        free(out);
    }
    /* identity size is a copy */
    uint8_t img[224 * 224 * 3], out[224 * 224 * 3];
    for (size_t i = 0; i < sizeof img; i++)
        img[i] = (uint8_t)(i * 7919 >> 3);
    assert_int_equal(fn_resize_pil_bicubic(img, 224, 224, out, 224, 224, NULL), FN_OK);
    assert_memory_equal(img, out, sizeof img);
    fn_error e;
    assert_int_equal(fn_resize_pil_bicubic(img, 0, 224, out, 224, 224, &e), FN_EARG);
    assert_int_equal(fn_resize_pil_bicubic(img, 224, 224, out, 100000, 224, &e), FN_ELIMIT);
}

static char tmpdir[64];

static const char *tmpfile_with(const char *name, const void *data, size_t n)
{
    static char p[8][256];
    static int k;
    char *b = p[k++ & 7];
    snprintf(b, 256, "%s/%s", tmpdir, name);
    FILE *f = fopen(b, "wb");
    assert_non_null(f);
    if (n)
        assert_int_equal(fwrite(data, 1, n, f), n);
    fclose(f);
    return b;
}

static void write_func(void *ctx, void *data, int size)
{
    struct { unsigned char *p; size_t n; } *b = ctx;
    b->p = realloc(b->p, b->n + (size_t)size);
    memcpy(b->p + b->n, data, (size_t)size);
    b->n += (size_t)size;
}

static void test_formats_and_bad_inputs(void **s)
{
    (void)s;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/fruitnet-test-image-XXXXXX");
    assert_non_null(mkdtemp(tmpdir));
    fn_image img;
    fn_error e;
    float *in = malloc(224 * 224 * 3 * sizeof(float));
    /* grey, grey+alpha, RGB, RGBA PNGs and a JPEG, generated here */
    uint8_t px[32 * 20 * 4];
    for (size_t i = 0; i < sizeof px; i++)
        px[i] = (uint8_t)(i * 31);
    for (int comp = 1; comp <= 4; comp++) {
        struct { unsigned char *p; size_t n; } b = {0};
        assert_true(stbi_write_png_to_func(write_func, &b, 32, 20, comp, px, 32 * comp));
        char name[32];
        snprintf(name, sizeof name, "c%d.png", comp);
        assert_int_equal(fn_image_load(tmpfile_with(name, b.p, b.n), &img, &e), FN_OK);
        assert_int_equal(img.w, 32);
        assert_int_equal(img.h, 20);
        /* RGB expansion: grey -> equal channels; alpha dropped */
        if (comp <= 2)
            assert_true(img.rgb[0] == img.rgb[1] && img.rgb[1] == img.rgb[2]);
        else
            assert_memory_equal(img.rgb, px, 3);
        fn_image_free(&img);
        assert_int_equal(fn_input_from_memory(b.p, b.n, name, FN_RESIZE_PIL, in, &e), FN_OK);
        assert_int_equal(fn_input_from_memory(b.p, b.n, name, FN_RESIZE_STB, in, &e), FN_OK);
        free(b.p);
    }
    /* a small JPEG from the fuzz seed corpus (stb_image_write's JPEG encoder trips UBSan itself) */
    struct { unsigned char *p; size_t n; } j = {0};
    j.p = tu_read_file("fuzz/corpus/image/rgb8.jpg", &j.n);
    assert_non_null(j.p);
    /* truncated at every length: an error naming the file, or a decoded image; never a crash */
    for (size_t cut = 0; cut < j.n; cut += 7) {
        const char *p = tmpfile_with("cut.jpg", j.p, cut);
        int rc = fn_image_load(p, &img, &e);
        if (rc == FN_OK) {
            assert_int_equal(img.w, 8);
            fn_image_free(&img);
        } else {
            assert_non_null(strstr(e.msg, "cut.jpg"));
        }
    }
    free(j.p);
    /* empty, garbage, nonexistent, directory */
    assert_int_equal(fn_image_load(tmpfile_with("empty.jpg", "", 0), &img, &e), FN_EIMAGE);
    assert_non_null(strstr(e.msg, "empty.jpg: empty file"));
    assert_int_equal(fn_image_load(tmpfile_with("junk.png", "GIF89a not really", 17), &img, &e), FN_EIMAGE);
    assert_non_null(strstr(e.msg, "junk.png"));
    assert_int_equal(fn_image_load("/nonexistent/x.jpg", &img, &e), FN_EIO);
    assert_non_null(strstr(e.msg, "/nonexistent/x.jpg"));
    assert_int_equal(fn_image_load(tmpdir, &img, &e), FN_EIO);
    assert_non_null(strstr(e.msg, "directory"));
    /* a PNG declaring 60000 x 60000 (valid CRC) is refused before any allocation */
    unsigned char png[33] = {0x89, 'P', 'N', 'G', 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13, 'I', 'H', 'D', 'R',
                             0, 0, 0xea, 0x60, 0, 0, 0xea, 0x60, 8, 2, 0, 0, 0};
    uLong crc = crc32(0, png + 12, 17);
    png[29] = (unsigned char)(crc >> 24), png[30] = (unsigned char)(crc >> 16), png[31] = (unsigned char)(crc >> 8),
    png[32] = (unsigned char)crc;
    assert_int_equal(fn_image_decode(png, sizeof png, "huge.png", &img, &e), FN_ELIMIT);
    assert_non_null(strstr(e.msg, "60000x60000"));
    /* a JPEG SOF declaring 65000 x 65000 */
    unsigned char jpg[] = {0xFF, 0xD8, 0xFF, 0xC0, 0, 17, 8, 0xFD, 0xE8, 0xFD, 0xE8, 3, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1};
    assert_int_equal(fn_image_decode(jpg, sizeof jpg, "huge.jpg", &img, &e), FN_ELIMIT);
    /* fuzzer finding: a Huffman table of more than 256 codes made Debian's stb_image write out of bounds */
    assert_int_equal(fn_image_load("tests/regress/stb-dht-overflow.jpg", &img, &e), FN_EIMAGE);
    assert_non_null(strstr(e.msg, "Huffman"));
    free(in);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resize_golden_bit_exact),   cmocka_unit_test(test_preprocess_golden_bit_exact),
        cmocka_unit_test(test_jpeg_decode_close_to_pil),  cmocka_unit_test(test_resize_properties),
        cmocka_unit_test(test_formats_and_bad_inputs),
    };
    return cmocka_run_group_tests_name("image", tests, NULL, NULL);
}
