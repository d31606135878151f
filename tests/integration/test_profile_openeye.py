"""The OpenEye profile (seeds 000 and 001, docs/profiles/openeye.md): seed 001's unchanged
WebSocketService.js against vigil.

The client here does what that frontend does: it opens /api/ws/statistics?token=JWT, sends
{"type":"ping","timestamp":...} on a timer (30 s in the seed, scaled down here), hands each
message to the listeners of its "type", and after a drop reconnects with exponential backoff
(1 s doubling to 30 s, with jitter, at most 10 attempts, then polling; scaled down).  A
connection counts as established when its connection_status arrives: a socket closed with 1008
right after the handshake (bad token) is a failed attempt, as the seed's refused handshake was.  The backend side is what
seed 001's backend broadcast, as vigil publishes: the statistics document through
PUT/PATCH /api/state/statistics, camera events and alerts through POST /api/publish with their
top-level fields as envelope fields.  Every message of the seed is checked field by field.
"""

import asyncio
import json
import random
import re
import time

import pytest
import websockets

from conftest import run_async
from hubutil import (API_KEY, SECRET, admin_token, api, assert_recent_ts, assert_ws_refused,
                     is_int, mint, ok_json, uniq, ws_close_after_handshake)

PATH = "/api/ws/statistics"
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
WELCOME_TEXT = "WebSocket connection established successfully"

# Seed 001's statistics document ("Statistics Update").
STATS = {
    "face_recognition": {"total_people": 5, "recognitions_today": 42,
                         "last_recognition": "2025-10-10T11:59:30.000Z",
                         "unknown_faces_today": 3},
    "cameras": {"total_cameras": 2, "active_cameras": 2, "recording_cameras": 1},
    "timestamp": "2025-10-10T12:00:00.000Z",
}


def server_args(*extra):
    return ("--jwt-secret", SECRET, "--api-key", API_KEY, "--profile", "openeye") + extra


@pytest.fixture
def srv(shared_vigil):
    """The module's server: statistics pushed every 30 s (so a push within a second is an
    on-change push or the one at connect)."""
    return shared_vigil(*server_args("--openeye-statistics-interval", "30"))


class Dashboard:
    """Seed 001's WebSocketService.js: connect(token), listeners by message type, a ping every
    `ping_interval` s, reconnection with exponential backoff and jitter, polling after
    `max_attempts` failed attempts."""

    def __init__(self, srv, token, *, ping_interval=30.0, base_delay=1.0, max_delay=30.0,
                 max_attempts=10):
        self.url = srv.ws_url(PATH) + (f"?token={token}" if token is not None else "")
        self.ping_interval = ping_interval
        self.base_delay, self.max_delay, self.max_attempts = base_delay, max_delay, max_attempts
        self.status = "disconnected"
        self.queue = asyncio.Queue()  # every message received, in order
        self.closes = []  # (code, reason) of each connection's end
        self.connects = 0
        self.sent = []
        self.ws = None
        self._task = None
        self._stop = False

    def connect(self):
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    async def _pinger(self, ws):
        while True:
            await asyncio.sleep(self.ping_interval)
            await self.send({"type": "ping", "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S.000Z",
                                                                         time.gmtime())})

    async def _run(self):
        attempts = 0
        while not self._stop:
            self.status = "connecting"
            try:
                ws = await websockets.connect(self.url, ping_interval=None, max_size=None,
                                              compression=None, open_timeout=5)
            except (OSError, websockets.InvalidHandshake, asyncio.TimeoutError):
                ws = None
            if ws is not None:
                self.ws, self.connects = ws, self.connects + 1
                pinger = asyncio.get_running_loop().create_task(self._pinger(ws))
                try:
                    async for raw in ws:
                        msg = json.loads(raw)
                        if msg.get("type") == "connection_status":
                            self.status = "connected"  # the backoff starts over
                            attempts = 0
                        await self.queue.put(msg)
                except websockets.ConnectionClosed:
                    pass
                pinger.cancel()
                self.closes.append((ws.close_code, ws.close_reason))
                self.ws = None
            if self._stop:
                break
            attempts += 1
            if attempts > self.max_attempts:
                self.status = "polling"
                return
            self.status = "connecting"
            delay = min(self.base_delay * 2 ** (attempts - 1), self.max_delay)
            await asyncio.sleep(delay * (0.5 + random.random() / 2))

    async def send(self, msg):
        self.sent.append(msg)
        if self.ws is not None:
            await self.ws.send(json.dumps(msg))

    async def next(self, type_=None, timeout=5):
        """The next message (of `type_`, skipping others)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {type_ or 'message'} within {timeout} s")
            try:
                m = await asyncio.wait_for(self.queue.get(), left)
            except asyncio.TimeoutError:
                continue
            if type_ is None or m.get("type") == type_:
                return m

    async def quiet(self, duration, types=None):
        """Messages (of `types`) received within `duration` s."""
        out = []
        end = time.monotonic() + duration
        while (left := end - time.monotonic()) > 0:
            try:
                m = await asyncio.wait_for(self.queue.get(), left)
            except asyncio.TimeoutError:
                break
            if types is None or m.get("type") in types:
                out.append(m)
        return out

    async def wait_status(self, status, timeout=10):
        deadline = time.monotonic() + timeout
        while self.status != status:
            assert time.monotonic() < deadline, f"status {self.status!r}, expected {status!r}"
            await asyncio.sleep(0.02)

    async def disconnect(self):
        self._stop = True
        if self.ws is not None:
            await self.ws.close()
        if self._task is not None:
            await asyncio.wait_for(self._task, 5)


async def open_dashboard(srv, token, **kw):
    d = Dashboard(srv, token, **kw).connect()
    welcome = await d.next(timeout=5)
    assert welcome["type"] == "connection_status", welcome
    return d, welcome


def put_stats(srv, doc):
    ok_json(api(srv, "PUT", "/api/state/statistics", doc, api_key=API_KEY))


def publish(srv, body):
    return ok_json(api(srv, "POST", "/api/publish", body, api_key=API_KEY))


def check_welcome(msg, user_id, username):
    assert set(msg) == {"type", "status", "connection_id", "user", "message"}, msg
    assert msg["type"] == "connection_status" and msg["status"] == "connected"
    assert UUID.match(msg["connection_id"]), msg["connection_id"]
    assert msg["user"] == {"id": user_id, "username": username}, msg["user"]
    assert type(msg["user"]["id"]) is type(user_id)
    assert msg["message"] == WELCOME_TEXT


def check_statistics(msg, doc):
    assert set(msg) == {"type", "timestamp", "data"}, msg
    assert msg["type"] == "statistics_update"
    assert_recent_ts(msg["timestamp"])
    assert msg["data"] == doc


# ---- connection_status ---------------------------------------------------------------------


def test_welcome_numeric_sub_and_username_claim(srv):
    async def main():
        sub = str(random.randint(10**6, 10**9))
        d, welcome = await open_dashboard(srv, mint(sub, extra={"username": "admin"}))
        check_welcome(welcome, int(sub), "admin")
        await d.disconnect()
    run_async(main())


def test_welcome_string_sub_name_claim_or_sub(srv):
    async def main():
        user = uniq("alice")
        d, welcome = await open_dashboard(srv, mint(user, extra={"name": "Alice A."}))
        check_welcome(welcome, user, "Alice A.")
        d2, welcome2 = await open_dashboard(srv, mint(user))
        check_welcome(welcome2, user, user)
        assert welcome2["connection_id"] != welcome["connection_id"]
        await d.disconnect()
        await d2.disconnect()
    run_async(main())


# ---- statistics_update ---------------------------------------------------------------------


def test_statistics_at_connect_and_on_change(srv):
    async def main():
        put_stats(srv, STATS)
        d, _ = await open_dashboard(srv, mint(uniq("stats")))
        check_statistics(await d.next(timeout=2), STATS)
        # The backend's next numbers (a PATCH, as a person is added) come at once, in full.
        t0 = time.monotonic()
        ok_json(api(srv, "PATCH", "/api/state/statistics",
                    {"face_recognition": {"total_people": 6}}, api_key=API_KEY))
        expected = json.loads(json.dumps(STATS))
        expected["face_recognition"]["total_people"] = 6
        msg = await d.next("statistics_update", timeout=2)
        # The feed's push for the PUT above may land after the snapshot sent at connect (one
        # tick later, on a slow machine): the same document again, never an older one.
        while msg["data"] == STATS:
            msg = await d.next("statistics_update", timeout=2)
        assert time.monotonic() - t0 < 1.5
        check_statistics(msg, expected)
        # Nothing more while nothing changes (the periodic push is 30 s away here).
        assert await d.quiet(0.8, {"statistics_update"}) == []
        await d.disconnect()
        put_stats(srv, STATS)
    run_async(main())


def test_statistics_every_interval(vigil_factory):
    srv = vigil_factory(*server_args("--openeye-statistics-interval", "0.3"))

    async def main():
        put_stats(srv, STATS)
        d, _ = await open_dashboard(srv, mint(uniq("periodic")))
        got = await d.quiet(1.6, {"statistics_update"})
        # One at connect, then one every 0.3 s.
        assert 4 <= len(got) <= 8, [m["timestamp"] for m in got]
        for m in got:
            check_statistics(m, STATS)
        await d.disconnect()
    run_async(main())


def test_no_statistics_document_yet_sends_nothing(vigil_factory):
    srv = vigil_factory(*server_args("--openeye-statistics-interval", "0.2",
                                     "--openeye-statistics", "stats-not-there"))

    async def main():
        d, _ = await open_dashboard(srv, mint(uniq("empty")))
        assert await d.quiet(0.7) == []
        await d.disconnect()
    run_async(main())


# ---- camera_event and alert ----------------------------------------------------------------


def test_camera_event_and_alert_have_the_seed_shape(srv):
    async def main():
        d, _ = await open_dashboard(srv, mint(uniq("events")))
        await d.quiet(0.3)
        # broadcast_camera_event(camera_id=1, event_type="motion_detected", ...)
        publish(srv, {"channel": "cameras.1", "type": "camera_event", "camera_id": 1,
                      "event_type": "motion_detected",
                      "data": {"details": "Motion detected in zone 1"}})
        ev = await d.next("camera_event")
        assert list(ev) == ["type", "timestamp", "camera_id", "event_type", "data"], ev
        assert ev["camera_id"] == 1 and is_int(ev["camera_id"])
        assert ev["event_type"] == "motion_detected"
        assert ev["data"] == {"details": "Motion detected in zone 1"}
        assert_recent_ts(ev["timestamp"])
        # broadcast_alert(alert_type="warning", ...): alerts.> is an ack channel by default, but
        # the seed's alert has no id and is not replayed.
        publish(srv, {"channel": "alerts.1", "type": "alert", "alert_type": "warning",
                      "data": {"message": "Unknown face detected", "camera_id": 1}})
        al = await d.next("alert")
        assert list(al) == ["type", "timestamp", "alert_type", "data"], al
        assert al["alert_type"] == "warning"
        assert al["data"] == {"message": "Unknown face detected", "camera_id": 1}
        assert_recent_ts(al["timestamp"])
        await d.disconnect()
        # A new connection does not get the old alert again.
        d2, _ = await open_dashboard(srv, mint(uniq("events")))
        assert await d2.quiet(0.5, {"alert", "camera_event"}) == []
        await d2.disconnect()
    run_async(main())


def test_deep_camera_channels(srv):
    async def main():
        d, _ = await open_dashboard(srv, mint(uniq("deep")))
        publish(srv, {"channel": "cameras.front-door.events", "type": "camera_event",
                      "camera_id": "front-door", "event_type": "person_detected",
                      "data": {"confidence": 0.93}})
        ev = await d.next("camera_event")
        assert ev["camera_id"] == "front-door" and ev["data"] == {"confidence": 0.93}
        # Channels outside --openeye-channels do not reach OpenEye dashboards.
        publish(srv, {"channel": "robots.1", "type": "camera_event", "data": {}})
        assert await d.quiet(0.4, {"camera_event"}) == []
        await d.disconnect()
    run_async(main())


# ---- ping / pong ---------------------------------------------------------------------------


def test_ping_gets_pong_with_timestamp(srv):
    async def main():
        d, _ = await open_dashboard(srv, mint(uniq("ping")), ping_interval=0.2)
        for _ in range(3):
            pong = await d.next("pong", timeout=2)
            assert set(pong) == {"type", "timestamp"}, pong
            assert_recent_ts(pong["timestamp"])
        assert all(m["type"] == "ping" and "timestamp" in m for m in d.sent)
        await d.disconnect()
    run_async(main())


# ---- subscribe / unsubscribe by event_types ------------------------------------------------


def test_subscribe_filters_by_type_and_is_not_answered(srv):
    async def main():
        d, _ = await open_dashboard(srv, mint(uniq("filter")))
        await d.quiet(0.3)
        # The seed's example: statistics and camera events only.
        await d.send({"type": "subscribe", "event_types": ["statistics_update", "camera_event"]})
        assert await d.quiet(0.4) == [], "subscribe was answered"
        publish(srv, {"channel": "alerts.f1", "type": "alert", "alert_type": "info", "data": {}})
        publish(srv, {"channel": "cameras.f1", "type": "camera_event", "camera_id": 7,
                      "event_type": "motion_detected", "data": {}})
        got = await d.quiet(0.6, {"alert", "camera_event"})
        assert [m["type"] for m in got] == ["camera_event"], got
        # unsubscribe camera_event: nothing of the two any more.
        await d.send({"type": "unsubscribe", "event_types": ["camera_event"]})
        assert await d.quiet(0.3) == [], "unsubscribe was answered"
        publish(srv, {"channel": "cameras.f1", "type": "camera_event", "camera_id": 7,
                      "event_type": "motion_detected", "data": {}})
        assert await d.quiet(0.5, {"alert", "camera_event"}) == []
        await d.disconnect()
    run_async(main())


def test_unsubscribe_from_everything_keeps_the_rest(srv):
    async def main():
        d, _ = await open_dashboard(srv, mint(uniq("unsub")))
        await d.quiet(0.3)
        await d.send({"type": "unsubscribe", "event_types": ["camera_event"]})
        await asyncio.sleep(0.2)
        publish(srv, {"channel": "cameras.u1", "type": "camera_event", "camera_id": 1,
                      "event_type": "x", "data": {}})
        publish(srv, {"channel": "alerts.u1", "type": "alert", "alert_type": "critical",
                      "data": {}})
        got = await d.quiet(0.6, {"alert", "camera_event"})
        assert [m["type"] for m in got] == ["alert"], got
        # Unsubscribing the rest too leaves nothing; subscribing one type back brings it back.
        await d.send({"type": "unsubscribe", "event_types": ["alert", "statistics_update"]})
        await asyncio.sleep(0.2)
        publish(srv, {"channel": "alerts.u1", "type": "alert", "alert_type": "critical",
                      "data": {}})
        assert await d.quiet(0.5, {"alert", "camera_event"}) == []
        await d.send({"type": "subscribe", "event_types": ["alert"]})
        await asyncio.sleep(0.2)
        publish(srv, {"channel": "alerts.u1", "type": "alert", "alert_type": "critical",
                      "data": {}})
        assert (await d.next("alert"))["alert_type"] == "critical"
        await d.disconnect()
    run_async(main())


def test_bad_messages_keep_the_connection(srv):
    async def main():
        d, _ = await open_dashboard(srv, mint(uniq("bad")))
        await d.quiet(0.3)
        await d.ws.send("not json")
        err = await d.next("error")
        assert isinstance(err["message"], str)
        await d.send({"type": "subscribe", "event_types": "camera_event"})
        assert (await d.next("error"))["message"]
        await d.send({"type": "ping", "timestamp": "x"})
        assert (await d.next())["type"] == "pong"
        await d.disconnect()
    run_async(main())


# ---- refusals ------------------------------------------------------------------------------


def test_invalid_or_missing_token_closes_1008(srv):
    assert_ws_refused(srv, "malformed token", path=PATH + "?token=not-a-jwt")
    assert_ws_refused(srv, "invalid signature",
                      path=PATH + "?token=" + mint("mallory", key="some-other-secret-0123456789"))
    assert_ws_refused(srv, "token expired", path=PATH + "?token=" + mint("old", ttl=-3600))
    assert_ws_refused(srv, "missing token", path=PATH)


def test_sixth_connection_of_a_user_is_refused(srv):
    async def main():
        user = uniq("five")
        tok = mint(user)
        dashboards = [(await open_dashboard(srv, tok))[0] for _ in range(5)]
        code, reason, texts = await asyncio.get_running_loop().run_in_executor(
            None, lambda: ws_close_after_handshake(srv, path=f"{PATH}?token={tok}"))
        assert (code, reason) == (1008, "too many connections"), (code, reason, texts)
        # Another user is not affected; after closing one tab the user may connect again.
        other, _ = await open_dashboard(srv, mint(uniq("other")))
        await dashboards.pop().disconnect()
        await asyncio.sleep(0.2)
        again, welcome = await open_dashboard(srv, tok)
        check_welcome(welcome, user, user)
        for d in dashboards + [other, again]:
            await d.disconnect()
    run_async(main())


def test_reconnects_after_a_drop_like_the_seed(srv):
    async def main():
        user = uniq("drop")
        put_stats(srv, STATS)
        d, _ = await open_dashboard(srv, mint(user), base_delay=0.1, max_delay=0.5)
        check_statistics(await d.next("statistics_update"), STATS)
        ok_json(api(srv, "POST", "/api/disconnect", {"user": user, "code": 1001,
                                                     "reason": "maintenance"},
                    token=admin_token()))
        # The client sees the close, backs off, reconnects and is welcomed again.
        welcome = await d.next("connection_status", timeout=5)
        check_welcome(welcome, user, user)
        check_statistics(await d.next("statistics_update"), STATS)
        assert d.closes[0] == (1001, "maintenance") and d.connects == 2
        await d.disconnect()
    run_async(main())


def test_falls_back_to_polling_when_refused(srv):
    async def main():
        d = Dashboard(srv, "not-a-jwt", base_delay=0.02, max_delay=0.05, max_attempts=3)
        d.connect()
        await d.wait_status("polling", timeout=10)
        assert all(c == (1008, "malformed token") for c in d.closes), d.closes
        assert len(d.closes) == 4
    run_async(main())


# ---- GET /api/ws/status --------------------------------------------------------------------


def test_ws_status_shape(srv):
    async def main():
        user = uniq("status")
        tok = mint(user)
        dashboards = [(await open_dashboard(srv, tok))[0] for _ in range(2)]
        doc = ok_json(api(srv, "GET", "/api/ws/status", token=tok))
        assert set(doc) == {"status", "statistics", "user_connections"}, doc
        assert doc["status"] == "operational"
        assert doc["user_connections"] == 2 and is_int(doc["user_connections"])
        stats = doc["statistics"]
        assert set(stats) == {"total_connections", "total_users"}, stats
        assert stats["total_connections"] >= 2 and stats["total_users"] >= 1
        # Admins (and the API key) also see connections_by_user, as the seed's get_statistics().
        adm = ok_json(api(srv, "GET", "/api/ws/status", token=admin_token()))
        assert adm["statistics"]["connections_by_user"][user] == 2
        assert adm["user_connections"] == 0
        key = ok_json(api(srv, "GET", "/api/ws/status", api_key=API_KEY))
        assert key["statistics"]["connections_by_user"][user] == 2
        assert api(srv, "GET", "/api/ws/status").status == 401
        for d in dashboards:
            await d.disconnect()
    run_async(main())


# ---- without authentication ----------------------------------------------------------------


def test_auth_off(vigil_factory):
    srv = vigil_factory("--api-key", API_KEY, "--profile", "openeye", "--openeye-auth=false")

    async def main():
        put_stats(srv, STATS)
        d, welcome = await open_dashboard(srv, None)
        check_welcome(welcome, "anonymous", "anonymous")
        check_statistics(await d.next("statistics_update"), STATS)
        # More than five anonymous dashboards are fine (they are not one user).
        more = [(await open_dashboard(srv, None))[0] for _ in range(6)]
        publish(srv, {"channel": "cameras.2", "type": "camera_event", "camera_id": 2,
                      "event_type": "motion_detected", "data": {}})
        assert (await d.next("camera_event"))["camera_id"] == 2
        for x in more + [d]:
            await x.disconnect()
    run_async(main())
