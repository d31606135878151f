/*
 * GET /api/sse: Server-Sent Events, the fallback for networks that block WebSocket.
 *
 * The stream is an ordinary subscriber of the hub (same index, registry, limits and history as
 * a WebSocket); only the encoding differs: each message becomes
 *     id: <channel>:<offset>\ndata: <the message's JSON>\n\n
 * built from the payload of the shared WebSocket frame.  A browser's EventSource reconnects by
 * itself and sends Last-Event-ID, from which the stream recovers exactly what was missed on that
 * channel.  A comment line every 15 s keeps proxies from timing the stream out.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/acks.h"
#include "transport/internal.h"
#include "proto/channel.h"
#include "core/hub.h"
#include "transport/transport.h"
#include "proto/utf8.h"
#include "util/alloc.h"
#include "util/clock.h"
#include "util/error.h"
#include "util/log.h"

#define HEARTBEAT_MS 15000
#define MAX_CHANNELS 64

static void sse_deliver(vg_session_t *s, const char *channel, size_t channel_len, uint64_t offset,
                        vg_chunk_t *frame)
{
    const uint8_t *payload;
    size_t len;
    vg_ws_frame_payload(frame, &payload, &len);
    vg_chunk_t *ev = vg_chunk_new(channel_len + len + 48);
    /* Redelivered acknowledged messages have no offset: no id, so the browser's Last-Event-ID
     * keeps pointing at the last live one. */
    int n = offset == 0
                ? snprintf((char *)ev->data, ev->cap, "data: ")
                : snprintf((char *)ev->data, ev->cap,
                           "id: %.*s:%" PRIu64 "\ndata: ", (int)channel_len, channel, offset);
    memcpy(ev->data + n, payload, len);
    memcpy(ev->data + n + len, "\n\n", 2);
    ev->len = (size_t)n + len + 2;
    int err = vg_conn_send(s->conn, ev);
    vg_chunk_unref(ev);
    if (err == VG_ELIMIT) {
        vg_notice("conn %" PRIu64 " from %s: SSE closed: slow consumer", s->conn->id,
                  s->conn->peer);
        vg_conn_close(s->conn);
    } else if (err == 0) {
        atomic_store_explicit(&s->reg.messages_out,
                              atomic_load_explicit(&s->reg.messages_out, memory_order_relaxed) + 1,
                              memory_order_relaxed);
    }
}

static void sse_timer(vg_session_t *s)
{
    if (s->identity.expires_at > 0 &&
        vg_wall_seconds() > s->identity.expires_at + s->app->cfg->jwt_leeway) {
        static const char bye[] = "event: error\ndata: {\"code\":\"token_expired\"}\n\n";
        vg_conn_send_copy(s->conn, bye, sizeof(bye) - 1);
        vg_conn_close_after_flush(s->conn);
        return;
    }
    static const char ping[] = ": ping\n\n";
    vg_conn_send_copy(s->conn, ping, sizeof(ping) - 1);
    vg_conn_timer_start(s->conn, HEARTBEAT_MS);
}

static const vg_ws_endpoint_t sse_endpoint = {
    .path = "/api/sse",
    .authenticate = 1,
    .deliver = sse_deliver,
    .on_timer = sse_timer,
};

/* Last-Event-ID "<channel>:<offset>" -> a recovery request for that channel.  Returns 1, 0 when
 * there is none, -1 when it is malformed or names a channel the request does not. */
static int parse_last_event_id(vg_http_request_t *req, char **channels, size_t n, char *buf,
                               size_t cap, vg_recovery_t *r)
{
    vg_iov_t id = vg_http_header_get(req, "Last-Event-ID");
    if (id.base == NULL || id.len == 0)
        return 0;
    if (id.len >= cap)
        return -1;
    memcpy(buf, id.base, id.len);
    buf[id.len] = '\0';
    return vg__stream_parse_position(buf, channels, n, r) == 0 ? 1 : -1;
}

static void start_stream(vg_session_t *s, char **channels, size_t n, vg_recovery_t *rec,
                         size_t nrec, const vg_time_recovery_t *tr)
{
    vg_stream_sub_t op = {s, channels, n};
    vg_missed_t missed;
    /* The id names no epoch: recover within the current one.  A restarted server numbers
     * from 1 again, which is caught when the id's offset is ahead of the channel's. */
    rec->any_epoch = 1;
    vg_hub_subscribe_atomically_ex(s->conn->worker, vg__stream_subscribe_all, &op, rec, nrec, tr,
                                   &missed);
    static const char head[] = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                               "Cache-Control: no-cache\r\nX-Accel-Buffering: no\r\n"
                               "Connection: close\r\n\r\n: connected\n\n";
    vg_conn_send_copy(s->conn, head, sizeof(head) - 1);
    for (size_t i = 0; i < missed.count; i++)
        vg_session_deliver(s, missed.channels[i], strlen(missed.channels[i]), missed.types[i],
                           missed.offsets[i], missed.frames[i]);
    vg_missed_dispose(&missed);
    vg_acks_replay(s, (const char *const *)channels, n);
    vg_conn_timer_start(s->conn, HEARTBEAT_MS);
}

void vg_sse_handle(vg_session_t *s, vg_http_request_t *req, const vg_route_match_t *m)
{
    (void)m;
    if (vg__stream_open(s, req, &sse_endpoint) != 0)
        return;
    char buf[4096], idbuf[256], *channels[MAX_CHANNELS];
    int n = vg__stream_parse_channels(s, req, buf, sizeof(buf), channels, MAX_CHANNELS);
    if (n < 0)
        goto refused;
    const char *patterns[MAX_CHANNELS];
    vg_time_recovery_t tr;
    int has_time = vg__stream_parse_since_time(req, channels, (size_t)n, patterns, &tr);
    if (has_time < 0) {
        vg_session_respond_error(s, 400, "bad_request", SINCE_TIME_ERROR, NULL);
        goto refused;
    }
    vg_recovery_t rec;
    int nrec = parse_last_event_id(req, channels, (size_t)n, idbuf, sizeof(idbuf), &rec);
    if (nrec < 0) {
        vg_session_respond_error(s, 400, "bad_request",
                                 "Last-Event-ID: expected <channel>:<offset> (0 to 2^63-1) for a "
                                 "channel of this request",
                                 NULL);
        goto refused;
    }
    if (vg__stream_register(s) != 0)
        goto refused;
    s->sse = 1;
    s->keep_alive = 0;
    vg_notice("conn %" PRIu64 " from %s: user %s connected on /api/sse", s->conn->id, s->conn->peer,
              s->identity.user);
    start_stream(s, channels, (size_t)n, &rec, (size_t)nrec, has_time ? &tr : NULL);
    vg_session_subscriptions_changed(s);
    return;
refused:
    vg__stream_refused(s);
}
