// vigil.js as served at /vigil.js, in Debian's Chromium (playwright-core): the browser's own
// WebSocket, fetch streaming for SSE, timers bound to window. Live over WebSocket; 'polling' over
// SSE when the upgrade is refused; messages delivered in order either way.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { chromium } from 'playwright-core';
import * as h from './vigil-harness.mjs';

const CHROMIUM = '/usr/bin/chromium';
const servers = [];
let browser = null;
after(async () => {
  if (browser) await browser.close();
  for (const s of servers) { await s.stop('SIGKILL'); h.removeDir(s.dataDir); }
});

async function run(args, want) {
  const srv = await h.startServer({ args });
  servers.push(srv);
  const served = await (await fetch(`${srv.url}/vigil.js`)).text();
  assert.equal(served, readFileSync(new URL('../../web/vigil.js', import.meta.url), 'utf8'), 'the binary serves the current web/vigil.js (rebuild after editing it)');
  browser ||= await chromium.launch({ executablePath: CHROMIUM, args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'], timeout: 30000 });
  const page = await browser.newPage();
  try {
    await page.goto(`${srv.url}/healthz`);
    const token = h.token('browser-user');
    await page.evaluate(async ({ token }) => {
      const { Vigil } = await import('/vigil.js');
      window.got = [];
      window.statuses = [];
      window.v = new Vigil(location.origin, { token, probeInterval: 60000, onStatus: (s) => window.statuses.push(s) });
      window.v.subscribe('br.*', (m) => window.got.push(m.data.n));
    }, { token });
    await h.waitFor(async () => (await page.evaluate(() => window.v.status)) === want.status, 10000, want.status);
    assert.equal(await page.evaluate(() => window.v.transport), want.transport);
    for (let n = 1; n <= 20; n++) await h.publish(srv.url, n % 2 ? 'br.a' : 'br.b', 'e', { n });
    await h.waitFor(async () => (await page.evaluate(() => window.got.length)) === 20, 10000, 'messages in the page');
    assert.deepEqual(await page.evaluate(() => window.got), Array.from({ length: 20 }, (_, i) => i + 1));
    assert.deepEqual(await page.evaluate(() => window.statuses), [want.status]);
    await page.evaluate(() => window.v.close());
  } finally {
    await page.close();
  }
}

const skip = !existsSync(CHROMIUM) && 'no /usr/bin/chromium';

test('in Chromium: live over the browser WebSocket', { timeout: 60_000, skip }, () => run([], { status: 'live', transport: 'websocket' }));

test('in Chromium: refused upgrade -> SSE over fetch streaming, status polling', { timeout: 60_000, skip }, () => run(['--refuse-websocket'], { status: 'polling', transport: 'sse' }));
