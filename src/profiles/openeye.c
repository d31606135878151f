/*
 * OpenEye (seeds 000 and 001) on /api/ws/statistics?token=JWT; docs/profiles/openeye.md.
 *
 * The welcome is the seed's connection_status; statistics_update carries the whole
 * --openeye-statistics state document (once at connect, every --openeye-statistics-interval
 * seconds and whenever it changes); camera_event and alert are what the backend publishes on
 * --openeye-channels, with its envelope fields (camera_id, event_type, alert_type) at the top
 * level and vigil's own (channel, offset, id) removed, so each message has exactly the seed's
 * shape.  {"type":"ping"} gets {"type":"pong","timestamp":...}; subscribe/unsubscribe with
 * event_types filter by message type and, as in the seed, are not answered.  A bad token closes
 * the socket with 1008 after the handshake (wsuser.c), and a user's sixth connection is refused.
 */
#include <ctype.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "profiles/profiles.h"
#include "core/state.h"
#include "util/alloc.h"
#include "util/clock.h"

#define STATS_CHANNEL   "openeye.statistics"
#define STATS_TYPE      "statistics_update"
#define MAX_PER_USER    5 /* the seed's ConnectionManager limit */
#define MAX_EVENT_TYPES 64
#define MAX_USERNAME    128
#define MAX_TOKEN       8192
/* An event-type filter that lets nothing through (real types are never empty). */
#define NOTHING ""

/* The types an unsubscribe from the unfiltered state keeps (all the seed sends). */
static const char *const known_types[] = {STATS_TYPE, "camera_event", "alert"};

typedef struct openeye_s {
    vg_ws_endpoint_t endpoint;
    vg_endpoint_policy_t policy;
} openeye_t;

static json_t *now_json(void)
{
    char ts[32];
    vg_format_rfc3339(vg_wall_ms(), ts);
    return json_string(ts);
}

/* ---- rendering ---- */

/* The seed's messages have no channel, offset or acknowledged-delivery id: everything else of
 * the native message (type, timestamp, the publisher's envelope fields, data) is kept in order. */
static int dropped(const char *key)
{
    return strcmp(key, "channel") == 0 || strcmp(key, "offset") == 0 || strcmp(key, "id") == 0 ||
           strcmp(key, "redelivered") == 0;
}

static vg_chunk_t *render(const vg_delivery_t *d)
{
    json_t *native = vg_profile_parse(d);
    if (native == NULL)
        return NULL;
    json_t *msg = json_object();
    const char *key;
    json_t *value;
    json_object_foreach(native, key, value)
    {
        if (!dropped(key))
            json_object_set(msg, key, value);
    }
    json_decref(native);
    return vg_profile_frame(msg);
}

static const vg_format_t openeye_format = {"openeye", render};

/* ---- the welcome ---- */

/* The payload of a compact JWT, decoded (not verified: the caller only reads it once the same
 * token passed verification).  A new reference or NULL. */
static json_t *jwt_payload(const char *token)
{
    const char *a = strchr(token, '.'), *b = a ? strchr(a + 1, '.') : NULL;
    if (b == NULL || b - a - 1 <= 0 || b - a - 1 > MAX_TOKEN)
        return NULL;
    size_t len = (size_t)(b - a - 1), padded = (len + 3) / 4 * 4;
    unsigned char *in = vg_malloc(padded + 1), *out = vg_malloc(padded);
    for (size_t i = 0; i < padded; i++) {
        char c = i < len ? a[1 + i] : '=';
        in[i] = (unsigned char)(c == '-' ? '+' : c == '_' ? '/' : c);
    }
    in[padded] = '\0';
    int n = EVP_DecodeBlock(out, in, (int)padded);
    json_t *claims = NULL;
    if (n > 0) {
        /* EVP_DecodeBlock counts the bytes the padding stands for. */
        size_t real = (size_t)n - (padded - len);
        claims = json_loadb((const char *)out, real, 0, NULL);
    }
    vg_free(in);
    vg_free(out);
    return claims;
}

/* The token's "username" (else "name") claim into out, or "" when it has none. */
static void token_username(vg_http_request_t *req, char *out, size_t cap)
{
    char *token = vg_malloc(MAX_TOKEN);
    out[0] = '\0';
    if (vg_http_query_get(req, "token", token, MAX_TOKEN) > 0) {
        json_t *claims = jwt_payload(token);
        const char *name = json_string_value(json_object_get(claims, "username"));
        if (name == NULL)
            name = json_string_value(json_object_get(claims, "name"));
        if (name != NULL)
            snprintf(out, cap, "%s", name);
        json_decref(claims);
    }
    vg_free(token);
}

/* The seed's user ids were database integers: a sub of digits goes out as a JSON number. */
static json_t *user_id_json(const char *sub)
{
    size_t len = strlen(sub);
    int digits = len > 0 && len <= 15;
    for (size_t i = 0; digits && i < len; i++)
        digits = isdigit((unsigned char)sub[i]);
    return digits ? json_integer(strtoll(sub, NULL, 10)) : json_string(sub);
}

/* A random (version 4) UUID, as the seed's uuid.uuid4(). */
static void uuid4(char out[37])
{
    unsigned char r[16];
    if (RAND_bytes(r, sizeof(r)) != 1)
        abort(); /* no randomness: nothing safe to do */
    r[6] = (unsigned char)((r[6] & 0x0f) | 0x40);
    r[8] = (unsigned char)((r[8] & 0x3f) | 0x80);
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", r[0],
             r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11], r[12], r[13],
             r[14], r[15]);
}

static void send_welcome(vg_session_t *s)
{
    const char *username = s->endpoint_data;
    char id[37];
    uuid4(id);
    json_t *user = json_pack("{s:o, s:s}", "id", user_id_json(s->identity.user), "username",
                             username && username[0] ? username : s->identity.user);
    vg_profile_send(s, json_pack("{s:s, s:s, s:s, s:o, s:s}", "type", "connection_status", "status",
                                 "connected", "connection_id", id, "user", user, "message",
                                 "WebSocket connection established successfully"));
}

/* A new dashboard shows the numbers at once, not after the next interval. */
static void send_statistics(vg_session_t *s)
{
    uint64_t version;
    json_t *doc = vg_state_get(s->app->state, s->app->cfg->openeye_statistics, &version);
    if (doc != NULL)
        vg_profile_send(s, json_pack("{s:s, s:o, s:o}", "type", STATS_TYPE, "timestamp", now_json(),
                                     "data", doc));
}

static void on_open(vg_session_t *s)
{
    vg_profile_subscribe(s, s->app->cfg->openeye_channels);
    vg_subs_add(vg_hub_subs(s->conn->worker), &s->subscriber, STATS_CHANNEL, strlen(STATS_CHANNEL));
    vg_session_subscriptions_changed(s);
    send_welcome(s);
    send_statistics(s);
}

/* ---- event-type filters: s->event_types, checked by vg_session_deliver ---- */

static int find_type(const vg_session_t *s, const char *type)
{
    for (size_t i = 0; i < s->num_event_types; i++)
        if (strcmp(s->event_types[i], type) == 0)
            return (int)i;
    return -1;
}

static void add_type(vg_session_t *s, const char *type)
{
    if (find_type(s, type) >= 0 || s->num_event_types >= MAX_EVENT_TYPES)
        return;
    s->event_types = vg_realloc(s->event_types, (s->num_event_types + 1) * sizeof(char *));
    s->event_types[s->num_event_types++] = vg_strdup(type);
}

static void remove_type(vg_session_t *s, const char *type)
{
    int i = find_type(s, type);
    if (i < 0)
        return;
    vg_free(s->event_types[i]);
    s->event_types[i] = s->event_types[--s->num_event_types];
}

/* subscribe: from then on only the listed types (and those subscribed later) come through. */
static void subscribe_types(vg_session_t *s, json_t *types)
{
    size_t i;
    json_t *v;
    json_array_foreach(types, i, v)
    {
        if (json_string_length(v) > 0)
            add_type(s, json_string_value(v));
    }
    if (s->num_event_types > 1)
        remove_type(s, NOTHING);
}

/* unsubscribe: an unfiltered connection first becomes "every type the seed sends"; an empty
 * filter would mean "everything" to vg_session_deliver, so "nothing" is a type that never
 * matches. */
static void unsubscribe_types(vg_session_t *s, json_t *types)
{
    if (s->num_event_types == 0)
        for (size_t k = 0; k < sizeof(known_types) / sizeof(known_types[0]); k++)
            add_type(s, known_types[k]);
    size_t i;
    json_t *v;
    json_array_foreach(types, i, v)
    {
        remove_type(s, json_string_value(v));
    }
    if (s->num_event_types == 0)
        add_type(s, NOTHING);
}

static int string_array(json_t *a)
{
    size_t i;
    json_t *v;
    if (!json_is_array(a))
        return 0;
    json_array_foreach(a, i, v)
    {
        if (!json_is_string(v))
            return 0;
    }
    return 1;
}

/* ---- client messages ---- */

static void send_error(vg_session_t *s, const char *message)
{
    vg_profile_send(s, json_pack("{s:s, s:s, s:o}", "type", "error", "message", message,
                                 "timestamp", now_json()));
}

static void handle(vg_session_t *s, json_t *req)
{
    const char *type = json_string_value(json_object_get(req, "type"));
    json_t *types = json_object_get(req, "event_types");
    if (type != NULL && strcmp(type, "ping") == 0) {
        vg_profile_send(s, json_pack("{s:s, s:o}", "type", "pong", "timestamp", now_json()));
    } else if (type != NULL &&
               (strcmp(type, "subscribe") == 0 || strcmp(type, "unsubscribe") == 0)) {
        if (!string_array(types)) {
            send_error(s, "\"event_types\" must be an array of strings");
            return;
        }
        (type[0] == 's' ? subscribe_types : unsubscribe_types)(s, types);
        vg_session_subscriptions_changed(s);
    } else {
        send_error(s, "expected a message of type ping, subscribe or unsubscribe");
    }
}

static void on_message(vg_session_t *s, int opcode, uint8_t *data, size_t len)
{
    int bad;
    json_t *req = vg_profile_request(s, opcode, data, len, &bad);
    if (req != NULL)
        handle(s, req);
    else if (bad)
        send_error(s, "messages are JSON objects");
    json_decref(req);
}

/* A "{user}" in --openeye-channels stands for the token's sub: a sub that cannot be one channel
 * segment ("*", "a.>") is refused, not subscribed to other users' channels. */
static int admit(vg_session_t *s, const char **reason)
{
    return vg_profile_admit_user(s, s->app->cfg->openeye_channels, reason);
}

/* The username claim is only in the request: it is lent to on_open, which runs inside
 * vg_session_upgrade, through endpoint_data (NULL again before the session goes on). */
static void handle_upgrade(vg_session_t *s, vg_http_request_t *req, const vg_route_match_t *m)
{
    char username[MAX_USERNAME];
    token_username(req, username, sizeof(username));
    s->endpoint_data = username;
    vg_session_upgrade(s, req, m->route->extra);
    s->endpoint_data = NULL;
}

static int init(vg_app_t *app, void **state, char *err, size_t errlen)
{
    (void)err;
    (void)errlen;
    openeye_t *p = vg_calloc(1, sizeof(*p));
    p->policy.anonymous = !app->cfg->openeye_auth;
    p->policy.admit = admit;
    p->policy.max_per_user = MAX_PER_USER;
    p->endpoint = (vg_ws_endpoint_t){
        .path = "/api/ws/statistics",
        .authenticate = 1,
        .on_open = on_open,
        .on_message = on_message,
        .format = &openeye_format,
        .policy = &p->policy,
    };
    vg_app_route_ex(app, p->endpoint.path, VG_M_GET, handle_upgrade, &p->endpoint);
    char type[] = STATS_TYPE, channel[] = STATS_CHANNEL;
    vg_state_broadcast_t feed = {.name = app->cfg->openeye_statistics,
                                 .type = type,
                                 .seconds = app->cfg->openeye_statistics_interval,
                                 .channel = channel,
                                 .on_change = 1};
    vg_state_add_feed(app->state, &feed);
    *state = p;
    return 0;
}

static void dispose(void *state)
{
    vg_free(state);
}

const vg_profile_t vg_profile_openeye = {"openeye", init, dispose};
