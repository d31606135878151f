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

from conftest import OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, ConnectionEnded, RawWS, build_frame
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
        assert grown < PING_RSS_BUDGET_KB, f"{PINGS} pings grew the server by {grown} KiB"
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
    assert len(pongs) < PINGS // 10, f"{len(pongs)} pongs for {PINGS} pings: not coalesced"
    numbers = [int(p.rstrip(b".")) for p in pongs]
    assert numbers == sorted(numbers), "pongs out of order"
