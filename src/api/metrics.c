/*
 * GET /metrics: Prometheus text, summed over the workers.
 */
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/internal.h"
#include "core/hub.h"
#include "util/buf.h"
#include "util/clock.h"

/* ---- GET /metrics ---- */

static void metric(vg_buf_t *b, const char *name, const char *type, const char *help, double v)
{
    vg_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n%s %.17g\n", name, help, name, type, name, v);
}

static void count_endpoint(vg_reg_entry_t *e, void *arg)
{
    struct {
        const char *name;
        size_t n;
    } *counts = arg;
    for (size_t i = 0; i < 8; i++) {
        if (counts[i].name == NULL || strcmp(counts[i].name, e->endpoint) == 0) {
            counts[i].name = e->endpoint;
            counts[i].n++;
            return;
        }
    }
}

static void append_by_endpoint(vg_buf_t *b, vg_app_t *app)
{
    struct {
        const char *name;
        size_t n;
    } counts[8] = {{"/ws", 0}};
    vg_registry_each(app->registry, NULL, count_endpoint, counts);
    vg_buf_append_str(b, "# HELP vigil_connections_by_endpoint Open WebSocket connections by "
                         "endpoint.\n# TYPE vigil_connections_by_endpoint gauge\n");
    for (size_t i = 0; i < 8 && counts[i].name != NULL; i++)
        vg_buf_printf(b, "vigil_connections_by_endpoint{endpoint=\"%s\"} %zu\n", counts[i].name,
                      counts[i].n);
}

static void append_refusals(vg_buf_t *b, vg_app_t *app)
{
    vg_buf_append_str(b, "# HELP vigil_handshake_failures_total WebSocket connections refused, "
                         "by reason.\n# TYPE vigil_handshake_failures_total counter\n");
    pthread_mutex_lock(&app->refusals_lock);
    for (size_t i = 0; i < app->num_refusals; i++)
        vg_buf_printf(b, "vigil_handshake_failures_total{reason=\"%s\"} %llu\n",
                      app->refusals[i].reason, (unsigned long long)app->refusals[i].count);
    pthread_mutex_unlock(&app->refusals_lock);
}

static void append_limit_hits(vg_buf_t *b, vg_app_t *app)
{
    vg_buf_append_str(b, "# HELP vigil_limit_hits_total Requests refused (or replays cut) at a "
                         "per-connection or per-user limit, by option.\n"
                         "# TYPE vigil_limit_hits_total counter\n");
    for (size_t i = 0; i < VG_LIMIT_COUNT; i++)
        vg_buf_printf(
            b, "vigil_limit_hits_total{limit=\"%s\"} %llu\n", vg_limit_names[i],
            (unsigned long long)atomic_load_explicit(&app->limit_hits[i], memory_order_relaxed));
}

void vg__api_handle_metrics(vg_session_t *s, vg_http_request_t *req, const vg_route_match_t *rm)
{
    (void)req;
    (void)rm;
    vg_app_t *app = s->app;
    vg_hub_stats_t st;
    vg_hub_stats_sum(app->hub, &st);
    vg_buf_t b = VG_BUF_INIT;
    metric(&b, "vigil_connections", "gauge", "Open WebSocket connections.",
           (double)vg_registry_total(app->registry));
    metric(&b, "vigil_users", "gauge", "Users with at least one open connection.",
           (double)vg_registry_users(app->registry));
    metric(&b, "vigil_messages_published_total", "counter", "Messages published.",
           (double)vg_hub_published(app->hub));
    metric(&b, "vigil_messages_delivered_total", "counter", "Messages queued to connections.",
           (double)st.delivered);
    metric(&b, "vigil_messages_dropped_total", "counter",
           "Deliveries skipped because the connection was closing or too slow.",
           (double)st.dropped);
    metric(&b, "vigil_bytes_out_total", "counter", "Bytes of delivered frames.",
           (double)st.bytes_out);
    metric(&b, "vigil_bytes_in_total", "counter", "Bytes received on WebSocket connections.",
           (double)st.bytes_in);
    metric(&b, "vigil_slow_consumer_disconnects_total", "counter",
           "Connections closed because their outbound queue overflowed.",
           (double)st.slow_consumers);
    metric(&b, "vigil_accept_pauses_total", "counter",
           "Accepts that failed for lack of file descriptors or memory; each paused accepting.",
           app->server ? (double)vg_server_accept_pauses(app->server) : 0.0);
    metric(&b, "vigil_uptime_seconds", "gauge", "Seconds since start.",
           (double)(vg_wall_ms() - app->started_ms) / 1e3);
    size_t channels;
    uint64_t channels_freed;
    vg_hub_channel_counts(app->hub, &channels, &channels_freed);
    metric(&b, "vigil_channels", "gauge",
           "Channel records held: published to within --history-ttl, with history, or durable.",
           (double)channels);
    metric(&b, "vigil_channels_freed_total", "counter",
           "Channel records freed after --history-ttl without a publish (at least 1 s).",
           (double)channels_freed);
    append_by_endpoint(&b, app);
    append_refusals(&b, app);
    if (app->append_metrics != NULL)
        app->append_metrics(app, &b);
    append_limit_hits(&b, app);
    vg_buf_append_str(&b, "# HELP vigil_publish_to_write_seconds Time from publish to the "
                          "message being queued on a worker's sockets.\n"
                          "# TYPE vigil_publish_to_write_seconds histogram\n");
    uint64_t cumulative = 0;
    for (size_t i = 0; i < 16; i++) {
        cumulative += st.latency_buckets[i];
        if (i == 15)
            vg_buf_printf(&b, "vigil_publish_to_write_seconds_bucket{le=\"+Inf\"} %llu\n",
                          (unsigned long long)cumulative);
        else
            vg_buf_printf(&b, "vigil_publish_to_write_seconds_bucket{le=\"%g\"} %llu\n",
                          vg_hub_latency_bounds_us[i] / 1e6, (unsigned long long)cumulative);
    }
    vg_buf_printf(&b, "vigil_publish_to_write_seconds_sum %.6f\n", (double)st.latency_sum_us / 1e6);
    vg_buf_printf(&b, "vigil_publish_to_write_seconds_count %llu\n",
                  (unsigned long long)st.latency_count);
    vg_session_respond(s, 200, "text/plain; version=0.0.4; charset=utf-8", NULL, b.base, b.len);
    vg_buf_dispose(&b);
}
