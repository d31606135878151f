/*
 * The route table and the plain HTTP handlers (health, static files).
 */
#include "app/app.h"

#include <stdio.h>
#include <string.h>

#include "app/channel.h"
#include "app/demo.h"
#include "app/hub.h"
#include "app/profiles.h"
#include "app/rpc.h"
#include "app/state.h"
#include "app/store.h"
#include "app/web_assets.h"
#include "util/clock.h"
#include "util/error.h"
#include "util/alloc.h"
#include "util/log.h"

static void handle_healthz(vg_session_t *s, vg_http_request_t *req, const vg_route_match_t *m)
{
    (void)m;
    static const char body[] = "{\"status\":\"ok\"}";
    int head = req->method == HTTP_HEAD;
    vg_buf_t out = VG_BUF_INIT;
    if (head) {
        /* HEAD: the headers GET would send, without the body. */
        vg_http_write_response(&out, 200, "application/json", "Cache-Control: no-store\r\n", body,
                               sizeof(body) - 1, s->keep_alive);
        out.len -= sizeof(body) - 1;
        vg_session_respond_raw(s, &out);
    } else {
        vg_session_respond(s, 200, "application/json", "Cache-Control: no-store\r\n", body,
                           sizeof(body) - 1);
    }
    vg_buf_dispose(&out);
}

/* Files from web/, embedded in the binary.  The path is decoded and checked first, so that no
 * spelling of ".." can name anything outside web/ (and 404 is the answer, not 400, so probes
 * learn nothing). */
static void handle_static(vg_session_t *s, vg_http_request_t *req, const vg_route_match_t *m)
{
    (void)m;
    char path[1024];
    const vg_web_asset_t *asset = NULL;
    if (vg_http_path_decode(req->path, path, sizeof(path)) >= 0)
        asset = vg_web_asset_find(path);
    if (asset == NULL) {
        vg_session_respond_error(s, 404, "not_found", "no such resource", NULL);
        return;
    }
    if (req->method != HTTP_GET && req->method != HTTP_HEAD) {
        vg_session_respond_error(s, 405, "method_not_allowed",
                                 "method not allowed for this resource", "Allow: GET, HEAD\r\n");
        return;
    }
    const char *type = vg_web_content_type(asset->path);
    const char *cache = "Cache-Control: no-cache\r\nX-Content-Type-Options: nosniff\r\n";
    vg_buf_t out = VG_BUF_INIT;
    vg_http_write_response(&out, 200, type, cache, asset->data, asset->len, s->keep_alive);
    if (req->method == HTTP_HEAD)
        out.len -= asset->len;
    vg_session_respond_raw(s, &out);
    vg_buf_dispose(&out);
}

static void handle_websocket(vg_session_t *s, vg_http_request_t *req, const vg_route_match_t *m)
{
    vg_session_upgrade(s, req, m->route->extra);
}

static void add(vg_app_t *app, const char *path, unsigned methods, vg_http_handler_cb handler,
                const void *extra)
{
    vg_route_t r = {path, methods, (void *)handler, extra};
    vg_router_add(&app->router, &r);
}

void vg_patterns_parse(vg_patterns_t *p, const char *csv)
{
    p->items = NULL;
    p->count = 0;
    if (csv == NULL)
        return;
    char *copy = vg_strdup(csv), *save = NULL;
    for (char *tok = strtok_r(copy, ", ", &save); tok != NULL; tok = strtok_r(NULL, ", ", &save)) {
        p->items = vg_realloc(p->items, (p->count + 1) * sizeof(*p->items));
        p->items[p->count++] = vg_strdup(tok);
    }
    vg_free(copy);
}

void vg_patterns_dispose(vg_patterns_t *p)
{
    for (size_t i = 0; i < p->count; i++)
        vg_free(p->items[i]);
    vg_free(p->items);
    p->items = NULL;
    p->count = 0;
}

int vg_patterns_covers(const vg_patterns_t *p, const char *pattern, size_t len)
{
    for (size_t i = 0; i < p->count; i++)
        if (vg_channel_covers(p->items[i], strlen(p->items[i]), pattern, len))
            return 1;
    return 0;
}

int vg_patterns_match(const vg_patterns_t *p, const char *channel, size_t len)
{
    for (size_t i = 0; i < p->count; i++)
        if (vg_channel_match(p->items[i], strlen(p->items[i]), channel, len))
            return 1;
    return 0;
}

static int check_patterns(const vg_patterns_t *p, const char *option, char *err, size_t errlen)
{
    for (size_t i = 0; i < p->count; i++) {
        const char *why = vg_channel_check_pattern(p->items[i], strlen(p->items[i]));
        if (why != NULL) {
            snprintf(err, errlen, "invalid value '%s' for --%s: %s", p->items[i], option, why);
            return VG_ECONFIG;
        }
    }
    return 0;
}

/* ---- durable channels: the hub's history written through to the store ---- */

static int durable_wants(void *arg, const char *channel)
{
    vg_app_t *app = arg;
    return vg_patterns_match(&app->durable_channels, channel, strlen(channel));
}

static int durable_append(void *arg, const char *channel, uint64_t offset, const char *epoch,
                          int64_t time_ms, const uint8_t *text, size_t len)
{
    vg_app_t *app = arg;
    vg_store_hist_msg_t m = {channel, offset, epoch, time_ms, (const char *)text, len};
    if (vg_store_hist_append(app->store, &m, 1) < 0)
        return VG_ESTORE;
    /* Runs under the publish lock, so the counter needs no other. */
    if (++app->durable_appends % 1000 == 0)
        vg_store_hist_trim(app->store, NULL, (uint64_t)app->cfg->history_size,
                           time_ms - (int64_t)(app->cfg->history_ttl * 1000));
    return 0;
}

typedef struct restored_s {
    char *channel;
    uint64_t last;
    char epoch[VG_STORE_EPOCH_SIZE];
} restored_t;

static int collect_channel(const char *channel, uint64_t last, const char *epoch, void *arg)
{
    vg_buf_t *list = arg;
    restored_t r = {vg_strdup(channel), last, ""};
    snprintf(r.epoch, sizeof(r.epoch), "%s", epoch);
    vg_buf_append(list, &r, sizeof(r));
    return 0;
}

static int restore_message(const vg_store_hist_msg_t *m, void *arg)
{
    vg_app_t *app = arg;
    json_t *msg = json_loadb(m->text, m->len, 0, NULL);
    const char *type = json_string_value(json_object_get(msg, "type"));
    vg_hub_restore_message(app->hub, m->channel, m->offset, m->time_ms, type ? type : "", m->text,
                           m->len);
    json_decref(msg);
    return 0;
}

/* Durable channels resume where they were: offsets, epochs and stored history. */
static void restore_durable(vg_app_t *app)
{
    vg_hub_durability_t d = {durable_wants, durable_append, app};
    vg_hub_set_durability(app->hub, &d);
    vg_buf_t list = VG_BUF_INIT;
    if (vg_store_hist_channels(app->store, collect_channel, &list) < 0)
        vg_warning("durable channels could not be read from the store");
    restored_t *r = (restored_t *)list.base;
    size_t n = list.len / sizeof(*r);
    int64_t horizon = vg_wall_ms() - (int64_t)(app->cfg->history_ttl * 1000);
    vg_store_hist_trim(app->store, NULL, (uint64_t)app->cfg->history_size, horizon);
    for (size_t i = 0; i < n; i++) {
        vg_hub_restore_channel(app->hub, r[i].channel, r[i].last, r[i].epoch);
        vg_store_hist_read(app->store, r[i].channel, 0, 0, restore_message, app);
        vg_free(r[i].channel);
    }
    if (n > 0)
        vg_notice("restored %zu durable channel(s) from the store", n);
    vg_buf_dispose(&list);
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

int vg_app_init(vg_app_t *app, const vg_config_t *cfg, int workers, char *err, size_t errlen)
{
    memset(app, 0, sizeof(*app));
    pthread_mutex_init(&app->refusals_lock, NULL);
    app->cfg = cfg;
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
    vg_hub_history_t history = {
        .size = (size_t)cfg->history_size,
        .ttl_seconds = cfg->history_ttl,
        .max_bytes = cfg->history_memory,
    };
    app->hub = vg_hub_new(workers, &history);
    char serr[512];
    if (vg_store_sqlite_open(cfg->data_dir, &app->store, serr, sizeof(serr)) != 0) {
        snprintf(err, errlen, "cannot use --data-dir %s: %s", cfg->data_dir, serr);
        return VG_ESTORE;
    }
    app->state = vg_state_new(app->hub, cfg->state_interval, app->store);
    restore_durable(app);
    if (add_broadcasts(app, err, errlen) != 0)
        return VG_ECONFIG;
    /* Deltas are due at most every --state-interval; look ten times as often. */
    uint64_t tick = (uint64_t)(cfg->state_interval * 100);
    vg_hub_set_ticker(app->hub, on_state_tick, app->state, tick > 0 ? tick : 1);
    app->registry = vg_registry_new();
    app->rpc =
        vg_rpc_limits_new(cfg->max_rpc_inflight_per_connection, cfg->max_rpc_inflight_per_user);

    vg_router_init(&app->router);
    add(app, "/healthz", VG_M_GET | VG_M_HEAD, handle_healthz, NULL);
    add(app, "/ws", VG_M_GET, handle_websocket, &vg_native_endpoint);
    if (cfg->echo)
        add(app, "/echo", VG_M_GET, handle_websocket, &vg_echo_endpoint);
    vg_api_register(app);
    if (cfg->demo)
        vg_demo_register(app);
    int rc = vg_profiles_init(app, err, errlen);
    if (rc != 0)
        return rc;
    /* Last: any other path is a static file or 404, whatever the method. */
    add(app, "/*", VG_M_ANY, handle_static, NULL);
    return 0;
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

void vg_app_route_ws(vg_app_t *app, const char *path, const vg_ws_endpoint_t *endpoint)
{
    add(app, path, VG_M_GET, handle_websocket, endpoint);
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

void vg_app_dispose(vg_app_t *app)
{
    vg_profiles_dispose(app);
    vg_router_dispose(&app->router);
    vg_state_free(app->state);
    vg_store_free(app->store);
    vg_hub_free(app->hub);
    vg_registry_free(app->registry);
    vg_rpc_limits_free(app->rpc);
    vg_auth_free(app->auth);
    vg_patterns_dispose(&app->default_channels);
    vg_patterns_dispose(&app->allowed_origins);
    vg_patterns_dispose(&app->ack_channels);
    vg_patterns_dispose(&app->durable_channels);
    pthread_mutex_destroy(&app->refusals_lock);
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

const vg_server_callbacks_t vg_app_server_callbacks = {
    .on_accept = vg_app_on_accept,
    .on_worker_start = on_worker_start,
    .on_worker_stop = on_worker_stop,
};
