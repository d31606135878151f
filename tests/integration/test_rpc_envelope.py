"""What the compatibility profiles and vigil.js build on: publisher envelope fields, the native
`rpc` message forwarded to --rpc-url, the `acked` push to a user's other connections,
--refuse-websocket, and recovery by time for a named channel whose epoch changed."""

import asyncio
import http.server
import json
import threading

import pytest

from conftest import free_port
from hubutil import (API_KEY, api, connect, hub_args, mint, ok_json, uniq)


def publish(srv, body):
    return ok_json(api(srv, "POST", "/api/publish", body, api_key=API_KEY))


# --- envelope fields ---------------------------------------------------------------------------

def test_extra_top_level_fields_are_delivered_in_the_envelope(vigil_factory):
    srv = vigil_factory(*hub_args())

    async def run():
        ch = f"cameras.{uniq()}"
        async with await connect(srv, mint("alice")) as c:
            await c.subscribe([ch])
            publish(srv, {"channel": ch, "type": "camera_event", "camera_id": 1,
                          "event_type": "motion_detected", "data": {"details": "zone 1"}})
            [m] = await c.published(1)
            assert m["type"] == "camera_event"
            assert m["camera_id"] == 1 and isinstance(m["camera_id"], int)
            assert m["event_type"] == "motion_detected"
            assert m["data"] == {"details": "zone 1"}
            assert m["channel"] == ch and m["offset"] == 1
    asyncio.run(run())


def test_envelope_fields_cannot_override_vigils_own(vigil_factory):
    srv = vigil_factory(*hub_args())

    async def run():
        ch = f"cameras.{uniq()}"
        async with await connect(srv, mint("alice")) as c:
            await c.subscribe([ch])
            publish(srv, {"channel": ch, "type": "t", "offset": 999, "timestamp": "forged",
                          "data": 1})
            [m] = await c.published(1)
            assert m["offset"] == 1
            assert m["timestamp"] != "forged"
            raw = json.dumps(m)
            assert raw.count('"offset"') == 1 and raw.count('"timestamp"') == 1
    asyncio.run(run())


def test_envelope_field_name_too_long_is_refused(vigil_factory):
    srv = vigil_factory(*hub_args())
    resp = api(srv, "POST", "/api/publish",
               {"channel": "a.b", "type": "t", "x" * 200: 1, "data": 1}, api_key=API_KEY)
    assert resp.status == 400
    assert resp.json()["error"]["code"] == "invalid_message"


# --- rpc ---------------------------------------------------------------------------------------

class Backend:
    """A test backend for --rpc-url: answers {"echo": params, "user": user} or a status code."""

    def __init__(self, status=200, body=None, delay=0.0):
        self.calls = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                req = json.loads(self.rfile.read(n))
                outer.calls.append((req, self.headers.get("Authorization")))
                if delay:
                    threading.Event().wait(delay)
                payload = body if body is not None else json.dumps(
                    {"echo": req["params"], "user": req["user"], "method": req["method"]})
                data = payload.encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *a):
                pass

        self.port = free_port()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}/rpc"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def backend():
    backends = []

    def make(**kw):
        b = Backend(**kw)
        backends.append(b)
        return b
    yield make
    for b in backends:
        b.close()


def test_rpc_reaches_the_backend_and_its_answer_comes_back(vigil_factory, backend):
    b = backend()
    srv = vigil_factory(*hub_args("--rpc-url", b.url))

    async def run():
        async with await connect(srv, mint("alice")) as c:
            ans = await c.request({"type": "rpc", "id": 7, "method": "camera.ptz",
                                   "params": {"pan": 10}})
            assert ans == {"type": "rpc_result", "id": 7,
                           "result": {"echo": {"pan": 10}, "user": "alice",
                                      "method": "camera.ptz"}}
    asyncio.run(run())
    req, auth = b.calls[0]
    assert req["method"] == "camera.ptz" and req["user"] == "alice"
    assert auth == f"Bearer {API_KEY}"


def test_rpc_errors_are_answered_with_the_request_id(vigil_factory, backend):
    failing = backend(status=500, body='{"error":"boom"}')
    srv = vigil_factory(*hub_args("--rpc-url", failing.url))
    no_backend = vigil_factory(*hub_args())
    dead = vigil_factory(*hub_args("--rpc-url", f"http://127.0.0.1:{free_port()}/x"))

    async def run():
        for server, words in ((srv, "HTTP 500"), (no_backend, "--rpc-url"),
                              (dead, "unreachable")):
            async with await connect(server, mint("alice")) as c:
                ans = await c.request({"type": "rpc", "id": "r1", "method": "m"}, timeout=15)
                assert ans["type"] == "error" and ans["code"] == "rpc_failed", ans
                assert ans["id"] == "r1" and words in ans["message"], ans
                await c.ping()  # the connection is still served
        async with await connect(srv, mint("alice")) as c:
            ans = await c.request({"type": "rpc", "id": 1})
            assert ans["type"] == "error" and ans["code"] == "bad_request"
    asyncio.run(run())


def test_rpc_answer_for_a_closed_connection_is_dropped(vigil_factory, backend):
    slow = backend(delay=0.5)
    srv = vigil_factory(*hub_args("--rpc-url", slow.url))

    async def run():
        c = await connect(srv, mint("alice"))
        await c.send({"type": "rpc", "id": 1, "method": "slow"})
        await c.close()
        await asyncio.sleep(1.0)
        async with await connect(srv, mint("alice")) as c2:
            await c2.ping()
    asyncio.run(run())
    assert len(slow.calls) == 1


# --- acked pushed to the user's other connections -------------------------------------------

def test_ack_is_pushed_to_the_users_other_connections(vigil_factory):
    srv = vigil_factory(*hub_args())
    user = uniq("user")
    ch = f"alerts.{uniq()}"

    async def run():
        tab1 = await connect(srv, mint(user))
        tab2 = await connect(srv, mint(user))
        other = await connect(srv, mint(uniq("other")))
        for c in (tab1, tab2, other):
            await c.subscribe([ch])
        publish(srv, {"channel": ch, "type": "alert", "id": "a-1", "data": {"level": "warning"}})
        for c in (tab1, tab2, other):
            [m] = await c.published(1)
            assert m["id"] == "a-1"
        ans = await tab1.request({"type": "ack", "id": "a-1"})
        assert ans["type"] == "acked"
        note = await tab2.recv(timeout=5)
        assert note == {"type": "acked", "id": "a-1"}
        # Not to the one that acked (it had its answer), not to another user.
        with pytest.raises(asyncio.TimeoutError):
            await tab1.recv(timeout=0.4)
        with pytest.raises(asyncio.TimeoutError):
            await other.recv(timeout=0.4)
        # POST /api/ack notifies every connection of the user.
        publish(srv, {"channel": ch, "type": "alert", "id": "a-2", "data": {}})
        for c in (tab1, tab2, other):
            await c.published(1)
        ok_json(api(srv, "POST", "/api/ack", {"id": "a-2"}, token=mint(user)))
        for c in (tab1, tab2):
            assert await c.recv(timeout=5) == {"type": "acked", "id": "a-2"}
        for c in (tab1, tab2, other):
            await c.close()
    asyncio.run(run())


# --- --refuse-websocket ------------------------------------------------------------------------

def test_refuse_websocket_answers_403_and_sse_still_works(vigil_factory):
    srv = vigil_factory(*hub_args("--refuse-websocket"))
    resp = api(srv, "GET", f"/ws?token={mint('alice')}", headers={
        "Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})
    assert resp.status == 403
    assert resp.json()["error"]["code"] == "websocket_refused"
    resp = api(srv, "GET", "/api/poll?channels=a.b&timeout=0.1", token=mint("alice"))
    assert resp.status == 200


# --- recovery by time for a channel whose epoch changed -------------------------------------

def test_named_channel_with_a_new_epoch_falls_back_to_since_time(vigil_factory):
    srv = vigil_factory(*hub_args())
    ch = f"cameras.{uniq()}"

    async def run():
        async with await connect(srv, mint("alice")) as c:
            await c.subscribe([ch])
            publish(srv, {"channel": ch, "type": "t", "data": 1})
            [m] = await c.published(1)
        publish(srv, {"channel": ch, "type": "t", "data": 2})
        publish(srv, {"channel": ch, "type": "t", "data": 3})
        async with await connect(srv, mint("alice")) as c:
            pattern = ch.rsplit(".", 1)[0] + ".*"
            ans = await c.subscribe([pattern],
                                    since={ch: {"offset": m["offset"], "epoch": "0" * 16}},
                                    since_time=m["timestamp"])
            got = []
            while not got or got[-1]["data"] != 3:
                got += await c.published(1)
            # What history holds from since_time on: 2 and 3, and 1 too when it was published in
            # the same millisecond as the client's last message (clients dedupe by offset).
            assert [g["data"] for g in got][-2:] == [2, 3], (ans, got)
            assert [g["data"] for g in got] in ([2, 3], [1, 2, 3]), got
    asyncio.run(run())


# --- since_time on the fallback transports --------------------------------------------------

def test_long_poll_since_time_replays_channels_new_under_a_pattern(vigil_factory):
    srv = vigil_factory(*hub_args())
    base = uniq("fb")
    token = mint("alice")
    publish(srv, {"channel": f"{base}.a", "type": "t", "data": "a1"})
    first = ok_json(api(srv, "GET", f"/api/poll?channels={base}.*&timeout=0", token=token))
    # Nothing was asked for yet: the first poll starts from now.
    assert first["messages"] == []
    import time as _t
    _t.sleep(0.05)
    since_ms = int(_t.time() * 1000)
    _t.sleep(0.01)
    publish(srv, {"channel": f"{base}.b", "type": "t", "data": "b1"})  # a channel new since
    got = ok_json(api(srv, "GET",
                      f"/api/poll?channels={base}.*&since={first['since']}&since_time={since_ms}"
                      "&timeout=0", token=token))
    assert [m["data"] for m in got["messages"]] == ["b1"], got
    assert f"{base}.b:1" in got["since"]
    bad = api(srv, "GET", f"/api/poll?channels={base}.*&since_time=yesterday", token=token)
    assert bad.status == 400


def test_sse_since_time_replays_channels_new_under_a_pattern(vigil_factory):
    srv = vigil_factory(*hub_args())
    base = uniq("fb")
    import time as _t
    since_ms = int(_t.time() * 1000) - 1
    publish(srv, {"channel": f"{base}.new", "type": "t", "data": "n1"})
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
    conn.request("GET", f"/api/sse?channels={base}.*&since_time={since_ms}&token={mint('alice')}")
    resp = conn.getresponse()
    assert resp.status == 200
    buf = b""
    while b"n1" not in buf:
        buf += resp.fp.read1(4096)
    assert f"id: {base}.new:1".encode() in buf
    conn.close()


def test_rpc_backend_slower_than_rpc_timeout_is_an_error(vigil_factory, backend):
    slow = backend(delay=2.0)
    srv = vigil_factory(*hub_args("--rpc-url", slow.url, "--rpc-timeout", "0.3"))

    async def run():
        async with await connect(srv, mint("alice")) as c:
            ans = await c.request({"type": "rpc", "id": 9, "method": "slow"}, timeout=5)
            assert ans["type"] == "error" and ans["code"] == "rpc_failed", ans
            assert ans["id"] == 9
            await c.ping()
    asyncio.run(run())
