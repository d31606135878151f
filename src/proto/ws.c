/*
 * WebSocket codec, server side (RFC 6455).  Two layers in one file, as in wslay:
 *
 *   - the frame parser gathers a header (checking the first and second bytes as soon as each
 *     arrives), then streams the payload out in pieces, unmasking each piece in place;
 *   - the message layer takes those pieces: it validates text as it arrives, reassembles
 *     fragmented data messages in _msg and answers control frames.
 *
 * Every decision depends only on the bytes seen so far, never on how they were split into
 * vg_ws_feed calls, so a stream fed one byte at a time ends exactly like the same stream fed
 * whole (the unit tests and the fuzzer both check this).
 *
 * Reentrancy: callbacks may call vg_ws_start_close.  Before any callback the parser is left
 * ready for the next frame, and after one we stop if the layer has reached CLOSED.  Nothing
 * touches `ws` after on_close.  vg_ws_feed itself must not be called from a callback.
 *
 * Choices the RFC leaves open:
 *   - once our close is sent (CLOSE_SENT) pings are not answered (the RFC would allow a pong):
 *     our close frame is the last thing the layer ever sends, so an owner that closes TCP right
 *     after flushing it never has a late pong to deal with.  Pongs are still reported (they
 *     show the peer is alive); data frames are still checked but not delivered;
 *   - a violation seen in CLOSE_SENT closes without a second close frame (an endpoint sends at
 *     most one, section 5.5.1) and still reports failed=1;
 *   - the call that completes a clean close handshake returns VG_ECLOSED, like later calls;
 *   - non-minimal length encodings (126 with a length below 126) are accepted, as most
 *     servers do: they cost nothing and are harmless.
 */
#include "proto/ws.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "util/alloc.h"
#include "util/error.h"

enum { FS_HEADER = 0, FS_PAYLOAD };

#define MAX_CONTROL_PAYLOAD 125
#define MAX_CLOSE_REASON    (MAX_CONTROL_PAYLOAD - 2)
#define CLOSE_FRAME_MAX     (2 + MAX_CONTROL_PAYLOAD)
#define WS_GUID             "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

static int is_control(int opcode)
{
    return (opcode & 0x8) != 0;
}

void vg_ws_init(vg_ws_t *ws, const vg_ws_callbacks_t *cb, size_t max_message_size, void *data)
{
    memset(ws, 0, sizeof(*ws));
    ws->data = data;
    ws->state = VG_WS_OPEN;
    ws->_cb = cb;
    ws->_max_message_size = max_message_size;
    ws->_fstate = FS_HEADER;
    ws->_hdr_need = 1;
    ws->_msg = VG_BUF_INIT;
    ws->_ctl = VG_BUF_INIT;
    vg_utf8_init(&ws->_utf8);
}

void vg_ws_dispose(vg_ws_t *ws)
{
    vg_buf_dispose(&ws->_msg);
    vg_buf_dispose(&ws->_ctl);
    ws->state = VG_WS_CLOSED;
}

/* ---- encoding ---------------------------------------------------------------------------- */

size_t vg_ws_encode_header(uint8_t *out, int opcode, uint64_t payload_len)
{
    out[0] = (uint8_t)(0x80 | (opcode & 0x0f));
    if (payload_len <= 125) {
        out[1] = (uint8_t)payload_len;
        return 2;
    }
    if (payload_len <= 0xffff) {
        out[1] = 126;
        out[2] = (uint8_t)(payload_len >> 8);
        out[3] = (uint8_t)payload_len;
        return 4;
    }
    out[1] = 127;
    for (int i = 0; i < 8; i++)
        out[2 + i] = (uint8_t)(payload_len >> (56 - 8 * i));
    return 10;
}

vg_chunk_t *vg_ws_frame_new(int opcode, const void *payload, size_t len)
{
    vg_chunk_t *c = vg_chunk_new(VG_WS_MAX_HEADER + len);
    size_t h = vg_ws_encode_header(c->data, opcode, len);
    if (len)
        memcpy(c->data + h, payload, len);
    c->len = h + len;
    return c;
}

/* Writes a close frame into out (CLOSE_FRAME_MAX bytes of room) and returns its length.  Code 0
 * writes an empty payload: the answer to a peer's close that carried no code. */
static size_t encode_close(uint8_t *out, int code, const char *reason)
{
    /* Cut on a character boundary: a reason cut in the middle of one (or a caller's invalid one)
     * would make the peer fail the connection with 1007 instead of closing cleanly. */
    size_t rlen = code && reason ? vg_utf8_prefix(reason, MAX_CLOSE_REASON) : 0;
    size_t n = vg_ws_encode_header(out, VG_WS_OP_CLOSE, code ? 2 + rlen : 0);
    if (code) {
        out[n++] = (uint8_t)(code >> 8);
        out[n++] = (uint8_t)code;
    }
    if (rlen)
        memcpy(out + n, reason, rlen);
    return n + rlen;
}

vg_chunk_t *vg_ws_close_frame_new(int code, const char *reason)
{
    vg_chunk_t *c = vg_chunk_new(CLOSE_FRAME_MAX);
    c->len = encode_close(c->data, code, reason);
    return c;
}

void vg_ws_accept_key(const char *key, size_t key_len, char out[29])
{
    uint8_t digest[EVP_MAX_MD_SIZE];
    unsigned int dlen = 0;
    /* Hashing in two updates avoids building key+GUID in a buffer sized by peer input. */
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = ctx != NULL && EVP_DigestInit_ex(ctx, EVP_sha1(), NULL) &&
             EVP_DigestUpdate(ctx, key, key_len) &&
             EVP_DigestUpdate(ctx, WS_GUID, sizeof(WS_GUID) - 1) &&
             EVP_DigestFinal_ex(ctx, digest, &dlen);
    EVP_MD_CTX_free(ctx);
    /* SHA-1 in the default provider fails only when memory runs out, which is fatal here as
     * everywhere else (alloc.h). */
    if (!ok || dlen != 20)
        abort();
    EVP_EncodeBlock((unsigned char *)out, digest, 20); /* 28 characters and a NUL */
}

int vg_ws_close_code_valid(int code)
{
    if (code >= 1000 && code <= 1003)
        return 1;
    /* 1004 is reserved; 1005, 1006 and 1015 only ever report what happened locally. */
    if (code >= 1007 && code <= 1014)
        return 1;
    /* 3000-3999 are registered with IANA, 4000-4999 are private use. */
    return code >= 3000 && code <= 4999;
}

/* ---- closing ----------------------------------------------------------------------------- */

/* Ends the WebSocket: frees the buffers (a closed connection may linger until its queue is
 * flushed) and reports.  The owner may start tearing down from on_close, so callers return
 * right after without touching ws. */
static void finish(vg_ws_t *ws, int code, const char *reason, int failed)
{
    ws->state = VG_WS_CLOSED;
    vg_buf_dispose(&ws->_msg);
    vg_buf_dispose(&ws->_ctl);
    ws->_cb->on_close(ws, code, reason, failed);
}

/* Fails the WebSocket connection (section 7.1.7) on a violation by the peer. */
static int fail(vg_ws_t *ws, int code, const char *reason, int err)
{
    if (ws->state == VG_WS_OPEN) {
        uint8_t frame[CLOSE_FRAME_MAX];
        size_t n = encode_close(frame, code, reason);
        /* Set first so a vg_ws_start_close from inside send cannot send a second close. */
        ws->state = VG_WS_CLOSE_SENT;
        ws->_cb->send(ws, frame, n);
    }
    finish(ws, code, reason, 1);
    return err;
}

static int fail_protocol(vg_ws_t *ws, const char *reason)
{
    return fail(ws, VG_WS_CLOSE_PROTOCOL, reason, VG_EWS_PROTOCOL);
}

void vg_ws_start_close(vg_ws_t *ws, int code, const char *reason)
{
    if (ws->state != VG_WS_OPEN)
        return;
    assert(vg_ws_close_code_valid(code));
    uint8_t frame[CLOSE_FRAME_MAX];
    size_t n = encode_close(frame, code, reason);
    ws->state = VG_WS_CLOSE_SENT;
    /* Whatever part of a message has arrived will never be delivered now. */
    vg_buf_dispose(&ws->_msg);
    ws->_cb->send(ws, frame, n);
}

/* What a feed should return after a callback: the owner cannot close the layer from one
 * (vg_ws_start_close only moves it to CLOSE_SENT) but checking keeps us safe if that changes. */
static int after_callback(const vg_ws_t *ws)
{
    return ws->state == VG_WS_CLOSED ? VG_ECLOSED : 0;
}

/* ---- message layer ----------------------------------------------------------------------- */

/* The peer's close (section 5.5.1): check it, answer it unless we started the handshake, done. */
static int on_peer_close(vg_ws_t *ws, const uint8_t *p, size_t n)
{
    int code = VG_WS_CLOSE_NO_STATUS;
    char reason[MAX_CLOSE_REASON + 1];
    size_t rlen = 0;
    if (n == 1)
        return fail_protocol(ws, "invalid close frame");
    if (n >= 2) {
        code = p[0] << 8 | p[1];
        if (!vg_ws_close_code_valid(code))
            return fail_protocol(ws, "invalid close code");
        rlen = n - 2;
        if (!vg_utf8_valid(p + 2, rlen))
            return fail(ws, VG_WS_CLOSE_BAD_DATA, "invalid UTF-8", VG_EWS_UTF8);
        memcpy(reason, p + 2, rlen);
    }
    reason[rlen] = '\0';
    if (ws->state == VG_WS_OPEN) {
        uint8_t frame[CLOSE_FRAME_MAX];
        size_t flen = encode_close(frame, n >= 2 ? code : 0, NULL);
        ws->state = VG_WS_CLOSE_SENT;
        ws->_cb->send(ws, frame, flen);
    }
    finish(ws, code, reason, 0);
    return VG_ECLOSED;
}

static int on_ping(vg_ws_t *ws, const uint8_t *p, size_t n)
{
    if (ws->state != VG_WS_OPEN)
        return 0;
    if (ws->_cb->on_ping != NULL && !ws->_cb->on_ping(ws, p, n))
        return after_callback(ws);
    if (ws->state != VG_WS_OPEN)
        return after_callback(ws); /* the owner started closing: our close frame was the last */
    uint8_t frame[2 + MAX_CONTROL_PAYLOAD];
    size_t h = vg_ws_encode_header(frame, VG_WS_OP_PONG, n);
    if (n)
        memcpy(frame + h, p, n);
    (ws->_cb->send_pong != NULL ? ws->_cb->send_pong : ws->_cb->send)(ws, frame, h + n);
    return after_callback(ws);
}

static int on_control(vg_ws_t *ws, int opcode, const uint8_t *p, size_t n)
{
    switch (opcode) {
    case VG_WS_OP_PING: return on_ping(ws, p, n);
    case VG_WS_OP_PONG:
        if (ws->_cb->on_pong == NULL)
            return 0;
        ws->_cb->on_pong(ws, p, n);
        return after_callback(ws);
    default: return on_peer_close(ws, p, n);
    }
}

/* Hands a complete data message to the owner.  `in_place` is the message inside the caller's
 * input buffer (zero-copy), or NULL when it was reassembled in _msg. */
static int end_message(vg_ws_t *ws, uint8_t *in_place, size_t len)
{
    int opcode = ws->_msg_opcode;
    if (opcode == VG_WS_OP_TEXT && !vg_utf8_complete(&ws->_utf8))
        return fail(ws, VG_WS_CLOSE_BAD_DATA, "invalid UTF-8", VG_EWS_UTF8);
    ws->_msg_opcode = 0;
    ws->_msg_len = 0;
    /* Take the buffer out of ws first: the message layer is then ready for the next message
     * while the callback runs, and the memory goes back as soon as the message is delivered,
     * so an idle connection holds no reassembly buffer. */
    vg_buf_t msg = ws->_msg;
    ws->_msg = VG_BUF_INIT;
    if (ws->state == VG_WS_OPEN) {
        static uint8_t empty;
        uint8_t *data = in_place ? in_place : msg.base ? (uint8_t *)msg.base : &empty;
        ws->_cb->on_message(ws, opcode, data, in_place ? len : msg.len);
    }
    vg_buf_dispose(&msg);
    return after_callback(ws);
}

/* ---- frame parser ------------------------------------------------------------------------ */

/* Readies the parser for the next frame header. */
static void next_frame(vg_ws_t *ws)
{
    ws->_fstate = FS_HEADER;
    ws->_hdr_len = 0;
    ws->_hdr_need = 1;
}

/* XORs a piece of payload with the mask, 8 bytes at a time.  `offset` is the position of the
 * piece inside the frame's payload, which selects where in the 4-byte key it starts. */
static void unmask(uint8_t *p, size_t n, const uint8_t key[4], uint64_t offset)
{
    uint8_t m[8];
    for (int i = 0; i < 8; i++)
        m[i] = key[(offset + (uint64_t)i) & 3];
    uint64_t m64;
    memcpy(&m64, m, sizeof(m64));
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, sizeof(w));
        w ^= m64;
        memcpy(p + i, &w, sizeof(w));
    }
    for (; i < n; i++)
        p[i] ^= m[i & 7];
}

/* A piece of a control frame's payload; `whole` says the entire payload is in this piece. */
static int control_piece(vg_ws_t *ws, uint8_t *piece, size_t n, int whole, int done)
{
    if (!whole)
        vg_buf_append(&ws->_ctl, piece, n);
    if (!done)
        return 0;
    int opcode = ws->_opcode;
    next_frame(ws);
    if (whole)
        return on_control(ws, opcode, piece, n);
    vg_buf_t ctl = ws->_ctl;
    ws->_ctl = VG_BUF_INIT;
    int r = on_control(ws, opcode, (const uint8_t *)ctl.base, ctl.len);
    vg_buf_dispose(&ctl);
    return r;
}

/* A piece of a data frame's payload.  Text is validated piece by piece so invalid UTF-8 fails
 * the connection as soon as it arrives, not when the message completes. */
static int data_piece(vg_ws_t *ws, uint8_t *piece, size_t n, int whole, int done)
{
    if (ws->_msg_opcode == VG_WS_OP_TEXT && vg_utf8_feed(&ws->_utf8, piece, n) != 0)
        return fail(ws, VG_WS_CLOSE_BAD_DATA, "invalid UTF-8", VG_EWS_UTF8);
    /* Zero-copy when this frame is the whole message and all of it is in the caller's buffer:
     * the common case of a small unfragmented message read in one go. */
    int in_place = whole && ws->_fin && ws->_msg_len == 0;
    ws->_msg_len += n;
    if (!in_place && ws->state == VG_WS_OPEN)
        vg_buf_append(&ws->_msg, piece, n);
    if (!done)
        return 0;
    int fin = ws->_fin;
    next_frame(ws);
    if (!fin)
        return 0;
    return end_message(ws, in_place ? piece : NULL, n);
}

/* Consumes as much of the current frame's payload as the input holds. */
static int parse_payload(vg_ws_t *ws, uint8_t **pp, uint8_t *end)
{
    uint64_t left = ws->_payload_len - ws->_payload_got;
    size_t avail = (size_t)(end - *pp);
    size_t n = left < avail ? (size_t)left : avail;
    uint8_t *piece = *pp;
    int whole = ws->_payload_got == 0 && n == left;
    unmask(piece, n, ws->_mask, ws->_payload_got);
    ws->_payload_got += n;
    ws->bytes_in += n;
    *pp += n;
    int done = ws->_payload_got == ws->_payload_len;
    if (is_control(ws->_opcode))
        return control_piece(ws, piece, n, whole, done);
    return data_piece(ws, piece, n, whole, done);
}

/* Checks the first header byte: FIN, RSV1-3, opcode, and whether the opcode fits the message
 * in progress. */
static int check_byte0(vg_ws_t *ws, uint8_t b)
{
    int fin = b >> 7, opcode = b & 0x0f;
    if (b & 0x70)
        return fail_protocol(ws, "reserved bits set");
    switch (opcode) {
    case VG_WS_OP_CONT:
        if (ws->_msg_opcode == 0)
            return fail_protocol(ws, "unexpected continuation frame");
        break;
    case VG_WS_OP_TEXT:
    case VG_WS_OP_BINARY:
        if (ws->_msg_opcode != 0)
            return fail_protocol(ws, "expected continuation frame");
        break;
    case VG_WS_OP_CLOSE:
    case VG_WS_OP_PING:
    case VG_WS_OP_PONG:
        if (!fin)
            return fail_protocol(ws, "fragmented control frame");
        break;
    default: return fail_protocol(ws, "reserved opcode");
    }
    ws->_fin = fin;
    ws->_opcode = opcode;
    ws->_hdr_need = 2;
    return 0;
}

/* Checks the second header byte (MASK, 7-bit length) and sizes the rest of the header. */
static int check_byte1(vg_ws_t *ws, uint8_t b)
{
    unsigned len7 = b & 0x7f;
    if (!(b & 0x80))
        return fail_protocol(ws, "unmasked frame");
    if (is_control(ws->_opcode) && len7 > MAX_CONTROL_PAYLOAD)
        return fail_protocol(ws, "control frame too long");
    ws->_hdr_need = 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + 4;
    return 0;
}

/* The header is complete: decode length and mask, enforce the size limit before a single
 * payload byte is buffered, and start a new message on a TEXT/BINARY frame. */
static int finish_header(vg_ws_t *ws)
{
    const uint8_t *h = ws->_hdr;
    unsigned len7 = h[1] & 0x7f;
    uint64_t len = len7;
    size_t pos = 2;
    if (len7 == 126) {
        len = (uint64_t)h[2] << 8 | h[3];
        pos = 4;
    } else if (len7 == 127) {
        len = 0;
        for (int i = 0; i < 8; i++)
            len = len << 8 | h[2 + i];
        pos = 10;
        if (len >> 63)
            return fail_protocol(ws, "invalid frame length");
    }
    memcpy(ws->_mask, h + pos, 4);
    if (!is_control(ws->_opcode)) {
        /* _msg_len <= _max_message_size always holds, so the subtraction cannot wrap. */
        if (len > ws->_max_message_size - ws->_msg_len)
            return fail(ws, VG_WS_CLOSE_TOO_BIG, "message too big", VG_EWS_TOO_BIG);
        if (ws->_opcode != VG_WS_OP_CONT) {
            ws->_msg_opcode = ws->_opcode;
            ws->_msg_len = 0;
            vg_utf8_init(&ws->_utf8);
        }
    }
    ws->_payload_len = len;
    ws->_payload_got = 0;
    ws->_fstate = FS_PAYLOAD;
    return 0;
}

/* Gathers header bytes, checking each stage as soon as its bytes are in. */
static int parse_header(vg_ws_t *ws, uint8_t **pp, uint8_t *end)
{
    for (;;) {
        size_t want = ws->_hdr_need - ws->_hdr_len;
        size_t avail = (size_t)(end - *pp);
        size_t n = want < avail ? want : avail;
        memcpy(ws->_hdr + ws->_hdr_len, *pp, n);
        ws->_hdr_len += n;
        *pp += n;
        if (ws->_hdr_len < ws->_hdr_need)
            return 0;
        int r;
        if (ws->_hdr_len == 1)
            r = check_byte0(ws, ws->_hdr[0]);
        else if (ws->_hdr_len == 2)
            r = check_byte1(ws, ws->_hdr[1]);
        else
            break;
        if (r != 0)
            return r;
    }
    int r = finish_header(ws);
    if (r != 0)
        return r;
    /* Go straight on so an empty frame completes even when the input ends with its header. */
    return parse_payload(ws, pp, end);
}

int vg_ws_feed(vg_ws_t *ws, uint8_t *data, size_t len)
{
    if (ws->state == VG_WS_CLOSED)
        return VG_ECLOSED;
    if (len == 0)
        return 0;
    uint8_t *p = data, *end = data + len;
    while (p < end) {
        int r = ws->_fstate == FS_HEADER ? parse_header(ws, &p, end) : parse_payload(ws, &p, end);
        if (r != 0)
            return r;
    }
    return 0;
}

void vg_ws_frame_payload(const vg_chunk_t *frame, const uint8_t **payload, size_t *len)
{
    uint8_t l7 = frame->data[1] & 0x7f;
    size_t header = l7 < 126 ? 2 : l7 == 126 ? 4 : 10;
    *payload = frame->data + header;
    *len = frame->len - header;
}
