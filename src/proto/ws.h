/*
 * WebSocket (RFC 6455) codec and message layer.  Does no I/O (wslay layering): bytes read from
 * the socket go in through vg_ws_feed; complete messages come out through callbacks; frames the
 * layer itself must send (pong, close) come out through the `send` callback for the owner to
 * queue on its socket.
 *
 * Rules enforced on input (server side):
 *   - every client frame must be masked                                       -> close 1002
 *   - RSV1-3 set (no extension is negotiated)                                   -> close 1002
 *   - reserved opcodes (3-7, 11-15)                                             -> close 1002
 *   - control frame with payload > 125 or FIN clear                             -> close 1002
 *   - continuation with no message in progress; new data frame inside one      -> close 1002
 *   - 64-bit length with the most significant bit set                           -> close 1002
 *   - invalid UTF-8 in a text message, detected as early as possible (on each piece of
 *     payload as it arrives, even across fragments and partial reads)           -> close 1007
 *   - message (sum of fragments) over max_message_size                          -> close 1009
 *   - close frame with a 1-byte payload, an invalid code (<1000, 1004-1006, 1015, 1016-2999
 *     unassigned, >= 5000) or a reason that is not UTF-8                        -> close 1002/1007
 * Ping is answered with a pong carrying the same payload (unless the owner's on_ping declines).  A
 * close frame from the peer is answered with a close frame echoing its code (or none if it had
 * none) and then on_close.
 */
#ifndef VG_PROTO_WS_H
#define VG_PROTO_WS_H

#include <stddef.h>
#include <stdint.h>

#include "proto/utf8.h"
#include "util/buf.h"
#include "util/chunk.h"

enum vg_ws_opcode {
    VG_WS_OP_CONT = 0x0,
    VG_WS_OP_TEXT = 0x1,
    VG_WS_OP_BINARY = 0x2,
    VG_WS_OP_CLOSE = 0x8,
    VG_WS_OP_PING = 0x9,
    VG_WS_OP_PONG = 0xA,
};

/* Close codes (RFC 6455 section 7.4.1). */
enum vg_ws_close_code {
    VG_WS_CLOSE_NORMAL = 1000,
    VG_WS_CLOSE_GOING_AWAY = 1001,
    VG_WS_CLOSE_PROTOCOL = 1002,
    VG_WS_CLOSE_UNSUPPORTED = 1003,
    VG_WS_CLOSE_NO_STATUS = 1005, /* never sent: reported when the peer's close had no code */
    VG_WS_CLOSE_ABNORMAL = 1006,  /* never sent: reported when TCP dropped without a close */
    VG_WS_CLOSE_BAD_DATA = 1007,
    VG_WS_CLOSE_POLICY = 1008,
    VG_WS_CLOSE_TOO_BIG = 1009,
    VG_WS_CLOSE_INTERNAL = 1011,
    VG_WS_CLOSE_TRY_AGAIN = 1013,
};

typedef struct vg_ws_s vg_ws_t;

typedef struct vg_ws_callbacks_s {
    /* A complete data message (opcode TEXT or BINARY; text is valid UTF-8).  `data` is valid
     * only during the call; the callee may modify it in place. */
    void (*on_message)(vg_ws_t *ws, int opcode, uint8_t *data, size_t len);
    /* A pong arrived (heartbeat bookkeeping).  May be NULL. */
    void (*on_pong)(vg_ws_t *ws, const uint8_t *data, size_t len);
    /* The layer wants these bytes (one or more complete frames) written to the peer, in order
     * with everything else the owner sends.  The bytes are valid only during the call. */
    void (*send)(vg_ws_t *ws, const uint8_t *frame, size_t len);
    /* The WebSocket is finished: the close handshake completed (peer's close answered, or the
     * peer answered ours) or the connection failed on a protocol error (the close frame with
     * `code` has already been passed to send).  The owner closes TCP once its queue is
     * flushed.  Called exactly once; afterwards vg_ws_feed ignores input.  `code` is the code
     * received (or sent, on failure); 1005 when the peer's close carried none.  `reason` is
     * NUL-terminated, valid only during the call. */
    void (*on_close)(vg_ws_t *ws, int code, const char *reason, int failed);
    /* A ping arrived.  Returns nonzero to answer it with a pong, zero to leave it unanswered
     * (the owner's inbound rate limit; it may also vg_ws_start_close).  May be NULL: every ping
     * is answered. */
    int (*on_ping)(vg_ws_t *ws, const uint8_t *data, size_t len);
    /* Sends a pong frame, like `send`; but only the newest pong matters (RFC 6455 section
     * 5.5.3 lets an endpoint answer only the most recent of several pings), so the owner may
     * replace a pong it queued and has not written yet with this one: a peer that pings and
     * never reads then cannot make it queue pongs without limit.  May be NULL: `send` is
     * used. */
    void (*send_pong)(vg_ws_t *ws, const uint8_t *frame, size_t len);
} vg_ws_callbacks_t;

enum vg_ws_state { VG_WS_OPEN = 0, VG_WS_CLOSE_SENT, VG_WS_CLOSED };

struct vg_ws_s {
    void *data; /* public: the owner's pointer */
    /* read-only */
    int state;         /* enum vg_ws_state */
    uint64_t bytes_in; /* payload bytes received (for stats) */
    /* private */
    const vg_ws_callbacks_t *_cb;
    size_t _max_message_size;
    /* frame parser */
    int _fstate;       /* position inside the frame header/payload */
    uint8_t _hdr[14];  /* header bytes gathered so far */
    size_t _hdr_len;   /* bytes gathered in _hdr */
    size_t _hdr_need;  /* bytes the complete header needs */
    int _fin, _opcode; /* of the current frame */
    uint8_t _mask[4];
    uint64_t _payload_len; /* of the current frame */
    uint64_t _payload_got; /* of the current frame, so far */
    /* message layer */
    int _msg_opcode; /* TEXT/BINARY of the message in progress, 0 if none */
    size_t _msg_len; /* payload bytes of the message in progress so far (all fragments) */
    vg_buf_t _msg;   /* reassembled payload of the message in progress */
    vg_buf_t _ctl;   /* payload of the control frame in progress */
    vg_utf8_t _utf8; /* incremental validator for the text message in progress */
};

/* Prepares `ws` for a new connection.  max_message_size bounds one reassembled message. */
void vg_ws_init(vg_ws_t *ws, const vg_ws_callbacks_t *cb, size_t max_message_size, void *data);
/* Releases the buffers.  The struct can be vg_ws_init'ed again. */
void vg_ws_dispose(vg_ws_t *ws);

/* Consumes bytes read from the peer.  `data` is modified (unmasked in place).  Calls the
 * callbacks as frames complete; it may call on_close, after which it stops and ignores the rest.
 * Returns 0, VG_ECLOSED once the layer has reached VG_WS_CLOSED, or VG_EWS_PROTOCOL,
 * VG_EWS_UTF8, VG_EWS_TOO_BIG for the failure that just closed it (its close frame has been
 * sent and on_close called). */
int vg_ws_feed(vg_ws_t *ws, uint8_t *data, size_t len);

/* Starts the closing handshake from the server side: sends a close frame with `code` and
 * `reason` (truncated to fit 123 bytes on a UTF-8 boundary).  on_close follows when the peer
 * answers; the owner applies its own timeout.  No-op unless the state is VG_WS_OPEN. */
void vg_ws_start_close(vg_ws_t *ws, int code, const char *reason);

/* Frame encoding (server to client: never masked). */
#define VG_WS_MAX_HEADER 10
/* Writes the header of a single FIN frame into out (VG_WS_MAX_HEADER bytes of room); returns
 * its length. */
size_t vg_ws_encode_header(uint8_t *out, int opcode, uint64_t payload_len);
/* Returns a new chunk (one reference, owned by the caller) holding one complete FIN frame. */
vg_chunk_t *vg_ws_frame_new(int opcode, const void *payload, size_t len);
/* Returns a new chunk holding a close frame with code and reason (reason may be NULL). */
vg_chunk_t *vg_ws_close_frame_new(int code, const char *reason);

/* The payload of a complete server frame (unmasked) built by the functions above. */
void vg_ws_frame_payload(const vg_chunk_t *frame, const uint8_t **payload, size_t *len);

/* Handshake: writes the Sec-WebSocket-Accept value for the client's Sec-WebSocket-Key into
 * out (28 characters and a NUL). */
void vg_ws_accept_key(const char *key, size_t key_len, char out[29]);

/* Returns nonzero when `code` may appear in a close frame received from a peer. */
int vg_ws_close_code_valid(int code);

#endif
