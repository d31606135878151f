/*
 * Error codes shared by every layer.
 *
 * Functions return 0 on success and a negative code on failure.  I/O errors pass through as
 * libuv's UV_E* (negative errno values, all above -4096).  vigil's own codes sit below that and
 * are grouped by hundreds, one block per layer, so a code alone says where it came from
 * (wslay's scheme).
 */
#ifndef VG_UTIL_ERROR_H
#define VG_UTIL_ERROR_H

enum {
    /* generic: -10000 */
    VG_EINVAL = -10001,  /* invalid argument or value */
    VG_ENOMEM = -10002,  /* allocation whose size came from peer input failed */
    VG_ELIMIT = -10003,  /* a configured limit was exceeded */
    VG_ECLOSED = -10004, /* the object is closing; input is ignored */

    /* HTTP/1.1: -10100 */
    VG_EHTTP_BAD_REQUEST = -10101,     /* malformed request: answer 400 */
    VG_EHTTP_HEADERS_TOO_BIG = -10102, /* header block over the limit: answer 431 */
    VG_EHTTP_BODY_TOO_BIG = -10103,    /* body over the limit: answer 413 */
    VG_EHTTP_URI_TOO_LONG = -10104,    /* request target over the limit: answer 414 */
    VG_EHTTP_UNSUPPORTED = -10105,     /* e.g. HTTP/2 preface or unknown version: answer 505 */
    VG_EHTTP_NOT_IMPLEMENTED = -10106, /* a transfer coding other than chunked: answer 501 */

    /* WebSocket: -10200 */
    VG_EWS_PROTOCOL = -10201, /* RFC 6455 violation: close 1002 */
    VG_EWS_UTF8 = -10202,     /* invalid UTF-8 in a text message or close reason: close 1007 */
    VG_EWS_TOO_BIG = -10203,  /* message over --max-message-size: close 1009 */

    /* auth: -10400 */
    VG_EAUTH = -10401, /* authentication failed (a static reason says which check) */

    /* store: -10500 */
    VG_ESTORE = -10501, /* the database failed (I/O error, disk full, corruption) */

    /* config and CLI: -10300 */
    VG_ECONFIG = -10301, /* bad option or config value: exit 2 */
};

/* Returns a static, human readable description of any vigil or libuv error code. */
const char *vg_strerror(int err);

#endif
