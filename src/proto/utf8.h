/*
 * Incremental UTF-8 validation (RFC 3629: no overlongs, no surrogates, nothing above
 * U+10FFFF), fed piece by piece so a text message split across frames and reads is rejected at
 * the first byte that can no longer start or continue a valid sequence.
 */
#ifndef VG_PROTO_UTF8_H
#define VG_PROTO_UTF8_H

#include <stddef.h>
#include <stdint.h>

typedef struct vg_utf8_s {
    uint32_t state; /* private: 0 = at a character boundary */
} vg_utf8_t;

void vg_utf8_init(vg_utf8_t *v);
/* Validates the next piece.  Returns 0 if the bytes so far are a valid prefix of UTF-8
 * (possibly ending inside a character), VG_EWS_UTF8 at the first invalid byte; once invalid it
 * stays invalid. */
int vg_utf8_feed(vg_utf8_t *v, const uint8_t *data, size_t len);
/* Nonzero when the bytes so far end at a character boundary (a complete valid text). */
int vg_utf8_complete(const vg_utf8_t *v);
/* One-shot check of a whole buffer: nonzero when it is complete, valid UTF-8. */
int vg_utf8_valid(const uint8_t *data, size_t len);
/* The length of the longest prefix of s[0..len) of at most max bytes that is valid UTF-8 ending
 * on a character boundary: where to cut a name quoted in a message so the message stays valid
 * UTF-8 (and JSON).  Stops before the first invalid byte, if any. */
size_t vg_utf8_truncate(const char *s, size_t len, size_t max);
/* The same for a NUL-terminated `s` (at most max bytes): where to cut a text that must stay
 * valid UTF-8 (a JSON string, a close reason).  Use it as printf("%.*s", (int)n, s). */
size_t vg_utf8_prefix(const char *s, size_t max);

#endif
