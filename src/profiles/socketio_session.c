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

/* What one queued packet costs besides its bytes (the chunk's header, the allocator's, the
 * queue's pointer): a client answered many tiny packets must not hold many times its limit. */
#define QUEUE_ENTRY_COST (sizeof(vg_chunk_t) + sizeof(vg_chunk_t *) + 32)
#define REFUSAL_LOG_MS   10000 /* refused handshakes: one log line per this many ms at most */
/* What a packet on its way to the home worker costs besides its bytes: its copy's header, the
 * task, the hub's call item (measured: about 200 bytes). */
#define INBOUND_COST 256

static uint64_t mono_ms(void)
{
    return vg_mono_ns() / 1000000u;
}

enum task_op { OP_WAKE_GET, OP_WAKE_WS, OP_TEARDOWN, OP_OVERFLOW, OP_INBOUND };

/* What the client sent, for the home worker (OP_INBOUND): one message, or a whole polling
 * payload whose messages the home worker reads out in order. */
typedef struct inbound_s {
    int binary;
    int payload;
    size_t cost; /* counted in the session's inbound_bytes until handled */
    size_t len;
    char data[];
} inbound_t;

/* A client address and how many sessions it holds (under the profile's table_lock). */
typedef struct vg_sio_addr_s {
    struct vg_sio_addr_s *next;
    size_t sessions;
    char ip[48];
} vg_sio_addr_t;

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

static size_t bucket_of(const vg_sio_profile_t *p, const char *key)
{
    uint32_t h = 2166136261u;
    for (const char *c = key; *c != '\0'; c++)
        h = (h ^ (uint8_t)*c) * 16777619u;
    return h & (p->table_buckets - 1);
}

void vg__sio_profile_init(vg_sio_profile_t *p)
{
    /* About two sessions a chain at the cap: finding a session (every request) and removing
     * one (every close, thousands in a row at shutdown) stay short walks. */
    p->table_buckets = 64;
    while (p->table_buckets < p->max_sessions / 2 && p->table_buckets < ((size_t)1 << 20))
        p->table_buckets *= 2;
}

/* "1.2.3.4:5678" -> "1.2.3.4", "[::1]:5678" -> "::1": what the per-address cap counts. */
static void peer_address(const char *peer, char out[48])
{
    const char *start = peer[0] == '[' ? peer + 1 : peer;
    const char *end = peer[0] == '[' ? strchr(start, ']') : strrchr(start, ':');
    size_t len = end != NULL ? (size_t)(end - start) : strlen(start);
    snprintf(out, 48, "%.*s", (int)len, start);
}

/* Under table_lock: the address's entry, or NULL when it holds no session. */
static vg_sio_addr_t *addr_find(vg_sio_profile_t *p, const char *ip)
{
    for (vg_sio_addr_t *a = p->addrs[bucket_of(p, ip)]; a != NULL; a = a->next)
        if (strcmp(a->ip, ip) == 0)
            return a;
    return NULL;
}

static vg_sio_addr_t *addr_add(vg_sio_profile_t *p, const char *ip)
{
    vg_sio_addr_t *a = vg_calloc(1, sizeof(*a));
    snprintf(a->ip, sizeof(a->ip), "%s", ip);
    size_t b = bucket_of(p, ip);
    a->next = p->addrs[b];
    p->addrs[b] = a;
    return a;
}

static void addr_release(vg_sio_profile_t *p, vg_sio_addr_t *a)
{
    if (--a->sessions > 0)
        return;
    for (vg_sio_addr_t **pp = &p->addrs[bucket_of(p, a->ip)]; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == a) {
            *pp = a->next;
            break;
        }
    }
    vg_free(a);
}

/* Under table_lock: counts a refused handshake; returns how many to log now (0: not yet, the
 * line of this interval was written). */
static unsigned note_refusal(vg_sio_profile_t *p, int refusal)
{
    atomic_fetch_add_explicit(refusal == VG_SIO_TOO_MANY ? &p->refused_server : &p->refused_address,
                              1, memory_order_relaxed);
    p->refusals_unlogged++;
    uint64_t now = mono_ms();
    if (p->refusals_logged_ms != 0 && now - p->refusals_logged_ms < REFUSAL_LOG_MS)
        return 0;
    unsigned n = p->refusals_unlogged;
    p->refusals_logged_ms = now;
    p->refusals_unlogged = 0;
    return n;
}

/* Takes a place for es under the session caps (the whole server's, its client address's).
 * Returns 0, or the refusal (enum vg_sio_refusal). */
static int table_reserve(vg_sio_profile_t *p, vg_sio_t *es)
{
    char ip[48];
    peer_address(es->peer, ip);
    pthread_mutex_lock(&p->table_lock);
    if (p->table == NULL) {
        p->table = vg_calloc(p->table_buckets, sizeof(*p->table));
        p->addrs = vg_calloc(p->table_buckets, sizeof(*p->addrs));
    }
    vg_sio_addr_t *a = p->max_sessions_per_ip > 0 ? addr_find(p, ip) : NULL;
    int refusal = 0;
    if (p->num_sessions >= p->max_sessions)
        refusal = VG_SIO_TOO_MANY;
    else if (a != NULL && a->sessions >= p->max_sessions_per_ip)
        refusal = VG_SIO_TOO_MANY_FROM_ADDRESS;
    unsigned to_log = 0;
    if (refusal != 0) {
        to_log = note_refusal(p, refusal);
    } else {
        if (a == NULL && p->max_sessions_per_ip > 0)
            a = addr_add(p, ip);
        if (a != NULL)
            a->sessions++;
        es->addr = a;
        p->num_sessions++;
    }
    pthread_mutex_unlock(&p->table_lock);
    /* A flood of handshakes is refused by the thousand: one line per interval says so. */
    if (to_log > 0)
        vg_notice("socket.io: %u handshake(s) refused (last from %s): %s", to_log, es->peer,
                  refusal == VG_SIO_TOO_MANY
                      ? "too many sessions on this server (--socketio-max-sessions)"
                      : "too many sessions from one address (--socketio-max-sessions-per-ip)");
    return refusal;
}

static void table_insert(vg_sio_profile_t *p, vg_sio_t *es)
{
    pthread_mutex_lock(&p->table_lock);
    size_t b = bucket_of(p, es->sid);
    es->table_next = p->table[b];
    p->table[b] = es;
    pthread_mutex_unlock(&p->table_lock);
}

/* Returns 1 when the session was in the table (its reference is the caller's now); its place
 * under the caps is given back. */
static int table_remove(vg_sio_profile_t *p, vg_sio_t *es)
{
    int found = 0;
    pthread_mutex_lock(&p->table_lock);
    for (vg_sio_t **pp = p->table ? &p->table[bucket_of(p, es->sid)] : NULL; pp && *pp;
         pp = &(*pp)->table_next) {
        if (*pp == es) {
            *pp = es->table_next;
            found = 1;
            break;
        }
    }
    if (found) {
        p->num_sessions--;
        if (es->addr != NULL)
            addr_release(p, es->addr);
        es->addr = NULL;
    }
    pthread_mutex_unlock(&p->table_lock);
    return found;
}

vg_sio_t *vg__sio_find(vg_sio_profile_t *p, const char *sid)
{
    vg_sio_t *found = NULL;
    pthread_mutex_lock(&p->table_lock);
    for (vg_sio_t *es = p->table ? p->table[bucket_of(p, sid)] : NULL; es; es = es->table_next) {
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
    if (t->msg != NULL) { /* handled or dropped: no longer waiting */
        atomic_fetch_sub_explicit(&t->es->inbound_packets, 1, memory_order_relaxed);
        atomic_fetch_sub_explicit(&t->es->inbound_bytes, t->msg->cost, memory_order_relaxed);
    }
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

/* Anyone can open sessions and have them closed by a limit or a timeout: only a connected
 * socket's close is worth a line at the default level. */
#define log_close(es, ...)                                                                         \
    vg_log(atomic_load_explicit(&(es)->connected, memory_order_relaxed) ? VG_LOG_NOTICE            \
                                                                        : VG_LOG_VERBOSE,          \
           __VA_ARGS__)

/* The bytes a session may have waiting for its transport. */
static size_t max_outbound(vg_sio_t *es)
{
    vg_sio_profile_t *p = es->profile;
    if (atomic_load_explicit(&es->connected, memory_order_relaxed) ||
        p->max_connect_payload > p->max_queued)
        return p->max_queued;
    return p->max_connect_payload;
}

size_t vg__sio_max_inbound(vg_sio_t *es)
{
    vg_sio_profile_t *p = es->profile;
    if (atomic_load_explicit(&es->connected, memory_order_relaxed) ||
        p->max_connect_payload > p->max_payload)
        return p->max_payload;
    return p->max_connect_payload;
}

static void on_overflow(vg_sio_t *es, vg_worker_t *w)
{
    log_close(es, "socket.io %s from %s: closed: slow consumer (more than %zu bytes waiting)",
              es->sid, es->peer, max_outbound(es));
    vg__sio_close(es, w, "slow consumer");
}

static void deliver_payload(vg_sio_t *es, vg_worker_t *w, const inbound_t *m);

static void run_task(vg_worker_t *w, vg_sio_task_t *t)
{
    vg_sio_t *es = t->es;
    switch (t->op) {
    case OP_WAKE_GET: wake_get(es, w); break;
    case OP_WAKE_WS: wake_ws(es, w); break;
    case OP_TEARDOWN: teardown(es); break;
    case OP_OVERFLOW: on_overflow(es, w); break;
    case OP_INBOUND:
        if (t->msg->payload)
            deliver_payload(es, w, t->msg);
        else if (!es->torn_down && !vg__sio_is_closed(es))
            es->profile->on_message(es, w, t->msg->binary, t->msg->data, t->msg->len);
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
    /* Every session left the table when its home worker stopped (on_check), and so gave back
     * its address's count. */
    vg_free(p->table);
    p->table = NULL;
    vg_free(p->addrs);
    p->addrs = NULL;
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
 * pingTimeout; the next ping is due pingInterval after the pong.  The same timer closes a
 * session whose socket is not connected by its connect deadline.  It may fire early (the
 * deadline moved): each run works out what is due from the times, not from having fired. */
static void on_heartbeat(uv_timer_t *t);

/* Under the lock: when the heartbeat has something to do next. */
static uint64_t heartbeat_due(const vg_sio_t *es)
{
    const vg_sio_profile_t *p = es->profile;
    if (es->awaiting_pong && es->pong_ms != 0)
        return es->pong_ms + p->ping_interval_ms;
    return es->awaiting_pong ? es->ping_ms + p->ping_timeout_ms : es->next_ping_ms;
}

static void arm_timer(vg_sio_t *es, uint64_t due, uint64_t now)
{
    if (es->connect_deadline_ms != 0 && es->connect_deadline_ms < due)
        due = es->connect_deadline_ms;
    uv_timer_start(&es->timer, on_heartbeat, due > now ? due - now : 0, 0);
}

static void expire(vg_sio_t *es, const char *why, atomic_ullong *counter)
{
    atomic_fetch_add_explicit(counter, 1, memory_order_relaxed);
    log_close(es, "socket.io %s from %s: closed: %s", es->sid, es->peer, why);
    vg__sio_close(es, es->home, why);
}

static void on_heartbeat(uv_timer_t *t)
{
    vg_sio_t *es = t->data;
    vg_sio_profile_t *p = es->profile;
    uint64_t now = mono_ms();
    if (es->connect_deadline_ms != 0 && now >= es->connect_deadline_ms) {
        expire(es, "connect timeout", &p->expired_connect);
        return;
    }
    pthread_mutex_lock(&es->lock);
    int got_pong = es->awaiting_pong && es->pong_ms != 0;
    if (got_pong) {
        es->awaiting_pong = 0;
        es->next_ping_ms = es->pong_ms + p->ping_interval_ms;
    }
    int timed_out = es->awaiting_pong && now >= es->ping_ms + p->ping_timeout_ms;
    int ping = !es->awaiting_pong && now >= es->next_ping_ms;
    if (ping) {
        es->awaiting_pong = 1;
        es->pong_ms = 0;
        es->ping_ms = now;
    }
    uint64_t due = heartbeat_due(es);
    pthread_mutex_unlock(&es->lock);
    if (got_pong && es->sock != NULL && es->sock->registered) /* for /ws/connections */
        atomic_store_explicit(&es->sock->reg.last_heartbeat_ms, vg_wall_ms(), memory_order_relaxed);
    if (timed_out) {
        expire(es, "ping timeout", &p->expired_ping);
        return;
    }
    if (ping)
        vg__sio_send_text(es, es->home, "2", 1);
    arm_timer(es, due, now);
}

void vg__sio_set_connected(vg_sio_t *es, int connected)
{
    atomic_store_explicit(&es->connected, connected, memory_order_relaxed);
    if (connected) {
        es->connect_deadline_ms = 0; /* the timer may fire once early: it re-arms itself */
        return;
    }
    if (es->torn_down)
        return;
    /* The socket left (DISCONNECT): the session is back to one anyone could hold. */
    uint64_t now = mono_ms();
    es->connect_deadline_ms = now + es->profile->connect_timeout_ms;
    pthread_mutex_lock(&es->lock);
    uint64_t due = heartbeat_due(es);
    pthread_mutex_unlock(&es->lock);
    arm_timer(es, due, now);
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

vg_sio_t *vg__sio_new(vg_sio_profile_t *p, vg_session_t *s, int transport, int *refusal)
{
    vg_sio_t *es = vg_calloc(1, sizeof(*es));
    es->profile = p;
    snprintf(es->peer, sizeof(es->peer), "%s", s->conn->peer);
    *refusal = table_reserve(p, es);
    if (*refusal != 0) {
        vg_free(es);
        return NULL;
    }
    /* the caller, the table, the home list, the timer */
    atomic_init(&es->refcnt, 4);
    atomic_init(&es->connected, 0);
    atomic_init(&es->inbound_packets, 0);
    atomic_init(&es->inbound_bytes, 0);
    pthread_mutex_init(&es->lock, NULL);
    vg__sio_make_id(es->sid);
    es->home = s->conn->worker;
    es->conn_id = s->conn->id;
    es->transport = transport;
    es->get_worker = es->ws_worker = -1;
    uint64_t now = mono_ms();
    es->next_ping_ms = now + p->ping_interval_ms;
    es->connect_deadline_ms = now + p->connect_timeout_ms;
    uv_timer_init(&es->home->loop, &es->timer);
    es->timer.data = es;
    arm_timer(es, es->next_ping_ms, now);
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
    es->profile->on_teardown(es);
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
    es->queue_bytes += frame->len + QUEUE_ENTRY_COST;
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
    if (es->queue_len > 0 && es->queue_bytes + frame->len + QUEUE_ENTRY_COST > max_outbound(es)) {
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
            log_close(es, "socket.io %s from %s: closed: overlapping polls", es->sid, es->peer);
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

/* Takes a place for a packet on its way to the home worker.  A transport reads much faster than
 * the home worker handles packets (a read of 64 KiB holds 8,000 tiny WebSocket frames): what
 * waits is bounded by --max-inbound-rate (a client under it never has that many packets
 * waiting) and by the bytes the session may have queued.  The first one always gets in. */
static int inbound_reserve(vg_sio_t *es, size_t cost)
{
    double rate = es->profile->app->cfg->max_inbound_rate;
    size_t max_packets = rate < 100000 ? (size_t)(2 * rate) + 16 : 200016;
    size_t packets = atomic_fetch_add_explicit(&es->inbound_packets, 1, memory_order_relaxed);
    size_t bytes = atomic_fetch_add_explicit(&es->inbound_bytes, cost, memory_order_relaxed);
    if (packets == 0 || (packets < max_packets && bytes + cost <= max_outbound(es)))
        return 0;
    atomic_fetch_sub_explicit(&es->inbound_packets, 1, memory_order_relaxed);
    atomic_fetch_sub_explicit(&es->inbound_bytes, cost, memory_order_relaxed);
    return VG_ELIMIT;
}

/* Socket.IO packets are handled on the home worker, through its hub inbox even from there, so
 * they keep the order the client sent them in across transports (a POST's packets are in the
 * inbox before its "ok" is written).  Called from transports' I/O callbacks, never from a hub
 * callback.  Returns 0, or VG_ELIMIT with *err when too much already waits. */
static int forward_home(vg_sio_t *es, int binary, int payload, const char *data, size_t len,
                        const char **err)
{
    size_t cost = len + INBOUND_COST;
    if (inbound_reserve(es, cost) != 0) {
        *err = "packets sent faster than they are handled (--max-inbound-rate)";
        return VG_ELIMIT;
    }
    inbound_t *m = vg_malloc(sizeof(*m) + len + 1);
    m->binary = binary;
    m->payload = payload;
    m->cost = cost;
    m->len = len;
    if (len > 0)
        memcpy(m->data, data, len);
    m->data[len] = '\0';
    vg_sio_task_t *t = vg_malloc(sizeof(*t));
    t->es = vg__sio_ref(es);
    t->op = OP_INBOUND;
    t->target = es->home->id;
    t->msg = m;
    send_task(t);
    return 0;
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
    case VG_EIO_MESSAGE:
        if (vg__sio_is_closed(es)) /* e.g. over the rate: the rest of a burst is not queued */
            return 0;
        return forward_home(es, pkt->binary, 0, pkt->data, pkt->len, err);
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

int vg__sio_on_payload(vg_sio_t *es, vg_worker_t *cur, const char *body, size_t len,
                       const char **err)
{
    vg_eio_reader_t r;
    vg_eio_packet_t pkt;
    int rc, messages = 0;
    vg_eio_reader_init(&r, body, len);
    while ((rc = vg_eio_reader_next(&r, &pkt, err)) == 1) {
        if (pkt.type == VG_EIO_MESSAGE)
            messages = 1;
        else if ((rc = vg__sio_on_packet(es, cur, &pkt, NULL, err)) != 0)
            break;
    }
    vg_eio_reader_dispose(&r);
    if (rc < 0)
        return rc;
    if (messages && !vg__sio_is_closed(es))
        return forward_home(es, 0, 1, body, len, err);
    return 0;
}

/* Home worker: the messages of a payload checked by vg__sio_on_payload, in order, until one of
 * them closes the session. */
static void deliver_payload(vg_sio_t *es, vg_worker_t *w, const inbound_t *m)
{
    vg_eio_reader_t r;
    vg_eio_packet_t pkt;
    const char *err = NULL;
    vg_eio_reader_init(&r, m->data, m->len);
    while (!es->torn_down && !vg__sio_is_closed(es) && vg_eio_reader_next(&r, &pkt, &err) == 1)
        if (pkt.type == VG_EIO_MESSAGE)
            es->profile->on_message(es, w, pkt.binary, pkt.data, pkt.len);
    vg_eio_reader_dispose(&r);
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
