"""The demo (src/app/demo.c): `vigil serve --demo` prints where to point a browser, logs it in
through GET /api/demo/session, and its simulated camera fleet publishes, through the public HTTP
API, messages of exactly the documented shapes (checked field by field: statistics and status
state documents, camera events, camera status changes, alerts with a decodable PNG thumbnail);
SIGTERM stops server and fleet with status 0.  `vigil demo` runs the same fleet against a server
started separately.  Without --demo there is no demo login."""

import asyncio
import base64
import json
import re
import signal
import struct
import subprocess
import tempfile
import time
import zlib

import pytest

from conftest import clean_env, free_port, run_async, run_cli, vigil_bin
from hubutil import API_KEY, api, assert_recent_ts, connect, hub_args, is_int, is_num, mint, ok_json

STATES = {"online", "recording", "down"}
EVENT_TYPES = {"motion", "person", "vehicle"}
THUMBNAIL_PREFIX = "data:image/png;base64,"
URL_LINE = re.compile(r"^vigil demo: open (http://\S+/)$", re.M)


# --------------------------------------------------------------------------------------------
# Shapes (the data contract of src/app/demo.c)


def merge(target, patch):
    """RFC 7396 merge patch."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge(out.get(k), v)
    return out


def check_png(data, max_bytes=20 * 1024):
    """A valid PNG: signature, IHDR first (8-bit RGB), every chunk CRC right, IDAT inflating to
    height * (1 + width * 3) bytes, IEND last.  Returns (width, height)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", data[:8]
    assert len(data) <= max_bytes, f"thumbnail is {len(data)} bytes"
    pos, chunks, idat = 8, [], b""
    while pos < len(data):
        (length,) = struct.unpack("!I", data[pos:pos + 4])
        ctype, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack("!I", data[pos + 8 + length:pos + 12 + length])
        assert zlib.crc32(ctype + body) == crc, f"bad CRC on chunk {ctype!r}"
        chunks.append(ctype)
        if ctype == b"IHDR":
            width, height, depth, color, comp, filt, interlace = struct.unpack("!IIBBBBB", body)
            assert (depth, color, comp, filt, interlace) == (8, 2, 0, 0, 0)
        elif ctype == b"IDAT":
            idat += body
        pos += 12 + length
    assert chunks[0] == b"IHDR" and chunks[-1] == b"IEND", chunks
    raw = zlib.decompress(idat)
    assert len(raw) == height * (1 + width * 3)
    assert 0 < width <= 640 and 0 < height <= 480
    return width, height


def check_event(m):
    assert m["type"] in EVENT_TYPES, m
    cam = re.fullmatch(r"cameras\.(cam-\d+)\.events", m["channel"]).group(1)
    assert m["camera_id"] == cam and m["event_type"] == m["type"], m
    d = m["data"]
    assert set(d) == {"id", "camera_id", "camera_name", "event_type", "confidence",
                      "timestamp"}, d
    assert re.fullmatch(r"evt-\d+", d["id"]), d
    assert d["camera_id"] == cam and d["event_type"] == m["type"], d
    assert isinstance(d["camera_name"], str) and d["camera_name"], d
    assert is_num(d["confidence"]) and 0 < d["confidence"] <= 1, d
    assert_recent_ts(d["timestamp"])


def check_camera_status(m):
    assert m["type"] == "camera_status", m
    cam = re.fullmatch(r"cameras\.(cam-\d+)\.status", m["channel"]).group(1)
    d = m["data"]
    assert set(d) == {"camera_id", "camera_name", "state", "previous", "timestamp"}, d
    assert d["camera_id"] == cam and isinstance(d["camera_name"], str) and d["camera_name"]
    assert d["state"] in STATES and d["previous"] in STATES and d["state"] != d["previous"], d
    assert_recent_ts(d["timestamp"])


def check_alert(m):
    assert m["type"] == "alert", m
    cam = re.fullmatch(r"alerts\.(cam-\d+)", m["channel"]).group(1)
    d = m["data"]
    assert set(d) == {"id", "camera_id", "camera_name", "level", "title", "message",
                      "timestamp", "thumbnail"}, sorted(d)
    assert re.fullmatch(r"alert-[0-9a-z]+-\d+", d["id"]) and m["id"] == d["id"], (m["id"], d)
    assert d["camera_id"] == cam and isinstance(d["camera_name"], str) and d["camera_name"]
    assert d["level"] in ("warning", "critical"), d["level"]
    assert isinstance(d["title"], str) and d["title"], d
    assert isinstance(d["message"], str) and d["message"], d
    assert_recent_ts(d["timestamp"])
    assert d["thumbnail"].startswith(THUMBNAIL_PREFIX), d["thumbnail"][:40]
    png = base64.b64decode(d["thumbnail"][len(THUMBNAIL_PREFIX):], validate=True)
    assert check_png(png) == (160, 90)


def check_statistics(doc, total):
    assert set(doc) == {"cameras", "events_today", "events_last_hour", "alerts_open",
                        "people_today", "vehicles_today", "motion_today", "events_per_minute",
                        "timestamp"}, sorted(doc)
    c = doc["cameras"]
    assert set(c) == {"total", "online", "recording", "down"} and all(map(is_int, c.values()))
    assert c["total"] == total and c["online"] + c["down"] == total, c
    assert 0 <= c["recording"] <= c["online"], c
    for k in ("events_today", "events_last_hour", "alerts_open", "people_today",
              "vehicles_today", "motion_today"):
        assert is_int(doc[k]) and doc[k] >= 0, (k, doc[k])
    epm = doc["events_per_minute"]
    assert isinstance(epm, list) and len(epm) == 60 and all(is_int(n) and n >= 0 for n in epm)
    assert doc["events_last_hour"] == sum(epm)
    assert doc["events_today"] == doc["people_today"] + doc["vehicles_today"] + doc["motion_today"]
    assert_recent_ts(doc["timestamp"])


def check_status(doc, total):
    assert set(doc) == {"cameras", "summary"}, sorted(doc)
    cams = doc["cameras"]
    assert set(cams) == {f"cam-{i}" for i in range(1, total + 1)}, sorted(cams)
    for cid, c in cams.items():
        assert set(c) == {"id", "name", "location", "state", "since", "fps", "resolution",
                          "last_event"}, sorted(c)
        assert c["id"] == cid and c["state"] in STATES, c
        assert isinstance(c["name"], str) and c["name"] and isinstance(c["location"], str)
        assert_recent_ts(c["since"], slack=48 * 3600)
        assert is_int(c["fps"]) and (c["fps"] == 0) == (c["state"] == "down"), c
        assert re.fullmatch(r"\d+x\d+", c["resolution"]), c
        assert c["last_event"] is None or assert_recent_ts(c["last_event"])
    states = [c["state"] for c in cams.values()]
    assert doc["summary"] == {"online": total - states.count("down"),
                              "recording": states.count("recording"),
                              "down": states.count("down")}, (doc["summary"], states)


# --------------------------------------------------------------------------------------------
# Helpers


def demo_url(srv, timeout=10):
    """The URL line `serve --demo` prints on stdout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(srv.stdout_path, errors="replace") as f:
            m = URL_LINE.search(f.read())
        if m:
            return m.group(1)
        time.sleep(0.05)
    raise AssertionError(f"no 'vigil demo: open URL' line on stdout within {timeout} s")


def jwt_claims(token):
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


class Watch:
    """Everything the fleet publishes, checked as it arrives; state documents kept current."""

    def __init__(self, cameras):
        self.cameras = cameras
        self.docs = {}
        self.events, self.statuses, self.alerts = [], [], []
        self.down = set()  # cameras down now, from camera_status messages

    def take(self, m):
        t = m.get("type")
        if t == "state":
            # A document created after the subscribe arrives as a patch from nothing.
            doc = m["snapshot"] if "snapshot" in m else merge(self.docs.get(m["name"], {}),
                                                              m["patch"])
            self.docs[m["name"]] = doc
            check = check_statistics if m["name"] == "statistics" else check_status
            check(doc, self.cameras)
        elif t in EVENT_TYPES:
            check_event(m)
            assert m["camera_id"] not in self.down, f"event from a camera that is down: {m}"
            self.events.append(m)
        elif t == "camera_status":
            check_camera_status(m)
            cam = m["data"]["camera_id"]
            if m["data"]["state"] == "down":
                self.down.add(cam)
            else:
                self.down.discard(cam)
            self.statuses.append(m)
        elif t == "alert":
            check_alert(m)
            self.alerts.append(m)

    def complete(self):
        return ({"statistics", "status"} <= set(self.docs) and self.events and
                any(s["data"]["state"] == "down" for s in self.statuses) and
                any(a["data"]["title"] == "Camera offline" for a in self.alerts) and
                any(a["data"]["title"] != "Camera offline" for a in self.alerts))


async def watch_fleet(srv, token, cameras, until, timeout):
    """Subscribes to everything the fleet publishes and checks it until until(watch) holds."""
    w = Watch(cameras)
    async with await connect(srv, token) as c:
        await c.subscribe(["cameras.>", "alerts.>", "state.statistics", "state.status"])
        deadline = time.monotonic() + timeout
        while not until(w):
            left = deadline - time.monotonic()
            assert left > 0, (f"within {timeout} s got docs {sorted(w.docs)}, "
                              f"{len(w.events)} events, statuses "
                              f"{[s['data']['state'] for s in w.statuses]}, alerts "
                              f"{[a['data']['title'] for a in w.alerts]}")
            try:
                w.take(await c.recv(timeout=min(left, 1)))
            except asyncio.TimeoutError:
                pass
    return w


async def connect_and_close(srv, token):
    async with await connect(srv, token) as c:
        await c.ping()


# --------------------------------------------------------------------------------------------
# serve --demo


def test_serve_demo_end_to_end(vigil_factory):
    srv = vigil_factory("--demo")
    assert demo_url(srv) == srv.url("/")

    resp = srv.http("GET", "/api/demo/session")
    body = ok_json(resp)
    assert "no-store" in (resp.header("Cache-Control") or "")
    assert set(body) == {"token", "user", "admin"}
    assert body["user"] == "demo" and body["admin"] is True
    claims = jwt_claims(body["token"])
    assert claims["sub"] == "demo" and claims["admin"] is True
    assert abs(claims["exp"] - claims["iat"] - 12 * 3600) <= 1, claims

    # Everything within 40 s: the first outage comes 8-15 s after the start.
    w = run_async(watch_fleet(srv, body["token"], 8, Watch.complete, timeout=40), timeout=60)
    assert w.docs["statistics"]["cameras"]["total"] == 8
    assert len({e["data"]["id"] for e in w.events}) == len(w.events), "event ids repeat"
    assert len({a["id"] for a in w.alerts}) == len(w.alerts), "alert ids repeat"
    offline = next(a for a in w.alerts if a["data"]["title"] == "Camera offline")
    assert offline["data"]["level"] == "critical"
    down = [s["data"]["camera_id"] for s in w.statuses if s["data"]["state"] == "down"]
    assert offline["data"]["camera_id"] in down

    # The API key was generated for this run: publishing without one is refused.
    assert api(srv, "POST", "/api/publish", {"channel": "x", "type": "t", "data": {}}).status == 401

    srv.send_signal(signal.SIGTERM)
    assert srv.wait(10) == 0, srv.stderr_text(tail=3000)


def test_serve_demo_keeps_given_keys_and_fleet_size(vigil_factory):
    srv = vigil_factory("--demo", "--demo-cameras", "3", *hub_args())
    demo_url(srv)
    token = ok_json(srv.http("GET", "/api/demo/session"))["token"]
    # Signed with the given secret: a token minted independently with it is accepted too.
    w = run_async(watch_fleet(srv, token, 3, lambda w: {"statistics", "status"} <= set(w.docs),
                              timeout=15), timeout=30)
    assert set(w.docs["status"]["cameras"]) == {"cam-1", "cam-2", "cam-3"}
    ok_json(api(srv, "POST", "/api/publish", {"channel": "x", "type": "t", "data": {}},
                api_key=API_KEY))
    run_async(connect_and_close(srv, mint("someone")))  # the given --jwt-secret still works


def test_no_demo_login_without_demo(vigil_factory):
    srv = vigil_factory(*hub_args())
    resp = srv.http("GET", "/api/demo/session")
    assert resp.status == 404, resp


# --------------------------------------------------------------------------------------------
# vigil demo


def test_vigil_demo_publishes_to_a_separate_server(vigil_factory):
    srv = vigil_factory(*hub_args())
    cmd = [vigil_bin(), "demo", "--url", srv.url("").rstrip("/"), "--api-key", API_KEY,
           "--cameras", "4", "--duration", "12", "--seed", "42"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=clean_env(), cwd=tempfile.gettempdir())
    try:
        w = run_async(watch_fleet(srv, mint("viewer"), 4,
                                  lambda w: {"statistics", "status"} <= set(w.docs) and
                                  w.events and w.alerts, timeout=11), timeout=30)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, (out, err)
    assert re.search(rb"vigil demo: \d+ request\(s\) accepted, 0 failed", out), (out, err)
    assert set(w.docs["status"]["cameras"]) == {f"cam-{i}" for i in range(1, 5)}
    status = ok_json(api(srv, "GET", "/api/state/status", api_key=API_KEY))
    check_status(status, 4)


def test_vigil_demo_stops_on_sigterm(vigil_factory):
    srv = vigil_factory(*hub_args())
    proc = subprocess.Popen([vigil_bin(), "demo", "--url", srv.url(""), "--api-key", API_KEY],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=clean_env(),
                            cwd=tempfile.gettempdir())
    try:
        deadline = time.monotonic() + 10
        while api(srv, "GET", "/api/state/status", api_key=API_KEY).status != 200:
            assert time.monotonic() < deadline, "the fleet published no status within 10 s"
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, (out, err)
    assert b"accepted" in out, (out, err)


def test_vigil_demo_refused_key_and_unreachable_server(vigil_factory):
    srv = vigil_factory(*hub_args())
    r = run_cli(["demo", "--url", srv.url(""), "--api-key", "wrong-key", "--duration", "30"],
                timeout=15)
    assert r.returncode == 1 and "API key" in r.stderr, r
    port = free_port()
    r = run_cli(["demo", "--url", f"http://127.0.0.1:{port}", "--api-key", "k"], timeout=15)
    assert r.returncode == 1 and "cannot reach" in r.stderr, r


@pytest.mark.parametrize("args, needle", [
    (["--cameras", "0"], "--cameras"),
    (["--cameras", "many"], "--cameras"),
    (["--duration", "-1"], "--duration"),
    (["--seed", "x"], "--seed"),
    (["--bogus"], "--bogus"),
    (["--url"], "--url"),
    (["--url", "https://example.com"], "--url"),
])
def test_vigil_demo_usage_errors(args, needle):
    r = run_cli(["demo", *args])
    assert r.returncode == 2 and needle in r.stderr, r


def test_vigil_demo_help():
    r = run_cli(["demo", "--help"])
    assert r.returncode == 0 and "Usage: vigil demo" in r.stdout, r
    r = run_cli(["help"])
    assert "demo" in r.stdout
