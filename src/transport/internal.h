/*
 * What the files of transport/ share among themselves and nothing above them may call: the
 * WebSocket user side (wsuser.c) that session.c drives, the SSE and long-poll streams, and the
 * helpers they share (libuv's internal.h plays this part for src/unix/).
 */
#ifndef VG_TRANSPORT_INTERNAL_H
#define VG_TRANSPORT_INTERNAL_H

#include "transport/transport.h"

/*
 * The order of the files here, bottom up; each calls only those before it:
 *   router, app          the route table, refusal and limit counts
 *   session              a connection's HTTP and WebSocket life
 *   wsuser               who a stream is: auth, registry, heartbeats, rate, delivery filters
 *   stream, replay       what SSE and long-poll share; acknowledged messages replayed
 *   sse, poll, native, echo, rpc   the transports themselves
 *   init                 vg_transport_init: wires the hooks below
 * session.c reaches the user side through app->wsuser and a fallback stream through its
 * endpoint's deliver/on_timer/on_close, never by calling up.
 */

/* The user side of a stream (wsuser.c) as the connection code (session.c) calls it. */
typedef struct vg_wsuser_ops_s {
    /* Before the 101: checks Origin and authenticates.  Returns 0 to go on (with *fail_reason set
     * when the socket must be closed with 1008 right after the handshake), or an HTTP status
     * already answered (403). */
    int (*preupgrade)(vg_session_t *s, vg_http_request_t *req, const char **fail_reason);
    /* After the 101: registers the connection, starts heartbeats, calls the endpoint's on_open. */
    void (*open)(vg_session_t *s, const char *fail_reason);
    /* Bytes arrived: the peer is alive. */
    void (*seen)(vg_session_t *s, size_t bytes);
    /* A message arrived: rate limit.  Returns nonzero when the endpoint may handle it. */
    int (*admit)(vg_session_t *s, const uint8_t *data, size_t len);
    /* The connection's timer fired while the WebSocket is open (heartbeat, token expiry). */
    void (*timer)(vg_session_t *s);
    /* The connection is going away: leave the index, the registry, the listener list. */
    void (*cleanup)(vg_session_t *s);
} vg_wsuser_ops_t;
extern const vg_wsuser_ops_t vg__wsuser_ops;

/* The context's route table and counters (app.c), under vg_transport_init. */
void vg__app_init(vg_app_t *app, const vg_config_t *cfg);
void vg__app_dispose(vg_app_t *app);

/* The WebSocket user side (transport/wsuser.c), called by session.c. */
/* Authenticates a request that opens a stream (token, ticket, Bearer or anonymous): fills
 * s->identity.  Returns 0 or VG_EAUTH with a reason. */
int vg__wsuser_authenticate(vg_session_t *s, vg_http_request_t *req, const char **reason);
/* Fills s->reg for vg_registry_add (endpoint from s->endpoint). */
void vg__wsuser_registry_init(vg_session_t *s);
/* The connection is going away: leave the index, the registry, the listener list. */
void vg__wsuser_cleanup(vg_session_t *s);
/* Replaces the identity (refresh); returns 0 or VG_EAUTH with reason. */
int vg__wsuser_refresh(vg_session_t *s, const char *token, size_t len, const char **reason);

/* What SSE and long-poll share (stream.c). */

/* Authenticates the request that opens a stream (or answers 401) and makes the session a
 * subscriber served by `endpoint`.  Returns 0, or -1 when the request was answered. */
int vg__stream_open(vg_session_t *s, vg_http_request_t *req, const vg_ws_endpoint_t *endpoint);
/* Enters the stream in the registry under the per-user limit (or answers 429).  Returns 0, or
 * -1 when the request was answered. */
int vg__stream_register(vg_session_t *s);
/* A request refused after vg__stream_open: the identity goes with it (the connection may carry
 * on with other requests). */
void vg__stream_refused(vg_session_t *s);

/* Reads ?channels=a,b into out[] (pointers into buf), checking names and permissions; answers
 * 400/403 itself.  Returns the count or -1. */
int vg__stream_parse_channels(vg_session_t *s, vg_http_request_t *req, char *buf, size_t cap,
                              char **out, size_t max);

/* ?since_time=<ms or RFC 3339>: recovery by time for the request's patterns (channels that first
 * appeared while the client was away).  Returns 1 with *tr filled (pointing into patterns[n]),
 * 0 when absent or there is no pattern, -1 when malformed. */
struct vg_time_recovery_s;
int vg__stream_parse_since_time(vg_http_request_t *req, char **channels, size_t n,
                                const char **patterns, struct vg_time_recovery_s *tr);
#define SINCE_TIME_ERROR "since_time: milliseconds since 1970 or an RFC 3339 UTC timestamp"

/* "<channel>:<offset>" (a long-poll `since` item, an SSE Last-Event-ID) -> a recovery request
 * for that channel, which must be one of channels[n] (or match one of its patterns).  The offset
 * is plain decimal digits, 0 to INT64_MAX.  Cuts text at the colon; r->channel points into it.
 * Returns 0 or -1. */
struct vg_recovery_s;
int vg__stream_parse_position(char *text, char **channels, size_t n, struct vg_recovery_s *r);

/* Subscribes op->s to op->channels (a callback for vg_hub_subscribe_atomically). */
typedef struct vg_stream_sub_s {
    vg_session_t *s;
    char **channels;
    size_t count;
} vg_stream_sub_t;
void vg__stream_subscribe_all(void *arg);

#endif
