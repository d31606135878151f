"""The acknowledged-delivery guarantee under crashes: during a publish storm the server is
killed with SIGKILL at random moments, ten times.  After each restart, every alert whose publish
was answered 200 is delivered (until acked), and no alert is delivered after its ack was
answered.  The counts are printed for the record (pytest -s)."""

import asyncio
import json
import random
import signal
import threading
import urllib.error
import urllib.request

import websockets

API_KEY = "kill9-key"
SECRET = "kill9-secret"
ROUNDS = 10


def token(sub):
    import conftest
    r = conftest.run_cli(["token", "--secret", SECRET, "--sub", sub, "--ttl", "3600"])
    return r.stdout.strip()


def storm(srv, answered, stop, counter):
    """Publishes batches of alerts until the server goes away; records the ids answered 200."""
    while not stop.is_set():
        batch = [f"m{next(counter)}" for _ in range(5)]
        body = {"messages": [{"channel": "alerts.storm", "type": "alert", "id": i, "data": i}
                             for i in batch]}
        req = urllib.request.Request(srv.url("/api/publish"), data=json.dumps(body).encode(),
                                     headers={"Authorization": f"Bearer {API_KEY}"})
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                if r.status == 200:
                    answered.update(json.loads(r.read())["ids"])
        except (urllib.error.URLError, ConnectionError, OSError):
            return  # killed mid-request: that batch was never answered


async def drain_and_ack(srv, tok, ack_fraction, rng):
    """Receives every pending alert; acks a fraction of them (each ack confirmed)."""
    got, acked = [], set()
    async with websockets.connect(srv.ws_url("/ws") + "?token=" + tok, max_size=None) as ws:
        await asyncio.wait_for(ws.recv(), 10)
        await ws.send(json.dumps({"type": "subscribe", "channels": ["alerts.>"]}))
        assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "subscribed"
        while True:
            try:
                msg = json.loads(await asyncio.wait_for(ws.recv(), 1.0))
            except asyncio.TimeoutError:
                break
            got.append(msg["id"])
        for msg_id in got:
            if rng.random() < ack_fraction:
                await ws.send(json.dumps({"type": "ack", "id": msg_id}))
                while True:
                    reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
                    if reply.get("type") == "acked":
                        break
                assert reply["id"] == msg_id
                acked.add(msg_id)
    return got, acked


def test_kill_9_during_publish_storm_loses_nothing(vigil_factory):
    rng = random.Random(20261122)
    srv = vigil_factory("--jwt-secret", SECRET, "--api-key", API_KEY, "--ack-max", "1000000",
                        "--max-inbound-rate", "100000")
    tok = token("operator")
    answered, acked, delivered_total, redelivered = set(), set(), 0, 0
    seen_before = set()
    counter = iter(range(10 ** 9))
    for _ in range(ROUNDS):
        stop = threading.Event()
        publisher = threading.Thread(target=storm, args=(srv, answered, stop, counter))
        publisher.start()
        threading.Event().wait(rng.uniform(0.1, 0.6))
        srv.proc.send_signal(signal.SIGKILL)
        srv.proc.wait()
        stop.set()
        publisher.join()
        srv.start()
        got, newly_acked = asyncio.run(drain_and_ack(srv, tok, 0.5, rng))
        assert len(got) == len(set(got)), "an alert was delivered twice in one subscribe"
        missing = answered - acked - set(got)
        assert not missing, f"{len(missing)} answered alerts lost, e.g. {sorted(missing)[:5]}"
        after_ack = acked & set(got)
        assert not after_ack, f"delivered after their ack: {sorted(after_ack)[:5]}"
        delivered_total += len(got)
        redelivered += len(set(got) & seen_before)
        seen_before |= set(got)
        acked |= newly_acked
    assert len(answered) > 0
    print(f"\nkill -9 x{ROUNDS}: published (answered 200) {len(answered)}, acked {len(acked)}, "
          f"delivered {delivered_total}, redelivered (unacked, next round) {redelivered}, lost 0")
