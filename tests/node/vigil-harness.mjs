// Shared helpers for the vigil.js tests (tests/node/vigil-*.test.mjs): start the real server on
// a free port, mint tokens, publish, wait for conditions. Not a test file itself.
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const BIN = process.env.VIGIL_BIN;
export const API_KEY = 'K';
export const SECRET = 'S';

const live = new Set();
process.on('exit', () => { for (const p of live) { try { p.kill('SIGKILL'); } catch { /* gone */ } } });

/** A TCP port nobody listens on right now. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

export function tempDir(prefix = 'vigil-js-') {
  return mkdtempSync(join(tmpdir(), prefix));
}

export function removeDir(dir) {
  try { rmSync(dir, { recursive: true, force: true }); } catch { /* best effort */ }
}

/**
 * Starts `vigil serve` and waits for /healthz.
 * @param {{port?: number, dataDir?: string, args?: string[]}} [opts]
 */
export async function startServer(opts = {}) {
  if (!BIN) throw new Error('VIGIL_BIN is not set');
  const port = opts.port || await freePort();
  const dataDir = opts.dataDir || tempDir();
  const args = ['serve', '--listen', `127.0.0.1:${port}`, '--data-dir', dataDir, '--api-key', API_KEY,
    '--jwt-secret', SECRET, '--workers', '2', ...(opts.args || [])];
  let log = '';
  const proc = spawn(BIN, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  live.add(proc);
  proc.stdout.on('data', (d) => { log += d; });
  proc.stderr.on('data', (d) => { log += d; });
  let exited = false;
  const exitP = new Promise((resolve) => proc.on('exit', () => { exited = true; live.delete(proc); resolve(); }));
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 10000;
  for (;;) {
    if (exited) throw new Error(`vigil serve exited at start:\n${log}`);
    try {
      const r = await fetch(`${url}/healthz`);
      if (r.ok) break;
    } catch { /* not yet */ }
    if (Date.now() > deadline) { proc.kill('SIGKILL'); throw new Error(`vigil serve did not start:\n${log}`); }
    await sleep(50);
  }
  return {
    port, url, dataDir, proc,
    log: () => log,
    async stop(signal = 'SIGTERM') {
      if (exited) return;
      proc.kill(signal);
      const t = setTimeout(() => proc.kill('SIGKILL'), 5000);
      await exitP;
      clearTimeout(t);
    },
  };
}

/** A user token from `vigil token`. */
export function token(sub, { ttl, channels, admin } = {}) {
  const args = ['token', '--secret', SECRET, '--sub', sub];
  if (ttl !== undefined) args.push('--ttl', String(ttl));
  if (channels) args.push('--channels', channels);
  if (admin) args.push('--admin');
  return execFileSync(BIN, args, { encoding: 'utf8' }).trim();
}

export async function api(url, path, { method = 'POST', body, auth = API_KEY } = {}) {
  const r = await fetch(url + path, {
    method,
    headers: { Authorization: `Bearer ${auth}`, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${text}`);
  return json;
}

export function publish(url, channel, type, data, extra = {}) {
  return api(url, '/api/publish', { body: { channel, type, data, ...extra } });
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls `cond` every 20 ms until it returns truthy or `ms` pass (then throws naming `what`). */
export async function waitFor(cond, ms, what) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await cond();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${typeof what === 'function' ? what() : what}`);
    await sleep(20);
  }
}

/**
 * Publishes numbered messages (data {n}) round-robin on `channels` until stopped; returns a
 * controller with the count per channel.
 */
export function publisher(url, channels, { interval = 5, type = 'tick' } = {}) {
  const sent = Object.fromEntries(channels.map((c) => [c, 0]));
  let stopped = false;
  let errors = 0;
  const done = (async () => {
    let i = 0;
    while (!stopped) {
      const ch = channels[i++ % channels.length];
      const n = sent[ch] + 1;
      try {
        await publish(url, ch, type, { n });
        sent[ch] = n;
      } catch {
        errors++; // the server is restarting: try the same number again
        await sleep(50);
      }
      await sleep(interval);
    }
  })();
  return {
    sent,
    get errors() { return errors; },
    async stop() { stopped = true; await done; },
  };
}

/** Asserts that `got[ch]` is exactly 1..sent[ch] for every channel; returns a description on failure. */
export function checkSequences(got, sent) {
  const problems = [];
  for (const ch of Object.keys(sent)) {
    const seq = got[ch] || [];
    const n = sent[ch];
    const ok = seq.length === n && seq.every((v, i) => v === i + 1);
    if (!ok) {
      const missing = [];
      const set = new Set(seq);
      for (let i = 1; i <= n; i++) if (!set.has(i)) missing.push(i);
      const dups = seq.filter((v, i) => seq.indexOf(v) !== i);
      problems.push(`${ch}: got ${seq.length} of ${n}; missing [${missing.slice(0, 20)}]; duplicates [${dups.slice(0, 20)}]; out of order: ${seq.some((v, i) => i > 0 && v < seq[i - 1])}`);
    }
  }
  return problems;
}

