/*
 * The hub: this process's fan-out of published messages to its workers.
 *
 * vg_hub_publish (any thread) hands the messages to the broker (core/broker.h), which assigns
 * each channel's next offset, encodes the message once as JSON framed once into a shared chunk,
 * keeps it in history, and gives it back through the hub's sink in channel order.  The sink
 * hands one reference to every worker's inbox (mutex + array, woken with uv_async).  Each worker
 * drains its inbox on its own thread, looks the channel up in its own subscription index and
 * calls every matching subscriber's deliver hook with the same chunk; delivery itself takes no
 * shared lock.
 *
 * Admin commands (broadcast, disconnect) and cross-worker calls travel through the same inboxes.
 */
#ifndef VG_CORE_HUB_H
#define VG_CORE_HUB_H

#include <jansson.h>
#include <stdatomic.h>
#include <stdint.h>

#include "core/broker.h"
#include "core/message.h"
#include "core/subs.h"
#include "net/conn.h"
#include "net/worker.h"
#include "util/chunk.h"

typedef struct vg_hub_s vg_hub_t;

/* Per-worker counters, written by their worker only, summed by /metrics. */
typedef struct vg_hub_stats_s {
    atomic_uint_fast64_t delivered; /* messages queued to a connection */
    atomic_uint_fast64_t dropped;   /* not queued: the connection was closing or too slow */
    atomic_uint_fast64_t bytes_out; /* of delivered frames */
    atomic_uint_fast64_t bytes_in;  /* WebSocket payload received */
    atomic_uint_fast64_t slow_consumers;
    /* publish-to-write latency, one sample per (message, worker): bucket i counts samples
     * <= vg_hub_latency_bounds_us[i] */
    atomic_uint_fast64_t latency_buckets[16];
    atomic_uint_fast64_t latency_count;
    atomic_uint_fast64_t latency_sum_us;
} vg_hub_stats_t;

extern const double vg_hub_latency_bounds_us[16];

/* One message as a worker delivers it. */
typedef struct vg_delivery_s {
    const char *channel;
    size_t channel_len;
    const char *type;
    uint64_t offset;
    vg_chunk_t *frame; /* the native frame: {"type","channel","offset","timestamp",...,"data"} */
    const char *id;    /* an acknowledged-delivery message's id, or NULL */
    /* Nonzero when the subscriber gets it as an event-type listener (vg_hub_type_listener_add),
     * not through a channel subscription: it must check that its user may read the channel. */
    int by_type;
} vg_delivery_t;

/* A wire format other than the native one (a compatibility profile): render() turns a native
 * frame into the format's frame, or returns NULL when the format does not carry that message.
 * A worker renders each message at most once per format (vg_hub_render caches it while the
 * message is being fanned out), so a profile costs one encode per message, not per socket. */
typedef struct vg_format_s {
    const char *name;
    vg_chunk_t *(*render)(const vg_delivery_t *d); /* one reference for the caller, or NULL */
} vg_format_t;

/* Worker thread: the frame for d in `format` (one reference for the caller) or NULL. */
vg_chunk_t *vg_hub_render(vg_worker_t *w, const vg_format_t *format, const vg_delivery_t *d);

/* Runs fn(w, arg) on worker `worker_id`'s thread (e.g. for a Socket.IO session whose transport
 * lives on another worker), in order with its deliveries, and never under the hub's locks, so fn
 * may publish or queue further calls (a call that arrives while that worker subscribes with
 * recovery runs right after the subscribe).  Thread-safe.  When that worker is
 * not running, fn is not called and fn_cancel(arg) (may be NULL) is, on the calling thread. */
void vg_hub_run_on(vg_hub_t *h, int worker_id, void (*fn)(vg_worker_t *w, void *arg), void *arg,
                   void (*fn_cancel)(void *arg));

/* The hub of num_workers workers over `broker` (borrowed: it must outlive the hub; the hub
 * becomes its sink). */
vg_hub_t *vg_hub_new(int num_workers, vg_broker_t *broker);

/* Worker 0 calls fn(arg, now_ms) every period_ms (the state documents' flush). */
void vg_hub_set_ticker(vg_hub_t *h, void (*fn)(void *arg, int64_t now_ms), void *arg,
                       uint64_t period_ms);
void vg_hub_free(vg_hub_t *h);

/* Worker lifecycle (vg_server_callbacks_t.on_worker_start/stop): creates/destroys the worker's
 * inbox, wake-up handle and subscription index. */
void vg_hub_worker_start(vg_hub_t *h, vg_worker_t *w);
void vg_hub_worker_stop(vg_hub_t *h, vg_worker_t *w);

/* Publishes n messages atomically with respect to other publishes (their offsets are
 * consecutive per channel and every subscriber sees them in this order).  The caller validated
 * channel names and types.  Writes each message's offset into offsets[i].  Thread-safe. */
void vg_hub_publish(vg_hub_t *h, const vg_publish_t *msgs, size_t n, uint64_t *offsets);
/* Publishes a message whose JSON text is complete as given (no envelope, no history), e.g. state
 * deltas.  Ordered with every other publish. */
void vg_hub_publish_raw(vg_hub_t *h, const char *channel, const char *type, const char *json,
                        size_t len);
/* Total messages published since start. */
uint64_t vg_hub_published(vg_hub_t *h);
/* Channel records held (channels published to recently, or with history, or durable) and
 * records freed since start.  Subscribing creates none. */
void vg_hub_channel_counts(vg_hub_t *h, size_t *live, uint64_t *freed);

/* Worker thread.  Calls subscribe(arg) (which adds the session's subscriptions to the worker's
 * index) atomically with reading the channels' positions and history, so that every message
 * after the positions arrives live and every missed one is in *missed: no gap, no duplicate,
 * even when publishes race the subscribe.  Fills the out fields of rec[0..n). */
void vg_hub_subscribe_atomically(vg_worker_t *w, void (*subscribe)(void *arg), void *arg,
                                 vg_recovery_t *rec, size_t n, vg_missed_t *missed);

/* vg_hub_subscribe_atomically with a time recovery as well (tr may be NULL). */
void vg_hub_subscribe_atomically_ex(vg_worker_t *w, void (*subscribe)(void *arg), void *arg,
                                    vg_recovery_t *rec, size_t n, const vg_time_recovery_t *tr,
                                    vg_missed_t *missed);

/* An admin command (vg_hub_broadcast, vg_hub_notify_user, vg_hub_disconnect) as each worker
 * offers it to each of its connections: the hub knows connections, not what speaks on them, so
 * the layer that owns the connections' data decides which ones it concerns. */
typedef struct vg_hub_command_s {
    int disconnect;    /* 0: send `frame`; 1: close with code and reason */
    const char *user;  /* only this user's connections, or NULL: everyone's */
    uint64_t conn_id;  /* disconnect with user NULL: only this connection; native_only: all but */
    int native_only;   /* only sockets speaking the native format */
    vg_chunk_t *frame; /* borrowed */
    int code;
    const char *reason;
} vg_hub_command_t;
typedef void (*vg_hub_command_cb)(vg_conn_t *conn, const vg_hub_command_t *cmd);
/* Before the workers start: who applies commands to a connection. */
void vg_hub_set_command_handler(vg_hub_t *h, vg_hub_command_cb cb);

/* Sends a frame to every WebSocket (user NULL) or to the user's.  Thread-safe. */
void vg_hub_broadcast(vg_hub_t *h, const char *user, vg_chunk_t *frame);
/* Sends a frame to the user's native-format WebSockets except the one with except_conn_id (e.g.
 * {"type":"acked"} so the user's other tabs drop an alert acked here).  Thread-safe. */
void vg_hub_notify_user(vg_hub_t *h, const char *user, uint64_t except_conn_id, vg_chunk_t *frame);
/* Closes the user's connections, or the one with conn_id (user NULL), with code and reason. */
void vg_hub_disconnect(vg_hub_t *h, const char *user, uint64_t conn_id, int code,
                       const char *reason);

/* The calling worker's subscription index and stats. */
vg_subs_t *vg_hub_subs(vg_worker_t *w);
vg_hub_stats_t *vg_hub_stats(vg_worker_t *w);
/* Sums the stats of every worker into out. */
void vg_hub_stats_sum(vg_hub_t *h, vg_hub_stats_t *out);

/* Subscribers that filter by event type without a channel subscription: they get every message
 * (delivery.by_type set) and check themselves what their user may read.  A per-worker list. */
void vg_hub_type_listener_add(vg_worker_t *w, vg_subscriber_t *sub);
void vg_hub_type_listener_remove(vg_worker_t *w, vg_subscriber_t *sub);

#endif
