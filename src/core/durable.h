/*
 * Durable channels (--durable-channels): their history is written through to the store as the
 * hub publishes, and read back at start (core/durable.c).
 */
#ifndef VG_CORE_DURABLE_H
#define VG_CORE_DURABLE_H

#include <stdint.h>

#include "core/hub.h"
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
 * hub, then makes the hub append each new message of those channels to the store (d must outlive
 * the hub). */
void vg_durable_restore(vg_hub_t *hub, vg_store_t *store, const vg_patterns_t *channels,
                        vg_durable_t *d, uint64_t history_size, double history_ttl);

#endif
