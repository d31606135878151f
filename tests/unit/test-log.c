/* Logging: levels, JSON format, and the redaction of secrets from every line. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "util/log.h"

static char captured[4096];
static int lines;

static void capture(int level, const char *line, size_t len)
{
    (void)level;
    lines++;
    snprintf(captured, sizeof(captured), "%.*s", (int)len, line);
}

static int setup(void **state)
{
    (void)state;
    vg_log_set_sink(capture);
    vg_log_set_format(VG_LOG_TEXT);
    vg_log_level = VG_LOG_DEBUG;
    lines = 0;
    captured[0] = '\0';
    return 0;
}

static void test_level_filter(void **state)
{
    (void)state;
    vg_log_level = VG_LOG_NOTICE;
    vg_debug("hidden %d", 1);
    vg_verbose("hidden %d", 2);
    assert_int_equal(lines, 0);
    vg_notice("shown %d", 3);
    assert_int_equal(lines, 1);
    assert_non_null(strstr(captured, "notice"));
    assert_non_null(strstr(captured, "shown 3"));
}

static void test_json_format(void **state)
{
    (void)state;
    vg_log_set_format(VG_LOG_JSON);
    vg_warning("quote \" and newline \n here");
    assert_true(captured[0] == '{');
    assert_non_null(strstr(captured, "\"level\":\"warning\""));
    assert_non_null(strstr(captured, "quote \\\" and newline \\u000a here"));
}

static void expect_redacted(const char *secret, const char *fmt_arg)
{
    vg_notice("%s", fmt_arg);
    if (strstr(captured, secret) != NULL)
        fail_msg("secret '%s' leaked into: %s", secret, captured);
    assert_non_null(strstr(captured, "[redacted]"));
}

static void test_secrets_are_redacted(void **state)
{
    (void)state;
    expect_redacted("eyJhbGciOi.abc.def", "GET /ws?token=eyJhbGciOi.abc.def HTTP/1.1");
    expect_redacted("tk123", "GET /ws?a=1&ticket=tk123&b=2");
    expect_redacted("sekrit-key", "Authorization: Bearer sekrit-key");
    expect_redacted("k3y", "X-API-Key: k3y");
    expect_redacted("s3cr3t", "config secret=s3cr3t loaded");
    /* the rest of the line survives */
    vg_notice("GET /ws?token=abc&channel=x");
    assert_non_null(strstr(captured, "channel=x"));
    assert_null(strstr(captured, "abc"));
}

static void test_redaction_at_buffer_end(void **state)
{
    (void)state;
    char big[2100];
    memset(big, 'a', sizeof(big));
    memcpy(big + 2030, "token=SECRETSECRET", 18);
    big[sizeof(big) - 1] = '\0';
    vg_notice("%s", big);
    assert_null(strstr(captured, "SECRET"));
}

/* Issue 15: the query parser decodes parameter names, so "?%74oken=" authenticates like
 * "?token=" and must be redacted like it. */
static void test_percent_encoded_names_are_redacted(void **state)
{
    (void)state;
    expect_redacted("SIG1", "GET /ws?%74oken=aaa.bbb.SIG1 HTTP/1.1");
    expect_redacted("SIG2", "GET /ws?tok%65n=aaa.bbb.SIG2 HTTP/1.1");
    expect_redacted("SIG3", "GET /ws?%74icket=SIG3&x=1 HTTP/1.1");
    expect_redacted("SIG4", "GET /ws?x=1&%54%4F%4B%45%4E=SIG4 HTTP/1.1");
    expect_redacted("SIG5", "GET /api/sse?channels=a&access_%74oken=SIG5 HTTP/1.1");
    expect_redacted("SIG6", "GET /x?api%5Fkey=SIG6");
    /* Other parameters, encoded or not, are left alone. */
    vg_notice("%s", "GET /ws?%63hannel=a&tokens=5&not_a_secret_name=v");
    assert_non_null(strstr(captured, "%63hannel=a&tokens=5&not_a_secret_name=v"));
}

static void test_quoted_secret_is_redacted(void **state)
{
    (void)state;
    expect_redacted("s3cr3t", "config secret=\"s3cr3t\" loaded");
    assert_non_null(strstr(captured, "loaded"));
}

/* Issue 15: a user id or an event name with a newline wrote a second, forged line. */
static void test_control_characters_are_escaped(void **state)
{
    (void)state;
    vg_notice("user %s connected", "bob\n2026-01-01T00:00:00Z notice  forged\r\t\x1b[2J\x7f");
    assert_int_equal(lines, 1);
    assert_null(strchr(captured, '\n'));
    assert_null(strchr(captured, '\r'));
    assert_null(strchr(captured, '\x1b'));
    assert_null(strchr(captured, '\x7f'));
    assert_non_null(strstr(captured,
                           "user bob\\x0a2026-01-01T00:00:00Z notice  forged\\x0d\\x09\\x1b[2J\\x7f"
                           " connected"));
}

static void test_invalid_utf8_is_escaped(void **state)
{
    (void)state;
    /* Valid multi-byte characters pass; a stray continuation byte, an overlong '/', a surrogate,
     * a C1 control (U+0085, "next line") and U+2028 (line separator) do not. */
    vg_notice("[caf\xc3\xa9 \x80 \xc0\xaf \xed\xa0\x80 \xc2\x85 \xe2\x80\xa8 \xe2\x82\xac]");
    assert_non_null(strstr(captured, "[caf\xc3\xa9 \\x80 \\xc0\\xaf \\xed\\xa0\\x80 \\xc2\\x85 "
                                     "\\xe2\\x80\\xa8 \xe2\x82\xac]"));
}

/* The JSON sink escapes the same characters and stays valid JSON (UTF-8 only). */
static void test_json_stays_valid(void **state)
{
    (void)state;
    vg_log_set_format(VG_LOG_JSON);
    vg_notice("user %s \xff \xc2\x85 \\ end", "bob\n\x7f");
    assert_non_null(
        strstr(captured, "\"msg\":\"user bob\\u000a\\u007f \\\\xff \\u0085 \\\\ end\"}"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_level_filter, setup),
        cmocka_unit_test_setup(test_json_format, setup),
        cmocka_unit_test_setup(test_secrets_are_redacted, setup),
        cmocka_unit_test_setup(test_redaction_at_buffer_end, setup),
        cmocka_unit_test_setup(test_percent_encoded_names_are_redacted, setup),
        cmocka_unit_test_setup(test_quoted_secret_is_redacted, setup),
        cmocka_unit_test_setup(test_control_characters_are_escaped, setup),
        cmocka_unit_test_setup(test_invalid_utf8_is_escaped, setup),
        cmocka_unit_test_setup(test_json_stays_valid, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
