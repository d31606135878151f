/*
 * Acknowledged delivery: the messages of --ack-channels, kept in the store until each user acks
 * them (app/acks.c).
 */
#ifndef VG_APP_ACKS_H
#define VG_APP_ACKS_H

#include <jansson.h>

#include "app/app.h"
#include "app/hub.h"

int vg_acks_is_ack_channel(const vg_app_t *app, const char *channel);
/* Gives a message for an ack channel its id (the publisher's "id", else a random one written
 * into id_buf).  Returns 0, or -1 with *err naming the field. */
int vg_acks_prepare(const vg_app_t *app, json_t *msg, vg_publish_t *p, char id_buf[33],
                    const char **err);
/* Commits the ack-channel messages among msgs to the store (one transaction).  Returns 0 once
 * they are durable, or VG_ESTORE (then nothing may be published). */
int vg_acks_commit(vg_app_t *app, const vg_publish_t *msgs, size_t n);
/* Sends the session's user every unacked message on the channels matching the patterns, oldest
 * first (right after subscribing). */
void vg_acks_replay(vg_session_t *s, const char *const *patterns, size_t n);
void vg_acks_forget_replayed(vg_session_t *s);
/* Records the user's ack.  Returns 0 or VG_ESTORE. */
int vg_acks_ack(vg_app_t *app, const char *user, const char *id);
/* The user's pending messages on the allowed channels, oldest first (at most limit; 0: all),
 * or NULL when the store failed. */
json_t *vg_acks_list(vg_app_t *app, const char *user, const vg_patterns_t *allowed, size_t limit);

#endif
