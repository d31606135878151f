/*
 * The transport layer's interface to the layers above it (profiles, api, cli).
 *
 * vg_app_t: the server context shared (read-only after start) by every worker: the
 * configuration, the route table and the core objects (hub, state, store, registry, auth).  The
 * cli builds it (cli/serve.c); handlers read it through their session.  vg_session_t: the state
 * of one connection, which starts as HTTP/1.1 and may become a WebSocket, an SSE stream or a
 * held long-poll.  transport/internal.h has what only this folder's files share.
 */
#ifndef VG_TRANSPORT_TRANSPORT_H
#define VG_TRANSPORT_TRANSPORT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "auth/auth.h"
#include "core/acks.h"
#include "core/config.h"
#include "core/hub.h"
#include "core/registry.h"
#include "core/subs.h"
#include "net/conn.h"
#include "net/server.h"
#include "proto/channel.h"
#include "proto/http1.h"
#include "proto/ws.h"
#include "transport/router.h"

typedef struct vg_session_s vg_session_t;

/* How a profile endpoint departs from the server-wide options (zero fields: the server's). */
typedef struct vg_endpoint_policy_s {
    int anonymous;         /* no token needed: every client is user "anonymous" */
    int max_per_user;      /* connections one user may hold on this endpoint's users */
    int replace_previous;  /* a user's new connection closes their previous one here */
    double ping_interval;  /* seconds */
    double ping_timeout;   /* seconds */
    const char *ping_text; /* the server's ping as a text message (e.g. {"type":"ping"}), not a
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
    /* Streams that are not WebSockets (SSE, a held long-poll) use these instead of on_message:
     * how a delivered message reaches the client, and what the connection's timer does. */
    void (*deliver)(vg_session_t *s, const char *channel, size_t channel_len, uint64_t offset,
                    vg_chunk_t *frame);
    void (*on_timer)(vg_session_t *s);
    int open_when_refused; /* stays open under --refuse-websocket (the conformance endpoint) */
    /* The wire format of delivered messages; NULL: the native envelope as published. */
    const struct vg_format_s *format;
    /* Profile endpoints: options that replace the server-wide ones (may be NULL). */
    const struct vg_endpoint_policy_s *policy;
} vg_ws_endpoint_t;

/* An HTTP handler answers the request through vg_session_respond* (or upgrades). */
typedef void (*vg_http_handler_cb)(vg_session_t *s, vg_http_request_t *req,
                                   const vg_route_match_t *m);

typedef struct vg_state_s vg_state_t;

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
    vg_broker_t *broker; /* numbers, keeps and orders messages (core/broker.h) */
    vg_hub_t *hub;
    vg_state_t *state;
    struct vg_store_s *store; /* durable data in --data-dir */
    vg_registry_t *registry;
    vg_patterns_t default_channels;
    vg_patterns_t allowed_origins;  /* empty: any origin */
    vg_patterns_t ack_channels;     /* acknowledged-delivery channels */
    vg_acks_t acks;                 /* acknowledged delivery (its channels: ack_channels) */
    vg_patterns_t durable_channels; /* history kept in the store */
    struct vg_durable_s *durable;   /* durable channels (broker/durable.h), or NULL */
    int64_t started_ms;
    /* WebSocket handshakes refused, by reason (rare: a mutex is fine) */
    pthread_mutex_t refusals_lock;
    struct vg_refusal_s {
        const char *reason; /* static */
        uint64_t count;
    } refusals[32];
    size_t num_refusals;
    void **profile_state; /* profiles/profiles.c: each enabled profile's state */
    /* Metrics of the layers the API does not know (the profiles): appended to /metrics.  Set by
     * the cli; may be NULL. */
    void (*append_metrics)(struct vg_app_s *app, vg_buf_t *out);
    atomic_uint_fast64_t limit_hits[VG_LIMIT_COUNT]; /* enum vg_limit */
    struct vg_rpc_limits_s *rpc;                     /* transport/rpc.c: calls in flight */
    const struct vg_wsuser_ops_s *wsuser; /* transport/internal.h: set by vg_transport_init */
} vg_app_t;

struct vg_session_s {
    vg_conn_t *conn;
    vg_app_t *app;
    vg_http_parser_t *http; /* while the connection speaks HTTP */
    vg_ws_t *ws;            /* once it is a WebSocket */
    int sse;                /* a Server-Sent Events stream (transport/sse.c) */
    struct vg_poll_s *poll; /* a long-poll request being held (transport/poll.c) */
    vg_buf_t stash;         /* bytes pipelined behind a held long-poll */
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
    uint64_t last_seen;     /* loop ms of the last bytes from the peer */
    uint64_t last_ping;     /* loop ms of our last ping */
    double rate_tokens;     /* inbound rate limit bucket */
    uint64_t rate_updated;  /* loop ms */
    uint64_t rate_window;   /* loop ms at which the current overflow window started */
    unsigned rate_overflow; /* messages over the limit in the current window */
    int _tl_listed; /* on the worker's event-type listener list (vg_hub_type_listener_add) */
    /* Ids of acknowledged-delivery messages just replayed from the store, which may still come
     * through live once (published right around the subscribe). */
    char **replayed;
    size_t num_replayed;
    uint64_t replayed_until; /* loop ms after which the list is stale */
};

/* The context's own parts (the route table, the refusal counts, how the transports' files reach
 * each other); the cli fills in the rest. */
void vg_transport_init(vg_app_t *app, const vg_config_t *cfg);
void vg_transport_dispose(vg_app_t *app);
/* Counts a refused WebSocket handshake under its (static) reason, for /metrics. */
void vg_app_count_refusal(vg_app_t *app, const char *reason);
/* Adds a route (routes match in the order added; the cli adds the static catch-all last). */
void vg_app_route(vg_app_t *app, const char *path, unsigned methods, vg_http_handler_cb handler);
/* The same with handler data (m->route->extra). */
void vg_app_route_ex(vg_app_t *app, const char *path, unsigned methods, vg_http_handler_cb handler,
                     const void *extra);
/* Adds a WebSocket endpoint at path (GET with Upgrade; the endpoint must outlive the app). */
void vg_app_route_ws(vg_app_t *app, const char *path, const vg_ws_endpoint_t *endpoint);
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
int vg_session_is_ws_open(const vg_session_t *s);
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

/* Every session is a subscriber of the hub: sets s->subscriber up to deliver through the
 * session's filters (vg_session_deliver). */
void vg_session_subscriber_init(vg_session_t *s);
/* vg_hub_command_cb: applies a broadcast or disconnect to the connection when it concerns it. */
void vg_session_on_hub_command(vg_conn_t *conn, const vg_hub_command_t *cmd);

/* Acknowledged-delivery replay (transport/replay.c): sends the session's user every unacked
 * message on the channels matching the patterns, oldest first (right after subscribing). */
void vg_acks_replay(vg_session_t *s, const char *const *patterns, size_t n);

/* Recomputes membership of the worker's event-type listener list and the registry's view of the
 * subscriptions after a subscribe/unsubscribe (costs the number of subscriptions held). */
void vg_session_subscriptions_changed(vg_session_t *s);
/* The same after a subscribe that added exactly `patterns` (new subscriptions, in the order
 * added): costs what was added, not what the connection already holds. */
void vg_session_subscriptions_added(vg_session_t *s, const char *const *patterns, size_t n);

/* After a held request was answered: parse what was pipelined behind it (session.c). */
void vg_session_resume_http(vg_session_t *s);

/* The fallback transports' HTTP handlers: GET /api/sse and GET /api/poll. */
void vg_sse_handle(vg_session_t *s, vg_http_request_t *req, const vg_route_match_t *m);
void vg_poll_handle(vg_session_t *s, vg_http_request_t *req, const vg_route_match_t *m);

/* Endpoints. */
extern const vg_ws_endpoint_t vg_echo_endpoint;
extern const vg_ws_endpoint_t vg_native_endpoint;

#endif
