/*
 * Durable channels (--durable-channels): their history is written through to the store as the
 * in-process broker publishes, and read back at start (broker/durable.c).
 */
#ifndef VG_BROKER_DURABLE_H
#define VG_BROKER_DURABLE_H

#include <stdint.h>

#include "core/broker.h"
#include "proto/channel.h"
#include "store/store.h"

typedef struct vg_durable_s {
    vg_store_t *store;
    const vg_patterns_t *channels; /* borrowed: which channels are durable */
    uint64_t history_size;         /* --history-size: messages kept per channel */
    double history_ttl;            /* --history-ttl, seconds */
    unsigned appends;              /* since start; the stored history is trimmed now and then */
} vg_durable_t;

/* Before the workers start: restores every durable channel's offset, epoch and history into the
 * in-process broker, then makes it append each new message of those channels to the store.
 * Returns the write-through state, to free with vg_durable_free after the broker. */
vg_durable_t *vg_durable_start(vg_broker_t *broker, vg_store_t *store,
                               const vg_patterns_t *channels, uint64_t history_size,
                               double history_ttl);
void vg_durable_free(vg_durable_t *d);

#endif
