/*
 * What the two fallback transports (SSE and long-poll) share: reading the channels, positions
 * and since_time of a request, and subscribing a stream to its channels.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/hub.h"
#include "proto/channel.h"
#include "proto/utf8.h"
#include "transport/internal.h"
#include "util/alloc.h"
#include "util/clock.h"
#include "util/error.h"
#include "util/num.h"

void vg__stream_subscribe_all(void *arg)
{
    vg_stream_sub_t *op = arg;
    vg_subs_t *index = vg_hub_subs(op->s->conn->worker);
    for (size_t i = 0; i < op->count; i++)
        vg_subs_add(index, &op->s->subscriber, op->channels[i], strlen(op->channels[i]));
}

/* Splits ?channels=a,b and checks each against the user's permissions.  Returns the count or
 * -1 after answering the error. */
int vg__stream_parse_channels(vg_session_t *s, vg_http_request_t *req, char *buf, size_t cap,
                              char **out, size_t max)
{
    int n = vg_http_query_get(req, "channels", buf, cap);
    if (n <= 0) {
        vg_session_respond_error(s, 400, "bad_request", "channels: required", NULL);
        return -1;
    }
    if ((size_t)n >= cap) { /* cut short: the last name would be another channel */
        vg_session_respond_error(s, 400, "invalid_channel", "channels: too long", NULL);
        return -1;
    }
    vg_patterns_t allowed;
    vg_session_allowed(s, &allowed);
    int count = 0;
    char *save = NULL;
    for (char *tok = strtok_r(buf, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
        char message[300];
        /* The name is quoted as far as it is valid UTF-8 (and at most 200 bytes), so the error
         * body stays valid JSON whatever bytes the client sent. */
        int quoted = (int)vg_utf8_truncate(tok, strlen(tok), VG_CHANNEL_MAX_LEN);
        const char *why = vg_channel_check_pattern(tok, strlen(tok));
        if (why != NULL || (size_t)count == max) {
            snprintf(message, sizeof(message), "channels: \"%.*s\": %s", quoted, tok,
                     why ? why : "too many channels");
            vg_session_respond_error(s, 400, "invalid_channel", message, NULL);
            return -1;
        }
        if (!vg_patterns_covers(&allowed, tok, strlen(tok))) {
            snprintf(message, sizeof(message), "not allowed to subscribe to \"%.*s\"", quoted, tok);
            vg_session_respond_error(s, 403, "forbidden", message, NULL);
            return -1;
        }
        out[count++] = tok;
    }
    return count;
}

int vg__stream_parse_since_time(vg_http_request_t *req, char **channels, size_t n,
                                const char **patterns, vg_time_recovery_t *tr)
{
    char text[64];
    int64_t ms;
    int len = vg_http_query_get(req, "since_time", text, sizeof(text));
    if (len <= 0)
        return 0;
    if ((size_t)len >= sizeof(text) || vg_parse_time_ms(text, &ms) != 0)
        return -1;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (vg_channel_is_pattern(channels[i], strlen(channels[i])))
            patterns[k++] = channels[i];
    tr->patterns = patterns;
    tr->num_patterns = k;
    tr->since_ms = ms;
    return k > 0;
}

int vg__stream_parse_position(char *text, char **channels, size_t n, vg_recovery_t *r)
{
    char *colon = strrchr(text, ':');
    if (colon == NULL)
        return -1;
    *colon = '\0';
    const char *digits = colon + 1;
    uint64_t off;
    /* Not above INT64_MAX, the largest offset the JSON side can carry. */
    if (vg_parse_decimal(digits, strlen(digits), INT64_MAX, &off) != 0 ||
        vg_channel_check_name(text, strlen(text)) != NULL)
        return -1;
    int covered = 0;
    for (size_t i = 0; i < n && !covered; i++)
        covered = vg_channel_match(channels[i], strlen(channels[i]), text, strlen(text));
    if (!covered)
        return -1; /* a channel not asked for (and so not checked against the permissions) */
    memset(r, 0, sizeof(*r));
    r->channel = text;
    r->has_since = 1;
    r->since_offset = off;
    return 0;
}

int vg__stream_open(vg_session_t *s, vg_http_request_t *req, const vg_ws_endpoint_t *endpoint)
{
    const char *reason = "unauthorized";
    if (vg__wsuser_authenticate(s, req, &reason) != 0) {
        vg_session_respond_error(s, 401, "unauthorized", reason, NULL);
        return -1;
    }
    s->authenticated = 1;
    s->endpoint = endpoint;
    vg_session_subscriber_init(s);
    return 0;
}

int vg__stream_register(vg_session_t *s)
{
    vg__wsuser_registry_init(s);
    if (vg_registry_add(s->app->registry, &s->reg, s->identity.user, vg_session_user_limit(s)) !=
        0) {
        vg_app_count_refusal(s->app, "too many connections");
        vg_session_respond_error(s, 429, "too_many_connections", "too many connections", NULL);
        return -1;
    }
    s->registered = 1;
    return 0;
}

void vg__stream_refused(vg_session_t *s)
{
    /* The connection may carry on with other requests: the identity goes with this one. */
    vg_identity_dispose(&s->identity);
    s->authenticated = 0;
}
