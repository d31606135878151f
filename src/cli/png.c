/*
 * PNG encoding (RFC 2083 / ISO 15948) and a tiny raster.  zlib compresses and checksums; rows
 * are filtered adaptively (the filter with the smallest residuals per row), which is what makes
 * a "night camera" frame compress well.
 */
#include "cli/png.h"

#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "util/alloc.h"

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* The scanlines as one zlib stream (zlib's best compression: a thumbnail is a few KiB). */
static void compress_scanlines(const uint8_t *data, size_t len, vg_buf_t *out)
{
    uLongf zlen = compressBound((uLong)len);
    Bytef *dst = (Bytef *)vg_buf_reserve(out, zlen);
    /* It fails only without memory, and allocation failure aborts everywhere in vigil. */
    if (compress2(dst, &zlen, data, (uLong)len, Z_BEST_COMPRESSION) != Z_OK)
        abort();
    out->len += zlen;
}

/* ---- PNG ---------------------------------------------------------------------------------- */

static void chunk(vg_buf_t *out, const char *type, const void *data, size_t len)
{
    uint8_t head[8], crc[4];
    put_be32(head, (uint32_t)len);
    memcpy(head + 4, type, 4);
    vg_buf_append(out, head, sizeof(head));
    vg_buf_append(out, data, len);
    uLong sum = crc32(crc32(0L, (const Bytef *)type, 4), (const Bytef *)data, (uInt)len);
    put_be32(crc, (uint32_t)sum);
    vg_buf_append(out, crc, sizeof(crc));
}

static int paeth(int a, int b, int c)
{
    int p = a + b - c, pa = p > a ? p - a : a - p, pb = p > b ? p - b : b - p,
        pc = p > c ? p - c : c - p;
    if (pa <= pb && pa <= pc)
        return a;
    return pb <= pc ? b : c;
}

/* Filters one row with filter type f (0 none, 1 sub, 2 up, 3 average, 4 paeth) into out and
 * returns the sum of the residuals as signed bytes: the usual guess at what compresses best. */
static unsigned filter_row(const uint8_t *cur, const uint8_t *up, size_t stride, int f,
                           uint8_t *out)
{
    unsigned cost = 0;
    for (size_t x = 0; x < stride; x++) {
        int a = x >= 3 ? cur[x - 3] : 0, b = up[x], c = x >= 3 ? up[x - 3] : 0, pred = 0;
        switch (f) {
        case 1: pred = a; break;
        case 2: pred = b; break;
        case 3: pred = (a + b) / 2; break;
        case 4: pred = paeth(a, b, c); break;
        default: break;
        }
        out[x] = (uint8_t)(cur[x] - pred);
        cost += out[x] < 128 ? out[x] : 256u - out[x];
    }
    return cost;
}

/* The filtered scanlines: each row is its filter type byte and the residuals. */
static uint8_t *filter_image(const vg_image_t *img, size_t *len)
{
    size_t stride = (size_t)img->width * 3;
    *len = (stride + 1) * (size_t)img->height;
    uint8_t *raw = vg_malloc(*len), *zero = vg_calloc(1, stride), *tmp = vg_malloc(stride);
    for (int y = 0; y < img->height; y++) {
        const uint8_t *cur = img->rgb + (size_t)y * stride, *up = y > 0 ? cur - stride : zero;
        uint8_t *row = raw + (size_t)y * (stride + 1);
        unsigned best = ~0u;
        for (int f = 0; f < 5; f++) {
            unsigned cost = filter_row(cur, up, stride, f, tmp);
            if (cost < best) {
                best = cost;
                row[0] = (uint8_t)f;
                memcpy(row + 1, tmp, stride);
            }
        }
    }
    vg_free(zero);
    vg_free(tmp);
    return raw;
}

void vg_png_encode(const vg_image_t *img, vg_buf_t *out)
{
    static const uint8_t signature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    vg_buf_append(out, signature, sizeof(signature));
    uint8_t ihdr[13];
    put_be32(ihdr, (uint32_t)img->width);
    put_be32(ihdr + 4, (uint32_t)img->height);
    ihdr[8] = 8;  /* bits per sample */
    ihdr[9] = 2;  /* color type: truecolor */
    ihdr[10] = 0; /* deflate */
    ihdr[11] = 0; /* adaptive filtering */
    ihdr[12] = 0; /* not interlaced */
    chunk(out, "IHDR", ihdr, sizeof(ihdr));
    size_t raw_len;
    uint8_t *raw = filter_image(img, &raw_len);
    vg_buf_t z = VG_BUF_INIT;
    compress_scanlines(raw, raw_len, &z);
    chunk(out, "IDAT", z.base, z.len);
    chunk(out, "IEND", "", 0);
    vg_buf_dispose(&z);
    vg_free(raw);
}

/* ---- raster ------------------------------------------------------------------------------- */

void vg_image_init(vg_image_t *img, int width, int height)
{
    img->width = width;
    img->height = height;
    img->rgb = vg_calloc((size_t)width * (size_t)height, 3);
}

void vg_image_dispose(vg_image_t *img)
{
    vg_free(img->rgb);
    img->rgb = NULL;
}

void vg_image_pixel(vg_image_t *img, int x, int y, uint32_t color)
{
    if (x < 0 || y < 0 || x >= img->width || y >= img->height)
        return;
    uint8_t *p = img->rgb + ((size_t)y * (size_t)img->width + (size_t)x) * 3;
    p[0] = (uint8_t)(color >> 16);
    p[1] = (uint8_t)(color >> 8);
    p[2] = (uint8_t)color;
}

/* Clips a rectangle to the canvas; returns 0 when nothing is left. */
static int clip(const vg_image_t *img, int *x, int *y, int *w, int *h)
{
    int x1 = *x + *w, y1 = *y + *h;
    *x = *x < 0 ? 0 : *x;
    *y = *y < 0 ? 0 : *y;
    x1 = x1 > img->width ? img->width : x1;
    y1 = y1 > img->height ? img->height : y1;
    *w = x1 - *x;
    *h = y1 - *y;
    return *w > 0 && *h > 0;
}

void vg_image_fill(vg_image_t *img, int x, int y, int w, int h, uint32_t color)
{
    vg_image_blend(img, x, y, w, h, color, 255);
}

void vg_image_blend(vg_image_t *img, int x, int y, int w, int h, uint32_t color, int alpha)
{
    if (!clip(img, &x, &y, &w, &h))
        return;
    int c[3] = {(int)(color >> 16) & 0xff, (int)(color >> 8) & 0xff, (int)color & 0xff};
    for (int j = y; j < y + h; j++) {
        uint8_t *p = img->rgb + ((size_t)j * (size_t)img->width + (size_t)x) * 3;
        for (int i = 0; i < w * 3; i++)
            p[i] = (uint8_t)((c[i % 3] * alpha + p[i] * (255 - alpha) + 127) / 255);
    }
}

void vg_image_frame(vg_image_t *img, int x, int y, int w, int h, int t, uint32_t color)
{
    vg_image_fill(img, x, y, w, t, color);
    vg_image_fill(img, x, y + h - t, w, t, color);
    vg_image_fill(img, x, y, t, h, color);
    vg_image_fill(img, x + w - t, y, t, h, color);
}

void vg_image_disc(vg_image_t *img, int cx, int cy, int r, uint32_t color)
{
    for (int dy = -r; dy <= r; dy++)
        for (int dx = -r; dx <= r; dx++)
            if (dx * dx + dy * dy <= r * r + r)
                vg_image_pixel(img, cx + dx, cy + dy, color);
}

/* 5x7 glyphs, row by row, '1' for ink. */
typedef struct glyph_s {
    char c;
    const char *rows;
} glyph_t;

static const glyph_t font[] = {
    {'0', "01110100011001110101110011000101110"}, {'1', "00100011000010000100001000010001110"},
    {'2', "01110100010000100010001000100011111"}, {'3', "11111000100010000010000011000101110"},
    {'4', "00010001100101010010111110001000010"}, {'5', "11111100001111000001000011000101110"},
    {'6', "00110010001000011110100011000101110"}, {'7', "11111000010001000100010000100001000"},
    {'8', "01110100011000101110100011000101110"}, {'9', "01110100011000101111000010001001100"},
    {'A', "01110100011000111111100011000110001"}, {'B', "11110100011000111110100011000111110"},
    {'C', "01110100011000010000100001000101110"}, {'D', "11100100101000110001100011001011100"},
    {'E', "11111100001000011110100001000011111"}, {'F', "11111100001000011110100001000010000"},
    {'G', "01110100011000010111100011000101111"}, {'H', "10001100011000111111100011000110001"},
    {'I', "01110001000010000100001000010001110"}, {'J', "00111000100001000010000101001001100"},
    {'K', "10001100101010011000101001001010001"}, {'L', "10000100001000010000100001000011111"},
    {'M', "10001110111010110101100011000110001"}, {'N', "10001100011100110101100111000110001"},
    {'O', "01110100011000110001100011000101110"}, {'P', "11110100011000111110100001000010000"},
    {'Q', "01110100011000110001101011001001101"}, {'R', "11110100011000111110101001001010001"},
    {'S', "01111100001000001110000010000111110"}, {'T', "11111001000010000100001000010000100"},
    {'U', "10001100011000110001100011000101110"}, {'V', "10001100011000110001100010101000100"},
    {'W', "10001100011000110101101011010101010"}, {'X', "10001100010101000100010101000110001"},
    {'Y', "10001100011000101010001000010000100"}, {'Z', "11111000010001000100010001000011111"},
    {':', "00000011000110000000011000110000000"}, {'-', "00000000000000011111000000000000000"},
    {'.', "00000000000000000000000000110001100"}, {'/', "00001000010001000100010001000010000"},
    {'%', "11000110010001000100010001001100011"}, {'#', "01010010101111101010111110101001010"},
    {'(', "00010001000100001000010000010000010"}, {')', "01000001000001000010000100010001000"},
};

static const char *glyph_rows(char c)
{
    if (c >= 'a' && c <= 'z')
        c = (char)(c - 'a' + 'A');
    for (size_t i = 0; i < VG_ARRAY_SIZE(font); i++)
        if (font[i].c == c)
            return font[i].rows;
    return NULL;
}

int vg_image_text_width(const char *text, int scale)
{
    size_t n = strlen(text);
    return n == 0 ? 0 : (int)n * 6 * scale - scale;
}

int vg_image_text(vg_image_t *img, int x, int y, const char *text, int scale, uint32_t color)
{
    int width = vg_image_text_width(text, scale);
    for (int cx = x; *text != '\0'; text++, cx += 6 * scale) {
        const char *rows = glyph_rows(*text);
        for (int i = 0; rows != NULL && i < 35; i++)
            if (rows[i] == '1')
                vg_image_fill(img, cx + (i % 5) * scale, y + (i / 5) * scale, scale, scale, color);
    }
    return width;
}
