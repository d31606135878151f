/*
 * What the files of `vigil bench fanout` share among themselves; nothing outside them includes
 * this header (the command's entry point, vg_cmd_bench, is declared in cli/commands.h).
 *
 * The benchmark is three jobs on three kinds of thread, one file each:
 *   bench.c            the main thread: options, preparing the requests, running the phases
 *                      (connect, publish, wait) and the report.  It owns vg_bench_t.
 *   bench_clients.c    the subscriber clients, on T worker threads with one libuv loop each:
 *                      connect window, handshake, frame parsing, latency recording.
 *   bench_publisher.c  the publisher thread: POST /api/publish at the requested rate.
 *
 * They meet only through the structs below.  Each field group says which thread writes it and
 * when the others may read it; the atomics are the only fields read while the threads run.
 */
#ifndef VG_CLI_BENCH_H
#define VG_CLI_BENCH_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <time.h>
#include <uv.h>

#include "cli/histogram.h"
#include "net/httpc.h"

typedef struct vg_bench_opts_s {
    const char *url, *publish_url, *api_key, *token, *channel;
    long connections, messages, size, threads;
    double rate, timeout;
} vg_bench_opts_t;

typedef struct vg_bench_s vg_bench_t;
typedef struct vg_bench_client_s vg_bench_client_t; /* defined in bench_clients.c */

/* One client thread: its own loop and its share of the connections. */
typedef struct vg_bench_worker_s {
    vg_bench_t *b;
    int index;
    uv_loop_t loop;
    uv_async_t wake; /* the main thread sends it once vg_bench_t.stopping is set */
    uv_timer_t close_timer;
    uv_thread_t thread;
    vg_bench_client_t *clients;
    size_t n, next, inflight, window, handles;
    int stopped;
    uint64_t rng;
    /* read by the main thread while running */
    _Atomic size_t ready, failed, dropped;
    _Atomic uint64_t deliveries, ready_ns, last_delivery_ns;
    /* read by the main thread after the join */
    uint64_t n_deliveries; /* the worker's own count; published to `deliveries` once per read */
    uint64_t payload_bytes, out_of_order, unexpected;
    vg_hist_t hist; /* publish-to-receive latency, ns */
    char *rbuf;
} vg_bench_worker_t;

/* The publisher thread's results.  `published` may be read at any time; the rest only once
 * `done` is set (it is stored after them). */
typedef struct vg_bench_publisher_s {
    _Atomic uint64_t published;
    _Atomic int done;
    int failed;
    uint64_t first_publish_ns, last_publish_ns, requests;
    char error[512];
} vg_bench_publisher_t;

struct vg_bench_s {
    vg_bench_opts_t o;
    /* set up by the main thread before any other thread starts, then read-only */
    vg_url_t ws;
    char *handshake; /* the upgrade request up to the key */
    size_t handshake_len;
    const char *handshake_end; /* what follows the key */
    char *subscribe;           /* the subscribe request */
    size_t subscribe_len;
    size_t pad; /* 'x' characters in each message's data.pad, so a delivery is about o.size */
    struct sockaddr_storage addr;
    vg_bench_worker_t *workers;
    int nworkers;
    /* set by the main thread when the workers must close their connections */
    _Atomic int stopping;
    /* errors from any thread */
    uv_mutex_t lock; /* guards first_error, errors */
    char first_error[256];
    uint64_t errors;
    vg_bench_publisher_t pub;
};

/* CLOCK_REALTIME in ns: the clock of the publish time each message carries in data.t.  The
 * publisher thread stamps it; the client threads subtract it from their receive time. */
static inline uint64_t vg__bench_real_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* bench.c: keeps the first error message of the run and counts them all.  Any thread. */
__attribute__((format(printf, 2, 3))) void vg__bench_record_error(vg_bench_t *b, const char *fmt,
                                                                  ...);

/* bench_clients.c: a worker of n clients (index: its place in b->workers; b->nworkers must be
 * set, it sizes the connect window).  Returns 0 or the error of uv_loop_init. */
int vg__bench_worker_init(vg_bench_worker_t *w, vg_bench_t *b, int index, size_t n);
/* The worker thread's body (arg: the worker): opens its connections through the connect window
 * and runs the loop until it has been woken with b->stopping set and every connection closed. */
void vg__bench_worker_main(void *arg);
/* After the loop has ended (the thread joined). */
void vg__bench_worker_dispose(vg_bench_worker_t *w);

/* bench_publisher.c: the publisher thread's body (arg: the vg_bench_t): publishes
 * b->o.messages messages at b->o.rate and fills b->pub. */
void vg__bench_publisher_main(void *arg);

#endif
