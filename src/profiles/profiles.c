/*
 * The few things every compatibility profile does the same way (profiles/all.c enables them).
 */
#include "profiles/profiles.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/channel.h"
#include "proto/ws.h"
#include "util/alloc.h"
#include "util/buf.h"
#include "util/error.h"
#include "util/log.h"

const char *vg_profile_user_check(const char *user)
{
    if (vg_channel_check_name(user, strlen(user)) != NULL || strchr(user, '.') != NULL)
        return "invalid user id";
    return NULL;
}

int vg_profile_admit_user(vg_session_t *s, const char *channels, const char **reason)
{
    if (channels == NULL || strstr(channels, "{user}") == NULL)
        return 0;
    *reason = vg_profile_user_check(s->identity.user);
    return *reason != NULL ? VG_EINVAL : 0;
}

char *vg_profile_expand_user(const char *pattern, const char *user)
{
    size_t len = strlen(pattern);
    if (strstr(pattern, "{user}") != NULL && vg_profile_user_check(user) != NULL)
        return NULL;
    vg_buf_t b = VG_BUF_INIT;
    for (size_t i = 0; i < len; i++) {
        if (len - i >= 6 && memcmp(pattern + i, "{user}", 6) == 0) {
            vg_buf_append_str(&b, user);
            i += 5;
        } else {
            vg_buf_append(&b, pattern + i, 1);
        }
    }
    vg_buf_append(&b, "", 1);
    char *out = (char *)b.base;
    if (vg_channel_check_pattern(out, b.len - 1) != NULL) {
        vg_buf_dispose(&b);
        return NULL;
    }
    return out;
}

static size_t subscribe_one(vg_session_t *s, const char *pattern)
{
    return vg_subs_add(vg_hub_subs(s->conn->worker), &s->subscriber, pattern, strlen(pattern)) >= 0;
}

/* The profile serves `events.>` but the token allows only `events.cam-1.*`: the user gets the
 * part of the profile's channels they may read, not nothing. */
static size_t subscribe_intersection(vg_session_t *s, const char *pattern,
                                     const vg_patterns_t *allowed)
{
    size_t n = 0;
    for (size_t i = 0; i < allowed->count; i++) {
        const char *a = allowed->items[i];
        if (vg_channel_covers(pattern, strlen(pattern), a, strlen(a)))
            n += subscribe_one(s, a);
    }
    return n;
}

size_t vg_profile_subscribe(vg_session_t *s, const char *channels)
{
    vg_patterns_t list, allowed;
    vg_patterns_parse(&list, channels);
    vg_session_allowed(s, &allowed);
    int anonymous_profile = s->endpoint && s->endpoint->policy && s->endpoint->policy->anonymous;
    size_t n = 0;
    for (size_t i = 0; i < list.count; i++) {
        char *p = vg_profile_expand_user(list.items[i], s->identity.user);
        if (p == NULL)
            continue;
        /* A profile without auth serves its configured channels to everyone; otherwise the
         * token's channels claim (or --default-channels) still decides. */
        if (anonymous_profile || vg_patterns_covers(&allowed, p, strlen(p)))
            n += subscribe_one(s, p);
        else
            n += subscribe_intersection(s, p, &allowed);
        vg_free(p);
    }
    vg_patterns_dispose(&list);
    vg_session_subscriptions_changed(s);
    return n;
}

json_t *vg_profile_parse(const vg_delivery_t *d)
{
    size_t len;
    const uint8_t *payload;
    vg_ws_frame_payload(d->frame, &payload, &len);
    json_t *msg = json_loadb((const char *)payload, len, 0, NULL);
    if (msg != NULL && !json_is_object(msg)) {
        json_decref(msg);
        return NULL;
    }
    return msg;
}

json_t *vg_profile_request(vg_session_t *s, int opcode, const uint8_t *data, size_t len, int *bad)
{
    *bad = 0;
    if (opcode == VG_WS_OP_TEXT && len == 4 && memcmp(data, "ping", 4) == 0) {
        vg_session_ws_send_text(s, "pong", 4);
        return NULL;
    }
    json_t *req = opcode == VG_WS_OP_TEXT ? json_loadb((const char *)data, len, 0, NULL) : NULL;
    if (json_is_object(req))
        return req;
    json_decref(req);
    *bad = 1;
    return NULL;
}

vg_chunk_t *vg_profile_frame(json_t *msg)
{
    if (msg == NULL)
        return NULL;
    char *text = json_dumps(msg, JSON_COMPACT);
    json_decref(msg);
    if (text == NULL)
        return NULL;
    vg_chunk_t *frame = vg_ws_frame_new(VG_WS_OP_TEXT, text, strlen(text));
    free(text);
    return frame;
}

void vg_profile_send(vg_session_t *s, json_t *msg)
{
    vg_chunk_t *frame = vg_profile_frame(msg);
    if (frame != NULL) {
        vg_session_ws_send(s, frame);
        vg_chunk_unref(frame);
    }
}
