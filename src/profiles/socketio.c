/*
 * Socket.IO (seed 004, the Laser Turret panel) on /socket.io/: the stock socket.io-client 4.x
 * connects unchanged, over HTTP long-polling, WebSocket, or polling upgraded to WebSocket
 * (Engine.IO v4, Socket.IO v5); docs/profiles/socketio.md.
 *
 * The seed's backend emitted `status_update` with its consolidated status every 500 ms; here the
 * backend PUTs/PATCHes the --socketio-status state document and a state feed publishes it on
 * the channel socketio.status every --socketio-status-interval seconds, rendered once per worker
 * as 42["status_update",<document>].  --socketio-events maps other channels to event names.
 * Events the client emits go to the backend as RPCs (--rpc-url); an ack gets the result.
 *
 * This file: the HTTP/WebSocket endpoint, the wire format, and the Socket.IO layer (connect,
 * auth, events, acks), which runs on each session's home worker.  socketio_session.c has the
 * Engine.IO session and its transports.
 */
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/channel.h"
#include "profiles/profiles.h"
#include "transport/rpc.h"
#include "profiles/socketio.h"
#include "core/state.h"
#include "util/alloc.h"
#include "util/clock.h"
#include "util/error.h"
#include "util/log.h"

#define STATUS_CHANNEL "socketio.status"
#define STATUS_EVENT   "status_update"
#define MAX_SID        64
#define MAX_TOKEN      8192
#define MAX_ORIGIN     256

/* The wire format below has no argument for its profile; this is the one enabled (set before
 * the workers start, read-only while they run). */
static const vg_sio_profile_t *active;

/* ---- the wire format: hub messages as Socket.IO events ---- */

static const char *event_for(const char *channel, size_t len)
{
    if (len == strlen(STATUS_CHANNEL) && memcmp(channel, STATUS_CHANNEL, len) == 0)
        return STATUS_EVENT;
    for (size_t i = 0; active != NULL && i < active->num_maps; i++) {
        const char *pat = active->maps[i].pattern;
        if (vg_channel_match(pat, strlen(pat), channel, len))
            return active->maps[i].event;
    }
    return NULL;
}

/* 42["<event>",<data>]: the published data, nothing of vigil's envelope. */
static vg_chunk_t *render(const vg_delivery_t *d)
{
    const char *event = event_for(d->channel, d->channel_len);
    json_t *native = event != NULL ? vg_profile_parse(d) : NULL;
    if (native == NULL)
        return NULL;
    json_t *data = json_object_get(native, "data");
    char *text = json_dumps(data ? data : json_null(), JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(native);
    if (text == NULL)
        return NULL;
    vg_buf_t b = VG_BUF_INIT;
    vg_sio_encode_event_raw(&b, event, text, strlen(text));
    free(text);
    vg_chunk_t *frame = vg_ws_frame_new(VG_WS_OP_TEXT, b.base, b.len);
    vg_buf_dispose(&b);
    return frame;
}

static const vg_format_t socketio_format = {"socketio", render};

static void count_delivery(vg_sio_t *es, const vg_chunk_t *frame)
{
    vg_hub_stats_t *st = vg_hub_stats(es->home);
    atomic_fetch_add_explicit(&st->delivered, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&st->bytes_out, frame->len, memory_order_relaxed);
    if (es->sock != NULL && es->sock->registered)
        atomic_fetch_add_explicit(&es->sock->reg.messages_out, 1, memory_order_relaxed);
}

/* vg_subscriber_t.deliver, on the home worker, inside the index's match loop: only queues. */
static void on_deliver(vg_subscriber_t *sub, const void *arg)
{
    vg_sio_t *es = sub->data;
    vg_chunk_t *frame = vg_hub_render(es->home, &socketio_format, arg);
    if (frame == NULL)
        return;
    vg__sio_send(es, es->home, frame);
    count_delivery(es, frame);
    vg_chunk_unref(frame);
}

/* ---- sending Socket.IO packets (home worker) ---- */

static void send_buf(vg_sio_t *es, vg_worker_t *w, vg_buf_t *b)
{
    vg__sio_send_text(es, w, b->base, b->len);
    vg_buf_dispose(b);
}

static void send_packet(vg_sio_t *es, vg_worker_t *w, int type, const char *nsp, int64_t id,
                        json_t *data)
{
    vg_buf_t b = VG_BUF_INIT;
    vg_sio_encode(&b, type, nsp, id, data);
    json_decref(data);
    send_buf(es, w, &b);
}

static void connect_error(vg_sio_t *es, vg_worker_t *w, const char *nsp, const char *message)
{
    send_packet(es, w, VG_SIO_CONNECT_ERROR, nsp, -1, json_pack("{s:s}", "message", message));
}

static void send_status(vg_sio_t *es, vg_worker_t *w)
{
    uint64_t version;
    json_t *doc =
        vg_state_get(es->profile->app->state, es->profile->app->cfg->socketio_status, &version);
    if (doc == NULL)
        return;
    send_packet(es, w, VG_SIO_EVENT, "/", -1, json_pack("[s, o]", STATUS_EVENT, doc));
}

/* Closes the session for a packet it must not send; the log line says which and why. */
static void bad_input(vg_sio_t *es, vg_worker_t *w, const char *why)
{
    vg_notice("socket.io %s from %s: closed: bad packet: %s", es->sid, es->peer, why);
    vg__sio_close(es, w, "bad packet");
}

/* ---- connect and disconnect ---- */

static int authenticate(vg_sio_t *es, const json_t *auth, const char **reason)
{
    vg_sio_socket_t *k = es->sock;
    vg_app_t *app = es->profile->app;
    if (!app->cfg->socketio_auth) {
        vg_identity_init_anonymous(&k->identity);
        return 0;
    }
    const char *token = json_string_value(json_object_get(auth, "token"));
    if (token == NULL)
        token = es->token;
    if (token == NULL || token[0] == '\0') {
        *reason = "missing token";
        return VG_EAUTH;
    }
    return vg_auth_verify_token(app->auth, token, strlen(token), vg_wall_seconds(), &k->identity,
                                reason);
}

static void registry_init(vg_sio_t *es)
{
    vg_reg_entry_t *e = &es->sock->reg;
    e->conn_id = es->conn_id;
    e->worker_id = es->home->id;
    snprintf(e->peer, sizeof(e->peer), "%s", es->peer);
    e->endpoint = VG_SIO_PATH;
    e->connected_at_ms = vg_wall_ms();
    atomic_init(&e->last_heartbeat_ms, e->connected_at_ms);
    atomic_init(&e->messages_in, 0);
    atomic_init(&e->messages_out, 0);
    e->subscriptions = NULL;
}

static void append_pattern(const char *pattern, size_t len, void *arg)
{
    json_array_append_new(arg, json_stringn(pattern, len));
}

/* The status channel, and each mapped pattern the user may read (everyone, without auth). */
static void subscribe(vg_sio_t *es)
{
    vg_sio_socket_t *k = es->sock;
    vg_subs_t *subs = vg_hub_subs(es->home);
    vg_subs_add(subs, &k->subscriber, STATUS_CHANNEL, strlen(STATUS_CHANNEL));
    vg_patterns_t allowed;
    vg_identity_allowed(es->profile->app, &k->identity, &allowed);
    for (size_t i = 0; i < es->profile->num_maps; i++) {
        const char *pat = es->profile->maps[i].pattern;
        if (!es->profile->app->cfg->socketio_auth || vg_patterns_covers(&allowed, pat, strlen(pat)))
            vg_subs_add(subs, &k->subscriber, pat, strlen(pat));
    }
    json_t *list = json_array();
    vg_subscriber_each(&k->subscriber, append_pattern, list);
    vg_registry_set_subscriptions(es->profile->app->registry, &k->reg,
                                  json_dumps(list, JSON_COMPACT));
    json_decref(list);
}

static int register_socket(vg_sio_t *es)
{
    vg_app_t *app = es->profile->app;
    vg_sio_socket_t *k = es->sock;
    /* Without auth everyone is "anonymous": a per-user limit would be a global one. */
    int limit = app->cfg->socketio_auth ? app->cfg->max_connections_per_user : INT_MAX;
    registry_init(es);
    if (vg_registry_add(app->registry, &k->reg, k->identity.user, limit) != 0)
        return VG_ELIMIT;
    k->registered = 1;
    return 0;
}

static void on_connect(vg_sio_t *es, vg_worker_t *w, const json_t *auth)
{
    vg_sio_socket_t *k = es->sock;
    vg_app_t *app = es->profile->app;
    const char *reason = "unauthorized";
    if (!k->connected) {
        if (authenticate(es, auth, &reason) != 0) {
            /* One line per session at the default level, however many CONNECTs it sends. */
            vg_log(k->refused_connects++ == 0 ? VG_LOG_NOTICE : VG_LOG_VERBOSE,
                   "socket.io %s from %s: refused: %s", es->sid, es->peer, reason);
            vg_app_count_refusal(app, reason);
            connect_error(es, w, "/", reason);
            return;
        }
        k->has_identity = 1;
        if (register_socket(es) != 0) {
            vg_notice("socket.io %s from %s: user %s refused: too many connections", es->sid,
                      es->peer, k->identity.user);
            vg_app_count_refusal(app, "too many connections");
            vg_identity_dispose(&k->identity);
            k->has_identity = 0;
            connect_error(es, w, "/", "too many connections");
            return;
        }
        subscribe(es);
        vg__sio_make_id(k->sid);
        k->connected = 1;
        k->generation++;
        vg__sio_set_connected(es, 1);
        vg_notice("socket.io %s from %s: user %s connected on %s", es->sid, es->peer,
                  k->identity.user, VG_SIO_PATH);
    }
    send_packet(es, w, VG_SIO_CONNECT, "/", -1, json_pack("{s:s}", "sid", k->sid));
    send_status(es, w); /* the seed's page shows the status at once, not 500 ms later */
}

/* Leaves the index and the registry (a DISCONNECT, or the session going away). */
static void leave(vg_sio_t *es)
{
    vg_sio_socket_t *k = es->sock;
    if (es->home->data != NULL)
        vg_subs_remove_all(vg_hub_subs(es->home), &k->subscriber);
    if (k->registered) {
        vg_registry_remove(es->profile->app->registry, &k->reg);
        vg_verbose("socket.io %s from %s: user %s disconnected", es->sid, es->peer,
                   k->identity.user);
    }
    k->registered = 0;
    if (k->has_identity)
        vg_identity_dispose(&k->identity);
    k->has_identity = 0;
    if (k->connected)
        vg__sio_set_connected(es, 0);
    k->connected = 0;
}

/* ---- events: RPCs to the backend ---- */

typedef struct rpc_s {
    vg_sio_t *es; /* a reference */
    int64_t id;
    unsigned generation;
} rpc_t;

static void send_ack(vg_sio_t *es, vg_worker_t *w, int64_t id, json_t *value)
{
    send_packet(es, w, VG_SIO_ACK, "/", id, json_pack("[o]", value));
}

static void ack_error(vg_sio_t *es, vg_worker_t *w, int64_t id, const char *error)
{
    send_ack(es, w, id, json_pack("{s:s}", "error", error));
}

static void on_rpc_done(void *arg, int status, json_t *result, const char *error)
{
    (void)status;
    rpc_t *r = arg;
    vg_sio_t *es = r->es;
    /* Still the same connected socket: an answer for an old one means nothing to the client. */
    if (r->id >= 0 && !es->torn_down && es->sock->connected &&
        es->sock->generation == r->generation) {
        if (error != NULL)
            ack_error(es, es->home, r->id, error);
        else
            send_ack(es, es->home, r->id, json_incref(result));
    }
    vg__sio_unref(es);
    vg_free(r);
}

/* A token bucket of --max-inbound-rate packets per second, as for native sockets: an event over
 * it is refused (its ack says so), another packet ignored; a client still sending a whole rate's
 * worth more within one second is disconnected.  Every Socket.IO packet counts, CONNECTs too:
 * each is answered, and a payload of thousands must not queue thousands of answers. */
static int admit(vg_sio_t *es, vg_worker_t *w)
{
    vg_sio_socket_t *k = es->sock;
    double rate = es->profile->app->cfg->max_inbound_rate;
    uint64_t now = uv_now(&w->loop);
    k->rate_tokens += (double)(now - k->rate_updated) * rate / 1000.0;
    if (k->rate_tokens > rate)
        k->rate_tokens = rate;
    k->rate_updated = now;
    if (k->rate_tokens >= 1.0) {
        k->rate_tokens -= 1.0;
        return 1;
    }
    if (now - k->rate_window >= 1000) {
        k->rate_window = now;
        k->rate_overflow = 0;
    }
    if (++k->rate_overflow > (unsigned)rate) {
        if (k->connected)
            vg_notice("socket.io %s from %s: user %s closed: rate limit exceeded", es->sid,
                      es->peer, k->identity.user);
        else
            vg_verbose("socket.io %s from %s: closed: rate limit exceeded", es->sid, es->peer);
        vg__sio_close(es, w, "rate limit exceeded");
    }
    return 0;
}

static void on_event(vg_sio_t *es, vg_worker_t *w, json_t *args, int64_t id)
{
    vg_app_t *app = es->profile->app;
    const char *name = json_string_value(json_array_get(args, 0));
    if (!admit(es, w)) {
        if (id >= 0 && !vg__sio_is_closed(es))
            ack_error(es, w, id, "rate limited: too many events; slow down");
        return;
    }
    if (app->cfg->rpc_url == NULL) {
        if (id >= 0)
            ack_error(es, w, id, "no backend for client events (--rpc-url)");
        else
            vg_verbose("socket.io %s from %s: event '%s' dropped: no --rpc-url", es->sid, es->peer,
                       name);
        return;
    }
    json_t *params = json_array();
    for (size_t i = 1; i < json_array_size(args); i++)
        json_array_append(params, json_array_get(args, i));
    rpc_t *r = vg_malloc(sizeof(*r));
    r->es = vg__sio_ref(es);
    r->id = id;
    r->generation = es->sock->generation;
    /* Bounded per session and per user like native RPCs (rpc.h): past it, "busy" at once. */
    vg_rpc_caller_t who = {es->conn_id, es->sock->identity.user, es->sock->identity.anonymous,
                           NULL};
    if (vg_rpc_call(app, w, &who, name, params, on_rpc_done, r) != 0) {
        if (id >= 0)
            ack_error(es, w, id, who.busy != NULL ? who.busy : "the call could not be made");
        else
            vg_verbose("socket.io %s from %s: event '%s' dropped: %s", es->sid, es->peer, name,
                       who.busy != NULL ? who.busy : "the call could not be made");
        vg__sio_unref(es);
        vg_free(r);
    }
    json_decref(params);
}

/* ---- binary packets ---- */

static void drop_pending(vg_sio_socket_t *k)
{
    if (k->has_pending)
        vg_sio_packet_dispose(&k->pending);
    k->has_pending = 0;
    for (size_t i = 0; i < k->num_attachments; i++)
        vg_free((void *)k->attachments[i].base);
    vg_free(k->attachments);
    k->attachments = NULL;
    k->num_attachments = k->attachment_bytes = 0;
}

/* The last attachment arrived: the packet goes on as JSON, each binary as a base64 string. */
static void complete_binary(vg_sio_t *es, vg_worker_t *w)
{
    vg_sio_socket_t *k = es->sock;
    vg_sio_packet_t *pkt = &k->pending;
    if (vg_sio_fill_placeholders(pkt->data, k->attachments, k->num_attachments) != 0)
        bad_input(es, w, "placeholder without its attachment");
    else if (pkt->type == VG_SIO_BINARY_EVENT)
        on_event(es, w, pkt->data, pkt->id);
    drop_pending(k);
}

static void on_attachment(vg_sio_t *es, vg_worker_t *w, const char *data, size_t len)
{
    vg_sio_socket_t *k = es->sock;
    if (!k->has_pending) {
        bad_input(es, w, "binary message without a binary packet");
        return;
    }
    if (k->attachment_bytes + len > es->profile->max_payload) {
        drop_pending(k);
        bad_input(es, w, "attachments over the maximum payload");
        return;
    }
    k->attachments = vg_realloc(k->attachments, (k->num_attachments + 1) * sizeof(vg_iov_t));
    char *copy = vg_malloc(len + 1);
    memcpy(copy, data, len);
    k->attachments[k->num_attachments++] = (vg_iov_t){copy, len};
    k->attachment_bytes += len;
    if (k->num_attachments == k->pending.attachments)
        complete_binary(es, w);
}

/* ---- Socket.IO packets (home worker) ---- */

static int is_root(const vg_sio_packet_t *pkt)
{
    return pkt->nsp.len == 1 && pkt->nsp.base[0] == '/';
}

/* Returns 1 when the packet was kept (a binary one waiting for its attachments). */
static int dispatch(vg_sio_t *es, vg_worker_t *w, vg_sio_packet_t *pkt)
{
    vg_sio_socket_t *k = es->sock;
    int bound = is_root(pkt) && k->connected; /* other namespaces never connect */
    int is_event = pkt->type == VG_SIO_EVENT || pkt->type == VG_SIO_BINARY_EVENT;
    if (!(bound && is_event) && !admit(es, w)) /* a bound event is admitted by on_event */
        return 0;
    switch (pkt->type) {
    case VG_SIO_CONNECT:
        if (is_root(pkt)) {
            on_connect(es, w, pkt->data);
        } else {
            char nsp[300];
            snprintf(nsp, sizeof(nsp), "%.*s", (int)pkt->nsp.len, pkt->nsp.base);
            connect_error(es, w, nsp, "Invalid namespace");
        }
        return 0;
    case VG_SIO_DISCONNECT:
        if (bound)
            leave(es);
        return 0;
    case VG_SIO_EVENT:
    case VG_SIO_BINARY_EVENT:
    case VG_SIO_ACK:
    case VG_SIO_BINARY_ACK:
        if (!bound) {
            /* socket.io closes the connection for a packet to a namespace not joined */
            bad_input(es, w, "packet for a namespace that is not connected");
            return 0;
        }
        if ((pkt->type == VG_SIO_BINARY_EVENT || pkt->type == VG_SIO_BINARY_ACK) &&
            pkt->attachments > 0) {
            k->pending = *pkt;
            k->has_pending = 1;
            return 1;
        }
        if (pkt->type == VG_SIO_EVENT || pkt->type == VG_SIO_BINARY_EVENT)
            on_event(es, w, pkt->data, pkt->id);
        return 0; /* acks: the server never asks the client for one */
    default: bad_input(es, w, "CONNECT_ERROR from the client"); return 0;
    }
}

/* The Socket.IO layer's state, made by the session's first Socket.IO packet. */
static vg_sio_socket_t *socket_state(vg_sio_t *es)
{
    if (es->sock == NULL) {
        es->sock = vg_calloc(1, sizeof(*es->sock));
        vg_subscriber_init(&es->sock->subscriber, es);
        es->sock->subscriber.deliver = on_deliver;
        es->sock->rate_tokens = es->profile->app->cfg->max_inbound_rate;
        es->sock->rate_updated = es->sock->rate_window = uv_now(&es->home->loop);
    }
    return es->sock;
}

static void on_sio_message(vg_sio_t *es, vg_worker_t *w, int binary, const char *data, size_t len)
{
    vg_sio_socket_t *k = socket_state(es);
    if (k->registered) {
        atomic_fetch_add_explicit(&k->reg.messages_in, 1, memory_order_relaxed);
        atomic_store_explicit(&k->reg.last_heartbeat_ms, vg_wall_ms(), memory_order_relaxed);
    }
    if (binary) {
        on_attachment(es, w, data, len);
        return;
    }
    if (k->has_pending) {
        drop_pending(k);
        bad_input(es, w, "a packet instead of a binary attachment");
        return;
    }
    vg_sio_packet_t pkt;
    const char *err = NULL;
    if (vg_sio_decode(data, len, &pkt, &err) != 0) {
        bad_input(es, w, err);
        return;
    }
    if (!dispatch(es, w, &pkt))
        vg_sio_packet_dispose(&pkt);
}

static void on_sio_teardown(vg_sio_t *es)
{
    vg_free(es->token);
    es->token = NULL;
    if (es->sock == NULL)
        return;
    leave(es);
    drop_pending(es->sock);
    vg_free(es->sock);
    es->sock = NULL;
}

/* ---- HTTP: CORS ---- */

/* A header value we may echo back: visible ASCII only (no CR/LF can sneak in). */
static int echo_safe(vg_iov_t v, size_t max)
{
    if (v.base == NULL || v.len == 0 || v.len > max)
        return 0;
    for (size_t i = 0; i < v.len; i++)
        if (v.base[i] < 0x20 || v.base[i] > 0x7e)
            return 0;
    return 1;
}

static int origin_allowed(const vg_sio_profile_t *p, vg_iov_t origin)
{
    if (origin.base == NULL)
        return 1; /* not a browser's cross-origin request */
    if (!echo_safe(origin, MAX_ORIGIN))
        return 0;
    if (p->cors_any)
        return 1;
    for (size_t i = 0; i < p->cors.count; i++)
        if (vg_iov_eq(origin, p->cors.items[i]))
            return 1;
    return 0;
}

/* The CORS lines for an answer to req (socket.io's cors option with credentials). */
static void cors_headers(const vg_http_request_t *req, char *out, size_t cap)
{
    vg_iov_t origin = vg_http_header_get(req, "Origin");
    out[0] = '\0';
    if (origin.base != NULL)
        snprintf(out, cap,
                 "Access-Control-Allow-Origin: %.*s\r\nAccess-Control-Allow-Credentials: "
                 "true\r\nVary: Origin\r\n",
                 (int)origin.len, origin.base);
}

static void preflight(vg_session_t *s, const vg_http_request_t *req, const char *cors)
{
    vg_iov_t asked = vg_http_header_get(req, "Access-Control-Request-Headers");
    char hdr[1024];
    snprintf(hdr, sizeof(hdr),
             "%sAccess-Control-Allow-Methods: GET, POST, OPTIONS\r\n"
             "Access-Control-Allow-Headers: %.*s\r\nAccess-Control-Max-Age: 86400\r\n",
             cors, echo_safe(asked, 512) ? (int)asked.len : 12,
             echo_safe(asked, 512) ? asked.base : "Content-Type");
    vg_session_respond(s, 204, NULL, hdr, NULL, 0);
}

/* engine.io's error answers: 400 (403 for Forbidden) with {"code":N,"message":"..."}. */
static void eio_error(vg_session_t *s, const char *cors, int code, const char *message)
{
    char body[128];
    int n = snprintf(body, sizeof(body), "{\"code\":%d,\"message\":\"%s\"}", code, message);
    vg_session_respond(s, code == 4 ? 403 : 400, "application/json", cors, body, (size_t)n);
}

/* ---- HTTP: the endpoint ---- */

/* A handshake over a session cap: 503 (the server's) or 429 (the client address's), with
 * Retry-After: places free up as sessions that never connect time out. */
static void refuse_session(vg_sio_profile_t *p, vg_session_t *s, const char *cors, int refusal)
{
    int per_address = refusal == VG_SIO_TOO_MANY_FROM_ADDRESS;
    const char *body = per_address
                           ? "{\"code\":3,\"message\":\"Too many sessions from this address\"}"
                           : "{\"code\":3,\"message\":\"Too many sessions\"}";
    char headers[MAX_ORIGIN + 160];
    snprintf(headers, sizeof(headers), "%sRetry-After: %llu\r\n", cors ? cors : "",
             (unsigned long long)(p->connect_timeout_ms + 999) / 1000);
    vg_session_respond(s, per_address ? 429 : 503, "application/json", headers, body, strlen(body));
}

/* A new session, or NULL when refused (answered). */
static vg_sio_t *new_session(vg_sio_profile_t *p, vg_session_t *s, vg_http_request_t *req,
                             int transport, const char *cors)
{
    int refusal;
    vg_sio_t *es = vg__sio_new(p, s, transport, &refusal);
    if (es == NULL) {
        refuse_session(p, s, cors, refusal);
        return NULL;
    }
    char token[MAX_TOKEN];
    /* Kept for the CONNECT only when it may be needed there. */
    if (p->app->cfg->socketio_auth && vg_http_query_get(req, "token", token, sizeof(token)) > 0)
        es->token = vg_strdup(token);
    return es;
}

static void handshake_polling(vg_sio_profile_t *p, vg_session_t *s, vg_http_request_t *req,
                              const char *cors)
{
    static const char *const upgrades[] = {"websocket"};
    vg_sio_t *es = new_session(p, s, req, VG_SIO_POLLING, cors);
    if (es == NULL)
        return;
    vg_buf_t open = VG_BUF_INIT;
    vg_eio_encode_open(&open, es->sid, upgrades, p->app->cfg->refuse_websocket ? 0 : 1,
                       p->ping_interval_ms, p->ping_timeout_ms, p->max_payload);
    vg_session_respond(s, 200, "text/plain; charset=UTF-8", cors, open.base, open.len);
    vg_buf_dispose(&open);
    vg__sio_unref(es);
}

static int current_transport(vg_sio_t *es)
{
    pthread_mutex_lock(&es->lock);
    int t = es->transport;
    pthread_mutex_unlock(&es->lock);
    return t;
}

/* A POST body or WebSocket message over what the session may send now (maxPayload, or less
 * before its socket connected) closes the session; returns 1 then. */
static int too_large(vg_sio_t *es, vg_worker_t *w, size_t len)
{
    vg_sio_profile_t *p = es->profile;
    size_t max = vg__sio_max_inbound(es);
    if (len <= max)
        return 0;
    if (max < p->max_payload) {
        atomic_fetch_add_explicit(&p->payloads_refused, 1, memory_order_relaxed);
        vg_verbose("socket.io %s from %s: closed: %zu bytes before the socket connected (over "
                   "--socketio-max-connect-payload %zu)",
                   es->sid, es->peer, len, max);
    } else {
        vg_notice("socket.io %s from %s: closed: payload of %zu bytes over maxPayload %zu", es->sid,
                  es->peer, len, max);
    }
    vg__sio_close(es, w, "payload too large");
    return 1;
}

static void post(vg_sio_t *es, vg_session_t *s, vg_http_request_t *req, const char *cors)
{
    vg_worker_t *w = s->conn->worker;
    if (current_transport(es) == VG_SIO_WEBSOCKET) {
        eio_error(s, cors, 3, "Bad request");
        return;
    }
    if (too_large(es, w, req->body.len)) {
        vg_session_respond(s, 413, "application/json", cors,
                           "{\"code\":3,\"message\":\"Payload too large\"}", 40);
        return;
    }
    const char *err = NULL;
    if (vg__sio_on_payload(es, w, req->body.base, req->body.len, &err) != 0) {
        vg_notice("socket.io %s from %s: closed: bad packet: %s", es->sid, es->peer, err);
        vg__sio_close(es, w, "bad packet");
        eio_error(s, cors, 3, "Bad request");
        return;
    }
    vg_session_respond(s, 200, "text/plain; charset=UTF-8", cors, "ok", 2);
}

static void websocket(vg_sio_profile_t *p, vg_session_t *s, vg_http_request_t *req, const char *sid,
                      const char *cors)
{
    vg_sio_t *es;
    if (sid[0] != '\0') {
        es = vg__sio_find(p, sid);
        if (es == NULL) {
            eio_error(s, cors, 1, "Session ID unknown");
            return;
        }
        if (current_transport(es) != VG_SIO_POLLING) {
            vg__sio_unref(es);
            eio_error(s, cors, 3, "Bad request");
            return;
        }
    } else if ((es = new_session(p, s, req, VG_SIO_WEBSOCKET, cors)) == NULL) {
        return;
    }
    s->endpoint_data = es; /* the connection's reference; on_open finds the session here */
    vg_session_upgrade(s, req, &p->endpoint);
    if (s->ws == NULL) { /* refused (answered 4xx): no WebSocket will hold the reference */
        s->endpoint_data = NULL;
        if (sid[0] == '\0')
            vg__sio_close(es, s->conn->worker, "websocket handshake refused");
        vg__sio_unref(es);
    }
}

static void handle(vg_session_t *s, vg_http_request_t *req, const vg_route_match_t *m)
{
    vg_sio_profile_t *p = (vg_sio_profile_t *)m->route->extra;
    char cors[MAX_ORIGIN + 128], eio[8], transport[16], sid[MAX_SID + 1];
    if (!origin_allowed(p, vg_http_header_get(req, "Origin"))) {
        vg_verbose("conn %" PRIu64 " from %s: socket.io: origin not allowed", s->conn->id,
                   s->conn->peer);
        eio_error(s, NULL, 4, "Forbidden");
        return;
    }
    cors_headers(req, cors, sizeof(cors));
    if (req->method == HTTP_OPTIONS) {
        preflight(s, req, cors);
        return;
    }
    if (vg_http_query_get(req, "EIO", eio, sizeof(eio)) < 0 || strcmp(eio, "4") != 0) {
        eio_error(s, cors, 5, "Unsupported protocol version");
        return;
    }
    int n = vg_http_query_get(req, "transport", transport, sizeof(transport));
    int is_ws = n > 0 && strcmp(transport, "websocket") == 0;
    if (!is_ws && (n <= 0 || strcmp(transport, "polling") != 0)) {
        eio_error(s, cors, 0, "Transport unknown");
        return;
    }
    if (vg_http_query_get(req, "sid", sid, sizeof(sid)) < 0)
        sid[0] = '\0';
    if (is_ws) {
        websocket(p, s, req, sid, cors);
    } else if (sid[0] == '\0') {
        if (req->method == HTTP_GET)
            handshake_polling(p, s, req, cors);
        else
            eio_error(s, cors, 2, "Bad handshake method");
    } else {
        vg_sio_t *es = vg__sio_find(p, sid);
        if (es == NULL)
            eio_error(s, cors, 1, "Session ID unknown");
        else if (req->method == HTTP_GET)
            vg__sio_poll(es, s, cors);
        else
            post(es, s, req, cors);
        if (es != NULL)
            vg__sio_unref(es);
    }
}

/* ---- the WebSocket endpoint ---- */

static void ws_on_open(vg_session_t *s)
{
    vg__sio_ws_open(s->endpoint_data, s);
}

static void ws_on_message(vg_session_t *s, int opcode, uint8_t *data, size_t len)
{
    vg_sio_t *es = s->endpoint_data;
    vg_eio_packet_t pkt = {VG_EIO_MESSAGE, 1, (const char *)data, len};
    const char *err = NULL;
    int rc = 0;
    if (too_large(es, s->conn->worker, len))
        return;
    if (opcode == VG_WS_OP_TEXT)
        rc = vg_eio_decode((const char *)data, len, &pkt, &err);
    if (rc == 0)
        rc = vg__sio_on_packet(es, s->conn->worker, &pkt, s, &err);
    if (rc != 0) {
        vg_notice("socket.io %s from %s: closed: bad packet: %s", es->sid, s->conn->peer, err);
        vg__sio_close(es, s->conn->worker, "bad packet");
    }
}

static void ws_on_close(vg_session_t *s)
{
    vg_sio_t *es = s->endpoint_data;
    s->endpoint_data = NULL;
    if (es == NULL)
        return;
    vg__sio_ws_closed(es, s);
    vg__sio_unref(es);
}

/* ---- the profile ---- */

static int parse_events(vg_sio_profile_t *p, const char *spec, char *err, size_t errlen)
{
    vg_patterns_t items;
    vg_patterns_parse(&items, spec);
    int rc = 0;
    p->maps = vg_calloc(items.count + 1, sizeof(*p->maps));
    for (size_t i = 0; i < items.count && rc == 0; i++) {
        char *eq = strchr(items.items[i], '=');
        if (eq == NULL || eq[1] == '\0' || eq == items.items[i] ||
            vg_channel_check_pattern(items.items[i], (size_t)(eq - items.items[i])) != NULL) {
            snprintf(err, errlen,
                     "invalid value '%s' for --socketio-events: expected PATTERN=EVENT,... with "
                     "a valid channel pattern",
                     items.items[i]);
            rc = VG_ECONFIG;
            break;
        }
        p->maps[p->num_maps].pattern = vg_strndup(items.items[i], (size_t)(eq - items.items[i]));
        p->maps[p->num_maps++].event = vg_strdup(eq + 1);
    }
    vg_patterns_dispose(&items);
    return rc;
}

static void dispose(void *state)
{
    vg_sio_profile_t *p = state;
    if (p == NULL)
        return;
    if (active == p)
        active = NULL;
    vg__sio_profile_dispose(p);
    for (size_t i = 0; i < p->num_maps; i++) {
        vg_free(p->maps[i].pattern);
        vg_free(p->maps[i].event);
    }
    vg_free(p->maps);
    vg_patterns_dispose(&p->cors);
    vg_free(p->workers);
    pthread_mutex_destroy(&p->table_lock);
    vg_free(p);
}

static int init(vg_app_t *app, void **state, char *err, size_t errlen)
{
    const vg_config_t *cfg = app->cfg;
    vg_sio_profile_t *p = vg_calloc(1, sizeof(*p));
    p->app = app;
    pthread_mutex_init(&p->table_lock, NULL);
    *state = p;
    if (parse_events(p, cfg->socketio_events, err, errlen) != 0)
        return VG_ECONFIG;
    p->cors_any = cfg->socketio_cors == NULL || strcmp(cfg->socketio_cors, "*") == 0;
    vg_patterns_parse(&p->cors, p->cors_any ? NULL : cfg->socketio_cors);
    p->ping_interval_ms = (uint64_t)(cfg->socketio_ping_interval * 1000 + 0.5);
    p->ping_timeout_ms = (uint64_t)(cfg->socketio_ping_timeout * 1000 + 0.5);
    p->max_payload = cfg->max_message_size;
    p->max_queued = cfg->max_outbound;
    p->connect_timeout_ms = (uint64_t)(cfg->socketio_connect_timeout * 1000 + 0.5);
    p->max_connect_payload = cfg->socketio_max_connect_payload;
    p->max_sessions = (size_t)cfg->socketio_max_sessions;
    p->max_sessions_per_ip = (size_t)cfg->socketio_max_sessions_per_ip;
    p->on_message = on_sio_message;
    p->on_teardown = on_sio_teardown;
    vg__sio_profile_init(p);
    p->num_workers = cfg->workers > 0 ? cfg->workers : 1;
    p->workers = vg_calloc((size_t)p->num_workers, sizeof(*p->workers));
    p->endpoint = (vg_ws_endpoint_t){
        .path = VG_SIO_PATH,
        .authenticate = 0, /* Socket.IO authenticates in its CONNECT packet */
        .on_open = ws_on_open,
        .on_message = ws_on_message,
        .on_close = ws_on_close,
    };
    vg_app_route_ex(app, VG_SIO_PATH, VG_M_GET | VG_M_POST | VG_M_OPTIONS, handle, p);
    char type[] = STATUS_EVENT, channel[] = STATUS_CHANNEL;
    vg_state_broadcast_t feed = {.name = cfg->socketio_status,
                                 .type = type,
                                 .seconds = cfg->socketio_status_interval,
                                 .channel = channel};
    vg_state_add_feed(app->state, &feed);
    active = p;
    return 0;
}

static unsigned long long load(atomic_ullong *counter)
{
    return atomic_load_explicit(counter, memory_order_relaxed);
}

static void metrics(void *state, vg_buf_t *out)
{
    vg_sio_profile_t *p = state;
    pthread_mutex_lock(&p->table_lock);
    size_t sessions = p->num_sessions;
    pthread_mutex_unlock(&p->table_lock);
    vg_buf_printf(out,
                  "# HELP vigil_socketio_sessions Open Engine.IO sessions.\n"
                  "# TYPE vigil_socketio_sessions gauge\nvigil_socketio_sessions %zu\n",
                  sessions);
    vg_buf_printf(out,
                  "# HELP vigil_socketio_sessions_refused_total Engine.IO handshakes refused by "
                  "a session cap (--socketio-max-sessions, --socketio-max-sessions-per-ip).\n"
                  "# TYPE vigil_socketio_sessions_refused_total counter\n"
                  "vigil_socketio_sessions_refused_total{limit=\"server\"} %llu\n"
                  "vigil_socketio_sessions_refused_total{limit=\"address\"} %llu\n",
                  load(&p->refused_server), load(&p->refused_address));
    vg_buf_printf(out,
                  "# HELP vigil_socketio_sessions_expired_total Engine.IO sessions closed by a "
                  "timeout (no Socket.IO CONNECT in time, no pong in time).\n"
                  "# TYPE vigil_socketio_sessions_expired_total counter\n"
                  "vigil_socketio_sessions_expired_total{reason=\"connect_timeout\"} %llu\n"
                  "vigil_socketio_sessions_expired_total{reason=\"ping_timeout\"} %llu\n",
                  load(&p->expired_connect), load(&p->expired_ping));
    vg_buf_printf(out,
                  "# HELP vigil_socketio_payloads_refused_total POST bodies and WebSocket "
                  "messages over --socketio-max-connect-payload from sessions not connected.\n"
                  "# TYPE vigil_socketio_payloads_refused_total counter\n"
                  "vigil_socketio_payloads_refused_total %llu\n",
                  load(&p->payloads_refused));
}

const vg_profile_t vg_profile_socketio = {"socketio", init, dispose, metrics};
