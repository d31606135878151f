/*
 * VisionGuard (seed 003) on /ws/alerts/{user_id}?token=JWT; docs/profiles/visionguard.md.
 *
 * The path's user id must be the token's sub (else the socket closes with 1008); with
 * --visionguard-auth=false the path alone names the user.  A user holds one connection: a new
 * one closes the previous one ("replaced by a newer connection").  The server sends
 * {"type":"ping"} every --visionguard-ping-interval seconds and closes a connection silent for
 * --visionguard-ping-timeout; the client's {"type":"ping"} gets {"type":"pong"}.
 *
 * anomaly_detected alerts are published on --visionguard-channels ("anomalies.{user}"), which
 * this profile makes acknowledged-delivery channels: each alert is stored before the publish is
 * answered, replayed when the user's dashboard connects until it sends {"type":"ack","id":...},
 * with the same top-level fields as the live message (plus "redelivered": true).
 */
#include <stdio.h>
#include <string.h>

#include "core/acks.h"
#include "proto/channel.h"
#include "profiles/profiles.h"
#include "util/alloc.h"
#include "util/buf.h"
#include "util/error.h"
#include "util/log.h"

#define PING_TEXT    "{\"type\":\"ping\"}"
#define MAX_PATTERNS 16

typedef struct visionguard_s {
    vg_ws_endpoint_t endpoint;
    vg_endpoint_policy_t policy;
} visionguard_t;

/* ---- rendering ---- */

/* Vigil's envelope keys that are not the publisher's: everything else at the top level of the
 * native message is an envelope field the backend chose (stream_id, annotated_frame, ...). */
static int is_core(const char *key)
{
    static const char *const core[] = {"type", "channel", "offset",     "timestamp",
                                       "id",   "data",    "redelivered"};
    for (size_t i = 0; i < sizeof(core) / sizeof(core[0]); i++)
        if (strcmp(key, core[i]) == 0)
            return 1;
    return 0;
}

static void copy_field(json_t *to, json_t *from, const char *key)
{
    json_t *v = json_object_get(from, key);
    if (v != NULL)
        json_object_set(to, key, v);
}

/* Seed 003's dashboard reads alert.person_id and alert.details.status, while its backend passed
 * a detection_result {person_id, status, confidence}: when the publisher gives detection_result
 * but not these two, they are derived from it. */
static void derive_fields(json_t *msg)
{
    json_t *det = json_object_get(msg, "detection_result");
    if (!json_is_object(det))
        return;
    json_t *person = json_object_get(det, "person_id");
    if (json_object_get(msg, "person_id") == NULL && person != NULL)
        json_object_set(msg, "person_id", person);
    if (json_object_get(msg, "details") == NULL)
        json_object_set(msg, "details", det);
}

/* {"type","id","timestamp",<envelope fields>,["person_id","details"],["data"],["redelivered"]}:
 * no channel or offset; data only when the publisher gave one (not null). */
static vg_chunk_t *render(const vg_delivery_t *d)
{
    json_t *native = vg_profile_parse(d);
    if (native == NULL)
        return NULL;
    json_t *msg = json_object();
    copy_field(msg, native, "type");
    copy_field(msg, native, "id");
    copy_field(msg, native, "timestamp");
    const char *key;
    json_t *value;
    json_object_foreach(native, key, value)
    {
        if (!is_core(key))
            json_object_set(msg, key, value);
    }
    derive_fields(msg);
    json_t *data = json_object_get(native, "data");
    if (data != NULL && !json_is_null(data))
        json_object_set(msg, "data", data);
    copy_field(msg, native, "redelivered");
    json_decref(native);
    return vg_profile_frame(msg);
}

static const vg_format_t visionguard_format = {"visionguard", render};

/* ---- connecting ---- */

/* The path's user id, lent by handle_upgrade for the duration of vg_session_upgrade. */
static const char *path_user(const vg_session_t *s)
{
    return s->endpoint_data;
}

/* Before the user takes its place (and replaces its previous connection): the path must name
 * the token's user; without auth it names the user. */
static int admit(vg_session_t *s, const char **reason)
{
    const char *user = path_user(s);
    if (user == NULL || user[0] == '\0' || strlen(user) >= sizeof(s->identity.user)) {
        *reason = "invalid user id";
        return -1;
    }
    /* Only --visionguard-auth=false lets the path name the user: a client let in by
     * --allow-anonymous is user "anonymous" like everywhere else. */
    if (!s->endpoint->policy->anonymous && strcmp(user, s->identity.user) != 0) {
        *reason = "user id does not match token";
        return -1;
    }
    /* The user id becomes a channel segment ("anomalies.{user}"), the token's sub too: a sub
     * "*" must not read every user's alerts. */
    if ((*reason = vg_profile_user_check(user)) != NULL)
        return -1;
    if (s->endpoint->policy->anonymous)
        snprintf(s->identity.user, sizeof(s->identity.user), "%s", user);
    return 0;
}

/* "anomalies.{user}" -> "anomalies.alice" for each configured pattern the user may read. */
static size_t user_patterns(vg_session_t *s, char **out, size_t cap)
{
    vg_patterns_t list, allowed;
    vg_patterns_parse(&list, s->app->cfg->visionguard_channels);
    vg_session_allowed(s, &allowed);
    size_t n = 0;
    for (size_t i = 0; i < list.count && n < cap; i++) {
        char *pattern = vg_profile_expand_user(list.items[i], s->identity.user);
        if (pattern != NULL && (s->endpoint->policy->anonymous ||
                                vg_patterns_covers(&allowed, pattern, strlen(pattern))))
            out[n++] = pattern;
        else
            vg_free(pattern);
    }
    vg_patterns_dispose(&list);
    return n;
}

/* Subscribes first, then replays what the user has not acked: an alert published in between
 * arrives once (acks.c drops the live copy of a message just replayed). */
static void on_open(vg_session_t *s)
{
    vg_profile_subscribe(s, s->app->cfg->visionguard_channels);
    char *patterns[MAX_PATTERNS];
    size_t n = user_patterns(s, patterns, MAX_PATTERNS);
    vg_acks_replay(s, (const char *const *)patterns, n);
    for (size_t i = 0; i < n; i++)
        vg_free(patterns[i]);
}

/* ---- client messages ---- */

static void send_error(vg_session_t *s, const char *message)
{
    vg_profile_send(s, json_pack("{s:s, s:s}", "type", "error", "message", message));
}

/* {"type":"ack","id":...}: done with that alert on every connection, for good.  Not answered:
 * the seed's dashboard knows no answer to it. */
static void handle_ack(vg_session_t *s, json_t *req)
{
    const char *id = json_string_value(json_object_get(req, "id"));
    if (id == NULL)
        id = json_string_value(json_object_get(req, "alert_id"));
    if (id == NULL)
        id = json_string_value(json_object_get(req, "message_id"));
    if (id == NULL)
        send_error(s, "ack needs the alert's \"id\"");
    else if (vg_acks_ack(&s->app->acks, s->identity.user, id) != 0)
        send_error(s, "the ack could not be stored");
}

static void handle(vg_session_t *s, json_t *req)
{
    const char *type = json_string_value(json_object_get(req, "type"));
    if (type == NULL)
        send_error(s, "a message needs a \"type\"");
    else if (strcmp(type, "ping") == 0)
        vg_profile_send(s, json_pack("{s:s}", "type", "pong"));
    else if (strcmp(type, "ack") == 0)
        handle_ack(s, req);
    else if (strcmp(type, "pong") != 0) /* a pong only shows the client is alive (wsuser.c) */
        send_error(s, "expected a message of type ping, pong or ack");
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

/* The path's user id is only in the request: it is lent to admit(), which runs inside
 * vg_session_upgrade, through endpoint_data (NULL again before the session goes on). */
static void handle_upgrade(vg_session_t *s, vg_http_request_t *req, const vg_route_match_t *m)
{
    char user[VG_AUTH_MAX_USER] = "", raw[3 * VG_AUTH_MAX_USER], decoded[3 * VG_AUTH_MAX_USER];
    vg_iov_t param = m->params[0];
    if (param.len < sizeof(raw) - 1) {
        /* Percent-encoded in the path: decoded as a one-segment path. */
        raw[0] = '/';
        memcpy(raw + 1, param.base, param.len);
        int n = vg_http_path_decode((vg_iov_t){raw, param.len + 1}, decoded, sizeof(decoded));
        if (n > 1 && (size_t)n - 1 < sizeof(user))
            memcpy(user, decoded + 1, (size_t)n); /* with the NUL */
    }
    s->endpoint_data = user;
    vg_session_upgrade(s, req, m->route->extra);
    s->endpoint_data = NULL;
}

/* ---- setup ---- */

/* "anomalies.{user}" -> "anomalies.*": the pattern covering every user's channel.  A segment
 * holding {user} becomes "*".  Returns a heap string or NULL when the result is invalid. */
static char *any_user_pattern(const char *pattern)
{
    vg_buf_t b = VG_BUF_INIT;
    const char *seg = pattern;
    while (seg != NULL) {
        const char *dot = strchr(seg, '.');
        size_t len = dot ? (size_t)(dot - seg) : strlen(seg);
        char *brace = memchr(seg, '{', len);
        if (brace != NULL && (size_t)(seg + len - brace) >= 6 && strncmp(brace, "{user}", 6) == 0)
            vg_buf_append_str(&b, "*");
        else
            vg_buf_append(&b, seg, len);
        if (dot != NULL)
            vg_buf_append_str(&b, ".");
        seg = dot ? dot + 1 : NULL;
    }
    vg_buf_append(&b, "", 1);
    char *out = (char *)b.base;
    if (vg_channel_check_pattern(out, b.len - 1) != NULL) {
        vg_buf_dispose(&b);
        return NULL;
    }
    return out;
}

/* Alerts must survive the dashboard's absence: every VisionGuard channel is made an ack channel
 * (added to --ack-channels when not already covered), rather than refusing to start. */
static int ensure_ack_channels(vg_app_t *app, char *err, size_t errlen)
{
    vg_patterns_t list;
    vg_patterns_parse(&list, app->cfg->visionguard_channels);
    int rc = list.count > 0 ? 0 : VG_ECONFIG;
    if (rc != 0)
        snprintf(err, errlen, "invalid value for --visionguard-channels: no channel given");
    for (size_t i = 0; i < list.count && rc == 0; i++) {
        char *any = any_user_pattern(list.items[i]);
        if (any == NULL) {
            snprintf(err, errlen, "invalid value '%s' for --visionguard-channels", list.items[i]);
            rc = VG_ECONFIG;
        } else if (vg_patterns_covers(&app->ack_channels, any, strlen(any))) {
            vg_free(any);
        } else {
            vg_notice("profile visionguard: %s added to --ack-channels", any);
            app->ack_channels.items =
                vg_realloc(app->ack_channels.items, (app->ack_channels.count + 1) * sizeof(char *));
            app->ack_channels.items[app->ack_channels.count++] = any;
        }
    }
    vg_patterns_dispose(&list);
    return rc;
}

static int init(vg_app_t *app, void **state, char *err, size_t errlen)
{
    int rc = ensure_ack_channels(app, err, errlen);
    if (rc != 0)
        return rc;
    visionguard_t *p = vg_calloc(1, sizeof(*p));
    p->policy = (vg_endpoint_policy_t){
        .anonymous = !app->cfg->visionguard_auth,
        .replace_previous = 1,
        .ping_interval = app->cfg->visionguard_ping_interval,
        .ping_timeout = app->cfg->visionguard_ping_timeout,
        .ping_text = PING_TEXT,
        .admit = admit,
    };
    p->endpoint = (vg_ws_endpoint_t){
        .path = "/ws/alerts/{user_id}",
        .authenticate = 1,
        .on_open = on_open,
        .on_message = on_message,
        .format = &visionguard_format,
        .policy = &p->policy,
    };
    vg_app_route_ex(app, p->endpoint.path, VG_M_GET, handle_upgrade, &p->endpoint);
    *state = p;
    return 0;
}

static void dispose(void *state)
{
    vg_free(state);
}

const vg_profile_t vg_profile_visionguard = {"visionguard", init, dispose};
