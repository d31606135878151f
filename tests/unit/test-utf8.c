/*
 * Tests of the incremental UTF-8 validator (src/proto/utf8.c): Markus Kuhn's stress cases,
 * the exact byte at which each invalid sequence is rejected, incremental feeding at every split
 * point, and an exhaustive comparison with a reference written from the definition.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "proto/utf8.h"
#include "util/error.h"

/* ---- reference -------------------------------------------------------------------------- */

/* Whether some code point in [lo, hi] is a scalar value that an encoding with minimum `min` and
 * maximum `max` may carry (not a surrogate, not overlong, not above U+10FFFF). */
static int feasible(uint32_t lo, uint32_t hi, uint32_t min, uint32_t max)
{
    if (lo < min)
        lo = min;
    if (hi > max)
        hi = max;
    if (lo > hi)
        return 0;
    return !(lo >= 0xd800 && hi <= 0xdfff);
}

/* The reference validator, written from RFC 3629 rather than as an automaton: it decodes each
 * character and, after every byte, asks whether the code points that the bytes so far could
 * still become include a valid one.  Returns the index of the first byte after which no valid
 * completion exists, or -1; then *complete says whether s ends at a character boundary. */
static long ref_first_bad(const uint8_t *s, size_t n, int *complete)
{
    size_t i = 0;
    while (i < n) {
        uint8_t b = s[i];
        int len;
        uint32_t cp, min, max;
        if (b < 0x80) {
            i++;
            continue;
        } else if ((b & 0xe0) == 0xc0) {
            len = 2, cp = b & 0x1f, min = 0x80, max = 0x7ff;
        } else if ((b & 0xf0) == 0xe0) {
            len = 3, cp = b & 0x0f, min = 0x800, max = 0xffff;
        } else if ((b & 0xf8) == 0xf0) {
            len = 4, cp = b & 0x07, min = 0x10000, max = 0x10ffff;
        } else {
            return (long)i;
        }
        for (int k = 1;; k++) {
            int rest = 6 * (len - k);
            uint32_t lo = cp << rest, hi = lo | ((1u << rest) - 1);
            if (!feasible(lo, hi, min, max))
                return (long)(i + k - 1);
            if (k == len)
                break;
            if (i + k >= n) {
                *complete = 0;
                return -1;
            }
            uint8_t c = s[i + k];
            if ((c & 0xc0) != 0x80)
                return (long)(i + k);
            cp = cp << 6 | (c & 0x3f);
        }
        i += len;
    }
    *complete = 1;
    return -1;
}

/* Index of the byte at which the validator under test first fails when fed one byte at a time,
 * or -1; then *complete from vg_utf8_complete. */
static long dfa_first_bad(const uint8_t *s, size_t n, int *complete)
{
    vg_utf8_t v;
    vg_utf8_init(&v);
    for (size_t i = 0; i < n; i++) {
        if (vg_utf8_feed(&v, s + i, 1) != 0)
            return (long)i;
    }
    *complete = vg_utf8_complete(&v);
    return -1;
}

static void check_against_ref(const uint8_t *s, size_t n)
{
    int rc = -1, dc = -1;
    long r = ref_first_bad(s, n, &rc);
    long d = dfa_first_bad(s, n, &dc);
    if (r != d || (r < 0 && rc != dc)) {
        char hex[64] = "";
        for (size_t i = 0; i < n && i < 16; i++)
            snprintf(hex + strlen(hex), sizeof(hex) - strlen(hex), "%02x ", s[i]);
        fail_msg("%s: reference %ld/%d, validator %ld/%d", hex, r, rc, d, dc);
    }
    assert_int_equal(vg_utf8_valid(s, n) != 0, r < 0 && rc);
}

/* ---- helpers ---------------------------------------------------------------------------- */

static int valid_str(const char *s)
{
    return vg_utf8_valid((const uint8_t *)s, strlen(s));
}

/* Where a one-byte-at-a-time feed of s fails, or -1 if it does not. */
static long fails_at(const char *s)
{
    int complete;
    return dfa_first_bad((const uint8_t *)s, strlen(s), &complete);
}

/* ---- Markus Kuhn's UTF-8 decoder capability and stress test ----------------------------- */

static void test_kuhn_valid(void **state)
{
    (void)state;
    static const char *valid[] = {
        "",
        "hello, world",
        "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5", /* 1: "kosme" in Greek */
        /* 2.1 first possible sequence of each length (U+0000 is valid too) */
        "\xc2\x80",
        "\xe0\xa0\x80",
        "\xf0\x90\x80\x80",
        /* 2.2 last possible sequence of each length (within U+10FFFF) */
        "\x7f",
        "\xdf\xbf",
        "\xef\xbf\xbf",
        "\xf4\x8f\xbf\xbf",
        /* 2.3 other boundaries */
        "\xed\x9f\xbf",
        "\xee\x80\x80",
        "\xef\xbf\xbd",
        "\xf4\x8f\xbf\xbf",
        /* noncharacters are valid UTF-8 (5.3) */
        "\xef\xbf\xbe",
        "\xef\xbf\xbf",
        "\xef\xb7\x90",
        /* mixed */
        "a\xc3\xa9z\xe2\x82\xac\xf0\x9f\x98\x80!",
    };
    for (size_t i = 0; i < sizeof(valid) / sizeof(valid[0]); i++) {
        assert_true(valid_str(valid[i]));
        assert_int_equal(fails_at(valid[i]), -1);
    }
    assert_true(vg_utf8_valid((const uint8_t *)"\0", 1));
}

static void test_kuhn_invalid(void **state)
{
    (void)state;
    /* Each with the index of the first byte that makes it impossible. */
    static const struct {
        const char *s;
        long at;
    } cases[] = {
        /* 3.1 unexpected continuation bytes */
        {"\x80", 0},
        {"\xbf", 0},
        {"a\x80\xbf", 1},
        {"\xc3\xa9\x80", 2},
        /* 3.2 lonely start bytes followed by a space */
        {"\xc0 ", 0},
        {"\xc2 ", 1},
        {"\xe0 ", 1},
        {"\xe1 ", 1},
        {"\xf0 ", 1},
        {"\xf1 ", 1},
        /* 3.3 sequences with the last byte missing, followed by ASCII */
        {"\xc2x", 1},
        {"\xe0\xa0x", 2},
        {"\xf0\x90\x80x", 3},
        {"\xdfx", 1},
        {"\xef\xbfx", 2},
        {"\xf4\x8f\xbfx", 3},
        /* 3.5 impossible bytes */
        {"\xfe", 0},
        {"\xff", 0},
        {"\xfe\xfe\xff\xff", 0},
        /* 4.1 examples of overlong ASCII */
        {"\xc0\xaf", 0},
        {"\xe0\x80\xaf", 1},
        {"\xf0\x80\x80\xaf", 1},
        {"\xf8\x80\x80\x80\xaf", 0},
        {"\xfc\x80\x80\x80\x80\xaf", 0},
        /* 4.2 maximum overlongs */
        {"\xc1\xbf", 0},
        {"\xe0\x9f\xbf", 1},
        {"\xf0\x8f\xbf\xbf", 1},
        /* 4.3 overlong NUL */
        {"\xc0\x80", 0},
        {"\xe0\x80\x80", 1},
        {"\xf0\x80\x80\x80", 1},
        /* 5.1 single UTF-16 surrogates */
        {"\xed\xa0\x80", 1},
        {"\xed\xad\xbf", 1},
        {"\xed\xae\x80", 1},
        {"\xed\xaf\xbf", 1},
        {"\xed\xb0\x80", 1},
        {"\xed\xbe\x80", 1},
        {"\xed\xbf\xbf", 1},
        /* 5.2 paired surrogates */
        {"\xed\xa0\x80\xed\xb0\x80", 1},
        {"\xed\xaf\xbf\xed\xbf\xbf", 1},
        /* above U+10FFFF */
        {"\xf4\x90\x80\x80", 1},
        {"\xf4\xbf\xbf\xbf", 1},
        {"\xf5\x80\x80\x80", 0},
        {"\xf7\xbf\xbf\xbf", 0},
        /* Autobahn 6.4.*: valid text then the bad byte */
        {"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4\x90\x80\x80"
         "edited",
         12},
        {"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80"
         "edited",
         12},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        if (fails_at(cases[i].s) != cases[i].at)
            fail_msg("case %zu: fails at %ld, want %ld", i, fails_at(cases[i].s), cases[i].at);
        assert_false(valid_str(cases[i].s));
    }
    /* Every lead byte that can never appear: C0, C1, F5..FF. */
    for (int b = 0; b < 256; b++) {
        uint8_t c = (uint8_t)b;
        vg_utf8_t v;
        vg_utf8_init(&v);
        int bad = b == 0xc0 || b == 0xc1 || b >= 0xf5 || (b >= 0x80 && b <= 0xbf);
        assert_int_equal(vg_utf8_feed(&v, &c, 1) != 0, bad);
    }
}

static void test_truncated_is_incomplete(void **state)
{
    (void)state;
    static const char *prefixes[] = {"\xc2", "\xe0\xa0", "\xf0\x90\x80", "ab\xe2\x82", "\xf4"};
    for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
        vg_utf8_t v;
        vg_utf8_init(&v);
        assert_int_equal(vg_utf8_feed(&v, (const uint8_t *)prefixes[i], strlen(prefixes[i])), 0);
        assert_false(vg_utf8_complete(&v));
        assert_false(valid_str(prefixes[i]));
    }
}

static void test_sticky(void **state)
{
    (void)state;
    vg_utf8_t v;
    vg_utf8_init(&v);
    assert_int_equal(vg_utf8_feed(&v, (const uint8_t *)"ok\xff", 3), VG_EWS_UTF8);
    assert_int_equal(vg_utf8_feed(&v, (const uint8_t *)"fine", 4), VG_EWS_UTF8);
    assert_int_equal(vg_utf8_feed(&v, NULL, 0), VG_EWS_UTF8);
    assert_false(vg_utf8_complete(&v));
    vg_utf8_init(&v);
    assert_int_equal(vg_utf8_feed(&v, NULL, 0), 0);
    assert_true(vg_utf8_complete(&v));
    assert_true(vg_utf8_valid(NULL, 0));
}

/* ---- incremental feeding ---------------------------------------------------------------- */

/* Feeds s in two and in three pieces at every split point; the result must match one piece. */
static void check_splits(const uint8_t *s, size_t n)
{
    vg_utf8_t v;
    vg_utf8_init(&v);
    int whole_err = vg_utf8_feed(&v, s, n) != 0;
    int whole_complete = vg_utf8_complete(&v);
    for (size_t a = 0; a <= n; a++) {
        for (size_t b = a; b <= n; b++) {
            vg_utf8_init(&v);
            int err = vg_utf8_feed(&v, s, a) != 0;
            err |= vg_utf8_feed(&v, s + a, b - a) != 0;
            err |= vg_utf8_feed(&v, s + b, n - b) != 0;
            assert_int_equal(err, whole_err);
            if (!err)
                assert_int_equal(vg_utf8_complete(&v), whole_complete);
        }
    }
}

static void test_incremental(void **state)
{
    (void)state;
    static const char *samples[] = {
        "plain ascii text that is longer than eight bytes",
        "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5 and \xf0\x9f\x98\x80 and \xe2\x82\xac!",
        "0123456\xe2\x82\xac\x30\x31\x32\x33\x34\x35\x36\xf4\x8f\xbf\xbf\x38\x39",
        "0123456\xed\xa0\x80\x30\x31\x32\x33\x34\x35\x36\x37\x38\x39",
        "01234567\xf4\x90\x80\x80",
        "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3",
    };
    for (size_t i = 0; i < sizeof(samples) / sizeof(samples[0]); i++)
        check_splits((const uint8_t *)samples[i], strlen(samples[i]));
}

/* The ASCII fast path reads 8 bytes at a time: put one bad byte (or one multi-byte character)
 * at every offset of a long ASCII run and check it is found at exactly that offset. */
static void test_ascii_fast_path(void **state)
{
    (void)state;
    uint8_t buf[80];
    for (size_t len = 1; len <= sizeof(buf); len++) {
        for (size_t at = 0; at < len; at++) {
            memset(buf, 'a', len);
            buf[at] = 0xff;
            int complete;
            assert_int_equal(dfa_first_bad(buf, len, &complete), (long)at);
            vg_utf8_t v;
            vg_utf8_init(&v);
            assert_int_equal(vg_utf8_feed(&v, buf, len), VG_EWS_UTF8);
            /* A two-byte character there instead (if it fits) keeps it valid. */
            if (at + 1 < len) {
                buf[at] = 0xc3;
                buf[at + 1] = 0xa9;
                assert_true(vg_utf8_valid(buf, len));
                assert_false(vg_utf8_valid(buf, at + 1));
            }
        }
        memset(buf, 'a', len);
        assert_true(vg_utf8_valid(buf, len));
        buf[len - 1] = 0x7f;
        assert_true(vg_utf8_valid(buf, len));
    }
}

/* ---- exhaustive comparison with the reference ------------------------------------------- */

static void test_exhaustive_short(void **state)
{
    (void)state;
    uint8_t s[3];
    for (int a = 0; a < 256; a++) {
        s[0] = (uint8_t)a;
        check_against_ref(s, 1);
        for (int b = 0; b < 256; b++) {
            s[1] = (uint8_t)b;
            check_against_ref(s, 2);
        }
    }
    /* All 16M three-byte sequences whose first byte is not ASCII (an ASCII first byte only
     * shifts the question to the 2-byte case, covered above). */
    for (int a = 0x80; a < 256; a++) {
        s[0] = (uint8_t)a;
        for (int b = 0; b < 256; b++) {
            s[1] = (uint8_t)b;
            for (int c = 0; c < 256; c++) {
                s[2] = (uint8_t)c;
                check_against_ref(s, 3);
            }
        }
    }
}

static void test_exhaustive_four(void **state)
{
    (void)state;
    /* Every 4-byte combination of the bytes at the edges of the ranges that matter. */
    static const uint8_t edge[] = {0x00, 0x41, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf,
                                   0xc0, 0xc1, 0xc2, 0xdf, 0xe0, 0xe1, 0xec, 0xed, 0xee,
                                   0xef, 0xf0, 0xf1, 0xf3, 0xf4, 0xf5, 0xff};
    size_t ne = sizeof(edge);
    uint8_t s[4];
    for (size_t a = 0; a < ne; a++)
        for (size_t b = 0; b < ne; b++)
            for (size_t c = 0; c < ne; c++)
                for (size_t d = 0; d < ne; d++) {
                    s[0] = edge[a], s[1] = edge[b], s[2] = edge[c], s[3] = edge[d];
                    check_against_ref(s, 4);
                }
    /* Every second byte after each 4-byte lead, with all continuation bytes after it. */
    for (int lead = 0xf0; lead <= 0xf4; lead++)
        for (int b = 0; b < 256; b++)
            for (int c = 0x80; c < 0xc0; c += 0x3f)
                for (int d = 0x80; d < 0xc0; d++) {
                    s[0] = (uint8_t)lead, s[1] = (uint8_t)b, s[2] = (uint8_t)c, s[3] = (uint8_t)d;
                    check_against_ref(s, 4);
                }
}

/* Random strings built from valid characters, ASCII runs and the odd bad byte, fed whole and in
 * random pieces. */
static void test_random_mixed(void **state)
{
    (void)state;
    static const char *atoms[] = {"a",
                                  "0123456789abcdef",
                                  "\xc3\xa9",
                                  "\xe2\x82\xac",
                                  "\xf0\x9f\x98\x80",
                                  "\xf4\x8f\xbf\xbf",
                                  "\xed\x9f\xbf",
                                  "\x7f",
                                  "\xff",
                                  "\xed\xa0\x80",
                                  "\xc0\x80",
                                  "\x80",
                                  "\xe2\x82",
                                  "\xf4\x90\x80\x80",
                                  "\xe0\x80\x80"};
    uint32_t rng = 12345;
    uint8_t buf[512];
    for (int iter = 0; iter < 20000; iter++) {
        size_t n = 0;
        int natoms = 1 + (int)(rng % 12);
        for (int i = 0; i < natoms; i++) {
            rng ^= rng << 13, rng ^= rng >> 17, rng ^= rng << 5;
            /* Mostly valid atoms (the first 7) so the bad ones land at many offsets. */
            size_t which = rng % 64 < 60 ? rng % 7 : rng % (sizeof(atoms) / sizeof(atoms[0]));
            size_t len = strlen(atoms[which]);
            memcpy(buf + n, atoms[which], len);
            n += len;
        }
        check_against_ref(buf, n);
        int rc = -1;
        long bad = ref_first_bad(buf, n, &rc);
        /* Random split into pieces. */
        vg_utf8_t v;
        vg_utf8_init(&v);
        int err = 0;
        for (size_t off = 0; off < n;) {
            rng ^= rng << 13, rng ^= rng >> 17, rng ^= rng << 5;
            size_t step = 1 + rng % 19;
            if (step > n - off)
                step = n - off;
            err |= vg_utf8_feed(&v, buf + off, step) != 0;
            off += step;
        }
        assert_int_equal(err, bad >= 0);
        if (!err)
            assert_int_equal(vg_utf8_complete(&v), rc);
    }
}

/* vg_utf8_truncate: the longest valid prefix of at most max bytes, ending on a boundary. */
static void test_truncate(void **state)
{
    (void)state;
    static const char e_acute[] = "ab\xc3\xa9";            /* "abé": 4 bytes */
    static const char euro[] = "\xe2\x82\xac\xe2\x82\xac"; /* two 3-byte characters */
    assert_int_equal(vg_utf8_truncate(e_acute, 4, 4), 4);
    assert_int_equal(vg_utf8_truncate(e_acute, 4, 3), 2); /* not inside the é */
    assert_int_equal(vg_utf8_truncate(e_acute, 4, 100), 4);
    assert_int_equal(vg_utf8_truncate(euro, 6, 5), 3);
    assert_int_equal(vg_utf8_truncate(euro, 6, 2), 0);
    assert_int_equal(vg_utf8_truncate("abc\377def", 7, 7), 3); /* before an invalid byte */
    assert_int_equal(vg_utf8_truncate("ab\xc3", 3, 3), 2);     /* a character cut short */
    assert_int_equal(vg_utf8_truncate("", 0, 10), 0);
}

/* vg_utf8_prefix: the longest complete valid prefix within max bytes, stopping at a NUL. */
static void test_prefix(void **state)
{
    (void)state;
    assert_int_equal(vg_utf8_prefix("abc", 10), 3);
    assert_int_equal(vg_utf8_prefix("abc", 2), 2);
    assert_int_equal(vg_utf8_prefix("ab\xc3\xa9", 3), 2); /* inside "é" */
    assert_int_equal(vg_utf8_prefix("ab\xc3\xa9", 4), 4);
    assert_int_equal(vg_utf8_prefix("\xe2\x82\xac\xe2\x82\xac", 5), 3); /* inside a "€" */
    assert_int_equal(vg_utf8_prefix("\xf0\x9f\x9a\x80x", 4), 4);
    assert_int_equal(vg_utf8_prefix("\xf0\x9f\x9a\x80x", 3), 0);
    assert_int_equal(vg_utf8_prefix("ok\xffno", 10), 2); /* stops at invalid bytes */
    assert_int_equal(vg_utf8_prefix("ok\xc3", 10), 2);   /* and at a truncated end */
    assert_int_equal(vg_utf8_prefix("", 10), 0);
    assert_int_equal(vg_utf8_prefix("abc", 0), 0);
    /* Every cut of a mixed string is a character boundary and valid. */
    const char *mixed = "a\xc3\xa9\xe2\x82\xac\xf0\x9f\x9a\x80z";
    for (size_t max = 0; max <= strlen(mixed) + 1; max++) {
        size_t n = vg_utf8_prefix(mixed, max);
        assert_true(n <= max && vg_utf8_valid((const uint8_t *)mixed, n));
        assert_true(n == strlen(mixed) || n + 4 > max);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kuhn_valid),
        cmocka_unit_test(test_kuhn_invalid),
        cmocka_unit_test(test_truncated_is_incomplete),
        cmocka_unit_test(test_sticky),
        cmocka_unit_test(test_incremental),
        cmocka_unit_test(test_ascii_fast_path),
        cmocka_unit_test(test_exhaustive_short),
        cmocka_unit_test(test_exhaustive_four),
        cmocka_unit_test(test_random_mixed),
        cmocka_unit_test(test_truncate),
        cmocka_unit_test(test_prefix),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
