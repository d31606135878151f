/*
 * Base64 (RFC 4648): the standard alphabet with padding (Engine.IO's binary packets, data: URLs)
 * and the URL-safe alphabet without padding (JWT segments, connect tickets).
 */
#ifndef VG_UTIL_BASE64_H
#define VG_UTIL_BASE64_H

#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

typedef enum vg_base64_alphabet_e {
    VG_BASE64_STD, /* A-Z a-z 0-9 + /, padded with '=' when encoding, padding optional decoding */
    VG_BASE64_URL, /* A-Z a-z 0-9 - _, never padded */
} vg_base64_alphabet_t;

/* Characters vg_base64_encode writes for n bytes (without the NUL). */
size_t vg_base64_encoded_len(size_t n, vg_base64_alphabet_t alphabet);
/* Writes the encoding of n bytes and a NUL into out (vg_base64_encoded_len(n) + 1 bytes).
 * Returns the number of characters written. */
size_t vg_base64_encode(const void *in, size_t n, char *out, vg_base64_alphabet_t alphabet);
/* Appends the encoding of n bytes to out (no NUL). */
void vg_base64_append(vg_buf_t *out, const void *in, size_t n, vg_base64_alphabet_t alphabet);
/* Decodes len characters into out (len * 3 / 4 + 1 bytes are enough).  Returns the decoded
 * length, or -1 for a character outside the alphabet, misplaced padding or an impossible
 * length. */
long vg_base64_decode(const char *in, size_t len, uint8_t *out, vg_base64_alphabet_t alphabet);

#endif
