"""Many concurrent WebSocket clients on a 2-worker server: every message is echoed exactly and
every connection closes cleanly.  (A correctness test under concurrency, not a benchmark: no
speed is asserted, only a generous overall bound.)"""

import asyncio
import os
import random
import resource
import time

import websockets

from conftest import run_async

N_CONNECTIONS = 500
N_MESSAGES = 10
SIZES = [0, 1, 125, 126, 1000, 4096, 65535, 65536, 100000, 7]
TOTAL_TIMEOUT = 120


def ensure_fd_limit(needed):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        new = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert soft == resource.RLIM_INFINITY or soft >= needed, \
        f"open file limit {soft} < {needed} needed"


def message(conn, i):
    """A deterministic message for connection `conn`, number `i`: text or binary, varied size."""
    rnd = random.Random(conn * 1000 + i)
    size = SIZES[(conn + i) % len(SIZES)]
    if (conn + i) % 2:
        alphabet = "abcdefghijklmnopqrstuvwxyzäöü€✓ 0123456789"
        return "".join(rnd.choice(alphabet) for _ in range(size // 3 + (size % 3)))
    return rnd.randbytes(size)


def open_fds(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def test_500_concurrent_echo_connections(vigil_factory):
    """500 clients connected at once each send 10 messages of varied size and type; every echo
    matches exactly; all close with 1000; the server's open descriptors return to where they
    were (nothing leaked) and it still answers /healthz."""
    ensure_fd_limit(N_CONNECTIONS * 2 + 200)
    srv = vigil_factory()
    fds_before = open_fds(srv.proc.pid)
    url = srv.ws_url("/echo")

    async def main():
        sem = asyncio.Semaphore(100)  # pace the connects; all 500 end up open together

        async def open_one():
            async with sem:
                return await websockets.connect(url, max_size=None, compression=None,
                                                open_timeout=30, close_timeout=30,
                                                ping_interval=None)

        conns = await asyncio.gather(*(open_one() for _ in range(N_CONNECTIONS)))
        try:
            assert len(conns) == N_CONNECTIONS

            async def talk(n, ws):
                for i in range(N_MESSAGES):
                    m = message(n, i)
                    await ws.send(m)
                    got = await ws.recv()
                    assert type(got) is type(m), f"conn {n} msg {i}: type {type(got)}"
                    assert got == m, f"conn {n} msg {i}: echo differs (len {len(got)} vs {len(m)})"
                return n

            done = await asyncio.gather(*(talk(n, ws) for n, ws in enumerate(conns)))
            assert sorted(done) == list(range(N_CONNECTIONS))
        finally:
            await asyncio.gather(*(ws.close() for ws in conns), return_exceptions=True)
        codes = [ws.close_code for ws in conns]
        bad = [(n, c) for n, c in enumerate(codes) if c != 1000]
        assert not bad, f"{len(bad)} connections did not close with 1000, e.g. {bad[:5]}"

    t0 = time.monotonic()
    run_async(main(), timeout=TOTAL_TIMEOUT)
    print(f"{N_CONNECTIONS} connections x {N_MESSAGES} messages in {time.monotonic() - t0:.1f} s")

    # Every connection's resources are released once the clients are gone.
    if fds_before is not None:
        deadline = time.monotonic() + 10
        while True:
            now_fds = open_fds(srv.proc.pid)
            if now_fds is not None and now_fds <= fds_before + 5:
                break
            assert time.monotonic() < deadline, \
                f"server holds {now_fds} descriptors after all clients closed (was {fds_before})"
            time.sleep(0.2)
    assert srv.http("GET", "/healthz").status == 200


def test_connect_churn(vigil_factory):
    """2000 short connections (open, one echo, close), 50 at a time, all succeed and leave no
    descriptors behind."""
    ensure_fd_limit(500)
    srv = vigil_factory()
    fds_before = open_fds(srv.proc.pid)
    url = srv.ws_url("/echo")

    async def main():
        sem = asyncio.Semaphore(50)

        async def one(n):
            async with sem:
                async with websockets.connect(url, compression=None, open_timeout=30,
                                              ping_interval=None) as ws:
                    await ws.send(f"churn {n}")
                    assert await ws.recv() == f"churn {n}"
                return ws.close_code

        codes = await asyncio.gather(*(one(n) for n in range(2000)))
        assert codes == [1000] * 2000

    run_async(main(), timeout=TOTAL_TIMEOUT)
    if fds_before is not None:
        deadline = time.monotonic() + 10
        while (open_fds(srv.proc.pid) or 0) > fds_before + 5:
            assert time.monotonic() < deadline, \
                f"server holds {open_fds(srv.proc.pid)} descriptors (was {fds_before})"
            time.sleep(0.2)
