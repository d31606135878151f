/* Strict number parsing for peer input (util/num.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "util/error.h"
#include "util/num.h"

static int dec(const char *s, uint64_t max, uint64_t *out)
{
    return vg_parse_decimal(s, strlen(s), max, out);
}

static int hex(const char *s, uint64_t max, uint64_t *out)
{
    return vg_parse_hex(s, strlen(s), max, out);
}

static void test_decimal(void **state)
{
    (void)state;
    uint64_t v = 77;
    assert_int_equal(dec("0", 10, &v), 0);
    assert_int_equal(v, 0);
    assert_int_equal(dec("10", 10, &v), 0);
    assert_int_equal(v, 10);
    assert_int_equal(dec("007", 10, &v), 0);
    assert_int_equal(v, 7);
    assert_int_equal(dec("18446744073709551615", UINT64_MAX, &v), 0);
    assert_true(v == UINT64_MAX);
    /* What strtoul would have taken: signs, spaces, prefixes, trailing junk, empty text, other
     * bases, overflow.  *out stays as it was. */
    static const char *const bad[] = {"",
                                      "-1",
                                      "+1",
                                      " 1",
                                      "1 ",
                                      "0x10",
                                      "1e3",
                                      "1.0",
                                      "10abc",
                                      "abc",
                                      "0b1",
                                      "١",
                                      "18446744073709551616",
                                      "99999999999999999999999"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        v = 77;
        if (dec(bad[i], UINT64_MAX, &v) != VG_EINVAL)
            fail_msg("\"%s\" was accepted as %llu", bad[i], (unsigned long long)v);
        assert_int_equal(v, 77);
    }
    assert_int_equal(dec("11", 10, &v), VG_EINVAL);
    assert_int_equal(vg_parse_decimal("12", 1, 10, &v), 0); /* only len bytes are read */
    assert_int_equal(v, 1);
    assert_int_equal(vg_parse_decimal(NULL, 0, 10, &v), VG_EINVAL);
}

static void test_hex(void **state)
{
    (void)state;
    uint64_t v = 0;
    assert_int_equal(hex("00000000000000ff", UINT64_MAX, &v), 0);
    assert_int_equal(v, 255);
    assert_int_equal(hex("DeadBeef", UINT64_MAX, &v), 0);
    assert_int_equal(v, 0xdeadbeef);
    assert_int_equal(hex("ffffffffffffffff", UINT64_MAX, &v), 0);
    assert_true(v == UINT64_MAX);
    static const char *const bad[] = {"", "-1", "0x10", "10g", " 1", "10000000000000000"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (hex(bad[i], UINT64_MAX, &v) != VG_EINVAL)
            fail_msg("\"%s\" was accepted", bad[i]);
    assert_int_equal(hex("100", 0xff, &v), VG_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decimal),
        cmocka_unit_test(test_hex),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
