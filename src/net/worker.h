/*
 * vg_worker_t: one worker thread's loop and what its connections share (the read buffer, the
 * flush list, the write-request pool).  Declared apart from the server (net/server.c, which runs
 * workers and accepts) so that a connection (net/conn.c) can use its worker without knowing the
 * server: the one call a connection makes back up, when it is gone, goes through _on_conn_gone.
 */
#ifndef VG_NET_WORKER_H
#define VG_NET_WORKER_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

/* Size of each worker's shared read buffer. */
#define VG_READ_BUF_SIZE (64 * 1024)

typedef struct vg_server_s vg_server_t;
typedef struct vg_worker_s vg_worker_t;
typedef struct vg_conn_s vg_conn_t;

struct vg_worker_s {
    /* public */
    void *data; /* the app's per-worker state */
    /* read-only */
    vg_server_t *server;
    uv_loop_t loop;
    int id; /* 0 .. workers-1 */
    size_t num_conns;
    size_t max_outbound;
    vg_conn_t *conns; /* live connections (doubly linked) */
    int stopping;
    /* private */
    uv_thread_t _thread;
    uv_poll_t *_listeners; /* one per address, watching _listen_fds[i] */
    int *_listen_fds;
    size_t _num_listeners;
    /* Accepting paused for lack of descriptors (see the top of this file). */
    uv_timer_t _accept_timer;
    uint64_t _accept_delay_ms;     /* the next retry's delay */
    uint64_t _accept_trouble_at;   /* uv_now of the first failure of the current episode */
    uint64_t _accept_failed;       /* failures not yet reported in a log line */
    uint64_t _accept_logged_at;    /* uv_now of the last log line about it */
    unsigned _accept_watching : 1; /* the listeners are being polled */
    unsigned _accept_trouble : 1;  /* accepts failed and none succeeded since */
    unsigned _accept_reported : 1; /* this episode's start was logged: log its end too */
    unsigned _accept_ever_logged : 1;
    atomic_uint_fast64_t _accept_pauses; /* for vg_server_accept_pauses (read by other threads) */
    uv_async_t _stop_async;
    uv_prepare_t _flush_prepare;
    uv_timer_t _drain_timer;
    vg_conn_t *_flush_head;
    char *_read_buf; /* shared by every connection of this worker */
    /* Write requests are needed only while a write is in flight, so idle connections do not
     * carry one: they come from this free list (a request's data field links it; conn.c). */
    uv_write_t *_free_wreqs;
    /* Set by server.c: a connection left the list (conn.c calls it once per connection, as it
     * is freed), so the worker can stop when draining or resume accepting. */
    void (*_on_conn_gone)(vg_worker_t *w, vg_conn_t *c);
};

#endif
