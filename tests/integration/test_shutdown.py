"""Graceful shutdown (SIGTERM/SIGINT) and the slow-consumer limit: what operators rely on during
deploys and what keeps one bad client from eating the server's memory."""

import os
import select
import signal
import socket
import time

import pytest

from conftest import (OP_BINARY, OP_CLOSE, OP_TEXT, ConnectionEnded, HttpConn, RawWS,
                      build_frame, http_request)

MIB = 1024 * 1024


def open_echo_clients(srv, n):
    clients = []
    for i in range(n):
        ws = srv.raw_ws()
        ws.send_text(f"hello {i}")
        assert ws.recv_message() == (OP_TEXT, f"hello {i}".encode())
        clients.append(ws)
    return clients


def connect_refused(host, port):
    """True if a new connection is refused (or dropped before any HTTP answer)."""
    try:
        with HttpConn(host, port, timeout=2) as c:
            c.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            try:
                resp = c.read_response(timeout=2)
            except (EOFError, TimeoutError):
                return True
            return resp.status != 200
    except OSError:
        return True


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("client_answers", [True, False], ids=["polite", "silent"])
def test_signal_closes_websockets_with_1001_and_exits_0(vigil_factory, sig, client_answers):
    """On SIGTERM/SIGINT every open WebSocket gets close 1001 and the TCP connection ends; the
    process exits with status 0 within 5 s, whether the clients answer the close or not."""
    srv = vigil_factory()
    clients = open_echo_clients(srv, 5)
    t0 = time.monotonic()
    srv.send_signal(sig)
    try:
        for i, ws in enumerate(clients):
            code, reason = ws.expect_close(timeout=5)
            assert code == 1001, f"client {i}: close code {code} reason {reason!r}"
            if client_answers:
                try:
                    ws.send_close(1001)
                except OSError:
                    pass
        for ws in clients:
            ws.expect_eof(timeout=6)
        rc = srv.wait(timeout=max(0.5, t0 + 6 - time.monotonic()))
        elapsed = time.monotonic() - t0
        assert rc is not None, "vigil still running 6 s after the signal"
        assert rc == 0, f"exit status {rc}"
        assert elapsed < 6, f"exited after {elapsed:.1f} s"
    finally:
        for ws in clients:
            ws.close()
    assert connect_refused(srv.host, srv.port)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_idle_server_exits_0_on_signal(vigil_factory, sig):
    """An idle server exits 0 promptly on SIGTERM/SIGINT."""
    srv = vigil_factory()
    srv.send_signal(sig)
    assert srv.wait(timeout=5) == 0


def test_shutdown_with_idle_http_connections(vigil_factory):
    """Idle keep-alive HTTP connections and a half-sent request do not hold up shutdown."""
    srv = vigil_factory()
    idle = srv.conn()
    assert idle.request("GET", "/healthz").status == 200
    half = srv.conn()
    half.send(b"GET /heal")
    fresh = srv.conn()  # connected, nothing sent
    try:
        srv.send_signal(signal.SIGTERM)
        assert srv.wait(timeout=6) == 0
        for c in (idle, half, fresh):
            c.read_until_eof(timeout=2)
    finally:
        for c in (idle, half, fresh):
            c.close()


def test_new_connections_refused_during_shutdown(vigil_factory):
    """After SIGTERM (while a silent WebSocket client is still being closed) no new connection
    gets served."""
    srv = vigil_factory()
    [ws] = open_echo_clients(srv, 1)
    try:
        srv.send_signal(signal.SIGTERM)
        code, _ = ws.expect_close(timeout=5)
        assert code == 1001
        deadline = time.monotonic() + 2
        while not connect_refused(srv.host, srv.port):
            assert time.monotonic() < deadline, "still accepting 2 s after starting shutdown"
            time.sleep(0.1)
        assert srv.wait(timeout=6) == 0
    finally:
        ws.close()


def test_shutdown_with_many_websockets(vigil_factory):
    """100 open WebSockets all get 1001 and the process still exits 0 within 5 s."""
    srv = vigil_factory()
    clients = [srv.raw_ws() for _ in range(100)]
    try:
        t0 = time.monotonic()
        srv.send_signal(signal.SIGTERM)
        codes = [ws.expect_close(timeout=6)[0] for ws in clients]
        assert codes == [1001] * 100
        rc = srv.wait(timeout=max(0.5, t0 + 6 - time.monotonic()))
        assert rc == 0, f"exit status {rc}"
    finally:
        for ws in clients:
            ws.close()


# ---------------------------------------------------------------------------- slow consumer


def flood_without_reading(sock, frame, max_bytes, max_seconds, stall_seconds=5):
    """Sends `frame` repeatedly on a non-blocking socket, never reading, until max_bytes or
    max_seconds, or until no progress for stall_seconds, or until the peer resets.  Returns
    (bytes_sent, how_it_ended)."""
    sock.setblocking(False)
    sent = 0
    pending = b""
    t_end = time.monotonic() + max_seconds
    last_progress = time.monotonic()
    try:
        while sent < max_bytes:
            now = time.monotonic()
            if now > t_end:
                return sent, "time limit"
            if now - last_progress > stall_seconds:
                return sent, "server stopped reading"
            if not pending:
                pending = frame
            try:
                n = sock.send(pending)
            except BlockingIOError:
                select.select([], [sock], [], 0.2)
                continue
            except (BrokenPipeError, ConnectionResetError):
                return sent, "connection closed by server"
            pending = pending[n:]
            sent += n
            last_progress = time.monotonic()
        return sent, "byte limit"
    finally:
        sock.setblocking(True)


def test_slow_consumer_closed_with_1008(vigil_factory):
    """A client that keeps sending 64 KiB echo messages but never reads is disconnected once
    the server's queue for it exceeds --max-outbound: after the echoed data it finds close 1008
    "slow consumer" (or at least the connection ends).  The server stays healthy."""
    srv = vigil_factory("--max-outbound", "64KiB")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)  # small window: back up fast
    sock.settimeout(10)
    sock.connect((srv.host, srv.port))
    ws = RawWS(srv.host, srv.port, sock=sock)
    try:
        assert ws.handshake("/echo").status == 101
        frame = build_frame(OP_BINARY, os.urandom(64 * 1024))
        sent, ended = flood_without_reading(sock, frame, max_bytes=64 * MIB, max_seconds=30)

        # Now read everything: echoes, then (ideally) the close frame, then EOF.
        echoed = 0
        close = None
        t_end = time.monotonic() + 30
        try:
            while time.monotonic() < t_end:
                f = ws.recv_frame(timeout=max(0.1, t_end - time.monotonic()))
                if f.opcode == OP_CLOSE:
                    close = (f.close_code, f.close_reason)
                    break
                echoed += len(f.payload)
        except ConnectionEnded:
            pass
        except TimeoutError:
            pytest.fail(f"connection still open: sent {sent} bytes ({ended}), got {echoed} "
                        f"echoed bytes and no close within 30 s")
        assert echoed < sent, f"everything ({sent} bytes) was echoed: the client was never cut off"
        if close is not None:
            assert close == (1008, b"slow consumer"), f"close frame {close}"
            ws.expect_eof(timeout=5)
        print(f"sent {sent} bytes ({ended}); echoed {echoed}; close frame {close}")
    finally:
        ws.close()
    # The server is fine and serves others.
    assert http_request(srv.host, srv.port, "GET", "/healthz").status == 200
    with srv.raw_ws() as ok:
        ok.send_binary(b"after the slow consumer")
        assert ok.recv_message() == (OP_BINARY, b"after the slow consumer")


def test_slow_consumer_does_not_affect_other_clients(vigil_factory):
    """While one client floods without reading, another client's echoes keep flowing."""
    srv = vigil_factory("--max-outbound", "64KiB")
    bad = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    bad.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
    bad.settimeout(10)
    bad.connect((srv.host, srv.port))
    bad_ws = RawWS(srv.host, srv.port, sock=bad)
    good = srv.raw_ws()
    try:
        assert bad_ws.handshake("/echo").status == 101
        frame = build_frame(OP_BINARY, os.urandom(64 * 1024))
        flood_without_reading(bad, frame, max_bytes=16 * MIB, max_seconds=15)
        for i in range(20):
            good.send_text(f"good {i}")
            assert good.recv_message(timeout=5) == (OP_TEXT, f"good {i}".encode())
    finally:
        bad_ws.close()
        good.close()
