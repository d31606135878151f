/*
 * State documents: named JSON documents that backends PUT and PATCH (RFC 7396) and dashboards
 * subscribe to as the channel "state.<name>".  A subscriber gets a snapshot, then deltas: merge
 * patches coalesced so that at most one goes out per interval (several updates inside one
 * interval become one merged patch; nothing goes out when nothing changed).
 *
 * Messages: {"type":"state","name":N,"version":V,"snapshot":{...}} and
 * {"type":"state","name":N,"version":V,"patch":{...}}; a client applies a patch only when its
 * version is newer than the one it holds (a patch is the net change since the previous push, so
 * applying it to any version in between gives the same document).
 *
 * Thread-safe: one mutex; updates come from any worker, the periodic flush from one.
 */
#ifndef VG_CORE_STATE_H
#define VG_CORE_STATE_H

#include <jansson.h>
#include <stdint.h>

#include "util/chunk.h"

typedef struct vg_state_s vg_state_t;
typedef struct vg_hub_s vg_hub_t;

/* A periodic full broadcast (--state-broadcast NAME:TYPE:SECONDS): the document is published on
 * the channel NAME as a message of type TYPE every SECONDS. */
typedef struct vg_state_broadcast_s {
    char *name;
    char *type;
    double seconds; /* 0: not periodic */
    char *channel;  /* where it is published; NULL: the channel NAME */
    int on_change;  /* also publish (within one tick) whenever the document's version changes */
} vg_state_broadcast_t;

typedef struct vg_store_s vg_store_t;

/* Loads the documents kept in `store` (may be NULL: memory only); every change is written there
 * before it is acknowledged. */
vg_state_t *vg_state_new(vg_hub_t *hub, double interval_seconds, vg_store_t *store);
void vg_state_free(vg_state_t *st);
/* Parses "NAME:TYPE:SECONDS" and adds it.  Returns 0 or VG_EINVAL. */
int vg_state_add_broadcast(vg_state_t *st, const char *spec);

/* Adds a full-document feed (compatibility profiles: OpenEye's statistics_update every 5 s and on
 * change, Socket.IO's status_update every 500 ms).  The message is {"type":TYPE,...,"data":DOC}
 * on spec->channel.  Strings are copied. */
void vg_state_add_feed(vg_state_t *st, const vg_state_broadcast_t *spec);

/* Replaces the document (creating it).  Writes the new version.  Returns 0, or VG_ESTORE when it
 * could not be stored (nothing changed then). */
int vg_state_put(vg_state_t *st, const char *name, json_t *doc, uint64_t *version);
/* Applies a merge patch (creating the document from {} when absent).  Returns 0, or VG_EINVAL
 * when the patch is too deep. */
int vg_state_patch(vg_state_t *st, const char *name, json_t *patch, uint64_t *version);
/* Returns a new reference to the document and its version, or NULL when absent. */
json_t *vg_state_get(vg_state_t *st, const char *name, uint64_t *version);
/* Deletes; returns 0, or VG_EINVAL when absent. */
int vg_state_delete(vg_state_t *st, const char *name);

/* Pushes the deltas and broadcasts that are due.  Call every few tens of ms from one thread. */
void vg_state_tick(vg_state_t *st, int64_t now_ms);
/* The snapshot frame for a new subscriber of "state.<name>", or NULL when there is no such
 * document.  One reference for the caller. */
vg_chunk_t *vg_state_snapshot_frame(vg_state_t *st, const char *name);

#endif
