#include "app/hub.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "app/app.h"
#include "app/channel.h"
#include "util/alloc.h"
#include "util/buf.h"
#include "util/clock.h"
#include "util/log.h"

#define CHANNEL_BUCKETS 65536

const double vg_hub_latency_bounds_us[16] = {50,    100,   250,    500,    1000,   2500,
                                             5000,  10000, 25000,  50000,  100000, 250000,
                                             500000, 1e6,  2.5e6,  1e300};

enum item_kind { ITEM_MESSAGE, ITEM_BROADCAST, ITEM_DISCONNECT };

/* One unit of work for the workers, shared by all of them (refcounted). */
typedef struct item_s {
    atomic_uint refcnt;
    int kind;
    vg_chunk_t *frame;  /* MESSAGE, BROADCAST */
    char *channel;      /* MESSAGE */
    size_t channel_len;
    char *type;         /* MESSAGE */
    uint64_t published_ns;
    char *user;         /* BROADCAST, DISCONNECT: NULL = everyone / by conn_id */
    uint64_t conn_id;   /* DISCONNECT */
    int code;           /* DISCONNECT */
    char *reason;       /* DISCONNECT */
} item_t;

typedef struct channel_s {
    char *name;
    uint64_t offset; /* of the last message published */
    struct channel_s *next;
} channel_t;

typedef struct hub_worker_s {
    vg_worker_t *worker;
    vg_subs_t *subs;
    vg_hub_stats_t stats;
    uv_async_t wakeup;
    pthread_mutex_t lock; /* guards inbox */
    item_t **inbox;
    size_t inbox_len, inbox_cap;
    vg_session_t *type_listeners;
} hub_worker_t;

struct vg_hub_s {
    pthread_mutex_t publish_lock; /* offsets + inbox order */
    channel_t **channels;
    atomic_uint_fast64_t published;
    int num_workers;
    hub_worker_t **workers; /* filled as workers start */
};

static void item_unref(item_t *it)
{
    if (atomic_fetch_sub_explicit(&it->refcnt, 1, memory_order_acq_rel) != 1)
        return;
    vg_chunk_unref(it->frame);
    vg_free(it->channel);
    vg_free(it->type);
    vg_free(it->user);
    vg_free(it->reason);
    vg_free(it);
}

vg_hub_t *vg_hub_new(int num_workers)
{
    vg_hub_t *h = vg_calloc(1, sizeof(*h));
    pthread_mutex_init(&h->publish_lock, NULL);
    h->channels = vg_calloc(CHANNEL_BUCKETS, sizeof(*h->channels));
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
            vg_free(c->name);
            vg_free(c);
        }
    }
    vg_free(h->channels);
    vg_free(h->workers);
    pthread_mutex_destroy(&h->publish_lock);
    vg_free(h);
}

/* ---- publishing (any thread) ---- */

static channel_t *channel_get(vg_hub_t *h, const char *name)
{
    size_t b = 1469598103934665603u;
    for (const char *p = name; *p; p++)
        b = (b ^ (unsigned char)*p) * 1099511628211u;
    b %= CHANNEL_BUCKETS;
    for (channel_t *c = h->channels[b]; c != NULL; c = c->next)
        if (strcmp(c->name, name) == 0)
            return c;
    channel_t *c = vg_calloc(1, sizeof(*c));
    c->name = vg_strdup(name);
    c->next = h->channels[b];
    h->channels[b] = c;
    return c;
}

/* {"type":T,"channel":C,"offset":N,"timestamp":"...","data":D}, framed once. */
static vg_chunk_t *encode_message(const vg_publish_t *m, uint64_t offset, int64_t now_ms)
{
    vg_buf_t b = VG_BUF_INIT;
    char ts[32];
    vg_format_rfc3339(now_ms, ts);
    vg_buf_append_str(&b, "{\"type\":\"");
    vg_buf_append_json_escaped(&b, m->type, strlen(m->type));
    vg_buf_append_str(&b, "\",\"channel\":\"");
    vg_buf_append_json_escaped(&b, m->channel, strlen(m->channel));
    vg_buf_printf(&b, "\",\"offset\":%llu,\"timestamp\":\"%s\",\"data\":",
                  (unsigned long long)offset, ts);
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
    int64_t now_ms = vg_wall_ms();
    pthread_mutex_lock(&h->publish_lock);
    for (size_t i = 0; i < n; i++) {
        channel_t *c = channel_get(h, msgs[i].channel);
        offsets[i] = ++c->offset;
        item_t *it = item_new(ITEM_MESSAGE);
        it->frame = encode_message(&msgs[i], offsets[i], now_ms);
        it->channel_len = strlen(msgs[i].channel);
        it->channel = vg_strndup(msgs[i].channel, it->channel_len);
        it->type = vg_strdup(msgs[i].type);
        dispatch(h, it);
    }
    pthread_mutex_unlock(&h->publish_lock);
    atomic_fetch_add_explicit(&h->published, n, memory_order_relaxed);
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
    vg_session_deliver(sub->data, it->channel, it->channel_len, it->type, it->frame);
}

static void deliver_message(hub_worker_t *hw, const item_t *it)
{
    delivery_t d = {it};
    vg_subs_match(hw->subs, it->channel, it->channel_len, on_match, &d);
    for (vg_session_t *s = hw->type_listeners, *next; s != NULL; s = next) {
        next = s->_tl_next;
        /* Sessions in this list have no channel subscription, so no double delivery. */
        vg_session_deliver_by_type(s, it->channel, it->channel_len, it->type, it->frame);
    }
    record_latency(hw, it->published_ns);
}

static void run_command(hub_worker_t *hw, const item_t *it)
{
    for (vg_conn_t *c = hw->worker->conns, *next; c != NULL; c = next) {
        next = c->_next;
        vg_session_t *s = c->data;
        if (s == NULL || !vg_session_is_ws_open(s))
            continue;
        if (it->kind == ITEM_DISCONNECT && it->user == NULL && c->id != it->conn_id)
            continue;
        if (it->user != NULL && strcmp(s->identity.user, it->user) != 0)
            continue;
        if (it->kind == ITEM_BROADCAST)
            vg_session_ws_send(s, it->frame);
        else
            vg_session_ws_close(s, it->code, it->reason);
    }
}

static void on_wakeup(uv_async_t *a)
{
    hub_worker_t *hw = a->data;
    pthread_mutex_lock(&hw->lock);
    item_t **items = hw->inbox;
    size_t n = hw->inbox_len;
    hw->inbox = NULL;
    hw->inbox_len = hw->inbox_cap = 0;
    pthread_mutex_unlock(&hw->lock);
    for (size_t i = 0; i < n; i++) {
        if (items[i]->kind == ITEM_MESSAGE)
            deliver_message(hw, items[i]);
        else
            run_command(hw, items[i]);
        item_unref(items[i]);
    }
    vg_free(items);
}

void vg_hub_worker_start(vg_hub_t *h, vg_worker_t *w)
{
    hub_worker_t *hw = vg_calloc(1, sizeof(*hw));
    hw->worker = w;
    hw->subs = vg_subs_new();
    pthread_mutex_init(&hw->lock, NULL);
    uv_async_init(&w->loop, &hw->wakeup, on_wakeup);
    hw->wakeup.data = hw;
    /* The wake-up handle alone must not keep a stopping worker's loop alive. */
    uv_unref((uv_handle_t *)&hw->wakeup);
    w->data = hw;
    pthread_mutex_lock(&h->publish_lock);
    h->workers[w->id] = hw;
    pthread_mutex_unlock(&h->publish_lock);
}

static void on_wakeup_closed(uv_handle_t *handle)
{
    hub_worker_t *hw = handle->data;
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
    uv_close((uv_handle_t *)&hw->wakeup, on_wakeup_closed);
}

vg_subs_t *vg_hub_subs(vg_worker_t *w)
{
    return ((hub_worker_t *)w->data)->subs;
}

vg_hub_stats_t *vg_hub_stats(vg_worker_t *w)
{
    return &((hub_worker_t *)w->data)->stats;
}

void vg_hub_type_listener_add(vg_worker_t *w, vg_session_t *s)
{
    hub_worker_t *hw = w->data;
    s->_tl_prev = NULL;
    s->_tl_next = hw->type_listeners;
    if (hw->type_listeners != NULL)
        hw->type_listeners->_tl_prev = s;
    hw->type_listeners = s;
}

void vg_hub_type_listener_remove(vg_worker_t *w, vg_session_t *s)
{
    hub_worker_t *hw = w->data;
    if (s->_tl_prev != NULL)
        s->_tl_prev->_tl_next = s->_tl_next;
    else if (hw->type_listeners == s)
        hw->type_listeners = s->_tl_next;
    if (s->_tl_next != NULL)
        s->_tl_next->_tl_prev = s->_tl_prev;
    s->_tl_prev = s->_tl_next = NULL;
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
