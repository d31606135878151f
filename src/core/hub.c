#include "core/hub.h"

#include <pthread.h>
#include <string.h>

#include "util/alloc.h"
#include "util/clock.h"

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
    vg_broker_t *broker; /* borrowed: numbers, keeps and orders the messages */
    /* Guards workers[] and makes every worker's inbox see items in one order (the broker calls
     * the sink under its own lock, so messages arrive here in channel order already). */
    pthread_mutex_t lock;
    vg_hub_command_cb command_handler;
    void (*tick_fn)(void *arg, int64_t now_ms);
    void *tick_arg;
    uint64_t tick_period_ms;
    atomic_uint_fast64_t published;
    int num_workers;
    hub_worker_t **workers; /* filled as workers start */
};

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

static void on_accepted(void *arg, const vg_accepted_t *m);

vg_hub_t *vg_hub_new(int num_workers, vg_broker_t *broker)
{
    vg_hub_t *h = vg_calloc(1, sizeof(*h));
    h->broker = broker;
    pthread_mutex_init(&h->lock, NULL);
    h->num_workers = num_workers;
    h->workers = vg_calloc((size_t)num_workers, sizeof(*h->workers));
    h->tick_period_ms = 1000; /* the broker's housekeeping, until vg_hub_set_ticker */
    vg_broker_sink_t sink = {on_accepted, h};
    broker->ops->start(broker, &sink);
    return h;
}

void vg_hub_free(vg_hub_t *h)
{
    if (h == NULL)
        return;
    vg_free(h->workers);
    pthread_mutex_destroy(&h->lock);
    vg_free(h);
}

void vg_hub_channel_counts(vg_hub_t *h, size_t *live, uint64_t *freed)
{
    h->broker->ops->channel_counts(h->broker, live, freed);
}

/* ---- publishing (any thread) ---- */

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

/* The broker's sink: one inbox item per accepted message, for every worker. */
static void on_accepted(void *arg, const vg_accepted_t *m)
{
    vg_hub_t *h = arg;
    item_t *it = item_new(ITEM_MESSAGE);
    it->frame = vg_chunk_ref(m->frame);
    it->offset = m->offset;
    it->channel_len = strlen(m->channel);
    it->channel = vg_strndup(m->channel, it->channel_len);
    it->type = vg_strdup(m->type);
    it->id = m->id ? vg_strdup(m->id) : NULL;
    pthread_mutex_lock(&h->lock);
    dispatch(h, it);
    pthread_mutex_unlock(&h->lock);
}

void vg_hub_publish(vg_hub_t *h, const vg_publish_t *msgs, size_t n, uint64_t *offsets)
{
    h->broker->ops->publish(h->broker, msgs, n, offsets);
    atomic_fetch_add_explicit(&h->published, n, memory_order_relaxed);
}

void vg_hub_publish_raw(vg_hub_t *h, const char *channel, const char *type, const char *json,
                        size_t len)
{
    h->broker->ops->publish_raw(h->broker, channel, type, json, len);
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
    pthread_mutex_lock(&h->lock);
    dispatch(h, it);
    pthread_mutex_unlock(&h->lock);
}

void vg_hub_notify_user(vg_hub_t *h, const char *user, uint64_t except_conn_id, vg_chunk_t *frame)
{
    item_t *it = item_new(ITEM_BROADCAST);
    it->frame = vg_chunk_ref(frame);
    it->user = vg_strdup(user);
    it->conn_id = except_conn_id;
    it->native_only = 1;
    pthread_mutex_lock(&h->lock);
    dispatch(h, it);
    pthread_mutex_unlock(&h->lock);
}

void vg_hub_disconnect(vg_hub_t *h, const char *user, uint64_t conn_id, int code,
                       const char *reason)
{
    item_t *it = item_new(ITEM_DISCONNECT);
    it->user = user ? vg_strdup(user) : NULL;
    it->conn_id = conn_id;
    it->code = code;
    it->reason = vg_strdup(reason ? reason : "");
    pthread_mutex_lock(&h->lock);
    dispatch(h, it);
    pthread_mutex_unlock(&h->lock);
}

void vg_hub_run_on(vg_hub_t *h, int worker_id, void (*fn)(vg_worker_t *w, void *arg), void *arg,
                   void (*fn_cancel)(void *arg))
{
    item_t *it = item_new(ITEM_CALL);
    it->call = fn;
    it->call_arg = arg;
    it->call_cancel = fn_cancel;
    pthread_mutex_lock(&h->lock);
    if (worker_id >= 0 && worker_id < h->num_workers && h->workers[worker_id] != NULL)
        inbox_push(h->workers[worker_id], it);
    pthread_mutex_unlock(&h->lock);
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

/* The delivery is built once per message (deliver_message) and handed to every subscriber. */
static void on_match(vg_subscriber_t *sub, void *arg)
{
    sub->deliver(sub, arg);
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
    vg_delivery_t d = {it->channel, it->channel_len, it->type, it->offset, it->frame, it->id, 0};
    hw->rendering = it->frame;
    vg_subs_match(hw->subs, it->channel, it->channel_len, on_match, &d);
    d.by_type = 1;
    for (vg_subscriber_t *sub = hw->type_listeners, *next; sub != NULL; sub = next) {
        next = sub->_tl_next;
        /* Subscribers in this list have no channel subscription, so no double delivery. */
        sub->deliver(sub, &d);
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

/* ---- subscribing with recovery (worker thread) ---- */

void vg_hub_subscribe_atomically(vg_worker_t *w, void (*subscribe)(void *arg), void *arg,
                                 vg_recovery_t *rec, size_t n, vg_missed_t *missed)
{
    vg_hub_subscribe_atomically_ex(w, subscribe, arg, rec, n, NULL, missed);
}

typedef struct locked_subscribe_s {
    hub_worker_t *hw;
    void (*subscribe)(void *arg);
    void *arg;
    item_t **calls; /* vg_hub_run_on calls found in the inbox: run after the broker lets go */
    size_t num_calls;
} locked_subscribe_t;

/* Runs while the broker holds back every later message: what this worker has not delivered
 * yet is delivered now, to the subscriptions that existed before; for the new ones it is in
 * what the broker recovered instead. */
static void subscribe_locked(void *arg)
{
    locked_subscribe_t *op = arg;
    drain_inbox(op->hw, &op->calls, &op->num_calls);
    if (op->subscribe != NULL)
        op->subscribe(op->arg);
}

void vg_hub_subscribe_atomically_ex(vg_worker_t *w, void (*subscribe)(void *arg), void *arg,
                                    vg_recovery_t *rec, size_t n, const vg_time_recovery_t *tr,
                                    vg_missed_t *missed)
{
    hub_worker_t *hw = w->data;
    vg_broker_t *b = hw->hub->broker;
    locked_subscribe_t op = {hw, subscribe, arg, NULL, 0};
    b->ops->recover(b, rec, n, tr, missed, subscribe_locked, &op);
    for (size_t i = 0; i < op.num_calls; i++) {
        run_call(hw, op.calls[i]);
        item_unref(op.calls[i]);
    }
    vg_free(op.calls);
}

static void on_tick(uv_timer_t *t)
{
    vg_hub_t *h = t->data;
    int64_t now_ms = vg_wall_ms();
    h->broker->ops->tick(h->broker, now_ms);
    if (h->tick_fn != NULL)
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
    if (w->id == 0) {
        uv_timer_init(&w->loop, &hw->ticker);
        hw->ticker.data = h;
        uv_timer_start(&hw->ticker, on_tick, h->tick_period_ms, h->tick_period_ms);
        uv_unref((uv_handle_t *)&hw->ticker);
        hw->has_ticker = 1;
    }
    pthread_mutex_lock(&h->lock);
    h->workers[w->id] = hw;
    pthread_mutex_unlock(&h->lock);
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
    pthread_mutex_lock(&h->lock);
    h->workers[w->id] = NULL;
    pthread_mutex_unlock(&h->lock);
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
    pthread_mutex_lock(&h->lock);
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
    pthread_mutex_unlock(&h->lock);
}
