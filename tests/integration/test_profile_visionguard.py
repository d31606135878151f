"""The VisionGuard profile (seed 003, docs/profiles/visionguard.md): seed 003's unchanged
useAnomalyAlerts hook against vigil.

The client here does what that hook does: it opens /ws/alerts/{user_id}?token=JWT, answers the
server's {"type":"ping"} with {"type":"pong"}, sends its own {"type":"ping"} every 30 s and
closes and reconnects when no pong came for 60 s, keeps every anomaly_detected message as an
alert (the dashboard shows alert.id, alert.person_id and alert.details.status) and acks it with
{"type":"ack","id":alert.id}, and after a drop reconnects with exponential backoff (1 s, x1.5,
at most 30 s).  Intervals are scaled down with --visionguard-ping-interval/-timeout.  The
backend side is what seed 003's send_anomaly_alert(user_id, stream_id, detection_result,
annotated_frame) becomes: one POST /api/publish on anomalies.<user_id> with those names as
envelope fields.
"""

import asyncio
import base64
import json
import os
import sqlite3
import tempfile
import time

import pytest
import websockets

from conftest import run_async
from hubutil import (API_KEY, SECRET, admin_token, api, assert_recent_ts, assert_ws_refused,
                     is_int, is_num, mint, ok_json, uniq)

PING_INTERVAL = 0.3
PING_TIMEOUT = 1.2
DETECTION = {"person_id": 1, "status": "shoplifting_detected", "confidence": 0.95}


def server_args(*extra):
    return ("--jwt-secret", SECRET, "--api-key", API_KEY, "--profile", "visionguard",
            "--visionguard-ping-interval", str(PING_INTERVAL),
            "--visionguard-ping-timeout", str(PING_TIMEOUT)) + extra


@pytest.fixture
def srv(shared_vigil):
    return shared_vigil(*server_args())


def frame_b64(size=2000):
    """A base64 "JPEG" of about `size` characters."""
    raw = b"\xff\xd8\xff\xe0" + os.urandom(size * 3 // 4) + b"\xff\xd9"
    return base64.b64encode(raw).decode()


def send_anomaly_alert(srv, user_id, stream_id="stream_456", detection_result=None,
                       annotated_frame=None, **extra):
    """Seed 003's ws_manager.send_anomaly_alert(...), as one publish.  Returns the alert id."""
    body = {"channel": f"anomalies.{user_id}", "type": "anomaly_detected",
            "stream_id": stream_id, "detection_result": detection_result or DETECTION,
            "annotated_frame": annotated_frame if annotated_frame is not None else frame_b64(),
            "data": None, **extra}
    doc = ok_json(api(srv, "POST", "/api/publish", body, api_key=API_KEY))
    assert len(doc["ids"]) == 1 and isinstance(doc["ids"][0], str), doc
    return doc["ids"][0]


class AnomalyAlerts:
    """Seed 003's useAnomalyAlerts(): alerts, connected, reconnectAttempts, lastHeartbeat."""

    def __init__(self, srv, user_id, token, *, heartbeat_interval=30.0, heartbeat_timeout=60.0,
                 initial_delay=1.0, max_delay=30.0, reconnect=True, auto_ack=True,
                 answer_pings=True):
        self.url = srv.ws_url(f"/ws/alerts/{user_id}") + \
            (f"?token={token}" if token is not None else "")
        self.heartbeat_interval, self.heartbeat_timeout = heartbeat_interval, heartbeat_timeout
        self.initial_delay, self.max_delay = initial_delay, max_delay
        self.reconnect, self.auto_ack, self.answer_pings = reconnect, auto_ack, answer_pings
        self.alerts = []
        self.connected = False
        self.reconnect_attempts = 0
        self.last_heartbeat = time.monotonic()
        self.pings = []  # monotonic times of the server's pings
        self.received = asyncio.Queue()  # every JSON message, in order
        self.closes = []
        self.connects = 0
        self.ws = None
        self._stop = False
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _heartbeat(self, ws):
        while True:
            await asyncio.sleep(self.heartbeat_interval)
            if time.monotonic() - self.last_heartbeat > self.heartbeat_timeout:
                await ws.close()
                return
            await ws.send(json.dumps({"type": "ping"}))

    async def _on_message(self, ws, msg):
        if msg.get("type") == "ping":
            self.pings.append(time.monotonic())
            if self.answer_pings:
                await ws.send(json.dumps({"type": "pong"}))
        elif msg.get("type") == "pong":
            self.last_heartbeat = time.monotonic()
        elif msg.get("type") == "anomaly_detected":
            self.alerts.append(msg)
            if self.auto_ack:
                await ws.send(json.dumps({"type": "ack", "id": msg["id"]}))
        await self.received.put(msg)

    async def _run(self):
        delay = self.initial_delay
        while not self._stop:
            try:
                ws = await websockets.connect(self.url, ping_interval=None, compression=None,
                                              max_size=None, open_timeout=5)
            except (OSError, websockets.InvalidHandshake, asyncio.TimeoutError):
                ws = None
            if ws is not None:
                self.ws, self.connected = ws, True
                self.connects += 1
                self.reconnect_attempts, delay = 0, self.initial_delay
                self.last_heartbeat = time.monotonic()
                hb = asyncio.get_running_loop().create_task(self._heartbeat(ws))
                try:
                    async for raw in ws:
                        await self._on_message(ws, json.loads(raw))
                except websockets.ConnectionClosed:
                    pass
                hb.cancel()
                self.closes.append((ws.close_code, ws.close_reason))
                self.ws, self.connected = None, False
            if self._stop or not self.reconnect:
                return
            self.reconnect_attempts += 1
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, self.max_delay)

    async def next(self, type_="anomaly_detected", timeout=5):
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {type_} within {timeout} s")
            try:
                m = await asyncio.wait_for(self.received.get(), left)
            except asyncio.TimeoutError:
                continue
            if type_ is None or m.get("type") == type_:
                return m

    async def quiet(self, duration, type_="anomaly_detected"):
        out = []
        end = time.monotonic() + duration
        while (left := end - time.monotonic()) > 0:
            try:
                m = await asyncio.wait_for(self.received.get(), left)
            except asyncio.TimeoutError:
                break
            if type_ is None or m.get("type") == type_:
                out.append(m)
        return out

    async def wait_connected(self, timeout=5):
        deadline = time.monotonic() + timeout
        while not self.connected:
            assert time.monotonic() < deadline, f"not connected (closes: {self.closes})"
            await asyncio.sleep(0.02)

    async def wait_closed(self, timeout=5):
        deadline = time.monotonic() + timeout
        while self.ws is not None or not self.closes:
            assert time.monotonic() < deadline, "still connected"
            await asyncio.sleep(0.02)
        return self.closes[-1]

    async def unmount(self):
        self._stop = True
        if self.ws is not None:
            await self.ws.close()
        await asyncio.wait_for(self._task, 5)


async def dashboard(srv, user, **kw):
    d = AnomalyAlerts(srv, user, mint(user), **kw)
    await d.wait_connected()
    return d


def pending(srv, user):
    """The ids of the user's unacked alerts on its channel (GET /api/alerts?unacked=1 lists
    every ack channel the user may read)."""
    doc = ok_json(api(srv, "GET", "/api/alerts?unacked=1", token=mint(user)))
    return [a["id"] for a in doc["alerts"] if a["channel"] == f"anomalies.{user}"]


async def until_acked(srv, user, timeout=5):
    deadline = time.monotonic() + timeout
    while pending(srv, user):
        assert time.monotonic() < deadline, pending(srv, user)
        await asyncio.sleep(0.05)


def check_alert(msg, alert_id, *, stream_id="stream_456", detection=DETECTION, frame=None,
                redelivered=False):
    keys = ["type", "id", "timestamp", "stream_id", "detection_result", "annotated_frame",
            "person_id", "details"] + (["redelivered"] if redelivered else [])
    assert list(msg) == keys, msg.keys()
    assert msg["type"] == "anomaly_detected"
    assert msg["id"] == alert_id
    assert_recent_ts(msg["timestamp"])
    assert msg["stream_id"] == stream_id
    assert msg["detection_result"] == detection
    # What seed 003's dashboard reads: alert.id, alert.person_id, alert.details.status.
    assert msg["person_id"] == detection["person_id"] and is_int(msg["person_id"])
    assert msg["details"]["status"] == detection["status"]
    assert msg["details"] == detection
    if frame is not None:
        assert msg["annotated_frame"] == frame
    base64.b64decode(msg["annotated_frame"], validate=True)
    if redelivered:
        assert msg["redelivered"] is True


# ---- connecting ------------------------------------------------------------------------------


def test_path_user_must_match_token(srv):
    async def main():
        alice = uniq("alice")
        d = await dashboard(srv, alice, reconnect=False)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, lambda: assert_ws_refused(
            srv, "user id does not match token",
            path=f"/ws/alerts/{uniq('bob')}?token={mint(alice)}"))
        await loop.run_in_executor(None, lambda: assert_ws_refused(
            srv, "missing token", path=f"/ws/alerts/{alice}"))
        await loop.run_in_executor(None, lambda: assert_ws_refused(
            srv, "invalid signature",
            path=f"/ws/alerts/{alice}?token={mint(alice, key='another-secret-0123456789abc')}"))
        # A refused connection does not replace the user's real one.
        await asyncio.sleep(0.2)
        assert d.connected and d.closes == []
        await d.unmount()
    run_async(main())


def test_new_connection_replaces_the_previous_one(srv):
    async def main():
        user = uniq("carol")
        old = await dashboard(srv, user, reconnect=False)
        new = await dashboard(srv, user, reconnect=False)
        assert await old.wait_closed() == (1008, "replaced by a newer connection")
        assert new.connected
        alert_id = send_anomaly_alert(srv, user)
        check_alert(await new.next(), alert_id)
        conns = ok_json(api(srv, "GET", f"/ws/connections/{user}", token=admin_token()))
        assert conns["connection_count"] == 1
        await new.unmount()
    run_async(main())


# ---- heartbeats ------------------------------------------------------------------------------


def test_server_ping_cadence_and_pong_keeps_it_open(srv):
    async def main():
        d = await dashboard(srv, uniq("hb"))
        first = await d.next("ping", timeout=2)
        assert first == {"type": "ping"}
        await asyncio.sleep(PING_TIMEOUT * 2)
        # Still open well past the timeout, since every ping was answered.
        assert d.connected and d.closes == []
        gaps = [b - a for a, b in zip(d.pings, d.pings[1:])]
        assert len(gaps) >= 5, d.pings
        assert all(PING_INTERVAL * 0.7 < g < PING_INTERVAL * 2.5 for g in gaps), gaps
        await d.unmount()
    run_async(main())


def test_silent_client_is_closed_after_the_timeout(srv):
    async def main():
        d = await dashboard(srv, uniq("silent"), answer_pings=False, reconnect=False)
        t0 = time.monotonic()
        code, reason = await d.wait_closed(timeout=PING_TIMEOUT + 3)
        took = time.monotonic() - t0
        assert (code, reason) == (1001, "heartbeat timeout")
        assert PING_TIMEOUT * 0.8 < took < PING_TIMEOUT + 1.5, took
        assert len(d.pings) >= 2  # it was pinged meanwhile
    run_async(main())


def test_client_ping_gets_pong(srv):
    async def main():
        d = await dashboard(srv, uniq("cping"), heartbeat_interval=0.1, heartbeat_timeout=0.5)
        for _ in range(3):
            assert await d.next("pong", timeout=2) == {"type": "pong"}
        # The hook's own timeout never fires: pongs come back.
        await asyncio.sleep(0.8)
        assert d.connects == 1 and d.closes == []
        await d.unmount()
    run_async(main())


def test_reconnects_with_backoff_after_a_drop(srv):
    async def main():
        user = uniq("drop")
        d = await dashboard(srv, user, initial_delay=0.1)
        ok_json(api(srv, "POST", "/api/disconnect", {"user": user, "reason": "kicked"},
                    token=admin_token()))
        await asyncio.sleep(0.05)
        deadline = time.monotonic() + 5
        while d.connects < 2:
            assert time.monotonic() < deadline, d.closes
            await asyncio.sleep(0.02)
        assert d.closes[0] == (1008, "kicked")
        alert_id = send_anomaly_alert(srv, user)
        check_alert(await d.next(), alert_id)
        await d.unmount()
    run_async(main())


# ---- anomaly_detected ------------------------------------------------------------------------


def test_anomaly_detected_shape(srv):
    async def main():
        user = uniq("shape")
        d = await dashboard(srv, user)
        frame = frame_b64()
        alert_id = send_anomaly_alert(srv, user, annotated_frame=frame)
        check_alert(await d.next(), alert_id, frame=frame)
        # Other users' channels never reach this dashboard.
        send_anomaly_alert(srv, uniq("someone-else"))
        assert await d.quiet(0.4) == []
        # A publisher that gives its own id, person_id and details keeps them; data goes
        # through when it is not null.
        body = {"channel": f"anomalies.{user}", "type": "anomaly_detected", "id": "alert-7",
                "person_id": 9, "details": {"status": "loitering"}, "data": {"zone": 3}}
        ok_json(api(srv, "POST", "/api/publish", body, api_key=API_KEY))
        msg = await d.next()
        assert list(msg) == ["type", "id", "timestamp", "person_id", "details", "data"], msg
        assert msg["id"] == "alert-7" and msg["person_id"] == 9
        assert msg["details"] == {"status": "loitering"} and msg["data"] == {"zone": 3}
        await until_acked(srv, user)
        await d.unmount()
    run_async(main())


def test_frame_of_300_kb(srv):
    async def main():
        user = uniq("big")
        frame = frame_b64(300 * 1024)
        assert len(frame) >= 300 * 1024
        d = await dashboard(srv, user, auto_ack=False)
        alert_id = send_anomaly_alert(srv, user, annotated_frame=frame)
        check_alert(await d.next(), alert_id, frame=frame)
        await d.unmount()
        # And from the store, on return.
        d = await dashboard(srv, user)
        check_alert(await d.next(), alert_id, frame=frame, redelivered=True)
        await until_acked(srv, user)
        await d.unmount()
    run_async(main())


# ---- acknowledged delivery -------------------------------------------------------------------


def test_alerts_wait_for_the_dashboard_and_acks_are_final(srv):
    async def main():
        user = uniq("away")
        # Published while the dashboard is closed.
        ids = [send_anomaly_alert(srv, user, stream_id=f"stream_{i}") for i in range(3)]
        assert pending(srv, user) == ids
        d = await dashboard(srv, user)
        got = [await d.next() for _ in range(3)]
        for i, (msg, alert_id) in enumerate(zip(got, ids)):
            check_alert(msg, alert_id, stream_id=f"stream_{i}", redelivered=True)
        await until_acked(srv, user)
        # Live ones are acked as they arrive.
        live_id = send_anomaly_alert(srv, user)
        check_alert(await d.next(), live_id)
        await until_acked(srv, user)
        await d.unmount()
        # Nothing again on return.
        d = await dashboard(srv, user)
        assert await d.quiet(0.6) == []
        await d.unmount()
    run_async(main())


def test_unacked_live_alert_comes_back_with_the_same_fields(srv):
    async def main():
        user = uniq("same")
        d = await dashboard(srv, user, auto_ack=False)
        alert_id = send_anomaly_alert(srv, user)
        live = await d.next()
        await d.unmount()
        d = await dashboard(srv, user, auto_ack=False)
        again = await d.next()
        assert again.pop("redelivered") is True
        # Publish time as stored: the same to the millisecond or nearly.
        assert abs(_ts(again.pop("timestamp")) - _ts(live.pop("timestamp"))) < 1.0
        assert again == live and again["id"] == alert_id
        # The ack over this socket is not answered (the seed's dashboard knows no answer).
        await d.ws.send(json.dumps({"type": "ack", "id": alert_id}))
        assert [m for m in await d.quiet(0.3, type_=None) if m["type"] != "ping"] == []
        await until_acked(srv, user)
        await d.unmount()
        # Another user's alerts are separate.
        assert pending(srv, uniq("nobody")) == []
    run_async(main())


def _ts(s):
    import hubutil
    return hubutil.parse_ts(s)


def test_survives_a_restart(vigil_factory):
    data_dir = tempfile.mkdtemp(prefix="vigil-vg-data-")
    srv = vigil_factory(*server_args("--data-dir", data_dir))
    user = uniq("restart")
    ids = [send_anomaly_alert(srv, user, stream_id=f"s{i}") for i in range(2)]
    srv.stop()
    srv = vigil_factory(*server_args("--data-dir", data_dir))

    async def main():
        d = await dashboard(srv, user)
        got = [await d.next() for _ in range(2)]
        for i, (msg, alert_id) in enumerate(zip(got, ids)):
            check_alert(msg, alert_id, stream_id=f"s{i}", redelivered=True)
        await until_acked(srv, user)
        await d.unmount()
    run_async(main())
    srv.stop()
    srv = vigil_factory(*server_args("--data-dir", data_dir))

    async def after():
        d = await dashboard(srv, user)
        assert await d.quiet(0.6) == []
        await d.unmount()
    run_async(after())


def test_upgrades_a_store_from_before_envelope_fields(vigil_factory):
    """A data dir written by a vigil whose store had schema version 1 (no envelope fields for
    ack messages): it is migrated in place and its pending alert is still delivered."""
    data_dir = tempfile.mkdtemp(prefix="vigil-vg-old-")
    srv = vigil_factory(*server_args("--data-dir", data_dir))
    srv.stop()
    db = sqlite3.connect(os.path.join(data_dir, "vigil.db"))
    # Back to version 1, as that vigil left it, with one alert it stored.
    db.execute("ALTER TABLE ack_msgs DROP COLUMN extra")
    db.execute("UPDATE schema_version SET version = 1")
    user = uniq("old")
    now = int(time.time() * 1000)
    db.execute("INSERT INTO ack_msgs(id, channel, type, data, published_ms, expires_ms) "
               "VALUES(?, ?, ?, ?, ?, ?)", ("old-1", f"anomalies.{user}", "anomaly_detected",
                                            '{"person_id":4}', now, now + 3600_000))
    db.commit()
    db.close()
    srv = vigil_factory(*server_args("--data-dir", data_dir))

    async def main():
        d = await dashboard(srv, user)
        old = await d.next()
        assert old["id"] == "old-1" and old["data"] == {"person_id": 4}
        assert old["redelivered"] is True
        new_id = send_anomaly_alert(srv, user)
        check_alert(await d.next(), new_id)
        await until_acked(srv, user)
        await d.unmount()
    run_async(main())
    srv.stop()
    db = sqlite3.connect(os.path.join(data_dir, "vigil.db"))
    assert db.execute("SELECT version FROM schema_version").fetchone()[0] == 2
    db.close()


# ---- GET /ws/connections ---------------------------------------------------------------------


def _check_entry(c, user):
    for k in ("user_id", "connected", "connected_at", "uptime_seconds", "last_heartbeat",
              "seconds_since_heartbeat"):
        assert k in c, (k, c)
    assert c["user_id"] == user and c["connected"] is True
    assert_recent_ts(c["connected_at"])
    assert_recent_ts(c["last_heartbeat"])
    assert is_num(c["uptime_seconds"]) and 0 <= c["uptime_seconds"] < 60
    assert is_num(c["seconds_since_heartbeat"]) and 0 <= c["seconds_since_heartbeat"] < 60


def test_connections_endpoints(srv):
    async def main():
        users = [uniq("mon") for _ in range(2)]
        ds = [await dashboard(srv, u) for u in users]
        await asyncio.sleep(PING_INTERVAL * 2)  # a pong has come in
        adm = admin_token()
        doc = ok_json(api(srv, "GET", "/ws/connections", token=adm))
        assert is_int(doc["total_connections"]) and doc["total_connections"] >= 2
        assert doc["total_connections"] == len(doc["connections"])
        mine = [c for c in doc["connections"] if c["user_id"] in users]
        assert sorted(c["user_id"] for c in mine) == sorted(users)
        for c in mine:
            _check_entry(c, c["user_id"])
            assert c["seconds_since_heartbeat"] < PING_INTERVAL * 3
            assert c["endpoint"] == "/ws/alerts/{user_id}"
        one = ok_json(api(srv, "GET", f"/ws/connections/{users[0]}", token=adm))
        _check_entry(one, users[0])
        assert one["connection_count"] == 1 and len(one["connections"]) == 1
        _check_entry(one["connections"][0], users[0])
        none = ok_json(api(srv, "GET", f"/ws/connections/{uniq('nobody')}", token=adm))
        assert none["connected"] is False and none["connection_count"] == 0
        assert "connected_at" not in none
        # Monitoring is for admins (or the API key).
        assert api(srv, "GET", "/ws/connections", token=mint(users[0])).status == 403
        assert api(srv, "GET", "/ws/connections").status == 401
        assert ok_json(api(srv, "GET", "/ws/connections", api_key=API_KEY))["total_connections"]
        for d in ds:
            await d.unmount()
    run_async(main())


# ---- without authentication ------------------------------------------------------------------


def test_auth_off_the_path_names_the_user(vigil_factory):
    srv = vigil_factory(*server_args("--visionguard-auth=false"))

    async def main():
        user = uniq("dave")
        d = AnomalyAlerts(srv, user, None, reconnect=False)
        await d.wait_connected()
        alert_id = send_anomaly_alert(srv, user)
        check_alert(await d.next(), alert_id)
        await until_acked(srv, user)
        other = AnomalyAlerts(srv, uniq("erin"), None, reconnect=False)
        await other.wait_connected()
        assert await other.quiet(0.3) == []
        # One connection per path user here too.
        again = AnomalyAlerts(srv, user, None, reconnect=False)
        await again.wait_connected()
        assert await d.wait_closed() == (1008, "replaced by a newer connection")
        assert other.connected
        conns = ok_json(api(srv, "GET", f"/ws/connections/{user}", api_key=API_KEY))
        assert conns["connection_count"] == 1
        await other.unmount()
        await again.unmount()
    run_async(main())
    assert_ws_refused(srv, "invalid user id", path="/ws/alerts/a.b")


def test_ack_channels_are_added(srv):
    # anomalies.* is not in the default --ack-channels (alerts.>): the profile adds it, so the
    # publish answers with ids.
    alert_id = send_anomaly_alert(srv, uniq("ackch"))
    assert isinstance(alert_id, str) and len(alert_id) > 0
