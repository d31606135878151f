"""Hostile clients of the Socket.IO profile (issue 15): what one client, without any credential,
can make the server hold through /socket.io/, and what it can write into the log.

* Engine.IO sessions are capped per server (--socketio-max-sessions: 503) and per client address
  (--socketio-max-sessions-per-ip: 429), both with Retry-After and an Engine.IO-style JSON body.
* A session whose socket never connects lives --socketio-connect-timeout, quietly (no notice
  per session), and may send only --socketio-max-connect-payload before it connects.
* A polling body of many tiny packets costs about its size, not an allocation per packet, and
  cannot make the server queue an answer per packet.
* A Socket.IO event name (or a token's sub) holding a newline does not forge a log line.
* A token whose sub is "*" or ">" is refused where the sub names a per-user channel
  ("anomalies.{user}"), instead of reading every user's channel.

New options are given through VIGIL_* variables where the test also tells the code before the
fix from the code after (an older binary ignores an unknown variable, and then fails on the
bound, not on the option).
"""

import json
import re
import signal
import socket
import time
import urllib.parse

from conftest import assert_rss_budget, OP_TEXT, HttpConn, build_frame, build_request
from hubutil import API_KEY, SECRET, api, assert_ws_refused, mint, uniq

EIO = "/socket.io/?EIO=4&transport=polling"
HANDSHAKE = build_request("GET", EIO)
SEP = b"\x1e"
FORGED = "2026-01-01 NOTICE forged"


# --------------------------------------------------------------------------------------------
# Helpers



def socketio(vigil_factory, *args, env=None):
    return vigil_factory("--profile", "socketio", *args, env=env)


def proc_kb(srv, field):
    with open(f"/proc/{srv.proc.pid}/status") as f:
        return int(re.search(rf"^{field}:\s+(\d+) kB", f.read(), re.M).group(1))


def conn_from(srv, source="127.0.0.1"):
    sock = socket.create_connection((srv.host, srv.port), timeout=10,
                                    source_address=(source, 0))
    return HttpConn(srv.host, srv.port, sock=sock)


def handshake(conn):
    resp = conn.request("GET", EIO)
    assert resp.status == 200, (resp.status, resp.body)
    assert resp.body.startswith(b"0{"), resp.body
    return json.loads(resp.body[1:])["sid"]


def post(conn, sid, body):
    return conn.request("POST", f"{EIO}&sid={sid}", body=body,
                        headers={"Content-Type": "text/plain;charset=UTF-8"})


def poll(conn, sid, timeout=5):
    return conn.request("GET", f"{EIO}&sid={sid}", timeout=timeout)


def alive(conn, sid):
    """A noop packet: "ok" while the session exists, 400 "Session ID unknown" after."""
    resp = post(conn, sid, b"6")
    if resp.status == 200:
        return True
    assert resp.status == 400 and resp.json() == {"code": 1, "message": "Session ID unknown"}, \
        (resp.status, resp.body)
    return False


def connect(conn, sid, auth=None):
    """CONNECT to "/"; returns the packets the server answered."""
    body = b"40" + (json.dumps(auth).encode() if auth is not None else b"")
    assert post(conn, sid, body).status == 200
    resp = poll(conn, sid)
    assert resp.status == 200, (resp.status, resp.body)
    return resp.body.split(SEP)


def pipelined_handshakes(conn, n, batch=500):
    """n polling handshakes on one keep-alive connection, `batch` at a time.  Returns
    {status: count} and one response of each status."""
    counts, samples = {}, {}
    for start in range(0, n, batch):
        k = min(batch, n - start)
        conn.send(HANDSHAKE * k)
        for _ in range(k):
            resp = conn.read_response()
            counts[resp.status] = counts.get(resp.status, 0) + 1
            samples.setdefault(resp.status, resp)
    return counts, samples


def labelled(srv, name):
    """{label value: sample} of one labelled metric, and the unlabelled sample under None."""
    resp = srv.http("GET", "/metrics")
    assert resp.status == 200, resp.status
    out = {}
    for line in resp.body.decode().splitlines():
        m = re.match(rf'^{name}(?:\{{\w+="([^"]*)"\}})?\s+(\S+)$', line)
        if m:
            out[m.group(1)] = float(m.group(2))
    return out


def stderr_lines(srv):
    return srv.stderr_text().splitlines()


def served(ws):
    """The profile socket stays open and answers the seeds' text "ping" with "pong"."""
    ws.send_text("ping")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        _, data = ws.recv_message(timeout=max(0.01, deadline - time.monotonic()))
        if data in (b"pong", b'{"type":"pong"}'):
            return
    raise AssertionError("no pong")


# --------------------------------------------------------------------------------------------
# Sessions per address and per server


def test_handshake_flood_from_one_address_is_capped(vigil_factory):
    """The attack: one keep-alive connection opening polling handshakes.  Before: every one made a
    session (20,000 in 0.3 s, +23 MB, each living 45 s).  Now the address holds at most 256
    sessions (the default); the rest get 429 with Retry-After, and another address is served.
    (A long connect timeout: none of the 256 may expire and free its place during the test.)"""
    srv = socketio(vigil_factory, env={"VIGIL_SOCKETIO_CONNECT_TIMEOUT": "120"})
    rss_before = proc_kb(srv, "VmRSS")
    start = time.monotonic()
    with srv.conn() as conn:
        counts, samples = pipelined_handshakes(conn, 20000)
    elapsed = time.monotonic() - start
    assert counts.get(200, 0) == 256, counts
    assert counts.get(429, 0) == 20000 - 256, counts
    refused = samples[429]
    assert refused.header("Retry-After") is not None and int(refused.header("Retry-After")) >= 1
    assert refused.json() == {"code": 3, "message": "Too many sessions from this address"}
    grown = proc_kb(srv, "VmRSS") - rss_before
    assert_rss_budget(grown < 6 * 1024, f"RSS grew by {grown} kB for 256 sessions")

    with conn_from(srv, "127.0.0.2") as other:
        sid = handshake(other)
        assert connect(other, sid)[0].startswith(b"40{")

    refusals = labelled(srv, "vigil_socketio_sessions_refused_total")
    assert refusals.get("address") == 20000 - 256, refusals
    assert labelled(srv, "vigil_socketio_sessions")[None] == 257
    # One notice line per 10 s for the whole flood, not one per refusal.
    lines = sum("handshake(s) refused" in line for line in stderr_lines(srv))
    assert 1 <= lines <= 1 + elapsed / 10, lines


def test_server_cap_answers_503_and_frees_places(vigil_factory):
    srv = socketio(vigil_factory, env={"VIGIL_SOCKETIO_MAX_SESSIONS": "40",
                                       "VIGIL_SOCKETIO_MAX_SESSIONS_PER_IP": "0",
                                       "VIGIL_SOCKETIO_CONNECT_TIMEOUT": "120"})
    with srv.conn() as conn:
        counts, samples = pipelined_handshakes(conn, 60)
        assert counts == {200: 40, 503: 20}, counts
        refused = samples[503]
        assert refused.header("Retry-After") == "120"  # the connect timeout
        assert refused.json() == {"code": 3, "message": "Too many sessions"}
        # A WebSocket handshake without sid makes a session too: refused the same way, before
        # the upgrade.
        ws = conn.request("GET", "/socket.io/?EIO=4&transport=websocket",
                          headers={"Upgrade": "websocket", "Connection": "Upgrade",
                                   "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
                                   "Sec-WebSocket-Version": "13"})
        assert ws.status == 503, (ws.status, ws.body)
    # A session that ends gives its place back.
    with srv.conn() as conn:
        first = json.loads(samples[200].body[1:])["sid"]
        assert post(conn, first, b"1").status == 200  # the client's close packet
        assert handshake(conn)
        assert conn.request("GET", EIO).status == 503
    assert labelled(srv, "vigil_socketio_sessions_refused_total")["server"] == 22


# --------------------------------------------------------------------------------------------
# Sessions that never connect


def test_session_without_connect_expires_quietly(vigil_factory):
    """Before: a session that never sent CONNECT lived pingInterval + pingTimeout (45 s) and its
    end was a notice line.  Now it lives --socketio-connect-timeout, logged at verbose level only,
    and counted in /metrics; a connected socket is not affected."""
    srv = socketio(vigil_factory, env={"VIGIL_SOCKETIO_CONNECT_TIMEOUT": "0.5"})
    with srv.conn() as conn:
        idle = [handshake(conn) for _ in range(100)]
        refused = handshake(conn)  # sends a CONNECT that fails: still not connected
        kept = handshake(conn)
        assert connect(conn, kept)[0].startswith(b"40{")
        assert post(conn, refused, b"40/nope,").status == 200
        time.sleep(1.5)
        assert not any(alive(conn, sid) for sid in idle + [refused])
        assert alive(conn, kept)
    expired = labelled(srv, "vigil_socketio_sessions_expired_total")
    assert expired["connect_timeout"] == 101, expired
    assert labelled(srv, "vigil_socketio_sessions")[None] == 1
    noisy = [line for line in stderr_lines(srv) if "socket.io" in line and "closed" in line]
    assert noisy == [], noisy[:3]


def test_socket_that_leaves_gets_the_connect_timeout_again(vigil_factory):
    srv = socketio(vigil_factory, env={"VIGIL_SOCKETIO_CONNECT_TIMEOUT": "0.5"})
    with srv.conn() as conn:
        sid = handshake(conn)
        assert connect(conn, sid)[0].startswith(b"40{")
        time.sleep(0.8)
        assert alive(conn, sid)  # connected: the connect timeout is over
        assert post(conn, sid, b"41").status == 200  # DISCONNECT: back to a bare session
        time.sleep(1.2)
        assert not alive(conn, sid)


# --------------------------------------------------------------------------------------------
# Polling bodies before (and after) CONNECT


def test_big_body_before_connect_is_refused(vigil_factory):
    """Before: a 1 MiB body of 3-byte packets became 350,000 allocations and hub calls (RSS peak
    +70 MB for one body).  Now a session not yet connected may post --socketio-max-connect-payload
    (32 KiB): the body gets 413 and the session closes."""
    srv = socketio(vigil_factory)
    hwm_before = proc_kb(srv, "VmHWM")
    body = SEP.join([b"4x"] * 349000)
    with srv.conn() as conn:
        for _ in range(3):
            sid = handshake(conn)
            resp = post(conn, sid, body)
            assert resp.status == 413, (resp.status, resp.body)
            assert resp.json() == {"code": 3, "message": "Payload too large"}
            assert not alive(conn, sid)
    time.sleep(0.3)
    grown = proc_kb(srv, "VmHWM") - hwm_before
    assert_rss_budget(grown < 8 * 1024, f"peak RSS grew by {grown} kB for 1 MiB bodies")
    assert labelled(srv, "vigil_socketio_payloads_refused_total")[None] == 3


def connect_spam(srv, sessions, packets):
    """Each session posts one body of `packets` CONNECTs; returns (MB posted, RSS growth kB)."""
    body = SEP.join([b"40"] * packets)
    rss_before = proc_kb(srv, "VmRSS")
    with srv.conn() as conn:
        sids = [handshake(conn) for _ in range(sessions)]
        for sid in sids:
            assert post(conn, sid, body).status == 200
    time.sleep(0.5)
    return sessions * len(body) / 1e6, proc_kb(srv, "VmRSS") - rss_before


def test_connect_spam_with_auth_is_not_amplified(vigil_factory):
    """Each refused CONNECT is answered (CONNECT_ERROR).  Before: 10,000 of them in a 30 KB body
    queued 10,000 answers that the session held until it expired: +33 MB of RSS per MB posted.
    Now the packets count against --max-inbound-rate and a session not connected may have at most
    --socketio-max-connect-payload queued (per-packet overhead included)."""
    srv = socketio(vigil_factory, "--socketio-auth=true", "--jwt-secret", SECRET)
    posted, grown = connect_spam(srv, 200, 10000)
    assert_rss_budget(grown < 1024 * posted + 2048, f"RSS grew {grown} kB for {posted:.1f} MB posted")
    # One notice per session for its refused CONNECTs, not one per packet.
    refused = [line for line in stderr_lines(srv) if "refused: missing token" in line]
    assert 0 < len(refused) <= 200, len(refused)
    with srv.conn() as conn:  # still serving others
        sid = handshake(conn)
        assert connect(conn, sid, {"token": mint("alice")})[0].startswith(b"40{")


def test_connect_spam_without_auth_is_not_amplified(vigil_factory):
    """Without --socketio-auth the first CONNECT succeeds and every further one was answered
    again: +29 MB per MB posted before; now the rate limit closes such a session."""
    srv = socketio(vigil_factory)
    posted, grown = connect_spam(srv, 200, 10000)
    assert_rss_budget(grown < 1024 * posted + 2048, f"RSS grew {grown} kB for {posted:.1f} MB posted")


def test_body_of_many_events_is_handled_in_one_piece(vigil_factory):
    """A connected socket's body of 130,000 events (1 MB).  Before: one allocation and hub call
    per event, +2.5 MB of RSS per MB posted.  Now the messages go to the home worker as one block
    and the rate limit ends the session early (+0.3 MB per MB)."""
    srv = socketio(vigil_factory)
    body = SEP.join([b'42["e"]'] * 130000)
    rss_before = proc_kb(srv, "VmRSS")
    posted = 0
    with srv.conn() as conn:
        for _ in range(10):
            sid = handshake(conn)
            assert connect(conn, sid)[0].startswith(b"40{")
            assert post(conn, sid, body).status == 200
            posted += len(body)
    time.sleep(0.5)
    grown = proc_kb(srv, "VmRSS") - rss_before
    assert_rss_budget(grown < 512 * posted / 1e6 + 2048, f"RSS grew {grown} kB for {posted / 1e6:.1f} MB")


def test_websocket_flood_of_tiny_packets_is_bounded(vigil_factory):
    """Over the WebSocket transport every message is its own packet: a read of 64 KiB of 8-byte
    frames used to become 8,000 allocations and hub calls, read faster than the home worker
    handled them (+2.2 MB of RSS per MB sent).  Now the packets waiting for the home worker are
    bounded by the rate limit and the session's queue limit; past it the session closes."""
    srv = socketio(vigil_factory)
    frames = build_frame(OP_TEXT, b"40") * 2000
    rss_before = proc_kb(srv, "VmRSS")
    sent = 0
    for _ in range(10):
        ws = srv.raw_ws("/socket.io/?EIO=4&transport=websocket")
        try:
            for _ in range(50):
                ws.send_raw(frames)
                sent += len(frames)
        except OSError:
            pass  # closed by the server: what is left is not sent
        ws.close()
    time.sleep(0.5)
    grown = proc_kb(srv, "VmRSS") - rss_before
    assert_rss_budget(grown < 512 * sent / 1e6 + 2048, f"RSS grew {grown} kB for {sent / 1e6:.1f} MB sent")
    with srv.conn() as conn:
        sid = handshake(conn)
        assert connect(conn, sid)[0].startswith(b"40{")


# --------------------------------------------------------------------------------------------
# Shutdown with many sessions


def test_shutdown_with_many_sessions_within_the_timeout(vigil_factory):
    """Sessions made as fast as one connection can, expiring in a storm right when SIGTERM
    comes: the server still exits within --shutdown-timeout."""
    srv = socketio(vigil_factory, "--shutdown-timeout", "1",
                   env={"VIGIL_SOCKETIO_MAX_SESSIONS": "100000",
                        "VIGIL_SOCKETIO_MAX_SESSIONS_PER_IP": "0",
                        "VIGIL_SOCKETIO_CONNECT_TIMEOUT": "1"})
    sock = socket.create_connection((srv.host, srv.port), timeout=10)
    made, tail = 0, b""
    for _ in range(50):  # 50,000 handshakes, reading the answers as they come
        sock.sendall(HANDSHAKE * 1000)
        want = made + 1000
        while made < want:
            data = sock.recv(1 << 20)
            assert data, "connection closed"
            data = tail + data
            made += data.count(b"HTTP/1.1 200 ")
            tail = data[-12:]  # shorter than the marker: never counted twice
    sock.close()
    time.sleep(0.9)
    start = time.monotonic()
    srv.send_signal(signal.SIGTERM)
    rc = srv.wait(timeout=10)
    took = time.monotonic() - start
    assert rc == 0, rc
    assert took < 1 + 1.5, f"shutdown took {took:.2f} s with --shutdown-timeout 1"


# --------------------------------------------------------------------------------------------
# The log


def test_event_name_and_sub_cannot_forge_log_lines(vigil_factory):
    """A newline in an event name (logged when the event is dropped for want of --rpc-url) or in
    a token's sub (logged when the socket connects) must not start a line of its own.  The text
    sink of util/log.c escapes control characters; the Socket.IO code logs only through it."""
    srv = socketio(vigil_factory, "--log-level", "verbose", "--socketio-auth=true",
                   "--jwt-secret", SECRET)
    with srv.conn() as conn:
        sid = handshake(conn)
        assert connect(conn, sid, {"token": mint("x\n" + FORGED)})[0].startswith(b"40{")
        event = json.dumps(["x\n" + FORGED, {"a": 1}]).encode()
        assert post(conn, sid, b"42" + event).status == 200
        assert post(conn, sid, b"42" + json.dumps(["y\r" + FORGED]).encode()).status == 200
        time.sleep(0.3)
        assert alive(conn, sid)
    text = srv.stderr_text()
    assert "dropped: no --rpc-url" in text, text[-2000:]
    forged = [line for line in text.splitlines() if line.startswith(FORGED)]
    assert forged == [], forged


# --------------------------------------------------------------------------------------------
# A sub that would be a wildcard in a per-user channel


def test_wildcard_sub_is_refused_by_visionguard(vigil_factory):
    """VisionGuard's channel is "anomalies.{user}" and the path must name the token's sub.
    Before: sub "*" (path /ws/alerts/*) subscribed to anomalies.* and received every user's
    alerts.  Now such a sub is refused with 1008 "invalid user id"."""
    srv = vigil_factory("--jwt-secret", SECRET, "--api-key", API_KEY, "--profile", "visionguard")
    for sub in ("*", ">", "a.>", "a.b"):
        path = f"/ws/alerts/{urllib.parse.quote(sub, safe='')}?token={mint(sub)}"
        assert_ws_refused(srv, "invalid user id", path=path)
    victim = uniq("alice")
    resp = api(srv, "POST", "/api/publish", {"channel": f"anomalies.{victim}",
                                             "type": "anomaly_detected", "data": {"x": 1}},
               api_key=API_KEY)
    assert resp.status == 200, resp.body
    # An ordinary user still connects (and gets the alert nobody else could read).
    with srv.raw_ws(f"/ws/alerts/{victim}?token={mint(victim)}") as ws:
        _, data = ws.recv_message(timeout=5)
        assert json.loads(data)["type"] == "anomaly_detected"
        served(ws)


def test_wildcard_sub_is_refused_where_channels_name_the_user(vigil_factory):
    """OpenEye and Phase 10 expand "{user}" in their channel options the same way."""
    srv = vigil_factory("--jwt-secret", SECRET, "--profile", "openeye,phase10",
                        "--openeye-channels", "inbox.{user}", "--phase10-channels",
                        "events.{user}.>")
    for path in ("/api/ws/statistics", "/api/ws/events"):
        for sub in ("*", ">", "a.b"):
            assert_ws_refused(srv, "invalid user id", path=f"{path}?token={mint(sub)}")
        with srv.raw_ws(f"{path}?token={mint(uniq('bob'))}") as ws:
            served(ws)
