"""Enabling compatibility profiles: --profile repeated or `all`, the JSON config file (a list
of names and each profile's options), VIGIL_PROFILE, and clear errors for a bad name."""

import asyncio

import websockets

from conftest import run_cli
from hubutil import API_KEY, SECRET, api, hub_args, mint, ok_json


def endpoints_up(srv, token):
    """Which profile endpoints answer a WebSocket handshake (101) on this server."""
    paths = {"openeye": f"/api/ws/statistics?token={token}",
             "phase10": f"/api/ws/events?token={token}",
             "visionguard": f"/ws/alerts/alice?token={token}"}
    up = set()

    async def probe(name, path):
        try:
            async with websockets.connect(srv.ws_url(path), open_timeout=5, close_timeout=1):
                up.add(name)
        except websockets.InvalidStatusCode:
            pass

    async def run():
        await asyncio.gather(*(probe(n, p) for n, p in paths.items()))
    asyncio.run(run())
    resp = api(srv, "GET", "/socket.io/?EIO=4&transport=polling")
    if resp.status == 200:
        assert resp.body.startswith(b"0{"), resp.body[:100]
        up.add("socketio")
    return up


def test_no_profile_serves_none_of_their_endpoints(vigil_factory):
    srv = vigil_factory(*hub_args())
    assert endpoints_up(srv, mint("alice")) == set()


def test_repeated_flags_enable_each_named_profile(vigil_factory):
    srv = vigil_factory(*hub_args("--profile", "openeye", "--profile", "socketio"))
    assert endpoints_up(srv, mint("alice")) == {"openeye", "socketio"}


def test_all_enables_every_profile(vigil_factory):
    srv = vigil_factory(*hub_args("--profile", "all"))
    assert endpoints_up(srv, mint("alice")) == {"openeye", "phase10", "visionguard", "socketio"}


def test_config_file_lists_profiles_and_their_options(vigil_factory):
    srv = vigil_factory(config={"jwt-secret": SECRET, "api-key": API_KEY,
                                "profile": ["phase10", "visionguard"],
                                "phase10-auth": False, "phase10-channels": "cams.>"})
    assert endpoints_up(srv, mint("alice")) == {"phase10", "visionguard"}

    async def run():
        async with websockets.connect(srv.ws_url("/api/ws/events")) as ws:  # no token needed
            ok_json(api(srv, "POST", "/api/publish",
                        {"channel": "cams.1", "type": "event", "data": {"id": "e1"}},
                        api_key=API_KEY))
            ok_json(api(srv, "POST", "/api/publish",
                        {"channel": "events.1", "type": "event", "data": {"id": "not-fed"}},
                        api_key=API_KEY))
            assert await asyncio.wait_for(ws.recv(), 5) == '{"type":"event","data":{"id":"e1"}}'
            await ws.send("ping")
            assert await asyncio.wait_for(ws.recv(), 5) == "pong"  # nothing from events.1
    asyncio.run(run())


def test_environment_variable_enables_profiles(vigil_factory):
    srv = vigil_factory(*hub_args(), env={"VIGIL_PROFILE": "phase10"})
    assert endpoints_up(srv, mint("alice")) == {"phase10"}


def test_unknown_profile_name_exits_2_naming_it():
    r = run_cli(["serve", "--listen", "127.0.0.1:0", "--profile", "openeye,bogus"])
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "bogus" in r.stderr and "--profile" in r.stderr
