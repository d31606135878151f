"""Heartbeats and token expiry on live connections (docs/PROTOCOL.md "Heartbeats", close code
4001, the `refresh` request).

With --ping-interval 0.2 --ping-timeout 1 a client that never answers pings is pinged and closed
with 1001 "heartbeat timeout" after about a second, while clients that answer pings (python
websockets does it by itself) or keep sending messages stay.  A token whose exp passes (with
--jwt-leeway) closes the connection with 4001 "token expired" unless it was refreshed."""

import asyncio
import time

import pytest

from conftest import OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, ConnectionEnded, RawWS, run_async
from hubutil import (OTHER_SECRET, connect, hub_args, mint, parse_ts, uniq, ws_path)

HB = ("--ping-interval", "0.2", "--ping-timeout", "1")


def run(coro, timeout=60):
    return run_async(coro, timeout=timeout)


@pytest.fixture
def hub_hb(shared_vigil):
    return shared_vigil(*hub_args(*HB))


@pytest.fixture
def hub_exp(shared_vigil):
    return shared_vigil(*hub_args("--jwt-leeway", "0"))


# ---------------------------------------------------------------------------- heartbeat


def test_silent_client_pinged_then_closed_1001(hub_hb):
    t0 = time.monotonic()
    ws = RawWS.connect(hub_hb.host, hub_hb.port, path=ws_path(mint(uniq())))
    pings, close = 0, None
    with ws:
        deadline = t0 + 10
        while True:
            try:
                f = ws.recv_frame(timeout=max(0.01, deadline - time.monotonic()))
            except TimeoutError:
                pytest.fail(f"not closed within 10 s ({pings} pings seen)")
            except ConnectionEnded:
                pytest.fail(f"TCP closed without a close frame ({pings} pings seen)")
            if f.opcode == OP_PING:
                pings += 1
            elif f.opcode == OP_CLOSE:
                close = (f.close_code, f.close_reason.decode())
                break
        elapsed = time.monotonic() - t0
        ws.expect_eof(timeout=5)
    assert close == (1001, "heartbeat timeout"), close
    assert pings >= 1, "no server ping before the heartbeat timeout"
    assert elapsed >= 0.9, f"closed after {elapsed:.2f} s, before --ping-timeout 1"
    assert elapsed < 6, f"closed only after {elapsed:.2f} s with --ping-timeout 1"


def test_python_client_answering_pings_stays(hub_hb):
    """python websockets answers pings by itself (and sends none of its own here)."""
    async def go():
        async with await connect(hub_hb, mint(uniq())) as c:
            assert await c.drain(3.0) == []
            assert c.ws.open, f"closed: {c.ws.close_code} {c.ws.close_reason}"
            await c.ping()
    run(go())


def test_raw_client_answering_pings_stays(hub_hb):
    ws = RawWS.connect(hub_hb.host, hub_hb.port, path=ws_path(mint(uniq())))
    with ws:
        pings = 0
        end = time.monotonic() + 3
        while time.monotonic() < end:
            try:
                f = ws.recv_frame(timeout=max(0.01, end - time.monotonic()))
            except TimeoutError:
                break
            assert f.opcode != OP_CLOSE, f"closed: {f.close_code} {f.close_reason!r}"
            if f.opcode == OP_PING:
                pings += 1
                ws.send_frame(OP_PONG, f.payload)
        assert pings >= 2, f"only {pings} pings in 3 s with --ping-interval 0.2"
        ws.send_text("ping")
        deadline = time.monotonic() + 5
        while True:
            f = ws.recv_frame(timeout=max(0.01, deadline - time.monotonic()))
            if f.opcode == OP_PING:
                ws.send_frame(OP_PONG, f.payload)
                continue
            assert f.opcode == OP_TEXT and f.payload == b"pong", f
            break


def test_raw_client_sending_messages_stays(hub_hb):
    """Any traffic from the client counts, not only pongs."""
    ws = RawWS.connect(hub_hb.host, hub_hb.port, path=ws_path(mint(uniq())))
    with ws:
        end = time.monotonic() + 3
        next_send = 0
        texts = 0
        while time.monotonic() < end:
            if time.monotonic() >= next_send:
                ws.send_text("ping")
                next_send = time.monotonic() + 0.3
            try:
                f = ws.recv_frame(timeout=0.1)
            except TimeoutError:
                continue
            assert f.opcode != OP_CLOSE, f"closed: {f.close_code} {f.close_reason!r}"
            if f.opcode == OP_TEXT:
                texts += 1
        assert texts >= 5


def test_default_heartbeat_does_not_close_quickly(shared_vigil):
    srv = shared_vigil(*hub_args())
    ws = RawWS.connect(srv.host, srv.port, path=ws_path(mint(uniq())))
    with ws:
        ws.recv_message()  # connection_status
        with pytest.raises(TimeoutError):
            ws.recv_frame(timeout=2)


# ---------------------------------------------------------------------------- token expiry


def test_expired_token_closes_with_4001(hub_exp):
    exp = int(time.time()) + 3

    async def go():
        c = await connect(hub_exp, mint(uniq(), exp=exp))
        try:
            code, reason, _ = await c.wait_closed(timeout=15)
            return code, reason, time.time()
        finally:
            await c.close()
    code, reason, at = run(go())
    assert (code, reason) == (4001, "token expired")
    assert at >= exp - 0.25, f"closed {exp - at:.2f} s before exp"
    assert at <= exp + 4, f"closed {at - exp:.2f} s after exp"


def test_expiry_honours_leeway(shared_vigil):
    srv = shared_vigil(*hub_args("--jwt-leeway", "2"))
    exp = int(time.time()) + 2

    async def go():
        c = await connect(srv, mint(uniq(), exp=exp))
        try:
            code, reason, _ = await c.wait_closed(timeout=15)
            return code, reason, time.time()
        finally:
            await c.close()
    code, reason, at = run(go())
    assert (code, reason) == (4001, "token expired")
    assert at >= exp + 2 - 0.25, f"closed {exp + 2 - at:.2f} s before exp + leeway"
    assert at <= exp + 2 + 4


def test_refresh_keeps_connection(hub_exp):
    sub = uniq("refresh")
    exp = int(time.time()) + 3

    async def go():
        async with await connect(hub_exp, mint(sub, exp=exp)) as c:
            new_exp = int(time.time()) + 3600
            ans = await c.request({"type": "refresh", "token": mint(sub, exp=new_exp),
                                   "id": "r1"})
            assert ans["type"] == "refreshed", ans
            assert ans["id"] == "r1", ans
            assert abs(parse_ts(ans["expires_at"]) - new_exp) < 1.5, ans
            # well past the first token's exp
            assert await c.drain(max(0.0, exp + 2.5 - time.time())) == []
            assert c.ws.open, f"closed: {c.ws.close_code} {c.ws.close_reason}"
            await c.ping()
    run(go())


@pytest.mark.parametrize("case", ["other_sub", "bad_signature", "expired", "garbage"])
def test_refused_refresh_keeps_old_expiry(hub_exp, case):
    sub = uniq("badref")
    exp = int(time.time()) + 3
    token = {"other_sub": lambda: mint(uniq("someone-else")),
             "bad_signature": lambda: mint(sub, key=OTHER_SECRET),
             "expired": lambda: mint(sub, exp=int(time.time()) - 60),
             "garbage": lambda: "garbage"}[case]()

    async def go():
        c = await connect(hub_exp, mint(sub, exp=exp))
        try:
            ans = await c.request({"type": "refresh", "token": token, "id": "r"})
            assert ans["type"] == "error", f"refresh with {case} answered {ans}"
            assert ans["id"] == "r"
            code, reason, _ = await c.wait_closed(timeout=15)
            assert (code, reason) == (4001, "token expired")
        finally:
            await c.close()
    run(go())


def test_refresh_without_token_is_error(hub_exp):
    async def go():
        async with await connect(hub_exp, mint(uniq())) as c:
            ans = await c.request({"type": "refresh", "id": 1})
            assert ans["type"] == "error", ans
            await c.ping()
    run(go())


def test_ticket_connection_expires_with_its_token(hub_exp):
    """A connection opened with a ticket carries the token's exp: closed 4001 after it."""
    from hubutil import api, ok_json
    sub = uniq("tkexp")
    exp = int(time.time()) + 3
    ticket = ok_json(api(hub_exp, "POST", "/api/ws/ticket", token=mint(sub, exp=exp)))["ticket"]

    async def go():
        c = await connect(hub_exp, ticket=ticket)
        try:
            assert c.status["user"]["id"] == sub
            code, reason, _ = await c.wait_closed(timeout=15)
            return code, reason, time.time()
        finally:
            await c.close()
    code, reason, at = run(go())
    assert (code, reason) == (4001, "token expired")
    assert exp - 0.25 <= at <= exp + 4


def test_shutdown_closes_websockets_with_1001(vigil_factory):
    """SIGTERM: every /ws connection (on every worker) is closed with 1001 going away."""
    import signal
    srv = vigil_factory(*hub_args(), workers=3)

    async def go():
        cs = [await connect(srv, mint(f"sd-{i}")) for i in range(6)]
        try:
            srv.send_signal(signal.SIGTERM)
            results = await asyncio.gather(*(c.wait_closed(timeout=10) for c in cs))
        finally:
            for c in cs:
                await c.close()
        return [r[0] for r in results]
    codes = run(go())
    assert codes == [1001] * 6, codes
    assert srv.wait(10) == 0
