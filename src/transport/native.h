/*
 * The native protocol's requests (/ws, docs/PROTOCOL.md), parsed and checked without a
 * connection: native.c acts on what vg_native_parse accepts and answers what it refuses, and
 * tests/fuzz/fuzz-native.c drives it with arbitrary bytes.
 */
#ifndef VG_APP_NATIVE_H
#define VG_APP_NATIVE_H

#include <jansson.h>
#include <stddef.h>

#include "transport/transport.h"
#include "core/hub.h"

/* Channels, event types and recovered positions in one request. */
#define VG_NATIVE_MAX_ITEMS 256

enum vg_native_kind {
    VG_NATIVE_INVALID = 0, /* refused: answer err_code / err_message */
    VG_NATIVE_TEXT_PING,   /* the text "ping" (answered with the text "pong") */
    VG_NATIVE_PING,
    VG_NATIVE_SUBSCRIBE,
    VG_NATIVE_UNSUBSCRIBE,
    VG_NATIVE_REFRESH,
    VG_NATIVE_ACK,
    VG_NATIVE_RPC,
};

typedef struct vg_native_req_s {
    int kind;     /* enum vg_native_kind */
    json_t *root; /* the parsed message (owned), or NULL */
    json_t *id;   /* the request's "id" (borrowed from root), or NULL */
    /* INVALID: the error answer.  The message is always valid UTF-8 (names quoted in it are cut
     * on a character boundary), so the answer can always be encoded and the id answered. */
    const char *err_code; /* static */
    char err_message[320];
    /* SUBSCRIBE, UNSUBSCRIBE (borrowed from root; NULL when absent) */
    json_t *channels;    /* array of at most VG_NATIVE_MAX_ITEMS strings; when subscribing,
                            valid patterns covered by the allowed ones */
    json_t *event_types; /* array of at most VG_NATIVE_MAX_ITEMS strings */
    json_t *since;
    /* SUBSCRIBE with channels: the positions to report and recover (channel points into root) */
    vg_recovery_t rec[VG_NATIVE_MAX_ITEMS];
    size_t num_rec;
    int has_time; /* tr holds a since_time recovery for the request's patterns */
    vg_time_recovery_t tr;
    const char *time_patterns[VG_NATIVE_MAX_ITEMS];
    /* REFRESH */
    const char *token;
    size_t token_len;
    /* ACK */
    const char *message_id;
    /* RPC: an id is required */
    const char *method; /* 1-128 bytes */
    json_t *params;     /* borrowed, may be NULL */
} vg_native_req_t;

/* Parses one text message (valid UTF-8, as the WebSocket layer guarantees; other bytes are
 * refused too) and checks it: shape, field types, sizes, channel names, and for a subscribe that
 * every channel is covered by `allowed` (the user's patterns).  Returns r->kind.  Whatever the
 * outcome, vg_native_req_dispose(r) afterwards. */
int vg_native_parse(vg_native_req_t *r, const char *data, size_t len, const vg_patterns_t *allowed);
void vg_native_req_dispose(vg_native_req_t *r);

#endif
