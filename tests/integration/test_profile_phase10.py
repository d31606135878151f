"""The Phase 10 profile (seed 002, docs/profiles/phase10.md): seed 002's unchanged useWebSocket
hook against vigil.

The client here does what that hook does: it opens /api/ws/events (no token: seed 002 had no
authentication, so these servers run with --phase10-auth=false unless a test checks auth),
sends the text "ping" every 30 s (scaled down) and takes the text "pong", parses every other
message as JSON and calls onEvent(msg.data) for "event" and onStatus(msg.data) for "status",
and after a drop waits 3 s (scaled down) and reconnects, at most 10 attempts, counting from
zero again after each successful connection.  The backend side is what seed 002's backend
broadcast, as vigil publishes: events through POST /api/publish, the status document through
PUT/PATCH /api/state/status.
"""

import asyncio
import json
import time

import pytest
import websockets

from conftest import run_async
from hubutil import (API_KEY, SECRET, api, assert_ws_refused, mint, ok_json, uniq)

PATH = "/api/ws/events"

# Seed 002's messages.
EVENT = {"id": "evt-1", "camera_id": "cam-1", "event_type": "person",
         "timestamp": "2026-01-20T14:30:00Z", "confidence": 0.85}
STATUS = {"cameras": {"online": 2, "retrying": 0, "down": 0},
          "ai": {"enabled": False, "reason": "no_api_key"}}


def server_args(*extra, auth=False):
    args = ("--api-key", API_KEY, "--profile", "phase10")
    if auth:
        args += ("--jwt-secret", SECRET)
    else:
        args += ("--phase10-auth=false",)
    return args + extra


@pytest.fixture
def srv(shared_vigil):
    return shared_vigil(*server_args())


class Hook:
    """Seed 002's useWebSocket(url, {onEvent, onStatus, onConnect, onDisconnect,
    reconnectInterval, maxReconnectAttempts})."""

    def __init__(self, url, *, ping_interval=30.0, reconnect_interval=3.0,
                 max_reconnect_attempts=10):
        self.url = url
        self.ping_interval = ping_interval
        self.reconnect_interval = reconnect_interval
        self.max_reconnect_attempts = max_reconnect_attempts
        self.is_connected = False
        self.error = None
        self.events, self.statuses, self.pongs, self.other = [], [], [], []
        self.calls = asyncio.Queue()  # ("event"|"status"|"pong"|"other", payload) in order
        self.connects = self.disconnects = 0
        self.closes = []
        self.ws = None
        self._stop = False
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _pinger(self, ws):
        while True:
            await asyncio.sleep(self.ping_interval)
            await ws.send("ping")

    def _on_message(self, raw):
        if raw == "pong":
            self.pongs.append(raw)
            return ("pong", raw)
        msg = json.loads(raw)
        if msg.get("type") == "event":
            self.events.append(msg["data"])
            return ("event", msg)
        if msg.get("type") == "status":
            self.statuses.append(msg["data"])
            return ("status", msg)
        self.other.append(msg)
        return ("other", msg)

    async def _run(self):
        attempts = 0
        while not self._stop:
            try:
                ws = await websockets.connect(self.url, ping_interval=None, compression=None,
                                              open_timeout=5)
            except (OSError, websockets.InvalidHandshake, asyncio.TimeoutError):
                ws = None
            if ws is not None:
                self.ws, self.is_connected, self.error = ws, True, None
                self.connects += 1
                attempts = 0
                pinger = asyncio.get_running_loop().create_task(self._pinger(ws))
                try:
                    async for raw in ws:
                        await self.calls.put(self._on_message(raw))
                except websockets.ConnectionClosed:
                    pass
                pinger.cancel()
                self.closes.append((ws.close_code, ws.close_reason))
                self.ws, self.is_connected = None, False
                self.disconnects += 1
            if self._stop:
                return
            attempts += 1
            if attempts > self.max_reconnect_attempts:
                self.error = "Failed to connect"
                return
            await asyncio.sleep(self.reconnect_interval)

    async def next(self, kind=None, timeout=5):
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {kind or 'message'} within {timeout} s")
            try:
                k, msg = await asyncio.wait_for(self.calls.get(), left)
            except asyncio.TimeoutError:
                continue
            if kind is None or k == kind:
                return msg

    async def quiet(self, duration):
        out = []
        end = time.monotonic() + duration
        while (left := end - time.monotonic()) > 0:
            try:
                out.append(await asyncio.wait_for(self.calls.get(), left))
            except asyncio.TimeoutError:
                break
        return out

    async def wait_connected(self, timeout=5):
        deadline = time.monotonic() + timeout
        while not self.is_connected:
            assert time.monotonic() < deadline, "not connected"
            await asyncio.sleep(0.02)

    async def send(self, data):
        await self.ws.send(data if isinstance(data, str) else json.dumps(data))

    async def unmount(self):
        self._stop = True
        if self.ws is not None:
            await self.ws.close()
        await asyncio.wait_for(self._task, 5)


def put_status(srv, doc):
    ok_json(api(srv, "PUT", "/api/state/status", doc, api_key=API_KEY))


def publish(srv, body):
    return ok_json(api(srv, "POST", "/api/publish", body, api_key=API_KEY))


def check_status(msg, doc):
    assert list(msg) == ["type", "data"], msg
    assert msg["type"] == "status" and msg["data"] == doc


def check_event(msg, data):
    assert list(msg) == ["type", "data"], msg
    assert msg["type"] == "event" and msg["data"] == data


# ---- status ----------------------------------------------------------------------------------


def test_status_at_connect_and_on_every_change(srv):
    async def main():
        put_status(srv, STATUS)
        hook = Hook(srv.ws_url(PATH))
        check_status(await hook.next(), STATUS)
        # Camera status changes (online -> down): broadcast_status({...}).
        down = json.loads(json.dumps(STATUS))
        down["cameras"] = {"online": 1, "retrying": 0, "down": 1}
        t0 = time.monotonic()
        put_status(srv, down)
        msg = await hook.next("status")
        # The feed's push for the PUT above may land after the snapshot sent at connect (on a
        # slow machine, e.g. under TSan): the same document again, never an older one.
        while msg["data"] == STATUS:
            msg = await hook.next("status")
        check_status(msg, down)
        assert time.monotonic() - t0 < 1.5
        # A merge patch still sends the whole document.
        ok_json(api(srv, "PATCH", "/api/state/status", {"ai": {"enabled": True, "reason": None}},
                    api_key=API_KEY))
        patched = json.loads(json.dumps(down))
        patched["ai"] = {"enabled": True}
        check_status(await hook.next("status"), patched)
        # Nothing while nothing changes.
        assert [k for k, _ in await hook.quiet(0.8) if k == "status"] == []
        await hook.unmount()
        put_status(srv, STATUS)
    run_async(main())


def test_status_published_as_a_message(srv):
    async def main():
        hook = Hook(srv.ws_url(PATH))
        await hook.wait_connected()
        await hook.quiet(0.3)
        publish(srv, {"channel": "events.system", "type": "status", "data": STATUS})
        check_status(await hook.next("status"), STATUS)
        await hook.unmount()
    run_async(main())


# ---- events ----------------------------------------------------------------------------------


def test_event_shape(srv):
    async def main():
        hook = Hook(srv.ws_url(PATH))
        await hook.wait_connected()
        await hook.quiet(0.3)
        publish(srv, {"channel": "events.cam-1", "type": "event", "data": EVENT})
        msg = await hook.next("event")
        check_event(msg, EVENT)
        assert isinstance(msg["data"]["confidence"], float)
        assert hook.events[-1] == EVENT
        # Any type published on --phase10-channels is an event to this client; other channels
        # do not reach it.
        publish(srv, {"channel": "events.cam-2.person", "type": "person_detected",
                      "data": {"camera_id": "cam-2"}})
        check_event(await hook.next("event"), {"camera_id": "cam-2"})
        publish(srv, {"channel": "cameras.cam-1", "type": "event", "data": EVENT})
        assert [k for k, _ in await hook.quiet(0.4) if k == "event"] == []
        await hook.unmount()
    run_async(main())


def test_events_reach_every_dashboard_in_order(srv):
    async def main():
        hooks = [Hook(srv.ws_url(PATH)) for _ in range(3)]
        for h in hooks:
            await h.wait_connected()
            await h.quiet(0.1)
        for i in range(20):
            publish(srv, {"channel": "events.cam-3", "type": "event", "data": {"id": f"e{i}"}})
        for h in hooks:
            got = [(await h.next("event"))["data"]["id"] for _ in range(20)]
            assert got == [f"e{i}" for i in range(20)]
            await h.unmount()
    run_async(main())


# ---- ping / pong -----------------------------------------------------------------------------


def test_text_ping_every_interval_gets_text_pong(srv):
    async def main():
        hook = Hook(srv.ws_url(PATH), ping_interval=0.15)
        for _ in range(4):
            assert await hook.next("pong", timeout=2) == "pong"
        await hook.unmount()
    run_async(main())


def test_json_ping_and_unknown_messages(srv):
    async def main():
        hook = Hook(srv.ws_url(PATH))
        await hook.wait_connected()
        await hook.quiet(0.3)
        await hook.send({"type": "ping"})
        assert await hook.next("other") == {"type": "pong"}
        await hook.send("hello")
        err = await hook.next("other")
        assert err["type"] == "error" and err["code"] == "bad_request"
        await hook.send("ping")
        assert await hook.next("pong") == "pong"
        await hook.unmount()
    run_async(main())


# ---- reconnect -------------------------------------------------------------------------------


def test_reconnects_after_a_server_restart(vigil_factory):
    srv = vigil_factory(*server_args())

    async def main():
        put_status(srv, STATUS)
        hook = Hook(srv.ws_url(PATH), reconnect_interval=0.2)
        check_status(await hook.next("status"), STATUS)
        await asyncio.get_running_loop().run_in_executor(None, srv.stop)
        await asyncio.sleep(0.5)  # a few failed attempts while the server is down
        await asyncio.get_running_loop().run_in_executor(None, srv.start)
        # The status document survived the restart (it is stored) and comes on reconnect.  A
        # second copy from before the restart (the feed's push for the PUT, landing after the
        # connect snapshot on a slow machine) may come first: it is the same document.
        msg = await hook.next("status", timeout=10)
        while hook.connects < 2:
            check_status(msg, STATUS)
            msg = await hook.next("status", timeout=10)
        check_status(msg, STATUS)
        assert hook.connects == 2 and hook.error is None
        publish(srv, {"channel": "events.cam-1", "type": "event", "data": EVENT})
        check_event(await hook.next("event"), EVENT)
        await hook.unmount()
    run_async(main())


def test_gives_up_after_ten_attempts(vigil_factory):
    srv = vigil_factory(*server_args())
    srv.stop()

    async def main():
        hook = Hook(srv.ws_url(PATH), reconnect_interval=0.01)
        await asyncio.wait_for(hook._task, 10)
        assert hook.error == "Failed to connect" and hook.connects == 0
    run_async(main())


# ---- authentication --------------------------------------------------------------------------


def test_auth_on_needs_a_token(vigil_factory):
    srv = vigil_factory(*server_args(auth=True))
    assert_ws_refused(srv, "missing token", path=PATH)
    assert_ws_refused(srv, "malformed token", path=PATH + "?token=nope")

    async def main():
        put_status(srv, STATUS)
        hook = Hook(srv.ws_url(PATH) + "?token=" + mint(uniq("p10")))
        check_status(await hook.next("status"), STATUS)
        publish(srv, {"channel": "events.cam-9", "type": "event", "data": EVENT})
        check_event(await hook.next("event"), EVENT)
        # The token's channels claim still decides: --phase10-channels (events.>) must be
        # within it, else the user gets the status but no events.
        limited = Hook(srv.ws_url(PATH) + "?token=" + mint(uniq("p10"), channels=["cameras.>"]))
        check_status(await limited.next("status"), STATUS)
        publish(srv, {"channel": "events.cam-1", "type": "event", "data": {"id": "mine"}})
        check_event(await hook.next("event"), {"id": "mine"})
        assert [k for k, _ in await limited.quiet(0.4) if k == "event"] == []
        # A claim narrower than events.> gets the part of it the user may read.
        cam2 = Hook(srv.ws_url(PATH) + "?token=" + mint(uniq("p10"), channels=["events.cam-2"]))
        check_status(await cam2.next("status"), STATUS)
        publish(srv, {"channel": "events.cam-1", "type": "event", "data": {"id": "not-yours"}})
        publish(srv, {"channel": "events.cam-2", "type": "event", "data": {"id": "yours"}})
        check_event(await cam2.next("event"), {"id": "yours"})
        assert [k for k, _ in await cam2.quiet(0.4) if k == "event"] == []
        await cam2.unmount()
        await hook.unmount()
        await limited.unmount()
    run_async(main())


def test_auth_off_needs_none(srv):
    async def main():
        hook = Hook(srv.ws_url(PATH))
        await hook.wait_connected()
        assert hook.closes == []
        await hook.send("ping")
        assert await hook.next("pong") == "pong"
        await hook.unmount()
    run_async(main())
