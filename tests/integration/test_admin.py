"""Monitoring and admin endpoints (docs/PROTOCOL.md "HTTP API"): GET /api/ws/status as a user,
an admin and with the API key; GET /ws/connections[/{user}] (admin only: 403 for a user, 401
without a token) and the connection entry fields; POST /api/broadcast to everyone or one user;
POST /api/disconnect by user or connection id with code/reason; GET /metrics (Prometheus text,
counters that move); GET /healthz.

Tests that count connections use a fresh server each."""

import asyncio
import functools

import pytest

from conftest import run_async
from hubutil import (API_KEY, OTHER_SECRET, admin_token, api, assert_forbidden, connect_many,
                     assert_json_error,
                     assert_recent_ts, assert_unauthorized, close_all, connect, hub_args,
                     is_int, is_num, metrics, mint, ok_json, parse_metrics, publish, uniq,
                     wait_for)

ENTRY_FIELDS = {"connection_id", "user_id", "remote_address", "endpoint", "connected_at",
                "uptime_seconds", "last_heartbeat", "seconds_since_heartbeat", "subscriptions",
                "messages_in", "messages_out"}


def run(coro, timeout=60):
    return run_async(coro, timeout=timeout)


async def in_thread(fn, *a, **kw):
    return await asyncio.get_running_loop().run_in_executor(None, functools.partial(fn, *a, **kw))


@pytest.fixture
def fresh(vigil_factory):
    return vigil_factory(*hub_args())


@pytest.fixture
def hub(shared_vigil):
    return shared_vigil(*hub_args())


def status(srv, **auth):
    return ok_json(api(srv, "GET", "/api/ws/status", **auth))


def check_entry(e, user=None, endpoint="/ws"):
    assert set(e) >= ENTRY_FIELDS, f"connection entry lacks {sorted(ENTRY_FIELDS - set(e))}: {e}"
    assert isinstance(e["connection_id"], str) and e["connection_id"], e
    if user is not None:
        assert e["user_id"] == user, e
    assert isinstance(e["remote_address"], str) and "127.0.0.1" in e["remote_address"], e
    assert e["endpoint"] == endpoint, e
    assert_recent_ts(e["connected_at"])
    assert_recent_ts(e["last_heartbeat"])
    assert is_num(e["uptime_seconds"]) and 0 <= e["uptime_seconds"] < 300, e
    assert is_num(e["seconds_since_heartbeat"]) and 0 <= e["seconds_since_heartbeat"] < 300, e
    assert isinstance(e["subscriptions"], list), e
    assert is_int(e["messages_in"]) and e["messages_in"] >= 0, e
    assert is_int(e["messages_out"]) and e["messages_out"] >= 0, e


# ---------------------------------------------------------------------------- /api/ws/status


def test_status_for_user_admin_and_api_key(fresh):
    alice, bob = uniq("alice"), uniq("bob")

    async def go():
        cs = [await connect(fresh, mint(alice)) for _ in range(2)]
        cs.append(await connect(fresh, mint(bob)))
        try:
            doc = await in_thread(status, fresh, token=mint(alice))
            assert doc["status"] == "operational", doc
            st = doc["statistics"]
            assert st["total_connections"] == 3, doc
            assert st["total_users"] == 2, doc
            assert "connections_by_user" not in st, f"a plain user sees connections_by_user: {doc}"
            assert doc["user_connections"] == 2, doc

            doc = await in_thread(status, fresh, token=mint(bob))
            assert doc["user_connections"] == 1, doc

            adm = uniq("adm")
            doc = await in_thread(status, fresh, token=mint(adm, admin=True))
            assert doc["statistics"]["connections_by_user"] == {alice: 2, bob: 1}, doc
            assert doc["user_connections"] == 0, doc

            for auth in ({"api_key": API_KEY}, {"x_api_key": API_KEY}):
                doc = await in_thread(status, fresh, **auth)
                assert doc["statistics"]["connections_by_user"] == {alice: 2, bob: 1}, doc
                assert doc["statistics"]["total_connections"] == 3
                assert doc["user_connections"] == 0, doc
        finally:
            await close_all(cs)
        # the counts go down when they close
        wait_for(lambda: status(fresh, api_key=API_KEY)["statistics"]["total_connections"] == 0)
        doc = status(fresh, api_key=API_KEY)
        assert doc["statistics"]["total_users"] == 0
        assert doc["statistics"]["connections_by_user"] == {}
    run(go())


def test_status_auth_failures(hub):
    assert_unauthorized(api(hub, "GET", "/api/ws/status"))
    assert_unauthorized(api(hub, "GET", "/api/ws/status", token=mint("x", key=OTHER_SECRET)),
                        "invalid signature")
    assert_unauthorized(api(hub, "GET", "/api/ws/status", x_api_key="wrong"))


# ---------------------------------------------------------------------------- /ws/connections


def test_connections_admin_only(hub):
    for path in ("/ws/connections", "/ws/connections/alice"):
        assert_unauthorized(api(hub, "GET", path))
        assert_unauthorized(api(hub, "GET", path, token=mint("x", key=OTHER_SECRET)),
                            "invalid signature")
        assert_forbidden(api(hub, "GET", path, token=mint(uniq())))
        assert_forbidden(api(hub, "GET", path, token=mint(uniq(), admin=False)))
        ok_json(api(hub, "GET", path, token=admin_token()))
        ok_json(api(hub, "GET", path, api_key=API_KEY))
        ok_json(api(hub, "GET", path, x_api_key=API_KEY))


def test_connections_list_and_entries(fresh):
    alice, bob = uniq("alice"), uniq("bob")

    async def go():
        a1 = await connect(fresh, mint(alice))
        a2 = await connect(fresh, mint(alice))
        b = await connect(fresh, mint(bob))
        try:
            await a1.subscribe(["cams.cam-1", "stats.>"])
            for _ in range(3):
                await a1.ping()
            doc = await in_thread(lambda: ok_json(api(fresh, "GET", "/ws/connections",
                                                      token=admin_token())))
            assert doc["total_connections"] == 3, doc
            assert len(doc["connections"]) == 3, doc
            by_id = {e["connection_id"]: e for e in doc["connections"]}
            assert set(by_id) == {a1.connection_id, a2.connection_id, b.connection_id}, \
                "entries carry the connection_id sent in connection_status"
            for c, user in ((a1, alice), (a2, alice), (b, bob)):
                check_entry(by_id[c.connection_id], user)
            e = by_id[a1.connection_id]
            assert sorted(e["subscriptions"]) == ["cams.cam-1", "stats.>"], e
            assert e["messages_in"] >= 4, e   # subscribe + 3 pings
            assert by_id[b.connection_id]["subscriptions"] == []
            # messages_out counts at least the published messages delivered to it
            for i in range(2):
                await in_thread(publish, fresh, "cams.cam-1", "t", i)
            await a1.published(2)
            doc = await in_thread(lambda: ok_json(api(fresh, "GET", "/ws/connections",
                                                      api_key=API_KEY)))
            e = {e["connection_id"]: e for e in doc["connections"]}[a1.connection_id]
            assert e["messages_out"] >= 2, e

            doc = await in_thread(lambda: ok_json(api(fresh, "GET", f"/ws/connections/{alice}",
                                                      api_key=API_KEY)))
            assert doc["user_id"] == alice, doc
            assert doc["connection_count"] == 2, doc
            assert {e["connection_id"] for e in doc["connections"]} == \
                {a1.connection_id, a2.connection_id}
            for e in doc["connections"]:
                check_entry(e, alice)
        finally:
            await close_all([a1, a2, b])
    run(go())


@pytest.mark.parametrize("method,path", [("GET", "/api/ws/status"), ("GET", "/ws/connections"),
                                         ("POST", "/api/ws/ticket"),
                                         ("POST", "/api/broadcast")])
def test_http_missing_credentials_message(hub, method, path):
    """PROTOCOL.md: a missing token on HTTP is 401 `unauthorized` with the WebSocket reason,
    "missing token", as message."""
    assert_unauthorized(api(hub, method, path, body={} if method == "POST" else None),
                        "missing token")


def test_connections_of_unknown_user(hub):
    resp = api(hub, "GET", f"/ws/connections/{uniq('nobody')}", api_key=API_KEY)
    if resp.status == 200:
        doc = resp.json()
        assert doc["connection_count"] == 0 and doc["connections"] == [], doc
    else:
        assert resp.status == 404, resp.status


def test_last_heartbeat_moves(vigil_factory):
    srv = vigil_factory(*hub_args("--ping-interval", "0.2", "--ping-timeout", "5"))
    sub = uniq("hb")

    async def go():
        async with await connect(srv, mint(sub)) as c:
            await asyncio.sleep(1.5)  # python websockets answers the server's pings meanwhile
            doc = await in_thread(lambda: ok_json(api(srv, "GET", f"/ws/connections/{sub}",
                                                      api_key=API_KEY)))
            (e,) = doc["connections"]
            check_entry(e, sub)
            assert e["uptime_seconds"] >= 1.0, e
            assert e["seconds_since_heartbeat"] < 1.0, \
                f"pongs every 0.2 s should refresh last_heartbeat: {e}"
    run(go())


# ---------------------------------------------------------------------------- broadcast


def test_broadcast_to_all_and_to_one_user(fresh):
    alice, bob = uniq("alice"), uniq("bob")

    async def go():
        a1 = await connect(fresh, mint(alice))
        a2 = await connect(fresh, mint(alice))
        b = await connect(fresh, mint(bob))
        try:
            doc = await in_thread(lambda: ok_json(api(
                fresh, "POST", "/api/broadcast", {"type": "announce", "data": {"v": 1}},
                token=admin_token())))
            assert doc == {"delivered": 3}, doc
            for c in (a1, a2, b):
                m = await c.recv()
                assert m["type"] == "announce" and m["data"] == {"v": 1}, m

            doc = await in_thread(lambda: ok_json(api(
                fresh, "POST", "/api/broadcast", {"type": "dm", "data": "hi", "user": bob},
                api_key=API_KEY)))
            assert doc == {"delivered": 1}, doc
            m = await b.recv()
            assert m["type"] == "dm" and m["data"] == "hi", m
            for c in (a1, a2):
                await c.ping()
                assert c.inbox == [], f"alice got bob's broadcast: {c.inbox}"

            doc = await in_thread(lambda: ok_json(api(
                fresh, "POST", "/api/broadcast", {"type": "dm", "data": 1, "user": "nobody"},
                api_key=API_KEY)))
            assert doc == {"delivered": 0}, doc
        finally:
            await close_all([a1, a2, b])
    run(go())


def test_broadcast_auth(hub):
    body = {"type": "x", "data": 1}
    assert_unauthorized(api(hub, "POST", "/api/broadcast", body))
    assert_forbidden(api(hub, "POST", "/api/broadcast", body, token=mint(uniq())))
    ok_json(api(hub, "POST", "/api/broadcast", body, x_api_key=API_KEY))


# ---------------------------------------------------------------------------- disconnect


def test_disconnect_user_with_code_and_reason(fresh):
    alice, bob = uniq("alice"), uniq("bob")

    async def go():
        a1 = await connect(fresh, mint(alice))
        a2 = await connect(fresh, mint(alice))
        b = await connect(fresh, mint(bob))
        try:
            doc = await in_thread(lambda: ok_json(api(
                fresh, "POST", "/api/disconnect",
                {"user": alice, "code": 4000, "reason": "maintenance"}, token=admin_token())))
            assert doc == {"disconnected": 2}, doc
            for c in (a1, a2):
                code, reason, _ = await c.wait_closed()
                assert (code, reason) == (4000, "maintenance")
            await b.ping()
        finally:
            await close_all([a1, a2, b])
    run(go())


def test_disconnect_default_code_and_by_connection_id(fresh):
    alice = uniq("alice")

    async def go():
        a1 = await connect(fresh, mint(alice))
        a2 = await connect(fresh, mint(alice))
        try:
            doc = await in_thread(lambda: ok_json(api(
                fresh, "POST", "/api/disconnect", {"connection_id": a1.connection_id},
                api_key=API_KEY)))
            assert doc == {"disconnected": 1}, doc
            code, _, _ = await a1.wait_closed()
            assert code == 1008
            await a2.ping()
            doc = await in_thread(lambda: ok_json(api(
                fresh, "POST", "/api/disconnect", {"user": uniq("nobody")}, api_key=API_KEY)))
            assert doc == {"disconnected": 0}, doc
        finally:
            await close_all([a1, a2])
    run(go())


def test_disconnect_auth(hub):
    body = {"user": "alice"}
    assert_unauthorized(api(hub, "POST", "/api/disconnect", body))
    assert_forbidden(api(hub, "POST", "/api/disconnect", body, token=mint(uniq())))


# ---------------------------------------------------------------------------- metrics, healthz


def test_metrics_prometheus_text_and_counters(fresh):
    ch = uniq("met")
    resp = fresh.http("GET", "/metrics")
    assert resp.status == 200
    ctype = resp.header("Content-Type") or ""
    assert ctype.startswith("text/plain"), ctype
    sums, types = parse_metrics(resp.body.decode())
    for name in ("vigil_connections", "vigil_messages_published_total",
                 "vigil_messages_delivered_total"):
        assert name in sums, f"/metrics lacks {name}"
    assert types.get("vigil_connections") == "gauge", types
    assert types.get("vigil_messages_published_total", types.get("vigil_messages_published")) \
        == "counter", types
    assert types.get("vigil_messages_delivered_total", types.get("vigil_messages_delivered")) \
        == "counter", types
    before = sums

    async def go():
        cs = [await connect(fresh, mint(uniq())) for _ in range(2)]
        try:
            for c in cs:
                await c.subscribe([ch])
            now = await in_thread(metrics, fresh)
            assert now["vigil_connections"] >= before["vigil_connections"] + 2, now
            for i in range(3):
                await in_thread(publish, fresh, ch, "t", i)
            for c in cs:
                await c.published(3)
            after = await in_thread(metrics, fresh)
            assert after["vigil_messages_published_total"] \
                - before["vigil_messages_published_total"] >= 3, after
            assert after["vigil_messages_delivered_total"] \
                - before["vigil_messages_delivered_total"] >= 6, after
        finally:
            await close_all(cs)
    run(go())
    wait_for(lambda: metrics(fresh)["vigil_connections"] <= before["vigil_connections"])


def test_metrics_needs_no_auth_and_healthz(hub):
    assert hub.http("GET", "/metrics").status == 200
    assert ok_json(hub.http("GET", "/healthz")) == {"status": "ok"}


# ---------------------------------------------------------------------------- across workers


def test_ids_broadcast_and_disconnect_across_workers(vigil_factory):
    """12 connections on a 4-worker server: distinct connection ids, a broadcast reaches all 12,
    and each can be disconnected by its id."""
    srv = vigil_factory(*hub_args(), workers=4)

    async def go():
        cs = await connect_many(srv, [mint(f"w-{i}") for i in range(12)])
        try:
            ids = [c.connection_id for c in cs]
            assert len(set(ids)) == 12, ids
            doc = await in_thread(lambda: ok_json(api(
                srv, "POST", "/api/broadcast", {"type": "all", "data": None}, api_key=API_KEY)))
            assert doc == {"delivered": 12}, doc
            for c in cs:
                m = await c.recv()
                assert m["type"] == "all", m
            for c in cs:
                doc = await in_thread(lambda: ok_json(api(
                    srv, "POST", "/api/disconnect",
                    {"connection_id": c.connection_id, "code": 4002, "reason": "bye"},
                    api_key=API_KEY)))
                assert doc == {"disconnected": 1}, doc
                code, reason, _ = await c.wait_closed()
                assert (code, reason) == (4002, "bye")
        finally:
            await close_all(cs)
        wait_for(lambda: ok_json(api(srv, "GET", "/ws/connections", api_key=API_KEY))
                 ["total_connections"] == 0)
    run(go())


@pytest.mark.parametrize("admin", ["true", 1, "yes", [True], {"admin": True}])
def test_admin_claim_must_be_true(hub, admin):
    """Only "admin": true (the JSON literal) makes an admin."""
    tok = mint(uniq(), admin=admin)
    resp = api(hub, "GET", "/ws/connections", token=tok)
    assert resp.status in (401, 403), f"admin={admin!r} got {resp.status}"
    doc = ok_json(api(hub, "GET", "/api/ws/status", token=tok)) if resp.status == 403 else None
    if doc is not None:
        assert "connections_by_user" not in doc["statistics"], doc


def test_connections_of_user_with_url_encoded_id(hub):
    """The {user_id} path segment is percent-decoded (a `sub` may hold spaces or UTF-8)."""
    import urllib.parse
    sub = "bob smith ü " + uniq("enc")

    async def go():
        async with await connect(hub, mint(sub)) as c:
            assert c.status["user"]["id"] == sub
            path = "/ws/connections/" + urllib.parse.quote(sub, safe="")
            doc = await in_thread(lambda: ok_json(api(hub, "GET", path, api_key=API_KEY)))
            assert doc["user_id"] == sub, doc
            assert doc["connection_count"] == 1, doc
    run(go())


def test_disconnect_long_reason_is_valid_close_frame(fresh):
    """A reason longer than a close frame can hold (123 bytes) is refused with 400 or cut to a
    valid UTF-8 prefix; the client must see a well-formed close, never a protocol error."""
    sub = uniq("long")
    reason = "é" * 100  # 200 bytes

    async def go():
        c = await connect(fresh, mint(sub))
        try:
            resp = await in_thread(api, fresh, "POST", "/api/disconnect",
                                   {"user": sub, "code": 4003, "reason": reason},
                                   api_key=API_KEY)
            if resp.status == 400:
                await c.ping()
                return
            assert resp.status == 200, resp.status
            code, got, _ = await c.wait_closed()
            assert code == 4003, (code, got)
            assert reason.startswith(got) and len(got.encode()) <= 123, got
        finally:
            await c.close()
    run(go())


@pytest.mark.parametrize("code", [1005, 1006, 1015, 999, 5000, "4000"])
def test_disconnect_invalid_code_is_400(hub, code):
    resp = api(hub, "POST", "/api/disconnect", {"user": "x", "code": code}, api_key=API_KEY)
    assert_json_error(resp, 400)
