/*
 * The plain HTTP resources: the health check and the files of web/ (the dashboard and vigil.js),
 * embedded in the binary at build time (api/web_assets.c).
 */
#include <string.h>

#include "api/api.h"
#include "api/web_assets.h"
#include "util/buf.h"

static void handle_healthz(vg_session_t *s, vg_http_request_t *req, const vg_route_match_t *m)
{
    (void)m;
    static const char body[] = "{\"status\":\"ok\"}";
    int head = req->method == HTTP_HEAD;
    vg_buf_t out = VG_BUF_INIT;
    if (head) {
        /* HEAD: the headers GET would send, without the body. */
        vg_http_write_response(&out, 200, "application/json", "Cache-Control: no-store\r\n", body,
                               sizeof(body) - 1, s->keep_alive);
        out.len -= sizeof(body) - 1;
        vg_session_respond_raw(s, &out);
    } else {
        vg_session_respond(s, 200, "application/json", "Cache-Control: no-store\r\n", body,
                           sizeof(body) - 1);
    }
    vg_buf_dispose(&out);
}

/* Files from web/, embedded in the binary.  The path is decoded and checked first, so that no
 * spelling of ".." can name anything outside web/ (and 404 is the answer, not 400, so probes
 * learn nothing). */
static void handle_static(vg_session_t *s, vg_http_request_t *req, const vg_route_match_t *m)
{
    (void)m;
    char path[1024];
    const vg_web_asset_t *asset = NULL;
    if (vg_http_path_decode(req->path, path, sizeof(path)) >= 0)
        asset = vg_web_asset_find(path);
    if (asset == NULL) {
        vg_session_respond_error(s, 404, "not_found", "no such resource", NULL);
        return;
    }
    if (req->method != HTTP_GET && req->method != HTTP_HEAD) {
        vg_session_respond_error(s, 405, "method_not_allowed",
                                 "method not allowed for this resource", "Allow: GET, HEAD\r\n");
        return;
    }
    const char *type = vg_web_content_type(asset->path);
    const char *cache = "Cache-Control: no-cache\r\nX-Content-Type-Options: nosniff\r\n";
    vg_buf_t out = VG_BUF_INIT;
    vg_http_write_response(&out, 200, type, cache, asset->data, asset->len, s->keep_alive);
    if (req->method == HTTP_HEAD)
        out.len -= asset->len;
    vg_session_respond_raw(s, &out);
    vg_buf_dispose(&out);
}

void vg_api_register_health(vg_app_t *app)
{
    vg_app_route(app, "/healthz", VG_M_GET | VG_M_HEAD, handle_healthz);
}

void vg_api_register_static(vg_app_t *app)
{
    /* Last: any other path is a static file or 404, whatever the method. */
    vg_app_route(app, "/*", VG_M_ANY, handle_static);
}
