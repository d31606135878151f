/*
 * /ws: vigil's native protocol (docs/PROTOCOL.md).  JSON text frames: the connection_status
 * welcome, ping/pong in both spellings the seed clients use (the text "ping" and
 * {"type":"ping"}), subscribe/unsubscribe by channels and event types, and refresh.  Malformed or
 * unknown requests get an error and the connection stays open.
 */
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <time.h>
#include <string.h>

#include "core/acks.h"
#include "transport/internal.h"
#include "proto/channel.h"
#include "core/hub.h"
#include "transport/rpc.h"
#include "core/state.h"
#include "util/alloc.h"
#include "util/buf.h"
#include "util/clock.h"

#define MAX_ITEMS_PER_REQUEST 256

static const char *const native_subprotocols[] = {"vigil.v1", NULL};

static void send_json(vg_session_t *s, json_t *msg)
{
    char *text = json_dumps(msg, JSON_COMPACT);
    if (text != NULL) {
        vg_session_ws_send_text(s, text, strlen(text));
        free(text);
    }
    json_decref(msg);
}

static json_t *now_json(void)
{
    char ts[32];
    vg_format_rfc3339(vg_wall_ms(), ts);
    return json_string(ts);
}

/* {"type":"error","code":...,"message":...,"id":<the request's id, if it had one>} */
static void send_error(vg_session_t *s, const char *code, const char *message, json_t *id)
{
    json_t *msg = json_pack("{s:s, s:s, s:s}", "type", "error", "code", code, "message", message);
    if (id != NULL)
        json_object_set(msg, "id", id);
    send_json(s, msg);
}

static void on_open(vg_session_t *s)
{
    char id[32];
    snprintf(id, sizeof(id), "%016" PRIx64, s->conn->id);
    send_json(s,
              json_pack("{s:s, s:s, s:s, s:{s:s, s:s}, s:s, s:o}", "type", "connection_status",
                        "status", "connected", "connection_id", id, "user", "id", s->identity.user,
                        "username", s->identity.user, "message",
                        "WebSocket connection established successfully", "timestamp", now_json()));
}

/* Reads an optional array of strings; NULL when absent.  Sets *bad on a wrong shape. */
static json_t *string_array(json_t *req, const char *field, const char **bad)
{
    json_t *a = json_object_get(req, field);
    if (a == NULL || json_is_null(a))
        return NULL;
    if (!json_is_array(a) || json_array_size(a) > MAX_ITEMS_PER_REQUEST) {
        *bad = field;
        return NULL;
    }
    size_t i;
    json_t *v;
    json_array_foreach(a, i, v)
    {
        if (!json_is_string(v)) {
            *bad = field;
            return NULL;
        }
    }
    return a;
}

/* Every requested channel must be valid and allowed before anything is subscribed. */
static int check_channels(vg_session_t *s, json_t *channels, json_t *id)
{
    vg_patterns_t allowed;
    vg_session_allowed(s, &allowed);
    size_t i;
    json_t *v;
    json_array_foreach(channels, i, v)
    {
        const char *name = json_string_value(v);
        size_t len = json_string_length(v);
        char message[300];
        const char *why = vg_channel_check_pattern(name, len);
        if (why != NULL) {
            snprintf(message, sizeof(message), "invalid channel \"%.200s\": %s", name, why);
            send_error(s, "invalid_channel", message, id);
            return -1;
        }
        if (!vg_patterns_covers(&allowed, name, len)) {
            snprintf(message, sizeof(message), "not allowed to subscribe to \"%.200s\"", name);
            send_error(s, "forbidden", message, id);
            return -1;
        }
    }
    return 0;
}

static void add_event_types(vg_session_t *s, json_t *types)
{
    size_t i;
    json_t *v;
    json_array_foreach(types, i, v)
    {
        const char *t = json_string_value(v);
        int have = 0;
        for (size_t k = 0; k < s->num_event_types && !have; k++)
            have = strcmp(s->event_types[k], t) == 0;
        if (have || s->num_event_types >= MAX_ITEMS_PER_REQUEST)
            continue;
        s->event_types = vg_realloc(s->event_types, (s->num_event_types + 1) * sizeof(char *));
        s->event_types[s->num_event_types++] = vg_strdup(t);
    }
}

static void remove_event_types(vg_session_t *s, json_t *types)
{
    size_t i;
    json_t *v;
    json_array_foreach(types, i, v)
    {
        for (size_t k = 0; k < s->num_event_types; k++) {
            if (strcmp(s->event_types[k], json_string_value(v)) == 0) {
                vg_free(s->event_types[k]);
                s->event_types[k] = s->event_types[--s->num_event_types];
                break;
            }
        }
    }
}

static void answer_subscription(vg_session_t *s, const char *type, json_t *channels, json_t *types,
                                json_t *id)
{
    json_t *msg = json_pack("{s:s}", "type", type);
    json_object_set_new(msg, "channels", channels ? json_incref(channels) : json_array());
    json_object_set_new(msg, "event_types", types ? json_incref(types) : json_array());
    if (id != NULL)
        json_object_set(msg, "id", id);
    send_json(s, msg);
}

typedef struct sub_op_s {
    vg_session_t *s;
    json_t *channels;
    json_t *types;
    int subscribe;
} sub_op_t;

/* Adds or removes the subscriptions (called by the hub at the right moment for recovery). */
static void apply_subscription(void *arg)
{
    sub_op_t *op = arg;
    vg_subs_t *index = vg_hub_subs(op->s->conn->worker);
    size_t i;
    json_t *v;
    json_array_foreach(op->channels, i, v)
    {
        if (op->subscribe)
            vg_subs_add(index, &op->s->subscriber, json_string_value(v), json_string_length(v));
        else
            vg_subs_remove(index, &op->s->subscriber, json_string_value(v), json_string_length(v));
    }
    if (op->types != NULL)
        (op->subscribe ? add_event_types : remove_event_types)(op->s, op->types);
}

/* {"offset":N,"epoch":"E"} -> r; returns -1 when malformed. */
static int parse_since(json_t *since, vg_recovery_t *r)
{
    json_t *off = json_object_get(since, "offset"), *epoch = json_object_get(since, "epoch");
    if (!json_is_object(since) || !json_is_integer(off) || json_integer_value(off) < 0 ||
        (epoch != NULL && !json_is_string(epoch)))
        return -1;
    r->has_since = 1;
    r->since_offset = (uint64_t)json_integer_value(off);
    r->since_epoch = json_string_value(epoch);
    return 0;
}

static int covered_by_request(json_t *channels, const char *name, size_t len)
{
    size_t i;
    json_t *v;
    json_array_foreach(channels, i, v)
    {
        if (vg_channel_match(json_string_value(v), json_string_length(v), name, len))
            return 1;
    }
    return 0;
}

/* The positions to report and recover: every exact channel of the request, with the single
 * form of "since" ({"offset","epoch"}) applied to each; with the map form
 * ({"<channel>": {"offset","epoch"}, ...}) each listed channel that the request covers.  Returns
 * the count, or -1 (error sent). */
static int collect_recoveries(vg_session_t *s, json_t *channels, json_t *since, json_t *id,
                              vg_recovery_t *rec, size_t cap)
{
    size_t n = 0, i;
    json_t *v;
    int single = since != NULL && json_object_get(since, "offset") != NULL;
    json_array_foreach(channels, i, v)
    {
        const char *name = json_string_value(v);
        if (vg_channel_is_pattern(name, json_string_length(v)) || n == cap)
            continue;
        memset(&rec[n], 0, sizeof(rec[n]));
        rec[n].channel = name;
        if (single && parse_since(since, &rec[n]) != 0)
            goto bad;
        n++;
    }
    if (since == NULL || single)
        return (int)n;
    if (!json_is_object(since))
        goto bad;
    const char *key;
    json_object_foreach(since, key, v)
    {
        size_t len = strlen(key);
        if (vg_channel_check_name(key, len) != NULL || !covered_by_request(channels, key, len))
            goto bad;
        size_t k = 0;
        while (k < n && strcmp(rec[k].channel, key) != 0)
            k++;
        if (k == n) {
            if (n == cap)
                goto bad;
            memset(&rec[n], 0, sizeof(rec[n]));
            rec[n++].channel = key;
        }
        if (parse_since(v, &rec[k]) != 0)
            goto bad;
    }
    return (int)n;
bad:
    send_error(s, "bad_request",
               "\"since\" must be {\"offset\":N,\"epoch\":\"E\"} or a map from channels of "
               "this request to such objects",
               id);
    return -1;
}

/* "since_time": the time (ms since the epoch, or an RFC 3339 timestamp such as a received
 * message's) after which the patterns of the request replay every matching channel not given a
 * position in "since", e.g. channels that first appeared while the client was away.  Returns 1
 * with *tr filled, 0 when absent, -1 after an error answer. */
static int parse_since_time(vg_session_t *s, json_t *req, json_t *channels, json_t *id,
                            vg_time_recovery_t *tr, const char **patterns)
{
    json_t *t = json_object_get(req, "since_time");
    if (t == NULL)
        return 0;
    int64_t ms = -1;
    if (json_is_integer(t))
        ms = json_integer_value(t);
    else if (!json_is_string(t) || vg_parse_time_ms(json_string_value(t), &ms) != 0)
        ms = -1;
    if (ms < 0) {
        send_error(s, "bad_request",
                   "\"since_time\" must be milliseconds since 1970 or an RFC 3339 UTC timestamp",
                   id);
        return -1;
    }
    size_t n = 0, i;
    json_t *v;
    json_array_foreach(channels, i, v)
    {
        if (vg_channel_is_pattern(json_string_value(v), json_string_length(v)))
            patterns[n++] = json_string_value(v);
    }
    tr->patterns = patterns;
    tr->num_patterns = n;
    tr->since_ms = ms;
    return n > 0;
}

static json_t *positions_json(const vg_recovery_t *rec, size_t n, int *all_recovered)
{
    json_t *pos = json_object();
    *all_recovered = 1;
    for (size_t i = 0; i < n; i++) {
        json_t *p =
            json_pack("{s:I, s:s}", "offset", (json_int_t)rec[i].offset, "epoch", rec[i].epoch);
        if (rec[i].has_since) {
            json_object_set_new(p, "recovered", json_boolean(rec[i].recovered));
            *all_recovered &= rec[i].recovered;
        }
        json_object_set_new(pos, rec[i].channel, p);
    }
    return pos;
}

/* A subscriber of "state.<name>" starts from the whole document; deltas follow.  Taken after
 * the subscription exists, so any delta it may also receive is not newer than the snapshot or
 * is applied on top of it (clients ignore deltas whose version is not newer). */
static void send_state_snapshots(vg_session_t *s, json_t *channels)
{
    size_t i;
    json_t *v;
    json_array_foreach(channels, i, v)
    {
        const char *name = json_string_value(v);
        if (strncmp(name, "state.", 6) != 0 || vg_channel_is_pattern(name, json_string_length(v)))
            continue;
        vg_chunk_t *frame = vg_state_snapshot_frame(s->app->state, name + 6);
        if (frame != NULL) {
            vg_session_ws_send(s, frame);
            vg_chunk_unref(frame);
        }
    }
}

static void handle_subscribe(vg_session_t *s, json_t *req, json_t *id, int subscribe)
{
    const char *bad = NULL;
    json_t *channels = string_array(req, "channels", &bad);
    json_t *types = string_array(req, "event_types", &bad);
    json_t *since = json_object_get(req, "since");
    if (bad != NULL) {
        char message[128];
        snprintf(message, sizeof(message), "\"%s\" must be an array of at most %d strings", bad,
                 MAX_ITEMS_PER_REQUEST);
        send_error(s, "bad_request", message, id);
        return;
    }
    if (channels == NULL && types == NULL) {
        send_error(s, "bad_request", "give \"channels\" and/or \"event_types\"", id);
        return;
    }
    if (subscribe && channels != NULL && check_channels(s, channels, id) != 0)
        return;
    sub_op_t op = {s, channels, types, subscribe};
    if (!subscribe || channels == NULL) {
        apply_subscription(&op);
        vg_session_subscriptions_changed(s);
        answer_subscription(s, subscribe ? "subscribed" : "unsubscribed", channels, types, id);
        return;
    }
    vg_recovery_t rec[MAX_ITEMS_PER_REQUEST];
    int n = collect_recoveries(s, channels, since, id, rec, MAX_ITEMS_PER_REQUEST);
    if (n < 0)
        return;
    vg_time_recovery_t tr;
    const char *pattern_list[MAX_ITEMS_PER_REQUEST];
    int has_time = parse_since_time(s, req, channels, id, &tr, pattern_list);
    if (has_time < 0)
        return;
    vg_missed_t missed;
    vg_hub_subscribe_atomically_ex(s->conn->worker, apply_subscription, &op, rec, (size_t)n,
                                   has_time ? &tr : NULL, &missed);
    vg_session_subscriptions_changed(s);
    int all_recovered;
    json_t *msg = json_pack("{s:s}", "type", "subscribed");
    json_object_set_new(msg, "channels", json_incref(channels));
    json_object_set_new(msg, "event_types", types ? json_incref(types) : json_array());
    json_object_set_new(msg, "positions", positions_json(rec, (size_t)n, &all_recovered));
    if (since != NULL)
        json_object_set_new(msg, "recovered", json_boolean(all_recovered));
    if (n == 1) {
        json_object_set_new(msg, "offset", json_integer((json_int_t)rec[0].offset));
        json_object_set_new(msg, "epoch", json_string(rec[0].epoch));
    }
    if (id != NULL)
        json_object_set(msg, "id", id);
    send_json(s, msg);
    /* What was missed goes before anything live: live messages arrive on later wake-ups. */
    for (size_t i = 0; i < missed.count; i++)
        vg_session_deliver(s, missed.channels[i], strlen(missed.channels[i]), missed.types[i],
                           missed.offsets[i], missed.frames[i]);
    vg_missed_dispose(&missed);
    send_state_snapshots(s, channels);
    const char *patterns[MAX_ITEMS_PER_REQUEST];
    size_t np = 0;
    size_t k;
    json_t *c;
    json_array_foreach(channels, k, c)
    {
        patterns[np++] = json_string_value(c);
    }
    vg_acks_replay(s, patterns, np);
}

static void handle_refresh(vg_session_t *s, json_t *req, json_t *id)
{
    json_t *token = json_object_get(req, "token");
    const char *reason = "\"token\" must be a string";
    if (!json_is_string(token) ||
        vg__wsuser_refresh(s, json_string_value(token), json_string_length(token), &reason) != 0) {
        send_error(s, "unauthorized", reason, id);
        return;
    }
    json_t *msg = json_pack("{s:s}", "type", "refreshed");
    if (s->identity.expires_at > 0) {
        char ts[32];
        vg_format_rfc3339((int64_t)(s->identity.expires_at * 1000), ts);
        json_object_set_new(msg, "expires_at", json_string(ts));
    }
    if (id != NULL)
        json_object_set(msg, "id", id);
    send_json(s, msg);
}

/* {"type":"ack","id":"<message id>"}: the user is done with that message, everywhere. */
static void handle_ack(vg_session_t *s, json_t *req, json_t *id)
{
    const char *msg_id = json_string_value(json_object_get(req, "message_id"));
    if (msg_id == NULL && json_is_string(id))
        msg_id = json_string_value(id); /* seed 003 sends the message's id as "id" */
    if (msg_id == NULL) {
        send_error(s, "bad_request", "ack needs the message's \"id\"", id);
        return;
    }
    if (vg_acks_ack(&s->app->acks, s->identity.user, msg_id) != 0) {
        send_error(s, "store_failed", "the ack could not be stored", id);
        return;
    }
    send_json(s, json_pack("{s:s, s:s}", "type", "acked", "id", msg_id));
    vg_notify_acked(s->app, s->identity.user, msg_id, s->conn->id);
}

/* {"type":"rpc","id":N,"method":M,"params":P}: forwarded to --rpc-url (transport/rpc.h); answered
 * {"type":"rpc_result","id":N,"result":R} or an error with the same id.  The connection may be
 * gone when the backend answers: the pending call holds the connection id, not the session. */
typedef struct pending_rpc_s {
    vg_worker_t *worker;
    uint64_t conn_id;
    json_t *id;
} pending_rpc_t;

static vg_session_t *find_session(vg_worker_t *w, uint64_t conn_id)
{
    for (vg_conn_t *c = w->conns; c != NULL; c = c->_next)
        if (c->id == conn_id)
            return c->data;
    return NULL;
}

static void rpc_answered(void *arg, int status, json_t *result, const char *error)
{
    (void)status;
    pending_rpc_t *p = arg;
    vg_session_t *s = find_session(p->worker, p->conn_id);
    if (s != NULL && vg_session_is_ws_open(s)) {
        if (error != NULL)
            send_error(s, "rpc_failed", error, p->id);
        else
            send_json(s, json_pack("{s:s, s:O, s:O}", "type", "rpc_result", "id", p->id, "result",
                                   result));
    }
    json_decref(p->id);
    vg_free(p);
}

static void handle_rpc(vg_session_t *s, json_t *req, json_t *id)
{
    json_t *method = json_object_get(req, "method");
    if (id == NULL || !json_is_string(method) || json_string_length(method) == 0 ||
        json_string_length(method) > 128) {
        send_error(s, "bad_request", "rpc needs an \"id\" and a \"method\" string (1-128 bytes)",
                   id);
        return;
    }
    pending_rpc_t *p = vg_malloc(sizeof(*p));
    p->worker = s->conn->worker;
    p->conn_id = s->conn->id;
    p->id = json_incref(id);
    vg_rpc_call(s->app, s->conn->worker, s->identity.user, json_string_value(method),
                json_object_get(req, "params"), rpc_answered, p);
}

static void handle_request(vg_session_t *s, json_t *req)
{
    json_t *id = json_object_get(req, "id");
    const char *type = json_string_value(json_object_get(req, "type"));
    if (type == NULL) {
        send_error(s, "bad_request", "a request needs a string field \"type\"", id);
    } else if (strcmp(type, "ping") == 0) {
        json_t *pong = json_pack("{s:s, s:o}", "type", "pong", "timestamp", now_json());
        if (id != NULL)
            json_object_set(pong, "id", id);
        send_json(s, pong);
    } else if (strcmp(type, "subscribe") == 0 || strcmp(type, "unsubscribe") == 0) {
        handle_subscribe(s, req, id, type[0] == 's');
    } else if (strcmp(type, "refresh") == 0) {
        handle_refresh(s, req, id);
    } else if (strcmp(type, "ack") == 0) {
        handle_ack(s, req, id);
    } else if (strcmp(type, "rpc") == 0) {
        handle_rpc(s, req, id);
    } else {
        char message[160];
        snprintf(message, sizeof(message), "unknown request type \"%.100s\"", type);
        send_error(s, "unknown_type", message, id);
    }
}

static void on_message(vg_session_t *s, int opcode, uint8_t *data, size_t len)
{
    if (opcode != VG_WS_OP_TEXT) {
        send_error(s, "bad_request", "requests are JSON text messages", NULL);
        return;
    }
    if (len == 4 && memcmp(data, "ping", 4) == 0) {
        vg_session_ws_send_text(s, "pong", 4);
        return;
    }
    json_error_t err;
    json_t *req =
        json_loadb((const char *)data, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &err);
    if (req == NULL || !json_is_object(req)) {
        char message[200];
        if (req == NULL)
            snprintf(message, sizeof(message), "malformed JSON: %s", err.text);
        else
            snprintf(message, sizeof(message), "a request must be a JSON object");
        send_error(s, req == NULL ? "bad_json" : "bad_request", message, NULL);
    } else {
        handle_request(s, req);
    }
    json_decref(req);
}

const vg_ws_endpoint_t vg_native_endpoint = {
    .path = "/ws",
    .authenticate = 1,
    .subprotocols = native_subprotocols,
    .on_open = on_open,
    .on_message = on_message,
    .on_close = NULL,
};
