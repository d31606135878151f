#include "net/conn.h"

#include <stdatomic.h>
#include <string.h>

#include "net/addr.h"
#include "net/worker.h"
#include "util/alloc.h"
#include "util/error.h"
#include "util/log.h"

/* How long a half-closed connection may keep sending before we close it for good. */
#define LINGER_MS 2000
/* Buffers handed to one uv_write; more stay queued for the next turn. */
#define MAX_IOV 256

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void start_closing(vg_conn_t *c);

/* Connection ids are unique across workers, for logs and the admin API. */
static atomic_uint_fast64_t next_conn_id = 1;

vg_conn_t *vg__conn_new(vg_worker_t *w)
{
    vg_conn_t *c = vg_calloc(1, sizeof(*c));
    c->worker = w;
    c->id = atomic_fetch_add_explicit(&next_conn_id, 1, memory_order_relaxed);
    c->created = uv_now(&w->loop);
    uv_tcp_init(&w->loop, &c->tcp);
    uv_timer_init(&w->loop, &c->_timer);
    c->_pending_handles = 2;
    c->_latest_seq = UINT64_MAX;
    c->_whole_seq = UINT64_MAX;
    c->tcp.data = c;
    c->_timer.data = c;
    return c;
}

void vg__conn_accepted(vg_conn_t *c)
{
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0)
        vg_format_addr((struct sockaddr *)&ss, c->peer, sizeof(c->peer));
    else
        strcpy(c->peer, "?");
    /* Frames are written whole, once per loop turn: Nagle would only add latency. */
    uv_tcp_nodelay(&c->tcp, 1);
}

void vg__conn_start(vg_conn_t *c)
{
    int err = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    if (err != 0) {
        vg_verbose("conn %s: read_start failed: %s", c->peer, uv_strerror(err));
        vg_conn_close(c);
    }
}

/* Every connection of a worker reads into the worker's one buffer: a loop runs one read
 * callback at a time, and handlers copy what they must keep, so an idle connection holds no
 * read buffer at all. */
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    vg_conn_t *c = h->data;
    buf->base = c->worker->_read_buf;
    buf->len = VG_READ_BUF_SIZE;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    vg_conn_t *c = s->data;
    if (nread > 0) {
        if (c->flags & (VG_CONN_F_LINGER | VG_CONN_F_CLOSING))
            return; /* draining: discard */
        c->handler->on_read(c, buf->base, (size_t)nread);
        return;
    }
    if (nread == 0)
        return; /* EAGAIN */
    if (c->flags & VG_CONN_F_LINGER) {
        vg_conn_close(c);
        return;
    }
    if (c->handler->on_eof != NULL && !(c->flags & VG_CONN_F_CLOSING))
        c->handler->on_eof(c, (int)nread);
    vg_conn_close(c);
}

/* ---- outbound queue ---- */

static void queue_push(vg_conn_t *c, vg_chunk_t *chunk)
{
    if (c->_q_len == c->_q_cap) {
        uint32_t cap = c->_q_cap ? c->_q_cap * 2 : 8;
        vg_chunk_t **q = vg_malloc(cap * sizeof(*q));
        for (uint32_t i = 0; i < c->_q_len; i++)
            q[i] = c->_q[(c->_q_head + i) % c->_q_cap];
        vg_free(c->_q);
        c->_q = q;
        c->_q_cap = cap;
        c->_q_head = 0;
    }
    c->_q[(c->_q_head + c->_q_len) % c->_q_cap] = vg_chunk_ref(chunk);
    c->_q_len++;
    c->_q_bytes += chunk->len;
}

static vg_chunk_t *queue_pop(vg_conn_t *c)
{
    vg_chunk_t *chunk = c->_q[c->_q_head];
    c->_q_head = (c->_q_head + 1) % c->_q_cap;
    c->_q_len--;
    if (c->_q_seq++ == c->_whole_seq)
        c->_whole_seq = UINT64_MAX;
    c->_q_bytes -= chunk->len;
    return chunk;
}

static void schedule_flush(vg_conn_t *c)
{
    if (c->flags & VG_CONN_F_IN_FLUSH)
        return;
    c->flags |= VG_CONN_F_IN_FLUSH;
    c->_flush_next = c->worker->_flush_head;
    c->worker->_flush_head = c;
}

int vg_conn_send_force(vg_conn_t *c, vg_chunk_t *chunk)
{
    if (c->flags & (VG_CONN_F_CLOSING | VG_CONN_F_FLUSH_CLOSE | VG_CONN_F_LINGER))
        return VG_ECLOSED;
    if (chunk->len == 0)
        return 0;
    queue_push(c, chunk);
    schedule_flush(c);
    return 0;
}

/* Bytes the limit counts: the queue without the vg_conn_send_whole chunk still in it. */
static size_t counted_bytes(const vg_conn_t *c)
{
    return c->_whole_seq != UINT64_MAX ? c->_q_bytes - c->_whole_len : c->_q_bytes;
}

int vg_conn_send(vg_conn_t *c, vg_chunk_t *chunk)
{
    /* The limit bounds the backlog, not one message (that is --max-message-size's job): a chunk
     * larger than the limit still goes out when nothing else is waiting. */
    size_t queued = counted_bytes(c);
    if (queued > 0 && queued + chunk->len > c->worker->max_outbound &&
        !(c->flags & (VG_CONN_F_CLOSING | VG_CONN_F_FLUSH_CLOSE | VG_CONN_F_LINGER)))
        return VG_ELIMIT;
    return vg_conn_send_force(c, chunk);
}

int vg_conn_send_whole(vg_conn_t *c, vg_chunk_t *chunk)
{
    if (c->_whole_seq != UINT64_MAX || chunk->len == 0)
        return vg_conn_send(c, chunk);
    if (c->_q_bytes > c->worker->max_outbound)
        return VG_ELIMIT;
    int err = vg_conn_send_force(c, chunk);
    if (err == 0) {
        c->_whole_seq = c->_q_seq + c->_q_len - 1;
        c->_whole_len = chunk->len;
    }
    return err;
}

/* The queue position of the last vg_conn_send_latest chunk if it is still waiting, else -1. */
static int64_t latest_waiting(const vg_conn_t *c)
{
    if (c->_latest_seq == UINT64_MAX || c->_latest_seq < c->_q_seq + c->_inflight ||
        c->_latest_seq >= c->_q_seq + c->_q_len)
        return -1;
    return (int64_t)((c->_q_head + (c->_latest_seq - c->_q_seq)) % c->_q_cap);
}

int vg_conn_send_latest(vg_conn_t *c, const void *data, size_t len, size_t room)
{
    if (c->flags & (VG_CONN_F_CLOSING | VG_CONN_F_FLUSH_CLOSE | VG_CONN_F_LINGER))
        return VG_ECLOSED;
    /* Replace only when the peer is not draining (bytes of a write still wait in libuv because
     * the kernel would take no more, or the queue is full): otherwise every request gets its
     * answer. */
    int backed_up = uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) > 0 ||
                    c->_q_bytes + len > c->worker->max_outbound;
    int64_t at = backed_up ? latest_waiting(c) : -1;
    if (at >= 0) {
        vg_chunk_t *old = c->_q[at];
        /* Only this queue holds it and no write has started: it may still change. */
        if (atomic_load_explicit(&old->refcnt, memory_order_relaxed) == 1 && old->cap >= len) {
            memcpy(old->data, data, len);
            c->_q_bytes = c->_q_bytes - old->len + len;
            old->len = len;
            return 0;
        }
    }
    vg_chunk_t *chunk = vg_chunk_new(room > len ? room : len);
    memcpy(chunk->data, data, len);
    chunk->len = len;
    int err = 0;
    if (at >= 0) {
        c->_q_bytes = c->_q_bytes - c->_q[at]->len + len;
        vg_chunk_unref(c->_q[at]);
        c->_q[at] = vg_chunk_ref(chunk);
    } else {
        err = vg_conn_send_force(c, chunk);
        if (err == 0 && len > 0)
            c->_latest_seq = c->_q_seq + c->_q_len - 1;
    }
    vg_chunk_unref(chunk);
    return err;
}

int vg_conn_send_copy(vg_conn_t *c, const void *data, size_t len)
{
    vg_chunk_t *chunk = vg_chunk_new_copy(data, len);
    int err = vg_conn_send_force(c, chunk);
    vg_chunk_unref(chunk);
    return err;
}

void vg_conn_discard_queued(vg_conn_t *c)
{
    /* Chunks [0, _inflight) belong to the running uv_write: keep them. */
    while (c->_q_len > c->_inflight) {
        uint32_t last = (c->_q_head + c->_q_len - 1) % c->_q_cap;
        c->_q_bytes -= c->_q[last]->len;
        vg_chunk_unref(c->_q[last]);
        c->_q_len--;
    }
    /* Positions past the end will be reused by new chunks: they are not the latest any more. */
    if (c->_latest_seq != UINT64_MAX && c->_latest_seq >= c->_q_seq + c->_q_len)
        c->_latest_seq = UINT64_MAX;
    if (c->_whole_seq != UINT64_MAX && c->_whole_seq >= c->_q_seq + c->_q_len)
        c->_whole_seq = UINT64_MAX;
    c->_whole_seq = UINT64_MAX;
}

size_t vg_conn_queued_bytes(const vg_conn_t *c)
{
    return c->_q_bytes;
}

static void on_shutdown_done(uv_shutdown_t *req, int status)
{
    vg_conn_t *c = req->data;
    vg_free(req);
    if (status != 0 || (c->flags & VG_CONN_F_CLOSING)) {
        vg_conn_close(c);
        return;
    }
    /* FIN is out; keep reading (and discarding) so unread input does not turn our close into a
     * reset that could destroy the bytes we just sent. */
    c->flags |= VG_CONN_F_LINGER;
    vg_conn_timer_start(c, LINGER_MS);
}

static void begin_linger(vg_conn_t *c)
{
    uv_shutdown_t *req = vg_malloc(sizeof(*req));
    req->data = c;
    if (uv_shutdown(req, (uv_stream_t *)&c->tcp, on_shutdown_done) != 0) {
        vg_free(req);
        vg_conn_close(c);
    }
}

static uv_write_t *wreq_get(vg_worker_t *w)
{
    uv_write_t *req = w->_free_wreqs;
    if (req == NULL)
        return vg_malloc(sizeof(*req));
    w->_free_wreqs = req->data;
    return req;
}

static void wreq_put(vg_worker_t *w, uv_write_t *req)
{
    req->data = w->_free_wreqs;
    w->_free_wreqs = req;
}

static void on_write_done(uv_write_t *req, int status)
{
    vg_conn_t *c = req->data;
    wreq_put(c->worker, req);
    c->_wreq = NULL;
    c->flags &= ~VG_CONN_F_WRITING;
    while (c->_inflight > 0) {
        vg_chunk_unref(queue_pop(c));
        c->_inflight--;
    }
    if (c->flags & VG_CONN_F_CLOSING)
        return;
    if (status != 0) {
        vg_verbose("conn %s: write failed: %s", c->peer, uv_strerror(status));
        vg_conn_close(c);
        return;
    }
    if (c->_q_len > 0)
        schedule_flush(c);
    else if (c->flags & VG_CONN_F_FLUSH_CLOSE)
        begin_linger(c);
}

/* Writes everything queued (up to MAX_IOV chunks) with one uv_write. */
static void flush_conn(vg_conn_t *c)
{
    c->flags &= ~VG_CONN_F_IN_FLUSH;
    if (c->flags & (VG_CONN_F_CLOSING | VG_CONN_F_WRITING))
        return;
    if (c->_q_len == 0) {
        if (c->flags & VG_CONN_F_FLUSH_CLOSE && !(c->flags & VG_CONN_F_LINGER))
            begin_linger(c);
        return;
    }
    uv_buf_t bufs[MAX_IOV];
    uint32_t n = c->_q_len < MAX_IOV ? c->_q_len : MAX_IOV;
    for (uint32_t i = 0; i < n; i++) {
        vg_chunk_t *chunk = c->_q[(c->_q_head + i) % c->_q_cap];
        bufs[i] = uv_buf_init((char *)chunk->data, (unsigned)chunk->len);
    }
    c->_inflight = n;
    c->_wreq = wreq_get(c->worker);
    c->_wreq->data = c;
    c->flags |= VG_CONN_F_WRITING;
    int err = uv_write(c->_wreq, (uv_stream_t *)&c->tcp, bufs, n, on_write_done);
    if (err != 0) {
        wreq_put(c->worker, c->_wreq);
        c->_wreq = NULL;
        c->flags &= ~VG_CONN_F_WRITING;
        c->_inflight = 0;
        vg_verbose("conn %s: write failed: %s", c->peer, uv_strerror(err));
        vg_conn_close(c);
    }
}

void vg__worker_flush(vg_worker_t *w)
{
    /* Flushing cannot add conns to the list except through callbacks that run later, but take
     * the list first anyway so the loop is obviously finite. */
    vg_conn_t *c = w->_flush_head;
    w->_flush_head = NULL;
    while (c != NULL) {
        vg_conn_t *next = c->_flush_next;
        c->_flush_next = NULL;
        flush_conn(c);
        c = next;
    }
}

/* ---- reading, timers, closing ---- */

void vg_conn_read_pause(vg_conn_t *c)
{
    if (!(c->flags & VG_CONN_F_CLOSING))
        uv_read_stop((uv_stream_t *)&c->tcp);
}

void vg_conn_read_resume(vg_conn_t *c)
{
    if (!(c->flags & VG_CONN_F_CLOSING))
        uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

static void on_timer(uv_timer_t *t)
{
    vg_conn_t *c = t->data;
    if (c->flags & VG_CONN_F_LINGER) {
        vg_conn_close(c);
        return;
    }
    if (c->handler->on_timeout != NULL)
        c->handler->on_timeout(c);
}

void vg_conn_timer_start(vg_conn_t *c, uint64_t ms)
{
    if (!(c->flags & VG_CONN_F_CLOSING))
        uv_timer_start(&c->_timer, on_timer, ms, 0);
}

void vg_conn_timer_stop(vg_conn_t *c)
{
    uv_timer_stop(&c->_timer);
}

void vg_conn_close_after_flush(vg_conn_t *c)
{
    if (c->flags & (VG_CONN_F_CLOSING | VG_CONN_F_FLUSH_CLOSE | VG_CONN_F_LINGER))
        return;
    c->flags |= VG_CONN_F_FLUSH_CLOSE;
    uv_timer_stop(&c->_timer);
    schedule_flush(c);
}

/* Rare: a conn closed after joining the flush list but before the flush ran. */
static void unlink_from_flush_list(vg_conn_t *c)
{
    for (vg_conn_t **p = &c->worker->_flush_head; *p != NULL; p = &(*p)->_flush_next) {
        if (*p == c) {
            *p = c->_flush_next;
            break;
        }
    }
}

static void on_handle_closed(uv_handle_t *h)
{
    vg_conn_t *c = h->data;
    if (--c->_pending_handles > 0)
        return;
    /* Both handles are closed and every write callback has run (libuv cancels pending writes
     * before the close callback), so nothing refers to the conn any more. */
    if (c->flags & VG_CONN_F_IN_FLUSH)
        unlink_from_flush_list(c);
    while (c->_q_len > 0)
        vg_chunk_unref(queue_pop(c));
    vg_free(c->_q);
    if (c->handler != NULL && c->handler->on_close != NULL)
        c->handler->on_close(c);
    c->worker->_on_conn_gone(c->worker, c);
    vg_free(c);
}

static void start_closing(vg_conn_t *c)
{
    c->flags |= VG_CONN_F_CLOSING;
    uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
    uv_close((uv_handle_t *)&c->_timer, on_handle_closed);
}

void vg_conn_close(vg_conn_t *c)
{
    if (c->flags & VG_CONN_F_CLOSING)
        return;
    start_closing(c);
}
