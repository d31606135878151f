"""Hostile clients against channels and the fallback transports (issue 15, items 3, 4 and 10):

* subscribing and long-polling create no channel record, so distinct names cost nothing once
  the request is over; records without history are freed once idle, and a channel that comes
  back starts a new epoch (recovery still refuses what it cannot replay);
* `since_time` visits only the channels published to after it, so it cannot stall publishers;
* an SSE request refused with 400/403 releases the caller's identity;
* a 400 naming a bad channel is valid JSON even when the name is cut inside a UTF-8 character;
* SSE and long-poll numbers are strict: `timeout=abc`, `0x10`, an impossible date, negative or
  overflowing offsets are 400 with a message saying what is expected.

Memory bounds read VmRSS from /proc.  In a sanitizer build the RSS budgets are printed, not
asserted (conftest.sanitizer_build); the attack still runs and LeakSanitizer reports any leak
when the server exits, which fails the test.
"""

import asyncio
import json
import threading
import time
import urllib.parse

import jwt
import websockets

from conftest import assert_rss_budget

API_KEY = "hostile-channels-key"
SECRET = "hostile-channels-secret-0123456789abcdef"


def start(vigil_factory, *extra):
    return vigil_factory("--allow-anonymous", "--api-key", API_KEY, "--max-inbound-rate",
                         "1000000", *extra)


def rss_mb(srv):
    with open(f"/proc/{srv.proc.pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def assert_growth_within(srv, before_mb, budget_mb, what):
    grown = rss_mb(srv) - before_mb
    assert_rss_budget(grown < budget_mb, f"{what}: RSS grew {grown:.1f} MB (budget {budget_mb} MB)")


def metric(srv, name):
    resp = srv.http("GET", "/metrics")
    assert resp.status == 200
    for line in resp.body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"no {name} in /metrics")


def publish(srv, channel, values, conn=None):
    body = json.dumps({"messages": [{"channel": channel, "type": "t", "data": v}
                                    for v in values]})
    hdrs = [("Authorization", f"Bearer {API_KEY}"), ("Content-Type", "application/json")]
    resp = (conn.request("POST", "/api/publish", hdrs, body.encode()) if conn is not None
            else srv.http("POST", "/api/publish", headers=hdrs, body=body.encode()))
    assert resp.status == 200, resp.body
    return json.loads(resp.body)["offsets"]


class Publisher(threading.Thread):
    """Publishes on its own keep-alive connection until stopped; every request must be
    answered (200) within the connection's timeout."""

    def __init__(self, srv):
        super().__init__(daemon=True)
        self.srv = srv
        self.answered = 0
        self.error = None
        self.halt = threading.Event()

    def run(self):
        try:
            with self.srv.conn(timeout=10) as c:
                while not self.halt.is_set():
                    publish(self.srv, "live.pub", [self.answered], conn=c)
                    self.answered += 1
                    time.sleep(0.02)
        except Exception as e:  # reported by stop()
            self.error = e

    def stop(self):
        self.halt.set()
        self.join(15)
        assert self.error is None, f"the publisher was not answered: {self.error!r}"
        assert self.answered > 0


def ws_request(ws, msg):
    """Sends a native request and returns the answer with the same id (skipping others)."""
    ws.send_text(json.dumps(msg))
    while True:
        reply = json.loads(ws.recv_frame(timeout=10).payload)
        if reply.get("id") == msg["id"]:
            return reply


def test_subscribing_to_distinct_channels_keeps_memory_bounded(vigil_factory):
    """200k distinct names subscribed and unsubscribed on one /ws: no channel record is left
    and RSS stays flat, while a publisher on another connection is answered throughout."""
    srv = start(vigil_factory)
    ws = srv.raw_ws("/ws")
    ws.recv_frame()  # connection_status
    batch, rounds = 250, 800

    def churn(first, last):
        for r in range(first, last):
            names = [f"churn.r{r}.c{k}" for k in range(batch)]
            sub = ws_request(ws, {"type": "subscribe", "channels": names, "id": 2 * r})
            assert sub["type"] == "subscribed", sub
            assert sub["positions"][names[0]]["offset"] == 0
            unsub = ws_request(ws, {"type": "unsubscribe", "channels": names, "id": 2 * r + 1})
            assert unsub["type"] == "unsubscribed", unsub

    churn(0, 20)  # warm up the allocator
    before = rss_mb(srv)
    pub = Publisher(srv)
    pub.start()
    churn(20, rounds)
    pub.stop()
    assert_growth_within(srv, before, 8, "200k subscribe/unsubscribe")
    assert metric(srv, "vigil_channels") <= 1  # live.pub
    ws.http.close()


def test_anonymous_polls_of_new_channels_keep_memory_bounded(vigil_factory):
    """Anonymous long-polls naming 64 new channels each create nothing that outlives them; a
    since_time poll over every channel meanwhile only visits what was published, and the
    publisher is answered throughout."""
    srv = start(vigil_factory)
    pub = Publisher(srv)

    def polls(c, first, last):
        for i in range(first, last):
            names = ",".join(f"poll.p{i}.c{k}" for k in range(64))
            resp = c.request("GET", f"/api/poll?channels={names}&timeout=0")
            assert resp.status == 200, resp.body

    with srv.conn() as c:
        polls(c, 0, 100)
        before = rss_mb(srv)
        pub.start()
        polls(c, 100, 3100)
        for _ in range(5):
            resp = c.request("GET", "/api/poll?channels=>&since_time=0&timeout=0")
            assert resp.status == 200, resp.body
            got = json.loads(resp.body)["messages"]
            assert got and all(m["channel"] == "live.pub" for m in got), got[:3]
    pub.stop()
    assert_growth_within(srv, before, 8, "3000 anonymous 64-channel polls")
    assert metric(srv, "vigil_channels") <= 1


def test_since_time_finds_channels_by_their_last_publish(vigil_factory):
    """since_time replays, for every matching channel, the history published at or after it:
    a channel published to again moves up, one left alone is skipped."""
    srv = start(vigil_factory)
    publish(srv, "st.a", ["a1"])
    publish(srv, "st.b", ["b1"])
    time.sleep(0.05)
    since = int(time.time() * 1000)
    time.sleep(0.05)
    publish(srv, "st.c", ["c1"])
    publish(srv, "st.a", ["a2"])
    publish(srv, "other.x", ["x1"])
    resp = srv.http("GET", f"/api/poll?channels=st.*&since_time={since}&timeout=0")
    assert resp.status == 200, resp.body
    got = sorted(m["data"] for m in json.loads(resp.body)["messages"])
    assert got == ["a2", "c1"], got


async def subscribe(ws, channels, since=None, id_="s"):
    req = {"type": "subscribe", "channels": channels, "id": id_}
    if since is not None:
        req["since"] = since
    await ws.send(json.dumps(req))
    while True:
        msg = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if msg.get("id") == id_:
            return msg


def wait_until(fn, timeout=10):
    deadline = time.monotonic() + timeout
    while not fn():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_idle_channels_are_freed_and_come_back_with_a_new_epoch(vigil_factory):
    """With a short --history-ttl, a channel whose history expired is freed once idle; when it
    is published to again its offsets restart under a new epoch, so an old position is not
    mistaken for a new one, and a position taken before anything was published recovers only
    when nothing was lost in between."""
    srv = start(vigil_factory, "--history-ttl", "0.2")

    async def scenario():
        async with websockets.connect(srv.ws_url("/ws")) as ws:
            await ws.recv()
            empty = await subscribe(ws, ["idle.b"], id_="b")
            assert empty["offset"] == 0
            publish(srv, "idle.a", [1, 2])
            publish(srv, "idle.b", [1])
            await asyncio.wait_for(ws.recv(), 10)  # idle.b's message
            old = await subscribe(ws, ["idle.a"], id_="a")
            assert old["offset"] == 2
        publish(srv, "idle.many", list(range(5)))
        for i in range(300):
            publish(srv, f"idle.n{i}", [i])
        assert metric(srv, "vigil_channels") >= 300
        wait_until(lambda: metric(srv, "vigil_channels") == 0)
        assert metric(srv, "vigil_channels_freed_total") >= 303
        assert publish(srv, "idle.a", ["again"]) == [1]
        assert publish(srv, "idle.b", ["again"]) == [1]
        async with websockets.connect(srv.ws_url("/ws")) as ws:
            await ws.recv()
            sub = await subscribe(ws, ["idle.a"], {"offset": 2, "epoch": old["epoch"]})
            assert sub["recovered"] is False and sub["epoch"] != old["epoch"], sub
            assert sub["offset"] == 1
            # idle.b lost its first run while the client was away: not recoverable from 0.
            sub = await subscribe(ws, ["idle.b"], {"offset": 0, "epoch": empty["epoch"]},
                                  id_="b2")
            assert sub["recovered"] is False, sub

    asyncio.run(scenario())


def test_recovery_from_nothing_published_needs_no_record(vigil_factory):
    """A subscribe before the first publish answers offset 0 and an epoch; after publishes,
    `since` that position replays everything, for each of several channels."""
    srv = start(vigil_factory)

    async def scenario():
        async with websockets.connect(srv.ws_url("/ws")) as ws:
            await ws.recv()
            first = await subscribe(ws, ["new.a", "new.b"])
            pos = first["positions"]
            assert pos["new.a"]["offset"] == 0 and pos["new.b"]["offset"] == 0
        assert metric(srv, "vigil_channels") == 0
        publish(srv, "new.a", [1, 2, 3])
        publish(srv, "new.b", [1])
        async with websockets.connect(srv.ws_url("/ws")) as ws:
            await ws.recv()
            since = {ch: {"offset": 0, "epoch": pos[ch]["epoch"]} for ch in pos}
            sub = await subscribe(ws, ["new.*"], since)
            assert sub["recovered"] is True, sub
            got = [json.loads(await asyncio.wait_for(ws.recv(), 10)) for _ in range(4)]
            assert sorted((m["channel"], m["offset"]) for m in got) == \
                [("new.a", 1), ("new.a", 2), ("new.a", 3), ("new.b", 1)]

    asyncio.run(scenario())


def test_refused_sse_requests_release_the_identity(vigil_factory):
    """Thousands of SSE requests refused with 400 or 403 on one keep-alive connection, each
    with a token carrying a large channels claim: memory stays flat (under ASan, LeakSanitizer
    checks the same at exit)."""
    srv = vigil_factory("--jwt-secret", SECRET, "--api-key", API_KEY)
    claim = [f"allowed.{i}.{'x' * 70}" for i in range(60)]  # a token just under 8 KiB
    token = jwt.encode({"sub": "alice", "channels": claim, "exp": int(time.time()) + 3600},
                       SECRET, algorithm="HS256")
    hdrs = [("Authorization", f"Bearer {token}")]
    refusals = ["channels=bad..name", "channels=secret.x", f"channels={claim[1]}&since_time=zz"]
    with srv.conn() as c:
        def refuse(n):
            for i in range(n):
                resp = c.request("GET", f"/api/sse?{refusals[i % 3]}", hdrs)
                assert resp.status in (400, 403), resp.body
        refuse(200)
        before = rss_mb(srv)
        refuse(4000)
    assert_growth_within(srv, before, 8, "4000 refused SSE requests")


def bad_channel_query(name_bytes):
    return "channels=" + urllib.parse.quote_from_bytes(name_bytes, safe="")


def test_bad_channel_error_is_valid_json_when_the_name_is_cut(vigil_factory):
    """A 400 quoting a channel name cut at 200 bytes does not split a UTF-8 character, and
    invalid bytes in the name do not make the body invalid JSON."""
    srv = start(vigil_factory)
    for path in ("/api/sse", "/api/poll"):
        for name in ("a" * 199 + "é").encode(), b"bad name \xff\xfe", ("é" * 150).encode():
            resp = srv.http("GET", f"{path}?{bad_channel_query(name)}")
            assert resp.status == 400, resp.body
            doc = json.loads(resp.body.decode("utf-8"))  # strict: fails on a cut character
            assert doc["error"]["code"] == "invalid_channel", doc
            assert "channel" in doc["error"]["message"]


def expect_400(resp, words):
    assert resp.status == 400, (resp.status, resp.body[:200])
    message = json.loads(resp.body)["error"]["message"]
    assert words in message, message
    return message


def test_poll_numbers_are_strict(vigil_factory):
    srv = start(vigil_factory)
    for timeout in ("abc", "0x10", "-1", "1e1", "nan", "inf", " 5", "5s", "121"):
        resp = srv.http("GET", f"/api/poll?channels=a.b&timeout={urllib.parse.quote(timeout)}")
        expect_400(resp, "timeout")
    assert srv.http("GET", "/api/poll?channels=a.b&timeout=0.5").status == 200
    for since in ("a.b:-1", "a.b:18446744073709551616", "a.b:99999999999999999999999",
                  "a.b:+1", "a.b: 1", "a.b:0x1", "a.b:", "a.b:9223372036854775808"):
        resp = srv.http("GET", f"/api/poll?channels=a.b&since={urllib.parse.quote(since)}"
                        "&timeout=0")
        expect_400(resp, "since")
    assert srv.http("GET", "/api/poll?channels=a.b&since=a.b:9223372036854775807&timeout=0") \
        .status == 200


def test_since_time_must_be_a_real_time(vigil_factory):
    srv = start(vigil_factory)
    for bad in ("2026-13-45T99:99:99Z", "2026-02-30T00:00:00Z", "2026-01-01T24:00:00Z",
                "2026-01-01T00:60:00Z", "2026-1-01T00:00:00Z", "+2026-01-01T00:00:00Z",
                "2026-01-01T00:00:00", "99999999999999999999", "0x10", "-5", "12abc"):
        q = urllib.parse.quote(bad)
        resp = srv.http("GET", f"/api/poll?channels=a.*&since_time={q}&timeout=0")
        expect_400(resp, "since_time")
        with srv.conn() as c:
            c.send(f"GET /api/sse?channels=a.*&since_time={q} HTTP/1.1\r\nHost: x\r\n\r\n")
            expect_400(c.read_response(), "since_time")
    for good in ("2026-02-28T23:59:59.5Z", "2024-02-29T12:00:00Z", "1700000000000"):
        q = urllib.parse.quote(good)
        assert srv.http("GET", f"/api/poll?channels=a.*&since_time={q}&timeout=0").status == 200


def test_sse_last_event_id_is_strict(vigil_factory):
    """Last-Event-ID must be <channel>:<offset> for a channel of the request; anything else is
    a 400 (it used to be read as a huge offset, or ignored)."""
    srv = start(vigil_factory)
    for last_id in ("a.b:-1", "a.b:99999999999999999999999", "a.b:", "a.b:1x", "a.b:0x10",
                    "nocolon", "other.c:1"):
        with srv.conn() as c:
            c.send(f"GET /api/sse?channels=a.b HTTP/1.1\r\nHost: x\r\n"
                   f"Last-Event-ID: {last_id}\r\n\r\n")
            expect_400(c.read_response(), "Last-Event-ID")
    publish(srv, "a.b", [1, 2, 3])
    with srv.conn() as c:
        c.send("GET /api/sse?channels=a.* HTTP/1.1\r\nHost: x\r\nLast-Event-ID: a.b:1\r\n\r\n")
        head = c._read_until(b"\r\n\r\n", time.monotonic() + 10)
        assert b" 200 " in head.split(b"\r\n")[0]
        data, c.buf = c.buf, b""
        while data.count(b"data: ") < 2:
            c._fill(time.monotonic() + 10)
            data, c.buf = data + c.buf, b""
        assert b"id: a.b:2\n" in data and b"id: a.b:3\n" in data


def test_last_event_id_cannot_read_another_channel(vigil_factory):
    """Last-Event-ID named any channel and replayed its history, whatever the user may read: a
    client allowed only pub.> asked for pub.a with Last-Event-ID secret.y:0."""
    srv = start(vigil_factory, "--default-channels", "pub.>")
    publish(srv, "secret.y", ["the secret"])
    with srv.conn() as c:
        c.send("GET /api/sse?channels=pub.a HTTP/1.1\r\nHost: x\r\n"
               "Last-Event-ID: secret.y:0\r\n\r\n")
        head = c._read_until(b"\r\n\r\n", time.monotonic() + 10)
        if b" 200 " in head.split(b"\r\n")[0]:
            while b"\n\n" not in c.buf.split(b": connected\n\n", 1)[-1]:
                c._fill(time.monotonic() + 10)
            raise AssertionError(f"streamed: {c.buf!r}")
        c.buf = head + c.buf
        expect_400(c.read_response(), "Last-Event-ID")
