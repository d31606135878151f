/*
 * UTF-8 validation as a small deterministic automaton.
 *
 * Each byte is first mapped to one of 12 classes; the pair (state, class) then gives the next
 * state.  The states remember exactly what the rest of the current character may still be, so
 * the automaton enters NO (rejected) on the first byte that no valid continuation could follow
 * (RFC 3629 section 4, "Table 3-7. Well-Formed UTF-8 Byte Sequences" of the Unicode standard).
 * That is what Autobahn's "fail fast" cases (6.4.*) check: 0xF4 0x90 is rejected at 0x90
 * (above U+10FFFF), 0xED 0xA0 at 0xA0 (a surrogate), 0xE0 0x80 at 0x80 (an overlong).
 */
#include "proto/utf8.h"

#include <string.h>

#include "util/error.h"

/* Byte classes, with the two-letter names the tables use. */
enum {
    AS, /* 00..7F ASCII */
    C8, /* 80..8F continuation */
    C9, /* 90..9F continuation */
    CA, /* A0..BF continuation */
    XX, /* C0, C1 (always overlong), F5..FF (above U+10FFFF, or not UTF-8 at all) */
    L2, /* C2..DF: lead of 2 */
    E0, /* E0: lead of 3 whose second byte must be A0..BF, or it is overlong */
    L3, /* E1..EC, EE, EF: lead of 3 */
    ED, /* ED: lead of 3 whose second byte must be 80..9F, or it encodes a surrogate */
    F0, /* F0: lead of 4 whose second byte must be 90..BF, or it is overlong */
    L4, /* F1..F3: lead of 4 */
    F4, /* F4: lead of 4 whose second byte must be 80..8F, or it is above U+10FFFF */
    NCLASS
};

/* States, premultiplied by NCLASS so a transition is one load: transition[state + class]. */
enum {
    OK = 0 * NCLASS, /* at a character boundary (vg_utf8_t documents 0 as this state) */
    NO = 1 * NCLASS, /* rejected; sticky */
    N1 = 2 * NCLASS, /* one more continuation byte, any of 80..BF */
    N2 = 3 * NCLASS, /* two more, any */
    N3 = 4 * NCLASS, /* three more, any */
    SE = 5 * NCLASS, /* after E0: A0..BF, then one more */
    SD = 6 * NCLASS, /* after ED: 80..9F, then one more */
    S0 = 7 * NCLASS, /* after F0: 90..BF, then two more */
    S4 = 8 * NCLASS, /* after F4: 80..8F, then two more */
    NSTATE = 9
};

// clang-format off
static const uint8_t byte_class[256] = {
    /* 0_ */ AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS,
    /* 1_ */ AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS,
    /* 2_ */ AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS,
    /* 3_ */ AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS,
    /* 4_ */ AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS,
    /* 5_ */ AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS,
    /* 6_ */ AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS,
    /* 7_ */ AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS,
    /* 8_ */ C8, C8, C8, C8, C8, C8, C8, C8, C8, C8, C8, C8, C8, C8, C8, C8,
    /* 9_ */ C9, C9, C9, C9, C9, C9, C9, C9, C9, C9, C9, C9, C9, C9, C9, C9,
    /* A_ */ CA, CA, CA, CA, CA, CA, CA, CA, CA, CA, CA, CA, CA, CA, CA, CA,
    /* B_ */ CA, CA, CA, CA, CA, CA, CA, CA, CA, CA, CA, CA, CA, CA, CA, CA,
    /* C_ */ XX, XX, L2, L2, L2, L2, L2, L2, L2, L2, L2, L2, L2, L2, L2, L2,
    /* D_ */ L2, L2, L2, L2, L2, L2, L2, L2, L2, L2, L2, L2, L2, L2, L2, L2,
    /* E_ */ E0, L3, L3, L3, L3, L3, L3, L3, L3, L3, L3, L3, L3, ED, L3, L3,
    /* F_ */ F0, L4, L4, L4, F4, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX,
};

static const uint8_t transition[NSTATE * NCLASS] = {
    /*          AS  C8  C9  CA  XX  L2  E0  L3  ED  F0  L4  F4 */
    /* OK */    OK, NO, NO, NO, NO, N1, SE, N2, SD, S0, N3, S4,
    /* NO */    NO, NO, NO, NO, NO, NO, NO, NO, NO, NO, NO, NO,
    /* N1 */    NO, OK, OK, OK, NO, NO, NO, NO, NO, NO, NO, NO,
    /* N2 */    NO, N1, N1, N1, NO, NO, NO, NO, NO, NO, NO, NO,
    /* N3 */    NO, N2, N2, N2, NO, NO, NO, NO, NO, NO, NO, NO,
    /* SE */    NO, NO, NO, N1, NO, NO, NO, NO, NO, NO, NO, NO,
    /* SD */    NO, N1, N1, NO, NO, NO, NO, NO, NO, NO, NO, NO,
    /* S0 */    NO, NO, N2, N2, NO, NO, NO, NO, NO, NO, NO, NO,
    /* S4 */    NO, N2, NO, NO, NO, NO, NO, NO, NO, NO, NO, NO,
};
// clang-format on

#define HIGH_BITS 0x8080808080808080ull

void vg_utf8_init(vg_utf8_t *v)
{
    v->state = OK;
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
        return v->state == NO ? VG_EWS_UTF8 : 0;
    uint32_t s = v->state;
    const uint8_t *p = data, *end = data + len;
    while (p < end) {
        if (s == OK) {
            p = skip_ascii(p, end);
            if (p == end)
                break;
        }
        s = transition[s + byte_class[*p++]];
        if (s == NO)
            break;
    }
    v->state = s;
    return s == NO ? VG_EWS_UTF8 : 0;
}

int vg_utf8_complete(const vg_utf8_t *v)
{
    return v->state == OK;
}

int vg_utf8_valid(const uint8_t *data, size_t len)
{
    vg_utf8_t v;
    vg_utf8_init(&v);
    return vg_utf8_feed(&v, data, len) == 0 && vg_utf8_complete(&v);
}

size_t vg_utf8_truncate(const char *s, size_t len, size_t max)
{
    size_t end = len < max ? len : max, boundary = 0;
    uint32_t state = OK;
    for (size_t i = 0; i < end && state != NO; i++) {
        state = transition[state + byte_class[(uint8_t)s[i]]];
        if (state == OK)
            boundary = i + 1;
    }
    return boundary;
}

size_t vg_utf8_prefix(const char *s, size_t max)
{
    return vg_utf8_truncate(s, strnlen(s, max), max);
}
