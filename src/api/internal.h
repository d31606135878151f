/*
 * What the files of api/ share: the helpers every handler uses (common.c) and the handlers the
 * route table (api.c) adds.
 */
#ifndef VG_API_INTERNAL_H
#define VG_API_INTERNAL_H

#include <jansson.h>
#include <stdint.h>

#include "transport/transport.h"

#define VG_API_MAX_BATCH    1000
#define VG_API_MAX_TYPE_LEN 100
#define VG_API_MAX_ALERTS   1000000 /* GET /api/alerts?limit= */

void vg__api_respond_json(vg_session_t *s, int status, json_t *body);
/* Authenticates an HTTP request: a user token (?token=, Authorization: Bearer) or, when
 * allow_api_key, the API key (Bearer or X-API-Key).  Returns 0 and fills *id (dispose it) and
 * *is_api_key, or VG_EAUTH with a reason. */
int vg__api_http_auth(vg_session_t *s, vg_http_request_t *req, int allow_api_key, vg_identity_t *id,
                      int *is_api_key, const char **reason);
/* Authenticates or answers 401/403.  Returns 0 when the handler may go on. */
int vg__api_require(vg_session_t *s, vg_http_request_t *req, int allow_api_key, int admin,
                    vg_identity_t *id, int *is_api_key);
json_t *vg__api_parse_body(vg_session_t *s, vg_http_request_t *req);
/* Reads the query parameter `name` as a plain decimal in [min, max] (util/num.h: no sign,
 * space, prefix or trailing junk).  Returns 1 with *out set, 0 when absent, or -1 after
 * answering 400 with a message naming the parameter and its range. */
int vg__api_query_number(vg_session_t *s, vg_http_request_t *req, const char *name, uint64_t min,
                         uint64_t max, uint64_t *out);

/* The handlers. */
void vg__api_handle_publish(vg_session_t *s, vg_http_request_t *req, const vg_route_match_t *rm);
void vg__api_handle_ticket(vg_session_t *s, vg_http_request_t *req, const vg_route_match_t *rm);
void vg__api_handle_status(vg_session_t *s, vg_http_request_t *req, const vg_route_match_t *rm);
void vg__api_handle_connections(vg_session_t *s, vg_http_request_t *req,
                                const vg_route_match_t *rm);
void vg__api_handle_broadcast(vg_session_t *s, vg_http_request_t *req, const vg_route_match_t *rm);
void vg__api_handle_disconnect(vg_session_t *s, vg_http_request_t *req, const vg_route_match_t *rm);
void vg__api_handle_state(vg_session_t *s, vg_http_request_t *req, const vg_route_match_t *rm);
void vg__api_handle_ack(vg_session_t *s, vg_http_request_t *req, const vg_route_match_t *rm);
void vg__api_handle_alerts(vg_session_t *s, vg_http_request_t *req, const vg_route_match_t *rm);
void vg__api_handle_metrics(vg_session_t *s, vg_http_request_t *req, const vg_route_match_t *rm);

#endif
