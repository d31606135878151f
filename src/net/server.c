#include "net/server.h"

#include <arpa/inet.h>
#include <errno.h>
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

/* ---- addresses ---- */

int vg_parse_listen_addr(const char *text, struct sockaddr_storage *out)
{
    char host[128];
    const char *port_str;
    memset(out, 0, sizeof(*out));
    if (text[0] == '[') {
        const char *end = strchr(text, ']');
        if (end == NULL || end[1] != ':' || (size_t)(end - text - 1) >= sizeof(host))
            return VG_EINVAL;
        memcpy(host, text + 1, (size_t)(end - text - 1));
        host[end - text - 1] = '\0';
        port_str = end + 2;
    } else {
        const char *colon = strrchr(text, ':');
        if (colon == NULL || (size_t)(colon - text) >= sizeof(host) || strchr(text, ':') != colon)
            return VG_EINVAL;
        memcpy(host, text, (size_t)(colon - text));
        host[colon - text] = '\0';
        port_str = colon + 1;
    }
    char *endp;
    errno = 0;
    long port = strtol(port_str, &endp, 10);
    if (*port_str == '\0' || *endp != '\0' || errno != 0 || port < 0 || port > 65535)
        return VG_EINVAL;
    if (host[0] == '\0' || strcmp(host, "*") == 0)
        strcpy(host, "0.0.0.0");
    if (strcmp(host, "localhost") == 0)
        strcpy(host, "127.0.0.1");
    struct sockaddr_in *in4 = (struct sockaddr_in *)out;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)out;
    if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons((uint16_t)port);
        return 0;
    }
    if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
        return 0;
    }
    return VG_EINVAL;
}

void vg_format_addr(const struct sockaddr *sa, char *out, size_t outlen)
{
    char host[INET6_ADDRSTRLEN] = "?";
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
        snprintf(out, outlen, "[%s]:%u", host, ntohs(in6->sin6_port));
    } else {
        const struct sockaddr_in *in4 = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in4->sin_addr, host, sizeof(host));
        snprintf(out, outlen, "%s:%u", host, ntohs(in4->sin_port));
    }
}

/* libuv 1.44 has no flag for SO_REUSEPORT, so the socket is made here and handed to
 * uv_tcp_open.  Every worker binds its own socket to the same address; the kernel then
 * balances incoming connections across them. */
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

void *vg_worker_app(const vg_worker_t *w)
{
    return w->server->opts.app;
}

/* ---- worker ---- */

static void on_connection(uv_stream_t *listener, int status)
{
    vg_worker_t *w = listener->data;
    if (status != 0) {
        vg_warning("accept failed: %s", uv_strerror(status));
        return;
    }
    if (w->stopping)
        return;
    vg_conn_t *c = vg__conn_new(w);
    if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0) {
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

void vg__worker_conn_gone(vg_worker_t *w, vg_conn_t *c)
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
}

uv_write_t *vg__worker_wreq_get(vg_worker_t *w)
{
    uv_write_t *req = w->_free_wreqs;
    if (req == NULL)
        return vg_malloc(sizeof(*req));
    w->_free_wreqs = req->data;
    return req;
}

void vg__worker_wreq_put(vg_worker_t *w, uv_write_t *req)
{
    req->data = w->_free_wreqs;
    w->_free_wreqs = req;
}

/* Runs right before the loop blocks for I/O (redis beforeSleep): whatever the callbacks of this
 * turn queued (reads, wake-ups, timers, closes) goes out with one write per connection. */
static void on_before_poll(uv_prepare_t *h)
{
    vg__worker_flush(h->data);
}

static void close_listeners(vg_worker_t *w)
{
    for (size_t i = 0; i < w->_num_listeners; i++)
        if (!uv_is_closing((uv_handle_t *)&w->_listeners[i]))
            uv_close((uv_handle_t *)&w->_listeners[i], NULL);
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
    w->_listeners = vg_calloc(s->num_addrs, sizeof(uv_tcp_t));
    w->_num_listeners = s->num_addrs;
    for (size_t a = 0; a < s->num_addrs; a++) {
        uv_tcp_t *l = &w->_listeners[a];
        uv_tcp_init(&w->loop, l);
        l->data = w;
        int fd = s->fds[id * s->num_addrs + a];
        int err = uv_tcp_open(l, fd);
        if (err == 0) {
            s->fds[id * s->num_addrs + a] = -1; /* the handle owns it now */
            err = uv_listen((uv_stream_t *)l, LISTEN_BACKLOG, on_connection);
        }
        if (err != 0) {
            vg_warning("worker %d: cannot listen on %s: %s", id, s->names[a], uv_strerror(err));
            return err;
        }
    }
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
        vg_free(s->workers[i]._listeners);
    }
    vg_free(s->workers);
    vg_free(s->fds);
    vg_free(s->names);
    vg_free(s);
}
