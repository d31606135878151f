/*
 * Engine.IO v4 and Socket.IO v5 codec: bytes in, packets out, and back.  Does no I/O (wslay
 * layering): the Socket.IO profile (profiles/socketio.c) moves the bytes.
 *
 * Engine.IO packets are one type digit and data: "0{..}" open, "1" close, "2" ping ("2probe"),
 * "3" pong, "4<text>" message, "5" upgrade, "6" noop.  Over WebSocket each packet is one frame (a
 * binary frame is a binary message).  Over HTTP long-polling a payload is packets joined by the
 * record separator 0x1e, a binary message written as "b" + base64.
 *
 * A Socket.IO packet travels as the data of an Engine.IO message:
 *     <type>[<attachments>-][<namespace>,][<ack id>][<JSON>]
 * types 0 CONNECT, 1 DISCONNECT, 2 EVENT, 3 ACK, 4 CONNECT_ERROR, 5 BINARY_EVENT, 6 BINARY_ACK; a
 * namespace other than "/" starts with '/'; binary packets are followed by `attachments`
 * binary Engine.IO messages that replace {"_placeholder":true,"num":N} in the JSON.
 *
 * Errors: every decoder returns 0 or VG_EINVAL and, on error, sets *err to a static text for a
 * log line ("unknown packet type", ...).  Nothing here trusts its input: lengths come with every
 * view and no input is NUL-terminated.
 */
#ifndef VG_PROTO_ENGINEIO_H
#define VG_PROTO_ENGINEIO_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

enum vg_eio_type {
    VG_EIO_OPEN = 0,
    VG_EIO_CLOSE = 1,
    VG_EIO_PING = 2,
    VG_EIO_PONG = 3,
    VG_EIO_MESSAGE = 4,
    VG_EIO_UPGRADE = 5,
    VG_EIO_NOOP = 6,
};

#define VG_EIO_SEPARATOR 0x1e

/* One Engine.IO packet.  data is a view: into the input for text packets, into the caller's
 * scratch buffer for a polling binary packet ("b" + base64), valid until the next decode. */
typedef struct vg_eio_packet_s {
    int type;   /* enum vg_eio_type */
    int binary; /* a binary message (type VG_EIO_MESSAGE): data is raw bytes */
    const char *data;
    size_t len;
} vg_eio_packet_t;

/* Decodes one text packet (a WebSocket text frame, or one piece of a polling payload that does
 * not start with "b").  Returns 0, or VG_EINVAL: empty input, "unknown packet type". */
int vg_eio_decode(const char *s, size_t len, vg_eio_packet_t *out, const char **err);

/* Iterates over the packets of a polling payload.  Initialise with vg_eio_reader_init; each call
 * of vg_eio_reader_next returns 1 with the next packet in *out, 0 at the end, or VG_EINVAL
 * (sticky: later calls return it too).  A binary packet's bytes are decoded into the reader's
 * scratch buffer: *out is valid until the next call.  vg_eio_reader_dispose frees the buffer. */
typedef struct vg_eio_reader_s {
    /* private */
    const char *_p, *_end;
    int _err;
    int _done;
    vg_buf_t _scratch;
} vg_eio_reader_t;

void vg_eio_reader_init(vg_eio_reader_t *r, const char *payload, size_t len);
int vg_eio_reader_next(vg_eio_reader_t *r, vg_eio_packet_t *out, const char **err);
void vg_eio_reader_dispose(vg_eio_reader_t *r);

/* Encoding.  A text packet is its type digit followed by the data ("4" + message). */
void vg_eio_encode(vg_buf_t *out, int type, const char *data, size_t len);
/* Appends one encoded text packet to a polling payload (with the separator unless the payload is
 * empty). */
void vg_eio_payload_append(vg_buf_t *payload, const char *packet, size_t len);
/* Appends a binary message to a polling payload as "b" + base64. */
void vg_eio_payload_append_binary(vg_buf_t *payload, const void *data, size_t len);
/* The open packet: 0{"sid":..,"upgrades":[..],"pingInterval":ms,"pingTimeout":ms,
 * "maxPayload":n}.  upgrades may be NULL when n_upgrades is 0. */
void vg_eio_encode_open(vg_buf_t *out, const char *sid, const char *const *upgrades,
                        size_t n_upgrades, uint64_t ping_interval_ms, uint64_t ping_timeout_ms,
                        uint64_t max_payload);

/* ---- Socket.IO ---- */

enum vg_sio_type {
    VG_SIO_CONNECT = 0,
    VG_SIO_DISCONNECT = 1,
    VG_SIO_EVENT = 2,
    VG_SIO_ACK = 3,
    VG_SIO_CONNECT_ERROR = 4,
    VG_SIO_BINARY_EVENT = 5,
    VG_SIO_BINARY_ACK = 6,
};

/* Ack ids above this are refused: JavaScript numbers are exact only up to 2^53. */
#define VG_SIO_MAX_ID 9007199254740991LL
/* More attachments than this in one packet are refused. */
#define VG_SIO_MAX_ATTACHMENTS 256

typedef struct vg_sio_packet_s {
    int type;           /* enum vg_sio_type */
    vg_iov_t nsp;       /* a view into the input; "/" (static) when the packet names none */
    int64_t id;         /* the ack id, or -1 */
    size_t attachments; /* binary packets: how many binary messages follow */
    json_t *data;       /* owned (vg_sio_packet_dispose), NULL when the packet has none */
} vg_sio_packet_t;

/* Decodes the data of an Engine.IO message as a Socket.IO packet and checks the payload the
 * type requires (socket.io-parser's rules): CONNECT an object or nothing; DISCONNECT nothing;
 * EVENT and BINARY_EVENT a non-empty array whose first element is a string that is not a
 * reserved event name ("connect", "disconnect", ...); ACK and BINARY_ACK an array;
 * CONNECT_ERROR an object or a string.  Returns 0, or VG_EINVAL with *err: "empty packet",
 * "unknown packet type", "illegal attachments", "bad namespace" (over 256 bytes or with control
 * bytes), "ack id too large", "invalid JSON", "invalid payload". */
int vg_sio_decode(const char *s, size_t len, vg_sio_packet_t *out, const char **err);
void vg_sio_packet_dispose(vg_sio_packet_t *p);

/* Appends a Socket.IO packet as the data of an Engine.IO message, "4" included: type, the
 * namespace when it is not "/" (nsp may be NULL), the ack id when id >= 0, then data as compact
 * JSON (may be NULL).  Binary packets are not encoded here (the server sends none). */
void vg_sio_encode(vg_buf_t *out, int type, const char *nsp, int64_t id, const json_t *data);
/* 42["event",<data JSON text>]: an EVENT with one argument already encoded as JSON text. */
void vg_sio_encode_event_raw(vg_buf_t *out, const char *event, const char *json, size_t len);

/* Replaces every {"_placeholder":true,"num":N} in data with the base64 text of attachment N (a
 * JSON string), so a binary event can go on as JSON.  Returns 0, or VG_EINVAL when a placeholder
 * names an attachment that is not there. */
int vg_sio_fill_placeholders(json_t *data, const vg_iov_t *attachments, size_t n);

#endif
