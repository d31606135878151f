/*
 * Tests of the Engine.IO / Socket.IO codec (src/proto/engineio.c): every Engine.IO packet type,
 * polling payloads (splitting on 0x1e, binary "b" + base64, empty pieces), base64 against known
 * vectors and a round trip, Socket.IO packets of each type with namespaces, ack ids and binary
 * attachments, the payload rules of socket.io-parser, encoding, and placeholder filling.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "proto/engineio.h"
#include "util/error.h"

#define S(lit) lit, sizeof(lit) - 1

static void assert_view(const char *data, size_t len, const char *want)
{
    assert_int_equal(len, strlen(want));
    assert_memory_equal(data, want, len);
}

/* ---- Engine.IO packets ---- */

static void test_eio_each_type(void **state)
{
    (void)state;
    static const char *const texts[] = {"0{\"sid\":\"x\"}", "1", "2probe", "3", "4hello", "5", "6"};
    for (int t = 0; t <= 6; t++) {
        vg_eio_packet_t p;
        const char *err = NULL;
        assert_int_equal(vg_eio_decode(texts[t], strlen(texts[t]), &p, &err), 0);
        assert_int_equal(p.type, t);
        assert_int_equal(p.binary, 0);
        assert_view(p.data, p.len, texts[t] + 1);
    }
}

static void test_eio_errors(void **state)
{
    (void)state;
    vg_eio_packet_t p;
    const char *err = NULL;
    assert_int_equal(vg_eio_decode("", 0, &p, &err), VG_EINVAL);
    assert_string_equal(err, "empty packet");
    assert_int_equal(vg_eio_decode(S("7"), &p, &err), VG_EINVAL);
    assert_string_equal(err, "unknown packet type");
    assert_int_equal(vg_eio_decode(S("x4"), &p, &err), VG_EINVAL);
    assert_int_equal(vg_eio_decode(S("/"), &p, &err), VG_EINVAL);
}

static void test_eio_encode(void **state)
{
    (void)state;
    vg_buf_t b = VG_BUF_INIT;
    vg_eio_encode(&b, VG_EIO_MESSAGE, S("2[\"x\"]"));
    vg_eio_encode(&b, VG_EIO_NOOP, NULL, 0);
    assert_view(b.base, b.len, "42[\"x\"]6");
    vg_buf_reset(&b);
    const char *up[] = {"websocket"};
    vg_eio_encode_open(&b, "abc", up, 1, 25000, 20000, 1000000);
    assert_view(b.base, b.len,
                "0{\"sid\":\"abc\",\"upgrades\":[\"websocket\"],\"pingInterval\":25000,"
                "\"pingTimeout\":20000,\"maxPayload\":1000000}");
    vg_buf_reset(&b);
    vg_eio_encode_open(&b, "q\"", NULL, 0, 1, 2, 3);
    assert_view(b.base, b.len,
                "0{\"sid\":\"q\\\"\",\"upgrades\":[],\"pingInterval\":1,\"pingTimeout\":2,"
                "\"maxPayload\":3}");
    vg_buf_dispose(&b);
}

/* ---- polling payloads ---- */

/* Decodes a whole payload into "type:data|" records (binary data in hex). */
static int read_all(const char *payload, size_t len, char *out, size_t cap)
{
    vg_eio_reader_t r;
    vg_eio_packet_t p;
    const char *err = NULL;
    int rc, n = 0;
    size_t pos = 0;
    out[0] = '\0';
    vg_eio_reader_init(&r, payload, len);
    while ((rc = vg_eio_reader_next(&r, &p, &err)) == 1) {
        n++;
        pos += (size_t)snprintf(out + pos, cap - pos, "%d%s:", p.type, p.binary ? "b" : "");
        for (size_t i = 0; i < p.len; i++)
            pos += (size_t)(p.binary ? snprintf(out + pos, cap - pos, "%02x", (uint8_t)p.data[i])
                                     : snprintf(out + pos, cap - pos, "%c", p.data[i]));
        pos += (size_t)snprintf(out + pos, cap - pos, "|");
    }
    /* sticky: an error stays */
    if (rc < 0)
        assert_int_equal(vg_eio_reader_next(&r, &p, &err), rc);
    else
        assert_int_equal(vg_eio_reader_next(&r, &p, &err), 0);
    vg_eio_reader_dispose(&r);
    return rc < 0 ? rc : n;
}

static void test_payload_split(void **state)
{
    (void)state;
    char out[512];
    assert_int_equal(read_all(S("4hello"), out, sizeof(out)), 1);
    assert_string_equal(out, "4:hello|");
    assert_int_equal(read_all(S("2\x1e"
                                "40\x1e"
                                "42[\"a\",1]\x1e"
                                "6"),
                              out, sizeof(out)),
                     4);
    assert_string_equal(out, "2:|4:0|4:2[\"a\",1]|6:|");
    /* binary: "b" + base64, with and without padding */
    assert_int_equal(read_all(S("bAQID\x1e"
                                "4x\x1e"
                                "bAQIDBA==\x1e"
                                "b"),
                              out, sizeof(out)),
                     4);
    assert_string_equal(out, "4b:010203|4:x|4b:01020304|4b:|");
}

static void test_payload_errors(void **state)
{
    (void)state;
    char out[512];
    /* like engine.io-parser: an empty payload or an empty piece is an error */
    assert_int_equal(read_all("", 0, out, sizeof(out)), VG_EINVAL);
    assert_int_equal(read_all(S("4a\x1e"), out, sizeof(out)), VG_EINVAL);
    assert_string_equal(out, "4:a|");
    assert_int_equal(read_all(S("\x1e"
                                "4a"),
                              out, sizeof(out)),
                     VG_EINVAL);
    assert_int_equal(read_all(S("4a\x1e"
                                "9\x1e"
                                "4b"),
                              out, sizeof(out)),
                     VG_EINVAL);
    assert_string_equal(out, "4:a|");
    assert_int_equal(read_all(S("b!!!!"), out, sizeof(out)), VG_EINVAL);
    assert_int_equal(read_all(S("bA"), out, sizeof(out)), VG_EINVAL);     /* 6 bits */
    assert_int_equal(read_all(S("bAQ=D"), out, sizeof(out)), VG_EINVAL);  /* '=' inside */
    assert_int_equal(read_all(S("bAQID="), out, sizeof(out)), VG_EINVAL); /* bad padding */
    assert_int_equal(read_all(S("bAQ==="), out, sizeof(out)), VG_EINVAL); /* 3 '=' */
}

static void test_payload_append(void **state)
{
    (void)state;
    vg_buf_t b = VG_BUF_INIT;
    vg_eio_payload_append(&b, S("40"));
    vg_eio_payload_append(&b, S("2"));
    const uint8_t bin[] = {0xff, 0x00, 0x10};
    vg_eio_payload_append_binary(&b, bin, sizeof(bin));
    assert_view(b.base, b.len,
                "40\x1e"
                "2\x1e"
                "b/wAQ");
    char out[256];
    assert_int_equal(read_all(b.base, b.len, out, sizeof(out)), 3);
    assert_string_equal(out, "4:0|2:|4b:ff0010|");
    vg_buf_dispose(&b);
}

/* ---- Socket.IO ---- */

static vg_sio_packet_t decode_ok(const char *s)
{
    vg_sio_packet_t p;
    const char *err = "none";
    int rc = vg_sio_decode(s, strlen(s), &p, &err);
    if (rc != 0)
        fail_msg("'%s' refused: %s", s, err);
    return p;
}

static const char *decode_err(const char *s)
{
    vg_sio_packet_t p;
    const char *err = NULL;
    assert_int_equal(vg_sio_decode(s, strlen(s), &p, &err), VG_EINVAL);
    assert_null(p.data);
    return err;
}

static char *dump(const json_t *v)
{
    return json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
}

static void assert_json(const json_t *v, const char *want)
{
    char *text = dump(v);
    assert_string_equal(text, want);
    free(text);
}

static void test_sio_connect(void **state)
{
    (void)state;
    vg_sio_packet_t p = decode_ok("0");
    assert_int_equal(p.type, VG_SIO_CONNECT);
    assert_view(p.nsp.base, p.nsp.len, "/");
    assert_int_equal(p.id, -1);
    assert_null(p.data);
    p = decode_ok("0{\"token\":\"abc\"}");
    assert_json(p.data, "{\"token\":\"abc\"}");
    vg_sio_packet_dispose(&p);
    p = decode_ok("0/admin,");
    assert_view(p.nsp.base, p.nsp.len, "/admin");
    p = decode_ok("0/admin,{\"a\":1}");
    assert_view(p.nsp.base, p.nsp.len, "/admin");
    assert_json(p.data, "{\"a\":1}");
    vg_sio_packet_dispose(&p);
    p = decode_ok("0/admin"); /* a namespace running to the end */
    assert_view(p.nsp.base, p.nsp.len, "/admin");
    assert_string_equal(decode_err("0/a\x1e,"), "bad namespace");
    assert_string_equal(decode_err("0/a\n"), "bad namespace");
    assert_string_equal(decode_err("0[1]"), "invalid payload");
    assert_string_equal(decode_err("0\"str\""), "invalid payload");
}

static void test_sio_event_and_ack(void **state)
{
    (void)state;
    vg_sio_packet_t p = decode_ok("2[\"status\",{\"a\":1},2]");
    assert_int_equal(p.type, VG_SIO_EVENT);
    assert_int_equal(p.id, -1);
    assert_json(p.data, "[\"status\",{\"a\":1},2]");
    vg_sio_packet_dispose(&p);
    p = decode_ok("212[\"laser\"]");
    assert_int_equal(p.id, 12);
    vg_sio_packet_dispose(&p);
    p = decode_ok("2/ns,7[\"x\"]");
    assert_view(p.nsp.base, p.nsp.len, "/ns");
    assert_int_equal(p.id, 7);
    vg_sio_packet_dispose(&p);
    p = decode_ok("39[]");
    assert_int_equal(p.type, VG_SIO_ACK);
    assert_int_equal(p.id, 9);
    vg_sio_packet_dispose(&p);
    p = decode_ok("29007199254740991[\"max\"]");
    assert_int_equal(p.id, VG_SIO_MAX_ID);
    vg_sio_packet_dispose(&p);
    assert_string_equal(decode_err("29007199254740992[\"x\"]"), "ack id too large");
    assert_string_equal(decode_err("2"), "invalid payload");
    assert_string_equal(decode_err("2[]"), "invalid payload");
    assert_string_equal(decode_err("2[1]"), "invalid payload");
    assert_string_equal(decode_err("2{\"a\":1}"), "invalid payload");
    assert_string_equal(decode_err("2[\"connect\"]"), "invalid payload");
    assert_string_equal(decode_err("2[\"disconnect\",1]"), "invalid payload");
    assert_string_equal(decode_err("2[\"x\""), "invalid JSON");
    assert_string_equal(decode_err("2[\"x\"] trailing"), "invalid JSON");
    assert_string_equal(decode_err("3{}"), "invalid payload");
}

static void test_sio_other_types(void **state)
{
    (void)state;
    vg_sio_packet_t p = decode_ok("1");
    assert_int_equal(p.type, VG_SIO_DISCONNECT);
    p = decode_ok("1/admin,");
    assert_view(p.nsp.base, p.nsp.len, "/admin");
    assert_string_equal(decode_err("1{}"), "invalid payload");
    p = decode_ok("4{\"message\":\"no\"}");
    assert_int_equal(p.type, VG_SIO_CONNECT_ERROR);
    vg_sio_packet_dispose(&p);
    p = decode_ok("4\"text\"");
    vg_sio_packet_dispose(&p);
    assert_string_equal(decode_err("4[1]"), "invalid payload");
    assert_string_equal(decode_err(""), "empty packet");
    assert_string_equal(decode_err("7"), "unknown packet type");
    assert_string_equal(decode_err("{}"), "unknown packet type");
}

static void test_sio_binary(void **state)
{
    (void)state;
    vg_sio_packet_t p = decode_ok("51-[\"img\",{\"_placeholder\":true,\"num\":0}]");
    assert_int_equal(p.type, VG_SIO_BINARY_EVENT);
    assert_int_equal(p.attachments, 1);
    vg_sio_packet_dispose(&p);
    p = decode_ok("62-/ns,3[{\"_placeholder\":true,\"num\":1}]");
    assert_int_equal(p.type, VG_SIO_BINARY_ACK);
    assert_int_equal(p.attachments, 2);
    assert_int_equal(p.id, 3);
    assert_view(p.nsp.base, p.nsp.len, "/ns");
    vg_sio_packet_dispose(&p);
    assert_string_equal(decode_err("5[\"x\"]"), "illegal attachments");
    assert_string_equal(decode_err("5-[\"x\"]"), "illegal attachments");
    assert_string_equal(decode_err("51"), "illegal attachments");
    assert_string_equal(decode_err("5257-[\"x\"]"), "illegal attachments"); /* > 256 */
}

static void test_sio_encode(void **state)
{
    (void)state;
    vg_buf_t b = VG_BUF_INIT;
    json_t *sid = json_pack("{s:s}", "sid", "abc");
    vg_sio_encode(&b, VG_SIO_CONNECT, "/", -1, sid);
    assert_view(b.base, b.len, "40{\"sid\":\"abc\"}");
    vg_buf_reset(&b);
    json_t *msg = json_pack("{s:s}", "message", "Invalid namespace");
    vg_sio_encode(&b, VG_SIO_CONNECT_ERROR, "/admin", -1, msg);
    assert_view(b.base, b.len, "44/admin,{\"message\":\"Invalid namespace\"}");
    vg_buf_reset(&b);
    json_t *args = json_pack("[{s:b}]", "ok", 1);
    vg_sio_encode(&b, VG_SIO_ACK, NULL, 12, args);
    assert_view(b.base, b.len, "4312[{\"ok\":true}]");
    vg_buf_reset(&b);
    vg_sio_encode(&b, VG_SIO_DISCONNECT, "/", -1, NULL);
    assert_view(b.base, b.len, "41");
    vg_buf_reset(&b);
    vg_sio_encode_event_raw(&b, "status_update", S("{\"fps\":30}"));
    assert_view(b.base, b.len, "42[\"status_update\",{\"fps\":30}]");
    /* what we encode decodes back (without the Engine.IO "4") */
    char text[64];
    snprintf(text, sizeof(text), "%.*s", (int)b.len - 1, b.base + 1);
    vg_sio_packet_t p = decode_ok(text);
    assert_json(p.data, "[\"status_update\",{\"fps\":30}]");
    vg_sio_packet_dispose(&p);
    json_decref(sid);
    json_decref(msg);
    json_decref(args);
    vg_buf_dispose(&b);
}

static void test_sio_placeholders(void **state)
{
    (void)state;
    vg_sio_packet_t p =
        decode_ok("52-[\"snap\",{\"_placeholder\":true,\"num\":1},{\"img\":{\"_placeholder\":"
                  "true,\"num\":0},\"n\":1},[{\"_placeholder\":false,\"num\":0}]]");
    vg_iov_t att[2] = {{"\x01\x02\x03", 3}, {"foobar", 6}};
    assert_int_equal(vg_sio_fill_placeholders(p.data, att, 2), 0);
    assert_json(p.data, "[\"snap\",\"Zm9vYmFy\",{\"img\":\"AQID\",\"n\":1},"
                        "[{\"_placeholder\":false,\"num\":0}]]");
    vg_sio_packet_dispose(&p);
    p = decode_ok("51-[\"x\",{\"_placeholder\":true,\"num\":1}]");
    assert_int_equal(vg_sio_fill_placeholders(p.data, att, 1), VG_EINVAL);
    vg_sio_packet_dispose(&p);
    p = decode_ok("51-[\"x\",{\"_placeholder\":true,\"num\":\"0\"}]");
    assert_int_equal(vg_sio_fill_placeholders(p.data, att, 1), VG_EINVAL);
    vg_sio_packet_dispose(&p);
    p = decode_ok("51-[\"x\",{\"_placeholder\":true,\"num\":-1}]");
    assert_int_equal(vg_sio_fill_placeholders(p.data, att, 1), VG_EINVAL);
    vg_sio_packet_dispose(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_eio_each_type),   cmocka_unit_test(test_eio_errors),
        cmocka_unit_test(test_eio_encode),      cmocka_unit_test(test_payload_split),
        cmocka_unit_test(test_payload_errors),  cmocka_unit_test(test_payload_append),

        cmocka_unit_test(test_sio_connect),     cmocka_unit_test(test_sio_event_and_ack),
        cmocka_unit_test(test_sio_other_types), cmocka_unit_test(test_sio_binary),
        cmocka_unit_test(test_sio_encode),      cmocka_unit_test(test_sio_placeholders),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
