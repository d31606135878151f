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

#include "transport/transport.h"

/* Runs on the calling worker's loop thread.  Exactly one of result (borrowed) and error (static
 * or borrowed text) is non-NULL; status is the backend's HTTP status, or 0 when there was none. */
typedef void (*vg_rpc_done_cb)(void *arg, int status, json_t *result, const char *error);

/* Worker thread.  Starts the call (params: borrowed, may be NULL) and returns 0; done() is then
 * always called once, later, on w's loop, even when the server is stopping.  The caller keeps
 * whatever arg points to alive until then (or makes done() check that its connection is still
 * there, e.g. by connection id). */
int vg_rpc_call(vg_app_t *app, vg_worker_t *w, const char *user, const char *method, json_t *params,
                vg_rpc_done_cb done, void *arg);

#endif
