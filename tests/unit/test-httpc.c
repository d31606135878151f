/*
 * Tests of the command-line HTTP client's socket-free parts (src/net/httpc.c): URL parsing,
 * request formatting and response parsing (Content-Length, chunked, to EOF, 101 with trailing
 * bytes, 100 Continue, keep-alive, limits), each response also fed one byte at a time.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "net/httpc.h"
#include "util/error.h"

/* ---- URLs ------------------------------------------------------------------------------- */

static void check_url(const char *url, const char *scheme, const char *host, const char *port,
                      const char *authority, const char *path)
{
    vg_url_t u;
    char err[256];
    int rc = vg_url_parse(&u, url, err, sizeof(err));
    if (rc != 0)
        fail_msg("'%s' refused: %s", url, err);
    assert_string_equal(u.scheme, scheme);
    assert_string_equal(u.host, host);
    assert_string_equal(u.port, port);
    assert_string_equal(u.authority, authority);
    assert_string_equal(u.path, path);
    vg_url_dispose(&u);
}

static void url_valid(void **state)
{
    (void)state;
    check_url("http://127.0.0.1:8000", "http", "127.0.0.1", "8000", "127.0.0.1:8000", "/");
    check_url("http://127.0.0.1:8000/", "http", "127.0.0.1", "8000", "127.0.0.1:8000", "/");
    check_url("HTTP://Example.com/api/publish", "http", "Example.com", "80", "Example.com",
              "/api/publish");
    check_url("ws://localhost:9/ws?token=a.b.c&x=1", "ws", "localhost", "9", "localhost:9",
              "/ws?token=a.b.c&x=1");
    check_url("ws://h?x=1", "ws", "h", "80", "h", "/?x=1");
    check_url("http://[::1]:8080/x", "http", "::1", "8080", "[::1]:8080", "/x");
    check_url("http://[fe80::1]", "http", "fe80::1", "80", "[fe80::1]", "/");
    check_url("http://h:00080/", "http", "h", "80", "h:00080", "/");
    check_url("http://h:65535", "http", "h", "65535", "h:65535", "/");
}

static void check_bad_url(const char *url, const char *needle)
{
    vg_url_t u;
    char err[256] = "";
    int rc = vg_url_parse(&u, url, err, sizeof(err));
    if (rc != VG_EINVAL)
        fail_msg("'%s' accepted", url);
    if (strstr(err, needle) == NULL)
        fail_msg("'%s': message '%s' lacks '%s'", url, err, needle);
    assert_null(u.path);
}

static void url_invalid(void **state)
{
    (void)state;
    check_bad_url("127.0.0.1:8000", "http://");
    check_bad_url("https://h/", "TLS");
    check_bad_url("wss://h/", "TLS");
    check_bad_url("ftp://h/", "scheme");
    check_bad_url("http://", "empty host");
    check_bad_url("http://:80/", "empty host");
    check_bad_url("http://h:/", "port");
    check_bad_url("http://h:0/", "port");
    check_bad_url("http://h:65536/", "port");
    check_bad_url("http://h:123456/", "port");
    check_bad_url("http://h:8x/", "port");
    check_bad_url("http://u:p@h/", "user info");
    check_bad_url("http://[::1/", "'['");
    check_bad_url("http://[]/", "IPv6");
    check_bad_url("http://[zz]/", "IPv6");
    check_bad_url("http://[::1]x/", "after ']'");
    check_bad_url("http://::1:80/", "brackets");
    check_bad_url("http://h/a b", "space");
    check_bad_url("http://h/a\tb", "control");
    check_bad_url("http://h/a#frag", "fragment");
    char longhost[400];
    memset(longhost, 'a', sizeof(longhost));
    memcpy(longhost, "http://", 7);
    longhost[sizeof(longhost) - 1] = '\0';
    check_bad_url(longhost, "too long");
}

/* ---- requests ---------------------------------------------------------------------------- */

static void format_request(void **state)
{
    (void)state;
    vg_buf_t b = VG_BUF_INIT;
    vg_httpc_format_request(&b, "POST", "127.0.0.1:8000", "/api/publish",
                            "Authorization: Bearer K\r\nContent-Type: application/json\r\n", 12);
    vg_buf_append(&b, "", 1);
    assert_string_equal(b.base, "POST /api/publish HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n"
                                "Content-Length: 12\r\nAuthorization: Bearer K\r\n"
                                "Content-Type: application/json\r\n\r\n");
    vg_buf_reset(&b);
    vg_httpc_format_request(&b, "GET", "[::1]:80", "/healthz", NULL, 0);
    vg_buf_append(&b, "", 1);
    assert_string_equal(b.base, "GET /healthz HTTP/1.1\r\nHost: [::1]:80\r\n\r\n");
    vg_buf_reset(&b);
    vg_httpc_format_request(&b, "POST", "h", "/", NULL, 0);
    vg_buf_append(&b, "", 1);
    assert_string_equal(b.base, "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n");
    vg_buf_dispose(&b);
}

/* ---- responses --------------------------------------------------------------------------- */

typedef struct expect_s {
    int rc;           /* VG_HTTPC_DONE or an error */
    int status;       /* when done */
    int keep_alive;   /* when done */
    const char *body; /* when done */
    size_t consumed;  /* when done: bytes of the input that belong to the response */
} expect_t;

/* Feeds `in` whole, then again one byte at a time (a fresh parser each time), and checks that
 * both give the same answer.  eof: the connection ends after the input. */
static void run_response(const char *in, int head, size_t max, int eof, const expect_t *want,
                         void (*extra)(const vg_httpc_response_t *r))
{
    size_t len = strlen(in);
    for (int bytewise = 0; bytewise < 2; bytewise++) {
        vg_httpc_response_t r;
        vg_httpc_response_init(&r, head, max);
        size_t total = 0, used = 0;
        int rc = VG_HTTPC_NEED_MORE;
        if (!bytewise) {
            rc = vg_httpc_response_feed(&r, in, len, &used);
            total = used;
        } else {
            for (size_t i = 0; i < len && rc == VG_HTTPC_NEED_MORE; i++) {
                rc = vg_httpc_response_feed(&r, in + i, 1, &used);
                total += used;
            }
        }
        if (rc == VG_HTTPC_NEED_MORE && eof)
            rc = vg_httpc_response_eof(&r);
        if (rc != want->rc)
            fail_msg("%s: rc %d, want %d (%s)", bytewise ? "bytewise" : "whole", rc, want->rc,
                     r.errstr);
        if (rc == VG_HTTPC_DONE) {
            assert_int_equal(r.status, want->status);
            assert_int_equal(r.keep_alive, want->keep_alive);
            assert_int_equal(r.body.len, strlen(want->body));
            assert_memory_equal(r.body.base, want->body, r.body.len);
            assert_int_equal(r.body.base[r.body.len], '\0');
            assert_int_equal(total, want->consumed);
            if (extra != NULL)
                extra(&r);
            /* Done is sticky: more input is left alone. */
            assert_int_equal(vg_httpc_response_feed(&r, "x", 1, &used), VG_HTTPC_DONE);
            assert_int_equal(used, 0);
        } else if (rc < 0) {
            assert_true(r.errstr[0] != '\0');
            assert_int_equal(r.err, rc);
            assert_int_equal(vg_httpc_response_feed(&r, "HTTP/1.1", 8, &used), rc);
        }
        vg_httpc_response_dispose(&r);
    }
}

static void check_headers(const vg_httpc_response_t *r)
{
    assert_string_equal(vg_httpc_response_header(r, "content-type"), "application/json");
    assert_string_equal(vg_httpc_response_header(r, "X-EMPTY"), "");
    assert_string_equal(vg_httpc_response_header(r, "x-twice"), "first");
    assert_null(vg_httpc_response_header(r, "missing"));
}

static void response_content_length(void **state)
{
    (void)state;
    const char *in = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Empty:\r\n"
                     "X-Twice: first\r\nX-Twice: second\r\nContent-Length: 13\r\n\r\n"
                     "{\"offsets\":[]}HTTP/1.1 200 OK\r\n";
    expect_t want = {VG_HTTPC_DONE, 200, 1, "{\"offsets\":[]", strlen(in) - 18};
    /* Content-Length is 13, one less than the JSON text: the parser trusts the length. */
    run_response(in, 0, 0, 0, &want, check_headers);
}

static void response_chunked(void **state)
{
    (void)state;
    const char *in = "HTTP/1.1 400 Bad Request\r\nTransfer-Encoding: chunked\r\n\r\n"
                     "5;ext=1\r\nhello\r\n1\r\n \r\nA\r\n0123456789\r\n0\r\nX-Trailer: t\r\n\r\n";
    expect_t want = {VG_HTTPC_DONE, 400, 1, "hello 0123456789", strlen(in)};
    run_response(in, 0, 0, 0, &want, NULL);
}

static void response_to_eof(void **state)
{
    (void)state;
    const char *in = "HTTP/1.0 200 OK\r\n\r\nuntil the end";
    expect_t want = {VG_HTTPC_DONE, 200, 0, "until the end", strlen(in)};
    run_response(in, 0, 0, 1, &want, NULL);
}

static void response_connection_close(void **state)
{
    (void)state;
    const char *in = "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n"
                     "Content-Length: 2\r\n\r\nno";
    expect_t want = {VG_HTTPC_DONE, 503, 0, "no", strlen(in)};
    run_response(in, 0, 0, 0, &want, NULL);
}

static void response_head_and_204(void **state)
{
    (void)state;
    const char *in = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n";
    expect_t want = {VG_HTTPC_DONE, 200, 1, "", strlen(in)};
    run_response(in, 1, 0, 0, &want, NULL);
    in = "HTTP/1.1 204 No Content\r\n\r\n";
    expect_t want204 = {VG_HTTPC_DONE, 204, 1, "", strlen(in)};
    run_response(in, 0, 0, 0, &want204, NULL);
}

static void response_continue_skipped(void **state)
{
    (void)state;
    const char *in = "HTTP/1.1 100 Continue\r\nX-Early: 1\r\n\r\n"
                     "HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok";
    expect_t want = {VG_HTTPC_DONE, 201, 1, "ok", strlen(in)};
    run_response(in, 0, 0, 0, &want, NULL);
}

static void check_upgrade(const vg_httpc_response_t *r)
{
    assert_string_equal(vg_httpc_response_header(r, "Sec-WebSocket-Accept"),
                        "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

static void response_upgrade_leaves_frames(void **state)
{
    (void)state;
    const char *head = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                       "Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
                       "\r\n\r\n";
    char in[512];
    snprintf(in, sizeof(in), "%s\x81\x02hi", head);
    expect_t want = {VG_HTTPC_DONE, 101, 0, "", strlen(head)};
    run_response(in, 0, 0, 0, &want, check_upgrade);
}

static void response_errors(void **state)
{
    (void)state;
    expect_t bad = {VG_EINVAL};
    run_response("HTTP/1.1 abc OK\r\n\r\n", 0, 0, 0, &bad, NULL);
    run_response("SMTP ready\r\n", 0, 0, 0, &bad, NULL);
    run_response("HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n", 0, 0, 0, &bad, NULL);
    run_response("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 0, 0, 0, &bad,
                 NULL);
    /* Cut short: EOF inside the body, inside the head, and before anything. */
    run_response("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", 0, 0, 1, &bad, NULL);
    run_response("HTTP/1.1 200 OK\r\nContent-Le", 0, 0, 1, &bad, NULL);
    run_response("", 0, 0, 1, &bad, NULL);

    expect_t big = {VG_ELIMIT};
    run_response("HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n"
                 "01234567890123456789012345678901234567890123456789",
                 0, 40, 0, &big, NULL);
    const char *in = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\nX: 1\r\n\r\n0123456789";
    expect_t fits = {VG_HTTPC_DONE, 200, 1, "0123456789", strlen(in)};
    run_response(in, 0, 40, 0, &fits, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(url_valid),
        cmocka_unit_test(url_invalid),
        cmocka_unit_test(format_request),
        cmocka_unit_test(response_content_length),
        cmocka_unit_test(response_chunked),
        cmocka_unit_test(response_to_eof),
        cmocka_unit_test(response_connection_close),
        cmocka_unit_test(response_head_and_204),
        cmocka_unit_test(response_continue_skipped),
        cmocka_unit_test(response_upgrade_leaves_frames),
        cmocka_unit_test(response_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
