/*
 * The Socket.IO profile's internals, shared by socketio.c (the HTTP and WebSocket endpoint, the
 * Socket.IO layer) and socketio_session.c (the Engine.IO session: transports, outbound queue,
 * heartbeat, lifetime).  The session code is the lower of the two: it calls the Socket.IO layer
 * only through the profile's on_message and on_teardown hooks.  docs/profiles/socketio.md has the
 * user's view.
 *
 * Threads.  An Engine.IO session (vg_sio_t) lives on its "home" worker, the one that made the
 * handshake: its subscriber sits in that worker's index, its heartbeat timer on that loop, and
 * every Socket.IO packet is handled there.  Its transports (a held polling GET, a POST, the
 * WebSocket) are connections on any worker, since each request may come on another TCP
 * connection.  Shared between them, under the session's mutex: the transport state, the queue of
 * outbound packets and which connections currently serve the session.  Whoever queues a packet
 * wakes the transport that carries it on that transport's worker (vg_hub_run_on); a connection
 * pointer kept in the session is only ever dereferenced on that connection's own worker, and is
 * cleared there (under the mutex) before the connection is freed.
 *
 * Hub callbacks.  Deliveries may run while the hub holds its publish lock (a subscribe on that
 * worker drains the inbox under it; vg_hub_run_on calls never do), so a delivery only queues: a
 * task on the worker's own list, run from a uv_idle handle right after (which may call the hub).
 *
 * Lifetime.  A session is reference counted: the sid table, its home worker's list, its
 * heartbeat timer (until the timer's close callback), every connection serving it and every task
 * or vg_hub_run_on call in flight each hold one reference.  Closing (vg__sio_close, any thread)
 * marks it closed, removes it from the table and wakes its transports; the teardown (leaving the
 * index and the registry, closing the timer) then runs on the home worker.
 *
 * Hostile clients.  A handshake needs no credential, so sessions are capped (the server's and
 * each client address's count live with the sid table, under its lock), and until its socket
 * connects a session is small (no vg_sio_socket_t before the first Socket.IO packet), short-lived
 * (the heartbeat timer also enforces the connect timeout) and held to a small payload and queue.
 */
#ifndef VG_PROFILES_SOCKETIO_H
#define VG_PROFILES_SOCKETIO_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "transport/transport.h"
#include "core/hub.h"
#include "proto/engineio.h"

#define VG_SIO_ID_LEN 20 /* characters of an Engine.IO or Socket.IO id */
#define VG_SIO_PATH   "/socket.io/"

enum vg_sio_transport {
    VG_SIO_POLLING = 0,
    VG_SIO_UPGRADING, /* the WebSocket probe answered; polling only gets noops */
    VG_SIO_WEBSOCKET,
};

typedef struct vg_sio_profile_s vg_sio_profile_t;
typedef struct vg_sio_s vg_sio_t;

/* --socketio-events PATTERN=EVENT */
typedef struct vg_sio_map_s {
    char *pattern;
    char *event;
} vg_sio_map_t;

/* Work for one worker (socketio_session.c): a wake-up of a transport, a teardown, an inbound
 * packet for the home worker, ... */
typedef struct vg_sio_task_s vg_sio_task_t;

/* Per worker, its thread only: the sessions whose home it is, and the tasks it has to do. */
typedef struct vg_sio_worker_s {
    vg_worker_t *worker;
    int started;
    uv_check_t check; /* notices the worker stopping, to tear its sessions down in time */
    uv_idle_t idle;   /* runs the tasks (active only while there are some) */
    vg_sio_t *sessions;
    vg_sio_task_t **tasks;
    size_t num_tasks, cap_tasks;
} vg_sio_worker_t;

struct vg_sio_profile_s {
    vg_app_t *app;
    vg_ws_endpoint_t endpoint;
    vg_sio_map_t *maps;
    size_t num_maps;
    int cors_any;       /* --socketio-cors "*": reflect any Origin */
    vg_patterns_t cors; /* otherwise the origins allowed */
    uint64_t ping_interval_ms;
    uint64_t ping_timeout_ms;
    size_t max_payload; /* --max-message-size */
    size_t max_queued;  /* --max-outbound: bytes a session may have waiting for a transport */
    /* A session whose socket is not connected (no CONNECT yet, or a refused one) was made by
     * anyone: it lives --socketio-connect-timeout at most, and its POST bodies, WebSocket
     * messages and queue stay under --socketio-max-connect-payload. */
    uint64_t connect_timeout_ms;
    size_t max_connect_payload;
    size_t max_sessions;        /* --socketio-max-sessions */
    size_t max_sessions_per_ip; /* --socketio-max-sessions-per-ip, 0: no cap */
    pthread_mutex_t table_lock;
    /* (under table_lock) */
    vg_sio_t **table; /* sid -> session, chained */
    size_t table_buckets;
    struct vg_sio_addr_s **addrs; /* client address -> its sessions, chained */
    size_t num_sessions;
    uint64_t refusals_logged_ms; /* refusals are logged as one line per interval */
    unsigned refusals_unlogged;
    /* For /metrics. */
    atomic_ullong refused_server, refused_address; /* handshakes over a session cap */
    atomic_ullong expired_connect, expired_ping;   /* sessions closed by a timeout */
    atomic_ullong payloads_refused;                /* over max_connect_payload */
    vg_sio_worker_t *workers;
    int num_workers;
    /* The Socket.IO layer above the sessions (socketio.c sets them before the first session):
     * the session code calls up only through these, on the home worker. */
    /* A Socket.IO packet (the data of an Engine.IO message) or a binary attachment arrived. */
    void (*on_message)(vg_sio_t *es, vg_worker_t *home, int binary, const char *data, size_t len);
    /* The session is going away: leave the index and the registry, free the layer's state. */
    void (*on_teardown)(vg_sio_t *es);
};

/* The Socket.IO layer's state of a session (home worker only), made when the first Socket.IO
 * packet arrives: a session that never sends one costs only its vg_sio_t. */
typedef struct vg_sio_socket_s {
    int connected;       /* to the namespace "/" */
    unsigned generation; /* counts connects: late RPC answers of an old one are dropped */
    unsigned refused_connects;
    char sid[VG_SIO_ID_LEN + 1];
    vg_identity_t identity;
    int has_identity;
    vg_subscriber_t subscriber;
    vg_reg_entry_t reg;
    int registered;
    /* --max-inbound-rate: events refilled continuously; over it they are refused */
    double rate_tokens;
    uint64_t rate_updated, rate_window; /* loop ms */
    unsigned rate_overflow;
    /* A binary packet waiting for its attachments. */
    vg_sio_packet_t pending;
    int has_pending;
    vg_iov_t *attachments; /* heap copies */
    size_t num_attachments, attachment_bytes;
} vg_sio_socket_t;

struct vg_sio_s {
    /* immutable after vg__sio_new */
    atomic_uint refcnt;
    pthread_mutex_t lock;
    char sid[VG_SIO_ID_LEN + 1];
    vg_sio_profile_t *profile;
    vg_worker_t *home;
    uint64_t conn_id; /* of the handshake, for the registry and logs */
    char peer[48];
    struct vg_sio_addr_s *addr; /* the client address it counts against (under table_lock) */
    atomic_int connected;       /* the socket is connected: the connect limits no longer apply */
    atomic_size_t inbound_packets, inbound_bytes; /* on their way to the home worker */

    /* (locked) */
    int closed;
    int transport;      /* enum vg_sio_transport */
    vg_chunk_t **queue; /* WebSocket text frames, one packet each, oldest first */
    size_t queue_len, queue_cap, queue_bytes;
    int overflowed;    /* the queue outgrew max_queued: nothing more is queued */
    vg_session_t *get; /* the long-poll GET being held, on worker get_worker */
    int get_worker;
    int get_wake;     /* a wake-up call for the GET is in flight */
    vg_session_t *ws; /* the WebSocket (the transport, or the probe while upgrading) */
    int ws_worker;
    int ws_wake;
    int ws_opened; /* a direct WebSocket handshake got its open packet */
    int awaiting_pong;
    uint64_t ping_ms; /* monotonic ms of the ping awaiting its pong */
    uint64_t pong_ms; /* monotonic ms of the pong to the last ping, 0: none yet */

    /* home worker only */
    vg_sio_t *table_next; /* (under the profile's table_lock) */
    vg_sio_t *home_prev, *home_next;
    uv_timer_t timer;             /* heartbeat and connect timeout */
    uint64_t next_ping_ms;        /* monotonic ms the next ping is due (when not awaiting) */
    uint64_t connect_deadline_ms; /* monotonic ms it closes unless connected; 0: connected */
    int torn_down;
    char *token; /* ?token= of the handshake with --socketio-auth (a secret: never logged) */
    vg_sio_socket_t *sock; /* NULL until the first Socket.IO packet */
};

/* ---- socketio_session.c ---- */

/* A random id of VG_SIO_ID_LEN URL-safe characters. */
void vg__sio_make_id(char out[VG_SIO_ID_LEN + 1]);

/* Why vg__sio_new refused a session. */
enum vg_sio_refusal { VG_SIO_TOO_MANY = 1, VG_SIO_TOO_MANY_FROM_ADDRESS };

/* Home worker thread (the handshake's).  A new open session in the table; one reference for the
 * caller.  transport: VG_SIO_POLLING or VG_SIO_WEBSOCKET (a direct WebSocket handshake).  NULL
 * with *refusal (enum vg_sio_refusal) when a session cap is reached. */
vg_sio_t *vg__sio_new(vg_sio_profile_t *p, vg_session_t *s, int transport, int *refusal);
/* At init: sizes the sid table for --socketio-max-sessions. */
void vg__sio_profile_init(vg_sio_profile_t *p);
/* Home worker.  The socket connected (1) or left (0): while it is not connected the session
 * must connect within the connect timeout and keeps to the connect payload limit. */
void vg__sio_set_connected(vg_sio_t *es, int connected);
/* Any thread.  The most the client may send in one POST body or WebSocket message now. */
size_t vg__sio_max_inbound(vg_sio_t *es);
/* The open session with this id (one reference for the caller), or NULL. */
vg_sio_t *vg__sio_find(vg_sio_profile_t *p, const char *sid);
vg_sio_t *vg__sio_ref(vg_sio_t *es);
void vg__sio_unref(vg_sio_t *es);
/* At dispose, after the workers stopped: drops the tasks no loop ran and frees the table. */
void vg__sio_profile_dispose(vg_sio_profile_t *p);

/* Any worker thread (cur).  Queues one packet (a WebSocket text frame; the caller keeps its
 * reference) for the session's current transport.  Dropped when the session is closed. */
void vg__sio_send(vg_sio_t *es, vg_worker_t *cur, vg_chunk_t *frame);
void vg__sio_send_text(vg_sio_t *es, vg_worker_t *cur, const char *text, size_t len);
/* Any worker thread.  Closes the session (idempotent); `reason` (static) goes to the log. */
void vg__sio_close(vg_sio_t *es, vg_worker_t *cur, const char *reason);
int vg__sio_is_closed(vg_sio_t *es);

/* A long-poll GET (worker of s): answers at once with what is queued, or holds the request until
 * a packet is due.  headers: the CORS lines for the answer (copied). */
void vg__sio_poll(vg_sio_t *es, vg_session_t *s, const char *headers);
/* A polling POST body (worker cur): its packets are checked, pongs and closes handled at once,
 * and its messages handed to the home worker in one piece, so a body of many small packets costs
 * its size, not an allocation per packet.  Returns 0, or VG_EINVAL with *err when the session
 * must be closed for it. */
int vg__sio_on_payload(vg_sio_t *es, vg_worker_t *cur, const char *body, size_t len,
                       const char **err);
/* An Engine.IO packet from the client, over POST (ws NULL) or the WebSocket ws.  Returns 0, or
 * VG_EINVAL with *err when the session must be closed for it. */
int vg__sio_on_packet(vg_sio_t *es, vg_worker_t *cur, const vg_eio_packet_t *pkt, vg_session_t *ws,
                      const char **err);
/* WebSocket transport (worker of s): the socket opened (direct or probe) / closed. */
void vg__sio_ws_open(vg_sio_t *es, vg_session_t *s);
void vg__sio_ws_closed(vg_sio_t *es, vg_session_t *s);

#endif
