"""Helpers for the hub integration tests (test_auth, test_hub, test_limits, test_heartbeat,
test_admin): token minting independent of vigil (PyJWT + cryptography, plus hand-made tokens for
the attacks PyJWT refuses to build), an asyncio client for the native /ws protocol, a raw-socket
check for refused WebSockets, and JSON HTTP calls.

The contract is docs/PROTOCOL.md.  Server flags live in HUB_ARGS / hub_args() so that a rename
only needs one edit here.
"""

import asyncio
import base64
import datetime
import hashlib
import hmac
import itertools
import json
import os
import re
import tempfile
import time
import urllib.parse
import uuid

import jwt
import websockets
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from conftest import OP_CLOSE, OP_TEXT, ConnectionEnded, RawWS, assert_json_error

SECRET = "it-hub-secret-7c1e0f5a93b24d8e9a61c0ffee42beef"
OTHER_SECRET = "it-hub-other-secret-000000000000000000000000"
API_KEY = "it-hub-api-key-3b9d2f71c4a8e6"

# What every hub server in these tests gets (plus test-specific flags).
HUB_ARGS = ("--jwt-secret", SECRET, "--api-key", API_KEY)


def hub_args(*extra, secret=True, api_key=True):
    args = []
    if secret:
        args += ["--jwt-secret", SECRET]
    if api_key:
        args += ["--api-key", API_KEY]
    return tuple(args) + tuple(extra)


def uniq(prefix="u"):
    """A user or channel segment no other test uses (tests share servers)."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


# --------------------------------------------------------------------------------------------
# Tokens


def b64url(data):
    if isinstance(data, str):
        data = data.encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_claims(sub="alice", *, ttl=3600, exp=None, nbf=None, iat=True, admin=None,
                channels=None, iss=None, aud=None, extra=None):
    now = int(time.time())
    c = {}
    if sub is not None:
        c["sub"] = sub
    if iat:
        c["iat"] = now
    if exp is not None:
        c["exp"] = int(exp)
    elif ttl is not None:
        c["exp"] = now + int(ttl)
    if nbf is not None:
        c["nbf"] = int(nbf)
    if admin is not None:
        c["admin"] = admin
    if channels is not None:
        c["channels"] = list(channels)
    if iss is not None:
        c["iss"] = iss
    if aud is not None:
        c["aud"] = aud
    c.update(extra or {})
    return c


def mint(sub="alice", *, key=SECRET, alg="HS256", headers=None, **claim_kw):
    """A token signed by PyJWT.  key: the HMAC secret or a private key object."""
    tok = jwt.encode(make_claims(sub, **claim_kw), key, algorithm=alg, headers=headers)
    return tok if isinstance(tok, str) else tok.decode()


def admin_token(sub=None, **kw):
    return mint(sub or uniq("admin"), admin=True, **kw)


def signing_input(header, claims):
    return f"{b64url(json.dumps(header, separators=(',', ':')))}." \
           f"{b64url(json.dumps(claims, separators=(',', ':')))}"


def raw_token(header, claims, signature=b""):
    """A token with any header (e.g. alg none) and the given signature bytes."""
    return f"{signing_input(header, claims)}.{b64url(signature)}"


def hmac_token(header, claims, key_bytes, digest=hashlib.sha256):
    """HMAC-signed by hand, with any key bytes (PyJWT refuses a PEM public key as an HMAC secret,
    which is exactly the algorithm-confusion attack)."""
    si = signing_input(header, claims)
    return f"{si}.{b64url(hmac.new(key_bytes, si.encode(), digest).digest())}"


def _write_pem(pem, name):
    d = tempfile.mkdtemp(prefix="vigil-it-keys-")
    path = os.path.join(d, name)
    with open(path, "wb") as f:
        f.write(pem)
    return path


def public_pem(private_key):
    return private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def rsa_key():
    """(private key, public PEM bytes, path of the public PEM file)."""
    k = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = public_pem(k)
    return k, pem, _write_pem(pem, "rsa_pub.pem")


def ec_key(curve=None):
    k = ec.generate_private_key(curve or ec.SECP256R1())
    pem = public_pem(k)
    return k, pem, _write_pem(pem, "ec_pub.pem")


# --------------------------------------------------------------------------------------------
# Formats

RFC3339_MS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


def parse_ts(s):
    """Seconds since the epoch of an RFC 3339 UTC string with milliseconds (fails otherwise)."""
    assert isinstance(s, str) and RFC3339_MS.match(s), \
        f"timestamp {s!r} is not RFC 3339 UTC with milliseconds (2026-11-22T05:00:00.123Z)"
    dt = datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ")
    return dt.replace(tzinfo=datetime.timezone.utc).timestamp()


def assert_recent_ts(s, slack=300):
    t = parse_ts(s)
    assert abs(t - time.time()) < slack, f"timestamp {s!r} is far from now"
    return t


def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def is_num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


# --------------------------------------------------------------------------------------------
# HTTP


def api(srv, method, path, body=None, *, token=None, api_key=None, x_api_key=None,
        headers=None, timeout=10):
    """One HTTP request.  body: dict/list (sent as JSON), str/bytes (sent as is) or None."""
    hdrs = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
    if token is not None:
        hdrs.append(("Authorization", f"Bearer {token}"))
    if api_key is not None:
        hdrs.append(("Authorization", f"Bearer {api_key}"))
    if x_api_key is not None:
        hdrs.append(("X-API-Key", x_api_key))
    raw = b""
    if body is not None:
        raw = body if isinstance(body, (bytes, str)) else json.dumps(body)
        if not any(k.lower() == "content-type" for k, _ in hdrs):
            hdrs.append(("Content-Type", "application/json"))
    return srv.http(method, path, headers=hdrs, body=raw, timeout=timeout)


def ok_json(resp, status=200):
    assert resp.status == status, \
        f"expected {status}, got {resp.status} {resp.reason}: {resp.body[:500]!r}"
    assert resp.content_type == "application/json", \
        f"Content-Type {resp.header('Content-Type')!r}"
    return resp.json()


def assert_unauthorized(resp, reason=None):
    doc = assert_json_error(resp, 401)
    assert doc["error"]["code"] == "unauthorized", doc
    if reason is not None:
        assert doc["error"]["message"] == reason, \
            f"401 message {doc['error']['message']!r}, expected {reason!r}"
    return doc


def assert_forbidden(resp):
    doc = assert_json_error(resp, 403)
    assert doc["error"]["code"] == "forbidden", doc
    return doc


def publish(srv, channel, type_="event", data=None, *, key=API_KEY):
    """POST /api/publish one message; returns its offset."""
    resp = api(srv, "POST", "/api/publish",
               {"channel": channel, "type": type_, "data": {} if data is None else data},
               api_key=key)
    doc = ok_json(resp)
    assert isinstance(doc.get("offsets"), list) and len(doc["offsets"]) == 1, doc
    assert is_int(doc["offsets"][0]), doc
    return doc["offsets"][0]


def publish_batch(srv, messages, *, key=API_KEY):
    doc = ok_json(api(srv, "POST", "/api/publish", {"messages": messages}, api_key=key))
    assert isinstance(doc.get("offsets"), list) and len(doc["offsets"]) == len(messages), doc
    assert all(is_int(o) for o in doc["offsets"]), doc
    return doc["offsets"]


# --------------------------------------------------------------------------------------------
# Prometheus text


_METRIC_LINE = re.compile(
    r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+([-+]?(?:[0-9.eE+-]+|NaN|Inf|\+Inf|-Inf))'
    r'(\s+-?\d+)?$')


def parse_metrics(text):
    """{name: sum of its samples over all label sets}; fails on a line that is not Prometheus
    text format."""
    sums = {}
    types = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        if line.startswith("#"):
            parts = line.split()
            if len(parts) >= 4 and parts[1] == "TYPE":
                types[parts[2]] = parts[3]
            continue
        m = _METRIC_LINE.match(line)
        assert m, f"not a Prometheus sample line: {line!r}"
        sums[m.group(1)] = sums.get(m.group(1), 0.0) + float(m.group(3))
    return sums, types


def metrics(srv):
    resp = srv.http("GET", "/metrics")
    assert resp.status == 200, f"/metrics: {resp.status} {resp.body[:300]!r}"
    return parse_metrics(resp.body.decode())[0]


# --------------------------------------------------------------------------------------------
# Refused WebSockets (raw socket, so that the exact close frame is seen)


def ws_path(token=None, ticket=None, path="/ws", **query):
    q = {}
    if token is not None:
        q["token"] = token
    if ticket is not None:
        q["ticket"] = ticket
    q.update(query)
    return path + ("?" + urllib.parse.urlencode(q) if q else "")


def ws_close_after_handshake(srv, path="/ws", headers=None, timeout=5):
    """Upgrades (must be 101), then reads until the server's close frame.  Returns
    (code, reason str, [text messages before the close])."""
    ws = RawWS.connect(srv.host, srv.port, path=path, headers=headers, timeout=timeout)
    texts = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                f = ws.recv_frame(timeout=max(0.001, deadline - time.monotonic()))
            except ConnectionEnded as e:
                raise AssertionError(f"TCP closed without a close frame ({e}); "
                                     f"messages: {texts}") from None
            except TimeoutError:
                raise AssertionError(f"no close frame within {timeout} s; messages: {texts}") \
                    from None
            if f.opcode == OP_CLOSE:
                try:
                    ws.send_close(f.close_code or 1000)
                except OSError:
                    pass
                return f.close_code, f.close_reason.decode("utf-8", "replace"), texts
            if f.opcode == OP_TEXT:
                texts.append(f.payload.decode("utf-8", "replace"))
    finally:
        ws.close()


def assert_ws_refused(srv, reason, path="/ws", headers=None, code=1008, strict=True):
    """The upgrade completes (101) and the server then closes with `code` and exactly `reason`.
    strict: no `connection_status` "connected" message is sent to a refused client."""
    got, why, texts = ws_close_after_handshake(srv, path=path, headers=headers)
    assert (got, why) == (code, reason), \
        f"expected close {code} {reason!r}, got {got} {why!r} (messages before: {texts})"
    if strict:
        for t in texts:
            try:
                m = json.loads(t)
            except ValueError:
                continue
            assert not (isinstance(m, dict) and m.get("status") == "connected"), \
                f"refused client was told it is connected: {t}"
    return texts


# --------------------------------------------------------------------------------------------
# The native protocol over python websockets (asyncio)


def is_published(msg):
    return isinstance(msg, dict) and "channel" in msg and "offset" in msg


def same_json(a, b):
    """JSON equality that tells true from 1 and 1 from 1.0."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


class WSClosed(AssertionError):
    def __init__(self, code, reason):
        super().__init__(f"connection closed by vigil: code {code} reason {reason!r}")
        self.code, self.reason = code, reason


class HubClient:
    """One /ws connection.  Answers to requests are matched by `id`; published messages that
    arrive meanwhile are kept in `inbox` for published()/collect()."""

    _ids = itertools.count(1)

    def __init__(self, ws):
        self.ws = ws
        self.inbox = []
        self.status = None

    @property
    def connection_id(self):
        return self.status.get("connection_id") if self.status else None

    async def _recv(self, timeout):
        try:
            raw = await asyncio.wait_for(self.ws.recv(), max(0.001, timeout))
        except websockets.ConnectionClosed:
            raise WSClosed(self.ws.close_code, self.ws.close_reason) from None
        assert isinstance(raw, str), f"binary message from /ws: {raw[:100]!r}"
        if raw == "pong":
            return {"_text": "pong"}
        try:
            return json.loads(raw)
        except ValueError:
            raise AssertionError(f"/ws sent a message that is not JSON: {raw[:300]!r}") from None

    async def recv(self, timeout=5):
        if self.inbox:
            return self.inbox.pop(0)
        return await self._recv(timeout)

    async def send(self, obj):
        await self.ws.send(obj if isinstance(obj, (str, bytes)) else json.dumps(obj))

    async def answer(self, rid, timeout=5):
        for i, m in enumerate(self.inbox):
            if isinstance(m, dict) and not is_published(m) and "id" in m \
                    and same_json(m["id"], rid):
                return self.inbox.pop(i)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no answer with id {rid!r} within {timeout} s "
                                     f"(other messages: {self.inbox[-5:]})")
            try:
                m = await self._recv(left)
            except asyncio.TimeoutError:
                continue
            if isinstance(m, dict) and not is_published(m) and "id" in m \
                    and same_json(m["id"], rid):
                return m
            self.inbox.append(m)

    async def request(self, obj, timeout=5):
        """Sends a request (adds a fresh numeric id unless it has one) and returns its answer."""
        obj = dict(obj)
        obj.setdefault("id", next(self._ids))
        await self.send(obj)
        return await self.answer(obj["id"], timeout)

    async def subscribe(self, channels=None, event_types=None, expect="subscribed", **kw):
        req = {"type": "subscribe"}
        if channels is not None:
            req["channels"] = channels
        if event_types is not None:
            req["event_types"] = event_types
        req.update(kw)
        ans = await self.request(req)
        if expect:
            assert ans.get("type") == expect, f"subscribe {req} answered {ans}"
        return ans

    async def unsubscribe(self, channels=None, event_types=None):
        req = {"type": "unsubscribe"}
        if channels is not None:
            req["channels"] = channels
        if event_types is not None:
            req["event_types"] = event_types
        ans = await self.request(req)
        assert ans.get("type") == "unsubscribed", f"unsubscribe {req} answered {ans}"
        return ans

    async def ping(self, timeout=5):
        """A {"type":"ping"} round trip (proves the connection is open and served)."""
        ans = await self.request({"type": "ping"}, timeout=timeout)
        assert ans.get("type") == "pong", ans
        return ans

    async def published(self, n=1, timeout=5):
        """The next n published messages (other messages are skipped, kept in `other`)."""
        out = []
        deadline = time.monotonic() + timeout
        while len(out) < n:
            pub = [m for m in self.inbox if is_published(m)]
            if pub:
                m = pub[0]
                self.inbox.remove(m)
                out.append(m)
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"got {len(out)} of {n} published messages within "
                                     f"{timeout} s: {out[-3:]}")
            try:
                m = await self._recv(left)
            except asyncio.TimeoutError:
                continue
            if is_published(m):
                out.append(m)
            else:
                self.inbox.append(m)
        return out

    async def collect_until(self, pred, timeout=5, linger=0.3):
        """Published messages up to and including the first one for which pred(msg) holds,
        plus whatever else arrives within `linger` s after it."""
        out = []
        deadline = time.monotonic() + timeout
        while True:
            (m,) = await self.published(1, timeout=max(0.001, deadline - time.monotonic()))
            out.append(m)
            if pred(m):
                break
        out += await self.drain(linger)
        return out

    async def drain(self, duration):
        """Published messages arriving within `duration` s."""
        out = [m for m in self.inbox if is_published(m)]
        self.inbox = [m for m in self.inbox if not is_published(m)]
        end = time.monotonic() + duration
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return out
            try:
                m = await self._recv(left)
            except asyncio.TimeoutError:
                return out
            if is_published(m):
                out.append(m)
            else:
                self.inbox.append(m)

    async def wait_closed(self, timeout=5):
        """Reads until vigil closes the connection; returns (code, reason, messages before)."""
        seen = []
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"connection still open after {timeout} s "
                                     f"(messages: {seen[-5:]})")
            try:
                seen.append(await self._recv(left))
            except WSClosed as e:
                return e.code, e.reason, seen
            except asyncio.TimeoutError:
                continue

    async def close(self):
        try:
            await asyncio.wait_for(self.ws.close(), 5)
        except (asyncio.TimeoutError, OSError):
            pass

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.close()


async def connect(srv, token=None, *, ticket=None, headers=None, origin=None, path="/ws",
                  query=None, expect_status=True, timeout=10):
    """Opens /ws (python websockets: answers pings itself, sends none) and, unless
    expect_status=False, reads and checks the `connection_status` welcome."""
    url = srv.ws_url(ws_path(token, ticket, path, **(query or {})))
    ws = await websockets.connect(url, extra_headers=headers, origin=origin, ping_interval=None,
                                  open_timeout=timeout, close_timeout=5, max_size=None,
                                  compression=None, max_queue=None)
    c = HubClient(ws)
    if expect_status:
        try:
            msg = await c._recv(timeout)
        except BaseException:
            await c.close()
            raise
        assert isinstance(msg, dict) and msg.get("type") == "connection_status", \
            f"first message is not connection_status: {msg}"
        c.status = msg
    return c


async def connect_many(srv, tokens, **kw):
    return list(await asyncio.gather(*(connect(srv, t, **kw) for t in tokens)))


async def close_all(clients):
    await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)


async def eventually(fn, timeout=5, interval=0.05):
    """Polls the sync predicate fn() (run in a thread) until it returns a truthy value."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = await asyncio.get_running_loop().run_in_executor(None, fn)
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s (last: {last!r})")


def wait_for(fn, timeout=5, interval=0.05):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s (last: {last!r})")
