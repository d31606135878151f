// vigil.js against the real server: resubscribe with `since` (exact channels: offsets + epochs;
// a pattern: the per-channel map + since_time) across 20 forced disconnects while numbered
// messages are published continuously; every channel must arrive exactly as 1..N.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { WebSocket } from 'ws';
import { Vigil } from '../../web/vigil.js';
import * as h from './vigil-harness.mjs';

const servers = [];
after(async () => { for (const s of servers) { await s.stop('SIGKILL'); h.removeDir(s.dataDir); } });

test('20 forced disconnects while publishing: no gap, no duplicate, in order, per channel', { timeout: 120_000 }, async () => {
  const srv = await h.startServer();
  servers.push(srv);
  const user = 'rec-user';
  const statuses = [];
  const errors = [];
  const v = new Vigil(srv.url, {
    token: h.token(user), WebSocket,
    backoff: { initial: 20, max: 300 }, heartbeat: 5000,
    onStatus: (s) => statuses.push(s), onError: (e) => errors.push(e),
  });
  const got = {};
  const record = (m) => { (got[m.channel] ||= []).push(m.data.n); };
  v.subscribe('rec.a', record);
  v.subscribe('rec.b', record);
  v.subscribe('pat.*', record); // pat.x, pat.y only through the pattern
  const total = () => Object.values(got).reduce((a, l) => a + l.length, 0);
  try {
    await h.waitFor(() => v.status === 'live', 5000, 'live');
    const pub = h.publisher(srv.url, ['rec.a', 'rec.b', 'pat.x', 'pat.y'], { interval: 2 });
    let terminated = 0;
    for (let i = 0; i < 20; i++) {
      const before = total();
      await h.waitFor(() => v.status === 'live' && total() > before + 4, 10000, `messages before disconnect ${i}`);
      const lives = statuses.filter((s) => s === 'live').length;
      if (i % 2 === 0) {
        const r = await h.api(srv.url, '/api/disconnect', { body: { user } });
        assert.equal(r.disconnected, 1);
      } else {
        v._tr.ws.terminate(); // the network drops: no close frame
        terminated++;
      }
      await h.waitFor(() => statuses.filter((s) => s === 'live').length > lives, 10000, `reconnection ${i}`);
    }
    await pub.stop();
    const sent = pub.sent;
    const want = Object.values(sent).reduce((a, b) => a + b, 0);
    await h.waitFor(() => total() >= want, 10000, () => `all ${want} messages (have ${total()}): ${h.checkSequences(got, pub.sent).join('; ')}`);
    await h.sleep(300); // anything extra would be a duplicate
    assert.deepEqual(h.checkSequences(got, sent), []);
    assert.ok(Object.values(sent).every((n) => n > 20), `published enough: ${JSON.stringify(sent)}`);
    assert.equal(terminated, 10);
    assert.equal(statuses.filter((s) => s === 'live').length, 21);
    assert.ok(!statuses.includes('polling'), 'stayed on WebSocket');
    assert.deepEqual(errors, []);
  } finally {
    v.close();
  }
});

test('a pattern channel that first appears while disconnected is replayed (since_time)', { timeout: 60_000 }, async () => {
  const srv = await h.startServer();
  servers.push(srv);
  const user = 'new-chan';
  const v = new Vigil(srv.url, { token: h.token(user), WebSocket, backoff: { initial: 500, max: 500 }, random: () => 0.99 });
  const got = [];
  v.subscribe('cams.*', (m) => got.push(`${m.channel}:${m.data.n}`));
  try {
    await h.waitFor(() => v.status === 'live', 5000, 'live');
    await h.publish(srv.url, 'cams.old', 'e', { n: 1 });
    await h.waitFor(() => got.length === 1, 5000, 'first message');
    // Drop the socket (the client waits ~0.5 s before reconnecting) and publish on a new
    // channel and on the old one while it is away.
    await h.api(srv.url, '/api/disconnect', { body: { user } });
    await h.publish(srv.url, 'cams.new', 'e', { n: 1 });
    await h.publish(srv.url, 'cams.old', 'e', { n: 2 });
    await h.publish(srv.url, 'cams.new', 'e', { n: 2 });
    await h.waitFor(() => got.length === 4, 10000, 'replay after reconnect');
    await h.sleep(200);
    assert.deepEqual(got.sort(), ['cams.new:1', 'cams.new:2', 'cams.old:1', 'cams.old:2']);
  } finally {
    v.close();
  }
});
