/*
 * Acknowledged-delivery messages replayed to a stream when it subscribes: every message the user
 * has not acked on the channels it asked for, oldest first, before the live stream.  A message
 * published just before the replay may also arrive live once; the ids replayed in the last
 * moments are remembered so that copy is dropped (wsuser.c, on_hub_delivery).
 */
#include <inttypes.h>
#include <string.h>

#include "core/acks.h"
#include "transport/internal.h"
#include "util/alloc.h"
#include "util/clock.h"
#include "util/log.h"

/* A message published this long before a replay may still be on its way to the live path. */
#define REPLAY_OVERLAP_MS 5000

typedef struct replay_s {
    vg_session_t *s;
    int64_t recent_ms;
} replay_t;

static int on_pending(const vg_store_ack_msg_t *m, void *arg)
{
    replay_t *r = arg;
    vg_session_t *s = r->s;
    char *text = vg_acks_encode_stored(m);
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
    if (!vg_acks_may_cover(&s->app->acks, patterns, n))
        return;
    int64_t now = vg_wall_ms();
    replay_t r = {s, now - REPLAY_OVERLAP_MS};
    s->replayed_until = uv_now(&s->conn->worker->loop) + REPLAY_OVERLAP_MS;
    if (vg_store_ack_pending(s->app->store, s->identity.user, patterns, n, now, 0, 0, on_pending,
                             &r) < 0)
        vg_warning("conn %" PRIu64 ": pending acknowledged messages could not be read",
                   s->conn->id);
}
