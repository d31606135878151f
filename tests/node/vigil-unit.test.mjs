// vigil.js with a fake clock, a fake WebSocket and a fake fetch: backoff timing and jitter bounds,
// the stable-connection reset, fallback after quick failures or a refused upgrade, heartbeat
// dead-socket detection, token refresh before exp. No real waiting, no server.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Vigil, backoffDelay, matchChannel, mergePatch, decodeJwt } from '../../web/vigil.js';

const flush = async () => { for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r)); };

class FakeClock {
  constructor() { this.t = 1_000_000; this.timers = new Map(); this.seq = 0; }
  now = () => this.t;
  setTimeout = (fn, ms) => { const id = ++this.seq; this.timers.set(id, { fn, at: this.t + Math.max(0, ms | 0) }); return id; };
  clearTimeout = (id) => { this.timers.delete(id); };
  /** Runs every timer due within `ms`, in time order, letting promises settle in between. */
  async advance(ms) {
    const end = this.t + ms;
    await flush();
    for (;;) {
      let next = null;
      for (const [id, tm] of this.timers) if (tm.at <= end && (!next || tm.at < next[1].at || (tm.at === next[1].at && id < next[0]))) next = [id, tm];
      if (!next) break;
      this.timers.delete(next[0]);
      this.t = next[1].at;
      next[1].fn();
      await flush();
    }
    this.t = end;
  }
}

/** A WebSocket the test drives: `behavior(ws)` decides what happens once it is created. */
function fakeWebSocket(behavior) {
  const sockets = [];
  class FakeWS {
    constructor(url) {
      this.url = url; this.readyState = 0; this.sent = []; this.listeners = {}; this.closedByClient = null;
      sockets.push(this);
      queueMicrotask(() => behavior(this));
    }
    addEventListener(type, fn) { (this.listeners[type] ||= []).push(fn); }
    fire(type, ev) { for (const fn of this.listeners[type] || []) fn(ev); }
    send(text) { this.sent.push(text); }
    close(code, reason) { this.closedByClient = { code, reason }; this.serverClose(code ?? 1005, reason || ''); }
    terminate() { this.closedByClient = { code: 1006 }; this.serverClose(1006, ''); }
    // test side
    open(user = 'alice') { this.readyState = 1; this.fire('open', {}); this.push({ type: 'connection_status', status: 'connected', connection_id: '1', user: { id: user, username: user } }); }
    push(obj) { this.fire('message', { data: typeof obj === 'string' ? obj : JSON.stringify(obj) }); }
    fail(message = 'connect ECONNREFUSED') { this.fire('error', { message }); this.serverClose(1006, ''); }
    serverClose(code, reason) { if (this.readyState === 3) return; this.readyState = 3; this.fire('close', { code, reason }); }
    sentJson() { return this.sent.filter((s) => s.startsWith('{')).map((s) => JSON.parse(s)); }
  }
  return { FakeWS, sockets };
}

/** Answers subscribe requests like the server (positions for exact channels). */
function autoSubscribe(ws) {
  const orig = ws.send.bind(ws);
  ws.send = (text) => {
    orig(text);
    const req = JSON.parse(text);
    if (req.type === 'subscribe') queueMicrotask(() => ws.push({ type: 'subscribed', id: req.id, channels: req.channels, event_types: [], positions: {} }));
  };
}

function unsignedJwt(payload) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  return `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64(payload)}.sig`;
}

function makeClient(clock, FakeWS, extra = {}) {
  return new Vigil('http://vigil.test:8000', {
    token: 't', WebSocket: FakeWS, fetch: extra.fetch || (async () => { throw new Error('offline'); }),
    now: clock.now, setTimeout: clock.setTimeout, clearTimeout: clock.clearTimeout,
    ...extra,
  });
}

test('pure helpers: channel patterns, merge patch, JWT payload, backoff formula', () => {
  assert.ok(matchChannel('cameras.*', 'cameras.cam-1'));
  assert.ok(!matchChannel('cameras.*', 'cameras.cam-1.events'));
  assert.ok(matchChannel('cameras.>', 'cameras.cam-1.events'));
  assert.ok(!matchChannel('cameras.>', 'cameras'));
  assert.ok(matchChannel('>', 'a'));
  assert.ok(matchChannel('a.*.c', 'a.b.c'));
  assert.ok(!matchChannel('a.b', 'a.b.c'));
  const doc = { a: 1, b: { c: 2, d: 3 }, e: [1] };
  const out = mergePatch(doc, { b: { c: null, x: 9 }, e: { y: 1 }, f: 'new' });
  assert.deepEqual(out, { a: 1, b: { d: 3, x: 9 }, e: { y: 1 }, f: 'new' });
  assert.deepEqual(doc, { a: 1, b: { c: 2, d: 3 }, e: [1] }, 'the target is left untouched');
  assert.deepEqual(decodeJwt(unsignedJwt({ sub: 'ünï', exp: 42 })), { sub: 'ünï', exp: 42 });
  assert.equal(decodeJwt('garbage'), null);
  assert.equal(backoffDelay(0, {}, () => 0.5), 500);
  assert.equal(backoffDelay(3, {}, () => 0.5), 4000);
  assert.equal(backoffDelay(10, {}, () => 0.999), 29970);
  assert.equal(backoffDelay(2, { initial: 100, factor: 3, max: 500 }, () => 0.5), 250);
});

test('backoff: delays between attempts follow the formula exactly with a fixed random()', async () => {
  const clock = new FakeClock();
  const times = [];
  const { FakeWS } = fakeWebSocket((ws) => { times.push(clock.now()); ws.fail(); });
  const v = makeClient(clock, FakeWS, { random: () => 0.5, transports: ['websocket'], maxAttempts: 1000 });
  await clock.advance(120_000);
  v.close();
  const gaps = times.slice(1).map((t, i) => t - times[i]);
  const expected = [500, 1000, 2000, 4000, 8000, 15000, 15000, 15000];
  assert.deepEqual(gaps.slice(0, expected.length), expected);
  assert.equal(v.status, 'offline');
});

test('backoff: jitter covers the range and never exceeds the cap (configurable initial/max/factor)', async () => {
  const clock = new FakeClock();
  const times = [];
  const { FakeWS } = fakeWebSocket((ws) => { times.push(clock.now()); ws.fail(); });
  let seed = 7;
  const random = () => { seed = (seed * 16807) % 2147483647; return (seed - 1) / 2147483646; };
  const v = makeClient(clock, FakeWS, { random, transports: ['websocket'], maxAttempts: 1e9, backoff: { initial: 200, max: 3000, factor: 3 } });
  await clock.advance(300_000);
  v.close();
  const gaps = times.slice(1).map((t, i) => t - times[i]);
  assert.ok(gaps.length > 100, `${gaps.length} attempts`);
  gaps.forEach((g, n) => {
    const cap = Math.min(3000, 200 * 3 ** n);
    assert.ok(g >= 0 && g < cap, `attempt ${n}: delay ${g} outside [0, ${cap})`);
  });
  const late = gaps.slice(5);
  assert.ok(Math.min(...late) < 600 && Math.max(...late) > 2400, 'full jitter spreads delays over the whole range');
});

test('backoff resets after a connection that lasted stableAfter', async () => {
  const clock = new FakeClock();
  const times = [];
  const plan = ['fail', 'fail', 'fail', 'live', 'fail', 'fail', 'live'];
  const { FakeWS, sockets } = fakeWebSocket((ws) => {
    times.push(clock.now());
    ws.step = plan.shift() || 'fail';
    if (ws.step === 'fail') ws.fail();
    else { autoSubscribe(ws); ws.open(); }
  });
  const statuses = [];
  const v = makeClient(clock, FakeWS, { random: () => 0.999, transports: ['websocket'], maxAttempts: 100, stableAfter: 10000, heartbeat: 1e9, onStatus: (s) => statuses.push(s) });
  await clock.advance(8000); // failures, then delays 999, 1998, 3996, then live
  assert.deepEqual(times.slice(1, 4).map((t, i) => t - times[i]), [999, 1998, 3996]);
  assert.equal(v.status, 'live');
  await clock.advance(10_000); // lasted stableAfter
  sockets[3].serverClose(1001, 'going away');
  const closedAt = clock.now();
  await clock.advance(8000);
  assert.deepEqual([times[4] - closedAt, times[5] - times[4], times[6] - times[5]], [999, 1998, 3996],
    'the backoff started over from the initial cap');
  assert.equal(v.status, 'live');
  assert.deepEqual(statuses, ['live', 'connecting', 'live']);
  v.close();
});

test('a short-lived connection does not reset the backoff', async () => {
  const clock = new FakeClock();
  const times = [];
  const plan = ['fail', 'fail', 'live', 'fail'];
  const { FakeWS, sockets } = fakeWebSocket((ws) => {
    times.push(clock.now());
    const step = plan.shift() || 'fail';
    if (step === 'fail') ws.fail();
    else { autoSubscribe(ws); ws.open(); ws.step = 'live'; }
  });
  const v = makeClient(clock, FakeWS, { random: () => 0.999, transports: ['websocket'], maxAttempts: 100, stableAfter: 10000, heartbeat: 1e9 });
  await clock.advance(3500); // 999 + 1998
  const live = sockets.find((w) => w.step === 'live');
  assert.ok(live);
  await clock.advance(2000); // lasted 2 s < stableAfter
  live.serverClose(1008, 'disconnected by an administrator');
  const closedAt = clock.now();
  await clock.advance(5000);
  assert.equal(times[3] - closedAt, 3996, 'the backoff went on growing (attempt 3: cap 4000)');
  v.close();
});

test('after maxAttempts quick WebSocket failures: SSE, then long-poll; status polling; probes WebSocket back', async () => {
  const clock = new FakeClock();
  let wsMode = 'fail';
  const { FakeWS, sockets } = fakeWebSocket((ws) => {
    if (wsMode === 'fail') ws.fail();
    else { autoSubscribe(ws); ws.open(); }
  });
  const requests = [];
  const fetch = async (url, init) => {
    requests.push(url);
    if (url.includes('/api/sse')) throw new TypeError('fetch failed'); // a proxy that breaks SSE too
    if (url.includes('/api/poll')) {
      if (!url.includes('timeout=0')) { // held like the server does, until the client aborts it
        await new Promise((resolve, reject) => {
          clock.setTimeout(resolve, 25000);
          init.signal.addEventListener('abort', () => reject(new Error('aborted')));
        });
      }
      return new Response(JSON.stringify({ messages: [{ type: 'x', channel: 'c.1', offset: 1, timestamp: '2026-01-01T00:00:00.000Z', data: {} }], since: 'c.1:1' }), { status: 200 });
    }
    return new Response('{}', { status: 404 });
  };
  const statuses = [];
  const got = [];
  const v = makeClient(clock, FakeWS, { fetch, random: () => 0.5, onStatus: (s) => statuses.push(s), probeInterval: 30000, heartbeat: 1e9 });
  v.subscribe('c.*', (m) => got.push(m.offset));
  await clock.advance(2000); // 3 WebSocket failures (0.5 s, 1 s apart), then SSE fails, then poll
  assert.equal(sockets.length, 3, 'three WebSocket attempts');
  assert.ok(requests.some((u) => u.includes('/api/sse')), 'SSE tried');
  assert.ok(requests.some((u) => u.includes('/api/poll')), 'long-poll used');
  assert.equal(v.status, 'polling');
  assert.equal(v.transport, 'poll');
  assert.deepEqual(got, [1], 'messages delivered once, deduped across polls');
  wsMode = 'ok';
  await clock.advance(31000);
  assert.equal(v.status, 'live', 'upgraded back after a probe');
  assert.deepEqual(statuses, ['polling', 'live']);
  v.close();
  assert.equal(v.status, 'offline');
});

test('a refused upgrade (HTTP 403) falls back after one attempt', async () => {
  const clock = new FakeClock();
  const { FakeWS, sockets } = fakeWebSocket((ws) => ws.fail('Unexpected server response: 403'));
  const requests = [];
  const fetch = async (url) => {
    requests.push(url);
    if (!url.includes('timeout=0')) await new Promise((resolve) => clock.setTimeout(resolve, 25000));
    return new Response(JSON.stringify({ messages: [], since: '' }), { status: 200 });
  };
  const v = makeClient(clock, FakeWS, { fetch, random: () => 0.5, transports: ['websocket', 'poll'], heartbeat: 1e9 });
  v.subscribe('x', () => {});
  await clock.advance(100);
  assert.equal(sockets.length, 1);
  assert.equal(v.status, 'polling');
  v.close();
});

test('heartbeat: pings every interval; a silent socket is dropped after 2x heartbeat and replaced', async () => {
  const clock = new FakeClock();
  const { FakeWS, sockets } = fakeWebSocket((ws) => { autoSubscribe(ws); ws.open(); });
  const statuses = [];
  const v = makeClient(clock, FakeWS, { heartbeat: 1000, random: () => 0, onStatus: (s) => statuses.push(s) });
  await clock.advance(10);
  assert.equal(v.status, 'live');
  const first = sockets[0];
  await clock.advance(1000);
  assert.ok(first.sentJson().some((m) => m.type === 'ping'), 'pinged');
  first.push({ type: 'pong', timestamp: 'x' }); // traffic keeps it alive
  await clock.advance(1500);
  assert.equal(sockets.length, 1, 'still the first socket');
  await clock.advance(1000); // 2 s without anything from the server
  assert.ok(first.closedByClient, 'dead socket closed');
  await clock.advance(10);
  assert.equal(sockets.length, 2, 'reconnected');
  assert.equal(v.status, 'live');
  assert.deepEqual(statuses, ['live', 'connecting', 'live']);
  v.close();
});

test('token refresh: getToken before exp, sent as {"type":"refresh"} on the live socket', async () => {
  const clock = new FakeClock();
  const { FakeWS, sockets } = fakeWebSocket((ws) => { autoSubscribe(ws); ws.open(); });
  const exp = (t) => Math.floor(t / 1000);
  let calls = 0;
  const first = unsignedJwt({ sub: 'alice', exp: exp(clock.now() + 60_000) });
  const getToken = async () => { calls++; return unsignedJwt({ sub: 'alice', exp: exp(clock.now() + 60_000), n: calls }); };
  const v = makeClient(clock, FakeWS, { token: first, getToken, heartbeat: 1e9 });
  await clock.advance(10);
  assert.match(sockets[0].url, /\/ws\?token=/);
  await clock.advance(40_000);
  assert.equal(calls, 0, 'not yet');
  await clock.advance(10_000); // a quarter of the life (15 s) before exp
  assert.equal(calls, 1);
  const refresh = sockets[0].sentJson().filter((m) => m.type === 'refresh');
  assert.equal(refresh.length, 1);
  assert.equal(decodeJwt(refresh[0].token).n, 1);
  await clock.advance(60_000);
  assert.ok(calls >= 2, 'and again for the next token');
  assert.equal(sockets.length, 1, 'on the same connection');
  v.close();
});

test('auth failure: a fresh token is tried once; refused again means offline with an error', async () => {
  const clock = new FakeClock();
  const { FakeWS, sockets } = fakeWebSocket((ws) => { ws.readyState = 1; ws.serverClose(1008, 'invalid signature'); });
  const errors = [];
  let calls = 0;
  const v = makeClient(clock, FakeWS, { getToken: async () => { calls++; return 'fresh'; }, onError: (e) => errors.push(e) });
  await clock.advance(5000);
  assert.equal(sockets.length, 2);
  assert.equal(calls, 1);
  assert.equal(v.status, 'offline');
  assert.equal(errors.length, 1);
  assert.equal(errors[0].code, 'unauthorized');
  assert.match(errors[0].message, /invalid signature/);
  v.close();
});

test('4001 token expired without getToken: offline, error, no retry loop', async () => {
  const clock = new FakeClock();
  const { FakeWS, sockets } = fakeWebSocket((ws) => { autoSubscribe(ws); ws.open(); });
  const errors = [];
  const v = makeClient(clock, FakeWS, { onError: (e) => errors.push(e), heartbeat: 1e9 });
  await clock.advance(10);
  sockets[0].serverClose(4001, 'token expired');
  await clock.advance(60_000);
  assert.equal(sockets.length, 1);
  assert.equal(v.status, 'offline');
  assert.equal(errors[0].code, 'unauthorized');
  v.close();
});

test('handlers that throw become error events; server errors too; nothing is thrown', async () => {
  const clock = new FakeClock();
  const { FakeWS, sockets } = fakeWebSocket((ws) => { autoSubscribe(ws); ws.open(); });
  const errors = [];
  const v = makeClient(clock, FakeWS, { onError: (e) => errors.push(e), heartbeat: 1e9 });
  v.subscribe('a', () => { throw new Error('boom'); });
  await clock.advance(10);
  sockets[0].push({ type: 'x', channel: 'a', offset: 1, timestamp: '2026-01-01T00:00:00.000Z', data: 1 });
  sockets[0].push({ type: 'error', code: 'bad_json', message: 'malformed JSON' });
  sockets[0].push('not json at all');
  assert.deepEqual(errors.map((e) => e.code), ['handler_error', 'bad_json']);
  v.close();
});
