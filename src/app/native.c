/*
 * /ws: vigil's native protocol (DESIGN.md section 3).  JSON text frames.  This module holds the
 * connection-level part: the connection_status welcome, ping/pong in both spellings the seed
 * clients use (the text "ping" and {"type":"ping"}), and an error answer for malformed or
 * unknown requests that leaves the connection open.  Channels and subscriptions build on it.
 */
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>

#include "app/app.h"
#include "util/buf.h"

static const char *const native_subprotocols[] = {"vigil.v1", NULL};

static double now_seconds(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

static void send_json(vg_session_t *s, json_t *msg)
{
    char *text = json_dumps(msg, JSON_COMPACT);
    if (text != NULL) {
        vg_session_ws_send_text(s, text, strlen(text));
        free(text);
    }
    json_decref(msg);
}

/* {"type":"error","code":...,"message":...,"id":<the request's id, if it had one>} */
static void send_error(vg_session_t *s, const char *code, const char *message, json_t *id)
{
    json_t *msg = json_pack("{s:s, s:s, s:s}", "type", "error", "code", code, "message", message);
    if (id != NULL)
        json_object_set(msg, "id", id);
    send_json(s, msg);
}

static void on_open(vg_session_t *s)
{
    char id[32];
    snprintf(id, sizeof(id), "%016" PRIx64, s->conn->id);
    send_json(s, json_pack("{s:s, s:s, s:s, s:s, s:f}", "type", "connection_status", "status",
                           "connected", "connection_id", id, "message",
                           "Connected to vigil", "timestamp", now_seconds()));
}

static void handle_request(vg_session_t *s, json_t *req)
{
    json_t *id = json_object_get(req, "id");
    const char *type = json_string_value(json_object_get(req, "type"));
    if (type == NULL) {
        send_error(s, "bad_request", "a request needs a string field \"type\"", id);
    } else if (strcmp(type, "ping") == 0) {
        json_t *pong = json_pack("{s:s, s:f}", "type", "pong", "timestamp", now_seconds());
        if (id != NULL)
            json_object_set(pong, "id", id);
        send_json(s, pong);
    } else {
        char message[160];
        snprintf(message, sizeof(message), "unknown request type \"%.100s\"", type);
        send_error(s, "unknown_type", message, id);
    }
}

static void on_message(vg_session_t *s, int opcode, uint8_t *data, size_t len)
{
    if (opcode != VG_WS_OP_TEXT) {
        send_error(s, "bad_request", "requests are JSON text messages", NULL);
        return;
    }
    if (len == 4 && memcmp(data, "ping", 4) == 0) {
        vg_session_ws_send_text(s, "pong", 4);
        return;
    }
    json_error_t err;
    json_t *req = json_loadb((const char *)data, len, JSON_REJECT_DUPLICATES, &err);
    if (req == NULL || !json_is_object(req)) {
        char message[200];
        snprintf(message, sizeof(message), "malformed JSON: %s",
                 req == NULL ? err.text : "expected an object");
        send_error(s, "bad_json", message, NULL);
    } else {
        handle_request(s, req);
    }
    json_decref(req);
}

const vg_ws_endpoint_t vg_native_endpoint = {
    .subprotocols = native_subprotocols,
    .on_open = on_open,
    .on_message = on_message,
    .on_close = NULL,
};
