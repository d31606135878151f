/*
 * One connection's life on the application side: HTTP/1.1 requests answered in order, the
 * request and idle timers, the upgrade to WebSocket, and the WebSocket's closing paths (peer
 * close, protocol failure, slow consumer, server shutdown).
 */
#include <inttypes.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>

#include "transport/internal.h"
#include "core/hub.h"
#include "util/alloc.h"
#include "util/error.h"
#include "util/log.h"

/* After we send a close frame, how long the peer has to answer before TCP is closed. */
#define WS_CLOSE_WAIT_MS 2000

static const vg_conn_handler_t session_handler;
static const vg_ws_callbacks_t ws_callbacks;

static uint64_t seconds_to_ms(double s)
{
    return (uint64_t)(s * 1000.0 + 0.5);
}

void vg_app_on_accept(vg_worker_t *w, vg_conn_t *c)
{
    vg_session_t *s = vg_calloc(1, sizeof(*s));
    s->conn = c;
    s->app = vg_worker_app(w);
    s->http = vg_malloc(sizeof(*s->http));
    vg_http_parser_init(s->http, &s->app->http_limits);
    c->data = s;
    c->handler = &session_handler;
    /* A connection that never completes a request is cut after --request-timeout, counted from
     * the accept, so idle sockets cannot be hoarded by opening and waiting. */
    s->timing_request = 1;
    vg_conn_timer_start(c, seconds_to_ms(s->app->cfg->request_timeout));
    vg_verbose("conn %" PRIu64 " accepted from %s", c->id, c->peer);
}

/* ---- HTTP responses ---- */

static void send_buf(vg_session_t *s, vg_buf_t *out)
{
    vg_chunk_t *chunk = vg_chunk_new_copy(out->base, out->len);
    int err = vg_conn_send(s->conn, chunk);
    vg_chunk_unref(chunk);
    if (err == VG_ELIMIT) {
        /* Pipelined requests whose answers the client does not read. */
        vg_notice("conn %" PRIu64 " from %s: closed: slow client (%zu bytes unread)", s->conn->id,
                  s->conn->peer, vg_conn_queued_bytes(s->conn));
        vg_conn_close(s->conn);
    } else if (!s->keep_alive) {
        vg_conn_close_after_flush(s->conn);
    }
}

void vg_session_respond_raw(vg_session_t *s, vg_buf_t *response)
{
    send_buf(s, response);
}

void vg_session_respond(vg_session_t *s, int status, const char *content_type,
                        const char *extra_headers, const void *body, size_t len)
{
    vg_buf_t out = VG_BUF_INIT;
    vg_http_write_response(&out, status, content_type, extra_headers, body, len, s->keep_alive);
    send_buf(s, &out);
    vg_buf_dispose(&out);
}

void vg_session_respond_error(vg_session_t *s, int status, const char *code, const char *message,
                              const char *extra_headers)
{
    vg_buf_t out = VG_BUF_INIT;
    vg_http_write_error(&out, status, code, message, extra_headers, s->keep_alive);
    send_buf(s, &out);
    vg_buf_dispose(&out);
}

static const char *error_code_for_status(int status)
{
    switch (status) {
    case 400: return "bad_request";
    case 408: return "request_timeout";
    case 413: return "payload_too_large";
    case 414: return "uri_too_long";
    case 431: return "header_fields_too_large";
    case 501: return "not_implemented";
    case 505: return "http_version_not_supported";
    default: return "error";
    }
}

/* A request the parser refused: answer and close, since the byte stream can't be trusted. */
static void reject_malformed(vg_session_t *s, int err)
{
    int status = vg_http_status_for_error(err);
    s->keep_alive = 0;
    vg_verbose("conn %" PRIu64 " from %s: bad request: %s", s->conn->id, s->conn->peer,
               vg_strerror(err));
    vg_session_respond_error(s, status, error_code_for_status(status), vg_strerror(err), NULL);
}

static void dispatch(vg_session_t *s, vg_http_request_t *req)
{
    vg_route_match_t m;
    /* The target may carry ?token= or ?ticket=: the log layer redacts them. */
    vg_verbose("conn %" PRIu64 " from %s: %.*s %.*s", s->conn->id, s->conn->peer,
               (int)req->method_name.len, req->method_name.base, (int)req->target.len,
               req->target.base);
    /* While draining for shutdown, answer what was asked and then close. */
    s->keep_alive = req->keep_alive && !s->conn->worker->stopping;
    int rc = vg_router_match(&s->app->router, req->path, req->method, &m);
    if (rc == VG_ROUTE_NOT_FOUND) {
        vg_session_respond_error(s, 404, "not_found", "no such resource", NULL);
    } else if (rc == VG_ROUTE_BAD_METHOD) {
        char allow[96], hdr[128];
        vg_router_format_allow(m.allowed, allow, sizeof(allow));
        snprintf(hdr, sizeof(hdr), "Allow: %s\r\n", allow);
        vg_session_respond_error(s, 405, "method_not_allowed",
                                 "method not allowed for this resource", hdr);
    } else {
        ((vg_http_handler_cb)m.route->handler)(s, req, &m);
    }
}

/* Feeds HTTP bytes: answers each complete request in order, then arms the right timer. */
static void http_read(vg_session_t *s, char *data, size_t len)
{
    if (s->poll != NULL || s->on_held_close != NULL) {
        /* A long-poll is held: keep reading (to notice a hang-up) but stash the bytes. */
        if (s->stash.len + len > s->app->cfg->max_header_size + s->app->cfg->max_body_size) {
            vg_conn_close(s->conn);
            return;
        }
        vg_buf_append(&s->stash, data, len);
        return;
    }
    while (s->http != NULL && !(s->conn->flags & (VG_CONN_F_CLOSING | VG_CONN_F_FLUSH_CLOSE))) {
        size_t used = 0;
        vg_http_request_t *req;
        int rc = vg_http_parse(s->http, data, len, &used, &req);
        if (rc < 0) {
            reject_malformed(s, rc);
            return;
        }
        if (rc == VG_HTTP_NEED_MORE) {
            if (vg_http_parser_take_continue(s->http)) /* curl waits 1 s for it otherwise */
                vg_conn_send_copy(s->conn, "HTTP/1.1 100 Continue\r\n\r\n", 25);
            break;
        }
        data += used;
        len -= used;
        s->timing_request = 0;
        vg_conn_timer_stop(s->conn);
        dispatch(s, req);
        if (s->poll != NULL || s->on_held_close != NULL) {
            /* Held: what was pipelined behind it waits until it is answered. */
            vg_buf_append(&s->stash, data, len);
            return;
        }
        if (s->ws != NULL || s->sse) {
            /* Upgraded or streaming: the request's memory is no longer needed; what follows is
             * WebSocket (an event stream's client has nothing more to say). */
            vg_http_parser_dispose(s->http);
            vg_free(s->http);
            s->http = NULL;
            if (len > 0 && s->ws != NULL)
                vg_ws_feed(s->ws, (uint8_t *)data, len);
            return;
        }
    }
    if (s->http == NULL || (s->conn->flags & (VG_CONN_F_CLOSING | VG_CONN_F_FLUSH_CLOSE)))
        return;
    if (vg_http_parser_in_request(s->http)) {
        if (!s->timing_request) {
            s->timing_request = 1;
            vg_conn_timer_start(s->conn, seconds_to_ms(s->app->cfg->request_timeout));
        }
    } else if (!s->timing_request) {
        vg_conn_timer_start(s->conn, seconds_to_ms(s->app->cfg->idle_timeout));
    }
}

void vg_session_resume_http(vg_session_t *s)
{
    vg_buf_t pending = s->stash;
    s->stash = VG_BUF_INIT;
    if (pending.len > 0)
        http_read(s, pending.base, pending.len);
    else if (!(s->conn->flags & (VG_CONN_F_CLOSING | VG_CONN_F_FLUSH_CLOSE)))
        vg_conn_timer_start(s->conn, seconds_to_ms(s->app->cfg->idle_timeout));
    vg_buf_dispose(&pending);
}

/* ---- WebSocket upgrade ---- */

/* The key must be base64 of exactly 16 bytes (RFC 6455 section 4.2.1). */
static int ws_key_valid(vg_iov_t key)
{
    unsigned char raw[32];
    if (key.len != 24 || key.base[22] != '=' || key.base[23] != '=')
        return 0;
    return EVP_DecodeBlock(raw, (const unsigned char *)key.base, 24) == 18;
}

static const char *pick_subprotocol(const vg_http_request_t *req, const vg_ws_endpoint_t *ep)
{
    if (ep->subprotocols == NULL)
        return NULL;
    /* The client lists its preferences in order; take the first one the endpoint speaks. */
    vg_iov_t offered = vg_http_header_get(req, "Sec-WebSocket-Protocol");
    size_t pos = 0;
    while (offered.base != NULL && pos < offered.len) {
        while (pos < offered.len && (offered.base[pos] == ' ' || offered.base[pos] == ','))
            pos++;
        size_t start = pos;
        while (pos < offered.len && offered.base[pos] != ',' && offered.base[pos] != ' ')
            pos++;
        vg_iov_t token = {offered.base + start, pos - start};
        for (const char *const *p = ep->subprotocols; *p != NULL; p++)
            if (token.len > 0 && vg_iov_eq(token, *p))
                return *p;
    }
    return NULL;
}

void vg_session_upgrade(vg_session_t *s, vg_http_request_t *req, const vg_ws_endpoint_t *ep)
{
    vg_iov_t version = vg_http_header_get(req, "Sec-WebSocket-Version");
    vg_iov_t key = vg_http_header_get(req, "Sec-WebSocket-Key");
    if (!req->upgrade || !vg_http_header_has_token(req, "Upgrade", "websocket")) {
        vg_session_respond_error(s, 426, "upgrade_required", "this endpoint speaks WebSocket only",
                                 "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n");
        return;
    }
    if (version.base == NULL || !vg_iov_eq(version, "13")) {
        vg_session_respond_error(s, 426, "unsupported_websocket_version",
                                 "only WebSocket version 13 is supported",
                                 "Sec-WebSocket-Version: 13\r\n");
        return;
    }
    if (key.base == NULL || !ws_key_valid(key)) {
        vg_session_respond_error(s, 400, "bad_websocket_key",
                                 "Sec-WebSocket-Key must be 16 bytes in base64", NULL);
        return;
    }
    if (s->app->cfg->refuse_websocket && !ep->open_when_refused) {
        /* For testing clients' fallback: what a proxy that blocks WebSocket does. */
        vg_app_count_refusal(s->app, "websocket refused by configuration");
        vg_session_respond_error(s, 403, "websocket_refused",
                                 "WebSocket is refused here (--refuse-websocket); use SSE or "
                                 "long-polling",
                                 NULL);
        return;
    }
    const char *fail_reason = NULL;
    s->endpoint = ep; /* its policy decides how to authenticate */
    if (ep->authenticate && s->app->wsuser->preupgrade(s, req, &fail_reason) != 0) {
        s->endpoint = NULL;
        return;
    }
    char accept[29], hdr[256];
    vg_ws_accept_key(key.base, key.len, accept);
    s->subprotocol = pick_subprotocol(req, ep);
    int n = snprintf(hdr, sizeof(hdr),
                     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n",
                     accept);
    if (s->subprotocol != NULL)
        n += snprintf(hdr + n, sizeof(hdr) - (size_t)n, "Sec-WebSocket-Protocol: %s\r\n",
                      s->subprotocol);
    n += snprintf(hdr + n, sizeof(hdr) - (size_t)n, "\r\n");
    vg_conn_send_copy(s->conn, hdr, (size_t)n);

    s->ws = vg_malloc(sizeof(*s->ws));
    vg_ws_init(s->ws, &ws_callbacks, s->app->cfg->max_message_size, s);
    s->endpoint = ep;
    s->last_seen = uv_now(&s->conn->worker->loop);
    s->rate_tokens = s->app->cfg->max_inbound_rate;
    s->rate_updated = s->rate_window = s->last_seen;
    vg_verbose("conn %" PRIu64 " from %s: WebSocket open on %.*s", s->conn->id, s->conn->peer,
               (int)req->path.len, req->path.base);
    if (ep->authenticate)
        s->app->wsuser->open(s, fail_reason);
    else
        ep->on_open(s);
}

/* ---- WebSocket ---- */

static void fail_slow_consumer(vg_session_t *s)
{
    vg_hub_stats_t *st = vg_hub_stats(s->conn->worker);
    atomic_fetch_add_explicit(&st->slow_consumers, 1, memory_order_relaxed);
    vg_notice("conn %" PRIu64 " from %s: closed: slow consumer (%zu bytes queued)", s->conn->id,
              s->conn->peer, vg_conn_queued_bytes(s->conn));
    /* What is not yet on the wire is dropped: the client recovers it through history. */
    vg_conn_discard_queued(s->conn);
    vg_ws_start_close(s->ws, VG_WS_CLOSE_POLICY, "slow consumer");
    vg_conn_close_after_flush(s->conn);
}

int vg_session_ws_send(vg_session_t *s, vg_chunk_t *frame)
{
    if (s->ws == NULL || s->ws->state != VG_WS_OPEN)
        return VG_ECLOSED;
    int err = vg_conn_send(s->conn, frame);
    if (err == VG_ELIMIT)
        fail_slow_consumer(s);
    return err;
}

int vg_session_ws_send_reply(vg_session_t *s, vg_chunk_t *frame)
{
    if (s->ws == NULL || s->ws->state != VG_WS_OPEN)
        return VG_ECLOSED;
    int err = vg_conn_send_whole(s->conn, frame);
    if (err == VG_ELIMIT)
        fail_slow_consumer(s);
    return err;
}

int vg_session_ws_send_text(vg_session_t *s, const char *text, size_t len)
{
    vg_chunk_t *frame = vg_ws_frame_new(VG_WS_OP_TEXT, text, len);
    int err = vg_session_ws_send(s, frame);
    vg_chunk_unref(frame);
    return err;
}

void vg_session_ws_close(vg_session_t *s, int code, const char *reason)
{
    if (s->ws == NULL || s->ws->state != VG_WS_OPEN)
        return;
    vg_ws_start_close(s->ws, code, reason);
    vg_conn_timer_start(s->conn, WS_CLOSE_WAIT_MS);
}

static void on_ws_message(vg_ws_t *ws, int opcode, uint8_t *data, size_t len)
{
    vg_session_t *s = ws->data;
    if (s->endpoint->authenticate && !s->app->wsuser->admit(s, data, len))
        return;
    s->endpoint->on_message(s, opcode, data, len);
}

/* Control frames the codec emits (close) must go out even when the queue is full. */
static void on_ws_send(vg_ws_t *ws, const uint8_t *frame, size_t len)
{
    vg_session_t *s = ws->data;
    vg_conn_send_copy(s->conn, frame, len);
}

/* A pong replaces the one still waiting in the queue, if any: a client that pings and never
 * reads leaves at most two pongs queued instead of one per ping (issue 15: 2 million pings made
 * 320 MB of pongs). */
static void on_ws_send_pong(vg_ws_t *ws, const uint8_t *frame, size_t len)
{
    vg_session_t *s = ws->data;
    vg_conn_send_latest(s->conn, frame, len, 2 + 125); /* room for any pong */
}

int vg__session_rate_take(vg_session_t *s)
{
    double rate = s->app->cfg->max_inbound_rate;
    uint64_t now = uv_now(&s->conn->worker->loop);
    s->rate_tokens += (double)(now - s->rate_updated) * rate / 1000.0;
    if (s->rate_tokens > rate)
        s->rate_tokens = rate;
    s->rate_updated = now;
    if (s->rate_tokens >= 1.0) {
        s->rate_tokens -= 1.0;
        return VG_RATE_OK;
    }
    atomic_fetch_add_explicit(&s->app->limit_hits[VG_LIMIT_INBOUND_RATE], 1, memory_order_relaxed);
    if (now - s->rate_window >= 1000) {
        s->rate_window = now;
        s->rate_overflow = 0;
    }
    if (s->rate_overflow++ == 0)
        return VG_RATE_REFUSED_FIRST;
    return s->rate_overflow > (unsigned)rate ? VG_RATE_EXCEEDED : VG_RATE_REFUSED;
}

/* Pings share the connection's --max-inbound-rate bucket with messages, on every WebSocket
 * endpoint: a ping over the rate is not answered, and a client still flooding a whole rate's
 * worth past it within one second is closed like a message flooder. */
static int on_ws_ping(vg_ws_t *ws, const uint8_t *data, size_t len)
{
    (void)data;
    (void)len;
    vg_session_t *s = ws->data;
    int r = vg__session_rate_take(s);
    if (r == VG_RATE_EXCEEDED) {
        vg_notice("conn %" PRIu64 " from %s: closed: ping rate limit exceeded", s->conn->id,
                  s->conn->peer);
        vg_session_ws_close(s, VG_WS_CLOSE_POLICY, "rate limit exceeded");
    }
    return r == VG_RATE_OK;
}

static void on_ws_close(vg_ws_t *ws, int code, const char *reason, int failed)
{
    vg_session_t *s = ws->data;
    if (failed)
        vg_notice("conn %" PRIu64 " from %s: WebSocket failed: %d %s", s->conn->id, s->conn->peer,
                  code, reason);
    else
        vg_verbose("conn %" PRIu64 " from %s: WebSocket closed: %d %s", s->conn->id, s->conn->peer,
                   code, reason);
    vg_conn_close_after_flush(s->conn);
}

static const vg_ws_callbacks_t ws_callbacks = {
    .on_message = on_ws_message,
    .on_pong = NULL,
    .send = on_ws_send,
    .on_close = on_ws_close,
    .on_ping = on_ws_ping,
    .send_pong = on_ws_send_pong,
};

/* ---- connection events ---- */

static void on_read(vg_conn_t *c, char *data, size_t len)
{
    vg_session_t *s = c->data;
    if (s->ws != NULL) {
        if (s->endpoint->authenticate)
            s->app->wsuser->seen(s, len);
        vg_ws_feed(s->ws, (uint8_t *)data, len);
    } else
        http_read(s, data, len);
}

static void on_eof(vg_conn_t *c, int status)
{
    vg_session_t *s = c->data;
    if (s->ws != NULL && s->ws->state != VG_WS_CLOSED)
        vg_verbose("conn %" PRIu64 " from %s: dropped without a close frame (%s)", c->id, c->peer,
                   status == UV_EOF ? "EOF" : uv_strerror(status));
}

static void on_timeout(vg_conn_t *c)
{
    vg_session_t *s = c->data;
    if (s->poll != NULL || s->sse) {
        s->endpoint->on_timer(s); /* a fallback stream's heartbeat or answer */
    } else if (s->ws != NULL && s->ws->state == VG_WS_OPEN && s->endpoint->authenticate) {
        s->app->wsuser->timer(s);
    } else if (s->ws != NULL) {
        /* Our close frame went unanswered. */
        vg_conn_close(c);
    } else if (s->timing_request && s->http != NULL && vg_http_parser_in_request(s->http)) {
        vg_verbose("conn %" PRIu64 " from %s: request timeout", c->id, c->peer);
        s->keep_alive = 0;
        vg_session_respond_error(s, 408, "request_timeout", "request not completed in time", NULL);
    } else {
        vg_conn_close(c);
    }
}

static void on_shutdown(vg_conn_t *c)
{
    vg_session_t *s = c->data;
    if (s->ws != NULL && s->ws->state == VG_WS_OPEN)
        vg_session_ws_close(s, VG_WS_CLOSE_GOING_AWAY, "server shutting down");
    else if (s->ws == NULL && (s->http == NULL || !vg_http_parser_in_request(s->http)))
        vg_conn_close_after_flush(c);
    /* A request in progress gets until the drain deadline to finish and be answered; dispatch
     * sees worker->stopping and closes after the answer. */
}

static void on_close(vg_conn_t *c)
{
    vg_session_t *s = c->data;
    if (s->poll != NULL)
        s->endpoint->on_close(s); /* the held poll's state */
    if (s->on_held_close != NULL)
        s->on_held_close(s);
    vg_buf_dispose(&s->stash);
    if (s->authenticated || s->registered)
        s->app->wsuser->cleanup(s);
    if (s->ws != NULL) {
        if (s->endpoint->on_close != NULL)
            s->endpoint->on_close(s);
        vg_ws_dispose(s->ws);
        vg_free(s->ws);
    }
    if (s->http != NULL) {
        vg_http_parser_dispose(s->http);
        vg_free(s->http);
    }
    vg_debug("conn %" PRIu64 " from %s: closed", c->id, c->peer);
    vg_free(s);
}

static const vg_conn_handler_t session_handler = {
    .on_read = on_read,
    .on_eof = on_eof,
    .on_timeout = on_timeout,
    .on_shutdown = on_shutdown,
    .on_close = on_close,
};

static void handle_websocket(vg_session_t *s, vg_http_request_t *req, const vg_route_match_t *m)
{
    vg_session_upgrade(s, req, m->route->extra);
}

void vg_app_route_ws(vg_app_t *app, const char *path, const vg_ws_endpoint_t *endpoint)
{
    vg_app_route_ex(app, path, VG_M_GET, handle_websocket, endpoint);
}
