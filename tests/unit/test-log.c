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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_level_filter, setup),
        cmocka_unit_test_setup(test_json_format, setup),
        cmocka_unit_test_setup(test_secrets_are_redacted, setup),
        cmocka_unit_test_setup(test_redaction_at_buffer_end, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
