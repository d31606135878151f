// vigil.js upgrades back to WebSocket: it starts against a server that refuses upgrades (so it
// runs on SSE, status 'polling'); the server is restarted on the same port and --data-dir without
// --refuse-websocket (with --durable-channels, so offsets carry on); a background probe finds
// WebSocket again, status returns to 'live', and the numbered messages published throughout,
// across the restart and the switch, arrive exactly once and in order.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { WebSocket } from 'ws';
import { Vigil } from '../../web/vigil.js';
import * as h from './vigil-harness.mjs';

const servers = [];
const dirs = [];
after(async () => {
  for (const s of servers) await s.stop('SIGKILL');
  for (const d of dirs) h.removeDir(d);
});

for (const transports of [['websocket', 'sse', 'poll'], ['websocket', 'poll']]) {
  const via = transports[1];
  test(`from ${via} back to live after a restart without --refuse-websocket; nothing lost or repeated`, { timeout: 90_000 }, async () => {
    const dataDir = h.tempDir();
    dirs.push(dataDir);
    const port = await h.freePort();
    const durable = ['--durable-channels', 'up.>,upp.>'];
    let srv = await h.startServer({ port, dataDir, args: ['--refuse-websocket', ...durable] });
    servers.push(srv);
    const user = `upgrader-${via}`;
    const statuses = [];
    const errors = [];
    const gaps = [];
    const v = new Vigil(`ws://127.0.0.1:${port}/ws`, {
      token: h.token(user), WebSocket, transports,
      backoff: { initial: 100, max: 500 }, probeInterval: 1000, pollTimeout: 2,
      onStatus: (s) => statuses.push(s), onError: (e) => errors.push(e),
    });
    v.on('gap', (g) => gaps.push(g));
    const got = {};
    const record = (m) => (got[m.channel] ||= []).push(m.data.n);
    v.subscribe('up.a', record);
    v.subscribe('up.b', record);
    v.subscribe('upp.*', record);
    const total = () => Object.values(got).reduce((a, l) => a + l.length, 0);
    try {
      await h.waitFor(() => v.status === 'polling', 5000, 'polling');
      assert.equal(v.transport, via);
      const pub = h.publisher(srv.url, ['up.a', 'up.b', 'upp.x'], { interval: 4 });
      await h.waitFor(() => total() > 30, 10000, 'messages on the fallback');
      await h.sleep(1500); // a probe or two are refused meanwhile
      assert.equal(v.status, 'polling');
      await srv.stop();
      srv = await h.startServer({ port, dataDir, args: durable });
      servers.push(srv);
      await h.waitFor(() => v.status === 'live', 15000, 'live again');
      assert.equal(v.transport, 'websocket');
      const before = total();
      await h.waitFor(() => total() > before + 30, 10000, 'messages on the WebSocket');
      await pub.stop();
      const want = Object.values(pub.sent).reduce((a, b) => a + b, 0);
      await h.waitFor(() => total() >= want, 10000, () => `all ${want} messages (have ${total()}): ${h.checkSequences(got, pub.sent).join('; ')}`);
      await h.sleep(300);
      assert.deepEqual(h.checkSequences(got, pub.sent), []);
      assert.equal(statuses[0], 'polling');
      assert.equal(statuses[statuses.length - 1], 'live');
      assert.deepEqual(gaps, []);
      assert.deepEqual(errors, []);
    } finally {
      v.close();
    }
  });
}
