/*
 * Client RPC forwarded to the backend (rpc.h).  The blocking HTTP client runs on libuv's thread
 * pool; the answer comes back on the worker loop that asked (uv_queue_work's after callback), so
 * the connection that asked is only ever touched on its own thread.
 */
#include "transport/rpc.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/httpc.h"
#include "util/alloc.h"
#include "util/log.h"

typedef struct rpc_call_s {
    uv_work_t work;
    /* in */
    char *url;
    char *body;
    char *api_key;
    int timeout_ms;
    vg_rpc_done_cb done;
    void *arg;
    /* out (written on the pool thread, read after it) */
    int status;
    json_t *result;
    char error[160];
} rpc_call_t;

static atomic_uint_fast64_t next_call_id;

/* The first failure wins: "<what>" or "<what>: <detail>" (detail may be NULL). */
static void set_error(rpc_call_t *c, const char *what, const char *detail)
{
    if (c->error[0] != '\0')
        return;
    size_t n = strlen(what) < sizeof(c->error) - 1 ? strlen(what) : sizeof(c->error) - 1;
    memcpy(c->error, what, n);
    c->error[n] = '\0';
    if (detail != NULL && n + 2 < sizeof(c->error)) {
        size_t room = sizeof(c->error) - n - 3;
        size_t d = strlen(detail) < room ? strlen(detail) : room;
        memcpy(c->error + n, ": ", 2);
        memcpy(c->error + n + 2, detail, d);
        c->error[n + 2 + d] = '\0';
    }
}

/* Pool thread: one POST, its JSON answer parsed. */
static void run_call(uv_work_t *work)
{
    rpc_call_t *c = work->data;
    if (c->error[0] != '\0')
        return; /* refused before the call (no --rpc-url): answered like any other */
    vg_httpc_t client;
    vg_httpc_response_t r;
    char headers[600] = "Content-Type: application/json\r\n";
    if (c->api_key != NULL)
        snprintf(headers + strlen(headers), sizeof(headers) - strlen(headers),
                 "Authorization: Bearer %s\r\n", c->api_key);
    if (vg_httpc_init(&client, c->url, c->timeout_ms) != 0) {
        set_error(c, "backend unreachable", client.errstr);
        vg_httpc_dispose(&client);
        return;
    }
    int rc =
        vg_httpc_request(&client, "POST", client.url.path, headers, c->body, strlen(c->body), &r);
    if (rc != 0) {
        set_error(c, "backend unreachable", client.errstr);
    } else {
        c->status = r.status;
        c->result = json_loadb((const char *)r.body.base, r.body.len, JSON_DECODE_ANY, NULL);
        if (r.status < 200 || r.status > 299) {
            char what[48];
            snprintf(what, sizeof(what), "backend answered HTTP %d", r.status);
            set_error(c, what, NULL);
        } else if (c->result == NULL) {
            set_error(c, "backend answered something that is not JSON", NULL);
        }
    }
    vg_httpc_response_dispose(&r);
    vg_httpc_dispose(&client);
}

static void free_call(rpc_call_t *c)
{
    json_decref(c->result);
    vg_free(c->url);
    vg_free(c->api_key);
    free(c->body);
    vg_free(c);
}

/* Worker loop thread: hand the answer to the caller. */
static void call_done(uv_work_t *work, int status)
{
    rpc_call_t *c = work->data;
    if (status == UV_ECANCELED)
        set_error(c, "server shutting down", NULL);
    if (c->error[0] != '\0')
        c->done(c->arg, c->status, NULL, c->error);
    else
        c->done(c->arg, c->status, c->result, NULL);
    free_call(c);
}

int vg_rpc_call(vg_app_t *app, vg_worker_t *w, const char *user, const char *method, json_t *params,
                vg_rpc_done_cb done, void *arg)
{
    rpc_call_t *c = vg_calloc(1, sizeof(*c));
    c->done = done;
    c->arg = arg;
    c->work.data = c;
    const char *url = app->cfg->rpc_url;
    json_t *body = json_pack("{s:s, s:O*, s:s, s:I}", "method", method, "params", params, "user",
                             user, "id", (json_int_t)atomic_fetch_add(&next_call_id, 1) + 1);
    if (params == NULL)
        json_object_set_new(body, "params", json_null());
    c->body = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    c->url = vg_strdup(url != NULL ? url : "");
    c->api_key = app->cfg->api_key ? vg_strdup(app->cfg->api_key) : NULL;
    c->timeout_ms = (int)(app->cfg->rpc_timeout * 1000);
    if (url == NULL)
        set_error(c, "no backend is configured for RPC (--rpc-url)", NULL);
    /* Even a call refused up front is answered from the loop, later, so callers have one path. */
    if (uv_queue_work(&w->loop, &c->work, run_call, call_done) != 0) {
        vg_warning("rpc: could not queue the call");
        set_error(c, "could not start the call", NULL);
        call_done(&c->work, 0);
    }
    return 0;
}
