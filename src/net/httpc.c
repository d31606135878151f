/*
 * Blocking HTTP/1.1 client for the command-line tools (see httpc.h).
 *
 * The socket is non-blocking and every wait goes through poll() against one deadline per
 * request, so a server that accepts and then says nothing cannot hang `vigil publish`.
 */
#include "net/httpc.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "util/alloc.h"
#include "util/error.h"

#define DEFAULT_MAX_BYTES (64u << 20)

/* ---- URLs ------------------------------------------------------------------------------- */

static int fail_url(char *err, size_t errlen, const char *url, const char *why)
{
    snprintf(err, errlen, "invalid URL '%.200s': %s", url, why);
    return VG_EINVAL;
}

int vg_url_parse(vg_url_t *u, const char *url, char *err, size_t errlen)
{
    memset(u, 0, sizeof(*u));
    for (const unsigned char *p = (const unsigned char *)url; *p != '\0'; p++) {
        if (*p <= 0x20 || *p == 0x7f)
            return fail_url(err, errlen, url, "contains a space or a control character");
    }
    const char *sep = strstr(url, "://");
    if (sep == NULL)
        return fail_url(err, errlen, url, "expected http://HOST[:PORT][/PATH]");
    size_t slen = (size_t)(sep - url);
    if (slen == 4 && strncasecmp(url, "http", 4) == 0) {
        strcpy(u->scheme, "http");
    } else if (slen == 2 && strncasecmp(url, "ws", 2) == 0) {
        strcpy(u->scheme, "ws");
    } else if ((slen == 5 && strncasecmp(url, "https", 5) == 0) ||
               (slen == 3 && strncasecmp(url, "wss", 3) == 0)) {
        return fail_url(err, errlen, url, "TLS is not supported; use http:// or ws://");
    } else {
        return fail_url(err, errlen, url, "the scheme must be http:// or ws://");
    }

    const char *auth = sep + 3;
    size_t alen = strcspn(auth, "/?#");
    const char *rest = auth + alen;
    if (memchr(auth, '@', alen) != NULL)
        return fail_url(err, errlen, url, "user info (user@host) is not supported");
    if (alen >= sizeof(u->authority))
        return fail_url(err, errlen, url, "host name too long");

    const char *host = auth, *port = NULL;
    size_t hlen;
    if (alen > 0 && auth[0] == '[') {
        const char *close = memchr(auth, ']', alen);
        if (close == NULL)
            return fail_url(err, errlen, url, "unterminated '[' in the host");
        host = auth + 1;
        hlen = (size_t)(close - host);
        if (hlen == 0 || strspn(host, "0123456789abcdefABCDEF:.") < hlen ||
            memchr(host, ':', hlen) == NULL)
            return fail_url(err, errlen, url, "invalid IPv6 address in brackets");
        const char *after = close + 1;
        if (after < auth + alen) {
            if (*after != ':')
                return fail_url(err, errlen, url, "unexpected characters after ']'");
            port = after + 1;
        }
    } else {
        const char *colon = memchr(auth, ':', alen);
        hlen = colon != NULL ? (size_t)(colon - auth) : alen;
        if (colon != NULL) {
            if (memchr(colon + 1, ':', (size_t)(auth + alen - colon - 1)) != NULL)
                return fail_url(err, errlen, url, "an IPv6 address must be in brackets");
            port = colon + 1;
        }
    }
    if (hlen == 0)
        return fail_url(err, errlen, url, "empty host");
    memcpy(u->host, host, hlen);
    u->host[hlen] = '\0';
    if (port != NULL) {
        size_t plen = (size_t)(auth + alen - port);
        unsigned long v = 0;
        if (plen == 0 || plen > 5 || strspn(port, "0123456789") < plen)
            return fail_url(err, errlen, url, "the port must be a number from 1 to 65535");
        for (size_t i = 0; i < plen; i++)
            v = v * 10 + (unsigned long)(port[i] - '0');
        if (v < 1 || v > 65535)
            return fail_url(err, errlen, url, "the port must be a number from 1 to 65535");
        snprintf(u->port, sizeof(u->port), "%lu", v);
    } else {
        strcpy(u->port, "80");
    }
    memcpy(u->authority, auth, alen);
    u->authority[alen] = '\0';

    if (strchr(rest, '#') != NULL)
        return fail_url(err, errlen, url, "a fragment (#...) has no meaning here");
    if (*rest == '/') {
        u->path = vg_strdup(rest);
    } else {
        /* "http://h" or "http://h?x=1": the path is "/". */
        size_t rlen = strlen(rest);
        u->path = vg_malloc(rlen + 2);
        u->path[0] = '/';
        memcpy(u->path + 1, rest, rlen + 1);
    }
    return 0;
}

void vg_url_dispose(vg_url_t *u)
{
    vg_free(u->path);
    u->path = NULL;
}

/* ---- requests ---------------------------------------------------------------------------- */

void vg_httpc_format_request(vg_buf_t *out, const char *method, const char *authority,
                             const char *path, const char *headers, size_t body_len)
{
    vg_buf_printf(out, "%s %s HTTP/1.1\r\nHost: %s\r\n", method, path, authority);
    if (body_len > 0 || strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0 ||
        strcmp(method, "PATCH") == 0)
        vg_buf_printf(out, "Content-Length: %zu\r\n", body_len);
    if (headers != NULL)
        vg_buf_append_str(out, headers);
    vg_buf_append(out, "\r\n", 2);
}

/* ---- responses --------------------------------------------------------------------------- */

static vg_httpc_response_t *response_of(llhttp_t *ll)
{
    return vg_container_of(ll, vg_httpc_response_t, _ll);
}

/* Head and body share one budget so a hostile or broken server cannot make us buffer forever. */
static int append_bounded(vg_httpc_response_t *r, vg_buf_t *b, const char *at, size_t n)
{
    if (r->_head.len + r->body.len + n > r->_max_bytes) {
        r->err = VG_ELIMIT;
        snprintf(r->errstr, sizeof(r->errstr), "response larger than %zu bytes", r->_max_bytes);
        return HPE_USER;
    }
    vg_buf_append(b, at, n);
    return HPE_OK;
}

static int on_header_field(llhttp_t *ll, const char *at, size_t n)
{
    vg_httpc_response_t *r = response_of(ll);
    return append_bounded(r, &r->_head, at, n);
}

/* Names and values are stored NUL-terminated, alternating; _in_value counts the strings ended so
 * far so a name whose value never produced a byte still gets its (empty) value. */
static int on_header_field_complete(llhttp_t *ll)
{
    vg_httpc_response_t *r = response_of(ll);
    r->_in_value++;
    return append_bounded(r, &r->_head, "", 1);
}

static int on_header_value(llhttp_t *ll, const char *at, size_t n)
{
    vg_httpc_response_t *r = response_of(ll);
    return append_bounded(r, &r->_head, at, n);
}

static int on_header_value_complete(llhttp_t *ll)
{
    vg_httpc_response_t *r = response_of(ll);
    if (r->_in_value % 2 == 0) /* a value without a name cannot happen; keep the pairs */
        return HPE_OK;
    r->_in_value++;
    return append_bounded(r, &r->_head, "", 1);
}

static int on_headers_complete(llhttp_t *ll)
{
    vg_httpc_response_t *r = response_of(ll);
    if (r->_in_value % 2 == 1) {
        r->_in_value++;
        vg_buf_append(&r->_head, "", 1);
    }
    /* 1: no body follows (the request was HEAD). */
    return ll->data != NULL ? 1 : 0;
}

static int on_body(llhttp_t *ll, const char *at, size_t n)
{
    vg_httpc_response_t *r = response_of(ll);
    return append_bounded(r, &r->body, at, n);
}

/* Pausing makes llhttp_execute return right after the response, with error_pos at the first byte
 * that is not part of it. */
static int on_message_complete(llhttp_t *ll)
{
    vg_httpc_response_t *r = response_of(ll);
    int status = ll->status_code;
    if (status >= 100 && status < 200 && status != 101) {
        /* 100 Continue and friends: the real answer follows. */
        vg_buf_reset(&r->_head);
        vg_buf_reset(&r->body);
        r->_in_value = 0;
        return HPE_OK;
    }
    r->status = status;
    r->keep_alive = status != 101 && llhttp_should_keep_alive(ll);
    r->_done = 1;
    vg_buf_reserve(&r->body, 1)[0] = '\0';
    return HPE_PAUSED;
}

static const llhttp_settings_t response_settings = {
    .on_header_field = on_header_field,
    .on_header_field_complete = on_header_field_complete,
    .on_header_value = on_header_value,
    .on_header_value_complete = on_header_value_complete,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

void vg_httpc_response_init(vg_httpc_response_t *r, int head_request, size_t max_bytes)
{
    memset(r, 0, sizeof(*r));
    r->_max_bytes = max_bytes != 0 ? max_bytes : DEFAULT_MAX_BYTES;
    llhttp_init(&r->_ll, HTTP_RESPONSE, &response_settings);
    /* The only per-parser flag the callbacks need; any non-NULL pointer means HEAD. */
    r->_ll.data = head_request ? (void *)r : NULL;
}

void vg_httpc_response_dispose(vg_httpc_response_t *r)
{
    vg_buf_dispose(&r->_head);
    vg_buf_dispose(&r->body);
}

int vg_httpc_response_feed(vg_httpc_response_t *r, const char *data, size_t len, size_t *consumed)
{
    *consumed = 0;
    if (r->err != 0)
        return r->err;
    if (r->_done)
        return VG_HTTPC_DONE;
    if (len == 0)
        return VG_HTTPC_NEED_MORE;
    llhttp_errno_t e = llhttp_execute(&r->_ll, data, len);
    if (e == HPE_OK) {
        *consumed = len;
        return VG_HTTPC_NEED_MORE;
    }
    if ((e == HPE_PAUSED || e == HPE_PAUSED_UPGRADE) && r->_done) {
        const char *pos = llhttp_get_error_pos(&r->_ll);
        *consumed = pos != NULL ? (size_t)(pos - data) : len;
        return VG_HTTPC_DONE;
    }
    if (r->err == 0) {
        r->err = VG_EINVAL;
        snprintf(r->errstr, sizeof(r->errstr), "malformed HTTP response: %s (%s)",
                 llhttp_get_error_reason(&r->_ll), llhttp_errno_name(e));
    }
    return r->err;
}

int vg_httpc_response_eof(vg_httpc_response_t *r)
{
    if (r->err != 0)
        return r->err;
    if (r->_done)
        return VG_HTTPC_DONE;
    llhttp_errno_t e = llhttp_finish(&r->_ll);
    if (r->_done)
        return VG_HTTPC_DONE;
    r->err = VG_EINVAL;
    snprintf(r->errstr, sizeof(r->errstr), "the server closed the connection %s",
             e == HPE_OK ? "without answering" : "in the middle of its answer");
    return r->err;
}

const char *vg_httpc_response_header(const vg_httpc_response_t *r, const char *name)
{
    const char *p = r->_head.base, *end = r->_head.base + r->_head.len;
    while (p != NULL && p < end) {
        const char *value = p + strlen(p) + 1;
        if (value >= end)
            break;
        if (strcasecmp(p, name) == 0)
            return value;
        p = value + strlen(value) + 1;
    }
    return NULL;
}

/* ---- the client -------------------------------------------------------------------------- */

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Waits for `events` on fd until the deadline.  Returns 0, UV_ETIMEDOUT or a UV_E* code. */
static int wait_fd(int fd, short events, uint64_t deadline)
{
    for (;;) {
        uint64_t now = now_ms();
        if (now >= deadline)
            return UV_ETIMEDOUT;
        struct pollfd pfd = {.fd = fd, .events = events};
        int n = poll(&pfd, 1, (int)(deadline - now));
        if (n > 0)
            return 0;
        if (n == 0)
            return UV_ETIMEDOUT;
        if (errno != EINTR)
            return -errno;
    }
}

static void close_fd(vg_httpc_t *c)
{
    if (c->_fd >= 0)
        close(c->_fd);
    c->_fd = -1;
    vg_buf_reset(&c->_in);
}

static int fail(vg_httpc_t *c, int err, const char *what)
{
    if (err == UV_ETIMEDOUT)
        snprintf(c->errstr, sizeof(c->errstr), "%s %.200s:%s: timed out after %.3g s", what,
                 c->url.host, c->url.port, c->_timeout_ms / 1000.0);
    else
        snprintf(c->errstr, sizeof(c->errstr), "%s %.200s:%s: %s", what, c->url.host, c->url.port,
                 vg_strerror(err));
    close_fd(c);
    return err;
}

static int connect_one(const struct addrinfo *ai, uint64_t deadline, int *fd_out)
{
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0)
        return -errno;
    int rc;
    do
        rc = connect(fd, ai->ai_addr, ai->ai_addrlen);
    while (rc != 0 && errno == EINTR);
    if (rc != 0 && errno != EINPROGRESS) {
        rc = -errno;
        goto fail;
    }
    if (rc != 0) {
        if ((rc = wait_fd(fd, POLLOUT, deadline)) != 0)
            goto fail;
        int soerr = 0;
        socklen_t slen = sizeof(soerr);
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &slen) != 0)
            soerr = errno;
        if (soerr != 0) {
            rc = -soerr;
            goto fail;
        }
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    *fd_out = fd;
    return 0;
fail:
    close(fd);
    return rc;
}

static int do_connect(vg_httpc_t *c, uint64_t deadline)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
    int gai = getaddrinfo(c->url.host, c->url.port, &hints, &res);
    if (gai != 0) {
        snprintf(c->errstr, sizeof(c->errstr), "cannot resolve %.200s: %s", c->url.host,
                 gai_strerror(gai));
        return gai == EAI_NONAME ? UV_EAI_NONAME : UV_EAI_FAIL;
    }
    int rc = UV_EAI_NONAME;
    for (const struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
        if ((rc = connect_one(ai, deadline, &c->_fd)) == 0 || rc == UV_ETIMEDOUT)
            break;
    }
    freeaddrinfo(res);
    if (rc != 0)
        return fail(c, rc, "connect to");
    c->connects++;
    return 0;
}

static int send_all(vg_httpc_t *c, uint64_t deadline)
{
    size_t off = 0;
    while (off < c->_out.len) {
        ssize_t n = send(c->_fd, c->_out.base + off, c->_out.len - off, MSG_NOSIGNAL);
        if (n >= 0) {
            off += (size_t)n;
            continue;
        }
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return -errno;
        int rc = wait_fd(c->_fd, POLLOUT, deadline);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* Reads until the response is complete.  *got_bytes tells the caller whether any byte of the
 * answer arrived (if none did on a reused connection, the request can be sent again). */
static int read_response(vg_httpc_t *c, vg_httpc_response_t *r, uint64_t deadline, int *got_bytes)
{
    size_t used;
    *got_bytes = c->_in.len > 0;
    int rc = vg_httpc_response_feed(r, c->_in.base, c->_in.len, &used);
    for (;;) {
        if (rc < 0)
            return rc;
        vg_buf_consume(&c->_in, used);
        if (rc == VG_HTTPC_DONE)
            return 0;
        char *p = vg_buf_reserve(&c->_in, 16384);
        ssize_t n = recv(c->_fd, p, 16384, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                return -errno;
            if ((rc = wait_fd(c->_fd, POLLIN, deadline)) != 0)
                return rc;
            rc = VG_HTTPC_NEED_MORE;
            used = 0;
            continue;
        }
        if (n == 0) {
            if (!*got_bytes)
                return UV_EOF;
            rc = vg_httpc_response_eof(r);
            return rc < 0 ? rc : 0;
        }
        *got_bytes = 1;
        c->_in.len += (size_t)n;
        rc = vg_httpc_response_feed(r, c->_in.base, c->_in.len, &used);
    }
}

int vg_httpc_init(vg_httpc_t *c, const char *base_url, int timeout_ms)
{
    memset(c, 0, sizeof(*c));
    c->_fd = -1;
    c->_timeout_ms = timeout_ms > 0 ? timeout_ms : 10000;
    if (vg_url_parse(&c->url, base_url, c->errstr, sizeof(c->errstr)) != 0)
        return VG_EINVAL;
    if (strcmp(c->url.scheme, "http") != 0) {
        snprintf(c->errstr, sizeof(c->errstr), "invalid URL '%.200s': expected http://", base_url);
        vg_url_dispose(&c->url);
        return VG_EINVAL;
    }
    return 0;
}

void vg_httpc_dispose(vg_httpc_t *c)
{
    close_fd(c);
    vg_url_dispose(&c->url);
    vg_buf_dispose(&c->_in);
    vg_buf_dispose(&c->_out);
}

int vg_httpc_request(vg_httpc_t *c, const char *method, const char *path, const char *headers,
                     const void *body, size_t body_len, vg_httpc_response_t *r)
{
    uint64_t deadline = now_ms() + (uint64_t)c->_timeout_ms;
    int head = strcmp(method, "HEAD") == 0;
    vg_httpc_response_init(r, head, 0);
    vg_buf_reset(&c->_out);
    vg_httpc_format_request(&c->_out, method, c->url.authority, path, headers, body_len);
    if (body_len > 0)
        vg_buf_append(&c->_out, body, body_len);

    for (int attempt = 0;; attempt++) {
        int reused = c->_fd >= 0;
        int rc;
        if (!reused && (rc = do_connect(c, deadline)) != 0)
            return rc;
        rc = send_all(c, deadline);
        int got_bytes = 0;
        if (rc == 0)
            rc = read_response(c, r, deadline, &got_bytes);
        if (rc == 0)
            break;
        /* The server may close an idle keep-alive connection just as we reuse it: then nothing
         * of the answer arrives (EOF, EPIPE or ECONNRESET) and the request was not processed. */
        if (reused && attempt == 0 && !got_bytes &&
            (rc == UV_EOF || rc == UV_EPIPE || rc == UV_ECONNRESET)) {
            close_fd(c);
            vg_httpc_response_dispose(r);
            vg_httpc_response_init(r, head, 0);
            continue;
        }
        if (rc == VG_EINVAL || rc == VG_ELIMIT) {
            snprintf(c->errstr, sizeof(c->errstr), "%s", r->errstr);
            close_fd(c);
            return rc;
        }
        if (rc == UV_EOF) {
            snprintf(c->errstr, sizeof(c->errstr),
                     "%.200s:%s closed the connection without answering", c->url.host, c->url.port);
            close_fd(c);
            return rc;
        }
        return fail(c, rc, "request to");
    }
    c->requests++;
    if (!r->keep_alive)
        close_fd(c);
    return 0;
}
