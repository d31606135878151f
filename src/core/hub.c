#include "core/hub.h"

#include <pthread.h>
#include <sys/random.h>
#include <unistd.h>
#include <stdio.h>
#include <string.h>

#include "proto/channel.h"
#include "proto/ws.h"
#include "util/alloc.h"
#include "util/buf.h"
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

const double vg_hub_latency_bounds_us[16] = {50,     100,   250,   500,   1000,   2500,
                                             5000,   10000, 25000, 50000, 100000, 250000,
                                             500000, 1e6,   2.5e6, 1e300};

enum item_kind { ITEM_MESSAGE, ITEM_BROADCAST, ITEM_DISCONNECT, ITEM_CALL };

/* One unit of work for the workers, shared by all of them (refcounted). */
typedef struct item_s {
    atomic_uint refcnt;
    int kind;
    vg_chunk_t *frame; /* MESSAGE, BROADCAST */
    char *channel;     /* MESSAGE */
    size_t channel_len;
    char *type;      /* MESSAGE */
    char *id;        /* MESSAGE of an acknowledged-delivery channel */
    uint64_t offset; /* MESSAGE */
    uint64_t published_ns;
    char *user;       /* BROADCAST, DISCONNECT: NULL = everyone / by conn_id */
    uint64_t conn_id; /* DISCONNECT */
    int code;         /* DISCONNECT */
    char *reason;     /* DISCONNECT */
    int native_only;  /* BROADCAST: only sockets speaking the native format, except conn_id */
    void (*call)(vg_worker_t *w, void *arg); /* CALL */
    void (*call_cancel)(void *arg);          /* CALL: when it never ran */
    void *call_arg;
} item_t;

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

/* A channel record exists only while the channel has been published to recently or still has
 * history (or is durable): subscribers and polls never create one, so any number of names can
 * be subscribed to without the hub holding anything for them. */
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

typedef struct hub_worker_s {
    vg_hub_t *hub;
    vg_worker_t *worker;
    vg_subs_t *subs;
    vg_hub_stats_t stats;
    uv_async_t wakeup;
    pthread_mutex_t lock; /* guards inbox */
    item_t **inbox;
    size_t inbox_len, inbox_cap;
    vg_subscriber_t *type_listeners;
    uv_timer_t ticker; /* worker 0 only */
    int has_ticker;
    int closing_handles; /* freed when the last of its handles is closed */
    /* Frames rendered in other formats for the message being fanned out (vg_hub_render). */
    struct rendered_s {
        const vg_format_t *format;
        vg_chunk_t *frame; /* NULL: the format does not carry this message */
    } rendered[8];
    size_t num_rendered;
    const vg_chunk_t *rendering; /* the native frame they were rendered from, or NULL */
} hub_worker_t;

struct vg_hub_s {
    pthread_mutex_t publish_lock; /* offsets, history, inbox order */
    channel_t **channels;
    /* Per slot of name hashes: records freed there so far.  It is part of the epoch of a
     * channel's next run (run_epoch), so a run that starts after a free has a new epoch, while
     * one that starts without a record being freed in between has the epoch that subscribers
     * were given before it existed. */
    uint32_t *frees;
    channel_t *by_time_oldest, *by_time_newest;
    size_t num_channels;
    uint64_t channels_freed;
    vg_hub_history_t history; /* limits */
    hist_t *oldest, *newest;  /* every history entry, in publish order */
    size_t history_bytes;
    uint64_t epoch_key;
    vg_hub_durability_t durability;
    vg_hub_command_cb command_handler;
    void (*tick_fn)(void *arg, int64_t now_ms);
    void *tick_arg;
    uint64_t tick_period_ms;
    atomic_uint_fast64_t published;
    int num_workers;
    hub_worker_t **workers; /* filled as workers start */
};

static void hist_drop(vg_hub_t *h, hist_t *e);
static channel_t *channel_get(vg_hub_t *h, const char *name);
static void by_time_touch(vg_hub_t *h, channel_t *c, int64_t time_ms);
static void sweep_idle(vg_hub_t *h, int64_t now_ms, size_t budget);
static item_t *item_new(int kind);

static void item_unref(item_t *it)
{
    if (atomic_fetch_sub_explicit(&it->refcnt, 1, memory_order_acq_rel) != 1)
        return;
    if (it->kind == ITEM_CALL && it->call != NULL && it->call_cancel != NULL)
        it->call_cancel(it->call_arg); /* never ran */
    vg_chunk_unref(it->frame);
    vg_free(it->channel);
    vg_free(it->type);
    vg_free(it->id);
    vg_free(it->user);
    vg_free(it->reason);
    vg_free(it);
}

vg_hub_t *vg_hub_new(int num_workers, const vg_hub_history_t *history)
{
    vg_hub_t *h = vg_calloc(1, sizeof(*h));
    h->history = *history;
    /* Epochs must never repeat (across restarts, or two hubs): key them from the kernel's
     * random source, falling back to the clock and the pid. */
    if (getrandom(&h->epoch_key, sizeof(h->epoch_key), 0) != (ssize_t)sizeof(h->epoch_key))
        h->epoch_key = (uint64_t)vg_wall_ms() * 6364136223846793005u ^ (uint64_t)getpid();
    pthread_mutex_init(&h->publish_lock, NULL);
    h->channels = vg_calloc(CHANNEL_BUCKETS, sizeof(*h->channels));
    h->frees = vg_calloc(FREE_SLOTS, sizeof(*h->frees));
    h->num_workers = num_workers;
    h->workers = vg_calloc((size_t)num_workers, sizeof(*h->workers));
    return h;
}

void vg_hub_free(vg_hub_t *h)
{
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
    vg_free(h->workers);
    pthread_mutex_destroy(&h->publish_lock);
    vg_free(h);
}

/* ---- history (under publish_lock) ---- */

static void hist_drop(vg_hub_t *h, hist_t *e)
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
static void hist_expire(vg_hub_t *h, int64_t now_ms)
{
    int64_t horizon = now_ms - (int64_t)(h->history.ttl_seconds * 1000);
    while (h->oldest != NULL &&
           (h->oldest->time_ms < horizon || h->history_bytes > h->history.max_bytes))
        hist_drop(h, h->oldest);
}

static void hist_append(vg_hub_t *h, channel_t *c, const item_t *it, int64_t now_ms)
{
    if (h->history.size == 0)
        return;
    hist_t *e = vg_calloc(1, sizeof(*e));
    e->frame = vg_chunk_ref(it->frame);
    e->type = vg_strdup(it->type);
    uint64_t offset = it->offset;
    vg_chunk_t *frame = it->frame;
    e->offset = offset;
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

void vg_hub_set_durability(vg_hub_t *h, const vg_hub_durability_t *d)
{
    h->durability = *d;
}

static void make_durable(vg_hub_t *h, channel_t *c, const item_t *it, int64_t now_ms)
{
    if (h->durability.wants == NULL || !h->durability.wants(h->durability.arg, c->name))
        return;
    const uint8_t *text;
    size_t len;
    vg_ws_frame_payload(it->frame, &text, &len);
    if (h->durability.append(h->durability.arg, c->name, it->offset, c->epoch, now_ms, text, len) !=
        0)
        vg_warning("channel %s: offset %llu could not be stored", c->name,
                   (unsigned long long)it->offset);
}

void vg_hub_restore_channel(vg_hub_t *h, const char *channel, uint64_t last_offset,
                            const char *epoch)
{
    channel_t *c = channel_get(h, channel);
    c->offset = last_offset;
    snprintf(c->epoch, sizeof(c->epoch), "%s", epoch);
}

void vg_hub_restore_message(vg_hub_t *h, const char *channel, uint64_t offset, int64_t time_ms,
                            const char *type, const char *text, size_t len)
{
    channel_t *c = channel_get(h, channel);
    item_t *it = item_new(ITEM_MESSAGE);
    it->frame = vg_ws_frame_new(VG_WS_OP_TEXT, text, len);
    it->type = vg_strdup(type);
    it->offset = offset;
    hist_append(h, c, it, time_ms);
    by_time_touch(h, c, time_ms);
    item_unref(it);
}

/* ---- channel records and epochs (under publish_lock) ---- */

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

static uint32_t *frees_of(const vg_hub_t *h, uint64_t hash)
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
static void run_epoch(const vg_hub_t *h, const char *name, char out[17])
{
    uint64_t hash = name_hash(name);
    uint64_t z = mix(mix(hash ^ h->epoch_key) + *frees_of(h, hash));
    snprintf(out, 17, "%016llx", (unsigned long long)z);
}

static channel_t *channel_find(vg_hub_t *h, const char *name)
{
    for (channel_t *c = h->channels[bucket_of(name)]; c != NULL; c = c->next)
        if (strcmp(c->name, name) == 0)
            return c;
    return NULL;
}

/* Publishing (and restoring) creates the record. */
static channel_t *channel_get(vg_hub_t *h, const char *name)
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

static void by_time_unlink(vg_hub_t *h, channel_t *c)
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
static void by_time_touch(vg_hub_t *h, channel_t *c, int64_t time_ms)
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

static void channel_free(vg_hub_t *h, channel_t *c)
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

static int is_durable(vg_hub_t *h, const channel_t *c)
{
    return h->durability.wants != NULL && h->durability.wants(h->durability.arg, c->name);
}

/* Frees up to `budget` records idle for the keep time, oldest first.  History is expired first,
 * and the keep time is at least --history-ttl, so an idle record has none left.  A durable
 * channel keeps its record (the store carries its offsets on) but leaves the list. */
static void sweep_idle(vg_hub_t *h, int64_t now_ms, size_t budget)
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

void vg_hub_channel_counts(vg_hub_t *h, size_t *live, uint64_t *freed)
{
    pthread_mutex_lock(&h->publish_lock);
    *live = h->num_channels;
    *freed = h->channels_freed;
    pthread_mutex_unlock(&h->publish_lock);
}

/* ---- publishing (any thread) ---- */

/* The publisher's envelope fields, each followed by a comma. */
static void append_extra(vg_buf_t *b, json_t *extra)
{
    const char *key;
    json_t *value;
    json_object_foreach(extra, key, value)
    {
        char *text = json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY);
        if (text == NULL)
            continue;
        vg_buf_append_str(b, "\"");
        vg_buf_append_json_escaped(b, key, strlen(key));
        vg_buf_append_str(b, "\":");
        vg_buf_append_str(b, text);
        vg_buf_append_str(b, ",");
        free(text);
    }
}

/* {"type":T,"channel":C,"offset":N,"timestamp":"...",<extra>,"data":D}, framed once. */
static vg_chunk_t *encode_message(const vg_publish_t *m, uint64_t offset, int64_t now_ms)
{
    vg_buf_t b = VG_BUF_INIT;
    char ts[32];
    vg_format_rfc3339(now_ms, ts);
    vg_buf_append_str(&b, "{\"type\":\"");
    vg_buf_append_json_escaped(&b, m->type, strlen(m->type));
    vg_buf_append_str(&b, "\",\"channel\":\"");
    vg_buf_append_json_escaped(&b, m->channel, strlen(m->channel));
    vg_buf_printf(&b, "\",\"offset\":%llu,\"timestamp\":\"%s\",", (unsigned long long)offset, ts);
    append_extra(&b, m->extra);
    if (m->id != NULL) {
        vg_buf_append_str(&b, "\"id\":\"");
        vg_buf_append_json_escaped(&b, m->id, strlen(m->id));
        vg_buf_append_str(&b, "\",");
    }
    vg_buf_append_str(&b, "\"data\":");
    char *data = m->data ? json_dumps(m->data, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    vg_buf_append_str(&b, data ? data : "null");
    free(data);
    vg_buf_append_str(&b, "}");
    vg_chunk_t *frame = vg_ws_frame_new(VG_WS_OP_TEXT, b.base, b.len);
    vg_buf_dispose(&b);
    return frame;
}

static void inbox_push(hub_worker_t *hw, item_t *it)
{
    pthread_mutex_lock(&hw->lock);
    int was_empty = hw->inbox_len == 0;
    if (hw->inbox_len == hw->inbox_cap) {
        hw->inbox_cap = hw->inbox_cap ? hw->inbox_cap * 2 : 64;
        hw->inbox = vg_realloc(hw->inbox, hw->inbox_cap * sizeof(*hw->inbox));
    }
    atomic_fetch_add_explicit(&it->refcnt, 1, memory_order_relaxed);
    hw->inbox[hw->inbox_len++] = it;
    pthread_mutex_unlock(&hw->lock);
    if (was_empty)
        uv_async_send(&hw->wakeup);
}

/* Hands an item to every running worker; the caller's reference is dropped. */
static void dispatch(vg_hub_t *h, item_t *it)
{
    for (int i = 0; i < h->num_workers; i++)
        if (h->workers[i] != NULL)
            inbox_push(h->workers[i], it);
    item_unref(it);
}

static item_t *item_new(int kind)
{
    item_t *it = vg_calloc(1, sizeof(*it));
    atomic_init(&it->refcnt, 1);
    it->kind = kind;
    it->published_ns = vg_mono_ns();
    return it;
}

void vg_hub_publish(vg_hub_t *h, const vg_publish_t *msgs, size_t n, uint64_t *offsets)
{
    pthread_mutex_lock(&h->publish_lock);
    /* Read under the lock, so the list by last publish is in time order across publishers. */
    int64_t now_ms = vg_wall_ms();
    sweep_idle(h, now_ms, SWEEP_PER_PUBLISH * n);
    for (size_t i = 0; i < n; i++) {
        channel_t *c = channel_get(h, msgs[i].channel);
        by_time_touch(h, c, now_ms);
        offsets[i] = ++c->offset;
        item_t *it = item_new(ITEM_MESSAGE);
        it->frame = encode_message(&msgs[i], offsets[i], now_ms);
        it->offset = offsets[i];
        it->channel_len = strlen(msgs[i].channel);
        it->channel = vg_strndup(msgs[i].channel, it->channel_len);
        it->type = vg_strdup(msgs[i].type);
        it->id = msgs[i].id ? vg_strdup(msgs[i].id) : NULL;
        hist_append(h, c, it, now_ms);
        make_durable(h, c, it, now_ms);
        dispatch(h, it);
    }
    pthread_mutex_unlock(&h->publish_lock);
    atomic_fetch_add_explicit(&h->published, n, memory_order_relaxed);
}

void vg_hub_publish_raw(vg_hub_t *h, const char *channel, const char *type, const char *json,
                        size_t len)
{
    pthread_mutex_lock(&h->publish_lock);
    int64_t now_ms = vg_wall_ms();
    sweep_idle(h, now_ms, SWEEP_PER_PUBLISH);
    channel_t *c = channel_get(h, channel);
    by_time_touch(h, c, now_ms);
    item_t *it = item_new(ITEM_MESSAGE);
    it->frame = vg_ws_frame_new(VG_WS_OP_TEXT, json, len);
    it->offset = ++c->offset;
    it->channel_len = strlen(channel);
    it->channel = vg_strndup(channel, it->channel_len);
    it->type = vg_strdup(type);
    dispatch(h, it);
    pthread_mutex_unlock(&h->publish_lock);
    atomic_fetch_add_explicit(&h->published, 1, memory_order_relaxed);
}

void vg_hub_set_ticker(vg_hub_t *h, void (*fn)(void *arg, int64_t now_ms), void *arg,
                       uint64_t period_ms)
{
    h->tick_fn = fn;
    h->tick_arg = arg;
    h->tick_period_ms = period_ms;
}

uint64_t vg_hub_published(vg_hub_t *h)
{
    return atomic_load_explicit(&h->published, memory_order_relaxed);
}

void vg_hub_broadcast(vg_hub_t *h, const char *user, vg_chunk_t *frame)
{
    item_t *it = item_new(ITEM_BROADCAST);
    it->frame = vg_chunk_ref(frame);
    it->user = user ? vg_strdup(user) : NULL;
    pthread_mutex_lock(&h->publish_lock);
    dispatch(h, it);
    pthread_mutex_unlock(&h->publish_lock);
}

void vg_hub_notify_user(vg_hub_t *h, const char *user, uint64_t except_conn_id, vg_chunk_t *frame)
{
    item_t *it = item_new(ITEM_BROADCAST);
    it->frame = vg_chunk_ref(frame);
    it->user = vg_strdup(user);
    it->conn_id = except_conn_id;
    it->native_only = 1;
    pthread_mutex_lock(&h->publish_lock);
    dispatch(h, it);
    pthread_mutex_unlock(&h->publish_lock);
}

void vg_hub_disconnect(vg_hub_t *h, const char *user, uint64_t conn_id, int code,
                       const char *reason)
{
    item_t *it = item_new(ITEM_DISCONNECT);
    it->user = user ? vg_strdup(user) : NULL;
    it->conn_id = conn_id;
    it->code = code;
    it->reason = vg_strdup(reason ? reason : "");
    pthread_mutex_lock(&h->publish_lock);
    dispatch(h, it);
    pthread_mutex_unlock(&h->publish_lock);
}

void vg_hub_run_on(vg_hub_t *h, int worker_id, void (*fn)(vg_worker_t *w, void *arg), void *arg,
                   void (*fn_cancel)(void *arg))
{
    item_t *it = item_new(ITEM_CALL);
    it->call = fn;
    it->call_arg = arg;
    it->call_cancel = fn_cancel;
    pthread_mutex_lock(&h->publish_lock);
    if (worker_id >= 0 && worker_id < h->num_workers && h->workers[worker_id] != NULL)
        inbox_push(h->workers[worker_id], it);
    pthread_mutex_unlock(&h->publish_lock);
    item_unref(it);
}

/* ---- delivery (worker thread) ---- */

static void record_latency(hub_worker_t *hw, uint64_t published_ns)
{
    double us = (double)(vg_mono_ns() - published_ns) / 1e3;
    size_t i = 0;
    while (us > vg_hub_latency_bounds_us[i])
        i++;
    vg_hub_stats_t *st = &hw->stats;
    atomic_store_explicit(&st->latency_buckets[i],
                          atomic_load_explicit(&st->latency_buckets[i], memory_order_relaxed) + 1,
                          memory_order_relaxed);
    atomic_store_explicit(&st->latency_count,
                          atomic_load_explicit(&st->latency_count, memory_order_relaxed) + 1,
                          memory_order_relaxed);
    atomic_store_explicit(&st->latency_sum_us,
                          atomic_load_explicit(&st->latency_sum_us, memory_order_relaxed) +
                              (uint64_t)us,
                          memory_order_relaxed);
}

typedef struct delivery_s {
    const item_t *item;
} delivery_t;

static void on_match(vg_subscriber_t *sub, void *arg)
{
    const item_t *it = ((delivery_t *)arg)->item;
    vg_delivery_t d = {it->channel, it->channel_len, it->type, it->offset, it->frame, it->id, 0};
    sub->deliver(sub, &d);
}

static void forget_rendered(hub_worker_t *hw)
{
    for (size_t i = 0; i < hw->num_rendered; i++)
        vg_chunk_unref(hw->rendered[i].frame);
    hw->num_rendered = 0;
    hw->rendering = NULL;
}

vg_chunk_t *vg_hub_render(vg_worker_t *w, const vg_format_t *format, const vg_delivery_t *d)
{
    hub_worker_t *hw = w->data;
    if (hw == NULL || hw->rendering != d->frame)
        return format->render(d); /* not fanning out (a replay): nothing to share */
    for (size_t i = 0; i < hw->num_rendered; i++)
        if (hw->rendered[i].format == format)
            return hw->rendered[i].frame ? vg_chunk_ref(hw->rendered[i].frame) : NULL;
    vg_chunk_t *frame = format->render(d);
    if (hw->num_rendered < sizeof(hw->rendered) / sizeof(hw->rendered[0])) {
        hw->rendered[hw->num_rendered].format = format;
        hw->rendered[hw->num_rendered++].frame = frame ? vg_chunk_ref(frame) : NULL;
    }
    return frame;
}

static void deliver_message(hub_worker_t *hw, const item_t *it)
{
    delivery_t d = {it};
    hw->rendering = it->frame;
    vg_subs_match(hw->subs, it->channel, it->channel_len, on_match, &d);
    vg_delivery_t d_by_type = {it->channel, it->channel_len, it->type, it->offset,
                               it->frame,   it->id,          1};
    for (vg_subscriber_t *sub = hw->type_listeners, *next; sub != NULL; sub = next) {
        next = sub->_tl_next;
        /* Subscribers in this list have no channel subscription, so no double delivery. */
        sub->deliver(sub, &d_by_type);
    }
    forget_rendered(hw);
    record_latency(hw, it->published_ns);
}

static void run_command(hub_worker_t *hw, const item_t *it)
{
    vg_hub_command_cb handler = hw->hub->command_handler;
    if (handler == NULL)
        return;
    vg_hub_command_t cmd = {
        .disconnect = it->kind == ITEM_DISCONNECT,
        .user = it->user,
        .conn_id = it->conn_id,
        .native_only = it->native_only,
        .frame = it->frame,
        .code = it->code,
        .reason = it->reason,
    };
    for (vg_conn_t *c = hw->worker->conns, *next; c != NULL; c = next) {
        next = c->_next;
        handler(c, &cmd);
    }
}

static void run_call(hub_worker_t *hw, item_t *it)
{
    void (*call)(vg_worker_t *, void *) = it->call;
    it->call = NULL; /* ran: no cancel */
    call(hw->worker, it->call_arg);
}

/* Delivers what the inbox holds.  With the publish lock held (a subscribe with recovery) the
 * calls queued by vg_hub_run_on are kept in *deferred for after the unlock: a call may publish
 * or queue another call, which takes that lock. */
static void drain_inbox(hub_worker_t *hw, item_t ***deferred, size_t *num_deferred)
{
    pthread_mutex_lock(&hw->lock);
    item_t **items = hw->inbox;
    size_t n = hw->inbox_len;
    hw->inbox = NULL;
    hw->inbox_len = hw->inbox_cap = 0;
    pthread_mutex_unlock(&hw->lock);
    for (size_t i = 0; i < n; i++) {
        if (items[i]->kind == ITEM_CALL && deferred != NULL) {
            *deferred = vg_realloc(*deferred, (*num_deferred + 1) * sizeof(**deferred));
            (*deferred)[(*num_deferred)++] = items[i];
            continue; /* the reference moves to the deferred list */
        }
        if (items[i]->kind == ITEM_MESSAGE)
            deliver_message(hw, items[i]);
        else if (items[i]->kind == ITEM_CALL)
            run_call(hw, items[i]);
        else
            run_command(hw, items[i]);
        item_unref(items[i]);
    }
    vg_free(items);
}

static void on_wakeup(uv_async_t *a)
{
    drain_inbox(a->data, NULL, NULL);
}

/* ---- recovery (worker thread) ---- */

static void missed_push(vg_missed_t *m, const hist_t *e)
{
    m->frames = vg_realloc(m->frames, (m->count + 1) * sizeof(*m->frames));
    m->types = vg_realloc(m->types, (m->count + 1) * sizeof(*m->types));
    m->offsets = vg_realloc(m->offsets, (m->count + 1) * sizeof(*m->offsets));
    m->channels = vg_realloc(m->channels, (m->count + 1) * sizeof(*m->channels));
    m->offsets[m->count] = e->offset;
    m->channels[m->count] = vg_strdup(e->channel->name);
    m->frames[m->count] = vg_chunk_ref(e->frame);
    m->types[m->count++] = vg_strdup(e->type);
}

/* Recovery works when the client's epoch is the channel's and nothing after its offset has been
 * dropped from history.  A channel without a record answers offset 0 and the epoch its next run
 * will have; no record is created, so subscribing costs the hub nothing. */
static void recover_one(vg_hub_t *h, vg_recovery_t *r, vg_missed_t *missed)
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
            missed_push(missed, e);
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
static void recover_by_time(vg_hub_t *h, const vg_time_recovery_t *tr, const vg_recovery_t *rec,
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
                missed_push(missed, e);
    }
}

void vg_hub_subscribe_atomically(vg_worker_t *w, void (*subscribe)(void *arg), void *arg,
                                 vg_recovery_t *rec, size_t n, vg_missed_t *missed)
{
    vg_hub_subscribe_atomically_ex(w, subscribe, arg, rec, n, NULL, missed);
}

void vg_hub_subscribe_atomically_ex(vg_worker_t *w, void (*subscribe)(void *arg), void *arg,
                                    vg_recovery_t *rec, size_t n, const vg_time_recovery_t *tr,
                                    vg_missed_t *missed)
{
    hub_worker_t *hw = w->data;
    vg_hub_t *h = hw->hub;
    memset(missed, 0, sizeof(*missed));
    item_t **calls = NULL;
    size_t num_calls = 0;
    pthread_mutex_lock(&h->publish_lock);
    /* Everything published so far that this worker has not delivered yet is delivered now, to
     * the subscriptions that existed before; for the new ones it is in history instead. */
    drain_inbox(hw, &calls, &num_calls);
    int64_t now_ms = vg_wall_ms();
    hist_expire(h, now_ms);
    for (size_t i = 0; i < n; i++)
        recover_one(h, &rec[i], missed);
    if (tr != NULL)
        recover_by_time(h, tr, rec, n, now_ms, missed);
    if (subscribe != NULL)
        subscribe(arg);
    pthread_mutex_unlock(&h->publish_lock);
    for (size_t i = 0; i < num_calls; i++) {
        run_call(hw, calls[i]);
        item_unref(calls[i]);
    }
    vg_free(calls);
}

void vg_hub_missed_dispose(vg_missed_t *missed)
{
    for (size_t i = 0; i < missed->count; i++) {
        vg_chunk_unref(missed->frames[i]);
        vg_free(missed->types[i]);
        vg_free(missed->channels[i]);
    }
    vg_free(missed->frames);
    vg_free(missed->types);
    vg_free(missed->channels);
    vg_free(missed->offsets);
    memset(missed, 0, sizeof(*missed));
    missed->count = 0;
}

static void on_tick(uv_timer_t *t)
{
    vg_hub_t *h = t->data;
    int64_t now_ms = vg_wall_ms();
    pthread_mutex_lock(&h->publish_lock);
    sweep_idle(h, now_ms, SWEEP_PER_TICK);
    pthread_mutex_unlock(&h->publish_lock);
    h->tick_fn(h->tick_arg, now_ms);
}

void vg_hub_worker_start(vg_hub_t *h, vg_worker_t *w)
{
    hub_worker_t *hw = vg_calloc(1, sizeof(*hw));
    hw->hub = h;
    hw->worker = w;
    hw->subs = vg_subs_new();
    pthread_mutex_init(&hw->lock, NULL);
    uv_async_init(&w->loop, &hw->wakeup, on_wakeup);
    hw->wakeup.data = hw;
    /* The wake-up handle alone must not keep a stopping worker's loop alive. */
    uv_unref((uv_handle_t *)&hw->wakeup);
    w->data = hw;
    if (w->id == 0 && h->tick_fn != NULL) {
        uv_timer_init(&w->loop, &hw->ticker);
        hw->ticker.data = h;
        uv_timer_start(&hw->ticker, on_tick, h->tick_period_ms, h->tick_period_ms);
        uv_unref((uv_handle_t *)&hw->ticker);
        hw->has_ticker = 1;
    }
    pthread_mutex_lock(&h->publish_lock);
    h->workers[w->id] = hw;
    pthread_mutex_unlock(&h->publish_lock);
}

static void on_handle_closed(uv_handle_t *handle)
{
    hub_worker_t *hw = handle->data;
    if (--hw->closing_handles > 0)
        return;
    for (size_t i = 0; i < hw->inbox_len; i++)
        item_unref(hw->inbox[i]);
    vg_free(hw->inbox);
    vg_subs_free(hw->subs);
    pthread_mutex_destroy(&hw->lock);
    vg_free(hw);
}

void vg_hub_worker_stop(vg_hub_t *h, vg_worker_t *w)
{
    hub_worker_t *hw = w->data;
    pthread_mutex_lock(&h->publish_lock);
    h->workers[w->id] = NULL;
    pthread_mutex_unlock(&h->publish_lock);
    w->data = NULL;
    hw->closing_handles = 1 + hw->has_ticker;
    if (hw->has_ticker) {
        hw->ticker.data = hw;
        uv_close((uv_handle_t *)&hw->ticker, on_handle_closed);
    }
    uv_close((uv_handle_t *)&hw->wakeup, on_handle_closed);
}

vg_subs_t *vg_hub_subs(vg_worker_t *w)
{
    return ((hub_worker_t *)w->data)->subs;
}

vg_hub_stats_t *vg_hub_stats(vg_worker_t *w)
{
    return &((hub_worker_t *)w->data)->stats;
}

void vg_hub_type_listener_add(vg_worker_t *w, vg_subscriber_t *sub)
{
    hub_worker_t *hw = w->data;
    sub->_tl_prev = NULL;
    sub->_tl_next = hw->type_listeners;
    if (hw->type_listeners != NULL)
        hw->type_listeners->_tl_prev = sub;
    hw->type_listeners = sub;
}

void vg_hub_type_listener_remove(vg_worker_t *w, vg_subscriber_t *sub)
{
    hub_worker_t *hw = w->data;
    if (sub->_tl_prev != NULL)
        sub->_tl_prev->_tl_next = sub->_tl_next;
    else if (hw->type_listeners == sub)
        hw->type_listeners = sub->_tl_next;
    if (sub->_tl_next != NULL)
        sub->_tl_next->_tl_prev = sub->_tl_prev;
    sub->_tl_prev = sub->_tl_next = NULL;
}

void vg_hub_set_command_handler(vg_hub_t *h, vg_hub_command_cb cb)
{
    h->command_handler = cb;
}

static void add_stat(atomic_uint_fast64_t *dst, atomic_uint_fast64_t *src)
{
    atomic_fetch_add_explicit(dst, atomic_load_explicit(src, memory_order_relaxed),
                              memory_order_relaxed);
}

void vg_hub_stats_sum(vg_hub_t *h, vg_hub_stats_t *out)
{
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&h->publish_lock);
    for (int i = 0; i < h->num_workers; i++) {
        hub_worker_t *hw = h->workers[i];
        if (hw == NULL)
            continue;
        vg_hub_stats_t *s = &hw->stats;
        add_stat(&out->delivered, &s->delivered);
        add_stat(&out->dropped, &s->dropped);
        add_stat(&out->bytes_out, &s->bytes_out);
        add_stat(&out->bytes_in, &s->bytes_in);
        add_stat(&out->slow_consumers, &s->slow_consumers);
        add_stat(&out->latency_count, &s->latency_count);
        add_stat(&out->latency_sum_us, &s->latency_sum_us);
        for (size_t b = 0; b < 16; b++)
            add_stat(&out->latency_buckets[b], &s->latency_buckets[b]);
    }
    pthread_mutex_unlock(&h->publish_lock);
}
