/*
 * The subscription index of one worker: which of the worker's connections want which channels.
 *
 * Each worker has its own index, touched only by its own thread, so delivery takes no lock.
 * Exact names are looked up in a hash table; patterns live in a tree keyed by segment (with "*"
 * and ">" children), so matching one channel costs about its number of segments, not the number
 * of patterns.
 *
 * A connection embeds a vg_subscriber_t.  vg_subs_match calls back once per subscriber even when
 * several of its subscriptions match the channel (a per-call stamp on the subscriber).
 */
#ifndef VG_CORE_SUBS_H
#define VG_CORE_SUBS_H

#include <stddef.h>
#include <stdint.h>

typedef struct vg_subs_s vg_subs_t;
typedef struct vg_sub_entry_s vg_sub_entry_t; /* private: one (subscriber, pattern) pair */

typedef struct vg_subscriber_s {
    void *data; /* public: the owner (e.g. the session) */
    /* public: how the hub delivers to this subscriber (the owner sets it after
     * vg_subscriber_init); the argument is a const vg_delivery_t * (core/hub.h). */
    void (*deliver)(struct vg_subscriber_s *sub, const void *delivery);
    /* private */
    struct vg_subscriber_s *_tl_prev, *_tl_next; /* the hub's event-type listener list */
    uint64_t _stamp;          /* last vg_subs_match call that reached this subscriber */
    vg_sub_entry_t *_entries; /* this subscriber's subscriptions (a list) */
    size_t _count;
} vg_subscriber_t;

typedef void (*vg_subs_match_cb)(vg_subscriber_t *sub, void *arg);

vg_subs_t *vg_subs_new(void);
/* Frees the index.  Subscribers still in it must be removed first (vg_subs_remove_all). */
void vg_subs_free(vg_subs_t *s);

void vg_subscriber_init(vg_subscriber_t *sub, void *data);

/* Bounds the subscriptions of each subscriber (--max-subscriptions; 0: no limit, the default).
 * Every transport subscribes through vg_subs_add, so the bound holds for all of them. */
void vg_subs_set_limit(vg_subs_t *s, size_t max_per_subscriber);
size_t vg_subs_limit(const vg_subs_t *s);

/* Subscribes to a valid channel name or pattern (the caller validated it).  Returns 1 when
 * added, 0 when the subscriber already had exactly this subscription, VG_ELIMIT (nothing added)
 * when it already holds the limit's worth of others. */
int vg_subs_add(vg_subs_t *s, vg_subscriber_t *sub, const char *pattern, size_t len);
/* Nonzero when the subscriber has exactly this subscription. */
int vg_subs_contains(const vg_subs_t *s, const vg_subscriber_t *sub, const char *pattern,
                     size_t len);
/* Returns 1 when removed, 0 when the subscriber did not have it. */
int vg_subs_remove(vg_subs_t *s, vg_subscriber_t *sub, const char *pattern, size_t len);
/* Removes every subscription of the subscriber (on disconnect). */
void vg_subs_remove_all(vg_subs_t *s, vg_subscriber_t *sub);
/* Number of subscriptions the subscriber holds. */
size_t vg_subscriber_count(const vg_subscriber_t *sub);
/* Calls fn(pattern, len, arg) for each of the subscriber's subscriptions, in the order added. */
void vg_subscriber_each(const vg_subscriber_t *sub,
                        void (*fn)(const char *pattern, size_t len, void *arg), void *arg);

/* Calls cb exactly once for every subscriber with at least one subscription matching the
 * channel name.  cb must not add or remove subscriptions. */
void vg_subs_match(vg_subs_t *s, const char *channel, size_t len, vg_subs_match_cb cb, void *arg);

#endif
