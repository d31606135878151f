/*
 * POST /api/publish: one message or a batch, validated whole before anything is published;
 * messages of acknowledged-delivery channels are committed to the store first.
 */
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/internal.h"
#include "core/acks.h"
#include "core/hub.h"
#include "proto/channel.h"
#include "util/alloc.h"
#include "util/error.h"

/* Fields of a published message that vigil itself sets or reads; any other top-level field is
 * the publisher's own envelope field, delivered beside them (docs/profiles/: OpenEye's
 * camera_event carries camera_id and event_type at the top level). */
static const char *const envelope_fields[] = {"channel", "type",      "data",    "id",
                                              "offset",  "timestamp", "messages"};

static int collect_extra(json_t *m, const char *prefix, vg_publish_t *out, char *err, size_t errlen)
{
    const char *key;
    json_t *value;
    json_object_foreach(m, key, value)
    {
        size_t i = 0;
        while (i < VG_ARRAY_SIZE(envelope_fields) && strcmp(key, envelope_fields[i]) != 0)
            i++;
        if (i < VG_ARRAY_SIZE(envelope_fields))
            continue;
        if (strlen(key) > VG_API_MAX_TYPE_LEN) {
            snprintf(err, errlen, "%s%.40s...: envelope field names are at most %d characters",
                     prefix, key, VG_API_MAX_TYPE_LEN);
            return -1;
        }
        if (out->extra == NULL)
            out->extra = json_object();
        json_object_set(out->extra, key, value);
    }
    return 0;
}

/* Checks one message object; on error writes a message naming the field (prefix + name). */
static int check_message(json_t *m, const char *prefix, vg_publish_t *out, char *err, size_t errlen)
{
    if (!json_is_object(m)) {
        snprintf(err, errlen, "%s must be an object", prefix[0] ? prefix : "message");
        return -1;
    }
    json_t *channel = json_object_get(m, "channel"), *type = json_object_get(m, "type");
    if (!json_is_string(channel)) {
        snprintf(err, errlen, "%schannel: required string", prefix);
        return -1;
    }
    const char *why =
        vg_channel_check_name(json_string_value(channel), json_string_length(channel));
    if (why != NULL) {
        snprintf(err, errlen, "%schannel: %s", prefix, why);
        return -1;
    }
    if (strncmp(json_string_value(channel), "state.", 6) == 0) {
        snprintf(err, errlen, "%schannel: the state. prefix is reserved for state documents",
                 prefix);
        return -1;
    }
    if (!json_is_string(type) || json_string_length(type) == 0 ||
        json_string_length(type) > VG_API_MAX_TYPE_LEN) {
        snprintf(err, errlen, "%stype: required string of 1 to %d characters", prefix,
                 VG_API_MAX_TYPE_LEN);
        return -1;
    }
    if (json_object_get(m, "data") == NULL) {
        snprintf(err, errlen, "%sdata: required (any JSON value, null included)", prefix);
        return -1;
    }
    out->channel = json_string_value(channel);
    out->type = json_string_value(type);
    out->data = json_object_get(m, "data");
    out->extra = NULL;
    return collect_extra(m, prefix, out, err, errlen);
}

void vg__api_handle_publish(vg_session_t *s, vg_http_request_t *req, const vg_route_match_t *rm)
{
    (void)rm;
    vg_identity_t id;
    int is_key;
    if (vg__api_require(s, req, 1, 0, &id, &is_key) != 0)
        return;
    vg_identity_dispose(&id);
    if (!is_key) {
        vg_session_respond_error(s, 403, "forbidden", "publishing needs the API key", NULL);
        return;
    }
    json_t *body = vg__api_parse_body(s, req);
    if (body == NULL)
        return;
    json_t *batch = json_object_get(body, "messages");
    size_t n = batch != NULL ? json_array_size(batch) : 1;
    char err[300];
    if (batch != NULL && (!json_is_array(batch) || n == 0 || n > VG_API_MAX_BATCH)) {
        snprintf(err, sizeof(err), "messages: must be an array of 1 to %d messages",
                 VG_API_MAX_BATCH);
        goto bad;
    }
    vg_publish_t *msgs = vg_malloc(n * sizeof(*msgs));
    char(*ids)[33] = vg_malloc(n * sizeof(*ids));
    for (size_t i = 0; i < n; i++) {
        char prefix[32] = "";
        const char *why = NULL;
        json_t *m = batch ? json_array_get(batch, i) : body;
        if (batch != NULL)
            snprintf(prefix, sizeof(prefix), "messages[%zu].", i);
        msgs[i].extra = NULL;
        if (check_message(m, prefix, &msgs[i], err, sizeof(err)) != 0 ||
            (vg_acks_prepare(&s->app->acks, m, &msgs[i], ids[i], &why) != 0 &&
             snprintf(err, sizeof(err), "%s%s", prefix, why) > 0)) {
            for (size_t k = 0; k <= i; k++)
                json_decref(msgs[k].extra);
            vg_free(ids);
            vg_free(msgs);
            goto bad;
        }
    }
    /* Acknowledged-delivery messages are durable before anyone hears of them. */
    if (vg_acks_commit(&s->app->acks, msgs, n) != 0) {
        for (size_t k = 0; k < n; k++)
            json_decref(msgs[k].extra);
        vg_free(ids);
        vg_free(msgs);
        json_decref(body);
        vg_session_respond_error(s, 500, "store_failed", "the messages could not be stored", NULL);
        return;
    }
    uint64_t *offsets = vg_malloc(n * sizeof(*offsets));
    vg_hub_publish(s->app->hub, msgs, n, offsets);
    for (size_t i = 0; i < n; i++)
        json_decref(msgs[i].extra);
    json_t *list = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(list, json_integer((json_int_t)offsets[i]));
    /* Messages of ack channels have ids; the answer lists them when there are any. */
    json_t *id_list = NULL;
    for (size_t i = 0; i < n; i++)
        if (msgs[i].id != NULL && id_list == NULL)
            id_list = json_array();
    for (size_t i = 0; id_list != NULL && i < n; i++)
        json_array_append_new(id_list, msgs[i].id ? json_string(msgs[i].id) : json_null());
    vg_free(offsets);
    vg_free(ids);
    vg_free(msgs);
    json_decref(body);
    json_t *answer = json_pack("{s:o}", "offsets", list);
    if (id_list != NULL)
        json_object_set_new(answer, "ids", id_list);
    vg__api_respond_json(s, 200, answer);
    return;
bad:
    json_decref(body);
    vg_session_respond_error(s, 400, "invalid_message", err, NULL);
}
