/*
 * libFuzzer driver for the HTTP/1.1 request layer (src/proto/http1.c).
 *
 * Input layout: byte 0 says how the client's bytes are cut into reads (high bit set: one read,
 * else (byte & 0x7f) + 1 bytes per read), byte 1 picks small limits so the 413/414/431 paths are
 * reachable, and the rest is what the client sent.
 *
 * Besides "no crash, no leak, no UB" it checks properties:
 *   - the same bytes give the same requests and the same final result whether they arrive in
 *     one read or in pieces;
 *   - *consumed never exceeds the input, and NEED_MORE consumes everything;
 *   - every view of a request points into the parser's own buffer and respects the limits;
 *   - a path accepted by vg_http_path_decode can never leave the directory it is joined to;
 *   - query values and JSON error bodies stay NUL-terminated and escaped.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/http1.h"
#include "util/error.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

/* A view must be empty or lie inside the parser's buffer. */
static void check_view(const vg_http_parser_t *p, vg_iov_t v)
{
    if (v.len == 0)
        return;
    CHECK(v.base >= p->_buf.base && v.base + v.len <= p->_buf.base + p->_buf.len);
}

/* Nothing an accepted path contains may climb out of a root or be read as another root. */
static void check_safe_path(const char *out, int n)
{
    CHECK(n >= 1 && (size_t)n == strlen(out));
    CHECK(out[0] == '/');
    CHECK(strstr(out, "//") == NULL && strstr(out, "/./") == NULL && strstr(out, "/../") == NULL);
    CHECK(strchr(out, '\\') == NULL);
    CHECK(!(n >= 2 && strcmp(out + n - 2, "/.") == 0));
    CHECK(!(n >= 3 && strcmp(out + n - 3, "/..") == 0));
    for (int i = 0; i < n; i++)
        CHECK((unsigned char)out[i] >= 0x20 && out[i] != 0x7f);
}

static void exercise_path(vg_iov_t raw)
{
    char out[256];
    int n = vg_http_path_decode(raw, out, sizeof(out));
    CHECK(n == VG_EINVAL || n >= 0);
    if (n < 0)
        return;
    check_safe_path(out, n);
    /* Exactly n + 1 bytes are needed. */
    char exact[256];
    CHECK(vg_http_path_decode(raw, exact, (size_t)n + 1) == n && strcmp(exact, out) == 0);
    CHECK(vg_http_path_decode(raw, exact, (size_t)n) == VG_EINVAL);
}

static void exercise_query(const vg_http_request_t *req)
{
    static const char *const names[] = {"token", "a", "", "x y", "since"};
    static const size_t caps[] = {1, 4, 64};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        for (size_t k = 0; k < sizeof(caps) / sizeof(caps[0]); k++) {
            char out[64];
            int n = vg_http_query_get(req, names[i], out, caps[k]);
            CHECK(n >= -1 && n < (int)caps[k]);
            if (n >= 0)
                CHECK(out[n] == '\0');
        }
    }
}

/* The JSON body of an error response must be one string-safe line: no raw control bytes. */
static void exercise_error_writer(vg_iov_t text)
{
    char msg[128];
    size_t n = text.len < sizeof(msg) - 1 ? text.len : sizeof(msg) - 1;
    memcpy(msg, text.base, n);
    msg[n] = '\0';
    vg_buf_t out = VG_BUF_INIT;
    vg_http_write_error(&out, 400, msg, msg, NULL, 0);
    const char *body = memmem(out.base, out.len, "\r\n\r\n", 4);
    CHECK(body != NULL);
    for (const char *c = body + 4; c < out.base + out.len; c++)
        CHECK((unsigned char)*c >= 0x20);
    CHECK(out.len >= 2 && memcmp(out.base + out.len - 2, "}}", 2) == 0);
    vg_buf_dispose(&out);
}

static void exercise_request(const vg_http_parser_t *p, const vg_http_request_t *req)
{
    const vg_http_limits_t *lim = &p->_limits;
    check_view(p, req->method_name);
    check_view(p, req->target);
    check_view(p, req->path);
    check_view(p, req->query);
    check_view(p, req->body);
    CHECK(req->method_name.len > 0);
    CHECK(req->num_headers <= VG_HTTP_MAX_HEADERS);
    CHECK(req->body.len <= lim->max_body_bytes);
    CHECK(req->version_major == 1 && (req->version_minor == 0 || req->version_minor == 1));
    size_t head = req->method_name.len + req->target.len;
    for (size_t i = 0; i < req->num_headers; i++) {
        check_view(p, req->headers[i].name);
        check_view(p, req->headers[i].value);
        CHECK(req->headers[i].name.len > 0);
        head += req->headers[i].name.len + req->headers[i].value.len;
    }
    CHECK(head <= lim->max_header_bytes);

    vg_iov_t host = vg_http_header_get(req, "host");
    if (host.base != NULL)
        exercise_error_writer(host);
    (void)vg_http_header_has_token(req, "connection", "upgrade");
    (void)vg_http_header_has_token(req, "sec-websocket-protocol", "chat");
    exercise_query(req);
    exercise_path(req->path);
}

/* Canonical text of a request, to compare runs. */
static void dump_request(vg_buf_t *out, const vg_http_request_t *req, size_t end)
{
    vg_buf_printf(out, "%zu|%d|%.*s|%.*s|%d.%d|%d|%d|%zu\n", end, req->method,
                  (int)req->method_name.len, req->method_name.base, (int)req->target.len,
                  req->target.base, req->version_major, req->version_minor, req->keep_alive,
                  req->upgrade, req->num_headers);
    for (size_t i = 0; i < req->num_headers; i++) {
        vg_buf_append(out, req->headers[i].name.base, req->headers[i].name.len);
        vg_buf_append(out, ":", 1);
        vg_buf_append(out, req->headers[i].value.base, req->headers[i].value.len);
        vg_buf_append(out, "\n", 1);
    }
    vg_buf_append(out, req->body.base, req->body.len);
    vg_buf_append(out, "\n", 1);
}

/* Feeds data in reads of `step` bytes like a connection would, parsing every pipelined request
 * until NEED_MORE or an error; appends what came out to *log and returns the final result. */
static int run(const char *data, size_t len, size_t step, const vg_http_limits_t *lim,
               vg_buf_t *log)
{
    vg_http_parser_t p;
    vg_http_parser_init(&p, lim);
    vg_buf_t pending = VG_BUF_INIT;
    size_t pending_at = 0, fed = 0;
    int rc = VG_HTTP_NEED_MORE;
    while (fed < len && rc >= 0) {
        size_t n = len - fed < step ? len - fed : step;
        vg_buf_append(&pending, data + fed, n);
        fed += n;
        for (;;) {
            size_t used;
            vg_http_request_t *req;
            rc = vg_http_parse(&p, pending.base, pending.len, &used, &req);
            CHECK(used <= pending.len);
            if (rc == VG_HTTP_REQUEST) {
                CHECK(req != NULL && !vg_http_parser_in_request(&p));
                exercise_request(&p, req);
                dump_request(log, req, pending_at + used);
                /* Declining upgrades keeps parsing the rest as HTTP. */
            } else if (rc == VG_HTTP_NEED_MORE) {
                CHECK(req == NULL && used == pending.len);
            } else {
                CHECK(req == NULL);
                int status = vg_http_status_for_error(rc);
                CHECK(status == 400 || status == 413 || status == 414 || status == 431 ||
                      status == 501 || status == 505);
                size_t again;
                CHECK(vg_http_parse(&p, data, len, &again, &req) == rc);
            }
            vg_buf_consume(&pending, used);
            pending_at += used;
            if (rc != VG_HTTP_REQUEST)
                break;
        }
    }
    vg_buf_dispose(&pending);
    vg_http_parser_dispose(&p);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    size_t step = data[0] & 0x80 ? size : (size_t)(data[0] & 0x7f) + 1;
    vg_http_limits_t lim = {
        .max_header_bytes = 64 + (size_t)(data[1] & 0x0f) * 32,
        .max_body_bytes = 1 + (size_t)(data[1] >> 4) * 16,
    };
    const char *in = (const char *)data + 2;
    size_t len = size - 2;

    vg_buf_t whole = VG_BUF_INIT, split = VG_BUF_INIT;
    int rc_whole = run(in, len, len ? len : 1, &lim, &whole);
    int rc_split = run(in, len, step, &lim, &split);
    CHECK(rc_whole == rc_split);
    CHECK(whole.len == split.len &&
          (whole.len == 0 || memcmp(whole.base, split.base, whole.len) == 0));
    vg_buf_dispose(&whole);
    vg_buf_dispose(&split);

    /* The helpers also take raw bytes directly, so the fuzzer can reach them without first
     * building a valid request around its input. */
    vg_iov_t raw = {in, len < 300 ? len : 300};
    exercise_path(raw);
    static vg_http_request_t fake;
    fake.query = raw;
    exercise_query(&fake);
    exercise_error_writer(raw);
    return 0;
}
