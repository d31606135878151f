"""State documents: PUT/PATCH/GET/DELETE with ETag, and subscribers of state.<name> getting a
snapshot and then coalesced merge-patch deltas."""

import asyncio
import json
import time
import urllib.error
import urllib.request

import websockets

API_KEY = "state-key"


def call(srv, method, name, body=None, headers=None):
    hdrs = {"Authorization": f"Bearer {API_KEY}"}
    hdrs.update(headers or {})
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(srv.url(f"/api/state/{name}"), data=data, method=method,
                                 headers=hdrs)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            raw = r.read()
            return r.status, dict(r.headers), json.loads(raw) if raw else None
    except urllib.error.HTTPError as e:
        raw = e.read()
        return e.code, dict(e.headers), json.loads(raw) if raw else None


def merge(target, patch):
    """RFC 7396, for checking."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge(out.get(k), v)
    return out


def start(vigil_factory, *extra):
    return vigil_factory("--allow-anonymous", "--api-key", API_KEY, "--max-connections-per-user",
                         "20", *extra)


def test_put_patch_get_etag_delete(vigil_factory):
    srv = start(vigil_factory)
    st, hdrs, doc = call(srv, "PUT", "stats", {"a": 1, "b": {"c": 2}})
    assert st == 200 and doc == {"a": 1, "b": {"c": 2}}
    etag1 = hdrs["ETag"]
    st, hdrs, doc = call(srv, "PATCH", "stats", {"b": {"c": None, "d": 3}, "e": [1]})
    assert st == 200 and doc == {"a": 1, "b": {"d": 3}, "e": [1]}
    etag2 = hdrs["ETag"]
    assert etag1 != etag2
    st, hdrs, doc = call(srv, "GET", "stats")
    assert st == 200 and hdrs["ETag"] == etag2 and doc["b"] == {"d": 3}
    st, _, _ = call(srv, "GET", "stats", headers={"If-None-Match": etag2})
    assert st == 304
    st, _, _ = call(srv, "GET", "stats", headers={"If-None-Match": etag1})
    assert st == 200
    st, _, _ = call(srv, "DELETE", "stats")
    assert st == 204
    st, _, body = call(srv, "GET", "stats")
    assert st == 404 and body["error"]["code"] == "not_found"
    st, _, body = call(srv, "PUT", "bad..name", {"x": 1})
    assert st == 400


def test_state_needs_api_key_to_write(vigil_factory):
    srv = start(vigil_factory)
    req = urllib.request.Request(srv.url("/api/state/x"), data=b"{}", method="PUT")
    try:
        urllib.request.urlopen(req, timeout=10)
        assert False, "expected 401"
    except urllib.error.HTTPError as e:
        assert e.code == 401


def test_publish_refuses_state_prefix(vigil_factory):
    srv = start(vigil_factory)
    req = urllib.request.Request(
        srv.url("/api/publish"), method="POST",
        data=json.dumps({"channel": "state.x", "type": "t", "data": 1}).encode(),
        headers={"Authorization": f"Bearer {API_KEY}"})
    try:
        urllib.request.urlopen(req, timeout=10)
        assert False, "expected 400"
    except urllib.error.HTTPError as e:
        assert e.code == 400 and b"state." in e.read()


def test_snapshot_then_coalesced_deltas(vigil_factory):
    """100 PATCHes within ~100 ms reach a subscriber as a snapshot plus a handful of patches
    whose merge equals the final document."""
    srv = start(vigil_factory, "--state-interval", "0.2")
    call(srv, "PUT", "cams", {"count": 0, "online": {}})

    async def scenario():
        async with websockets.connect(srv.ws_url("/ws")) as ws:
            await asyncio.wait_for(ws.recv(), 10)
            await ws.send(json.dumps({"type": "subscribe", "channels": ["state.cams"]}))
            assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "subscribed"
            snap = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert snap["type"] == "state" and snap["name"] == "cams"
            doc, version = snap["snapshot"], snap["version"]
            loop = asyncio.get_running_loop()

            def patches():
                for i in range(100):
                    call(srv, "PATCH", "cams", {"count": i + 1, "online": {f"c{i % 7}": i}})
            await loop.run_in_executor(None, patches)
            final = call(srv, "GET", "cams")[2]
            deltas = 0
            deadline = time.monotonic() + 5
            while doc != final and time.monotonic() < deadline:
                msg = json.loads(await asyncio.wait_for(ws.recv(), 5))
                assert msg["type"] == "state" and "patch" in msg, msg
                deltas += 1
                if msg["version"] > version:
                    doc, version = merge(doc, msg["patch"]), msg["version"]
            assert doc == final
            assert 1 <= deltas <= 20, f"{deltas} deltas for 100 patches: not coalesced"
            # Nothing changed: nothing more is sent.
            try:
                extra = await asyncio.wait_for(ws.recv(), 0.6)
                assert False, f"unexpected message after the last change: {extra}"
            except asyncio.TimeoutError:
                pass

    asyncio.run(scenario())


def test_state_broadcast_periodic(vigil_factory):
    """--state-broadcast statistics:statistics_update:0.2 publishes the whole document."""
    srv = start(vigil_factory, "--state-broadcast", "statistics:statistics_update:0.2")
    call(srv, "PUT", "statistics", {"cameras": {"total": 2}})

    async def scenario():
        async with websockets.connect(srv.ws_url("/ws")) as ws:
            await asyncio.wait_for(ws.recv(), 10)
            await ws.send(json.dumps({"type": "subscribe", "event_types": ["statistics_update"]}))
            assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "subscribed"
            got = [json.loads(await asyncio.wait_for(ws.recv(), 5)) for _ in range(2)]
            for m in got:
                assert m["type"] == "statistics_update"
                assert m["data"] == {"cameras": {"total": 2}}

    asyncio.run(scenario())


def test_state_survives_restart(vigil_factory):
    """State documents live in the SQLite store under --data-dir: a restart keeps them, with
    their versions."""
    srv = start(vigil_factory)
    call(srv, "PUT", "fleet", {"online": 3})
    st, hdrs, _ = call(srv, "PATCH", "fleet", {"down": 1})
    etag = hdrs["ETag"]
    srv.stop()
    srv.start()
    st, hdrs, doc = call(srv, "GET", "fleet")
    assert st == 200 and doc == {"online": 3, "down": 1} and hdrs["ETag"] == etag
    st, hdrs, _ = call(srv, "PATCH", "fleet", {"down": None})
    assert hdrs["ETag"] != etag


def test_unusable_data_dir_fails_the_start(tmp_path):
    """A data dir that is a file, or a corrupt database, stops the start with a clear message
    (exit 1), never a crash."""
    import conftest
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    r = conftest.run_cli(["serve", "--listen", "127.0.0.1:0", "--data-dir", str(not_a_dir)])
    assert r.returncode == 1 and "--data-dir" in r.stderr and str(not_a_dir) in r.stderr, r
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "vigil.db").write_bytes(b"this is not a database" * 100)
    r = conftest.run_cli(["serve", "--listen", "127.0.0.1:0", "--data-dir", str(corrupt)])
    assert r.returncode == 1 and "vigil.db" in r.stderr, r
