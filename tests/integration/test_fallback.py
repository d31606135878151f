"""Fallback transports for networks that block WebSocket: Server-Sent Events with Last-Event-ID
recovery, and long-polling that answers at once when data waits and after the timeout otherwise.
"""

import json
import socket
import threading
import time
import urllib.error
import urllib.request

API_KEY = "fallback-key"


def publish(srv, channel, values):
    body = {"messages": [{"channel": channel, "type": "t", "data": v} for v in values]}
    req = urllib.request.Request(srv.url("/api/publish"), data=json.dumps(body).encode(),
                                 headers={"Authorization": f"Bearer {API_KEY}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())["offsets"]


def start(vigil_factory, *extra):
    return vigil_factory("--allow-anonymous", "--api-key", API_KEY, "--max-connections-per-user",
                         "20", *extra)


class SSE:
    """A minimal EventSource on a raw socket."""

    def __init__(self, srv, query, last_event_id=None):
        port = int(srv.url("/").rsplit(":", 1)[1].split("/")[0])
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        hdr = f"GET /api/sse?{query} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n"
        if last_event_id:
            hdr += f"Last-Event-ID: {last_event_id}\r\n"
        self.sock.sendall((hdr + "\r\n").encode())
        self.buf = b""
        head = self._until(b"\r\n\r\n")
        self.status = int(head.split(b" ")[1])

    def _until(self, sep):
        while sep not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError
            self.buf += data
        out, self.buf = self.buf.split(sep, 1)
        return out

    def event(self):
        while True:
            block = self._until(b"\n\n").decode()
            fields = {}
            for line in block.split("\n"):
                if line.startswith(":") or not line:
                    continue
                k, _, v = line.partition(": ")
                fields[k] = v
            if "data" in fields:
                return fields["id"], json.loads(fields["data"])

    def close(self):
        self.sock.close()


def test_sse_stream_and_last_event_id(vigil_factory):
    srv = start(vigil_factory)
    es = SSE(srv, "channels=cam.a,alerts.*")
    assert es.status == 200
    publish(srv, "cam.a", [1, 2])
    publish(srv, "alerts.x", ["boom"])
    got = [es.event() for _ in range(3)]
    assert [i for i, _ in got] == ["cam.a:1", "cam.a:2", "alerts.x:1"]
    assert got[2][1]["data"] == "boom" and got[2][1]["channel"] == "alerts.x"
    es.close()
    # Away: three more; the reconnect with Last-Event-ID gets exactly those, then live ones.
    publish(srv, "cam.a", [3, 4, 5])
    es = SSE(srv, "channels=cam.a", last_event_id="cam.a:2")
    publish(srv, "cam.a", [6])
    got = [es.event() for _ in range(4)]
    assert [m["offset"] for _, m in got] == [3, 4, 5, 6]
    es.close()


def test_sse_refusals(vigil_factory):
    srv = vigil_factory("--jwt-secret", "s", "--api-key", API_KEY)
    for query, status in (("channels=a", 401), ("channels=a&token=garbage", 401)):
        es = SSE(srv, query)
        assert es.status == status
        es.close()
    srv2 = start(vigil_factory)
    assert SSE(srv2, "channels=bad..name").status == 400
    assert SSE(srv2, "").status == 400


def poll(srv, query, timeout=15):
    with urllib.request.urlopen(srv.url(f"/api/poll?{query}"), timeout=timeout) as r:
        return json.loads(r.read())


def test_poll_returns_at_once_when_data_waits(vigil_factory):
    srv = start(vigil_factory)
    first = poll(srv, "channels=p.a&timeout=0")
    assert first == {"messages": [], "since": "p.a:0"}
    publish(srv, "p.a", ["x", "y"])
    t0 = time.monotonic()
    got = poll(srv, f"channels=p.a&since={first['since']}&timeout=10")
    assert time.monotonic() - t0 < 5
    assert [m["data"] for m in got["messages"]] == ["x", "y"]
    assert got["since"] == "p.a:2"


def test_poll_reports_every_channel_that_has_nothing_yet(vigil_factory):
    """The first poll gives a position for each channel it names, 0 for those with nothing
    published yet, so the next poll names them all and a first message published between two
    polls is not lost (only the first of them was reported before)."""
    srv = start(vigil_factory)
    first = poll(srv, "channels=z.a,z.b,z.c&timeout=0")
    assert first == {"messages": [], "since": "z.a:0,z.b:0,z.c:0"}
    publish(srv, "z.b", ["first of z.b"])
    got = poll(srv, f"channels=z.a,z.b,z.c&since={first['since']}&timeout=0")
    assert [m["data"] for m in got["messages"]] == ["first of z.b"]
    assert got["since"] == "z.a:0,z.b:1,z.c:0"


def test_poll_holds_until_a_message_or_the_timeout(vigil_factory):
    srv = start(vigil_factory)
    t0 = time.monotonic()
    got = poll(srv, "channels=h.a&since=h.a:0&timeout=1")
    waited = time.monotonic() - t0
    assert got == {"messages": [], "since": "h.a:0"}
    assert 0.8 <= waited < 5, waited
    timer = threading.Timer(0.5, publish, args=(srv, "h.a", ["late"]))
    timer.start()
    t0 = time.monotonic()
    got = poll(srv, "channels=h.a&since=h.a:0&timeout=10")
    timer.join()
    assert [m["data"] for m in got["messages"]] == ["late"]
    assert time.monotonic() - t0 < 5
    assert got["since"] == "h.a:1"


def test_poll_loop_loses_nothing(vigil_factory):
    """A client polling in a loop while a publisher runs sees every offset once, in order."""
    srv = start(vigil_factory, "--history-size", "1000")
    since = poll(srv, "channels=l.a&timeout=0")["since"]
    done = threading.Event()

    def publisher():
        for i in range(0, 300, 10):
            publish(srv, "l.a", range(i, i + 10))
            time.sleep(0.01)
        done.set()

    threading.Thread(target=publisher).start()
    seen = []
    deadline = time.monotonic() + 30
    while len(seen) < 300 and time.monotonic() < deadline:
        got = poll(srv, f"channels=l.a&since={since}&timeout=2")
        seen += [m["data"] for m in got["messages"]]
        since = got["since"]
    assert seen == list(range(300))


def test_poll_bad_requests(vigil_factory):
    srv = start(vigil_factory)
    for query in ("channels=a.b&since=zzz", "channels=a.b&since=c.d:1", "channels=a.b&timeout=999",
                  "channels=a..b"):
        try:
            poll(srv, query)
            assert False, query
        except urllib.error.HTTPError as e:
            assert e.code == 400, (query, e.code)
