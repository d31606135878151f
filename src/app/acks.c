/*
 * Acknowledged delivery (docs/PROTOCOL.md): messages on --ack-channels are committed to the store
 * before the publish is answered, replayed to each user who subscribes until that user acks
 * them, and forgotten for that user once acked from any connection.
 */
#include <inttypes.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/acks.h"
#include "app/channel.h"
#include "app/hub.h"
#include "app/store.h"
#include "util/alloc.h"
#include "util/buf.h"
#include "util/clock.h"
#include "util/error.h"
#include "util/log.h"

/* A message published this long before a replay may still be on its way to the live path. */
#define REPLAY_OVERLAP_MS 5000
#define MAX_ID_LEN        128

int vg_acks_is_ack_channel(const vg_app_t *app, const char *channel)
{
    return vg_patterns_match(&app->ack_channels, channel, strlen(channel));
}

static void random_id(char out[33])
{
    unsigned char raw[16];
    if (RAND_bytes(raw, sizeof(raw)) != 1)
        abort(); /* no randomness: nothing safe to do */
    for (size_t i = 0; i < sizeof(raw); i++)
        snprintf(out + 2 * i, 3, "%02x", raw[i]);
}

int vg_acks_prepare(const vg_app_t *app, json_t *msg, vg_publish_t *p, char id_buf[33],
                    const char **err)
{
    p->id = NULL;
    if (!vg_acks_is_ack_channel(app, p->channel))
        return 0;
    json_t *id = json_object_get(msg, "id");
    if (id == NULL) {
        random_id(id_buf);
        p->id = id_buf;
        return 0;
    }
    if (!json_is_string(id) || json_string_length(id) == 0 || json_string_length(id) > MAX_ID_LEN) {
        *err = "id: must be a string of 1 to 128 characters";
        return -1;
    }
    p->id = json_string_value(id);
    return 0;
}

int vg_acks_commit(vg_app_t *app, const vg_publish_t *msgs, size_t n)
{
    vg_store_ack_msg_t *rows = vg_calloc(n, sizeof(*rows));
    char **texts = vg_calloc(n, sizeof(*texts));
    char **extras = vg_calloc(n, sizeof(*extras));
    size_t k = 0;
    int64_t now = vg_wall_ms();
    for (size_t i = 0; i < n; i++) {
        if (msgs[i].id == NULL)
            continue;
        texts[k] = json_dumps(msgs[i].data, JSON_COMPACT | JSON_ENCODE_ANY);
        /* The envelope fields go with the message, so a replay has the live message's shape. */
        if (json_object_size(msgs[i].extra) > 0)
            extras[k] = json_dumps(msgs[i].extra, JSON_COMPACT);
        rows[k] = (vg_store_ack_msg_t){
            .channel = msgs[i].channel,
            .id = msgs[i].id,
            .type = msgs[i].type,
            .data = texts[k],
            .data_len = strlen(texts[k]),
            .extra = extras[k],
            .extra_len = extras[k] ? strlen(extras[k]) : 0,
            .published_ms = now,
            .expires_ms = now + (int64_t)(app->cfg->ack_ttl * 1000),
        };
        k++;
    }
    int rc = k > 0 ? vg_store_ack_append(app->store, rows, k, (size_t)app->cfg->ack_max) : 0;
    for (size_t i = 0; i < k; i++) {
        free(texts[i]);
        free(extras[i]);
    }
    vg_free(extras);
    vg_free(texts);
    vg_free(rows);
    if (rc < 0)
        return VG_ESTORE;
    /* Expired messages go now and then, not on every publish. */
    static _Atomic int64_t next_prune;
    if (k > 0 && now >= next_prune) {
        next_prune = now + 60000;
        vg_store_ack_prune(app->store, now, (size_t)app->cfg->ack_max);
    }
    return 0;
}

/* The members of the stored envelope object {"a":1,"b":2} as `"a":1,"b":2,` (written where the
 * hub writes them in a live message: after "timestamp").  Nothing for NULL or {}. */
static void append_stored_extra(vg_buf_t *b, const char *extra, size_t len)
{
    if (extra == NULL || len < 3 || extra[0] != '{' || extra[len - 1] != '}')
        return;
    vg_buf_append(b, extra + 1, len - 2);
    vg_buf_append_str(b, ",");
}

/* The message as delivered live, rebuilt from the store (it has no offset there). */
static char *encode_stored(const vg_store_ack_msg_t *m)
{
    vg_buf_t b = VG_BUF_INIT;
    char ts[32];
    vg_format_rfc3339(m->published_ms, ts);
    vg_buf_append_str(&b, "{\"type\":\"");
    vg_buf_append_json_escaped(&b, m->type ? m->type : "message",
                               strlen(m->type ? m->type : "message"));
    vg_buf_append_str(&b, "\",\"channel\":\"");
    vg_buf_append_json_escaped(&b, m->channel, strlen(m->channel));
    vg_buf_printf(&b, "\",\"timestamp\":\"%s\",", ts);
    append_stored_extra(&b, m->extra, m->extra_len);
    vg_buf_append_str(&b, "\"id\":\"");
    vg_buf_append_json_escaped(&b, m->id, strlen(m->id));
    vg_buf_append_str(&b, "\",\"redelivered\":true,\"data\":");
    vg_buf_append(&b, m->data, m->data_len);
    vg_buf_append(&b, "}", 2); /* with the NUL */
    return b.base;
}

typedef struct replay_s {
    vg_session_t *s;
    int64_t recent_ms;
} replay_t;

static int on_pending(const vg_store_ack_msg_t *m, void *arg)
{
    replay_t *r = arg;
    vg_session_t *s = r->s;
    char *text = encode_stored(m);
    vg_chunk_t *frame = vg_ws_frame_new(VG_WS_OP_TEXT, text, strlen(text));
    vg_free(text);
    vg_session_deliver(s, m->channel, strlen(m->channel), m->type ? m->type : "", 0, frame);
    vg_chunk_unref(frame);
    if (m->published_ms >= r->recent_ms) {
        s->replayed = vg_realloc(s->replayed, (s->num_replayed + 1) * sizeof(char *));
        s->replayed[s->num_replayed++] = vg_strdup(m->id);
    }
    return 0;
}

void vg_acks_replay(vg_session_t *s, const char *const *patterns, size_t n)
{
    int any = 0;
    for (size_t i = 0; i < n && !any; i++)
        for (size_t k = 0; k < s->app->ack_channels.count && !any; k++) {
            const char *a = s->app->ack_channels.items[k];
            any = vg_channel_covers(a, strlen(a), patterns[i], strlen(patterns[i])) ||
                  vg_channel_covers(patterns[i], strlen(patterns[i]), a, strlen(a));
        }
    if (!any)
        return;
    int64_t now = vg_wall_ms();
    replay_t r = {s, now - REPLAY_OVERLAP_MS};
    s->replayed_until = uv_now(&s->conn->worker->loop) + REPLAY_OVERLAP_MS;
    if (vg_store_ack_pending(s->app->store, s->identity.user, patterns, n, now, 0, 0, on_pending,
                             &r) < 0)
        vg_warning("conn %" PRIu64 ": pending acknowledged messages could not be read",
                   s->conn->id);
}

int vg_session_already_replayed(vg_session_t *s, const char *id)
{
    if (s->num_replayed == 0)
        return 0;
    if (uv_now(&s->conn->worker->loop) > s->replayed_until) {
        vg_acks_forget_replayed(s);
        return 0;
    }
    for (size_t i = 0; i < s->num_replayed; i++) {
        if (strcmp(s->replayed[i], id) == 0) {
            vg_free(s->replayed[i]);
            s->replayed[i] = s->replayed[--s->num_replayed];
            return 1;
        }
    }
    return 0;
}

void vg_acks_forget_replayed(vg_session_t *s)
{
    for (size_t i = 0; i < s->num_replayed; i++)
        vg_free(s->replayed[i]);
    vg_free(s->replayed);
    s->replayed = NULL;
    s->num_replayed = 0;
}

int vg_acks_ack(vg_app_t *app, const char *user, const char *id)
{
    return vg_store_ack(app->store, user, id) < 0 ? VG_ESTORE : 0;
}

static int on_listed(const vg_store_ack_msg_t *m, void *arg)
{
    char *text = encode_stored(m);
    json_array_append_new(arg, json_loads(text, 0, NULL));
    vg_free(text);
    return 0;
}

json_t *vg_acks_list(vg_app_t *app, const char *user, const vg_patterns_t *allowed, size_t limit)
{
    json_t *list = json_array();
    if (vg_store_ack_pending(app->store, user, (const char *const *)allowed->items, allowed->count,
                             vg_wall_ms(), 0, limit, on_listed, list) < 0) {
        json_decref(list);
        return NULL;
    }
    return list;
}
