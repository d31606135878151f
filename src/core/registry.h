/*
 * The registry: every open WebSocket of the process, and how many each user holds.
 *
 * Workers register a connection when its WebSocket opens and unregister it before freeing it.
 * The registry is read by the admin and status endpoints on any worker thread, so it has one
 * mutex; it is touched only on connect, disconnect, subscription changes and admin queries,
 * never on the delivery path.  Counters that change per message are atomics in the entry.
 */
#ifndef VG_CORE_REGISTRY_H
#define VG_CORE_REGISTRY_H

#include <jansson.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

typedef struct vg_registry_s vg_registry_t;
typedef struct vg_user_s vg_user_t;

/* One registered connection.  Embedded in the session; fields marked (locked) are read and
 * written only under the registry's mutex. */
typedef struct vg_reg_entry_s {
    uint64_t conn_id;
    int worker_id;
    char peer[48];
    const char *endpoint; /* "/ws", static */
    int64_t connected_at_ms;
    atomic_int_fast64_t last_heartbeat_ms; /* last frame of any kind from the peer */
    atomic_uint_fast64_t messages_in, messages_out;
    char *subscriptions; /* (locked) JSON array text of the channel subscriptions */
    /* private, (locked) */
    size_t _subs_len, _subs_cap; /* of `subscriptions` (valid once it is set) */
    vg_user_t *_user;
    struct vg_reg_entry_s *_prev, *_next;           /* all connections */
    struct vg_reg_entry_s *_user_prev, *_user_next; /* the user's connections */
} vg_reg_entry_t;

vg_registry_t *vg_registry_new(void);
void vg_registry_free(vg_registry_t *r);

/* Registers a connection for `user` unless the user already holds `max_per_user`.  Returns 0,
 * or VG_ELIMIT (nothing registered). */
int vg_registry_add(vg_registry_t *r, vg_reg_entry_t *e, const char *user, int max_per_user);
/* Unregisters (no-op for an entry that was never added). */
void vg_registry_remove(vg_registry_t *r, vg_reg_entry_t *e);
/* Replaces the entry's subscription list (takes ownership of the heap string). */
void vg_registry_set_subscriptions(vg_registry_t *r, vg_reg_entry_t *e, char *json_array);
/* Adds to the list: `items` is JSON array members ("a","b"), `len` bytes.  Costs what it adds,
 * not the length of the list, so a connection subscribing one channel at a time never pays for
 * the ones it already has. */
void vg_registry_append_subscriptions(vg_registry_t *r, vg_reg_entry_t *e, const char *items,
                                      size_t len);

size_t vg_registry_total(vg_registry_t *r);
size_t vg_registry_users(vg_registry_t *r);
size_t vg_registry_user_count(vg_registry_t *r, const char *user);
/* {"alice":2,"bob":1} */
json_t *vg_registry_connections_by_user(vg_registry_t *r);
/* Array of connection objects (PROTOCOL.md), all or one user's (user may be NULL). */
json_t *vg_registry_describe(vg_registry_t *r, const char *user, int64_t now_ms);
/* Calls fn for every entry of `user` (or all when NULL) under the lock; fn must not call back
 * into the registry.  Returns the number of entries visited. */
size_t vg_registry_each(vg_registry_t *r, const char *user, void (*fn)(vg_reg_entry_t *, void *),
                        void *arg);

#endif
