// vigil.js: the browser (and Node) client for vigil's native protocol. One ES module, no
// dependencies. See docs/CLIENT.md for the guide and docs/PROTOCOL.md for the wire format.
//
//   import { Vigil } from '/vigil.js';
//   const v = new Vigil(location.origin, { token });
//   v.subscribe('cameras.*', (msg) => console.log(msg.channel, msg.data));
//
// What it does for the application: one WebSocket to /ws with a heartbeat; reconnects with
// exponential backoff and full jitter; resubscribes with `since` (per-channel offsets and epochs,
// plus `since_time` for patterns) so nothing is lost or repeated; refreshes the token before it
// expires; falls back to Server-Sent Events and then long-polling when WebSocket is blocked, and
// probes WebSocket in the background to upgrade back.

/**
 * Connection status.
 * - `connecting`: no transport delivers yet; the first connection or a reconnection is under way.
 * - `live`: a WebSocket is open, welcomed and subscribed.
 * - `polling`: a fallback transport (Server-Sent Events or long-polling) delivers messages.
 * - `offline`: nothing delivers and the client has given up for now: closed by the application
 *   (`close()`), authentication failed for good (no `getToken`, or a fresh token was refused too),
 *   every transport failed `maxAttempts` times in a row (retries go on in the background with the
 *   maximum backoff; the status changes as soon as one succeeds), or the browser reports no network.
 * @typedef {'connecting'|'live'|'polling'|'offline'} VigilStatus
 */

/**
 * A published message as delivered (the native envelope).
 * @typedef {object} VigilMessage
 * @property {string} type        the publisher's event type (`camera_event`, `alert`, ...)
 * @property {string} channel     the channel it was published on
 * @property {number} [offset]    its position in the channel (absent on redelivered ack messages)
 * @property {string} timestamp   RFC 3339 UTC time of publication, with milliseconds
 * @property {string} [id]        the message id (messages of ack channels, e.g. `alerts.>`)
 * @property {boolean} [redelivered] true when an unacknowledged message is delivered again
 * @property {*} data             the publisher's payload
 */

/**
 * @typedef {object} VigilBackoff
 * @property {number} [initial=1000] ms: the cap of the first retry delay
 * @property {number} [max=30000]    ms: the largest cap
 * @property {number} [factor=2]     the cap grows by this factor per failed attempt
 */

/**
 * @typedef {object} VigilOptions
 * @property {string} [token]          a user token (JWT)
 * @property {() => (string|Promise<string>)} [getToken] returns a fresh token: called at start
 *   when there is no `token`, before the current token's `exp`, and after an authentication failure
 * @property {string[]} [channels]     patterns subscribed from the start (no handler: use `on('message')`)
 * @property {any} [WebSocket]         WebSocket implementation (default: the global one; in Node pass `ws`)
 * @property {typeof fetch} [fetch]    fetch implementation (default: the global one)
 * @property {VigilBackoff} [backoff]  reconnection delays: full jitter, `random(0, min(max, initial*factor^n))`
 * @property {number} [stableAfter=10000]   ms a connection must last for the backoff to start over
 * @property {number} [maxAttempts=3]  WebSocket attempts that fail before any welcome (or one
 *   refused upgrade, HTTP 403) before falling back to SSE; failed attempts of the last transport before `offline`
 * @property {number} [heartbeat=25000] ms between client pings; no traffic for twice this = dead connection
 * @property {number} [probeInterval=30000] ms between background WebSocket probes while on a fallback
 * @property {number} [connectTimeout=10000] ms for a transport to be established
 * @property {number} [pollTimeout=25]  seconds the server may hold a long-poll
 * @property {number} [rpcTimeout=30000] ms before `rpc()` gives up
 * @property {Array<'websocket'|'sse'|'poll'>} [transports] in order of preference
 * @property {() => number} [random]   for tests: Math.random
 * @property {() => number} [now]      for tests: Date.now
 * @property {(fn: () => void, ms: number) => any} [setTimeout]   for tests
 * @property {(handle: any) => void} [clearTimeout] for tests
 * @property {(status: VigilStatus, info: {previous: VigilStatus, transport: string|null}) => void} [onStatus]
 * @property {(error: VigilError) => void} [onError]
 */

/**
 * @typedef {object} StateInfo
 * @property {string} name       the document's name
 * @property {number} version    its version (the server's ETag)
 * @property {boolean} [deleted] true when the document was deleted (`doc` is then null)
 */

/**
 * @typedef {object} GapInfo
 * @property {string} channel  a channel whose history no longer covered what was missed
 * @property {number} from     the last offset received
 * @property {number} to       the offset delivery resumes after
 */

const DEFAULTS = {
  backoff: { initial: 1000, max: 30000, factor: 2 },
  stableAfter: 10000,
  maxAttempts: 3,
  heartbeat: 25000,
  probeInterval: 30000,
  connectTimeout: 10000,
  pollTimeout: 25,
  rpcTimeout: 30000,
  transports: ['websocket', 'sse', 'poll'],
};

/** WebSocket close reasons (1008) that mean the credentials, not the network, failed. */
const AUTH_REASONS = /^(missing token|malformed token|algorithm not allowed|invalid signature|token expired|token not yet valid|wrong issuer|wrong audience|missing sub|invalid ticket|ticket expired|unauthorized)/i;

/** Timestamps that differ by less than this are not taken as a sign that offsets restarted. */
const RESTART_SKEW_MS = 200;
const SEEN_IDS_MAX = 10000;
/** Channels named in one subscribe's `since` map (the server takes 256 with the exact ones). */
const SINCE_MAP_MAX = 200;
/** Channels named in one long-poll (the server takes 64). */
const POLL_CHANNELS_MAX = 60;

/** An error reported by the server or by the client; `code` is the server's snake_case code. */
export class VigilError extends Error {
  /**
   * @param {string} code
   * @param {string} message
   * @param {{id?: any, channel?: string, status?: number, cause?: any}} [extra]
   */
  constructor(code, message, extra = {}) {
    super(message);
    this.name = 'VigilError';
    /** @type {string} */ this.code = code;
    /** @type {any} the id of the request it answers, if any */ this.id = extra.id;
    /** @type {string|undefined} */ this.channel = extra.channel;
    /** @type {number|undefined} HTTP status, for HTTP errors */ this.status = extra.status;
    if (extra.cause !== undefined) this.cause = extra.cause;
  }
}

// ------------------------------------------------------------------------------------ helpers

/**
 * Does `channel` match `pattern` (`*`: one segment, final `>`: one or more)?
 * @param {string} pattern
 * @param {string} channel
 * @returns {boolean}
 */
export function matchChannel(pattern, channel) {
  if (pattern === channel) return true;
  const p = pattern.split('.');
  const c = channel.split('.');
  for (let i = 0; i < p.length; i++) {
    if (p[i] === '>') return i === p.length - 1 && c.length > i;
    if (i >= c.length || (p[i] !== '*' && p[i] !== c[i])) return false;
  }
  return p.length === c.length;
}

/** @param {string} name @returns {boolean} */
function isPattern(name) {
  return name.split('.').some((s) => s === '*' || s === '>');
}

/**
 * RFC 7396 JSON merge patch; returns a new value and leaves `target` untouched.
 * @param {*} target
 * @param {*} patch
 * @returns {*}
 */
export function mergePatch(target, patch) {
  if (patch === null || typeof patch !== 'object' || Array.isArray(patch)) return patch;
  const out = target !== null && typeof target === 'object' && !Array.isArray(target) ? { ...target } : {};
  for (const key of Object.keys(patch)) {
    if (patch[key] === null) delete out[key];
    else out[key] = mergePatch(out[key], patch[key]);
  }
  return out;
}

/**
 * The delay before retry number `attempt` (0-based): full jitter,
 * `random() * min(max, initial * factor^attempt)`.
 * @param {number} attempt
 * @param {VigilBackoff} [backoff]
 * @param {() => number} [random]
 * @returns {number} ms
 */
export function backoffDelay(attempt, backoff = {}, random = Math.random) {
  const b = { ...DEFAULTS.backoff, ...backoff };
  const cap = Math.min(b.max, b.initial * Math.pow(b.factor, attempt));
  return Math.floor(random() * cap);
}

/**
 * The payload of a JWT, or null.
 * @param {string} token
 * @returns {Record<string, any>|null}
 */
export function decodeJwt(token) {
  try {
    const part = String(token).split('.')[1];
    const b64 = part.replace(/-/g, '+').replace(/_/g, '/') + '==='.slice((part.length + 3) % 4);
    const bin = atob(b64);
    const bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    const payload = JSON.parse(new TextDecoder().decode(bytes));
    return payload && typeof payload === 'object' ? payload : null;
  } catch {
    return null;
  }
}

/** @param {any} ts @returns {number|null} ms since 1970 */
function parseTs(ts) {
  if (typeof ts === 'number') return ts;
  if (typeof ts !== 'string') return null;
  const ms = Date.parse(ts);
  return Number.isNaN(ms) ? null : ms;
}

/** The channel a server error message names (`... "cameras.x" ...`), or undefined. */
function quotedChannel(message) {
  const m = /"([^"]+)"/.exec(String(message || ''));
  return m ? m[1] : undefined;
}

// ------------------------------------------------------------------------------------ client

/**
 * A vigil connection: subscriptions, state documents, acks and RPC over the best transport
 * available (WebSocket, else Server-Sent Events, else long-polling).
 */
export class Vigil {
  /**
   * @param {string} [url] the server: `http(s)://host:port` (its `/ws` is used) or `ws(s)://host:port/ws`;
   *   in a browser, defaults to the page's origin
   * @param {VigilOptions} [options]
   */
  constructor(url, options = {}) {
    const o = { ...DEFAULTS, ...options, backoff: { ...DEFAULTS.backoff, ...(options.backoff || {}) } };
    this._o = o;
    this._WS = o.WebSocket || globalThis.WebSocket;
    this._fetch = o.fetch || globalThis.fetch;
    const st = o.setTimeout || globalThis.setTimeout;
    const ct = o.clearTimeout || globalThis.clearTimeout;
    this._st = (fn, ms) => st(fn, ms);
    this._ct = (h) => ct(h);
    this._now = o.now || Date.now;
    this._random = o.random || Math.random;
    this._chain = (o.transports || DEFAULTS.transports).filter((t) => t === 'websocket' || t === 'sse' || t === 'poll');
    if (this._chain.length === 0) throw new TypeError('vigil: no usable transport in options.transports');
    this._setUrls(url);

    /** @type {VigilStatus} */
    this._status = 'connecting';
    /** @type {{id: string, username: string}|null} the user, from the welcome (or the token) */
    this.user = null;
    this._listeners = new Map();
    this._subs = new Map(); // handle -> {pattern, fn, types}
    this._sid = 0;
    this._baseChannels = new Set(o.channels || []);
    this._states = new Map(); // name -> {doc, version, fns:Set}
    this._rejected = new Set(); // patterns the server refused (forbidden / invalid)
    this._pos = new Map(); // channel -> {epoch: string|null, offset: number, ts: number|null}
    this._lastTs = null; // ms: timestamp of the newest message received
    this._floorTs = null; // ms: when the first subscription was made
    this._seenIds = new Map(); // message ids seen (ack channels): dedupe of redeliveries
    this._ackedIds = new Map(); // ids reported acked (one 'acked' event per id)
    this._lastEventId = null; // SSE Last-Event-ID
    this._reqId = 0;
    this._rpcs = new Map(); // id -> {method, params, resolve, reject, timer, sent}
    this._acks = new Map(); // message id -> [{resolve, reject, timer}]
    this._timers = new Set();

    this._tr = null; // the current transport session (attempting or established)
    this._probe = null; // a background WebSocket probe while on a fallback
    this._chainIdx = 0;
    this._failures = 0; // consecutive attempts of the current transport that never got established
    this._attempt = 0; // backoff exponent
    this._wsWorked = false;
    this._closed = false;
    this._authDead = false;
    this._authRetry = false;
    this._retryTimer = null;
    this._probeTimer = null;
    this._refreshTimer = null;
    this._syncQueued = false;

    this._token = o.token || null;
    this._tokenExp = null;
    this._tokenAt = 0;
    this._tokenPromise = null;
    this._takeToken(this._token);
    if (o.onStatus) this.on('status', o.onStatus);
    if (o.onError) this.on('error', o.onError);

    this._onOnline = () => { if (this._retryTimer && !this._tr) this._retryNow(); };
    if (typeof window !== 'undefined' && window.addEventListener) window.addEventListener('online', this._onOnline);

    this._later(0, () => this._connect());
  }

  // ---------------------------------------------------------------------------- public API

  /** @returns {VigilStatus} the current status */
  get status() { return this._status; }

  /** @returns {'websocket'|'sse'|'poll'|null} the transport delivering now */
  get transport() { return this._tr && this._tr.established ? this._tr.kind : null; }

  /**
   * Subscribes to a channel or pattern. Every message is delivered once, in order per channel,
   * across reconnects and transport switches (while the server's history covers the gap).
   * @param {string} pattern  a channel (`cameras.cam-1`) or pattern (`cameras.*`, `alerts.>`)
   * @param {(msg: VigilMessage) => void} fn
   * @param {{types?: string[]}} [options] only messages of these types
   * @returns {() => void} unsubscribes this handler
   */
  subscribe(pattern, fn, options = {}) {
    if (typeof pattern !== 'string' || pattern === '') throw new TypeError('vigil: subscribe needs a channel pattern');
    if (typeof fn !== 'function') throw new TypeError('vigil: subscribe needs a handler function');
    const handle = ++this._sid;
    const types = Array.isArray(options.types) && options.types.length ? new Set(options.types) : null;
    this._subs.set(handle, { pattern, fn, types });
    this._rejected.delete(pattern);
    this._syncSubscriptions();
    return () => {
      if (this._subs.delete(handle)) this._syncSubscriptions();
    };
  }

  /**
   * Follows the state document `name` (channel `state.<name>`): `fn` gets the whole document
   * after each snapshot or merge patch is applied.
   * @param {string} name
   * @param {(doc: any, info: StateInfo) => void} fn
   * @returns {() => void} stops following
   */
  state(name, fn) {
    if (typeof name !== 'string' || name === '') throw new TypeError('vigil: state needs a document name');
    if (typeof fn !== 'function') throw new TypeError('vigil: state needs a handler function');
    let st = this._states.get(name);
    if (!st) {
      st = { doc: undefined, version: null, fns: new Set() };
      this._states.set(name, st);
      this._rejected.delete('state.' + name);
    }
    const entry = { fn };
    st.fns.add(entry);
    if (st.version !== null) this._call(fn, st.doc, { name, version: st.version });
    else if (this._tr && this._tr.established && this._tr.kind !== 'websocket') this._fetchState(name);
    this._syncSubscriptions();
    return () => {
      if (!st.fns.delete(entry)) return;
      if (st.fns.size === 0 && this._states.get(name) === st) {
        this._states.delete(name);
        this._syncSubscriptions();
      }
    };
  }

  /**
   * Acknowledges a message of an ack channel (its `id`): no connection of this user gets it again.
   * Resolves with the id once the server has stored the ack; an 'acked' event follows.
   * @param {string} id
   * @returns {Promise<string>}
   */
  ack(id) {
    if (typeof id !== 'string' || id === '') return Promise.reject(new VigilError('bad_request', 'ack needs the message id'));
    return new Promise((resolve, reject) => {
      const waiter = { resolve, reject, timer: null };
      const tr = this._tr;
      if (tr && tr.kind === 'websocket' && tr.welcomed && tr.send({ type: 'ack', id })) {
        let list = this._acks.get(id);
        if (!list) this._acks.set(id, (list = []));
        list.push(waiter);
        waiter.timer = this._later(10000, () => this._ackOverHttp(id, waiter));
      } else {
        this._ackOverHttp(id, waiter);
      }
    });
  }

  /**
   * Calls `method` on the application's backend through the server (`--rpc-url`). Needs the
   * WebSocket transport: while connecting the call waits for it; on a fallback it fails with
   * code `unavailable`.
   * @param {string} method
   * @param {*} [params]
   * @param {{timeout?: number}} [options] ms (default: the `rpcTimeout` option)
   * @returns {Promise<any>} the backend's result
   */
  rpc(method, params, options = {}) {
    if (this._closed) return Promise.reject(new VigilError('closed', 'the client is closed'));
    if (typeof method !== 'string' || method === '') return Promise.reject(new VigilError('bad_request', 'rpc needs a method name'));
    if (this._status === 'polling' || this._authDead) {
      return Promise.reject(new VigilError('unavailable', 'rpc needs a WebSocket connection (the client is on ' +
        (this._authDead ? 'no connection' : this.transport || 'a fallback') + ')'));
    }
    return new Promise((resolve, reject) => {
      const id = ++this._reqId;
      const call = { method, params, resolve, reject, timer: null, sent: false };
      this._rpcs.set(id, call);
      call.timer = this._later(options.timeout ?? this._o.rpcTimeout, () => {
        this._rpcs.delete(id);
        reject(new VigilError('timeout', `rpc ${method}: no answer in time`, { id }));
      });
      this._sendRpc(id, call);
    });
  }

  /**
   * Listens to an event: `status` (status, info), `error` (VigilError), `message` (every message
   * delivered), `acked` ({id}), `welcome` (the server's connection_status), `gap` (GapInfo: history
   * could not cover a reconnection; reload that view).
   * @param {'status'|'error'|'message'|'acked'|'welcome'|'gap'} event
   * @param {(...args: any[]) => void} fn
   * @returns {() => void} removes the listener
   */
  on(event, fn) {
    let set = this._listeners.get(event);
    if (!set) this._listeners.set(event, (set = new Set()));
    const entry = { fn };
    set.add(entry);
    return () => { set.delete(entry); };
  }

  /** Closes every transport and stops reconnecting; status becomes `offline`. */
  close() {
    if (this._closed) return;
    this._closed = true;
    for (const h of this._timers) this._ct(h);
    this._timers.clear();
    this._retryTimer = this._probeTimer = this._refreshTimer = null;
    this._stopSession(this._tr);
    this._stopSession(this._probe);
    this._tr = this._probe = null;
    if (typeof window !== 'undefined' && window.removeEventListener) window.removeEventListener('online', this._onOnline);
    for (const [id, call] of this._rpcs) call.reject(new VigilError('closed', 'the client is closed', { id }));
    this._rpcs.clear();
    for (const [, list] of this._acks) for (const w of list) w.reject(new VigilError('closed', 'the client is closed'));
    this._acks.clear();
    this._setStatus('offline');
  }

  /**
   * Reconnects now: after `close()`, after authentication failed for good (with a new `token`),
   * or to cut a backoff wait short.
   * @param {{token?: string}} [options]
   */
  reconnect(options = {}) {
    if (options.token) this._takeToken(options.token);
    this._closed = false;
    this._authDead = false;
    this._attempt = 0;
    this._failures = 0;
    this._chainIdx = 0;
    this._stopSession(this._tr);
    this._stopSession(this._probe);
    this._tr = this._probe = null;
    this._cancel(this._probeTimer);
    this._probeTimer = null;
    this._scheduleRefresh();
    this._setStatus('connecting');
    this._retryNow();
  }

  // ---------------------------------------------------------------------------- events

  _emit(event, ...args) {
    const set = this._listeners.get(event);
    if (!set) return;
    for (const { fn } of [...set]) {
      try {
        fn(...args);
      } catch (err) {
        if (event !== 'error') this._error(new VigilError('handler_error', `a '${event}' listener threw: ${err && err.message}`, { cause: err }));
        else if (typeof console !== 'undefined') console.error('vigil: an error listener threw', err);
      }
    }
  }

  _error(err) { this._emit('error', err); }

  _call(fn, ...args) {
    try {
      fn(...args);
    } catch (err) {
      this._error(new VigilError('handler_error', `a handler threw: ${err && err.message}`, { cause: err }));
    }
  }

  _setStatus(status) {
    if (status === this._status) return;
    const previous = this._status;
    this._status = status;
    this._emit('status', status, { previous, transport: this.transport });
  }

  // ---------------------------------------------------------------------------- timers

  _later(ms, fn) {
    const h = this._st(() => {
      this._timers.delete(h);
      if (!this._closed) fn();
    }, Math.max(0, ms));
    this._timers.add(h);
    return h;
  }

  _cancel(h) {
    if (h == null) return;
    this._ct(h);
    this._timers.delete(h);
  }

  // ---------------------------------------------------------------------------- urls, tokens

  _setUrls(url) {
    const base = typeof location !== 'undefined' && location.href ? location.href : undefined;
    const u = new URL(url || (base ? '/' : 'http://127.0.0.1:8000'), base);
    let path = u.pathname.replace(/\/+$/, '');
    if (u.protocol === 'ws:' || u.protocol === 'wss:') {
      if (path === '') path = '/ws';
      this._wsUrl = `${u.protocol}//${u.host}${path}${u.search}`;
      const httpPath = path.endsWith('/ws') ? path.slice(0, -3) : path;
      this._base = `${u.protocol === 'wss:' ? 'https:' : 'http:'}//${u.host}${httpPath}`;
    } else {
      this._base = `${u.protocol}//${u.host}${path}`;
      this._wsUrl = `${u.protocol === 'https:' ? 'wss:' : 'ws:'}//${u.host}${path}/ws`;
    }
  }

  _takeToken(token) {
    this._token = token || null;
    const claims = token ? decodeJwt(token) : null;
    this._tokenExp = claims && typeof claims.exp === 'number' ? claims.exp * 1000 : null;
    this._tokenAt = this._now();
    if (claims && typeof claims.sub === 'string' && !this.user) this.user = { id: claims.sub, username: claims.sub };
    this._scheduleRefresh();
  }

  /** ms before exp at which a token is refreshed: a quarter of its life, between 1 s and 60 s. */
  _refreshMargin() {
    const life = this._tokenExp - this._tokenAt;
    return Math.min(60000, Math.max(1000, life / 4));
  }

  _scheduleRefresh() {
    this._cancel(this._refreshTimer);
    this._refreshTimer = null;
    if (!this._o.getToken || this._tokenExp == null || this._closed) return;
    const delay = Math.max(1000, this._tokenExp - this._refreshMargin() - this._now());
    this._refreshTimer = this._later(delay, () => {
      this._refreshTimer = null;
      this._refreshToken();
    });
  }

  /** Fetches a fresh token (one call at a time); resolves to it, or rejects. */
  _freshToken() {
    if (!this._o.getToken) return Promise.reject(new VigilError('unauthorized', 'no getToken to renew the token'));
    if (!this._tokenPromise) {
      this._tokenPromise = Promise.resolve()
        .then(() => this._o.getToken())
        .then((t) => {
          this._tokenPromise = null;
          if (typeof t !== 'string' || t === '') throw new VigilError('unauthorized', 'getToken returned no token');
          this._takeToken(t);
          return t;
        }, (err) => {
          this._tokenPromise = null;
          throw err;
        });
    }
    return this._tokenPromise;
  }

  /** Before a connection attempt: a token that is missing or about to expire is renewed. */
  async _ensureToken() {
    if (!this._o.getToken) return;
    const expiring = this._tokenExp != null && this._tokenExp - this._now() < this._refreshMargin();
    if (!this._token || expiring) await this._freshToken();
  }

  /** The token is about to expire: renew it and hand it to the live transport. */
  async _refreshToken() {
    let token;
    try {
      token = await this._freshToken();
    } catch (err) {
      this._error(new VigilError('refresh_failed', `token refresh failed: ${err && err.message ? err.message : err}`, { cause: err }));
      this._refreshTimer = this._later(5000, () => { this._refreshTimer = null; this._refreshToken(); });
      return;
    }
    if (this._closed) return;
    const tr = this._tr;
    if (tr && tr.kind === 'websocket' && tr.welcomed) {
      const id = ++this._reqId;
      tr.pending.set(id, { kind: 'refresh' });
      tr.send({ type: 'refresh', token, id });
    } else if (tr && tr.kind === 'sse' && tr.established) {
      // A stream's token cannot be replaced: open a new stream (caught up from the positions).
      this._restartTransport();
    }
    // Long-polls pick the new token up with their next request.
  }

  _authHeaders(extra = {}) {
    const h = { ...extra };
    if (this._token) h.Authorization = `Bearer ${this._token}`;
    return h;
  }

  // ---------------------------------------------------------------------------- connection manager

  /** Starts an attempt with the current transport of the chain. */
  async _connect() {
    this._retryTimer = null;
    if (this._closed || this._authDead || this._tr) return;
    const kind = this._chain[this._chainIdx];
    const sess = this._newSession(kind);
    this._tr = sess;
    try {
      await this._ensureToken();
    } catch (err) {
      if (this._tr !== sess) return;
      this._tr = null;
      this._error(new VigilError('refresh_failed', `token refresh failed: ${err && err.message ? err.message : err}`, { cause: err }));
      this._scheduleRetry();
      return;
    }
    if (this._tr !== sess || this._closed) return;
    if (kind === 'websocket') this._openWs(sess);
    else if (kind === 'sse') this._openSse(sess);
    else this._openPoll(sess);
  }

  _newSession(kind, probe = false) {
    return {
      kind, probe, established: false, welcomed: false, stopped: false, establishedAt: 0,
      gate: null, gateCount: 0, pending: new Map(), serverSet: null, timers: new Set(),
      send: () => false, stop: () => {},
    };
  }

  _stopSession(sess) {
    if (!sess || sess.stopped) return;
    sess.stopped = true;
    for (const h of sess.timers) this._cancel(h);
    sess.timers.clear();
    try { sess.stop(); } catch { /* already closed */ }
  }

  _sessLater(sess, ms, fn) {
    const h = this._later(ms, () => {
      sess.timers.delete(h);
      if (!sess.stopped) fn();
    });
    sess.timers.add(h);
    return h;
  }

  /** A transport delivers: status, stability bookkeeping, probes. */
  _established(sess) {
    if (sess.established || sess.stopped || this._tr !== sess) return;
    sess.established = true;
    sess.establishedAt = this._now();
    this._failures = 0;
    this._authRetry = false;
    if (this._floorTs == null) this._floorTs = this._now();
    if (sess.kind === 'websocket') {
      this._cancel(this._probeTimer);
      this._probeTimer = null;
      this._lastEventId = null;
      this._setStatus('live');
      this._flushRpcs();
    } else {
      this._setStatus('polling');
      this._syncSubscriptions(); // subscriptions made while it connected
      this._rejectRpcs('unavailable', 'rpc needs a WebSocket connection (the client is on a fallback)');
      this._scheduleProbe(this._wsWorked ? Math.min(this._o.probeInterval, 1000 + backoffDelay(0, this._o.backoff, this._random)) : this._o.probeInterval);
    }
  }

  /**
   * A session ended. `info`: {auth?: reason, expired?: bool, refused?: bool, forbidden?: pattern, error?: VigilError}.
   */
  _ended(sess, info = {}) {
    if (sess.stopped) return;
    const wasEstablished = sess.established;
    this._stopSession(sess);
    if (sess.probe) {
      if (this._probe === sess) this._probe = null;
      if (info.auth || info.expired) this._handleAuth(sess, info, true);
      else this._scheduleProbe(this._o.probeInterval);
      return;
    }
    if (this._tr !== sess || this._closed) return;
    this._tr = null;
    this._failPending(sess);
    if (info.auth || info.expired) {
      this._handleAuth(sess, info, false);
      return;
    }
    if (info.forbidden) { // a pattern was refused on an HTTP transport: retry at once without it
      this._retryNow();
      return;
    }
    if (wasEstablished) {
      if (this._now() - sess.establishedAt >= this._o.stableAfter) this._attempt = 0;
      this._failures = 0;
      if (this._status !== 'offline') this._setStatus('connecting');
      this._scheduleRetry();
      return;
    }
    // An attempt that never delivered: maybe time to fall back.
    this._failures++;
    const isLast = this._chainIdx >= this._chain.length - 1;
    const limit = sess.kind === 'sse' ? 1 : this._o.maxAttempts;
    if (!isLast && (info.refused || this._failures >= limit)) {
      this._chainIdx++;
      this._failures = 0;
      this._later(0, () => this._connect());
      return;
    }
    if (isLast && this._failures >= this._o.maxAttempts) this._setStatus('offline');
    else if (this._status !== 'offline') this._setStatus('connecting');
    this._scheduleRetry();
    if (this._chain[this._chainIdx] !== 'websocket') this._scheduleProbe(this._o.probeInterval);
  }

  /** Authentication failed (or the token expired): one retry with a fresh token, else offline. */
  _handleAuth(sess, info, probe) {
    const reason = info.auth || 'token expired';
    const canRetry = !!this._o.getToken && (info.expired || !this._authRetry);
    if (canRetry) {
      this._authRetry = !info.expired;
      this._freshToken().then(() => {
        if (this._closed) return;
        if (probe) this._scheduleProbe(0);
        else this._retryNow();
      }, (err) => {
        this._authFailed(`${reason}; and getting a new token failed: ${err && err.message ? err.message : err}`);
      });
      return;
    }
    if (probe && this._tr) return; // the fallback still works with its own requests
    this._authFailed(reason);
  }

  _authFailed(reason) {
    this._authDead = true;
    this._stopSession(this._tr);
    this._stopSession(this._probe);
    this._tr = this._probe = null;
    this._cancel(this._retryTimer);
    this._cancel(this._probeTimer);
    this._retryTimer = this._probeTimer = null;
    this._rejectRpcs('unauthorized', reason);
    this._setStatus('offline');
    this._error(new VigilError('unauthorized', `authentication failed: ${reason}`));
  }

  _scheduleRetry() {
    if (this._closed || this._authDead || this._retryTimer) return;
    const delay = backoffDelay(this._attempt, this._o.backoff, this._random);
    this._attempt++;
    this._retryTimer = this._later(delay, () => this._connect());
  }

  _retryNow() {
    this._cancel(this._retryTimer);
    this._retryTimer = null;
    this._retryTimer = this._later(0, () => this._connect());
  }

  _scheduleProbe(ms) {
    if (this._closed || this._authDead || !this._chain.includes('websocket') || this._probe) return;
    if (this._tr && this._tr.kind === 'websocket') return;
    if (this._probeTimer && ms > 0) return; // one is due already
    this._cancel(this._probeTimer);
    this._probeTimer = this._later(ms, () => {
      this._probeTimer = null;
      if (this._probe || (this._tr && this._tr.kind === 'websocket')) return;
      const probe = this._newSession('websocket', true);
      this._probe = probe;
      this._openWs(probe);
    });
  }

  /** Replaces the current established transport by a fresh one of the same kind. */
  _restartTransport() {
    const tr = this._tr;
    if (!tr) return;
    this._stopSession(tr);
    this._tr = null;
    this._failPending(tr);
    this._retryNow();
  }

  // ---------------------------------------------------------------------------- subscriptions

  /** The patterns the server should have: handlers' patterns, `channels`, state documents. */
  _wanted() {
    const set = new Set(this._baseChannels);
    for (const { pattern } of this._subs.values()) set.add(pattern);
    for (const name of this._states.keys()) set.add('state.' + name);
    for (const p of this._rejected) set.delete(p);
    return [...set];
  }

  /** After subscribe/unsubscribe: tell the transport (batched per tick). */
  _syncSubscriptions() {
    if (this._syncQueued) return;
    this._syncQueued = true;
    Promise.resolve().then(() => {
      this._syncQueued = false;
      if (this._closed) return;
      const tr = this._tr;
      if (!tr || tr.stopped) return;
      const wanted = this._wanted();
      if (tr.kind === 'websocket') {
        if (!tr.welcomed) return; // the welcome subscribes to everything wanted then
        const added = wanted.filter((p) => !tr.serverSet.has(p));
        const removed = [...tr.serverSet].filter((p) => !wanted.includes(p));
        for (const p of removed) tr.serverSet.delete(p);
        if (removed.length) tr.send({ type: 'unsubscribe', channels: removed, id: ++this._reqId });
        if (added.length) this._wsSubscribe(tr, added, { fresh: true });
      } else if (tr.established && wanted.join(',') !== tr.patterns.join(',')) {
        if (tr.kind === 'poll') tr.restart();
        else this._restartTransport();
      }
    });
  }

  /** since / since_time for a (re)subscribe of these patterns. */
  _sinceFor(patterns) {
    const since = {};
    let any = false;
    let earliest = null;
    // The server recovers at most 256 channels by offset per request: the most recently active
    // ones go in the map, the others are recovered by time.
    const room = SINCE_MAP_MAX - patterns.filter((p) => !isPattern(p)).length;
    const withEpoch = [];
    for (const [ch, p] of this._pos) {
      if (ch.startsWith('state.') || !patterns.some((pt) => matchChannel(pt, ch))) continue;
      if (p.epoch) withEpoch.push([ch, p]);
      else if (p.ts != null && (earliest == null || p.ts < earliest)) earliest = p.ts;
    }
    if (withEpoch.length > room) withEpoch.sort((a, b) => (b[1].ts ?? Infinity) - (a[1].ts ?? Infinity));
    withEpoch.forEach(([ch, p], i) => {
      if (i < room) {
        since[ch] = { offset: p.offset, epoch: p.epoch };
        any = true;
      } else if (p.ts != null && (earliest == null || p.ts < earliest)) {
        earliest = p.ts;
      }
    });
    const out = {};
    if (any) out.since = since;
    if (patterns.some(isPattern)) {
      // Channels the map does not name (seen without an epoch, or new while away) replay from
      // the time of the last message, or of the first subscription.
      let t = this._lastTs != null ? this._lastTs : this._floorTs;
      if (earliest != null && (t == null || earliest < t)) t = earliest;
      if (t != null) out.since_time = Math.floor(t);
    }
    return out;
  }

  // ---------------------------------------------------------------------------- WebSocket

  _openWs(sess) {
    let url = this._wsUrl;
    if (this._token) url += (url.includes('?') ? '&' : '?') + 'token=' + encodeURIComponent(this._token);
    let ws;
    try {
      if (!this._WS) throw new Error('no WebSocket implementation (pass options.WebSocket)');
      ws = new this._WS(url);
    } catch (err) {
      this._later(0, () => this._ended(sess, { refused: true, error: err }));
      return;
    }
    sess.ws = ws;
    sess.lastRx = sess.lastTx = this._now();
    sess.send = (obj) => {
      if (sess.stopped || ws.readyState !== 1) return false;
      try {
        ws.send(typeof obj === 'string' ? obj : JSON.stringify(obj));
        sess.lastTx = this._now();
        return true;
      } catch {
        return false;
      }
    };
    sess.stop = () => {
      try {
        if (ws.readyState === 0 && typeof ws.terminate === 'function') ws.terminate();
        else if (ws.readyState <= 1) ws.close(1000, 'client closed');
      } catch { /* closing a socket that never opened */ }
    };
    ws.addEventListener('message', (ev) => this._wsMessage(sess, ev.data));
    ws.addEventListener('error', (ev) => {
      const text = (ev && (ev.message || (ev.error && ev.error.message))) || '';
      const m = /Unexpected server response: (\d+)/.exec(text);
      if (m) sess.httpStatus = Number(m[1]);
    });
    ws.addEventListener('close', (ev) => this._wsClosed(sess, ev.code, ev.reason || ''));
    this._sessLater(sess, this._o.connectTimeout, () => {
      if (!sess.welcomed) {
        this._ended(sess, {});
        try { if (typeof ws.terminate === 'function') ws.terminate(); } catch { /* gone */ }
      }
    });
  }

  _wsClosed(sess, code, reason) {
    if (sess.stopped) return;
    const info = {};
    if (code === 4001) info.expired = true;
    else if (code === 1008 && AUTH_REASONS.test(reason)) info.auth = reason;
    else if (sess.httpStatus === 403 || sess.httpStatus === 404 || sess.httpStatus === 400) info.refused = true;
    else if (sess.httpStatus === 401) info.auth = 'unauthorized';
    if (code === 1008 && /too many connections/i.test(reason)) {
      this._error(new VigilError('too_many_connections', 'the server refused the connection: too many connections for this user'));
    }
    this._ended(sess, info);
  }

  _wsHeartbeat(sess) {
    const hb = this._o.heartbeat;
    const tick = () => {
      const now = this._now();
      if (now - sess.lastRx >= 2 * hb) {
        const ws = sess.ws;
        this._ended(sess, {});
        try { if (typeof ws.terminate === 'function') ws.terminate(); else ws.close(4000, 'heartbeat timeout'); } catch { /* gone */ }
        return;
      }
      if (now - sess.lastTx >= hb) sess.send({ type: 'ping' });
      this._sessLater(sess, Math.max(50, Math.min(hb / 2, 2 * hb - (now - sess.lastRx))), tick);
    };
    this._sessLater(sess, Math.max(50, hb / 2), tick);
  }

  _wsMessage(sess, data) {
    if (sess.stopped) return;
    sess.lastRx = this._now();
    if (typeof data !== 'string') return; // binary frames only come when asked for
    if (data === 'pong') return;
    if (data === 'ping') { sess.send('pong'); return; }
    let msg;
    try {
      msg = JSON.parse(data);
    } catch {
      return;
    }
    if (!msg || typeof msg !== 'object') return;
    if (typeof msg.channel === 'string') {
      if (sess.welcomed) this._deliver(sess, msg);
      return;
    }
    switch (msg.type) {
      case 'connection_status': this._wsWelcome(sess, msg); break;
      case 'subscribed': this._wsSubscribed(sess, msg); break;
      case 'state': if (sess.welcomed) this._deliver(sess, msg); break;
      case 'acked': this._onAcked(msg.id); break;
      case 'rpc_result': this._rpcAnswer(msg.id, null, msg.result); break;
      case 'error': this._wsError(sess, msg); break;
      case 'ping': sess.send({ type: 'pong', id: msg.id }); break;
      case 'refreshed': sess.pending.delete(msg.id); break;
      default: break; // pong, unsubscribed, ...
    }
  }

  _wsWelcome(sess, msg) {
    if (sess.welcomed) return;
    sess.welcomed = true;
    if (msg.user && typeof msg.user === 'object') this.user = msg.user;
    this._wsWorked = true;
    if (sess.probe) {
      if (this._probe !== sess) { this._stopSession(sess); return; }
      // Upgrade: the fallback stops here; the WebSocket resubscribes from the positions it
      // delivered up to, so the switch loses and repeats nothing.
      this._probe = null;
      sess.probe = false;
      const old = this._tr;
      this._tr = sess;
      if (old) { this._stopSession(old); this._failPending(old); }
      this._cancel(this._retryTimer);
      this._retryTimer = null;
    }
    if (this._tr !== sess) { this._stopSession(sess); return; }
    this._chainIdx = this._chain.indexOf('websocket');
    this._failures = 0;
    this._wsHeartbeat(sess);
    const patterns = this._wanted();
    sess.serverSet = new Set(patterns);
    sess.initialPending = 0;
    this._emit('welcome', msg);
    if (sess.stopped) return;
    if (patterns.length) this._wsSubscribe(sess, patterns, { initial: true });
    else this._established(sess);
  }

  /** Sends one subscribe request; `fresh` ones start from now, the others from the positions. */
  _wsSubscribe(sess, patterns, { initial = false, fresh = false } = {}) {
    for (const p of patterns) sess.serverSet.add(p);
    const id = ++this._reqId;
    const req = { type: 'subscribe', channels: patterns, id };
    if (!fresh) Object.assign(req, this._sinceFor(patterns));
    else if (this._floorTs == null) this._floorTs = this._now();
    sess.pending.set(id, { kind: 'subscribe', patterns, initial, fresh });
    if (initial) sess.initialPending++;
    sess.send(req);
  }

  _subscribeAnswered(sess, entry) {
    if (entry.initial && --sess.initialPending === 0) this._established(sess);
  }

  _wsSubscribed(sess, msg) {
    const entry = sess.pending.get(msg.id);
    if (!entry || entry.kind !== 'subscribe') return;
    sess.pending.delete(msg.id);
    const catchUp = [];
    const positions = msg.positions && typeof msg.positions === 'object' ? msg.positions : {};
    for (const ch of Object.keys(positions)) {
      const p = positions[ch];
      if (!p || typeof p.offset !== 'number') continue;
      const mine = this._pos.get(ch);
      if (entry.fresh || !mine || ch.startsWith('state.')) {
        const keep = mine && mine.epoch === p.epoch ? Math.max(mine.offset, p.offset) : p.offset;
        this._pos.set(ch, { epoch: p.epoch, offset: keep, ts: mine ? mine.ts : null });
        continue;
      }
      if (p.recovered === true) {
        mine.epoch = p.epoch;
      } else if (p.recovered === false && mine.epoch === p.epoch) {
        // Same epoch, but history lost part of the gap.
        this._emit('gap', { channel: ch, from: mine.offset, to: p.offset });
        this._pos.set(ch, { epoch: p.epoch, offset: p.offset, ts: mine.ts });
      } else if (p.recovered === false) {
        // Offsets restarted (new epoch): everything of the new epoch was published after we
        // left; fetch it from the start.
        this._pos.set(ch, { epoch: p.epoch, offset: 0, ts: null });
        if (p.offset > 0) catchUp.push({ channel: ch, offset: 0, epoch: p.epoch });
      } else {
        // Known without an epoch (e.g. from SSE/long-poll): fetch what we miss by offset.
        if (mine.offset < p.offset) catchUp.push({ channel: ch, offset: mine.offset, epoch: p.epoch });
        else if (mine.offset > p.offset) { // the channel restarted
          this._pos.set(ch, { epoch: p.epoch, offset: 0, ts: null });
          if (p.offset > 0) catchUp.push({ channel: ch, offset: 0, epoch: p.epoch });
          continue;
        }
        mine.epoch = p.epoch;
      }
    }
    if (catchUp.length) this._catchUp(sess, catchUp);
    this._subscribeAnswered(sess, entry);
  }

  _wsError(sess, msg) {
    const err = new VigilError(String(msg.code || 'error'), String(msg.message || 'error'), { id: msg.id });
    if (msg.id !== undefined && this._rpcs.has(msg.id)) { this._rpcAnswer(msg.id, err); return; }
    if (typeof msg.id === 'string' && this._acks.has(msg.id)) {
      for (const w of this._acks.get(msg.id)) { this._cancel(w.timer); w.reject(err); }
      this._acks.delete(msg.id);
      return;
    }
    const entry = msg.id !== undefined ? sess.pending.get(msg.id) : undefined;
    if (entry && entry.kind === 'subscribe') {
      sess.pending.delete(msg.id);
      if (entry.patterns.length > 1 && (err.code === 'forbidden' || err.code === 'invalid_channel')) {
        // One pattern spoiled the batch: ask for each on its own to find it.
        for (const p of entry.patterns) this._wsSubscribe(sess, [p], { initial: entry.initial, fresh: entry.fresh });
      } else {
        for (const p of entry.patterns) {
          sess.serverSet.delete(p);
          if (err.code === 'forbidden' || err.code === 'invalid_channel') this._rejected.add(p);
        }
        err.channel = entry.patterns.length === 1 ? entry.patterns[0] : quotedChannel(err.message);
        this._error(err);
      }
      this._subscribeAnswered(sess, entry);
      return;
    }
    if (entry && entry.kind === 'refresh') {
      sess.pending.delete(msg.id);
      this._error(new VigilError(err.code, `token refresh refused: ${err.message}`, { id: msg.id }));
      return;
    }
    this._error(err);
  }

  // ---------------------------------------------------------------------------- delivery

  /** A message from a transport: held while that transport catches up, else ingested. */
  _deliver(sess, msg, meta) {
    if (sess.gate) sess.gate.push([msg, meta]);
    else this._ingest(msg, meta);
  }

  /** Dedupes (channel+offset with epochs, ids of ack messages), orders, dispatches. */
  _ingest(msg, meta) {
    if (msg.type === 'state' && typeof msg.name === 'string' && typeof msg.channel !== 'string') {
      if (meta && meta.channel && typeof meta.offset === 'number') this._advance(meta.channel, meta.offset, null);
      this._applyState(msg);
      return;
    }
    const ch = msg.channel;
    if (typeof ch !== 'string') return;
    const hasOffset = typeof msg.offset === 'number';
    if (typeof msg.id === 'string') {
      if (this._seenIds.has(msg.id)) {
        if (hasOffset) this._advance(ch, msg.offset, parseTs(msg.timestamp));
        return; // an ack message we have (redelivered, or seen on another path)
      }
    }
    if (hasOffset) {
      const ts = parseTs(msg.timestamp);
      const p = this._pos.get(ch);
      if (p && msg.offset <= p.offset) {
        // An offset we have: a duplicate, unless the channel's offsets restarted (a server
        // restart with the channel in memory), which shows as a clearly later timestamp.
        if (!(ts != null && p.ts != null && ts > p.ts + RESTART_SKEW_MS)) return;
        p.epoch = null;
      }
      this._advance(ch, msg.offset, ts, true);
      if (ts != null && (this._lastTs == null || ts > this._lastTs)) this._lastTs = ts;
    }
    if (typeof msg.id === 'string') this._remember(this._seenIds, msg.id);
    this._dispatch(msg);
  }

  _advance(ch, offset, ts, force = false) {
    const p = this._pos.get(ch);
    if (!p) this._pos.set(ch, { epoch: null, offset, ts });
    else if (force || offset > p.offset) { p.offset = offset; if (ts != null) p.ts = ts; }
  }

  _remember(map, id) {
    map.delete(id);
    map.set(id, true);
    if (map.size > SEEN_IDS_MAX) map.delete(map.keys().next().value);
  }

  _dispatch(msg) {
    for (const sub of [...this._subs.values()]) {
      if (!matchChannel(sub.pattern, msg.channel)) continue;
      if (sub.types && !sub.types.has(msg.type)) continue;
      this._call(sub.fn, msg);
    }
    this._emit('message', msg);
  }

  _applyState(msg) {
    const st = this._states.get(msg.name);
    if (!st) return;
    const version = typeof msg.version === 'number' ? msg.version : null;
    const info = { name: msg.name, version };
    if (msg.deleted) {
      if (st.version !== null && version !== null && version < st.version) return;
      st.doc = null;
      info.deleted = true;
    } else if ('snapshot' in msg) {
      if (st.version !== null && version !== null && version < st.version) return;
      st.doc = msg.snapshot;
    } else if ('patch' in msg) {
      if (st.version !== null && (version === null || version <= st.version)) return;
      st.doc = mergePatch(st.doc === undefined || st.doc === null ? {} : st.doc, msg.patch);
    } else {
      return;
    }
    st.version = version;
    for (const { fn } of [...st.fns]) this._call(fn, st.doc, info);
  }

  /** Fallbacks get no snapshot: GET /api/state/{name} (version from the ETag). */
  async _fetchState(name) {
    try {
      const res = await this._http(`/api/state/${encodeURIComponent(name)}`, { headers: this._authHeaders() });
      if (res.status === 404) return;
      if (!res.ok) return;
      const doc = await res.json();
      const etag = res.headers.get('ETag') || '';
      const version = Number(etag.replace(/[^0-9]/g, ''));
      if (!Number.isFinite(version)) return;
      this._applyState({ type: 'state', name, version, snapshot: doc });
    } catch { /* the next snapshot or patch brings it */ }
  }

  _onAcked(id) {
    if (typeof id !== 'string') return;
    const list = this._acks.get(id);
    if (list) {
      this._acks.delete(id);
      for (const w of list) { this._cancel(w.timer); w.resolve(id); }
    }
    if (this._ackedIds.has(id)) return;
    this._remember(this._ackedIds, id);
    this._emit('acked', { id });
  }

  async _ackOverHttp(id, waiter) {
    const list = this._acks.get(id);
    if (list) {
      const i = list.indexOf(waiter);
      if (i >= 0) list.splice(i, 1);
      if (list.length === 0) this._acks.delete(id);
    }
    try {
      const res = await this._http('/api/ack', {
        method: 'POST', headers: this._authHeaders({ 'Content-Type': 'application/json' }), body: JSON.stringify({ id }),
      });
      if (!res.ok) throw await this._httpError(res);
      waiter.resolve(id);
      this._onAcked(id);
    } catch (err) {
      waiter.reject(err instanceof VigilError ? err : new VigilError('network', `ack failed: ${err && err.message}`, { cause: err }));
    }
  }

  // ---------------------------------------------------------------------------- rpc

  _sendRpc(id, call) {
    const tr = this._tr;
    if (tr && tr.kind === 'websocket' && tr.established && !call.sent) {
      const frame = { type: 'rpc', id, method: call.method };
      if (call.params !== undefined) frame.params = call.params;
      if (tr.send(frame)) { call.sent = true; call.session = tr; }
    }
  }

  _flushRpcs() {
    for (const [id, call] of this._rpcs) if (!call.sent) this._sendRpc(id, call);
  }

  _rpcAnswer(id, err, result) {
    const call = this._rpcs.get(id);
    if (!call) return;
    this._rpcs.delete(id);
    this._cancel(call.timer);
    if (err) call.reject(err);
    else call.resolve(result);
  }

  _rejectRpcs(code, message) {
    for (const [id, call] of [...this._rpcs]) this._rpcAnswer(id, new VigilError(code, message, { id }));
  }

  /** A WebSocket went away: its RPCs may or may not have run; its acks go over HTTP. */
  _failPending(sess) {
    for (const [id, call] of [...this._rpcs]) {
      if (call.session === sess) this._rpcAnswer(id, new VigilError('disconnected', `rpc ${call.method}: the connection closed before the answer`, { id }));
    }
    if (sess.kind === 'websocket') {
      for (const [id, list] of [...this._acks]) for (const w of [...list]) { this._cancel(w.timer); this._ackOverHttp(id, w); }
    }
  }

  // ---------------------------------------------------------------------------- HTTP helpers

  _http(path, init = {}, timeoutMs = this._o.connectTimeout) {
    const ctrl = typeof AbortController !== 'undefined' ? new AbortController() : null;
    const outer = init.signal;
    if (ctrl && outer) {
      if (outer.aborted) ctrl.abort();
      else outer.addEventListener('abort', () => ctrl.abort(), { once: true });
    }
    const timer = ctrl && timeoutMs > 0 ? this._later(timeoutMs, () => ctrl.abort()) : null;
    const f = this._fetch;
    if (!f) return Promise.reject(new VigilError('network', 'no fetch implementation (pass options.fetch)'));
    return Promise.resolve()
      .then(() => f(this._base + path, { cache: 'no-store', ...init, signal: ctrl ? ctrl.signal : undefined }))
      .finally(() => this._cancel(timer));
  }

  async _httpError(res) {
    let code = `http_${res.status}`;
    let message = `HTTP ${res.status}`;
    try {
      const body = await res.json();
      if (body && body.error) {
        code = body.error.code || code;
        message = body.error.message || message;
      }
    } catch { /* not JSON */ }
    return new VigilError(code, message, { status: res.status });
  }

  /** An HTTP transport was refused: classify for _ended. */
  async _httpRefusal(res) {
    const err = await this._httpError(res);
    if (res.status === 401) return { auth: err.message || 'unauthorized', error: err };
    if ((res.status === 403 && err.code === 'forbidden') || (res.status === 400 && err.code === 'invalid_channel')) {
      const ch = quotedChannel(err.message);
      if (ch && this._wanted().includes(ch)) {
        this._rejected.add(ch);
        err.channel = ch;
        this._error(err);
        return { forbidden: ch, error: err };
      }
    }
    if (res.status === 429) this._error(err);
    return { error: err };
  }

  /** Positions of exact channels covered by `patterns`, for `since=` (long-poll syntax). */
  _pollSince(patterns, max = POLL_CHANNELS_MAX) {
    const list = [];
    for (const [ch, p] of this._pos) {
      if (patterns.some((pt) => matchChannel(pt, ch))) list.push([ch, p]);
    }
    if (list.length > max) { // the most recently active first
      list.sort((a, b) => (b[1].ts ?? Infinity) - (a[1].ts ?? Infinity));
      list.length = max;
    }
    return list.map(([ch, p]) => `${ch}:${p.offset}`);
  }

  /**
   * Fetches what `entries` ({channel, offset}) missed with an immediate long-poll, while the
   * session's own deliveries wait; then lets them through (duplicates are dropped).
   */
  _catchUp(sess, entries, second = false) {
    if (entries.length > POLL_CHANNELS_MAX) {
      for (let i = 0; i < entries.length; i += POLL_CHANNELS_MAX) this._catchUp(sess, entries.slice(i, i + POLL_CHANNELS_MAX), second);
      return;
    }
    sess.gateCount++;
    if (!sess.gate) sess.gate = [];
    const done = () => {
      if (--sess.gateCount > 0) return;
      const held = sess.gate;
      sess.gate = null;
      if (sess.stopped) return;
      for (const [m, meta] of held) this._ingest(m, meta);
    };
    const channels = entries.map((e) => e.channel);
    const since = entries.map((e) => `${e.channel}:${e.offset}`);
    const q = `/api/poll?channels=${encodeURIComponent(channels.join(','))}&since=${encodeURIComponent(since.join(','))}&timeout=0`;
    this._http(q, { headers: this._authHeaders() })
      .then(async (res) => {
        if (!res.ok) throw await this._httpError(res);
        const body = await res.json();
        if (sess.stopped) return;
        for (const m of body.messages || []) this._ingest(m);
        const restarted = [];
        for (const part of String(body.since || '').split(',')) {
          const i = part.lastIndexOf(':');
          if (i <= 0) continue;
          const ch = part.slice(0, i);
          const off = Number(part.slice(i + 1));
          const asked = entries.find((e) => e.channel === ch);
          if (!asked || !Number.isFinite(off)) continue;
          const mine = this._pos.get(ch);
          if (off < asked.offset && !second) {
            restarted.push({ channel: ch, offset: 0, epoch: asked.epoch }); // offsets restarted
            continue;
          }
          if (mine && mine.offset < off) {
            if (!ch.startsWith('state.')) this._emit('gap', { channel: ch, from: mine.offset, to: off });
            mine.offset = off;
          }
          if (mine && asked.epoch) mine.epoch = asked.epoch;
        }
        for (const r of restarted) this._pos.set(r.channel, { epoch: r.epoch || null, offset: 0, ts: null });
        if (restarted.length) this._catchUp(sess, restarted, true);
      })
      .catch((err) => {
        if (sess.stopped) return;
        for (const e of entries) this._emit('gap', { channel: e.channel, from: e.offset, to: null, error: err });
      })
      .finally(done);
  }

  // ---------------------------------------------------------------------------- SSE

  _openSse(sess) {
    const patterns = this._wanted();
    sess.patterns = patterns;
    const ctrl = new AbortController();
    sess.stop = () => ctrl.abort();
    if (patterns.length === 0) { // nothing to stream: idle until something is subscribed
      this._established(sess);
      return;
    }
    sess.gate = [];
    sess.gateCount = 1;
    sess.lastRx = this._now();
    const headers = this._authHeaders({ Accept: 'text/event-stream' });
    if (this._lastEventId) headers['Last-Event-ID'] = this._lastEventId;
    const known = this._pollSince(patterns, Infinity).map((s) => {
      const i = s.lastIndexOf(':');
      return { channel: s.slice(0, i), offset: Number(s.slice(i + 1)) };
    });
    this._sessLater(sess, this._o.connectTimeout, () => {
      if (!sess.connected) { this._ended(sess, {}); }
    });
    const f = this._fetch;
    Promise.resolve()
      .then(() => f(`${this._base}/api/sse?channels=${encodeURIComponent(patterns.join(','))}`, {
        headers, signal: ctrl.signal, cache: 'no-store',
      }))
      .then(async (res) => {
        if (sess.stopped) return;
        if (res.status !== 200 || !res.body) {
          this._ended(sess, await this._httpRefusal(res));
          return;
        }
        await this._readSse(sess, res.body, () => {
          // Subscribed: catch up on what the other channels missed, then let the stream through.
          sess.connected = true;
          this._established(sess);
          for (const name of this._states.keys()) this._fetchState(name);
          const release = () => {
            if (--sess.gateCount > 0) return;
            const held = sess.gate;
            sess.gate = null;
            for (const [m, meta] of held) this._ingest(m, meta);
          };
          if (known.length) { this._catchUp(sess, known); }
          release();
          this._sseWatchdog(sess);
        });
        this._ended(sess, {});
      })
      .catch(() => this._ended(sess, {}));
  }

  _sseWatchdog(sess) {
    const limit = Math.max(2 * this._o.heartbeat, 35000); // the server comments every 15 s
    const tick = () => {
      if (this._now() - sess.lastRx >= limit) { this._ended(sess, {}); return; }
      this._sessLater(sess, Math.min(limit / 2, 10000), tick);
    };
    this._sessLater(sess, Math.min(limit / 2, 10000), tick);
  }

  async _readSse(sess, body, onConnected) {
    const reader = body.getReader();
    const dec = new TextDecoder();
    let buf = '';
    let id = null;
    let event = null;
    let data = [];
    const stop = sess.stop;
    sess.stop = () => {
      stop();
      try { Promise.resolve(reader.cancel()).catch(() => {}); } catch { /* done */ }
    };
    for (;;) {
      const { value, done } = await reader.read();
      if (done || sess.stopped) return;
      sess.lastRx = this._now();
      buf += dec.decode(value, { stream: true });
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        let line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (line.endsWith('\r')) line = line.slice(0, -1);
        if (line === '') {
          if (data.length) this._sseEvent(sess, event, id, data.join('\n'));
          if (sess.stopped) return;
          id = event = null;
          data = [];
          continue;
        }
        if (line.startsWith(':')) {
          if (!sess.connected && line.startsWith(': connected')) onConnected();
          continue;
        }
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        let val = colon < 0 ? '' : line.slice(colon + 1);
        if (val.startsWith(' ')) val = val.slice(1);
        if (field === 'data') data.push(val);
        else if (field === 'id') id = val;
        else if (field === 'event') event = val;
      }
    }
  }

  _sseEvent(sess, event, id, data) {
    let msg;
    try { msg = JSON.parse(data); } catch { return; }
    if (event === 'error') {
      const code = msg && msg.code;
      if (code === 'token_expired') this._ended(sess, { expired: true });
      else this._error(new VigilError(String(code || 'error'), String((msg && msg.message) || code || 'stream error')));
      return;
    }
    if (!msg || typeof msg !== 'object') return;
    let meta;
    if (id) {
      this._lastEventId = id;
      const i = id.lastIndexOf(':');
      meta = { channel: id.slice(0, i), offset: Number(id.slice(i + 1)) };
    }
    this._deliver(sess, msg, meta);
  }

  // ---------------------------------------------------------------------------- long-poll

  _openPoll(sess) {
    let ctrl = null;
    let restarting = false;
    sess.stop = () => { if (ctrl) ctrl.abort(); };
    sess.restart = () => { restarting = true; if (ctrl) ctrl.abort(); };
    sess.patterns = [];
    const loop = async () => {
      let first = true;
      while (!sess.stopped) {
        const patterns = this._wanted();
        sess.patterns = patterns;
        if (patterns.length === 0) { // nothing to poll: idle until something is subscribed
          this._established(sess);
          await new Promise((resolve) => { sess.restart = () => resolve(); sess.stop = () => resolve(); });
          sess.stop = () => { if (ctrl) ctrl.abort(); };
          sess.restart = () => { restarting = true; if (ctrl) ctrl.abort(); };
          continue;
        }
        const since = this._pollSince(patterns);
        const timeout = sess.established ? this._o.pollTimeout : 0;
        let q = `/api/poll?channels=${encodeURIComponent(patterns.join(','))}&timeout=${timeout}`;
        if (since.length) q += `&since=${encodeURIComponent(since.join(','))}`;
        // For channels of a pattern not named in `since` (as over WebSocket); servers that do
        // not know the parameter ignore it.
        const st = this._sinceFor(patterns).since_time;
        if (st != null && !first) q += `&since_time=${st}`;
        ctrl = new AbortController();
        restarting = false;
        const startedAt = this._now();
        let res;
        let body;
        try {
          res = await this._http(q, { headers: this._authHeaders(), signal: ctrl.signal },
            timeout * 1000 + this._o.connectTimeout);
          if (sess.stopped) return;
          if (!res.ok) { this._ended(sess, await this._httpRefusal(res)); return; }
          body = await res.json();
        } catch (err) {
          if (sess.stopped) return;
          if (restarting) continue;
          this._ended(sess, { error: err });
          return;
        }
        if (sess.stopped) return;
        if (first) {
          first = false;
          this._established(sess);
          for (const name of this._states.keys()) this._fetchState(name);
          // A poll with `since` replays no unacknowledged messages: list them.
          if (since.length) this._fetchUnacked(sess, patterns);
        }
        const messages = Array.isArray(body.messages) ? body.messages : [];
        for (const m of messages) this._ingest(m);
        this._reconcilePoll(String(body.since || ''));
        if (timeout > 0 && messages.length === 0 && this._now() - startedAt < 500) {
          // Answered at once with nothing (a proxy?): do not spin.
          await new Promise((resolve) => this._sessLater(sess, 1000, resolve));
        }
      }
    };
    loop().catch((err) => this._ended(sess, { error: err }));
  }

  /** The answer's `since` says where each channel stands; differences are gaps or restarts. */
  _reconcilePoll(since) {
    for (const part of since.split(',')) {
      const i = part.lastIndexOf(':');
      if (i <= 0) continue;
      const ch = part.slice(0, i);
      const off = Number(part.slice(i + 1));
      if (!Number.isFinite(off)) continue;
      const mine = this._pos.get(ch);
      if (!mine) { this._pos.set(ch, { epoch: null, offset: off, ts: null }); continue; }
      if (off === mine.offset) continue;
      // Not what the messages brought us to: history lost a gap (ahead), or the channel's
      // offsets restarted (behind). Go on from the server's position.
      if (!ch.startsWith('state.')) this._emit('gap', { channel: ch, from: mine.offset, to: off });
      if (off < mine.offset) mine.epoch = null;
      mine.offset = off;
    }
  }

  async _fetchUnacked(sess, patterns) {
    try {
      const res = await this._http('/api/alerts?unacked=1', { headers: this._authHeaders() });
      if (!res.ok || sess.stopped) return;
      const body = await res.json();
      for (const m of body.alerts || []) {
        if (m && typeof m.channel === 'string' && patterns.some((p) => matchChannel(p, m.channel))) this._ingest(m);
      }
    } catch { /* they come again with the next connection */ }
  }
}

export default Vigil;
