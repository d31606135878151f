// vigil.js against a server that refuses WebSocket upgrades (--refuse-websocket, HTTP 403, what a
// blocking proxy does): one refused upgrade, then Server-Sent Events (over fetch streaming, with
// Last-Event-ID) and, when SSE is blocked too, long-polling. Status 'polling'; numbered messages
// published continuously arrive exactly once, in order, across stream/poll interruptions.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { WebSocket } from 'ws';
import { Vigil } from '../../web/vigil.js';
import * as h from './vigil-harness.mjs';

const servers = [];
after(async () => { for (const s of servers) { await s.stop('SIGKILL'); h.removeDir(s.dataDir); } });

/** Counts WebSocket attempts. */
function countingWebSocket() {
  const attempts = [];
  class Counted extends WebSocket {
    constructor(url, ...rest) { super(url, ...rest); attempts.push(url); }
  }
  return { Counted, attempts };
}

async function runFallback(t, { blockSse }) {
  const srv = await h.startServer({ args: ['--refuse-websocket'] });
  servers.push(srv);
  const user = blockSse ? 'poller' : 'streamer';
  const { Counted, attempts } = countingWebSocket();
  const requests = [];
  const fetchImpl = async (url, init) => {
    requests.push(String(url));
    if (blockSse && String(url).includes('/api/sse')) throw new TypeError('fetch failed (blocked by proxy)');
    return fetch(url, init);
  };
  const statuses = [];
  const errors = [];
  const v = new Vigil(srv.url, {
    token: h.token(user), WebSocket: Counted, fetch: fetchImpl,
    backoff: { initial: 50, max: 300 }, probeInterval: 60_000, pollTimeout: 2,
    onStatus: (s) => statuses.push(s), onError: (e) => errors.push(e),
  });
  const got = {};
  const record = (m) => (got[m.channel] ||= []).push(m.data.n);
  v.subscribe('fb.a', record);
  v.subscribe('fbp.*', record);
  const total = () => Object.values(got).reduce((a, l) => a + l.length, 0);
  try {
    await h.waitFor(() => v.status === 'polling', 5000, 'polling');
    assert.equal(attempts.length, 1, 'one refused upgrade is enough to fall back');
    assert.equal(v.transport, blockSse ? 'poll' : 'sse');
    const pub = h.publisher(srv.url, ['fb.a', 'fbp.x', 'fbp.y'], { interval: 3 });
    // Interrupt the transport a few times: kick the user's connections (SSE streams end; a
    // held long-poll is answered) and, for SSE, abort the stream from the client side.
    for (let i = 0; i < 5; i++) {
      const before = total();
      await h.waitFor(() => total() > before + 5, 10000, `messages flowing (${i})`);
      if (!blockSse && i % 2 === 1) v._restartTransport();
      else await h.api(srv.url, '/api/disconnect', { body: { user } });
    }
    await h.sleep(300);
    await pub.stop();
    const want = Object.values(pub.sent).reduce((a, b) => a + b, 0);
    await h.waitFor(() => total() >= want, 15000, () => `all ${want} messages (have ${total()}): ${h.checkSequences(got, pub.sent).join('; ')}`);
    await h.sleep(300);
    assert.deepEqual(h.checkSequences(got, pub.sent), []);
    assert.equal(attempts.length, 1, 'no WebSocket retries while the probe interval has not passed');
    assert.ok(!statuses.includes('live'));
    assert.equal(statuses[statuses.length - 1], 'polling');
    assert.equal(v.status, 'polling');
    assert.deepEqual(errors, []);
    if (blockSse) assert.ok(requests.some((u) => u.includes('/api/sse')), 'SSE was tried first');
    if (!blockSse) assert.ok(requests.filter((u) => u.includes('/api/sse')).length >= 3, 'the stream was reopened (and caught up)');
    if (!blockSse) assert.ok(!requests.some((u) => u.includes('/api/poll?') && !u.includes('timeout=0')), 'no long-polling while SSE works');
  } finally {
    v.close();
  }
}

test('refused upgrade: Server-Sent Events, status polling, nothing lost or repeated', { timeout: 60_000 }, (t) => runFallback(t, { blockSse: false }));

test('refused upgrade and SSE blocked: long-polling, status polling, nothing lost or repeated', { timeout: 60_000 }, (t) => runFallback(t, { blockSse: true }));

test('state documents and acks work over the fallbacks too', { timeout: 30_000 }, async () => {
  const srv = await h.startServer({ args: ['--refuse-websocket', '--state-interval', '0.05'] });
  servers.push(srv);
  await h.api(srv.url, '/api/state/fbdoc', { method: 'PUT', body: { a: 1, b: { c: 1 } } });
  await h.publish(srv.url, 'alerts.fb', 'alert', { level: 'warning' }, { id: 'fb-1' });
  const v = new Vigil(srv.url, { token: h.token('fbstate'), WebSocket, probeInterval: 60_000 });
  let doc;
  v.state('fbdoc', (d) => { doc = d; });
  const alerts = [];
  v.subscribe('alerts.>', (m) => alerts.push(m.id));
  const acked = [];
  v.on('acked', (e) => acked.push(e.id));
  try {
    await h.waitFor(() => v.status === 'polling', 5000, 'polling');
    await h.waitFor(() => doc && doc.a === 1, 5000, 'snapshot');
    for (let i = 2; i <= 6; i++) {
      await h.api(srv.url, '/api/state/fbdoc', { method: 'PATCH', body: { a: i, b: { [`k${i}`]: i } } });
      await h.sleep(30);
    }
    const want = await h.api(srv.url, '/api/state/fbdoc', { method: 'GET' });
    await h.waitFor(() => JSON.stringify(doc) === JSON.stringify(want), 5000, `doc ${JSON.stringify(want)} (have ${JSON.stringify(doc)})`);
    await h.waitFor(() => alerts.includes('fb-1'), 5000, 'the pending alert');
    assert.equal(await v.ack('fb-1'), 'fb-1');
    assert.deepEqual(acked, ['fb-1']);
    const left = await h.api(srv.url, '/api/alerts?unacked=1', { method: 'GET', auth: h.token('fbstate') });
    assert.deepEqual(left.alerts, []);
  } finally {
    v.close();
  }
});

test('errors over SSE: a forbidden pattern is an error event; the stream goes on without it', { timeout: 30_000 }, async () => {
  const srv = await h.startServer({ args: ['--refuse-websocket'] });
  servers.push(srv);
  const errors = [];
  const v = new Vigil(srv.url, { token: h.token('fblimited', { channels: 'fb.*' }), WebSocket, probeInterval: 60_000, onError: (e) => errors.push(e) });
  const got = [];
  v.subscribe('fb.a', (m) => got.push(m.data.n));
  v.subscribe('nope.x', () => assert.fail('nothing may arrive on nope.x'));
  try {
    await h.waitFor(() => v.status === 'polling', 5000, 'polling');
    assert.equal(v.transport, 'sse');
    assert.equal(errors.length, 1);
    assert.equal(errors[0].code, 'forbidden');
    assert.equal(errors[0].channel, 'nope.x');
    await h.publish(srv.url, 'fb.a', 'e', { n: 1 });
    await h.waitFor(() => got.length === 1, 5000, 'delivery on the allowed channel');
    await assert.rejects(v.rpc('x'), (e) => e.code === 'unavailable');
  } finally {
    v.close();
  }
});

for (const via of ['sse', 'poll']) {
  test(`a channel that first appears under a pattern between two ${via} requests is not missed`, { timeout: 30_000 }, async () => {
    const srv = await h.startServer({ args: ['--refuse-websocket'] });
    servers.push(srv);
    // The next stream or poll is held back until the test has published on a brand-new channel,
    // so its first message can only come from the server's history (since_time).
    let hold = null;
    const fetchImpl = async (url, init) => {
      const u = String(url);
      if (via === 'poll' && u.includes('/api/sse')) throw new TypeError('fetch failed (blocked by proxy)');
      if (hold && (u.includes('/api/sse?') || (u.includes('/api/poll?') && !u.includes('timeout=0')))) await hold;
      return fetch(url, init);
    };
    const got = [];
    const v = new Vigil(srv.url, {
      token: h.token('newchan-' + via), WebSocket, fetch: fetchImpl,
      backoff: { initial: 50, max: 300 }, probeInterval: 60_000, pollTimeout: 1,
    });
    v.subscribe('nc.*', (m) => got.push(`${m.channel}#${m.data.n}`));
    try {
      await h.waitFor(() => v.status === 'polling' && v.transport === via, 5000, via);
      await h.publish(srv.url, 'nc.old', 't', { n: 1 });
      await h.waitFor(() => got.length === 1, 5000, 'the first message');
      let release;
      hold = new Promise((r) => { release = r; });
      await h.api(srv.url, '/api/disconnect', { body: { user: 'newchan-' + via } }); // ends the request
      await h.sleep(300);
      await h.publish(srv.url, 'nc.new', 't', { n: 1 });
      await h.publish(srv.url, 'nc.new', 't', { n: 2 });
      hold = null;
      release();
      await h.waitFor(() => got.length >= 3, 10_000, () => `the new channel's messages (have ${got})`);
      await h.sleep(300);
      assert.deepEqual(got, ['nc.old#1', 'nc.new#1', 'nc.new#2']);
    } finally {
      v.close();
    }
  });
}
