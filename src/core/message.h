/*
 * A published message and the positions clients recover from, as the hub and every broker see
 * them: what a publisher hands in (vg_publish_t), the native envelope it is encoded to once, and
 * what a subscriber asks to recover (vg_recovery_t, vg_time_recovery_t) and gets (vg_missed_t).
 */
#ifndef VG_CORE_MESSAGE_H
#define VG_CORE_MESSAGE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "util/chunk.h"

/* A message to publish. */
typedef struct vg_publish_s {
    const char *channel;
    const char *type;
    json_t *data;   /* borrowed */
    const char *id; /* acknowledged-delivery message id, or NULL */
    /* Publisher-chosen envelope fields (an object, borrowed, or NULL), written after "timestamp"
     * so a compatibility profile can give its client the exact top-level fields it expects
     * (e.g. OpenEye's camera_event has camera_id and event_type beside data). */
    json_t *extra;
} vg_publish_t;

/* {"type":T,"channel":C,"offset":N,"timestamp":"...",<extra>,"id":I,"data":D} framed once as a
 * WebSocket text frame: the one encoding every subscriber shares (one reference for the
 * caller). */
vg_chunk_t *vg_message_encode(const vg_publish_t *m, uint64_t offset, int64_t time_ms);

/* A channel position for recovery: the client's (in) and the channel's current one (out). */
typedef struct vg_recovery_s {
    const char *channel; /* an exact channel name */
    int has_since;       /* in: the client asked to recover from since_offset/since_epoch */
    uint64_t since_offset;
    const char *since_epoch; /* NULL with any_epoch: the channel's current epoch */
    int any_epoch;
    int recovered;   /* out: every message after since is in `missed` */
    uint64_t offset; /* out: the channel's last offset (0: nothing published yet) */
    char epoch[17];  /* out */
} vg_recovery_t;

/* Recovery by time for patterns: every channel matching one of the patterns, except those
 * recovered by offset in the same call, replays its history after since_ms.  This is how a
 * client gets the channels that first appeared while it was away. */
typedef struct vg_time_recovery_s {
    const char *const *patterns;
    size_t num_patterns;
    int64_t since_ms;
} vg_time_recovery_t;

/* Frames to send before any live message, in order. */
typedef struct vg_missed_s {
    vg_chunk_t **frames; /* one reference each: vg_missed_dispose drops them */
    char **types;        /* each frame's message type, for event-type filters */
    char **channels;     /* each frame's channel */
    uint64_t *offsets;   /* each frame's offset */
    size_t count;
} vg_missed_t;

/* Appends one missed message (takes a reference on frame, copies the strings). */
void vg_missed_push(vg_missed_t *m, const char *channel, uint64_t offset, const char *type,
                    vg_chunk_t *frame);
void vg_missed_dispose(vg_missed_t *missed);

#endif
