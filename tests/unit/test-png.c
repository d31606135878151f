/*
 * Tests of the PNG encoder and raster (src/cli/png.c): PNG files taken apart chunk by chunk
 * (signature, IHDR, every CRC), inflated to width*height*3+height bytes and unfiltered (by an
 * independent reading of the PNG filters) back to exactly the canvas; drawing and the font.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <zlib.h>

#include "cli/png.h"
#include "util/alloc.h"

static uint32_t rng_state = 12345;

static uint32_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 17;
    rng_state ^= rng_state << 5;
    return rng_state;
}

/* Inflates into a buffer of exactly `expect` bytes (plus one, to catch a longer stream) and
 * returns the inflated size. */
static unsigned long inflate_idat(const vg_buf_t *z, uint8_t *out, size_t expect)
{
    uLongf n = (uLongf)expect + 1;
    int rc = uncompress(out, &n, (const Bytef *)z->base, (uLong)z->len);
    if (rc != Z_OK)
        fail_msg("zlib uncompress failed with %d on a %zu byte stream", rc, z->len);
    return n;
}

/* ---- PNG files ---- */

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

typedef struct parsed_s {
    uint32_t width, height;
    vg_buf_t idat;
    int chunks;
} parsed_t;

/* Walks the chunks: IHDR first, IDATs together, IEND last and empty, every CRC right. */
static void parse_png(const vg_buf_t *png, parsed_t *out)
{
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    const uint8_t *p = (const uint8_t *)png->base, *end = p + png->len;
    assert_true(png->len > 8);
    assert_memory_equal(p, sig, 8);
    p += 8;
    memset(out, 0, sizeof(*out));
    int seen_iend = 0;
    while (p < end) {
        assert_false(seen_iend);
        assert_true(end - p >= 12);
        uint32_t len = be32(p);
        assert_true((size_t)(end - p) >= 12 + (size_t)len);
        const uint8_t *type = p + 4, *data = p + 8;
        uint32_t crc = be32(data + len);
        assert_int_equal(crc32(0L, type, 4 + len), crc);
        if (out->chunks == 0) {
            assert_memory_equal(type, "IHDR", 4);
            assert_int_equal(len, 13);
            out->width = be32(data);
            out->height = be32(data + 4);
            static const uint8_t rest[5] = {8, 2, 0, 0, 0};
            assert_memory_equal(data + 8, rest, 5);
        } else if (memcmp(type, "IDAT", 4) == 0) {
            vg_buf_append(&out->idat, data, len);
        } else {
            assert_memory_equal(type, "IEND", 4);
            assert_int_equal(len, 0);
            seen_iend = 1;
        }
        out->chunks++;
        p += 12 + len;
    }
    assert_true(seen_iend);
    assert_true(out->idat.len > 0);
}

static int paeth(int a, int b, int c)
{
    int p = a + b - c, pa = abs(p - a), pb = abs(p - b), pc = abs(p - c);
    return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
}

/* Undoes the row filters (an independent reading of PNG section 9) in place into rgb. */
static void unfilter(const uint8_t *raw, uint32_t w, uint32_t h, uint8_t *rgb)
{
    size_t stride = (size_t)w * 3;
    for (uint32_t y = 0; y < h; y++) {
        const uint8_t *in = raw + y * (stride + 1);
        uint8_t *cur = rgb + y * stride, *up = y > 0 ? cur - stride : NULL;
        int f = in[0];
        assert_in_range(f, 0, 4);
        for (size_t x = 0; x < stride; x++) {
            int a = x >= 3 ? cur[x - 3] : 0, b = up ? up[x] : 0, c = up && x >= 3 ? up[x - 3] : 0;
            int pred = f == 1 ? a : f == 2 ? b : f == 3 ? (a + b) / 2 : f == 4 ? paeth(a, b, c) : 0;
            cur[x] = (uint8_t)(in[1 + x] + pred);
        }
    }
}

static void check_png(const vg_image_t *img, size_t max_size)
{
    vg_buf_t png = VG_BUF_INIT;
    vg_png_encode(img, &png);
    assert_true(png.len <= max_size);
    parsed_t p;
    parse_png(&png, &p);
    assert_int_equal(p.width, img->width);
    assert_int_equal(p.height, img->height);
    size_t raw_len = (size_t)img->width * img->height * 3 + (size_t)img->height;
    uint8_t *raw = vg_malloc(raw_len + 1), *rgb = vg_malloc(raw_len);
    assert_int_equal(inflate_idat(&p.idat, raw, raw_len), raw_len);
    unfilter(raw, p.width, p.height, rgb);
    assert_memory_equal(rgb, img->rgb, (size_t)img->width * img->height * 3);
    vg_free(raw);
    vg_free(rgb);
    vg_buf_dispose(&p.idat);
    vg_buf_dispose(&png);
}

/* A thumbnail-like scene: gradient with sparse grain, shapes, a box and text. */
static void draw_scene(vg_image_t *img)
{
    for (int y = 0; y < img->height; y++)
        vg_image_fill(img, 0, y, img->width, 1, VG_RGB(10 + y / 3, 20 + y / 4, 30 + y / 5));
    for (int i = 0; i < img->width * img->height / 10; i++) {
        int x = (int)(rnd() % (uint32_t)img->width), y = (int)(rnd() % (uint32_t)img->height);
        vg_image_blend(img, x, y, 1, 1, VG_RGB(255, 255, 255), (int)(rnd() % 24));
    }
    vg_image_disc(img, 30, 20, 9, VG_RGB(90, 90, 60));
    vg_image_frame(img, 60, 25, 40, 50, 2, VG_RGB(80, 255, 120));
    vg_image_blend(img, 0, img->height - 11, img->width, 11, 0, 160);
    vg_image_text(img, 3, img->height - 9, "CAM-3 2026-11-22 05:00:00", 1, VG_RGB(255, 255, 255));
}

static void test_png_scene(void **state)
{
    (void)state;
    vg_image_t img;
    vg_image_init(&img, 160, 90);
    draw_scene(&img);
    check_png(&img, 20 * 1024);
    vg_image_dispose(&img);
}

static void test_png_sizes(void **state)
{
    (void)state;
    static const int sizes[][2] = {{1, 1}, {2, 3}, {7, 1}, {1, 9}, {33, 17}, {320, 180}};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        vg_image_t img;
        vg_image_init(&img, sizes[i][0], sizes[i][1]);
        for (size_t k = 0; k < (size_t)img.width * img.height * 3; k++)
            img.rgb[k] = (uint8_t)(k % 7 == 0 ? rnd() : k / 3);
        check_png(&img, 1u << 20);
        vg_image_dispose(&img);
    }
}

/* ---- raster ---- */

static const uint8_t *at(const vg_image_t *img, int x, int y)
{
    return img->rgb + ((size_t)y * img->width + x) * 3;
}

static void test_drawing_clips(void **state)
{
    (void)state;
    vg_image_t img;
    vg_image_init(&img, 10, 8);
    vg_image_fill(&img, -5, -5, 7, 7, VG_RGB(1, 2, 3)); /* covers (0..1, 0..1) */
    assert_int_equal(at(&img, 1, 1)[2], 3);
    assert_int_equal(at(&img, 2, 2)[0], 0);
    vg_image_fill(&img, 8, 6, 100, 100, VG_RGB(9, 9, 9));
    assert_int_equal(at(&img, 9, 7)[1], 9);
    vg_image_fill(&img, 20, 20, 5, 5, VG_RGB(255, 0, 0)); /* fully outside: nothing */
    vg_image_pixel(&img, -1, 3, VG_RGB(255, 0, 0));
    vg_image_pixel(&img, 3, 8, VG_RGB(255, 0, 0));
    vg_image_disc(&img, 0, 0, 30, VG_RGB(4, 5, 6)); /* mostly outside */
    assert_int_equal(at(&img, 9, 7)[0], 4);
    vg_image_blend(&img, 0, 0, 1, 1, VG_RGB(204, 104, 6), 128);
    assert_int_equal(at(&img, 0, 0)[0], (204 * 128 + 4 * 127 + 127) / 255);
    vg_image_frame(&img, 2, 2, 5, 4, 1, VG_RGB(7, 7, 7));
    assert_int_equal(at(&img, 2, 2)[0], 7);
    assert_int_equal(at(&img, 6, 5)[0], 7);
    assert_int_equal(at(&img, 4, 3)[0], 4); /* inside the frame: untouched */
    vg_image_dispose(&img);
}

static void test_text(void **state)
{
    (void)state;
    assert_int_equal(vg_image_text_width("", 1), 0);
    assert_int_equal(vg_image_text_width("AB", 1), 11);
    assert_int_equal(vg_image_text_width("AB", 2), 22);
    vg_image_t img;
    vg_image_init(&img, 12, 7);
    assert_int_equal(vg_image_text(&img, 0, 0, "1", 1, VG_RGB(255, 255, 255)), 5);
    /* The digit 1: the middle column is inked on every row but the foot's row has 3 pixels. */
    for (int y = 0; y < 7; y++)
        assert_int_equal(at(&img, 2, y)[0], 255);
    assert_int_equal(at(&img, 0, 0)[0], 0);
    assert_int_equal(at(&img, 1, 6)[0], 255);
    /* Lower case is drawn as capitals; unknown characters are blanks. */
    vg_image_t a, b;
    vg_image_init(&a, 20, 7);
    vg_image_init(&b, 20, 7);
    vg_image_text(&a, 0, 0, "ok~", 1, VG_RGB(255, 255, 255));
    vg_image_text(&b, 0, 0, "OK ", 1, VG_RGB(255, 255, 255));
    assert_memory_equal(a.rgb, b.rgb, 20 * 7 * 3);
    vg_image_dispose(&a);
    vg_image_dispose(&b);
    vg_image_dispose(&img);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_png_scene),
        cmocka_unit_test(test_png_sizes),
        cmocka_unit_test(test_drawing_clips),
        cmocka_unit_test(test_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
