/*
 * Phase 10 (seed 002) on /api/ws/events.  The client sends the text "ping" every 30 s and gets
 * "pong"; the server pushes {"type":"event","data":{...}} for every message of
 * --phase10-channels (data is what the backend published) and {"type":"status","data":{...}}
 * with the whole --phase10-status state document whenever it changes (and once on connect, so a
 * new dashboard does not wait for the next change).  Seed 002 had no authentication; vigil asks
 * for a token unless --phase10-auth false.
 */
#include <string.h>

#include "profiles/profiles.h"
#include "core/state.h"
#include "util/alloc.h"

#define STATUS_CHANNEL "phase10.status"

/* {"type":"event"|"status","data":<the published data>}: nothing else of vigil's envelope. */
static vg_chunk_t *render(const vg_delivery_t *d)
{
    json_t *native = vg_profile_parse(d);
    if (native == NULL)
        return NULL;
    /* The status document's feed, or a backend that publishes its broadcast_status() calls as
     * messages of type "status" on --phase10-channels. */
    int is_status = (d->channel_len == strlen(STATUS_CHANNEL) &&
                     memcmp(d->channel, STATUS_CHANNEL, d->channel_len) == 0) ||
                    strcmp(d->type, "status") == 0;
    json_t *data = json_object_get(native, "data");
    json_t *msg = json_pack("{s:s, s:O}", "type", is_status ? "status" : "event", "data",
                            data ? data : json_null());
    json_decref(native);
    return vg_profile_frame(msg);
}

static const vg_format_t phase10_format = {"phase10", render};

typedef struct phase10_s {
    vg_ws_endpoint_t endpoint;
    vg_endpoint_policy_t policy;
} phase10_t;

static void send_current_status(vg_session_t *s)
{
    uint64_t version;
    json_t *doc = vg_state_get(s->app->state, s->app->cfg->phase10_status, &version);
    if (doc != NULL)
        vg_profile_send(s, json_pack("{s:s, s:o}", "type", "status", "data", doc));
}

static void on_open(vg_session_t *s)
{
    vg_profile_subscribe(s, s->app->cfg->phase10_channels);
    vg_subs_add(vg_hub_subs(s->conn->worker), &s->subscriber, STATUS_CHANNEL,
                strlen(STATUS_CHANNEL));
    vg_session_subscriptions_changed(s);
    send_current_status(s);
}

/* The seed's client only ever sends "ping"; {"type":"ping"} is answered the same way. */
static void on_message(vg_session_t *s, int opcode, uint8_t *data, size_t len)
{
    int bad;
    json_t *req = vg_profile_request(s, opcode, data, len, &bad);
    const char *type = json_string_value(json_object_get(req, "type"));
    if (type != NULL && strcmp(type, "ping") == 0)
        vg_profile_send(s, json_pack("{s:s}", "type", "pong"));
    else if (req != NULL || bad)
        vg_profile_send(s, json_pack("{s:s, s:s, s:s}", "type", "error", "code", "bad_request",
                                     "message", "this endpoint only answers \"ping\""));
    json_decref(req);
}

/* A "{user}" in --phase10-channels stands for the token's sub: a sub that cannot be one channel
 * segment ("*", "a.>") is refused, not subscribed to other users' channels. */
static int admit(vg_session_t *s, const char **reason)
{
    return vg_profile_admit_user(s, s->app->cfg->phase10_channels, reason);
}

static int init(vg_app_t *app, void **state, char *err, size_t errlen)
{
    (void)err;
    (void)errlen;
    phase10_t *p = vg_calloc(1, sizeof(*p));
    p->policy.anonymous = !app->cfg->phase10_auth;
    p->policy.admit = admit;
    p->endpoint = (vg_ws_endpoint_t){
        .path = "/api/ws/events",
        .authenticate = 1,
        .on_open = on_open,
        .on_message = on_message,
        .format = &phase10_format,
        .policy = &p->policy,
    };
    vg_app_route_ws(app, p->endpoint.path, &p->endpoint);
    char type[] = "status", channel[] = STATUS_CHANNEL;
    vg_state_broadcast_t feed = {
        .name = app->cfg->phase10_status, .type = type, .channel = channel, .on_change = 1};
    vg_state_add_feed(app->state, &feed);
    *state = p;
    return 0;
}

static void dispose(void *state)
{
    vg_free(state);
}

const vg_profile_t vg_profile_phase10 = {"phase10", init, dispose};
