/*
 * `vigil serve`: builds the server context from the configuration (auth, hub, store, state,
 * registry, durable channels), adds every route in order (health, the native WebSocket, the API,
 * the demo, the profiles, static files last) and ties the server's workers to the hub.
 */
#include <stdio.h>
#include <string.h>

#include "api/api.h"
#include "cli/demo.h"
#include "cli/serve.h"
#include "broker/durable.h"
#include "broker/memory.h"
#include "core/hub.h"
#include "core/state.h"
#include "profiles/all.h"
#include "store/store.h"
#include "transport/rpc.h"
#include "util/clock.h"
#include "util/error.h"
#include "util/log.h"

static int check_patterns(const vg_patterns_t *p, const char *option, char *err, size_t errlen)
{
    const char *why = NULL, *bad = vg_patterns_check(p, &why);
    if (bad == NULL)
        return 0;
    snprintf(err, errlen, "invalid value '%s' for --%s: %s", bad, option, why);
    return VG_ECONFIG;
}

static void on_state_tick(void *arg, int64_t now_ms)
{
    vg_state_tick(arg, now_ms);
}

static int add_broadcasts(vg_app_t *app, char *err, size_t errlen)
{
    vg_patterns_t specs;
    vg_patterns_parse(&specs, app->cfg->state_broadcast);
    int rc = 0;
    for (size_t i = 0; i < specs.count && rc == 0; i++) {
        rc = vg_state_add_broadcast(app->state, specs.items[i]);
        if (rc != 0)
            snprintf(err, errlen,
                     "invalid value '%s' for --state-broadcast: expected NAME:TYPE:SECONDS",
                     specs.items[i]);
    }
    vg_patterns_dispose(&specs);
    return rc == 0 ? 0 : VG_ECONFIG;
}

int vg_serve_init(vg_app_t *app, const vg_config_t *cfg, int workers, char *err, size_t errlen)
{
    vg_transport_init(app, cfg);
    app->started_ms = vg_wall_ms();
    app->http_limits.max_header_bytes = cfg->max_header_size;
    app->http_limits.max_body_bytes = cfg->max_body_size;
    vg_patterns_parse(&app->default_channels, cfg->default_channels);
    vg_patterns_parse(&app->allowed_origins, cfg->allowed_origins);
    vg_patterns_parse(&app->ack_channels, cfg->ack_channels);
    vg_patterns_parse(&app->durable_channels, cfg->durable_channels);
    if (check_patterns(&app->default_channels, "default-channels", err, errlen) != 0 ||
        check_patterns(&app->ack_channels, "ack-channels", err, errlen) != 0 ||
        check_patterns(&app->durable_channels, "durable-channels", err, errlen) != 0)
        return VG_ECONFIG;
    vg_auth_config_t ac = {
        .jwt_secret = cfg->jwt_secret,
        .jwt_public_key_file = cfg->jwt_public_key,
        .leeway = cfg->jwt_leeway,
        .issuer = cfg->jwt_issuer,
        .audience = cfg->jwt_audience,
        .api_key = cfg->api_key,
        .allow_anonymous = cfg->allow_anonymous,
    };
    if (vg_auth_new(&app->auth, &ac, err, errlen) != 0)
        return VG_ECONFIG;
    vg_history_limits_t history = {
        .size = (size_t)cfg->history_size,
        .ttl_seconds = cfg->history_ttl,
        .max_bytes = cfg->history_memory,
    };
    app->broker = vg_memory_broker_new(&history);
    app->hub = vg_hub_new(workers, app->broker);
    char serr[512];
    if (vg_store_sqlite_open(cfg->data_dir, &app->store, serr, sizeof(serr)) != 0) {
        snprintf(err, errlen, "cannot use --data-dir %s: %s", cfg->data_dir, serr);
        return VG_ESTORE;
    }
    app->acks = (vg_acks_t){app->store, &app->ack_channels, cfg->ack_ttl, (size_t)cfg->ack_max};
    vg_hub_set_command_handler(app->hub, vg_session_on_hub_command);
    app->state = vg_state_new(app->hub, cfg->state_interval, app->store);
    app->durable = vg_durable_start(app->broker, app->store, &app->durable_channels,
                                    (uint64_t)cfg->history_size, cfg->history_ttl);
    if (add_broadcasts(app, err, errlen) != 0)
        return VG_ECONFIG;
    /* Deltas are due at most every --state-interval; look ten times as often. */
    uint64_t tick = (uint64_t)(cfg->state_interval * 100);
    vg_hub_set_ticker(app->hub, on_state_tick, app->state, tick > 0 ? tick : 1);
    app->registry = vg_registry_new();
    app->rpc =
        vg_rpc_limits_new(cfg->max_rpc_inflight_per_connection, cfg->max_rpc_inflight_per_user);

    vg_api_register_health(app);
    vg_app_route_ws(app, "/ws", &vg_native_endpoint);
    if (cfg->echo)
        vg_app_route_ws(app, "/echo", &vg_echo_endpoint);
    vg_api_register(app);
    if (cfg->demo)
        vg_demo_register(app);
    app->append_metrics = vg_profiles_metrics;
    int rc = vg_profiles_init(app, err, errlen);
    if (rc != 0)
        return rc;
    vg_api_register_static(app);
    return 0;
}

void vg_serve_dispose(vg_app_t *app)
{
    vg_profiles_dispose(app);
    vg_state_free(app->state);
    vg_store_free(app->store);
    vg_hub_free(app->hub);
    if (app->broker != NULL)
        app->broker->ops->free(app->broker);
    vg_durable_free(app->durable);
    vg_registry_free(app->registry);
    vg_rpc_limits_free(app->rpc);
    vg_auth_free(app->auth);
    vg_patterns_dispose(&app->default_channels);
    vg_patterns_dispose(&app->allowed_origins);
    vg_patterns_dispose(&app->ack_channels);
    vg_patterns_dispose(&app->durable_channels);
    vg_transport_dispose(app);
}

static void on_worker_start(vg_worker_t *w)
{
    vg_app_t *app = vg_worker_app(w);
    vg_hub_worker_start(app->hub, w);
    /* In the index every transport subscribes through, so the bound holds for all of them. */
    vg_subs_set_limit(vg_hub_subs(w), (size_t)app->cfg->max_subscriptions);
}

static void on_worker_stop(vg_worker_t *w)
{
    vg_app_t *app = vg_worker_app(w);
    vg_hub_worker_stop(app->hub, w);
}

const vg_server_callbacks_t vg_serve_callbacks = {
    .on_accept = vg_app_on_accept,
    .on_worker_start = on_worker_start,
    .on_worker_stop = on_worker_stop,
};
