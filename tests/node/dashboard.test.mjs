// The dashboard at / in Debian's Chromium (playwright-core): connection indicator, live feed and
// toasts, alerts with Ack (and persistence across reload and tabs), reconnect across a server
// restart, the polling fallback with WebSocket refused, the admin connections page, themes.
// Screenshots go to $VIGIL_ARTIFACTS/screenshots/.
//
//   VIGIL_BIN=build/vigil VIGIL_ARTIFACTS=build/artifacts node --test dashboard.test.mjs

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const BIN = process.env.VIGIL_BIN || path.resolve(HERE, '../../build/vigil');
const ART = process.env.VIGIL_ARTIFACTS || path.resolve(HERE, '../../build/artifacts');
const SHOTS = path.join(ART, 'screenshots');
const API_KEY = 'K';
const SECRET = 'S';
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

fs.mkdirSync(SHOTS, { recursive: true });
const WAIT = 10000; // upper bound for anything that is not a latency assertion
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const uid = () => Math.random().toString(36).slice(2, 10);

// ------------------------------------------------------------------ server management

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

const servers = new Set();

async function startServer({ port, dataDir, extra = [], name = 'server' }) {
  const args = ['serve', '--demo', '--listen', `127.0.0.1:${port}`, '--data-dir', dataDir,
    '--api-key', API_KEY, '--jwt-secret', SECRET, '--shutdown-timeout', '1', ...extra];
  const log = fs.openSync(path.join(ART, `dashboard-${name}.log`), 'a');
  const proc = spawn(BIN, args, { stdio: ['ignore', log, log] });
  fs.closeSync(log);
  const srv = { proc, port, dataDir, base: `http://127.0.0.1:${port}`, exited: false };
  proc.on('exit', () => { srv.exited = true; servers.delete(srv); });
  servers.add(srv);
  const deadline = Date.now() + 10000;
  for (;;) {
    if (srv.exited) throw new Error(`vigil exited at start (see dashboard-${name}.log)`);
    try {
      const r = await fetch(srv.base + '/healthz', { signal: AbortSignal.timeout(1000) });
      if (r.ok) break;
    } catch { /* not up yet */ }
    if (Date.now() > deadline) throw new Error('vigil did not answer /healthz within 10 s');
    await sleep(50);
  }
  return srv;
}

async function stopServer(srv, signal = 'SIGTERM') {
  if (!srv || srv.exited) return;
  const gone = new Promise((r) => srv.proc.once('exit', r));
  srv.proc.kill(signal);
  const t = setTimeout(() => srv.proc.kill('SIGKILL'), 8000);
  await gone;
  clearTimeout(t);
}

async function api(srv, method, p, body) {
  const r = await fetch(srv.base + p, {
    method,
    headers: { Authorization: `Bearer ${API_KEY}`, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(5000),
  });
  const text = await r.text();
  assert.ok(r.ok, `${method} ${p} -> ${r.status} ${text}`);
  return text ? JSON.parse(text) : null;
}
const publish = (srv, channel, type, data, extra = {}) => api(srv, 'POST', '/api/publish', { channel, type, data, ...extra });

function mintToken(sub, { admin = false } = {}) {
  const args = ['token', '--secret', SECRET, '--sub', sub, '--ttl', '7200'];
  if (admin) args.push('--admin');
  return execFileSync(BIN, args, { encoding: 'utf8', timeout: WAIT }).trim();
}

async function demoSession(srv) {
  try {
    const r = await fetch(srv.base + '/api/demo/session', { signal: AbortSignal.timeout(2000) });
    return r.ok ? await r.json() : null;
  } catch { return null; }
}

// ------------------------------------------------------------------ realistic test data

const crcTable = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
function crc32(buf) {
  let c = 0xffffffff;
  for (const b of buf) c = crcTable[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}
/** A small PNG "camera frame": a dusky gradient scene with a highlighted detection box. */
function thumbnail(seed, [br, bg, bb]) {
  const w = 96, h = 72;
  const raw = Buffer.alloc((w * 3 + 1) * h);
  for (let y = 0; y < h; y++) {
    raw[y * (w * 3 + 1)] = 0;
    for (let x = 0; x < w; x++) {
      const o = y * (w * 3 + 1) + 1 + x * 3;
      const floor = y > 44 ? 18 : 0;
      let r = 28 + y * 0.5 + floor + ((x * 7 + seed * 13) % 9);
      let g = 34 + y * 0.6 + floor + ((x * 3 + y) % 7);
      let b = 48 + y * 0.4 + floor;
      const bx = 30 + (seed % 4) * 8, by = 18;
      const inBox = x >= bx && x < bx + 22 && y >= by && y < by + 40;
      const edge = inBox && (x === bx || x === bx + 21 || y === by || y === by + 39);
      if (edge) { r = br; g = bg; b = bb; } else if (inBox) { r += 22; g += 20; b += 18; }
      raw[o] = Math.min(255, r); raw[o + 1] = Math.min(255, g); raw[o + 2] = Math.min(255, b);
    }
  }
  const chunk = (type, data) => {
    const len = Buffer.alloc(4); len.writeUInt32BE(data.length);
    const td = Buffer.concat([Buffer.from(type), data]);
    const crc = Buffer.alloc(4); crc.writeUInt32BE(crc32(td));
    return Buffer.concat([len, td, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0); ihdr.writeUInt32BE(h, 4); ihdr[8] = 8; ihdr[9] = 2;
  const png = Buffer.concat([Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]), chunk('IHDR', ihdr),
    chunk('IDAT', zlib.deflateSync(raw)), chunk('IEND', Buffer.alloc(0))]);
  return 'data:image/png;base64,' + png.toString('base64');
}

const CAMERAS = [
  ['cam-1', 'Front Entrance', 'Building A · Lobby'], ['cam-2', 'Loading Dock', 'Building A · Rear'],
  ['cam-3', 'Parking North', 'Lot P1'], ['cam-4', 'Parking South', 'Lot P2'],
  ['cam-5', 'Server Room', 'Building B · L2'], ['cam-6', 'Warehouse Aisle 3', 'Building C'],
  ['cam-7', 'Reception', 'Building A · Ground'], ['cam-8', 'Perimeter East', 'Fence line'],
];

function statisticsDoc(extra = {}) {
  const epm = Array.from({ length: 60 }, (_, i) => Math.max(0, Math.round(9 + 6 * Math.sin(i / 7) + 4 * Math.sin(i / 2.3) + (i % 11 === 0 ? 9 : 0))));
  return { cameras: { total: 8, online: 7, recording: 3, down: 1 }, events_today: 1284, events_last_hour: epm.reduce((a, b) => a + b, 0),
    alerts_open: 2, people_today: 412, vehicles_today: 187, motion_today: 685, events_per_minute: epm,
    timestamp: new Date().toISOString(), ...extra };
}
function statusDoc() {
  const states = ['recording', 'online', 'recording', 'online', 'online', 'recording', 'online', 'down'];
  const cameras = {};
  CAMERAS.forEach(([id, name, location], i) => {
    cameras[id] = { id, name, location, state: states[i], since: new Date(Date.now() - (i + 1) * 37 * 60000).toISOString(),
      fps: states[i] === 'down' ? 0 : [30, 25, 15][i % 3], resolution: ['1920x1080', '2560x1440', '1280x720'][i % 3],
      last_event: states[i] === 'down' ? null : new Date(Date.now() - (i + 1) * 41000).toISOString() };
  });
  return { cameras, summary: { online: 7, recording: 3, down: 1 } };
}
function eventData(id, camIdx, type, confidence = 0.91) {
  const [camera_id, camera_name] = CAMERAS[camIdx];
  return { id, camera_id, camera_name, event_type: type, confidence, timestamp: new Date().toISOString() };
}
function alertData(id, camIdx, level, title, message) {
  const [camera_id, camera_name] = CAMERAS[camIdx];
  return { id, camera_id, camera_name, level, title, message, timestamp: new Date().toISOString(),
    thumbnail: thumbnail(camIdx, level === 'critical' ? [255, 90, 90] : [250, 190, 70]) };
}
async function publishEvent(srv, id, camIdx, type, confidence) {
  return publish(srv, `cameras.${CAMERAS[camIdx][0]}.events`, type, eventData(id, camIdx, type, confidence));
}
async function publishAlert(srv, id, camIdx, level, title, message) {
  return publish(srv, `alerts.${CAMERAS[camIdx][0]}`, 'alert', alertData(id, camIdx, level, title, message), { id });
}

/** Without the demo fleet, put the documented state documents in place ourselves. */
async function seedState(srv) {
  await api(srv, 'PUT', '/api/state/statistics', statisticsDoc());
  await api(srv, 'PUT', '/api/state/status', statusDoc());
}

// ------------------------------------------------------------------ browser helpers

let browser, srv, dataDir, demo, userToken, adminToken;

async function openDashboard({ hash = '', token = null, viewport = { width: 1440, height: 960 }, colorScheme = 'dark', context = null } = {}) {
  const ctx = context || await browser.newContext({ viewport, colorScheme, deviceScaleFactor: 1 });
  const page = await ctx.newPage();
  page.on('pageerror', (e) => console.error('[pageerror]', e.message));
  // Failed WebSocket attempts (server stopped, upgrades refused) are expected in some tests.
  page.on('console', (m) => { if (m.type() === 'error' && !/WebSocket connection to/.test(m.text())) console.error('[console]', m.text()); });
  const tok = token || (demo ? null : userToken);
  await page.goto(`${srv.base}/${tok ? '?token=' + encodeURIComponent(tok) : ''}${hash}`, { timeout: 10000 });
  return { ctx, page };
}
const indicator = (page, status, timeout = 10000) =>
  page.waitForSelector(`[data-testid="status-indicator"][data-status="${status}"]`, { timeout });

async function shot(page, name) {
  await page.screenshot({ path: path.join(SHOTS, name), fullPage: true, timeout: 15000 });
}

// ------------------------------------------------------------------ tests

before(async () => {
  assert.ok(fs.existsSync(BIN), `VIGIL_BIN ${BIN} does not exist`);
  dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-dash-'));
  srv = await startServer({ port: await freePort(), dataDir, name: 'main' });
  demo = await demoSession(srv);
  userToken = mintToken('dana');
  adminToken = mintToken('ops-admin', { admin: true });
  if (!demo) await seedState(srv);
  browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: CHROMIUM_ARGS, timeout: 30000 });
});

after(async () => {
  await browser?.close().catch(() => {});
  for (const s of [...servers]) await stopServer(s, 'SIGKILL');
  fs.rmSync(dataDir, { recursive: true, force: true });
});

test('the connection indicator turns Live and the token leaves the URL', { timeout: 30000 }, async () => {
  const { ctx, page } = await openDashboard({ token: demo ? null : userToken });
  try {
    await indicator(page, 'live');
    const el = page.locator('[data-testid="status-indicator"]');
    assert.equal(await el.getAttribute('role'), 'status');
    assert.equal(await el.getAttribute('aria-live'), 'polite');
    assert.match(await el.innerText(), /Live/);
    assert.ok(!page.url().includes('token='), 'the token is removed from the address bar');
    // Statistics cards and the camera grid are fed by the state documents.
    await page.waitForFunction(() => /\d/.test(document.querySelector('[data-stat="events_today"] [data-testid="stat-value"]')?.textContent || ''), null, { timeout: 10000 });
    await page.waitForSelector('[data-testid="camera-tile"]', { timeout: 10000 });
    await page.waitForSelector('[data-testid="chart"] svg rect.bar', { timeout: 10000 });
    assert.equal(await page.locator('[data-testid="chart"] svg rect.bar').count(), 60);
  } finally { await ctx.close(); }
});

test('a published event appears in the feed and as a toast within 1 s', { timeout: 30000 }, async () => {
  const { ctx, page } = await openDashboard();
  try {
    await indicator(page, 'live');
    await sleep(300); // let the subscriptions be acknowledged
    const id = 'evt-' + uid();
    // The page notes when the feed item and the toast appear (same clock as ours), so the 1 s
    // budget is measured exactly rather than through Playwright's polling.
    await page.evaluate((id) => {
      window.__seen = {};
      const note = () => {
        for (const kind of ['event-item', 'toast']) {
          if (!window.__seen[kind] && document.querySelector(`[data-testid="${kind}"][data-id="${id}"]`)) window.__seen[kind] = Date.now();
        }
      };
      new MutationObserver(note).observe(document.body, { childList: true, subtree: true });
    }, id);
    const t0 = Date.now();
    await publishEvent(srv, id, 0, 'person', 0.97);
    await page.waitForFunction(() => window.__seen['event-item'] && window.__seen.toast, null, { timeout: WAIT });
    const seen = await page.evaluate(() => window.__seen);
    assert.ok(seen['event-item'] - t0 < 1000, `feed item after ${seen['event-item'] - t0} ms`);
    assert.ok(seen.toast - t0 < 1000, `toast after ${seen.toast - t0} ms`);
    const item = page.locator(`[data-testid="event-item"][data-id="${id}"]`);
    assert.match(await item.innerText(), /Person detected/);
    assert.match(await item.innerText(), /Front Entrance/);
    // Newest first: a second event goes above the first.
    const id2 = 'evt-' + uid();
    await publishEvent(srv, id2, 2, 'vehicle', 0.88);
    await page.waitForSelector(`[data-testid="event-item"][data-id="${id2}"]`, { timeout: WAIT });
    const order = await page.$$eval('[data-testid="event-item"]', (els) => els.map((e) => e.dataset.id));
    assert.ok(order.indexOf(id2) < order.indexOf(id), 'newest first');
    // Never more than three toasts at once.
    for (let i = 0; i < 5; i++) await publishEvent(srv, 'evt-' + uid(), i % 8, 'motion', 0.7);
    await sleep(500);
    const visible = await page.locator('[data-testid="toast"]:not(.leaving)').count();
    assert.ok(visible <= 3, `at most 3 toasts visible, saw ${visible}`);
  } finally { await ctx.close(); }
});

test('Ack removes an alert everywhere and it stays gone after reload', { timeout: 60000 }, async () => {
  const a = await openDashboard();
  const b = await openDashboard(); // a second tab of the same user
  try {
    await indicator(a.page, 'live');
    await indicator(b.page, 'live');
    await sleep(300);
    const id = 'alert-' + uid();
    await publishAlert(srv, id, 1, 'critical', 'Person in restricted area', 'Motion after hours near the loading bay door.');
    const sel = `[data-testid="alert-item"][data-id="${id}"]`;
    await a.page.waitForSelector(sel, { timeout: WAIT });
    await b.page.waitForSelector(sel, { timeout: WAIT });
    assert.match(await a.page.locator(`${sel} img`).getAttribute('src'), /^data:image\/png;base64,/);
    await a.page.click(`${sel} [data-testid="ack-button"]`, { timeout: WAIT });
    await a.page.waitForSelector(sel, { state: 'detached', timeout: WAIT });
    await b.page.waitForSelector(sel, { state: 'detached', timeout: WAIT }); // the 'acked' push to other tabs

    await a.page.reload({ timeout: 10000 });
    await indicator(a.page, 'live');
    // A newer alert arriving proves the replay of unacked ones (which comes first) is over.
    const marker = 'alert-' + uid();
    await publishAlert(srv, marker, 4, 'warning', 'Door held open', 'Server room door open for more than 60 s.');
    await a.page.waitForSelector(`[data-testid="alert-item"][data-id="${marker}"]`, { timeout: WAIT });
    assert.equal(await a.page.locator(sel).count(), 0, 'the acked alert is not replayed after reload');

    // Keyboard: the Ack button is focusable and works with Enter.
    await a.page.focus(`[data-testid="alert-item"][data-id="${marker}"] [data-testid="ack-button"]`);
    const ring = await a.page.evaluate(() => getComputedStyle(document.activeElement).outlineStyle);
    assert.notEqual(ring, 'none', 'visible focus ring');
    await a.page.keyboard.press('Enter');
    await a.page.waitForSelector(`[data-testid="alert-item"][data-id="${marker}"]`, { state: 'detached', timeout: WAIT });
  } finally { await a.ctx.close(); await b.ctx.close(); }
});

test('screenshots: dashboard dark, light, phone', { timeout: 90000 }, async () => {
  // Something to look at: open alerts with thumbnails and a few live events.
  await publishAlert(srv, 'alert-' + uid(), 2, 'warning', 'Vehicle loitering', 'A vehicle has been idling by the north gate for 6 minutes.');
  await publishAlert(srv, 'alert-' + uid(), 7, 'critical', 'Camera tamper suspected', 'Perimeter East lost signal right after motion at the fence.');
  const { ctx, page } = await openDashboard({ colorScheme: 'dark' });
  try {
    await indicator(page, 'live');
    await page.waitForSelector('[data-testid="alert-item"]', { timeout: WAIT });
    const kinds = ['person', 'vehicle', 'motion', 'person', 'motion', 'vehicle', 'person'];
    for (let i = 0; i < kinds.length; i++) { await publishEvent(srv, 'evt-' + uid(), i % 7, kinds[i], 0.72 + i * 0.03); await sleep(120); }
    await page.waitForSelector('[data-testid="toast"]', { timeout: WAIT });
    await sleep(600);
    assert.equal(await page.getAttribute('html', 'data-theme'), 'dark');
    await shot(page, 'dashboard-dark.png');

    // The toggle switches to light and is remembered across reloads.
    await page.click('[data-testid="theme-toggle"]');
    await page.mouse.move(700, 600);
    assert.equal(await page.getAttribute('html', 'data-theme'), 'light');
    await page.reload({ timeout: 10000 });
    await indicator(page, 'live');
    assert.equal(await page.getAttribute('html', 'data-theme'), 'light');
    await page.waitForSelector('[data-testid="camera-tile"]', { timeout: WAIT });
    await page.waitForSelector('[data-testid="chart"] svg', { timeout: WAIT });
    for (let i = 0; i < 3; i++) { await publishEvent(srv, 'evt-' + uid(), i + 3, kinds[i], 0.8); await sleep(150); }
    await sleep(700);
    await shot(page, 'dashboard-light.png');
  } finally { await ctx.close(); }

  const phone = await openDashboard({ viewport: { width: 390, height: 844 }, colorScheme: 'dark' });
  try {
    await indicator(phone.page, 'live');
    await phone.page.waitForSelector('[data-testid="camera-tile"]', { timeout: WAIT });
    const overflow = await phone.page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 1, `no horizontal scrolling at phone width (overflow ${overflow}px)`);
    await sleep(400);
    await shot(phone.page, 'dashboard-phone.png');
  } finally { await phone.ctx.close(); }
});

test('the admin page lists this browser\'s connection', { timeout: 30000 }, async () => {
  const token = demo?.admin ? null : adminToken;
  const other = await openDashboard({ token: userToken }); // a second user, for a fuller list
  const { ctx, page } = await openDashboard({ token, hash: '#/admin', colorScheme: 'dark' });
  try {
    await indicator(other.page, 'live');
    await page.waitForSelector('[data-testid="connection-row"][data-user="dana"]', { timeout: WAIT });
    await indicator(page, 'live');
    const user = demo?.admin ? demo.user : 'ops-admin';
    await page.waitForSelector('[data-testid="tab-admin"]:not([hidden])', { timeout: WAIT });
    const row = await page.waitForSelector('[data-testid="connection-row"][data-self="true"]', { timeout: 10000 });
    assert.equal(await row.getAttribute('data-user'), typeof user === 'string' ? user : await row.getAttribute('data-user'));
    assert.match(await row.innerText(), /\/ws|ws/);
    await sleep(300);
    await shot(page, 'admin-dark.png');
    await page.click('[data-testid="theme-toggle"]');
    await page.mouse.move(700, 600);
    await sleep(300);
    await shot(page, 'admin-light.png');
    await page.click('[data-testid="theme-toggle"]');
    await page.setViewportSize({ width: 390, height: 844 });
    await sleep(300);
    await shot(page, 'admin-phone.png');
    await page.setViewportSize({ width: 1440, height: 960 });
    // Tabs are links, reachable with the keyboard.
    await page.focus('[data-testid="tab-overview"]');
    await page.keyboard.press('Enter');
    await page.waitForSelector('#view-overview:not([hidden])', { timeout: WAIT });
  } finally { await ctx.close(); await other.ctx.close(); }
});

test('a refused token leads to the sign-in form, and a pasted token signs in', { timeout: 40000 }, async () => {
  const bad = execFileSync(BIN, ['token', '--secret', 'not-the-secret', '--sub', 'mallory'], { encoding: 'utf8', timeout: 5000 }).trim();
  const { ctx, page } = await openDashboard({ token: bad, colorScheme: 'light' });
  try {
    await page.waitForSelector('[data-testid="login-form"]', { state: 'visible', timeout: WAIT });
    assert.match(await page.textContent('#login-error'), /invalid signature/);
    assert.ok(!page.url().includes('token='));
    await page.fill('#token-input', userToken);
    await page.click('[data-testid="login-submit"]');
    await indicator(page, 'live');
    assert.equal(await page.textContent('#user-name'), 'dana');
  } finally { await ctx.close(); }
});

test('a non-admin user gets no connections tab', { timeout: 30000 }, async () => {
  const { ctx, page } = await openDashboard({ token: userToken });
  try {
    await indicator(page, 'live');
    assert.equal(await page.locator('[data-testid="tab-admin"]').isHidden(), true);
  } finally { await ctx.close(); }
});

test('server restart: Connecting, then Live again with the events published meanwhile', { timeout: 90000 }, async (t) => {
  const { ctx, page } = await openDashboard();
  try {
    await indicator(page, 'live');
    await sleep(300);
    await page.evaluate(() => {
      window.__trace = [];
      const v = window.__vigil;
      v.on('message', (m) => { if (/events$/.test(m.channel)) window.__trace.push(`${Date.now() % 100000} msg ${m.channel}#${m.offset} ${m.timestamp} ${m.data?.id}`); });
      v.on('status', (s) => window.__trace.push(`${Date.now() % 100000} status ${s} ${v.transport}`));
      v.on('gap', (g) => window.__trace.push(`${Date.now() % 100000} gap ${JSON.stringify(g)}`));
    });
    const before1 = 'evt-' + uid();
    await publishEvent(srv, before1, 0, 'motion', 0.66);
    await page.waitForSelector(`[data-testid="event-item"][data-id="${before1}"]`, { timeout: WAIT });

    const port = srv.port;
    await stopServer(srv, 'SIGTERM');
    await indicator(page, 'connecting', 10000);
    await page.waitForSelector('#stale-banner:not([hidden])', { timeout: WAIT });
    await page.screenshot({ path: path.join(SHOTS, 'dashboard-reconnecting.png'), timeout: 15000 });

    srv = await startServer({ port, dataDir, name: 'main' });
    if (!demo) await seedState(srv);
    // Published after the restart but (almost certainly) before the browser is back.
    const after1 = 'evt-' + uid(), after2 = 'evt-' + uid();
    await publishEvent(srv, after1, 1, 'person', 0.93);
    await publishEvent(srv, after2, 5, 'vehicle', 0.81);
    t.diagnostic(`published after restart at ${Date.now() % 100000}`);
    const statusAtPublish = await page.getAttribute('[data-testid="status-indicator"]', 'data-status');
    t.diagnostic(`status when the post-restart events were published: ${statusAtPublish}`);
    await indicator(page, 'live', 45000);
    try {
      await page.waitForSelector(`[data-testid="event-item"][data-id="${after1}"]`, { timeout: WAIT });
      await page.waitForSelector(`[data-testid="event-item"][data-id="${after2}"]`, { timeout: WAIT });
    } catch (e) {
      const dump = await page.evaluate(() => ({
        feed: [...document.querySelectorAll('[data-testid="event-item"]')].map((li) => li.dataset.id),
        transport: window.__vigil?.transport,
        pos: Object.fromEntries(window.__vigil?._pos || []),
        trace: window.__trace,
      }));
      t.diagnostic(`after1=${after1} after2=${after2} ${JSON.stringify(dump)}`);
      throw e;
    }
    assert.equal(await page.locator(`[data-testid="event-item"][data-id="${before1}"]`).count(), 1, 'no duplicate of the old event');
    await page.waitForSelector('#stale-banner', { state: 'hidden', timeout: WAIT });
  } finally { await ctx.close(); }
});

test('with the WebSocket refused the indicator shows Polling and updates keep arriving', { timeout: 90000 }, async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-dash-poll-'));
  const polled = await startServer({ port: await freePort(), dataDir: dir, extra: ['--refuse-websocket'], name: 'polling' });
  const mainSrv = srv;
  srv = polled;
  try {
    const pdemo = await demoSession(polled);
    if (!pdemo) await seedState(polled);
    const { ctx, page } = await openDashboard({ token: pdemo ? null : userToken });
    try {
      await indicator(page, 'polling', 45000);
      assert.match(await page.locator('[data-testid="status-indicator"]').innerText(), /Polling/);
      const id = 'evt-' + uid();
      await publishEvent(polled, id, 3, 'person', 0.9);
      await page.waitForSelector(`[data-testid="event-item"][data-id="${id}"]`, { timeout: 10000 });
      const id2 = 'evt-' + uid();
      await publishEvent(polled, id2, 4, 'vehicle', 0.85);
      await page.waitForSelector(`[data-testid="event-item"][data-id="${id2}"]`, { timeout: 10000 });
      // State documents keep flowing too.
      const statSel = '[data-stat="events_today"] [data-testid="stat-value"]';
      if (pdemo) {
        await page.waitForFunction((s) => /\d/.test(document.querySelector(s)?.textContent || ''), statSel, { timeout: 10000 });
        const first = await page.textContent(statSel);
        await page.waitForFunction(([s, v]) => document.querySelector(s)?.textContent !== v, [statSel, first], { timeout: 20000 });
      } else {
        await api(polled, 'PUT', '/api/state/statistics', statisticsDoc({ events_today: 424242 }));
        await page.waitForFunction((s) => /424/.test(document.querySelector(s)?.textContent || ''), statSel, { timeout: 10000 });
      }
      assert.equal(await page.getAttribute('[data-testid="status-indicator"]', 'data-status'), 'polling');
      await page.screenshot({ path: path.join(SHOTS, 'dashboard-polling.png'), timeout: 15000 });
    } finally { await ctx.close(); }
  } finally {
    srv = mainSrv;
    await stopServer(polled);
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
