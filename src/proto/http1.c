/*
 * HTTP/1.1 request layer on top of llhttp.  See http1.h for the contract.
 *
 * llhttp hands us each piece of the request (method, target, header names and values, body) as
 * spans pointing into the caller's input, possibly split across calls.  We copy them into _buf
 * and remember where each piece starts; the views are only made once the request is complete,
 * because _buf may move while it grows.
 */
#include "proto/http1.h"

#include <assert.h>
#include <limits.h>
#include <string.h>
#include <strings.h>

#include "util/alloc.h"
#include "util/error.h"

#define DEFAULT_MAX_HEADER_BYTES (16 * 1024)
#define DEFAULT_MAX_BODY_BYTES   (1024 * 1024)
/* A request that needed more than this keeps no memory once it is answered. */
#define KEEP_BUF_CAP (64 * 1024)

enum state {
    ST_IDLE,   /* between requests: nothing of the next one seen yet */
    ST_HEAD,   /* request line and headers */
    ST_BODY,   /* headers complete, body (and chunked trailers) arriving */
    ST_DONE,   /* complete and handed to the owner; reset on the next call */
    ST_CLOSED, /* the last request ended the connection: input is ignored */
};

/* What the last span callback was about.  The UNKEPT pieces are names and values that are
 * parsed but not stored: trailers, and a header past VG_HTTP_MAX_HEADERS. */
enum piece {
    PIECE_NONE,
    PIECE_METHOD,
    PIECE_URL,
    PIECE_FIELD,
    PIECE_VALUE,
    PIECE_UNKEPT_FIELD,
    PIECE_UNKEPT_VALUE,
    PIECE_BODY,
};

/* Slots in _off.  Header i uses OFF_HEADERS + 2i (name) and OFF_HEADERS + 2i + 1 (value). */
enum { OFF_METHOD, OFF_TARGET, OFF_BODY, OFF_HEADERS };

static vg_http_parser_t *parser_of(llhttp_t *ll)
{
    return vg_container_of(ll, vg_http_parser_t, _llhttp);
}

/* Records err and makes llhttp stop: -1 is an error for every callback kind.
 *
 * Span callbacks see a piece in as many parts as the input arrived in, so an error decided there
 * would depend on how the peer's bytes were split: a limit is only checked once a piece is
 * complete (or, for the head, at a fixed byte count), and span callbacks only report malformed
 * input, which llhttp would answer with the same 400 anyway. */
static int fail(vg_http_parser_t *p, int err)
{
    if (p->_err == 0)
        p->_err = err;
    return -1;
}

/* Appends a span to the piece `piece`, whose length lives in *len; a piece starts where the
 * previous one ended, so only its first span records the offset. */
static void append_piece(vg_http_parser_t *p, int piece, int slot, size_t *len, const char *at,
                         size_t n)
{
    if (p->_piece != piece) {
        p->_piece = (unsigned char)piece;
        p->_off[slot] = p->_buf.len;
        *len = 0;
    }
    vg_buf_append(&p->_buf, at, n);
    *len += n;
}

/* Chunk extensions and trailers are parsed by llhttp but not kept; their bytes share one
 * header-sized budget so a peer cannot send them forever.  Counted per span, checked when a
 * piece completes (see fail()). */
static void count_unkept(vg_http_parser_t *p, size_t n)
{
    p->_header_bytes += n;
}

static int check_unkept(vg_http_parser_t *p)
{
    if (p->_header_bytes > p->_limits.max_header_bytes)
        return fail(p, VG_EHTTP_HEADERS_TOO_BIG);
    return 0;
}

static int on_message_begin(llhttp_t *ll)
{
    parser_of(ll)->_state = ST_HEAD;
    return 0;
}

static int on_method(llhttp_t *ll, const char *at, size_t n)
{
    vg_http_parser_t *p = parser_of(ll);
    append_piece(p, PIECE_METHOD, OFF_METHOD, &p->_req.method_name.len, at, n);
    return 0;
}

static int on_url(llhttp_t *ll, const char *at, size_t n)
{
    vg_http_parser_t *p = parser_of(ll);
    append_piece(p, PIECE_URL, OFF_TARGET, &p->_req.target.len, at, n);
    return 0;
}

static int on_url_complete(llhttp_t *ll)
{
    parser_of(ll)->_piece = PIECE_NONE;
    return 0;
}

/* Keeps the version digits: llhttp rejects 1.2 or 3.0 with the same error as garbage, but a
 * well-formed version we do not speak deserves 505, not 400. */
static int on_version(llhttp_t *ll, const char *at, size_t n)
{
    vg_http_parser_t *p = parser_of(ll);
    for (size_t i = 0; i < n; i++) {
        if (p->_version_len < sizeof(p->_version))
            p->_version[p->_version_len] = at[i];
        if (p->_version_len < UCHAR_MAX)
            p->_version_len++;
    }
    return 0;
}

static int is_http11_or_10(const llhttp_t *ll)
{
    return ll->http_major == 1 && (ll->http_minor == 0 || ll->http_minor == 1);
}

/* Catches HTTP/2.0 (the "PRI * HTTP/2.0" preface) before llhttp starts looking for the rest of
 * the preface, and HTTP/0.9, which llhttp accepts. */
static int on_version_complete(llhttp_t *ll)
{
    if (!is_http11_or_10(ll))
        return fail(parser_of(ll), VG_EHTTP_UNSUPPORTED);
    return 0;
}

/* RFC 9110 5.6.2 tchar. */
static int is_token_char(unsigned char c)
{
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
        return 1;
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* llhttp built without LLHTTP_STRICT_MODE lets whitespace into header names ("Host : x",
 * "Transfer-Encoding : chunked").  A proxy in front may read such a name differently from us,
 * which is how requests get smuggled, so RFC 9112 5.1 says to reject it with 400. */
static int is_token(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!is_token_char((unsigned char)s[i]))
            return 0;
    }
    return 1;
}

/* Trailers, and a header past VG_HTTP_MAX_HEADERS (refused once its name is complete). */
static int is_unkept_field(const vg_http_parser_t *p)
{
    return p->_state == ST_BODY || p->_req.num_headers == VG_HTTP_MAX_HEADERS;
}

static int on_header_field(llhttp_t *ll, const char *at, size_t n)
{
    vg_http_parser_t *p = parser_of(ll);
    if (n == 0)
        return 0; /* an empty name (": x") is refused in on_header_field_complete */
    if (!is_token(at, n))
        return fail(p, VG_EHTTP_BAD_REQUEST);
    if (p->_piece != PIECE_FIELD && p->_piece != PIECE_UNKEPT_FIELD)
        p->_piece = is_unkept_field(p) ? PIECE_UNKEPT_FIELD : PIECE_NONE;
    if (p->_piece == PIECE_UNKEPT_FIELD) {
        count_unkept(p, n);
        return 0;
    }
    vg_http_request_t *req = &p->_req;
    if (p->_piece != PIECE_FIELD)
        req->num_headers++;
    size_t i = req->num_headers - 1;
    append_piece(p, PIECE_FIELD, OFF_HEADERS + 2 * (int)i, &req->headers[i].name.len, at, n);
    return 0;
}

/* llhttp lets a line starting with ':' through as a header with an empty name.  Otherwise the
 * value starts right after the name, even when llhttp reports no value span ("X:"). */
static int on_header_field_complete(llhttp_t *ll)
{
    vg_http_parser_t *p = parser_of(ll);
    if (p->_piece == PIECE_UNKEPT_FIELD) {
        if (p->_state != ST_BODY)
            return fail(p, VG_EHTTP_HEADERS_TOO_BIG);
        p->_piece = PIECE_UNKEPT_VALUE;
        return check_unkept(p);
    }
    if (p->_piece != PIECE_FIELD)
        return fail(p, VG_EHTTP_BAD_REQUEST);
    size_t i = p->_req.num_headers - 1;
    p->_off[OFF_HEADERS + 2 * i + 1] = p->_buf.len;
    p->_req.headers[i].value.len = 0;
    p->_piece = PIECE_VALUE;
    return 0;
}

static int on_header_value(llhttp_t *ll, const char *at, size_t n)
{
    vg_http_parser_t *p = parser_of(ll);
    if (p->_piece == PIECE_UNKEPT_VALUE) {
        count_unkept(p, n);
        return 0;
    }
    assert(p->_piece == PIECE_VALUE && p->_req.num_headers > 0);
    vg_buf_append(&p->_buf, at, n);
    p->_req.headers[p->_req.num_headers - 1].value.len += n;
    return 0;
}

static int on_header_value_complete(llhttp_t *ll)
{
    vg_http_parser_t *p = parser_of(ll);
    int unkept = p->_piece == PIECE_UNKEPT_VALUE;
    p->_piece = PIECE_NONE;
    return unkept ? check_unkept(p) : 0;
}

/* "Expect: 100-continue" among the headers read so far (views are not built yet: offsets). */
static int expects_continue(const vg_http_parser_t *p)
{
    static const char name[] = "expect", value[] = "100-continue";
    for (size_t i = 0; i < p->_req.num_headers; i++) {
        const vg_http_header_t *h = &p->_req.headers[i];
        const char *n = p->_buf.base + p->_off[OFF_HEADERS + 2 * i];
        const char *v = p->_buf.base + p->_off[OFF_HEADERS + 2 * i + 1];
        if (h->name.len == sizeof(name) - 1 && strncasecmp(n, name, h->name.len) == 0 &&
            h->value.len == sizeof(value) - 1 && strncasecmp(v, value, h->value.len) == 0)
            return 1;
    }
    return 0;
}

static int is_ows(char c)
{
    return c == ' ' || c == '\t';
}

/* Checks the codings of every Transfer-Encoding header (RFC 9112 6.1; views are not built yet:
 * offsets).  llhttp takes any list that ends in "chunked" ("junk, chunked", "gzip, chunked")
 * and reads the body as plain chunked, where a proxy in front may frame it otherwise: that is
 * how requests are smuggled.  We implement chunked only, so such a list gets 501, and chunked
 * twice 400 (it must not be applied more than once).  A list that does not end in chunked is
 * left to llhttp, which answers 400 as RFC 9112 6.3 asks.  Empty list elements are allowed
 * (RFC 9110 5.6.1).  Sets *present when the request has the header at all. */
static int check_transfer_codings(const vg_http_parser_t *p, int *present)
{
    static const char name[] = "transfer-encoding", chunked[] = "chunked";
    int chunked_count = 0, other = 0, last_is_chunked = 0;
    *present = 0;
    for (size_t i = 0; i < p->_req.num_headers; i++) {
        const vg_http_header_t *h = &p->_req.headers[i];
        const char *n = p->_buf.base + p->_off[OFF_HEADERS + 2 * i];
        if (h->name.len != sizeof(name) - 1 || strncasecmp(n, name, h->name.len) != 0)
            continue;
        *present = 1;
        const char *v = p->_buf.base + p->_off[OFF_HEADERS + 2 * i + 1];
        for (size_t k = 0; k <= h->value.len;) {
            size_t start = k;
            while (k < h->value.len && v[k] != ',')
                k++;
            size_t end = k++;
            while (start < end && is_ows(v[start]))
                start++;
            while (end > start && is_ows(v[end - 1]))
                end--;
            if (end == start)
                continue;
            last_is_chunked = end - start == sizeof(chunked) - 1 &&
                              strncasecmp(v + start, chunked, end - start) == 0;
            chunked_count += last_is_chunked;
            other += !last_is_chunked;
        }
    }
    if (!last_is_chunked)
        return 0;
    return chunked_count > 1 ? VG_EHTTP_BAD_REQUEST : other > 0 ? VG_EHTTP_NOT_IMPLEMENTED : 0;
}

/* Runs once the whole head is in: the version is final (HTTP/0.9 has no version span) and a
 * Content-Length over the limit is refused before any of the body is read. */
static int on_headers_complete(llhttp_t *ll)
{
    vg_http_parser_t *p = parser_of(ll);
    if (!is_http11_or_10(ll))
        return fail(p, VG_EHTTP_UNSUPPORTED);
    int has_te, err = check_transfer_codings(p, &has_te);
    if (err != 0)
        return fail(p, err);
    /* RFC 9112 6.1: Transfer-Encoding in HTTP/1.0 means the framing is faulty: answer, then
     * close, whatever Connection says, so nothing after this body is read as a request. */
    p->_close_after = has_te && ll->http_minor == 0;
    if ((ll->flags & F_CONTENT_LENGTH) && ll->content_length > p->_limits.max_body_bytes)
        return fail(p, VG_EHTTP_BODY_TOO_BIG);
    p->_expect_continue =
        ll->http_minor == 1 && expects_continue(p) &&
        ((ll->flags & F_CHUNKED) || ((ll->flags & F_CONTENT_LENGTH) && ll->content_length > 0));
    p->_state = ST_BODY;
    p->_piece = PIECE_BODY;
    p->_off[OFF_BODY] = p->_buf.len;
    p->_req.body.len = 0;
    p->_header_bytes = 0;
    return 0;
}

static int body_fits(const vg_http_parser_t *p, uint64_t more)
{
    return more <= p->_limits.max_body_bytes - p->_req.body.len;
}

/* llhttp stores the size of the chunk about to arrive in content_length. */
static int on_chunk_header(llhttp_t *ll)
{
    vg_http_parser_t *p = parser_of(ll);
    if (!body_fits(p, ll->content_length))
        return fail(p, VG_EHTTP_BODY_TOO_BIG);
    return 0;
}

static int on_chunk_extension(llhttp_t *ll, const char *at, size_t n)
{
    (void)at;
    count_unkept(parser_of(ll), n);
    return 0;
}

static int on_chunk_extension_complete(llhttp_t *ll)
{
    return check_unkept(parser_of(ll));
}

static int on_body(llhttp_t *ll, const char *at, size_t n)
{
    vg_http_parser_t *p = parser_of(ll);
    if (!body_fits(p, n))
        return fail(p, VG_EHTTP_BODY_TOO_BIG);
    vg_buf_append(&p->_buf, at, n);
    p->_req.body.len += n;
    return 0;
}

/* Pausing here makes llhttp_execute return after exactly one request, with error_pos at its
 * end.  An upgrade must not pause: llhttp then stops by itself with HPE_PAUSED_UPGRADE at the
 * same place, and pausing first would only delay that by one call. */
static int on_message_complete(llhttp_t *ll)
{
    vg_http_parser_t *p = parser_of(ll);
    p->_state = ST_DONE;
    p->_expect_continue = 0; /* the body came: no 100 needed */
    p->_req.keep_alive = llhttp_should_keep_alive(ll) && !p->_close_after;
    p->_req.upgrade = ll->upgrade != 0;
    return p->_req.upgrade ? 0 : HPE_PAUSED;
}

static const llhttp_settings_t settings = {
    .on_message_begin = on_message_begin,
    .on_method = on_method,
    .on_url = on_url,
    .on_url_complete = on_url_complete,
    .on_version = on_version,
    .on_version_complete = on_version_complete,
    .on_header_field = on_header_field,
    .on_header_field_complete = on_header_field_complete,
    .on_header_value = on_header_value,
    .on_header_value_complete = on_header_value_complete,
    .on_headers_complete = on_headers_complete,
    .on_chunk_header = on_chunk_header,
    .on_chunk_extension_name = on_chunk_extension,
    .on_chunk_extension_value = on_chunk_extension,
    .on_chunk_extension_name_complete = on_chunk_extension_complete,
    .on_chunk_extension_value_complete = on_chunk_extension_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

void vg_http_parser_init(vg_http_parser_t *p, const vg_http_limits_t *limits)
{
    memset(p, 0, sizeof(*p));
    llhttp_init(&p->_llhttp, HTTP_REQUEST, &settings);
    p->_limits.max_header_bytes = DEFAULT_MAX_HEADER_BYTES;
    p->_limits.max_body_bytes = DEFAULT_MAX_BODY_BYTES;
    if (limits != NULL && limits->max_header_bytes != 0)
        p->_limits.max_header_bytes = limits->max_header_bytes;
    if (limits != NULL && limits->max_body_bytes != 0)
        p->_limits.max_body_bytes = limits->max_body_bytes;
}

void vg_http_parser_dispose(vg_http_parser_t *p)
{
    vg_buf_dispose(&p->_buf);
}

int vg_http_parser_take_continue(vg_http_parser_t *p)
{
    int want = p->_expect_continue && p->_err == 0;
    p->_expect_continue = 0;
    return want;
}

int vg_http_parser_in_request(const vg_http_parser_t *p)
{
    return p->_state == ST_HEAD || p->_state == ST_BODY;
}

/* Forgets the request handed out by the previous call and lets llhttp go on past it. */
static void next_request(vg_http_parser_t *p)
{
    if (p->_buf.cap > KEEP_BUF_CAP)
        vg_buf_dispose(&p->_buf);
    vg_buf_reset(&p->_buf);
    memset(&p->_req, 0, sizeof(p->_req));
    p->_header_bytes = 0;
    p->_piece = PIECE_NONE;
    p->_version_len = 0;
    p->_close_after = 0;
    llhttp_resume(&p->_llhttp);
    llhttp_resume_after_upgrade(&p->_llhttp);
}

static vg_iov_t view(const vg_http_parser_t *p, size_t off, size_t len)
{
    if (p->_buf.base == NULL)
        return (vg_iov_t){"", 0};
    return (vg_iov_t){p->_buf.base + off, len};
}

/* The target is split on the first '?' (query) and the first '#' (a fragment, which clients
 * should not send; it belongs to neither path nor query). */
static void split_target(vg_http_request_t *req)
{
    const char *t = req->target.base;
    size_t n = req->target.len, path_end = n, query_start = n, query_end = n;
    const char *hash = memchr(t, '#', n);
    if (hash != NULL)
        path_end = query_start = query_end = (size_t)(hash - t);
    const char *q = memchr(t, '?', path_end);
    if (q != NULL) {
        path_end = (size_t)(q - t);
        query_start = path_end + 1;
    }
    req->path = (vg_iov_t){t, path_end};
    req->query = (vg_iov_t){t + query_start, query_end - query_start};
}

/* Turns the offsets recorded while parsing into views; _buf no longer moves until the next
 * call. */
static vg_http_request_t *finish_request(vg_http_parser_t *p)
{
    vg_http_request_t *req = &p->_req;
    req->method = p->_llhttp.method;
    req->version_major = p->_llhttp.http_major;
    req->version_minor = p->_llhttp.http_minor;
    req->method_name = view(p, p->_off[OFF_METHOD], req->method_name.len);
    req->target = view(p, p->_off[OFF_TARGET], req->target.len);
    split_target(req);
    for (size_t i = 0; i < req->num_headers; i++) {
        vg_http_header_t *h = &req->headers[i];
        h->name = view(p, p->_off[OFF_HEADERS + 2 * i], h->name.len);
        h->value = view(p, p->_off[OFF_HEADERS + 2 * i + 1], h->value.len);
        /* llhttp skips leading whitespace but keeps trailing whitespace in the value. */
        while (h->value.len > 0 && is_ows(h->value.base[h->value.len - 1]))
            h->value.len--;
    }
    req->body = view(p, p->_off[OFF_BODY], req->body.len);
    return req;
}

/* While the head is incomplete llhttp gets at most what is left of the header budget, so a
 * head that never ends is cut off exactly at the limit instead of being buffered. */
static size_t feed_size(const vg_http_parser_t *p, size_t avail)
{
    if (p->_state != ST_IDLE && p->_state != ST_HEAD)
        return avail;
    size_t budget = p->_limits.max_header_bytes - p->_header_bytes;
    return avail < budget ? avail : budget;
}

/* Called after llhttp ate n bytes without finishing the head. */
static int check_head_budget(vg_http_parser_t *p, size_t n)
{
    if (p->_state != ST_IDLE && p->_state != ST_HEAD)
        return 0;
    p->_header_bytes += n;
    if (p->_header_bytes < p->_limits.max_header_bytes)
        return 0;
    /* Out of budget while still inside the target: the URI is what is too long. */
    return p->_piece == PIECE_URL ? VG_EHTTP_URI_TOO_LONG : VG_EHTTP_HEADERS_TOO_BIG;
}

/* A version llhttp refused that still looks like one ("1.2", "3.0") is well-formed but one we
 * do not speak. */
static int version_unsupported(const vg_http_parser_t *p)
{
    const char *v = p->_version;
    if (p->_version_len != 3 || v[0] < '0' || v[0] > '9' || v[1] != '.' || v[2] < '0' || v[2] > '9')
        return 0;
    return !(v[0] == '1' && (v[2] == '0' || v[2] == '1'));
}

static int error_from_llhttp(const vg_http_parser_t *p, llhttp_errno_t e)
{
    if (p->_err != 0)
        return p->_err;
    if (e == HPE_PAUSED_H2_UPGRADE || (e == HPE_INVALID_VERSION && version_unsupported(p)))
        return VG_EHTTP_UNSUPPORTED;
    return VG_EHTTP_BAD_REQUEST;
}

static int set_error(vg_http_parser_t *p, int err)
{
    p->_err = err;
    return err;
}

int vg_http_parse(vg_http_parser_t *p, const char *data, size_t len, size_t *consumed,
                  vg_http_request_t **req)
{
    *consumed = 0;
    *req = NULL;
    if (p->_err != 0)
        return p->_err;
    if (p->_state == ST_DONE) {
        int keep_alive = p->_req.keep_alive;
        next_request(p);
        p->_state = keep_alive ? ST_IDLE : ST_CLOSED;
    }
    if (p->_state == ST_CLOSED) {
        *consumed = len;
        return VG_HTTP_NEED_MORE;
    }
    size_t off = 0;
    while (off < len) {
        size_t n = feed_size(p, len - off);
        assert(n > 0);
        llhttp_errno_t e = llhttp_execute(&p->_llhttp, data + off, n);
        if (e == HPE_OK) {
            off += n;
            int err = check_head_budget(p, n);
            if (err != 0) {
                *consumed = off;
                return set_error(p, err);
            }
            continue;
        }
        const char *pos = llhttp_get_error_pos(&p->_llhttp);
        if (pos >= data + off && pos <= data + off + n)
            off = (size_t)(pos - data);
        *consumed = off;
        if ((e == HPE_PAUSED || e == HPE_PAUSED_UPGRADE) && p->_state == ST_DONE) {
            *req = finish_request(p);
            return VG_HTTP_REQUEST;
        }
        return set_error(p, error_from_llhttp(p, e));
    }
    *consumed = len;
    return VG_HTTP_NEED_MORE;
}

vg_iov_t vg_http_header_get(const vg_http_request_t *req, const char *name)
{
    for (size_t i = 0; i < req->num_headers; i++) {
        if (vg_iov_ieq(req->headers[i].name, name))
            return req->headers[i].value;
    }
    return VG_IOV_NULL;
}

static int list_has_token(vg_iov_t list, const char *token)
{
    size_t i = 0;
    while (i < list.len) {
        size_t start = i;
        while (i < list.len && list.base[i] != ',')
            i++;
        vg_iov_t item = {list.base + start, i - start};
        while (item.len > 0 && is_ows(item.base[0])) {
            item.base++;
            item.len--;
        }
        while (item.len > 0 && is_ows(item.base[item.len - 1]))
            item.len--;
        if (vg_iov_ieq(item, token))
            return 1;
        i++; /* skip the comma */
    }
    return 0;
}

/* A header may be repeated ("Connection: keep-alive" then "Connection: Upgrade"): the list is
 * the union of all of them (RFC 9110 5.3). */
int vg_http_header_has_token(const vg_http_request_t *req, const char *name, const char *token)
{
    for (size_t i = 0; i < req->num_headers; i++) {
        if (vg_iov_ieq(req->headers[i].name, name) && list_has_token(req->headers[i].value, token))
            return 1;
    }
    return 0;
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decodes "%XX" at s[i] (s[i] == '%'); returns the byte, or -1 when the escape is invalid. */
static int decode_escape(const char *s, size_t len, size_t i)
{
    if (len - i < 3)
        return -1;
    int hi = hex_value(s[i + 1]), lo = hex_value(s[i + 2]);
    if (hi < 0 || lo < 0)
        return -1;
    return hi << 4 | lo;
}

/* Decodes one character of a form-encoded query component at s[*i] and advances *i.  Invalid
 * escapes stand for themselves, as in browsers' URLSearchParams. */
static int query_char(const char *s, size_t len, size_t *i)
{
    char c = s[*i];
    if (c == '+') {
        (*i)++;
        return ' ';
    }
    if (c == '%') {
        int b = decode_escape(s, len, *i);
        if (b >= 0) {
            *i += 3;
            return b;
        }
    }
    (*i)++;
    return (unsigned char)c;
}

static int query_name_is(vg_iov_t raw, const char *name)
{
    size_t i = 0, j = 0;
    while (i < raw.len) {
        int c = query_char(raw.base, raw.len, &i);
        if (name[j] == '\0' || (unsigned char)name[j] != c)
            return 0;
        j++;
    }
    return name[j] == '\0';
}

/* Returns the decoded length, or -1 for a value containing %00, which would silently cut every
 * C string made from it short. */
static int query_value(vg_iov_t raw, char *out, size_t outcap)
{
    size_t i = 0, n = 0;
    while (i < raw.len) {
        int c = query_char(raw.base, raw.len, &i);
        if (c == 0)
            return -1;
        if (n < outcap - 1)
            out[n++] = (char)c;
    }
    out[n] = '\0';
    return n > INT_MAX ? INT_MAX : (int)n;
}

/* Finds the first parameter `name`: returns 1 and its raw value (a NULL view for "name" without
 * '='), or 0. */
static int query_find(const vg_http_request_t *req, const char *name, vg_iov_t *value)
{
    vg_iov_t q = req->query;
    size_t i = 0;
    while (i < q.len) {
        size_t start = i;
        while (i < q.len && q.base[i] != '&')
            i++;
        vg_iov_t param = {q.base + start, i - start};
        i++; /* skip the '&' */
        const char *eq = memchr(param.base, '=', param.len);
        size_t name_len = eq != NULL ? (size_t)(eq - param.base) : param.len;
        if (!query_name_is((vg_iov_t){param.base, name_len}, name))
            continue;
        *value = VG_IOV_NULL;
        if (eq != NULL)
            *value = (vg_iov_t){eq + 1, param.len - name_len - 1};
        return 1;
    }
    return 0;
}

int vg_http_query_get(const vg_http_request_t *req, const char *name, char *out, size_t outcap)
{
    assert(out != NULL && outcap > 0);
    vg_iov_t value;
    if (!query_find(req, name, &value))
        return -1;
    return query_value(value, out, outcap);
}

int vg_http_query_has(const vg_http_request_t *req, const char *name)
{
    vg_iov_t value;
    return query_find(req, name, &value);
}

/* Bytes a path must not contain once decoded: NUL ends C strings early, a backslash is a
 * separator on some systems, and control characters have no business in a file name or a
 * log line. */
static int path_byte_ok(int c)
{
    return c >= 0x20 && c != 0x7f && c != '\\';
}

static int is_dot_segment(const char *s, size_t len)
{
    return (len == 1 && s[0] == '.') || (len == 2 && s[0] == '.' && s[1] == '.');
}

/* Checks the decoded path segment by segment.  An empty segment is allowed only at the end
 * ("/" or "/dir/"): "//etc/passwd" could otherwise become an absolute path once joined. */
static int path_segments_ok(const char *s, size_t n)
{
    for (size_t i = 1;; i++) {
        size_t start = i;
        while (i < n && s[i] != '/')
            i++;
        if (is_dot_segment(s + start, i - start))
            return 0;
        if (i == n)
            return 1;
        if (i == start)
            return 0;
    }
}

int vg_http_path_decode(vg_iov_t raw, char *out, size_t outcap)
{
    if (raw.len == 0 || raw.base[0] != '/' || outcap == 0)
        return VG_EINVAL;
    size_t n = 0;
    for (size_t i = 0; i < raw.len;) {
        int c = (unsigned char)raw.base[i];
        if (c == '%') {
            c = decode_escape(raw.base, raw.len, i);
            if (c < 0)
                return VG_EINVAL;
            i += 3;
        } else {
            i++;
        }
        if (!path_byte_ok(c) || n + 1 >= outcap)
            return VG_EINVAL;
        out[n++] = (char)c;
    }
    out[n] = '\0';
    if (n > INT_MAX || !path_segments_ok(out, n))
        return VG_EINVAL;
    return (int)n;
}

int vg_http_status_for_error(int err)
{
    switch (err) {
    case VG_EHTTP_BAD_REQUEST: return 400;
    case VG_EHTTP_HEADERS_TOO_BIG: return 431;
    case VG_EHTTP_BODY_TOO_BIG: return 413;
    case VG_EHTTP_URI_TOO_LONG: return 414;
    case VG_EHTTP_UNSUPPORTED: return 505;
    case VG_EHTTP_NOT_IMPLEMENTED: return 501;
    default: return 500;
    }
}

const char *vg_http_status_text(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 416: return "Range Not Satisfiable";
    case 422: return "Unprocessable Content";
    case 426: return "Upgrade Required";
    case 428: return "Precondition Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}

/* 1xx, 204 and 304 responses end with their headers (RFC 9112 6.3): no Content-Length, no
 * body. */
static int status_has_body(int status)
{
    return status >= 200 && status != 204 && status != 304;
}

void vg_http_write_response(vg_buf_t *out, int status, const char *content_type,
                            const char *extra_headers, const void *body, size_t body_len,
                            int keep_alive)
{
    assert(status >= 100 && status <= 999);
    int has_body = status_has_body(status);
    assert(has_body || body_len == 0);
    vg_buf_printf(out, "HTTP/1.1 %d %s\r\n", status, vg_http_status_text(status));
    if (content_type != NULL)
        vg_buf_printf(out, "Content-Type: %s\r\n", content_type);
    if (has_body)
        vg_buf_printf(out, "Content-Length: %zu\r\n", body_len);
    /* A 101 switches this connection to the protocol in the Upgrade header, so its Connection
     * header must name "Upgrade" (RFC 9110 7.8) rather than keep-alive or close.  Other 1xx are
     * interim ("100 Continue"): the final response says what happens to the connection. */
    if (status == 101)
        vg_buf_append_str(out, "Connection: Upgrade\r\n");
    else if (status >= 200)
        vg_buf_append_str(out, keep_alive ? "Connection: keep-alive\r\n" : "Connection: close\r\n");
    if (extra_headers != NULL) {
        size_t n = strlen(extra_headers);
        assert(n == 0 || (n >= 2 && memcmp(extra_headers + n - 2, "\r\n", 2) == 0));
        vg_buf_append(out, extra_headers, n);
    }
    vg_buf_append(out, "\r\n", 2);
    if (has_body)
        vg_buf_append(out, body, body_len);
}

void vg_http_write_error(vg_buf_t *out, int status, const char *code, const char *message,
                         const char *extra_headers, int keep_alive)
{
    if (code == NULL)
        code = "error";
    if (message == NULL)
        message = vg_http_status_text(status);
    vg_buf_t body = VG_BUF_INIT;
    vg_buf_append_str(&body, "{\"error\":{\"code\":\"");
    vg_buf_append_json_escaped(&body, code, strlen(code));
    vg_buf_append_str(&body, "\",\"message\":\"");
    vg_buf_append_json_escaped(&body, message, strlen(message));
    vg_buf_append_str(&body, "\"}}");
    vg_http_write_response(out, status, "application/json", extra_headers, body.base, body.len,
                           keep_alive);
    vg_buf_dispose(&body);
}
