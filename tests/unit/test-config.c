/* Configuration: defaults, sizes, precedence flag > env > file, and errors naming the option. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/config.h"
#include "util/error.h"
#include "util/log.h"

static int load(vg_config_t *cfg, const char **argv, const char **envp, char *err)
{
    int argc = 0;
    while (argv[argc] != NULL)
        argc++;
    return vg_config_load(cfg, argc, argv, envp, err, 512);
}

static void test_defaults(void **state)
{
    (void)state;
    vg_config_t cfg;
    char err[512];
    const char *argv[] = {NULL}, *envp[] = {NULL};
    assert_int_equal(load(&cfg, argv, envp, err), 0);
    assert_int_equal(cfg.num_listen, 1);
    assert_string_equal(cfg.listen[0], "127.0.0.1:8000");
    assert_int_equal(cfg.max_message_size, 1024 * 1024);
    assert_int_equal(cfg.max_outbound, 4 * 1024 * 1024);
    assert_true(cfg.workers >= 1);
    assert_int_equal(cfg.echo, 0);
    assert_int_equal(cfg.log_level, VG_LOG_NOTICE);
    assert_true(cfg.request_timeout == 10.0);
    vg_config_dispose(&cfg);
}

static void test_sizes(void **state)
{
    (void)state;
    size_t v;
    assert_int_equal(vg_parse_size("1048576", &v), 0);
    assert_int_equal(v, 1048576);
    assert_int_equal(vg_parse_size("64K", &v), 0);
    assert_int_equal(v, 65536);
    assert_int_equal(vg_parse_size("64KiB", &v), 0);
    assert_int_equal(v, 65536);
    assert_int_equal(vg_parse_size("2MiB", &v), 0);
    assert_int_equal(v, 2 * 1024 * 1024);
    assert_int_equal(vg_parse_size("1G", &v), 0);
    assert_int_equal(v, 1024 * 1024 * 1024);
    assert_int_equal(vg_parse_size("1.5K", &v), 0);
    assert_int_equal(v, 1536);
    assert_int_equal(vg_parse_size("abc", &v), VG_EINVAL);
    assert_int_equal(vg_parse_size("10X", &v), VG_EINVAL);
    assert_int_equal(vg_parse_size("-1", &v), VG_EINVAL);
    assert_int_equal(vg_parse_size("", &v), VG_EINVAL);
    assert_int_equal(vg_parse_size("1.3", &v), VG_EINVAL);
}

static void test_flags(void **state)
{
    (void)state;
    vg_config_t cfg;
    char err[512];
    const char *argv[] = {"--listen", "127.0.0.1:9001", "--listen=[::1]:9002", "--echo", "--workers=3",
                    "--max-message-size", "64KiB", "--log-level", "debug", NULL};
    const char *envp[] = {NULL};
    assert_int_equal(load(&cfg, argv, envp, err), 0);
    assert_int_equal(cfg.num_listen, 2);
    assert_string_equal(cfg.listen[0], "127.0.0.1:9001");
    assert_string_equal(cfg.listen[1], "[::1]:9002");
    assert_int_equal(cfg.echo, 1);
    assert_int_equal(cfg.workers, 3);
    assert_int_equal(cfg.max_message_size, 65536);
    assert_int_equal(cfg.log_level, VG_LOG_DEBUG);
    vg_config_dispose(&cfg);
}

static void expect_error(const char **argv, const char **envp, const char *needle)
{
    vg_config_t cfg;
    char err[512];
    assert_int_equal(load(&cfg, argv, envp, err), VG_ECONFIG);
    if (strstr(err, needle) == NULL)
        fail_msg("error '%s' does not mention '%s'", err, needle);
    vg_config_dispose(&cfg);
}

static void test_errors_name_the_option(void **state)
{
    (void)state;
    const char *envp[] = {NULL};
    expect_error((const char *[]){"--workers", "zero", NULL}, envp, "--workers");
    expect_error((const char *[]){"--workers", "0", NULL}, envp, "--workers");
    expect_error((const char *[]){"--max-message-size", "big", NULL}, envp, "--max-message-size");
    expect_error((const char *[]){"--log-format", "xml", NULL}, envp, "--log-format");
    expect_error((const char *[]){"--no-such-thing", NULL}, envp, "--no-such-thing");
    expect_error((const char *[]){"--listen", NULL}, envp, "--listen");
    expect_error((const char *[]){"--echo=maybe", NULL}, envp, "--echo");
    expect_error((const char *[]){NULL}, (const char *[]){"VIGIL_WORKERS=lots", NULL}, "VIGIL_WORKERS");
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_precedence(void **state)
{
    (void)state;
    char path[] = "/tmp/vigil-test-config-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    write_file(path, "{\"workers\": 2, \"max-message-size\": \"64KiB\", \"echo\": true,"
                     " \"listen\": [\"127.0.0.1:7001\", \"127.0.0.1:7002\"],"
                     " \"request-timeout\": 2.5}");
    char config_flag[64];
    snprintf(config_flag, sizeof(config_flag), "--config=%s", path);
    vg_config_t cfg;
    char err[512];

    /* file alone */
    assert_int_equal(load(&cfg, (const char *[]){config_flag, NULL}, (const char *[]){NULL}, err), 0);
    assert_int_equal(cfg.workers, 2);
    assert_int_equal(cfg.max_message_size, 65536);
    assert_int_equal(cfg.num_listen, 2);
    assert_int_equal(cfg.echo, 1);
    assert_true(cfg.request_timeout == 2.5);
    vg_config_dispose(&cfg);

    /* env beats file, flag beats env */
    const char *envp[] = {"VIGIL_WORKERS=4", "VIGIL_MAX_MESSAGE_SIZE=128K", "VIGIL_ECHO=false", NULL};
    assert_int_equal(load(&cfg, (const char *[]){config_flag, "--workers", "5", NULL}, envp, err), 0);
    assert_int_equal(cfg.workers, 5);
    assert_int_equal(cfg.max_message_size, 128 * 1024);
    assert_int_equal(cfg.echo, 0);
    /* a list from a higher source replaces, not extends */
    assert_int_equal(cfg.num_listen, 2);
    vg_config_dispose(&cfg);
    assert_int_equal(
        load(&cfg, (const char *[]){config_flag, "--listen", "127.0.0.1:7003", NULL}, envp, err), 0);
    assert_int_equal(cfg.num_listen, 1);
    assert_string_equal(cfg.listen[0], "127.0.0.1:7003");
    vg_config_dispose(&cfg);

    /* unknown keys and bad values in the file are errors naming them */
    write_file(path, "{\"wrokers\": 2}");
    expect_error((const char *[]){config_flag, NULL}, (const char *[]){NULL}, "wrokers");
    write_file(path, "{\"workers\": \"many\"}");
    expect_error((const char *[]){config_flag, NULL}, (const char *[]){NULL}, "--workers");
    write_file(path, "{\"workers\": ");
    expect_error((const char *[]){config_flag, NULL}, (const char *[]){NULL}, path);
    unlink(path);
    expect_error((const char *[]){config_flag, NULL}, (const char *[]){NULL}, path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_sizes),
        cmocka_unit_test(test_flags),
        cmocka_unit_test(test_errors_name_the_option),
        cmocka_unit_test(test_precedence),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
