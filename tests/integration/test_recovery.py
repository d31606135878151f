"""History and recovery: a client that reconnects and subscribes with `since` gets exactly what
it missed, in order, then the live stream, with no gap and no duplicate, even while publishes
continue; when history cannot cover the gap (eviction, restart) it is told `recovered: false`.
"""

import asyncio
import json
import threading
import urllib.request

import websockets

API_KEY = "recovery-key"


def publish(srv, body):
    req = urllib.request.Request(
        srv.url("/api/publish"), data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())["offsets"]


def publish_batch(srv, channel, values):
    return publish(srv, {"messages": [{"channel": channel, "type": "seq", "data": v}
                                      for v in values]})


async def subscribe(ws, channels, since=None):
    req = {"type": "subscribe", "channels": channels, "id": "s"}
    if since is not None:
        req["since"] = since
    await ws.send(json.dumps(req))
    while True:
        msg = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if msg.get("type") == "subscribed":
            return msg
        assert msg.get("type") == "connection_status", msg


def start(vigil_factory, *extra):
    return vigil_factory("--allow-anonymous", "--api-key", API_KEY, "--max-connections-per-user",
                         "50", *extra)


def test_recovery_under_concurrent_publishing(vigil_factory):
    """A subscriber leaves; 1000 messages are published while it is away and more keep coming
    while it reconnects: it receives every offset exactly once, in order."""
    srv = start(vigil_factory, "--history-size", "5000")
    total = 1600

    async def scenario():
        async with websockets.connect(srv.ws_url("/ws")) as ws:
            sub = await subscribe(ws, ["rec.a"])
            epoch = sub["epoch"]
            publish_batch(srv, "rec.a", range(100))
            seen = [json.loads(await asyncio.wait_for(ws.recv(), 10))["offset"]
                    for _ in range(100)]
        assert seen == list(range(1, 101))
        # Away: 1000 messages.  Then a publisher keeps going while we reconnect.
        for start_at in range(100, 1100, 250):
            publish_batch(srv, "rec.a", range(start_at, start_at + 250))

        def keep_publishing():
            for start_at in range(1100, total, 50):
                publish_batch(srv, "rec.a", range(start_at, start_at + 50))

        publisher = threading.Thread(target=keep_publishing)
        publisher.start()
        try:
            async with websockets.connect(srv.ws_url("/ws")) as ws:
                sub = await subscribe(ws, ["rec.a"], {"offset": 100, "epoch": epoch})
                assert sub["recovered"] is True, sub
                got = []
                while len(got) < total - 100:
                    msg = json.loads(await asyncio.wait_for(ws.recv(), 10))
                    got.append((msg["offset"], msg["data"]))
        finally:
            publisher.join()
        assert [o for o, _ in got] == list(range(101, total + 1))
        assert [d for _, d in got] == list(range(100, total))

    asyncio.run(scenario())


def test_pattern_recovery_map_form(vigil_factory):
    """With a pattern, `since` maps each channel to its position; each is recovered."""
    srv = start(vigil_factory)

    async def scenario():
        async with websockets.connect(srv.ws_url("/ws")) as ws:
            sub = await subscribe(ws, ["cam.a", "cam.b"])
            pos = sub["positions"]
        publish_batch(srv, "cam.a", range(3))
        publish_batch(srv, "cam.b", range(2))
        since = {ch: {"offset": 0, "epoch": pos[ch]["epoch"]} for ch in ("cam.a", "cam.b")}
        async with websockets.connect(srv.ws_url("/ws")) as ws:
            sub = await subscribe(ws, ["cam.*"], since)
            assert sub["recovered"] is True
            assert sub["positions"]["cam.a"]["offset"] == 3
            got = [json.loads(await asyncio.wait_for(ws.recv(), 10)) for _ in range(5)]
        by_channel = {}
        for m in got:
            by_channel.setdefault(m["channel"], []).append(m["offset"])
        assert by_channel == {"cam.a": [1, 2, 3], "cam.b": [1, 2]}

    asyncio.run(scenario())


def test_not_recovered_after_eviction(vigil_factory):
    """When history no longer holds everything after `since`, the answer is recovered:false and
    nothing stale is replayed."""
    srv = start(vigil_factory, "--history-size", "10")

    async def scenario():
        async with websockets.connect(srv.ws_url("/ws")) as ws:
            epoch = (await subscribe(ws, ["ev.a"]))["epoch"]
        publish_batch(srv, "ev.a", range(30))
        async with websockets.connect(srv.ws_url("/ws")) as ws:
            sub = await subscribe(ws, ["ev.a"], {"offset": 5, "epoch": epoch})
            assert sub["recovered"] is False and sub["offset"] == 30, sub
            # Still subscribed live: the next publish arrives, and nothing before it.
            publish_batch(srv, "ev.a", ["live"])
            msg = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert msg["offset"] == 31 and msg["data"] == "live"

    asyncio.run(scenario())


def test_not_recovered_after_restart(vigil_factory):
    """History is in memory: after a restart the channel's epoch differs and recovery is
    refused, so the client knows to reload."""
    srv = start(vigil_factory)

    async def first_epoch():
        async with websockets.connect(srv.ws_url("/ws")) as ws:
            return (await subscribe(ws, ["rs.a"]))["epoch"]

    epoch = asyncio.run(first_epoch())
    publish_batch(srv, "rs.a", range(3))
    srv.stop()
    srv.start()

    async def after():
        async with websockets.connect(srv.ws_url("/ws")) as ws:
            sub = await subscribe(ws, ["rs.a"], {"offset": 3, "epoch": epoch})
            assert sub["recovered"] is False
            assert sub["epoch"] != epoch

    asyncio.run(after())


def test_bad_since_is_an_error(vigil_factory):
    srv = start(vigil_factory)

    async def scenario():
        async with websockets.connect(srv.ws_url("/ws")) as ws:
            await asyncio.wait_for(ws.recv(), 10)
            for since in ({"offset": "x"}, {"offset": -1}, {"other.chan": {"offset": 1}}, 7):
                await ws.send(json.dumps({"type": "subscribe", "channels": ["ok.a"],
                                          "since": since, "id": 9}))
                msg = json.loads(await asyncio.wait_for(ws.recv(), 10))
                assert msg["type"] == "error" and msg["code"] == "bad_request", msg
                assert msg["id"] == 9

    asyncio.run(scenario())


def test_durable_channel_recovers_across_restart(vigil_factory):
    """A channel in --durable-channels keeps its offsets, epoch and history in the store: after a
    restart a client recovers what it missed, and offsets go on where they were."""
    srv = start(vigil_factory, "--durable-channels", "dur.>")

    async def before():
        async with websockets.connect(srv.ws_url("/ws")) as ws:
            sub = await subscribe(ws, ["dur.a"])
            publish_batch(srv, "dur.a", [1, 2])
            for _ in range(2):
                await asyncio.wait_for(ws.recv(), 10)
            return sub["epoch"]

    epoch = asyncio.run(before())
    publish_batch(srv, "dur.a", [3, 4, 5])  # missed by the client
    srv.stop()
    srv.start()
    assert publish_batch(srv, "dur.a", [6]) == [6]

    async def after():
        async with websockets.connect(srv.ws_url("/ws")) as ws:
            sub = await subscribe(ws, ["dur.a"], {"offset": 2, "epoch": epoch})
            assert sub["recovered"] is True and sub["epoch"] == epoch, sub
            got = [json.loads(await asyncio.wait_for(ws.recv(), 10)) for _ in range(4)]
            assert [m["offset"] for m in got] == [3, 4, 5, 6]
            assert [m["data"] for m in got] == [3, 4, 5, 6]

    asyncio.run(after())


def test_pattern_recovery_includes_channels_new_while_away(vigil_factory):
    """A client on `cam.*` that was away while a new channel cam.new appeared gets cam.new's
    messages too when it resubscribes with `since` (its known channels) and `since_time` (the
    timestamp of the last message it received)."""
    srv = start(vigil_factory)

    async def scenario():
        async with websockets.connect(srv.ws_url("/ws")) as ws:
            await subscribe(ws, ["cam.*"])
            publish_batch(srv, "cam.a", ["first"])
            last = json.loads(await asyncio.wait_for(ws.recv(), 10))
        sub_epoch = None
        async with websockets.connect(srv.ws_url("/ws")) as probe:
            sub_epoch = (await subscribe(probe, ["cam.a"]))["epoch"]
        publish_batch(srv, "cam.a", ["a2"])
        publish_batch(srv, "cam.new", ["n1", "n2"])
        publish_batch(srv, "other.x", ["not mine"])
        async with websockets.connect(srv.ws_url("/ws")) as ws:
            await asyncio.wait_for(ws.recv(), 10)  # connection_status
            req = {"type": "subscribe", "channels": ["cam.*"], "id": "t",
                   "since": {"cam.a": {"offset": last["offset"], "epoch": sub_epoch}},
                   "since_time": last["timestamp"]}
            await ws.send(json.dumps(req))
            sub = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert sub["type"] == "subscribed" and sub["recovered"] is True, sub
            msgs = [json.loads(await asyncio.wait_for(ws.recv(), 10)) for _ in range(3)]
            assert sorted(m["data"] for m in msgs) == ["a2", "n1", "n2"], msgs
            assert [m["data"] for m in msgs if m["channel"] == "cam.new"] == ["n1", "n2"]
            try:
                extra = await asyncio.wait_for(ws.recv(), 0.5)
                raise AssertionError(f"unexpected: {extra}")
            except asyncio.TimeoutError:
                pass

    asyncio.run(scenario())


def test_bad_since_time(vigil_factory):
    srv = start(vigil_factory)

    async def scenario():
        async with websockets.connect(srv.ws_url("/ws")) as ws:
            await asyncio.wait_for(ws.recv(), 10)
            await ws.send(json.dumps({"type": "subscribe", "channels": ["x.*"],
                                      "since_time": "yesterday", "id": 3}))
            msg = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert msg["type"] == "error" and msg["code"] == "bad_request" and msg["id"] == 3

    asyncio.run(scenario())
