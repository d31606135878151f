"""WebSocket (RFC 6455) on /echo and /ws: handshake, echo, and every protocol violation closing
with its exact code.  Well-behaved traffic goes through python websockets; bad frames through
the raw client in conftest (python websockets refuses to send them)."""

import os
import socket
import struct
import time

import pytest
import websockets

from conftest import (OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT, RawWS,
                      assert_json_error, build_frame, close_payload, run_async, ws_accept)

MIB = 1024 * 1024


def connect(srv, path="/echo", **kw):
    kw.setdefault("max_size", None)
    kw.setdefault("compression", None)
    kw.setdefault("open_timeout", 10)
    kw.setdefault("close_timeout", 10)
    kw.setdefault("ping_interval", None)
    return websockets.connect(srv.ws_url(path), **kw)


def echo_all(srv, messages, **kw):
    """Sends each message on one connection and returns the echoes."""
    async def go():
        async with connect(srv, **kw) as ws:
            out = []
            for m in messages:
                await ws.send(m)
                out.append(await ws.recv())
            return out
    return run_async(go(), timeout=60)


# ---------------------------------------------------------------------------- echo (python websockets)


def test_echo_text(vigil):
    """A text message comes back unchanged, as text."""
    msgs = ["hello", "héllo wörld ✓ 🚀", "x" * 125, "y" * 126, "z" * 65536]
    assert echo_all(vigil, msgs) == msgs


def test_echo_binary(vigil):
    """A binary message (any bytes) comes back unchanged, as binary."""
    msgs = [bytes(range(256)), b"\x00" * 10, os.urandom(70000), b"\xff\xfe"]
    assert echo_all(vigil, msgs) == msgs


def test_echo_empty_messages(vigil):
    """Empty text and empty binary messages are echoed with their type."""
    assert echo_all(vigil, ["", b""]) == ["", b""]


def test_echo_64kib(vigil):
    """A 64 KiB message (64-bit length boundary) is echoed exactly."""
    data = os.urandom(64 * 1024)
    assert echo_all(vigil, [data, data.hex()[:65535], data.hex()[:65536]]) == \
        [data, data.hex()[:65535], data.hex()[:65536]]


def test_echo_1mib_with_larger_limit(shared_vigil):
    """With --max-message-size 2MiB a 1 MiB text and binary message are echoed exactly."""
    srv = shared_vigil("--max-message-size", "2MiB")
    blob = os.urandom(MIB)
    text = ("abcdefghijklmnopqrstuvwxyz0123456789€" * (MIB // 38 + 1))[:MIB]
    assert echo_all(srv, [blob, text]) == [blob, text]


def test_echo_many_messages_in_order(vigil):
    """Messages sent back to back without waiting come back in the same order."""
    async def go():
        async with connect(vigil) as ws:
            for i in range(200):
                await ws.send(f"msg {i}" if i % 2 else f"msg {i}".encode())
            return [await ws.recv() for _ in range(200)]
    got = run_async(go())
    assert got == [f"msg {i}" if i % 2 else f"msg {i}".encode() for i in range(200)]


def test_echo_fragmented_text_message(vigil):
    """A text message sent in fragments comes back as the whole message."""
    async def fragments():
        for part in ["hel", "lo ", "", "wör", "ld"]:
            yield part

    async def go():
        async with connect(vigil) as ws:
            await ws.send(fragments())
            return await ws.recv()
    assert run_async(go()) == "hello wörld"


def test_echo_fragmented_binary_message(vigil):
    """A binary message sent in fragments comes back as the whole message."""
    parts = [os.urandom(n) for n in (1, 1000, 70000, 3)]

    async def fragments():
        for p in parts:
            yield p

    async def go():
        async with connect(vigil) as ws:
            await ws.send(fragments())
            return await ws.recv()
    assert run_async(go()) == b"".join(parts)


def test_client_offering_permessage_deflate_still_works(vigil):
    """A client offering permessage-deflate (browsers do) still connects and echoes; if vigil
    negotiates no extension the messages are plain."""
    assert echo_all(vigil, ["compress me " * 100, b"\x00" * 1000], compression="deflate") == \
        ["compress me " * 100, b"\x00" * 1000]


def test_clean_close_from_python_client(vigil):
    """A client closing with 1000 gets the close handshake completed with 1000."""
    async def go():
        ws = await connect(vigil)
        await ws.send("x")
        await ws.recv()
        await ws.close(1000, "bye")
        return ws.close_code
    assert run_async(go()) == 1000


# ---------------------------------------------------------------------------- handshake


def test_subprotocol_echo_selected(vigil):
    """Offering "foo, echo" on /echo selects "echo" in Sec-WebSocket-Protocol."""
    with RawWS(vigil.host, vigil.port) as ws:
        resp = ws.handshake("/echo", protocols="foo, echo")
        assert resp.status == 101
        assert resp.header_all("Sec-WebSocket-Protocol") == ["echo"], resp.headers


def test_subprotocol_echo_selected_by_python_client(vigil):
    """python websockets with subprotocols=["foo", "echo"] ends up with "echo" and echoes."""
    async def go():
        async with connect(vigil, subprotocols=["foo", "echo"]) as ws:
            await ws.send("hi")
            return ws.subprotocol, await ws.recv()
    assert run_async(go()) == ("echo", "hi")


def test_unknown_subprotocols_only_gives_101_without_header(vigil):
    """Offering only unknown subprotocols still upgrades, without Sec-WebSocket-Protocol."""
    with RawWS(vigil.host, vigil.port) as ws:
        resp = ws.handshake("/echo", protocols="foo, bar")
        assert resp.status == 101
        assert resp.header("Sec-WebSocket-Protocol") is None, resp.headers
        ws.send_text("still works")
        assert ws.recv_message() == (OP_TEXT, b"still works")


def test_no_subprotocol_offered_gives_no_header(vigil):
    """Without an offer there is no Sec-WebSocket-Protocol in the response."""
    with RawWS(vigil.host, vigil.port) as ws:
        resp = ws.handshake("/echo")
        assert resp.status == 101
        assert resp.header("Sec-WebSocket-Protocol") is None, resp.headers


@pytest.mark.parametrize("version", ["8", "12", "14", "abc"])
def test_unsupported_version_is_426_with_version_header(vigil, version):
    """Sec-WebSocket-Version other than 13 -> 426 with Sec-WebSocket-Version: 13."""
    with RawWS(vigil.host, vigil.port) as ws:
        resp = ws.handshake("/echo", version=version)
    assert resp.status == 426, (resp.status, resp.body)
    assert "13" in resp.header_tokens("Sec-WebSocket-Version"), resp.headers


def test_missing_key_is_400(vigil):
    """An upgrade without Sec-WebSocket-Key is 400."""
    with RawWS(vigil.host, vigil.port) as ws:
        resp = ws.handshake("/echo", omit=("Sec-WebSocket-Key",))
    assert_json_error(resp, 400)


@pytest.mark.parametrize("key", ["abc", "not base64 at all!!", "AAAA", "",
                                 "dGhlIHNhbXBsZSBub25jZSEh"])
def test_invalid_key_is_400(vigil, key):
    """A Sec-WebSocket-Key that is not base64 of 16 bytes is 400."""
    with RawWS(vigil.host, vigil.port) as ws:
        resp = ws.handshake("/echo", key=key)
    assert_json_error(resp, 400)


def test_accept_header_for_rfc_sample_key(vigil):
    """RFC 6455's sample key gets the sample accept value."""
    with RawWS(vigil.host, vigil.port) as ws:
        resp = ws.handshake("/echo", key="dGhlIHNhbXBsZSBub25jZQ==")
        assert resp.status == 101
        assert resp.header("Sec-WebSocket-Accept") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_accept_header_for_random_keys(vigil):
    """Sec-WebSocket-Accept is base64(SHA-1(key + GUID)) for any key (checked in handshake)."""
    for _ in range(5):
        with RawWS.connect(vigil.host, vigil.port) as ws:
            assert ws.response.header("Sec-WebSocket-Accept") is not None


def test_handshake_headers_case_insensitive(vigil):
    """Header names and the Upgrade/Connection tokens are case-insensitive
    ("UPGRADE: WebSocket", "connection: keep-alive, Upgrade")."""
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    req = ("GET /echo HTTP/1.1\r\nhost: x\r\nUPGRADE: WebSocket\r\n"
           "connection: keep-alive, Upgrade\r\nsec-websocket-key: " + key +
           "\r\nSEC-WEBSOCKET-VERSION: 13\r\n\r\n")
    with RawWS(vigil.host, vigil.port) as ws:
        ws.http.send(req)
        resp = ws.http.read_response()
        assert resp.status == 101, (resp.status, resp.body)
        assert resp.header("Sec-WebSocket-Accept") == ws_accept(key)
        ws.send_text("ok")
        assert ws.recv_message() == (OP_TEXT, b"ok")


def test_frame_in_same_packet_as_handshake(vigil):
    """A client frame sent together with the upgrade request is not lost."""
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    req = (f"GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode()
    with RawWS(vigil.host, vigil.port) as ws:
        ws.http.send(req + build_frame(OP_TEXT, b"early bird"))
        resp = ws.http.read_response()
        assert resp.status == 101
        assert ws.recv_message() == (OP_TEXT, b"early bird")


def test_ws_endpoint_upgrades(vigil):
    """/ws (the native protocol endpoint) accepts the upgrade with 101."""
    with RawWS(vigil.host, vigil.port) as ws:
        resp = ws.handshake("/ws")
        assert resp.status == 101, (resp.status, resp.body)


def test_echo_is_404_without_echo_flag(vigil_factory):
    """Without --echo, an upgrade on /echo is 404 (the test endpoint is off in production)."""
    srv = vigil_factory(echo=False)
    with RawWS(srv.host, srv.port) as ws:
        resp = ws.handshake("/echo")
    assert_json_error(resp, 404)


def test_upgrade_on_unknown_path_is_404(vigil):
    """An upgrade request on a path that is no WebSocket endpoint is 404."""
    with RawWS(vigil.host, vigil.port) as ws:
        resp = ws.handshake("/nowhere")
    assert_json_error(resp, 404)


# ---------------------------------------------------------------------------- framing details


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 100000])
def test_raw_echo_length_encodings(vigil, size):
    """Payload lengths on each side of the 7/16/64-bit boundaries are echoed, with the server
    using unmasked, minimally encoded frames (checked by the raw client)."""
    data = os.urandom(size)
    with vigil.raw_ws() as ws:
        ws.send_binary(data)
        assert ws.recv_message() == (OP_BINARY, data)


def test_byte_at_a_time_delivery_still_echoes(vigil):
    """Frames arriving one byte per TCP segment (16-bit length, fragmented, with a ping in the
    middle) are reassembled and echoed correctly."""
    with vigil.raw_ws() as ws:
        ws.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        text = "slow ✓ " * 30  # > 125 bytes: 16-bit length
        ws.send_frame(OP_TEXT, text.encode(), chunk=1, delay=0.002)
        assert ws.recv_message() == (OP_TEXT, text.encode())
        data = b"".join([build_frame(OP_BINARY, b"part1-", fin=False),
                         build_frame(OP_PING, b"p"),
                         build_frame(OP_CONT, b"part2", fin=True)])
        ws.send_raw(data, chunk=1, delay=0.002)
        f = ws.recv_frame()
        assert (f.opcode, f.payload) == (OP_PONG, b"p")
        assert ws.recv_message() == (OP_BINARY, b"part1-part2")


def test_many_frames_in_one_write(vigil):
    """Several frames coalesced into one TCP write are each echoed, in order."""
    msgs = [f"m{i}".encode() * (i + 1) for i in range(50)]
    with vigil.raw_ws() as ws:
        ws.send_raw(b"".join(build_frame(OP_TEXT, m) for m in msgs))
        for m in msgs:
            assert ws.recv_message() == (OP_TEXT, m)


def test_fragmented_message_raw(vigil):
    """Text fragments (including an empty one) are reassembled into one echoed message."""
    with vigil.raw_ws() as ws:
        ws.send_frame(OP_TEXT, b"ab", fin=False)
        ws.send_frame(OP_CONT, b"", fin=False)
        ws.send_frame(OP_CONT, b"cd", fin=False)
        ws.send_frame(OP_CONT, b"ef", fin=True)
        assert ws.recv_message() == (OP_TEXT, b"abcdef")


def test_utf8_codepoint_split_across_fragments_is_valid(vigil):
    """A multi-byte character split between fragments is valid UTF-8 and echoed (early UTF-8
    checking must not reject an incomplete sequence at a fragment boundary)."""
    euro, rocket = "€".encode(), "🚀".encode()
    with vigil.raw_ws() as ws:
        ws.send_frame(OP_TEXT, b"a" + euro[:1], fin=False)
        ws.send_frame(OP_CONT, euro[1:2], fin=False)
        ws.send_frame(OP_CONT, euro[2:] + rocket[:3], fin=False)
        ws.send_frame(OP_CONT, rocket[3:], fin=True)
        assert ws.recv_message() == (OP_TEXT, b"a" + euro + rocket)


def test_invalid_utf8_in_binary_message_is_fine(vigil):
    """Binary messages are not UTF-8 checked."""
    with vigil.raw_ws() as ws:
        ws.send_binary(b"\xff\xfe\xc0\xaf")
        assert ws.recv_message() == (OP_BINARY, b"\xff\xfe\xc0\xaf")


# ---------------------------------------------------------------------------- ping / pong / close


@pytest.mark.parametrize("payload", [b"", b"hello", os.urandom(125)])
def test_ping_answered_with_pong_same_payload(vigil, payload):
    """A ping gets a pong carrying the same payload."""
    with vigil.raw_ws() as ws:
        ws.send_ping(payload)
        f = ws.recv_frame()
        assert f.opcode == OP_PONG and f.fin
        assert f.payload == payload


def test_ping_between_fragments_answered(vigil):
    """A ping in the middle of a fragmented message is answered at once and the message still
    completes."""
    with vigil.raw_ws() as ws:
        ws.send_frame(OP_TEXT, b"first ", fin=False)
        ws.send_ping(b"mid")
        f = ws.recv_frame()
        assert (f.opcode, f.payload) == (OP_PONG, b"mid")
        ws.send_frame(OP_CONT, b"second", fin=True)
        assert ws.recv_message() == (OP_TEXT, b"first second")


def test_unsolicited_pong_is_ignored(vigil):
    """A pong nobody asked for is ignored; the connection keeps working."""
    with vigil.raw_ws() as ws:
        ws.send_frame(OP_PONG, b"unsolicited")
        ws.send_text("after pong")
        assert ws.recv_message() == (OP_TEXT, b"after pong")


def test_close_1000_is_echoed_then_tcp_closed(vigil):
    """Close 1000 "bye" -> the server answers close 1000 and closes the TCP connection."""
    with vigil.raw_ws() as ws:
        ws.send_text("before")
        assert ws.recv_message() == (OP_TEXT, b"before")
        ws.send_close(1000, "bye")
        code, _ = ws.expect_close()
        assert code == 1000
        ws.expect_eof()


@pytest.mark.parametrize("code", [1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 4000,
                                  4999])
def test_close_with_valid_code_is_answered(vigil, code):
    """A close with any valid code is answered with a close (echoing the code, or 1000) and
    the TCP connection is closed."""
    with vigil.raw_ws() as ws:
        ws.send_close(code, "ok")
        got, _ = ws.expect_close()
        assert got in (code, 1000), f"answered close {code} with {got}"
        ws.expect_eof()


def test_close_without_payload_is_answered(vigil):
    """An empty close frame is answered with a close (empty or 1000) and TCP is closed."""
    with vigil.raw_ws() as ws:
        ws.send_close()
        got, _ = ws.expect_close()
        assert got in (None, 1000), got
        ws.expect_eof()


def test_data_after_close_is_ignored(vigil):
    """Frames sent after the client's close are not echoed."""
    with vigil.raw_ws() as ws:
        ws.send_raw(build_frame(OP_CLOSE, close_payload(1000)) + build_frame(OP_TEXT, b"late"))
        got, _ = ws.expect_close()
        assert got == 1000
        ws.expect_eof()


# ---------------------------------------------------------------------------- protocol violations


def test_unmasked_client_frame_is_1002(vigil):
    """A client frame without the mask bit fails the connection with 1002."""
    with vigil.raw_ws() as ws:
        ws.send_frame(OP_TEXT, b"naked", mask=False)
        ws.expect_fail(1002)


@pytest.mark.parametrize("rsv", [4, 2, 1, 7], ids=["rsv1", "rsv2", "rsv3", "all"])
def test_rsv_bits_are_1002(vigil, rsv):
    """RSV1/2/3 set without a negotiated extension -> 1002."""
    with vigil.raw_ws() as ws:
        ws.send_frame(OP_TEXT, b"rsv", rsv=rsv)
        ws.expect_fail(1002)


def test_rsv_bit_on_ping_is_1002(vigil):
    """RSV bits on a control frame -> 1002 too."""
    with vigil.raw_ws() as ws:
        ws.send_frame(OP_PING, b"p", rsv=4)
        ws.expect_fail(1002)


@pytest.mark.parametrize("opcode", [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF])
def test_reserved_opcode_is_1002(vigil, opcode):
    """Reserved opcodes 3-7 and 0xB-0xF -> 1002."""
    with vigil.raw_ws() as ws:
        ws.send_frame(opcode, b"x")
        ws.expect_fail(1002)


@pytest.mark.parametrize("opcode", [OP_PING, OP_PONG, OP_CLOSE])
def test_control_frame_payload_over_125_is_1002(vigil, opcode):
    """A control frame with 126 payload bytes (16-bit length form) -> 1002."""
    payload = close_payload(1000, "r" * 124) if opcode == OP_CLOSE else b"p" * 126
    with vigil.raw_ws() as ws:
        ws.send_frame(opcode, payload)
        ws.expect_fail(1002)


@pytest.mark.parametrize("opcode", [OP_PING, OP_PONG, OP_CLOSE])
def test_fragmented_control_frame_is_1002(vigil, opcode):
    """A control frame with FIN=0 -> 1002."""
    payload = close_payload(1000) if opcode == OP_CLOSE else b"frag"
    with vigil.raw_ws() as ws:
        ws.send_frame(opcode, payload, fin=False)
        ws.expect_fail(1002)


@pytest.mark.parametrize("fin", [True, False])
def test_continuation_without_message_is_1002(vigil, fin):
    """A continuation frame with no message in progress -> 1002."""
    with vigil.raw_ws() as ws:
        ws.send_frame(OP_CONT, b"orphan", fin=fin)
        ws.expect_fail(1002)


def test_continuation_after_completed_message_is_1002(vigil):
    """After a complete message, a continuation has nothing to continue -> 1002."""
    with vigil.raw_ws() as ws:
        ws.send_text("done")
        assert ws.recv_message() == (OP_TEXT, b"done")
        ws.send_frame(OP_CONT, b"more")
        ws.expect_fail(1002)


@pytest.mark.parametrize("second", [OP_TEXT, OP_BINARY])
def test_new_data_frame_inside_fragmented_message_is_1002(vigil, second):
    """A new text/binary frame while a fragmented message is in progress -> 1002."""
    with vigil.raw_ws() as ws:
        ws.send_frame(OP_TEXT, b"start", fin=False)
        ws.send_frame(second, b"intruder")
        ws.expect_fail(1002)


def test_64bit_length_with_high_bit_is_1002_or_1009(vigil):
    """A 64-bit length with the most significant bit set is invalid: the connection fails at
    once (1002; 1009 is accepted too since the length is also far over the limit)."""
    with vigil.raw_ws() as ws:
        hdr = bytes([0x82, 0x80 | 127]) + struct.pack("!Q", 1 << 63) + b"\x00\x00\x00\x00"
        ws.send_raw(hdr)
        got, _ = ws.expect_close(timeout=5)
        assert got in (1002, 1009), got
        ws.expect_eof()


INVALID_UTF8 = {
    "lone-continuation": b"\x80",
    "bad-start-byte": b"\xff",
    "overlong-slash": b"\xc0\xaf",
    "overlong-3byte": b"\xe0\x80\xaf",
    "surrogate": b"\xed\xa0\x80",
    "above-10ffff": b"\xf4\x90\x80\x80",
    "truncated-at-end": b"abc\xe2\x82",
    "f5-byte": b"\xf5\x80\x80\x80",
}


@pytest.mark.parametrize("bad", list(INVALID_UTF8.values()), ids=list(INVALID_UTF8))
def test_invalid_utf8_text_is_1007(vigil, bad):
    """A text message that is not valid UTF-8 -> 1007."""
    with vigil.raw_ws() as ws:
        ws.send_text(b"ok " + bad)
        ws.expect_fail(1007)


def test_invalid_utf8_across_fragments_is_1007(vigil):
    """Fragments that are each plausible but together invalid (a sequence broken by a new lead
    byte) -> 1007."""
    with vigil.raw_ws() as ws:
        ws.send_frame(OP_TEXT, b"abc\xe2", fin=False)
        ws.send_frame(OP_CONT, b"\x28\xa1", fin=True)
        ws.expect_fail(1007)


def test_invalid_utf8_in_first_fragment_fails_fast(vigil):
    """Invalid UTF-8 in the first fragment is detected without waiting for the rest: the close
    1007 comes although the final fragment is never sent."""
    with vigil.raw_ws() as ws:
        ws.send_frame(OP_TEXT, b"hello \xff world", fin=False)
        ws.expect_fail(1007, timeout=5)


def test_invalid_utf8_inside_a_partial_frame_fails_fast(vigil):
    """Invalid UTF-8 early in a large text frame whose payload has only partly arrived is
    detected without waiting for the rest of the frame."""
    with vigil.raw_ws() as ws:
        frame = build_frame(OP_TEXT, b"\xc0\xaf" + b"a" * 200000)
        ws.send_raw(frame[:5000])
        got, _ = ws.expect_close(timeout=5)
        assert got == 1007, got


def test_message_over_max_size_single_frame_is_1009(shared_vigil):
    """--max-message-size 1KiB: a 1025-byte frame -> 1009; 1024 bytes is echoed."""
    srv = shared_vigil("--max-message-size", "1KiB")
    with srv.raw_ws() as ws:
        ws.send_binary(b"a" * 1024)
        assert ws.recv_message() == (OP_BINARY, b"a" * 1024)
        ws.send_binary(b"a" * 1025)
        ws.expect_fail(1009)


def test_message_over_max_size_text_is_1009(shared_vigil):
    """The limit applies to text messages too."""
    srv = shared_vigil("--max-message-size", "1KiB")
    with srv.raw_ws() as ws:
        ws.send_text("t" * 2000)
        ws.expect_fail(1009)


def test_message_over_max_size_across_fragments_is_1009(shared_vigil):
    """--max-message-size 1KiB: three 400-byte fragments (1200 bytes in all) -> 1009, even
    though each fragment is small and the last one is never sent."""
    srv = shared_vigil("--max-message-size", "1KiB")
    with srv.raw_ws() as ws:
        ws.send_frame(OP_BINARY, b"b" * 400, fin=False)
        ws.send_frame(OP_CONT, b"b" * 400, fin=False)
        ws.send_frame(OP_CONT, b"b" * 400, fin=False)
        ws.expect_fail(1009, timeout=5)


def test_fragments_exactly_at_max_size_are_echoed(shared_vigil):
    """Fragments adding up to exactly --max-message-size are fine."""
    srv = shared_vigil("--max-message-size", "1KiB")
    with srv.raw_ws() as ws:
        ws.send_frame(OP_BINARY, b"c" * 512, fin=False)
        ws.send_frame(OP_CONT, b"c" * 512, fin=True)
        assert ws.recv_message() == (OP_BINARY, b"c" * 1024)


def test_huge_announced_length_fails_without_payload(shared_vigil):
    """A frame header announcing 1 TiB closes with 1009 at once (no waiting for the payload,
    no allocation of the announced size)."""
    srv = shared_vigil("--max-message-size", "1KiB")
    with srv.raw_ws() as ws:
        ws.send_raw(bytes([0x82, 0x80 | 127]) + struct.pack("!Q", 1 << 40) + os.urandom(4))
        ws.expect_fail(1009, timeout=5)
    assert srv.http("GET", "/healthz").status == 200


def test_close_with_one_byte_payload_is_1002(vigil):
    """A close frame with a 1-byte payload -> 1002."""
    with vigil.raw_ws() as ws:
        ws.send_frame(OP_CLOSE, b"\x03")
        ws.expect_fail(1002)


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535])
def test_invalid_close_code_is_1002(vigil, code):
    """A close frame with a code that may not be sent on the wire -> 1002."""
    with vigil.raw_ws() as ws:
        ws.send_close(code)
        ws.expect_fail(1002)


def test_close_reason_invalid_utf8_is_1007(vigil):
    """A close reason that is not UTF-8 -> 1007."""
    with vigil.raw_ws() as ws:
        ws.send_close(1000, b"bad \xff reason")
        ws.expect_fail(1007)


def test_violation_split_byte_by_byte_still_detected(vigil):
    """An unmasked frame delivered one byte at a time is still a 1002 (the check does not depend
    on the whole header arriving at once)."""
    with vigil.raw_ws() as ws:
        ws.send_raw(build_frame(OP_TEXT, b"naked", mask=False), chunk=1, delay=0.01)
        ws.expect_fail(1002)


def test_server_unaffected_by_protocol_errors(vigil):
    """After a string of failed connections the server still echoes on a new one."""
    for bad in (build_frame(OP_TEXT, b"x", mask=False), build_frame(5, b"x"),
                build_frame(OP_CONT, b"x"), build_frame(OP_TEXT, b"\xff")):
        with vigil.raw_ws() as ws:
            ws.send_raw(bad)
            ws.expect_close()
    assert echo_all(vigil, ["still alive"]) == ["still alive"]


def test_abrupt_disconnect_mid_frame_does_not_hurt(vigil):
    """A client vanishing in the middle of a frame is cleaned up; the server keeps serving."""
    for _ in range(20):
        ws = vigil.raw_ws()
        ws.send_raw(build_frame(OP_BINARY, os.urandom(5000))[:2500])
        ws.close()
    time.sleep(0.2)
    assert vigil.http("GET", "/healthz").status == 200
    assert echo_all(vigil, [b"ok"]) == [b"ok"]
