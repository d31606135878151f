// vigil.js against the real server over WebSocket: state documents (snapshot + merge patches
// equal the PUT/PATCHed document), acknowledged delivery (ack removes a pending alert here and,
// through the server's "acked" push, in the user's other tab; redeliveries are deduped by id),
// errors as 'error' events (a subscription the token's channels claim excludes), and rpc through
// --rpc-url.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { WebSocket } from 'ws';
import { Vigil } from '../../web/vigil.js';
import * as h from './vigil-harness.mjs';

const servers = [];
const clients = [];
let backend = null;
after(async () => {
  for (const v of clients) v.close();
  for (const s of servers) { await s.stop('SIGKILL'); h.removeDir(s.dataDir); }
  if (backend) await new Promise((r) => backend.close(r));
});

function client(srv, sub, opts = {}) {
  const v = new Vigil(srv.url, { token: h.token(sub, opts.tokenOpts || {}), WebSocket, backoff: { initial: 50, max: 200 }, ...opts });
  clients.push(v);
  return v;
}

test('state(): snapshot, then patches, equal the document after every PUT/PATCH', { timeout: 30_000 }, async () => {
  const srv = await h.startServer({ args: ['--state-interval', '0.05'] });
  servers.push(srv);
  await h.api(srv.url, '/api/state/site', { method: 'PUT', body: { cameras: { online: 7, down: 1 }, name: 'north' } });
  const v = client(srv, 'stater');
  const seen = [];
  let doc;
  v.state('site', (d, info) => { doc = d; seen.push(info.version); });
  await h.waitFor(() => doc && doc.name === 'north', 5000, 'snapshot');
  const want = async () => h.api(srv.url, '/api/state/site', { method: 'GET' });
  const steps = [
    { method: 'PATCH', body: { cameras: { down: 0 } } },
    { method: 'PATCH', body: { cameras: { online: 8 }, extra: { a: [1, 2] } } },
    { method: 'PATCH', body: { name: null } }, // a removal: sent as a snapshot
    { method: 'PUT', body: { cameras: { online: 1 }, fresh: true } },
    { method: 'PATCH', body: { cameras: { sites: { a: 1, b: 2 } } } },
  ];
  for (const step of steps) {
    await h.api(srv.url, '/api/state/site', step);
    const w = await want();
    await h.waitFor(() => JSON.stringify(doc) === JSON.stringify(w), 5000, () => `doc ${JSON.stringify(w)} (have ${JSON.stringify(doc)})`);
  }
  // Rapid changes coalesce; the result is still the document.
  for (let i = 0; i < 20; i++) await h.api(srv.url, '/api/state/site', { method: 'PATCH', body: { counter: i } });
  const w = await want();
  await h.waitFor(() => JSON.stringify(doc) === JSON.stringify(w), 5000, 'coalesced patches');
  assert.ok(seen.every((ver, i) => i === 0 || ver > seen[i - 1]), `versions increase: ${seen}`);
  // A second handler gets the current document at once; after a reconnect the snapshot is applied again.
  let second;
  v.state('site', (d) => { second = d; });
  assert.deepEqual(second, w);
  await h.api(srv.url, '/api/disconnect', { body: { user: 'stater' } });
  await h.api(srv.url, '/api/state/site', { method: 'PATCH', body: { afterReconnect: 1 } });
  const w2 = await want();
  await h.waitFor(() => JSON.stringify(doc) === JSON.stringify(w2) && JSON.stringify(second) === JSON.stringify(w2), 5000, 'document after a reconnect');
});

test('ack(): removes the pending alert here and in the other tab; redeliveries are deduped by id', { timeout: 30_000 }, async () => {
  const srv = await h.startServer();
  servers.push(srv);
  await h.publish(srv.url, 'alerts.cam-1', 'alert', { level: 'warning' }, { id: 'a1' });
  await h.publish(srv.url, 'alerts.cam-2', 'alert', { level: 'critical' }, { id: 'a2' });
  const tab1 = client(srv, 'acker');
  const tab2 = client(srv, 'acker');
  const pending = [new Map(), new Map()];
  const deliveries = [[], []];
  const ackedEvents = [[], []];
  const welcomes = [0, 0];
  [tab1, tab2].forEach((v, i) => {
    v.on('welcome', () => { welcomes[i]++; });
    v.subscribe('alerts.>', (m) => { deliveries[i].push(m.id); pending[i].set(m.id, m); });
    v.on('acked', ({ id }) => { ackedEvents[i].push(id); pending[i].delete(id); });
  });
  await h.waitFor(() => pending[0].size === 2 && pending[1].size === 2, 5000, 'both pending alerts in both tabs');
  assert.ok(tab1._tr.kind === 'websocket' && tab2._tr.kind === 'websocket');
  await h.publish(srv.url, 'alerts.cam-1', 'alert', { level: 'warning' }, { id: 'a3' });
  await h.waitFor(() => pending[0].size === 3 && pending[1].size === 3, 5000, 'a live alert');
  assert.equal(await tab1.ack('a1'), 'a1');
  assert.ok(!pending[0].has('a1'), 'gone in the tab that acked');
  await h.waitFor(() => !pending[1].has('a1'), 5000, 'gone in the other tab (server "acked" push)');
  assert.deepEqual(ackedEvents, [['a1'], ['a1']]);
  // Reconnect: the server redelivers a2 and a3 (not a1); the client has them already.
  await h.api(srv.url, '/api/disconnect', { body: { user: 'acker' } });
  await h.waitFor(() => welcomes[0] === 2 && welcomes[1] === 2, 5000, 'both tabs reconnected');
  await h.waitFor(() => tab1.status === 'live' && tab2.status === 'live', 5000, 'live again');
  await h.sleep(300);
  assert.deepEqual(deliveries[0].sort(), ['a1', 'a2', 'a3']);
  assert.deepEqual(deliveries[1].sort(), ['a1', 'a2', 'a3']);
  const left = await h.api(srv.url, '/api/alerts?unacked=1', { method: 'GET', auth: h.token('acker') });
  assert.deepEqual(left.alerts.map((m) => m.id), ['a2', 'a3']);
  // An ack of an id the store does not know is still an ack (idempotent); errors would reject.
  await tab2.ack('a2');
  await h.waitFor(() => pending[0].size === 1 && pending[1].size === 1, 5000, 'a2 gone in both');
});

test('errors: a forbidden subscription is an error event (no throw); the others still work', { timeout: 30_000 }, async () => {
  const srv = await h.startServer();
  servers.push(srv);
  const errors = [];
  const v = client(srv, 'limited', { tokenOpts: { channels: 'cameras.*' }, onError: (e) => errors.push(e) });
  const got = [];
  v.subscribe('cameras.*', (m) => got.push(m.data.n));
  v.subscribe('secret.x', () => assert.fail('nothing may arrive on secret.x'));
  await h.waitFor(() => v.status === 'live', 5000, 'live');
  await h.waitFor(() => errors.length === 1, 5000, 'the error event');
  assert.equal(errors[0].code, 'forbidden');
  assert.equal(errors[0].channel, 'secret.x');
  assert.ok(errors[0] instanceof Error);
  await h.publish(srv.url, 'cameras.c1', 'e', { n: 1 });
  await h.publish(srv.url, 'secret.x', 'e', { n: 2 });
  await h.waitFor(() => got.length === 1, 5000, 'the allowed channel still delivers');
  // Later subscriptions: one more forbidden one, and it is not retried on reconnect.
  v.subscribe('other.>', () => {});
  await h.waitFor(() => errors.length === 2, 5000, 'the second error');
  assert.equal(errors[1].channel, 'other.>');
  await h.api(srv.url, '/api/disconnect', { body: { user: 'limited' } });
  await h.sleep(300);
  await h.waitFor(() => v.status === 'live', 5000, 'live again');
  await h.publish(srv.url, 'cameras.c1', 'e', { n: 3 });
  await h.waitFor(() => got.length === 2, 5000, 'delivery after the reconnect');
  assert.equal(errors.length, 2, 'refused patterns are not asked for again');
});

test('rpc(): answered by the backend at --rpc-url; backend failures reject with the server error', { timeout: 30_000 }, async () => {
  const calls = [];
  backend = createServer((req, res) => {
    let body = '';
    req.on('data', (d) => { body += d; });
    req.on('end', () => {
      const call = JSON.parse(body);
      calls.push(call);
      if (call.method === 'add') {
        res.writeHead(200, { 'Content-Type': 'application/json' });
        res.end(JSON.stringify({ sum: call.params.a + call.params.b }));
      } else {
        res.writeHead(500, { 'Content-Type': 'application/json' });
        res.end('{"error":"no such method"}');
      }
    });
  });
  await new Promise((r) => backend.listen(0, '127.0.0.1', r));
  const srv = await h.startServer({ args: ['--rpc-url', `http://127.0.0.1:${backend.address().port}/rpc`] });
  servers.push(srv);
  const v = client(srv, 'caller');
  // Called before the connection is up: waits for it.
  const early = v.rpc('add', { a: 2, b: 3 });
  assert.deepEqual(await early, { sum: 5 });
  assert.deepEqual(await v.rpc('add', { a: 40, b: 2 }), { sum: 42 });
  await assert.rejects(v.rpc('nope', {}), (err) => err.code === 'rpc_failed' && /500/.test(err.message));
  assert.equal(calls[0].user, 'caller');
  assert.equal(calls[0].method, 'add');
});
