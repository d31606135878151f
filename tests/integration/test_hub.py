"""The native /ws protocol and publishing (docs/PROTOCOL.md "Channels", "WebSocket /ws",
POST /api/publish): subscribe/unsubscribe answers with `id` echo, names and patterns, event-type
filters, permissions from the `channels` claim and --default-channels, invalid channels and
malformed requests (the connection lives), delivery exactly once and in publish order (also to
200 subscribers spread over several workers), the delivered message shape, and the publish API
(single, batch, errors naming the field, API key in both headers, `state.` refused)."""

import asyncio
import json

import pytest

from conftest import run_async
from hubutil import (API_KEY, api, assert_json_error,
                     assert_recent_ts, assert_unauthorized, close_all, connect, connect_many,
                     hub_args, is_int, mint, ok_json, publish, publish_batch, uniq)

PUBLISHED_FIELDS = {"type", "channel", "offset", "timestamp", "data"}


@pytest.fixture
def hub(shared_vigil):
    return shared_vigil(*hub_args())


@pytest.fixture
def hub_defaults(shared_vigil):
    return shared_vigil(*hub_args("--default-channels", "public.>,stats"))


def run(coro, timeout=60):
    return run_async(coro, timeout=timeout)


async def apublish(srv, *a, **kw):
    """publish() in a thread, so the event loop keeps reading the websockets meanwhile."""
    return await asyncio.get_running_loop().run_in_executor(None, lambda: publish(srv, *a, **kw))


async def apublish_batch(srv, messages):
    return await asyncio.get_running_loop().run_in_executor(
        None, lambda: publish_batch(srv, messages))


def assert_error(ans, code, rid=None, mentions=None):
    assert ans.get("type") == "error", f"expected error {code}, got {ans}"
    assert ans.get("code") == code, f"expected error code {code}, got {ans}"
    assert isinstance(ans.get("message"), str) and ans["message"], ans
    if rid is not None:
        assert ans.get("id") == rid, ans
    if mentions is not None:
        assert mentions in ans["message"], f"error message should name {mentions!r}: {ans}"


# ---------------------------------------------------------------------------- answers


def test_subscribe_and_unsubscribe_answers(hub):
    ns = uniq("ns")
    chans = [f"{ns}.a", f"{ns}.*", f"{ns}.>"]

    async def go():
        async with await connect(hub, mint(uniq())) as c:
            ans = await c.request({"type": "subscribe", "channels": chans,
                                   "event_types": ["motion", "alarm"], "id": "sub-1"})
            assert ans["type"] == "subscribed", ans
            assert ans["id"] == "sub-1"
            assert sorted(ans["channels"]) == sorted(chans), ans
            assert sorted(ans["event_types"]) == ["alarm", "motion"], ans
            ans = await c.request({"type": "unsubscribe", "channels": [f"{ns}.*"],
                                   "event_types": ["alarm"], "id": 99})
            assert ans["type"] == "unsubscribed" and ans["id"] == 99, ans
            assert ans["channels"] == [f"{ns}.*"], ans
            assert ans["event_types"] == ["alarm"], ans
    run(go())


@pytest.mark.parametrize("rid", ["abc", 0, 7, 1.5, True, [1, "two"], {"k": {"n": [1]}}, ""])
def test_id_echoed_as_any_json_value(hub, rid):
    async def go():
        async with await connect(hub, mint(uniq())) as c:
            ans = await c.request({"type": "subscribe", "channels": [uniq("x")], "id": rid})
            assert ans["type"] == "subscribed" and ans["id"] == rid, ans
            ans = await c.request({"type": "ping", "id": rid})
            assert ans["type"] == "pong" and ans["id"] == rid, ans
            ans = await c.request({"type": "no-such-request", "id": rid})
            assert_error(ans, "unknown_type", rid=rid)
    run(go())


def test_ping_both_spellings(hub):
    async def go():
        async with await connect(hub, mint(uniq())) as c:
            await c.send("ping")
            m = await c.recv()
            assert m == {"_text": "pong"}, f"text ping answered {m}"
            ans = await c.request({"type": "ping"})
            assert ans["type"] == "pong"
            assert_recent_ts(ans["timestamp"])
    run(go())


# ---------------------------------------------------------------------------- delivery


def test_published_message_shape(hub):
    ch = f"{uniq('shape')}.cam-1"
    data = {"n": 1, "s": "héllo ✓", "list": [1, 2.5, None, True], "nested": {"a": {"b": []}}}

    async def go():
        async with await connect(hub, mint(uniq())) as c:
            await c.subscribe([ch])
            off = await apublish(hub, ch, "motion", data)
            (m,) = await c.published(1)
            assert set(m) == PUBLISHED_FIELDS, f"delivered message fields {sorted(m)}"
            assert m["type"] == "motion"
            assert m["channel"] == ch
            assert m["offset"] == off and is_int(off)
            assert m["data"] == data
            assert_recent_ts(m["timestamp"])
    run(go())


@pytest.mark.parametrize("data", [None, 0, -12.5, "text", [], [1, [2, [3]]], {}, True])
def test_any_json_data_delivered_unchanged(hub, data):
    ch = uniq("data")

    async def go():
        async with await connect(hub, mint(uniq())) as c:
            await c.subscribe([ch])
            resp = await asyncio.get_running_loop().run_in_executor(None, lambda: api(
                hub, "POST", "/api/publish", {"channel": ch, "type": "t", "data": data},
                api_key=API_KEY))
            ok_json(resp)
            (m,) = await c.published(1)
            assert m["data"] == data and type(m["data"]) is type(data), m
    run(go())


def test_offsets_increase_per_channel(hub):
    ch = uniq("offs")
    offs = [publish(hub, ch, "t", {"i": i}) for i in range(5)]
    offs += publish_batch(hub, [{"channel": ch, "type": "t", "data": i} for i in range(5)])
    assert all(a < b for a, b in zip(offs, offs[1:])), offs


def test_single_wildcard_pattern(hub):
    ns = uniq("cams")

    async def go():
        async with await connect(hub, mint(uniq())) as c:
            await c.subscribe([f"{ns}.*"])
            await apublish(hub, ns, "t", "parent")                   # no: `*` needs a segment
            await apublish(hub, f"{ns}.cam-1.events", "t", "deep")   # no: exactly one segment
            await apublish(hub, f"{uniq('other')}.cam-1", "t", "other")
            await apublish(hub, f"{ns}.cam-1", "t", "yes-1")
            await apublish(hub, f"{ns}.cam-2", "t", "yes-2")
            got = await c.collect_until(lambda m: m["data"] == "yes-2")
            assert [m["data"] for m in got] == ["yes-1", "yes-2"], got
    run(go())


def test_middle_wildcard_pattern(hub):
    ns = uniq("mid")

    async def go():
        async with await connect(hub, mint(uniq())) as c:
            await c.subscribe([f"{ns}.*.events"])
            await apublish(hub, f"{ns}.cam-1.status", "t", "no-1")
            await apublish(hub, f"{ns}.cam-1.events.x", "t", "no-2")
            await apublish(hub, f"{ns}.cam-1.events", "t", "yes-1")
            await apublish(hub, f"{ns}.cam-2.events", "t", "yes-2")
            got = await c.collect_until(lambda m: m["data"] == "yes-2")
            assert [m["data"] for m in got] == ["yes-1", "yes-2"], got
    run(go())


def test_tail_wildcard_pattern(hub):
    ns = uniq("tail")

    async def go():
        async with await connect(hub, mint(uniq())) as c:
            await c.subscribe([f"{ns}.>"])
            await apublish(hub, ns, "t", "parent")      # no: `>` needs one or more segments
            await apublish(hub, f"{ns}x.a", "t", "prefix-only")
            await apublish(hub, f"{ns}.a", "t", "yes-1")
            await apublish(hub, f"{ns}.a.b.c", "t", "yes-2")
            got = await c.collect_until(lambda m: m["data"] == "yes-2")
            assert [m["data"] for m in got] == ["yes-1", "yes-2"], got
    run(go())


def test_full_wildcard_gets_everything(hub):
    chans = [uniq("any"), f"{uniq('any')}.b", f"{uniq('any')}.b.c.d"]

    async def go():
        async with await connect(hub, mint(uniq())) as c:
            await c.subscribe([">"])
            offs = [await apublish(hub, ch, "t", ch) for ch in chans]
            got = await c.collect_until(lambda m: m["data"] == chans[-1], linger=0)
            mine = [m for m in got if m["channel"] in chans]
            assert [m["channel"] for m in mine] == chans
            assert [m["offset"] for m in mine] == offs
    run(go())


def test_exactly_once_with_overlapping_subscriptions(hub):
    ns = uniq("ovl")
    ch = f"{ns}.cam-1"

    async def go():
        async with await connect(hub, mint(uniq())) as c:
            await c.subscribe([ch, f"{ns}.*", f"{ns}.>", "*.cam-1", ">"])
            await c.subscribe([f"{ns}.cam-1"])  # again, in a second request
            offs = [await apublish(hub, ch, "t", i) for i in range(10)]
            got = await c.collect_until(lambda m: m["channel"] == ch and m["data"] == 9,
                                        linger=0.5)
            mine = [m for m in got if m["channel"] == ch]
            assert [m["offset"] for m in mine] == offs, "each message exactly once, in order"
    run(go())


def test_exactly_once_single_request_duplicates(hub):
    ch = uniq("dup")

    async def go():
        async with await connect(hub, mint(uniq())) as c:
            await c.subscribe([ch, ch, ch])
            await apublish(hub, ch, "t", "a")
            await apublish(hub, ch, "t", "end")
            got = await c.collect_until(lambda m: m["data"] == "end", linger=0.5)
            assert [m["data"] for m in got] == ["a", "end"], got
    run(go())


def test_event_type_filter(hub):
    ch = uniq("evt")

    async def go():
        async with await connect(hub, mint(uniq())) as c:
            await c.subscribe([ch], event_types=["motion", "alarm"])
            for t in ["status", "motion", "heartbeat", "alarm", "motion-x", "motion"]:
                await apublish(hub, ch, t, t)
            await apublish(hub, ch, "alarm", "end")
            got = await c.collect_until(lambda m: m["data"] == "end", linger=0.3)
            assert [m["type"] for m in got] == ["motion", "alarm", "motion", "alarm"], got
    run(go())


def test_event_types_without_channels(hub):
    """Event-type filters alone: those types on every channel the user may read."""
    ns = uniq("evo")
    sub = uniq("evo-user")

    async def go():
        async with await connect(hub, mint(sub, channels=[f"{ns}.allowed.>"])) as c:
            ans = await c.subscribe(event_types=["special"])
            assert ans["event_types"] == ["special"], ans
            await apublish(hub, f"{ns}.allowed.a", "plain", "no-type")
            await apublish(hub, f"{ns}.denied.a", "special", "no-perm")
            await apublish(hub, f"{ns}.allowed.b", "special", "yes-1")
            await apublish(hub, f"{ns}.allowed.c.d", "special", "yes-2")
            got = await c.collect_until(lambda m: m["data"] == "yes-2", linger=0.3)
            assert [m["data"] for m in got] == ["yes-1", "yes-2"], got
    run(go())


def test_unsubscribe_stops_delivery(hub):
    ns = uniq("uns")

    async def go():
        async with await connect(hub, mint(uniq())) as c:
            await c.subscribe([f"{ns}.a", f"{ns}.b"])
            await c.unsubscribe([f"{ns}.a"])
            await apublish(hub, f"{ns}.a", "t", "gone")
            await apublish(hub, f"{ns}.b", "t", "still")
            got = await c.collect_until(lambda m: m["data"] == "still", linger=0.3)
            assert [m["data"] for m in got] == ["still"], got
    run(go())


def test_unsubscribe_event_type(hub):
    ch = uniq("unst")

    async def go():
        async with await connect(hub, mint(uniq())) as c:
            await c.subscribe([ch], event_types=["a", "b"])
            await c.unsubscribe(event_types=["a"])
            await apublish(hub, ch, "a", "no")
            await apublish(hub, ch, "b", "end")
            got = await c.collect_until(lambda m: m["data"] == "end", linger=0.3)
            assert [m["data"] for m in got] == ["end"], got
    run(go())


def test_no_delivery_without_subscription(hub):
    ch = uniq("nosub")
    other = uniq("nosub-ok")

    async def go():
        async with await connect(hub, mint(uniq())) as idle, \
                await connect(hub, mint(uniq())) as c:
            await c.subscribe([other])
            await apublish(hub, ch, "t", "x")
            await apublish(hub, other, "t", "end")
            await c.collect_until(lambda m: m["data"] == "end")
            assert await idle.drain(0.3) == []
            await idle.ping()
    run(go())


def test_batch_order_per_channel(hub):
    ns = uniq("batch")
    chans = [f"{ns}.a", f"{ns}.b", f"{ns}.c"]
    msgs = [{"channel": chans[i % 3], "type": "t", "data": i} for i in range(60)]

    async def go():
        async with await connect(hub, mint(uniq())) as c:
            await c.subscribe([f"{ns}.*"])
            offs = await apublish_batch(hub, msgs)
            got = await c.published(60, timeout=10)
            assert sorted(m["data"] for m in got) == list(range(60))
            for ch in chans:
                seq = [m for m in got if m["channel"] == ch]
                want = [(o, m["data"]) for o, m in zip(offs, msgs) if m["channel"] == ch]
                assert [(m["offset"], m["data"]) for m in seq] == want, f"order on {ch}"
            assert await c.drain(0.3) == []
    run(go())


def test_fanout_200_subscribers_over_workers_exactly_once_in_order(vigil_factory):
    """200 websockets (distinct users, so no per-user limit applies) on a 4-worker server, half
    subscribed with overlapping patterns; 50 messages published (25 single, 25 in batches):
    every subscriber receives exactly those offsets, in order, with their data."""
    srv = vigil_factory(*hub_args(), workers=4)
    ch = "fanout.room-1"
    n_clients, n_msgs = 200, 50

    async def go():
        clients = []
        for start in range(0, n_clients, 50):
            clients += await connect_many(
                srv, [mint(f"fan-{i}") for i in range(start, start + 50)], timeout=20)
        try:
            await asyncio.gather(*(
                c.subscribe([ch] if i % 2 else ["fanout.*", "fanout.>", ch, ">"])
                for i, c in enumerate(clients)))
            offsets = []
            for k in range(25):
                offsets.append(await apublish(srv, ch, "seq", {"k": k}))
            for b in range(5):
                offsets += await apublish_batch(
                    srv, [{"channel": ch, "type": "seq", "data": {"k": 25 + 5 * b + j}}
                          for j in range(5)])
            results = await asyncio.gather(*(c.published(n_msgs, timeout=60) for c in clients))
            extra = await asyncio.gather(*(c.drain(0.5) for c in clients))
        finally:
            await close_all(clients)
        for i, (got, more) in enumerate(zip(results, extra)):
            assert [m["offset"] for m in got] == offsets, f"subscriber {i}: offsets"
            assert [m["data"]["k"] for m in got] == list(range(n_msgs)), f"subscriber {i}: data"
            assert all(m["channel"] == ch and m["type"] == "seq" for m in got)
            assert more == [], f"subscriber {i} got duplicates/extra: {more[:3]}"
    run(go(), timeout=240)


# ---------------------------------------------------------------------------- permissions


def test_channels_claim_allows_covered_patterns(hub):
    ns = uniq("cams")

    async def go():
        async with await connect(hub, mint(uniq(), channels=[f"{ns}.*", "stats"])) as c:
            for ok in ([f"{ns}.cam-1"], [f"{ns}.*"], ["stats"], [f"{ns}.cam-2", "stats"]):
                await c.subscribe(ok)
            off = await apublish(hub, f"{ns}.cam-1", "t", 1)
            (m,) = await c.published(1)
            assert m["offset"] == off
    run(go())


@pytest.mark.parametrize("wanted", ["{ns}.>", "{ns}.cam-1.events", "alerts", ">", "*",
                                    "{ns}", "stats.x"])
def test_channels_claim_forbids_others(hub, wanted):
    ns = uniq("cams")
    wanted = wanted.format(ns=ns)

    async def go():
        async with await connect(hub, mint(uniq(), channels=[f"{ns}.*", "stats"])) as c:
            ans = await c.request({"type": "subscribe", "channels": [wanted], "id": "f"})
            assert_error(ans, "forbidden", rid="f", mentions=wanted)
            await c.ping()  # connection stays open
            await c.subscribe(["stats"])
    run(go())


def test_forbidden_request_subscribes_nothing(hub):
    ns = uniq("atom")

    async def go():
        async with await connect(hub, mint(uniq(), channels=[f"{ns}.ok"])) as c:
            ans = await c.subscribe([f"{ns}.ok", f"{ns}.secret"], expect=None)
            assert_error(ans, "forbidden", mentions=f"{ns}.secret")
            await apublish(hub, f"{ns}.ok", "t", "should-not-arrive")
            assert await c.drain(0.5) == []
            await c.subscribe([f"{ns}.ok"])
            await apublish(hub, f"{ns}.ok", "t", "now")
            (m,) = await c.published(1)
            assert m["data"] == "now"
    run(go())


def test_default_channels_apply_without_claim(hub_defaults):
    async def go():
        async with await connect(hub_defaults, mint(uniq())) as c:
            await c.subscribe(["public.news"])
            await c.subscribe(["public.>"])
            await c.subscribe(["stats"])
            for bad in ["private", ">", "stats.x", "public"]:
                ans = await c.subscribe([bad], expect=None)
                assert_error(ans, "forbidden", mentions=bad)
            await c.ping()
    run(go())


def test_channels_claim_replaces_default_channels(hub_defaults):
    async def go():
        async with await connect(hub_defaults, mint(uniq(), channels=["private.>"])) as c:
            await c.subscribe(["private.a"])
            ans = await c.subscribe(["public.news"], expect=None)
            assert_error(ans, "forbidden", mentions="public.news")
    run(go())


def test_default_channels_default_is_everything(hub):
    async def go():
        async with await connect(hub, mint(uniq())) as c:
            await c.subscribe([">"])
            await c.subscribe(["anything.at.all", "x.*"])
    run(go())


# ---------------------------------------------------------------------------- bad requests


@pytest.mark.parametrize("name", ["", "a..b", ".a", "a.", "a b", "a/b", "ä", "a.>.b", ">a",
                                  "a*", "a.**", "x" * 201])
def test_invalid_channel(hub, name):
    async def go():
        async with await connect(hub, mint(uniq())) as c:
            ans = await c.request({"type": "subscribe", "channels": [name], "id": 3})
            assert_error(ans, "invalid_channel", rid=3)
            await c.ping()
    run(go())


@pytest.mark.parametrize("name", ["x" * 200, "a_b-c:d@e.F9", "a.*.c", "*", "*.>"])
def test_valid_channel_edge_cases(hub, name):
    async def go():
        async with await connect(hub, mint(uniq())) as c:
            ans = await c.subscribe([name])
            assert ans["channels"] == [name], ans
    run(go())


@pytest.mark.parametrize("text,code", [
    ("{not json", "bad_json"),
    ('{"type":"ping"', "bad_json"),
    ("", "bad_json"),
    ("[1,2]", "bad_request"),
    ('"subscribe"', "bad_request"),
    ("42", "bad_request"),
    ("null", "bad_request"),
    ('{"channels":["a"]}', "bad_request"),
    ('{"type":"launch-missiles"}', "unknown_type"),
])
def test_malformed_requests_keep_connection(hub, text, code):
    async def go():
        async with await connect(hub, mint(uniq())) as c:
            await c.send(text)
            m = await c.recv()
            assert_error(m, code)
            await c.ping()
            await c.subscribe([uniq("after")])
    run(go())


def test_bad_request_echoes_id(hub):
    async def go():
        async with await connect(hub, mint(uniq())) as c:
            ans = await c.request({"id": "no-type"})
            assert_error(ans, "bad_request", rid="no-type")
            ans = await c.request({"type": 5, "id": "num-type"})
            assert ans["type"] == "error" and ans["code"] in ("bad_request", "unknown_type"), ans
            assert ans["id"] == "num-type"
    run(go())


def test_many_errors_then_normal_use(hub):
    ch = uniq("after-errors")

    async def go():
        async with await connect(hub, mint(uniq())) as c:
            for i in range(30):
                await c.send(["{", "[]", '{"type":"x"}'][i % 3])
            for _ in range(30):
                m = await c.recv()
                assert m["type"] == "error", m
            await c.subscribe([ch])
            off = await apublish(hub, ch, "t", "ok")
            (m,) = await c.published(1)
            assert m["offset"] == off
    run(go())


# ---------------------------------------------------------------------------- POST /api/publish


def test_publish_single_and_batch_answers(hub):
    ch = uniq("pub")
    doc = ok_json(api(hub, "POST", "/api/publish", {"channel": ch, "type": "t", "data": {}},
                      api_key=API_KEY))
    assert list(doc) == ["offsets"] and len(doc["offsets"]) == 1 and is_int(doc["offsets"][0])
    msgs = [{"channel": f"{ch}.{i % 2}", "type": "t", "data": i} for i in range(7)]
    doc = ok_json(api(hub, "POST", "/api/publish", {"messages": msgs}, api_key=API_KEY))
    assert len(doc["offsets"]) == 7 and all(is_int(o) for o in doc["offsets"]), doc


def test_publish_batch_of_1000(hub):
    ch = uniq("big")
    offs = publish_batch(hub, [{"channel": ch, "type": "t", "data": i} for i in range(1000)])
    assert all(a < b for a, b in zip(offs, offs[1:]))


def test_publish_batch_over_1000_refused(hub):
    ch = uniq("toobig")
    resp = api(hub, "POST", "/api/publish",
               {"messages": [{"channel": ch, "type": "t", "data": i} for i in range(1001)]},
               api_key=API_KEY)
    doc = assert_json_error(resp, 400)
    assert doc["error"]["code"] == "invalid_message", doc
    assert "messages" in doc["error"]["message"], doc


@pytest.mark.parametrize("body,field", [
    ({"type": "t", "data": 1}, "channel"),
    ({"channel": "a", "data": 1}, "type"),
    ({"channel": "a", "type": "t"}, "data"),
    ({"channel": "a..b", "type": "t", "data": 1}, "channel"),
    ({"channel": "", "type": "t", "data": 1}, "channel"),
    ({"channel": "a.*", "type": "t", "data": 1}, "channel"),
    ({"channel": "a.>", "type": "t", "data": 1}, "channel"),
    ({"channel": 5, "type": "t", "data": 1}, "channel"),
    ({"channel": "a", "type": 5, "data": 1}, "type"),
    ({"channel": "a", "type": "", "data": 1}, "type"),
    ({"messages": [{"channel": "a", "type": "t", "data": 0}] * 3
                  + [{"type": "t", "data": 1}]}, "messages[3].channel"),
    ({"messages": [{"channel": "a", "type": "t", "data": 0},
                   {"channel": "a", "data": 1}]}, "messages[1].type"),
    ({"messages": [{"channel": "a", "type": "t"}]}, "messages[0].data"),
    ({"messages": [{"channel": "a b", "type": "t", "data": 1}]}, "messages[0].channel"),
    ({"messages": "nope"}, "messages"),
])
def test_publish_invalid_names_field(hub, body, field):
    doc = assert_json_error(api(hub, "POST", "/api/publish", body, api_key=API_KEY), 400)
    assert doc["error"]["code"] == "invalid_message", doc
    assert field in doc["error"]["message"], \
        f"400 message should name {field!r}: {doc['error']['message']!r}"


@pytest.mark.parametrize("body", ["{not json", "[]", "42", ""])
def test_publish_not_an_object_is_400(hub, body):
    assert_json_error(api(hub, "POST", "/api/publish", body, api_key=API_KEY), 400)


def test_publish_bad_batch_publishes_nothing_visible_later(hub):
    """A 400 batch answers no offsets; the next good publish on the channel still works."""
    ch = uniq("bb")
    resp = api(hub, "POST", "/api/publish",
               {"messages": [{"channel": ch, "type": "t", "data": 0}, {"channel": ch}]},
               api_key=API_KEY)
    assert resp.status == 400
    assert "offsets" not in resp.json()
    publish(hub, ch, "t", 1)


@pytest.mark.parametrize("channel", ["state.x", "state.cameras.cam-1"])
def test_publish_state_prefix_refused(hub, channel):
    resp = api(hub, "POST", "/api/publish", {"channel": channel, "type": "t", "data": 1},
               api_key=API_KEY)
    doc = assert_json_error(resp, resp.status if resp.status in (400, 403) else 400)
    assert "state" in doc["error"]["message"] or "channel" in doc["error"]["message"], doc
    resp = api(hub, "POST", "/api/publish",
               {"messages": [{"channel": "ok.x", "type": "t", "data": 1},
                             {"channel": channel, "type": "t", "data": 1}]}, api_key=API_KEY)
    assert resp.status in (400, 403), resp.status


def test_publish_channel_named_state_without_dot_is_allowed(hub):
    publish(hub, uniq("state"), "t", 1)
    publish(hub, "states.x", "t", 1)


def test_publish_api_key_headers(hub):
    body = {"channel": uniq("key"), "type": "t", "data": 1}
    ok_json(api(hub, "POST", "/api/publish", body, api_key=API_KEY))
    ok_json(api(hub, "POST", "/api/publish", body, x_api_key=API_KEY))


@pytest.mark.parametrize("how", ["none", "bearer-wrong", "x-api-key-wrong", "bearer-prefix",
                                 "x-api-key-empty", "user-token-as-key"])
def test_publish_without_valid_key_is_401(hub, how):
    body = {"channel": uniq("key"), "type": "t", "data": 1}
    kw = {"none": {},
          "bearer-wrong": {"api_key": "not-the-key"},
          "x-api-key-wrong": {"x_api_key": API_KEY + "x"},
          "bearer-prefix": {"api_key": API_KEY[:-1]},
          "x-api-key-empty": {"x_api_key": ""},
          "user-token-as-key": {"x_api_key": mint("alice")}}[how]
    assert_unauthorized(api(hub, "POST", "/api/publish", body, **kw))


def test_publish_with_user_token_is_refused(hub):
    """Publishing needs the API key: a (non-admin) user's JWT gets 401 or 403."""
    resp = api(hub, "POST", "/api/publish", {"channel": uniq("u"), "type": "t", "data": 1},
               token=mint(uniq()))
    assert resp.status in (401, 403), resp.status
    assert_json_error(resp, resp.status)


# ---------------------------------------------------------------------------- more delivery rules


def test_event_types_then_channel_subscription(hub):
    """Event-type filters alone read every allowed channel; once a channel subscription exists
    only subscribed channels are read (still filtered by type); removing it goes back."""
    ns = uniq("mode")

    async def go():
        async with await connect(hub, mint(uniq(), channels=[f"{ns}.>"])) as c:
            await c.subscribe(event_types=["x"])
            await apublish(hub, f"{ns}.a", "x", "listener-a")
            await apublish(hub, f"{ns}.b", "x", "listener-b")
            got = await c.collect_until(lambda m: m["data"] == "listener-b", linger=0.2)
            assert [m["data"] for m in got] == ["listener-a", "listener-b"], got
            await c.subscribe([f"{ns}.a"])
            await apublish(hub, f"{ns}.b", "x", "b-not-subscribed")
            await apublish(hub, f"{ns}.a", "y", "a-wrong-type")
            await apublish(hub, f"{ns}.a", "x", "a-once")
            got = await c.collect_until(lambda m: m["data"] == "a-once", linger=0.4)
            assert [m["data"] for m in got] == ["a-once"], got
            await c.unsubscribe([f"{ns}.a"])
            await apublish(hub, f"{ns}.b", "x", "listener-again")
            got = await c.collect_until(lambda m: m["data"] == "listener-again", linger=0.3)
            assert [m["data"] for m in got] == ["listener-again"], got
    run(go())


def test_event_types_only_with_overlapping_allowed_patterns(hub):
    ns = uniq("ovt")

    async def go():
        allowed = [f"{ns}.>", f"{ns}.*", f"{ns}.a", ">"]
        async with await connect(hub, mint(uniq(), channels=allowed)) as c:
            await c.subscribe(event_types=["x", "x"])
            for i in range(5):
                await apublish(hub, f"{ns}.a", "x", i)
            got = await c.collect_until(lambda m: m["data"] == 4 and m["channel"] == f"{ns}.a",
                                        linger=0.4)
            mine = [m["data"] for m in got if m["channel"] == f"{ns}.a"]
            assert mine == [0, 1, 2, 3, 4], got
    run(go())


@pytest.mark.parametrize("req", [{"type": "subscribe", "channels": "a.b"},
                                 {"type": "subscribe", "channels": [1, 2]},
                                 {"type": "subscribe", "event_types": "x"},
                                 {"type": "unsubscribe", "channels": {"a": 1}}])
def test_subscribe_with_wrong_field_types(hub, req):
    async def go():
        async with await connect(hub, mint(uniq())) as c:
            ans = await c.request(dict(req, id="w"))
            assert ans["type"] == "error" and ans["id"] == "w", ans
            assert ans["code"] in ("bad_request", "invalid_channel"), ans
            await c.ping()
    run(go())


def test_publish_channel_length_limit(hub):
    base = uniq("len")
    name200 = (base + "." + "x" * 200)[:200]
    publish(hub, name200, "t", 1)
    doc = assert_json_error(api(hub, "POST", "/api/publish",
                                {"channel": name200 + "x", "type": "t", "data": 1},
                                api_key=API_KEY), 400)
    assert "channel" in doc["error"]["message"], doc


def test_concurrent_publishers_order_per_channel(vigil_factory):
    """8 publishers at once on one channel (their requests land on different workers): every
    subscriber, on every worker, receives all messages in offset order, each once."""
    srv = vigil_factory(*hub_args(), workers=4)
    ch = "conc.room"
    n_pub, per_pub, n_sub = 8, 40, 16

    async def go():
        subs = await connect_many(srv, [mint(f"conc-{i}") for i in range(n_sub)])
        try:
            await asyncio.gather(*(c.subscribe([ch]) for c in subs))

            async def publisher(p):
                offs = []
                for k in range(per_pub):
                    offs.append(await apublish(srv, ch, "t", {"p": p, "k": k}))
                return offs
            all_offs = await asyncio.gather(*(publisher(p) for p in range(n_pub)))
            results = await asyncio.gather(*(c.published(n_pub * per_pub, timeout=60)
                                             for c in subs))
            extra = await asyncio.gather(*(c.drain(0.3) for c in subs))
        finally:
            await close_all(subs)
        want = sorted(o for offs in all_offs for o in offs)
        assert len(set(want)) == len(want), "offsets handed out twice"
        for i, (got, more) in enumerate(zip(results, extra)):
            offs = [m["offset"] for m in got]
            assert offs == want, f"subscriber {i}: not every message once in offset order"
            for p in range(n_pub):  # each publisher's own messages in its order
                ks = [m["data"]["k"] for m in got if m["data"]["p"] == p]
                assert ks == list(range(per_pub)), f"subscriber {i} publisher {p}"
            assert more == []
    run(go(), timeout=240)


def test_subscription_churn_while_publishing(vigil_factory):
    """Clients subscribing, unsubscribing and disconnecting while messages flow do not disturb a
    steady subscriber (everything, in order) nor crash the server."""
    srv = vigil_factory(*hub_args(), workers=4)
    ns = "churn"
    n_msgs = 300

    connects = [0]

    async def churner(i, stop):
        while not stop.is_set():
            try:
                c = await connect(srv, mint(f"churn-{i}"))
            except AssertionError:
                await asyncio.sleep(0.05)  # may briefly hit the per-user limit
                continue
            connects[0] += 1
            try:
                for _ in range(3):
                    await c.subscribe([f"{ns}.*", f"{ns}.>", ">"])
                    await c.send({"type": "unsubscribe", "channels": [f"{ns}.*"]})
                    await c.drain(0.01)
            except AssertionError:
                pass
            if i % 2:
                await c.close()
            else:
                c.ws.transport.abort()  # vanish without a close handshake

    async def go():
        steady = await connect(srv, mint("steady"))
        await steady.subscribe([f"{ns}.>"])
        stop = asyncio.Event()
        tasks = [asyncio.ensure_future(churner(i, stop)) for i in range(12)]
        try:
            offs = []
            for b in range(n_msgs // 20):
                offs += await apublish_batch(
                    srv, [{"channel": f"{ns}.c{j % 3}", "type": "t", "data": b * 20 + j}
                          for j in range(20)])
                await asyncio.sleep(0.1)
            got = await steady.published(n_msgs, timeout=60)
        finally:
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            await steady.close()
        assert sorted(m["data"] for m in got) == list(range(n_msgs))
        for j in range(3):
            seq = [m["offset"] for m in got if m["channel"] == f"{ns}.c{j}"]
            assert seq == sorted(seq) and len(set(seq)) == len(seq), f"order on {ns}.c{j}"
        assert connects[0] >= 24, f"only {connects[0]} churn connections"
    run(go(), timeout=180)
    assert srv.alive()


def test_invalid_utf8_text_closes_1007(hub):
    from conftest import RawWS
    from hubutil import ws_path
    ws = RawWS.connect(hub.host, hub.port, path=ws_path(mint(uniq())))
    with ws:
        ws.recv_message()  # connection_status
        ws.send_text(b'{"type":"ping","x":"\xff\xfe"}')
        assert ws.expect_fail(1007) is not None


def test_pipelined_publishes_on_one_connection(hub):
    """Ten publishes written at once on one keep-alive connection: ten answers, in order."""
    from conftest import build_request
    ch = uniq("pipe")
    reqs = b"".join(build_request(
        "POST", "/api/publish",
        [("X-API-Key", API_KEY), ("Content-Type", "application/json")],
        json.dumps({"channel": ch, "type": "t", "data": i}), host=hub.host) for i in range(10))
    with hub.conn() as conn:
        conn.send(reqs)
        offs = []
        for _ in range(10):
            resp = conn.read_response()
            offs += ok_json(resp)["offsets"]
    assert offs == sorted(offs) and len(set(offs)) == 10, offs


def test_large_message_delivered_intact(hub):
    ch = uniq("large")
    data = {"blob": "é✓" * 40000 + "x" * 300000, "n": list(range(1000))}  # ~800 KB as JSON

    async def go():
        async with await connect(hub, mint(uniq())) as c:
            await c.subscribe([ch])
            await apublish(hub, ch, "big", data)
            (m,) = await c.published(1, timeout=10)
            assert m["data"] == data
    run(go())


def test_offsets_count_per_channel_from_one(hub):
    """PROTOCOL.md Recovery: every channel numbers its messages 1, 2, 3, ..."""
    a, b = uniq("num"), uniq("num")
    assert [publish(hub, a, "t", i) for i in range(3)] == [1, 2, 3]
    offs = publish_batch(hub, [{"channel": ch, "type": "t", "data": 0}
                               for ch in (b, a, b, b, a)])
    assert offs == [1, 4, 2, 3, 5], offs
