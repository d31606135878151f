/*
 * The in-process broker (core/broker.h): channels, offsets, epochs and history in this
 * process's memory, bounded by --history-size, --history-ttl and --history-memory.  Durable
 * channels (broker/durable.h) are written through to the store and restored from it at start.
 */
#ifndef VG_BROKER_MEMORY_H
#define VG_BROKER_MEMORY_H

#include <stddef.h>
#include <stdint.h>

#include "core/broker.h"

/* History limits (--history-size, --history-ttl, --history-memory). */
typedef struct vg_history_limits_s {
    size_t size;        /* messages kept per channel; 0 disables history */
    double ttl_seconds; /* older ones are dropped */
    size_t max_bytes;   /* all channels together; the oldest go first */
} vg_history_limits_t;

vg_broker_t *vg_memory_broker_new(const vg_history_limits_t *history);

/* Durable channels: for each published message on a channel wants() accepts, append() is called
 * under the broker's lock with the message as sent, before any worker sees it. */
typedef struct vg_durability_s {
    int (*wants)(void *arg, const char *channel);
    int (*append)(void *arg, const char *channel, uint64_t offset, const char *epoch,
                  int64_t time_ms, const uint8_t *text, size_t len);
    void *arg;
} vg_durability_t;
void vg_memory_broker_set_durability(vg_broker_t *b, const vg_durability_t *d);
/* At start, before the workers: a durable channel resumes its offset and epoch, and its stored
 * history (text is the message JSON as it was sent). */
void vg_memory_broker_restore_channel(vg_broker_t *b, const char *channel, uint64_t last_offset,
                                      const char *epoch);
void vg_memory_broker_restore_message(vg_broker_t *b, const char *channel, uint64_t offset,
                                      int64_t time_ms, const char *type, const char *text,
                                      size_t len);

#endif
