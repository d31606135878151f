/*
 * The native envelope of a published message, and the list of missed messages a recovery
 * returns (core/message.h).
 */
#include "core/message.h"

#include <stdlib.h>
#include <string.h>

#include "proto/ws.h"
#include "util/alloc.h"
#include "util/buf.h"
#include "util/clock.h"

/* The publisher's envelope fields, each followed by a comma. */
static void append_extra(vg_buf_t *b, json_t *extra)
{
    const char *key;
    json_t *value;
    json_object_foreach(extra, key, value)
    {
        char *text = json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY);
        if (text == NULL)
            continue;
        vg_buf_append_str(b, "\"");
        vg_buf_append_json_escaped(b, key, strlen(key));
        vg_buf_append_str(b, "\":");
        vg_buf_append_str(b, text);
        vg_buf_append_str(b, ",");
        free(text);
    }
}

vg_chunk_t *vg_message_encode(const vg_publish_t *m, uint64_t offset, int64_t time_ms)
{
    vg_buf_t b = VG_BUF_INIT;
    char ts[32];
    vg_format_rfc3339(time_ms, ts);
    vg_buf_append_str(&b, "{\"type\":\"");
    vg_buf_append_json_escaped(&b, m->type, strlen(m->type));
    vg_buf_append_str(&b, "\",\"channel\":\"");
    vg_buf_append_json_escaped(&b, m->channel, strlen(m->channel));
    vg_buf_printf(&b, "\",\"offset\":%llu,\"timestamp\":\"%s\",", (unsigned long long)offset, ts);
    append_extra(&b, m->extra);
    if (m->id != NULL) {
        vg_buf_append_str(&b, "\"id\":\"");
        vg_buf_append_json_escaped(&b, m->id, strlen(m->id));
        vg_buf_append_str(&b, "\",");
    }
    vg_buf_append_str(&b, "\"data\":");
    char *data = m->data ? json_dumps(m->data, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    vg_buf_append_str(&b, data ? data : "null");
    free(data);
    vg_buf_append_str(&b, "}");
    vg_chunk_t *frame = vg_ws_frame_new(VG_WS_OP_TEXT, b.base, b.len);
    vg_buf_dispose(&b);
    return frame;
}

void vg_missed_push(vg_missed_t *m, const char *channel, uint64_t offset, const char *type,
                    vg_chunk_t *frame)
{
    m->frames = vg_realloc(m->frames, (m->count + 1) * sizeof(*m->frames));
    m->types = vg_realloc(m->types, (m->count + 1) * sizeof(*m->types));
    m->offsets = vg_realloc(m->offsets, (m->count + 1) * sizeof(*m->offsets));
    m->channels = vg_realloc(m->channels, (m->count + 1) * sizeof(*m->channels));
    m->offsets[m->count] = offset;
    m->channels[m->count] = vg_strdup(channel);
    m->frames[m->count] = vg_chunk_ref(frame);
    m->types[m->count++] = vg_strdup(type);
}

void vg_missed_dispose(vg_missed_t *missed)
{
    for (size_t i = 0; i < missed->count; i++) {
        vg_chunk_unref(missed->frames[i]);
        vg_free(missed->types[i]);
        vg_free(missed->channels[i]);
    }
    vg_free(missed->frames);
    vg_free(missed->types);
    vg_free(missed->channels);
    vg_free(missed->offsets);
    memset(missed, 0, sizeof(*missed));
    missed->count = 0;
}
