/*
 * The user side of an authenticated WebSocket (the native /ws endpoint and, later, the
 * compatibility profiles): who it is, whether it may connect, its place in the registry and the
 * subscription index, heartbeats, token expiry, the inbound rate limit, and delivery filters.
 */
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "core/acks.h"
#include "transport/internal.h"
#include "proto/channel.h"
#include "core/hub.h"
#include "util/alloc.h"
#include "util/buf.h"
#include "util/clock.h"
#include "util/error.h"
#include "util/log.h"

#define CLOSE_TOKEN_EXPIRED 4001

static void schedule_timer(vg_session_t *s);

static uint64_t seconds_to_ms(double s)
{
    return (uint64_t)(s * 1000.0 + 0.5);
}

static uint64_t loop_now(const vg_session_t *s)
{
    return uv_now(&s->conn->worker->loop);
}

/* ---- before and right after the handshake ---- */

static int origin_allowed(const vg_app_t *app, const vg_http_request_t *req)
{
    if (app->allowed_origins.count == 0)
        return 1;
    vg_iov_t origin = vg_http_header_get(req, "Origin");
    for (size_t i = 0; origin.base != NULL && i < app->allowed_origins.count; i++)
        if (vg_iov_eq(origin, app->allowed_origins.items[i]))
            return 1;
    return 0;
}

/* A token from ?token=, ?ticket= or Authorization: Bearer, in that order. */
int vg__wsuser_authenticate(vg_session_t *s, vg_http_request_t *req, const char **reason)
{
    vg_app_t *app = s->app;
    double now = vg_wall_seconds();
    char value[8192];
    int n = vg_http_query_get(req, "token", value, sizeof(value));
    if (n > 0)
        return vg_auth_verify_token(app->auth, value, (size_t)n, now, &s->identity, reason);
    n = vg_http_query_get(req, "ticket", value, sizeof(value));
    if (n > 0)
        return vg_auth_ticket_redeem(app->auth, value, (size_t)n, now, &s->identity, reason);
    vg_iov_t bearer = vg_http_header_get(req, "Authorization");
    if (bearer.base != NULL && bearer.len > 7 && strncasecmp(bearer.base, "Bearer ", 7) == 0)
        return vg_auth_verify_token(app->auth, bearer.base + 7, bearer.len - 7, now, &s->identity,
                                    reason);
    if (vg_auth_allow_anonymous(app->auth)) {
        vg_identity_init_anonymous(&s->identity);
        return 0;
    }
    *reason = "missing token";
    return VG_EAUTH;
}

static const vg_endpoint_policy_t no_policy;

static const vg_endpoint_policy_t *policy(const vg_session_t *s)
{
    return s->endpoint != NULL && s->endpoint->policy != NULL ? s->endpoint->policy : &no_policy;
}

static double ping_interval(const vg_session_t *s)
{
    double v = policy(s)->ping_interval;
    return v > 0 ? v : s->app->cfg->ping_interval;
}

static double ping_timeout(const vg_session_t *s)
{
    double v = policy(s)->ping_timeout;
    return v > 0 ? v : s->app->cfg->ping_timeout;
}

static int on_preupgrade(vg_session_t *s, vg_http_request_t *req, const char **fail_reason)
{
    if (!origin_allowed(s->app, req)) {
        vg_notice("conn %" PRIu64 " from %s: refused: origin not allowed", s->conn->id,
                  s->conn->peer);
        vg_app_count_refusal(s->app, "origin not allowed");
        vg_session_respond_error(s, 403, "forbidden", "origin not allowed", NULL);
        return 403;
    }
    /* Seed 001's clients expect the handshake to succeed and the socket to close with 1008 and
     * a reason, rather than an HTTP error they cannot read from JavaScript. */
    if (policy(s)->anonymous)
        vg_identity_init_anonymous(&s->identity);
    else if (vg__wsuser_authenticate(s, req, fail_reason) != 0)
        return 0;
    s->authenticated = 1;
    return 0;
}

void vg__wsuser_registry_init(vg_session_t *s)
{
    vg_reg_entry_t *e = &s->reg;
    e->conn_id = s->conn->id;
    e->worker_id = s->conn->worker->id;
    snprintf(e->peer, sizeof(e->peer), "%s", s->conn->peer);
    e->endpoint = s->endpoint->path;
    e->connected_at_ms = vg_wall_ms();
    atomic_init(&e->last_heartbeat_ms, e->connected_at_ms);
    atomic_init(&e->messages_in, 0);
    atomic_init(&e->messages_out, 0);
    e->subscriptions = NULL;
    e->_subs_len = e->_subs_cap = 0;
}

static void refuse(vg_session_t *s, const char *reason)
{
    vg_app_count_refusal(s->app, reason);
    vg_notice("conn %" PRIu64 " from %s: WebSocket refused: %s", s->conn->id, s->conn->peer,
              reason);
    vg_session_ws_close(s, VG_WS_CLOSE_POLICY, reason);
}

int vg_session_user_limit(const vg_session_t *s)
{
    /* Every token-less client is "anonymous" (also on a profile without auth): a per-user limit
     * would be a global one. */
    if (s->identity.anonymous)
        return INT_MAX;
    int per_endpoint = policy(s)->max_per_user;
    return per_endpoint > 0 ? per_endpoint : s->app->cfg->max_connections_per_user;
}

/* Seed 003 keeps one connection per user: the newest wins and the others are told why. */
static void collect_same_endpoint(vg_reg_entry_t *e, void *arg)
{
    vg_session_t *s = arg;
    if (e != &s->reg && strcmp(e->endpoint, s->endpoint->path) == 0)
        vg_hub_disconnect(s->app->hub, NULL, e->conn_id, VG_WS_CLOSE_POLICY,
                          "replaced by a newer connection");
}

static void close_previous(vg_session_t *s)
{
    vg_registry_each(s->app->registry, s->identity.user, collect_same_endpoint, s);
}

static void on_open(vg_session_t *s, const char *fail_reason)
{
    vg_session_subscriber_init(s);
    if (fail_reason != NULL || !s->authenticated) {
        refuse(s, fail_reason ? fail_reason : "unauthorized");
        return;
    }
    const vg_endpoint_policy_t *p = policy(s);
    const char *why = "refused";
    if (p->admit != NULL && p->admit(s, &why) != 0) {
        refuse(s, why);
        return;
    }
    vg__wsuser_registry_init(s);
    int limit = vg_session_user_limit(s);
    if (p->replace_previous) {
        close_previous(s);
        limit = INT_MAX;
    }
    if (vg_registry_add(s->app->registry, &s->reg, s->identity.user, limit) != 0) {
        vg_notice("conn %" PRIu64 " from %s: user %s refused: too many connections (limit %d)",
                  s->conn->id, s->conn->peer, s->identity.user, limit);
        vg_app_count_refusal(s->app, "too many connections");
        vg_session_ws_close(s, VG_WS_CLOSE_POLICY, "too many connections");
        return;
    }
    s->registered = 1;
    s->last_ping = loop_now(s);
    vg_notice("conn %" PRIu64 " from %s: user %s connected on %s", s->conn->id, s->conn->peer,
              s->identity.user, s->endpoint->path);
    s->endpoint->on_open(s);
    schedule_timer(s);
}

/* ---- liveness, expiry, rate ---- */

static void on_seen(vg_session_t *s, size_t bytes)
{
    vg_hub_stats_t *st = vg_hub_stats(s->conn->worker);
    atomic_store_explicit(&st->bytes_in,
                          atomic_load_explicit(&st->bytes_in, memory_order_relaxed) + bytes,
                          memory_order_relaxed);
    s->last_seen = loop_now(s);
    if (s->registered)
        atomic_store_explicit(&s->reg.last_heartbeat_ms, vg_wall_ms(), memory_order_relaxed);
}

/* Loop-clock deadline at which the token expires (exp + leeway), or 0. */
static uint64_t expiry_deadline(const vg_session_t *s)
{
    if (s->identity.expires_at <= 0)
        return 0;
    double left = s->identity.expires_at + s->app->cfg->jwt_leeway - vg_wall_seconds();
    return loop_now(s) + (left > 0 ? seconds_to_ms(left) : 0);
}

static void schedule_timer(vg_session_t *s)
{
    if (!s->registered || s->ws == NULL || s->ws->state != VG_WS_OPEN)
        return;
    uint64_t now = loop_now(s);
    uint64_t next = s->last_ping + seconds_to_ms(ping_interval(s));
    uint64_t dead = s->last_seen + seconds_to_ms(ping_timeout(s));
    uint64_t exp = expiry_deadline(s);
    if (dead < next)
        next = dead;
    if (exp != 0 && exp < next)
        next = exp;
    vg_conn_timer_start(s->conn, next > now ? next - now : 0);
}

static void on_timer(vg_session_t *s)
{
    uint64_t now = loop_now(s);
    if (now - s->last_seen >= seconds_to_ms(ping_timeout(s))) {
        vg_notice("conn %" PRIu64 " from %s: user %s closed: heartbeat timeout", s->conn->id,
                  s->conn->peer, s->identity.user);
        vg_session_ws_close(s, VG_WS_CLOSE_GOING_AWAY, "heartbeat timeout");
        return;
    }
    uint64_t exp = expiry_deadline(s);
    if (exp != 0 && exp <= now) {
        vg_notice("conn %" PRIu64 " from %s: user %s closed: token expired", s->conn->id,
                  s->conn->peer, s->identity.user);
        vg_session_ws_close(s, CLOSE_TOKEN_EXPIRED, "token expired");
        return;
    }
    if (now - s->last_ping >= seconds_to_ms(ping_interval(s))) {
        const char *text = policy(s)->ping_text;
        vg_chunk_t *ping = text != NULL ? vg_ws_frame_new(VG_WS_OP_TEXT, text, strlen(text))
                                        : vg_ws_frame_new(VG_WS_OP_PING, NULL, 0);
        vg_conn_send_force(s->conn, ping);
        vg_chunk_unref(ping);
        s->last_ping = now;
    }
    schedule_timer(s);
}

/* The rate-limit error answers the request it refused, so it carries that request's id. */
static void send_rate_limited(vg_session_t *s, const uint8_t *data, size_t len)
{
    json_t *req = json_loadb((const char *)data, len, JSON_DECODE_ANY, NULL);
    json_t *msg = json_pack("{s:s, s:s, s:s}", "type", "error", "code", "rate_limited", "message",
                            "too many messages; slow down");
    json_t *id = json_is_object(req) ? json_object_get(req, "id") : NULL;
    if (id != NULL)
        json_object_set(msg, "id", id);
    char *text = json_dumps(msg, JSON_COMPACT);
    vg_session_ws_send_text(s, text, strlen(text));
    free(text);
    json_decref(msg);
    json_decref(req);
}

/* Messages take from the connection's --max-inbound-rate bucket (vg__session_rate_take, shared
 * with pings).  The first message refused in a second is answered with an error and every
 * refused one is dropped; a client still sending a whole rate's worth past it within one second
 * is closed. */
static int on_admit(vg_session_t *s, const uint8_t *data, size_t len)
{
    atomic_store_explicit(&s->reg.messages_in,
                          atomic_load_explicit(&s->reg.messages_in, memory_order_relaxed) + 1,
                          memory_order_relaxed);
    int r = vg__session_rate_take(s);
    if (r == VG_RATE_REFUSED_FIRST) {
        send_rate_limited(s, data, len);
    } else if (r == VG_RATE_EXCEEDED) {
        vg_notice("conn %" PRIu64 " from %s: user %s closed: rate limit exceeded", s->conn->id,
                  s->conn->peer, s->identity.user);
        vg_session_ws_close(s, VG_WS_CLOSE_POLICY, "rate limit exceeded");
    }
    return r == VG_RATE_OK;
}

int vg__wsuser_refresh(vg_session_t *s, const char *token, size_t len, const char **reason)
{
    vg_identity_t id;
    int rc = vg_auth_verify_token(s->app->auth, token, len, vg_wall_seconds(), &id, reason);
    if (rc != 0)
        return rc;
    if (strcmp(id.user, s->identity.user) != 0) {
        vg_identity_dispose(&id);
        *reason = "token is for another user";
        return VG_EAUTH;
    }
    vg_identity_dispose(&s->identity);
    s->identity = id;
    schedule_timer(s);
    return 0;
}

/* ---- acknowledged messages just replayed (replay.c notes them) ---- */

static void forget_replayed(vg_session_t *s)
{
    for (size_t i = 0; i < s->num_replayed; i++)
        vg_free(s->replayed[i]);
    vg_free(s->replayed);
    s->replayed = NULL;
    s->num_replayed = 0;
}

/* Nonzero (and forgets it) when this acknowledged-delivery message was just replayed, so its
 * live copy, published right around the subscribe, is not delivered twice. */
static int already_replayed(vg_session_t *s, const char *id)
{
    if (s->num_replayed == 0)
        return 0;
    if (uv_now(&s->conn->worker->loop) > s->replayed_until) {
        forget_replayed(s);
        return 0;
    }
    for (size_t i = 0; i < s->num_replayed; i++) {
        if (strcmp(s->replayed[i], id) == 0) {
            vg_free(s->replayed[i]);
            s->replayed[i] = s->replayed[--s->num_replayed];
            return 1;
        }
    }
    return 0;
}

/* ---- subscriptions and delivery ---- */

void vg_identity_allowed(const vg_app_t *app, const vg_identity_t *id, vg_patterns_t *view)
{
    if (id->has_channels) {
        view->items = id->channels;
        view->count = id->num_channels;
    } else {
        *view = app->default_channels;
    }
}

void vg_session_allowed(const vg_session_t *s, vg_patterns_t *view)
{
    view->items = NULL;
    view->count = 0;
    if (s->authenticated)
        vg_identity_allowed(s->app, &s->identity, view);
}

static void append_pattern(const char *pattern, size_t len, void *arg)
{
    json_array_append_new(arg, json_stringn(pattern, len));
}

/* A session with event-type filters and no channel subscription hears every channel it may
 * read, through the worker's list of such listeners. */
static void update_type_listener(vg_session_t *s)
{
    vg_worker_t *w = s->conn->worker;
    int listen = s->num_event_types > 0 && vg_subscriber_count(&s->subscriber) == 0;
    if (listen && !s->_tl_listed)
        vg_hub_type_listener_add(w, &s->subscriber);
    else if (!listen && s->_tl_listed)
        vg_hub_type_listener_remove(w, &s->subscriber);
    s->_tl_listed = listen;
}

void vg_session_subscriptions_changed(vg_session_t *s)
{
    update_type_listener(s);
    json_t *list = json_array();
    vg_subscriber_each(&s->subscriber, append_pattern, list);
    vg_registry_set_subscriptions(s->app->registry, &s->reg, json_dumps(list, JSON_COMPACT));
    json_decref(list);
}

void vg_session_subscriptions_added(vg_session_t *s, const char *const *patterns, size_t n)
{
    update_type_listener(s);
    vg_buf_t items = VG_BUF_INIT;
    for (size_t i = 0; i < n; i++) {
        vg_buf_append_str(&items, items.len > 0 ? ",\"" : "\"");
        vg_buf_append_json_escaped(&items, patterns[i], strlen(patterns[i]));
        vg_buf_append_str(&items, "\"");
    }
    vg_registry_append_subscriptions(s->app->registry, &s->reg, items.base, items.len);
    vg_buf_dispose(&items);
}

static int type_wanted(const vg_session_t *s, const char *type)
{
    for (size_t i = 0; i < s->num_event_types; i++)
        if (strcmp(s->event_types[i], type) == 0)
            return 1;
    return 0;
}

static void send_delivery(vg_session_t *s, vg_chunk_t *frame)
{
    vg_hub_stats_t *st = vg_hub_stats(s->conn->worker);
    if (vg_session_ws_send(s, frame) != 0) {
        atomic_store_explicit(&st->dropped,
                              atomic_load_explicit(&st->dropped, memory_order_relaxed) + 1,
                              memory_order_relaxed);
        return;
    }
    atomic_store_explicit(&st->delivered,
                          atomic_load_explicit(&st->delivered, memory_order_relaxed) + 1,
                          memory_order_relaxed);
    atomic_store_explicit(&st->bytes_out,
                          atomic_load_explicit(&st->bytes_out, memory_order_relaxed) + frame->len,
                          memory_order_relaxed);
    atomic_store_explicit(&s->reg.messages_out,
                          atomic_load_explicit(&s->reg.messages_out, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}

/* A profile's socket gets the message in its own wire format (rendered once per worker). */
static void send_rendered(vg_session_t *s, const char *channel, size_t channel_len,
                          const char *type, uint64_t offset, vg_chunk_t *frame)
{
    vg_delivery_t d = {channel, channel_len, type, offset, frame};
    vg_chunk_t *rendered = vg_hub_render(s->conn->worker, s->endpoint->format, &d);
    if (rendered == NULL)
        return;
    send_delivery(s, rendered);
    vg_chunk_unref(rendered);
}

void vg_session_deliver(vg_session_t *s, const char *channel, size_t channel_len, const char *type,
                        uint64_t offset, vg_chunk_t *frame)
{
    if (s->num_event_types > 0 && !type_wanted(s, type))
        return;
    if (s->sse || s->poll != NULL)
        s->endpoint->deliver(s, channel, channel_len, offset, frame);
    else if (s->endpoint != NULL && s->endpoint->format != NULL)
        send_rendered(s, channel, channel_len, type, offset, frame);
    else
        send_delivery(s, frame);
}

static void deliver_by_type(vg_session_t *s, const char *channel, size_t channel_len,
                            const char *type, uint64_t offset, vg_chunk_t *frame)
{
    vg_patterns_t allowed;
    vg_session_allowed(s, &allowed);
    if (!type_wanted(s, type) || !vg_patterns_match(&allowed, channel, channel_len))
        return;
    vg_session_deliver(s, channel, channel_len, type, offset, frame);
}

/* vg_subscriber_t.deliver of every session: the hub's message, through the session's filters. */
static void on_hub_delivery(vg_subscriber_t *sub, const void *delivery)
{
    const vg_delivery_t *d = delivery;
    vg_session_t *s = sub->data;
    if (d->by_type) {
        deliver_by_type(s, d->channel, d->channel_len, d->type, d->offset, d->frame);
        return;
    }
    if (d->id != NULL && already_replayed(s, d->id))
        return;
    vg_session_deliver(s, d->channel, d->channel_len, d->type, d->offset, d->frame);
}

void vg_session_subscriber_init(vg_session_t *s)
{
    vg_subscriber_init(&s->subscriber, s);
    s->subscriber.deliver = on_hub_delivery;
}

/* vg_hub_command_cb: broadcasts and kicks reach the open WebSockets they name. */
void vg_session_on_hub_command(vg_conn_t *c, const vg_hub_command_t *cmd)
{
    vg_session_t *s = c->data;
    if (s == NULL || !vg_session_is_ws_open(s))
        return;
    if (cmd->disconnect && cmd->user == NULL && c->id != cmd->conn_id)
        return;
    if (cmd->user != NULL && strcmp(s->identity.user, cmd->user) != 0)
        return;
    if (cmd->native_only && (c->id == cmd->conn_id || s->endpoint->format != NULL))
        return;
    if (cmd->disconnect)
        vg_session_ws_close(s, cmd->code, cmd->reason);
    else
        vg_session_ws_send(s, cmd->frame);
}

int vg_session_is_ws_open(const vg_session_t *s)
{
    return s->ws != NULL && s->ws->state == VG_WS_OPEN && s->registered;
}

void vg__wsuser_cleanup(vg_session_t *s)
{
    vg_worker_t *w = s->conn->worker;
    if (w->data != NULL)
        vg_subs_remove_all(vg_hub_subs(w), &s->subscriber);
    if (s->_tl_listed && w->data != NULL)
        vg_hub_type_listener_remove(w, &s->subscriber);
    if (s->registered) {
        vg_registry_remove(s->app->registry, &s->reg);
        vg_verbose("conn %" PRIu64 " from %s: user %s disconnected", s->conn->id, s->conn->peer,
                   s->identity.user);
    }
    forget_replayed(s);
    for (size_t i = 0; i < s->num_event_types; i++)
        vg_free(s->event_types[i]);
    vg_free(s->event_types);
    if (s->authenticated)
        vg_identity_dispose(&s->identity);
}

void vg_notify_acked(vg_app_t *app, const char *user, const char *msg_id, uint64_t except_id)
{
    json_t *msg = json_pack("{s:s, s:s}", "type", "acked", "id", msg_id);
    char *text = json_dumps(msg, JSON_COMPACT);
    json_decref(msg);
    if (text == NULL)
        return;
    vg_chunk_t *frame = vg_ws_frame_new(VG_WS_OP_TEXT, text, strlen(text));
    free(text);
    vg_hub_notify_user(app->hub, user, except_id, frame);
    vg_chunk_unref(frame);
}

const vg_wsuser_ops_t vg__wsuser_ops = {
    .preupgrade = on_preupgrade,
    .open = on_open,
    .seen = on_seen,
    .admit = on_admit,
    .timer = on_timer,
    .cleanup = vg__wsuser_cleanup,
};
