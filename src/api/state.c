/*
 * /api/state/{name}: state documents read by users allowed their channel, written (PUT, PATCH,
 * DELETE) with the API key.
 */
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/internal.h"
#include "core/state.h"
#include "proto/channel.h"
#include "util/alloc.h"
#include "util/error.h"

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

void vg__api_handle_state(vg_session_t *s, vg_http_request_t *req, const vg_route_match_t *rm)
{
    char name[256];
    int write = req->method != HTTP_GET && req->method != HTTP_HEAD;
    vg_identity_t id;
    int is_key;
    if (vg__api_require(s, req, 1, 0, &id, &is_key) != 0)
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
