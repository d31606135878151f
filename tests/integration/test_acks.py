"""Acknowledged delivery: alerts published on --ack-channels are kept until each user acks them,
are replayed on every later subscribe (even on a connection made after the publish and after a
kill -9 of the server), and an ack from any connection removes them for that user only."""

import asyncio
import json
import signal
import subprocess
import urllib.request

import websockets

API_KEY = "acks-key"
SECRET = "acks-secret"


def token(sub):
    import conftest
    r = conftest.run_cli(["token", "--secret", SECRET, "--sub", sub, "--ttl", "3600"])
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def publish(srv, body):
    req = urllib.request.Request(srv.url("/api/publish"), data=json.dumps(body).encode(),
                                 headers={"Authorization": f"Bearer {API_KEY}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def start(vigil_factory):
    return vigil_factory("--jwt-secret", SECRET, "--api-key", API_KEY)


async def pending_alerts(srv, tok, expect, ack=()):
    """Connects, subscribes to alerts.>, collects `expect` alerts, acks those in `ack`."""
    async with websockets.connect(srv.ws_url("/ws") + "?token=" + tok) as ws:
        assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "connection_status"
        await ws.send(json.dumps({"type": "subscribe", "channels": ["alerts.>"]}))
        assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "subscribed"
        got = [json.loads(await asyncio.wait_for(ws.recv(), 10)) for _ in range(expect)]
        for msg_id in ack:
            await ws.send(json.dumps({"type": "ack", "id": msg_id}))
            reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert reply == {"type": "acked", "id": msg_id}
        try:
            extra = await asyncio.wait_for(ws.recv(), 0.5)
            raise AssertionError(f"more than {expect} alerts: {extra}")
        except asyncio.TimeoutError:
            pass
        return got


def test_alerts_wait_for_the_user_and_acks_remove_them(vigil_factory):
    srv = start(vigil_factory)
    out = publish(srv, {"messages": [{"channel": "alerts.cam1", "type": "alert", "id": f"a{i}",
                                      "data": {"n": i}} for i in range(4)]})
    assert out["ids"] == ["a0", "a1", "a2", "a3"]
    alice, bob = token("alice"), token("bob")
    got = asyncio.run(pending_alerts(srv, alice, 4, ack=["a0", "a1"]))
    assert [m["id"] for m in got] == ["a0", "a1", "a2", "a3"]
    assert got[0]["data"] == {"n": 0} and got[0]["channel"] == "alerts.cam1"
    # alice's acks hold on a new connection; bob still has all four.
    assert [m["id"] for m in asyncio.run(pending_alerts(srv, alice, 2))] == ["a2", "a3"]
    assert len(asyncio.run(pending_alerts(srv, bob, 4))) == 4
    # The HTTP view agrees, and an ack over HTTP counts too.
    req = urllib.request.Request(srv.url("/api/alerts?unacked=1"),
                                 headers={"Authorization": f"Bearer {alice}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        assert [a["id"] for a in json.loads(r.read())["alerts"]] == ["a2", "a3"]
    req = urllib.request.Request(srv.url("/api/ack"), data=b'{"id":"a2"}',
                                 headers={"Authorization": f"Bearer {alice}"})
    urllib.request.urlopen(req, timeout=10).read()
    assert [m["id"] for m in asyncio.run(pending_alerts(srv, alice, 1))] == ["a3"]


def test_live_alert_is_delivered_once(vigil_factory):
    srv = start(vigil_factory)
    alice = token("alice")

    async def scenario():
        async with websockets.connect(srv.ws_url("/ws") + "?token=" + alice) as ws:
            await asyncio.wait_for(ws.recv(), 10)
            await ws.send(json.dumps({"type": "subscribe", "channels": ["alerts.>"]}))
            await asyncio.wait_for(ws.recv(), 10)
            publish(srv, {"channel": "alerts.x", "type": "alert", "id": "live1", "data": 1})
            msg = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert msg["id"] == "live1" and "offset" in msg
            try:
                extra = await asyncio.wait_for(ws.recv(), 0.5)
                raise AssertionError(f"duplicate: {extra}")
            except asyncio.TimeoutError:
                pass

    asyncio.run(scenario())


def test_alerts_survive_kill_9(vigil_factory):
    """Every alert whose publish was answered 200 is still delivered after kill -9."""
    srv = start(vigil_factory)
    answered = []
    for i in range(20):
        answered += publish(srv, {"channel": "alerts.k", "type": "alert", "id": f"k{i}",
                                  "data": i})["ids"]
    srv.proc.send_signal(signal.SIGKILL)
    srv.proc.wait()
    srv.start()
    got = asyncio.run(pending_alerts(srv, token("carol"), len(answered)))
    assert [m["id"] for m in got] == answered


def test_fallback_transports_replay_unacked(vigil_factory):
    """SSE and the first long-poll also deliver what the user has not acked; an HTTP ack
    removes it."""
    import socket
    srv = start(vigil_factory)
    publish(srv, {"channel": "alerts.f", "type": "alert", "id": "f1", "data": 1})
    dave = token("dave")
    with urllib.request.urlopen(srv.url(f"/api/poll?channels=alerts.>&token={dave}&timeout=1"),
                                timeout=10) as r:
        got = json.loads(r.read())
    assert [m["id"] for m in got["messages"]] == ["f1"]
    port = int(srv.url("/").rsplit(":", 1)[1].split("/")[0])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"GET /api/sse?channels=alerts.>&token={dave} HTTP/1.1\r\nHost: x\r\n\r\n"
                  .encode())
        buf = b""
        while b'"id":"f1"' not in buf:
            data = s.recv(65536)
            assert data, buf
            buf += data
    req = urllib.request.Request(srv.url("/api/ack"), data=b'{"id":"f1"}',
                                 headers={"Authorization": f"Bearer {dave}"})
    urllib.request.urlopen(req, timeout=10).read()
    with urllib.request.urlopen(srv.url(f"/api/poll?channels=alerts.>&token={dave}&timeout=0"),
                                timeout=10) as r:
        assert json.loads(r.read())["messages"] == []
