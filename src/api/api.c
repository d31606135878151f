/*
 * The HTTP API (docs/PROTOCOL.md): publishing, tickets, status, the admin endpoints and
 * Prometheus metrics.  Every handler authenticates first, parses a JSON body when it has one, and
 * answers JSON; errors name the field at fault.
 */
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/api.h"
#include "core/acks.h"
#include "proto/channel.h"
#include "core/hub.h"
#include "core/state.h"
#include "store/store.h"
#include "transport/transport.h"
#include "util/alloc.h"
#include "util/buf.h"
#include "util/clock.h"
#include "util/error.h"
#include "util/log.h"
#include "util/num.h"

#define MAX_BATCH    1000
#define MAX_TYPE_LEN 100
#define MAX_ALERTS   1000000 /* GET /api/alerts?limit= */

/* ---- helpers ---- */

static void respond_json(vg_session_t *s, int status, json_t *body)
{
    char *text = json_dumps(body, JSON_COMPACT);
    vg_session_respond(s, status, "application/json", "Cache-Control: no-store\r\n", text,
                       strlen(text));
    free(text);
    json_decref(body);
}

int vg_session_http_auth(vg_session_t *s, vg_http_request_t *req, int allow_api_key,
                         vg_identity_t *id, int *is_api_key, const char **reason)
{
    vg_auth_t *auth = s->app->auth;
    *is_api_key = 0;
    vg_iov_t key = vg_http_header_get(req, "X-API-Key");
    vg_iov_t bearer = vg_http_header_get(req, "Authorization");
    if (bearer.base != NULL && bearer.len > 7 && strncasecmp(bearer.base, "Bearer ", 7) == 0)
        bearer = (vg_iov_t){bearer.base + 7, bearer.len - 7};
    else
        bearer = VG_IOV_NULL;
    if (allow_api_key && (key.base != NULL || bearer.base != NULL)) {
        vg_iov_t k = key.base != NULL ? key : bearer;
        if (vg_auth_check_api_key(auth, k.base, k.len)) {
            *is_api_key = 1;
            vg_identity_init_anonymous(id);
            snprintf(id->user, sizeof(id->user), "api-key");
            id->anonymous = 0;
            id->admin = 1;
            return 0;
        }
        if (key.base != NULL) {
            *reason = "invalid API key";
            return VG_EAUTH;
        }
    }
    char token[8192];
    int n = vg_http_query_get(req, "token", token, sizeof(token));
    if (n > 0)
        return vg_auth_verify_token(auth, token, (size_t)n, vg_wall_seconds(), id, reason);
    if (bearer.base != NULL)
        return vg_auth_verify_token(auth, bearer.base, bearer.len, vg_wall_seconds(), id, reason);
    *reason = "missing token";
    return VG_EAUTH;
}

/* Authenticates or answers 401/403.  Returns 0 when the handler may go on. */
static int require(vg_session_t *s, vg_http_request_t *req, int allow_api_key, int admin,
                   vg_identity_t *id, int *is_api_key)
{
    const char *reason = "unauthorized";
    if (vg_session_http_auth(s, req, allow_api_key, id, is_api_key, &reason) != 0) {
        vg_session_respond_error(s, 401, "unauthorized", reason, "WWW-Authenticate: Bearer\r\n");
        return -1;
    }
    if (admin && !id->admin) {
        vg_identity_dispose(id);
        vg_session_respond_error(s, 403, "forbidden", "admin rights required", NULL);
        return -1;
    }
    return 0;
}

static json_t *parse_body(vg_session_t *s, vg_http_request_t *req)
{
    json_error_t err;
    json_t *body = json_loadb(req->body.base, req->body.len, JSON_REJECT_DUPLICATES, &err);
    if (body == NULL || !json_is_object(body)) {
        char message[200];
        snprintf(message, sizeof(message), "request body must be a JSON object%s%s",
                 body == NULL ? ": " : "", body == NULL ? err.text : "");
        vg_session_respond_error(s, 400, "bad_json", message, NULL);
        json_decref(body);
        return NULL;
    }
    return body;
}

/* Reads the query parameter `name` as a plain decimal in [min, max] (util/num.h: no sign,
 * space, prefix or trailing junk).  Returns 1 with *out set, 0 when absent, or -1 after
 * answering 400 with a message naming the parameter and its range. */
static int query_number(vg_session_t *s, vg_http_request_t *req, const char *name, uint64_t min,
                        uint64_t max, uint64_t *out)
{
    char text[32];
    if (!vg_http_query_has(req, name))
        return 0;
    int n = vg_http_query_get(req, name, text, sizeof(text));
    uint64_t v;
    if (n < 0 || (size_t)n >= sizeof(text) - 1 || vg_parse_decimal(text, (size_t)n, max, &v) != 0 ||
        v < min) {
        char message[160];
        snprintf(message, sizeof(message), "%s: expected a whole number from %llu to %llu", name,
                 (unsigned long long)min, (unsigned long long)max);
        vg_session_respond_error(s, 400, "invalid_request", message, NULL);
        return -1;
    }
    *out = v;
    return 1;
}

/* ---- POST /api/publish ---- */

/* Fields of a published message that vigil itself sets or reads; any other top-level field is
 * the publisher's own envelope field, delivered beside them (docs/profiles/: OpenEye's
 * camera_event carries camera_id and event_type at the top level). */
static const char *const envelope_fields[] = {"channel", "type",      "data",    "id",
                                              "offset",  "timestamp", "messages"};

static int collect_extra(json_t *m, const char *prefix, vg_publish_t *out, char *err, size_t errlen)
{
    const char *key;
    json_t *value;
    json_object_foreach(m, key, value)
    {
        size_t i = 0;
        while (i < VG_ARRAY_SIZE(envelope_fields) && strcmp(key, envelope_fields[i]) != 0)
            i++;
        if (i < VG_ARRAY_SIZE(envelope_fields))
            continue;
        if (strlen(key) > MAX_TYPE_LEN) {
            snprintf(err, errlen, "%s%.40s...: envelope field names are at most %d characters",
                     prefix, key, MAX_TYPE_LEN);
            return -1;
        }
        if (out->extra == NULL)
            out->extra = json_object();
        json_object_set(out->extra, key, value);
    }
    return 0;
}

/* Checks one message object; on error writes a message naming the field (prefix + name). */
static int check_message(json_t *m, const char *prefix, vg_publish_t *out, char *err, size_t errlen)
{
    if (!json_is_object(m)) {
        snprintf(err, errlen, "%s must be an object", prefix[0] ? prefix : "message");
        return -1;
    }
    json_t *channel = json_object_get(m, "channel"), *type = json_object_get(m, "type");
    if (!json_is_string(channel)) {
        snprintf(err, errlen, "%schannel: required string", prefix);
        return -1;
    }
    const char *why =
        vg_channel_check_name(json_string_value(channel), json_string_length(channel));
    if (why != NULL) {
        snprintf(err, errlen, "%schannel: %s", prefix, why);
        return -1;
    }
    if (strncmp(json_string_value(channel), "state.", 6) == 0) {
        snprintf(err, errlen, "%schannel: the state. prefix is reserved for state documents",
                 prefix);
        return -1;
    }
    if (!json_is_string(type) || json_string_length(type) == 0 ||
        json_string_length(type) > MAX_TYPE_LEN) {
        snprintf(err, errlen, "%stype: required string of 1 to %d characters", prefix,
                 MAX_TYPE_LEN);
        return -1;
    }
    if (json_object_get(m, "data") == NULL) {
        snprintf(err, errlen, "%sdata: required (any JSON value, null included)", prefix);
        return -1;
    }
    out->channel = json_string_value(channel);
    out->type = json_string_value(type);
    out->data = json_object_get(m, "data");
    out->extra = NULL;
    return collect_extra(m, prefix, out, err, errlen);
}

static void handle_publish(vg_session_t *s, vg_http_request_t *req, const vg_route_match_t *rm)
{
    (void)rm;
    vg_identity_t id;
    int is_key;
    if (require(s, req, 1, 0, &id, &is_key) != 0)
        return;
    vg_identity_dispose(&id);
    if (!is_key) {
        vg_session_respond_error(s, 403, "forbidden", "publishing needs the API key", NULL);
        return;
    }
    json_t *body = parse_body(s, req);
    if (body == NULL)
        return;
    json_t *batch = json_object_get(body, "messages");
    size_t n = batch != NULL ? json_array_size(batch) : 1;
    char err[300];
    if (batch != NULL && (!json_is_array(batch) || n == 0 || n > MAX_BATCH)) {
        snprintf(err, sizeof(err), "messages: must be an array of 1 to %d messages", MAX_BATCH);
        goto bad;
    }
    vg_publish_t *msgs = vg_malloc(n * sizeof(*msgs));
    char(*ids)[33] = vg_malloc(n * sizeof(*ids));
    for (size_t i = 0; i < n; i++) {
        char prefix[32] = "";
        const char *why = NULL;
        json_t *m = batch ? json_array_get(batch, i) : body;
        if (batch != NULL)
            snprintf(prefix, sizeof(prefix), "messages[%zu].", i);
        msgs[i].extra = NULL;
        if (check_message(m, prefix, &msgs[i], err, sizeof(err)) != 0 ||
            (vg_acks_prepare(&s->app->acks, m, &msgs[i], ids[i], &why) != 0 &&
             snprintf(err, sizeof(err), "%s%s", prefix, why) > 0)) {
            for (size_t k = 0; k <= i; k++)
                json_decref(msgs[k].extra);
            vg_free(ids);
            vg_free(msgs);
            goto bad;
        }
    }
    /* Acknowledged-delivery messages are durable before anyone hears of them. */
    if (vg_acks_commit(&s->app->acks, msgs, n) != 0) {
        for (size_t k = 0; k < n; k++)
            json_decref(msgs[k].extra);
        vg_free(ids);
        vg_free(msgs);
        json_decref(body);
        vg_session_respond_error(s, 500, "store_failed", "the messages could not be stored", NULL);
        return;
    }
    uint64_t *offsets = vg_malloc(n * sizeof(*offsets));
    vg_hub_publish(s->app->hub, msgs, n, offsets);
    for (size_t i = 0; i < n; i++)
        json_decref(msgs[i].extra);
    json_t *list = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(list, json_integer((json_int_t)offsets[i]));
    /* Messages of ack channels have ids; the answer lists them when there are any. */
    json_t *id_list = NULL;
    for (size_t i = 0; i < n; i++)
        if (msgs[i].id != NULL && id_list == NULL)
            id_list = json_array();
    for (size_t i = 0; id_list != NULL && i < n; i++)
        json_array_append_new(id_list, msgs[i].id ? json_string(msgs[i].id) : json_null());
    vg_free(offsets);
    vg_free(ids);
    vg_free(msgs);
    json_decref(body);
    json_t *answer = json_pack("{s:o}", "offsets", list);
    if (id_list != NULL)
        json_object_set_new(answer, "ids", id_list);
    respond_json(s, 200, answer);
    return;
bad:
    json_decref(body);
    vg_session_respond_error(s, 400, "invalid_message", err, NULL);
}

/* ---- POST /api/ws/ticket ---- */

static void handle_ticket(vg_session_t *s, vg_http_request_t *req, const vg_route_match_t *rm)
{
    (void)rm;
    vg_identity_t id;
    int is_key;
    if (require(s, req, 0, 0, &id, &is_key) != 0)
        return;
    char ticket[64];
    vg_auth_ticket_issue(s->app->auth, &id, vg_wall_seconds(), ticket);
    vg_identity_dispose(&id);
    respond_json(s, 200, json_pack("{s:s, s:i}", "ticket", ticket, "expires_in", 30));
}

/* ---- GET /api/ws/status ---- */

static void handle_status(vg_session_t *s, vg_http_request_t *req, const vg_route_match_t *rm)
{
    (void)rm;
    vg_identity_t id;
    int is_key;
    if (require(s, req, 1, 0, &id, &is_key) != 0)
        return;
    vg_registry_t *reg = s->app->registry;
    json_t *stats = json_pack("{s:I, s:I}", "total_connections", (json_int_t)vg_registry_total(reg),
                              "total_users", (json_int_t)vg_registry_users(reg));
    if (id.admin)
        json_object_set_new(stats, "connections_by_user", vg_registry_connections_by_user(reg));
    json_int_t mine = is_key ? 0 : (json_int_t)vg_registry_user_count(reg, id.user);
    vg_identity_dispose(&id);
    respond_json(s, 200,
                 json_pack("{s:s, s:o, s:I}", "status", "operational", "statistics", stats,
                           "user_connections", mine));
}

/* ---- GET /ws/connections[/{user_id}] ---- */

/* Seed 003's entries say "connected": true (its per-user form answers false for a user who is
 * not connected). */
static json_t *mark_connected(json_t *list)
{
    size_t i;
    json_t *c;
    json_array_foreach(list, i, c)
    {
        json_object_set_new(c, "connected", json_true());
    }
    return list;
}

/* Seed 003's per-user answer describes the user's one connection at the top level: here the
 * newest one's fields (RFC 3339 times sort as strings), or "connected": false. */
static void add_newest(json_t *answer, json_t *list)
{
    json_t *newest = NULL;
    size_t i;
    json_t *c;
    json_array_foreach(list, i, c)
    {
        const char *at = json_string_value(json_object_get(c, "connected_at"));
        const char *best =
            newest ? json_string_value(json_object_get(newest, "connected_at")) : NULL;
        if (newest == NULL || (at != NULL && best != NULL && strcmp(at, best) > 0))
            newest = c;
    }
    json_object_set_new(answer, "connected", json_boolean(newest != NULL));
    static const char *const fields[] = {"connected_at", "uptime_seconds", "last_heartbeat",
                                         "seconds_since_heartbeat"};
    for (size_t k = 0; newest != NULL && k < VG_ARRAY_SIZE(fields); k++)
        json_object_set(answer, fields[k], json_object_get(newest, fields[k]));
}

static void handle_connections(vg_session_t *s, vg_http_request_t *req, const vg_route_match_t *rm)
{
    vg_identity_t id;
    int is_key;
    if (require(s, req, 1, 1, &id, &is_key) != 0)
        return;
    vg_identity_dispose(&id);
    int64_t now = vg_wall_ms();
    if (rm->num_params == 0) {
        json_t *list = mark_connected(vg_registry_describe(s->app->registry, NULL, now));
        respond_json(s, 200,
                     json_pack("{s:I, s:o}", "total_connections", (json_int_t)json_array_size(list),
                               "connections", list));
        return;
    }
    char user[VG_AUTH_MAX_USER], raw[3 * VG_AUTH_MAX_USER];
    vg_iov_t param = rm->params[0];
    int n = -1;
    if (param.len < sizeof(raw) - 1) {
        /* The id is percent-encoded in the path; decode it as a one-segment path. */
        raw[0] = '/';
        memcpy(raw + 1, param.base, param.len);
        char decoded[sizeof(raw)];
        n = vg_http_path_decode((vg_iov_t){raw, param.len + 1}, decoded, sizeof(decoded));
        if (n > 0 && (size_t)n - 1 < sizeof(user))
            memcpy(user, decoded + 1, (size_t)n);
        else
            n = -1;
    }
    if (n < 0) {
        vg_session_respond_error(s, 404, "not_found", "no such user", NULL);
        return;
    }
    json_t *list = mark_connected(vg_registry_describe(s->app->registry, user, now));
    json_t *answer = json_pack("{s:s}", "user_id", user);
    add_newest(answer, list);
    json_object_set_new(answer, "connection_count",
                        json_integer((json_int_t)json_array_size(list)));
    json_object_set_new(answer, "connections", list);
    respond_json(s, 200, answer);
}

/* ---- POST /api/broadcast, /api/disconnect ---- */

static const char *optional_user(json_t *body, int *bad)
{
    json_t *u = json_object_get(body, "user");
    *bad = u != NULL && !json_is_null(u) && !json_is_string(u);
    return json_string_value(u);
}

static void handle_broadcast(vg_session_t *s, vg_http_request_t *req, const vg_route_match_t *rm)
{
    (void)rm;
    vg_identity_t id;
    int is_key, bad;
    if (require(s, req, 1, 1, &id, &is_key) != 0)
        return;
    vg_identity_dispose(&id);
    json_t *body = parse_body(s, req);
    if (body == NULL)
        return;
    json_t *type = json_object_get(body, "type");
    const char *user = optional_user(body, &bad);
    if (!json_is_string(type) || json_string_length(type) == 0 || bad) {
        json_decref(body);
        vg_session_respond_error(s, 400, "invalid_message",
                                 bad ? "user: must be a string" : "type: required string", NULL);
        return;
    }
    char ts[32];
    vg_format_rfc3339(vg_wall_ms(), ts);
    json_t *msg = json_pack("{s:O, s:s, s:O*}", "type", type, "timestamp", ts, "data",
                            json_object_get(body, "data"));
    char *text = json_dumps(msg, JSON_COMPACT);
    vg_chunk_t *frame = vg_ws_frame_new(VG_WS_OP_TEXT, text, strlen(text));
    free(text);
    json_decref(msg);
    vg_registry_t *reg = s->app->registry;
    size_t n = user ? vg_registry_user_count(reg, user) : vg_registry_total(reg);
    vg_hub_broadcast(s->app->hub, user, frame);
    vg_chunk_unref(frame);
    json_decref(body);
    respond_json(s, 200, json_pack("{s:I}", "delivered", (json_int_t)n));
}

static void count_conn(vg_reg_entry_t *e, void *arg)
{
    uint64_t *want = arg;
    if (e->conn_id == want[0])
        want[1]++;
}

static void handle_disconnect(vg_session_t *s, vg_http_request_t *req, const vg_route_match_t *rm)
{
    (void)rm;
    vg_identity_t id;
    int is_key, bad;
    if (require(s, req, 1, 1, &id, &is_key) != 0)
        return;
    vg_identity_dispose(&id);
    json_t *body = parse_body(s, req);
    if (body == NULL)
        return;
    const char *user = optional_user(body, &bad);
    json_t *conn_j = json_object_get(body, "connection_id");
    const char *conn = json_string_value(conn_j);
    json_t *code_j = json_object_get(body, "code");
    json_int_t code = code_j ? json_integer_value(code_j) : 1008;
    const char *reason = json_string_value(json_object_get(body, "reason"));
    const char *err = NULL;
    uint64_t conn_id = 0;
    if (bad || (user == NULL) == (conn == NULL))
        err = "give exactly one of \"user\" (string) or \"connection_id\" (string)";
    else if (conn != NULL &&
             vg_parse_hex(conn, json_string_length(conn_j), UINT64_MAX, &conn_id) != 0)
        err = "connection_id: expected the hexadecimal id of a connection, hex digits only (as "
              "in connection_status and /ws/connections)";
    else if (code_j != NULL && (!json_is_integer(code_j) ||
                                !(code == 1000 || code == 1001 || code == 1008 || code == 1011 ||
                                  code == 1013 || (code >= 4000 && code <= 4999))))
        err = "code: must be 1000, 1001, 1008, 1011, 1013 or 4000-4999";
    if (err != NULL) {
        json_decref(body);
        vg_session_respond_error(s, 400, "invalid_request", err, NULL);
        return;
    }
    uint64_t want[2] = {conn_id, 0};
    size_t n;
    if (user != NULL)
        n = vg_registry_user_count(s->app->registry, user);
    else {
        vg_registry_each(s->app->registry, NULL, count_conn, want);
        n = (size_t)want[1];
    }
    vg_hub_disconnect(s->app->hub, user, want[0], (int)code,
                      reason ? reason : "disconnected by an administrator");
    json_decref(body);
    respond_json(s, 200, json_pack("{s:I}", "disconnected", (json_int_t)n));
}

/* ---- /api/state/{name} ---- */

/* Decodes and validates the name ("state.<name>" must be a channel name). */
static int state_name(vg_session_t *s, const vg_route_match_t *rm, char *name, size_t cap)
{
    char raw[512], decoded[512];
    vg_iov_t p = rm->params[0];
    int n = -1;
    if (p.len + 1 < sizeof(raw)) {
        raw[0] = '/';
        memcpy(raw + 1, p.base, p.len);
        n = vg_http_path_decode((vg_iov_t){raw, p.len + 1}, decoded, sizeof(decoded));
    }
    char channel[600];
    if (n > 1 && (size_t)n - 1 < cap) {
        memcpy(name, decoded + 1, (size_t)n);
        snprintf(channel, sizeof(channel), "state.%s", name);
        const char *why = vg_channel_check_name(channel, strlen(channel));
        if (why == NULL)
            return 0;
        char message[300];
        snprintf(message, sizeof(message), "invalid state name: %s", why);
        vg_session_respond_error(s, 400, "invalid_name", message, NULL);
        return -1;
    }
    vg_session_respond_error(s, 400, "invalid_name", "invalid state name", NULL);
    return -1;
}

static void respond_state(vg_session_t *s, int status, json_t *doc, uint64_t version)
{
    char hdr[96];
    snprintf(hdr, sizeof(hdr), "ETag: \"%llu\"\r\nCache-Control: no-cache\r\n",
             (unsigned long long)version);
    char *text = json_dumps(doc, JSON_COMPACT | JSON_ENCODE_ANY);
    vg_session_respond(s, status, "application/json", hdr, text, strlen(text));
    free(text);
}

static void state_read(vg_session_t *s, vg_http_request_t *req, const char *name,
                       const vg_identity_t *id)
{
    char channel[600];
    snprintf(channel, sizeof(channel), "state.%s", name);
    if (!id->admin) {
        vg_patterns_t allowed;
        vg_identity_allowed(s->app, id, &allowed);
        if (!vg_patterns_covers(&allowed, channel, strlen(channel))) {
            vg_session_respond_error(s, 403, "forbidden", "not allowed to read this state", NULL);
            return;
        }
    }
    uint64_t version = 0;
    json_t *doc = vg_state_get(s->app->state, name, &version);
    if (doc == NULL) {
        vg_session_respond_error(s, 404, "not_found", "no such state document", NULL);
        return;
    }
    char etag[48];
    snprintf(etag, sizeof(etag), "\"%llu\"", (unsigned long long)version);
    vg_iov_t inm = vg_http_header_get(req, "If-None-Match");
    if (inm.base != NULL && (vg_iov_eq(inm, etag) || vg_iov_eq(inm, "*"))) {
        char hdr[96];
        snprintf(hdr, sizeof(hdr), "ETag: %s\r\n", etag);
        vg_session_respond(s, 304, NULL, hdr, NULL, 0);
    } else {
        respond_state(s, 200, doc, version);
    }
    json_decref(doc);
}

static void handle_state(vg_session_t *s, vg_http_request_t *req, const vg_route_match_t *rm)
{
    char name[256];
    int write = req->method != HTTP_GET && req->method != HTTP_HEAD;
    vg_identity_t id;
    int is_key;
    if (require(s, req, 1, 0, &id, &is_key) != 0)
        return;
    if (state_name(s, rm, name, sizeof(name)) != 0)
        goto Exit;
    if (!write) {
        state_read(s, req, name, &id);
        goto Exit;
    }
    if (!is_key) {
        vg_session_respond_error(s, 403, "forbidden", "changing state needs the API key", NULL);
        goto Exit;
    }
    if (req->method == HTTP_DELETE) {
        int rc = vg_state_delete(s->app->state, name);
        if (rc == VG_ESTORE)
            vg_session_respond_error(s, 500, "store_failed", "the deletion could not be stored",
                                     NULL);
        else if (rc != 0)
            vg_session_respond_error(s, 404, "not_found", "no such state document", NULL);
        else
            vg_session_respond(s, 204, NULL, NULL, NULL, 0);
        goto Exit;
    }
    json_error_t jerr;
    json_t *body = json_loadb(req->body.base, req->body.len, JSON_DECODE_ANY, &jerr);
    if (body == NULL || (req->method == HTTP_PUT && !json_is_object(body))) {
        vg_session_respond_error(s, 400, "bad_json", "the body must be a JSON object", NULL);
        json_decref(body);
        goto Exit;
    }
    uint64_t version;
    int rc = req->method == HTTP_PUT ? vg_state_put(s->app->state, name, body, &version)
                                     : vg_state_patch(s->app->state, name, body, &version);
    json_decref(body);
    if (rc == VG_ESTORE) {
        vg_session_respond_error(s, 500, "store_failed", "the document could not be stored", NULL);
        goto Exit;
    }
    if (rc != 0) {
        vg_session_respond_error(s, 400, "bad_json", "the patch is too deeply nested", NULL);
        goto Exit;
    }
    json_t *doc = vg_state_get(s->app->state, name, &version);
    respond_state(s, 200, doc, version);
    json_decref(doc);
Exit:
    vg_identity_dispose(&id);
}

/* ---- POST /api/ack, GET /api/alerts ---- */

static void handle_ack(vg_session_t *s, vg_http_request_t *req, const vg_route_match_t *rm)
{
    (void)rm;
    vg_identity_t id;
    int is_key;
    if (require(s, req, 0, 0, &id, &is_key) != 0)
        return;
    json_t *body = parse_body(s, req);
    if (body != NULL) {
        const char *msg_id = json_string_value(json_object_get(body, "id"));
        if (msg_id == NULL)
            vg_session_respond_error(s, 400, "invalid_request", "id: required string", NULL);
        else if (vg_acks_ack(&s->app->acks, id.user, msg_id) != 0)
            vg_session_respond_error(s, 500, "store_failed", "the ack could not be stored", NULL);
        else {
            respond_json(s, 200, json_pack("{s:s}", "acked", msg_id));
            vg_notify_acked(s->app, id.user, msg_id, 0);
        }
    }
    json_decref(body);
    vg_identity_dispose(&id);
}

static void handle_alerts(vg_session_t *s, vg_http_request_t *req, const vg_route_match_t *rm)
{
    (void)rm;
    vg_identity_t id;
    int is_key;
    if (require(s, req, 0, 0, &id, &is_key) != 0)
        return;
    uint64_t limit = 1000;
    if (query_number(s, req, "limit", 1, MAX_ALERTS, &limit) < 0) {
        vg_identity_dispose(&id);
        return;
    }
    vg_patterns_t allowed;
    vg_identity_allowed(s->app, &id, &allowed);
    json_t *list = vg_acks_list(&s->app->acks, id.user, &allowed, (size_t)limit);
    vg_identity_dispose(&id);
    if (list == NULL)
        vg_session_respond_error(s, 500, "store_failed", "the store could not be read", NULL);
    else
        respond_json(s, 200, json_pack("{s:o}", "alerts", list));
}

/* ---- GET /metrics ---- */

static void metric(vg_buf_t *b, const char *name, const char *type, const char *help, double v)
{
    vg_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n%s %.17g\n", name, help, name, type, name, v);
}

static void count_endpoint(vg_reg_entry_t *e, void *arg)
{
    struct {
        const char *name;
        size_t n;
    } *counts = arg;
    for (size_t i = 0; i < 8; i++) {
        if (counts[i].name == NULL || strcmp(counts[i].name, e->endpoint) == 0) {
            counts[i].name = e->endpoint;
            counts[i].n++;
            return;
        }
    }
}

static void append_by_endpoint(vg_buf_t *b, vg_app_t *app)
{
    struct {
        const char *name;
        size_t n;
    } counts[8] = {{"/ws", 0}};
    vg_registry_each(app->registry, NULL, count_endpoint, counts);
    vg_buf_append_str(b, "# HELP vigil_connections_by_endpoint Open WebSocket connections by "
                         "endpoint.\n# TYPE vigil_connections_by_endpoint gauge\n");
    for (size_t i = 0; i < 8 && counts[i].name != NULL; i++)
        vg_buf_printf(b, "vigil_connections_by_endpoint{endpoint=\"%s\"} %zu\n", counts[i].name,
                      counts[i].n);
}

static void append_refusals(vg_buf_t *b, vg_app_t *app)
{
    vg_buf_append_str(b, "# HELP vigil_handshake_failures_total WebSocket connections refused, "
                         "by reason.\n# TYPE vigil_handshake_failures_total counter\n");
    pthread_mutex_lock(&app->refusals_lock);
    for (size_t i = 0; i < app->num_refusals; i++)
        vg_buf_printf(b, "vigil_handshake_failures_total{reason=\"%s\"} %llu\n",
                      app->refusals[i].reason, (unsigned long long)app->refusals[i].count);
    pthread_mutex_unlock(&app->refusals_lock);
}

static void append_limit_hits(vg_buf_t *b, vg_app_t *app)
{
    vg_buf_append_str(b, "# HELP vigil_limit_hits_total Requests refused (or replays cut) at a "
                         "per-connection or per-user limit, by option.\n"
                         "# TYPE vigil_limit_hits_total counter\n");
    for (size_t i = 0; i < VG_LIMIT_COUNT; i++)
        vg_buf_printf(
            b, "vigil_limit_hits_total{limit=\"%s\"} %llu\n", vg_limit_names[i],
            (unsigned long long)atomic_load_explicit(&app->limit_hits[i], memory_order_relaxed));
}

static void handle_metrics(vg_session_t *s, vg_http_request_t *req, const vg_route_match_t *rm)
{
    (void)req;
    (void)rm;
    vg_app_t *app = s->app;
    vg_hub_stats_t st;
    vg_hub_stats_sum(app->hub, &st);
    vg_buf_t b = VG_BUF_INIT;
    metric(&b, "vigil_connections", "gauge", "Open WebSocket connections.",
           (double)vg_registry_total(app->registry));
    metric(&b, "vigil_users", "gauge", "Users with at least one open connection.",
           (double)vg_registry_users(app->registry));
    metric(&b, "vigil_messages_published_total", "counter", "Messages published.",
           (double)vg_hub_published(app->hub));
    metric(&b, "vigil_messages_delivered_total", "counter", "Messages queued to connections.",
           (double)st.delivered);
    metric(&b, "vigil_messages_dropped_total", "counter",
           "Deliveries skipped because the connection was closing or too slow.",
           (double)st.dropped);
    metric(&b, "vigil_bytes_out_total", "counter", "Bytes of delivered frames.",
           (double)st.bytes_out);
    metric(&b, "vigil_bytes_in_total", "counter", "Bytes received on WebSocket connections.",
           (double)st.bytes_in);
    metric(&b, "vigil_slow_consumer_disconnects_total", "counter",
           "Connections closed because their outbound queue overflowed.",
           (double)st.slow_consumers);
    metric(&b, "vigil_accept_pauses_total", "counter",
           "Accepts that failed for lack of file descriptors or memory; each paused accepting.",
           app->server ? (double)vg_server_accept_pauses(app->server) : 0.0);
    metric(&b, "vigil_uptime_seconds", "gauge", "Seconds since start.",
           (double)(vg_wall_ms() - app->started_ms) / 1e3);
    size_t channels;
    uint64_t channels_freed;
    vg_hub_channel_counts(app->hub, &channels, &channels_freed);
    metric(&b, "vigil_channels", "gauge",
           "Channel records held: published to within --history-ttl, with history, or durable.",
           (double)channels);
    metric(&b, "vigil_channels_freed_total", "counter",
           "Channel records freed after --history-ttl without a publish (at least 1 s).",
           (double)channels_freed);
    append_by_endpoint(&b, app);
    append_refusals(&b, app);
    if (app->append_metrics != NULL)
        app->append_metrics(app, &b);
    append_limit_hits(&b, app);
    vg_buf_append_str(&b, "# HELP vigil_publish_to_write_seconds Time from publish to the "
                          "message being queued on a worker's sockets.\n"
                          "# TYPE vigil_publish_to_write_seconds histogram\n");
    uint64_t cumulative = 0;
    for (size_t i = 0; i < 16; i++) {
        cumulative += st.latency_buckets[i];
        if (i == 15)
            vg_buf_printf(&b, "vigil_publish_to_write_seconds_bucket{le=\"+Inf\"} %llu\n",
                          (unsigned long long)cumulative);
        else
            vg_buf_printf(&b, "vigil_publish_to_write_seconds_bucket{le=\"%g\"} %llu\n",
                          vg_hub_latency_bounds_us[i] / 1e6, (unsigned long long)cumulative);
    }
    vg_buf_printf(&b, "vigil_publish_to_write_seconds_sum %.6f\n", (double)st.latency_sum_us / 1e6);
    vg_buf_printf(&b, "vigil_publish_to_write_seconds_count %llu\n",
                  (unsigned long long)st.latency_count);
    vg_session_respond(s, 200, "text/plain; version=0.0.4; charset=utf-8", NULL, b.base, b.len);
    vg_buf_dispose(&b);
}

void vg_api_register(vg_app_t *app)
{
    vg_app_route(app, "/api/publish", VG_M_POST, handle_publish);
    vg_app_route(app, "/api/ws/ticket", VG_M_POST, handle_ticket);
    vg_app_route(app, "/api/ws/status", VG_M_GET, handle_status);
    vg_app_route(app, "/ws/connections", VG_M_GET, handle_connections);
    vg_app_route(app, "/ws/connections/{user_id}", VG_M_GET, handle_connections);
    vg_app_route(app, "/api/broadcast", VG_M_POST, handle_broadcast);
    vg_app_route(app, "/api/disconnect", VG_M_POST, handle_disconnect);
    vg_app_route(app, "/metrics", VG_M_GET, handle_metrics);
    vg_app_route(app, "/api/sse", VG_M_GET, vg_sse_handle);
    vg_app_route(app, "/api/poll", VG_M_GET, vg_poll_handle);
    vg_app_route(app, "/api/ack", VG_M_POST, handle_ack);
    vg_app_route(app, "/api/alerts", VG_M_GET, handle_alerts);
    vg_app_route(app, "/api/state/{name}", VG_M_GET | VG_M_PUT | VG_M_PATCH | VG_M_DELETE,
                 handle_state);
}
