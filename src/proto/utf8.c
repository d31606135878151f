/*
 * UTF-8 validation as a small deterministic automaton.
 *
 * Each byte is first mapped to one of 12 classes; the pair (state, class) then gives the next
 * state.  The states remember exactly what the rest of the current character may still be, so
 * the automaton enters REJECT on the first byte that no valid continuation could follow
 * (RFC 3629 section 4, "Table 3-7. Well-Formed UTF-8 Byte Sequences" of the Unicode standard).
 * That is what Autobahn's "fail fast" cases (6.4.*) check: 0xF4 0x90 is rejected at 0x90
 * (above U+10FFFF), 0xED 0xA0 at 0xA0 (a surrogate), 0xE0 0x80 at 0x80 (an overlong).
 *
 * States are stored premultiplied by 16 so a transition is one table load without a multiply.
 */
#include "proto/utf8.h"

#include <string.h>

#include "util/error.h"

/* Byte classes. */
enum {
    C_ASCII,  /* 00..7F */
    C_80,     /* 80..8F continuation */
    C_90,     /* 90..9F continuation */
    C_A0,     /* A0..BF continuation */
    C_BAD,    /* C0, C1 (always overlong), F5..FF (above U+10FFFF or not UTF-8 at all) */
    C_LEAD2,  /* C2..DF */
    C_E0,     /* E0: the second byte must be A0..BF, or the character is overlong */
    C_LEAD3,  /* E1..EC, EE, EF */
    C_ED,     /* ED: the second byte must be 80..9F, or it encodes a surrogate */
    C_F0,     /* F0: the second byte must be 90..BF, or the character is overlong */
    C_LEAD4,  /* F1..F3 */
    C_F4,     /* F4: the second byte must be 80..8F, or the character is above U+10FFFF */
    C_COUNT
};

/* States, premultiplied by 16. */
enum {
    S_ACCEPT = 0 * 16, /* at a character boundary */
    S_REJECT = 1 * 16, /* sticky */
    S_NEED1 = 2 * 16,  /* one more continuation byte, any of 80..BF */
    S_NEED2 = 3 * 16,  /* two more, any */
    S_NEED3 = 4 * 16,  /* three more, any */
    S_E0 = 5 * 16,     /* after E0: A0..BF, then one more */
    S_ED = 6 * 16,     /* after ED: 80..9F, then one more */
    S_F0 = 7 * 16,     /* after F0: 90..BF, then two more */
    S_F4 = 8 * 16,     /* after F4: 80..8F, then two more */
};

#define X C_BAD
static const uint8_t byte_class[256] = {
    /* 00..7F */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0,
    /* 80..8F */
    C_80, C_80, C_80, C_80, C_80, C_80, C_80, C_80, C_80, C_80, C_80, C_80, C_80, C_80, C_80, C_80,
    /* 90..9F */
    C_90, C_90, C_90, C_90, C_90, C_90, C_90, C_90, C_90, C_90, C_90, C_90, C_90, C_90, C_90, C_90,
    /* A0..BF */
    C_A0, C_A0, C_A0, C_A0, C_A0, C_A0, C_A0, C_A0, C_A0, C_A0, C_A0, C_A0, C_A0, C_A0, C_A0, C_A0,
    C_A0, C_A0, C_A0, C_A0, C_A0, C_A0, C_A0, C_A0, C_A0, C_A0, C_A0, C_A0, C_A0, C_A0, C_A0, C_A0,
    /* C0..DF */
    X, X, C_LEAD2, C_LEAD2, C_LEAD2, C_LEAD2, C_LEAD2, C_LEAD2, C_LEAD2, C_LEAD2, C_LEAD2, C_LEAD2,
    C_LEAD2, C_LEAD2, C_LEAD2, C_LEAD2, C_LEAD2, C_LEAD2, C_LEAD2, C_LEAD2, C_LEAD2, C_LEAD2,
    C_LEAD2, C_LEAD2, C_LEAD2, C_LEAD2, C_LEAD2, C_LEAD2, C_LEAD2, C_LEAD2, C_LEAD2, C_LEAD2,
    /* E0..EF */
    C_E0, C_LEAD3, C_LEAD3, C_LEAD3, C_LEAD3, C_LEAD3, C_LEAD3, C_LEAD3, C_LEAD3, C_LEAD3, C_LEAD3,
    C_LEAD3, C_LEAD3, C_ED, C_LEAD3, C_LEAD3,
    /* F0..FF */
    C_F0, C_LEAD4, C_LEAD4, C_LEAD4, C_F4, X, X, X, X, X, X, X, X, X, X, X};
#undef X

/* transition[state + class]; rows are 16 wide, the 4 unused columns reject. */
#define R S_REJECT
static const uint8_t transition[9 * 16] = {
    /*           ASCII     80       90       A0       BAD  LEAD2    E0    LEAD3    ED    F0    LEAD4    F4 */
    /* ACCEPT */ S_ACCEPT, R,       R,       R,       R,   S_NEED1, S_E0, S_NEED2, S_ED, S_F0, S_NEED3, S_F4, R, R, R, R,
    /* REJECT */ R,        R,       R,       R,       R,   R,       R,    R,       R,    R,    R,       R,    R, R, R, R,
    /* NEED1  */ R,        S_ACCEPT, S_ACCEPT, S_ACCEPT, R, R,      R,    R,       R,    R,    R,       R,    R, R, R, R,
    /* NEED2  */ R,        S_NEED1, S_NEED1, S_NEED1, R,   R,       R,    R,       R,    R,    R,       R,    R, R, R, R,
    /* NEED3  */ R,        S_NEED2, S_NEED2, S_NEED2, R,   R,       R,    R,       R,    R,    R,       R,    R, R, R, R,
    /* E0     */ R,        R,       R,       S_NEED1, R,   R,       R,    R,       R,    R,    R,       R,    R, R, R, R,
    /* ED     */ R,        S_NEED1, S_NEED1, R,       R,   R,       R,    R,       R,    R,    R,       R,    R, R, R, R,
    /* F0     */ R,        R,       S_NEED2, S_NEED2, R,   R,       R,    R,       R,    R,    R,       R,    R, R, R, R,
    /* F4     */ R,        S_NEED2, R,       R,       R,   R,       R,    R,       R,    R,    R,       R,    R, R, R, R,
};
#undef R

_Static_assert(C_COUNT <= 16, "a transition row holds every class");

#define HIGH_BITS 0x8080808080808080ull

void vg_utf8_init(vg_utf8_t *v)
{
    v->state = S_ACCEPT;
}

/* Skips the leading run of ASCII bytes, eight at a time: nearly every text message is JSON and
 * mostly or entirely ASCII, so this loop is where the time goes. */
static const uint8_t *skip_ascii(const uint8_t *p, const uint8_t *end)
{
    while (end - p >= 8) {
        uint64_t w;
        memcpy(&w, p, sizeof(w));
        if (w & HIGH_BITS)
            break;
        p += 8;
    }
    while (p < end && *p < 0x80)
        p++;
    return p;
}

int vg_utf8_feed(vg_utf8_t *v, const uint8_t *data, size_t len)
{
    if (len == 0)
        return v->state == S_REJECT ? VG_EWS_UTF8 : 0;
    uint32_t s = v->state;
    const uint8_t *p = data, *end = data + len;
    while (p < end) {
        if (s == S_ACCEPT) {
            p = skip_ascii(p, end);
            if (p == end)
                break;
        }
        s = transition[s + byte_class[*p++]];
        if (s == S_REJECT)
            break;
    }
    v->state = s;
    return s == S_REJECT ? VG_EWS_UTF8 : 0;
}

int vg_utf8_complete(const vg_utf8_t *v)
{
    return v->state == S_ACCEPT;
}

int vg_utf8_valid(const uint8_t *data, size_t len)
{
    vg_utf8_t v;
    vg_utf8_init(&v);
    return vg_utf8_feed(&v, data, len) == 0 && vg_utf8_complete(&v);
}
