/*
 * Compatibility profiles (DESIGN.md section 6, docs/profiles/): endpoints that speak one seed
 * system's wire format on top of the same hub, so that system's unchanged frontend works against
 * vigil.  A profile adds routes, a vg_format_t that renders hub messages the way its client
 * expects, and, where the seed pushed a whole document on a timer, a state feed
 * (vg_state_add_feed).  None forks the hub: same subscription index, limits, history and acks.
 *
 * Enabled with --profile NAME (repeatable) or --profile all.
 */
#ifndef VG_PROFILES_PROFILES_H
#define VG_PROFILES_PROFILES_H

#include <jansson.h>
#include <stddef.h>

#include "transport/transport.h"
#include "core/hub.h"
#include "util/buf.h"

typedef struct vg_profile_s {
    const char *name;
    /* Adds routes and feeds; may keep per-app state in *state.  Returns 0 or VG_ECONFIG with a
     * message naming the option in err. */
    int (*init)(vg_app_t *app, void **state, char *err, size_t errlen);
    void (*dispose)(void *state); /* may be NULL */
    /* Appends the profile's own /metrics lines (Prometheus text) to out.  May be NULL. */
    void (*metrics)(void *state, vg_buf_t *out);
} vg_profile_t;

/* Helpers shared by the profiles. */

/* NULL when `user` can stand for "{user}" in a channel: one plain segment.  Otherwise why not
 * (a static text fit for a close reason): a '.' would make it several segments, and "*" or ">"
 * a wildcard over every user's channel. */
const char *vg_profile_user_check(const char *user);
/* "anomalies.{user}" -> "anomalies.alice" (heap string), or NULL when the result is not a valid
 * pattern or the pattern holds "{user}" and vg_profile_user_check refuses the user. */
char *vg_profile_expand_user(const char *pattern, const char *user);
/* For an endpoint policy's admit: refuses (nonzero, *reason) a user that cannot stand for
 * "{user}" when one of `channels` (comma-separated) holds it. */
int vg_profile_admit_user(vg_session_t *s, const char *channels, const char **reason);
/* Subscribes a profile session to each of `channels` (comma-separated patterns; "{user}" is
 * replaced by the session's user) that the user may read.  Returns the number subscribed. */
size_t vg_profile_subscribe(vg_session_t *s, const char *channels);
/* The native message's JSON object (parsed from d->frame), a new reference, or NULL. */
json_t *vg_profile_parse(const vg_delivery_t *d);
/* What a profile's client sent.  The text "ping" (every seed client's keep-alive) is answered
 * "pong" here and NULL returned with *bad = 0; a JSON object is returned (a new reference);
 * anything else returns NULL with *bad = 1 for the profile to answer in its own error format. */
json_t *vg_profile_request(vg_session_t *s, int opcode, const uint8_t *data, size_t len, int *bad);
/* Frames a JSON value as one text message (and drops the reference).  NULL on failure. */
vg_chunk_t *vg_profile_frame(json_t *msg);
/* Sends a JSON value as a text message on the session (and drops the reference). */
void vg_profile_send(vg_session_t *s, json_t *msg);

#endif
