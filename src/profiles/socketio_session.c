/*
 * The Engine.IO session of the Socket.IO profile: its transports (long-polling GET and POST, the
 * WebSocket, the upgrade from one to the other), its outbound queue, its heartbeat and its
 * lifetime across worker threads.  socketio.h explains who owns what and on which thread.
 *
 * Packet order.  Outbound packets go through one queue under the session's mutex, taken whole by
 * the transport that sends them, on that transport's thread, so they leave in the order they
 * were queued whatever thread queued them.  During an upgrade (probe answered, "5" not yet
 * received) nothing is taken: the polling side only gets noops and the queue waits for the
 * WebSocket, so no packet is lost or sent twice.  Inbound Socket.IO packets all go through the
 * home worker's hub inbox (even from the home worker itself), so a POST's packets and the
 * WebSocket's that follow them are handled in the order the client sent them.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

#include "profiles/socketio.h"
#include "util/alloc.h"
#include "util/base64.h"
#include "util/clock.h"
#include "util/error.h"
#include "util/log.h"

#define TABLE_BUCKETS 4096

static uint64_t mono_ms(void)
{
    return vg_mono_ns() / 1000000u;
}

enum task_op { OP_WAKE_GET, OP_WAKE_WS, OP_TEARDOWN, OP_OVERFLOW, OP_INBOUND };

/* A packet from the client for the home worker (OP_INBOUND). */
typedef struct inbound_s {
    int binary;
    size_t len;
    char data[];
} inbound_t;

struct vg_sio_task_s {
    vg_sio_t *es; /* a reference */
    int op;       /* enum task_op */
    int target;   /* the worker that must do it */
    inbound_t *msg;
};

static void schedule(vg_sio_t *es, vg_worker_t *cur, int op, int target, inbound_t *msg);
static void teardown(vg_sio_t *es);
static void flush_ws(vg_sio_t *es, vg_worker_t *w);

/* ---- ids and the sid table ---- */

/* 15 random bytes as 20 characters of URL-safe base64, like engine.io's ids. */
void vg__sio_make_id(char out[VG_SIO_ID_LEN + 1])
{
    uint8_t raw[15];
    if (getrandom(raw, sizeof(raw), 0) != (ssize_t)sizeof(raw)) {
        uint64_t x = vg_mono_ns() ^ (uint64_t)vg_wall_ms() << 20;
        for (size_t i = 0; i < sizeof(raw);
             i++, x = x * 6364136223846793005u + 1442695040888963407u)
            raw[i] = (uint8_t)(x >> 56);
    }
    vg_buf_t b = VG_BUF_INIT;
    vg_base64_append(&b, raw, sizeof(raw), VG_BASE64_STD);
    for (size_t i = 0; i < VG_SIO_ID_LEN; i++)
        out[i] = b.base[i] == '+' ? '-' : b.base[i] == '/' ? '_' : b.base[i];
    out[VG_SIO_ID_LEN] = '\0';
    vg_buf_dispose(&b);
}

static size_t bucket_of(const char *sid)
{
    uint32_t h = 2166136261u;
    for (const char *c = sid; *c != '\0'; c++)
        h = (h ^ (uint8_t)*c) * 16777619u;
    return h % TABLE_BUCKETS;
}

static void table_insert(vg_sio_profile_t *p, vg_sio_t *es)
{
    pthread_mutex_lock(&p->table_lock);
    if (p->table == NULL)
        p->table = vg_calloc(TABLE_BUCKETS, sizeof(*p->table));
    size_t b = bucket_of(es->sid);
    es->table_next = p->table[b];
    p->table[b] = es;
    pthread_mutex_unlock(&p->table_lock);
}

/* Returns 1 when the session was in the table (its reference is the caller's now). */
static int table_remove(vg_sio_profile_t *p, vg_sio_t *es)
{
    int found = 0;
    pthread_mutex_lock(&p->table_lock);
    for (vg_sio_t **pp = p->table ? &p->table[bucket_of(es->sid)] : NULL; pp && *pp;
         pp = &(*pp)->table_next) {
        if (*pp == es) {
            *pp = es->table_next;
            found = 1;
            break;
        }
    }
    pthread_mutex_unlock(&p->table_lock);
    return found;
}

vg_sio_t *vg__sio_find(vg_sio_profile_t *p, const char *sid)
{
    vg_sio_t *found = NULL;
    pthread_mutex_lock(&p->table_lock);
    for (vg_sio_t *es = p->table ? p->table[bucket_of(sid)] : NULL; es; es = es->table_next) {
        if (strcmp(es->sid, sid) == 0) {
            found = vg__sio_ref(es);
            break;
        }
    }
    pthread_mutex_unlock(&p->table_lock);
    return found;
}

/* ---- references ---- */

vg_sio_t *vg__sio_ref(vg_sio_t *es)
{
    atomic_fetch_add_explicit(&es->refcnt, 1, memory_order_relaxed);
    return es;
}

static void drop_queue(vg_chunk_t **q, size_t n)
{
    for (size_t i = 0; i < n; i++)
        vg_chunk_unref(q[i]);
    vg_free(q);
}

void vg__sio_unref(vg_sio_t *es)
{
    if (atomic_fetch_sub_explicit(&es->refcnt, 1, memory_order_acq_rel) != 1)
        return;
    drop_queue(es->queue, es->queue_len);
    pthread_mutex_destroy(&es->lock);
    vg_free(es);
}

/* ---- tasks ---- */

static void task_free(vg_sio_task_t *t)
{
    vg__sio_unref(t->es);
    vg_free(t->msg);
    vg_free(t);
}

static void on_idle(uv_idle_t *h);
static void on_check(uv_check_t *h);

/* The worker's state, made on first use (on that worker's thread). */
static vg_sio_worker_t *worker_state(vg_sio_profile_t *p, vg_worker_t *w)
{
    vg_sio_worker_t *pw = &p->workers[w->id];
    if (!pw->started) {
        pw->worker = w;
        uv_check_init(&w->loop, &pw->check);
        pw->check.data = pw;
        uv_check_start(&pw->check, on_check);
        uv_unref((uv_handle_t *)&pw->check);
        uv_idle_init(&w->loop, &pw->idle);
        pw->idle.data = pw;
        uv_unref((uv_handle_t *)&pw->idle);
        pw->started = 1;
    }
    return pw;
}

/* Queues a task on the current worker's list (its reference included).  An active idle handle
 * keeps the loop from blocking, so the task runs within the next loop turn, whatever phase
 * queued it (a hub callback, a timer, a close callback). */
static void push_task(vg_sio_profile_t *p, vg_worker_t *w, vg_sio_task_t *t)
{
    vg_sio_worker_t *pw = worker_state(p, w);
    if (pw->num_tasks == pw->cap_tasks) {
        pw->cap_tasks = pw->cap_tasks ? pw->cap_tasks * 2 : 16;
        pw->tasks = vg_realloc(pw->tasks, pw->cap_tasks * sizeof(*pw->tasks));
    }
    pw->tasks[pw->num_tasks++] = t;
    uv_idle_start(&pw->idle, on_idle);
}

static void schedule(vg_sio_t *es, vg_worker_t *cur, int op, int target, inbound_t *msg)
{
    vg_sio_task_t *t = vg_malloc(sizeof(*t));
    t->es = vg__sio_ref(es);
    t->op = op;
    t->target = target;
    t->msg = msg;
    push_task(es->profile, cur, t);
}

/* Hub callback on the target worker: only queues (the hub may hold its publish lock). */
static void on_task_call(vg_worker_t *w, void *arg)
{
    vg_sio_task_t *t = arg;
    push_task(t->es->profile, w, t);
}

static void on_task_cancel(void *arg)
{
    task_free(arg);
}

/* Hands a task to its worker.  Not from a hub callback (vg_hub_run_on takes the publish lock). */
static void send_task(vg_sio_task_t *t)
{
    vg_hub_run_on(t->es->profile->app->hub, t->target, on_task_call, t, on_task_cancel);
}

static void wake_get(vg_sio_t *es, vg_worker_t *w);
static void wake_ws(vg_sio_t *es, vg_worker_t *w);

static void on_overflow(vg_sio_t *es, vg_worker_t *w)
{
    vg_notice("socket.io %s from %s: closed: slow consumer (more than %zu bytes waiting)", es->sid,
              es->peer, es->profile->max_queued);
    vg__sio_close(es, w, "slow consumer");
}

static void run_task(vg_worker_t *w, vg_sio_task_t *t)
{
    vg_sio_t *es = t->es;
    switch (t->op) {
    case OP_WAKE_GET: wake_get(es, w); break;
    case OP_WAKE_WS: wake_ws(es, w); break;
    case OP_TEARDOWN: teardown(es); break;
    case OP_OVERFLOW: on_overflow(es, w); break;
    case OP_INBOUND:
        if (!es->torn_down && !vg__sio_is_closed(es))
            vg__sio_on_message(es, w, t->msg->binary, t->msg->data, t->msg->len);
        break;
    }
}

static void on_idle(uv_idle_t *h)
{
    vg_sio_worker_t *pw = h->data;
    /* Tasks queued while these run wait for the next turn (no unbounded loop here). */
    vg_sio_task_t **tasks = pw->tasks;
    size_t n = pw->num_tasks;
    pw->tasks = NULL;
    pw->num_tasks = pw->cap_tasks = 0;
    for (size_t i = 0; i < n; i++) {
        if (tasks[i]->target == pw->worker->id) {
            run_task(pw->worker, tasks[i]);
            task_free(tasks[i]);
        } else {
            send_task(tasks[i]);
        }
    }
    vg_free(tasks);
    if (pw->num_tasks == 0)
        uv_idle_stop(h);
}

void vg__sio_profile_dispose(vg_sio_profile_t *p)
{
    /* The workers have stopped: tasks queued in their last loop turn never ran. */
    for (int i = 0; i < p->num_workers; i++) {
        vg_sio_worker_t *pw = &p->workers[i];
        for (size_t k = 0; k < pw->num_tasks; k++)
            task_free(pw->tasks[k]);
        vg_free(pw->tasks);
        pw->tasks = NULL;
        pw->num_tasks = 0;
    }
    /* Every session left the table when its home worker stopped (on_check). */
    vg_free(p->table);
    p->table = NULL;
}

/* ---- the home worker's sessions and its stop ---- */

/* Sessions are torn down on their home worker, which must happen before that worker's hub
 * index goes away: when the worker starts stopping, this tears down every session still homed
 * there (a polling session may have no connection on its home worker to notice the stop). */
static void on_check(uv_check_t *h)
{
    vg_sio_worker_t *pw = h->data;
    vg_worker_t *w = pw->worker;
    if (!w->stopping)
        return;
    while (pw->sessions != NULL) {
        vg_sio_t *es = pw->sessions;
        vg__sio_close(es, w, "server shutting down");
        teardown(es); /* closed earlier: its teardown task may never run now */
    }
}

static void home_list_add(vg_sio_t *es)
{
    vg_sio_worker_t *pw = worker_state(es->profile, es->home);
    es->home_prev = NULL;
    es->home_next = pw->sessions;
    if (pw->sessions != NULL)
        pw->sessions->home_prev = es;
    pw->sessions = es;
}

static void home_list_remove(vg_sio_t *es)
{
    vg_sio_worker_t *pw = &es->profile->workers[es->home->id];
    if (es->home_prev != NULL)
        es->home_prev->home_next = es->home_next;
    else
        pw->sessions = es->home_next;
    if (es->home_next != NULL)
        es->home_next->home_prev = es->home_prev;
    es->home_prev = es->home_next = NULL;
}

/* ---- heartbeat (home worker) ---- */

/* Engine.IO v4: the server pings every pingInterval and the client must answer within
 * pingTimeout.  The timer fires pingTimeout after each ping; the next ping is due pingInterval
 * after the pong. */
static void on_heartbeat(uv_timer_t *t)
{
    vg_sio_t *es = t->data;
    vg_sio_profile_t *p = es->profile;
    uint64_t now = mono_ms();
    pthread_mutex_lock(&es->lock);
    int timed_out = es->awaiting_pong && es->pong_ms == 0;
    int got_pong = es->awaiting_pong && es->pong_ms != 0;
    uint64_t due = now;
    if (got_pong) {
        es->awaiting_pong = 0;
        due = es->pong_ms + p->ping_interval_ms;
    }
    int ping = !timed_out && due <= now;
    if (ping) {
        es->awaiting_pong = 1;
        es->pong_ms = 0;
    }
    pthread_mutex_unlock(&es->lock);
    if (got_pong && es->sock.registered) /* for /ws/connections */
        atomic_store_explicit(&es->sock.reg.last_heartbeat_ms, vg_wall_ms(), memory_order_relaxed);
    if (timed_out) {
        vg_notice("socket.io %s from %s: closed: ping timeout", es->sid, es->peer);
        vg__sio_close(es, es->home, "ping timeout");
    } else if (ping) {
        vg__sio_send_text(es, es->home, "2", 1);
        uv_timer_start(t, on_heartbeat, p->ping_timeout_ms, 0);
    } else {
        uv_timer_start(t, on_heartbeat, due - now, 0);
    }
}

static void on_pong(vg_sio_t *es)
{
    pthread_mutex_lock(&es->lock);
    if (es->awaiting_pong && es->pong_ms == 0)
        es->pong_ms = mono_ms() | 1; /* never 0 */
    pthread_mutex_unlock(&es->lock);
}

static void on_timer_closed(uv_handle_t *h)
{
    vg__sio_unref(h->data);
}

/* ---- creation and closing ---- */

vg_sio_t *vg__sio_new(vg_sio_profile_t *p, vg_session_t *s, int transport)
{
    vg_sio_t *es = vg_calloc(1, sizeof(*es));
    /* the caller, the table, the home list, the timer */
    atomic_init(&es->refcnt, 4);
    pthread_mutex_init(&es->lock, NULL);
    vg__sio_make_id(es->sid);
    es->profile = p;
    es->home = s->conn->worker;
    es->conn_id = s->conn->id;
    snprintf(es->peer, sizeof(es->peer), "%s", s->conn->peer);
    es->transport = transport;
    es->get_worker = es->ws_worker = -1;
    vg_subscriber_init(&es->sock.subscriber, es);
    uv_timer_init(&es->home->loop, &es->timer);
    es->timer.data = es;
    uv_timer_start(&es->timer, on_heartbeat, p->ping_interval_ms, 0);
    uv_unref((uv_handle_t *)&es->timer);
    home_list_add(es);
    table_insert(p, es);
    vg_verbose("socket.io %s from %s: open (%s)", es->sid, es->peer,
               transport == VG_SIO_WEBSOCKET ? "websocket" : "polling");
    return es;
}

int vg__sio_is_closed(vg_sio_t *es)
{
    pthread_mutex_lock(&es->lock);
    int closed = es->closed;
    pthread_mutex_unlock(&es->lock);
    return closed;
}

static void teardown(vg_sio_t *es)
{
    if (es->torn_down)
        return;
    es->torn_down = 1;
    vg__sio_socket_teardown(es);
    uv_timer_stop(&es->timer);
    uv_close((uv_handle_t *)&es->timer, on_timer_closed);
    home_list_remove(es);
    vg__sio_unref(es); /* the home list's */
}

void vg__sio_close(vg_sio_t *es, vg_worker_t *cur, const char *reason)
{
    pthread_mutex_lock(&es->lock);
    if (es->closed) {
        pthread_mutex_unlock(&es->lock);
        return;
    }
    es->closed = 1;
    vg_chunk_t **q = es->queue;
    size_t n = es->queue_len;
    es->queue = NULL;
    es->queue_len = es->queue_cap = es->queue_bytes = 0;
    int wake_get = es->get != NULL && !es->get_wake;
    int wake_ws = es->ws != NULL && !es->ws_wake;
    es->get_wake |= wake_get;
    es->ws_wake |= wake_ws;
    int get_worker = es->get_worker, ws_worker = es->ws_worker;
    pthread_mutex_unlock(&es->lock);
    drop_queue(q, n);
    vg_verbose("socket.io %s from %s: session closed: %s", es->sid, es->peer, reason);
    if (table_remove(es->profile, es))
        vg__sio_unref(es); /* the table's; the caller still holds one */
    if (wake_get)
        schedule(es, cur, OP_WAKE_GET, get_worker, NULL);
    if (wake_ws)
        schedule(es, cur, OP_WAKE_WS, ws_worker, NULL);
    if (cur == es->home)
        teardown(es);
    else
        schedule(es, cur, OP_TEARDOWN, es->home->id, NULL);
}

/* ---- outbound ---- */

static void queue_push(vg_sio_t *es, vg_chunk_t *frame)
{
    if (es->queue_len == es->queue_cap) {
        es->queue_cap = es->queue_cap ? es->queue_cap * 2 : 8;
        es->queue = vg_realloc(es->queue, es->queue_cap * sizeof(*es->queue));
    }
    es->queue[es->queue_len++] = vg_chunk_ref(frame);
    es->queue_bytes += frame->len;
}

void vg__sio_send(vg_sio_t *es, vg_worker_t *cur, vg_chunk_t *frame)
{
    pthread_mutex_lock(&es->lock);
    if (es->closed || es->overflowed) {
        pthread_mutex_unlock(&es->lock);
        return;
    }
    if (es->transport == VG_SIO_WEBSOCKET && es->ws != NULL && es->ws_worker == cur->id &&
        es->queue_len == 0) {
        /* The WebSocket is on this thread and nothing waits before this packet: send it now,
         * the shared frame as is (hub deliveries rendered once per worker). */
        vg_session_t *ws = es->ws;
        pthread_mutex_unlock(&es->lock);
        vg_session_ws_send(ws, frame);
        return;
    }
    if (es->queue_len > 0 && es->queue_bytes + frame->len > es->profile->max_queued) {
        es->overflowed = 1; /* drop everything from now on; closed on the home worker */
        pthread_mutex_unlock(&es->lock);
        schedule(es, cur, OP_OVERFLOW, es->home->id, NULL);
        return;
    }
    queue_push(es, frame);
    int wake_get = es->transport == VG_SIO_POLLING && es->get != NULL && !es->get_wake;
    int wake_ws = es->transport == VG_SIO_WEBSOCKET && es->ws != NULL && !es->ws_wake;
    es->get_wake |= wake_get;
    es->ws_wake |= wake_ws;
    int get_worker = es->get_worker, ws_worker = es->ws_worker;
    pthread_mutex_unlock(&es->lock);
    if (wake_get)
        schedule(es, cur, OP_WAKE_GET, get_worker, NULL);
    if (wake_ws)
        schedule(es, cur, OP_WAKE_WS, ws_worker, NULL);
}

void vg__sio_send_text(vg_sio_t *es, vg_worker_t *cur, const char *text, size_t len)
{
    vg_chunk_t *frame = vg_ws_frame_new(VG_WS_OP_TEXT, text, len);
    vg__sio_send(es, cur, frame);
    vg_chunk_unref(frame);
}

/* Under the lock: takes the whole queue. */
static vg_chunk_t **queue_take(vg_sio_t *es, size_t *n)
{
    vg_chunk_t **q = es->queue;
    *n = es->queue_len;
    es->queue = NULL;
    es->queue_len = es->queue_cap = es->queue_bytes = 0;
    return q;
}

static void send_all(vg_session_t *ws, vg_chunk_t **q, size_t n)
{
    for (size_t i = 0; i < n; i++)
        vg_session_ws_send(ws, q[i]);
    drop_queue(q, n);
}

/* WebSocket worker: sends what is queued (or closes the socket of a closed session). */
static void flush_ws(vg_sio_t *es, vg_worker_t *w)
{
    pthread_mutex_lock(&es->lock);
    vg_session_t *ws = es->ws != NULL && es->ws_worker == w->id ? es->ws : NULL;
    if (ws == NULL || (!es->closed && es->transport != VG_SIO_WEBSOCKET)) {
        pthread_mutex_unlock(&es->lock);
        return;
    }
    if (es->closed) {
        pthread_mutex_unlock(&es->lock);
        vg_session_ws_close(ws, VG_WS_CLOSE_NORMAL, "session closed");
        return;
    }
    size_t n;
    vg_chunk_t **q = queue_take(es, &n);
    pthread_mutex_unlock(&es->lock);
    send_all(ws, q, n);
}

static void wake_ws(vg_sio_t *es, vg_worker_t *w)
{
    pthread_mutex_lock(&es->lock);
    es->ws_wake = 0;
    pthread_mutex_unlock(&es->lock);
    flush_ws(es, w);
}

/* ---- long-polling ---- */

/* A GET held open: its connection's endpoint_data. */
typedef struct held_s {
    vg_sio_t *es; /* a reference */
    char *headers;
} held_t;

static void respond_text(vg_session_t *s, const char *headers, const char *body, size_t len)
{
    vg_session_respond(s, 200, "text/plain; charset=UTF-8", headers, body, len);
}

/* Under the lock: what a poll gets now (1), or 0 when it must wait.  Closed: the close packet;
 * upgrading or upgraded: a noop, so the client's paused polling completes; otherwise every
 * queued packet in one payload. */
static int take_for_get(vg_sio_t *es, vg_buf_t *body)
{
    if (es->closed) {
        vg_buf_append(body, "1", 1);
    } else if (es->transport != VG_SIO_POLLING) {
        vg_buf_append(body, "6", 1);
    } else if (es->queue_len > 0) {
        for (size_t i = 0; i < es->queue_len; i++) {
            const uint8_t *payload;
            size_t len;
            vg_ws_frame_payload(es->queue[i], &payload, &len);
            vg_eio_payload_append(body, (const char *)payload, len);
        }
        drop_queue(es->queue, es->queue_len);
        es->queue = NULL;
        es->queue_len = es->queue_cap = es->queue_bytes = 0;
    } else {
        return 0;
    }
    return 1;
}

static void on_get_closed(vg_session_t *s);

/* Answers a held GET and goes back to reading the connection's requests. */
static void answer_held(vg_session_t *s, vg_buf_t *body)
{
    held_t *h = s->endpoint_data;
    s->on_held_close = NULL;
    s->endpoint_data = NULL;
    respond_text(s, h->headers, body->base, body->len);
    vg_session_resume_http(s);
    vg__sio_unref(h->es);
    vg_free(h->headers);
    vg_free(h);
}

static void wake_get(vg_sio_t *es, vg_worker_t *w)
{
    vg_buf_t body = VG_BUF_INIT;
    pthread_mutex_lock(&es->lock);
    vg_session_t *s = es->get != NULL && es->get_worker == w->id ? es->get : NULL;
    int ready = s != NULL && take_for_get(es, &body);
    if (ready)
        es->get = NULL;
    /* Insurance: a poll held elsewhere with something for it gets its own wake-up. */
    int other = es->get != NULL && es->get_worker != w->id &&
                (es->closed || es->transport != VG_SIO_POLLING || es->queue_len > 0);
    es->get_wake = other;
    int get_worker = es->get_worker;
    pthread_mutex_unlock(&es->lock);
    if (other)
        schedule(es, w, OP_WAKE_GET, get_worker, NULL);
    if (ready)
        answer_held(s, &body);
    vg_buf_dispose(&body);
}

static void respond_error(vg_session_t *s, const char *headers, int code, const char *message)
{
    char body[128];
    int n = snprintf(body, sizeof(body), "{\"code\":%d,\"message\":\"%s\"}", code, message);
    vg_session_respond(s, 400, "application/json", headers, body, (size_t)n);
}

void vg__sio_poll(vg_sio_t *es, vg_session_t *s, const char *headers)
{
    vg_buf_t body = VG_BUF_INIT;
    pthread_mutex_lock(&es->lock);
    int closed = es->closed, upgraded = es->transport == VG_SIO_WEBSOCKET;
    int overlap = !closed && !upgraded && es->get != NULL;
    int ready = !closed && !upgraded && !overlap && take_for_get(es, &body);
    if (!closed && !upgraded && !overlap && !ready) {
        es->get = s;
        es->get_worker = s->conn->worker->id;
    }
    pthread_mutex_unlock(&es->lock);
    if (closed) {
        respond_error(s, headers, 1, "Session ID unknown");
    } else if (upgraded || overlap) {
        respond_error(s, headers, 3, "Bad request");
        if (overlap) {
            /* As engine.io does: two polls at once means a confused client. */
            vg_notice("socket.io %s from %s: closed: overlapping polls", es->sid, es->peer);
            vg__sio_close(es, s->conn->worker, "overlapping polls");
        }
    } else if (ready) {
        respond_text(s, headers, body.base, body.len);
    } else {
        held_t *h = vg_malloc(sizeof(*h));
        h->es = vg__sio_ref(es);
        h->headers = vg_strdup(headers ? headers : "");
        s->endpoint_data = h;
        s->on_held_close = on_get_closed;
    }
    vg_buf_dispose(&body);
}

/* The held GET's connection closed before it was answered: as engine.io does, the session
 * ends ("poll connection closed prematurely"). */
static void on_get_closed(vg_session_t *s)
{
    held_t *h = s->endpoint_data;
    vg_sio_t *es = h->es;
    s->on_held_close = NULL;
    s->endpoint_data = NULL;
    pthread_mutex_lock(&es->lock);
    int was = es->get == s;
    if (was)
        es->get = NULL;
    pthread_mutex_unlock(&es->lock);
    if (was)
        vg__sio_close(es, s->conn->worker, "poll connection closed prematurely");
    vg__sio_unref(es);
    vg_free(h->headers);
    vg_free(h);
}

/* ---- inbound ---- */

/* Socket.IO packets are handled on the home worker, through its hub inbox even from there, so
 * they keep the order the client sent them in across transports (a POST's packets are in the
 * inbox before its "ok" is written).  Called from transports' I/O callbacks, never from a hub
 * callback. */
static void forward_home(vg_sio_t *es, const vg_eio_packet_t *pkt)
{
    inbound_t *m = vg_malloc(sizeof(*m) + pkt->len + 1);
    m->binary = pkt->binary;
    m->len = pkt->len;
    if (pkt->len > 0)
        memcpy(m->data, pkt->data, pkt->len);
    m->data[pkt->len] = '\0';
    vg_sio_task_t *t = vg_malloc(sizeof(*t));
    t->es = vg__sio_ref(es);
    t->op = OP_INBOUND;
    t->target = es->home->id;
    t->msg = m;
    send_task(t);
}

static int on_probe(vg_sio_t *es, vg_session_t *ws, const char **err)
{
    pthread_mutex_lock(&es->lock);
    int ok = es->ws == ws && es->transport == VG_SIO_POLLING && !es->closed;
    if (ok)
        es->transport = VG_SIO_UPGRADING;
    int wake_get = ok && es->get != NULL && !es->get_wake;
    es->get_wake |= wake_get;
    int get_worker = es->get_worker;
    pthread_mutex_unlock(&es->lock);
    if (!ok) {
        *err = "unexpected probe";
        return VG_EINVAL;
    }
    vg_session_ws_send_text(ws, "3probe", 6);
    if (wake_get)
        schedule(es, ws->conn->worker, OP_WAKE_GET, get_worker, NULL); /* a noop answers it */
    return 0;
}

static int on_upgrade(vg_sio_t *es, vg_session_t *ws, const char **err)
{
    pthread_mutex_lock(&es->lock);
    int ok = es->ws == ws && es->transport == VG_SIO_UPGRADING && !es->closed;
    size_t n = 0;
    vg_chunk_t **q = NULL;
    if (ok) {
        es->transport = VG_SIO_WEBSOCKET;
        q = queue_take(es, &n);
    }
    pthread_mutex_unlock(&es->lock);
    if (!ok) {
        *err = "unexpected upgrade packet";
        return VG_EINVAL;
    }
    vg_verbose("socket.io %s from %s: upgraded to websocket", es->sid, es->peer);
    send_all(ws, q, n);
    return 0;
}

int vg__sio_on_packet(vg_sio_t *es, vg_worker_t *cur, const vg_eio_packet_t *pkt, vg_session_t *ws,
                      const char **err)
{
    switch (pkt->type) {
    case VG_EIO_PONG: on_pong(es); return 0;
    case VG_EIO_PING:
        if (ws != NULL && pkt->len == 5 && memcmp(pkt->data, "probe", 5) == 0)
            return on_probe(es, ws, err);
        *err = "ping from the client"; /* Engine.IO v4: only the server pings */
        return VG_EINVAL;
    case VG_EIO_MESSAGE: forward_home(es, pkt); return 0;
    case VG_EIO_UPGRADE:
        if (ws != NULL)
            return on_upgrade(es, ws, err);
        *err = "upgrade packet over polling";
        return VG_EINVAL;
    case VG_EIO_CLOSE: vg__sio_close(es, cur, "closed by the client"); return 0;
    case VG_EIO_NOOP: return 0;
    default: *err = "unexpected open packet"; return VG_EINVAL;
    }
}

/* ---- WebSocket transport ---- */

static void send_open(vg_sio_t *es, vg_session_t *ws)
{
    static const char *const none[1] = {NULL};
    vg_sio_profile_t *p = es->profile;
    vg_buf_t open = VG_BUF_INIT;
    vg_eio_encode_open(&open, es->sid, none, 0, p->ping_interval_ms, p->ping_timeout_ms,
                       p->max_payload);
    vg_session_ws_send_text(ws, open.base, open.len);
    vg_buf_dispose(&open);
}

void vg__sio_ws_open(vg_sio_t *es, vg_session_t *s)
{
    vg_worker_t *w = s->conn->worker;
    pthread_mutex_lock(&es->lock);
    int direct =
        !es->closed && es->transport == VG_SIO_WEBSOCKET && es->ws == NULL && !es->ws_opened;
    int probe = !es->closed && es->transport == VG_SIO_POLLING && es->ws == NULL;
    if (direct || probe) {
        es->ws = s;
        es->ws_worker = w->id;
        es->ws_opened |= direct;
    }
    pthread_mutex_unlock(&es->lock);
    if (direct) {
        send_open(es, s);
        flush_ws(es, w);
    } else if (!probe) {
        vg_session_ws_close(s, VG_WS_CLOSE_POLICY, "session closed or already upgraded");
    }
}

void vg__sio_ws_closed(vg_sio_t *es, vg_session_t *s)
{
    pthread_mutex_lock(&es->lock);
    int current = es->ws == s;
    int transport = es->transport;
    if (current) {
        es->ws = NULL;
        es->ws_worker = -1;
        if (transport == VG_SIO_UPGRADING)
            es->transport = VG_SIO_POLLING; /* the probe failed: polling goes on */
    }
    pthread_mutex_unlock(&es->lock);
    if (current && transport == VG_SIO_WEBSOCKET)
        vg__sio_close(es, s->conn->worker, "transport closed");
}
