/*
 * A small raster and PNG encoder for generated images (the demo fleet's alert thumbnails).
 *
 * vg_image_t is an 8-bit RGB canvas with the few drawing operations a camera still needs:
 * filled and outlined rectangles, translucent bars, discs and text in a built-in 5x7 font.
 * vg_png_encode writes it as a truecolor PNG (compressed with zlib).
 */
#ifndef VG_CLI_PNG_H
#define VG_CLI_PNG_H

#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

typedef struct vg_image_s {
    int width, height;
    uint8_t *rgb; /* width * height * 3 bytes, rows top to bottom */
} vg_image_t;

/* Colors are 0xRRGGBB. */
#define VG_RGB(r, g, b) ((uint32_t)(((r)&0xff) << 16 | ((g)&0xff) << 8 | ((b)&0xff)))

/* A black canvas of width x height (each 1..4096). */
void vg_image_init(vg_image_t *img, int width, int height);
void vg_image_dispose(vg_image_t *img);

/* Drawing clips to the canvas: any coordinates are allowed. */
void vg_image_pixel(vg_image_t *img, int x, int y, uint32_t color);
void vg_image_fill(vg_image_t *img, int x, int y, int w, int h, uint32_t color);
/* Mixes color over the rectangle with opacity alpha (0 transparent .. 255 opaque). */
void vg_image_blend(vg_image_t *img, int x, int y, int w, int h, uint32_t color, int alpha);
/* A rectangle's outline, `thickness` pixels wide, inside the rectangle. */
void vg_image_frame(vg_image_t *img, int x, int y, int w, int h, int thickness, uint32_t color);
void vg_image_disc(vg_image_t *img, int cx, int cy, int radius, uint32_t color);
/* Text in the 5x7 font, each font pixel scale x scale; letters are drawn as capitals and
 * characters the font lacks as blanks.  Returns the width drawn (vg_image_text_width). */
int vg_image_text(vg_image_t *img, int x, int y, const char *text, int scale, uint32_t color);
int vg_image_text_width(const char *text, int scale);
#define VG_FONT_HEIGHT 7

/* Appends the image as a PNG (8-bit RGB, not interlaced). */
void vg_png_encode(const vg_image_t *img, vg_buf_t *out);

#endif
