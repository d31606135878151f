/*
 * The in-process broker: channels, their offsets and epochs, and their history, in this
 * process's memory (core/broker.h says what a broker does).
 *
 * One mutex orders everything: a publish takes each channel's next offset, keeps the frame in
 * the channel's history and hands it to the hub's sink under it, so every worker's inbox sees
 * every channel in offset order; a recovery reads positions and history and lets the caller
 * subscribe under it, so nothing published around a subscribe is missed or doubled.
 *
 * A channel record exists only while the channel was published to recently, still has history,
 * or is durable: subscribers and polls never create one, so any number of names can be
 * subscribed to without the broker holding anything for them.
 */
#include "broker/memory.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "proto/channel.h"
#include "proto/ws.h"
#include "util/alloc.h"
#include "util/clock.h"
#include "util/log.h"

#define CHANNEL_BUCKETS 65536
/* Counters of records freed, per slot of name hashes (see run_epoch).  More slots than buckets,
 * so that a free rarely changes the epoch of another name; the pages are only touched as
 * records are freed. */
#define FREE_SLOTS (1u << 20)
/* A channel without history is freed once nothing was published on it for --history-ttl, and
 * never sooner than this: a live subscriber that saw its last message then sees the next run's
 * offsets restart with a clearly later timestamp, which clients read as a restart (vigil.js
 * allows 200 ms of skew), not as duplicates. */
#define CHANNEL_KEEP_MIN_MS 1000
/* Idle channels freed per publish and per tick of worker 0: enough to keep up with channels
 * being created, small enough not to hold the publish lock for long. */
#define SWEEP_PER_PUBLISH 4
#define SWEEP_PER_TICK    1024

typedef struct channel_s channel_t;

/* One message kept in a channel's history.  Entries sit on two lists: their channel's (oldest
 * first) and the hub's (all channels, in publish order), so that both the per-channel cap and
 * the global memory budget evict the oldest first in O(1). */
typedef struct hist_s {
    vg_chunk_t *frame; /* the delivered frame, re-sent as is on recovery */
    char *type;        /* for event-type filters */
    uint64_t offset;
    int64_t time_ms;
    channel_t *channel;
    struct hist_s *ch_prev, *ch_next;
    struct hist_s *all_prev, *all_next;
} hist_t;

struct channel_s {
    char *name;
    uint64_t offset; /* of the last message published */
    char epoch[17];  /* changes whenever offsets restart (a new process, a new channel) */
    int64_t last_ms; /* of the last message published */
    hist_t *oldest, *newest;
    size_t count;
    struct channel_s *next;
    /* The hub's list of records by last publish, newest last (since_time, the idle sweep). */
    struct channel_s *by_time_prev, *by_time_next;
    int in_by_time;
};

typedef struct memory_s {
    vg_broker_t base;
    pthread_mutex_t lock; /* everything below, and the order in which the sink is called */
    vg_broker_sink_t sink;
    channel_t **channels;
    /* Per slot of name hashes: records freed there so far.  It is part of the epoch of a
     * channel's next run (run_epoch), so a run that starts after a free has a new epoch, while
     * one that starts without a record being freed in between has the epoch that subscribers
     * were given before it existed. */
    uint32_t *frees;
    channel_t *by_time_oldest, *by_time_newest;
    size_t num_channels;
    uint64_t channels_freed;
    vg_history_limits_t history;
    hist_t *oldest, *newest; /* every history entry, in publish order */
    size_t history_bytes;
    uint64_t epoch_key;
    vg_durability_t durability;
} memory_t;

static void hist_drop(memory_t *h, hist_t *e);
static channel_t *channel_get(memory_t *h, const char *name);
static void by_time_touch(memory_t *h, channel_t *c, int64_t time_ms);

/* ---- history (under lock) ---- */

static void hist_drop(memory_t *h, hist_t *e)
{
    channel_t *c = e->channel;
    if (e->ch_prev != NULL)
        e->ch_prev->ch_next = e->ch_next;
    else
        c->oldest = e->ch_next;
    if (e->ch_next != NULL)
        e->ch_next->ch_prev = e->ch_prev;
    else
        c->newest = e->ch_prev;
    if (e->all_prev != NULL)
        e->all_prev->all_next = e->all_next;
    else
        h->oldest = e->all_next;
    if (e->all_next != NULL)
        e->all_next->all_prev = e->all_prev;
    else
        h->newest = e->all_prev;
    c->count--;
    h->history_bytes -= e->frame->len;
    vg_chunk_unref(e->frame);
    vg_free(e->type);
    vg_free(e);
}

/* Drops what is past its time anywhere (the hub list is in time order) and what is over the
 * memory budget, oldest first. */
static void hist_expire(memory_t *h, int64_t now_ms)
{
    int64_t horizon = now_ms - (int64_t)(h->history.ttl_seconds * 1000);
    while (h->oldest != NULL &&
           (h->oldest->time_ms < horizon || h->history_bytes > h->history.max_bytes))
        hist_drop(h, h->oldest);
}

static void hist_append(memory_t *h, channel_t *c, const vg_accepted_t *m, int64_t now_ms)
{
    if (h->history.size == 0)
        return;
    hist_t *e = vg_calloc(1, sizeof(*e));
    e->frame = vg_chunk_ref(m->frame);
    e->type = vg_strdup(m->type);
    vg_chunk_t *frame = m->frame;
    e->offset = m->offset;
    e->time_ms = now_ms;
    e->channel = c;
    e->ch_prev = c->newest;
    if (c->newest != NULL)
        c->newest->ch_next = e;
    else
        c->oldest = e;
    c->newest = e;
    e->all_prev = h->newest;
    if (h->newest != NULL)
        h->newest->all_next = e;
    else
        h->oldest = e;
    h->newest = e;
    c->count++;
    h->history_bytes += frame->len;
    if (c->count > h->history.size)
        hist_drop(h, c->oldest);
    hist_expire(h, now_ms);
}

/* ---- durable channels ---- */

static void make_durable(memory_t *h, channel_t *c, const vg_accepted_t *m, int64_t now_ms)
{
    if (h->durability.wants == NULL || !h->durability.wants(h->durability.arg, c->name))
        return;
    const uint8_t *text;
    size_t len;
    vg_ws_frame_payload(m->frame, &text, &len);
    if (h->durability.append(h->durability.arg, c->name, m->offset, c->epoch, now_ms, text, len) !=
        0)
        vg_warning("channel %s: offset %llu could not be stored", c->name,
                   (unsigned long long)m->offset);
}

/* ---- channel records and epochs (under lock) ---- */

static uint64_t name_hash(const char *name)
{
    uint64_t x = 1469598103934665603u; /* FNV-1a */
    for (const char *p = name; *p; p++)
        x = (x ^ (unsigned char)*p) * 1099511628211u;
    return x;
}

static size_t bucket_of(const char *name)
{
    return (size_t)(name_hash(name) % CHANNEL_BUCKETS);
}

/* The splitmix64 finalizer: a bijection of 64-bit values that looks random. */
static uint64_t mix(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9u;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBu;
    return z ^ (z >> 31);
}

static uint32_t *frees_of(const memory_t *h, uint64_t hash)
{
    return &h->frees[mix(hash) & (FREE_SLOTS - 1)];
}

/*
 * The epoch of the channel's next run of offsets, which is also what a subscriber is told while
 * the channel has no record.  It depends on the process's random key (a restart gives new
 * epochs), the name, and the count of records freed in the name's slot, which only grows.  So:
 *   - a subscriber given an epoch before the first publish holds the epoch that run gets, and
 *     recovers from it like from any other position;
 *   - once a run's record is freed, the next run of that name has another epoch, and a position
 *     in the old run (or taken before it) is refused instead of read as the new run's.
 * A free of another name in the same slot changes the epoch too: that only ever refuses.
 */
static void run_epoch(const memory_t *h, const char *name, char out[17])
{
    uint64_t hash = name_hash(name);
    uint64_t z = mix(mix(hash ^ h->epoch_key) + *frees_of(h, hash));
    snprintf(out, 17, "%016llx", (unsigned long long)z);
}

static channel_t *channel_find(memory_t *h, const char *name)
{
    for (channel_t *c = h->channels[bucket_of(name)]; c != NULL; c = c->next)
        if (strcmp(c->name, name) == 0)
            return c;
    return NULL;
}

/* Publishing (and restoring) creates the record. */
static channel_t *channel_get(memory_t *h, const char *name)
{
    channel_t *c = channel_find(h, name);
    if (c != NULL)
        return c;
    size_t b = bucket_of(name);
    c = vg_calloc(1, sizeof(*c));
    c->name = vg_strdup(name);
    run_epoch(h, name, c->epoch);
    c->next = h->channels[b];
    h->channels[b] = c;
    h->num_channels++;
    return c;
}

static void by_time_unlink(memory_t *h, channel_t *c)
{
    if (!c->in_by_time)
        return;
    if (c->by_time_prev != NULL)
        c->by_time_prev->by_time_next = c->by_time_next;
    else
        h->by_time_oldest = c->by_time_next;
    if (c->by_time_next != NULL)
        c->by_time_next->by_time_prev = c->by_time_prev;
    else
        h->by_time_newest = c->by_time_prev;
    c->by_time_prev = c->by_time_next = NULL;
    c->in_by_time = 0;
}

/* A message at time_ms: the record moves to its place in the list by last publish.  That is the
 * newest end, found in one step, except when the wall clock went back or for history restored
 * at start, which comes channel by channel. */
static void by_time_touch(memory_t *h, channel_t *c, int64_t time_ms)
{
    if (time_ms > c->last_ms)
        c->last_ms = time_ms;
    if (c->in_by_time && (c->by_time_next == NULL || c->by_time_next->last_ms >= c->last_ms))
        return; /* already in place */
    by_time_unlink(h, c);
    channel_t *after = h->by_time_newest;
    while (after != NULL && after->last_ms > c->last_ms)
        after = after->by_time_prev;
    c->by_time_prev = after;
    c->by_time_next = after != NULL ? after->by_time_next : h->by_time_oldest;
    if (c->by_time_next != NULL)
        c->by_time_next->by_time_prev = c;
    else
        h->by_time_newest = c;
    if (after != NULL)
        after->by_time_next = c;
    else
        h->by_time_oldest = c;
    c->in_by_time = 1;
}

static void channel_free(memory_t *h, channel_t *c)
{
    uint64_t hash = name_hash(c->name);
    channel_t **link = &h->channels[hash % CHANNEL_BUCKETS];
    while (*link != c)
        link = &(*link)->next;
    *link = c->next;
    by_time_unlink(h, c);
    (*frees_of(h, hash))++;
    h->channels_freed++;
    h->num_channels--;
    vg_free(c->name);
    vg_free(c);
}

static int is_durable(memory_t *h, const channel_t *c)
{
    return h->durability.wants != NULL && h->durability.wants(h->durability.arg, c->name);
}

/* Frees up to `budget` records idle for the keep time, oldest first.  History is expired first,
 * and the keep time is at least --history-ttl, so an idle record has none left.  A durable
 * channel keeps its record (the store carries its offsets on) but leaves the list. */
static void sweep_idle(memory_t *h, int64_t now_ms, size_t budget)
{
    int64_t keep_ms = (int64_t)(h->history.ttl_seconds * 1000);
    if (keep_ms < CHANNEL_KEEP_MIN_MS)
        keep_ms = CHANNEL_KEEP_MIN_MS;
    channel_t *c = h->by_time_oldest;
    if (c == NULL || c->last_ms >= now_ms - keep_ms)
        return;
    hist_expire(h, now_ms);
    for (; budget > 0 && (c = h->by_time_oldest) != NULL && c->last_ms < now_ms - keep_ms;
         budget--) {
        while (c->oldest != NULL)
            hist_drop(h, c->oldest); /* restored out of time order: past its time all the same */
        if (is_durable(h, c))
            by_time_unlink(h, c);
        else
            channel_free(h, c);
    }
}

/* ---- the broker's calls ---- */

static void memory_channel_counts(vg_broker_t *b, size_t *live, uint64_t *freed)
{
    memory_t *h = (memory_t *)b;
    pthread_mutex_lock(&h->lock);
    *live = h->num_channels;
    *freed = h->channels_freed;
    pthread_mutex_unlock(&h->lock);
}

/* Recovery works when the client's epoch is the channel's and nothing after its offset has been
 * dropped from history.  A channel without a record answers offset 0 and the epoch its next run
 * will have; no record is created, so subscribing costs the hub nothing. */
static void recover_one(memory_t *h, vg_recovery_t *r, vg_missed_t *missed)
{
    channel_t *c = channel_find(h, r->channel);
    r->recovered = 0;
    r->offset = c != NULL ? c->offset : 0;
    if (c != NULL)
        snprintf(r->epoch, sizeof(r->epoch), "%s", c->epoch);
    else
        run_epoch(h, r->channel, r->epoch);
    if (!r->has_since)
        return;
    int same_epoch = r->since_epoch != NULL ? strcmp(r->since_epoch, r->epoch) == 0 : r->any_epoch;
    if (!same_epoch || r->since_offset > r->offset)
        return;
    if (c == NULL) {
        r->recovered = 1; /* nothing published, nothing missed */
        return;
    }
    uint64_t first = c->oldest ? c->oldest->offset : c->offset + 1;
    if (r->since_offset + 1 < first)
        return; /* a gap: some of what was missed is gone */
    for (hist_t *e = c->oldest; e != NULL; e = e->ch_next)
        if (e->offset > r->since_offset)
            vg_missed_push(missed, e->channel->name, e->offset, e->type, e->frame);
    r->recovered = 1;
}

/* A channel the client named but could not recover by offset (another epoch after a restart, or
 * a gap) falls back to recovery by time like the channels it did not name. */
static int recovered_by_offset(const vg_recovery_t *rec, size_t n, const char *channel)
{
    for (size_t i = 0; i < n; i++)
        if (rec[i].recovered && strcmp(rec[i].channel, channel) == 0)
            return 1;
    return 0;
}

/* Visits only the records published to at or after since_ms, and none older than --history-ttl
 * (they have no history left), from the newest end of the list by last publish: the work is
 * bounded by what was published recently, not by how many channels there are. */
static void recover_by_time(memory_t *h, const vg_time_recovery_t *tr, const vg_recovery_t *rec,
                            size_t n, int64_t now_ms, vg_missed_t *missed)
{
    int64_t from = now_ms - (int64_t)(h->history.ttl_seconds * 1000);
    if (from < tr->since_ms)
        from = tr->since_ms;
    channel_t *c = h->by_time_newest;
    while (c != NULL && c->by_time_prev != NULL && c->by_time_prev->last_ms >= from)
        c = c->by_time_prev;
    /* Oldest first, so what is replayed comes roughly in publish order. */
    for (; c != NULL; c = c->by_time_next) {
        if (c->oldest == NULL || c->last_ms < from || recovered_by_offset(rec, n, c->name))
            continue;
        int match = 0;
        for (size_t p = 0; p < tr->num_patterns && !match; p++)
            match = vg_channel_match(tr->patterns[p], strlen(tr->patterns[p]), c->name,
                                     strlen(c->name));
        for (hist_t *e = c->oldest; match && e != NULL; e = e->ch_next)
            if (e->time_ms >= tr->since_ms) /* same ms: a channel the client did not name */
                vg_missed_push(missed, e->channel->name, e->offset, e->type, e->frame);
    }
}

void vg_memory_broker_restore_channel(vg_broker_t *b, const char *channel, uint64_t last_offset,
                                      const char *epoch)
{
    memory_t *h = (memory_t *)b;
    channel_t *c = channel_get(h, channel);
    c->offset = last_offset;
    snprintf(c->epoch, sizeof(c->epoch), "%s", epoch);
}

void vg_memory_broker_restore_message(vg_broker_t *b, const char *channel, uint64_t offset,
                                      int64_t time_ms, const char *type, const char *text,
                                      size_t len)
{
    memory_t *h = (memory_t *)b;
    channel_t *c = channel_get(h, channel);
    vg_accepted_t m = {channel, type, NULL, offset, vg_ws_frame_new(VG_WS_OP_TEXT, text, len)};
    hist_append(h, c, &m, time_ms);
    by_time_touch(h, c, time_ms);
    vg_chunk_unref(m.frame);
}

void vg_memory_broker_set_durability(vg_broker_t *b, const vg_durability_t *d)
{
    ((memory_t *)b)->durability = *d;
}

/* The message's frame and offset, kept, made durable and handed to the sink: under the lock. */
static void accept_locked(memory_t *h, channel_t *c, const vg_accepted_t *m, int64_t now_ms,
                          int keep)
{
    if (keep) {
        hist_append(h, c, m, now_ms);
        make_durable(h, c, m, now_ms);
    }
    h->sink.accept(h->sink.arg, m);
}

static void memory_publish(vg_broker_t *b, const vg_publish_t *msgs, size_t n, uint64_t *offsets)
{
    memory_t *h = (memory_t *)b;
    pthread_mutex_lock(&h->lock);
    /* Read under the lock, so the list by last publish is in time order across publishers. */
    int64_t now_ms = vg_wall_ms();
    sweep_idle(h, now_ms, SWEEP_PER_PUBLISH * n);
    for (size_t i = 0; i < n; i++) {
        channel_t *c = channel_get(h, msgs[i].channel);
        by_time_touch(h, c, now_ms);
        offsets[i] = ++c->offset;
        vg_accepted_t m = {msgs[i].channel, msgs[i].type, msgs[i].id, offsets[i],
                           vg_message_encode(&msgs[i], offsets[i], now_ms)};
        accept_locked(h, c, &m, now_ms, 1);
        vg_chunk_unref(m.frame);
    }
    pthread_mutex_unlock(&h->lock);
}

static void memory_publish_raw(vg_broker_t *b, const char *channel, const char *type,
                               const char *json, size_t len)
{
    memory_t *h = (memory_t *)b;
    pthread_mutex_lock(&h->lock);
    int64_t now_ms = vg_wall_ms();
    sweep_idle(h, now_ms, SWEEP_PER_PUBLISH);
    channel_t *c = channel_get(h, channel);
    by_time_touch(h, c, now_ms);
    vg_accepted_t m = {channel, type, NULL, ++c->offset, vg_ws_frame_new(VG_WS_OP_TEXT, json, len)};
    accept_locked(h, c, &m, now_ms, 0);
    vg_chunk_unref(m.frame);
    pthread_mutex_unlock(&h->lock);
}

static void memory_recover(vg_broker_t *b, vg_recovery_t *rec, size_t n,
                           const vg_time_recovery_t *tr, vg_missed_t *missed,
                           void (*locked)(void *arg), void *arg)
{
    memory_t *h = (memory_t *)b;
    memset(missed, 0, sizeof(*missed));
    pthread_mutex_lock(&h->lock);
    int64_t now_ms = vg_wall_ms();
    hist_expire(h, now_ms);
    for (size_t i = 0; i < n; i++)
        recover_one(h, &rec[i], missed);
    if (tr != NULL)
        recover_by_time(h, tr, rec, n, now_ms, missed);
    if (locked != NULL)
        locked(arg);
    pthread_mutex_unlock(&h->lock);
}

static void memory_tick(vg_broker_t *b, int64_t now_ms)
{
    memory_t *h = (memory_t *)b;
    pthread_mutex_lock(&h->lock);
    sweep_idle(h, now_ms, SWEEP_PER_TICK);
    pthread_mutex_unlock(&h->lock);
}

static void memory_start(vg_broker_t *b, const vg_broker_sink_t *sink)
{
    ((memory_t *)b)->sink = *sink;
}

static void memory_free(vg_broker_t *b)
{
    memory_t *h = (memory_t *)b;
    if (h == NULL)
        return;
    for (size_t i = 0; i < CHANNEL_BUCKETS; i++) {
        for (channel_t *c = h->channels[i], *next; c != NULL; c = next) {
            next = c->next;
            while (c->oldest != NULL)
                hist_drop(h, c->oldest);
            vg_free(c->name);
            vg_free(c);
        }
    }
    vg_free(h->channels);
    vg_free(h->frees);
    pthread_mutex_destroy(&h->lock);
    vg_free(h);
}

static const vg_broker_ops_t memory_ops = {
    .name = "memory",
    .start = memory_start,
    .publish = memory_publish,
    .publish_raw = memory_publish_raw,
    .recover = memory_recover,
    .tick = memory_tick,
    .channel_counts = memory_channel_counts,
    .free = memory_free,
};

vg_broker_t *vg_memory_broker_new(const vg_history_limits_t *history)
{
    memory_t *h = vg_calloc(1, sizeof(*h));
    h->base.ops = &memory_ops;
    h->history = *history;
    /* Epochs must never repeat (across restarts, or two processes): key them from the kernel's
     * random source, falling back to the clock and the pid. */
    if (getrandom(&h->epoch_key, sizeof(h->epoch_key), 0) != (ssize_t)sizeof(h->epoch_key))
        h->epoch_key = (uint64_t)vg_wall_ms() * 6364136223846793005u ^ (uint64_t)getpid();
    pthread_mutex_init(&h->lock, NULL);
    h->channels = vg_calloc(CHANNEL_BUCKETS, sizeof(*h->channels));
    h->frees = vg_calloc(FREE_SLOTS, sizeof(*h->frees));
    return &h->base;
}
