/*
 * The server context's own parts: the route table that session.c dispatches requests through,
 * and the count of refused WebSocket handshakes that /metrics reports.
 */
#include <string.h>

#include "transport/internal.h"
#include "util/alloc.h"

static void add(vg_app_t *app, const char *path, unsigned methods, vg_http_handler_cb handler,
                const void *extra)
{
    vg_route_t r = {path, methods, (void *)handler, extra};
    vg_router_add(&app->router, &r);
}

const char *const vg_limit_names[VG_LIMIT_COUNT] = {
    [VG_LIMIT_INBOUND_RATE] = "max-inbound-rate",
    [VG_LIMIT_SUBSCRIPTIONS] = "max-subscriptions",
    [VG_LIMIT_RPC_CONNECTION] = "max-rpc-inflight-per-connection",
    [VG_LIMIT_RPC_USER] = "max-rpc-inflight-per-user",
    [VG_LIMIT_RECOVERY_OUTBOUND] = "max-outbound-recovery",
};

void vg__app_init(vg_app_t *app, const vg_config_t *cfg)
{
    memset(app, 0, sizeof(*app));
    pthread_mutex_init(&app->refusals_lock, NULL);
    app->cfg = cfg;
    vg_router_init(&app->router);
}

void vg__app_dispose(vg_app_t *app)
{
    vg_router_dispose(&app->router);
    pthread_mutex_destroy(&app->refusals_lock);
}

void vg_app_route(vg_app_t *app, const char *path, unsigned methods, vg_http_handler_cb handler)
{
    add(app, path, methods, handler, NULL);
}

void vg_app_route_ex(vg_app_t *app, const char *path, unsigned methods, vg_http_handler_cb handler,
                     const void *extra)
{
    add(app, path, methods, handler, extra);
}

void vg_app_count_refusal(vg_app_t *app, const char *reason)
{
    pthread_mutex_lock(&app->refusals_lock);
    size_t i = 0;
    while (i < app->num_refusals && strcmp(app->refusals[i].reason, reason) != 0)
        i++;
    if (i == app->num_refusals && i < VG_ARRAY_SIZE(app->refusals)) {
        app->refusals[i].reason = reason;
        app->refusals[i].count = 0;
        app->num_refusals++;
    }
    if (i < app->num_refusals)
        app->refusals[i].count++;
    pthread_mutex_unlock(&app->refusals_lock);
}
