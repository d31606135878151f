/*
 * libFuzzer driver for the WebSocket layer (src/proto/ws.c) and the UTF-8 validator.
 *
 * Input: byte 0 picks the configuration (max message size, whether and where we start the
 * close handshake ourselves), byte 1 seeds the split pattern, the rest is the client's byte
 * stream.  The stream is fed three ways: whole, one byte at a time, and in pseudo-random
 * pieces.  Each way records every callback, in order, into a log; the logs must be identical,
 * because nothing may depend on how reads split the stream.  Callbacks check invariants as they
 * happen: delivered text is valid UTF-8 (by an independent decoder), no message exceeds the
 * limit, frames we send are well-formed unmasked server frames, at most one close frame goes
 * out, on_close comes once and nothing follows it.
 *
 * CHECK aborts even in builds with NDEBUG, so libFuzzer sees every broken invariant.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/utf8.h"
#include "proto/ws.h"
#include "util/buf.h"
#include "util/error.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond);           \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

enum { CLOSE_NEVER, CLOSE_BEFORE, CLOSE_IN_MESSAGE, CLOSE_IN_PONG };

typedef struct run_s {
    vg_ws_t ws;
    size_t max;
    int close_mode;
    vg_buf_t log; /* every callback, serialised, in order */
    int closed;   /* on_close seen */
    int close_sent;
    int ret; /* first nonzero vg_ws_feed result */
} run_t;

/* An independent UTF-8 check: decode each character and test its code point. */
static int ref_utf8_valid(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t b = s[i];
        size_t len;
        uint32_t cp, min;
        if (b < 0x80) {
            i++;
            continue;
        } else if ((b & 0xe0) == 0xc0) {
            len = 2, cp = b & 0x1f, min = 0x80;
        } else if ((b & 0xf0) == 0xe0) {
            len = 3, cp = b & 0x0f, min = 0x800;
        } else if ((b & 0xf8) == 0xf0) {
            len = 4, cp = b & 0x07, min = 0x10000;
        } else {
            return 0;
        }
        if (n - i < len)
            return 0;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return 0;
            cp = cp << 6 | (s[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        i += len;
    }
    return 1;
}

static void log_event(run_t *r, char type, int a, const void *data, size_t len)
{
    uint8_t h[1 + sizeof(int) + sizeof(size_t)];
    h[0] = (uint8_t)type;
    memcpy(h + 1, &a, sizeof(a));
    memcpy(h + 1 + sizeof(a), &len, sizeof(len));
    vg_buf_append(&r->log, h, sizeof(h));
    vg_buf_append(&r->log, data, len);
}

static void on_message(vg_ws_t *ws, int opcode, uint8_t *data, size_t len)
{
    run_t *r = ws->data;
    CHECK(!r->closed);
    CHECK(ws->state == VG_WS_OPEN);
    CHECK(opcode == VG_WS_OP_TEXT || opcode == VG_WS_OP_BINARY);
    CHECK(len <= r->max);
    CHECK(data != NULL);
    if (opcode == VG_WS_OP_TEXT)
        CHECK(ref_utf8_valid(data, len));
    log_event(r, 'M', opcode, data, len);
    /* The callee may modify the message in place. */
    if (len)
        data[0] ^= 0x55;
    if (r->close_mode == CLOSE_IN_MESSAGE)
        vg_ws_start_close(ws, VG_WS_CLOSE_NORMAL, "from on_message");
}

static void on_pong(vg_ws_t *ws, const uint8_t *data, size_t len)
{
    run_t *r = ws->data;
    CHECK(!r->closed);
    CHECK(len <= 125);
    log_event(r, 'P', 0, data, len);
    if (r->close_mode == CLOSE_IN_PONG)
        vg_ws_start_close(ws, VG_WS_CLOSE_GOING_AWAY, "from on_pong");
}

/* Checks that `p` holds complete, well-formed server frames: FIN, no RSV, unmasked, pong or
 * close, short payload, and a close payload that a peer would accept. */
static void check_sent(run_t *r, const uint8_t *p, size_t len)
{
    size_t off = 0;
    CHECK(len > 0);
    while (off < len) {
        CHECK(len - off >= 2);
        uint8_t b0 = p[off], b1 = p[off + 1];
        CHECK((b0 & 0xf0) == 0x80);
        CHECK((b1 & 0x80) == 0);
        size_t plen = b1 & 0x7f;
        CHECK(plen <= 125);
        CHECK(len - off - 2 >= plen);
        const uint8_t *payload = p + off + 2;
        int op = b0 & 0x0f;
        CHECK(op == VG_WS_OP_PONG || op == VG_WS_OP_CLOSE);
        CHECK(!r->close_sent); /* nothing after our close */
        if (op == VG_WS_OP_CLOSE) {
            r->close_sent = 1;
            CHECK(plen != 1);
            if (plen >= 2) {
                int code = payload[0] << 8 | payload[1];
                CHECK(vg_ws_close_code_valid(code));
                CHECK(ref_utf8_valid(payload + 2, plen - 2));
            }
        }
        off += 2 + plen;
    }
}

static void on_send(vg_ws_t *ws, const uint8_t *frame, size_t len)
{
    run_t *r = ws->data;
    CHECK(!r->closed);
    check_sent(r, frame, len);
    log_event(r, 'S', 0, frame, len);
}

static void on_close(vg_ws_t *ws, int code, const char *reason, int failed)
{
    run_t *r = ws->data;
    CHECK(!r->closed);
    CHECK(ws->state == VG_WS_CLOSED);
    r->closed = 1;
    if (failed)
        CHECK(code == VG_WS_CLOSE_PROTOCOL || code == VG_WS_CLOSE_BAD_DATA ||
              code == VG_WS_CLOSE_TOO_BIG);
    else
        CHECK(code == VG_WS_CLOSE_NO_STATUS || vg_ws_close_code_valid(code));
    CHECK(strlen(reason) <= 123);
    log_event(r, 'C', code * 2 + failed, reason, strlen(reason));
}

static const vg_ws_callbacks_t callbacks = {on_message, on_pong, on_send, on_close};

/* Feeds one piece from its own exact-size copy so ASan sees any read past its end. */
static void feed(run_t *r, const uint8_t *p, size_t n)
{
    uint8_t *copy = malloc(n ? n : 1);
    CHECK(copy != NULL);
    memcpy(copy, p, n);
    int was_closed = r->ws.state == VG_WS_CLOSED;
    int rc = vg_ws_feed(&r->ws, copy, n);
    free(copy);
    CHECK(rc == 0 || rc == VG_ECLOSED || rc == VG_EWS_PROTOCOL || rc == VG_EWS_UTF8 ||
          rc == VG_EWS_TOO_BIG);
    if (was_closed)
        CHECK(rc == VG_ECLOSED);
    CHECK((rc != 0) == (r->ws.state == VG_WS_CLOSED));
    CHECK((rc != 0) == r->closed);
    if (r->ret == 0)
        r->ret = rc;
}

static void run_init(run_t *r, size_t max, int close_mode)
{
    memset(r, 0, sizeof(*r));
    r->max = max;
    r->close_mode = close_mode;
    r->log = VG_BUF_INIT;
    vg_ws_init(&r->ws, &callbacks, max, r);
    if (close_mode == CLOSE_BEFORE)
        vg_ws_start_close(&r->ws, 4000, "before \xe2\x82\xac");
}

/* Piece sizes: 0 = whole, 1 = one byte at a time, otherwise pseudo-random from the seed,
 * biased towards small pieces so headers split everywhere. */
static void run_feed(run_t *r, const uint8_t *s, size_t n, int mode, uint32_t seed)
{
    uint32_t x = seed * 2654435761u + 1;
    for (size_t off = 0; off < n;) {
        size_t step;
        if (mode == 0) {
            step = n;
        } else if (mode == 1) {
            step = 1;
        } else {
            x ^= x << 13, x ^= x >> 17, x ^= x << 5;
            step = (x & 3) ? 1 + (x >> 8) % 7 : 1 + (x >> 8) % 300;
        }
        if (step > n - off)
            step = n - off;
        feed(r, s + off, step);
        off += step;
    }
    /* Zero-length feeds are harmless in any state. */
    uint8_t dummy = 0;
    int rc = vg_ws_feed(&r->ws, &dummy, 0);
    CHECK(rc == (r->ws.state == VG_WS_CLOSED ? VG_ECLOSED : 0));
}

static void run_dispose(run_t *r)
{
    vg_ws_dispose(&r->ws);
    vg_buf_dispose(&r->log);
}

/* The validator must agree with the reference on the whole input and give the same answer
 * whatever the split. */
static void check_utf8(const uint8_t *s, size_t n, uint32_t seed)
{
    int want = ref_utf8_valid(s, n);
    CHECK(!!vg_utf8_valid(s, n) == want);
    vg_utf8_t v;
    vg_utf8_init(&v);
    int err = 0;
    size_t step = 1 + seed % 9;
    for (size_t off = 0; off < n; off += step)
        err |= vg_utf8_feed(&v, s + off, n - off < step ? n - off : step) != 0;
    CHECK((!err && vg_utf8_complete(&v)) == want);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const size_t limits[] = {0, 1, 125, 126, 1000, 65535, 65536, SIZE_MAX};
    if (size < 2)
        return 0;
    size_t max = limits[data[0] & 7];
    int close_mode = (data[0] >> 3) & 3;
    uint32_t seed = data[1];
    const uint8_t *s = data + 2;
    size_t n = size - 2;

    check_utf8(s, n, seed);

    run_t whole, split;
    run_init(&whole, max, close_mode);
    run_feed(&whole, s, n, 0, seed);
    for (int mode = 1; mode <= 2; mode++) {
        run_init(&split, max, close_mode);
        run_feed(&split, s, n, mode, seed);
        CHECK(split.log.len == whole.log.len);
        CHECK(split.log.len == 0 || memcmp(split.log.base, whole.log.base, split.log.len) == 0);
        CHECK(split.ret == whole.ret);
        CHECK(split.ws.state == whole.ws.state);
        if (!whole.closed)
            CHECK(split.ws.bytes_in == whole.ws.bytes_in);
        run_dispose(&split);
    }
    run_dispose(&whole);
    return 0;
}
