/*
 * Client RPC forwarded to the application's backend (--rpc-url): the native {"type":"rpc"}
 * message and Socket.IO events a client emits.  The call is an HTTP POST of
 *   {"method":M,"params":P,"user":U,"id":N}
 * (Content-Type: application/json, Authorization: Bearer <--api-key> when one is set) made on
 * libuv's thread pool so no worker loop waits for the backend; the backend's 2xx JSON body is
 * the result.  Anything else (no --rpc-url, connection refused, timeout, non-2xx, a body that is
 * not JSON) is an error with a short, client-presentable text.
 */
#ifndef VG_TRANSPORT_RPC_H
#define VG_TRANSPORT_RPC_H

#include <jansson.h>
#include <stdint.h>

#include "transport/transport.h"

/* Fairness.  The calls run on libuv's thread pool (4 threads unless UV_THREADPOOL_SIZE says
 * otherwise), so a slow backend call holds a thread for up to --rpc-timeout.  Calls in flight
 * are bounded per connection (--max-rpc-inflight-per-connection) and per user
 * (--max-rpc-inflight-per-user): a call past either bound is refused at once, so one user can
 * never occupy the pool and hold everyone else's calls behind its own.  Token-less clients all
 * share the user name "anonymous" and are bounded per connection only. */
typedef struct vg_rpc_limits_s vg_rpc_limits_t;

vg_rpc_limits_t *vg_rpc_limits_new(int per_connection, int per_user);
void vg_rpc_limits_free(vg_rpc_limits_t *l);

/* Who makes a call. */
typedef struct vg_rpc_caller_s {
    uint64_t conn_id; /* the connection (or Socket.IO session) that asks */
    const char *user; /* sent to the backend as "user" */
    int anonymous;    /* a token-less client: no per-user bound */
    /* out: when the call is refused (VG_ELIMIT), why, for the client (static text) */
    const char *busy;
} vg_rpc_caller_t;

/* Runs on the calling worker's loop thread.  Exactly one of result (borrowed) and error (static
 * or borrowed text) is non-NULL; status is the backend's HTTP status, or 0 when there was none. */
typedef void (*vg_rpc_done_cb)(void *arg, int status, json_t *result, const char *error);

/* Worker thread.  Starts the call (params: borrowed, may be NULL) and returns 0; done() is then
 * always called once, later, on w's loop, even when the server is stopping.  The caller keeps
 * whatever arg points to alive until then (or makes done() check that its connection is still
 * there, e.g. by connection id).  Returns VG_ELIMIT when the caller's connection or user already
 * has its bound of calls in flight: nothing is started, done() is never called, who->busy says
 * which bound, and the caller answers the client at once with its protocol's rpc error. */
int vg_rpc_call(vg_app_t *app, vg_worker_t *w, vg_rpc_caller_t *who, const char *method,
                json_t *params, vg_rpc_done_cb done, void *arg);

#endif
