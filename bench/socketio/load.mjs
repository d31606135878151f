// Socket.IO fan-out load: N socket.io-client connections (transports: ['websocket']), M publishes
// through the target's publish API, every delivery counted and timed.
//
//   node load.mjs --target vigil|ref --url http://127.0.0.1:PORT --pid SERVER_PID
//                 [--n 1000] [--m 1000] [--rate 100|0] [--procs 2] [--key K]
//                 [--payload 256] [--concurrency 4] [--label NAME] [--json FILE]
//
// --rate 0 publishes as fast as possible (--concurrency requests in flight). The clients are
// spread over --procs child processes (each its own event loop), all on this machine.
// Latency = receive time in the client's 'tick' handler - "t" stamped by the publisher just before
// its POST, both read from performance.timeOrigin + performance.now() (sub-millisecond).
// Prints one JSON line of results (and writes it to --json FILE). LOAD_TRACE=1 prints every 20th
// message's latency (client 0) and publish round trip, for debugging.
import { fork } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { fileURLToPath } from 'node:url';

const now = () => performance.timeOrigin + performance.now();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Latency histogram: 10 µs buckets up to 20 s (the last bucket takes everything above).
const BUCKET_US = 10;
const NBUCKETS = 2_000_000;

function parseArgs(argv) {
  const o = {};
  for (let i = 0; i < argv.length; i++) {
    if (!argv[i].startsWith('--')) continue;
    const k = argv[i].slice(2);
    const v = argv[i + 1] !== undefined && !argv[i + 1].startsWith('--') ? argv[++i] : 'true';
    o[k] = v;
  }
  return o;
}

// ---------------------------------------------------------------------------------------------
// child: holds a share of the clients
// ---------------------------------------------------------------------------------------------
async function child() {
  const { io } = await import('socket.io-client');
  let sockets = [];
  let seen = null; // seen[c * m + seq] = 1
  let counts = null;
  let m = 0;
  let hist = null;
  let total = 0;
  let dup = 0;
  let bad = 0;
  let lastRecv = 0;
  let maxLat = 0;
  let disconnects = 0;
  let recording = false;
  const errors = {};

  process.on('message', async (msg) => {
    if (msg.cmd === 'connect') {
      const { url, n, batch } = msg;
      const t0 = now();
      for (let base = 0; base < n; base += batch) {
        const group = [];
        for (let c = base; c < Math.min(n, base + batch); c++) {
          group.push(new Promise((resolve) => {
            const s = io(url, { transports: ['websocket'], forceNew: true, reconnection: false, timeout: 60000 });
            s.on('connect', () => resolve());
            s.on('connect_error', (e) => {
              errors[e.message] = (errors[e.message] || 0) + 1;
              resolve();
            });
            s.on('disconnect', (reason) => {
              if (recording) {
                disconnects++;
                errors['disconnect: ' + reason] = (errors['disconnect: ' + reason] || 0) + 1;
              }
            });
            s.on('tick', (d) => {
              if (!recording) return;
              const t = now();
              if (!d || typeof d.seq !== 'number' || d.seq < 0 || d.seq >= m) { bad++; return; }
              const k = c * m + d.seq;
              if (seen[k]) { dup++; return; }
              seen[k] = 1;
              counts[c]++;
              total++;
              lastRecv = t;
              const lat = t - d.t;
              if (lat > maxLat) maxLat = lat;
              let b = Math.floor((lat * 1000) / BUCKET_US);
              if (b < 0) b = 0;
              if (b >= NBUCKETS) b = NBUCKETS - 1;
              hist[b]++;
              if (process.env.LOAD_TRACE && c === 0 && d.seq % 20 === 0) console.error(`trace seq=${d.seq} lat=${lat.toFixed(1)}ms`);
            });
            sockets[c] = s;
          }));
        }
        await Promise.all(group);
      }
      const connected = sockets.filter((s) => s.connected).length;
      process.send({ cmd: 'connected', connected, ms: now() - t0, errors });
    } else if (msg.cmd === 'arm') {
      m = msg.m;
      seen = new Uint8Array(sockets.length * m);
      counts = new Uint32Array(sockets.length);
      hist = new Uint32Array(NBUCKETS);
      total = dup = bad = disconnects = 0;
      lastRecv = maxLat = 0;
      recording = true;
      process.send({ cmd: 'armed', cpu: process.cpuUsage() });
    } else if (msg.cmd === 'progress') {
      process.send({ cmd: 'progress', total, lastRecv });
    } else if (msg.cmd === 'result') {
      recording = false;
      const nz = [];
      for (let i = 0; i < NBUCKETS; i++) if (hist[i]) nz.push(i, hist[i]);
      let minC = Infinity, maxC = 0, full = 0;
      for (const x of counts) {
        if (x < minC) minC = x;
        if (x > maxC) maxC = x;
        if (x === m) full++;
      }
      process.send({
        cmd: 'result', total, dup, bad, lastRecv, maxLat, disconnects, errors,
        hist: nz, minC, maxC, full, clients: sockets.length, cpu: process.cpuUsage(),
      });
    } else if (msg.cmd === 'close') {
      for (const s of sockets) s.close();
      sockets = [];
      setTimeout(() => process.exit(0), 200);
    }
  });
  process.send({ cmd: 'ready' });
}

// ---------------------------------------------------------------------------------------------
// parent: spawns the children, publishes, measures
// ---------------------------------------------------------------------------------------------
function rssKiB(pid) {
  const s = readFileSync(`/proc/${pid}/status`, 'utf8');
  const mm = /VmRSS:\s+(\d+)\s+kB/.exec(s);
  return mm ? Number(mm[1]) : NaN;
}

function cpuMs(pid) {
  // utime + stime of the whole process (all threads), in ms
  const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(f[11]) + Number(f[12]);
  return (ticks * 1000) / 100; // CLK_TCK = 100 on Linux
}

function machineBusyMs() {
  // busy jiffies of the whole machine (all cores) from /proc/stat, in ms
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const idle = f[3] + (f[4] || 0);
  const all = f.slice(0, 8).reduce((x, y) => x + y, 0);
  return ((all - idle) * 1000) / 100;
}

function waitFor(ch, cmd) {
  return new Promise((resolve) => {
    const h = (msg) => {
      if (msg.cmd === cmd) {
        ch.off('message', h);
        resolve(msg);
      }
    };
    ch.on('message', h);
  });
}

async function parent() {
  const a = parseArgs(process.argv.slice(2));
  const target = a.target || 'vigil';
  const url = a.url || 'http://127.0.0.1:8789';
  const pid = Number(a.pid);
  const n = Number(a.n || 1000);
  const m = Number(a.m || 1000);
  const rate = Number(a.rate || 0);
  const procs = Number(a.procs || 2);
  const key = a.key || 'K';
  const payload = Number(a.payload || 256);
  const concurrency = Number(a.concurrency || 4);
  const label = a.label || `${target} n=${n} m=${m} rate=${rate || 'max'}`;
  if (!pid) throw new Error('--pid SERVER_PID is required (for RSS and CPU)');

  const u = new URL(url);
  const agent = new http.Agent({ keepAlive: true, maxSockets: Math.max(concurrency, 8) });
  const publishPath = target === 'vigil' ? '/api/publish' : '/publish';
  const headers = { 'content-type': 'application/json' };
  if (target === 'vigil') headers.authorization = `Bearer ${key}`;

  // data = {"seq":i,"t":T,"pad":"xxx..."}, padded so that JSON.stringify(data) is `payload` bytes
  const makeData = (seq) => {
    const d = { seq, t: now(), pad: '' };
    d.pad = 'x'.repeat(Math.max(0, payload - JSON.stringify(d).length));
    return d;
  };
  const bodyOf = (d) => JSON.stringify(target === 'vigil'
    ? { channel: 'bench.x', type: 'tick', data: d }
    : { event: 'tick', data: d });

  let pubErrors = 0;
  const publish = (seq) => new Promise((resolve) => {
    const d0 = makeData(seq);
    const body = bodyOf(d0);
    const req = http.request({
      host: u.hostname, port: u.port, path: publishPath, method: 'POST', agent,
      headers: { ...headers, 'content-length': Buffer.byteLength(body) },
    }, (res) => {
      res.resume();
      res.on('end', () => {
        if (process.env.LOAD_TRACE && seq % 20 === 0) console.error(`trace pub seq=${seq} rtt=${(now() - d0.t).toFixed(1)}ms`);
        if (res.statusCode < 200 || res.statusCode >= 300) pubErrors++;
        resolve();
      });
    });
    req.on('error', () => { pubErrors++; resolve(); });
    req.end(body);
  });

  const rss0 = rssKiB(pid);

  // children
  const self = fileURLToPath(import.meta.url);
  const kids = [];
  for (let i = 0; i < procs; i++) {
    const ch = fork(self, ['--child'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    kids.push(ch);
    await waitFor(ch, 'ready');
  }
  const per = kids.map((_, i) => Math.floor(n / procs) + (i < n % procs ? 1 : 0));
  const tc0 = now();
  const conn = await Promise.all(kids.map((ch, i) => {
    const p = waitFor(ch, 'connected');
    ch.send({ cmd: 'connect', url, n: per[i], batch: 50 });
    return p;
  }));
  const connected = conn.reduce((s, x) => s + x.connected, 0);
  const connectMs = now() - tc0;
  const connErrors = {};
  for (const c of conn) for (const [k, v] of Object.entries(c.errors)) connErrors[k] = (connErrors[k] || 0) + v;

  await sleep(3000); // settle
  const rssIdle = rssKiB(pid);

  const armed = await Promise.all(kids.map((ch) => { const p = waitFor(ch, 'armed'); ch.send({ cmd: 'arm', m }); return p; }));

  // publish
  const cpu0 = cpuMs(pid);
  const busy0 = machineBusyMs();
  const parentCpu0 = process.cpuUsage();
  const tp0 = now();
  if (rate > 0) {
    const interval = 1000 / rate;
    const inflight = [];
    for (let i = 0; i < m; i++) {
      const due = tp0 + i * interval;
      const wait = due - now();
      if (wait > 1) await sleep(wait - 1);
      while (now() < due) { /* spin the last ms for an even schedule */ }
      inflight.push(publish(i));
    }
    await Promise.all(inflight);
  } else {
    let next = 0;
    const worker = async () => {
      while (next < m) await publish(next++);
    };
    await Promise.all(Array.from({ length: concurrency }, worker));
  }
  const tp1 = now();

  // wait for every delivery, or 10 s without progress
  const expected = connected * m;
  let total = 0;
  let lastTotal = -1;
  let lastChange = now();
  for (;;) {
    const prog = await Promise.all(kids.map((ch) => { const p = waitFor(ch, 'progress'); ch.send({ cmd: 'progress' }); return p; }));
    total = prog.reduce((s, x) => s + x.total, 0);
    if (total >= expected) break;
    if (total !== lastTotal) { lastTotal = total; lastChange = now(); }
    if (now() - lastChange > 10000) break;
    await sleep(50);
  }
  const cpu1 = cpuMs(pid);
  const busy1 = machineBusyMs();
  const parentCpu = process.cpuUsage(parentCpu0);

  const res = await Promise.all(kids.map((ch) => { const p = waitFor(ch, 'result'); ch.send({ cmd: 'result' }); return p; }));
  await sleep(2000);
  const rssAfter = rssKiB(pid);

  // merge
  const hist = new Map();
  let dup = 0, bad = 0, lastRecv = 0, maxLat = 0, disconnects = 0, minC = Infinity, maxC = 0, full = 0;
  const runErrors = {};
  let clientCpuMs = 0;
  total = 0;
  for (const x of armed) clientCpuMs -= (x.cpu.user + x.cpu.system) / 1000;
  for (const r of res) {
    total += r.total; dup += r.dup; bad += r.bad; disconnects += r.disconnects; full += r.full;
    if (r.lastRecv > lastRecv) lastRecv = r.lastRecv;
    if (r.maxLat > maxLat) maxLat = r.maxLat;
    if (r.clients && r.minC < minC) minC = r.minC;
    if (r.maxC > maxC) maxC = r.maxC;
    for (let i = 0; i < r.hist.length; i += 2) hist.set(r.hist[i], (hist.get(r.hist[i]) || 0) + r.hist[i + 1]);
    for (const [k, v] of Object.entries(r.errors)) runErrors[k] = (runErrors[k] || 0) + v;
    clientCpuMs += (r.cpu.user + r.cpu.system) / 1000;
  }
  const keys = [...hist.keys()].sort((x, y) => x - y);
  const pct = (p) => {
    const want = Math.ceil((p / 100) * total);
    let acc = 0;
    for (const k of keys) {
      acc += hist.get(k);
      if (acc >= want) return ((k + 0.5) * BUCKET_US) / 1000;
    }
    return NaN;
  };
  const spanMs = lastRecv - tp0;
  const out = {
    label, target, n, connected, m, rate: rate || 'max', payload, procs,
    connect_s: +(connectMs / 1000).toFixed(2),
    connect_errors: connErrors,
    publish_s: +((tp1 - tp0) / 1000).toFixed(3),
    publish_errors: pubErrors,
    expected, delivered: total, lost: expected - total, dup, bad, disconnects,
    clients_complete: full, per_client_min: minC, per_client_max: maxC,
    deliver_span_s: +(spanMs / 1000).toFixed(3),
    deliveries_per_s: Math.round(total / (spanMs / 1000)),
    lat_p50_ms: +pct(50).toFixed(2),
    lat_p99_ms: +pct(99).toFixed(2),
    lat_max_ms: +maxLat.toFixed(2),
    rss0_kib: rss0, rss_idle_kib: rssIdle, rss_after_kib: rssAfter,
    rss_per_conn_kib: +((rssIdle - rss0) / Math.max(1, connected)).toFixed(2),
    server_cpu_ms: Math.round(cpu1 - cpu0),
    server_cpu_us_per_delivery: +(((cpu1 - cpu0) * 1000) / Math.max(1, total)).toFixed(2),
    client_cpu_ms: Math.round(clientCpuMs),
    publisher_cpu_ms: Math.round((parentCpu.user + parentCpu.system) / 1000),
    machine_busy_ms: Math.round(busy1 - busy0),
    // CPU used by processes other than this server and this load (other users of the machine);
    // approximate: the clients' CPU is counted up to the result request, not to the last delivery
    other_cpu_ms: Math.round((busy1 - busy0) - (cpu1 - cpu0) - clientCpuMs - (parentCpu.user + parentCpu.system) / 1000),
    loadavg: readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' '),
    run_errors: runErrors,
  };

  await Promise.all(kids.map((ch) => new Promise((r) => { ch.on('exit', r); ch.send({ cmd: 'close' }); })));
  agent.destroy();
  const line = JSON.stringify(out);
  console.log(line);
  if (a.json) writeFileSync(a.json, line + '\n', { flag: 'a' });
  process.exit(0);
}

if (process.argv.includes('--child')) child();
else parent().catch((e) => { console.error(e); process.exit(1); });
