/*
 * vg_app_t: the server application shared (read-only after start) by every worker: the
 * configuration and the route table.  vg_session_t: the app's state for one connection, which
 * starts as HTTP/1.1 and may become a WebSocket.
 */
#ifndef VG_APP_APP_H
#define VG_APP_APP_H

#include <stdint.h>

#include "app/config.h"
#include "app/router.h"
#include "net/conn.h"
#include "net/server.h"
#include "proto/http1.h"
#include "proto/ws.h"

typedef struct vg_session_s vg_session_t;

/* What a WebSocket endpoint does with its connections. */
typedef struct vg_ws_endpoint_s {
    const char *const *subprotocols; /* NULL-terminated list the endpoint speaks, or NULL */
    void (*on_open)(vg_session_t *s);
    void (*on_message)(vg_session_t *s, int opcode, uint8_t *data, size_t len);
    void (*on_close)(vg_session_t *s); /* may be NULL */
} vg_ws_endpoint_t;

/* An HTTP handler answers the request through vg_session_respond* (or upgrades). */
typedef void (*vg_http_handler_cb)(vg_session_t *s, vg_http_request_t *req,
                                   const vg_route_match_t *m);

typedef struct vg_app_s {
    const vg_config_t *cfg;
    vg_router_t router;
    vg_http_limits_t http_limits;
    vg_server_t *server;
} vg_app_t;

struct vg_session_s {
    vg_conn_t *conn;
    vg_app_t *app;
    vg_http_parser_t *http;             /* while the connection speaks HTTP */
    vg_ws_t *ws;                        /* once it is a WebSocket */
    const vg_ws_endpoint_t *endpoint;   /* the WebSocket's endpoint */
    void *endpoint_data;                /* the endpoint's per-connection state */
    const char *subprotocol;            /* the one negotiated, or NULL */
    int timing_request;                 /* the request timer runs for the current request */
    int keep_alive;                     /* the response being written keeps the connection */
};

/* Registers the routes and prepares the app. */
void vg_app_init(vg_app_t *app, const vg_config_t *cfg);
void vg_app_dispose(vg_app_t *app);
/* vg_server_callbacks_t.on_accept: makes a session for a new connection. */
void vg_app_on_accept(vg_worker_t *w, vg_conn_t *c);

/* HTTP responses (the session decides keep-alive). */
void vg_session_respond(vg_session_t *s, int status, const char *content_type,
                        const char *extra_headers, const void *body, size_t len);
void vg_session_respond_error(vg_session_t *s, int status, const char *code,
                              const char *message, const char *extra_headers);
/* Sends a response already formatted with vg_http_write_response (e.g. to trim a HEAD body). */
void vg_session_respond_raw(vg_session_t *s, vg_buf_t *response);
/* Answers 101 and turns the connection into a WebSocket served by `endpoint`. */
void vg_session_upgrade(vg_session_t *s, vg_http_request_t *req,
                        const vg_ws_endpoint_t *endpoint);

/* WebSocket sending: queues one frame chunk (shared; the caller keeps its reference).  A
 * connection whose queue would overflow is closed with 1008 "slow consumer".  Returns 0 or a
 * negative code when the frame was not queued. */
int vg_session_ws_send(vg_session_t *s, vg_chunk_t *frame);
int vg_session_ws_send_text(vg_session_t *s, const char *text, size_t len);
/* Starts the closing handshake with code and reason. */
void vg_session_ws_close(vg_session_t *s, int code, const char *reason);

/* Endpoints. */
extern const vg_ws_endpoint_t vg_echo_endpoint;
extern const vg_ws_endpoint_t vg_native_endpoint;

#endif
