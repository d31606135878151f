/*
 * GET /api/poll?channels=a,b[&since=a:12,b:7][&timeout=25]: long-polling, the last fallback.
 *
 * Answers at once with what the client missed after `since` when history has it; otherwise the
 * request is held as an ordinary hub subscriber until a message arrives or `timeout` seconds pass
 * (then the list is empty: never 204).  The answer is
 *     {"messages":[...],"since":"a:13,b:7"}
 * where `since` is what to send next time.  Between polls the client is not subscribed; history
 * covers the gap, so nothing published in between is lost.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/acks.h"
#include "transport/internal.h"
#include "proto/channel.h"
#include "core/hub.h"
#include "util/alloc.h"
#include "util/error.h"
#include "util/log.h"

#define MAX_CHANNELS  64
#define MAX_TIMEOUT_S 120.0

typedef struct vg_poll_s {
    vg_buf_t messages; /* JSON texts separated by commas */
    size_t count;
    struct pos_s {
        char *channel;
        uint64_t offset;
    } pos[MAX_CHANNELS];
    size_t num_pos;
} poll_t;

static void set_pos(poll_t *p, const char *channel, size_t len, uint64_t offset)
{
    for (size_t i = 0; i < p->num_pos; i++) {
        if (strlen(p->pos[i].channel) == len && memcmp(p->pos[i].channel, channel, len) == 0) {
            if (offset > p->pos[i].offset)
                p->pos[i].offset = offset;
            return;
        }
    }
    if (p->num_pos < MAX_CHANNELS) {
        p->pos[p->num_pos].channel = vg_strndup(channel, len);
        p->pos[p->num_pos++].offset = offset;
    }
}

static void add_message(poll_t *p, const char *channel, size_t len, uint64_t offset,
                        const vg_chunk_t *frame)
{
    const uint8_t *payload;
    size_t plen;
    vg_ws_frame_payload(frame, &payload, &plen);
    if (p->count++ > 0)
        vg_buf_append(&p->messages, ",", 1);
    vg_buf_append(&p->messages, payload, plen);
    /* A redelivered acknowledged message (offset 0) moves no position.  A channel's starting
     * position may be 0 (nothing published yet) and must still be reported, or the client's next
     * poll does not name the channel and misses its first message. */
    if (offset > 0)
        set_pos(p, channel, len, offset);
}

static void poll_dispose(vg_session_t *s)
{
    poll_t *p = s->poll;
    if (p == NULL)
        return;
    for (size_t i = 0; i < p->num_pos; i++)
        vg_free(p->pos[i].channel);
    vg_buf_dispose(&p->messages);
    vg_free(p);
    s->poll = NULL;
}

/* Answers, leaves the hub, and goes back to reading requests. */
static void finish(vg_session_t *s)
{
    poll_t *p = s->poll;
    vg_buf_t body = VG_BUF_INIT;
    vg_buf_append_str(&body, "{\"messages\":[");
    vg_buf_append(&body, p->messages.base, p->messages.len);
    vg_buf_append_str(&body, "],\"since\":\"");
    for (size_t i = 0; i < p->num_pos; i++) {
        if (i > 0)
            vg_buf_append(&body, ",", 1);
        vg_buf_append_json_escaped(&body, p->pos[i].channel, strlen(p->pos[i].channel));
        vg_buf_printf(&body, ":%" PRIu64, p->pos[i].offset);
    }
    vg_buf_append_str(&body, "\"}");
    vg_conn_timer_stop(s->conn);
    vg__wsuser_cleanup(s);
    s->authenticated = s->registered = 0;
    memset(&s->identity, 0, sizeof(s->identity));
    s->event_types = NULL;
    s->num_event_types = 0;
    poll_dispose(s);
    vg_session_respond(s, 200, "application/json", "Cache-Control: no-store\r\n", body.base,
                       body.len);
    vg_buf_dispose(&body);
    vg_session_resume_http(s);
}

static void poll_deliver(vg_session_t *s, const char *channel, size_t channel_len, uint64_t offset,
                         vg_chunk_t *frame)
{
    add_message(s->poll, channel, channel_len, offset, frame);
    /* Answered from the timer, not here: this runs inside the index's match loop, which must not
     * see subscriptions removed; messages arriving meanwhile join the same answer. */
    if (s->poll->count == 1)
        vg_conn_timer_start(s->conn, 0);
}

static void poll_timeout(vg_session_t *s)
{
    finish(s);
}

static const vg_ws_endpoint_t poll_endpoint = {
    .path = "/api/poll",
    .authenticate = 1,
    .on_close = poll_dispose,
    .deliver = poll_deliver,
    .on_timer = poll_timeout,
};

/* since=a:12,b:7 -> recovery requests (any epoch: the client only has offsets), each for a
 * channel of the request.  Returns the count, or -1 when malformed. */
static int parse_since(vg_http_request_t *req, char **channels, size_t n, char *buf, size_t cap,
                       vg_recovery_t *rec, size_t max)
{
    int len = vg_http_query_get(req, "since", buf, cap);
    if (len <= 0)
        return 0;
    if ((size_t)len >= cap)
        return -1; /* cut short: the last offset would be read wrong */
    size_t count = 0;
    char *save = NULL;
    for (char *tok = strtok_r(buf, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
        if (count == max || vg__stream_parse_position(tok, channels, n, &rec[count]) != 0)
            return -1;
        rec[count++].any_epoch = 1;
    }
    return (int)count;
}

/* ?timeout=: seconds as plain decimal ("25", "0.5"), 0 to MAX_TIMEOUT_S.  Returns 0 (*timeout
 * untouched when absent) or -1. */
static int parse_timeout(vg_http_request_t *req, double *timeout)
{
    char text[32];
    int len = vg_http_query_get(req, "timeout", text, sizeof(text));
    if (len <= 0)
        return 0;
    if ((size_t)len >= sizeof(text))
        return -1;
    size_t whole = strspn(text, "0123456789"), frac = 0;
    if (text[whole] == '.')
        frac = 1 + strspn(text + whole + 1, "0123456789");
    if (whole == 0 || frac == 1 || text[whole + frac] != '\0')
        return -1;
    *timeout = strtod(text, NULL);
    return *timeout <= MAX_TIMEOUT_S ? 0 : -1;
}

void vg_poll_handle(vg_session_t *s, vg_http_request_t *req, const vg_route_match_t *m)
{
    (void)m;
    if (vg__stream_open(s, req, &poll_endpoint) != 0)
        return;
    char chbuf[4096], sincebuf[4096], *channels[MAX_CHANNELS];
    vg_recovery_t rec[MAX_CHANNELS];
    int n = vg__stream_parse_channels(s, req, chbuf, sizeof(chbuf), channels, MAX_CHANNELS);
    if (n < 0)
        goto refused;
    int nrec = parse_since(req, channels, (size_t)n, sincebuf, sizeof(sincebuf), rec, MAX_CHANNELS);
    const char *patterns[MAX_CHANNELS];
    vg_time_recovery_t tr;
    int has_time = vg__stream_parse_since_time(req, channels, (size_t)n, patterns, &tr);
    if (has_time < 0) {
        vg_session_respond_error(s, 400, "bad_request", SINCE_TIME_ERROR, NULL);
        goto refused;
    }
    double timeout = 25;
    if (nrec < 0 || parse_timeout(req, &timeout) != 0) {
        vg_session_respond_error(s, 400, "bad_request",
                                 nrec < 0 ? "since: expected channel:offset,... (offsets 0 to "
                                            "2^63-1) for channels of this request"
                                          : "timeout: 0 to 120 seconds, in decimal",
                                 NULL);
        goto refused;
    }
    if (vg__stream_register(s) != 0)
        goto refused;
    s->poll = vg_calloc(1, sizeof(poll_t));
    int first_poll = nrec == 0;
    /* Channels asked for by name but not in since start from their current position: ask the
     * hub for it in the same atomic step. */
    for (int i = 0; i < n && (size_t)nrec < MAX_CHANNELS; i++) {
        int known = vg_channel_is_pattern(channels[i], strlen(channels[i]));
        for (int k = 0; k < nrec && !known; k++)
            known = strcmp(rec[k].channel, channels[i]) == 0;
        if (!known) {
            memset(&rec[nrec], 0, sizeof(rec[nrec]));
            rec[nrec++].channel = channels[i];
        }
    }
    vg_stream_sub_t op = {s, channels, (size_t)n};
    vg_missed_t missed;
    vg_hub_subscribe_atomically_ex(s->conn->worker, vg__stream_subscribe_all, &op, rec,
                                   (size_t)nrec, has_time ? &tr : NULL, &missed);
    for (int i = 0; i < nrec; i++) {
        /* Not recovered (history lost the gap or the server restarted): go on from now. */
        uint64_t from = rec[i].has_since && rec[i].recovered ? rec[i].since_offset : rec[i].offset;
        set_pos(s->poll, rec[i].channel, strlen(rec[i].channel), from);
    }
    for (size_t i = 0; i < missed.count; i++)
        add_message(s->poll, missed.channels[i], strlen(missed.channels[i]), missed.offsets[i],
                    missed.frames[i]);
    vg_missed_dispose(&missed);
    /* Unacked messages come with the first poll (no since), like a WebSocket's subscribe; the
     * following polls carry on from there instead of repeating them until acked. */
    if (first_poll)
        vg_acks_replay(s, (const char *const *)channels, (size_t)n);
    if (s->poll->count > 0 || timeout == 0) {
        finish(s);
        return;
    }
    vg_conn_timer_start(s->conn, (uint64_t)(timeout * 1000));
    return;
refused:
    vg__stream_refused(s);
}
