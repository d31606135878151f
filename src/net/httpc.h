/*
 * A small blocking HTTP/1.1 client for the command-line tools (`vigil publish`, the publisher
 * of `vigil bench`): one connection at a time, kept alive between requests.
 *
 * It has three layers so the first two can be tested without sockets:
 *   - vg_url_parse splits "http://host:port/path?query" (also ws://, IPv6 as [::1]);
 *   - vg_httpc_format_request writes a request head, vg_httpc_response_* parses a response
 *     (llhttp: Content-Length, chunked, or delimited by the end of the connection; 101 with the
 *     bytes after the head left for the new protocol);
 *   - vg_httpc_t owns the socket: connect (every address the name resolves to, IPv4 or IPv6),
 *     send, read, reuse, with one timeout per request.
 * No TLS: https:// and wss:// are refused with a message saying so.
 */
#ifndef VG_NET_HTTPC_H
#define VG_NET_HTTPC_H

#include <stddef.h>

#include <llhttp.h>

#include "util/buf.h"

/* ---- URLs ------------------------------------------------------------------------------- */

typedef struct vg_url_s {
    char scheme[8];      /* "http" or "ws" (lower case) */
    char host[256];      /* name or address; an IPv6 address without its brackets */
    char port[6];        /* decimal, the scheme's default (80) when the URL has none */
    char authority[272]; /* the Host header: host[:port] as given, IPv6 in brackets */
    char *path;          /* path and query, starting with '/' ("/" when the URL has none); owned */
} vg_url_t;

/* Parses an absolute http:// or ws:// URL.  On failure writes a reason into err (NUL-terminated,
 * errlen > 0) and returns VG_EINVAL; u then owns nothing.  On success call vg_url_dispose.
 * Refused: other schemes (https/wss: no TLS), user info, an empty host, a port outside 1-65535,
 * a fragment, spaces or control characters. */
int vg_url_parse(vg_url_t *u, const char *url, char *err, size_t errlen);
void vg_url_dispose(vg_url_t *u);

/* ---- requests and responses (no I/O) --------------------------------------------------- */

/* Appends a request head: "<method> <path> HTTP/1.1", Host, Content-Length (when body_len > 0 or
 * the method is POST, PUT or PATCH), then `headers` as given (each "Name: value\r\n", may be
 * NULL), then the empty line.  The body is not appended. */
void vg_httpc_format_request(vg_buf_t *out, const char *method, const char *authority,
                             const char *path, const char *headers, size_t body_len);

enum vg_httpc_parse_result { VG_HTTPC_NEED_MORE = 0, VG_HTTPC_DONE = 1 };

typedef struct vg_httpc_response_s {
    /* read-only, valid once vg_httpc_response_feed returned VG_HTTPC_DONE */
    int status;     /* e.g. 200; 101 for a WebSocket upgrade */
    int keep_alive; /* the connection can carry another request */
    vg_buf_t body;  /* decoded (de-chunked) body; NUL-terminated for convenience */
    int err;        /* sticky error: VG_EINVAL (malformed), VG_ELIMIT (too big) */
    char errstr[128];
    /* private */
    llhttp_t _ll;
    vg_buf_t _head;    /* header names and values, each NUL-terminated, alternating */
    size_t _max_bytes; /* bound on head + body */
    size_t _in_value;  /* 0 before the first header byte, 1 in a name, 2 in a value */
    int _done;
} vg_httpc_response_t;

/* Prepares r for one response.  head_request: the request was HEAD, so no body follows.
 * max_bytes bounds the head plus the body (0: 64 MiB). */
void vg_httpc_response_init(vg_httpc_response_t *r, int head_request, size_t max_bytes);
void vg_httpc_response_dispose(vg_httpc_response_t *r);
/* Consumes bytes of the response; *consumed is how many were used.  Returns VG_HTTPC_DONE when
 * the response is complete (bytes after *consumed belong to the next response or, after a 101,
 * to the new protocol), VG_HTTPC_NEED_MORE when everything was consumed and more is needed, or
 * the sticky error (VG_EINVAL, VG_ELIMIT; r->errstr says why).  Informational responses other
 * than 101 (100 Continue) are skipped. */
int vg_httpc_response_feed(vg_httpc_response_t *r, const char *data, size_t len, size_t *consumed);
/* The peer closed the connection: completes a response whose body runs to the end of the
 * connection.  Returns VG_HTTPC_DONE, or VG_EINVAL when the response was cut short. */
int vg_httpc_response_eof(vg_httpc_response_t *r);
/* The value of the first header `name` (ASCII case-insensitive), or NULL.  Valid until the
 * response is disposed. */
const char *vg_httpc_response_header(const vg_httpc_response_t *r, const char *name);

/* ---- the client ------------------------------------------------------------------------ */

typedef struct vg_httpc_s {
    /* read-only */
    vg_url_t url;      /* the base URL given to vg_httpc_init (its path is not used) */
    char errstr[256];  /* why the last call failed */
    unsigned requests; /* requests answered */
    unsigned connects; /* connections opened (1 when every request reused the first) */
    /* private */
    int _fd;
    int _timeout_ms;
    vg_buf_t _in;  /* bytes read past the last response */
    vg_buf_t _out; /* request being sent */
} vg_httpc_t;

/* Parses the base URL (http:// only) and prepares the client; does not connect yet.  Returns 0
 * or VG_EINVAL with c->errstr set (then vg_httpc_dispose is still allowed). */
int vg_httpc_init(vg_httpc_t *c, const char *base_url, int timeout_ms);
/* Closes the connection and frees everything. */
void vg_httpc_dispose(vg_httpc_t *c);

/* Sends one request to `path` on the base URL's server and reads the answer into r (which this
 * call initializes; the caller disposes it, also after a failure).  Connects when there is no
 * open connection.  A reused connection that the server had already closed (no byte of the
 * answer arrived) is replaced once, and the request sent again.  The whole exchange, connect
 * included, must finish within the timeout.
 * Returns 0 (any HTTP status) or a negative code with c->errstr set: UV_ETIMEDOUT, another
 * UV_E* (connect/read/write), UV_EAI_* (name resolution), VG_EINVAL/VG_ELIMIT (bad response). */
int vg_httpc_request(vg_httpc_t *c, const char *method, const char *path, const char *headers,
                     const void *body, size_t body_len, vg_httpc_response_t *r);

#endif
