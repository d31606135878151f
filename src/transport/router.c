#include "transport/router.h"

#include <llhttp.h>
#include <stdio.h>
#include <string.h>

#include "util/alloc.h"

static const struct {
    unsigned bit;
    int method;
    const char *name;
} methods[] = {
    {VG_M_GET, HTTP_GET, "GET"},
    {VG_M_HEAD, HTTP_HEAD, "HEAD"},
    {VG_M_POST, HTTP_POST, "POST"},
    {VG_M_PUT, HTTP_PUT, "PUT"},
    {VG_M_PATCH, HTTP_PATCH, "PATCH"},
    {VG_M_DELETE, HTTP_DELETE, "DELETE"},
    {VG_M_OPTIONS, HTTP_OPTIONS, "OPTIONS"},
};

void vg_router_init(vg_router_t *r)
{
    r->routes = NULL;
    r->num_routes = 0;
}

void vg_router_dispose(vg_router_t *r)
{
    vg_free(r->routes);
    vg_router_init(r);
}

void vg_router_add(vg_router_t *r, const vg_route_t *route)
{
    r->routes = vg_realloc(r->routes, (r->num_routes + 1) * sizeof(*r->routes));
    r->routes[r->num_routes++] = *route;
}

unsigned vg_method_bit(int llhttp_method)
{
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
        if (methods[i].method == llhttp_method)
            return methods[i].bit;
    return 0;
}

void vg_router_format_allow(unsigned mask, char *out, size_t outlen)
{
    size_t n = 0;
    out[0] = '\0';
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
        if (!(mask & methods[i].bit))
            continue;
        int w = snprintf(out + n, outlen - n, "%s%s", n ? ", " : "", methods[i].name);
        if (w < 0 || (size_t)w >= outlen - n)
            break;
        n += (size_t)w;
    }
}

/* Iterates over the '/'-separated segments of a path after its leading '/': "/" has one empty
 * segment, "/a/" has "a" and "". */
typedef struct segments_s {
    vg_iov_t s;
    size_t pos; /* > s.len once the last segment was taken */
} segments_t;

static int next_segment(segments_t *it, vg_iov_t *seg)
{
    if (it->pos > it->s.len)
        return 0;
    size_t end = it->pos;
    while (end < it->s.len && it->s.base[end] != '/')
        end++;
    *seg = (vg_iov_t){it->s.base + it->pos, end - it->pos};
    it->pos = end + 1;
    return 1;
}

static int path_matches(const char *pattern, vg_iov_t path, vg_route_match_t *m)
{
    if (path.len == 0 || path.base[0] != '/')
        return 0;
    segments_t pat = {{pattern + 1, strlen(pattern) - 1}, 0};
    segments_t got = {{path.base + 1, path.len - 1}, 0};
    vg_iov_t ps, seg;
    m->num_params = 0;
    while (next_segment(&pat, &ps)) {
        if (vg_iov_eq(ps, "*") && pat.pos > pat.s.len)
            return 1; /* a final "*" takes the rest, even nothing */
        if (!next_segment(&got, &seg))
            return 0;
        if (ps.len >= 2 && ps.base[0] == '{' && ps.base[ps.len - 1] == '}') {
            if (seg.len == 0 || m->num_params == VG_ROUTE_MAX_PARAMS)
                return 0;
            m->params[m->num_params++] = seg;
        } else if (ps.len != seg.len || memcmp(ps.base, seg.base, seg.len) != 0) {
            return 0;
        }
    }
    return !next_segment(&got, &seg);
}

int vg_router_match(const vg_router_t *r, vg_iov_t path, int method, vg_route_match_t *match)
{
    unsigned bit = vg_method_bit(method);
    for (size_t i = 0; i < r->num_routes; i++) {
        const vg_route_t *route = &r->routes[i];
        if (!path_matches(route->path, path, match))
            continue;
        match->route = route;
        if ((bit & route->methods) || route->methods == VG_M_ANY)
            return VG_ROUTE_FOUND;
        match->allowed = route->methods;
        return VG_ROUTE_BAD_METHOD;
    }
    return VG_ROUTE_NOT_FOUND;
}
