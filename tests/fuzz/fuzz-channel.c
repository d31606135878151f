/*
 * libFuzzer driver for channel names and patterns (src/proto/channel.c).
 *
 * Input: up to MAX_FIELDS strings separated by '\n'; each is copied into its own allocation of
 * exactly its length so ASan catches any read past it.  For every field, check_name and
 * check_pattern must not crash and must agree with an independent reference validator (and with
 * each other: a name is a pattern without wildcards).  For every pair of fields, match and covers
 * must not crash whatever the input; when the first is a valid pattern and the second a valid
 * name, vg_channel_match must agree with a reference matcher written on segment arrays.  When
 * both are valid patterns a and b, names are generated from b (wildcards instantiated with
 * segments of a, of b, or a fresh one):
 *   - covers(a, b) implies every such name (all of which match b) matches a;
 *   - !covers(a, b) implies a counterexample exists: b with every "*" made a fresh segment and
 *     ">" made 1 or |a|+1 fresh segments is not matched by a (one of the two always works).
 *
 * CHECK aborts even in builds with NDEBUG, so libFuzzer sees every broken invariant.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/channel.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond);           \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#define MAX_FIELDS 6
#define MAX_SEGS   1024
#define GEN_CAP    8192

typedef struct sv_s {
    const char *p;
    size_t n;
} sv_t;

static int sv_is(sv_t s, const char *lit)
{
    return s.n == strlen(lit) && memcmp(s.p, lit, s.n) == 0;
}

static int sv_eq(sv_t a, sv_t b)
{
    return a.n == b.n && memcmp(a.p, b.p, a.n) == 0;
}

/* Splits on every '.', keeping empty segments. */
static size_t split(const char *s, size_t n, sv_t *out)
{
    size_t count = 0, start = 0;
    for (size_t i = 0; i <= n && count < MAX_SEGS; i++) {
        if (i == n || s[i] == '.') {
            out[count].p = s + start;
            out[count].n = i - start;
            count++;
            start = i + 1;
        }
    }
    return count;
}

static int ref_valid(const char *s, size_t n, int pattern)
{
    static const char allowed[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                                  "_-:@";
    if (n == 0 || n > VG_CHANNEL_MAX_LEN)
        return 0;
    static sv_t segs[MAX_SEGS];
    size_t ns = split(s, n, segs);
    for (size_t i = 0; i < ns; i++) {
        sv_t g = segs[i];
        if (g.n == 0)
            return 0;
        int literal = 1;
        for (size_t j = 0; j < g.n; j++)
            if (memchr(allowed, g.p[j], sizeof(allowed) - 1) == NULL)
                literal = 0;
        if (literal)
            continue;
        if (pattern && sv_is(g, "*"))
            continue;
        if (pattern && sv_is(g, ">") && i == ns - 1)
            continue;
        return 0;
    }
    return 1;
}

/* Matching as a recursive definition: ">" takes any k >= 1 segments and the rest must match. */
static int ref_match_segs(const sv_t *p, size_t np, const sv_t *n, size_t nn)
{
    if (np == 0)
        return nn == 0;
    if (sv_is(p[0], ">")) {
        for (size_t k = 1; k <= nn; k++)
            if (ref_match_segs(p + 1, np - 1, n + k, nn - k))
                return 1;
        return 0;
    }
    if (nn == 0)
        return 0;
    if (!sv_is(p[0], "*") && !sv_eq(p[0], n[0]))
        return 0;
    return ref_match_segs(p + 1, np - 1, n + 1, nn - 1);
}

static int ref_match(const char *p, size_t plen, const char *n, size_t nlen)
{
    static sv_t ps[MAX_SEGS], ns[MAX_SEGS];
    size_t np = split(p, plen, ps), nn = split(n, nlen, ns);
    return ref_match_segs(ps, np, ns, nn);
}

static uint64_t rng;

static uint32_t rnd(uint32_t n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng % n);
}

typedef struct gen_s {
    char buf[GEN_CAP];
    size_t len;
} gen_t;

static void gen_seg(gen_t *g, sv_t s)
{
    if (g->len != 0 && g->len < GEN_CAP)
        g->buf[g->len++] = '.';
    if (g->len + s.n <= GEN_CAP) {
        memcpy(g->buf + g->len, s.p, s.n);
        g->len += s.n;
    }
}

/* Instantiates pattern b: "*" -> pick(), ">" -> `gt` segments from pick().  pool == NULL picks
 * the fresh segment only. */
static void instantiate(gen_t *g, const sv_t *b, size_t nb, const sv_t *pool, size_t npool,
                        sv_t fresh, size_t gt)
{
    g->len = 0;
    for (size_t i = 0; i < nb; i++) {
        if (sv_is(b[i], "*") || sv_is(b[i], ">")) {
            size_t k = sv_is(b[i], ">") ? gt : 1;
            for (size_t j = 0; j < k; j++) {
                uint32_t r = pool != NULL ? rnd((uint32_t)npool + 1) : (uint32_t)npool;
                gen_seg(g, r < npool ? pool[r] : fresh);
            }
        } else {
            gen_seg(g, b[i]);
        }
    }
}

static void check_pair_patterns(const char *a, size_t alen, const char *b, size_t blen)
{
    static sv_t as[MAX_SEGS], bs[MAX_SEGS], pool[2 * MAX_SEGS];
    static gen_t g;
    size_t na = split(a, alen, as), nb = split(b, blen, bs);
    int covers = vg_channel_covers(a, alen, b, blen) != 0;

    /* The pool of segments: the literals of both patterns. */
    size_t npool = 0;
    for (size_t i = 0; i < na; i++)
        if (!sv_is(as[i], "*") && !sv_is(as[i], ">"))
            pool[npool++] = as[i];
    for (size_t i = 0; i < nb; i++)
        if (!sv_is(bs[i], "*") && !sv_is(bs[i], ">"))
            pool[npool++] = bs[i];

    /* A fresh literal: f0, f1, ... not among a's segments (a has at most 100). */
    static char fresh_buf[16];
    sv_t fresh = {fresh_buf, 0};
    for (int k = 0;; k++) {
        fresh.n = (size_t)snprintf(fresh_buf, sizeof(fresh_buf), "f%d", k);
        int used = 0;
        for (size_t i = 0; i < na; i++)
            used |= sv_eq(as[i], fresh);
        if (!used)
            break;
    }

    if (covers) {
        for (int t = 0; t < 8; t++) {
            instantiate(&g, bs, nb, pool, npool, fresh, 1 + rnd(3));
            CHECK(ref_match(b, blen, g.buf, g.len));
            CHECK(ref_match(a, alen, g.buf, g.len));
            if (ref_valid(g.buf, g.len, 0))
                CHECK(vg_channel_match(a, alen, g.buf, g.len));
        }
    } else {
        int counterexample = 0;
        size_t ks[2] = {1, na + 1};
        for (int t = 0; t < 2; t++) {
            instantiate(&g, bs, nb, NULL, 0, fresh, ks[t]);
            CHECK(ref_match(b, blen, g.buf, g.len));
            if (!ref_match(a, alen, g.buf, g.len))
                counterexample = 1;
        }
        CHECK(counterexample);
        /* Random names must agree between the two matchers too. */
        for (int t = 0; t < 4; t++) {
            instantiate(&g, bs, nb, pool, npool, fresh, 1 + rnd(3));
            if (ref_valid(g.buf, g.len, 0))
                CHECK(!!vg_channel_match(a, alen, g.buf, g.len) ==
                      ref_match(a, alen, g.buf, g.len));
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *field[MAX_FIELDS];
    size_t flen[MAX_FIELDS], nf = 0, start = 0;
    for (size_t i = 0; i <= size && nf < MAX_FIELDS; i++) {
        if (i == size || data[i] == '\n') {
            flen[nf] = i - start;
            field[nf] = malloc(flen[nf] ? flen[nf] : 1);
            if (field[nf] == NULL)
                abort();
            memcpy(field[nf], data + start, flen[nf]);
            nf++;
            start = i + 1;
        }
    }
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < size; i++)
        h = (h ^ data[i]) * 0x100000001b3ull;
    rng = h | 1;

    int vname[MAX_FIELDS], vpat[MAX_FIELDS];
    for (size_t i = 0; i < nf; i++) {
        const char *s = field[i];
        size_t n = flen[i];
        const char *en = vg_channel_check_name(s, n), *ep = vg_channel_check_pattern(s, n);
        vname[i] = en == NULL;
        vpat[i] = ep == NULL;
        CHECK(en == NULL || strlen(en) > 10);
        CHECK(ep == NULL || strlen(ep) > 10);
        CHECK(vname[i] == ref_valid(s, n, 0));
        CHECK(vpat[i] == ref_valid(s, n, 1));
        if (vpat[i]) {
            /* a name is exactly a pattern without wildcards */
            CHECK(vname[i] == !vg_channel_is_pattern(s, n));
            CHECK(vg_channel_covers(s, n, s, n));
            CHECK(vg_channel_covers(">", 1, s, n));
        }
        if (vname[i])
            CHECK(vg_channel_match(s, n, s, n));
    }
    for (size_t i = 0; i < nf; i++) {
        for (size_t j = 0; j < nf; j++) {
            /* Whatever the input: no crash, no read out of bounds. */
            int m = vg_channel_match(field[i], flen[i], field[j], flen[j]);
            int c = vg_channel_covers(field[i], flen[i], field[j], flen[j]);
            if (vpat[i] && vname[j])
                CHECK(!!m == ref_match(field[i], flen[i], field[j], flen[j]));
            if (vpat[i] && vpat[j]) {
                check_pair_patterns(field[i], flen[i], field[j], flen[j]);
                /* covers is transitive-compatible with matching: a covered name is matched */
                if (c && vname[j])
                    CHECK(m);
            }
        }
    }
    for (size_t i = 0; i < nf; i++)
        free(field[i]);
    return 0;
}
