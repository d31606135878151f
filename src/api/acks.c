/*
 * Acknowledged delivery over HTTP: POST /api/ack and GET /api/alerts (a user's pending messages).
 */
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/internal.h"
#include "core/acks.h"
#include "util/alloc.h"

/* ---- POST /api/ack, GET /api/alerts ---- */

void vg__api_handle_ack(vg_session_t *s, vg_http_request_t *req, const vg_route_match_t *rm)
{
    (void)rm;
    vg_identity_t id;
    int is_key;
    if (vg__api_require(s, req, 0, 0, &id, &is_key) != 0)
        return;
    json_t *body = vg__api_parse_body(s, req);
    if (body != NULL) {
        const char *msg_id = json_string_value(json_object_get(body, "id"));
        if (msg_id == NULL)
            vg_session_respond_error(s, 400, "invalid_request", "id: required string", NULL);
        else if (vg_acks_ack(&s->app->acks, id.user, msg_id) != 0)
            vg_session_respond_error(s, 500, "store_failed", "the ack could not be stored", NULL);
        else {
            vg__api_respond_json(s, 200, json_pack("{s:s}", "acked", msg_id));
            vg_notify_acked(s->app, id.user, msg_id, 0);
        }
    }
    json_decref(body);
    vg_identity_dispose(&id);
}

void vg__api_handle_alerts(vg_session_t *s, vg_http_request_t *req, const vg_route_match_t *rm)
{
    (void)rm;
    vg_identity_t id;
    int is_key;
    if (vg__api_require(s, req, 0, 0, &id, &is_key) != 0)
        return;
    uint64_t limit = 1000;
    if (vg__api_query_number(s, req, "limit", 1, VG_API_MAX_ALERTS, &limit) < 0) {
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
        vg__api_respond_json(s, 200, json_pack("{s:o}", "alerts", list));
}
