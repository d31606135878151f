/*
 * PNG encoding (RFC 2083 / ISO 15948) with a self-made zlib stream, and a tiny raster.
 *
 * Compression: greedy LZ77 over a 32 KiB window (hash chains), then one deflate block with
 * dynamic Huffman codes (RFC 1951 3.2.7).  Dynamic codes matter here: a "night camera" frame
 * is mostly small filter residuals, which fixed codes would spend 8 bits on.
 */
#include "app/png.h"

#include <string.h>

#include "util/alloc.h"

/* ---- checksums ---------------------------------------------------------------------------- */

/* Bitwise, without a table: a thumbnail is a few KiB, and no shared state means no init race. */
uint32_t vg_crc32(uint32_t crc, const void *data, size_t len)
{
    const uint8_t *p = data;
    crc = ~crc;
    for (size_t i = 0; i < len; i++) {
        crc ^= p[i];
        for (int k = 0; k < 8; k++)
            crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
    }
    return ~crc;
}

uint32_t vg_adler32(uint32_t adler, const void *data, size_t len)
{
    const uint8_t *p = data;
    uint32_t a = adler & 0xffffu, b = adler >> 16;
    for (size_t i = 0; i < len; i++) {
        a = (a + p[i]) % 65521u;
        b = (b + a) % 65521u;
    }
    return b << 16 | a;
}

/* ---- bit output (deflate packs bits from the least significant end) ------------------------ */

typedef struct bits_s {
    vg_buf_t *out;
    uint64_t acc;
    int n;
} bits_t;

static void put_bits(bits_t *b, uint32_t value, int count)
{
    b->acc |= (uint64_t)value << b->n;
    b->n += count;
    while (b->n >= 8) {
        uint8_t byte = (uint8_t)b->acc;
        vg_buf_append(b->out, &byte, 1);
        b->acc >>= 8;
        b->n -= 8;
    }
}

static void flush_bits(bits_t *b)
{
    if (b->n > 0)
        put_bits(b, 0, 8 - b->n);
}

/* ---- LZ77 --------------------------------------------------------------------------------- */

#define WINDOW    32768
#define HASH_BITS 15
#define MAX_CHAIN 64
#define MIN_MATCH 3
#define MAX_MATCH 258

/* A literal (dist 0, len is the byte) or a back reference. */
typedef struct token_s {
    uint16_t len;
    uint16_t dist;
} token_t;

typedef struct matcher_s {
    const uint8_t *d;
    size_t n;
    int32_t *head; /* hash -> latest position */
    int32_t *prev; /* position -> previous position with the same hash */
} matcher_t;

static uint32_t hash3(const uint8_t *p)
{
    uint32_t v = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16;
    return (v * 2654435761u) >> (32 - HASH_BITS);
}

static void insert(matcher_t *m, size_t pos)
{
    if (pos + MIN_MATCH > m->n)
        return;
    uint32_t h = hash3(m->d + pos);
    m->prev[pos] = m->head[h];
    m->head[h] = (int32_t)pos;
}

static size_t longest_match(const matcher_t *m, size_t pos, size_t *dist)
{
    size_t best = 0, limit = m->n - pos < MAX_MATCH ? m->n - pos : MAX_MATCH;
    if (limit < MIN_MATCH)
        return 0;
    int32_t cand = m->head[hash3(m->d + pos)];
    for (int chain = MAX_CHAIN; cand >= 0 && pos - (size_t)cand <= WINDOW && chain > 0; chain--) {
        const uint8_t *a = m->d + cand, *b = m->d + pos;
        size_t l = 0;
        while (l < limit && a[l] == b[l])
            l++;
        if (l > best) {
            best = l;
            *dist = pos - (size_t)cand;
            if (l == limit)
                break;
        }
        cand = m->prev[cand];
    }
    return best >= MIN_MATCH ? best : 0;
}

/* Greedy parse of d into tokens (at most n of them).  Returns the count. */
static size_t lz77(const uint8_t *d, size_t n, token_t *tok)
{
    matcher_t m = {d, n, vg_malloc(sizeof(int32_t) << HASH_BITS), vg_malloc((n + 1) * 4)};
    memset(m.head, 0xff, sizeof(int32_t) << HASH_BITS);
    size_t nt = 0;
    for (size_t i = 0; i < n;) {
        size_t dist = 0, len = longest_match(&m, i, &dist);
        if (len == 0) {
            tok[nt++] = (token_t){d[i], 0};
            len = 1;
        } else {
            tok[nt++] = (token_t){(uint16_t)len, (uint16_t)dist};
        }
        for (size_t k = 0; k < len; k++)
            insert(&m, i + k);
        i += len;
    }
    vg_free(m.head);
    vg_free(m.prev);
    return nt;
}

/* ---- Huffman codes ------------------------------------------------------------------------ */

#define NUM_LIT  286
#define NUM_DIST 30
#define NUM_CL   19

static const uint16_t len_base[29] = {3,  4,  5,  6,   7,   8,   9,   10,  11, 13,
                                      15, 17, 19, 23,  27,  31,  35,  43,  51, 59,
                                      67, 83, 99, 115, 131, 163, 195, 227, 258};
static const uint8_t len_extra[29] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2,
                                      2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0};
static const uint16_t dist_base[30] = {
    1,   2,   3,   4,   5,   7,    9,    13,   17,   25,   33,   49,   65,    97,    129,
    193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577};
static const uint8_t dist_extra[30] = {0, 0, 0, 0, 1, 1, 2, 2,  3,  3,  4,  4,  5,  5,  6,
                                       6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13};

static int len_code(unsigned len)
{
    int c = 28;
    while (len_base[c] > len)
        c--;
    return c;
}

static int dist_code(unsigned dist)
{
    int c = 29;
    while (dist_base[c] > dist)
        c--;
    return c;
}

static int count_used(const uint32_t *freq, int n)
{
    int used = 0;
    for (int i = 0; i < n; i++)
        used += freq[i] != 0;
    return used;
}

/* A code with a single symbol is incomplete, which inflaters may refuse: give every alphabet
 * at least two used symbols. */
static void ensure_two_used(uint32_t *freq, int n)
{
    for (int i = 0; i < n && count_used(freq, n) < 2; i++)
        if (freq[i] == 0)
            freq[i] = 1;
}

/* Huffman tree over the used symbols (O(n^2): alphabets are at most 286 symbols).  Writes each
 * symbol's code length (0 for unused) and returns the longest. */
static int tree_lengths(const uint32_t *freq, int n, uint8_t *len)
{
    uint64_t w[2 * NUM_LIT];
    int parent[2 * NUM_LIT], active[NUM_LIT], num = 0, next = n;
    for (int i = 0; i < n; i++)
        if (freq[i] != 0) {
            w[i] = freq[i];
            active[num++] = i;
        }
    while (num > 1) {
        int a = 0, b = 1;
        if (w[active[b]] < w[active[a]])
            a = 1, b = 0;
        for (int k = 2; k < num; k++) {
            if (w[active[k]] < w[active[a]])
                b = a, a = k;
            else if (w[active[k]] < w[active[b]])
                b = k;
        }
        w[next] = w[active[a]] + w[active[b]];
        parent[active[a]] = parent[active[b]] = next;
        int hi = a > b ? a : b, lo = a > b ? b : a;
        active[hi] = active[--num];
        active[lo] = next++;
    }
    int root = next - 1, longest = 0;
    for (int i = 0; i < n; i++) {
        len[i] = 0;
        if (freq[i] == 0)
            continue;
        int depth = 0;
        for (int p = i; p != root; p = parent[p])
            depth++;
        len[i] = (uint8_t)depth;
        longest = depth > longest ? depth : longest;
    }
    return longest;
}

/* Code lengths no longer than limit: flatten the frequencies until the tree fits (converges:
 * equal weights give a balanced tree, at most 9 levels for 286 symbols). */
static void code_lengths(const uint32_t *freq, int n, int limit, uint8_t *len)
{
    uint32_t f[NUM_LIT];
    memcpy(f, freq, (size_t)n * sizeof(*f));
    while (tree_lengths(f, n, len) > limit)
        for (int i = 0; i < n; i++)
            f[i] = f[i] != 0 ? (f[i] + 1) / 2 : 0;
}

static uint16_t reverse_bits(unsigned code, int len)
{
    unsigned r = 0;
    for (int i = 0; i < len; i++, code >>= 1)
        r = r << 1 | (code & 1u);
    return (uint16_t)r;
}

/* Canonical codes (RFC 1951 3.2.2), bit-reversed for the LSB-first writer. */
static void canonical_codes(const uint8_t *len, int n, uint16_t *code)
{
    int count[16] = {0}, next[16] = {0};
    for (int i = 0; i < n; i++)
        count[len[i]]++;
    count[0] = 0;
    for (int bits = 1, c = 0; bits < 16; bits++) {
        c = (c + count[bits - 1]) << 1;
        next[bits] = c;
    }
    for (int i = 0; i < n; i++)
        code[i] = len[i] != 0 ? reverse_bits((unsigned)next[len[i]]++, len[i]) : 0;
}

/* ---- the dynamic block -------------------------------------------------------------------- */

typedef struct block_s {
    uint8_t lit_len[NUM_LIT], dist_len[NUM_DIST];
    uint16_t lit_code[NUM_LIT], dist_code[NUM_DIST];
    int nlit, ndist;
} block_t;

static void plan_block(block_t *bk, const token_t *tok, size_t nt)
{
    uint32_t lf[NUM_LIT] = {0}, df[NUM_DIST] = {0};
    for (size_t i = 0; i < nt; i++) {
        if (tok[i].dist == 0) {
            lf[tok[i].len]++;
        } else {
            lf[257 + len_code(tok[i].len)]++;
            df[dist_code(tok[i].dist)]++;
        }
    }
    lf[256] = 1;
    ensure_two_used(lf, NUM_LIT);
    ensure_two_used(df, NUM_DIST);
    code_lengths(lf, NUM_LIT, 15, bk->lit_len);
    code_lengths(df, NUM_DIST, 15, bk->dist_len);
    canonical_codes(bk->lit_len, NUM_LIT, bk->lit_code);
    canonical_codes(bk->dist_len, NUM_DIST, bk->dist_code);
    for (bk->nlit = NUM_LIT; bk->nlit > 257 && bk->lit_len[bk->nlit - 1] == 0; bk->nlit--)
        ;
    for (bk->ndist = NUM_DIST; bk->ndist > 1 && bk->dist_len[bk->ndist - 1] == 0; bk->ndist--)
        ;
}

/* Run-length codes of the code lengths: 16 repeats the previous length 3-6 times, 17 and 18
 * are runs of 3-10 and 11-138 zeros.  Returns the number of symbols. */
static int rle_lengths(const uint8_t *seq, int n, uint8_t *sym, uint8_t *extra)
{
    int k = 0;
    for (int i = 0; i < n;) {
        int v = seq[i], run = 1;
        while (i + run < n && seq[i + run] == v)
            run++;
        if (v == 0 && run >= 3) {
            int r = run > 138 ? 138 : run;
            sym[k] = r >= 11 ? 18 : 17;
            extra[k++] = (uint8_t)(r >= 11 ? r - 11 : r - 3);
            i += r;
        } else if (v != 0 && run >= 4) {
            sym[k] = (uint8_t)v;
            extra[k++] = 0;
            i++;
            for (run--; run >= 3;) {
                int r = run > 6 ? 6 : run;
                sym[k] = 16;
                extra[k++] = (uint8_t)(r - 3);
                i += r;
                run -= r;
            }
        } else {
            sym[k] = (uint8_t)v;
            extra[k++] = 0;
            i++;
        }
    }
    return k;
}

static void write_header(bits_t *b, const block_t *bk)
{
    static const uint8_t order[NUM_CL] = {16, 17, 18, 0, 8,  7, 9,  6, 10, 5,
                                          11, 4,  12, 3, 13, 2, 14, 1, 15};
    uint8_t seq[NUM_LIT + NUM_DIST], sym[NUM_LIT + NUM_DIST], extra[NUM_LIT + NUM_DIST];
    memcpy(seq, bk->lit_len, (size_t)bk->nlit);
    memcpy(seq + bk->nlit, bk->dist_len, (size_t)bk->ndist);
    int nsym = rle_lengths(seq, bk->nlit + bk->ndist, sym, extra);
    uint32_t cf[NUM_CL] = {0};
    for (int i = 0; i < nsym; i++)
        cf[sym[i]]++;
    ensure_two_used(cf, NUM_CL);
    uint8_t cl[NUM_CL];
    uint16_t cc[NUM_CL];
    code_lengths(cf, NUM_CL, 7, cl);
    canonical_codes(cl, NUM_CL, cc);
    int nclen = NUM_CL;
    while (nclen > 4 && cl[order[nclen - 1]] == 0)
        nclen--;
    put_bits(b, 1, 1); /* BFINAL: the only block */
    put_bits(b, 2, 2); /* BTYPE 10: dynamic Huffman codes */
    put_bits(b, (uint32_t)(bk->nlit - 257), 5);
    put_bits(b, (uint32_t)(bk->ndist - 1), 5);
    put_bits(b, (uint32_t)(nclen - 4), 4);
    for (int i = 0; i < nclen; i++)
        put_bits(b, cl[order[i]], 3);
    static const int extra_bits[3] = {2, 3, 7};
    for (int i = 0; i < nsym; i++) {
        put_bits(b, cc[sym[i]], cl[sym[i]]);
        if (sym[i] >= 16)
            put_bits(b, extra[i], extra_bits[sym[i] - 16]);
    }
}

static void write_tokens(bits_t *b, const block_t *bk, const token_t *tok, size_t nt)
{
    for (size_t i = 0; i < nt; i++) {
        if (tok[i].dist == 0) {
            put_bits(b, bk->lit_code[tok[i].len], bk->lit_len[tok[i].len]);
            continue;
        }
        int lc = len_code(tok[i].len), dc = dist_code(tok[i].dist);
        put_bits(b, bk->lit_code[257 + lc], bk->lit_len[257 + lc]);
        put_bits(b, tok[i].len - len_base[lc], len_extra[lc]);
        put_bits(b, bk->dist_code[dc], bk->dist_len[dc]);
        put_bits(b, tok[i].dist - dist_base[dc], dist_extra[dc]);
    }
    put_bits(b, bk->lit_code[256], bk->lit_len[256]); /* end of block */
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

void vg_zlib_compress(const uint8_t *data, size_t len, vg_buf_t *out)
{
    static const uint8_t header[2] = {0x78, 0x9c}; /* deflate, 32 KiB window; a multiple of 31 */
    vg_buf_append(out, header, sizeof(header));
    token_t *tok = vg_malloc((len + 1) * sizeof(*tok));
    size_t nt = lz77(data, len, tok);
    block_t bk;
    plan_block(&bk, tok, nt);
    bits_t b = {out, 0, 0};
    write_header(&b, &bk);
    write_tokens(&b, &bk, tok, nt);
    flush_bits(&b);
    vg_free(tok);
    uint8_t adler[4];
    put_be32(adler, vg_adler32(1, data, len));
    vg_buf_append(out, adler, sizeof(adler));
}

/* ---- PNG ---------------------------------------------------------------------------------- */

static void chunk(vg_buf_t *out, const char *type, const void *data, size_t len)
{
    uint8_t head[8], crc[4];
    put_be32(head, (uint32_t)len);
    memcpy(head + 4, type, 4);
    vg_buf_append(out, head, sizeof(head));
    vg_buf_append(out, data, len);
    put_be32(crc, vg_crc32(vg_crc32(0, type, 4), data, len));
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
    vg_zlib_compress(raw, raw_len, &z);
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
