/*
 * vg_conn_t: one accepted TCP connection, owned by the worker thread whose loop accepted it.
 *
 * The net layer knows nothing of HTTP or WebSocket: it reads into the worker's shared read
 * buffer and hands the bytes to the connection's handler, and it writes queued chunks.
 *
 * Outbound path (built for fan-out): vg_conn_send takes a reference on a shared vg_chunk_t and
 * appends it to the connection's queue; the connection joins its worker's flush list, and once
 * per loop turn (uv_prepare, just before the loop blocks, after every callback of that turn)
 * every connection on the list writes everything queued with ONE uv_write of several buffers
 * (redis beforeSleep and _writevToClient).  The
 * reference is dropped in the write callback.  The queue is bounded in bytes (max_outbound):
 * vg_conn_send refuses a chunk that would exceed it, and the caller decides (close the slow
 * consumer).
 *
 * Closing: vg_conn_close_after_flush sends what is queued, then half-closes (FIN) and lingers,
 * discarding input, until the peer closes or a short timer fires, so the peer reads our last
 * bytes instead of a reset.  vg_conn_close closes at once.  Either way handler->on_close is
 * called exactly once, from the libuv close callback; the conn is freed after it returns.
 */
#ifndef VG_NET_CONN_H
#define VG_NET_CONN_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "util/chunk.h"

typedef struct vg_conn_s vg_conn_t;
typedef struct vg_worker_s vg_worker_t;

typedef struct vg_conn_handler_s {
    /* Bytes read from the peer.  `data` points into the worker's shared read buffer: it is
     * valid (and writable) only during the call; keep a copy of anything still needed. */
    void (*on_read)(vg_conn_t *c, char *data, size_t len);
    /* The peer closed its side (EOF) or a read error happened; the conn is being closed. */
    void (*on_eof)(vg_conn_t *c, int status);
    /* The timer armed with vg_conn_timer_start fired. */
    void (*on_timeout)(vg_conn_t *c);
    /* The worker is shutting down: finish up (e.g. send a close frame) and close. */
    void (*on_shutdown)(vg_conn_t *c);
    /* Last call: release the handler's state.  The conn is freed right after. */
    void (*on_close)(vg_conn_t *c);
} vg_conn_handler_t;

enum {
    VG_CONN_F_CLOSING = 1 << 0,     /* uv_close called or about to be */
    VG_CONN_F_FLUSH_CLOSE = 1 << 1, /* close once the queue is written */
    VG_CONN_F_LINGER = 1 << 2,      /* FIN sent; discarding input until EOF or timer */
    VG_CONN_F_IN_FLUSH = 1 << 3,    /* on the worker's flush list */
    VG_CONN_F_WRITING = 1 << 4,     /* a uv_write is in flight */
};

struct vg_conn_s {
    uv_tcp_t tcp; /* first: the handle's address is the conn's */
    /* public */
    void *data; /* the handler's state */
    const vg_conn_handler_t *handler;
    /* read-only */
    vg_worker_t *worker;
    uint64_t id;      /* unique within the process */
    uint64_t created; /* uv_now at accept, ms */
    int flags;
    char peer[48]; /* "1.2.3.4:5678" or "[::1]:5678" */
    /* private */
    vg_chunk_t **_q; /* ring of queued chunks; [_q_head, _q_head+_inflight) are being written */
    uint32_t _q_head, _q_len, _q_cap, _inflight;
    uint64_t _q_seq;      /* how many chunks were ever popped: the sequence number of _q[_q_head] */
    uint64_t _latest_seq; /* sequence number of the vg_conn_send_latest chunk, or UINT64_MAX */
    uint64_t _whole_seq;  /* sequence number of the vg_conn_send_whole chunk, or UINT64_MAX */
    size_t _whole_len;    /* its length: not counted against max_outbound */
    size_t _q_bytes;      /* bytes queued, in flight included */
    uv_write_t *_wreq;    /* from the worker's pool while a write is in flight, else NULL */
    uv_timer_t _timer;
    int _pending_handles; /* handles still to be closed before the conn can be freed */
    vg_conn_t *_flush_next;
    vg_conn_t *_prev, *_next; /* the worker's list of live conns */
};

/* Queues one reference to `chunk` (the caller keeps its own).  Returns 0, VG_ECLOSED when the
 * conn is closing, or VG_ELIMIT when the queue is not empty and would exceed the worker's
 * max_outbound (nothing queued).  So a connection holds at most max_outbound bytes plus one
 * chunk. */
int vg_conn_send(vg_conn_t *c, vg_chunk_t *chunk);
/* Like vg_conn_send but ignores max_outbound: for the few small frames that must go out on the
 * way to closing (close frames, error responses). */
int vg_conn_send_force(vg_conn_t *c, vg_chunk_t *chunk);
/* Queues a copy of bytes of which only the newest matter once the peer stops reading (a
 * WebSocket pong: RFC 6455 section 5.5.3 lets an endpoint answer only the most recent of several
 * pings).  While the peer drains its socket every call queues its own copy, so each ping gets its
 * pong (what conformance suites expect).  Once it does not (the kernel takes no more of a write,
 * or the queue is at max_outbound), the copy of the previous call that is still waiting is replaced
 * in place: a peer that sends such requests and never reads makes the conn hold one write's worth
 * and one waiting copy, never a growing backlog, and costs no allocation per request.  `room`:
 * the size to allocate when a new chunk is needed (the largest such message), so later ones fit
 * in it.  Returns 0 or VG_ECLOSED. */
int vg_conn_send_latest(vg_conn_t *c, const void *data, size_t len, size_t room);
/* Queues a chunk that may be larger than max_outbound (a large answer the peer asked for): it is
 * accepted when the queue holds no more than max_outbound, and then not counted against the
 * limit while it waits, so the small chunks that follow it are not refused while it drains.
 * One at a time: while one waits, this behaves like vg_conn_send.  So a connection holds at most
 * max_outbound bytes plus one such chunk plus one more.  Returns 0, VG_ECLOSED or VG_ELIMIT. */
int vg_conn_send_whole(vg_conn_t *c, vg_chunk_t *chunk);
/* Copies bytes into a new chunk and queues it, ignoring max_outbound like vg_conn_send_force. */
int vg_conn_send_copy(vg_conn_t *c, const void *data, size_t len);
/* Drops queued chunks that are not being written yet (before closing a slow consumer). */
void vg_conn_discard_queued(vg_conn_t *c);
/* Bytes queued and not yet written (in flight included). */
size_t vg_conn_queued_bytes(const vg_conn_t *c);

/* Stops reading from the peer (until vg_conn_read_resume). */
void vg_conn_read_pause(vg_conn_t *c);
void vg_conn_read_resume(vg_conn_t *c);

/* Arms the conn's timer; handler->on_timeout fires after `ms`.  Replaces any pending one. */
void vg_conn_timer_start(vg_conn_t *c, uint64_t ms);
void vg_conn_timer_stop(vg_conn_t *c);

/* Writes what is queued, then closes gracefully (FIN, then linger). */
void vg_conn_close_after_flush(vg_conn_t *c);
/* Closes now; queued bytes are dropped. */
void vg_conn_close(vg_conn_t *c);

/* Internal to the net layer: the server creates, links and starts a conn for each accepted
 * socket, and flushes its worker's connections once per loop turn. */
vg_conn_t *vg__conn_new(vg_worker_t *w);
void vg__conn_accepted(vg_conn_t *c);
void vg__conn_start(vg_conn_t *c);
void vg__worker_flush(vg_worker_t *w);

#endif
