/*
 * Acknowledged delivery: the messages of --ack-channels, kept in the store until each user acks
 * them (core/acks.c).  Replaying them to a stream is the transport's job (transport/replay.c).
 */
#ifndef VG_CORE_ACKS_H
#define VG_CORE_ACKS_H

#include <jansson.h>

#include "core/hub.h"
#include "proto/channel.h"
#include "store/store.h"

/* The acknowledged-delivery settings; the server context embeds one (its fields borrowed). */
typedef struct vg_acks_s {
    vg_store_t *store;
    const vg_patterns_t *channels; /* --ack-channels (a profile may add to it before start) */
    double ttl_seconds;            /* --ack-ttl */
    size_t max;                    /* --ack-max: pending messages kept per channel */
} vg_acks_t;

int vg_acks_is_ack_channel(const vg_acks_t *a, const char *channel);
/* Nonzero when a subscription to one of the patterns may receive ack-channel messages. */
int vg_acks_may_cover(const vg_acks_t *a, const char *const *patterns, size_t n);
/* Gives a message for an ack channel its id (the publisher's "id", else a random one written
 * into id_buf).  Returns 0, or -1 with *err naming the field. */
int vg_acks_prepare(const vg_acks_t *a, json_t *msg, vg_publish_t *p, char id_buf[33],
                    const char **err);
/* Commits the ack-channel messages among msgs to the store (one transaction).  Returns 0 once
 * they are durable, or VG_ESTORE (then nothing may be published). */
int vg_acks_commit(vg_acks_t *a, const vg_publish_t *msgs, size_t n);
/* The stored message as it is delivered live, with "redelivered":true (vg_free it). */
char *vg_acks_encode_stored(const vg_store_ack_msg_t *m);
/* Records the user's ack.  Returns 0 or VG_ESTORE. */
int vg_acks_ack(vg_acks_t *a, const char *user, const char *id);
/* The user's pending messages on the allowed channels, oldest first (at most limit; 0: all),
 * or NULL when the store failed. */
json_t *vg_acks_list(vg_acks_t *a, const char *user, const vg_patterns_t *allowed, size_t limit);

#endif
