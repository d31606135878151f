// The Socket.IO profile (seed 004) against the stock socket.io-client 4.x: polling, websocket,
// polling upgraded to websocket, status_update from a state document, mapped channels, events
// forwarded to a backend with acks, auth, CORS, reconnection after a restart, and bad input.
//
// Each test starts its own vigil (VIGIL_BIN) on 127.0.0.1 with a free port and a temporary
// --data-dir, and stops it at the end.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import http from 'node:http';
import net from 'node:net';
import { io } from 'socket.io-client';
// socket.io-client's own engine (same version), for a slowed-down WebSocket transport.
import { NodeXHR, NodeWebSocket } from 'engine.io-client';

const BIN = process.env.VIGIL_BIN;
const API_KEY = 'test-api-key';
const TEST_TIMEOUT = 60_000;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

// Starts vigil and resolves once /healthz answers.  stop() sends SIGTERM and waits for the exit.
async function startVigil(args = [], { port, dataDir } = {}) {
  port = port ?? (await freePort());
  dataDir = dataDir ?? mkdtempSync(join(tmpdir(), 'vigil-sio-'));
  const child = spawn(
    BIN,
    ['serve', '--listen', `127.0.0.1:${port}`, '--data-dir', dataDir, '--api-key', API_KEY,
     '--profile', 'socketio', '--workers', '2', '--shutdown-timeout', '1', ...args],
    { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  child.stderr.on('data', (d) => { log += d; });
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; ; i++) {
    try {
      const r = await fetch(`${url}/healthz`);
      if (r.ok) break;
    } catch { /* not listening yet */ }
    if (child.exitCode !== null || i > 100) throw new Error(`vigil did not start:\n${log}`);
    await sleep(50);
  }
  return {
    url, port, dataDir, child,
    log: () => log,
    async stop({ keepData = false } = {}) {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
        const res = await exited;
        clearTimeout(timer);
        // A sanitizer report or a crash must fail the test that caused it.
        assert.ok(res.code === 0 || res.code === null, `vigil exited with ${res.code}:\n${log}`);
        assert.ok(!/(ERROR|WARNING): (Address|Thread|Leak)Sanitizer|runtime error:/.test(log),
                  `sanitizer report:\n${log}`);
      }
      if (!keepData) rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

async function api(v, method, path, body) {
  const r = await fetch(`${v.url}${path}`, {
    method,
    headers: { Authorization: `Bearer ${API_KEY}`, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  assert.ok(r.ok, `${method} ${path}: ${r.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

const publish = (v, channel, type, data) => api(v, 'POST', '/api/publish', { channel, type, data });

function client(v, opts = {}) {
  return io(v.url, { reconnection: false, forceNew: true, ...opts });
}

function once(emitter, event, ms = 10_000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out waiting for ${event}`)), ms);
    emitter.once(event, (...args) => { clearTimeout(timer); resolve(args); });
  });
}

async function waitFor(cond, ms = 10_000, what = 'condition') {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

// A hand-made polling client, for what the stock client never sends.
async function rawHandshake(v) {
  const r = await fetch(`${v.url}/socket.io/?EIO=4&transport=polling`);
  const text = await r.text();
  assert.equal(text[0], '0');
  return JSON.parse(text.slice(1)).sid;
}

const pollUrl = (v, sid) => `${v.url}/socket.io/?EIO=4&transport=polling&sid=${sid}`;

async function rawPost(v, sid, body) {
  const r = await fetch(pollUrl(v, sid), { method: 'POST', body });
  return { status: r.status, text: await r.text() };
}

async function rawGet(v, sid) {
  const r = await fetch(pollUrl(v, sid));
  return { status: r.status, text: await r.text() };
}

for (const transports of [['polling'], ['websocket']]) {
  test(`connects with transports ${JSON.stringify(transports)} and gets status_update`,
       { timeout: TEST_TIMEOUT }, async () => {
    const v = await startVigil(['--socketio-status-interval', '0.2']);
    const doc = { fps: 30, laser: { armed: false }, tracking: { pan: 12.5, tilt: -3 } };
    await api(v, 'PUT', '/api/state/status', doc);
    const socket = client(v, { transports });
    try {
      await once(socket, 'connect');
      assert.equal(socket.io.engine.transport.name, transports[0]);
      assert.ok(socket.id);
      const [data] = await once(socket, 'status_update');
      assert.deepEqual(data, doc);
      // Still the same transport: nothing was upgraded behind the client's back.
      await sleep(300);
      assert.equal(socket.io.engine.transport.name, transports[0]);
    } finally {
      socket.close();
      await v.stop();
    }
  });
}

test('the default client upgrades from polling to websocket', { timeout: TEST_TIMEOUT }, async () => {
  const v = await startVigil();
  const socket = client(v);
  try {
    await once(socket, 'connect');
    if (socket.io.engine.transport.name !== 'websocket')
      await once(socket.io.engine, 'upgrade');
    assert.equal(socket.io.engine.transport.name, 'websocket');
    // The session is listed like any other connection.
    const status = await api(v, 'GET', '/api/ws/status');
    assert.equal(status.statistics.total_connections, 1);
    const conns = await api(v, 'GET', '/ws/connections');
    assert.equal(conns.connections[0].endpoint, '/socket.io/');
  } finally {
    socket.close();
    await v.stop();
  }
});

test('status_update comes at the configured rate with the document and its patches',
     { timeout: TEST_TIMEOUT }, async () => {
  const v = await startVigil(['--socketio-status-interval', '0.2']);
  const doc = { fps: 25, exposure: { auto: true, value: 120 }, recording: false };
  await api(v, 'PUT', '/api/state/status', doc);
  const socket = client(v);
  const got = [];
  socket.on('status_update', (d) => got.push({ at: Date.now(), d }));
  try {
    await once(socket, 'connect');
    await sleep(200);
    const from = got.length;
    await sleep(2000);
    const count = got.length - from;
    // every 0.2 s (the feed is checked every 50 ms): about 10 in 2 s
    assert.ok(count >= 6 && count <= 14, `${count} status_update events in 2 s`);
    for (const e of got) assert.deepEqual(e.d, doc);

    await api(v, 'PATCH', '/api/state/status', { exposure: { value: 80 }, recording: true });
    const want = { fps: 25, exposure: { auto: true, value: 80 }, recording: true };
    await waitFor(() => got.length > 0 && JSON.stringify(got.at(-1).d) === JSON.stringify(want),
                  3000, 'the patched document');
    await api(v, 'PATCH', '/api/state/status', { fps: null });
    const want2 = { exposure: { auto: true, value: 80 }, recording: true };
    await waitFor(() => JSON.stringify(got.at(-1).d) === JSON.stringify(want2), 3000,
                  'the second patch');
  } finally {
    socket.close();
    await v.stop();
  }
});

// The stock WebSocket transport, slowed down so the upgrade happens while events flow: the
// probe opens 150 ms late and the "5" that completes the upgrade goes 200 ms after the probe's
// answer (the server queues events meanwhile; polling only gets noops).
class SlowUpgradeWS extends NodeWebSocket {
  doOpen() {
    setTimeout(() => { if (this.readyState === 'opening') super.doOpen(); }, 150);
  }
  write(packets) {
    if (!packets.some((p) => p.type === 'upgrade')) return super.write(packets);
    this.writable = false;
    setTimeout(() => super.write(packets), 200);
  }
}

async function countAcrossUpgrade(v, opts, N, gapMs) {
  const socket = client(v, opts);
  const seen = [];
  let upgradedAt = -1;
  socket.on('camera_event', (d) => seen.push(d.n));
  socket.io.engine.once('upgrade', () => { upgradedAt = seen.length; });
  try {
    await once(socket, 'connect');
    for (let i = 0; i < N; i++) {
      await publish(v, 'events.x', 't', { n: i });
      if (gapMs) await sleep(gapMs);
    }
    await waitFor(() => seen.length >= N, 10_000, `${N} events (got ${seen.length})`);
    await sleep(100);
    assert.deepEqual(seen, Array.from({ length: N }, (_, i) => i));
    assert.equal(socket.io.engine.transport.name, 'websocket');
    return upgradedAt;
  } finally {
    socket.close();
  }
}

test('no event is lost or duplicated across the upgrade', { timeout: TEST_TIMEOUT }, async () => {
  const v = await startVigil(['--socketio-events', 'events.>=camera_event']);
  try {
    // The stock client, as it comes: the upgrade usually completes around the first events.
    for (let round = 0; round < 3; round++)
      await countAcrossUpgrade(v, {}, 100, 0);
    // Slowed down: the upgrade is certainly in the middle of the stream.
    for (let round = 0; round < 2; round++) {
      const at = await countAcrossUpgrade(v, { transports: [NodeXHR, SlowUpgradeWS] }, 150, 4);
      assert.ok(at > 0 && at < 150, `upgraded after ${at} of 150 events`);
    }
  } finally {
    await v.stop();
  }
});

test('the client reconnects by itself after the server restarts', { timeout: TEST_TIMEOUT }, async () => {
  let v = await startVigil(['--socketio-events', 'events.>=camera_event']);
  const { port, dataDir } = v;
  const socket = io(v.url, { forceNew: true, reconnectionDelay: 200, reconnectionDelayMax: 1000 });
  try {
    await once(socket, 'connect');
    const firstId = socket.id;
    const disconnected = once(socket, 'disconnect');
    await v.stop({ keepData: true });
    await disconnected;
    v = await startVigil(['--socketio-events', 'events.>=camera_event'], { port, dataDir });
    await once(socket, 'connect', 20_000);
    assert.notEqual(socket.id, firstId);
    const got = once(socket, 'camera_event');
    await sleep(100);
    await publish(v, 'events.cam', 'motion', { after: 'restart' });
    const [d] = await got;
    assert.deepEqual(d, { after: 'restart' });
  } finally {
    socket.close();
    await v.stop();
  }
});

// A backend for --rpc-url that records the calls and answers by method.
async function startBackend() {
  const calls = [];
  const srv = http.createServer((req, res) => {
    let body = '';
    req.on('data', (d) => { body += d; });
    req.on('end', () => {
      const call = JSON.parse(body);
      calls.push({ call, auth: req.headers.authorization });
      if (call.method === 'fail') {
        res.writeHead(500, { 'Content-Type': 'application/json' });
        res.end('{"oops":true}');
        return;
      }
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ ok: true, method: call.method, params: call.params }));
    });
  });
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${srv.address().port}/rpc`, calls, close: () => srv.close() };
}

test('an emitted event reaches the backend and its result comes back through the ack',
     { timeout: TEST_TIMEOUT }, async () => {
  const backend = await startBackend();
  const v = await startVigil(['--rpc-url', backend.url]);
  for (const transports of [['polling'], ['websocket']]) {
    const socket = client(v, { transports });
    try {
      await once(socket, 'connect');
      const result = await socket.timeout(5000).emitWithAck('laser', { on: true }, 42);
      assert.deepEqual(result, { ok: true, method: 'laser', params: [{ on: true }, 42] });
      const failed = await socket.timeout(5000).emitWithAck('fail');
      assert.equal(typeof failed.error, 'string');
      // Without an ack the event still reaches the backend.
      const before = backend.calls.length;
      socket.emit('preset', 'patrol');
      await waitFor(() => backend.calls.length > before, 5000, 'the event without ack');
      assert.equal(backend.calls.at(-1).call.method, 'preset');
      assert.deepEqual(backend.calls.at(-1).call.params, ['patrol']);
      assert.equal(backend.calls.at(-1).auth, `Bearer ${API_KEY}`);
      assert.equal(backend.calls.at(-1).call.user, 'anonymous');
      // Binary arguments arrive as base64 strings.
      const bin = await socket.timeout(5000).emitWithAck('snapshot', Buffer.from([1, 2, 3, 250]));
      assert.deepEqual(bin.params, ['AQID+g==']);
    } finally {
      socket.close();
    }
  }
  await v.stop();
  backend.close();
});

test('without --rpc-url an event with an ack gets an error; events are rate limited',
     { timeout: TEST_TIMEOUT }, async () => {
  const v = await startVigil(['--max-inbound-rate', '10']);
  const socket = client(v);
  try {
    await once(socket, 'connect');
    const res = await socket.timeout(5000).emitWithAck('laser', { on: true });
    assert.match(res.error, /rpc-url/);
    socket.emit('dropped'); // no ack: dropped, the connection stays
    await sleep(1200); // the bucket refills
    // 10 per second: a burst of 15 gets 10 answers and 5 refusals, and the socket stays.
    const answers = await Promise.all(Array.from({ length: 15 },
      (_, i) => socket.timeout(5000).emitWithAck('burst', i)));
    const refused = answers.filter((a) => /rate limited/.test(a.error)).length;
    assert.ok(refused >= 4 && refused <= 6, `${refused} of 15 refused`);
    await sleep(100);
    assert.ok(socket.connected);
  } finally {
    socket.close();
    await v.stop();
  }
});

test('auth: a wrong token gets connect_error, a right one connects', { timeout: TEST_TIMEOUT }, async () => {
  const v = await startVigil(['--socketio-auth=true', '--jwt-secret', 'S3cret']);
  const good = execFileSync(BIN, ['token', '--secret', 'S3cret', '--sub', 'alice']).toString().trim();
  const bad = execFileSync(BIN, ['token', '--secret', 'other', '--sub', 'alice']).toString().trim();
  const sockets = [];
  try {
    const s1 = client(v, { auth: { token: bad } });
    sockets.push(s1);
    const [err] = await once(s1, 'connect_error');
    assert.equal(err.message, 'invalid signature');

    const s2 = client(v, { auth: {} });
    sockets.push(s2);
    const [err2] = await once(s2, 'connect_error');
    assert.equal(err2.message, 'missing token');

    const s3 = client(v, { auth: { token: good } });
    sockets.push(s3);
    await once(s3, 'connect');
    // ?token= works too (the client's query option).
    const s4 = client(v, { query: { token: good }, transports: ['websocket'] });
    sockets.push(s4);
    await once(s4, 'connect');
    const conns = await api(v, 'GET', '/ws/connections/alice');
    assert.equal(conns.connection_count, 2);
  } finally {
    for (const s of sockets) s.close();
    await v.stop();
  }
});

test('CORS on polling: the Origin is reflected with credentials, preflight answered',
     { timeout: TEST_TIMEOUT }, async () => {
  const v = await startVigil();
  try {
    const origin = 'http://turret.local:5000';
    let r = await fetch(`${v.url}/socket.io/?EIO=4&transport=polling`, { headers: { Origin: origin } });
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('access-control-allow-origin'), origin);
    assert.equal(r.headers.get('access-control-allow-credentials'), 'true');
    const sid = JSON.parse((await r.text()).slice(1)).sid;
    r = await fetch(pollUrl(v, sid), { method: 'POST', body: '40', headers: { Origin: origin } });
    assert.equal(await r.text(), 'ok');
    assert.equal(r.headers.get('access-control-allow-origin'), origin);
    r = await fetch(pollUrl(v, sid), {
      method: 'OPTIONS',
      headers: { Origin: origin, 'Access-Control-Request-Method': 'POST',
                 'Access-Control-Request-Headers': 'content-type' },
    });
    assert.equal(r.status, 204);
    assert.equal(r.headers.get('access-control-allow-origin'), origin);
    assert.match(r.headers.get('access-control-allow-methods'), /POST/);
    assert.equal(r.headers.get('access-control-allow-headers'), 'content-type');
  } finally {
    await v.stop();
  }
  const v2 = await startVigil(['--socketio-cors', 'http://good.example']);
  try {
    let r = await fetch(`${v2.url}/socket.io/?EIO=4&transport=polling`,
                        { headers: { Origin: 'http://good.example' } });
    assert.equal(r.headers.get('access-control-allow-origin'), 'http://good.example');
    await r.text();
    r = await fetch(`${v2.url}/socket.io/?EIO=4&transport=polling`,
                    { headers: { Origin: 'http://evil.example' } });
    assert.equal(r.status, 403);
    assert.deepEqual(await r.json(), { code: 4, message: 'Forbidden' });
  } finally {
    await v2.stop();
  }
});

test('engine.io errors: unknown sid, bad version, bad transport', { timeout: TEST_TIMEOUT }, async () => {
  const v = await startVigil();
  try {
    let r = await fetch(pollUrl(v, 'nope'));
    assert.equal(r.status, 400);
    assert.deepEqual(await r.json(), { code: 1, message: 'Session ID unknown' });
    r = await fetch(`${v.url}/socket.io/?EIO=3&transport=polling`);
    assert.deepEqual(await r.json(), { code: 5, message: 'Unsupported protocol version' });
    r = await fetch(`${v.url}/socket.io/?EIO=4&transport=carrier-pigeon`);
    assert.deepEqual(await r.json(), { code: 0, message: 'Transport unknown' });
    r = await fetch(`${v.url}/socket.io/?EIO=4&transport=polling`, { method: 'POST', body: '40' });
    assert.deepEqual(await r.json(), { code: 2, message: 'Bad handshake method' });
    // Another namespace is refused, the main one still connects on the same session.
    const sid = await rawHandshake(v);
    assert.equal((await rawPost(v, sid, '40/admin,')).text, 'ok');
    assert.equal((await rawGet(v, sid)).text, '44/admin,{"message":"Invalid namespace"}');
    assert.equal((await rawPost(v, sid, '40')).text, 'ok');
    assert.match((await rawGet(v, sid)).text, /^40\{"sid":"[\w-]{20}"\}$/);
    // Several packets in one POST are all read: here a pong, a noop and a binary message that
    // no binary packet announced, which closes the session.
    assert.equal((await rawPost(v, sid, '3\x1e6\x1ebAQID')).text, 'ok');
    await sleep(50);
    const r2 = await rawGet(v, sid);
    assert.ok(r2.status === 400 || r2.text === '1', `${r2.status} ${r2.text}`);
  } finally {
    await v.stop();
  }
});

test('a malformed packet closes only its own session', { timeout: TEST_TIMEOUT }, async () => {
  const v = await startVigil(['--socketio-status-interval', '0.1', '--max-message-size', '64KiB']);
  await api(v, 'PUT', '/api/state/status', { ok: true });
  const other = client(v);
  let received = 0;
  other.on('status_update', () => { received++; });
  try {
    await once(other, 'connect');
    const bad = [
      '42[broken',             // Socket.IO: broken JSON
      '4{"not":"a packet"}',   // Socket.IO: unknown packet type
      '44{"message":"x"}',     // Socket.IO: CONNECT_ERROR from a client
      '42{"not":"an array"}',  // Socket.IO: an event must be an array
      '49',                    // Socket.IO: unknown packet type
      '9hello',                // Engine.IO: unknown packet type
      '',                      // Engine.IO: empty payload
      '42["connect"]',         // Socket.IO: reserved event name
      '2',                     // Engine.IO: ping from the client (v4: only the server pings)
      'b!!!!',                 // Engine.IO: bad base64
    ];
    for (const body of bad) {
      const sid = await rawHandshake(v);
      assert.equal((await rawPost(v, sid, '40')).text, 'ok');
      assert.match((await rawGet(v, sid)).text, /^40/);
      await rawPost(v, sid, body);
      await sleep(50);
      const r = await rawGet(v, sid);
      assert.ok(r.status === 400 || r.text === '1', `after ${JSON.stringify(body)}: ${r.status} ${r.text}`);
    }
    // Oversized: over --max-message-size (maxPayload).
    const sid = await rawHandshake(v);
    const big = await rawPost(v, sid, '4' + 'x'.repeat(100 * 1024));
    assert.equal(big.status, 413);
    assert.equal((await rawGet(v, sid)).status, 400);
    // The well-behaved client never noticed.
    const before = received;
    await sleep(500);
    assert.ok(received > before, 'the other client kept receiving');
    assert.ok(other.connected);
    assert.match(v.log(), /closed: bad packet: invalid JSON/);
  } finally {
    other.close();
    await v.stop();
  }
});

test('a second concurrent poll closes the session, the held one gets a close packet',
     { timeout: TEST_TIMEOUT }, async () => {
  const v = await startVigil();
  try {
    const sid = await rawHandshake(v);
    const first = rawGet(v, sid); // held: nothing is queued
    await sleep(100);
    const second = await rawGet(v, sid);
    assert.equal(second.status, 400);
    assert.equal((await first).text, '1');
    assert.equal((await rawGet(v, sid)).status, 400);
  } finally {
    await v.stop();
  }
});

test('heartbeat: pings come every pingInterval, a silent client is dropped', { timeout: TEST_TIMEOUT }, async () => {
  const v = await startVigil(['--socketio-ping-interval', '0.3', '--socketio-ping-timeout', '0.3']);
  const socket = client(v, { transports: ['websocket'] });
  try {
    await once(socket, 'connect');
    let pings = 0;
    socket.io.engine.on('ping', () => { pings++; });
    await sleep(1500);
    assert.ok(pings >= 3 && pings <= 7, `${pings} pings in 1.5 s`);
    assert.ok(socket.connected);
    // A raw socket that never answers the ping is closed after interval + timeout (a notice:
    // it was connected; a session that never connects ends quietly, test_hostile_socketio.py).
    const sid = await rawHandshake(v);
    assert.equal((await rawPost(v, sid, '40')).text, 'ok');
    let text = '';
    while (!text.split('\x1e').includes('2')) text = (await rawGet(v, sid)).text; // 40{..}, ping
    await sleep(1000);
    const r = await rawGet(v, sid);
    assert.ok(r.status === 400 || r.text === '1', `${r.status} ${r.text}`);
    assert.match(v.log(), /closed: ping timeout/);
  } finally {
    socket.close();
    await v.stop();
  }
});

test('a request pipelined behind a held poll is answered after it, in order',
     { timeout: TEST_TIMEOUT }, async () => {
  const v = await startVigil(['--socketio-ping-interval', '0.3']);
  try {
    const sid = await rawHandshake(v);
    const sock = net.connect(v.port, '127.0.0.1');
    let data = '';
    sock.on('data', (d) => { data += d; });
    await once(sock, 'connect');
    sock.write(`GET /socket.io/?EIO=4&transport=polling&sid=${sid} HTTP/1.1\r\nHost: x\r\n\r\n` +
               'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
    await sleep(150);
    assert.equal(data, ''); // the poll is held, and /healthz waits behind it
    await waitFor(() => /"status":"ok"/.test(data), 3000, 'both answers');
    const poll = data.indexOf('\r\n\r\n2'), health = data.indexOf('{"status":"ok"}');
    assert.ok(poll > 0 && health > poll, data);
    sock.destroy();
  } finally {
    await v.stop();
  }
});
