// vigil live dashboard. Plain ES module, no framework, no build step; talks to the server only
// through vigil.js (plus GET /api/demo/session to log in and GET /ws/connections for admins).

const KEY_TOKEN = 'vigil.token';
const KEY_SIGNED_OUT = 'vigil.signedOut';
const KEY_THEME = 'vigil.theme';
const KEY_NOTIFY = 'vigil.notify';

const FEED_CAP = 60;           // events kept in the feed
const TOAST_MAX = 3;           // toasts visible at once (2 on a phone)
const TOAST_MS = 5000;         // toast lifetime
const ADMIN_REFRESH_MS = 3000; // connections page refresh

const EVENT_KINDS = {
  person:  { label: 'Person detected',  icon: 'i-person',  tone: 'tone-violet' },
  vehicle: { label: 'Vehicle detected', icon: 'i-vehicle', tone: 'tone-amber' },
  motion:  { label: 'Motion detected',  icon: 'i-motion',  tone: 'tone-green' },
};
const STATUS_UI = {
  live:       { text: 'Live',       icon: 'i-live',    title: 'Connected: updates arrive in real time over WebSocket' },
  connecting: { text: 'Connecting', icon: 'i-spinner', title: 'Connecting to the server…' },
  polling:    { text: 'Polling',    icon: 'i-sync',    title: 'WebSocket unavailable: updates arrive over an HTTP fallback' },
  offline:    { text: 'Offline',    icon: 'i-offline', title: 'No connection to the server; retrying automatically' },
};
const CAM_STATE = {
  recording: { label: 'Recording', verb: 'Recording' },
  online:    { label: 'Online',    verb: 'Online' },
  down:      { label: 'Down',      verb: 'Down' },
};

// ---------------------------------------------------------------- small helpers

const $ = (id) => document.getElementById(id);
const SVG_NS = 'http://www.w3.org/2000/svg';

/** Creates an element: h('div', {class: 'x', dataset: {id: 1}}, 'text', child). Text is never parsed as HTML. */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) if (c != null && c !== false) el.append(c instanceof Node ? c : String(c));
  return el;
}
function icon(id, cls) {
  const svg = document.createElementNS(SVG_NS, 'svg');
  svg.setAttribute('class', 'icon' + (cls ? ' ' + cls : ''));
  svg.setAttribute('aria-hidden', 'true');
  const use = document.createElementNS(SVG_NS, 'use');
  use.setAttribute('href', '#' + id);
  svg.append(use);
  return svg;
}
function svgEl(tag, attrs) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  return el;
}
function setText(el, text) {
  text = String(text);
  if (el && el.textContent !== text) el.textContent = text;
}

const nf = new Intl.NumberFormat(undefined);
const fmtNum = (n) => (typeof n === 'number' && isFinite(n) ? nf.format(n) : '–');
const timeFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' });
const hmFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
const dateTimeFmt = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'medium' });

function toMs(ts) {
  if (typeof ts === 'number') return ts < 1e12 ? ts * 1000 : ts;
  const t = Date.parse(ts);
  return isNaN(t) ? null : t;
}
function fmtDuration(ms) {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return s + 's';
  const m = Math.floor(s / 60);
  if (m < 60) return m + 'm' + (s % 60 && m < 10 ? ' ' + (s % 60) + 's' : '');
  const hh = Math.floor(m / 60);
  if (hh < 24) return hh + 'h' + (m % 60 ? ' ' + (m % 60) + 'm' : '');
  const d = Math.floor(hh / 24);
  return d + 'd' + (hh % 24 ? ' ' + (hh % 24) + 'h' : '');
}
function fmtAgo(ms) {
  const d = Date.now() - ms;
  if (d < 5000) return 'just now';
  return fmtDuration(d) + ' ago';
}
/** Marks an element for the 1-second ticker: mode 'ago' ("2m ago") or 'for' ("for 2m"). */
function relSpan(ms, mode = 'ago', prefix = '') {
  const el = h('span', { dataset: { rel: ms, relmode: mode, relprefix: prefix } });
  if (ms != null) el.title = dateTimeFmt.format(ms);
  renderRel(el);
  return el;
}
function renderRel(el) {
  const ms = Number(el.dataset.rel);
  if (!ms) { setText(el, '–'); return; }
  const p = el.dataset.relprefix || '';
  setText(el, p + (el.dataset.relmode === 'for' ? fmtDuration(Date.now() - ms) : fmtAgo(ms)));
}

function decodeJwt(token) {
  try {
    const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const json = decodeURIComponent(atob(part + '==='.slice((part.length + 3) % 4)).split('')
      .map((c) => '%' + c.charCodeAt(0).toString(16).padStart(2, '0')).join(''));
    return JSON.parse(json);
  } catch { return null; }
}
function safeImage(src) {
  return typeof src === 'string' && /^data:image\/(png|jpe?g|gif|webp);base64,[A-Za-z0-9+/=\s]+$/.test(src) ? src : null;
}
function storage(kind) {
  try { return kind === 'local' ? window.localStorage : window.sessionStorage; } catch { return null; }
}
const ss = storage('session');
const ls = storage('local');

// ---------------------------------------------------------------- theme

function applyTheme(theme) {
  // Switch every colour at once instead of letting each transition run from the old theme.
  const root = document.documentElement;
  root.classList.add('theme-switching');
  root.setAttribute('data-theme', theme);
  requestAnimationFrame(() => requestAnimationFrame(() => root.classList.remove('theme-switching')));
  const next = theme === 'dark' ? 'light' : 'dark';
  $('theme-use').setAttribute('href', theme === 'dark' ? '#i-sun' : '#i-moon');
  $('theme-toggle').setAttribute('aria-label', `Switch to ${next} theme`);
  $('theme-toggle').title = `Switch to ${next} theme`;
  if (lastStats) renderChart(lastStats); // colours live in CSS, but redraw keeps hover state clean
}
function initTheme() {
  const mq = matchMedia('(prefers-color-scheme: light)');
  applyTheme(document.documentElement.getAttribute('data-theme') || (mq.matches ? 'light' : 'dark'));
  $('theme-toggle').addEventListener('click', () => {
    const next = document.documentElement.getAttribute('data-theme') === 'dark' ? 'light' : 'dark';
    ls?.setItem(KEY_THEME, next);
    applyTheme(next);
  });
  mq.addEventListener?.('change', (e) => {
    const saved = ls?.getItem(KEY_THEME);
    if (saved !== 'light' && saved !== 'dark') applyTheme(e.matches ? 'light' : 'dark');
  });
}

// ---------------------------------------------------------------- auth

/** ?token= (moved to sessionStorage), else sessionStorage, else the demo session, else null. */
async function resolveAuth() {
  const url = new URL(location.href);
  const fromUrl = url.searchParams.get('token');
  if (fromUrl) {
    ss?.setItem(KEY_TOKEN, fromUrl);
    ss?.removeItem(KEY_SIGNED_OUT);
    url.searchParams.delete('token');
    history.replaceState(history.state, '', url.pathname + url.search + url.hash);
    return { token: fromUrl, source: 'url' };
  }
  const stored = ss?.getItem(KEY_TOKEN);
  if (stored) return { token: stored, source: 'session' };
  if (ss?.getItem(KEY_SIGNED_OUT)) return null;
  const demo = await fetchDemoSession();
  return demo ? { ...demo, source: 'demo' } : null;
}
async function fetchDemoSession() {
  try {
    const r = await fetch('/api/demo/session', { headers: { Accept: 'application/json' }, cache: 'no-store' });
    if (!r.ok) return null;
    const j = await r.json();
    return j && typeof j.token === 'string' ? { token: j.token, user: j.user, admin: !!j.admin } : null;
  } catch { return null; }
}
function tokenExpired(claims) {
  return claims && typeof claims.exp === 'number' && claims.exp * 1000 < Date.now();
}

function showLogin(message) {
  $('boot').hidden = true;
  $('app').hidden = true;
  $('login').hidden = false;
  $('login-error').textContent = message || '';
  const form = $('login-form');
  const input = $('token-input');
  setTimeout(() => input.focus(), 0);
  if (!form.dataset.bound) {
    form.dataset.bound = '1';
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      const t = input.value.trim().replace(/^Bearer\s+/i, '');
      const claims = decodeJwt(t);
      if (!claims) { $('login-error').textContent = 'That does not look like a token (expected three dot-separated parts).'; return; }
      if (tokenExpired(claims)) { $('login-error').textContent = 'This token has expired. Ask for a new one.'; return; }
      ss?.setItem(KEY_TOKEN, t);
      ss?.removeItem(KEY_SIGNED_OUT);
      location.reload();
    });
    fetch('/api/demo/session', { method: 'HEAD', cache: 'no-store' }).then((r) => {
      if (!r.ok) return;
      const b = h('button', { class: 'btn', type: 'button', 'data-testid': 'login-demo' }, 'Continue with the demo session');
      b.addEventListener('click', () => { ss?.removeItem(KEY_SIGNED_OUT); location.reload(); });
      form.append(b);
    }).catch(() => {});
  }
}

// ---------------------------------------------------------------- connection status

let everLive = false;
let currentStatus = 'connecting';

function renderStatus(status) {
  if (!STATUS_UI[status]) status = 'connecting';
  currentStatus = status;
  const ui = STATUS_UI[status];
  const el = $('conn');
  el.dataset.status = status;
  el.title = ui.title;
  $('conn-use').setAttribute('href', '#' + ui.icon);
  setText($('conn-text'), ui.text);
  if (status === 'live' || status === 'polling') everLive = true;
  const banner = $('stale-banner');
  const stale = everLive && (status === 'connecting' || status === 'offline');
  banner.hidden = !stale;
  banner.classList.toggle('is-offline', status === 'offline');
  setText($('stale-text'), status === 'offline'
    ? 'Offline: retrying automatically. Figures below are the last known values.'
    : 'Reconnecting to the server: figures below may be out of date.');
}

// ---------------------------------------------------------------- toasts

let notifyOn = ls?.getItem(KEY_NOTIFY) !== 'off';

function initNotifyToggle() {
  const btn = $('notify-toggle');
  const paint = () => {
    btn.setAttribute('aria-pressed', String(notifyOn));
    $('notify-use').setAttribute('href', notifyOn ? '#i-bell' : '#i-bell-off');
    btn.title = notifyOn ? 'Event pop-ups on (click to mute)' : 'Event pop-ups muted (click to enable)';
  };
  paint();
  btn.addEventListener('click', () => {
    notifyOn = !notifyOn;
    ls?.setItem(KEY_NOTIFY, notifyOn ? 'on' : 'off');
    paint();
  });
}

function toast({ id, kind, title, sub, iconId, tone, force }) {
  if (!notifyOn && !force) return;
  const box = $('toasts');
  const live = [...box.querySelectorAll('.toast:not(.leaving)')];
  // Oldest go first so that never more than TOAST_MAX are visible.
  const max = matchMedia('(max-width: 640px)').matches ? TOAST_MAX - 1 : TOAST_MAX;
  for (let i = 0; i <= live.length - max; i++) dismissToast(live[i], true);
  const close = h('button', { class: 'toast-close', type: 'button', 'aria-label': 'Dismiss notification' }, icon('i-x'));
  const bar = h('span', { class: 'toast-bar', 'aria-hidden': 'true' });
  bar.style.animationDuration = TOAST_MS + 'ms';
  const el = h('div', { class: 'toast', 'data-testid': 'toast', dataset: { id: id || '', kind: kind || 'event' } },
    h('span', { class: 'toast-icon ' + (tone || 'tone-accent') }, icon(iconId || 'i-bell')),
    h('div', { class: 'toast-main' }, h('div', { class: 'toast-title' }, title), h('div', { class: 'toast-sub' }, sub || '')),
    close, bar);
  if (tone) el.style.setProperty('--t', `var(--${tone.replace('tone-', '')})`);
  close.addEventListener('click', () => dismissToast(el));
  let timer = setTimeout(() => dismissToast(el), TOAST_MS);
  el.addEventListener('mouseenter', () => clearTimeout(timer));
  el.addEventListener('mouseleave', () => { clearTimeout(timer); timer = setTimeout(() => dismissToast(el), 2000); });
  el._timer = () => clearTimeout(timer);
  box.append(el);
}
function dismissToast(el, fast) {
  if (!el || el.classList.contains('leaving')) return;
  el._timer?.();
  el.classList.add('leaving');
  const done = () => el.remove();
  if (fast) { el.style.display = 'none'; done(); return; }
  el.addEventListener('animationend', done, { once: true });
  setTimeout(done, 400);
}

// ---------------------------------------------------------------- statistics + chart

let lastStats = null;

function bumpStat(el, value) {
  const text = fmtNum(value);
  if (el.textContent === text) return;
  const card = el.closest('.stat');
  el.textContent = text;
  if (card && lastStats) { card.classList.remove('bump'); void card.offsetWidth; card.classList.add('bump'); }
}

/* {total, online, recording, down} from the cameras of the status document, or null. */
function liveCameraCounts() {
  if (cams.size === 0) return null;
  const n = { total: cams.size, online: 0, recording: 0, down: 0 };
  for (const cam of cams.values()) {
    if (cam.state === 'down') n.down++;
    else n.online++;
    if (cam.state === 'recording') n.recording++;
  }
  return n;
}

/* The "Cameras up" card. */
function renderFleetCard(doc) {
  // The camera counts come from the live `status` document when there is one: `statistics` is
  // pushed every few seconds, and the card must not disagree with the camera grid below it.
  const c = liveCameraCounts() || doc.cameras || {};
  // "online" counts every camera that is not down (recording ones included); tolerate a feed
  // that counts the three states separately.
  const separate = typeof c.total === 'number' && (c.online || 0) + (c.recording || 0) + (c.down || 0) === c.total &&
    (c.online || 0) + (c.down || 0) !== c.total;
  const up = separate ? (c.online || 0) + (c.recording || 0) : (c.online || 0);
  const idle = Math.max(0, up - (c.recording || 0));
  bumpStat($('st-cameras-up'), up);
  setText($('st-cameras-total'), typeof c.total === 'number' ? ' / ' + fmtNum(c.total) : '');
  const total = c.total || up + (c.down || 0) || 1;
  const segs = $('fleetbar').children;
  segs[0].style.width = ((c.recording || 0) / total) * 100 + '%';
  segs[1].style.width = (idle / total) * 100 + '%';
  segs[2].style.width = ((c.down || 0) / total) * 100 + '%';
  const foot = $('st-cameras-foot');
  foot.replaceChildren(h('b', null, fmtNum(c.recording || 0)), ' recording · ', h('b', null, fmtNum(c.down || 0)), ' down');
}

function renderStats(doc) {
  if (!doc || typeof doc !== 'object') return;
  renderFleetCard(doc);
  bumpStat($('st-events-today'), doc.events_today);
  $('st-events-foot').replaceChildren(h('b', null, fmtNum(doc.events_last_hour)), ' in the last hour');
  bumpStat($('st-alerts'), doc.alerts_open);
  bumpStat($('st-people'), doc.people_today);
  bumpStat($('st-vehicles'), doc.vehicles_today);
  bumpStat($('st-motion'), doc.motion_today);

  const ts = toMs(doc.timestamp);
  const sub = $('fleet-sub');
  const c = liveCameraCounts() || doc.cameras || {};
  sub.replaceChildren(`${fmtNum(c.total ?? c.online ?? 0)} cameras · ${fmtNum(doc.events_last_hour)} events in the last hour · updated `,
    ts ? relSpan(ts) : 'now');
  lastStats = doc;
  renderChart(doc);
  renderAlertFoot();
}

function niceStep(raw) {
  const p = Math.pow(10, Math.floor(Math.log10(Math.max(raw, 1e-9))));
  const f = raw / p;
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 2.5 ? 2.5 : f <= 5 ? 5 : 10) * p;
}

const chartState = { bars: [], hover: -1, series: [] };

function renderChart(doc) {
  const box = $('chart');
  const raw = Array.isArray(doc.events_per_minute) ? doc.events_per_minute : [];
  const series = raw.slice(-60).map((v) => (typeof v === 'number' && isFinite(v) ? Math.max(0, v) : 0));
  while (series.length < 60) series.unshift(0);
  chartState.series = series;
  const endMs = toMs(doc.timestamp) || Date.now();
  chartState.endMs = endMs;

  const sum = series.reduce((a, b) => a + b, 0);
  const peak = Math.max(...series);
  const avg = sum / series.length;
  setText($('kpi-now'), fmtNum(series[59]));
  setText($('kpi-avg'), avg.toFixed(avg < 10 ? 1 : 0));
  setText($('kpi-peak'), fmtNum(peak));
  box.setAttribute('aria-label', `Events per minute over the last hour: ${fmtNum(sum)} in total, ` +
    `average ${avg.toFixed(1)}, peak ${fmtNum(peak)}, ${fmtNum(series[59])} in the current minute.`);

  const W = Math.max(200, box.clientWidth || 600);
  const H = Math.max(120, box.clientHeight || 220);
  const padL = 30, padR = 4, padT = 10, padB = 24;
  const plotW = W - padL - padR, plotH = H - padT - padB;
  const step = niceStep(Math.max(peak, 4) / 4);
  const yMax = Math.max(step * 4, Math.ceil(peak / step) * step);
  const y = (v) => padT + plotH - (v / yMax) * plotH;

  const svg = svgEl('svg', { viewBox: `0 0 ${W} ${H}`, width: W, height: H, 'aria-hidden': 'true', focusable: 'false' });
  const defs = svgEl('defs');
  const grad = svgEl('linearGradient', { id: 'bar-fill', x1: 0, y1: 0, x2: 0, y2: 1 });
  grad.append(svgEl('stop', { offset: '0', class: 'bar-stop-top' }), svgEl('stop', { offset: '1', class: 'bar-stop-bottom' }));
  defs.append(grad);
  svg.append(defs);
  for (let v = 0; v <= yMax + 1e-9; v += step) {
    const yy = Math.round(y(v)) + 0.5;
    svg.append(svgEl('line', { class: 'gl', x1: padL, x2: W - padR, y1: yy, y2: yy }));
    const t = svgEl('text', { class: 'axis', x: padL - 8, y: yy + 4, 'text-anchor': 'end' });
    t.textContent = Number.isInteger(v) ? fmtNum(v) : v.toFixed(1);
    svg.append(t);
  }
  const bw = plotW / 60;
  const barW = Math.max(2, Math.min(14, bw * 0.68));
  chartState.bars = [];
  for (let i = 0; i < 60; i++) {
    const v = series[i];
    const bh = Math.max(v > 0 ? 2 : 1, (v / yMax) * plotH);
    const x = padL + i * bw + (bw - barW) / 2;
    const r = svgEl('rect', { class: 'bar' + (i === 59 ? ' now' : '') + (i === chartState.hover ? ' hover' : ''),
      x: x.toFixed(2), y: (padT + plotH - bh).toFixed(2), width: barW.toFixed(2), height: bh.toFixed(2),
      rx: Math.min(3, barW / 2), 'data-i': i, 'data-v': v, opacity: v > 0 ? 1 : 0.35 });
    chartState.bars.push(r);
    svg.append(r);
  }
  if (sum > 0) {
    const ay = Math.round(y(avg)) + 0.5;
    svg.append(svgEl('line', { class: 'avg', x1: padL, x2: W - padR, y1: ay, y2: ay }));
  }
  for (const i of [0, 15, 30, 45, 59]) {
    const t = svgEl('text', { class: 'axis', x: padL + i * bw + bw / 2, y: H - 6,
      'text-anchor': i === 0 ? 'start' : i === 59 ? 'end' : 'middle' });
    t.textContent = i === 59 ? 'now' : hmFmt.format(endMs - (59 - i) * 60000);
    svg.append(t);
  }
  const hit = svgEl('rect', { class: 'hit', x: padL, y: padT, width: plotW, height: plotH });
  svg.append(hit);
  chartState.geom = { padL, bw, W };
  box.replaceChildren(svg);
}

function initChartHover() {
  const box = $('chart');
  const tip = $('chart-tip');
  const hide = () => {
    tip.hidden = true;
    chartState.bars[chartState.hover]?.classList.remove('hover');
    chartState.hover = -1;
  };
  box.addEventListener('pointermove', (e) => {
    const g = chartState.geom;
    if (!g) return;
    const rect = box.getBoundingClientRect();
    const sx = ((e.clientX - rect.left) / rect.width) * g.W;
    const i = Math.floor((sx - g.padL) / g.bw);
    if (i < 0 || i > 59) { hide(); return; }
    if (i !== chartState.hover) {
      chartState.bars[chartState.hover]?.classList.remove('hover');
      chartState.bars[i]?.classList.add('hover');
      chartState.hover = i;
    }
    const v = chartState.series[i];
    const when = i === 59 ? 'This minute' : hmFmt.format(chartState.endMs - (59 - i) * 60000);
    tip.replaceChildren(when + ' · ', h('b', null, fmtNum(v)), v === 1 ? ' event' : ' events');
    const bar = chartState.bars[i];
    const bb = bar.getBoundingClientRect();
    const pr = box.parentElement.getBoundingClientRect();
    tip.style.left = bb.left + bb.width / 2 - pr.left + 'px';
    tip.style.top = Math.min(bb.top, rect.bottom - 20) - pr.top - 8 + 'px';
    tip.hidden = false;
  });
  box.addEventListener('pointerleave', hide);
  let raf = 0;
  new ResizeObserver(() => {
    cancelAnimationFrame(raf);
    raf = requestAnimationFrame(() => lastStats && renderChart(lastStats));
  }).observe(box);
}

// ---------------------------------------------------------------- cameras

const cams = new Map();        // id -> camera object from the status document (plus live updates)
const camTiles = new Map();    // id -> <li>
const lastLocalEvent = new Map(); // id -> {type, ts} from live events
let camFilter = 'all';

function camLastEvent(cam) {
  let ts = null, type = null;
  const le = cam.last_event;
  if (typeof le === 'string' || typeof le === 'number') ts = toMs(le);
  else if (le && typeof le === 'object') {
    ts = toMs(le.timestamp ?? le.time);
    type = le.event_type ?? le.type ?? null;
  }
  const local = lastLocalEvent.get(cam.id);
  if (local && (!ts || local.ts >= ts)) return local;
  return ts ? { ts, type } : null;
}

function renderCameras(doc) {
  if (!doc || typeof doc !== 'object') return;
  const list = doc.cameras && typeof doc.cameras === 'object' ? doc.cameras : {};
  const seen = new Set();
  for (const [id, cam] of Object.entries(list)) {
    if (!cam || typeof cam !== 'object') continue;
    seen.add(id);
    cams.set(id, { ...cam, id: cam.id || id });
  }
  for (const id of [...cams.keys()]) if (!seen.has(id)) cams.delete(id);
  paintCameras();
  if (lastStats) renderFleetCard(lastStats);
}

function paintCameras() {
  const grid = $('cams');
  const ids = [...cams.keys()].sort((a, b) => a.localeCompare(b, undefined, { numeric: true }));
  const counts = { all: ids.length, online: 0, recording: 0, down: 0 };
  for (const id of ids) {
    const cam = cams.get(id);
    const st = CAM_STATE[cam.state] ? cam.state : 'down';
    counts[st]++;
    let tile = camTiles.get(id);
    if (!tile) { tile = buildTile(id); camTiles.set(id, tile); }
    updateTile(tile, cam);
    tile.hidden = camFilter !== 'all' && camFilter !== st;
  }
  for (const [id, tile] of camTiles) if (!cams.has(id)) { tile.remove(); camTiles.delete(id); }
  // Keep DOM order sorted without re-creating tiles.
  ids.forEach((id, i) => { const t = camTiles.get(id); if (grid.children[i] !== t) grid.insertBefore(t, grid.children[i] || null); });

  for (const k of Object.keys(counts)) {
    const n = document.querySelector(`#cam-filter [data-n="${k}"]`);
    if (n) setText(n, counts[k]);
  }
  setText($('cams-sub'), ids.length
    ? `${counts.all - counts.down} of ${counts.all} up · ${counts.recording} recording · ${counts.down} down`
    : 'No cameras reported yet');
  const visible = ids.some((id) => !camTiles.get(id).hidden);
  $('cams-empty').hidden = visible;
  if (!visible) {
    setText($('cams-empty-title'), ids.length ? `No ${camFilter} cameras` : 'No cameras yet');
    setText($('cams-empty-text'), ids.length ? 'Nothing matches this filter right now.'
      : 'Camera status appears here as soon as the fleet reports in.');
  }
}

function buildTile(id) {
  const t = h('li', { class: 'cam', 'data-testid': 'camera-tile', dataset: { id } });
  t._state = h('span', { class: 'cam-state' }, h('i', { class: 'dot', 'aria-hidden': 'true' }), h('span'));
  t._spec = h('span', { class: 'cam-spec' });
  t._glyph = icon('i-camera', 'cam-glyph');
  t._name = h('div', { class: 'cam-name' });
  t._loc = h('span');
  t._since = h('span');
  t._last = h('span');
  t.append(
    h('div', { class: 'cam-view' }, t._glyph, t._state, t._spec),
    h('div', { class: 'cam-body' }, t._name,
      h('div', { class: 'cam-row' }, icon('i-pin'), t._loc),
      h('div', { class: 'cam-row' }, icon('i-clock'), t._since),
      h('div', { class: 'cam-row cam-last' }, icon('i-motion'), t._last)));
  return t;
}

function updateTile(t, cam) {
  const st = CAM_STATE[cam.state] ? cam.state : 'down';
  t.dataset.state = st;
  setText(t._state.lastChild, CAM_STATE[st].label);
  t._glyph.querySelector('use').setAttribute('href', st === 'down' ? '#i-nosignal' : '#i-camera');
  const spec = st === 'down' ? 'no signal' : [cam.resolution, cam.fps ? cam.fps + ' fps' : null].filter(Boolean).join(' · ');
  setText(t._spec, spec);
  t._spec.hidden = !spec;
  setText(t._name, cam.name || cam.id);
  t._name.title = cam.id;
  setText(t._loc, cam.location || '—');
  const since = toMs(cam.since);
  const sinceKey = String(since || '');
  if (t._since.dataset.key !== sinceKey + st) {
    t._since.dataset.key = sinceKey + st;
    t._since.replaceChildren(since ? relSpan(since, 'for', CAM_STATE[st].verb + ' for ') : CAM_STATE[st].verb);
  }
  const le = camLastEvent(cam);
  const leKey = le ? le.ts + (le.type || '') : '';
  if (t._last.dataset.key !== leKey) {
    t._last.dataset.key = leKey;
    if (le) {
      const kind = EVENT_KINDS[le.type];
      t._last.replaceChildren(kind ? kind.label.split(' ')[0] + ' · ' : 'Last event ', relSpan(le.ts));
    } else t._last.replaceChildren('No events yet');
  }
}

function flashCamera(id) {
  const t = camTiles.get(id);
  if (!t) return;
  t.classList.add('flash');
  clearTimeout(t._flash);
  t._flash = setTimeout(() => t.classList.remove('flash'), 1200);
}

function onCameraStatus(msg) {
  const d = msg.data || {};
  const id = d.camera_id;
  if (!id) return;
  const prev = cams.get(id) || { id, name: d.camera_name };
  const changed = prev.state !== d.state;
  cams.set(id, { ...prev, name: prev.name || d.camera_name, state: d.state, since: d.timestamp || msg.timestamp });
  paintCameras();
  if (!changed) return;
  addFeedItem({
    id: `status:${id}:${d.timestamp || msg.offset}`, kind: 'status', state: d.state,
    title: `${d.camera_name || id} is ${CAM_STATE[d.state]?.label.toLowerCase() || d.state}`,
    sub: d.previous ? `was ${d.previous}` : (prev.location || ''),
    ts: toMs(d.timestamp || msg.timestamp) || Date.now(),
  });
  const fresh = Date.now() - (toMs(d.timestamp || msg.timestamp) || Date.now()) < 30000;
  if (d.state === 'down' && fresh && !msg.redelivered) {
    toast({ id: `status:${id}`, kind: 'camera', title: `${d.camera_name || id} went down`,
      sub: 'Camera stopped reporting', iconId: 'i-nosignal', tone: 'tone-red' });
  }
}

// ---------------------------------------------------------------- live event feed

const seenEvents = new Set();
let feedFilter = 'all';

function remember(set, id, cap = 1000) {
  set.add(id);
  if (set.size > cap) set.delete(set.values().next().value);
}

function onEvent(msg) {
  const d = msg.data && typeof msg.data === 'object' ? msg.data : {};
  const type = d.event_type || msg.type;
  const kind = EVENT_KINDS[type];
  if (!kind) return;
  const id = String(d.id ?? msg.id ?? `${msg.channel}:${msg.offset}`);
  if (seenEvents.has(id)) return;
  remember(seenEvents, id);
  const ts = toMs(d.timestamp || msg.timestamp) || Date.now();
  const camName = d.camera_name || d.camera_id || msg.channel;
  const cam = d.camera_id ? cams.get(d.camera_id) : null;
  const conf = typeof d.confidence === 'number' ? Math.round(d.confidence <= 1 ? d.confidence * 100 : d.confidence) : null;

  addFeedItem({ id, kind: type, title: kind.label, ts, conf,
    sub: [camName, cam?.location].filter(Boolean).join(' · ') });

  if (d.camera_id) {
    const prev = lastLocalEvent.get(d.camera_id);
    if (!prev || prev.ts <= ts) lastLocalEvent.set(d.camera_id, { ts, type });
    const tile = camTiles.get(d.camera_id);
    if (cam && tile) { updateTile(tile, cam); flashCamera(d.camera_id); }
  }
  if (Date.now() - ts < 30000 && !$('view-overview').hidden) {
    toast({ id, kind: 'event', title: `${kind.label}`, sub: `${camName}${conf != null ? ` · ${conf}% confidence` : ''}`,
      iconId: kind.icon, tone: kind.tone });
  }
}

function addFeedItem(item) {
  const feed = $('feed');
  const kind = EVENT_KINDS[item.kind];
  const isStatus = item.kind === 'status';
  const tone = isStatus ? (item.state === 'down' ? 'tone-red' : item.state === 'recording' ? 'tone-accent' : 'tone-green') : kind.tone;
  const iconId = isStatus ? (item.state === 'down' ? 'i-nosignal' : 'i-camera') : kind.icon;
  const li = h('li', { class: 'ev new', 'data-testid': 'event-item', dataset: { id: item.id, type: item.kind, ts: item.ts } },
    h('span', { class: 'ev-icon ' + tone, 'aria-hidden': 'true' }, icon(iconId)),
    h('div', { class: 'ev-main' },
      h('div', { class: 'ev-title' }, item.title, item.conf != null ? h('span', { class: 'conf', title: 'Confidence' }, item.conf + '%') : null),
      h('div', { class: 'ev-sub' }, item.sub || '')),
    h('div', { class: 'ev-time' }, h('time', { datetime: new Date(item.ts).toISOString() }, timeFmt.format(item.ts)),
      h('div', null, relSpan(item.ts))));
  li.hidden = !feedMatches(li);
  // Newest first, by time (replayed messages may arrive after newer live ones).
  let before = null;
  for (const c of feed.children) { if (Number(c.dataset.ts) <= item.ts) { before = c; break; } }
  feed.insertBefore(li, before);
  setTimeout(() => li.classList.remove('new'), 400);
  while (feed.children.length > FEED_CAP) feed.lastElementChild.remove();
  paintFeedMeta();
}

// History could not cover a disconnection on some channel: say so in the feed, once per outage.
let lastGapAt = 0;
function noteGap(g) {
  if (!g || !/^cameras\./.test(String(g.channel || ''))) return;
  if (Date.now() - lastGapAt < 10000) return;
  lastGapAt = Date.now();
  const li = h('li', { class: 'ev ev-gap', 'data-testid': 'feed-gap', dataset: { type: 'gap', ts: Date.now() } },
    h('span', { class: 'ev-icon tone-amber', 'aria-hidden': 'true' }, icon('i-alert')),
    h('div', { class: 'ev-main' },
      h('div', { class: 'ev-title' }, 'Some events were missed'),
      h('div', { class: 'ev-sub' }, 'The connection was down longer than the server keeps history.')),
    h('div', { class: 'ev-time' }, timeFmt.format(Date.now())));
  $('feed').prepend(li);
  paintFeedMeta();
}

function feedMatches(li) {
  if (li.dataset.type === 'gap') return true;
  return feedFilter === 'all' || li.dataset.type === feedFilter;
}
function paintFeedMeta() {
  const feed = $('feed');
  let visible = 0;
  for (const li of feed.children) { li.hidden = !feedMatches(li); if (!li.hidden) visible++; }
  $('feed-empty').hidden = visible > 0;
  setText($('feed-sub'), feed.children.length ? `Newest first · last ${feed.children.length}` : 'Newest first');
}

// ---------------------------------------------------------------- alerts

const alertsShown = new Map(); // ack id -> <li>
const ackedIds = new Set();
let vigil = null;

function alertAckId(msg) { return String(msg.id ?? msg.data?.id ?? ''); }

function onAlert(msg) {
  const d = msg.data && typeof msg.data === 'object' ? msg.data : {};
  const id = alertAckId(msg);
  if (!id || alertsShown.has(id) || ackedIds.has(id)) return;
  const level = d.level === 'critical' ? 'critical' : 'warning';
  const ts = toMs(d.timestamp || msg.timestamp) || Date.now();
  const camName = d.camera_name || d.camera_id || '';
  const src = safeImage(d.thumbnail);
  const thumb = src
    ? h('img', { class: 'alert-thumb', src, alt: `Snapshot from ${camName || 'camera'}`, loading: 'lazy', decoding: 'async' })
    : h('div', { class: 'alert-thumb alert-thumb-ph', role: 'img', 'aria-label': 'No snapshot' }, icon('i-camera'));
  const title = d.title || (level === 'critical' ? 'Critical alert' : 'Alert');
  const btn = h('button', { class: 'btn btn-ack', type: 'button', 'data-testid': 'ack-button', dataset: { id },
    'aria-label': `Acknowledge alert: ${title}${camName ? ' on ' + camName : ''}` }, icon('i-check'), 'Ack');
  btn.addEventListener('click', () => ackAlert(id, btn));
  const li = h('li', { class: 'alert', 'data-testid': 'alert-item', dataset: { id, level, ts } },
    thumb,
    h('div', { class: 'alert-body' },
      h('div', { class: 'alert-top' },
        h('span', { class: 'badge' }, level),
        h('span', { class: 'alert-title', title }, title)),
      d.message ? h('p', { class: 'alert-msg' }, d.message) : null,
      h('div', { class: 'alert-meta' },
        camName ? h('span', { class: 'alert-cam' }, icon('i-camera'), camName) : null,
        relSpan(ts),
        h('span', { class: 'alert-actions' }, btn))));
  const list = $('alerts');
  let before = null;
  for (const c of list.children) { if (Number(c.dataset.ts) <= ts) { before = c; break; } }
  list.insertBefore(li, before);
  alertsShown.set(id, li);
  paintAlertMeta();
  if (!msg.redelivered && Date.now() - ts < 60000) {
    toast({ id, kind: 'alert', title, sub: [level === 'critical' ? 'Critical' : 'Warning', camName].filter(Boolean).join(' · '),
      iconId: 'i-alert', tone: level === 'critical' ? 'tone-red' : 'tone-amber', force: level === 'critical' });
  }
}

async function ackAlert(id, btn) {
  if (btn.disabled) return;
  btn.disabled = true;
  btn.lastChild.textContent = 'Acking…';
  try {
    await vigil.ack(id);
    removeAlert(id);
  } catch (err) {
    btn.disabled = false;
    btn.lastChild.textContent = 'Ack';
    toast({ id: 'ack-error', kind: 'error', title: 'Could not acknowledge the alert',
      sub: errText(err) || 'Try again in a moment.', iconId: 'i-alert', tone: 'tone-red', force: true });
  }
}

function removeAlert(id) {
  id = String(id);
  remember(ackedIds, id, 5000);
  const li = alertsShown.get(id);
  if (!li) return;
  alertsShown.delete(id);
  const list = $('alerts');
  // Keep keyboard focus in the list: move it to the next Ack button.
  const hadFocus = li.contains(document.activeElement);
  const next = li.nextElementSibling || li.previousElementSibling;
  li.removeAttribute('data-testid');
  li.classList.add('leaving');
  const done = () => li.remove();
  li.addEventListener('animationend', done, { once: true });
  setTimeout(done, 400);
  if (hadFocus) (next?.querySelector('.btn-ack') || $('alerts-title')).focus?.();
  paintAlertMeta();
  void list;
}

function paintAlertMeta() {
  const n = alertsShown.size;
  const c = $('alerts-count');
  setText(c, n);
  c.classList.toggle('has', n > 0);
  $('alerts-empty').hidden = n > 0;
  renderAlertFoot();
}
function renderAlertFoot() {
  const n = alertsShown.size;
  $('st-alerts-foot').replaceChildren(h('b', null, fmtNum(n)), ' in your queue');
}

// ---------------------------------------------------------------- admin: connections

let adminTimer = 0;
let selfConnectionId = null;
let auth = null;

function endpointClass(ep) {
  const e = String(ep || '').toLowerCase();
  return e.includes('sse') ? 'ep-sse' : e.includes('poll') ? 'ep-poll' : 'ep-ws';
}

async function loadConnections() {
  const err = $('admin-error');
  try {
    const token = await currentToken();
    const r = await fetch('/ws/connections', { headers: { Authorization: 'Bearer ' + token, Accept: 'application/json' }, cache: 'no-store' });
    if (r.status === 401 || r.status === 403) {
      const j = await r.json().catch(() => ({}));
      throw new Error(r.status === 403 ? 'Your token is not an admin token, so the connection list is not available.'
        : 'The server did not accept your token: ' + (j.error?.message || 'unauthorized'));
    }
    if (!r.ok) throw new Error(`The server answered ${r.status}.`);
    const j = await r.json();
    err.hidden = true;
    renderConnections(Array.isArray(j.connections) ? j.connections : [], j.total_connections);
  } catch (e) {
    err.hidden = false;
    err.textContent = e.message || 'Could not load connections.';
    setText($('admin-sub'), 'Not available');
  }
}

function renderConnections(list, total) {
  list.sort((a, b) => (b.connection_id === selfConnectionId) - (a.connection_id === selfConnectionId) ||
    String(b.connected_at).localeCompare(String(a.connected_at)));
  const users = new Set(list.map((c) => c.user_id));
  const byEp = {};
  let out = 0;
  for (const c of list) { byEp[c.endpoint || '?'] = (byEp[c.endpoint || '?'] || 0) + 1; out += c.messages_out || 0; }
  setText($('a-total'), fmtNum(total ?? list.length));
  setText($('a-users'), fmtNum(users.size));
  setText($('a-out'), fmtNum(out));
  $('a-endpoints').replaceChildren(...(Object.keys(byEp).length
    ? Object.entries(byEp).map(([ep, n]) => h('span', { class: 'ep ' + endpointClass(ep), style: 'margin-right:6px' }, `${ep} ${n}`))
    : ['–']));
  setText($('admin-sub'), `${fmtNum(list.length)} connection${list.length === 1 ? '' : 's'} from ${fmtNum(users.size)} user${users.size === 1 ? '' : 's'}`);
  $('admin-updated').replaceChildren('Updated ', relSpan(Date.now()));

  const now = Date.now();
  const rows = list.map((c) => {
    const self = c.connection_id && c.connection_id === selfConnectionId;
    const since = toMs(c.connected_at);
    const hbAge = typeof c.seconds_since_heartbeat === 'number' ? c.seconds_since_heartbeat
      : (toMs(c.last_heartbeat) ? (now - toMs(c.last_heartbeat)) / 1000 : null);
    const subs = Array.isArray(c.subscriptions) ? c.subscriptions : [];
    const chips = subs.slice(0, 6).map((s) => h('span', { class: 'chip' }, typeof s === 'string' ? s : (s.channel || s.pattern || JSON.stringify(s))));
    if (subs.length > 6) chips.push(h('span', { class: 'chip', title: subs.map((s) => (typeof s === 'string' ? s : JSON.stringify(s))).join('\n') }, `+${subs.length - 6}`));
    return h('tr', { class: self ? 'self' : null, 'data-testid': 'connection-row',
      dataset: { connectionId: c.connection_id || '', user: c.user_id || '', endpoint: c.endpoint || '', self: self ? 'true' : 'false' } },
      h('td', { 'data-label': 'User' }, h('div', { class: 'cell-user' }, h('span', { class: 'avatar', 'aria-hidden': 'true' }, initials(c.user_id)),
        h('span', null, c.user_id || '—', h('span', { class: 'sub2 mono' }, c.connection_id || '')),
        self ? h('span', { class: 'you' }, 'This tab') : null)),
      h('td', { 'data-label': 'Endpoint' }, h('span', { class: 'ep ' + endpointClass(c.endpoint) }, c.endpoint || '—')),
      h('td', { 'data-label': 'Peer' }, h('span', { class: 'mono' }, c.remote_address || '—')),
      h('td', { 'data-label': 'Connected' }, since ? timeFmt.format(since) : '—',
        h('span', { class: 'sub2' }, typeof c.uptime_seconds === 'number' ? 'for ' + fmtDuration(c.uptime_seconds * 1000) : '')),
      h('td', { 'data-label': 'Last heartbeat' }, h('span', { class: 'hb' + (hbAge > 60 ? ' dead' : hbAge > 35 ? ' late' : ''), title: c.last_heartbeat || '' },
        h('i', { 'aria-hidden': 'true' }), hbAge == null ? '—' : hbAge < 2 ? 'just now' : fmtDuration(hbAge * 1000) + ' ago')),
      h('td', { class: 'num', 'data-label': 'In' }, fmtNum(c.messages_in)),
      h('td', { class: 'num', 'data-label': 'Out' }, fmtNum(c.messages_out)),
      h('td', { 'data-label': 'Subscriptions' }, h('div', { class: 'chips' }, chips.length ? chips : h('span', { class: 'muted' }, 'none'))));
  });
  $('conn-rows').replaceChildren(...(rows.length ? rows
    : [h('tr', { class: 'table-empty' }, h('td', { colspan: 8 }, 'No connections right now.'))]));
}

function initials(name) {
  const s = String(name || '?').replace(/[^A-Za-z0-9 ._-]/g, '');
  const parts = s.split(/[ ._-]+/).filter(Boolean);
  return ((parts[0]?.[0] || '?') + (parts[1]?.[0] || '')).toUpperCase();
}

// ---------------------------------------------------------------- routing

function route() {
  const isAdmin = location.hash.replace(/^#/, '').replace(/^\//, '').startsWith('admin');
  const name = isAdmin ? 'admin' : 'overview';
  for (const v of document.querySelectorAll('.view')) v.hidden = v.dataset.view !== name;
  for (const t of document.querySelectorAll('.tab')) {
    if (t.dataset.route === name) t.setAttribute('aria-current', 'page');
    else t.removeAttribute('aria-current');
  }
  document.title = (isAdmin ? 'Connections' : 'Live operations') + ' · vigil';
  clearInterval(adminTimer);
  if (isAdmin) {
    loadConnections();
    adminTimer = setInterval(() => { if (!document.hidden) loadConnections(); }, ADMIN_REFRESH_MS);
  }
}

// ---------------------------------------------------------------- glue

function errText(err) {
  if (!err) return '';
  if (typeof err === 'string') return err;
  return err.message || err.reason || err.code || String(err);
}
const AUTH_FAILURE = /token|signature|ticket|unauthori[sz]ed|algorithm|missing sub|wrong (issuer|audience)/i;

async function currentToken() {
  if (auth.source === 'demo') {
    const claims = decodeJwt(auth.token);
    if (claims?.exp && claims.exp * 1000 - Date.now() < 60000) {
      const fresh = await fetchDemoSession();
      if (fresh) auth.token = fresh.token;
    }
  }
  return auth.token;
}

function setUser(name, admin) {
  setText($('user-name'), name || 'unknown');
  setText($('user-role'), admin ? 'Administrator' : 'Viewer');
  setText($('user-avatar'), initials(name));
  $('tab-admin').hidden = !admin;
}

let errorToastAt = 0;
function onVigilError(err) {
  const text = errText(err);
  if (err?.code === 'unauthorized' || (AUTH_FAILURE.test(text) && !err?.code)) {
    if (auth.source === 'demo') { console.warn('vigil:', text); return; }
    ss?.removeItem(KEY_TOKEN);
    vigil?.close();
    showLogin(`The server did not accept this token (${text.replace(/^authentication failed:\s*/i, '')}). Paste a valid one to continue.`);
    return;
  }
  if (Date.now() - errorToastAt < 10000) return;
  errorToastAt = Date.now();
  console.warn('vigil:', err);
}

function tick() {
  for (const el of document.querySelectorAll('[data-rel]')) renderRel(el);
  const now = new Date();
  setText($('clock'), now.toLocaleDateString(undefined, { weekday: 'short', day: 'numeric', month: 'short' }) + ' · ' + timeFmt.format(now));
}

function initFilters() {
  for (const [groupId, set] of [['cam-filter', (f) => { camFilter = f; paintCameras(); }],
                                 ['feed-filter', (f) => { feedFilter = f; paintFeedMeta(); }]]) {
    const group = $(groupId);
    group.addEventListener('click', (e) => {
      const b = e.target.closest('button[data-filter]');
      if (!b) return;
      for (const o of group.querySelectorAll('button')) o.setAttribute('aria-pressed', String(o === b));
      set(b.dataset.filter);
    });
  }
}

async function main() {
  initTheme();
  auth = await resolveAuth();
  if (!auth) { showLogin(); return; }
  const claims = decodeJwt(auth.token);
  if (auth.source !== 'demo' && tokenExpired(claims)) {
    ss?.removeItem(KEY_TOKEN);
    showLogin('Your token has expired. Paste a new one to continue.');
    return;
  }
  const admin = !!(auth.admin || claims?.admin === true);
  const demoUser = typeof auth.user === 'object' && auth.user ? auth.user.username || auth.user.id : auth.user;
  setUser(demoUser || claims?.sub, admin);

  let Vigil;
  try {
    ({ Vigil } = await import('/vigil.js'));
  } catch (e) {
    setText($('boot-text'), 'Could not load the client library (/vigil.js). Reload to try again.');
    console.error(e);
    return;
  }

  $('boot').hidden = true;
  $('app').hidden = false;
  initNotifyToggle();
  initFilters();
  initChartHover();
  $('logout').addEventListener('click', () => {
    vigil?.close();
    ss?.removeItem(KEY_TOKEN);
    ss?.setItem(KEY_SIGNED_OUT, '1');
    location.hash = '';
    location.reload();
  });
  window.addEventListener('hashchange', route);
  route();
  tick();
  setInterval(tick, 1000);
  paintAlertMeta();
  paintFeedMeta();

  vigil = new Vigil(location.origin, {
    token: auth.token,
    // Only the demo session can mint a fresh token; a pasted token is what it is.
    getToken: auth.source === 'demo' ? async () => {
      const fresh = await fetchDemoSession();
      if (!fresh) throw new Error('the demo session is not available');
      auth.token = fresh.token;
      return fresh.token;
    } : undefined,
    channels: [],
    onStatus: (s) => renderStatus(typeof s === 'string' ? s : s?.status),
    onError: onVigilError,
  });
  window.__vigil = vigil; // handy for debugging from the console
  renderStatus(vigil.status || 'connecting');

  vigil.on('welcome', (w) => {
    selfConnectionId = w?.connection_id || selfConnectionId;
    const u = w?.user || vigil.user;
    const name = typeof u === 'string' ? u : u?.username || u?.id;
    if (name) setUser(name, admin);
  });
  vigil.on('acked', (e) => removeAlert(typeof e === 'object' ? e.id : e));
  vigil.on('gap', (g) => noteGap(g));

  vigil.state('statistics', (doc) => renderStats(doc));
  vigil.state('status', (doc) => renderCameras(doc));
  vigil.subscribe('cameras.*.events', onEvent);
  vigil.subscribe('cameras.*.status', onCameraStatus);
  vigil.subscribe('alerts.>', onAlert);
}

main().catch((e) => {
  console.error(e);
  setText($('boot-text'), 'Something went wrong while starting the dashboard. Reload to try again.');
});
