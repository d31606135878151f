/*
 * The broker interface: who numbers each channel's messages, keeps their history, and hands
 * them to this node's hub in order.
 *
 * The hub (core/hub.c) fans messages out to the workers of one process; the broker decides what
 * a message's offset and epoch are and what a reconnecting client missed.  The in-process broker
 * (broker/memory.c) keeps channels in this process.  A broker shared by several nodes (Redis)
 * implements the same calls, so that offsets, history and recovery are the same on every node.
 *
 * A broker is a struct whose first member is `ops` (like the store's vtable in store/store.h);
 * the hub only calls through it.  The hub never includes a broker's header: the cli creates the
 * broker and hands it to vg_hub_new.
 */
#ifndef VG_CORE_BROKER_H
#define VG_CORE_BROKER_H

#include <stddef.h>
#include <stdint.h>

#include "core/message.h"

typedef struct vg_broker_s vg_broker_t;

/* A message the broker accepted, as it hands it to the hub: borrowed for the call. */
typedef struct vg_accepted_s {
    const char *channel;
    const char *type;
    const char *id; /* acknowledged-delivery id, or NULL */
    uint64_t offset;
    vg_chunk_t *frame; /* the native frame (vg_message_encode, or raw JSON for publish_raw) */
} vg_accepted_t;

/* Where a broker sends what it accepted: called in each channel's offset order, and never while
 * a recover() call holds the broker (so recover sees a consistent cut). */
typedef struct vg_broker_sink_s {
    void (*accept)(void *arg, const vg_accepted_t *m);
    void *arg;
} vg_broker_sink_t;

typedef struct vg_broker_ops_s {
    const char *name;
    /* Before the first publish: where accepted messages go from now on. */
    void (*start)(vg_broker_t *b, const vg_broker_sink_t *sink);
    /* Publishes n messages atomically with respect to other publishes (consecutive offsets per
     * channel, everyone sees them in this order); writes each one's offset into offsets[i].
     * Thread-safe. */
    void (*publish)(vg_broker_t *b, const vg_publish_t *msgs, size_t n, uint64_t *offsets);
    /* A message whose JSON text is complete as given (no envelope, no history), e.g. a state
     * delta: it takes the channel's next offset and is ordered with the other publishes. */
    void (*publish_raw)(vg_broker_t *b, const char *channel, const char *type, const char *json,
                        size_t len);
    /* Fills the out fields of rec[0..n) and *missed (and the channels recovered by time, tr may
     * be NULL), then calls locked(arg) before any message published after that cut reaches the
     * sink: the caller subscribes in locked(), so nothing is missed or delivered twice. */
    void (*recover)(vg_broker_t *b, vg_recovery_t *rec, size_t n, const vg_time_recovery_t *tr,
                    vg_missed_t *missed, void (*locked)(void *arg), void *arg);
    /* Housekeeping, now and then (worker 0's tick): expire history, free idle channels. */
    void (*tick)(vg_broker_t *b, int64_t now_ms);
    /* Channels the broker holds now, and freed since start (for /metrics). */
    void (*channel_counts)(vg_broker_t *b, size_t *live, uint64_t *freed);
    void (*free)(vg_broker_t *b);
} vg_broker_ops_t;

struct vg_broker_s {
    const vg_broker_ops_t *ops;
};

#endif
