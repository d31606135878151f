/*
 * /ws: vigil's native protocol (docs/PROTOCOL.md).  JSON text frames: the connection_status
 * welcome, ping/pong in both spellings the seed clients use (the text "ping" and
 * {"type":"ping"}), subscribe/unsubscribe by channels and event types, refresh, ack and rpc.
 * Malformed or unknown requests get an error and the connection stays open.
 *
 * Two halves: vg_native_parse reads and checks a request without a connection (native.h; the
 * fuzz harness drives it), and the handlers below act on what it accepted.
 */
#include "transport/native.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/acks.h"
#include "transport/internal.h"
#include "proto/channel.h"
#include "transport/rpc.h"
#include "core/state.h"
#include "proto/utf8.h"
#include "util/alloc.h"
#include "util/buf.h"
#include "util/clock.h"
#include "util/error.h"
#include "util/log.h"

/* How much of a client's name or type an error message quotes. */
#define QUOTE_MAX 200

static const char *const native_subprotocols[] = {"vigil.v1", NULL};

/* ---- parsing and checking a request (no connection) ---- */

/* Refuses the request (returns -1).  The message is cut back to its longest valid UTF-8 prefix:
 * snprintf may have cut a character at the end of the buffer, and jansson's error texts quote the
 * input. */
static int __attribute__((format(printf, 3, 4)))
refuse(vg_native_req_t *r, const char *code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->err_message, sizeof(r->err_message), fmt, ap);
    va_end(ap);
    r->err_message[vg_utf8_prefix(r->err_message, sizeof(r->err_message) - 1)] = '\0';
    r->err_code = code;
    r->kind = VG_NATIVE_INVALID;
    return -1;
}

/* How many bytes of `s` to quote: at most QUOTE_MAX, ending on a character boundary. */
static int quote_len(const char *s)
{
    return (int)vg_utf8_prefix(s, QUOTE_MAX);
}

/* Reads an optional array of strings; NULL when absent.  Sets *bad on a wrong shape. */
static json_t *string_array(json_t *req, const char *field, const char **bad)
{
    json_t *a = json_object_get(req, field);
    if (a == NULL || json_is_null(a))
        return NULL;
    if (!json_is_array(a) || json_array_size(a) > VG_NATIVE_MAX_ITEMS) {
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
static int check_channels(vg_native_req_t *r, const vg_patterns_t *allowed)
{
    size_t i;
    json_t *v;
    json_array_foreach(r->channels, i, v)
    {
        const char *name = json_string_value(v);
        size_t len = json_string_length(v);
        const char *why = vg_channel_check_pattern(name, len);
        if (why != NULL)
            return refuse(r, "invalid_channel", "invalid channel \"%.*s\": %s", quote_len(name),
                          name, why);
        if (!vg_patterns_covers(allowed, name, len))
            return refuse(r, "forbidden", "not allowed to subscribe to \"%.*s\"", quote_len(name),
                          name);
    }
    return 0;
}

/* {"offset":N,"epoch":"E"} -> rec; returns -1 when malformed. */
static int parse_since(json_t *since, vg_recovery_t *rec)
{
    json_t *off = json_object_get(since, "offset"), *epoch = json_object_get(since, "epoch");
    if (!json_is_object(since) || !json_is_integer(off) || json_integer_value(off) < 0 ||
        (epoch != NULL && !json_is_string(epoch)))
        return -1;
    rec->has_since = 1;
    rec->since_offset = (uint64_t)json_integer_value(off);
    rec->since_epoch = json_string_value(epoch);
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
 * ({"<channel>": {"offset","epoch"}, ...}) each listed channel that the request covers. */
static int collect_recoveries(vg_native_req_t *r)
{
    vg_recovery_t *rec = r->rec;
    size_t n = 0, i;
    json_t *v, *since = r->since;
    int single = since != NULL && json_object_get(since, "offset") != NULL;
    json_array_foreach(r->channels, i, v)
    {
        const char *name = json_string_value(v);
        if (vg_channel_is_pattern(name, json_string_length(v)) || n == VG_NATIVE_MAX_ITEMS)
            continue;
        memset(&rec[n], 0, sizeof(rec[n]));
        rec[n].channel = name;
        if (single && parse_since(since, &rec[n]) != 0)
            goto bad;
        n++;
    }
    r->num_rec = n;
    if (since == NULL || single)
        return 0;
    if (!json_is_object(since))
        goto bad;
    const char *key;
    json_object_foreach(since, key, v)
    {
        size_t len = strlen(key);
        if (vg_channel_check_name(key, len) != NULL || !covered_by_request(r->channels, key, len))
            goto bad;
        size_t k = 0;
        while (k < n && strcmp(rec[k].channel, key) != 0)
            k++;
        if (k == n) {
            if (n == VG_NATIVE_MAX_ITEMS)
                goto bad;
            memset(&rec[n], 0, sizeof(rec[n]));
            rec[n++].channel = key;
        }
        if (parse_since(v, &rec[k]) != 0)
            goto bad;
    }
    r->num_rec = n;
    return 0;
bad:
    r->num_rec = 0;
    return refuse(r, "bad_request",
                  "\"since\" must be {\"offset\":N,\"epoch\":\"E\"} or a map from channels of "
                  "this request to such objects");
}

/* "since_time": the time (ms since the epoch, or an RFC 3339 timestamp such as a received
 * message's) after which the patterns of the request replay every matching channel not given a
 * position in "since", e.g. channels that first appeared while the client was away. */
static int parse_since_time(vg_native_req_t *r)
{
    json_t *t = json_object_get(r->root, "since_time");
    if (t == NULL)
        return 0;
    int64_t ms = -1;
    if (json_is_integer(t))
        ms = json_integer_value(t);
    else if (!json_is_string(t) || vg_parse_time_ms(json_string_value(t), &ms) != 0)
        ms = -1;
    if (ms < 0)
        return refuse(
            r, "bad_request",
            "\"since_time\" must be milliseconds since 1970 or an RFC 3339 UTC timestamp");
    size_t n = 0, i;
    json_t *v;
    json_array_foreach(r->channels, i, v)
    {
        if (vg_channel_is_pattern(json_string_value(v), json_string_length(v)))
            r->time_patterns[n++] = json_string_value(v);
    }
    r->tr.patterns = r->time_patterns;
    r->tr.num_patterns = n;
    r->tr.since_ms = ms;
    r->has_time = n > 0;
    return 0;
}

static int parse_subscribe(vg_native_req_t *r, int subscribe, const vg_patterns_t *allowed)
{
    const char *bad = NULL;
    r->kind = subscribe ? VG_NATIVE_SUBSCRIBE : VG_NATIVE_UNSUBSCRIBE;
    r->channels = string_array(r->root, "channels", &bad);
    r->event_types = string_array(r->root, "event_types", &bad);
    r->since = json_object_get(r->root, "since");
    if (bad != NULL)
        return refuse(r, "bad_request", "\"%s\" must be an array of at most %d strings", bad,
                      VG_NATIVE_MAX_ITEMS);
    if (r->channels == NULL && r->event_types == NULL)
        return refuse(r, "bad_request", "give \"channels\" and/or \"event_types\"");
    if (!subscribe || r->channels == NULL)
        return 0;
    if (check_channels(r, allowed) != 0 || collect_recoveries(r) != 0 || parse_since_time(r) != 0)
        return -1;
    return 0;
}

static int parse_refresh(vg_native_req_t *r)
{
    json_t *token = json_object_get(r->root, "token");
    if (!json_is_string(token))
        return refuse(r, "unauthorized", "\"token\" must be a string");
    r->token = json_string_value(token);
    r->token_len = json_string_length(token);
    r->kind = VG_NATIVE_REFRESH;
    return 0;
}

/* {"type":"ack","message_id":"<message id>"}, or seed 003's {"type":"ack","id":"<message id>"}. */
static int parse_ack(vg_native_req_t *r)
{
    r->message_id = json_string_value(json_object_get(r->root, "message_id"));
    if (r->message_id == NULL && json_is_string(r->id))
        r->message_id = json_string_value(r->id);
    if (r->message_id == NULL)
        return refuse(r, "bad_request", "ack needs the message's \"id\"");
    r->kind = VG_NATIVE_ACK;
    return 0;
}

static int parse_rpc(vg_native_req_t *r)
{
    json_t *method = json_object_get(r->root, "method");
    if (r->id == NULL || !json_is_string(method) || json_string_length(method) == 0 ||
        json_string_length(method) > 128)
        return refuse(r, "bad_request",
                      "rpc needs an \"id\" and a \"method\" string (1-128 bytes)");
    r->method = json_string_value(method);
    r->params = json_object_get(r->root, "params");
    r->kind = VG_NATIVE_RPC;
    return 0;
}

/* Returns 0 with r->kind set, or -1 when refused (r->kind is VG_NATIVE_INVALID). */
static int parse(vg_native_req_t *r, const char *data, size_t len, const vg_patterns_t *allowed)
{
    json_error_t err;
    r->root = json_loadb(data, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &err);
    if (r->root == NULL)
        return refuse(r, "bad_json", "malformed JSON: %s", err.text);
    if (!json_is_object(r->root))
        return refuse(r, "bad_request", "a request must be a JSON object");
    r->id = json_object_get(r->root, "id");
    const char *type = json_string_value(json_object_get(r->root, "type"));
    if (type == NULL)
        return refuse(r, "bad_request", "a request needs a string field \"type\"");
    if (strcmp(type, "ping") == 0) {
        r->kind = VG_NATIVE_PING;
        return 0;
    }
    if (strcmp(type, "subscribe") == 0 || strcmp(type, "unsubscribe") == 0)
        return parse_subscribe(r, type[0] == 's', allowed);
    if (strcmp(type, "refresh") == 0)
        return parse_refresh(r);
    if (strcmp(type, "ack") == 0)
        return parse_ack(r);
    if (strcmp(type, "rpc") == 0)
        return parse_rpc(r);
    return refuse(r, "unknown_type", "unknown request type \"%.*s\"", quote_len(type), type);
}

int vg_native_parse(vg_native_req_t *r, const char *data, size_t len, const vg_patterns_t *allowed)
{
    /* Not a memset: the recovery arrays are large and filled only as far as num_rec says. */
    r->kind = VG_NATIVE_INVALID;
    r->root = r->id = r->channels = r->event_types = r->since = r->params = NULL;
    r->err_code = NULL;
    r->err_message[0] = '\0';
    r->num_rec = 0;
    r->has_time = 0;
    r->token = r->message_id = r->method = NULL;
    r->token_len = 0;
    if (len == 4 && memcmp(data, "ping", 4) == 0)
        r->kind = VG_NATIVE_TEXT_PING;
    else
        parse(r, data, len, allowed);
    return r->kind;
}

void vg_native_req_dispose(vg_native_req_t *r)
{
    json_decref(r->root);
    r->root = NULL;
}

/* ---- answers ---- */

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

/* {"type":"error","code":...,"message":...,"id":<the request's id, if it had one>}.  The
 * message is cut to valid UTF-8 here too: an invalid one would make json_pack fail and leave the
 * request unanswered. */
static void send_error(vg_session_t *s, const char *code, const char *message, json_t *id)
{
    json_t *msg = json_pack("{s:s, s:s, s:s%}", "type", "error", "code", code, "message", message,
                            vg_utf8_prefix(message, strlen(message)));
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

/* ---- subscribe / unsubscribe ---- */

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
        if (have || s->num_event_types >= VG_NATIVE_MAX_ITEMS)
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
    const char *added[VG_NATIVE_MAX_ITEMS]; /* subscriptions the operation created */
    size_t num_added;
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
        const char *name = json_string_value(v);
        if (!op->subscribe)
            vg_subs_remove(index, &op->s->subscriber, name, json_string_length(v));
        else if (vg_subs_add(index, &op->s->subscriber, name, json_string_length(v)) == 1)
            op->added[op->num_added++] = name;
    }
    if (op->types != NULL)
        (op->subscribe ? add_event_types : remove_event_types)(op->s, op->types);
}

/* The subscriptions a request would create: the channels it names that the connection does not
 * hold yet, each once. */
static size_t count_new(vg_session_t *s, json_t *channels)
{
    vg_subs_t *index = vg_hub_subs(s->conn->worker);
    size_t n = 0, i;
    json_t *v;
    json_array_foreach(channels, i, v)
    {
        const char *name = json_string_value(v);
        int seen = vg_subs_contains(index, &s->subscriber, name, json_string_length(v));
        for (size_t k = 0; k < i && !seen; k++)
            seen = strcmp(json_string_value(json_array_get(channels, k)), name) == 0;
        n += !seen;
    }
    return n;
}

/* --max-subscriptions: a request that would take the connection past it is refused whole (like
 * a forbidden channel), so the client knows exactly what it holds. */
static int room_for(vg_session_t *s, json_t *channels, json_t *id)
{
    size_t limit = vg_subs_limit(vg_hub_subs(s->conn->worker));
    size_t have = vg_subscriber_count(&s->subscriber);
    if (limit == 0 || have + json_array_size(channels) <= limit)
        return 1;
    size_t adds = count_new(s, channels);
    if (have + adds <= limit)
        return 1;
    atomic_fetch_add_explicit(&s->app->limit_hits[VG_LIMIT_SUBSCRIPTIONS], 1, memory_order_relaxed);
    char message[200];
    snprintf(message, sizeof(message),
             "at most %zu subscriptions per connection (--max-subscriptions): this one holds %zu "
             "and the request adds %zu; unsubscribe first",
             limit, have, adds);
    send_error(s, "too_many_subscriptions", message, id);
    return 0;
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

/* The "subscribed" answer of a subscribe with channels. */
static json_t *subscribed_json(vg_native_req_t *r, int cut)
{
    int all_recovered;
    json_t *msg = json_pack("{s:s}", "type", "subscribed");
    json_object_set_new(msg, "channels", json_incref(r->channels));
    json_object_set_new(msg, "event_types",
                        r->event_types ? json_incref(r->event_types) : json_array());
    json_object_set_new(msg, "positions", positions_json(r->rec, r->num_rec, &all_recovered));
    if (r->since != NULL || (r->has_time && cut))
        json_object_set_new(msg, "recovered", json_boolean(all_recovered && !cut));
    if (r->num_rec == 1) {
        json_object_set_new(msg, "offset", json_integer((json_int_t)r->rec[0].offset));
        json_object_set_new(msg, "epoch", json_string(r->rec[0].epoch));
    }
    if (r->id != NULL)
        json_object_set(msg, "id", r->id);
    return msg;
}

/* The most the answer can take, whatever is cut: measured with every position
 * recovered:false (the longer spelling) and the top-level flag. */
static size_t answer_size_bound(vg_native_req_t *r)
{
    int saved[VG_NATIVE_MAX_ITEMS];
    for (size_t i = 0; i < r->num_rec; i++) {
        saved[i] = r->rec[i].recovered;
        r->rec[i].recovered = 0;
    }
    json_t *msg = subscribed_json(r, 1);
    char *text = json_dumps(msg, JSON_COMPACT);
    size_t n = text != NULL ? strlen(text) : 0;
    free(text);
    json_decref(msg);
    for (size_t i = 0; i < r->num_rec; i++)
        r->rec[i].recovered = saved[i];
    return n;
}

static vg_recovery_t *find_rec(vg_native_req_t *r, const char *channel)
{
    for (size_t i = 0; i < r->num_rec; i++)
        if (strcmp(r->rec[i].channel, channel) == 0)
            return &r->rec[i];
    return NULL;
}

/* A replay must fit in --max-outbound together with what is queued already (`budget` is what is
 * left): its frames are queued at once, a queue over the limit closes the client as a slow
 * consumer, and its reconnect would ask for the same replay again, forever.  So each channel's
 * replay (a run of consecutive frames) goes whole or not at all, in order, while it fits; a
 * channel that does not fit is marked in `skip`, answered recovered:false (the client reloads
 * its view; vigil.js reports a gap) and none of its messages are sent.  Returns how many
 * channels were cut. */
static size_t fit_replay(vg_session_t *s, vg_native_req_t *r, const vg_missed_t *missed,
                         size_t budget, unsigned char *skip)
{
    size_t used = 0, cut = 0;
    for (size_t i = 0, j; i < missed->count; i = j) {
        size_t bytes = 0;
        for (j = i; j < missed->count && strcmp(missed->channels[j], missed->channels[i]) == 0; j++)
            bytes += missed->frames[j]->len;
        if (used + bytes <= budget) {
            used += bytes;
            continue;
        }
        memset(skip + i, 1, j - i);
        vg_recovery_t *rec = find_rec(r, missed->channels[i]);
        if (rec != NULL)
            rec->recovered = 0;
        cut++;
        vg_verbose("conn %" PRIu64 " from %s: replay of %s (%zu messages, %zu bytes) does not fit "
                   "in --max-outbound: answered recovered:false",
                   s->conn->id, s->conn->peer, missed->channels[i], j - i, bytes);
    }
    if (cut > 0)
        atomic_fetch_add_explicit(&s->app->limit_hits[VG_LIMIT_RECOVERY_OUTBOUND], cut,
                                  memory_order_relaxed);
    return cut;
}

/* A subscriber of "state.<name>" starts from the whole document; deltas follow.  Taken after
 * the subscription exists, so any delta it may also receive is not newer than the snapshot or
 * is applied on top of it (clients ignore deltas whose version is not newer).  A snapshot is the
 * answer to this request: it goes out whole even past --max-outbound, as long as the queue was
 * not already over it (a document larger than the limit must not close a client that reads into
 * a reconnect loop; one that keeps asking without reading is still a slow consumer). */
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
            vg_session_ws_send_reply(s, frame);
            vg_chunk_unref(frame);
        }
    }
}

/* Subscribe or unsubscribe without recovery (event types only, or unsubscribe). */
static void change_subscription(vg_session_t *s, vg_native_req_t *r)
{
    int subscribe = r->kind == VG_NATIVE_SUBSCRIBE;
    sub_op_t op = {
        .s = s, .channels = r->channels, .types = r->event_types, .subscribe = subscribe};
    apply_subscription(&op);
    vg_session_subscriptions_changed(s);
    answer_subscription(s, subscribe ? "subscribed" : "unsubscribed", r->channels, r->event_types,
                        r->id);
}

static void handle_subscribe(vg_session_t *s, vg_native_req_t *r)
{
    if (r->kind == VG_NATIVE_UNSUBSCRIBE || r->channels == NULL) {
        change_subscription(s, r);
        return;
    }
    if (!room_for(s, r->channels, r->id))
        return;
    sub_op_t op = {.s = s, .channels = r->channels, .types = r->event_types, .subscribe = 1};
    vg_missed_t missed;
    vg_hub_subscribe_atomically_ex(s->conn->worker, apply_subscription, &op, r->rec, r->num_rec,
                                   r->has_time ? &r->tr : NULL, &missed);
    vg_session_subscriptions_added(s, op.added, op.num_added);

    size_t limit = s->app->cfg->max_outbound;
    size_t queued = vg_conn_queued_bytes(s->conn) + answer_size_bound(r);
    unsigned char *skip = vg_calloc(missed.count + 1, 1);
    size_t cut = fit_replay(s, r, &missed, queued < limit ? limit - queued : 0, skip);
    send_json(s, subscribed_json(r, cut > 0));
    /* What was missed goes before anything live: live messages arrive on later wake-ups. */
    for (size_t i = 0; i < missed.count; i++)
        if (!skip[i])
            vg_session_deliver(s, missed.channels[i], strlen(missed.channels[i]), missed.types[i],
                               missed.offsets[i], missed.frames[i]);
    vg_free(skip);
    vg_missed_dispose(&missed);
    send_state_snapshots(s, r->channels);
    const char *patterns[VG_NATIVE_MAX_ITEMS];
    size_t np = 0, k;
    json_t *c;
    json_array_foreach(r->channels, k, c)
    {
        patterns[np++] = json_string_value(c);
    }
    vg_acks_replay(s, patterns, np);
}

/* ---- refresh, ack, rpc ---- */

static void handle_refresh(vg_session_t *s, vg_native_req_t *r)
{
    const char *reason = NULL;
    if (vg__wsuser_refresh(s, r->token, r->token_len, &reason) != 0) {
        send_error(s, "unauthorized", reason, r->id);
        return;
    }
    json_t *msg = json_pack("{s:s}", "type", "refreshed");
    if (s->identity.expires_at > 0) {
        char ts[32];
        vg_format_rfc3339((int64_t)(s->identity.expires_at * 1000), ts);
        json_object_set_new(msg, "expires_at", json_string(ts));
    }
    if (r->id != NULL)
        json_object_set(msg, "id", r->id);
    send_json(s, msg);
}

/* The user is done with that message, everywhere. */
static void handle_ack(vg_session_t *s, vg_native_req_t *r)
{
    if (vg_acks_ack(&s->app->acks, s->identity.user, r->message_id) != 0) {
        send_error(s, "store_failed", "the ack could not be stored", r->id);
        return;
    }
    send_json(s, json_pack("{s:s, s:s}", "type", "acked", "id", r->message_id));
    vg_notify_acked(s->app, s->identity.user, r->message_id, s->conn->id);
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

static void handle_rpc(vg_session_t *s, vg_native_req_t *r)
{
    pending_rpc_t *p = vg_malloc(sizeof(*p));
    p->worker = s->conn->worker;
    p->conn_id = s->conn->id;
    p->id = json_incref(r->id);
    vg_rpc_caller_t who = {s->conn->id, s->identity.user, s->identity.anonymous, NULL};
    if (vg_rpc_call(s->app, s->conn->worker, &who, r->method, r->params, rpc_answered, p) != 0) {
        /* Past --max-rpc-inflight-*: answered at once, so the client can retry later. */
        send_error(s, "busy", who.busy != NULL ? who.busy : "the call could not be made", r->id);
        json_decref(p->id);
        vg_free(p);
    }
}

/* ---- messages ---- */

static void handle_request(vg_session_t *s, vg_native_req_t *r)
{
    switch (r->kind) {
    case VG_NATIVE_TEXT_PING: vg_session_ws_send_text(s, "pong", 4); break;
    case VG_NATIVE_PING: {
        json_t *pong = json_pack("{s:s, s:o}", "type", "pong", "timestamp", now_json());
        if (r->id != NULL)
            json_object_set(pong, "id", r->id);
        send_json(s, pong);
        break;
    }
    case VG_NATIVE_SUBSCRIBE:
    case VG_NATIVE_UNSUBSCRIBE: handle_subscribe(s, r); break;
    case VG_NATIVE_REFRESH: handle_refresh(s, r); break;
    case VG_NATIVE_ACK: handle_ack(s, r); break;
    case VG_NATIVE_RPC: handle_rpc(s, r); break;
    default: send_error(s, r->err_code, r->err_message, r->id); break;
    }
}

static void on_message(vg_session_t *s, int opcode, uint8_t *data, size_t len)
{
    if (opcode != VG_WS_OP_TEXT) {
        send_error(s, "bad_request", "requests are JSON text messages", NULL);
        return;
    }
    vg_patterns_t allowed;
    vg_session_allowed(s, &allowed);
    /* About 20 KiB (the recovery positions): too much to zero for every message, fine to hold
     * on a worker thread's stack for the duration of one. */
    vg_native_req_t req;
    vg_native_parse(&req, (const char *)data, len, &allowed);
    handle_request(s, &req);
    vg_native_req_dispose(&req);
}

const vg_ws_endpoint_t vg_native_endpoint = {
    .path = "/ws",
    .authenticate = 1,
    .subprotocols = native_subprotocols,
    .on_open = on_open,
    .on_message = on_message,
    .on_close = NULL,
};
