/* Routing: exact paths, {param} captures, trailing "*", 404 vs 405 with the allowed methods. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <llhttp.h>

#include "transport/router.h"

static int h_health, h_ws, h_alerts, h_static;

static void make_router(vg_router_t *r)
{
    vg_router_init(r);
    vg_router_add(r, &(vg_route_t){"/healthz", VG_M_GET | VG_M_HEAD, &h_health, NULL});
    vg_router_add(r, &(vg_route_t){"/ws", VG_M_GET, &h_ws, NULL});
    vg_router_add(r, &(vg_route_t){"/ws/alerts/{user_id}", VG_M_GET, &h_alerts, NULL});
    vg_router_add(
        r, &(vg_route_t){"/api/state/{name}", VG_M_GET | VG_M_PUT | VG_M_PATCH, &h_alerts, NULL});
    vg_router_add(r, &(vg_route_t){"/*", VG_M_ANY, &h_static, NULL});
}

static int match(vg_router_t *r, const char *path, int method, vg_route_match_t *m)
{
    return vg_router_match(r, vg_iov_from_cstr(path), method, m);
}

static void test_exact_paths(void **state)
{
    (void)state;
    vg_router_t r;
    vg_route_match_t m;
    make_router(&r);
    assert_int_equal(match(&r, "/healthz", HTTP_GET, &m), VG_ROUTE_FOUND);
    assert_ptr_equal(m.route->handler, &h_health);
    assert_int_equal(match(&r, "/healthz", HTTP_HEAD, &m), VG_ROUTE_FOUND);
    assert_int_equal(match(&r, "/ws", HTTP_GET, &m), VG_ROUTE_FOUND);
    assert_ptr_equal(m.route->handler, &h_ws);
    /* a trailing slash or a longer name is another path: falls through to static */
    assert_int_equal(match(&r, "/healthz/", HTTP_GET, &m), VG_ROUTE_FOUND);
    assert_ptr_equal(m.route->handler, &h_static);
    assert_int_equal(match(&r, "/healthzz", HTTP_GET, &m), VG_ROUTE_FOUND);
    assert_ptr_equal(m.route->handler, &h_static);
    vg_router_dispose(&r);
}

static void test_params(void **state)
{
    (void)state;
    vg_router_t r;
    vg_route_match_t m;
    make_router(&r);
    assert_int_equal(match(&r, "/ws/alerts/alice", HTTP_GET, &m), VG_ROUTE_FOUND);
    assert_ptr_equal(m.route->handler, &h_alerts);
    assert_int_equal(m.num_params, 1);
    assert_true(vg_iov_eq(m.params[0], "alice"));
    /* an empty segment does not satisfy a parameter */
    assert_int_equal(match(&r, "/ws/alerts/", HTTP_GET, &m), VG_ROUTE_FOUND);
    assert_ptr_equal(m.route->handler, &h_static);
    /* nor does a deeper path */
    assert_int_equal(match(&r, "/ws/alerts/alice/x", HTTP_GET, &m), VG_ROUTE_FOUND);
    assert_ptr_equal(m.route->handler, &h_static);
    vg_router_dispose(&r);
}

static void test_method_not_allowed(void **state)
{
    (void)state;
    vg_router_t r;
    vg_route_match_t m;
    char allow[64];
    make_router(&r);
    assert_int_equal(match(&r, "/healthz", HTTP_POST, &m), VG_ROUTE_BAD_METHOD);
    vg_router_format_allow(m.allowed, allow, sizeof(allow));
    assert_string_equal(allow, "GET, HEAD");
    assert_int_equal(match(&r, "/api/state/stats", HTTP_DELETE, &m), VG_ROUTE_BAD_METHOD);
    vg_router_format_allow(m.allowed, allow, sizeof(allow));
    assert_string_equal(allow, "GET, PUT, PATCH");
    /* an unknown method on a fixed route is refused too */
    assert_int_equal(match(&r, "/ws", HTTP_PROPFIND, &m), VG_ROUTE_BAD_METHOD);
    vg_router_dispose(&r);
}

static void test_catch_all(void **state)
{
    (void)state;
    vg_router_t r;
    vg_route_match_t m;
    make_router(&r);
    assert_int_equal(match(&r, "/", HTTP_GET, &m), VG_ROUTE_FOUND);
    assert_ptr_equal(m.route->handler, &h_static);
    assert_int_equal(match(&r, "/a/b/c.js", HTTP_POST, &m), VG_ROUTE_FOUND);
    assert_ptr_equal(m.route->handler, &h_static);
    /* paths must be absolute */
    assert_int_equal(match(&r, "healthz", HTTP_GET, &m), VG_ROUTE_NOT_FOUND);
    assert_int_equal(match(&r, "", HTTP_GET, &m), VG_ROUTE_NOT_FOUND);
    vg_router_dispose(&r);
}

static void test_no_catch_all(void **state)
{
    (void)state;
    vg_router_t r;
    vg_route_match_t m;
    vg_router_init(&r);
    vg_router_add(&r, &(vg_route_t){"/", VG_M_GET, &h_static, NULL});
    assert_int_equal(match(&r, "/", HTTP_GET, &m), VG_ROUTE_FOUND);
    assert_int_equal(match(&r, "/x", HTTP_GET, &m), VG_ROUTE_NOT_FOUND);
    vg_router_dispose(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exact_paths),        cmocka_unit_test(test_params),
        cmocka_unit_test(test_method_not_allowed), cmocka_unit_test(test_catch_all),
        cmocka_unit_test(test_no_catch_all),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
