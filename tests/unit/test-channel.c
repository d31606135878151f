/* Channel names and patterns: validation messages, matching, pattern containment. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "proto/channel.h"

static const char *name_err(const char *s)
{
    return vg_channel_check_name(s, strlen(s));
}

static const char *pattern_err(const char *s)
{
    return vg_channel_check_pattern(s, strlen(s));
}

static void test_valid_names(void **state)
{
    (void)state;
    static const char *const ok[] = {
        "stats",
        "cameras.cam-1.events",
        "alerts.user.42",
        "a",
        "A.b_c.d-e.f:g.h@i",
        "0.1.2",
        "state.dashboard",
        "-",
        "_._",
        "user@example:42",
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        assert_null(name_err(ok[i]));
        assert_null(pattern_err(ok[i])); /* a plain name is a valid pattern */
        assert_false(vg_channel_is_pattern(ok[i], strlen(ok[i])));
    }
}

static void test_valid_patterns(void **state)
{
    (void)state;
    static const char *const ok[] = {
        "*", ">", "cameras.*", "cameras.>", "*.events", "a.*.c", "*.*", "*.>", "a.b.*.>",
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        assert_null(pattern_err(ok[i]));
        assert_true(vg_channel_is_pattern(ok[i], strlen(ok[i])));
        const char *m = name_err(ok[i]);
        assert_non_null(m);
        assert_string_equal(m, "channel name may not contain the wildcards '*' or '>' (only a "
                               "subscription pattern may)");
    }
}

static void test_length(void **state)
{
    (void)state;
    char buf[VG_CHANNEL_MAX_LEN + 2];
    memset(buf, 'a', sizeof(buf));
    assert_null(vg_channel_check_name(buf, VG_CHANNEL_MAX_LEN));
    assert_null(vg_channel_check_pattern(buf, VG_CHANNEL_MAX_LEN));
    assert_string_equal(vg_channel_check_name(buf, VG_CHANNEL_MAX_LEN + 1),
                        "channel name is longer than 200 bytes");
    assert_string_equal(vg_channel_check_pattern(buf, VG_CHANNEL_MAX_LEN + 1),
                        "channel pattern is longer than 200 bytes");
    assert_string_equal(vg_channel_check_name("", 0), "channel name is empty");
    assert_string_equal(vg_channel_check_pattern("", 0), "channel pattern is empty");
    /* The length given is what counts, not a NUL. */
    assert_null(vg_channel_check_name("abc.def", 3));
    assert_string_equal(vg_channel_check_name("abc.", 4), "channel name has an empty segment");
}

typedef struct bad_s {
    const char *input;
    const char *name_msg;    /* vg_channel_check_name */
    const char *pattern_msg; /* vg_channel_check_pattern */
} bad_t;

#define E_SEG_N "channel name has an empty segment"
#define E_SEG_P "channel pattern has an empty segment"
#define E_CHAR_N                                                                                   \
    "channel name may contain only letters, digits, '_', '-', ':', '@' and '.' between segments"
#define E_CHAR_P                                                                                   \
    "channel pattern may contain only letters, digits, '_', '-', ':', '@', '.' between segments, " \
    "and the wildcard segments '*' and '>'"
#define E_WILD                                                                                     \
    "channel name may not contain the wildcards '*' or '>' (only a subscription pattern may)"
#define E_GT_LAST "channel pattern may have '>' only as its last segment"
#define E_STAR_MIX                                                                                 \
    "channel pattern has '*' mixed with other characters in a segment ('*' must be a whole "       \
    "segment)"
#define E_GT_MIX                                                                                   \
    "channel pattern has '>' mixed with other characters in a segment ('>' must be a whole "       \
    "segment)"

static void test_invalid(void **state)
{
    (void)state;
    static const bad_t bad[] = {
        {".", E_SEG_N, E_SEG_P},
        {".a", E_SEG_N, E_SEG_P},
        {"a.", E_SEG_N, E_SEG_P},
        {"a..b", E_SEG_N, E_SEG_P},
        {"a b", E_CHAR_N, E_CHAR_P},
        {"a/b", E_CHAR_N, E_CHAR_P},
        {"caf\xc3\xa9", E_CHAR_N, E_CHAR_P},
        {"a#", E_CHAR_N, E_CHAR_P},
        {"a+b", E_CHAR_N, E_CHAR_P},
        {"a.*", E_WILD, NULL},
        {"a.>", E_WILD, NULL},
        {">.a", E_WILD, E_GT_LAST},
        {"a.>.b", E_WILD, E_GT_LAST},
        {"a.>.*", E_WILD, E_GT_LAST},
        {">.>", E_WILD, E_GT_LAST},
        {"a*", E_WILD, E_STAR_MIX},
        {"*a", E_WILD, E_STAR_MIX},
        {"a.b*c.d", E_WILD, E_STAR_MIX},
        {"**", E_WILD, E_STAR_MIX},
        {"a>", E_WILD, E_GT_MIX},
        {">a", E_WILD, E_GT_MIX},
        {">>", E_WILD, E_GT_MIX},
        {"a.*>", E_WILD, E_STAR_MIX},
        {"a.>*", E_WILD, E_GT_MIX},
        /* the first problem from the left is the one reported */
        {"a..*x", E_SEG_N, E_SEG_P},
        {"a b..", E_CHAR_N, E_CHAR_P},
        {"x*.a b", E_WILD, E_STAR_MIX},
        {"a.>.", E_WILD, E_GT_LAST},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *n = name_err(bad[i].input), *p = pattern_err(bad[i].input);
        assert_non_null(n);
        assert_string_equal(n, bad[i].name_msg);
        if (bad[i].pattern_msg == NULL) {
            assert_null(p);
        } else {
            assert_non_null(p);
            assert_string_equal(p, bad[i].pattern_msg);
        }
    }
    /* NUL and control bytes inside the given length are bad characters, not terminators. */
    assert_string_equal(vg_channel_check_name("a\0b", 3), E_CHAR_N);
    assert_string_equal(vg_channel_check_pattern("a\nb", 3), E_CHAR_P);
}

typedef struct pair_s {
    const char *a, *b;
    int want;
} pair_t;

static void test_match(void **state)
{
    (void)state;
    static const pair_t t[] = {
        /* pattern, name */
        {"stats", "stats", 1},
        {"stats", "stat", 0},
        {"stat", "stats", 0},
        {"stats", "stats.x", 0},
        {"a.b", "a.c", 0},
        {"a.b", "a.bb", 0},
        {"ab.c", "a.bc", 0},
        {"cameras.*", "cameras.cam-1", 1},
        {"cameras.*", "cameras", 0},
        {"cameras.*", "cameras.cam-1.events", 0},
        {"cameras.>", "cameras.cam-1", 1},
        {"cameras.>", "cameras.cam-1.events", 1},
        {"cameras.>", "cameras", 0},
        {"cameras.>", "camera.x", 0},
        {"cameras.>", "camerasx.y", 0},
        {">", "stats", 1},
        {">", "a.b.c.d", 1},
        {"*", "stats", 1},
        {"*", "a.b", 0},
        {"*.*", "a.b", 1},
        {"*.*", "a", 0},
        {"*.*", "a.b.c", 0},
        {"*.>", "a", 0},
        {"*.>", "a.b", 1},
        {"*.>", "a.b.c", 1},
        {"a.*.c", "a.b.c", 1},
        {"a.*.c", "a.b.d", 0},
        {"a.*.c", "a.c", 0},
        {"*.events", "cam.events", 1},
        {"*.events", "cam.event", 0},
        {"a.*.>", "a.b", 0},
        {"a.*.>", "a.b.c", 1},
        {"a.*.>", "a.b.c.d", 1},
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        int got = vg_channel_match(t[i].a, strlen(t[i].a), t[i].b, strlen(t[i].b)) != 0;
        if (got != t[i].want)
            fail_msg("match(%s, %s) = %d, want %d", t[i].a, t[i].b, got, t[i].want);
    }
}

static void test_covers(void **state)
{
    (void)state;
    static const pair_t t[] = {
        /* allowed, pattern */
        {"a.>", "a.*", 1},
        {"a.>", "a.*.c", 1},
        {"a.>", "a.b.>", 1},
        {"a.>", "a.>", 1},
        {"a.>", "a.b", 1},
        {"a.>", "a", 0},
        {"a.>", "b.c", 0},
        {"a.>", "*.c", 0},
        {"a.>", ">", 0},
        {"a.*", "a.b", 1},
        {"a.*", "a.*", 1},
        {"a.*", "a.>", 0},
        {"a.*", "a.b.c", 0},
        {"a.*", "a", 0},
        {"a.*", "*.b", 0},
        {">", "a", 1},
        {">", "*", 1},
        {">", ">", 1},
        {">", "a.*.>", 1},
        {"*", "a", 1},
        {"*", "*", 1},
        {"*", ">", 0},
        {"*", "a.b", 0},
        {"*", "*.>", 0},
        {"a", "a", 1},
        {"a", "*", 0},
        {"a", ">", 0},
        {"a", "a.b", 0},
        {"a.b", "a", 0},
        {"cameras.>", "cameras.*", 1},
        {"cameras.>", "cameras.cam-1", 1},
        {"cameras.*", "cameras.>", 0},
        {"*.>", "a.>", 1},
        {"*.>", ">", 0}, /* ">" matches one-segment names, "*.>" does not */
        {"*.*.>", "a.>", 0},
        {"*.*.>", "a.*.>", 1},
        {"a.*.>", "a.b.c", 1},
        {"a.*.>", "a.b", 0},
        {"a.*.>", "*.b.c", 0},
        {"*.b", "a.b", 1},
        {"*.b", "a.*", 0},
        {"a.b.*", "a.b.>", 0},
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        int got = vg_channel_covers(t[i].a, strlen(t[i].a), t[i].b, strlen(t[i].b)) != 0;
        if (got != t[i].want)
            fail_msg("covers(%s, %s) = %d, want %d", t[i].a, t[i].b, got, t[i].want);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_names), cmocka_unit_test(test_valid_patterns),
        cmocka_unit_test(test_length),      cmocka_unit_test(test_invalid),
        cmocka_unit_test(test_match),       cmocka_unit_test(test_covers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
