/*
 * vg_app_t: the server application shared (read-only after start) by every worker: the
 * configuration and the route table.  vg_session_t: the app's state for one connection, which
 * starts as HTTP/1.1 and may become a WebSocket.
 */
#ifndef VG_APP_APP_H
#define VG_APP_APP_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "app/auth.h"
#include "app/config.h"
#include "app/registry.h"
#include "app/router.h"
#include "app/subs.h"
#include "net/conn.h"
#include "net/server.h"
#include "proto/http1.h"
#include "proto/ws.h"

typedef struct vg_session_s vg_session_t;

/* How a profile endpoint departs from the server-wide options (zero fields: the server's). */
typedef struct vg_endpoint_policy_s {
    int anonymous;          /* no token needed: every client is user "anonymous" */
    int max_per_user;       /* connections one user may hold on this endpoint's users */
    int replace_previous;   /* a user's new connection closes their previous one here */
    double ping_interval;   /* seconds */
    double ping_timeout;    /* seconds */
    const char *ping_text;  /* the server's ping as a text message (e.g. {"type":"ping"}), not a
                               WebSocket ping frame */
    /* Called once the user is known, before the per-user limit and replace_previous: may adjust
     * s->identity or refuse (nonzero; the socket is closed with 1008 and *reason, a static
     * string).  May be NULL.  Seed 003's path user id must match the token's. */
    int (*admit)(vg_session_t *s, const char **reason);
} vg_endpoint_policy_t;

/* What a WebSocket endpoint does with its connections. */
typedef struct vg_ws_endpoint_s {
    const char *path;                /* for logs and the admin API */
    int authenticate;                /* users must present a token (or be let in anonymously) */
    const char *const *subprotocols; /* NULL-terminated list the endpoint speaks, or NULL */
    void (*on_open)(vg_session_t *s);
    void (*on_message)(vg_session_t *s, int opcode, uint8_t *data, size_t len);
    void (*on_close)(vg_session_t *s); /* may be NULL */
    /* The wire format of delivered messages; NULL: the native envelope as published. */
    const struct vg_format_s *format;
    /* Profile endpoints: options that replace the server-wide ones (may be NULL). */
    const struct vg_endpoint_policy_s *policy;
} vg_ws_endpoint_t;

/* An HTTP handler answers the request through vg_session_respond* (or upgrades). */
typedef void (*vg_http_handler_cb)(vg_session_t *s, vg_http_request_t *req,
                                   const vg_route_match_t *m);

typedef struct vg_hub_s vg_hub_t;
typedef struct vg_state_s vg_state_t;

/* A list of channel patterns (e.g. --default-channels). */
typedef struct vg_patterns_s {
    char **items;
    size_t count;
} vg_patterns_t;

/* Per-connection and per-user limits whose hits /metrics counts (vigil_limit_hits_total). */
enum vg_limit {
    VG_LIMIT_INBOUND_RATE,      /* a message or ping over --max-inbound-rate */
    VG_LIMIT_SUBSCRIPTIONS,     /* a subscribe past --max-subscriptions */
    VG_LIMIT_RPC_CONNECTION,    /* an rpc past --max-rpc-inflight-per-connection */
    VG_LIMIT_RPC_USER,          /* an rpc past --max-rpc-inflight-per-user */
    VG_LIMIT_RECOVERY_OUTBOUND, /* a channel's replay that did not fit in --max-outbound */
    VG_LIMIT_COUNT
};
/* The metric label of each (the option's name). */
extern const char *const vg_limit_names[VG_LIMIT_COUNT];

typedef struct vg_app_s {
    const vg_config_t *cfg;
    vg_router_t router;
    vg_http_limits_t http_limits;
    vg_server_t *server;
    vg_auth_t *auth;
    vg_hub_t *hub;
    vg_state_t *state;
    struct vg_store_s *store; /* durable data in --data-dir */
    vg_registry_t *registry;
    vg_patterns_t default_channels;
    vg_patterns_t allowed_origins; /* empty: any origin */
    vg_patterns_t ack_channels;    /* acknowledged-delivery channels */
    vg_patterns_t durable_channels; /* history kept in the store */
    unsigned durable_appends;       /* for trimming the stored history now and then */
    int64_t started_ms;
    /* WebSocket handshakes refused, by reason (rare: a mutex is fine) */
    pthread_mutex_t refusals_lock;
    struct vg_refusal_s {
        const char *reason; /* static */
        uint64_t count;
    } refusals[32];
    size_t num_refusals;
    void **profile_state; /* app/profiles.c: each enabled profile's state */
    atomic_uint_fast64_t limit_hits[VG_LIMIT_COUNT]; /* enum vg_limit */
    struct vg_rpc_limits_s *rpc;                     /* app/rpc.c: calls in flight */
} vg_app_t;

struct vg_session_s {
    vg_conn_t *conn;
    vg_app_t *app;
    vg_http_parser_t *http;           /* while the connection speaks HTTP */
    vg_ws_t *ws;                      /* once it is a WebSocket */
    int sse;                          /* a Server-Sent Events stream (app/sse.c) */
    struct vg_poll_s *poll;           /* a long-poll request being held (app/poll.c) */
    vg_buf_t stash;                   /* bytes pipelined behind a held long-poll */
    /* A request a profile holds unanswered (a Socket.IO long-poll GET): while set, pipelined
     * bytes are stashed as for `poll`, and it is called if the connection closes first. */
    void (*on_held_close)(vg_session_t *s);
    const vg_ws_endpoint_t *endpoint; /* the WebSocket's endpoint */
    void *endpoint_data;              /* the endpoint's per-connection state */
    const char *subprotocol;          /* the one negotiated, or NULL */
    int timing_request;               /* the request timer runs for the current request */
    int keep_alive;                   /* the response being written keeps the connection */

    /* WebSocket users */
    vg_identity_t identity; /* valid when authenticated */
    int authenticated;
    vg_subscriber_t subscriber; /* channel subscriptions, in the worker's index */
    char **event_types;         /* event-type filters */
    size_t num_event_types;
    vg_reg_entry_t reg; /* in the registry while registered */
    int registered;
    uint64_t last_seen;                /* loop ms of the last bytes from the peer */
    uint64_t last_ping;                /* loop ms of our last ping */
    double rate_tokens;                /* inbound rate limit bucket */
    uint64_t rate_updated;             /* loop ms */
    uint64_t rate_window;              /* loop ms at which the current overflow window started */
    unsigned rate_overflow;            /* messages over the limit in the current window */
    vg_session_t *_tl_prev, *_tl_next; /* the worker's event-type listeners */
    int _tl_listed;
    /* Ids of acknowledged-delivery messages just replayed from the store, which may still come
     * through live once (published right around the subscribe). */
    char **replayed;
    size_t num_replayed;
    uint64_t replayed_until; /* loop ms after which the list is stale */
};

/* Registers the routes and prepares the app (auth keys, hub, registry).  Returns 0, or
 * VG_ECONFIG with a message in err. */
int vg_app_init(vg_app_t *app, const vg_config_t *cfg, int workers, char *err, size_t errlen);
void vg_app_dispose(vg_app_t *app);
/* Counts a refused WebSocket handshake under its (static) reason, for /metrics. */
void vg_app_count_refusal(vg_app_t *app, const char *reason);
/* Adds a route (before the static catch-all; call from vg_api_register or a profile). */
void vg_app_route(vg_app_t *app, const char *path, unsigned methods, vg_http_handler_cb handler);
/* The same with handler data (m->route->extra). */
void vg_app_route_ex(vg_app_t *app, const char *path, unsigned methods, vg_http_handler_cb handler,
                     const void *extra);
/* Adds a WebSocket endpoint at path (GET with Upgrade; the endpoint must outlive the app). */
void vg_app_route_ws(vg_app_t *app, const char *path, const vg_ws_endpoint_t *endpoint);
/* The server callbacks that tie workers and connections to the app. */
extern const vg_server_callbacks_t vg_app_server_callbacks;
/* vg_server_callbacks_t.on_accept: makes a session for a new connection. */
void vg_app_on_accept(vg_worker_t *w, vg_conn_t *c);

/* HTTP responses (the session decides keep-alive). */
void vg_session_respond(vg_session_t *s, int status, const char *content_type,
                        const char *extra_headers, const void *body, size_t len);
void vg_session_respond_error(vg_session_t *s, int status, const char *code, const char *message,
                              const char *extra_headers);
/* Sends a response already formatted with vg_http_write_response (e.g. to trim a HEAD body). */
void vg_session_respond_raw(vg_session_t *s, vg_buf_t *response);
/* Answers 101 and turns the connection into a WebSocket served by `endpoint`. */
void vg_session_upgrade(vg_session_t *s, vg_http_request_t *req, const vg_ws_endpoint_t *endpoint);

/* The connection's inbound token bucket (--max-inbound-rate, refilled continuously), shared by
 * messages and pings on every WebSocket endpoint.  Returns VG_RATE_OK (take it), or, over the
 * rate, VG_RATE_REFUSED_FIRST for the first refusal in a one-second window (worth answering),
 * VG_RATE_REFUSED, or VG_RATE_EXCEEDED once more than a whole rate's worth was refused within
 * the window (the caller closes with 1008 "rate limit exceeded"). */
enum { VG_RATE_OK, VG_RATE_REFUSED_FIRST, VG_RATE_REFUSED, VG_RATE_EXCEEDED };
int vg__session_rate_take(vg_session_t *s);

/* WebSocket sending: queues one frame chunk (shared; the caller keeps its reference).  A
 * connection whose queue would overflow is closed with 1008 "slow consumer".  Returns 0 or a
 * negative code when the frame was not queued. */
int vg_session_ws_send(vg_session_t *s, vg_chunk_t *frame);
int vg_session_ws_send_text(vg_session_t *s, const char *text, size_t len);
/* Queues one large answer to the client's own request (a state snapshot): it goes out whole
 * even past --max-outbound, as long as the queue is not already over the limit, and what
 * follows it is not refused while it drains (vg_conn_send_whole), so a document larger than the
 * limit reaches a client that reads instead of closing it into a reconnect loop.  A client that
 * keeps asking without reading is still closed as a slow consumer. */
int vg_session_ws_send_reply(vg_session_t *s, vg_chunk_t *frame);
/* Starts the closing handshake with code and reason. */
void vg_session_ws_close(vg_session_t *s, int code, const char *reason);

/* Delivery from the hub (worker thread): queues the shared frame if the session's event-type
 * filters let the message through. */
void vg_session_deliver(vg_session_t *s, const char *channel, size_t channel_len, const char *type,
                        uint64_t offset, vg_chunk_t *frame);
/* Delivery to an event-type listener: also checks that the user may read the channel. */
void vg_session_deliver_by_type(vg_session_t *s, const char *channel, size_t channel_len,
                                const char *type, uint64_t offset, vg_chunk_t *frame);
int vg_session_is_ws_open(const vg_session_t *s);
/* Nonzero (and forgets it) when this acknowledged-delivery message was just replayed. */
int vg_session_already_replayed(vg_session_t *s, const char *id);
/* Fills *view (borrowed, valid while the identity is) with the patterns this session's user may
 * subscribe to: the token's channels claim, else --default-channels. */
void vg_session_allowed(const vg_session_t *s, vg_patterns_t *view);
/* The same for any identity (HTTP requests). */
void vg_identity_allowed(const vg_app_t *app, const vg_identity_t *id, vg_patterns_t *view);

/* Connections this session's user may hold: unlimited for anonymous clients (they all share the
 * user name "anonymous"), else the endpoint policy's max_per_user, else
 * --max-connections-per-user. */
int vg_session_user_limit(const vg_session_t *s);

/* Tells the user's other native WebSockets that a message was acked (except conn except_id, 0:
 * none), so their dashboards drop it: {"type":"acked","id":...}. */
void vg_notify_acked(vg_app_t *app, const char *user, const char *msg_id, uint64_t except_id);

/* Authenticates an HTTP request: a user token (?token=, Authorization: Bearer) or, when
 * allow_api_key, the API key (Bearer or X-API-Key).  Returns 0 and fills *id (dispose it) and
 * *is_api_key, or VG_EAUTH with a reason. */
int vg_session_http_auth(vg_session_t *s, vg_http_request_t *req, int allow_api_key,
                         vg_identity_t *id, int *is_api_key, const char **reason);

/* Patterns from a comma-separated list (validated by the caller). */
void vg_patterns_parse(vg_patterns_t *p, const char *csv);
void vg_patterns_dispose(vg_patterns_t *p);
int vg_patterns_covers(const vg_patterns_t *p, const char *pattern, size_t len);
int vg_patterns_match(const vg_patterns_t *p, const char *channel, size_t len);

/* HTTP API handlers (app/api.c) and their registration. */
void vg_api_register(vg_app_t *app);

/* The WebSocket user side (app/wsuser.c), called by session.c. */
/* Before the 101: checks Origin and authenticates.  Returns 0 to go on (with *fail_reason set
 * when the socket must be closed with 1008 right after the handshake), or an HTTP status already
 * answered (403). */
int vg__wsuser_preupgrade(vg_session_t *s, vg_http_request_t *req, const char **fail_reason);
/* Authenticates a request that opens a stream (token, ticket, Bearer or anonymous): fills
 * s->identity.  Returns 0 or VG_EAUTH with a reason. */
int vg__wsuser_authenticate(vg_session_t *s, vg_http_request_t *req, const char **reason);
/* Fills s->reg for vg_registry_add (endpoint from s->endpoint). */
void vg__wsuser_registry_init(vg_session_t *s);
/* After the 101: registers the connection, starts heartbeats, calls the endpoint's on_open. */
void vg__wsuser_open(vg_session_t *s, const char *fail_reason);
/* Bytes arrived: the peer is alive. */
void vg__wsuser_seen(vg_session_t *s, size_t bytes);
/* A message arrived: rate limit.  Returns nonzero when the endpoint may handle it. */
int vg__wsuser_admit(vg_session_t *s, const uint8_t *data, size_t len);
/* The connection's timer fired while the WebSocket is open (heartbeat, token expiry). */
void vg__wsuser_timer(vg_session_t *s);
/* Re-arms the timer for the next heartbeat or expiry. */
void vg__wsuser_schedule(vg_session_t *s);
/* The connection is going away: leave the index, the registry, the listener list. */
void vg__wsuser_cleanup(vg_session_t *s);
/* Replaces the identity (refresh); returns 0 or VG_EAUTH with reason. */
int vg__wsuser_refresh(vg_session_t *s, const char *token, size_t len, const char **reason);
/* Recomputes membership of the worker's event-type listener list and the registry's view of the
 * subscriptions after a subscribe/unsubscribe (costs the number of subscriptions held). */
void vg__wsuser_subscriptions_changed(vg_session_t *s);
/* The same after a subscribe that added exactly `patterns` (new subscriptions, in the order
 * added): costs what was added, not what the connection already holds. */
void vg__wsuser_subscriptions_added(vg_session_t *s, const char *const *patterns, size_t n);

/* Server-Sent Events (app/sse.c): GET /api/sse. */
void vg_sse_handle(vg_session_t *s, vg_http_request_t *req, const vg_route_match_t *m);
/* Queues one delivered message on an SSE stream. */
void vg_sse_send(vg_session_t *s, const char *channel, size_t channel_len, uint64_t offset,
                 vg_chunk_t *frame);
/* The stream's timer fired (heartbeat comment, token expiry). */
void vg_sse_timer(vg_session_t *s);

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

/* Subscribes op->s to op->channels (a callback for vg_hub_subscribe_atomically). */
typedef struct vg_stream_sub_s {
    vg_session_t *s;
    char **channels;
    size_t count;
} vg_stream_sub_t;
void vg__stream_subscribe_all(void *arg);

/* Long-poll (app/poll.c): GET /api/poll. */
void vg_poll_handle(vg_session_t *s, vg_http_request_t *req, const vg_route_match_t *m);
/* A message for a held poll: answers it. */
void vg_poll_deliver(vg_session_t *s, const char *channel, size_t channel_len, uint64_t offset,
                     vg_chunk_t *frame);
/* The held poll's timer fired: answers with what it has (nothing). */
void vg_poll_timeout(vg_session_t *s);
/* Frees a held poll's state (connection closing). */
void vg_poll_dispose(vg_session_t *s);
/* After a held request was answered: parse what was pipelined behind it (session.c). */
void vg__session_resume_http(vg_session_t *s);

/* Endpoints. */
extern const vg_ws_endpoint_t vg_echo_endpoint;
extern const vg_ws_endpoint_t vg_native_endpoint;

#endif
