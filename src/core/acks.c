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

#include "core/acks.h"
#include "proto/channel.h"
#include "store/store.h"
#include "util/alloc.h"
#include "util/buf.h"
#include "util/clock.h"
#include "util/error.h"
#include "util/log.h"

#define MAX_ID_LEN 128

int vg_acks_is_ack_channel(const vg_acks_t *a, const char *channel)
{
    return vg_patterns_match(a->channels, channel, strlen(channel));
}

int vg_acks_may_cover(const vg_acks_t *a, const char *const *patterns, size_t n)
{
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; k < a->channels->count; k++) {
            const char *c = a->channels->items[k];
            if (vg_channel_covers(c, strlen(c), patterns[i], strlen(patterns[i])) ||
                vg_channel_covers(patterns[i], strlen(patterns[i]), c, strlen(c)))
                return 1;
        }
    return 0;
}

static void random_id(char out[33])
{
    unsigned char raw[16];
    if (RAND_bytes(raw, sizeof(raw)) != 1)
        abort(); /* no randomness: nothing safe to do */
    for (size_t i = 0; i < sizeof(raw); i++)
        snprintf(out + 2 * i, 3, "%02x", raw[i]);
}

int vg_acks_prepare(const vg_acks_t *a, json_t *msg, vg_publish_t *p, char id_buf[33],
                    const char **err)
{
    p->id = NULL;
    if (!vg_acks_is_ack_channel(a, p->channel))
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

int vg_acks_commit(vg_acks_t *a, const vg_publish_t *msgs, size_t n)
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
            .expires_ms = now + (int64_t)(a->ttl_seconds * 1000),
        };
        k++;
    }
    int rc = k > 0 ? vg_store_ack_append(a->store, rows, k, a->max) : 0;
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
        vg_store_ack_prune(a->store, now, a->max);
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
char *vg_acks_encode_stored(const vg_store_ack_msg_t *m)
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

int vg_acks_ack(vg_acks_t *a, const char *user, const char *id)
{
    return vg_store_ack(a->store, user, id) < 0 ? VG_ESTORE : 0;
}

static int on_listed(const vg_store_ack_msg_t *m, void *arg)
{
    char *text = vg_acks_encode_stored(m);
    json_array_append_new(arg, json_loads(text, 0, NULL));
    vg_free(text);
    return 0;
}

json_t *vg_acks_list(vg_acks_t *a, const char *user, const vg_patterns_t *allowed, size_t limit)
{
    json_t *list = json_array();
    if (vg_store_ack_pending(a->store, user, (const char *const *)allowed->items, allowed->count,
                             vg_wall_ms(), 0, limit, on_listed, list) < 0) {
        json_decref(list);
        return NULL;
    }
    return list;
}
