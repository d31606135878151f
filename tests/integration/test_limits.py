"""Limits (docs/PROTOCOL.md "Limits"): connections per user (the next one closed 1008
"too many connections", other users unaffected, a slot frees on close), --allowed-origins (403
for another Origin), the inbound message rate (error rate_limited, then 1008
"rate limit exceeded"), and a client that stops reading (1008 "slow consumer")."""

import asyncio
import functools
import json
import time

import pytest
import websockets

from conftest import OP_CLOSE, OP_TEXT, ConnectionEnded, RawWS, run_async
from hubutil import (api, connect, hub_args, mint, publish, publish_batch, uniq,
                     ws_close_after_handshake, ws_path)


def run(coro, timeout=60):
    return run_async(coro, timeout=timeout)


async def in_thread(fn, *a, **kw):
    return await asyncio.get_running_loop().run_in_executor(None, functools.partial(fn, *a, **kw))


@pytest.fixture
def hub(shared_vigil):
    return shared_vigil(*hub_args())


# ---------------------------------------------------------------------------- per-user limit


def test_sixth_connection_of_a_user_refused(hub):
    sub = uniq("five")

    async def go():
        cs = [await connect(hub, mint(sub)) for _ in range(5)]
        others = []
        try:
            code, reason, _ = await in_thread(ws_close_after_handshake, hub, ws_path(mint(sub)))
            assert (code, reason) == (1008, "too many connections")
            for c in cs:  # the five are untouched
                await c.ping()
            # other users still connect
            others = [await connect(hub, mint(uniq())) for _ in range(3)]
            # and the user is still at the limit
            code, reason, _ = await in_thread(ws_close_after_handshake, hub,
                                              ws_path(mint(sub)))
            assert (code, reason) == (1008, "too many connections")
        finally:
            for c in cs + others:
                await c.close()
    run(go())


def test_slot_frees_when_a_connection_closes(hub):
    sub = uniq("slot")

    async def go():
        cs = [await connect(hub, mint(sub)) for _ in range(5)]
        try:
            await cs[0].close()
            # the server may take a moment to notice the close: retry for up to 5 s
            deadline = time.monotonic() + 5
            while True:
                try:
                    c = await connect(hub, mint(sub))
                    break
                except AssertionError as e:
                    if "too many connections" not in str(e) or time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.1)
            cs[0] = c
            await c.ping()
            assert c.status["user"]["id"] == sub
            code, reason, _ = await in_thread(ws_close_after_handshake, hub, ws_path(mint(sub)))
            assert (code, reason) == (1008, "too many connections")
        finally:
            for c in cs:
                await c.close()
    run(go())


def test_slot_frees_when_the_client_vanishes(hub):
    """A TCP connection dropped without a close handshake frees its slot too."""
    sub = uniq("vanish")

    async def go():
        cs = [await connect(hub, mint(sub)) for _ in range(4)]
        raw = await in_thread(RawWS.connect, hub.host, hub.port, path=ws_path(mint(sub)))
        try:
            await in_thread(raw.recv_message)  # connection_status: it is the fifth
            raw.close()
            deadline = time.monotonic() + 5
            while True:
                try:
                    c = await connect(hub, mint(sub))
                    break
                except AssertionError as e:
                    if "too many connections" not in str(e) or time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.1)
            cs.append(c)
        finally:
            for c in cs:
                await c.close()
    run(go())


def test_max_connections_per_user_option(shared_vigil):
    srv = shared_vigil(*hub_args("--max-connections-per-user", "2"))
    sub = uniq("two")

    async def go():
        cs = [await connect(srv, mint(sub)) for _ in range(2)]
        try:
            code, reason, _ = await in_thread(ws_close_after_handshake, srv, ws_path(mint(sub)))
            assert (code, reason) == (1008, "too many connections")
            async with await connect(srv, mint(uniq())):
                pass
        finally:
            for c in cs:
                await c.close()
    run(go())


# ---------------------------------------------------------------------------- origins


ORIGINS = "http://a.example,http://b.example:8080"


@pytest.fixture
def hub_origins(shared_vigil):
    return shared_vigil(*hub_args("--allowed-origins", ORIGINS))


@pytest.mark.parametrize("origin", ["http://c.example", "https://a.example", "http://a.example.evil",
                                    "http://b.example", "http://b.example:8081", "null"])
def test_disallowed_origin_gets_403(hub_origins, origin):
    ws = RawWS(hub_origins.host, hub_origins.port)
    with ws:
        resp = ws.handshake(ws_path(mint(uniq())), headers={"Origin": origin})
    assert resp.status == 403, f"Origin {origin}: expected 403, got {resp.status}"


@pytest.mark.parametrize("origin", ["http://a.example", "http://b.example:8080"])
def test_allowed_origin_connects(hub_origins, origin):
    async def go():
        async with await connect(hub_origins, mint(uniq()), origin=origin) as c:
            await c.ping()
    run(go())


def test_any_origin_without_option(hub):
    async def go():
        async with await connect(hub, mint(uniq()), origin="http://whatever.example") as c:
            await c.ping()
    run(go())


# ---------------------------------------------------------------------------- inbound rate


@pytest.fixture
def hub_rate(shared_vigil):
    return shared_vigil(*hub_args("--max-inbound-rate", "10"))


def test_rate_limited_error_then_recovers(hub_rate):
    """15 requests at once with a limit of 10/s (over the rate, not over twice it): some are
    answered `error` rate_limited, the connection stays open and works a moment later."""
    async def go():
        async with await connect(hub_rate, mint(uniq())) as c:
            for i in range(15):
                await c.send({"type": "ping", "id": i})
            seen = []
            end = time.monotonic() + 1.5
            while time.monotonic() < end:
                try:
                    seen.append(await c.recv(timeout=max(0.01, end - time.monotonic())))
                except asyncio.TimeoutError:
                    break
            limited = [m for m in seen if m.get("type") == "error"]
            pongs = [m for m in seen if m.get("type") == "pong"]
            assert limited, f"no rate_limited error for 15 msgs at a 10/s limit: {seen}"
            assert all(m.get("code") == "rate_limited" for m in limited), limited
            assert 1 <= len(pongs) <= 14, seen
            await asyncio.sleep(1.0)
            await c.ping()
    run(go())


def test_flood_closed_with_1008(hub_rate):
    async def go():
        c = await connect(hub_rate, mint(uniq()))
        try:
            try:
                for i in range(200):
                    await c.send({"type": "ping", "id": i})
            except websockets.ConnectionClosed:
                pass
            code, reason, seen = await c.wait_closed(timeout=5)
            assert (code, reason) == (1008, "rate limit exceeded"), (code, reason)
            assert any(m.get("code") == "rate_limited" for m in seen), \
                "a rate_limited error comes before the close"
        finally:
            await c.close()
    run(go())


def test_under_the_rate_never_limited(hub_rate):
    async def go():
        async with await connect(hub_rate, mint(uniq())) as c:
            for _ in range(6):
                ans = await c.ping()
                assert ans["type"] == "pong"
                await asyncio.sleep(0.4)
    run(go())


def test_default_rate_allows_bursts_of_50(hub):
    async def go():
        async with await connect(hub, mint(uniq())) as c:
            for i in range(50):
                await c.send({"type": "ping", "id": f"b{i}"})
            for i in range(50):
                ans = await c.answer(f"b{i}")
                assert ans["type"] == "pong", ans
    run(go())


def test_rate_limit_is_per_connection(hub_rate):
    """One connection flooding does not limit another connection of the same user."""
    sub = uniq("pc")

    async def go():
        async with await connect(hub_rate, mint(sub)) as quiet:
            flood = await connect(hub_rate, mint(sub))
            try:
                for i in range(200):
                    await flood.send({"type": "ping", "id": i})
            except websockets.ConnectionClosed:
                pass
            await flood.wait_closed(timeout=5)
            await flood.close()
            ans = await quiet.ping()
            assert ans["type"] == "pong"
    run(go())


# ---------------------------------------------------------------------------- slow consumer


def test_slow_consumer_closed(vigil_factory):
    """A subscriber that stops reading while ~20 MB are published to it is disconnected
    (1008 "slow consumer" when the close frame gets through); other clients keep working."""
    srv = vigil_factory(*hub_args("--max-outbound", "64KiB"))
    ch = uniq("slow")
    raw = RawWS.connect(srv.host, srv.port, path=ws_path(mint(uniq())))
    raw.recv_message()  # connection_status
    raw.send_text('{"type":"subscribe","channels":["%s"],"id":1}' % ch)
    raw.recv_message()  # subscribed
    blob = "x" * 20000
    for _ in range(25):
        publish_batch(srv, [{"channel": ch, "type": "t", "data": blob} for _ in range(40)])
    close = None
    frames = 0
    deadline = time.monotonic() + 20
    with raw:
        try:
            while time.monotonic() < deadline:
                f = raw.recv_frame(timeout=max(0.01, deadline - time.monotonic()))
                if f.opcode == OP_CLOSE:
                    close = (f.close_code, f.close_reason.decode())
                    break
                # every frame before the close is whole (nothing cut mid-frame)
                assert f.opcode == OP_TEXT and f.fin, f
                json.loads(f.payload)
                frames += 1
        except ConnectionEnded:
            pytest.fail(f"TCP closed without a close frame after {frames} messages")
        except TimeoutError:
            pytest.fail("the slow consumer was never disconnected")
    assert close == (1008, "slow consumer"), close
    assert frames < 1000, "all 1000 messages arrived: the consumer was never cut off"

    async def go():
        async with await connect(srv, mint(uniq())) as c:
            await c.subscribe([ch])
            publish(srv, ch, "t", "small")
            (m,) = await c.published(1)
            assert m["data"] == "small"
    run(go())


def test_rate_limited_error_echoes_request_id(hub_rate):
    """PROTOCOL.md: every request's `id` is echoed in its answer or `error`, so the
    rate_limited error names the request it refused."""
    async def go():
        async with await connect(hub_rate, mint(uniq())) as c:
            for i in range(15):
                await c.send({"type": "ping", "id": f"r{i}"})
            seen = []
            end = time.monotonic() + 1.5
            while time.monotonic() < end:
                try:
                    seen.append(await c.recv(timeout=max(0.01, end - time.monotonic())))
                except asyncio.TimeoutError:
                    break
            limited = [m for m in seen if m.get("code") == "rate_limited"]
            assert limited, seen
            for m in limited:
                assert m.get("id") in {f"r{i}" for i in range(15)}, \
                    f"rate_limited error without the request's id: {m}"
    run(go())


def test_message_too_big_on_ws(shared_vigil):
    srv = shared_vigil(*hub_args("--max-message-size", "64KiB"))

    async def go():
        c = await connect(srv, mint(uniq()))
        try:
            await c.send(json.dumps({"type": "ping", "pad": "x" * 70000}))
            code, _, _ = await c.wait_closed()
            assert code == 1009, code
        finally:
            await c.close()
    run(go())


def test_per_user_limit_under_concurrent_connects(vigil_factory):
    """20 connections of one user opened at once on a 4-worker server: exactly 5 get in, the
    others are closed 1008 "too many connections"."""
    srv = vigil_factory(*hub_args(), workers=4)
    sub = uniq("race")

    async def one():
        try:
            return await connect(srv, mint(sub))
        except AssertionError as e:
            return e

    async def go():
        results = await asyncio.gather(*(one() for _ in range(20)))
        ok = [r for r in results if not isinstance(r, BaseException)]
        refused = [r for r in results if isinstance(r, BaseException)]
        try:
            assert len(ok) == 5, f"{len(ok)} of 20 concurrent connections got in (limit 5)"
            for r in refused:
                assert getattr(r, "code", None) == 1008 and r.reason == "too many connections", r
            for c in ok:
                await c.ping()
        finally:
            for c in ok:
                await c.close()
    run(go())


def test_anonymous_clients_are_not_one_user_for_the_limit(shared_vigil):
    """Every token-less client is "anonymous": --max-connections-per-user must not turn into a
    server-wide cap of 5 anonymous viewers (WebSocket, SSE and long-poll alike)."""
    srv = shared_vigil(*hub_args("--allow-anonymous", "--max-connections-per-user", "2"))

    async def run():
        clients = [await connect(srv, None) for _ in range(6)]
        for c in clients:
            await c.ping()
        resp = api(srv, "GET", "/api/poll?channels=a.b&timeout=0")
        assert resp.status == 200
        for c in clients:
            await c.close()
    asyncio.run(run())
