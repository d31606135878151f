/*
 * /echo (enabled with --echo): sends every message back unchanged, text as text and binary as
 * binary.  It exists for the RFC 6455 conformance suite and the benchmark.
 */
#include "transport/transport.h"

static const char *const echo_subprotocols[] = {"echo", NULL};

static void on_open(vg_session_t *s)
{
    (void)s;
}

static void on_message(vg_session_t *s, int opcode, uint8_t *data, size_t len)
{
    vg_chunk_t *frame = vg_ws_frame_new(opcode, data, len);
    vg_session_ws_send(s, frame);
    vg_chunk_unref(frame);
}

const vg_ws_endpoint_t vg_echo_endpoint = {
    .path = "/echo",
    .authenticate = 0,
    .subprotocols = echo_subprotocols,
    .on_open = on_open,
    .on_message = on_message,
    .on_close = NULL,
    .open_when_refused = 1, /* conformance tests run on it whatever the fallback tests refuse */
};
