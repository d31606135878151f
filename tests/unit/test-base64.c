/*
 * Tests of util/base64: the RFC 4648 vectors in both alphabets, padding rules, characters of the
 * other alphabet refused, and round trips of every length up to 300 bytes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "util/base64.h"

static const char *const plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};

static long decode(const char *text, uint8_t *out, vg_base64_alphabet_t alphabet)
{
    return vg_base64_decode(text, strlen(text), out, alphabet);
}

static void check_vectors(const char *const *coded, vg_base64_alphabet_t alphabet)
{
    for (size_t i = 0; i < 7; i++) {
        char enc[16];
        size_t n = vg_base64_encode(plain[i], strlen(plain[i]), enc, alphabet);
        assert_int_equal(n, vg_base64_encoded_len(strlen(plain[i]), alphabet));
        assert_string_equal(enc, coded[i]);
        uint8_t out[16];
        long m = decode(coded[i], out, alphabet);
        assert_int_equal(m, (long)strlen(plain[i]));
        assert_memory_equal(out, plain[i], (size_t)m);
    }
}

static void test_standard_alphabet(void **state)
{
    (void)state;
    /* RFC 4648 section 10 */
    static const char *const coded[] = {"",         "Zg==",     "Zm8=",    "Zm9v",
                                        "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    check_vectors(coded, VG_BASE64_STD);
    uint8_t out[16];
    assert_int_equal(decode("Zm9vYg", out, VG_BASE64_STD), 4); /* padding is optional */
    assert_int_equal(decode("Zm9v Yg==", out, VG_BASE64_STD), -1);
    assert_int_equal(decode("Zm9v-_==", out, VG_BASE64_STD), -1); /* the URL alphabet's */
    assert_int_equal(decode("Zm9vY===", out, VG_BASE64_STD), -1); /* impossible length */
    assert_int_equal(decode("Zg=a", out, VG_BASE64_STD), -1);     /* padding in the middle */
    assert_int_equal(decode("Zm9=", out, VG_BASE64_STD), 2);
}

static void test_url_alphabet(void **state)
{
    (void)state;
    static const char *const coded[] = {"", "Zg", "Zm8", "Zm9v", "Zm9vYg", "Zm9vYmE", "Zm9vYmFy"};
    check_vectors(coded, VG_BASE64_URL);
    uint8_t out[16];
    static const uint8_t bytes[] = {0xfb, 0xff};
    char enc[8];
    vg_base64_encode(bytes, 2, enc, VG_BASE64_URL);
    assert_string_equal(enc, "-_8");
    assert_int_equal(decode("-_8", out, VG_BASE64_URL), 2);
    assert_int_equal(decode("+/8", out, VG_BASE64_URL), -1);  /* the standard alphabet's */
    assert_int_equal(decode("Zg==", out, VG_BASE64_URL), -1); /* never padded */
    assert_int_equal(decode("Z", out, VG_BASE64_URL), -1);
}

static void test_round_trips(void **state)
{
    (void)state;
    uint8_t data[300], back[300 + 3];
    srand(7);
    for (int a = VG_BASE64_STD; a <= VG_BASE64_URL; a++) {
        for (size_t len = 0; len < sizeof(data); len++) {
            for (size_t i = 0; i < len; i++)
                data[i] = (uint8_t)rand();
            vg_buf_t b = VG_BUF_INIT;
            vg_base64_append(&b, data, len, (vg_base64_alphabet_t)a);
            assert_int_equal(b.len, vg_base64_encoded_len(len, (vg_base64_alphabet_t)a));
            assert_int_equal(vg_base64_decode(b.base, b.len, back, (vg_base64_alphabet_t)a),
                             (long)len);
            assert_memory_equal(back, data, len);
            vg_buf_dispose(&b);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_standard_alphabet),
        cmocka_unit_test(test_url_alphabet),
        cmocka_unit_test(test_round_trips),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
