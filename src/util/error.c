#include "util/error.h"

#include <uv.h>

const char *vg_strerror(int err)
{
    switch (err) {
    case 0: return "success";
    case VG_EINVAL: return "invalid argument";
    case VG_ENOMEM: return "out of memory";
    case VG_ELIMIT: return "limit exceeded";
    case VG_ECLOSED: return "closed";
    case VG_EHTTP_BAD_REQUEST: return "malformed HTTP request";
    case VG_EHTTP_HEADERS_TOO_BIG: return "request header fields too large";
    case VG_EHTTP_BODY_TOO_BIG: return "request body too large";
    case VG_EHTTP_URI_TOO_LONG: return "request target too long";
    case VG_EHTTP_UNSUPPORTED: return "HTTP version not supported";
    case VG_EHTTP_NOT_IMPLEMENTED: return "transfer coding not implemented (only chunked is)";
    case VG_EWS_PROTOCOL: return "WebSocket protocol error";
    case VG_EWS_UTF8: return "invalid UTF-8";
    case VG_EWS_TOO_BIG: return "message too big";
    case VG_ECONFIG: return "bad configuration";
    case VG_EAUTH: return "authentication failed";
    case VG_ESTORE: return "the durable store failed";
    default: break;
    }
    if (err < 0 && err > -4096)
        return uv_strerror(err);
    return "unknown error";
}
