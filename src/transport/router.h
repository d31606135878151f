/*
 * Routing: maps a request's method and path to a handler.
 *
 * A route's path is matched segment by segment: a literal segment must be equal, "{name}"
 * matches any one non-empty segment and captures it, and a final "*" matches the rest (including
 * nothing).  Routes are tried in the order they were added; the first whose path matches wins,
 * and if its methods do not include the request's, the answer is 405 with the methods it allows.
 */
#ifndef VG_TRANSPORT_ROUTER_H
#define VG_TRANSPORT_ROUTER_H

#include <stddef.h>

#include "util/buf.h"

#define VG_ROUTE_MAX_PARAMS 4

enum vg_method_bit {
    VG_M_GET = 1 << 0,
    VG_M_HEAD = 1 << 1,
    VG_M_POST = 1 << 2,
    VG_M_PUT = 1 << 3,
    VG_M_PATCH = 1 << 4,
    VG_M_DELETE = 1 << 5,
    VG_M_OPTIONS = 1 << 6,
    VG_M_ANY = ~0u, /* the handler checks the method itself (any method, even unknown ones) */
};

typedef struct vg_route_s {
    const char *path;  /* e.g. "/healthz", "/ws/alerts/{user_id}", or "/" followed by "*" */
    unsigned methods;  /* VG_M_* bits */
    void *handler;     /* the app's handler (opaque to the router) */
    const void *extra; /* handler-specific data (e.g. WebSocket endpoint description) */
} vg_route_t;

typedef struct vg_route_match_s {
    const vg_route_t *route;
    vg_iov_t params[VG_ROUTE_MAX_PARAMS];
    size_t num_params;
    unsigned allowed; /* with VG_ROUTE_BAD_METHOD: the methods the path accepts */
} vg_route_match_t;

typedef struct vg_router_s {
    vg_route_t *routes;
    size_t num_routes;
} vg_router_t;

enum { VG_ROUTE_FOUND = 0, VG_ROUTE_NOT_FOUND = 1, VG_ROUTE_BAD_METHOD = 2 };

void vg_router_init(vg_router_t *r);
void vg_router_dispose(vg_router_t *r);
/* Copies the route; `path` must outlive the router (string literals). */
void vg_router_add(vg_router_t *r, const vg_route_t *route);
/* Matches a (still percent-encoded) path and an llhttp method.  Returns VG_ROUTE_FOUND (match
 * filled), VG_ROUTE_NOT_FOUND, or VG_ROUTE_BAD_METHOD (match->allowed filled). */
int vg_router_match(const vg_router_t *r, vg_iov_t path, int method, vg_route_match_t *match);
/* The VG_M_* bit for an llhttp method (0 for methods no route accepts). */
unsigned vg_method_bit(int llhttp_method);
/* Writes "GET, HEAD" style text for an Allow header. */
void vg_router_format_allow(unsigned methods, char *out, size_t outlen);

#endif
