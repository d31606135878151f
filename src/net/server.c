#include "net/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "util/alloc.h"
#include "util/error.h"
#include "util/log.h"

#define LISTEN_BACKLOG 1024

struct vg_server_s {
    vg_server_options_t opts;
    vg_server_callbacks_t cb;
    vg_worker_t *workers;
    int num_workers;
    size_t num_addrs;
    int *fds;          /* [worker * num_addrs + addr], handed to the workers' loops */
    char (*names)[64]; /* bound address of each listen entry */
};

static int bind_reuseport(const struct sockaddr_storage *addr)
{
    int fd = socket(addr->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int on = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on)) != 0)
        goto fail;
    if (addr->ss_family == AF_INET6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof(on)))
        goto fail;
    socklen_t len =
        addr->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    if (bind(fd, (const struct sockaddr *)addr, len) != 0 || listen(fd, LISTEN_BACKLOG) != 0)
        goto fail;
    return fd;
fail:;
    int err = -errno;
    close(fd);
    return err;
}

static int bind_address(vg_server_t *s, size_t a, char *err, size_t errlen)
{
    const char *text = s->opts.listen[a];
    struct sockaddr_storage addr;
    if (vg_parse_listen_addr(text, &addr) != 0) {
        snprintf(err, errlen, "invalid listen address '%s' (expected HOST:PORT or [V6]:PORT)",
                 text);
        return VG_EINVAL;
    }
    for (int w = 0; w < s->num_workers; w++) {
        int fd = bind_reuseport(&addr);
        if (fd < 0) {
            snprintf(err, errlen, "cannot listen on %s: %s", text, strerror(-fd));
            return fd;
        }
        s->fds[w * s->num_addrs + a] = fd;
        if (w == 0) {
            /* With port 0 the kernel picks one; the other workers must share it. */
            socklen_t len = sizeof(addr);
            getsockname(fd, (struct sockaddr *)&addr, &len);
            vg_format_addr((struct sockaddr *)&addr, s->names[a], sizeof(s->names[a]));
        }
    }
    return 0;
}

int vg_server_new(vg_server_t **out, const vg_server_options_t *opts,
                  const vg_server_callbacks_t *cb, char *err, size_t errlen)
{
    vg_server_t *s = vg_calloc(1, sizeof(*s));
    s->opts = *opts;
    s->cb = *cb;
    s->num_workers = opts->workers > 0 ? opts->workers : 1;
    s->num_addrs = opts->num_listen;
    s->fds = vg_malloc(sizeof(int) * (size_t)s->num_workers * s->num_addrs);
    for (size_t i = 0; i < (size_t)s->num_workers * s->num_addrs; i++)
        s->fds[i] = -1;
    s->names = vg_calloc(s->num_addrs, sizeof(*s->names));
    s->workers = vg_calloc((size_t)s->num_workers, sizeof(vg_worker_t));
    for (size_t a = 0; a < s->num_addrs; a++) {
        int rc = bind_address(s, a, err, errlen);
        if (rc != 0) {
            vg_server_free(s);
            return rc;
        }
    }
    *out = s;
    return 0;
}

const char *vg_server_listen_name(const vg_server_t *s, size_t i)
{
    return s->names[i];
}

size_t vg_server_num_listen(const vg_server_t *s)
{
    return s->num_addrs;
}

uint64_t vg_server_accept_pauses(const vg_server_t *s)
{
    uint64_t n = 0;
    for (int i = 0; i < s->num_workers; i++)
        n += atomic_load_explicit(&s->workers[i]._accept_pauses, memory_order_relaxed);
    return n;
}

void *vg_worker_app(const vg_worker_t *w)
{
    return w->server->opts.app;
}

/* ---- worker ---- */

/* Accepting.  The listening sockets are polled and accepted here rather than with uv_listen,
 * because running out of file descriptors must stop the accepting.  On EMFILE libuv drops the
 * waiting connections with a reserve descriptor; once another worker thread has taken that
 * descriptor, libuv calls back with EMFILE again and again without returning to the loop (issue
 * 15: 1.7 million log lines, a core at 100%).  Like nginx, a worker that cannot accept stops
 * watching its listeners and lets clients wait in the kernel's listen queue; it retries after a
 * delay that doubles from 100 ms to 1 s while accepting keeps failing, or as soon as one of its
 * own connections closes and gives a descriptor back. */

#define ACCEPT_RETRY_MIN_MS    100
#define ACCEPT_RETRY_MAX_MS    1000
#define ACCEPT_LOG_INTERVAL_MS 10000
/* Accepts per wake-up and listener: the rest of the loop's work is not held up by a flood (the
 * poll is level-triggered, so what is left wakes the loop again). */
#define ACCEPT_BATCH 64

static void on_listener_readable(uv_poll_t *h, int status, int events);

static void watch_listeners(vg_worker_t *w, int on)
{
    if (w->_accept_watching == (unsigned)on)
        return;
    w->_accept_watching = on ? 1 : 0;
    for (size_t i = 0; i < w->_num_listeners; i++) {
        if (on)
            uv_poll_start(&w->_listeners[i], UV_READABLE, on_listener_readable);
        else
            uv_poll_stop(&w->_listeners[i]);
    }
}

static void on_accept_retry(uv_timer_t *t)
{
    vg_worker_t *w = t->data;
    if (!w->stopping)
        watch_listeners(w, 1);
}

/* Pauses accepting after a failed accept; logs at most once per ACCEPT_LOG_INTERVAL_MS, with the
 * number of failures since the last line. */
static void accept_failed(vg_worker_t *w, int err)
{
    uint64_t now = uv_now(&w->loop);
    atomic_fetch_add_explicit(&w->_accept_pauses, 1, memory_order_relaxed);
    w->_accept_failed++;
    if (!w->_accept_trouble) {
        w->_accept_trouble = 1;
        w->_accept_trouble_at = now;
        w->_accept_delay_ms = ACCEPT_RETRY_MIN_MS;
    } else if (w->_accept_delay_ms < ACCEPT_RETRY_MAX_MS) {
        w->_accept_delay_ms *= 2;
        if (w->_accept_delay_ms > ACCEPT_RETRY_MAX_MS)
            w->_accept_delay_ms = ACCEPT_RETRY_MAX_MS;
    }
    if (!w->_accept_ever_logged || now - w->_accept_logged_at >= ACCEPT_LOG_INTERVAL_MS) {
        vg_warning("accept failed: %s: not accepting for %" PRIu64
                   " ms or until a connection closes; clients wait in the listen queue (%" PRIu64
                   " failed accept(s) since the last report)",
                   uv_strerror(err), w->_accept_delay_ms, w->_accept_failed);
        w->_accept_failed = 0;
        w->_accept_logged_at = now;
        w->_accept_ever_logged = 1;
        w->_accept_reported = 1;
    }
    watch_listeners(w, 0);
    uv_timer_start(&w->_accept_timer, on_accept_retry, w->_accept_delay_ms, 0);
}

static void accept_succeeded(vg_worker_t *w)
{
    if (!w->_accept_trouble)
        return;
    w->_accept_trouble = 0;
    if (!w->_accept_reported)
        return;
    uint64_t now = uv_now(&w->loop);
    vg_notice("accepting connections again after %.1f s (%" PRIu64 " more failed accept(s))",
              (double)(now - w->_accept_trouble_at) / 1e3, w->_accept_failed);
    w->_accept_failed = 0;
    w->_accept_reported = 0;
}

/* Makes a connection of an accepted socket and hands it to the app. */
static void adopt(vg_worker_t *w, int fd)
{
    vg_conn_t *c = vg__conn_new(w);
    if (uv_tcp_open(&c->tcp, fd) != 0) {
        close(fd);
        c->handler = NULL;
        vg_conn_close(c);
        return;
    }
    c->_next = w->conns;
    if (w->conns != NULL)
        w->conns->_prev = c;
    w->conns = c;
    w->num_conns++;
    vg__conn_accepted(c);
    w->server->cb.on_accept(w, c);
    vg__conn_start(c);
}

/* Returns 0 when a connection was accepted (or the attempt may simply be repeated), 1 when none
 * is waiting, or a negative error: EMFILE, ENFILE, ENOBUFS, ENOMEM (short of a resource:
 * accepting again right away would fail the same way) or something unexpected, which pauses
 * accepting too rather than spin on it. */
static int accept_one(vg_worker_t *w, int lfd)
{
    int fd;
    do
        fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    while (fd < 0 && errno == EINTR);
    if (fd >= 0) {
        accept_succeeded(w);
        adopt(w, fd);
        return 0;
    }
    int err = -errno;
    if (err == UV_EAGAIN || err == -EWOULDBLOCK)
        return 1;
    /* accept(2): network errors already pending on the new socket are reported by accept and
     * mean "try the next one"; EPERM is a firewall rule refusing this one. */
    if (err == UV_ECONNABORTED || err == UV_EPROTO || err == UV_ENETDOWN || err == -ENOPROTOOPT ||
        err == UV_EHOSTDOWN || err == -ENONET || err == UV_EHOSTUNREACH || err == UV_ENOTSUP ||
        err == UV_ENETUNREACH || err == UV_ETIMEDOUT || err == UV_ECONNRESET || err == UV_EPERM)
        return 0;
    return err;
}

static void on_listener_readable(uv_poll_t *h, int status, int events)
{
    (void)events;
    vg_worker_t *w = h->data;
    if (w->stopping || !w->_accept_watching)
        return;
    if (status != 0) {
        accept_failed(w, status);
        return;
    }
    int lfd = w->_listen_fds[h - w->_listeners];
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        int rc = accept_one(w, lfd);
        if (rc == 1)
            return;
        if (rc < 0) {
            accept_failed(w, rc);
            return;
        }
    }
}

/* vg_worker_t._on_conn_gone. */
static void on_conn_gone(vg_worker_t *w, vg_conn_t *c)
{
    /* A conn that failed uv_accept was never linked. */
    if (c->_prev != NULL || c->_next != NULL || w->conns == c) {
        if (c->_prev != NULL)
            c->_prev->_next = c->_next;
        else
            w->conns = c->_next;
        if (c->_next != NULL)
            c->_next->_prev = c->_prev;
        w->num_conns--;
    }
    if (w->stopping && w->num_conns == 0)
        uv_stop(&w->loop);
    /* A descriptor came back: accepting may work again, no need to wait for the timer. */
    if (!w->stopping && w->_accept_trouble && !w->_accept_watching) {
        uv_timer_stop(&w->_accept_timer);
        watch_listeners(w, 1);
    }
}

/* Runs right before the loop blocks for I/O (redis beforeSleep): whatever the callbacks of this
 * turn queued (reads, wake-ups, timers, closes) goes out with one write per connection. */
static void on_before_poll(uv_prepare_t *h)
{
    vg__worker_flush(h->data);
}

/* Polling stops at uv_close; the socket is ours to close. */
static void close_listeners(vg_worker_t *w)
{
    uv_timer_stop(&w->_accept_timer);
    w->_accept_watching = 0;
    for (size_t i = 0; i < w->_num_listeners; i++) {
        if (!uv_is_closing((uv_handle_t *)&w->_listeners[i]))
            uv_close((uv_handle_t *)&w->_listeners[i], NULL);
        if (w->_listen_fds[i] >= 0)
            close(w->_listen_fds[i]);
        w->_listen_fds[i] = -1;
    }
}

static void on_drain_deadline(uv_timer_t *t)
{
    vg_worker_t *w = t->data;
    if (w->num_conns > 0)
        vg_notice("shutdown: closing %zu connection(s) that did not finish in time", w->num_conns);
    for (vg_conn_t *c = w->conns; c != NULL; c = c->_next)
        vg_conn_close(c);
}

static void on_stop_async(uv_async_t *h)
{
    vg_worker_t *w = h->data;
    if (w->stopping)
        return;
    w->stopping = 1;
    close_listeners(w);
    /* on_shutdown may close the conn, which unlinks it on a later loop phase; take next first. */
    for (vg_conn_t *c = w->conns, *next; c != NULL; c = next) {
        next = c->_next;
        if (c->handler != NULL && c->handler->on_shutdown != NULL)
            c->handler->on_shutdown(c);
        else
            vg_conn_close(c);
    }
    if (w->num_conns == 0)
        uv_stop(&w->loop);
    else
        uv_timer_start(&w->_drain_timer, on_drain_deadline, w->server->opts.drain_timeout_ms, 0);
}

static void close_all_handles(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

static void worker_main(void *arg)
{
    vg_worker_t *w = arg;
    char name[16];
    snprintf(name, sizeof(name), "w%d", w->id);
    vg_log_set_thread_name(name);
    if (w->server->cb.on_worker_start != NULL)
        w->server->cb.on_worker_start(w);
    uv_run(&w->loop, UV_RUN_DEFAULT);
    if (w->server->cb.on_worker_stop != NULL)
        w->server->cb.on_worker_stop(w);
    /* Close whatever is left (listeners, timers, app handles) and let the callbacks run. */
    uv_walk(&w->loop, close_all_handles, NULL);
    uv_run(&w->loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&w->loop) != 0)
        vg_warning("worker %d: loop still had handles at exit", w->id);
}

static int worker_init(vg_server_t *s, int id)
{
    vg_worker_t *w = &s->workers[id];
    w->server = s;
    w->id = id;
    w->max_outbound = s->opts.max_outbound;
    w->_on_conn_gone = on_conn_gone;
    w->_read_buf = vg_malloc(VG_READ_BUF_SIZE);
    uv_loop_init(&w->loop);
    uv_async_init(&w->loop, &w->_stop_async, on_stop_async);
    w->_stop_async.data = w;
    uv_prepare_init(&w->loop, &w->_flush_prepare);
    w->_flush_prepare.data = w;
    uv_prepare_start(&w->_flush_prepare, on_before_poll);
    uv_unref((uv_handle_t *)&w->_flush_prepare);
    uv_timer_init(&w->loop, &w->_drain_timer);
    w->_drain_timer.data = w;
    uv_unref((uv_handle_t *)&w->_drain_timer);
    uv_timer_init(&w->loop, &w->_accept_timer);
    w->_accept_timer.data = w;
    uv_unref((uv_handle_t *)&w->_accept_timer);
    w->_listeners = vg_calloc(s->num_addrs, sizeof(uv_poll_t));
    w->_listen_fds = vg_malloc(s->num_addrs * sizeof(int));
    w->_num_listeners = s->num_addrs;
    for (size_t a = 0; a < s->num_addrs; a++)
        w->_listen_fds[a] = -1;
    for (size_t a = 0; a < s->num_addrs; a++) {
        int fd = s->fds[id * s->num_addrs + a];
        int err = uv_poll_init_socket(&w->loop, &w->_listeners[a], fd);
        if (err != 0) {
            vg_warning("worker %d: cannot listen on %s: %s", id, s->names[a], uv_strerror(err));
            return err;
        }
        w->_listeners[a].data = w;
        w->_listen_fds[a] = fd;
        s->fds[id * s->num_addrs + a] = -1; /* the worker owns it now */
    }
    watch_listeners(w, 1);
    return 0;
}

int vg_server_start(vg_server_t *s)
{
    for (int i = 0; i < s->num_workers; i++) {
        int err = worker_init(s, i);
        if (err != 0)
            return err;
    }
    for (int i = 0; i < s->num_workers; i++) {
        int err = uv_thread_create(&s->workers[i]._thread, worker_main, &s->workers[i]);
        if (err != 0)
            return err;
    }
    return 0;
}

void vg_server_stop(vg_server_t *s)
{
    for (int i = 0; i < s->num_workers; i++)
        uv_async_send(&s->workers[i]._stop_async);
}

void vg_server_join(vg_server_t *s)
{
    for (int i = 0; i < s->num_workers; i++)
        uv_thread_join(&s->workers[i]._thread);
}

void vg_server_free(vg_server_t *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < (size_t)s->num_workers * s->num_addrs; i++)
        if (s->fds[i] >= 0)
            close(s->fds[i]);
    for (int i = 0; i < s->num_workers; i++) {
        for (uv_write_t *req = s->workers[i]._free_wreqs, *next; req != NULL; req = next) {
            next = req->data;
            vg_free(req);
        }
        vg_free(s->workers[i]._read_buf);
        for (size_t a = 0; s->workers[i]._listen_fds != NULL && a < s->num_addrs; a++)
            if (s->workers[i]._listen_fds[a] >= 0)
                close(s->workers[i]._listen_fds[a]);
        vg_free(s->workers[i]._listen_fds);
        vg_free(s->workers[i]._listeners);
    }
    vg_free(s->workers);
    vg_free(s->fds);
    vg_free(s->names);
    vg_free(s);
}
