#include "util/base64.h"

static const char std_chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char url_chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static int value_of(unsigned char c, vg_base64_alphabet_t alphabet)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == (alphabet == VG_BASE64_URL ? '-' : '+'))
        return 62;
    if (c == (alphabet == VG_BASE64_URL ? '_' : '/'))
        return 63;
    return -1;
}

size_t vg_base64_encoded_len(size_t n, vg_base64_alphabet_t alphabet)
{
    return alphabet == VG_BASE64_URL ? (n * 4 + 2) / 3 : (n + 2) / 3 * 4;
}

size_t vg_base64_encode(const void *in, size_t n, char *out, vg_base64_alphabet_t alphabet)
{
    const char *chars = alphabet == VG_BASE64_URL ? url_chars : std_chars;
    const uint8_t *p = in;
    uint32_t acc = 0;
    int bits = 0;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        acc = (acc << 8) | p[i];
        bits += 8;
        while (bits >= 6) {
            bits -= 6;
            out[o++] = chars[(acc >> bits) & 63];
        }
        acc &= (1u << bits) - 1;
    }
    if (bits > 0)
        out[o++] = chars[(acc << (6 - bits)) & 63];
    while (alphabet == VG_BASE64_STD && o % 4 != 0)
        out[o++] = '=';
    out[o] = '\0';
    return o;
}

void vg_base64_append(vg_buf_t *out, const void *in, size_t n, vg_base64_alphabet_t alphabet)
{
    size_t len = vg_base64_encoded_len(n, alphabet);
    char *w = vg_buf_reserve(out, len + 1);
    vg_base64_encode(in, n, w, alphabet);
    out->len += len;
}

long vg_base64_decode(const char *in, size_t len, uint8_t *out, vg_base64_alphabet_t alphabet)
{
    size_t pad = 0;
    while (alphabet == VG_BASE64_STD && pad < 2 && len > 0 && in[len - 1] == '=') {
        len--;
        pad++;
    }
    if (len % 4 == 1 || (pad > 0 && (len + pad) % 4 != 0))
        return -1;
    uint32_t acc = 0;
    int bits = 0;
    long o = 0;
    for (size_t i = 0; i < len; i++) {
        int v = value_of((unsigned char)in[i], alphabet);
        if (v < 0)
            return -1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (uint8_t)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    return o;
}
