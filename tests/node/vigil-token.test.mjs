// vigil.js against the real server: a short-lived token is refreshed before `exp` through
// getToken ({"type":"refresh"} on the live socket), so the connection outlives the first token.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { WebSocket } from 'ws';
import { Vigil, decodeJwt } from '../../web/vigil.js';
import * as h from './vigil-harness.mjs';

const servers = [];
after(async () => { for (const s of servers) { await s.stop('SIGKILL'); h.removeDir(s.dataDir); } });

test('token refresh keeps one connection live past the first token\'s exp', { timeout: 60_000 }, async () => {
  const srv = await h.startServer({ args: ['--jwt-leeway', '0'] });
  servers.push(srv);
  const user = 'refresher';
  const first = h.token(user, { ttl: 3 });
  const firstExp = decodeJwt(first).exp * 1000;
  let calls = 0;
  const statuses = [];
  const errors = [];
  const welcomes = [];
  const v = new Vigil(srv.url, {
    token: first, WebSocket,
    getToken: async () => { calls++; return h.token(user, { ttl: 3 }); },
    onStatus: (s) => statuses.push(s), onError: (e) => errors.push(e),
  });
  v.on('welcome', (w) => welcomes.push(w.connection_id));
  const got = [];
  v.subscribe('tok.a', (m) => got.push(m.data.n));
  try {
    await h.waitFor(() => v.status === 'live', 5000, 'live');
    // Past the first token's exp (and the next one's): the server would close with 4001 without a refresh.
    let n = 0;
    while (Date.now() < firstExp + 4500) {
      await h.publish(srv.url, 'tok.a', 't', { n: ++n });
      await h.sleep(250);
    }
    await h.waitFor(() => got.length === n, 5000, `all ${n} messages`);
    assert.deepEqual(got, Array.from({ length: n }, (_, i) => i + 1));
    assert.ok(calls >= 2, `getToken called ${calls} times`);
    assert.deepEqual(statuses, ['live'], 'never left live');
    assert.equal(welcomes.length, 1, 'one connection throughout');
    assert.deepEqual(errors, []);
    const conns = await h.api(srv.url, `/ws/connections/${user}`, { method: 'GET' });
    assert.equal(conns.connection_count, 1);
  } finally {
    v.close();
  }
});

test('without getToken the server ends the connection at exp (4001): offline with an auth error', { timeout: 30_000 }, async () => {
  const srv = await h.startServer({ args: ['--jwt-leeway', '0'] });
  servers.push(srv);
  const errors = [];
  const v = new Vigil(srv.url, { token: h.token('expiring', { ttl: 2 }), WebSocket, onError: (e) => errors.push(e) });
  try {
    await h.waitFor(() => v.status === 'live', 5000, 'live');
    await h.waitFor(() => v.status === 'offline', 10000, 'offline after exp');
    assert.equal(errors.length, 1);
    assert.equal(errors[0].code, 'unauthorized');
    assert.match(errors[0].message, /expired/);
  } finally {
    v.close();
  }
});
