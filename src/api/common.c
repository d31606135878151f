/*
 * What every API handler does the same way: authenticate (a user token or the API key), read a
 * JSON body, answer JSON, and read query numbers strictly.
 */
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/internal.h"
#include "util/alloc.h"
#include "util/clock.h"
#include "util/error.h"
#include "util/num.h"

void vg__api_respond_json(vg_session_t *s, int status, json_t *body)
{
    char *text = json_dumps(body, JSON_COMPACT);
    vg_session_respond(s, status, "application/json", "Cache-Control: no-store\r\n", text,
                       strlen(text));
    free(text);
    json_decref(body);
}

int vg__api_http_auth(vg_session_t *s, vg_http_request_t *req, int allow_api_key, vg_identity_t *id,
                      int *is_api_key, const char **reason)
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
int vg__api_require(vg_session_t *s, vg_http_request_t *req, int allow_api_key, int admin,
                    vg_identity_t *id, int *is_api_key)
{
    const char *reason = "unauthorized";
    if (vg__api_http_auth(s, req, allow_api_key, id, is_api_key, &reason) != 0) {
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

json_t *vg__api_parse_body(vg_session_t *s, vg_http_request_t *req)
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
int vg__api_query_number(vg_session_t *s, vg_http_request_t *req, const char *name, uint64_t min,
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
