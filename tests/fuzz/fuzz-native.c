/*
 * libFuzzer driver for the native protocol's requests (src/app/native.c, vg_native_parse): the
 * JSON a /ws client sends, parsed and checked exactly as the server does before acting on it.
 *
 * Input: one text message, copied into an allocation of exactly its length so ASan catches any
 * read past it.  The allowed patterns are fixed ("cameras.>", "alerts.*", "state.>").
 *
 * Invariants, whatever the input:
 *   - every refused request has an error code and a message that is valid UTF-8 and encodes to
 *     JSON with the request's id: a request is never left unanswered (issue 15);
 *   - the request's id is the "id" member of the object, when it is one;
 *   - an accepted subscribe names at most VG_NATIVE_MAX_ITEMS valid channels, each covered by
 *     the allowed patterns; each position to recover is an exact channel the request covers;
 *     since_time patterns are the request's patterns;
 *   - an accepted rpc has an id and a method of 1-128 bytes; an ack a message id; a refresh a
 *     token.
 *
 * CHECK aborts even in builds with NDEBUG, so libFuzzer sees every broken invariant.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/channel.h"
#include "transport/native.h"
#include "proto/utf8.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond);           \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static char p_cameras[] = "cameras.>", p_alerts[] = "alerts.*", p_state[] = "state.>";
static char *allowed_items[] = {p_cameras, p_alerts, p_state};
static const vg_patterns_t allowed = {allowed_items, 3};

static int covers_any(const char *name, size_t len)
{
    for (size_t i = 0; i < allowed.count; i++)
        if (vg_channel_covers(allowed.items[i], strlen(allowed.items[i]), name, len))
            return 1;
    return 0;
}

/* The error answer native.c sends, built the same way: it must encode. */
static void check_refusal(const vg_native_req_t *r)
{
    CHECK(r->err_code != NULL && r->err_code[0] != '\0');
    size_t n = strlen(r->err_message);
    CHECK(n > 0 && n < sizeof(r->err_message));
    CHECK(vg_utf8_valid((const uint8_t *)r->err_message, n));
    json_t *msg = json_pack("{s:s, s:s, s:s}", "type", "error", "code", r->err_code, "message",
                            r->err_message);
    CHECK(msg != NULL);
    if (r->id != NULL)
        CHECK(json_object_set(msg, "id", r->id) == 0);
    char *text = json_dumps(msg, JSON_COMPACT);
    CHECK(text != NULL);
    free(text);
    json_decref(msg);
}

static int in_request(const vg_native_req_t *r, const char *name)
{
    size_t i;
    json_t *v;
    json_array_foreach(r->channels, i, v)
    {
        if (vg_channel_match(json_string_value(v), json_string_length(v), name, strlen(name)))
            return 1;
    }
    return 0;
}

/* Unsubscribing names anything (removing what is not there is a no-op); subscribing only what
 * is valid and allowed. */
static void check_subscribe(const vg_native_req_t *r)
{
    CHECK(r->channels != NULL || r->event_types != NULL);
    if (r->event_types != NULL)
        CHECK(json_is_array(r->event_types) &&
              json_array_size(r->event_types) <= VG_NATIVE_MAX_ITEMS);
    if (r->channels == NULL)
        return;
    CHECK(json_is_array(r->channels) && json_array_size(r->channels) <= VG_NATIVE_MAX_ITEMS);
    if (r->kind == VG_NATIVE_UNSUBSCRIBE)
        return;
    size_t i;
    json_t *v;
    json_array_foreach(r->channels, i, v)
    {
        const char *name = json_string_value(v);
        CHECK(name != NULL);
        CHECK(vg_channel_check_pattern(name, json_string_length(v)) == NULL);
        CHECK(covers_any(name, json_string_length(v)));
    }
    CHECK(r->num_rec <= VG_NATIVE_MAX_ITEMS);
    for (size_t k = 0; k < r->num_rec; k++) {
        const char *ch = r->rec[k].channel;
        CHECK(ch != NULL && vg_channel_check_name(ch, strlen(ch)) == NULL);
        CHECK(in_request(r, ch));
    }
    if (r->has_time) {
        CHECK(r->tr.num_patterns > 0 && r->tr.num_patterns <= json_array_size(r->channels));
        for (size_t k = 0; k < r->tr.num_patterns; k++)
            CHECK(vg_channel_is_pattern(r->tr.patterns[k], strlen(r->tr.patterns[k])));
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *copy = malloc(size ? size : 1);
    vg_native_req_t *r = malloc(sizeof(*r));
    if (copy == NULL || r == NULL)
        abort();
    memcpy(copy, data, size);
    int kind = vg_native_parse(r, copy, size, &allowed);
    CHECK(kind == r->kind && kind >= VG_NATIVE_INVALID && kind <= VG_NATIVE_RPC);
    if (json_is_object(r->root))
        CHECK(r->id == json_object_get(r->root, "id"));
    else
        CHECK(r->id == NULL);
    switch (kind) {
    case VG_NATIVE_INVALID: check_refusal(r); break;
    case VG_NATIVE_TEXT_PING: CHECK(size == 4 && memcmp(copy, "ping", 4) == 0); break;
    case VG_NATIVE_PING: CHECK(json_is_object(r->root)); break;
    case VG_NATIVE_SUBSCRIBE:
    case VG_NATIVE_UNSUBSCRIBE: check_subscribe(r); break;
    case VG_NATIVE_REFRESH: CHECK(r->token != NULL && strlen(r->token) <= r->token_len); break;
    case VG_NATIVE_ACK: CHECK(r->message_id != NULL); break;
    case VG_NATIVE_RPC:
        CHECK(r->id != NULL && r->method != NULL);
        CHECK(strlen(r->method) >= 1 && strlen(r->method) <= 128);
        break;
    }
    vg_native_req_dispose(r);
    free(r);
    free(copy);
    return 0;
}
