/*
 * HTTP/1.1 request parsing (llhttp) and response writing.  Does no I/O: bytes in, requests out;
 * responses are appended to a vg_buf_t for the owner to send.
 *
 * One parser per connection.  vg_http_parse returns after each complete request so the owner
 * answers pipelined requests one at a time, in order.  The request's views point into memory the
 * parser owns (headers and body are copied there as they arrive, bounded by the limits), valid
 * until the next vg_http_parse or vg_http_parser_dispose call.
 */
#ifndef VG_PROTO_HTTP1_H
#define VG_PROTO_HTTP1_H

#include <stddef.h>

#include <llhttp.h>

#include "util/buf.h"

#define VG_HTTP_MAX_HEADERS 64

typedef struct vg_http_header_s {
    vg_iov_t name;
    vg_iov_t value;
} vg_http_header_t;

typedef struct vg_http_request_s {
    int method;           /* llhttp_method_t, e.g. HTTP_GET */
    vg_iov_t method_name; /* "GET" */
    vg_iov_t target;      /* raw request target as sent: "/a%20b?x=1" */
    vg_iov_t path;        /* target up to '?' or '#', still percent-encoded */
    vg_iov_t query;       /* after '?', without it (empty if none) */
    int version_major, version_minor;
    vg_http_header_t headers[VG_HTTP_MAX_HEADERS];
    size_t num_headers;
    vg_iov_t body;
    int keep_alive; /* the connection may stay open after the response */
    int upgrade;    /* Connection: upgrade with an Upgrade header (e.g. websocket), or CONNECT */
} vg_http_request_t;

/* A zero field means the default.  max_header_bytes counts every byte of the head as sent
 * (request line, headers, line ends); running out while the request target is still arriving
 * gives 414 instead of 431.  Chunk extensions and trailers (parsed, not kept) get a second budget
 * of the same size, checked as each of them completes.  max_body_bytes is checked against
 * Content-Length before the body is read, and against each chunk's size before the chunk is read.
 */
typedef struct vg_http_limits_s {
    size_t max_header_bytes; /* request line + headers; over it: 431 (default 16 KiB) */
    size_t max_body_bytes;   /* over it: 413 (default 1 MiB) */
} vg_http_limits_t;

enum vg_http_parse_result { VG_HTTP_NEED_MORE = 0, VG_HTTP_REQUEST = 1 };

typedef struct vg_http_parser_s {
    /* private */
    llhttp_t _llhttp;
    vg_http_limits_t _limits;
    vg_buf_t _buf;        /* method, target, header names and values, body of this request */
    size_t _header_bytes; /* head bytes fed so far; after the head: trailer/extension bytes */
    int _err;             /* sticky error (VG_EHTTP_*) */
    unsigned char _state; /* where the current request is (enum in http1.c) */
    unsigned char _piece; /* which request piece the last span callback appended to */
    unsigned char _version_len;
    unsigned char _expect_continue; /* the head asked for 100 Continue, not yet reported */
    unsigned char _close_after;     /* the framing is suspect: no keep-alive for this request */
    char _version[3];               /* version digits as sent ("1.1"): tells 505 from 400 */
    vg_http_request_t _req;         /* lengths while parsing, views once complete */
    size_t _off[2 * VG_HTTP_MAX_HEADERS + 3]; /* where each piece starts in _buf */
} vg_http_parser_t;

void vg_http_parser_init(vg_http_parser_t *p, const vg_http_limits_t *limits);
void vg_http_parser_dispose(vg_http_parser_t *p);

/* Parses bytes from the peer.  Sets *consumed to the number of bytes used.
 * Returns:
 *   VG_HTTP_REQUEST   one complete request is in *req; bytes after *consumed belong to the next
 *                     request (call again with them) or, if req->upgrade, to the new protocol.
 *                     An owner that declines the upgrade may call again: parsing goes on as
 *                     HTTP right after the request.  After a request with keep_alive == 0,
 *                     later input is consumed and ignored (NEED_MORE): close once answered.
 *   VG_HTTP_NEED_MORE everything was consumed; the request is not complete yet.
 *   VG_EHTTP_BAD_REQUEST, VG_EHTTP_HEADERS_TOO_BIG, VG_EHTTP_BODY_TOO_BIG,
 *   VG_EHTTP_URI_TOO_LONG, VG_EHTTP_UNSUPPORTED, VG_EHTTP_NOT_IMPLEMENTED (a transfer coding
 *                     other than chunked)
 *                     the connection is unusable: answer with vg_http_status_for_error and close.
 *                     Sticky: later calls return the same error. */
int vg_http_parse(vg_http_parser_t *p, const char *data, size_t len, size_t *consumed,
                  vg_http_request_t **req);

/* Nonzero once per request whose head said "Expect: 100-continue" (HTTP/1.1, with a body):
 * the owner answers "HTTP/1.1 100 Continue" so the client sends the body without waiting. */
int vg_http_parser_take_continue(vg_http_parser_t *p);

/* Nonzero when a request has begun but is not complete (for the read timeout's log line). */
int vg_http_parser_in_request(const vg_http_parser_t *p);

/* Returns the value of the first header named `name` (ASCII case-insensitive), or a NULL view. */
vg_iov_t vg_http_header_get(const vg_http_request_t *req, const char *name);
/* Nonzero when a comma-separated header (e.g. Connection) contains `token`, case-insensitively. */
int vg_http_header_has_token(const vg_http_request_t *req, const char *name, const char *token);
/* Finds the first query parameter `name` in req->query ('&'-separated, names and values
 * percent-decoded with '+' as space; an invalid escape stands for itself); writes its value to
 * out (NUL-terminated, truncated to outcap-1, outcap > 0).  Returns the length written to out,
 * or -1 if absent or if the value contains %00. */
int vg_http_query_get(const vg_http_request_t *req, const char *name, char *out, size_t outcap);
/* Nonzero when the query has a parameter `name` (decoded as above), whatever its value: tells
 * an absent parameter from one vg_http_query_get refuses. */
int vg_http_query_has(const vg_http_request_t *req, const char *name);

/* Percent-decodes a request path into out (NUL-terminated) and checks it is safe to map onto a
 * directory: it must start with '/', contain no NUL, no backslash, no control character, and no
 * "." or ".." segment once decoded ("%2f" counts as '/'), and no empty segment except a final
 * one ("/", "/dir/").  Invalid escapes and paths that do not fit in outcap (with the NUL) are
 * rejected too.  Nothing is normalized.  Returns the decoded length, or VG_EINVAL. */
int vg_http_path_decode(vg_iov_t raw, char *out, size_t outcap);

/* HTTP status code for a VG_EHTTP_* error (400, 431, 413, 414, 505, 501); 500 for anything
 * else. */
int vg_http_status_for_error(int err);
/* Reason phrase for a status code ("Not Found"); "Unknown" for codes it does not know. */
const char *vg_http_status_text(int status);

/* Appends a complete response: status line, Date-less minimal headers (Content-Type if given,
 * Content-Length, Connection: keep-alive|close), the extra headers (each "Name: value\r\n",
 * may be NULL), then the body.  1xx, 204 and 304 carry no Content-Length and no body
 * (body_len must be 0).  A 101 gets "Connection: Upgrade" whatever keep_alive says: pass only
 * Upgrade and Sec-WebSocket-* in extra_headers.  Other 1xx get no Connection header. */
void vg_http_write_response(vg_buf_t *out, int status, const char *content_type,
                            const char *extra_headers, const void *body, size_t body_len,
                            int keep_alive);
/* Appends a JSON error response: body {"error":{"code":"<code>","message":"<message>"}},
 * both strings JSON-escaped.  NULL code means "error", NULL message the reason phrase. */
void vg_http_write_error(vg_buf_t *out, int status, const char *code, const char *message,
                         const char *extra_headers, int keep_alive);

#endif
