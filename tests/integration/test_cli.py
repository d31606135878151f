"""Command line, environment and config file: what an operator types to run vigil."""

import json
import re
import signal

import pytest

from conftest import (OP_BINARY, RawWS, free_port, http_request, requires_ipv6, run_async,
                      run_cli, split_hostport)

import websockets


def names_option(stderr, name):
    """The error message names the option (as --name, name, or VIGIL_NAME)."""
    low = stderr.lower()
    return name in low or name.replace("-", "_") in low


def serve_args(*extra, listen=True):
    """`serve` on a free port with one worker (in case a bad value is accepted and it starts).
    listen=False leaves --listen out (when the bad value under test is the listen address from
    the environment or the config file, a flag would override it)."""
    lst = ["--listen", f"127.0.0.1:{free_port()}"] if listen else []
    return ["serve", *lst, "--workers", "1", *extra]


def assert_refused(host, port):
    with pytest.raises(OSError):
        http_request(host, port, "GET", "/healthz", timeout=2)


def assert_max_message_size(srv, limit):
    """A binary message of exactly `limit` bytes is echoed; limit + 1 closes with 1009."""
    with RawWS.connect(srv.host, srv.port) as ws:
        data = bytes(range(256)) * (limit // 256) + b"x" * (limit % 256)
        ws.send_binary(data)
        assert ws.recv_message() == (OP_BINARY, data)
    with RawWS.connect(srv.host, srv.port) as ws:
        ws.send_binary(b"y" * (limit + 1))
        ws.expect_fail(1009)


def echo_roundtrip(host, port, text="hello"):
    host_part = f"[{host}]" if ":" in host else host

    async def go():
        async with websockets.connect(f"ws://{host_part}:{port}/echo", max_size=None,
                                      compression=None, open_timeout=10) as ws:
            await ws.send(text)
            return await ws.recv()

    assert run_async(go(), timeout=20) == text


# ---------------------------------------------------------------------------- version and help


def test_version_prints_name_and_semver():
    """`vigil version` prints "vigil X.Y.Z" and exits 0 (used by packaging and bug reports)."""
    r = run_cli(["version"])
    assert r.returncode == 0, r.stderr
    assert re.fullmatch(r"vigil \d+\.\d+\.\d+\s*", r.stdout), repr(r.stdout)


def test_top_level_help_exits_zero_with_usage_on_stdout():
    """`vigil --help` prints usage (listing the serve command) on stdout and exits 0."""
    r = run_cli(["--help"])
    assert r.returncode == 0, r.stderr
    assert "usage" in r.stdout.lower(), r.stdout
    assert "serve" in r.stdout, r.stdout


SERVE_OPTIONS = ["--listen", "--workers", "--data-dir", "--log-level", "--log-format",
                 "--max-message-size", "--max-outbound", "--max-header-size", "--max-body-size",
                 "--request-timeout", "--echo", "--config"]


def test_serve_help_lists_every_option():
    """`vigil serve --help` exits 0 and documents every serve option on stdout."""
    r = run_cli(["serve", "--help"])
    assert r.returncode == 0, r.stderr
    assert "usage" in r.stdout.lower(), r.stdout
    missing = [o for o in SERVE_OPTIONS if o not in r.stdout]
    assert not missing, f"options missing from `vigil serve --help`: {missing}\n{r.stdout}"


# ---------------------------------------------------------------------------- bad options


def test_unknown_flag_exits_2_naming_it():
    """A typo in a flag stops vigil with status 2 and says which flag is wrong."""
    r = run_cli(serve_args("--no-such-option", "1"))
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "no-such-option" in r.stderr, r.stderr


def test_flag_missing_its_value_exits_2():
    """`--workers` at the end of the line with no value is an error naming the option."""
    r = run_cli(serve_args("--workers"))
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert names_option(r.stderr, "workers"), r.stderr


BAD_FLAG_VALUES = [
    ("workers", "abc"),
    ("workers", "-1"),
    ("max-message-size", "lots"),
    ("max-message-size", "12XB"),
    ("max-outbound", "-5"),
    ("max-header-size", "1.5.5K"),
    ("max-body-size", "KiB"),
    ("request-timeout", "soon"),
    ("log-level", "loud"),
    ("log-format", "xml"),
    ("listen", "nonsense"),
    ("listen", "127.0.0.1:99999"),
    ("listen", "127.0.0.1:port"),
]


@pytest.mark.parametrize("name,value", BAD_FLAG_VALUES)
def test_bad_flag_value_exits_2_naming_option(name, value):
    """A bad value given as `--name value` is rejected with status 2 and names the option."""
    r = run_cli(serve_args(f"--{name}", value))
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert names_option(r.stderr, name), r.stderr


def test_bad_flag_value_in_equals_form_exits_2():
    """`--name=value` is parsed the same way: a bad value is status 2 naming the option."""
    r = run_cli(serve_args("--max-message-size=lots"))
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert names_option(r.stderr, "max-message-size"), r.stderr


@pytest.mark.parametrize("name,value", [
    ("max-message-size", "lots"),
    ("workers", "abc"),
    ("log-level", "loud"),
    ("request-timeout", "soon"),
    ("echo", "maybe"),
    ("listen", "nonsense"),
])
def test_bad_env_value_exits_2_naming_option(name, value):
    """A bad VIGIL_* environment value is rejected like a bad flag (status 2, option named)."""
    var = "VIGIL_" + name.replace("-", "_").upper()
    r = run_cli(serve_args(listen=(name != "listen")), env={var: value})
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert names_option(r.stderr, name), r.stderr


@pytest.mark.parametrize("name,value", [
    ("max-message-size", "lots"),
    ("workers", "two"),
    ("log-format", "xml"),
    ("listen", ["nonsense"]),
    ("request-timeout", "soon"),
])
def test_bad_config_value_exits_2_naming_option(tmp_path, name, value):
    """A bad value in the --config JSON file is rejected (status 2, option named)."""
    cfg = tmp_path / "vigil.json"
    cfg.write_text(json.dumps({name: value}))
    r = run_cli(serve_args("--config", str(cfg), listen=(name != "listen")))
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert names_option(r.stderr, name), r.stderr


def test_unknown_config_key_exits_2_naming_it(tmp_path):
    """A misspelt key in the config file is an error, not silently ignored."""
    cfg = tmp_path / "vigil.json"
    cfg.write_text(json.dumps({"max-mesage-size": "1KiB"}))
    r = run_cli(serve_args("--config", str(cfg)))
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "max-mesage-size" in r.stderr or "max_mesage_size" in r.stderr, r.stderr


def test_config_file_not_json_exits_2(tmp_path):
    """A config file that is not JSON stops vigil with status 2 and a message about the config."""
    cfg = tmp_path / "broken.json"
    cfg.write_text('{"workers": 2,')
    r = run_cli(serve_args("--config", str(cfg)))
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "config" in r.stderr.lower() or "broken.json" in r.stderr, r.stderr


def test_missing_config_file_exits_2(tmp_path):
    """--config naming a file that does not exist is status 2 with a message naming it."""
    r = run_cli(serve_args("--config", str(tmp_path / "absent.json")))
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "absent.json" in r.stderr or "config" in r.stderr.lower(), r.stderr


# ---------------------------------------------------------------------------- sources and precedence


def test_config_file_keys_configure_the_server(vigil_factory, tmp_path):
    """A config file alone (listen, workers, echo, max-message-size) configures the server."""
    port = free_port()
    srv = vigil_factory(listen=[], workers=None, echo=False, probe=("127.0.0.1", port),
                        config={"listen": [f"127.0.0.1:{port}"], "workers": 2, "echo": True,
                                "max-message-size": "64KiB"})
    echo_roundtrip("127.0.0.1", port)
    assert_max_message_size(srv, 64 * 1024)


def test_env_vars_configure_the_server(vigil_factory):
    """VIGIL_LISTEN, VIGIL_ECHO=1 and VIGIL_MAX_MESSAGE_SIZE work without any flag."""
    port = free_port()
    srv = vigil_factory(listen=[], echo=False, probe=("127.0.0.1", port),
                        env={"VIGIL_LISTEN": f"127.0.0.1:{port}", "VIGIL_ECHO": "1",
                             "VIGIL_MAX_MESSAGE_SIZE": "2KiB"})
    echo_roundtrip("127.0.0.1", port)
    assert_max_message_size(srv, 2048)


def test_env_echo_true_enables_echo(vigil_factory):
    """VIGIL_ECHO=true is accepted like 1."""
    srv = vigil_factory(echo=False, env={"VIGIL_ECHO": "true"})
    echo_roundtrip(srv.host, srv.port)


def test_listen_flag_beats_env_beats_config(vigil_factory):
    """--listen given in all three places: only the flag's address is served."""
    p_cfg, p_env, p_flag = free_port(), free_port(), free_port()
    vigil_factory(listen=[f"127.0.0.1:{p_flag}"],
                  env={"VIGIL_LISTEN": f"127.0.0.1:{p_env}"},
                  config={"listen": [f"127.0.0.1:{p_cfg}"]})
    assert http_request("127.0.0.1", p_flag, "GET", "/healthz").status == 200
    assert_refused("127.0.0.1", p_env)
    assert_refused("127.0.0.1", p_cfg)


def test_listen_env_beats_config(vigil_factory):
    """VIGIL_LISTEN overrides the config file's listen when no flag is given."""
    p_cfg, p_env = free_port(), free_port()
    vigil_factory(listen=[], probe=("127.0.0.1", p_env),
                  env={"VIGIL_LISTEN": f"127.0.0.1:{p_env}"},
                  config={"listen": [f"127.0.0.1:{p_cfg}"]})
    assert http_request("127.0.0.1", p_env, "GET", "/healthz").status == 200
    assert_refused("127.0.0.1", p_cfg)


def test_max_message_size_flag_beats_env_beats_config(vigil_factory):
    """max-message-size from flag (4KiB) wins over env (2KiB) and config (1KiB)."""
    srv = vigil_factory("--max-message-size", "4KiB",
                        env={"VIGIL_MAX_MESSAGE_SIZE": "2KiB"},
                        config={"max-message-size": "1KiB"})
    assert_max_message_size(srv, 4096)


def test_max_message_size_env_beats_config(vigil_factory):
    """max-message-size from env (2KiB) wins over the config file (1KiB)."""
    srv = vigil_factory(env={"VIGIL_MAX_MESSAGE_SIZE": "2KiB"},
                        config={"max-message-size": "1KiB"})
    assert_max_message_size(srv, 2048)


def test_max_message_size_from_config(vigil_factory):
    """max-message-size from the config file applies when neither flag nor env sets it."""
    srv = vigil_factory(config={"max-message-size": "1KiB"})
    assert_max_message_size(srv, 1024)


@pytest.mark.parametrize("value,limit", [("3000", 3000), ("4K", 4096), ("4KiB", 4096),
                                         ("1M", 1048576), ("1MiB", 1048576)])
def test_size_suffixes_are_binary(vigil_factory, value, limit):
    """SIZE accepts plain bytes and K/KiB/M/MiB (powers of 1024), in --name=value form."""
    srv = vigil_factory(f"--max-message-size={value}")
    assert_max_message_size(srv, limit)


def test_options_in_equals_form(vigil_factory):
    """`--listen=HOST:PORT` and `--workers=N` work like the two-word form."""
    port = free_port()
    vigil_factory(f"--listen=127.0.0.1:{port}", "--workers=1", listen=[], workers=None,
                  probe=("127.0.0.1", port))
    echo_roundtrip("127.0.0.1", port)


# ---------------------------------------------------------------------------- listening


@requires_ipv6
def test_listen_on_ipv6_loopback(vigil_factory):
    """`--listen [::1]:PORT` serves HTTP and WebSocket over IPv6."""
    port = free_port("::1")
    srv = vigil_factory(listen=[f"[::1]:{port}"])
    assert (srv.host, srv.port) == ("::1", port)
    resp = http_request("::1", port, "GET", "/healthz")
    assert resp.status == 200 and resp.json() == {"status": "ok"}
    echo_roundtrip("::1", port)


def test_two_listen_addresses_both_serve(vigil_factory):
    """--listen given twice: both addresses answer HTTP and WebSocket."""
    a, b = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    vigil_factory(listen=[a, b])
    for addr in (a, b):
        host, port = split_hostport(addr)
        assert http_request(host, port, "GET", "/healthz").status == 200, addr
        echo_roundtrip(host, port, text=f"via {addr}")


@requires_ipv6
def test_ipv4_and_ipv6_listen_together(vigil_factory):
    """An IPv4 and an IPv6 --listen on one server both serve."""
    p4, p6 = free_port(), free_port("::1")
    vigil_factory(listen=[f"127.0.0.1:{p4}", f"[::1]:{p6}"])
    assert http_request("127.0.0.1", p4, "GET", "/healthz").status == 200
    assert http_request("::1", p6, "GET", "/healthz").status == 200


def test_listen_port_in_use_fails_nonzero():
    """Starting on a port that is already taken exits non-zero instead of serving nothing."""
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = run_cli(["serve", "--listen", f"127.0.0.1:{port}", "--workers", "1"], timeout=10)
    assert r.returncode != 0, r.stderr
    assert str(port) in r.stderr, r.stderr


# ---------------------------------------------------------------------------- logging


def test_log_format_json_writes_one_object_per_line(vigil_factory):
    """--log-format json: every stderr line is a JSON object with ts, level, thread, msg."""
    srv = vigil_factory("--log-format", "json", "--log-level", "debug")
    assert http_request(srv.host, srv.port, "GET", "/healthz").status == 200
    assert http_request(srv.host, srv.port, "GET", "/nope").status == 404
    assert srv.stop() == 0
    lines = [ln for ln in srv.stderr_text().splitlines() if ln.strip()]
    assert lines, "no log lines at --log-level debug"
    for ln in lines:
        obj = json.loads(ln)
        assert isinstance(obj, dict), ln
        for key in ("ts", "level", "thread", "msg"):
            assert key in obj, f"key {key!r} missing in log line {ln!r}"


def test_log_level_warning_is_quieter_than_debug(vigil_factory):
    """--log-level warning logs no debug lines (a healthy startup and a request log nothing at
    debug level)."""
    srv = vigil_factory("--log-format", "json", "--log-level", "warning")
    assert http_request(srv.host, srv.port, "GET", "/healthz").status == 200
    assert srv.stop() == 0
    for ln in srv.stderr_text().splitlines():
        if ln.strip():
            assert str(json.loads(ln)["level"]).lower() not in ("debug", "verbose", "notice"), ln


def test_data_dir_option_is_accepted(vigil_factory, tmp_path):
    """--data-dir DIR is accepted and the server serves."""
    srv = vigil_factory("--data-dir", str(tmp_path / "data"))
    assert http_request(srv.host, srv.port, "GET", "/healthz").status == 200


def test_sigterm_exit_status_zero(vigil_factory):
    """A plain SIGTERM on an idle server exits 0 (service managers treat non-zero as failure)."""
    srv = vigil_factory()
    assert srv.stop(signal.SIGTERM, timeout=5) == 0
