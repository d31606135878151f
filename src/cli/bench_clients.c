/*
 * The subscriber side of `vigil bench fanout`: N WebSocket clients spread over T worker threads,
 * one libuv loop each, that connect to /ws, subscribe to the channel and time every delivery.
 *
 * A worker runs its clients through connect, upgrade, connection_status, subscribe and ready,
 * then records for every delivery its publish-to-receive latency (data.t against the receive
 * time) in the worker's own histogram and counters.  The main thread (bench.c) reads only the
 * atomics while the workers run, and the rest after the join (bench.h).
 *
 * Measurement choices:
 *   - Deliveries are recognized by scanning for the "seq" and "t" keys instead of parsing the
 *     JSON: the client must stay cheaper than the server it measures, which shares the machine.
 *     Everything else (connection_status, subscribed, error) is parsed with jansson.
 *   - The receive time is taken once per read: the frames of one read arrived together.
 *   - Connections are opened through a window (at most WINDOW_TOTAL handshakes in flight over
 *     all threads), which keeps the server's listen backlog from overflowing; an overflowing
 *     backlog drops SYNs, and a dropped SYN costs a one-second retransmit that would be measured
 *     as connect time.
 *   - The client speaks just enough RFC 6455 for this (masked sends, unmasked receives,
 *     fragments, ping, close) rather than using proto/ws.c, which is the server's side.
 */
#include <inttypes.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "cli/bench.h"
#include "cli/histogram.h"
#include "net/httpc.h"
#include "proto/ws.h"
#include "util/alloc.h"
#include "util/buf.h"
#include "util/clock.h"

#define WINDOW_TOTAL   256          /* handshakes in flight, all threads together */
#define MAX_FRAME      (64u << 20)  /* a server frame or message larger than this is an error */
#define READ_BUF_SIZE  (256u << 10) /* one per thread */
#define CLOSE_GRACE_MS 2000         /* at the end: time for our close frames to go out */

/* Keeps the first error any client (on any thread) saw, for the report, and counts them all. */
void vg__bench_record_error(vg_bench_t *b, const char *fmt, ...)
{
    uv_mutex_lock(&b->lock);
    if (b->errors++ == 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(b->first_error, sizeof(b->first_error), fmt, ap);
        va_end(ap);
    }
    uv_mutex_unlock(&b->lock);
}

/* ---- state -------------------------------------------------------------------------------- */

enum client_state {
    C_IDLE = 0,
    C_CONNECTING,  /* TCP connect in progress */
    C_HANDSHAKE,   /* upgrade request sent, waiting for 101 */
    C_WELCOME,     /* waiting for connection_status */
    C_SUBSCRIBING, /* subscribe sent, waiting for subscribed */
    C_READY,       /* counting deliveries */
    C_CLOSED,      /* uv_close called */
};

typedef struct handshake_s {
    vg_httpc_response_t resp;
    char accept[29]; /* the Sec-WebSocket-Accept the server must answer */
} handshake_t;

struct vg_bench_client_s {
    uv_tcp_t tcp;
    vg_bench_worker_t *w;
    int state;
    handshake_t *hs; /* during the handshake only */
    vg_buf_t in;     /* bytes of an incomplete frame */
    vg_buf_t msg;    /* fragments of a message in progress */
    int msg_opcode;
    int64_t last_seq;
};

/* xorshift64*: mask keys need not be secret here, only varied. */
static uint32_t next_rand(vg_bench_worker_t *w)
{
    w->rng ^= w->rng >> 12;
    w->rng ^= w->rng << 25;
    w->rng ^= w->rng >> 27;
    return (uint32_t)((w->rng * 2685821657736338717ull) >> 32);
}

/* ---- client: sending ---------------------------------------------------------------------- */

typedef struct write_req_s {
    uv_write_t req;
    vg_bench_client_t *c;
    int close_after;
    char data[];
} write_req_t;

static void close_client(vg_bench_client_t *c);

static void on_write(uv_write_t *req, int status)
{
    write_req_t *wr = vg_container_of(req, write_req_t, req);
    vg_bench_client_t *c = wr->c;
    if (wr->close_after || (status < 0 && status != UV_ECANCELED))
        close_client(c);
    vg_free(wr);
}

static void send_bytes(vg_bench_client_t *c, const void *data, size_t len, int close_after)
{
    write_req_t *wr = vg_malloc(sizeof(*wr) + len);
    wr->c = c;
    wr->close_after = close_after;
    memcpy(wr->data, data, len);
    uv_buf_t buf = uv_buf_init(wr->data, (unsigned)len);
    if (uv_write(&wr->req, (uv_stream_t *)&c->tcp, &buf, 1, on_write) != 0) {
        vg_free(wr);
        close_client(c);
    }
}

/* Client frames are masked (RFC 6455 section 5.3). */
static void send_frame(vg_bench_client_t *c, int opcode, const void *payload, size_t len,
                       int close_after)
{
    write_req_t *wr = vg_malloc(sizeof(*wr) + 14 + len);
    uint8_t *p = (uint8_t *)wr->data;
    size_t h = 0;
    p[h++] = (uint8_t)(0x80 | opcode);
    if (len < 126) {
        p[h++] = (uint8_t)(0x80 | len);
    } else if (len < 65536) {
        p[h++] = 0x80 | 126;
        p[h++] = (uint8_t)(len >> 8);
        p[h++] = (uint8_t)len;
    } else {
        p[h++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--)
            p[h++] = (uint8_t)((uint64_t)len >> (8 * i));
    }
    uint32_t key = next_rand(c->w);
    uint8_t *mask = p + h;
    memcpy(mask, &key, 4);
    h += 4;
    const uint8_t *src = payload;
    for (size_t i = 0; i < len; i++)
        p[h + i] = src[i] ^ mask[i & 3];
    wr->c = c;
    wr->close_after = close_after;
    uv_buf_t buf = uv_buf_init(wr->data, (unsigned)(h + len));
    if (uv_write(&wr->req, (uv_stream_t *)&c->tcp, &buf, 1, on_write) != 0) {
        vg_free(wr);
        close_client(c);
    }
}

/* ---- client: lifecycle -------------------------------------------------------------------- */

static void pump_connects(vg_bench_worker_t *w);
static void maybe_finish_worker(vg_bench_worker_t *w);

static void on_client_closed(uv_handle_t *h)
{
    vg_bench_client_t *c = vg_container_of((uv_tcp_t *)h, vg_bench_client_t, tcp);
    vg_bench_worker_t *w = c->w;
    vg_buf_dispose(&c->in);
    vg_buf_dispose(&c->msg);
    w->handles--;
    maybe_finish_worker(w);
}

static void close_client(vg_bench_client_t *c)
{
    if (c->state == C_CLOSED || c->state == C_IDLE)
        return;
    vg_bench_worker_t *w = c->w;
    if (c->state < C_WELCOME) {
        /* It was still taking a place in the connect window. */
        w->inflight--;
    }
    if (c->hs != NULL) {
        vg_httpc_response_dispose(&c->hs->resp);
        vg_free(c->hs);
        c->hs = NULL;
    }
    c->state = C_CLOSED;
    uv_close((uv_handle_t *)&c->tcp, on_client_closed);
    if (!atomic_load(&w->b->stopping))
        pump_connects(w);
}

/* The client failed: counted as a failed connection before it was subscribed, as a dropped one
 * after (its missing deliveries then show up as loss). */
__attribute__((format(printf, 2, 3))) static void client_fail(vg_bench_client_t *c, const char *fmt,
                                                              ...)
{
    if (c->state == C_CLOSED)
        return;
    vg_bench_worker_t *w = c->w;
    if (!atomic_load(&w->b->stopping)) {
        char msg[256];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        vg__bench_record_error(w->b, "%s", msg);
        if (c->state == C_READY)
            atomic_fetch_add(&w->dropped, 1);
        else
            atomic_fetch_add(&w->failed, 1);
    }
    close_client(c);
}

/* ---- client: receiving -------------------------------------------------------------------- */

/* Finds `"key"` followed by optional spaces, ':' and optional spaces, then parses a decimal
 * integer.  Returns 1 and sets *out, or 0. */
static int scan_int(const char *p, size_t len, const char *key, size_t klen, int64_t *out)
{
    const char *end = p + len, *k = memmem(p, len, key, klen);
    if (k == NULL)
        return 0;
    const char *s = k + klen;
    while (s < end && (*s == ' ' || *s == ':'))
        s++;
    int neg = s < end && *s == '-';
    s += neg;
    if (s >= end || *s < '0' || *s > '9')
        return 0;
    int64_t v = 0;
    while (s < end && *s >= '0' && *s <= '9' && v < INT64_MAX / 10)
        v = v * 10 + (*s++ - '0');
    *out = neg ? -v : v;
    return 1;
}

static const char *str_or(const char *s, const char *otherwise)
{
    return s != NULL ? s : otherwise;
}

static void on_ready(vg_bench_client_t *c)
{
    vg_bench_worker_t *w = c->w;
    c->state = C_READY;
    atomic_store(&w->ready_ns, vg_mono_ns());
    atomic_fetch_add(&w->ready, 1);
}

/* A control message (anything that is not a delivery): parsed properly. */
static void on_other_message(vg_bench_client_t *c, const char *data, size_t len)
{
    vg_bench_worker_t *w = c->w;
    json_t *doc = json_loadb(data, len, 0, NULL);
    const char *type = json_string_value(json_object_get(doc, "type"));
    if (type == NULL) {
        if (c->state != C_READY)
            client_fail(c, "unexpected message from the server: %.100s", data);
        else
            w->unexpected++;
    } else if (strcmp(type, "error") == 0) {
        client_fail(c, "server error: %s: %s",
                    str_or(json_string_value(json_object_get(doc, "code")), "?"),
                    str_or(json_string_value(json_object_get(doc, "message")), "?"));
    } else if (c->state == C_WELCOME && strcmp(type, "connection_status") == 0) {
        const char *status = json_string_value(json_object_get(doc, "status"));
        if (status != NULL && strcmp(status, "connected") != 0) {
            client_fail(c, "connection_status is '%s': %s", status,
                        str_or(json_string_value(json_object_get(doc, "message")), ""));
        } else {
            c->state = C_SUBSCRIBING;
            send_frame(c, VG_WS_OP_TEXT, w->b->subscribe, w->b->subscribe_len, 0);
        }
    } else if (c->state == C_SUBSCRIBING && strcmp(type, "subscribed") == 0) {
        on_ready(c);
    } else {
        w->unexpected++;
    }
    json_decref(doc);
}

static void on_message(vg_bench_client_t *c, int opcode, const char *data, size_t len, uint64_t now)
{
    vg_bench_worker_t *w = c->w;
    int64_t seq, t;
    if (opcode != VG_WS_OP_TEXT) {
        w->unexpected++;
        return;
    }
    if (c->state == C_READY && scan_int(data, len, "\"seq\"", 5, &seq) &&
        scan_int(data, len, "\"t\"", 3, &t)) {
        vg_hist_add(&w->hist, (int64_t)now > t ? now - (uint64_t)t : 0);
        w->payload_bytes += len;
        if (seq != c->last_seq + 1)
            w->out_of_order++;
        c->last_seq = seq;
        w->n_deliveries++;
        return;
    }
    on_other_message(c, data, len);
}

static void on_frame(vg_bench_client_t *c, int fin, int opcode, const uint8_t *payload, size_t len,
                     uint64_t now)
{
    switch (opcode) {
    case VG_WS_OP_TEXT:
    case VG_WS_OP_BINARY:
        if (c->msg_opcode != 0) {
            client_fail(c, "protocol error: new message inside a fragmented one");
        } else if (fin) {
            on_message(c, opcode, (const char *)payload, len, now);
        } else {
            c->msg_opcode = opcode;
            vg_buf_append(&c->msg, payload, len);
        }
        break;
    case VG_WS_OP_CONT:
        if (c->msg_opcode == 0) {
            client_fail(c, "protocol error: continuation frame without a message");
        } else if (c->msg.len + len > MAX_FRAME) {
            client_fail(c, "message larger than %u bytes", MAX_FRAME);
        } else {
            vg_buf_append(&c->msg, payload, len);
            if (fin) {
                on_message(c, c->msg_opcode, c->msg.base, c->msg.len, now);
                c->msg_opcode = 0;
                vg_buf_reset(&c->msg);
            }
        }
        break;
    case VG_WS_OP_PING: send_frame(c, VG_WS_OP_PONG, payload, len, 0); break;
    case VG_WS_OP_PONG: break;
    case VG_WS_OP_CLOSE: {
        int code = len >= 2 ? (payload[0] << 8 | payload[1]) : 1005;
        if (!atomic_load(&c->w->b->stopping))
            client_fail(c, "the server closed the connection: %d %.*s", code,
                        len > 2 ? (int)(len - 2) : 0, (const char *)payload + 2);
        break;
    }
    default: client_fail(c, "protocol error: opcode %d", opcode);
    }
}

/* Parses the complete frames at the start of p; returns the bytes used.  Server frames are
 * never masked (RFC 6455 section 5.1), which is why the server-side parser in proto/ws.c, which
 * insists on masks, cannot be used here. */
static size_t parse_frames(vg_bench_client_t *c, const uint8_t *p, size_t len, uint64_t now)
{
    size_t off = 0;
    while (len - off >= 2 && c->state != C_CLOSED) {
        const uint8_t *f = p + off;
        size_t avail = len - off, h = 2;
        uint64_t plen = f[1] & 0x7f;
        if (f[1] & 0x80) {
            client_fail(c, "protocol error: the server masked a frame");
            break;
        }
        if (f[0] & 0x70) {
            client_fail(c, "protocol error: RSV bits set");
            break;
        }
        if (plen == 126) {
            if (avail < 4)
                break;
            plen = (uint64_t)f[2] << 8 | f[3];
            h = 4;
        } else if (plen == 127) {
            if (avail < 10)
                break;
            plen = 0;
            for (int i = 0; i < 8; i++)
                plen = plen << 8 | f[2 + i];
            h = 10;
        }
        if (plen > MAX_FRAME) {
            client_fail(c, "frame larger than %u bytes", MAX_FRAME);
            break;
        }
        if (avail - h < plen)
            break;
        on_frame(c, (f[0] & 0x80) != 0, f[0] & 0x0f, f + h, (size_t)plen, now);
        off += h + (size_t)plen;
    }
    return off;
}

static void feed_frames(vg_bench_client_t *c, const char *data, size_t len, uint64_t now)
{
    if (c->in.len == 0) {
        size_t used = parse_frames(c, (const uint8_t *)data, len, now);
        if (used < len && c->state != C_CLOSED)
            vg_buf_append(&c->in, data + used, len - used);
        return;
    }
    vg_buf_append(&c->in, data, len);
    size_t used = parse_frames(c, (const uint8_t *)c->in.base, c->in.len, now);
    if (c->state != C_CLOSED)
        vg_buf_consume(&c->in, used);
}

static void on_handshake_data(vg_bench_client_t *c, const char *data, size_t len, uint64_t now)
{
    handshake_t *hs = c->hs;
    size_t used;
    int rc = vg_httpc_response_feed(&hs->resp, data, len, &used);
    if (rc == VG_HTTPC_NEED_MORE)
        return;
    if (rc < 0) {
        client_fail(c, "handshake: %s", hs->resp.errstr);
        return;
    }
    if (hs->resp.status != 101) {
        client_fail(c, "handshake refused: HTTP %d %.*s", hs->resp.status,
                    (int)(hs->resp.body.len < 150 ? hs->resp.body.len : 150), hs->resp.body.base);
        return;
    }
    const char *accept = vg_httpc_response_header(&hs->resp, "Sec-WebSocket-Accept");
    if (accept == NULL || strcmp(accept, hs->accept) != 0) {
        client_fail(c, "handshake: wrong Sec-WebSocket-Accept");
        return;
    }
    vg_httpc_response_dispose(&hs->resp);
    vg_free(hs);
    c->hs = NULL;
    c->state = C_WELCOME;
    c->w->inflight--;
    pump_connects(c->w);
    if (used < len)
        feed_frames(c, data + used, len - used, now);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    vg_bench_client_t *c = vg_container_of((uv_tcp_t *)h, vg_bench_client_t, tcp);
    *buf = uv_buf_init(c->w->rbuf, READ_BUF_SIZE);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    vg_bench_client_t *c = vg_container_of((uv_tcp_t *)s, vg_bench_client_t, tcp);
    if (nread < 0) {
        client_fail(c, "%s",
                    nread == UV_EOF ? "the server closed the connection without a close frame"
                                    : uv_strerror((int)nread));
        return;
    }
    if (nread == 0)
        return;
    vg_bench_worker_t *w = c->w;
    uint64_t now = vg__bench_real_ns(), before = w->n_deliveries;
    if (c->state == C_HANDSHAKE)
        on_handshake_data(c, buf->base, (size_t)nread, now);
    else if (c->state != C_CLOSED)
        feed_frames(c, buf->base, (size_t)nread, now);
    if (w->n_deliveries != before) {
        atomic_store_explicit(&w->last_delivery_ns, vg_mono_ns(), memory_order_relaxed);
        atomic_store_explicit(&w->deliveries, w->n_deliveries, memory_order_relaxed);
    }
}

static void on_connect(uv_connect_t *req, int status)
{
    vg_bench_client_t *c = req->data;
    vg_free(req);
    if (status == UV_ECANCELED || c->state == C_CLOSED)
        return;
    if (status < 0) {
        client_fail(c, "connect: %s", uv_strerror(status));
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    /* Sec-WebSocket-Key: 16 random bytes in base64. */
    uint8_t raw[16];
    for (int i = 0; i < 4; i++) {
        uint32_t r = next_rand(c->w);
        memcpy(raw + 4 * i, &r, 4);
    }
    char key[32];
    EVP_EncodeBlock((unsigned char *)key, raw, sizeof(raw));
    c->hs = vg_malloc(sizeof(*c->hs));
    vg_httpc_response_init(&c->hs->resp, 0, 64 << 10);
    vg_ws_accept_key(key, strlen(key), c->hs->accept);
    c->state = C_HANDSHAKE;
    int rc = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    if (rc != 0) {
        client_fail(c, "read: %s", uv_strerror(rc));
        return;
    }
    vg_bench_t *b = c->w->b;
    char req_text[4096];
    size_t klen = strlen(key), elen = strlen(b->handshake_end);
    memcpy(req_text, b->handshake, b->handshake_len);
    memcpy(req_text + b->handshake_len, key, klen);
    memcpy(req_text + b->handshake_len + klen, b->handshake_end, elen);
    send_bytes(c, req_text, b->handshake_len + klen + elen, 0);
}

static void start_connect(vg_bench_client_t *c)
{
    vg_bench_worker_t *w = c->w;
    c->last_seq = -1;
    int rc = uv_tcp_init(&w->loop, &c->tcp);
    if (rc != 0) {
        vg__bench_record_error(w->b, "tcp: %s", uv_strerror(rc));
        atomic_fetch_add(&w->failed, 1);
        return;
    }
    w->handles++;
    w->inflight++;
    c->state = C_CONNECTING;
    uv_connect_t *req = vg_malloc(sizeof(*req));
    req->data = c;
    rc = uv_tcp_connect(req, &c->tcp, (const struct sockaddr *)&w->b->addr, on_connect);
    if (rc != 0) {
        vg_free(req);
        client_fail(c, "connect: %s", uv_strerror(rc));
    }
}

static void pump_connects(vg_bench_worker_t *w)
{
    while (w->next < w->n && w->inflight < w->window && !atomic_load(&w->b->stopping))
        start_connect(&w->clients[w->next++]);
}

/* ---- worker threads ----------------------------------------------------------------------- */

static void maybe_finish_worker(vg_bench_worker_t *w)
{
    if (w->stopped && w->handles == 0 && !uv_is_closing((uv_handle_t *)&w->wake)) {
        uv_close((uv_handle_t *)&w->wake, NULL);
        uv_close((uv_handle_t *)&w->close_timer, NULL);
    }
}

static void on_close_timeout(uv_timer_t *t)
{
    vg_bench_worker_t *w = t->data;
    for (size_t i = 0; i < w->next; i++)
        close_client(&w->clients[i]);
}

/* The main thread asked the worker to stop: every subscribed connection sends a close frame
 * (the server then logs a normal close, not 1006) and is closed once it is written; the others
 * are closed at once.  Whatever is left after CLOSE_GRACE_MS is cut. */
static void on_wake(uv_async_t *a)
{
    vg_bench_worker_t *w = a->data;
    if (!atomic_load(&w->b->stopping) || w->stopped)
        return;
    w->stopped = 1;
    static const uint8_t normal[2] = {1000 >> 8, 1000 & 0xff};
    for (size_t i = 0; i < w->next; i++) {
        vg_bench_client_t *c = &w->clients[i];
        if (c->state >= C_WELCOME && c->state < C_CLOSED)
            send_frame(c, VG_WS_OP_CLOSE, normal, sizeof(normal), 1);
        else
            close_client(c);
    }
    uv_timer_start(&w->close_timer, on_close_timeout, CLOSE_GRACE_MS, 0);
    uv_unref((uv_handle_t *)&w->close_timer);
    maybe_finish_worker(w);
}

void vg__bench_worker_main(void *arg)
{
    vg_bench_worker_t *w = arg;
    pump_connects(w);
    uv_run(&w->loop, UV_RUN_DEFAULT);
}

int vg__bench_worker_init(vg_bench_worker_t *w, vg_bench_t *b, int index, size_t n)
{
    memset(w, 0, sizeof(*w));
    w->b = b;
    w->index = index;
    w->n = n;
    w->window = WINDOW_TOTAL / (size_t)b->nworkers;
    if (w->window < 8)
        w->window = 8;
    w->rng =
        0x9e3779b97f4a7c15ull ^ (vg__bench_real_ns() + (uint64_t)index * 0x632be59bd9b4e019ull);
    w->clients = vg_calloc(n > 0 ? n : 1, sizeof(vg_bench_client_t));
    for (size_t i = 0; i < n; i++)
        w->clients[i].w = w;
    w->rbuf = vg_malloc(READ_BUF_SIZE);
    int rc = uv_loop_init(&w->loop);
    if (rc != 0)
        return rc;
    uv_async_init(&w->loop, &w->wake, on_wake);
    w->wake.data = w;
    uv_timer_init(&w->loop, &w->close_timer);
    w->close_timer.data = w;
    return 0;
}

void vg__bench_worker_dispose(vg_bench_worker_t *w)
{
    uv_loop_close(&w->loop);
    vg_free(w->clients);
    vg_free(w->rbuf);
}
