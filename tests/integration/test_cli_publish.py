"""`vigil publish` end to end (docs/PROTOCOL.md "Command line"): the message reaches a /ws
subscriber exactly as given (argument, stdin, `-`), the server's answer is printed, refusals and
unreachable servers exit 1 with the reason, usage mistakes exit 2 naming the option, and bad JSON
is caught before anything is sent.  Also a small `vigil bench fanout` run, which publishes
through the same HTTP client and must count every delivery."""

import asyncio
import json
import subprocess
import tempfile

import pytest

from conftest import clean_env, free_port, requires_ipv6, run_async, run_cli, vigil_bin
from hubutil import API_KEY, connect, hub_args, mint, uniq


@pytest.fixture
def hub(shared_vigil):
    return shared_vigil(*hub_args("--allow-anonymous", "--max-connections-per-user", "1000"))


def cli(args, stdin=None, env=None, timeout=20):
    """Runs `vigil ARGS` with `stdin` (bytes or str) as standard input."""
    if isinstance(stdin, str):
        stdin = stdin.encode()
    proc = subprocess.run([vigil_bin(), *args], input=stdin if stdin is not None else b"",
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=clean_env(env),
                          cwd=tempfile.gettempdir(), timeout=timeout)
    return subprocess.CompletedProcess(proc.args, proc.returncode,
                                       proc.stdout.decode(errors="replace"),
                                       proc.stderr.decode(errors="replace"))


def pub_args(srv, channel, type_="event", *rest, key=API_KEY):
    args = ["publish", "--url", srv.url("").rstrip("/"), "--channel", channel, "--type", type_]
    if key is not None:
        args += ["--api-key", key]
    return args + list(rest)


async def publish_and_receive(srv, channel, args, stdin=None, env=None):
    """Subscribes to `channel`, runs the CLI (in a thread so the socket keeps being read) and
    returns (completed process, the delivered message)."""
    async with await connect(srv, mint(uniq("user"))) as c:
        await c.subscribe([channel])
        r = await asyncio.get_running_loop().run_in_executor(
            None, lambda: cli(args, stdin=stdin, env=env))
        assert r.returncode == 0, f"exit {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
        (m,) = await c.published(1)
        return r, m


def assert_offsets_answer(r):
    doc = json.loads(r.stdout)
    assert isinstance(doc.get("offsets"), list) and len(doc["offsets"]) == 1, r.stdout
    return doc["offsets"][0]


# ---------------------------------------------------------------------------- success


def test_publish_reaches_a_subscriber(hub):
    ch = f"{uniq('cli')}.events"
    data = {"camera": "cam-1", "score": 0.1, "big": 12345678901234567, "tags": ["a", "é"],
            "nested": {"none": None, "yes": True}}
    r, m = run_async(publish_and_receive(hub, ch, pub_args(hub, ch, "camera_event",
                                                           json.dumps(data))))
    offset = assert_offsets_answer(r)
    assert m["channel"] == ch and m["type"] == "camera_event", m
    assert m["data"] == data, m
    assert m["offset"] == offset, (m, r.stdout)


@pytest.mark.parametrize("how", ["absent", "dash"])
def test_publish_data_from_stdin(hub, how):
    ch = f"{uniq('cli')}.stdin"
    extra = ["-"] if how == "dash" else []
    text = '\n  {"from": "stdin", "n": [1, 2.5, -3e2]}  \n'
    r, m = run_async(publish_and_receive(hub, ch, pub_args(hub, ch, "t", *extra), stdin=text))
    assert_offsets_answer(r)
    assert m["data"] == {"from": "stdin", "n": [1, 2.5, -300.0]}, m


@pytest.mark.parametrize("data", ['"just a string"', "42", "null", "[]"])
def test_publish_any_json_value(hub, data):
    ch = f"{uniq('cli')}.scalar"
    r, m = run_async(publish_and_receive(hub, ch, pub_args(hub, ch, "t", data)))
    assert m["data"] == json.loads(data), m


def test_api_key_from_environment(hub):
    ch = f"{uniq('cli')}.env"
    r, m = run_async(publish_and_receive(hub, ch, pub_args(hub, ch, "t", '{"k":1}', key=None),
                                         env={"VIGIL_API_KEY": API_KEY}))
    assert m["data"] == {"k": 1}


def test_option_equals_form_and_url_with_trailing_slash(hub):
    ch = f"{uniq('cli')}.eq"
    args = ["publish", f"--url={hub.url('/')}", f"--channel={ch}", "--type=t",
            f"--api-key={API_KEY}", '{"eq":true}']
    r, m = run_async(publish_and_receive(hub, ch, args))
    assert m["data"] == {"eq": True}


@requires_ipv6
def test_publish_over_ipv6(vigil_factory):
    port = free_port("::1")
    srv = vigil_factory(*hub_args(), listen=[f"[::1]:{port}"])
    ch = f"{uniq('cli')}.v6"
    r = cli(["publish", "--url", f"http://[::1]:{port}", "--api-key", API_KEY, "--channel", ch,
             "--type", "t", "1"])
    assert r.returncode == 0, r.stderr
    assert_offsets_answer(r)


# ---------------------------------------------------------------------------- failures


def assert_nothing_published(srv, channel, args, stdin=None):
    """Runs the CLI while subscribed to `channel`; returns the result after checking that no
    message arrived."""
    async def go():
        async with await connect(srv, mint(uniq("user"))) as c:
            await c.subscribe([channel])
            r = await asyncio.get_running_loop().run_in_executor(
                None, lambda: cli(args, stdin=stdin))
            got = await c.drain(0.3)
            assert got == [], f"published despite the failure: {got}"
            return r
    return run_async(go())


@pytest.mark.parametrize("data", ["{x", "{\"a\":1", "", "[1,]", "{\"a\":1} trailing"])
def test_bad_json_is_refused_locally(hub, data):
    ch = f"{uniq('cli')}.bad"
    args = pub_args(hub, ch, "t") + ([data] if data else [])
    r = assert_nothing_published(hub, ch, args, stdin=data if not data else None)
    assert r.returncode == 1, f"exit {r.returncode}: {r.stderr}"
    assert "json" in r.stderr.lower(), r.stderr
    assert r.stdout == "", r.stdout


@pytest.mark.parametrize("missing", ["--channel", "--type"])
def test_missing_required_option_exits_2(hub, missing):
    args = pub_args(hub, "a.b", "t", "1")
    i = args.index(missing)
    del args[i:i + 2]
    r = cli(args)
    assert r.returncode == 2, f"exit {r.returncode}: {r.stderr}"
    assert missing in r.stderr, r.stderr


@pytest.mark.parametrize("args, names", [
    (["--bogus", "1"], "--bogus"),
    (["--channel"], "--channel"),
    (["--url", "https://127.0.0.1:1", "--channel", "a", "--type", "t", "1"], "--url"),
    (["--url", "not a url", "--channel", "a", "--type", "t", "1"], "--url"),
    (["--timeout", "soon", "--channel", "a", "--type", "t", "1"], "--timeout"),
    (["--channel", "a", "--type", "t", "1", "2"], "'2'"),
])
def test_usage_errors_exit_2_naming_the_option(args, names):
    r = cli(["publish", *args])
    assert r.returncode == 2, f"exit {r.returncode}: {r.stderr}"
    assert names in r.stderr, r.stderr


def test_wrong_api_key_exits_1_with_the_servers_reason(hub):
    ch = f"{uniq('cli')}.key"
    r = assert_nothing_published(hub, ch, pub_args(hub, ch, "t", "1", key="not-the-key"))
    assert r.returncode == 1, f"exit {r.returncode}: {r.stderr}"
    assert "401" in r.stderr and "unauthorized" in r.stderr, r.stderr


def test_server_refusal_names_the_field(hub):
    r = cli(pub_args(hub, "bad..channel", "t", "1"))
    assert r.returncode == 1, f"exit {r.returncode}: {r.stderr}"
    assert "400" in r.stderr and "invalid_message" in r.stderr, r.stderr
    assert "channel" in r.stderr, r.stderr


def test_unreachable_server_exits_1():
    port = free_port()
    r = run_cli(["publish", "--url", f"http://127.0.0.1:{port}", "--channel", "a", "--type", "t",
                 "--timeout", "3", "1"])
    assert r.returncode == 1, f"exit {r.returncode}: {r.stderr}"
    assert "refused" in r.stderr.lower(), r.stderr


def test_help_exits_0():
    r = run_cli(["publish", "--help"])
    assert r.returncode == 0, r.stderr
    assert "--channel" in r.stdout and "--api-key" in r.stdout, r.stdout


# ---------------------------------------------------------------------------- bench


def test_bench_fanout_counts_every_delivery(hub):
    """A small fan-out run: every connection receives every message, and the last line is the
    JSON summary scripts read."""
    ch = f"{uniq('bench')}.fanout"
    r = run_cli(["bench", "fanout", "--url", hub.ws_url("/ws"), "--api-key", API_KEY,
                 "--channel", ch, "--connections", "40", "--messages", "20", "--size", "300",
                 "--rate", "0", "--threads", "2", "--timeout", "10"], timeout=60)
    assert r.returncode == 0, f"exit {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    doc = json.loads(r.stdout.strip().splitlines()[-1])
    assert doc["connected"] == 40 and doc["messages"] == 20, doc
    assert doc["expected"] == doc["deliveries"] == 800 and doc["lost"] == 0, doc
    assert doc["out_of_order"] == 0, doc
    assert 200 <= doc["payload_bytes"] <= 400, doc
    lat = doc["latency_ms"]
    assert 0 <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"], doc
    assert "latency" in r.stdout and "connect" in r.stdout, r.stdout


def test_bench_with_token_and_refused_channel(hub):
    """--token goes on the URL; a channel the token may not read fails every connection with
    the server's reason, exit 1."""
    token = mint(uniq("bench-user"), channels=["allowed.>"])
    r = run_cli(["bench", "fanout", "--url", hub.ws_url("/ws"), "--api-key", API_KEY,
                 "--token", token, "--channel", "allowed.x", "--connections", "3",
                 "--messages", "3", "--rate", "0"], timeout=60)
    assert r.returncode == 0, f"exit {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    r = run_cli(["bench", "fanout", "--url", hub.ws_url("/ws"), "--api-key", API_KEY,
                 "--token", token, "--channel", "secret.x", "--connections", "3",
                 "--messages", "3"], timeout=60)
    assert r.returncode == 1, f"exit {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    assert "forbidden" in r.stdout + r.stderr, r.stdout + r.stderr


def test_bench_usage_errors_exit_2():
    r = run_cli(["bench", "fanout", "--connections", "0"])
    assert r.returncode == 2 and "--connections" in r.stderr, r.stderr
    r = run_cli(["bench", "fanout", "--url", "http://127.0.0.1:1/ws"])
    assert r.returncode == 2 and "--url" in r.stderr, r.stderr
    r = run_cli(["bench", "nosuch"])
    assert r.returncode == 2 and "fanout" in r.stderr, r.stderr
    r = run_cli(["bench", "--help"])
    assert r.returncode == 0 and "--connections" in r.stdout, r.stdout
