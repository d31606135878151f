"""Shared fixtures and helpers for vigil's black-box integration tests.

Everything here talks to a real `vigil serve` process over sockets:

* ``vigil_factory(*args, ...)`` starts a fresh server (free 127.0.0.1 port, ``--workers 2 --echo``
  plus ``args``), waits for ``GET /healthz`` and stops it with SIGTERM on teardown.
* ``vigil`` is a server with the default options, shared by the tests of one module (every test
  checks afterwards that it is still alive).
* ``shared_vigil(*args)`` is the same for a non-default argument list.
* ``HttpConn`` / ``http_request`` speak HTTP/1.1 on a raw socket (clients normalise paths and
  refuse malformed requests; these do not).
* ``RawWS`` is a WebSocket client on a plain socket that can send arbitrary (bad) frames.

Tests run under Debian's /usr/bin/python3 (python3-pytest, python3-websockets 10.4) with
VIGIL_BIN pointing at the binary.
"""

import asyncio
import base64
import dataclasses
import hashlib
import json
import os
import pathlib
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time

import pytest

HERE = pathlib.Path(__file__).resolve().parent
DEFAULT_BIN = HERE.parents[1] / "build" / "vigil"
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

START_TIMEOUT = 10.0  # seconds to wait for /healthz after starting the server
STOP_TIMEOUT = 10.0  # seconds to wait after SIGTERM before SIGKILL

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def vigil_bin():
    return os.environ.get("VIGIL_BIN") or str(DEFAULT_BIN)


_sanitized = None


def sanitizer_build():
    """True when the binary under test is built with AddressSanitizer or ThreadSanitizer, whose
    allocators keep freed memory resident (ASan's quarantine, TSan's shadow): tests then print
    their RSS budgets instead of asserting them.  The attack still runs, and under ASan
    LeakSanitizer fails the test on a leak when the server exits; the gcc build asserts them."""
    global _sanitized
    if _sanitized is None:
        with open(vigil_bin(), "rb") as f:
            data = f.read()
        _sanitized = b"AddressSanitizer" in data or b"ThreadSanitizer" in data
    return _sanitized


def assert_rss_budget(ok, message):
    """An RSS budget: asserted, except in a sanitizer build (see sanitizer_build), where it is
    printed."""
    print(message)
    if not sanitizer_build():
        assert ok, message


# --------------------------------------------------------------------------------------------
# Ports, environment, processes


def free_port(host="127.0.0.1"):
    """A port that was free a moment ago (bind port 0, read it, close)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def ipv6_available():
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


requires_ipv6 = pytest.mark.skipif(not ipv6_available(), reason="no IPv6 loopback (::1)")


def clean_env(extra=None):
    """The test's environment without any VIGIL_* variable (VIGIL_BIN would otherwise reach the
    server as an option), plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
    env.update(extra or {})
    return env


def split_hostport(addr):
    """'127.0.0.1:80' -> ('127.0.0.1', 80); '[::1]:80' -> ('::1', 80)."""
    host, _, port = addr.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def fmt_hostport(host, port):
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def run_cli(args, env=None, timeout=10, cwd=None):
    """Runs `vigil ARGS` to completion; fails the test if it is still running after `timeout`
    (e.g. a bad option that was accepted and the server started serving)."""
    cmd = [vigil_bin(), *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=clean_env(env),
                            cwd=cwd or tempfile.mkdtemp(prefix="vigil-cli-"))  # own ./vigil-data
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"`{' '.join(cmd)}` did not exit within {timeout} s\n"
                    f"stdout: {out.decode(errors='replace')}\nstderr: {err.decode(errors='replace')}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out.decode(errors="replace"),
                                       err.decode(errors="replace"))


CRASH_SIGNALS = {-signal.SIGSEGV, -signal.SIGABRT, -signal.SIGBUS, -signal.SIGILL, -signal.SIGFPE}
CRASH_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                 "WARNING: ThreadSanitizer")


class VigilServer:
    """One `vigil serve` process."""

    def __init__(self, args, env, listen, probe, workdir):
        self.args = list(args)
        self.env = env
        self.listen = listen  # list of "host:port" (may be empty when set by env/config)
        self.probe = probe  # (host, port) polled for /healthz
        self.host, self.port = probe
        self.workdir = workdir
        self.stderr_path = os.path.join(workdir, "stderr.log")
        self.stdout_path = os.path.join(workdir, "stdout.log")
        self.proc = None
        self.stopped = False  # stopped on purpose (by the test or the fixture)

    # -- lifecycle
    def start(self, wait=True):
        cmd = [vigil_bin(), "serve", *self.args]
        self.cmd = cmd
        with open(self.stderr_path, "wb") as err, open(self.stdout_path, "wb") as out:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                         env=self.env, cwd=self.workdir)
        if wait:
            self.wait_healthy()
        return self

    def wait_healthy(self, timeout=START_TIMEOUT):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            rc = self.proc.poll()
            if rc is not None:
                self.stopped = True
                pytest.fail(f"vigil exited with status {rc} before answering /healthz\n"
                            f"command: {' '.join(self.cmd)}\nstderr:\n{self.stderr_text()}")
            try:
                resp = http_request(self.host, self.port, "GET", "/healthz", timeout=1)
                if resp.status == 200:
                    return
                last = f"status {resp.status}"
            except (OSError, EOFError, ValueError) as e:
                last = repr(e)
            time.sleep(0.05)
        pytest.fail(f"vigil did not answer GET /healthz on {self.host}:{self.port} within "
                    f"{timeout} s (last: {last})\ncommand: {' '.join(self.cmd)}\n"
                    f"stderr:\n{self.stderr_text()}")

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def send_signal(self, sig):
        """Signals the server (the test then owns its exit: no "died unexpectedly" check)."""
        self.stopped = True
        self.proc.send_signal(sig)

    def wait(self, timeout):
        """Waits for the process to exit; returns its status or None on timeout."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, sig=signal.SIGTERM, timeout=STOP_TIMEOUT):
        """Sends `sig`, waits up to `timeout` s, then SIGKILLs.  Returns the exit status."""
        self.stopped = True
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(sig)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                self.killed = True
        return self.proc.returncode

    def crash_report(self):
        """A description of a crash (fatal signal or sanitizer report), or None."""
        rc = self.proc.returncode if self.proc else None
        text = self.stderr_text()
        if rc in CRASH_SIGNALS:
            return f"vigil died with signal {-rc}"
        for m in CRASH_MARKERS:
            if m in text:
                return f"vigil stderr contains {m!r}"
        return None

    # -- output
    def stderr_text(self, tail=None):
        try:
            with open(self.stderr_path, "rb") as f:
                data = f.read()
        except OSError:
            return ""
        if tail is not None and len(data) > tail:
            data = b"...\n" + data[-tail:]
        return data.decode(errors="replace")

    # -- addresses
    def url(self, path="/"):
        return f"http://{fmt_hostport(self.host, self.port)}{path}"

    def ws_url(self, path="/echo"):
        return f"ws://{fmt_hostport(self.host, self.port)}{path}"

    def http(self, method, path, **kw):
        return http_request(self.host, self.port, method, path, **kw)

    def conn(self, timeout=10):
        return HttpConn(self.host, self.port, timeout=timeout)

    def raw_ws(self, path="/echo", **kw):
        return RawWS.connect(self.host, self.port, path=path, **kw)


def _make_server(args=(), echo=True, workers=2, listen=None, env=None, config=None,
                 probe=None, wait=True):
    """Builds and starts a server.

    listen: None -> one free 127.0.0.1 port; a list of "host:port" -> one --listen each;
            [] -> no --listen flag (then give `probe`).
    config: a dict written to a JSON file passed with --config.
    env:    VIGIL_* variables for the server (the test's own VIGIL_* are removed).
    """
    workdir = tempfile.mkdtemp(prefix="vigil-it-")
    if listen is None:
        listen = [f"127.0.0.1:{free_port()}"]
    full = []
    for addr in listen:
        full += ["--listen", addr]
    if workers is not None:
        full += ["--workers", str(workers)]
    if echo:
        full.append("--echo")
    if config is not None:
        path = os.path.join(workdir, "vigil.json")
        with open(path, "w") as f:
            json.dump(config, f)
        full += ["--config", path]
    full += list(args)
    if probe is None:
        if not listen:
            raise ValueError("give probe=(host, port) when not passing --listen")
        probe = split_hostport(listen[0])
    srv = VigilServer(full, clean_env(env), listen, probe, workdir)
    srv.start(wait=False)
    if wait:
        try:
            srv.wait_healthy()
        except BaseException:
            srv.stop(sig=signal.SIGKILL)
            raise
    return srv


def _stop_and_check(srv):
    """Stops a server; returns a crash description or None.  Prints its stderr on a crash."""
    died_early = srv.proc is not None and srv.proc.poll() is not None and not srv.stopped
    rc_before = srv.proc.returncode if died_early else None
    srv.stop()
    problem = srv.crash_report()
    if died_early and problem is None:
        problem = f"vigil exited unexpectedly during the test (status {rc_before})"
    if problem:
        print(f"\n----- vigil stderr ({' '.join(srv.cmd)}) -----\n{srv.stderr_text(tail=20000)}")
    if not problem:
        shutil.rmtree(srv.workdir, ignore_errors=True)
    return problem


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Attaches the stderr of every server the test used to the report of a failed test."""
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        for srv in getattr(item, "_vigil_servers", []):
            rep.sections.append((f"vigil stderr ({' '.join(srv.cmd)})",
                                 srv.stderr_text(tail=20000)))


@pytest.fixture
def vigil_factory(request):
    """Starts fresh servers for this test: vigil_factory(*extra_args, echo=True, workers=2,
    listen=None, env=None, config=None, probe=None, wait=True).  Stopped (SIGTERM, then
    SIGKILL after 10 s) on teardown; a crash fails the test."""
    servers = []
    if not hasattr(request.node, "_vigil_servers"):
        request.node._vigil_servers = []

    def factory(*args, **kw):
        srv = _make_server(args, **kw)
        servers.append(srv)
        request.node._vigil_servers.append(srv)
        return srv

    yield factory
    problems = [p for p in (_stop_and_check(s) for s in servers) if p]
    if problems:
        pytest.fail("; ".join(problems))


@pytest.fixture(scope="module")
def _shared_pool():
    pool = {}
    yield pool
    problems = [p for p in (_stop_and_check(s) for s in pool.values()) if p]
    if problems:
        pytest.fail("; ".join(problems))


@pytest.fixture
def shared_vigil(request, _shared_pool):
    """shared_vigil(*extra_args) -> a server with `--workers 2 --echo *extra_args` shared by the
    tests of this module.  After each test the server must still be running; if it died it is
    reported and replaced for the next test."""
    used = []
    if not hasattr(request.node, "_vigil_servers"):
        request.node._vigil_servers = []

    def get(*args):
        key = tuple(args)
        srv = _shared_pool.get(key)
        if srv is None or not srv.alive():
            srv = _make_server(args)
            _shared_pool[key] = srv
        used.append(srv)
        request.node._vigil_servers.append(srv)
        return srv

    yield get
    problems = []
    for srv in used:
        if not srv.alive():
            rc = srv.proc.returncode
            problems.append(srv.crash_report() or f"vigil exited during the test (status {rc})")
            srv.stopped = True
    if problems:
        pytest.fail("; ".join(problems))


@pytest.fixture
def vigil(shared_vigil):
    """The module's default server: `vigil serve --listen 127.0.0.1:PORT --workers 2 --echo`."""
    return shared_vigil()


# --------------------------------------------------------------------------------------------
# HTTP on a raw socket


@dataclasses.dataclass
class HttpResponse:
    status: int
    reason: str
    headers: list  # [(name, value)] in order, names as sent
    body: bytes
    raw_head: bytes = b""

    def header(self, name, default=None):
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return default

    def header_all(self, name):
        name = name.lower()
        return [v for k, v in self.headers if k.lower() == name]

    def header_tokens(self, name):
        """All comma-separated tokens of every `name` header, stripped, as given."""
        out = []
        for v in self.header_all(name):
            out += [t.strip() for t in v.split(",") if t.strip()]
        return out

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    @property
    def content_type(self):
        return (self.header("Content-Type") or "").split(";")[0].strip().lower()


def build_request(method, path, headers=None, body=b"", host="127.0.0.1", content_length=True):
    """Bytes of one HTTP/1.1 request.  `headers` is a dict or list of pairs; Host is added unless
    present; Content-Length is added for a non-empty body (or POST/PUT/PATCH) unless present."""
    if isinstance(body, str):
        body = body.encode()
    pairs = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
    names = {k.lower() for k, _ in pairs}
    if "host" not in names:
        pairs.insert(0, ("Host", host))
    if content_length and "content-length" not in names and "transfer-encoding" not in names \
            and (body or method in ("POST", "PUT", "PATCH")):
        pairs.append(("Content-Length", str(len(body))))
    head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in pairs) + "\r\n"
    return head.encode("latin-1") + body


class HttpConn:
    """An HTTP/1.1 connection on a raw socket, with a read buffer so that several (pipelined)
    responses can be read one after the other."""

    def __init__(self, host, port, timeout=10, sock=None):
        self.host, self.port = host, port
        self.timeout = timeout
        self.sock = sock or socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.eof = False
        self.reset = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def send(self, data):
        if isinstance(data, str):
            data = data.encode("latin-1")
        self.sock.sendall(data)

    def request(self, method, path, headers=None, body=b"", timeout=None):
        self.send(build_request(method, path, headers, body, host=self.host))
        return self.read_response(head=(method == "HEAD"), timeout=timeout)

    def _fill(self, deadline):
        """Reads more bytes into buf.  Returns False at EOF (or reset)."""
        if self.eof:
            return False
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("timed out waiting for data from vigil")
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(1 << 16)
        except socket.timeout:
            raise TimeoutError("timed out waiting for data from vigil") from None
        except ConnectionResetError:
            self.reset = True
            data = b""
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def _read_until(self, marker, deadline):
        while marker not in self.buf:
            if not self._fill(deadline):
                raise EOFError(f"connection closed before {marker!r} (buffered {self.buf[:200]!r})")
        i = self.buf.index(marker) + len(marker)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def _read_exact(self, n, deadline):
        while len(self.buf) < n:
            if not self._fill(deadline):
                raise EOFError(f"connection closed after {len(self.buf)} of {n} body bytes")
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_response(self, head=False, timeout=None):
        """Reads one response.  head=True: the request was HEAD (no body follows)."""
        deadline = time.monotonic() + (timeout or self.timeout)
        raw = self._read_until(b"\r\n\r\n", deadline)
        lines = raw[:-4].decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
            raise ValueError(f"bad status line {lines[0]!r}")
        status = int(parts[1])
        reason = parts[2] if len(parts) > 2 else ""
        headers = []
        for line in lines[1:]:
            k, sep, v = line.partition(":")
            if not sep:
                raise ValueError(f"bad header line {line!r}")
            headers.append((k.strip(), v.strip()))
        resp = HttpResponse(status, reason, headers, b"", raw)
        if head or status // 100 == 1 or status in (204, 304):
            return resp
        te = (resp.header("Transfer-Encoding") or "").lower()
        cl = resp.header("Content-Length")
        if "chunked" in te:
            body = b""
            while True:
                size_line = self._read_until(b"\r\n", deadline)
                size = int(size_line.split(b";")[0].strip(), 16)
                if size == 0:
                    while self._read_until(b"\r\n", deadline) != b"\r\n":
                        pass  # trailers
                    break
                body += self._read_exact(size, deadline)
                self._read_exact(2, deadline)
            resp.body = body
        elif cl is not None:
            resp.body = self._read_exact(int(cl), deadline)
        else:
            while self._fill(deadline):
                pass
            resp.body, self.buf = self.buf, b""
        return resp

    def read_until_eof(self, timeout=5):
        """Reads until the peer closes (EOF or reset); returns what was read.  Raises
        TimeoutError if the connection is still open after `timeout` s."""
        deadline = time.monotonic() + timeout
        while self._fill(deadline):
            pass
        out, self.buf = self.buf, b""
        return out


def parse_response(data, head=False):
    """Parses one complete HTTP response from bytes already received."""
    c = HttpConn.__new__(HttpConn)
    c.host, c.port, c.timeout, c.sock = None, None, 1, None
    c.buf, c.eof, c.reset = data, True, False
    return c.read_response(head=head)


def http_request(host, port, method, path, headers=None, body=b"", timeout=10):
    """One request on a new connection; returns the HttpResponse."""
    with HttpConn(host, port, timeout=timeout) as c:
        return c.request(method, path, headers=headers, body=body)


def assert_json_error(resp, status):
    """The response has `status` and a JSON error body {"error":{"code":str,"message":str}}."""
    assert resp.status == status, f"expected {status}, got {resp.status} {resp.reason}: {resp.body[:300]!r}"
    assert resp.content_type == "application/json", \
        f"error Content-Type is {resp.header('Content-Type')!r}"
    doc = resp.json()
    assert isinstance(doc, dict) and isinstance(doc.get("error"), dict), f"body {doc!r}"
    assert isinstance(doc["error"].get("code"), str) and doc["error"]["code"], f"body {doc!r}"
    assert isinstance(doc["error"].get("message"), str) and doc["error"]["message"], f"body {doc!r}"
    return doc


# --------------------------------------------------------------------------------------------
# WebSocket on a raw socket


def ws_accept(key):
    return base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()


def new_ws_key():
    return base64.b64encode(os.urandom(16)).decode()


def apply_mask(data, key):
    n = len(data)
    if n == 0:
        return b""
    k = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(k, "big")).to_bytes(n, "big")


def build_frame(opcode, payload=b"", fin=True, rsv=0, mask=True, mask_key=None, length=None):
    """Bytes of one frame.  rsv is a 3-bit value (4 = RSV1, 2 = RSV2, 1 = RSV3).  `length`
    overrides the length written in the header (the payload is still what is given)."""
    if isinstance(payload, str):
        payload = payload.encode()
    b0 = (0x80 if fin else 0) | ((rsv & 7) << 4) | (opcode & 0xF)
    n = len(payload) if length is None else length
    mbit = 0x80 if mask else 0
    if n < 126:
        hdr = bytes([b0, mbit | n])
    elif n < 65536:
        hdr = bytes([b0, mbit | 126]) + struct.pack("!H", n)
    else:
        hdr = bytes([b0, mbit | 127]) + struct.pack("!Q", n)
    if mask:
        key = mask_key if mask_key is not None else os.urandom(4)
        return hdr + key + apply_mask(payload, key)
    return hdr + payload


def close_payload(code=None, reason=b""):
    if code is None:
        return b""
    if isinstance(reason, str):
        reason = reason.encode()
    return struct.pack("!H", code) + reason


@dataclasses.dataclass
class Frame:
    fin: bool
    rsv: int
    opcode: int
    payload: bytes
    masked: bool
    minimal_length: bool  # the length used the shortest encoding (RFC 6455 5.2)

    @property
    def close_code(self):
        return struct.unpack("!H", self.payload[:2])[0] if len(self.payload) >= 2 else None

    @property
    def close_reason(self):
        return self.payload[2:]

    def __repr__(self):
        p = self.payload if len(self.payload) <= 40 else self.payload[:40] + b"..."
        return (f"Frame(fin={self.fin}, rsv={self.rsv}, opcode={self.opcode:#x}, "
                f"len={len(self.payload)}, payload={p!r})")


class ConnectionEnded(EOFError):
    """The server closed the TCP connection (EOF or reset)."""


class RawWS:
    """A WebSocket client on a plain socket: does the handshake with HttpConn, then sends any
    frame (masked or not, RSV bits, any opcode, fragmented, split into pieces with delays) and
    reads the server's frames, checking that they are unmasked and minimally encoded."""

    def __init__(self, host, port, timeout=10, sock=None):
        self.http = HttpConn(host, port, timeout=timeout, sock=sock)
        self.sock = self.http.sock
        self.timeout = timeout
        self.response = None

    @classmethod
    def connect(cls, host, port, path="/echo", headers=None, timeout=10, protocols=None):
        ws = cls(host, port, timeout=timeout)
        resp = ws.handshake(path, headers=headers, protocols=protocols)
        assert resp.status == 101, \
            f"handshake on {path}: expected 101, got {resp.status}: {resp.body[:300]!r}"
        return ws

    def handshake(self, path="/echo", key=None, version="13", headers=None, protocols=None,
                  omit=()):
        """Sends an upgrade request and reads the response.  On 101 the Sec-WebSocket-Accept
        header is checked.  `omit` lists header names to leave out."""
        key = key if key is not None else new_ws_key()
        hdrs = [("Upgrade", "websocket"), ("Connection", "Upgrade"),
                ("Sec-WebSocket-Key", key), ("Sec-WebSocket-Version", version)]
        if protocols:
            hdrs.append(("Sec-WebSocket-Protocol", protocols))
        hdrs = [(k, v) for k, v in hdrs if k.lower() not in {o.lower() for o in omit}]
        hdrs += list(headers.items()) if isinstance(headers, dict) else list(headers or [])
        self.http.send(build_request("GET", path, hdrs, host=self.http.host))
        resp = self.http.read_response()
        self.response = resp
        if resp.status == 101:
            assert (resp.header("Upgrade") or "").lower() == "websocket", resp.headers
            assert "upgrade" in [t.lower() for t in resp.header_tokens("Connection")], resp.headers
            assert resp.header("Sec-WebSocket-Accept") == ws_accept(key), \
                f"Sec-WebSocket-Accept {resp.header('Sec-WebSocket-Accept')!r} for key {key!r}"
        return resp

    # -- sending
    def send_raw(self, data, chunk=None, delay=0.0):
        """Sends bytes, optionally `chunk` bytes at a time with `delay` s between pieces."""
        if not chunk:
            self.sock.sendall(data)
            return
        for i in range(0, len(data), chunk):
            try:
                self.sock.sendall(data[i:i + chunk])
            except (BrokenPipeError, ConnectionResetError):
                return  # the server gave up on us early; what it sent is checked by the caller
            if delay:
                time.sleep(delay)

    def send_frame(self, opcode, payload=b"", *, fin=True, rsv=0, mask=True, length=None,
                   chunk=None, delay=0.0):
        self.send_raw(build_frame(opcode, payload, fin=fin, rsv=rsv, mask=mask, length=length),
                      chunk=chunk, delay=delay)

    def send_text(self, text, **kw):
        self.send_frame(OP_TEXT, text.encode() if isinstance(text, str) else text, **kw)

    def send_binary(self, data, **kw):
        self.send_frame(OP_BINARY, data, **kw)

    def send_close(self, code=None, reason=b"", **kw):
        self.send_frame(OP_CLOSE, close_payload(code, reason), **kw)

    def send_ping(self, payload=b"", **kw):
        self.send_frame(OP_PING, payload, **kw)

    # -- receiving
    def _need(self, n, deadline):
        while len(self.http.buf) < n:
            if not self.http._fill(deadline):
                raise ConnectionEnded(
                    f"connection ended mid-frame ({len(self.http.buf)} of {n} bytes buffered)"
                    if self.http.buf else "connection ended")
        return self.http.buf

    def recv_frame(self, timeout=None):
        """Reads one frame.  Raises ConnectionEnded on EOF/reset, TimeoutError on timeout."""
        deadline = time.monotonic() + (timeout or self.timeout)
        buf = self._need(2, deadline)
        b0, b1 = buf[0], buf[1]
        masked = bool(b1 & 0x80)
        n = b1 & 0x7F
        pos = 2
        minimal = True
        if n == 126:
            buf = self._need(4, deadline)
            n = struct.unpack("!H", buf[2:4])[0]
            pos = 4
            minimal = n >= 126
        elif n == 127:
            buf = self._need(10, deadline)
            n = struct.unpack("!Q", buf[2:10])[0]
            pos = 10
            minimal = n >= 65536
        key = None
        if masked:
            buf = self._need(pos + 4, deadline)
            key = buf[pos:pos + 4]
            pos += 4
        buf = self._need(pos + n, deadline)
        payload = buf[pos:pos + n]
        self.http.buf = buf[pos + n:]
        if masked:
            payload = apply_mask(payload, key)
        f = Frame(bool(b0 & 0x80), (b0 >> 4) & 7, b0 & 0xF, payload, masked, minimal)
        assert not f.masked, f"server frame is masked: {f!r}"
        assert f.rsv == 0, f"server frame has RSV bits set: {f!r}"
        assert f.minimal_length, f"server frame length not minimally encoded: {f!r}"
        return f

    def recv_message(self, timeout=None):
        """Reads one data message (reassembling fragments); returns (opcode, payload).  Fails if
        a close frame arrives instead (its code is in the message)."""
        deadline = time.monotonic() + (timeout or self.timeout)
        opcode, parts = None, []
        while True:
            f = self.recv_frame(timeout=max(0.001, deadline - time.monotonic()))
            if f.opcode == OP_CLOSE:
                raise AssertionError(f"expected a message, got a close frame: code "
                                     f"{f.close_code} reason {f.close_reason!r}")
            if f.opcode in (OP_PING, OP_PONG):
                continue
            if opcode is None:
                assert f.opcode in (OP_TEXT, OP_BINARY), f"unexpected frame {f!r}"
                opcode = f.opcode
            else:
                assert f.opcode == OP_CONT, f"expected continuation, got {f!r}"
            parts.append(f.payload)
            if f.fin:
                return opcode, b"".join(parts)

    def expect_close(self, timeout=None, allow_data=False):
        """Reads until a close frame; returns (code, reason_bytes).  Data frames before it fail
        the test unless allow_data.  Fails if the TCP connection ends without a close frame."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            try:
                f = self.recv_frame(timeout=max(0.001, deadline - time.monotonic()))
            except ConnectionEnded as e:
                raise AssertionError(f"TCP connection ended without a close frame ({e})") from None
            except TimeoutError:
                raise AssertionError(
                    f"no close frame within {timeout or self.timeout} s") from None
            if f.opcode == OP_CLOSE:
                return f.close_code, f.close_reason
            if f.opcode in (OP_PING, OP_PONG):
                continue
            assert allow_data, f"expected a close frame, got {f!r}"

    def expect_eof(self, timeout=5):
        """The server closes TCP within `timeout` s and sends nothing more."""
        deadline = time.monotonic() + timeout
        try:
            while self.http._fill(deadline):
                pass
        except TimeoutError:
            raise AssertionError(f"TCP connection still open {timeout} s after the close") from None
        assert self.http.buf == b"", f"bytes after the close frame: {self.http.buf[:100]!r}"

    def expect_fail(self, code, timeout=5):
        """The server fails the connection: a close frame with `code`, then TCP closes."""
        got, reason = self.expect_close(timeout=timeout)
        assert got == code, f"expected close code {code}, got {got} (reason {reason!r})"
        self.expect_eof(timeout=timeout)
        return reason

    def close(self):
        self.http.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# --------------------------------------------------------------------------------------------
# asyncio helpers for python websockets


def run_async(coro, timeout=60):
    """Runs a coroutine to completion, failing the test after `timeout` s."""
    async def bounded():
        return await asyncio.wait_for(coro, timeout)
    return asyncio.run(bounded())
