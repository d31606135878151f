/*
 * Client RPC forwarded to the backend (rpc.h).  The blocking HTTP client runs on libuv's thread
 * pool; the answer comes back on the worker loop that asked (uv_queue_work's after callback), so
 * the connection that asked is only ever touched on its own thread.
 */
#include "transport/rpc.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/httpc.h"
#include "proto/utf8.h"
#include "util/alloc.h"
#include "util/error.h"
#include "util/log.h"

/* ---- calls in flight, per connection and per user ---- */

#define INFLIGHT_BUCKETS 256

/* One connection's (user NULL) or one user's (conn_id 0) calls in flight; freed at zero, so
 * the table holds only callers with a call running. */
typedef struct inflight_s {
    struct inflight_s *next;
    uint64_t conn_id;
    char *user;
    int count;
} inflight_t;

struct vg_rpc_limits_s {
    pthread_mutex_t lock; /* calls are rare next to messages: one lock for all workers is fine */
    int per_connection, per_user;
    inflight_t *buckets[INFLIGHT_BUCKETS];
};

vg_rpc_limits_t *vg_rpc_limits_new(int per_connection, int per_user)
{
    vg_rpc_limits_t *l = vg_calloc(1, sizeof(*l));
    pthread_mutex_init(&l->lock, NULL);
    l->per_connection = per_connection;
    l->per_user = per_user;
    return l;
}

void vg_rpc_limits_free(vg_rpc_limits_t *l)
{
    if (l == NULL)
        return;
    /* Every call has been answered by now (the loops ran until their work was done). */
    for (size_t i = 0; i < INFLIGHT_BUCKETS; i++) {
        for (inflight_t *e = l->buckets[i], *next; e != NULL; e = next) {
            next = e->next;
            vg_free(e->user);
            vg_free(e);
        }
    }
    pthread_mutex_destroy(&l->lock);
    vg_free(l);
}

static size_t bucket_of(uint64_t conn_id, const char *user)
{
    uint64_t h = 1469598103934665603ull ^ conn_id;
    for (const char *p = user; p != NULL && *p != '\0'; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ull;
    h ^= h >> 29;
    return (size_t)(h % INFLIGHT_BUCKETS);
}

/* The entry of a connection (user NULL) or a user (conn_id 0), created at count 0 if asked. */
static inflight_t **find_slot(vg_rpc_limits_t *l, uint64_t conn_id, const char *user)
{
    inflight_t **p = &l->buckets[bucket_of(conn_id, user)];
    for (; *p != NULL; p = &(*p)->next) {
        inflight_t *e = *p;
        if (e->conn_id == conn_id &&
            (user == NULL ? e->user == NULL : e->user != NULL && strcmp(e->user, user) == 0))
            break;
    }
    return p;
}

static int inflight_count(vg_rpc_limits_t *l, uint64_t conn_id, const char *user)
{
    inflight_t *e = *find_slot(l, conn_id, user);
    return e != NULL ? e->count : 0;
}

static void inflight_add(vg_rpc_limits_t *l, uint64_t conn_id, const char *user, int delta)
{
    inflight_t **p = find_slot(l, conn_id, user);
    if (*p == NULL) {
        inflight_t *e = vg_calloc(1, sizeof(*e));
        e->conn_id = conn_id;
        e->user = user != NULL ? vg_strdup(user) : NULL;
        *p = e;
    }
    inflight_t *e = *p;
    e->count += delta;
    if (e->count <= 0) {
        *p = e->next;
        vg_free(e->user);
        vg_free(e);
    }
}

/* Takes a slot for the call, or says which bound refuses it. */
static int admit(vg_app_t *app, vg_rpc_caller_t *who)
{
    vg_rpc_limits_t *l = app->rpc;
    const char *user = who->anonymous ? NULL : who->user;
    int limit = VG_LIMIT_COUNT;
    pthread_mutex_lock(&l->lock);
    if (inflight_count(l, who->conn_id, NULL) >= l->per_connection)
        limit = VG_LIMIT_RPC_CONNECTION;
    else if (user != NULL && inflight_count(l, 0, user) >= l->per_user)
        limit = VG_LIMIT_RPC_USER;
    if (limit == VG_LIMIT_COUNT) {
        inflight_add(l, who->conn_id, NULL, 1);
        if (user != NULL)
            inflight_add(l, 0, user, 1);
    }
    pthread_mutex_unlock(&l->lock);
    if (limit == VG_LIMIT_COUNT)
        return 0;
    atomic_fetch_add_explicit(&app->limit_hits[limit], 1, memory_order_relaxed);
    who->busy = limit == VG_LIMIT_RPC_CONNECTION
                    ? "busy: too many calls in flight on this connection "
                      "(--max-rpc-inflight-per-connection); retry when one is answered"
                    : "busy: too many calls in flight for this user (--max-rpc-inflight-per-user); "
                      "retry when one is answered";
    vg_verbose("rpc: conn %" PRIu64 " user %s refused: %s", who->conn_id, who->user, who->busy);
    return VG_ELIMIT;
}

static void release(vg_rpc_limits_t *l, uint64_t conn_id, const char *user)
{
    pthread_mutex_lock(&l->lock);
    inflight_add(l, conn_id, NULL, -1);
    if (user != NULL)
        inflight_add(l, 0, user, -1);
    pthread_mutex_unlock(&l->lock);
}

/* ---- the calls ---- */

typedef struct rpc_call_s {
    uv_work_t work;
    vg_rpc_limits_t *limits; /* the slot to give back */
    uint64_t conn_id;
    char *user_key; /* the per-user slot's key, NULL for an anonymous caller */
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

/* The first failure wins: "<what>" or "<what>: <detail>" (detail may be NULL), cut on a UTF-8
 * boundary: the text goes into a JSON answer, which an invalid string would make unsendable. */
static void set_error(rpc_call_t *c, const char *what, const char *detail)
{
    if (c->error[0] != '\0')
        return;
    size_t n = vg_utf8_prefix(what, sizeof(c->error) - 1);
    memcpy(c->error, what, n);
    c->error[n] = '\0';
    if (detail != NULL && n + 2 < sizeof(c->error)) {
        size_t d = vg_utf8_prefix(detail, sizeof(c->error) - n - 3);
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
    vg_free(c->user_key);
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
    release(c->limits, c->conn_id, c->user_key);
    if (status == UV_ECANCELED)
        set_error(c, "server shutting down", NULL);
    if (c->error[0] != '\0')
        c->done(c->arg, c->status, NULL, c->error);
    else
        c->done(c->arg, c->status, c->result, NULL);
    free_call(c);
}

int vg_rpc_call(vg_app_t *app, vg_worker_t *w, vg_rpc_caller_t *who, const char *method,
                json_t *params, vg_rpc_done_cb done, void *arg)
{
    if (admit(app, who) != 0)
        return VG_ELIMIT;
    const char *user = who->user;
    rpc_call_t *c = vg_calloc(1, sizeof(*c));
    c->limits = app->rpc;
    c->conn_id = who->conn_id;
    c->user_key = who->anonymous ? NULL : vg_strdup(who->user);
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
