/*
 * Tests of the WebSocket protocol layer (src/proto/ws.c).
 *
 * Every byte stream is fed several ways (whole, one byte at a time, and in pieces of 2, 3, 5
 * and 13 bytes) by run(); each way must end with exactly the same messages, pongs, sent bytes,
 * close report and return code as the whole feed.  Each piece is copied into its own exact-size
 * allocation so ASan catches a read past the end of a piece.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "proto/ws.h"
#include "util/buf.h"
#include "util/chunk.h"
#include "util/error.h"

#define FIN    0x80
#define TEXT   VG_WS_OP_TEXT
#define BINARY VG_WS_OP_BINARY
#define CONT   VG_WS_OP_CONT
#define CLOSE  VG_WS_OP_CLOSE
#define PING   VG_WS_OP_PING
#define PONG   VG_WS_OP_PONG
#define MAXREC 64
#define BIG    ((size_t)16 << 20)

/* The masking key of the examples in RFC 6455 section 5.7. */
static const uint8_t KEY[4] = {0x37, 0xfa, 0x21, 0x3d};

/* ---- building client frames -------------------------------------------------------------- */

/* Appends a client frame: b0 is the first header byte (FIN, RSV, opcode), `declared` the length
 * written in the header (it may lie), then `len` payload bytes, masked with KEY if `masked`. */
static void frame_ex(vg_buf_t *out, uint8_t b0, int masked, uint64_t declared, const void *payload,
                     size_t len)
{
    uint8_t h[14];
    size_t n = 0;
    uint8_t mbit = masked ? 0x80 : 0;
    h[n++] = b0;
    if (declared <= 125) {
        h[n++] = (uint8_t)(mbit | declared);
    } else if (declared <= 0xffff) {
        h[n++] = mbit | 126;
        h[n++] = (uint8_t)(declared >> 8);
        h[n++] = (uint8_t)declared;
    } else {
        h[n++] = mbit | 127;
        for (int i = 0; i < 8; i++)
            h[n++] = (uint8_t)(declared >> (56 - 8 * i));
    }
    if (masked) {
        memcpy(h + n, KEY, 4);
        n += 4;
    }
    vg_buf_append(out, h, n);
    if (len == 0)
        return;
    uint8_t *dst = (uint8_t *)vg_buf_reserve(out, len);
    for (size_t i = 0; i < len; i++)
        dst[i] = ((const uint8_t *)payload)[i] ^ (masked ? KEY[i & 3] : 0);
    out->len += len;
}

static void frame(vg_buf_t *out, uint8_t b0, const void *payload, size_t len)
{
    frame_ex(out, b0, 1, len, payload, len);
}

static void frame_str(vg_buf_t *out, uint8_t b0, const char *s)
{
    frame(out, b0, s, strlen(s));
}

/* A client close frame with a code and a reason of rlen bytes. */
static void close_frame(vg_buf_t *out, int code, const char *reason, size_t rlen)
{
    uint8_t p[256];
    p[0] = (uint8_t)(code >> 8);
    p[1] = (uint8_t)code;
    memcpy(p + 2, reason, rlen);
    frame(out, FIN | CLOSE, p, 2 + rlen);
}

/* ---- recording what the layer does ------------------------------------------------------- */

typedef struct opts_s {
    size_t max;               /* max_message_size; 0 means BIG */
    int zero_max;             /* use max_message_size 0 */
    int close_in_msg;         /* vg_ws_start_close(1001, "going away") from on_message #n */
    int start_close;          /* vg_ws_start_close(start_close, reason) before feeding */
    const char *start_reason; /* its reason */
    int no_pong_cb;           /* on_pong NULL */
} opts_t;

typedef struct rec_s {
    vg_ws_t ws;
    const opts_t *o;
    int nmsg;
    struct {
        int opcode;
        uint8_t *data;
        size_t len;
        int in_place;
    } msg[MAXREC];
    int npong;
    struct {
        uint8_t data[125];
        size_t len;
    } pong[MAXREC];
    vg_buf_t sent;
    int nclose, close_code, close_failed, state_in_close;
    char close_reason[128];
    int ret;        /* first nonzero vg_ws_feed result */
    int late_calls; /* callbacks after on_close: must stay 0 */
    const uint8_t *piece;
    size_t piece_len;
} rec_t;

static void on_message(vg_ws_t *ws, int opcode, uint8_t *data, size_t len)
{
    rec_t *r = ws->data;
    r->late_calls += r->nclose;
    assert_true(r->nmsg < MAXREC);
    assert_non_null(data);
    uintptr_t d = (uintptr_t)data, p = (uintptr_t)r->piece;
    r->msg[r->nmsg].opcode = opcode;
    r->msg[r->nmsg].len = len;
    r->msg[r->nmsg].in_place = d >= p && d + len <= p + r->piece_len;
    r->msg[r->nmsg].data = malloc(len ? len : 1);
    memcpy(r->msg[r->nmsg].data, data, len);
    r->nmsg++;
    if (r->o->close_in_msg == r->nmsg)
        vg_ws_start_close(ws, VG_WS_CLOSE_GOING_AWAY, "going away");
}

static void on_pong(vg_ws_t *ws, const uint8_t *data, size_t len)
{
    rec_t *r = ws->data;
    r->late_calls += r->nclose;
    assert_true(r->npong < MAXREC);
    assert_true(len <= 125);
    memcpy(r->pong[r->npong].data, data, len);
    r->pong[r->npong++].len = len;
}

static void on_send(vg_ws_t *ws, const uint8_t *frame_bytes, size_t len)
{
    rec_t *r = ws->data;
    r->late_calls += r->nclose;
    vg_buf_append(&r->sent, frame_bytes, len);
}

static void on_close(vg_ws_t *ws, int code, const char *reason, int failed)
{
    rec_t *r = ws->data;
    r->late_calls += r->nclose;
    r->nclose++;
    r->close_code = code;
    r->close_failed = failed;
    r->state_in_close = ws->state;
    assert_true(strlen(reason) < sizeof(r->close_reason));
    strcpy(r->close_reason, reason);
}

static const vg_ws_callbacks_t callbacks = {on_message, on_pong, on_send, on_close};
static const vg_ws_callbacks_t callbacks_no_pong = {on_message, NULL, on_send, on_close};

static rec_t *rec_new(const opts_t *o)
{
    rec_t *r = calloc(1, sizeof(*r));
    r->o = o;
    size_t max = o->zero_max ? 0 : o->max ? o->max : BIG;
    vg_ws_init(&r->ws, o->no_pong_cb ? &callbacks_no_pong : &callbacks, max, r);
    if (o->start_close)
        vg_ws_start_close(&r->ws, o->start_close, o->start_reason);
    return r;
}

static void rec_free(rec_t *r)
{
    for (int i = 0; i < r->nmsg; i++)
        free(r->msg[i].data);
    vg_buf_dispose(&r->sent);
    vg_ws_dispose(&r->ws);
    free(r);
}

/* Feeds one piece from its own exact-size copy, as a socket read would. */
static void feed_piece(rec_t *r, const uint8_t *p, size_t n)
{
    uint8_t *copy = malloc(n ? n : 1);
    memcpy(copy, p, n);
    int was_closed = r->ws.state == VG_WS_CLOSED;
    r->piece = copy;
    r->piece_len = n;
    int rc = vg_ws_feed(&r->ws, copy, n);
    r->piece = NULL;
    free(copy);
    if (was_closed)
        assert_int_equal(rc, VG_ECLOSED);
    if (r->ret == 0)
        r->ret = rc;
    /* A nonzero result means the layer is closed, and the other way round. */
    assert_int_equal(rc != 0, r->ws.state == VG_WS_CLOSED);
}

static rec_t *run_step(const uint8_t *in, size_t len, size_t step, const opts_t *o)
{
    rec_t *r = rec_new(o);
    for (size_t off = 0; off < len; off += step)
        feed_piece(r, in + off, len - off < step ? len - off : step);
    assert_int_equal(r->late_calls, 0);
    assert_true(r->nclose <= 1);
    if (r->nclose)
        assert_int_equal(r->state_in_close, VG_WS_CLOSED);
    return r;
}

static void rec_same(const rec_t *a, const rec_t *b)
{
    assert_int_equal(a->nmsg, b->nmsg);
    for (int i = 0; i < a->nmsg; i++) {
        assert_int_equal(a->msg[i].opcode, b->msg[i].opcode);
        assert_int_equal(a->msg[i].len, b->msg[i].len);
        assert_memory_equal(a->msg[i].data, b->msg[i].data, a->msg[i].len);
    }
    assert_int_equal(a->npong, b->npong);
    for (int i = 0; i < a->npong; i++) {
        assert_int_equal(a->pong[i].len, b->pong[i].len);
        assert_memory_equal(a->pong[i].data, b->pong[i].data, a->pong[i].len);
    }
    assert_int_equal(a->sent.len, b->sent.len);
    if (a->sent.len)
        assert_memory_equal(a->sent.base, b->sent.base, a->sent.len);
    assert_int_equal(a->nclose, b->nclose);
    assert_int_equal(a->close_code, b->close_code);
    assert_int_equal(a->close_failed, b->close_failed);
    assert_string_equal(a->close_reason, b->close_reason);
    assert_int_equal(a->ret, b->ret);
    assert_int_equal(a->ws.state, b->ws.state);
    /* On a failure a whole feed may have consumed payload past the bad byte. */
    if (!a->close_failed)
        assert_true(a->ws.bytes_in == b->ws.bytes_in);
}

/* Feeds `in` whole and in pieces of 1, 2, 3, 5 and 13 bytes; every way must agree.  Returns the
 * record of the whole feed (free with rec_free). */
static rec_t *run_opts(const vg_buf_t *in, const opts_t *o)
{
    static const size_t steps[] = {1, 2, 3, 5, 13};
    const uint8_t *p = (const uint8_t *)in->base;
    rec_t *whole = run_step(p, in->len, in->len ? in->len : 1, o);
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        rec_t *r = run_step(p, in->len, steps[i], o);
        rec_same(whole, r);
        rec_free(r);
    }
    return whole;
}

static rec_t *run(const vg_buf_t *in)
{
    static const opts_t defaults = {0};
    return run_opts(in, &defaults);
}

/* ---- checks ------------------------------------------------------------------------------ */

/* The bytes of a server close frame, built by hand (not with the code under test). */
static size_t server_close(uint8_t *out, int code, const char *reason)
{
    size_t rlen = reason ? strlen(reason) : 0;
    out[0] = 0x88;
    if (code == 0) {
        out[1] = 0;
        return 2;
    }
    out[1] = (uint8_t)(2 + rlen);
    out[2] = (uint8_t)(code >> 8);
    out[3] = (uint8_t)code;
    memcpy(out + 4, reason, rlen);
    return 4 + rlen;
}

static void expect_sent(const rec_t *r, const void *bytes, size_t len)
{
    assert_int_equal(r->sent.len, len);
    assert_memory_equal(r->sent.base, bytes, len);
}

/* The layer failed with `code`, sent exactly one close frame (the last thing it sent), with
 * `reason`, reported failed=1 and returned err. */
static void expect_fail(const rec_t *r, int code, const char *reason, int err)
{
    uint8_t want[128];
    size_t n = server_close(want, code, reason);
    assert_int_equal(r->nclose, 1);
    assert_int_equal(r->close_code, code);
    assert_int_equal(r->close_failed, 1);
    assert_string_equal(r->close_reason, reason);
    assert_int_equal(r->ret, err);
    assert_int_equal(r->ws.state, VG_WS_CLOSED);
    assert_true(r->sent.len >= n);
    assert_memory_equal(r->sent.base + r->sent.len - n, want, n);
}

static void expect_proto(const rec_t *r, const char *reason)
{
    expect_fail(r, VG_WS_CLOSE_PROTOCOL, reason, VG_EWS_PROTOCOL);
}

static void expect_open(const rec_t *r)
{
    assert_int_equal(r->nclose, 0);
    assert_int_equal(r->ret, 0);
    assert_int_equal(r->ws.state, VG_WS_OPEN);
}

static void expect_msg(const rec_t *r, int i, int opcode, const void *data, size_t len)
{
    assert_true(i < r->nmsg);
    assert_int_equal(r->msg[i].opcode, opcode);
    assert_int_equal(r->msg[i].len, len);
    if (len)
        assert_memory_equal(r->msg[i].data, data, len);
}

static void expect_msg_str(const rec_t *r, int i, int opcode, const char *s)
{
    expect_msg(r, i, opcode, s, strlen(s));
}

/* ---- handshake, codes, encoding ---------------------------------------------------------- */

static void test_accept_key(void **state)
{
    (void)state;
    char out[29];
    const char *key = "dGhlIHNhbXBsZSBub25jZQ==";
    vg_ws_accept_key(key, strlen(key), out);
    assert_string_equal(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

static void test_close_code_valid(void **state)
{
    (void)state;
    for (int code = -1; code <= 70000; code++) {
        int want = (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
                   (code >= 3000 && code <= 4999);
        assert_int_equal(vg_ws_close_code_valid(code) != 0, want);
    }
    assert_false(vg_ws_close_code_valid(1004));
    assert_false(vg_ws_close_code_valid(1005));
    assert_false(vg_ws_close_code_valid(1006));
    assert_false(vg_ws_close_code_valid(1015));
    assert_false(vg_ws_close_code_valid(2999));
    assert_true(vg_ws_close_code_valid(1012));
    assert_true(vg_ws_close_code_valid(4999));
    assert_false(vg_ws_close_code_valid(5000));
}

static void test_encode_header(void **state)
{
    (void)state;
    uint8_t h[VG_WS_MAX_HEADER];
    assert_int_equal(vg_ws_encode_header(h, TEXT, 0), 2);
    assert_memory_equal(h, "\x81\x00", 2);
    assert_int_equal(vg_ws_encode_header(h, BINARY, 125), 2);
    assert_memory_equal(h, "\x82\x7d", 2);
    assert_int_equal(vg_ws_encode_header(h, TEXT, 126), 4);
    assert_memory_equal(h, "\x81\x7e\x00\x7e", 4);
    assert_int_equal(vg_ws_encode_header(h, TEXT, 65535), 4);
    assert_memory_equal(h, "\x81\x7e\xff\xff", 4);
    assert_int_equal(vg_ws_encode_header(h, TEXT, 65536), 10);
    assert_memory_equal(h, "\x81\x7f\x00\x00\x00\x00\x00\x01\x00\x00", 10);
    assert_int_equal(vg_ws_encode_header(h, PING, 0x0102030405060708ull), 10);
    assert_memory_equal(h, "\x89\x7f\x01\x02\x03\x04\x05\x06\x07\x08", 10);
}

static void test_frame_new(void **state)
{
    (void)state;
    vg_chunk_t *c = vg_ws_frame_new(TEXT, "Hello", 5);
    assert_int_equal(c->len, 7);
    assert_memory_equal(c->data, "\x81\x05Hello", 7);
    vg_chunk_unref(c);

    c = vg_ws_frame_new(BINARY, NULL, 0);
    assert_int_equal(c->len, 2);
    assert_memory_equal(c->data, "\x82\x00", 2);
    vg_chunk_unref(c);

    static uint8_t big[65536];
    memset(big, 'x', sizeof(big));
    size_t sizes[] = {125, 126, 65535, 65536};
    size_t hdrs[] = {2, 4, 4, 10};
    for (size_t i = 0; i < 4; i++) {
        c = vg_ws_frame_new(BINARY, big, sizes[i]);
        assert_int_equal(c->len, hdrs[i] + sizes[i]);
        assert_memory_equal(c->data + hdrs[i], big, sizes[i]);
        vg_chunk_unref(c);
    }
}

static void test_close_frame_new(void **state)
{
    (void)state;
    vg_chunk_t *c = vg_ws_close_frame_new(1000, "bye");
    assert_int_equal(c->len, 7);
    assert_memory_equal(c->data,
                        "\x88\x05\x03\xe8"
                        "bye",
                        7);
    vg_chunk_unref(c);

    c = vg_ws_close_frame_new(4000, NULL);
    assert_int_equal(c->len, 4);
    assert_memory_equal(c->data, "\x88\x02\x0f\xa0", 4);
    vg_chunk_unref(c);

    /* 200 ASCII bytes: cut to 123. */
    char reason[256];
    memset(reason, 'a', 200);
    reason[200] = '\0';
    c = vg_ws_close_frame_new(1001, reason);
    assert_int_equal(c->len, 2 + 125);
    assert_int_equal(c->data[1], 125);
    vg_chunk_unref(c);

    /* 122 ASCII + a 2-byte character: 124 bytes, and the character cannot be split. */
    memset(reason, 'a', 122);
    strcpy(reason + 122, "\xc3\xa9");
    c = vg_ws_close_frame_new(1001, reason);
    assert_int_equal(c->data[1], 2 + 122);
    vg_chunk_unref(c);

    /* 121 ASCII + a 3-byte character: 124 bytes, cut before the character. */
    memset(reason, 'a', 121);
    strcpy(reason + 121, "\xe2\x82\xac");
    c = vg_ws_close_frame_new(1001, reason);
    assert_int_equal(c->data[1], 2 + 121);
    vg_chunk_unref(c);

    /* 120 ASCII + a 3-byte character fits exactly. */
    memset(reason, 'a', 120);
    strcpy(reason + 120, "\xe2\x82\xac");
    c = vg_ws_close_frame_new(1001, reason);
    assert_int_equal(c->data[1], 2 + 123);
    assert_memory_equal(c->data + 4 + 120, "\xe2\x82\xac", 3);
    vg_chunk_unref(c);

    /* An invalid reason is cut before the first bad byte. */
    c = vg_ws_close_frame_new(1000, "ok\xff!");
    assert_int_equal(c->len, 6);
    assert_memory_equal(c->data, "\x88\x04\x03\xe8ok", 6);
    vg_chunk_unref(c);
}

/* ---- data messages ----------------------------------------------------------------------- */

static void test_text_rfc_example(void **state)
{
    (void)state;
    /* RFC 6455 section 5.7: a single-frame masked text message "Hello". */
    static const uint8_t bytes[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d,
                                    0x7f, 0x9f, 0x4d, 0x51, 0x58};
    vg_buf_t in = VG_BUF_INIT;
    vg_buf_append(&in, bytes, sizeof(bytes));
    rec_t *r = run(&in);
    expect_open(r);
    assert_int_equal(r->nmsg, 1);
    expect_msg_str(r, 0, TEXT, "Hello");
    assert_int_equal(r->sent.len, 0);
    assert_true(r->ws.bytes_in == 5);
    /* Fed whole, the message is delivered from the input buffer without a copy. */
    assert_true(r->msg[0].in_place);
    rec_free(r);
    vg_buf_dispose(&in);
}

static void test_binary_and_several(void **state)
{
    (void)state;
    vg_buf_t in = VG_BUF_INIT;
    static const uint8_t bin[] = {0x00, 0xff, 0xfe, 0x80, 0xc0, 0x01};
    frame(&in, FIN | BINARY, bin, sizeof(bin));
    frame_str(&in, FIN | TEXT, "one");
    frame_str(&in, FIN | TEXT, "two");
    rec_t *r = run(&in);
    expect_open(r);
    assert_int_equal(r->nmsg, 3);
    expect_msg(r, 0, BINARY, bin, sizeof(bin));
    expect_msg_str(r, 1, TEXT, "one");
    expect_msg_str(r, 2, TEXT, "two");
    for (int i = 0; i < 3; i++)
        assert_true(r->msg[i].in_place);
    rec_free(r);
    vg_buf_dispose(&in);
}

static void test_fragmented_rfc_example(void **state)
{
    (void)state;
    /* RFC 6455 section 5.7: "Hel" then "lo", unmasked in the RFC; masked here. */
    vg_buf_t in = VG_BUF_INIT;
    frame_str(&in, TEXT, "Hel");
    frame_str(&in, FIN | CONT, "lo");
    rec_t *r = run(&in);
    expect_open(r);
    assert_int_equal(r->nmsg, 1);
    expect_msg_str(r, 0, TEXT, "Hello");
    assert_false(r->msg[0].in_place);
    rec_free(r);
    vg_buf_dispose(&in);
}

static void test_fragmented_many(void **state)
{
    (void)state;
    vg_buf_t in = VG_BUF_INIT;
    frame_str(&in, BINARY, "a");
    frame_str(&in, CONT, "bc");
    frame_str(&in, CONT, "");
    frame_str(&in, CONT, "def");
    frame_str(&in, FIN | CONT, "g");
    frame_str(&in, FIN | TEXT, "next");
    rec_t *r = run(&in);
    expect_open(r);
    assert_int_equal(r->nmsg, 2);
    expect_msg_str(r, 0, BINARY, "abcdefg");
    expect_msg_str(r, 1, TEXT, "next");
    rec_free(r);
    vg_buf_dispose(&in);
}

static void test_empty_messages(void **state)
{
    (void)state;
    vg_buf_t in = VG_BUF_INIT;
    frame_str(&in, FIN | TEXT, "");
    frame_str(&in, FIN | BINARY, "");
    frame_str(&in, TEXT, ""); /* empty fragments */
    frame_str(&in, FIN | CONT, "");
    frame_str(&in, TEXT, ""); /* empty first fragment, data in the last */
    frame_str(&in, FIN | CONT, "xy");
    frame_str(&in, BINARY, "zw"); /* data in the first, empty last */
    frame_str(&in, FIN | CONT, "");
    rec_t *r = run(&in);
    expect_open(r);
    assert_int_equal(r->nmsg, 5);
    expect_msg_str(r, 0, TEXT, "");
    expect_msg_str(r, 1, BINARY, "");
    expect_msg_str(r, 2, TEXT, "");
    expect_msg_str(r, 3, TEXT, "xy");
    expect_msg_str(r, 4, BINARY, "zw");
    assert_true(r->ws.bytes_in == 4);
    rec_free(r);
    vg_buf_dispose(&in);
}

static void test_length_boundaries(void **state)
{
    (void)state;
    static const size_t sizes[] = {0, 1, 124, 125, 126, 127, 65535, 65536, 65537};
    uint8_t *payload = malloc(65537);
    for (size_t i = 0; i < 65537; i++)
        payload[i] = (uint8_t)('a' + i % 26);
    for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
        vg_buf_t in = VG_BUF_INIT;
        frame(&in, FIN | TEXT, payload, sizes[s]);
        /* The header form the client used: 7-bit, 16-bit or 64-bit length. */
        size_t hdr = sizes[s] <= 125 ? 6 : sizes[s] <= 65535 ? 8 : 14;
        assert_int_equal(in.len, hdr + sizes[s]);
        frame_str(&in, FIN | BINARY, "end");
        rec_t *r = run(&in);
        expect_open(r);
        assert_int_equal(r->nmsg, 2);
        expect_msg(r, 0, TEXT, payload, sizes[s]);
        expect_msg_str(r, 1, BINARY, "end");
        rec_free(r);
        vg_buf_dispose(&in);
    }
    free(payload);
}

static void test_non_minimal_length_accepted(void **state)
{
    (void)state;
    /* "ab" declared with a 16-bit length, then with a 64-bit one. */
    static const uint8_t bytes[] = {0x82, 0xfe, 0x00, 0x02, 0, 0, 0, 0, 'a', 'b', 0x82, 0xff, 0,
                                    0,    0,    0,    0,    0, 0, 2, 0, 0,   0,   0,    'c',  'd'};
    vg_buf_t in = VG_BUF_INIT;
    vg_buf_append(&in, bytes, sizeof(bytes));
    rec_t *r = run(&in);
    expect_open(r);
    assert_int_equal(r->nmsg, 2);
    expect_msg_str(r, 0, BINARY, "ab");
    expect_msg_str(r, 1, BINARY, "cd");
    rec_free(r);
    vg_buf_dispose(&in);
}

/* ---- control frames ---------------------------------------------------------------------- */

static void test_ping_pong(void **state)
{
    (void)state;
    uint8_t p125[125];
    for (int i = 0; i < 125; i++)
        p125[i] = (uint8_t)i;
    vg_buf_t in = VG_BUF_INIT;
    frame_str(&in, FIN | PING, "hello");
    frame_str(&in, FIN | PING, "");
    frame(&in, FIN | PING, p125, sizeof(p125));
    rec_t *r = run(&in);
    expect_open(r);
    vg_buf_t want = VG_BUF_INIT;
    vg_buf_append(&want, "\x8a\x05hello", 7);
    vg_buf_append(&want, "\x8a\x00", 2);
    vg_buf_append(&want, "\x8a\x7d", 2);
    vg_buf_append(&want, p125, sizeof(p125));
    expect_sent(r, want.base, want.len);
    assert_int_equal(r->nmsg, 0);
    rec_free(r);
    vg_buf_dispose(&want);
    vg_buf_dispose(&in);
}

/* The owner's on_ping decides which pings are answered (a rate limit), and pongs go through
 * send_pong when it is set (the owner coalesces them), never through send. */
static int pings_seen;
static vg_buf_t pongs_sent;

static int on_ping_every_other(vg_ws_t *ws, const uint8_t *data, size_t len)
{
    (void)ws;
    (void)data;
    assert_true(len <= 125);
    return pings_seen++ % 2 == 0;
}

static void on_send_pong(vg_ws_t *ws, const uint8_t *frame_bytes, size_t len)
{
    (void)ws;
    vg_buf_append(&pongs_sent, frame_bytes, len);
}

static void test_ping_owner_callbacks(void **state)
{
    (void)state;
    static const vg_ws_callbacks_t cbs = {on_message,          on_pong,     on_send, on_close,
                                          on_ping_every_other, on_send_pong};
    opts_t o = {0};
    rec_t *r = calloc(1, sizeof(*r));
    r->o = &o;
    vg_ws_init(&r->ws, &cbs, BIG, r);
    pings_seen = 0;
    pongs_sent = VG_BUF_INIT;
    vg_buf_t in = VG_BUF_INIT;
    frame_str(&in, FIN | PING, "one");
    frame_str(&in, FIN | PING, "two");
    frame_str(&in, FIN | PING, "three");
    frame_str(&in, FIN | TEXT, "after");
    feed_piece(r, (const uint8_t *)in.base, in.len);
    assert_int_equal(pings_seen, 3);
    assert_int_equal(pongs_sent.len, 2 + 3 + 2 + 5);
    assert_memory_equal(pongs_sent.base, "\x8a\x03one\x8a\x05three", pongs_sent.len);
    assert_int_equal(r->sent.len, 0); /* nothing through send */
    assert_int_equal(r->nmsg, 1);     /* and the stream goes on */
    assert_int_equal(r->ws.state, VG_WS_OPEN);
    vg_buf_dispose(&pongs_sent);
    vg_buf_dispose(&in);
    rec_free(r);
}

static void test_pong_reported(void **state)
{
    (void)state;
    vg_buf_t in = VG_BUF_INIT;
    frame_str(&in, FIN | PONG, "beat");
    frame_str(&in, FIN | PONG, "");
    rec_t *r = run(&in);
    expect_open(r);
    assert_int_equal(r->npong, 2);
    assert_int_equal(r->pong[0].len, 4);
    assert_memory_equal(r->pong[0].data, "beat", 4);
    assert_int_equal(r->pong[1].len, 0);
    assert_int_equal(r->sent.len, 0);
    rec_free(r);

    /* on_pong may be NULL. */
    opts_t o = {.no_pong_cb = 1};
    r = run_opts(&in, &o);
    expect_open(r);
    assert_int_equal(r->npong, 0);
    rec_free(r);
    vg_buf_dispose(&in);
}

static void test_interleaved_control(void **state)
{
    (void)state;
    vg_buf_t in = VG_BUF_INIT;
    frame_str(&in, TEXT, "Hel");
    frame_str(&in, FIN | PING, "p1");
    frame_str(&in, CONT, "l");
    frame_str(&in, FIN | PONG, "q");
    frame_str(&in, FIN | PING, "p2");
    frame_str(&in, FIN | CONT, "o");
    rec_t *r = run(&in);
    expect_open(r);
    assert_int_equal(r->nmsg, 1);
    expect_msg_str(r, 0, TEXT, "Hello");
    expect_sent(r, "\x8a\x02p1\x8a\x02p2", 8);
    assert_int_equal(r->npong, 1);
    rec_free(r);
    vg_buf_dispose(&in);
}

static void test_close_echo(void **state)
{
    (void)state;
    vg_buf_t in = VG_BUF_INIT;
    close_frame(&in, 1000, "bye", 3);
    frame_str(&in, FIN | TEXT, "ignored"); /* after the close: never parsed */
    frame_str(&in, FIN | PING, "ignored");
    rec_t *r = run(&in);
    assert_int_equal(r->nclose, 1);
    assert_int_equal(r->close_code, 1000);
    assert_string_equal(r->close_reason, "bye");
    assert_int_equal(r->close_failed, 0);
    assert_int_equal(r->ret, VG_ECLOSED);
    assert_int_equal(r->ws.state, VG_WS_CLOSED);
    assert_int_equal(r->nmsg, 0);
    /* The echo carries the code and no reason. */
    expect_sent(r, "\x88\x02\x03\xe8", 4);
    /* Later input is ignored. */
    uint8_t more[] = {0x81, 0x80, 0, 0, 0, 0};
    assert_int_equal(vg_ws_feed(&r->ws, more, sizeof(more)), VG_ECLOSED);
    assert_int_equal(r->sent.len, 4);
    assert_int_equal(r->nclose, 1);
    rec_free(r);
    vg_buf_dispose(&in);
}

static void test_close_empty(void **state)
{
    (void)state;
    vg_buf_t in = VG_BUF_INIT;
    frame_str(&in, FIN | CLOSE, "");
    rec_t *r = run(&in);
    assert_int_equal(r->nclose, 1);
    assert_int_equal(r->close_code, VG_WS_CLOSE_NO_STATUS);
    assert_string_equal(r->close_reason, "");
    assert_int_equal(r->close_failed, 0);
    assert_int_equal(r->ret, VG_ECLOSED);
    expect_sent(r, "\x88\x00", 2);
    rec_free(r);
    vg_buf_dispose(&in);
}

static void test_close_one_byte(void **state)
{
    (void)state;
    vg_buf_t in = VG_BUF_INIT;
    frame_str(&in, FIN | CLOSE, "\x03");
    rec_t *r = run(&in);
    expect_proto(r, "invalid close frame");
    expect_sent(r,
                "\x88\x15\x03\xea"
                "invalid close frame",
                2 + 2 + 19);
    rec_free(r);
    vg_buf_dispose(&in);
}

static void test_close_codes(void **state)
{
    (void)state;
    static const int valid[] = {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010,
                                1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999};
    static const int invalid[] = {0,    1,    999,  1004, 1005, 1006,  1015, 1016,
                                  1100, 2000, 2999, 5000, 5001, 32768, 65535};
    for (size_t i = 0; i < sizeof(valid) / sizeof(valid[0]); i++) {
        vg_buf_t in = VG_BUF_INIT;
        close_frame(&in, valid[i], "", 0);
        rec_t *r = run(&in);
        assert_int_equal(r->close_code, valid[i]);
        assert_int_equal(r->close_failed, 0);
        uint8_t want[4];
        assert_int_equal(server_close(want, valid[i], ""), 4);
        expect_sent(r, want, 4);
        rec_free(r);
        vg_buf_dispose(&in);
    }
    for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++) {
        vg_buf_t in = VG_BUF_INIT;
        close_frame(&in, invalid[i], "x", 1);
        rec_t *r = run(&in);
        expect_proto(r, "invalid close code");
        expect_sent(r,
                    "\x88\x14\x03\xea"
                    "invalid close code",
                    2 + 2 + 18);
        rec_free(r);
        vg_buf_dispose(&in);
    }
}

static void test_close_reason(void **state)
{
    (void)state;
    /* A valid multi-byte reason of the maximum length (123 bytes) is reported as is. */
    char reason[124];
    memset(reason, 'r', 120);
    memcpy(reason + 120, "\xe2\x82\xac", 3);
    reason[123] = '\0';
    vg_buf_t in = VG_BUF_INIT;
    close_frame(&in, 4001, reason, 123);
    rec_t *r = run(&in);
    assert_int_equal(r->close_code, 4001);
    assert_string_equal(r->close_reason, reason);
    assert_int_equal(r->close_failed, 0);
    expect_sent(r, "\x88\x02\x0f\xa1", 4);
    rec_free(r);
    vg_buf_dispose(&in);

    /* Invalid UTF-8 (a lone continuation byte, a truncated character) in the reason: 1007. */
    static const char *bad[] = {"\x80", "ok\xe2\x82", "\xed\xa0\x80", "\xc0\xaf"};
    for (size_t i = 0; i < 4; i++) {
        in = (vg_buf_t)VG_BUF_INIT;
        close_frame(&in, 1000, bad[i], strlen(bad[i]));
        r = run(&in);
        expect_fail(r, VG_WS_CLOSE_BAD_DATA, "invalid UTF-8", VG_EWS_UTF8);
        expect_sent(r,
                    "\x88\x0f\x03\xef"
                    "invalid UTF-8",
                    2 + 2 + 13);
        rec_free(r);
        vg_buf_dispose(&in);
    }
}

static void test_close_during_fragmented_message(void **state)
{
    (void)state;
    vg_buf_t in = VG_BUF_INIT;
    frame_str(&in, TEXT, "partial");
    close_frame(&in, 1001, "", 0);
    rec_t *r = run(&in);
    assert_int_equal(r->nmsg, 0);
    assert_int_equal(r->close_code, 1001);
    assert_int_equal(r->close_failed, 0);
    expect_sent(r, "\x88\x02\x03\xe9", 4);
    rec_free(r);
    vg_buf_dispose(&in);
}

/* ---- protocol violations ----------------------------------------------------------------- */

static void test_unmasked(void **state)
{
    (void)state;
    vg_buf_t in = VG_BUF_INIT;
    frame_ex(&in, FIN | TEXT, 0, 5, "Hello", 5);
    rec_t *r = run(&in);
    expect_proto(r, "unmasked frame");
    expect_sent(r,
                "\x88\x10\x03\xea"
                "unmasked frame",
                2 + 2 + 14);
    assert_int_equal(r->nmsg, 0);
    rec_free(r);

    /* Detected on the second byte: nothing after it is needed. */
    in.len = 2;
    r = run(&in);
    expect_proto(r, "unmasked frame");
    rec_free(r);
    vg_buf_dispose(&in);
}

static void test_rsv_bits(void **state)
{
    (void)state;
    static const uint8_t b0[] = {0xc1, 0xa1, 0x91, 0xf1, 0xc9, 0x40};
    for (size_t i = 0; i < sizeof(b0); i++) {
        vg_buf_t in = VG_BUF_INIT;
        frame_str(&in, b0[i], "x");
        rec_t *r = run(&in);
        expect_proto(r, "reserved bits set");
        expect_sent(r,
                    "\x88\x13\x03\xea"
                    "reserved bits set",
                    2 + 2 + 17);
        rec_free(r);
        vg_buf_dispose(&in);
    }
}

static void test_reserved_opcodes(void **state)
{
    (void)state;
    static const uint8_t ops[] = {3, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf};
    for (size_t i = 0; i < sizeof(ops); i++) {
        for (int fin = 0; fin <= FIN; fin += FIN) {
            vg_buf_t in = VG_BUF_INIT;
            frame_str(&in, (uint8_t)(fin | ops[i]), "x");
            rec_t *r = run(&in);
            expect_proto(r, "reserved opcode");
            expect_sent(r,
                        "\x88\x11\x03\xea"
                        "reserved opcode",
                        2 + 2 + 15);
            rec_free(r);
            vg_buf_dispose(&in);
        }
    }
}

static void test_control_too_long(void **state)
{
    (void)state;
    uint8_t p[126] = {0};
    static const uint8_t ops[] = {PING, PONG, CLOSE};
    for (size_t i = 0; i < 3; i++) {
        vg_buf_t in = VG_BUF_INIT;
        frame(&in, FIN | ops[i], p, sizeof(p));
        rec_t *r = run(&in);
        expect_proto(r, "control frame too long");
        expect_sent(r,
                    "\x88\x18\x03\xea"
                    "control frame too long",
                    2 + 2 + 22);
        rec_free(r);
        /* Detected from the first two bytes. */
        in.len = 2;
        r = run(&in);
        expect_proto(r, "control frame too long");
        rec_free(r);
        vg_buf_dispose(&in);
    }
}

static void test_control_fragmented(void **state)
{
    (void)state;
    static const uint8_t ops[] = {PING, PONG, CLOSE};
    for (size_t i = 0; i < 3; i++) {
        vg_buf_t in = VG_BUF_INIT;
        frame_str(&in, ops[i], "");
        rec_t *r = run(&in);
        expect_proto(r, "fragmented control frame");
        expect_sent(r,
                    "\x88\x1a\x03\xea"
                    "fragmented control frame",
                    2 + 2 + 24);
        rec_free(r);
        vg_buf_dispose(&in);
    }
}

static void test_unexpected_continuation(void **state)
{
    (void)state;
    vg_buf_t in = VG_BUF_INIT;
    frame_str(&in, FIN | CONT, "x");
    rec_t *r = run(&in);
    expect_proto(r, "unexpected continuation frame");
    rec_free(r);
    vg_buf_dispose(&in);

    /* After a complete message there is nothing to continue either. */
    in = (vg_buf_t)VG_BUF_INIT;
    frame_str(&in, TEXT, "a");
    frame_str(&in, FIN | CONT, "b");
    frame_str(&in, CONT, "c");
    r = run(&in);
    assert_int_equal(r->nmsg, 1);
    expect_msg_str(r, 0, TEXT, "ab");
    expect_proto(r, "unexpected continuation frame");
    expect_sent(r,
                "\x88\x1f\x03\xea"
                "unexpected continuation frame",
                2 + 2 + 29);
    rec_free(r);
    vg_buf_dispose(&in);
}

static void test_expected_continuation(void **state)
{
    (void)state;
    static const uint8_t second[] = {TEXT, FIN | TEXT, BINARY, FIN | BINARY};
    for (size_t i = 0; i < sizeof(second); i++) {
        vg_buf_t in = VG_BUF_INIT;
        frame_str(&in, i < 2 ? BINARY : TEXT, "a");
        frame_str(&in, second[i], "b");
        rec_t *r = run(&in);
        assert_int_equal(r->nmsg, 0);
        expect_proto(r, "expected continuation frame");
        expect_sent(r,
                    "\x88\x1d\x03\xea"
                    "expected continuation frame",
                    2 + 2 + 27);
        rec_free(r);
        vg_buf_dispose(&in);
    }
}

static void test_length_msb(void **state)
{
    (void)state;
    static const uint8_t bytes[] = {0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4};
    vg_buf_t in = VG_BUF_INIT;
    vg_buf_append(&in, bytes, sizeof(bytes));
    opts_t o = {.max = SIZE_MAX};
    rec_t *r = run_opts(&in, &o);
    expect_proto(r, "invalid frame length");
    expect_sent(r,
                "\x88\x16\x03\xea"
                "invalid frame length",
                2 + 2 + 20);
    rec_free(r);
    vg_buf_dispose(&in);
}

/* ---- UTF-8 ------------------------------------------------------------------------------- */

static void expect_bad_utf8(const rec_t *r)
{
    expect_fail(r, VG_WS_CLOSE_BAD_DATA, "invalid UTF-8", VG_EWS_UTF8);
    expect_sent(r,
                "\x88\x0f\x03\xef"
                "invalid UTF-8",
                2 + 2 + 13);
}

static void test_invalid_utf8(void **state)
{
    (void)state;
    static const char *bad[] = {
        "\xff", "a\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\x80", "abc\xe2\x82",
        /* \x65\x64 is "ed" */
        "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80\x65\x64ited"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        vg_buf_t in = VG_BUF_INIT;
        frame_str(&in, FIN | TEXT, bad[i]);
        rec_t *r = run(&in);
        assert_int_equal(r->nmsg, 0);
        expect_bad_utf8(r);
        rec_free(r);
        vg_buf_dispose(&in);
    }
}

static void test_invalid_utf8_fails_fast(void **state)
{
    (void)state;
    /* Autobahn 6.4.1: the first fragment ends in a surrogate; only that fragment is sent, so
     * the failure must come before the message could complete. */
    vg_buf_t in = VG_BUF_INIT;
    frame_str(&in, TEXT, "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4\x90\x80\x80");
    rec_t *r = run(&in);
    expect_bad_utf8(r);
    rec_free(r);
    vg_buf_dispose(&in);

    /* Autobahn 6.4.3/6.4.4: one frame whose payload has not all arrived yet; the bytes that did
     * arrive already hold the bad sequence (0xf4 0x90 fails at 0x90). */
    const char *text = "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4\x90\x80\x80"
                       "edited";
    in = (vg_buf_t)VG_BUF_INIT;
    frame_str(&in, FIN | TEXT, text);
    in.len = 6 + 13; /* header + through the 0x90 */
    r = run(&in);
    expect_bad_utf8(r);
    rec_free(r);
    in.len = 6 + 12; /* header + through the 0xf4: still a valid prefix */
    r = run(&in);
    expect_open(r);
    rec_free(r);
    vg_buf_dispose(&in);
}

static void test_utf8_split_across_fragments(void **state)
{
    (void)state;
    vg_buf_t in = VG_BUF_INIT;
    frame_str(&in, TEXT, "\xe2"); /* the euro sign, one byte per fragment... */
    frame_str(&in, CONT, "\x82");
    frame_str(&in, FIN | PING, "!"); /* ...with a ping in the middle */
    frame_str(&in, FIN | CONT, "\xac");
    frame_str(&in, TEXT, "a\xf0\x9f"); /* U+1F600 split 2|2 */
    frame_str(&in, FIN | CONT, "\x98\x80z");
    rec_t *r = run(&in);
    expect_open(r);
    assert_int_equal(r->nmsg, 2);
    expect_msg_str(r, 0, TEXT, "\xe2\x82\xac");
    expect_msg_str(r, 1, TEXT, "a\xf0\x9f\x98\x80z");
    expect_sent(r, "\x8a\x01!", 3);
    rec_free(r);
    vg_buf_dispose(&in);

    /* Invalid only in the combination: 0xed then 0xa0 in the next fragment. */
    in = (vg_buf_t)VG_BUF_INIT;
    frame_str(&in, TEXT, "ok\xed");
    frame_str(&in, CONT, "\xa0\x80");
    r = run(&in);
    expect_bad_utf8(r);
    rec_free(r);
    vg_buf_dispose(&in);
}

static void test_utf8_incomplete_at_end(void **state)
{
    (void)state;
    vg_buf_t in = VG_BUF_INIT;
    frame_str(&in, TEXT, "ok");
    frame_str(&in, FIN | CONT, "\xe2\x82");
    rec_t *r = run(&in);
    assert_int_equal(r->nmsg, 0);
    expect_bad_utf8(r);
    rec_free(r);
    vg_buf_dispose(&in);
}

static void test_binary_not_validated(void **state)
{
    (void)state;
    vg_buf_t in = VG_BUF_INIT;
    frame_str(&in, FIN | BINARY, "\xff\xed\xa0\x80");
    rec_t *r = run(&in);
    expect_open(r);
    expect_msg_str(r, 0, BINARY, "\xff\xed\xa0\x80");
    rec_free(r);
    vg_buf_dispose(&in);
}

/* ---- size limit -------------------------------------------------------------------------- */

static void expect_too_big(const rec_t *r)
{
    expect_fail(r, VG_WS_CLOSE_TOO_BIG, "message too big", VG_EWS_TOO_BIG);
    expect_sent(r,
                "\x88\x11\x03\xf1"
                "message too big",
                2 + 2 + 15);
}

static void test_max_size_single_frame(void **state)
{
    (void)state;
    uint8_t p[300];
    memset(p, 'm', sizeof(p));
    static const size_t limits[] = {100, 125, 126, 200};
    for (size_t i = 0; i < 4; i++) {
        opts_t o = {.max = limits[i]};
        vg_buf_t in = VG_BUF_INIT;
        frame(&in, FIN | TEXT, p, limits[i]); /* exactly at the limit */
        rec_t *r = run_opts(&in, &o);
        expect_open(r);
        expect_msg(r, 0, TEXT, p, limits[i]);
        rec_free(r);
        vg_buf_dispose(&in);

        in = (vg_buf_t)VG_BUF_INIT;
        frame(&in, FIN | BINARY, p, limits[i] + 1); /* one over */
        r = run_opts(&in, &o);
        assert_int_equal(r->nmsg, 0);
        expect_too_big(r);
        assert_true(r->ws.bytes_in == 0);
        rec_free(r);
        /* The header alone is enough to refuse it. */
        in.len = limits[i] + 1 <= 125 ? 6 : 8;
        r = run_opts(&in, &o);
        expect_too_big(r);
        rec_free(r);
        vg_buf_dispose(&in);
    }
}

static void test_max_size_fragments(void **state)
{
    (void)state;
    uint8_t p[100];
    memset(p, 'f', sizeof(p));
    opts_t o = {.max = 100};
    vg_buf_t in = VG_BUF_INIT;
    frame(&in, TEXT, p, 60);
    frame(&in, FIN | PING, "", 0); /* control frames do not count */
    frame(&in, CONT, p, 0);
    frame(&in, FIN | CONT, p, 40);
    rec_t *r = run_opts(&in, &o);
    expect_open(r);
    expect_msg(r, 0, TEXT, p, 100);
    rec_free(r);
    vg_buf_dispose(&in);

    in = (vg_buf_t)VG_BUF_INIT;
    frame(&in, BINARY, p, 60);
    frame(&in, FIN | CONT, p, 41);
    r = run_opts(&in, &o);
    assert_int_equal(r->nmsg, 0);
    expect_too_big(r);
    rec_free(r);
    /* Refused on the second fragment's header, before its payload. */
    in.len = 6 + 60 + 6;
    r = run_opts(&in, &o);
    expect_too_big(r);
    rec_free(r);
    vg_buf_dispose(&in);

    /* Three fragments, the last one pushing it over by one byte. */
    in = (vg_buf_t)VG_BUF_INIT;
    frame(&in, TEXT, p, 50);
    frame(&in, CONT, p, 50);
    frame(&in, FIN | CONT, p, 1);
    r = run_opts(&in, &o);
    expect_too_big(r);
    rec_free(r);
    vg_buf_dispose(&in);
}

static void test_max_size_zero(void **state)
{
    (void)state;
    opts_t o = {.zero_max = 1};
    vg_buf_t in = VG_BUF_INIT;
    frame_str(&in, FIN | TEXT, "");
    frame_str(&in, FIN | PING, "still fine");
    rec_t *r = run_opts(&in, &o);
    expect_open(r);
    assert_int_equal(r->nmsg, 1);
    rec_free(r);
    frame_str(&in, FIN | TEXT, "x");
    r = run_opts(&in, &o);
    expect_fail(r, VG_WS_CLOSE_TOO_BIG, "message too big", VG_EWS_TOO_BIG); /* after the pong */
    rec_free(r);
    vg_buf_dispose(&in);
}

static void test_huge_declared_length(void **state)
{
    (void)state;
    /* 2^63 - 1 declared: refused on the header, nothing allocated. */
    static const uint8_t bytes[] = {0x82, 0xff, 0x7f, 0xff, 0xff, 0xff, 0xff,
                                    0xff, 0xff, 0xff, 1,    2,    3,    4};
    vg_buf_t in = VG_BUF_INIT;
    vg_buf_append(&in, bytes, sizeof(bytes));
    rec_t *r = run(&in);
    expect_too_big(r);
    rec_free(r);
    vg_buf_dispose(&in);
}

/* ---- closing from our side --------------------------------------------------------------- */

static void test_start_close_then_reply(void **state)
{
    (void)state;
    opts_t o = {.start_close = 1000, .start_reason = "bye"};
    vg_buf_t in = VG_BUF_INIT;
    frame_str(&in, FIN | TEXT, "dropped");    /* parsed, not delivered */
    frame_str(&in, BINARY, "also");           /* fragmented, not delivered */
    frame_str(&in, FIN | PING, "unanswered"); /* no pong once our close is out */
    frame_str(&in, FIN | CONT, "dropped");
    frame_str(&in, FIN | PONG, "still alive"); /* reported */
    close_frame(&in, 1000, "ok", 2);
    rec_t *r = run_opts(&in, &o);
    assert_int_equal(r->nmsg, 0);
    assert_int_equal(r->npong, 1);
    assert_int_equal(r->nclose, 1);
    assert_int_equal(r->close_code, 1000);
    assert_string_equal(r->close_reason, "ok");
    assert_int_equal(r->close_failed, 0);
    assert_int_equal(r->ret, VG_ECLOSED);
    assert_int_equal(r->ws.state, VG_WS_CLOSED);
    /* Only our own close was sent: no pong, no second close. */
    expect_sent(r,
                "\x88\x05\x03\xe8"
                "bye",
                7);
    rec_free(r);
    vg_buf_dispose(&in);

    /* The state moves to CLOSE_SENT at once; a second call is a no-op. */
    rec_t *s = rec_new(&o);
    assert_int_equal(s->ws.state, VG_WS_CLOSE_SENT);
    vg_ws_start_close(&s->ws, 1001, "again");
    assert_int_equal(s->sent.len, 7);
    assert_int_equal(s->nclose, 0);
    rec_free(s);
}

static void test_start_close_peer_reply_without_code(void **state)
{
    (void)state;
    opts_t o = {.start_close = 4000, .start_reason = NULL};
    vg_buf_t in = VG_BUF_INIT;
    frame_str(&in, FIN | CLOSE, "");
    rec_t *r = run_opts(&in, &o);
    assert_int_equal(r->close_code, VG_WS_CLOSE_NO_STATUS);
    assert_int_equal(r->close_failed, 0);
    expect_sent(r, "\x88\x02\x0f\xa0", 4);
    rec_free(r);
    vg_buf_dispose(&in);
}

static void test_start_close_then_violation(void **state)
{
    (void)state;
    opts_t o = {.start_close = 1001, .start_reason = "shutdown"};
    vg_buf_t in = VG_BUF_INIT;
    frame_str(&in, FIN | TEXT, "\xff"); /* still validated while closing */
    rec_t *r = run_opts(&in, &o);
    assert_int_equal(r->nclose, 1);
    assert_int_equal(r->close_code, VG_WS_CLOSE_BAD_DATA);
    assert_int_equal(r->close_failed, 1);
    assert_int_equal(r->ret, VG_EWS_UTF8);
    /* No second close frame. */
    expect_sent(r,
                "\x88\x0a\x03\xe9"
                "shutdown",
                12);
    rec_free(r);
    vg_buf_dispose(&in);

    in = (vg_buf_t)VG_BUF_INIT;
    close_frame(&in, 1005, "", 0); /* invalid code in the peer's answer */
    r = run_opts(&in, &o);
    assert_int_equal(r->close_code, VG_WS_CLOSE_PROTOCOL);
    assert_int_equal(r->close_failed, 1);
    assert_int_equal(r->ret, VG_EWS_PROTOCOL);
    expect_sent(r,
                "\x88\x0a\x03\xe9"
                "shutdown",
                12);
    rec_free(r);
    vg_buf_dispose(&in);
}

static void test_start_close_truncation(void **state)
{
    (void)state;
    /* 100 two-byte characters: 200 bytes, cut to 61 characters (122 bytes), not 123. */
    char reason[256];
    for (int i = 0; i < 100; i++)
        memcpy(reason + 2 * i, "\xc3\xa9", 2);
    reason[200] = '\0';
    opts_t o = {.start_close = 1000, .start_reason = reason};
    rec_t *r = rec_new(&o);
    assert_int_equal(r->sent.len, 2 + 2 + 122);
    assert_int_equal((uint8_t)r->sent.base[1], 124);
    assert_memory_equal(r->sent.base + 4, reason, 122);
    rec_free(r);
}

static void test_close_from_callback(void **state)
{
    (void)state;
    /* on_message of the first message starts the close; the rest of the same input is parsed
     * but not delivered or answered, then the peer's close ends it. */
    opts_t o = {.close_in_msg = 1};
    vg_buf_t in = VG_BUF_INIT;
    frame_str(&in, FIN | TEXT, "a");
    frame_str(&in, FIN | TEXT, "b");
    frame_str(&in, FIN | PING, "c");
    close_frame(&in, 1000, "", 0);
    rec_t *r = run_opts(&in, &o);
    assert_int_equal(r->nmsg, 1);
    expect_msg_str(r, 0, TEXT, "a");
    expect_sent(r,
                "\x88\x0c\x03\xe9"
                "going away",
                14);
    assert_int_equal(r->close_code, 1000);
    assert_int_equal(r->close_failed, 0);
    assert_int_equal(r->ret, VG_ECLOSED);
    rec_free(r);
    vg_buf_dispose(&in);

    /* Same from a reassembled message (delivered from the layer's own buffer). */
    in = (vg_buf_t)VG_BUF_INIT;
    frame_str(&in, TEXT, "x");
    frame_str(&in, FIN | CONT, "y");
    frame_str(&in, FIN | BINARY, "z");
    r = run_opts(&in, &o);
    assert_int_equal(r->nmsg, 1);
    expect_msg_str(r, 0, TEXT, "xy");
    assert_int_equal(r->ws.state, VG_WS_CLOSE_SENT);
    assert_int_equal(r->ret, 0);
    rec_free(r);
    vg_buf_dispose(&in);
}

/* ---- lifecycle --------------------------------------------------------------------------- */

static void test_failure_is_final(void **state)
{
    (void)state;
    vg_buf_t in = VG_BUF_INIT;
    frame_ex(&in, FIN | TEXT, 0, 1, "x", 1);
    frame_str(&in, FIN | TEXT, "never");
    rec_t *r = run(&in);
    expect_proto(r, "unmasked frame");
    assert_int_equal(r->nmsg, 0);
    uint8_t more[] = {0x89, 0x80, 0, 0, 0, 0};
    assert_int_equal(vg_ws_feed(&r->ws, more, sizeof(more)), VG_ECLOSED);
    assert_int_equal(vg_ws_feed(&r->ws, more, 0), VG_ECLOSED);
    vg_ws_start_close(&r->ws, 1000, "no-op");
    assert_int_equal(r->nclose, 1);
    expect_sent(r,
                "\x88\x10\x03\xea"
                "unmasked frame",
                18);
    rec_free(r);
    vg_buf_dispose(&in);
}

static void test_in_place_only_when_whole(void **state)
{
    (void)state;
    static const opts_t o = {0};
    vg_buf_t in = VG_BUF_INIT;
    frame_str(&in, FIN | TEXT, "zero-copy");
    rec_t *r = run_step((const uint8_t *)in.base, in.len, in.len, &o);
    assert_true(r->msg[0].in_place);
    rec_free(r);
    /* Split payload: reassembled. */
    r = run_step((const uint8_t *)in.base, in.len, in.len - 1, &o);
    expect_msg_str(r, 0, TEXT, "zero-copy");
    assert_false(r->msg[0].in_place);
    rec_free(r);
    /* Header in one read, the whole payload in the next: still zero-copy. */
    r = rec_new(&o);
    feed_piece(r, (const uint8_t *)in.base, 6);
    feed_piece(r, (const uint8_t *)in.base + 6, in.len - 6);
    expect_msg_str(r, 0, TEXT, "zero-copy");
    assert_true(r->msg[0].in_place);
    rec_free(r);
    vg_buf_dispose(&in);
}

static void test_dispose_mid_message(void **state)
{
    (void)state;
    static const opts_t o = {0};
    vg_buf_t in = VG_BUF_INIT;
    frame_str(&in, TEXT, "first fragment");
    frame_str(&in, FIN | CONT, "second");
    /* Stop in the middle of the second fragment and of a control frame: buffers are held. */
    rec_t *r = run_step((const uint8_t *)in.base, in.len - 3, 4, &o);
    expect_open(r);
    assert_true(r->ws._msg.len > 0);
    vg_ws_dispose(&r->ws);
    /* The struct can be initialised again and works. */
    vg_ws_init(&r->ws, &callbacks, 1000, r);
    uint8_t hello[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58};
    assert_int_equal(vg_ws_feed(&r->ws, hello, sizeof(hello)), 0);
    expect_msg_str(r, 0, TEXT, "Hello");
    rec_free(r);

    vg_buf_reset(&in);
    frame_str(&in, FIN | PING, "partial ping payload");
    r = run_step((const uint8_t *)in.base, in.len - 1, 7, &o);
    assert_true(r->ws._ctl.len > 0);
    rec_free(r);
    vg_buf_dispose(&in);
}

static void test_bytes_in(void **state)
{
    (void)state;
    vg_buf_t in = VG_BUF_INIT;
    frame_str(&in, FIN | TEXT, "12345");
    frame_str(&in, FIN | PING, "123");
    frame_str(&in, BINARY, "12");
    frame_str(&in, FIN | CONT, "1");
    rec_t *r = run(&in);
    assert_true(r->ws.bytes_in == 11);
    rec_free(r);
    vg_buf_dispose(&in);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accept_key),
        cmocka_unit_test(test_close_code_valid),
        cmocka_unit_test(test_encode_header),
        cmocka_unit_test(test_frame_new),
        cmocka_unit_test(test_close_frame_new),
        cmocka_unit_test(test_text_rfc_example),
        cmocka_unit_test(test_binary_and_several),
        cmocka_unit_test(test_fragmented_rfc_example),
        cmocka_unit_test(test_fragmented_many),
        cmocka_unit_test(test_empty_messages),
        cmocka_unit_test(test_length_boundaries),
        cmocka_unit_test(test_non_minimal_length_accepted),
        cmocka_unit_test(test_ping_pong),
        cmocka_unit_test(test_ping_owner_callbacks),
        cmocka_unit_test(test_pong_reported),
        cmocka_unit_test(test_interleaved_control),
        cmocka_unit_test(test_close_echo),
        cmocka_unit_test(test_close_empty),
        cmocka_unit_test(test_close_one_byte),
        cmocka_unit_test(test_close_codes),
        cmocka_unit_test(test_close_reason),
        cmocka_unit_test(test_close_during_fragmented_message),
        cmocka_unit_test(test_unmasked),
        cmocka_unit_test(test_rsv_bits),
        cmocka_unit_test(test_reserved_opcodes),
        cmocka_unit_test(test_control_too_long),
        cmocka_unit_test(test_control_fragmented),
        cmocka_unit_test(test_unexpected_continuation),
        cmocka_unit_test(test_expected_continuation),
        cmocka_unit_test(test_length_msb),
        cmocka_unit_test(test_invalid_utf8),
        cmocka_unit_test(test_invalid_utf8_fails_fast),
        cmocka_unit_test(test_utf8_split_across_fragments),
        cmocka_unit_test(test_utf8_incomplete_at_end),
        cmocka_unit_test(test_binary_not_validated),
        cmocka_unit_test(test_max_size_single_frame),
        cmocka_unit_test(test_max_size_fragments),
        cmocka_unit_test(test_max_size_zero),
        cmocka_unit_test(test_huge_declared_length),
        cmocka_unit_test(test_start_close_then_reply),
        cmocka_unit_test(test_start_close_peer_reply_without_code),
        cmocka_unit_test(test_start_close_then_violation),
        cmocka_unit_test(test_start_close_truncation),
        cmocka_unit_test(test_close_from_callback),
        cmocka_unit_test(test_failure_is_final),
        cmocka_unit_test(test_in_place_only_when_whole),
        cmocka_unit_test(test_dispose_mid_message),
        cmocka_unit_test(test_bytes_in),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
