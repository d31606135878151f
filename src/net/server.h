/*
 * vg_server_t: the listening sockets and the worker threads.
 *
 * One libuv loop per worker thread.  Each worker has its own listening socket per address,
 * bound with SO_REUSEPORT, so the kernel spreads accepts across workers and no lock is taken on
 * accept.  The sockets are bound on the main thread (so a busy port fails the start with a clear
 * message) and opened on each worker's loop.
 *
 * Accepting: each worker watches its listening sockets with a uv_poll_t and accepts itself, so
 * that running out of file descriptors (EMFILE, ENFILE) or memory pauses accepting instead of
 * spinning: the listeners are unwatched, clients wait in the kernel's listen queue, and accepting
 * resumes after a delay (100 ms, doubling up to 1 s while it keeps failing) or as soon as one of
 * the worker's connections closes.  One log line per 10 s at most says how many accepts failed.
 *
 * Shutdown: vg_server_stop (from the main thread's signal handler) wakes every worker; each
 * stops accepting, calls handler->on_shutdown on every connection, and exits its loop when the
 * last connection is gone or the drain deadline passes (then the rest are closed at once).
 */
#ifndef VG_NET_SERVER_H
#define VG_NET_SERVER_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "net/addr.h"
#include "net/conn.h"
#include "net/worker.h"

typedef struct vg_server_s vg_server_t;

typedef struct vg_server_callbacks_s {
    /* A connection was accepted on worker w: set c->handler (and c->data).  Runs on the
     * worker's thread. */
    void (*on_accept)(vg_worker_t *w, vg_conn_t *c);
    /* The worker's loop is about to run / has finished (per-worker state).  May be NULL. */
    void (*on_worker_start)(vg_worker_t *w);
    void (*on_worker_stop)(vg_worker_t *w);
} vg_server_callbacks_t;

typedef struct vg_server_options_s {
    const char *const *listen; /* "HOST:PORT" or "[V6]:PORT" */
    size_t num_listen;
    int workers;
    size_t max_outbound;       /* bytes a connection may have queued */
    uint64_t drain_timeout_ms; /* on stop, how long connections get to finish */
    void *app;                 /* handed to callbacks through vg_worker_app() */
} vg_server_options_t;

/* Parses addresses and binds every listening socket (workers x addresses).  On failure returns
 * a negative code and writes a message naming the address into err. */
int vg_server_new(vg_server_t **out, const vg_server_options_t *opts,
                  const vg_server_callbacks_t *cb, char *err, size_t errlen);
/* Starts the worker threads. */
int vg_server_start(vg_server_t *s);
/* Asks every worker to drain and stop.  Thread-safe and idempotent; call from any thread. */
void vg_server_stop(vg_server_t *s);
/* Waits for every worker thread to finish. */
void vg_server_join(vg_server_t *s);
void vg_server_free(vg_server_t *s);

void *vg_worker_app(const vg_worker_t *w);
/* Bound address of listener i (after vg_server_new), for logs: "127.0.0.1:8000". */
const char *vg_server_listen_name(const vg_server_t *s, size_t i);
size_t vg_server_num_listen(const vg_server_t *s);
/* Accepts that failed for lack of descriptors or memory (each paused accepting), summed over the
 * workers.  Thread-safe. */
uint64_t vg_server_accept_pauses(const vg_server_t *s);

#endif
