/*
 * Connections and their control: single-use tickets, status, the connections view, broadcast and
 * disconnect (admin).
 */
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/internal.h"
#include "core/hub.h"
#include "util/alloc.h"
#include "util/clock.h"
#include "util/num.h"

/* ---- POST /api/ws/ticket ---- */

void vg__api_handle_ticket(vg_session_t *s, vg_http_request_t *req, const vg_route_match_t *rm)
{
    (void)rm;
    vg_identity_t id;
    int is_key;
    if (vg__api_require(s, req, 0, 0, &id, &is_key) != 0)
        return;
    char ticket[64];
    vg_auth_ticket_issue(s->app->auth, &id, vg_wall_seconds(), ticket);
    vg_identity_dispose(&id);
    vg__api_respond_json(s, 200, json_pack("{s:s, s:i}", "ticket", ticket, "expires_in", 30));
}

/* ---- GET /api/ws/status ---- */

void vg__api_handle_status(vg_session_t *s, vg_http_request_t *req, const vg_route_match_t *rm)
{
    (void)rm;
    vg_identity_t id;
    int is_key;
    if (vg__api_require(s, req, 1, 0, &id, &is_key) != 0)
        return;
    vg_registry_t *reg = s->app->registry;
    json_t *stats = json_pack("{s:I, s:I}", "total_connections", (json_int_t)vg_registry_total(reg),
                              "total_users", (json_int_t)vg_registry_users(reg));
    if (id.admin)
        json_object_set_new(stats, "connections_by_user", vg_registry_connections_by_user(reg));
    json_int_t mine = is_key ? 0 : (json_int_t)vg_registry_user_count(reg, id.user);
    vg_identity_dispose(&id);
    vg__api_respond_json(s, 200,
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

void vg__api_handle_connections(vg_session_t *s, vg_http_request_t *req, const vg_route_match_t *rm)
{
    vg_identity_t id;
    int is_key;
    if (vg__api_require(s, req, 1, 1, &id, &is_key) != 0)
        return;
    vg_identity_dispose(&id);
    int64_t now = vg_wall_ms();
    if (rm->num_params == 0) {
        json_t *list = mark_connected(vg_registry_describe(s->app->registry, NULL, now));
        vg__api_respond_json(s, 200,
                             json_pack("{s:I, s:o}", "total_connections",
                                       (json_int_t)json_array_size(list), "connections", list));
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
    vg__api_respond_json(s, 200, answer);
}

/* ---- POST /api/broadcast, /api/disconnect ---- */

static const char *optional_user(json_t *body, int *bad)
{
    json_t *u = json_object_get(body, "user");
    *bad = u != NULL && !json_is_null(u) && !json_is_string(u);
    return json_string_value(u);
}

void vg__api_handle_broadcast(vg_session_t *s, vg_http_request_t *req, const vg_route_match_t *rm)
{
    (void)rm;
    vg_identity_t id;
    int is_key, bad;
    if (vg__api_require(s, req, 1, 1, &id, &is_key) != 0)
        return;
    vg_identity_dispose(&id);
    json_t *body = vg__api_parse_body(s, req);
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
    vg__api_respond_json(s, 200, json_pack("{s:I}", "delivered", (json_int_t)n));
}

static void count_conn(vg_reg_entry_t *e, void *arg)
{
    uint64_t *want = arg;
    if (e->conn_id == want[0])
        want[1]++;
}

void vg__api_handle_disconnect(vg_session_t *s, vg_http_request_t *req, const vg_route_match_t *rm)
{
    (void)rm;
    vg_identity_t id;
    int is_key, bad;
    if (vg__api_require(s, req, 1, 1, &id, &is_key) != 0)
        return;
    vg_identity_dispose(&id);
    json_t *body = vg__api_parse_body(s, req);
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
    vg__api_respond_json(s, 200, json_pack("{s:I}", "disconnected", (json_int_t)n));
}
