/*
 * The durable store (DESIGN.md section 5): acknowledged-delivery queues, the history of durable
 * channels and state documents, behind one small interface so that SQLite (store_sqlite.c, the
 * default) and later Redis can back it.
 *
 * vg_store_t is a vtable (redis ConnectionType): each backend embeds it first in its own struct
 * and fills `type`; callers use the vg_store_* wrappers below and never see the backend.
 *
 * Threads.  A store may be called from any thread: every call takes the store's own mutex for
 * its whole duration, so calls are serialized and each one sees the effects of the ones before.
 * Calls block: a write waits for its commit (an fsync with SQLite, a few milliseconds), so a
 * worker that must not stall its loop runs them through uv_queue_work.  Callbacks (the *_cb
 * types) run with the mutex held; they must not call into the store, and the views they receive
 * are valid only until they return.
 *
 * Errors.  Every function returns a non-negative value on success and a negative code on
 * failure: VG_EINVAL for arguments it refuses, VG_ESTORE when the backend failed (the backend
 * logs why at warning level, with the database's own message).  A failed write changes
 * nothing: each call is one transaction.
 *
 * Times are milliseconds since the Unix epoch (vg_wall_ms).  Strings are NUL-terminated UTF-8
 * unless a length is given; JSON is passed as text and stored byte for byte.
 */
#ifndef VG_STORE_STORE_H
#define VG_STORE_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "util/error.h" /* VG_ESTORE */

/* The longest epoch, in bytes, plus its NUL; the hub's are 16 hex digits. */
#define VG_STORE_EPOCH_SIZE 32

typedef struct vg_store_s vg_store_t;

/* ---- records -------------------------------------------------------------------------------- */

/* A message of an acknowledged-delivery channel. */
typedef struct vg_store_ack_msg_s {
    int64_t seq;         /* out: store-wide insertion order, increasing (ignored on append) */
    const char *channel; /* a channel name */
    const char *id;      /* the message id, unique across the store */
    const char *type;    /* the application's event type; may be NULL */
    const char *data;    /* JSON text of the payload */
    size_t data_len;     /* bytes of data */
    /* JSON object text of the publisher's envelope fields (hub.h vg_publish_t.extra), so that a
     * replayed message has the same top-level fields as the live one; NULL when none. */
    const char *extra;
    size_t extra_len;     /* bytes of extra */
    int64_t published_ms; /* publish time */
    int64_t expires_ms;   /* gone from the queues at this time (INT64_MAX: never) */
} vg_store_ack_msg_t;

/* A message of a durable channel's history. */
typedef struct vg_store_hist_msg_s {
    const char *channel;
    uint64_t offset;   /* the channel's offset of this message, >= 1 */
    const char *epoch; /* the channel's epoch, < VG_STORE_EPOCH_SIZE bytes */
    int64_t time_ms;   /* publish time, for trimming by age */
    const char *text;  /* the message as it is sent (encoded once by the hub) */
    size_t len;
} vg_store_hist_msg_t;

/* Each callback returns 0 to go on, nonzero to stop the listing early. */
typedef int (*vg_store_ack_msg_cb)(const vg_store_ack_msg_t *m, void *arg);
typedef int (*vg_store_hist_msg_cb)(const vg_store_hist_msg_t *m, void *arg);
/* A durable channel and where its history stands (its messages may all be trimmed). */
typedef int (*vg_store_hist_channel_cb)(const char *channel, uint64_t last_offset,
                                        const char *epoch, void *arg);
typedef int (*vg_store_name_cb)(const char *name, uint64_t version, void *arg);

/* ---- the vtable ----------------------------------------------------------------------------- */

typedef struct vg_store_type_s {
    const char *name; /* "sqlite" */
    void (*free)(vg_store_t *s);

    int (*ack_append)(vg_store_t *s, const vg_store_ack_msg_t *msgs, size_t n,
                      size_t max_per_channel);
    int (*ack_pending)(vg_store_t *s, const char *user, const char *const *patterns,
                       size_t npatterns, int64_t now_ms, int64_t after_seq, size_t limit,
                       vg_store_ack_msg_cb cb, void *arg);
    int (*ack)(vg_store_t *s, const char *user, const char *id);
    int (*ack_prune)(vg_store_t *s, int64_t now_ms, size_t max_per_channel);

    int (*hist_append)(vg_store_t *s, const vg_store_hist_msg_t *msgs, size_t n);
    int (*hist_read)(vg_store_t *s, const char *channel, uint64_t after_offset, size_t limit,
                     vg_store_hist_msg_cb cb, void *arg);
    int (*hist_trim)(vg_store_t *s, const char *channel, uint64_t keep_last, int64_t older_than_ms);
    int (*hist_last)(vg_store_t *s, const char *channel, uint64_t *last_offset,
                     char epoch[VG_STORE_EPOCH_SIZE]);
    int (*hist_channels)(vg_store_t *s, vg_store_hist_channel_cb cb, void *arg);
    int (*hist_drop)(vg_store_t *s, const char *channel);

    int (*state_put)(vg_store_t *s, const char *name, const char *json, size_t len,
                     uint64_t version);
    int (*state_get)(vg_store_t *s, const char *name, char **json, size_t *len, uint64_t *version);
    int (*state_delete)(vg_store_t *s, const char *name);
    int (*state_list)(vg_store_t *s, vg_store_name_cb cb, void *arg);
} vg_store_type_t;

struct vg_store_s {
    const vg_store_type_t *type;
};

/* ---- opening -------------------------------------------------------------------------------- */

/*
 * Opens (creating on first use) the SQLite store in data_dir: makes the directory and its
 * parents, takes an exclusive lock on data_dir/vigil.lock (one server per data dir), opens
 * data_dir/vigil.db in WAL mode with synchronous=FULL and applies the schema migrations.
 * On success stores the store in *out and returns 0.  On failure returns VG_ESTORE (or VG_EINVAL
 * for an empty path) and writes a one-line message naming the path and the reason into err,
 * e.g. "/var/lib/vigil/vigil.db: file is not a database (corrupt, or not a vigil store)".
 */
int vg_store_sqlite_open(const char *data_dir, vg_store_t **out, char *err, size_t errlen);

/* Closes the store and frees it.  Accepts NULL. */
static inline void vg_store_free(vg_store_t *s)
{
    if (s != NULL)
        s->type->free(s);
}

/* ---- acknowledged delivery ------------------------------------------------------------------ */

/*
 * Appends n messages in one transaction and returns once it is committed (durable), so the
 * publish API may answer 200.  A message whose id is already stored is skipped (a retried
 * publish does not duplicate).  Afterwards every channel written keeps at most max_per_channel
 * messages (0: no cap), the oldest going first.  Returns the number of messages stored, or
 * VG_EINVAL (a NULL channel, id or data) or VG_ESTORE; nothing is stored on error.
 */
static inline int vg_store_ack_append(vg_store_t *s, const vg_store_ack_msg_t *msgs, size_t n,
                                      size_t max_per_channel)
{
    return s->type->ack_append(s, msgs, n, max_per_channel);
}

/*
 * Lists the messages `user` has not acked on the channels matching any of the patterns (channel
 * names or patterns, proto/channel.h), unexpired at now_ms, with seq > after_seq (0: from the
 * start), oldest first, at most `limit` of them (0: all).  Calls cb for each.  Returns the
 * number of calls, or VG_ESTORE.  To page, pass the last seq seen as after_seq.
 */
static inline int vg_store_ack_pending(vg_store_t *s, const char *user, const char *const *patterns,
                                       size_t npatterns, int64_t now_ms, int64_t after_seq,
                                       size_t limit, vg_store_ack_msg_cb cb, void *arg)
{
    return s->type->ack_pending(s, user, patterns, npatterns, now_ms, after_seq, limit, cb, arg);
}

/*
 * Records that `user` acked message `id`: it is never listed for this user again, whatever the
 * connection.  Idempotent.  Returns 1 when the ack was recorded now, 0 when it already was or no
 * such message is stored (acks for unknown ids are not kept), or VG_ESTORE.
 */
static inline int vg_store_ack(vg_store_t *s, const char *user, const char *id)
{
    return s->type->ack(s, user, id);
}

/* Deletes the messages expired at now_ms and, per channel, all but the newest max_per_channel
 * (0: no cap), with their acks.  Run it periodically.  Returns the number deleted, or
 * VG_ESTORE. */
static inline int vg_store_ack_prune(vg_store_t *s, int64_t now_ms, size_t max_per_channel)
{
    return s->type->ack_prune(s, now_ms, max_per_channel);
}

/* ---- durable channel history ---------------------------------------------------------------- */

/*
 * Appends n history messages in one committed transaction; a message replaces one stored at the
 * same (channel, offset).  The channel's last offset and epoch become the message's.  When a
 * channel's epoch changes, its messages of the older epoch are deleted first (offsets restart
 * with a new epoch).  Returns n, or VG_EINVAL (offset 0, epoch missing or too long) or
 * VG_ESTORE.
 */
static inline int vg_store_hist_append(vg_store_t *s, const vg_store_hist_msg_t *msgs, size_t n)
{
    return s->type->hist_append(s, msgs, n);
}

/* Calls cb for the channel's messages with offset > after_offset, in offset order, at most
 * `limit` (0: all).  Returns the number of calls, or VG_ESTORE. */
static inline int vg_store_hist_read(vg_store_t *s, const char *channel, uint64_t after_offset,
                                     size_t limit, vg_store_hist_msg_cb cb, void *arg)
{
    return s->type->hist_read(s, channel, after_offset, limit, cb, arg);
}

/* Deletes the messages of `channel` (NULL: of every channel) that are not among its last
 * keep_last (0: no count limit) or that are older than older_than_ms (<= 0: no age limit).
 * The channel's last offset and epoch stay.  Returns the number deleted, or VG_ESTORE. */
static inline int vg_store_hist_trim(vg_store_t *s, const char *channel, uint64_t keep_last,
                                     int64_t older_than_ms)
{
    return s->type->hist_trim(s, channel, keep_last, older_than_ms);
}

/* Reads the channel's last offset and epoch (kept even when every message was trimmed): returns
 * 1 and fills them, 0 when the channel has no history, or VG_ESTORE. */
static inline int vg_store_hist_last(vg_store_t *s, const char *channel, uint64_t *last_offset,
                                     char epoch[VG_STORE_EPOCH_SIZE])
{
    return s->type->hist_last(s, channel, last_offset, epoch);
}

/* Calls cb for every channel with history (name order), for the hub to resume offsets on
 * start.  Returns the number of calls, or VG_ESTORE. */
static inline int vg_store_hist_channels(vg_store_t *s, vg_store_hist_channel_cb cb, void *arg)
{
    return s->type->hist_channels(s, cb, arg);
}

/* Forgets the channel's history entirely, last offset and epoch included.  Returns 1 when it
 * had one, 0 when not, or VG_ESTORE. */
static inline int vg_store_hist_drop(vg_store_t *s, const char *channel)
{
    return s->type->hist_drop(s, channel);
}

/* ---- state documents ------------------------------------------------------------------------ */

/* Stores (replaces) the document `name` with its JSON text and version.  The version is the
 * caller's (e.g. the previous one plus one).  Returns 0, or VG_ESTORE. */
static inline int vg_store_state_put(vg_store_t *s, const char *name, const char *json, size_t len,
                                     uint64_t version)
{
    return s->type->state_put(s, name, json, len, version);
}

/* Reads the document `name`: returns 1 with *json a NUL-terminated heap copy the caller frees
 * with vg_free, *len its length and *version; 0 when there is no such document (*json = NULL);
 * or VG_ESTORE. */
static inline int vg_store_state_get(vg_store_t *s, const char *name, char **json, size_t *len,
                                     uint64_t *version)
{
    return s->type->state_get(s, name, json, len, version);
}

/* Deletes the document: returns 1 when it existed, 0 when not, or VG_ESTORE. */
static inline int vg_store_state_delete(vg_store_t *s, const char *name)
{
    return s->type->state_delete(s, name);
}

/* Calls cb for every document (name order).  Returns the number of calls, or VG_ESTORE. */
static inline int vg_store_state_list(vg_store_t *s, vg_store_name_cb cb, void *arg)
{
    return s->type->state_list(s, cb, arg);
}

#endif
