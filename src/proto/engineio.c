/*
 * Engine.IO v4 / Socket.IO v5 codec (see engineio.h).  The decoding rules follow the reference
 * parsers (engine.io-parser, socket.io-parser) so that whatever the stock client sends is read the
 * same way, and whatever they would refuse is refused here.
 */
#include "proto/engineio.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "util/base64.h"
#include "util/error.h"

#define MAX_NSP_LEN 256

/* ---- Engine.IO ---- */

int vg_eio_decode(const char *s, size_t len, vg_eio_packet_t *out, const char **err)
{
    if (len == 0) {
        *err = "empty packet";
        return VG_EINVAL;
    }
    if (s[0] < '0' || s[0] > '6') {
        *err = "unknown packet type";
        return VG_EINVAL;
    }
    out->type = s[0] - '0';
    out->binary = 0;
    out->data = s + 1;
    out->len = len - 1;
    return 0;
}

void vg_eio_reader_init(vg_eio_reader_t *r, const char *payload, size_t len)
{
    r->_p = payload;
    r->_end = payload + len;
    r->_err = 0;
    r->_done = 0;
    r->_scratch = VG_BUF_INIT;
}

void vg_eio_reader_dispose(vg_eio_reader_t *r)
{
    vg_buf_dispose(&r->_scratch);
}

static int decode_binary(vg_eio_reader_t *r, const char *b64, size_t len, vg_eio_packet_t *out)
{
    vg_buf_reset(&r->_scratch);
    uint8_t *dst = (uint8_t *)vg_buf_reserve(&r->_scratch, len / 4 * 3 + 3);
    long n = vg_base64_decode(b64, len, dst, VG_BASE64_STD);
    if (n < 0)
        return VG_EINVAL;
    out->type = VG_EIO_MESSAGE;
    out->binary = 1;
    out->data = (const char *)dst;
    out->len = (size_t)n;
    return 0;
}

/* Like engine.io-parser, every piece between separators is a packet: an empty payload, or an
 * empty piece ("a\x1e"), is an empty packet and so an error. */
int vg_eio_reader_next(vg_eio_reader_t *r, vg_eio_packet_t *out, const char **err)
{
    if (r->_err != 0) {
        *err = "malformed payload";
        return r->_err;
    }
    if (r->_done)
        return 0;
    const char *start = r->_p;
    const char *sep =
        r->_end > start ? memchr(start, VG_EIO_SEPARATOR, (size_t)(r->_end - start)) : NULL;
    size_t len = (size_t)((sep ? sep : r->_end) - start);
    if (sep != NULL)
        r->_p = sep + 1;
    else
        r->_done = 1;
    int rc;
    if (len > 0 && start[0] == 'b') {
        rc = decode_binary(r, start + 1, len - 1, out);
        if (rc != 0)
            *err = "bad base64 in binary packet";
    } else {
        rc = vg_eio_decode(start, len, out, err);
    }
    if (rc != 0)
        r->_err = rc;
    return rc != 0 ? rc : 1;
}

void vg_eio_encode(vg_buf_t *out, int type, const char *data, size_t len)
{
    char t = (char)('0' + type);
    vg_buf_append(out, &t, 1);
    if (len > 0)
        vg_buf_append(out, data, len);
}

void vg_eio_payload_append(vg_buf_t *payload, const char *packet, size_t len)
{
    if (payload->len > 0) {
        char sep = VG_EIO_SEPARATOR;
        vg_buf_append(payload, &sep, 1);
    }
    vg_buf_append(payload, packet, len);
}

void vg_eio_payload_append_binary(vg_buf_t *payload, const void *data, size_t len)
{
    vg_eio_payload_append(payload, "b", 1);
    vg_base64_append(payload, data, len, VG_BASE64_STD);
}

void vg_eio_encode_open(vg_buf_t *out, const char *sid, const char *const *upgrades,
                        size_t n_upgrades, uint64_t ping_interval_ms, uint64_t ping_timeout_ms,
                        uint64_t max_payload)
{
    vg_buf_append_str(out, "0{\"sid\":\"");
    vg_buf_append_json_escaped(out, sid, strlen(sid));
    vg_buf_append_str(out, "\",\"upgrades\":[");
    for (size_t i = 0; i < n_upgrades; i++) {
        vg_buf_append_str(out, i > 0 ? ",\"" : "\"");
        vg_buf_append_json_escaped(out, upgrades[i], strlen(upgrades[i]));
        vg_buf_append_str(out, "\"");
    }
    vg_buf_printf(out,
                  "],\"pingInterval\":%" PRIu64 ",\"pingTimeout\":%" PRIu64
                  ",\"maxPayload\":%" PRIu64 "}",
                  ping_interval_ms, ping_timeout_ms, max_payload);
}

/* ---- Socket.IO ---- */

static const char *const reserved_events[] = {
    "connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener",
};

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* "<digits>-" after the type of a binary packet. */
static int parse_attachments(const char *s, size_t len, size_t *i, size_t *out)
{
    size_t start = *i, n = 0;
    while (*i < len && is_digit(s[*i])) {
        n = n * 10 + (size_t)(s[*i] - '0');
        if (n > VG_SIO_MAX_ATTACHMENTS)
            return VG_EINVAL;
        (*i)++;
    }
    if (*i == start || *i == len || s[*i] != '-')
        return VG_EINVAL;
    (*i)++;
    *out = n;
    return 0;
}

/* "/name," (or "/name" up to the end) when the next character is '/'. */
static int parse_nsp(const char *s, size_t len, size_t *i, vg_iov_t *nsp)
{
    *nsp = VG_IOV_LIT("/");
    if (*i >= len || s[*i] != '/')
        return 0;
    size_t start = *i;
    while (*i < len && s[*i] != ',') {
        /* Control bytes would break a log line, or a polling payload when echoed back. */
        if ((unsigned char)s[*i] < 0x20 || s[*i] == 0x7f)
            return VG_EINVAL;
        (*i)++;
    }
    nsp->base = s + start;
    nsp->len = *i - start;
    if (*i < len)
        (*i)++; /* the comma */
    return nsp->len <= MAX_NSP_LEN ? 0 : VG_EINVAL;
}

static int parse_id(const char *s, size_t len, size_t *i, int64_t *id)
{
    *id = -1;
    if (*i >= len || !is_digit(s[*i]))
        return 0;
    int64_t v = 0;
    while (*i < len && is_digit(s[*i])) {
        if (v > (VG_SIO_MAX_ID - (s[*i] - '0')) / 10)
            return VG_EINVAL;
        v = v * 10 + (s[*i] - '0');
        (*i)++;
    }
    *id = v;
    return 0;
}

static int is_reserved(const char *name)
{
    for (size_t i = 0; i < sizeof(reserved_events) / sizeof(reserved_events[0]); i++)
        if (strcmp(name, reserved_events[i]) == 0)
            return 1;
    return 0;
}

static int payload_valid(int type, const json_t *data)
{
    switch (type) {
    case VG_SIO_CONNECT: return data == NULL || json_is_object(data);
    case VG_SIO_DISCONNECT: return data == NULL;
    case VG_SIO_EVENT:
    case VG_SIO_BINARY_EVENT: {
        const char *name = json_string_value(json_array_get(data, 0));
        return json_is_array(data) && name != NULL && !is_reserved(name);
    }
    case VG_SIO_ACK:
    case VG_SIO_BINARY_ACK: return json_is_array(data);
    case VG_SIO_CONNECT_ERROR: return json_is_object(data) || json_is_string(data);
    default: return 0;
    }
}

static int fail(const char **err, const char *why)
{
    *err = why;
    return VG_EINVAL;
}

int vg_sio_decode(const char *s, size_t len, vg_sio_packet_t *out, const char **err)
{
    memset(out, 0, sizeof(*out));
    out->id = -1;
    out->nsp = VG_IOV_LIT("/");
    if (len == 0)
        return fail(err, "empty packet");
    if (s[0] < '0' || s[0] > '6')
        return fail(err, "unknown packet type");
    out->type = s[0] - '0';
    size_t i = 1;
    if ((out->type == VG_SIO_BINARY_EVENT || out->type == VG_SIO_BINARY_ACK) &&
        parse_attachments(s, len, &i, &out->attachments) != 0)
        return fail(err, "illegal attachments");
    if (parse_nsp(s, len, &i, &out->nsp) != 0)
        return fail(err, "bad namespace");
    if (parse_id(s, len, &i, &out->id) != 0)
        return fail(err, "ack id too large");
    if (i < len) {
        json_error_t jerr;
        out->data = json_loadb(s + i, len - i, JSON_DECODE_ANY, &jerr);
        if (out->data == NULL)
            return fail(err, "invalid JSON");
    }
    if (!payload_valid(out->type, out->data)) {
        vg_sio_packet_dispose(out);
        return fail(err, "invalid payload");
    }
    return 0;
}

void vg_sio_packet_dispose(vg_sio_packet_t *p)
{
    json_decref(p->data);
    p->data = NULL;
}

void vg_sio_encode(vg_buf_t *out, int type, const char *nsp, int64_t id, const json_t *data)
{
    vg_buf_printf(out, "4%d", type);
    if (nsp != NULL && strcmp(nsp, "/") != 0) {
        vg_buf_append_str(out, nsp);
        vg_buf_append(out, ",", 1);
    }
    if (id >= 0)
        vg_buf_printf(out, "%" PRId64, id);
    if (data != NULL) {
        char *text = json_dumps(data, JSON_COMPACT | JSON_ENCODE_ANY);
        if (text != NULL) {
            vg_buf_append_str(out, text);
            free(text);
        }
    }
}

void vg_sio_encode_event_raw(vg_buf_t *out, const char *event, const char *json, size_t len)
{
    vg_buf_append_str(out, "42[\"");
    vg_buf_append_json_escaped(out, event, strlen(event));
    vg_buf_append_str(out, "\",");
    vg_buf_append(out, json, len);
    vg_buf_append(out, "]", 1);
}

/* The replacement for a placeholder object, or NULL when v is not one.  *bad is set when it is
 * a placeholder that names no attachment. */
static json_t *placeholder_value(json_t *v, const vg_iov_t *att, size_t n, int *bad)
{
    if (!json_is_object(v) || !json_is_true(json_object_get(v, "_placeholder")))
        return NULL;
    json_t *num = json_object_get(v, "num");
    if (!json_is_integer(num) || json_integer_value(num) < 0 ||
        (size_t)json_integer_value(num) >= n) {
        *bad = 1;
        return NULL;
    }
    const vg_iov_t *a = &att[json_integer_value(num)];
    vg_buf_t b64 = VG_BUF_INIT;
    vg_base64_append(&b64, a->base, a->len, VG_BASE64_STD);
    json_t *s = json_stringn(b64.base ? b64.base : "", b64.len);
    vg_buf_dispose(&b64);
    return s;
}

int vg_sio_fill_placeholders(json_t *data, const vg_iov_t *attachments, size_t n)
{
    int bad = 0;
    if (json_is_array(data)) {
        for (size_t i = 0; i < json_array_size(data) && !bad; i++) {
            json_t *v = json_array_get(data, i);
            json_t *repl = placeholder_value(v, attachments, n, &bad);
            if (repl != NULL)
                json_array_set_new(data, i, repl);
            else if (!bad && vg_sio_fill_placeholders(v, attachments, n) != 0)
                bad = 1;
        }
    } else if (json_is_object(data)) {
        const char *key;
        json_t *v;
        void *tmp;
        json_object_foreach_safe(data, tmp, key, v)
        {
            json_t *repl = placeholder_value(v, attachments, n, &bad);
            if (repl != NULL)
                json_object_set_new(data, key, repl);
            else if (!bad && vg_sio_fill_placeholders(v, attachments, n) != 0)
                bad = 1;
            if (bad)
                break;
        }
    }
    return bad ? VG_EINVAL : 0;
}
