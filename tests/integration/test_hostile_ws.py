"""Hostile and careless WebSocket clients (issue 15): every resource one connection can make the
server hold is bounded, and every request is answered.

* Pings from a client that never reads: pongs are coalesced (one waiting at a time) and pings
  take from the --max-inbound-rate bucket, on /ws and on the Socket.IO WebSocket alike.
* --max-subscriptions per connection, and a subscribe that costs what it adds.
* --max-rpc-inflight-per-connection / --max-rpc-inflight-per-user: one user's slow RPCs never
  hold another's.
* Error messages cut on a UTF-8 boundary, so a request with a long non-ASCII name is answered.
* A recovery or a state snapshot larger than --max-outbound does not close the client.

Each attack is scaled down to what proves the bound, and every test also checks that another
client is served meanwhile.
"""

import http.server
import json
import os
import socket
import threading
import time

import pytest

from conftest import (OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, ConnectionEnded, RawWS,
                      assert_rss_budget, build_frame)
from hubutil import API_KEY, api, hub_args, metrics, mint, publish, uniq, ws_path

SIO_WS_PATH = "/socket.io/?EIO=4&transport=websocket"


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS in /proc status")


def peak_rss_kb(pid, seconds=1.0):
    """The highest RSS seen over `seconds` (the server may still be working through input)."""
    peak = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        peak = max(peak, rss_kb(pid))
        time.sleep(0.05)
    return peak


def limit_hits(srv, limit):
    resp = srv.http("GET", "/metrics")
    for line in resp.body.decode().splitlines():
        if line.startswith(f'vigil_limit_hits_total{{limit="{limit}"}}'):
            return float(line.split()[-1])
    raise AssertionError(f"no vigil_limit_hits_total for {limit} in /metrics")


def open_ws(srv, path, token=None, rcvbuf=None):
    """A raw WebSocket on `path` ("/ws" gets ?token= when given) that has read its greeting.
    rcvbuf: a small receive buffer, set before connecting so that the window stays small and a
    client that does not read soon makes the server's writes wait."""
    if path == "/ws":
        path = ws_path(token) if token else "/ws"
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(10)
    sock.connect((srv.host, srv.port))
    ws = RawWS(srv.host, srv.port, sock=sock)
    resp = ws.handshake(path)
    assert resp.status == 101, f"{path}: {resp.status} {resp.body[:200]!r}"
    f = ws.recv_frame()
    assert f.opcode == OP_TEXT, f"greeting: {f!r}"
    return ws


def send_all(ws, data):
    """Sends without reading; returns False when the server has closed on us."""
    try:
        ws.sock.sendall(data)
        return True
    except (BrokenPipeError, ConnectionResetError):
        return False


def flood_pings(ws, count, batch=5000):
    """Sends `count` pings without reading a byte (payload: their number, padded to the 125
    bytes a control frame may carry, so the pongs soon fill the socket buffers).  Returns the
    payload of the last ping sent."""
    last = b""
    for start in range(0, count, batch):
        frames = []
        for i in range(start, min(count, start + batch)):
            last = str(i).encode().ljust(125, b".")
            frames.append(build_frame(OP_PING, last))
        if not send_all(ws, b"".join(frames)):
            break
    return last


def read_frames(ws, timeout=5):
    """Every frame until the server closes (or `timeout` without data)."""
    out = []
    while True:
        try:
            out.append(ws.recv_frame(timeout=timeout))
        except (ConnectionEnded, TimeoutError):
            return out
        if out[-1].opcode == OP_CLOSE:
            return out


def assert_other_client_served(srv):
    """A fresh client gets its echo while the attacker is still connected."""
    with srv.raw_ws("/echo") as ws:
        ws.send_text("still here")
        assert ws.recv_message(timeout=5) == (OP_TEXT, b"still here")


# ---------------------------------------------------------------------------- 1. ping floods

PINGS = 200_000
# Before the fix every ping queued its own pong: 200k pings held about 32 MB.
PING_RSS_BUDGET_KB = 8 * 1024

ENDPOINTS = {
    "native": ("/ws", ("--allow-anonymous",)),
    "socketio": (SIO_WS_PATH, ("--profile", "socketio")),
}


@pytest.mark.parametrize("endpoint", sorted(ENDPOINTS))
def test_every_ping_of_a_reading_client_gets_its_pong(vigil_factory, endpoint):
    """Coalescing pongs is for clients that stop reading: ten pings in one write from a client
    that reads get ten pongs, each with its ping's payload, in order (Autobahn case 2.10)."""
    path, args = ENDPOINTS[endpoint]
    srv = vigil_factory(*args)
    with open_ws(srv, path) as ws:
        payloads = [f"payload-{i}".encode() for i in range(10)]
        assert send_all(ws, b"".join(build_frame(OP_PING, p) for p in payloads))
        pongs = []
        while len(pongs) < len(payloads):
            f = ws.recv_frame(timeout=5)
            if f.opcode == OP_PONG:
                pongs.append(f.payload)
    assert pongs == payloads


@pytest.mark.parametrize("endpoint", sorted(ENDPOINTS))
def test_ping_flood_closed_by_the_inbound_rate(vigil_factory, endpoint):
    """Pings count against --max-inbound-rate: a client pinging far past it (and reading
    nothing) is closed with 1008 "rate limit exceeded", and the server's memory stays put."""
    path, args = ENDPOINTS[endpoint]
    srv = vigil_factory(*args)
    with open_ws(srv, path, rcvbuf=4096) as ws:
        before = rss_kb(srv.proc.pid)
        flood_pings(ws, PINGS)
        grown = peak_rss_kb(srv.proc.pid) - before
        assert grown < PING_RSS_BUDGET_KB, f"{PINGS} pings grew the server by {grown} KiB"
        assert_other_client_served(srv)
        frames = read_frames(ws)
    pongs = [f for f in frames if f.opcode == OP_PONG]
    assert frames and frames[-1].opcode == OP_CLOSE, f"no close frame after {len(pongs)} pongs"
    assert (frames[-1].close_code, frames[-1].close_reason) == (1008, b"rate limit exceeded")
    assert len(pongs) <= 200, f"{len(pongs)} pongs for a rate of 100/s"
    assert limit_hits(srv, "max-inbound-rate") > 0


@pytest.mark.parametrize("endpoint", sorted(ENDPOINTS))
def test_pongs_to_a_client_that_never_reads_are_coalesced(vigil_factory, endpoint):
    """With the rate limit out of the way, a client that pings and never reads still cannot
    make the server queue a pong per ping: a waiting pong is replaced by the newest, so the
    last ping is answered with its own payload and the server's memory stays put."""
    path, args = ENDPOINTS[endpoint]
    srv = vigil_factory(*args, "--max-inbound-rate", "1000000000")
    with open_ws(srv, path, rcvbuf=4096) as ws:
        before = rss_kb(srv.proc.pid)
        last = flood_pings(ws, PINGS)
        grown = peak_rss_kb(srv.proc.pid) - before
        assert_rss_budget(grown < PING_RSS_BUDGET_KB,
                          f"{PINGS} pings grew the server by {grown} KiB")
        assert_other_client_served(srv)
        pongs = []
        while not pongs or pongs[-1] != last:
            f = ws.recv_frame(timeout=5)
            if f.opcode == OP_PONG:
                pongs.append(f.payload)
        # Still open and in order: the connection answers a ping after all that.
        ws.send_ping(b"after")
        f = ws.recv_frame(timeout=5)
        assert (f.opcode, f.payload) == (OP_PONG, b"after")
    # Each ping gets its own pong while the socket drains (Autobahn 2.10 expects that); once the
    # kernel takes no more, the waiting pong is replaced: far fewer pongs than pings.
    assert len(pongs) < PINGS // 2, f"{len(pongs)} pongs for {PINGS} pings: not coalesced"
    numbers = [int(p.rstrip(b".")) for p in pongs]
    assert numbers == sorted(numbers), "pongs out of order"


# ---------------------------------------------------------------------------- a native client


class Native:
    """A /ws client on a raw socket: requests are matched to answers by id; other messages are
    kept in `inbox`."""

    def __init__(self, srv, token=None, rcvbuf=None):
        self.ws = open_ws(srv, "/ws", token, rcvbuf=rcvbuf)
        self.inbox = []
        self.next_id = 0

    def close(self):
        self.ws.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, obj):
        self.ws.send_text(json.dumps(obj))

    def recv(self, timeout=5):
        if self.inbox:
            return self.inbox.pop(0)
        f = self.ws.recv_frame(timeout=timeout)
        while f.opcode != OP_TEXT:
            assert f.opcode != OP_CLOSE, f"closed: {f.close_code} {f.close_reason!r}"
            f = self.ws.recv_frame(timeout=timeout)
        return json.loads(f.payload)

    def answer(self, rid, timeout=5):
        for i, m in enumerate(self.inbox):
            if m.get("id") == rid and "channel" not in m:
                return self.inbox.pop(i)
        deadline = time.monotonic() + timeout
        while True:
            f = self.ws.recv_frame(timeout=max(0.01, deadline - time.monotonic()))
            assert f.opcode != OP_CLOSE, f"closed: {f.close_code} {f.close_reason!r}"
            if f.opcode != OP_TEXT:
                continue
            m = json.loads(f.payload)
            if m.get("id") == rid and "channel" not in m:
                return m
            self.inbox.append(m)

    def request(self, obj, timeout=5):
        self.next_id += 1
        self.send(dict(obj, id=self.next_id))
        return self.answer(self.next_id, timeout)

    def published(self, n, timeout=5):
        """The next n published messages (anything with a channel), in order."""
        out = [m for m in self.inbox if "channel" in m and "offset" in m][:n]
        self.inbox = [m for m in self.inbox if m not in out]
        while len(out) < n:
            m = json.loads(self.ws.recv_message(timeout=timeout)[1])
            if "channel" in m and "offset" in m:
                out.append(m)
            else:
                self.inbox.append(m)
        return out


def hub(vigil_factory, *extra):
    return vigil_factory(*hub_args(*extra))


# ---------------------------------------------------------------------------- 8. subscriptions


def channels(prefix, n, start=0):
    return [f"{prefix}.c{i}" for i in range(start, start + n)]


def test_subscriptions_past_max_subscriptions_are_refused_whole(vigil_factory):
    """--max-subscriptions bounds one connection: a subscribe that would take it past the limit
    gets error too_many_subscriptions (naming the option, answering the request's id) and
    subscribes nothing; re-subscribing what it holds is fine; unsubscribing makes room; other
    connections are not affected."""
    srv = hub(vigil_factory, "--max-subscriptions", "300")
    p = uniq("subs")
    with Native(srv, mint("alice")) as c:
        assert c.request({"type": "subscribe", "channels": channels(p, 256)})["type"] == \
            "subscribed"
        ans = c.request({"type": "subscribe", "channels": channels(p, 50, start=256)})
        assert ans["type"] == "error" and ans["code"] == "too_many_subscriptions", ans
        assert ans["id"] == c.next_id
        assert "--max-subscriptions" in ans["message"] and "300" in ans["message"], ans
        # Nothing of the refused request was subscribed; the first request's channels work.
        publish(srv, f"{p}.c290", "t", {"n": 1})
        publish(srv, f"{p}.c5", "t", {"n": 2})
        [m] = c.published(1)
        assert m["channel"] == f"{p}.c5", m
        # Up to the limit exactly, with duplicates of what it holds.
        ans = c.request({"type": "subscribe", "channels": channels(p, 44, start=212) +
                         channels(p, 44, start=256)})
        assert ans["type"] == "subscribed", ans
        ans = c.request({"type": "subscribe", "channels": [f"{p}.one-more"]})
        assert ans["code"] == "too_many_subscriptions", ans
        assert c.request({"type": "unsubscribe", "channels": [f"{p}.c0"]})["type"] == \
            "unsubscribed"
        assert c.request({"type": "subscribe", "channels": [f"{p}.one-more"]})["type"] == \
            "subscribed"
        with Native(srv, mint("alice")) as other:
            assert other.request({"type": "subscribe", "channels": channels(p, 256)})["type"] \
                == "subscribed"
    assert limit_hits(srv, "max-subscriptions") == 2


def test_default_max_subscriptions_is_1024(vigil_factory):
    srv = hub(vigil_factory)
    p = uniq("dflt")
    with Native(srv, mint("bob")) as c:
        for k in range(4):
            ans = c.request({"type": "subscribe", "channels": channels(p, 256, start=256 * k)})
            assert ans["type"] == "subscribed", ans
        ans = c.request({"type": "subscribe", "channels": [f"{p}.x"]})
        assert ans["code"] == "too_many_subscriptions" and "1024" in ans["message"], ans
        c.request({"type": "ping"})  # still served


def test_connections_view_follows_subscribes_and_unsubscribes(vigil_factory):
    """The admin view of a connection's subscriptions is kept up to date incrementally on
    subscribe (it no longer rebuilds the whole list each time): it lists exactly what the
    connection holds, in the order subscribed."""
    from hubutil import admin_token
    srv = hub(vigil_factory)
    p = uniq("view")
    user = uniq("viewer")
    with Native(srv, mint(user)) as c:
        expect = []
        for k in range(3):
            chans = channels(p, 100, start=100 * k) + [f"{p}.c{k}"]  # a duplicate each time
            assert c.request({"type": "subscribe", "channels": chans})["type"] == "subscribed"
            for ch in chans:
                if ch not in expect:
                    expect.append(ch)
        c.request({"type": "subscribe", "channels": [f"{p}.*"], "event_types": ["t"]})
        expect.append(f"{p}.*")
        doc = api(srv, "GET", f"/ws/connections/{user}", token=admin_token()).json()
        conns = doc["connections"] if isinstance(doc, dict) else doc
        assert [c_["subscriptions"] for c_ in conns] == [expect]
        c.request({"type": "unsubscribe", "channels": [f"{p}.c1", f"{p}.*"]})
        expect = [ch for ch in expect if ch not in (f"{p}.c1", f"{p}.*")]
        c.request({"type": "subscribe", "channels": [f"{p}.c1"]})
        expect.append(f"{p}.c1")
        doc = api(srv, "GET", f"/ws/connections/{user}", token=admin_token()).json()
        conns = doc["connections"] if isinstance(doc, dict) else doc
        assert [c_["subscriptions"] for c_ in conns] == [expect]


# ---------------------------------------------------------------------------- 10. UTF-8 cuts


def test_error_quoting_a_long_non_ascii_name_is_still_answered(vigil_factory):
    """An error message quotes at most 200 bytes of a name: cut inside a multi-byte character it
    was invalid UTF-8, the answer could not be encoded, and the request's id went unanswered.
    It is cut on a character boundary now."""
    srv = hub(vigil_factory)
    with Native(srv, mint("carol")) as c:
        name = "a" * 199 + "é"  # 201 bytes: the 200-byte cut falls inside "é"
        ans = c.request({"type": "subscribe", "channels": [name]})
        assert ans["type"] == "error" and ans["code"] == "invalid_channel", ans
        assert ans["message"].startswith('invalid channel "' + "a" * 199 + '"'), ans
        for n in (99, 198, 199, 200):
            kind = "t" * n + "é€🚀"
            ans = c.request({"type": kind})
            assert ans["type"] == "error" and ans["code"] == "unknown_type", ans
            assert ans["message"].encode().count(b"t") >= min(n, 150), ans
        # Invalid UTF-8 quoted by the JSON parser's own error text.
        c.ws.send_text(b'{"type":"' + "é".encode() * 300)
        ans = c.recv()
        assert ans["type"] == "error" and ans["code"] == "bad_json", ans
        assert c.request({"type": "ping"})["type"] == "pong"


# ---------------------------------------------------------------------------- 9. RPC fairness


class SlowBackend:
    """An --rpc-url backend whose calls for which slow(request) is true wait until released (or
    20 s); every other call is answered at once."""

    def __init__(self, slow):
        self.release = threading.Event()
        self.slow_started = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                req = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
                if slow(req):
                    outer.slow_started += 1
                    outer.release.wait(20)
                data = json.dumps({"user": req["user"], "method": req["method"]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/rpc"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def slow_backend():
    made = []

    def make(slow):
        b = SlowBackend(slow)
        made.append(b)
        return b
    yield make
    for b in made:
        b.close()


def test_one_users_slow_rpcs_do_not_hold_another_users(vigil_factory, slow_backend):
    """User A floods a slow backend with RPCs from two connections; past the bounds (2 per
    connection, 2 per user) they are answered "busy" at once, so A never holds libuv's thread
    pool and user B's instant call is answered while A's are still waiting."""
    a, b = uniq("slow"), uniq("fast")
    backend = slow_backend(lambda req: req["user"] == a)
    srv = hub(vigil_factory, "--rpc-url", backend.url)
    with Native(srv, mint(a)) as a1, Native(srv, mint(a)) as a2, Native(srv, mint(b)) as b1:
        for i in range(6):
            a1.send({"type": "rpc", "id": f"a1-{i}", "method": "slow"})
        busy = [a1.answer(f"a1-{i}") for i in range(2, 6)]
        assert all(m["type"] == "error" and m["code"] == "busy" for m in busy), busy
        assert "--max-rpc-inflight-per-connection" in busy[0]["message"]
        # Another connection of the same user: the per-user bound.
        ans = a2.request({"type": "rpc", "method": "slow"})
        assert ans["code"] == "busy" and "--max-rpc-inflight-per-user" in ans["message"], ans
        # B is served while A's two calls are still held by the backend.
        ans = b1.request({"type": "rpc", "method": "fast"}, timeout=10)
        assert ans == {"type": "rpc_result", "id": b1.next_id,
                       "result": {"user": b, "method": "fast"}}
        assert not backend.release.is_set() and backend.slow_started == 2
        backend.release.set()
        done = [a1.answer(f"a1-{i}", timeout=10) for i in range(2)]
        assert all(m["type"] == "rpc_result" for m in done), done
        # The slots are given back: A may call again.
        ans = a2.request({"type": "rpc", "method": "slow-again"}, timeout=10)
        assert ans["type"] == "rpc_result", ans
    assert limit_hits(srv, "max-rpc-inflight-per-connection") == 4
    assert limit_hits(srv, "max-rpc-inflight-per-user") == 1


def sio_connect(srv):
    """A Socket.IO client over the WebSocket transport, CONNECTed to "/"."""
    ws = open_ws(srv, SIO_WS_PATH)  # read the Engine.IO open packet
    ws.send_text("40")
    while True:
        f = ws.recv_frame()
        if f.opcode == OP_TEXT and f.payload.startswith(b"40"):
            return ws


def sio_acks(ws, n, timeout=10):
    """The next n acks: {id: args}."""
    out = {}
    deadline = time.monotonic() + timeout
    while len(out) < n:
        f = ws.recv_frame(timeout=max(0.01, deadline - time.monotonic()))
        if f.opcode == OP_TEXT and f.payload.startswith(b"43"):
            body = f.payload[2:].decode()
            i = 0
            while body[i].isdigit():
                i += 1
            out[int(body[:i])] = json.loads(body[i:])
    return out


def test_socketio_emits_share_the_rpc_bounds(vigil_factory, slow_backend):
    """Socket.IO emits forwarded to --rpc-url follow the same rule (rpc.c): past the bound the
    ack says busy at once, and another client's emit is answered meanwhile."""
    backend = slow_backend(lambda req: req["method"] == "slow")
    srv = vigil_factory("--profile", "socketio", "--rpc-url", backend.url)
    with sio_connect(srv) as ws:
        for i in range(1, 6):
            ws.send_text(f'42{i}["slow",{{"n":{i}}}]')
        acks = sio_acks(ws, 3)
        assert sorted(acks) == [3, 4, 5], acks
        assert all("busy" in a[0]["error"] for a in acks.values()), acks
        with sio_connect(srv) as other:
            # Token-less clients are all "anonymous": bounded per connection, not as one user.
            other.send_text('427["fast"]')
            assert sio_acks(other, 1) == {7: [{"user": "anonymous", "method": "fast"}]}
        assert not backend.release.is_set() and backend.slow_started == 2
        backend.release.set()
        acks = sio_acks(ws, 2)
        assert sorted(acks) == [1, 2] and all("user" in a[0] for a in acks.values()), acks


# ---------------------------------------------------------------------------- oversized replies

SMALL_OUTBOUND = "64KiB"


def test_recovery_larger_than_max_outbound_answers_recovered_false(vigil_factory):
    """A recovery whose replay would not fit in --max-outbound used to close the client as a
    slow consumer, and vigil.js reconnected and asked again forever.  Now the channel that does
    not fit is answered recovered:false (and not replayed) while the others are recovered; the
    connection stays open and live messages keep coming."""
    srv = hub(vigil_factory, "--max-outbound", SMALL_OUTBOUND)
    p = uniq("rec")
    big, small = f"{p}.big", f"{p}.small"
    with Native(srv, mint("dave")) as c:
        pos = c.request({"type": "subscribe", "channels": [big, small]})["positions"]
    blob = "x" * 2000
    for i in range(60):  # 120 KB of history on one channel
        publish(srv, big, "t", {"i": i, "blob": blob})
    for i in range(3):
        publish(srv, small, "t", {"i": i})
    since = {ch: {"offset": pos[ch]["offset"], "epoch": pos[ch]["epoch"]} for ch in (big, small)}
    last = 60
    for _ in range(3):  # what a reconnecting client does, again and again
        with Native(srv, mint("dave")) as c:
            ans = c.request({"type": "subscribe", "channels": [big, small], "since": since})
            assert ans["type"] == "subscribed", ans
            assert ans["recovered"] is False
            assert ans["positions"][big]["recovered"] is False, ans["positions"]
            assert ans["positions"][big]["offset"] == last
            assert ans["positions"][small]["recovered"] is True, ans["positions"]
            got = c.published(3)
            assert [(m["channel"], m["data"]["i"]) for m in got] == [(small, i) for i in range(3)]
            last = publish(srv, big, "t", {"i": "live"})
            [m] = c.published(1)
            assert (m["channel"], m["offset"], m["data"]["i"]) == (big, last, "live")
            assert c.request({"type": "ping"})["type"] == "pong"
    assert limit_hits(srv, "max-outbound-recovery") >= 3
    assert metrics(srv).get("vigil_slow_consumer_disconnects_total", 0) == 0


def test_recovery_that_fits_is_whole(vigil_factory):
    """Under the limit nothing changes: every message after since, in order."""
    srv = hub(vigil_factory, "--max-outbound", SMALL_OUTBOUND)
    ch = f"{uniq('fit')}.ch"
    with Native(srv, mint("erin")) as c:
        pos = c.request({"type": "subscribe", "channels": [ch]})
    for i in range(20):
        publish(srv, ch, "t", {"i": i, "blob": "y" * 1000})
    with Native(srv, mint("erin")) as c:
        ans = c.request({"type": "subscribe", "channels": [ch],
                         "since": {"offset": 5, "epoch": pos["epoch"]}})
        assert ans["recovered"] is True
        assert [m["offset"] for m in c.published(15)] == list(range(6, 21))


def test_state_snapshot_larger_than_max_outbound_is_sent_whole(vigil_factory):
    """A state document larger than --max-outbound used to close its subscriber (the snapshot
    followed the "subscribed" answer in the queue); it goes out whole now."""
    srv = hub(vigil_factory, "--max-outbound", SMALL_OUTBOUND)
    name = uniq("doc")
    doc = {"rows": ["z" * 1000 for _ in range(100)]}  # about 100 KB
    resp = api(srv, "PUT", f"/api/state/{name}", doc, api_key=API_KEY)
    assert resp.status in (200, 201, 204), resp.body[:200]
    for _ in range(2):
        with Native(srv, mint("frank")) as c:
            assert c.request({"type": "subscribe",
                              "channels": [f"state.{name}"]})["type"] == "subscribed"
            m = c.recv(timeout=5)
            assert m["type"] == "state" and m["name"] == name and m["snapshot"] == doc
            assert c.request({"type": "ping"})["type"] == "pong"
    assert metrics(srv).get("vigil_slow_consumer_disconnects_total", 0) == 0


def test_snapshots_asked_again_and_again_without_reading_still_close(vigil_factory):
    """The snapshot may pass the limit only while the queue is under it: a client that keeps
    subscribing and never reads is still a slow consumer, and the server's memory stays put."""
    srv = hub(vigil_factory, "--max-outbound", SMALL_OUTBOUND, "--max-inbound-rate", "10000")
    name = uniq("doc")
    api(srv, "PUT", f"/api/state/{name}", {"rows": ["z" * 1000 for _ in range(100)]},
        api_key=API_KEY)
    with Native(srv, mint("gina"), rcvbuf=4096) as c:
        before = rss_kb(srv.proc.pid)
        req = json.dumps({"type": "subscribe", "channels": [f"state.{name}"]}).encode()
        send_all(c.ws, b"".join(build_frame(OP_TEXT, req) for _ in range(300)))  # 30 MB asked
        grown = peak_rss_kb(srv.proc.pid) - before
        assert grown < 16 * 1024, f"grew by {grown} KiB"
        frames = read_frames(c.ws, timeout=10)
    assert frames and frames[-1].opcode == OP_CLOSE
    assert (frames[-1].close_code, frames[-1].close_reason) == (1008, b"slow consumer")
    assert_other_client_served(srv)
