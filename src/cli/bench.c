/*
 * `vigil bench fanout`: measures fan-out from the outside, the way a deployment sees it.
 *
 * N WebSocket clients, spread over T threads with one libuv loop each, connect to /ws and
 * subscribe to one channel.  Then a publisher thread POSTs M messages to /api/publish at a given
 * rate; each message carries its publish time (CLOCK_REALTIME, ns) in data.t, and every client
 * computes publish-to-receive latency for every delivery.  The result: connect time, deliveries
 * per second, expected vs received deliveries (loss), and latency percentiles.
 *
 * Measurement choices:
 *   - Latency goes into a log-linear histogram per thread (32 sub-buckets per power of two:
 *     under 3.2% error), merged at the end, so a run with 10^8 deliveries needs no sample array.
 *   - Deliveries are recognized by scanning for the "seq" and "t" keys instead of parsing the
 *     JSON: the client must stay cheaper than the server it measures, which shares the machine.
 *     Everything else (connection_status, subscribed, error) is parsed with jansson.
 *   - The receive time is taken once per read: the frames of one read arrived together.
 *   - Connections are opened through a window (at most WINDOW_TOTAL handshakes in flight over
 *     all threads), which keeps the server's listen backlog from overflowing; an overflowing
 *     backlog drops SYNs, and a dropped SYN costs a one-second retransmit that would be measured
 *     as connect time.
 *   - At high rates the publisher sends {"messages":[...]} batches: everything due since the last
 *     request goes in the next one, on one keep-alive connection.
 */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <netdb.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "cli/cmdline.h"
#include "cli/commands.h"
#include "net/httpc.h"
#include "proto/ws.h"
#include "util/alloc.h"
#include "util/buf.h"

#define WINDOW_TOTAL       256          /* handshakes in flight, all threads together */
#define MAX_FRAME          (64u << 20)  /* a server frame or message larger than this is an error */
#define READ_BUF_SIZE      (256u << 10) /* one per thread */
#define MAX_BATCH_MESSAGES 1000         /* /api/publish accepts at most 1000 per request */
#define MAX_BATCH_BYTES    (256u << 10) /* well under the server's default 1 MiB body limit */
#define IDLE_GIVE_UP_NS    3000000000ull /* after the last publish: no delivery for 3 s ends it */
#define CLOSE_GRACE_MS     2000          /* at the end: time for our close frames to go out */

/* ---- histogram ---------------------------------------------------------------------------- */

/* Values (ns) below 64 have one bucket each; above, each power of two is split into 32 equal
 * buckets.  Index = shift * 32 + (v >> shift) with shift = max(0, msb(v) - 5). */
#define HIST_SUB_BITS 5
#define HIST_BUCKETS  (64 * 32)

typedef struct hist_s {
    uint64_t count[HIST_BUCKETS];
    uint64_t total, max;
} hist_t;

static unsigned hist_index(uint64_t v)
{
    if (v < (1u << (HIST_SUB_BITS + 1)))
        return (unsigned)v;
    unsigned msb = 63u - (unsigned)__builtin_clzll(v);
    unsigned shift = msb - HIST_SUB_BITS;
    unsigned idx = (shift << HIST_SUB_BITS) + (unsigned)(v >> shift);
    return idx < HIST_BUCKETS ? idx : HIST_BUCKETS - 1;
}

/* The middle of bucket idx (its lowest value for the exact buckets). */
static double hist_value(unsigned idx)
{
    if (idx < (1u << (HIST_SUB_BITS + 1)))
        return idx;
    unsigned shift = (idx >> HIST_SUB_BITS) - 1;
    uint64_t m = idx - (shift << HIST_SUB_BITS);
    return ((double)(m << shift) + (double)((m + 1) << shift)) / 2.0;
}

static void hist_add(hist_t *h, uint64_t v)
{
    h->count[hist_index(v)]++;
    h->total++;
    if (v > h->max)
        h->max = v;
}

static void hist_merge(hist_t *into, const hist_t *h)
{
    for (unsigned i = 0; i < HIST_BUCKETS; i++)
        into->count[i] += h->count[i];
    into->total += h->total;
    if (h->max > into->max)
        into->max = h->max;
}

/* The value below which a fraction q of the samples fall (ns), never above the maximum. */
static double hist_quantile(const hist_t *h, double q)
{
    if (h->total == 0)
        return 0;
    uint64_t rank = (uint64_t)ceil(q * (double)h->total), seen = 0;
    if (rank < 1)
        rank = 1;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        seen += h->count[i];
        if (seen >= rank) {
            double v = hist_value(i);
            return v < (double)h->max ? v : (double)h->max;
        }
    }
    return (double)h->max;
}

/* ---- state -------------------------------------------------------------------------------- */

typedef struct bench_opts_s {
    const char *url, *publish_url, *api_key, *token, *channel;
    long connections, messages, size, threads;
    double rate, timeout;
} bench_opts_t;

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

typedef struct worker_s worker_t;

typedef struct client_s {
    uv_tcp_t tcp;
    worker_t *w;
    int state;
    handshake_t *hs; /* during the handshake only */
    vg_buf_t in;     /* bytes of an incomplete frame */
    vg_buf_t msg;    /* fragments of a message in progress */
    int msg_opcode;
    int64_t last_seq;
} client_t;

typedef struct bench_s bench_t;

struct worker_s {
    bench_t *b;
    int index;
    uv_loop_t loop;
    uv_async_t wake;
    uv_timer_t close_timer;
    uv_thread_t thread;
    client_t *clients;
    size_t n, next, inflight, window, handles;
    int stopped;
    uint64_t rng;
    /* read by the main thread while running */
    _Atomic size_t ready, failed, dropped;
    _Atomic uint64_t deliveries, ready_ns, last_delivery_ns;
    /* read by the main thread after the join */
    uint64_t n_deliveries; /* the worker's own count; published to `deliveries` once per read */
    uint64_t payload_bytes, out_of_order, unexpected;
    hist_t hist;
    char *rbuf;
};

struct bench_s {
    bench_opts_t o;
    vg_url_t ws;
    char *handshake; /* the upgrade request up to the key */
    size_t handshake_len;
    const char *handshake_end; /* what follows the key */
    char *subscribe;           /* the subscribe request */
    size_t subscribe_len;
    struct sockaddr_storage addr;
    worker_t *workers;
    int nworkers;
    _Atomic int stopping;
    uv_mutex_t lock; /* guards first_error, errors */
    char first_error[256];
    uint64_t errors;
    /* publisher */
    size_t pad;
    _Atomic uint64_t published;
    _Atomic int publisher_done;
    int publisher_failed;
    uint64_t first_publish_ns, last_publish_ns, requests;
    char publish_error[512];
};

static uint64_t error_count(bench_t *b)
{
    uv_mutex_lock(&b->lock);
    uint64_t n = b->errors;
    uv_mutex_unlock(&b->lock);
    return n;
}

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t real_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

__attribute__((format(printf, 2, 3))) static void record_error(bench_t *b, const char *fmt, ...)
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

/* xorshift64*: mask keys need not be secret here, only varied. */
static uint32_t next_rand(worker_t *w)
{
    w->rng ^= w->rng >> 12;
    w->rng ^= w->rng << 25;
    w->rng ^= w->rng >> 27;
    return (uint32_t)((w->rng * 2685821657736338717ull) >> 32);
}

/* ---- client: sending ---------------------------------------------------------------------- */

typedef struct write_req_s {
    uv_write_t req;
    client_t *c;
    int close_after;
    char data[];
} write_req_t;

static void close_client(client_t *c);

static void on_write(uv_write_t *req, int status)
{
    write_req_t *wr = vg_container_of(req, write_req_t, req);
    client_t *c = wr->c;
    if (wr->close_after || (status < 0 && status != UV_ECANCELED))
        close_client(c);
    vg_free(wr);
}

static void send_bytes(client_t *c, const void *data, size_t len, int close_after)
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
static void send_frame(client_t *c, int opcode, const void *payload, size_t len, int close_after)
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

static void pump_connects(worker_t *w);
static void maybe_finish_worker(worker_t *w);

static void on_client_closed(uv_handle_t *h)
{
    client_t *c = vg_container_of((uv_tcp_t *)h, client_t, tcp);
    worker_t *w = c->w;
    vg_buf_dispose(&c->in);
    vg_buf_dispose(&c->msg);
    w->handles--;
    maybe_finish_worker(w);
}

static void close_client(client_t *c)
{
    if (c->state == C_CLOSED || c->state == C_IDLE)
        return;
    worker_t *w = c->w;
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
__attribute__((format(printf, 2, 3))) static void client_fail(client_t *c, const char *fmt, ...)
{
    if (c->state == C_CLOSED)
        return;
    worker_t *w = c->w;
    if (!atomic_load(&w->b->stopping)) {
        char msg[256];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        record_error(w->b, "%s", msg);
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

static void on_ready(client_t *c)
{
    worker_t *w = c->w;
    c->state = C_READY;
    atomic_store(&w->ready_ns, mono_ns());
    atomic_fetch_add(&w->ready, 1);
}

/* A control message (anything that is not a delivery): parsed properly. */
static void on_other_message(client_t *c, const char *data, size_t len)
{
    worker_t *w = c->w;
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

static void on_message(client_t *c, int opcode, const char *data, size_t len, uint64_t now)
{
    worker_t *w = c->w;
    int64_t seq, t;
    if (opcode != VG_WS_OP_TEXT) {
        w->unexpected++;
        return;
    }
    if (c->state == C_READY && scan_int(data, len, "\"seq\"", 5, &seq) &&
        scan_int(data, len, "\"t\"", 3, &t)) {
        hist_add(&w->hist, (int64_t)now > t ? now - (uint64_t)t : 0);
        w->payload_bytes += len;
        if (seq != c->last_seq + 1)
            w->out_of_order++;
        c->last_seq = seq;
        w->n_deliveries++;
        return;
    }
    on_other_message(c, data, len);
}

static void on_frame(client_t *c, int fin, int opcode, const uint8_t *payload, size_t len,
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
static size_t parse_frames(client_t *c, const uint8_t *p, size_t len, uint64_t now)
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

static void feed_frames(client_t *c, const char *data, size_t len, uint64_t now)
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

static void on_handshake_data(client_t *c, const char *data, size_t len, uint64_t now)
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
    client_t *c = vg_container_of((uv_tcp_t *)h, client_t, tcp);
    *buf = uv_buf_init(c->w->rbuf, READ_BUF_SIZE);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    client_t *c = vg_container_of((uv_tcp_t *)s, client_t, tcp);
    if (nread < 0) {
        client_fail(c, "%s",
                    nread == UV_EOF ? "the server closed the connection without a close frame"
                                    : uv_strerror((int)nread));
        return;
    }
    if (nread == 0)
        return;
    worker_t *w = c->w;
    uint64_t now = real_ns(), before = w->n_deliveries;
    if (c->state == C_HANDSHAKE)
        on_handshake_data(c, buf->base, (size_t)nread, now);
    else if (c->state != C_CLOSED)
        feed_frames(c, buf->base, (size_t)nread, now);
    if (w->n_deliveries != before) {
        atomic_store_explicit(&w->last_delivery_ns, mono_ns(), memory_order_relaxed);
        atomic_store_explicit(&w->deliveries, w->n_deliveries, memory_order_relaxed);
    }
}

static void on_connect(uv_connect_t *req, int status)
{
    client_t *c = req->data;
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
    bench_t *b = c->w->b;
    char req_text[4096];
    size_t klen = strlen(key), elen = strlen(b->handshake_end);
    memcpy(req_text, b->handshake, b->handshake_len);
    memcpy(req_text + b->handshake_len, key, klen);
    memcpy(req_text + b->handshake_len + klen, b->handshake_end, elen);
    send_bytes(c, req_text, b->handshake_len + klen + elen, 0);
}

static void start_connect(client_t *c)
{
    worker_t *w = c->w;
    c->last_seq = -1;
    int rc = uv_tcp_init(&w->loop, &c->tcp);
    if (rc != 0) {
        record_error(w->b, "tcp: %s", uv_strerror(rc));
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

static void pump_connects(worker_t *w)
{
    while (w->next < w->n && w->inflight < w->window && !atomic_load(&w->b->stopping))
        start_connect(&w->clients[w->next++]);
}

/* ---- worker threads ----------------------------------------------------------------------- */

static void maybe_finish_worker(worker_t *w)
{
    if (w->stopped && w->handles == 0 && !uv_is_closing((uv_handle_t *)&w->wake)) {
        uv_close((uv_handle_t *)&w->wake, NULL);
        uv_close((uv_handle_t *)&w->close_timer, NULL);
    }
}

static void on_close_timeout(uv_timer_t *t)
{
    worker_t *w = t->data;
    for (size_t i = 0; i < w->next; i++)
        close_client(&w->clients[i]);
}

/* The main thread asked the worker to stop: every subscribed connection sends a close frame
 * (the server then logs a normal close, not 1006) and is closed once it is written; the others
 * are closed at once.  Whatever is left after CLOSE_GRACE_MS is cut. */
static void on_wake(uv_async_t *a)
{
    worker_t *w = a->data;
    if (!atomic_load(&w->b->stopping) || w->stopped)
        return;
    w->stopped = 1;
    static const uint8_t normal[2] = {1000 >> 8, 1000 & 0xff};
    for (size_t i = 0; i < w->next; i++) {
        client_t *c = &w->clients[i];
        if (c->state >= C_WELCOME && c->state < C_CLOSED)
            send_frame(c, VG_WS_OP_CLOSE, normal, sizeof(normal), 1);
        else
            close_client(c);
    }
    uv_timer_start(&w->close_timer, on_close_timeout, CLOSE_GRACE_MS, 0);
    uv_unref((uv_handle_t *)&w->close_timer);
    maybe_finish_worker(w);
}

static void worker_main(void *arg)
{
    worker_t *w = arg;
    pump_connects(w);
    uv_run(&w->loop, UV_RUN_DEFAULT);
}

static int worker_init(worker_t *w, bench_t *b, int index, size_t n)
{
    memset(w, 0, sizeof(*w));
    w->b = b;
    w->index = index;
    w->n = n;
    w->window = WINDOW_TOTAL / (size_t)b->nworkers;
    if (w->window < 8)
        w->window = 8;
    w->rng = 0x9e3779b97f4a7c15ull ^ (real_ns() + (uint64_t)index * 0x632be59bd9b4e019ull);
    w->clients = vg_calloc(n > 0 ? n : 1, sizeof(client_t));
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

static void worker_dispose(worker_t *w)
{
    uv_loop_close(&w->loop);
    vg_free(w->clients);
    vg_free(w->rbuf);
}

/* ---- publisher ---------------------------------------------------------------------------- */

static void append_message(bench_t *b, vg_buf_t *out, uint64_t seq, uint64_t t)
{
    vg_buf_append_str(out, "{\"channel\":\"");
    vg_buf_append_json_escaped(out, b->o.channel, strlen(b->o.channel));
    vg_buf_printf(
        out, "\",\"type\":\"bench\",\"data\":{\"seq\":%" PRIu64 ",\"t\":%" PRIu64 ",\"pad\":\"",
        seq, t);
    memset(vg_buf_reserve(out, b->pad), 'x', b->pad);
    out->len += b->pad;
    vg_buf_append_str(out, "\"}}");
}

static void sleep_until(uint64_t when_ns)
{
    struct timespec ts = {.tv_sec = (time_t)(when_ns / 1000000000u),
                          .tv_nsec = (long)(when_ns % 1000000000u)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
        ;
}

/* Publishes o.messages messages at o.rate per second (0: as fast as possible).  Each request
 * carries every message that has come due since the previous one (bounded by count and bytes),
 * so at low rates each message is its own request and at high rates requests are batches. */
static void publisher_main(void *arg)
{
    bench_t *b = arg;
    vg_httpc_t http;
    vg_buf_t body = VG_BUF_INIT, headers = VG_BUF_INIT, path = VG_BUF_INIT;
    uint64_t total = (uint64_t)b->o.messages, sent = 0;
    if (vg_httpc_init(&http, b->o.publish_url, (int)(b->o.timeout * 1000)) != 0) {
        snprintf(b->publish_error, sizeof(b->publish_error), "--publish-url: %s", http.errstr);
        b->publisher_failed = 1;
        goto Exit;
    }
    const char *base = http.url.path;
    size_t blen = strcspn(base, "?");
    while (blen > 0 && base[blen - 1] == '/')
        blen--;
    vg_buf_append(&path, base, blen);
    vg_buf_append_str(&path, "/api/publish");
    vg_buf_append(&path, "", 1);
    vg_buf_append_str(&headers, "Content-Type: application/json\r\nUser-Agent: vigil-bench\r\n");
    if (b->o.api_key != NULL)
        vg_buf_printf(&headers, "Authorization: Bearer %s\r\n", b->o.api_key);
    vg_buf_append(&headers, "", 1);

    size_t per_message = b->pad + strlen(b->o.channel) + 100;
    size_t max_batch = MAX_BATCH_BYTES / per_message;
    if (max_batch < 1)
        max_batch = 1;
    if (max_batch > MAX_BATCH_MESSAGES)
        max_batch = MAX_BATCH_MESSAGES;

    uint64_t start = mono_ns();
    b->first_publish_ns = start;
    while (sent < total) {
        uint64_t due = total;
        if (b->o.rate > 0) {
            due = (uint64_t)((double)(mono_ns() - start) * b->o.rate / 1e9) + 1;
            if (due > total)
                due = total;
            if (due <= sent) {
                sleep_until(start + (uint64_t)((double)sent * 1e9 / b->o.rate));
                continue;
            }
        }
        uint64_t n = due - sent;
        if (n > max_batch)
            n = max_batch;
        vg_buf_reset(&body);
        uint64_t t = real_ns();
        if (n == 1) {
            append_message(b, &body, sent, t);
        } else {
            vg_buf_append_str(&body, "{\"messages\":[");
            for (uint64_t i = 0; i < n; i++) {
                if (i > 0)
                    vg_buf_append(&body, ",", 1);
                append_message(b, &body, sent + i, t);
            }
            vg_buf_append_str(&body, "]}");
        }
        vg_httpc_response_t resp;
        int rc =
            vg_httpc_request(&http, "POST", path.base, headers.base, body.base, body.len, &resp);
        if (rc != 0 || resp.status / 100 != 2) {
            if (rc != 0)
                snprintf(b->publish_error, sizeof(b->publish_error), "publish: %s", http.errstr);
            else
                snprintf(b->publish_error, sizeof(b->publish_error), "publish: HTTP %d: %.300s",
                         resp.status, resp.body.base != NULL ? resp.body.base : "");
            vg_httpc_response_dispose(&resp);
            b->publisher_failed = 1;
            break;
        }
        vg_httpc_response_dispose(&resp);
        sent += n;
        b->requests++;
        atomic_store(&b->published, sent);
    }
    b->last_publish_ns = mono_ns();

Exit:
    vg_httpc_dispose(&http);
    vg_buf_dispose(&body);
    vg_buf_dispose(&headers);
    vg_buf_dispose(&path);
    atomic_store(&b->publisher_done, 1);
}

/* ---- options ------------------------------------------------------------------------------ */

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: vigil bench fanout --connections N --messages M --size B [options]\n\n"
            "Opens N WebSocket connections to --url, subscribes each to one channel, publishes\n"
            "M messages of about B bytes through POST /api/publish and reports connect time,\n"
            "deliveries per second, lost deliveries and publish-to-receive latency.  The last\n"
            "line of output is the same result as one JSON object.\n\n"
            "Options:\n"
            "  --url URL           WebSocket endpoint [default: ws://127.0.0.1:8000/ws]\n"
            "  --connections N     WebSocket connections [default: 100]\n"
            "  --messages M        messages to publish [default: 100]\n"
            "  --size B            approximate size of one delivered message [default: 256]\n"
            "  --publish-url URL   where to publish [default: http://HOST:PORT of --url]\n"
            "  --api-key KEY       publisher API key [default: $VIGIL_API_KEY]\n"
            "  --token JWT         user token, sent as ?token= on --url\n"
            "  --channel C         channel [default: bench.fanout]\n"
            "  --threads T         client threads, one event loop each [default: cores]\n"
            "  --rate R            messages published per second; 0: as fast as possible\n"
            "                      [default: 100]\n"
            "  --timeout S         seconds allowed for connecting and subscribing, and for\n"
            "                      waiting for deliveries after the last publish [default: 30]\n"
            "  -h, --help          show this help\n\n"
            "Exit status: 0 every delivery arrived, 1 failure or lost deliveries, 2 bad usage.\n");
}

static int parse_long(const char *name, const char *s, long min, long max, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || *end != '\0' || errno != 0 || v < min || v > max)
        return vg_cmdline_usage_error("bench", "%s must be an integer from %ld to %ld, not '%s'",
                                      name, min, max, s);
    *out = v;
    return 0;
}

static int parse_double(const char *name, const char *s, double min, double max, double *out)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end != '\0' || !(v >= min && v <= max))
        return vg_cmdline_usage_error("bench", "%s must be a number from %g to %g, not '%s'", name,
                                      min, max, s);
    *out = v;
    return 0;
}

static int parse_options(bench_opts_t *o, int argc, char **argv)
{
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        const char *eq = strchr(a, '=');
        char name[64];
        if (strncmp(a, "--", 2) != 0)
            return vg_cmdline_usage_error("bench", "unexpected argument '%s'", a);
        if (eq != NULL) {
            snprintf(name, sizeof(name), "%.*s", (int)(eq - a), a);
            v = eq + 1;
        } else {
            snprintf(name, sizeof(name), "%s", a);
            if (i + 1 < argc)
                v = argv[i + 1];
        }
        static const char *const known[] = {"--url",     "--publish-url", "--api-key",  "--token",
                                            "--channel", "--connections", "--messages", "--size",
                                            "--threads", "--rate",        "--timeout"};
        int found = 0;
        for (size_t k = 0; k < VG_ARRAY_SIZE(known); k++)
            found |= strcmp(name, known[k]) == 0;
        if (!found)
            return vg_cmdline_usage_error("bench", "unknown option '%s'", name);
        if (v == NULL)
            return vg_cmdline_usage_error("bench", "%s needs a value", name);
        if (eq == NULL)
            i++;
        int rc = 0;
        if (strcmp(name, "--url") == 0)
            o->url = v;
        else if (strcmp(name, "--publish-url") == 0)
            o->publish_url = v;
        else if (strcmp(name, "--api-key") == 0)
            o->api_key = v;
        else if (strcmp(name, "--token") == 0)
            o->token = v;
        else if (strcmp(name, "--channel") == 0)
            o->channel = v;
        else if (strcmp(name, "--connections") == 0)
            rc = parse_long(name, v, 1, 10000000, &o->connections);
        else if (strcmp(name, "--messages") == 0)
            rc = parse_long(name, v, 1, 1000000000, &o->messages);
        else if (strcmp(name, "--size") == 0)
            rc = parse_long(name, v, 1, 16 << 20, &o->size);
        else if (strcmp(name, "--threads") == 0)
            rc = parse_long(name, v, 1, 1024, &o->threads);
        else if (strcmp(name, "--rate") == 0)
            rc = parse_double(name, v, 0, 1e9, &o->rate);
        else if (strcmp(name, "--timeout") == 0)
            rc = parse_double(name, v, 0.001, 86400, &o->timeout);
        if (rc != 0)
            return rc;
    }
    if (o->channel[0] == '\0')
        return vg_cmdline_usage_error("bench", "--channel must not be empty");
    for (const char *s = o->api_key ? o->api_key : ""; *s != '\0'; s++) {
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return vg_cmdline_usage_error("bench", "--api-key contains a control character");
    }
    return 0;
}

/* ---- running ------------------------------------------------------------------------------ */

static int raise_fd_limit(size_t need)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return 0;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need) {
        fprintf(stderr,
                "vigil bench: %zu connections need about %zu file descriptors; the limit is %llu "
                "(raise the hard limit: ulimit -Hn)\n",
                need - 64, need, (unsigned long long)rl.rlim_cur);
        return -1;
    }
    return 0;
}

/* Appends s percent-encoded (everything but RFC 3986 unreserved characters). */
static void append_query_escaped(vg_buf_t *out, const char *s)
{
    for (; *s != '\0'; s++) {
        unsigned char ch = (unsigned char)*s;
        if ((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
            ch == '-' || ch == '.' || ch == '_' || ch == '~')
            vg_buf_append(out, s, 1);
        else
            vg_buf_printf(out, "%%%02X", ch);
    }
}

/* Builds the upgrade request (all but the key), the subscribe request, the publish URL, the
 * padding, and resolves the server address. */
static int prepare(bench_t *b, char **publish_url_owned)
{
    char err[300];
    if (vg_url_parse(&b->ws, b->o.url, err, sizeof(err)) != 0)
        return vg_cmdline_usage_error("bench", "--url: %s", err);
    if (strcmp(b->ws.scheme, "ws") != 0)
        return vg_cmdline_usage_error("bench", "--url must be a ws:// URL, not '%s'", b->o.url);

    vg_buf_t s = VG_BUF_INIT;
    vg_buf_printf(&s, "GET %s", b->ws.path);
    if (b->o.token != NULL) {
        vg_buf_append_str(&s, strchr(b->ws.path, '?') != NULL ? "&token=" : "?token=");
        append_query_escaped(&s, b->o.token);
    }
    vg_buf_printf(&s,
                  " HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  "Sec-WebSocket-Key: ",
                  b->ws.authority);
    b->handshake = s.base;
    b->handshake_len = s.len;
    b->handshake_end = "\r\nSec-WebSocket-Version: 13\r\nUser-Agent: vigil-bench\r\n\r\n";
    if (s.len > 3500)
        return vg_cmdline_usage_error("bench", "--url and --token are too long together");

    vg_buf_t sub = VG_BUF_INIT;
    vg_buf_append_str(&sub, "{\"type\":\"subscribe\",\"channels\":[\"");
    vg_buf_append_json_escaped(&sub, b->o.channel, strlen(b->o.channel));
    vg_buf_append_str(&sub, "\"],\"id\":1}");
    b->subscribe_len = sub.len;
    vg_buf_append(&sub, "", 1);
    b->subscribe = sub.base;

    if (b->o.publish_url == NULL) {
        size_t n = strlen(b->ws.authority) + 8;
        *publish_url_owned = vg_malloc(n);
        snprintf(*publish_url_owned, n, "http://%s", b->ws.authority);
        b->o.publish_url = *publish_url_owned;
    }
    vg_httpc_t probe;
    if (vg_httpc_init(&probe, b->o.publish_url, 1000) != 0) {
        int rc = vg_cmdline_usage_error("bench", "--publish-url: %s", probe.errstr);
        vg_httpc_dispose(&probe);
        return rc;
    }
    vg_httpc_dispose(&probe);

    /* What the server adds around data, for a typical delivery:
     * {"type":"bench","channel":C,"offset":N,"timestamp":"2026-11-22T05:00:00.123Z","data":
     * {"seq":N,"t":1790000000000000000,"pad":""}} */
    int digits = snprintf(NULL, 0, "%ld", b->o.messages);
    size_t overhead = 127 + strlen(b->o.channel) + 2 * (size_t)digits;
    b->pad = (size_t)b->o.size > overhead ? (size_t)b->o.size - overhead : 0;

    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
    int gai = getaddrinfo(b->ws.host, b->ws.port, &hints, &res);
    if (gai != 0) {
        fprintf(stderr, "vigil bench: cannot resolve %s: %s\n", b->ws.host, gai_strerror(gai));
        return 1;
    }
    memcpy(&b->addr, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    return 0;
}

static void stop_workers(bench_t *b)
{
    atomic_store(&b->stopping, 1);
    for (int i = 0; i < b->nworkers; i++)
        uv_async_send(&b->workers[i].wake);
}

static void sum_counts(bench_t *b, size_t *ready, size_t *failed, size_t *dropped,
                       uint64_t *deliveries)
{
    *ready = *failed = *dropped = 0;
    *deliveries = 0;
    for (int i = 0; i < b->nworkers; i++) {
        *ready += atomic_load(&b->workers[i].ready);
        *failed += atomic_load(&b->workers[i].failed);
        *dropped += atomic_load(&b->workers[i].dropped);
        *deliveries += atomic_load_explicit(&b->workers[i].deliveries, memory_order_relaxed);
    }
}

static void nap(void)
{
    struct timespec ts = {0, 2000000};
    nanosleep(&ts, NULL);
}

int vg_cmd_bench(int argc, char **argv)
{
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0 ||
            (i == 0 && strcmp(argv[i], "help") == 0)) {
            usage(stdout);
            return 0;
        }
    }
    if (argc < 1 || strcmp(argv[0], "fanout") != 0)
        return vg_cmdline_usage_error("bench",
                                      "expected the scenario: vigil bench fanout [options]");

    bench_t *b = vg_calloc(1, sizeof(*b));
    b->o = (bench_opts_t){
        .url = "ws://127.0.0.1:8000/ws",
        .api_key = getenv("VIGIL_API_KEY"),
        .channel = "bench.fanout",
        .connections = 100,
        .messages = 100,
        .size = 256,
        .threads = (long)uv_available_parallelism(),
        .rate = 100,
        .timeout = 30,
    };
    char *publish_url_owned = NULL;
    int status = parse_options(&b->o, argc - 1, argv + 1);
    if (status == 0)
        status = prepare(b, &publish_url_owned);
    if (status != 0)
        goto Free;
    if (raise_fd_limit((size_t)b->o.connections + 64) != 0) {
        status = 1;
        goto Free;
    }
    signal(SIGPIPE, SIG_IGN);
    uv_mutex_init(&b->lock);

    size_t n = (size_t)b->o.connections;
    b->nworkers = (int)(b->o.threads < (long)n ? b->o.threads : (long)n);
    b->workers = vg_calloc((size_t)b->nworkers, sizeof(worker_t));
    char rate[64];
    if (b->o.rate > 0)
        snprintf(rate, sizeof(rate), "%g/s", b->o.rate);
    else
        snprintf(rate, sizeof(rate), "full speed");
    printf("vigil bench fanout: %zu connections on %d thread(s) to %s, %ld messages of ~%ld B "
           "on '%s' at %s\n",
           n, b->nworkers, b->o.url, b->o.messages, b->o.size, b->o.channel, rate);
    fflush(stdout);

    /* Phase 1: connect and subscribe. */
    int initialized = 0, started = 0;
    for (; initialized < b->nworkers; initialized++) {
        size_t count = n / (size_t)b->nworkers + ((size_t)initialized < n % (size_t)b->nworkers);
        if (worker_init(&b->workers[initialized], b, initialized, count) != 0) {
            fprintf(stderr, "vigil bench: cannot create an event loop\n");
            status = 1;
            goto Stop;
        }
    }
    uint64_t t0 = mono_ns();
    for (; started < b->nworkers; started++) {
        if (uv_thread_create(&b->workers[started].thread, worker_main, &b->workers[started]) != 0) {
            fprintf(stderr, "vigil bench: cannot start a thread\n");
            status = 1;
            goto Stop;
        }
    }
    size_t ready, failed, dropped;
    uint64_t deliveries;
    uint64_t deadline = t0 + (uint64_t)(b->o.timeout * 1e9), next_report = t0 + 2000000000u;
    for (;;) {
        sum_counts(b, &ready, &failed, &dropped, &deliveries);
        uint64_t now = mono_ns();
        if (ready + failed >= n || now >= deadline)
            break;
        if (now >= next_report) {
            fprintf(stderr, "  ... %zu of %zu subscribed\n", ready, n);
            next_report = now + 2000000000u;
        }
        nap();
    }
    uint64_t ready_at = t0;
    for (int i = 0; i < b->nworkers; i++) {
        uint64_t r = atomic_load(&b->workers[i].ready_ns);
        if (r > ready_at)
            ready_at = r;
    }
    double connect_s = (double)(ready_at - t0) / 1e9;
    printf("connect:     %zu of %zu connected and subscribed in %.3f s (%.0f/s), %zu failed\n",
           ready, n, connect_s, connect_s > 0 ? (double)ready / connect_s : 0.0, failed);
    uint64_t errors_before = error_count(b);
    if (errors_before > 0) {
        uv_mutex_lock(&b->lock);
        printf("             first error: %s\n", b->first_error);
        uv_mutex_unlock(&b->lock);
    }
    fflush(stdout);
    if (ready + failed < n) {
        /* Late subscribers would miss the first messages and read as loss: stop here. */
        fprintf(stderr,
                "vigil bench: %zu connections still not subscribed after %g s (--timeout)\n",
                n - ready - failed, b->o.timeout);
        status = 1;
        goto Stop;
    }
    if (ready == 0) {
        fprintf(stderr, "vigil bench: no connection subscribed\n");
        status = 1;
        goto Stop;
    }

    /* Phase 2: publish and count deliveries. */
    uv_thread_t publisher;
    if (uv_thread_create(&publisher, publisher_main, b) != 0) {
        fprintf(stderr, "vigil bench: cannot start the publisher thread\n");
        status = 1;
        goto Stop;
    }
    uint64_t last_progress = mono_ns(), last_count = 0;
    next_report = mono_ns() + 2000000000u;
    for (;;) {
        sum_counts(b, &ready, &failed, &dropped, &deliveries);
        int done = atomic_load(&b->publisher_done);
        uint64_t now = mono_ns();
        if (deliveries != last_count) {
            last_count = deliveries;
            last_progress = now;
        }
        uint64_t expected = atomic_load(&b->published) * (uint64_t)ready;
        if (done) {
            /* The publisher's fields are visible: publisher_done was stored after them. */
            if (deliveries >= expected || b->publisher_failed || dropped >= ready)
                break;
            uint64_t since =
                now - (last_progress > b->last_publish_ns ? last_progress : b->last_publish_ns);
            if (since > IDLE_GIVE_UP_NS || (double)(now - b->last_publish_ns) > b->o.timeout * 1e9)
                break;
        }
        if (now >= next_report) {
            fprintf(stderr, "  ... %" PRIu64 " published, %" PRIu64 " of %" PRIu64 " delivered\n",
                    atomic_load(&b->published), deliveries, expected);
            next_report = now + 2000000000u;
        }
        nap();
    }
    uv_thread_join(&publisher);

Stop:
    stop_workers(b);
    for (int i = 0; i < started; i++)
        uv_thread_join(&b->workers[i].thread);
    /* Workers whose thread never started wind down here (their wake-up is already pending). */
    for (int i = started; i < initialized; i++)
        uv_run(&b->workers[i].loop, UV_RUN_DEFAULT);
    if (status != 0) {
        for (int i = 0; i < initialized; i++)
            worker_dispose(&b->workers[i]);
        goto Free;
    }

    /* Phase 3: report. */
    sum_counts(b, &ready, &failed, &dropped, &deliveries);
    hist_t *h = vg_calloc(1, sizeof(*h));
    uint64_t last_delivery = 0, payload = 0, ooo = 0;
    for (int i = 0; i < b->nworkers; i++) {
        worker_t *w = &b->workers[i];
        hist_merge(h, &w->hist);
        uint64_t l = atomic_load(&w->last_delivery_ns);
        if (l > last_delivery)
            last_delivery = l;
        payload += w->payload_bytes;
        ooo += w->out_of_order;
        worker_dispose(w);
    }
    uint64_t published = atomic_load(&b->published);
    uint64_t expected = published * (uint64_t)ready;
    double span = last_delivery > b->first_publish_ns
                      ? (double)(last_delivery - b->first_publish_ns) / 1e9
                      : 0;
    double pub_span = (double)(b->last_publish_ns - b->first_publish_ns) / 1e9;
    double per_sec = span > 0 ? (double)deliveries / span : 0;
    double avg = deliveries > 0 ? (double)payload / (double)deliveries : 0.0;
    uint64_t lost = expected > deliveries ? expected - deliveries : 0;
    double p50 = hist_quantile(h, 0.50) / 1e6, p90 = hist_quantile(h, 0.90) / 1e6,
           p99 = hist_quantile(h, 0.99) / 1e6, p999 = hist_quantile(h, 0.999) / 1e6,
           max = (double)h->max / 1e6;
    vg_free(h);

    if (b->publisher_failed) {
        fprintf(stderr, "vigil bench: %s\n", b->publish_error);
        if (published == 0) {
            status = 1;
            goto Free;
        }
        printf("publish:     FAILED after %" PRIu64 " messages: %s\n", published, b->publish_error);
    }
    printf("publish:     %" PRIu64 " messages in %.3f s (%.0f/s) with %" PRIu64 " requests\n",
           published, pub_span, pub_span > 0 ? (double)published / pub_span : 0.0, b->requests);
    printf("delivered:   %" PRIu64 " of %" PRIu64 " expected (%" PRIu64 " lost, %.3f%%), %" PRIu64
           " out of order, %zu connections dropped\n",
           deliveries, expected, lost, expected > 0 ? 100.0 * (double)lost / (double)expected : 0,
           ooo, dropped);
    uint64_t unexpected = 0;
    for (int i = 0; i < b->nworkers; i++)
        unexpected += b->workers[i].unexpected;
    if (unexpected > 0)
        printf("             %" PRIu64 " other messages (neither deliveries nor answers)\n",
               unexpected);
    if (error_count(b) > errors_before)
        printf("             first error: %s\n", b->first_error);
    printf("throughput:  %.0f deliveries/s (%.3f s from the first publish to the last delivery)\n",
           per_sec, span);
    printf("payload:     %.0f B per delivered message on average\n", avg);
    printf("latency:     p50 %.3f ms  p90 %.3f ms  p99 %.3f ms  p99.9 %.3f ms  max %.3f ms\n", p50,
           p90, p99, p999, max);
    printf("{\"connections\":%zu,\"connected\":%zu,\"failed_connections\":%zu,\"threads\":%d,"
           "\"connect_s\":%.3f,\"messages\":%" PRIu64 ",\"size\":%ld,\"rate\":%g,"
           "\"payload_bytes\":%.0f,\"expected\":%" PRIu64 ",\"deliveries\":%" PRIu64
           ",\"lost\":%" PRIu64 ",\"out_of_order\":%" PRIu64 ",\"dropped\":%zu,"
           "\"deliveries_per_sec\":%.0f,\"latency_ms\":{\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f,"
           "\"p999\":%.3f,\"max\":%.3f}}\n",
           n, ready, failed, b->nworkers, connect_s, published, b->o.size, b->o.rate, avg, expected,
           deliveries, lost, ooo, dropped, per_sec, p50, p90, p99, p999, max);
    fflush(stdout);
    status = (b->publisher_failed || lost > 0 || failed > 0 || dropped > 0) ? 1 : 0;

Free:
    vg_url_dispose(&b->ws);
    vg_free(b->handshake);
    vg_free(b->subscribe);
    vg_free(b->workers);
    vg_free(publish_url_owned);
    if (b->nworkers > 0)
        uv_mutex_destroy(&b->lock);
    vg_free(b);
    return status;
}
