// wsring-client — the JavaScript client for wsring: one ES module with no
// dependencies, for browsers and Node.js 18 or later. It is the npm package
// `wsring-client` (clients/js/, types in wsring-client.d.ts beside this file)
// and the gateway serves this same file at /wsring-client.js for the
// dashboard. It implements the semantics of the Rust SDK
// (crates/client/src/driver.rs), so an application written against either
// behaves the same way through rebalances, crashes and durable resumes:
//
// * Requests (`send`, `join`, `leave`, `publish`) get an id and a Promise that
//   resolves on the server's `ack` and rejects on a non-transient `error`.
//   Until acked they stay pending and are resent, in order and with the SAME
//   id, after every reconnect and after an `unavailable` error (a durable
//   cluster deduplicates by id, so nothing is stored twice).
// * Reconnects: exponential backoff with full jitter (100 ms base, 5 s cap)
//   after a lost connection; after `moved` + close 1012 at once after the
//   server's `retry_after_ms` plus 0–100 ms of jitter, so a rebalance's
//   reconnects stay spread out the way the server planned them.
// * Durable mode: the last (epoch, seq) of the user stream and of each joined
//   room is tracked; reconnects resume from there (`?resume=&epoch=` and
//   `join` with `resume`/`epoch`), and anything at or behind a cursor is a
//   duplicate that is dropped and counted. Against a non-durable cluster no
//   seq fields arrive, so no resume parameters are ever sent.
// * The WebSocket implementation is the `WebSocket` option, else the global
//   one (browsers, Node 22+), else the `ws` package, imported on first use
//   (Node 18 and 20); none of them is a dependency of this module.
// * A close with an application code (4000–4999, e.g. 4000 from
//   `POST /api/disconnect`) is final: the client closes instead of
//   reconnecting.
//
// Every server frame documented in docs/PROTOCOL.md is fed through this module
// by clients/js/test/protocol.test.mjs, which also compares the frames it
// sends with the documented client frames.
//
// Usage:
//   import { connect } from "wsring-client"; // in the dashboard: "/wsring-client.js"
//   const c = await connect({ url: "ws://127.0.0.1:7000/ws", user: "alice" });
//   c.on("message", (m) => console.log(m.from, m.data));
//   await c.send("bob", { text: "hi" });

/** The user-id and room-name rule of the protocol (docs/PROTOCOL.md). */
export const ID_RULE = /^[A-Za-z0-9_.:@-]{1,128}$/;

/** Close code of a `moved` close: the user now belongs to another node. */
export const CLOSE_MOVED = 1012;
/** Close code of a session whose token (or connect-proxy identity) expired. */
export const CLOSE_EXPIRED = 3000;

/** Whether a close code is an application's own (4000–4999): the server
 * ended the session on purpose, so the client does not reconnect. */
export function isAppClose(code) {
  return code >= 4000 && code <= 4999;
}

/** Connection states, in the order a client normally goes through them. */
export const STATES = Object.freeze(["connecting", "connected", "reconnecting", "closed"]);

const DEFAULTS = Object.freeze({
  backoffBase: 100, // ms, first backoff step after a lost connection
  backoffCap: 5000, // ms, backoff ceiling
  movedJitter: 100, // ms, extra random delay on top of `retry_after_ms`
  timeout: 30000, // ms, connect attempt limit and request acknowledgement limit
  retryUnavailable: 250, // ms, resend delay after an `unavailable` error
  direct: false, // locate the user's node through the gateway and connect to it, skipping the tunnel
});

/** An error from the server (`error` frame) or from the client itself. */
export class WsringError extends Error {
  /**
   * @param {string} code  protocol error code (`bad_request`, …) or a client
   *   code: `timeout` (no ack or no connection in time), `closed` (the client
   *   was closed), `bad_request` (the URL was refused by the WebSocket
   *   constructor) or `no_websocket` (no WebSocket implementation found).
   * @param {string} message
   */
  constructor(code, message) {
    super(message);
    this.name = "WsringError";
    this.code = code;
  }
}

/** Uniform random integer in [0, max]: "full jitter". */
function jitter(max) {
  return Math.floor(Math.random() * (Math.max(0, max) + 1));
}

/** 8 random hex digits: a client instance's prefix for its request ids. */
function randomHex8() {
  const a = new Uint32Array(1);
  // Node 18 has no global `crypto` (it needs a flag there); uniqueness among
  // one user's clients is all the prefix needs, which Math.random gives too.
  if (globalThis.crypto?.getRandomValues) globalThis.crypto.getRandomValues(a);
  else a[0] = Math.floor(Math.random() * 2 ** 32);
  return a[0].toString(16).padStart(8, "0");
}

/** The `ws` package's WebSocket class, imported once for every client. */
let wsPackage = null;

/**
 * Imports the `ws` package (Node 18 and 20, which have no global WebSocket).
 * The specifier is a variable and the comments tell bundlers to leave the
 * import alone: browsers never reach this, and `ws` must not become a
 * dependency of a browser bundle.
 */
function importWsPackage() {
  const specifier = "ws";
  wsPackage ??= import(/* webpackIgnore: true */ /* @vite-ignore */ specifier).then(
    (m) => {
      const ctor = m.WebSocket ?? m.default;
      if (typeof ctor !== "function") throw new Error("the `ws` package exports no WebSocket class");
      return ctor;
    },
    (e) => {
      wsPackage = null; // installed later? try again for the next client
      throw e;
    },
  );
  return wsPackage;
}

/** Whether `v` is a Promise or another thenable. */
function isThenable(v) {
  return v !== null && (typeof v === "object" || typeof v === "function") && typeof v.then === "function";
}

/**
 * Closes `ws` without console noise: closing a socket that is still
 * connecting makes browsers log "closed before the connection is
 * established", so such a socket is closed as soon as it opens instead.
 */
function closeSocket(ws, code, reason) {
  ws.onmessage = ws.onclose = null;
  ws.onerror = () => {};
  try {
    if (ws.readyState === 0) ws.onopen = () => ws.close(code, reason);
    else if (ws.readyState === 1) ws.close(code, reason);
  } catch {
    /* already closing */
  }
}

/**
 * The locate request for a gateway's WebSocket URL and a connect query:
 * `ws://h:p/ws?x` → `http://h:p/ws/locate?x&<query>`; null for a URL that
 * is not ws(s)/http(s).
 */
function locateUrl(wsUrl, query) {
  const m = /^(wss?|https?):\/\/([^?#]*)(?:\?([^#]*))?/.exec(wsUrl);
  if (!m) return null;
  const scheme = m[1] === "wss" || m[1] === "https" ? "https" : "http";
  const path = m[2].replace(/\/+$/, "");
  const given = m[3] ? `${m[3]}&` : "";
  return `${scheme}://${path}/locate?${given}${query.toString()}`;
}

function idKey(id) {
  return typeof id === "string" ? id : JSON.stringify(id);
}

/**
 * One logical connection of one user, kept alive across reconnects.
 *
 * Events (subscribe with `on(name, fn)`; `on` returns an unsubscribe function;
 * a listener that throws does not disturb the client: its exception is
 * rethrown from a microtask, so it reaches the console or `uncaughtException`):
 * * `state` `{state, previous}` — connecting → connected → reconnecting → … → closed
 * * `connected` `{node, session, epoch}` — a `welcome` arrived
 * * `message` `{from, to, room, data, seq, epoch}` — a delivered message
 * * `moved` `{epoch, retry_after_ms}` — the server is moving this user (1012 follows)
 * * `disconnected` `{code, reason}` — the socket closed (code 1006: dropped)
 * * `reconnecting` `{delay, attempt, moved}` — the next attempt is scheduled
 * * `resumed` `{stream, complete, seq}` — durable replay finished; `complete:false`
 *   means history no longer covered the gap and the app should reload its state
 * * `error` `{code, message}` — an `error` frame not tied to a pending request,
 *   or the client's own fatal error (`no_websocket`, `bad_request`) as it closes
 * * `presence` `{room, user, event}` — a user entered (`join`) or left (`leave`)
 *   a room joined with `{presence: true}`
 * * `joined` `{room}` / `left` `{room}` — the server put this user in a room,
 *   or took it out (server-side rooms; the server re-joins them on connect)
 */
export class WsringClient {
  /**
   * @param {object} options
   * @param {string} options.url   the gateway's WebSocket URL, e.g. `ws://host:7000/ws`
   * @param {string} options.user  the user id (with a token: its `sub`)
   * @param {string|(() => string|Promise<string>)} [options.token] connect
   *   token (JWT) for a server with authentication on; a function is called
   *   before every (re)connect, so a fresh token can be supplied (a rejected
   *   promise counts as a failed attempt and is retried with backoff)
   * @param {number} [options.backoffBase=100]
   * @param {number} [options.backoffCap=5000]
   * @param {number} [options.movedJitter=100]
   * @param {number} [options.timeout=30000]
   * @param {number} [options.retryUnavailable=250]
   * @param {boolean} [options.direct=false] before every (re)connect, ask the
   *   gateway where this user lives (`GET /ws/locate`, same credentials) and
   *   connect to that node instead of through the gateway's tunnel; the
   *   nodes' advertised URLs must be reachable from the client
   * @param {typeof WebSocket} [options.WebSocket] constructor to use; default:
   *   the global one, else the `ws` package
   * @param {boolean} [options.autoStart=true] start connecting immediately
   */
  constructor(options) {
    const o = { ...DEFAULTS, ...options };
    if (typeof o.url !== "string" || !o.url) throw new TypeError("wsring: `url` is required");
    if (!ID_RULE.test(o.user ?? "") || o.user.startsWith("@")) {
      // Browsers cannot read the body of a refused upgrade, so an invalid id
      // would look like an endless transient failure: refuse it here. A
      // leading `@` is reserved for server addresses such as `@server`.
      throw new TypeError(`wsring: invalid user id ${JSON.stringify(o.user)}`);
    }
    this.options = o;
    this.user = o.user;
    this.url = o.url;
    /** @type {"connecting"|"connected"|"reconnecting"|"closed"} */
    this.state = "connecting";
    /** The node holding the current session (kept while reconnecting: the last one). */
    this.node = null;
    this.session = null;
    /** Ring epoch from the last `welcome`. */
    this.epoch = null;
    this.stats = { received: 0, duplicates: 0, gaps: 0, incomplete: 0, resent: 0, reconnects: 0, moves: 0 };

    /** The WebSocket class; `null` until the `ws` package is imported. */
    this._WebSocket = o.WebSocket ?? globalThis.WebSocket ?? null;
    this._listeners = new Map();
    this._ws = null;
    /** An attempt is waiting for the WebSocket class or the token. */
    this._preparing = false;
    /** Why the client closed itself, if it did (see `_fail`). */
    this._failure = null;
    this._welcomed = false;
    this._attempt = 0;
    this._movedDelay = null; // ms from the last `moved` frame of this session
    this._movedTo = null; // direct mode: the new owner's URL a `moved` frame named (used once)
    this._everConnected = false;
    this._reconnectTimer = null;
    this._connectTimer = null;
    this._tickTimer = null;
    this._instance = randomHex8();
    this._nextId = 0;
    /** stream key (`user` | `room:<r>`) → {epoch, seq} */
    this._cursors = new Map();
    /** Rooms the application joined → whether with presence events;
     * re-joined after every reconnect. */
    this._rooms = new Map();
    /** n → {n, frame, type, room, resolve, reject, deadline, retryAt}; Map keeps insertion order. */
    this._pending = new Map();
    /** Ids of internal room re-joins, whose acks are not the application's. */
    this._internal = new Set();

    if (o.autoStart !== false) this._open();
  }

  // ---------------------------------------------------------------- events

  /** Subscribes `fn` to `type`; returns a function that unsubscribes it. */
  on(type, fn) {
    let set = this._listeners.get(type);
    if (!set) this._listeners.set(type, (set = new Set()));
    set.add(fn);
    return () => this.off(type, fn);
  }

  /** Unsubscribes `fn` from `type`. */
  off(type, fn) {
    this._listeners.get(type)?.delete(fn);
  }

  _emit(type, detail) {
    const set = this._listeners.get(type);
    if (!set) return;
    for (const fn of [...set]) {
      try {
        fn(detail, this);
      } catch (e) {
        // A faulty listener must not break the connection logic; surface it
        // asynchronously so it still reaches the console / pageerror.
        queueMicrotask(() => {
          throw e;
        });
      }
    }
  }

  _setState(state) {
    if (this.state === state) return;
    const previous = this.state;
    this.state = state;
    this._emit("state", { state, previous });
  }

  // -------------------------------------------------------------- requests

  /**
   * Sends a direct message to every session of user `to`. Resolves on `ack`
   * with a receipt: `{}`, or `{delivered: false}` when the server said no
   * live node received the message (without `--durable`, the user's owner
   * node just died: the message is lost; resending it soon reaches the new
   * owner).
   */
  send(to, data) {
    return this._request({ type: "send", to, data });
  }

  /**
   * Joins `room` (re-joined automatically after reconnects). Resolves on `ack`.
   * With `{presence: true}` the client also gets the room's `presence` events
   * (resolving once they are live); a later plain join turns them off.
   */
  join(room, { presence = false } = {}) {
    return this._request({ type: "join", room }, presence ? { presence: true } : null);
  }

  /** Leaves `room`. Resolves on `ack`. */
  leave(room) {
    return this._request({ type: "leave", room });
  }

  /** Publishes to `room` (membership not required). Resolves on `ack`. */
  publish(room, data) {
    return this._request({ type: "publish", room, data });
  }

  /** Rooms the application has joined (and not left). */
  get rooms() {
    return [...this._rooms.keys()];
  }

  /** Requests not yet acknowledged. */
  get pendingCount() {
    return this._pending.size;
  }

  _request(frame, after = null) {
    if (this.state === "closed") return Promise.reject(new WsringError("closed", "client is closed"));
    const n = this._nextId++;
    frame.id = `${this._instance}-${n}`;
    // Fields the protocol orders after the id.
    Object.assign(frame, after);
    if (frame.type === "join") {
      this._rooms.set(frame.room, frame.presence === true);
    } else if (frame.type === "leave") {
      this._rooms.delete(frame.room);
      this._cursors.delete(`room:${frame.room}`);
    }
    return new Promise((resolve, reject) => {
      const p = {
        frame: JSON.stringify(frame),
        type: frame.type,
        room: frame.room,
        resolve,
        reject,
        deadline: Date.now() + this.options.timeout,
        retryAt: null,
      };
      this._pending.set(n, p);
      // Sent now if a session is up; otherwise resent on the next welcome.
      if (this._welcomed) this._sendRaw(p.frame);
      this._scheduleTick();
    });
  }

  _pendingNumber(id) {
    const key = idKey(id);
    const prefix = `${this._instance}-`;
    if (!key.startsWith(prefix)) return null;
    const n = Number(key.slice(prefix.length));
    return Number.isInteger(n) && this._pending.has(n) ? n : null;
  }

  /** One timer per client, armed only while requests are pending, for
   * timeouts and `unavailable` retries (no idle timers for 300 clients). */
  _scheduleTick() {
    if (this._tickTimer !== null || this._pending.size === 0) return;
    this._tickTimer = setTimeout(() => {
      this._tickTimer = null;
      this._tick();
    }, 200);
  }

  _tick() {
    const now = Date.now();
    for (const [n, p] of this._pending) {
      if (p.deadline <= now) {
        this._pending.delete(n);
        p.reject(new WsringError("timeout", `no acknowledgement within ${this.options.timeout} ms`));
      } else if (p.retryAt !== null && p.retryAt <= now && this._welcomed) {
        p.retryAt = null;
        this.stats.resent++;
        this._sendRaw(p.frame);
      }
    }
    this._scheduleTick();
  }

  // ------------------------------------------------------------ connection

  /**
   * The connect URL at `base` (the gateway's URL, or the node's from a
   * locate) for `token` (or `user`), with `resume`/`epoch` once the user
   * stream is known.
   */
  _connectUrl(token, base = this.url) {
    // The token names the user; `user` is sent only without one.
    const q = new URLSearchParams(token ? { token } : { user: this.user });
    const c = this._cursors.get("user");
    if (c) {
      q.set("resume", String(c.seq));
      q.set("epoch", c.epoch);
    }
    return base + (base.includes("?") ? "&" : "?") + q.toString();
  }

  /**
   * Asks the gateway where this user connects (`GET /ws/locate`):
   * `{base}` (the node's URL), `{later}` (try again with backoff) or
   * `{fatal}` (refused: retrying cannot help).
   */
  async _locate(token) {
    const url = locateUrl(this.url, new URLSearchParams(token ? { token } : { user: this.user }));
    if (!url) return { fatal: new WsringError("bad_request", `cannot derive a locate URL from ${this.url}`) };
    if (typeof globalThis.fetch !== "function") {
      return { fatal: new WsringError("bad_request", "`direct` needs `fetch` (Node 18+ or a browser)") };
    }
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), this.options.timeout);
    try {
      // Cookies go along, as on a WebSocket connect (the application's
      // connect check may read them).
      const r = await fetch(url, { credentials: "include", signal: ctl.signal, cache: "no-store" });
      const body = await r.json().catch(() => null);
      if (r.ok && typeof body?.url === "string") return { base: body.url };
      if (r.status >= 400 && r.status < 500 && r.status !== 421 && r.status !== 429) {
        return {
          fatal: new WsringError(body?.error?.code ?? "refused", body?.error?.message ?? `locate refused with HTTP ${r.status}`),
        };
      }
      return { later: `locate answered HTTP ${r.status}` };
    } catch (e) {
      return { later: `locate failed: ${e?.message ?? e}` };
    } finally {
      clearTimeout(timer);
    }
  }

  /** Starts connecting (only needed with `autoStart: false`). */
  start() {
    if (this._ws || this._preparing || this._reconnectTimer !== null || this.state === "closed") return;
    this._open();
  }

  /**
   * One connection attempt. Synchronous when the WebSocket class is known
   * and the token is not a promise (so a socket exists when the constructor
   * returns); otherwise it waits for them first.
   */
  _open() {
    this._welcomed = false;
    this._movedDelay = null;
    let token;
    try {
      token = typeof this.options.token === "function" ? this.options.token() : this.options.token;
    } catch (e) {
      token = Promise.reject(e);
    }
    if (this._WebSocket && !isThenable(token) && !this.options.direct) {
      this._dial(token);
      return;
    }
    this._preparing = true;
    this._prepare(token).then(async (r) => {
      if (this.options.direct && !r.fatal && !r.tokenError && this.state !== "closed") {
        // After a `moved` that named the new owner, connect there without
        // a locate; if that fails, the next attempt locates again.
        const to = this._movedTo;
        this._movedTo = null;
        const where = to ? { base: to } : await this._locate(r.token);
        if (where.fatal) r = { fatal: where.fatal };
        else if (where.later) r = { later: where.later };
        else r = { ...r, base: where.base };
      }
      this._preparing = false;
      if (this.state === "closed") return;
      if (r.fatal) this._fail(r.fatal);
      // The token, or the node's address, could not be had: a failed
      // attempt, retried with backoff.
      else if (r.tokenError) this._onClose(1006, `token: ${r.tokenError?.message ?? r.tokenError}`);
      else if (r.later) this._onClose(1006, r.later);
      else this._dial(r.token, r.base);
    });
  }

  /**
   * Waits for the WebSocket class (importing `ws` if needed) and the token:
   * `{token}`, `{tokenError}` or `{fatal}` (no WebSocket implementation).
   */
  async _prepare(token) {
    if (!this._WebSocket) {
      try {
        this._WebSocket = await importWsPackage();
      } catch (e) {
        const why = e?.message ?? e;
        return {
          fatal: new WsringError(
            "no_websocket",
            `no WebSocket implementation: this runtime has no global WebSocket and the \`ws\` package could not be imported (${why}); install \`ws\` or pass the \`WebSocket\` option`,
          ),
        };
      }
    }
    try {
      return { token: await token };
    } catch (e) {
      return { tokenError: e ?? new Error("token promise rejected") };
    }
  }

  /** Opens the socket of one attempt, at `base` (default: the gateway). */
  _dial(token, base) {
    let ws;
    try {
      ws = new this._WebSocket(this._connectUrl(token, base));
    } catch (e) {
      // A malformed URL is the caller's bug; retrying would not help.
      this._fail(new WsringError("bad_request", String(e?.message ?? e)));
      return;
    }
    this._ws = ws;
    // A connect (or its welcome) that hangs is abandoned and retried.
    this._connectTimer = setTimeout(() => {
      this._connectTimer = null;
      if (this._ws === ws && !this._welcomed) this._drop(ws, "connect timeout");
    }, this.options.timeout);
    ws.onmessage = (ev) => {
      if (this._ws === ws) this._onText(ev.data);
    };
    // Where the runtime hides a refused upgrade's HTTP answer (browsers,
    // Node's built-in WebSocket) it reads as a bare 1006, or as an `error`
    // alone (Node 20's built-in never follows it with `close`). The
    // gateway's `/ws/locate` makes the same admission decision with a
    // readable answer: ask it before retrying, so a bad token fails
    // connect() with the server's reason, not a timeout. The `ws` package
    // shows the answer itself (below).
    const failedBeforeWelcome = (code, reason) => {
      if (this._ws !== ws) return;
      if (this._welcomed || ws.on || this.options.direct) {
        this._onClose(code, reason);
        return;
      }
      this._ws = null;
      clearTimeout(this._connectTimer);
      this._connectTimer = null;
      closeSocket(ws, 1000, "connect failed");
      this._preparing = true;
      this._locate(token).then((r) => {
        this._preparing = false;
        if (this.state === "closed") return;
        if (r.fatal && r.fatal.code !== "bad_request" && r.fatal.code !== "not_found") this._fail(r.fatal);
        else this._onClose(code, reason);
      });
    };
    ws.onclose = (ev) => {
      if (ev.code === 1006 && !this._welcomed) failedBeforeWelcome(ev.code, ev.reason);
      else if (this._ws === ws) this._onClose(ev.code, ev.reason);
    };
    // After a welcome `error` is always followed by `close`; handling it
    // there is enough. A listener is still set so that the runtime does not
    // report it as unhandled (the `ws` package throws an `error` nobody
    // listens to).
    ws.onerror = () => {
      if (!this._welcomed && !ws.on) failedBeforeWelcome(1006, "connect failed");
    };
    if (typeof ws.on === "function") {
      // The `ws` package shows a refused upgrade's status and JSON body.
      ws.on("unexpected-response", (_req, res) => this._onRefusedUpgrade(ws, res));
    }
  }

  /**
   * A refused upgrade seen through the `ws` package: a 4xx other than the
   * transient 421 and 429 is final and fails the client at once with the
   * server's `code` and `message` (e.g. `unauthorized: token expired`);
   * anything else drops the socket and is retried with backoff.
   */
  _onRefusedUpgrade(ws, res) {
    const status = res.statusCode;
    let text = "";
    res.setEncoding?.("utf8");
    res.on("data", (chunk) => {
      if (text.length < 65536) text += chunk;
    });
    let finished = false;
    const done = () => {
      if (finished) return;
      finished = true;
      ws.terminate();
      if (this._ws !== ws || !(status >= 400 && status < 500 && status !== 421 && status !== 429)) return;
      let body = null;
      try {
        body = JSON.parse(text);
      } catch {
        // Not the server's JSON error: the status alone says it.
      }
      this._ws = null;
      clearTimeout(this._connectTimer);
      this._connectTimer = null;
      this._fail(new WsringError(body?.error?.code ?? "refused", body?.error?.message ?? `connect refused with HTTP ${status}`));
    };
    res.once("end", done);
    res.once("error", done);
  }

  /** Abandons socket `ws` as if it had dropped (1006), then reconnects. */
  _drop(ws, reason) {
    closeSocket(ws, 1000, reason);
    if (this._ws === ws) this._onClose(1006, reason);
  }

  _sendRaw(text) {
    const ws = this._ws;
    if (!ws || ws.readyState !== 1) return false;
    try {
      ws.send(text);
      return true;
    } catch {
      return false;
    }
  }

  _onWelcome(f) {
    this._welcomed = true;
    clearTimeout(this._connectTimer);
    this._connectTimer = null;
    this._attempt = 0;
    this.node = f.node;
    this.session = f.session;
    this.epoch = f.epoch;
    if (typeof f.seq === "number" && typeof f.stream_epoch === "string" && !this._cursors.has("user")) {
      // First connect (or after a history loss): live from the head.
      // Otherwise the server replays from our cursor.
      this._cursors.set("user", { epoch: f.stream_epoch, seq: f.seq });
    }
    if (this._everConnected) this.stats.reconnects++;
    this._everConnected = true;
    this._setState("connected");
    this._emit("connected", { node: f.node, session: f.session, epoch: f.epoch });
    if (this._ws === null || !this._welcomed) return; // a listener closed us
    // Re-join rooms (with their resume points) before resending anything, so
    // resent publishes and sends land after the room is live again.
    for (const [room, presence] of this._rooms) {
      if ([...this._pending.values()].some((p) => p.type === "join" && p.room === room)) continue;
      const id = `${this._instance}-r${this._nextId++}`;
      const frame = { type: "join", room, id };
      const c = this._cursors.get(`room:${room}`);
      if (c) {
        frame.resume = c.seq;
        frame.epoch = c.epoch;
      }
      if (presence) frame.presence = true;
      this._internal.add(id);
      this._sendRaw(JSON.stringify(frame));
    }
    if (this._pending.size > 0) {
      this.stats.resent += this._pending.size;
      for (const p of this._pending.values()) {
        p.retryAt = null;
        this._sendRaw(p.frame);
      }
    }
  }

  _onText(text) {
    let f;
    try {
      f = JSON.parse(text);
    } catch {
      return; // not JSON: ignore, as the protocol asks for unknown input
    }
    if (!this._welcomed) {
      // The first frame of every session is `welcome`; anything else means
      // the session is unusable.
      if (f?.type === "welcome") this._onWelcome(f);
      else this._drop(this._ws, "no welcome");
      return;
    }
    switch (f.type) {
      case "message":
        return this._onMessage(f);
      case "ack": {
        if (this._internal.delete(idKey(f.id))) return;
        const n = this._pendingNumber(f.id);
        if (n !== null) {
          const p = this._pending.get(n);
          this._pending.delete(n);
          // Only `send` resolves with what its ack said; the rest with nothing.
          p.resolve(p.type === "send" ? receipt(f) : undefined);
        }
        return;
      }
      case "error":
        return this._onError(f);
      case "resumed": {
        if (typeof f.seq === "number" && typeof f.epoch === "string" && f.epoch !== "") {
          // The server's position is authoritative after a resume.
          this._cursors.set(f.stream, { epoch: f.epoch, seq: f.seq });
        }
        if (!f.complete) this.stats.incomplete++;
        this._emit("resumed", { stream: f.stream, complete: !!f.complete, seq: f.seq ?? 0 });
        return;
      }
      case "moved": {
        const ms = Number(f.retry_after_ms) || 0;
        this._movedDelay = ms;
        if (this.options.direct && typeof f.url === "string") this._movedTo = f.url;
        this.stats.moves++;
        this._emit("moved", { epoch: f.epoch, retry_after_ms: ms });
        return;
      }
      case "presence":
        this._emit("presence", { room: f.room, user: f.user, event: f.event });
        return;
      case "joined":
        // The server re-joins it on every connect: nothing to track here.
        this._emit("joined", { room: f.room });
        return;
      case "left":
        // The server decided: a room the app joined itself is dropped too.
        this._rooms.delete(f.room);
        this._cursors.delete(`room:${f.room}`);
        this._emit("left", { room: f.room });
        return;
      default:
        return; // welcome again, pong, or a frame type added later
    }
  }

  _onMessage(f) {
    const key = f.room != null ? `room:${f.room}` : "user";
    if (typeof f.seq === "number" && typeof f.epoch === "string") {
      // Broadcasts carry no seq; only stream messages are tracked.
      const c = this._cursors.get(key);
      if (c && c.epoch === f.epoch) {
        if (f.seq <= c.seq) {
          this.stats.duplicates++;
          return;
        }
        if (f.seq > c.seq + 1) this.stats.gaps++;
      }
      if (f.to != null || f.room != null) this._cursors.set(key, { epoch: f.epoch, seq: f.seq });
    }
    this.stats.received++;
    this._emit("message", {
      from: f.from ?? null,
      to: f.to ?? null,
      room: f.room ?? null,
      data: f.data,
      seq: f.seq ?? null,
      epoch: f.epoch ?? null,
    });
  }

  _onError(f) {
    const n = f.id != null ? this._pendingNumber(f.id) : null;
    if (n !== null) {
      const p = this._pending.get(n);
      if (f.code === "unavailable") {
        // Transient: nothing was acknowledged; resend soon with the same id.
        p.retryAt = Date.now() + this.options.retryUnavailable;
        this._scheduleTick();
      } else {
        this._pending.delete(n);
        if (p.type === "join" && ![...this._pending.values()].some((q) => q.type === "join" && q.room === p.room)) {
          // A refused join (forbidden, invalid name, too many rooms) is not a
          // room to re-join after every reconnect.
          this._rooms.delete(p.room);
          this._cursors.delete(`room:${p.room}`);
        }
        p.reject(new WsringError(f.code, f.message));
      }
      return;
    }
    if (f.id != null && this._internal.delete(idKey(f.id))) {
      // A failed room re-join: the room stays in the set and is re-joined on
      // the next reconnect; the app hears about it below.
    }
    this._emit("error", { code: f.code, message: f.message });
  }

  _onClose(code, reason) {
    clearTimeout(this._connectTimer);
    this._connectTimer = null;
    const wasWelcomed = this._welcomed;
    this._ws = null;
    this._welcomed = false;
    this._internal.clear();
    if (this.state === "closed") return;
    if (wasWelcomed) this._emit("disconnected", { code, reason: reason || "" });
    if (isAppClose(code)) {
      // The application ended this user's sessions: do not come back.
      this._setState("closed");
      this._rejectAll(new WsringError("closed", `closed by the server (${code} ${reason || ""})`.trim()));
      return;
    }
    let delay;
    const moved = code === CLOSE_MOVED;
    if (moved) {
      delay = (this._movedDelay ?? 0) + jitter(this.options.movedJitter);
    } else if (code === CLOSE_EXPIRED && wasWelcomed && typeof this.options.token === "function") {
      // The session's token expired: the token function supplies a fresh
      // one, so reconnect (and resume) at once.
      delay = 0;
    } else {
      // A refused upgrade (503 while the ring converges, 421…) also lands
      // here as 1006: browsers hide the HTTP status and its retry hint, so
      // the backoff stands in for `retry_after_ms`.
      const exp = Math.min(this.options.backoffCap, this.options.backoffBase * 2 ** Math.min(this._attempt, 16));
      this._attempt++;
      delay = jitter(exp);
    }
    this._movedDelay = null;
    this._setState(this._everConnected ? "reconnecting" : "connecting");
    this._emit("reconnecting", { delay, attempt: this._attempt, moved });
    this._reconnectTimer = setTimeout(() => {
      this._reconnectTimer = null;
      if (this.state !== "closed") this._open();
    }, delay);
  }

  /** Closes the client for good because of `err` (retrying cannot help). */
  _fail(err) {
    clearTimeout(this._reconnectTimer);
    clearTimeout(this._tickTimer);
    this._reconnectTimer = this._tickTimer = null;
    this._failure = err;
    this._setState("closed");
    this._rejectAll(err);
    this._emit("error", { code: err.code, message: err.message });
  }

  _rejectAll(err) {
    const pending = [...this._pending.values()];
    this._pending.clear();
    for (const p of pending) p.reject(err);
  }

  /** Closes the connection for good; pending requests reject with `closed`. */
  close() {
    if (this.state === "closed") return;
    clearTimeout(this._reconnectTimer);
    clearTimeout(this._connectTimer);
    clearTimeout(this._tickTimer);
    this._reconnectTimer = this._connectTimer = this._tickTimer = null;
    const ws = this._ws;
    this._ws = null;
    this._welcomed = false;
    this._setState("closed");
    if (ws) closeSocket(ws, 1000, "client closed");
    this._rejectAll(new WsringError("closed", "client is closed"));
  }
}

/**
 * What an `ack` of a `send` tells the application: `delivered: false` only
 * when the server said so (any other value is not part of the protocol).
 */
function receipt(ack) {
  return ack?.delivered === false ? { delivered: false } : {};
}

/**
 * Connects `user` and resolves once the first `welcome` arrives (retrying
 * with backoff meanwhile); rejects after `timeout` ms (default 30 s), or at
 * once when the client cannot work at all (`no_websocket`, `bad_request`,
 * or a `TypeError` for a missing `url` or an invalid `user`).
 * @param {ConstructorParameters<typeof WsringClient>[0]} options
 * @returns {Promise<WsringClient>}
 */
export function connect(options) {
  let client;
  try {
    client = new WsringClient({ ...options, autoStart: false });
  } catch (e) {
    return Promise.reject(e);
  }
  return new Promise((resolve, reject) => {
    const offs = [];
    const settle = (err) => {
      clearTimeout(timer);
      for (const off of offs) off();
      if (err) reject(err);
      else resolve(client);
    };
    const timer = setTimeout(() => {
      settle(new WsringError("timeout", `could not connect within ${client.options.timeout} ms`));
      client.close();
    }, client.options.timeout);
    offs.push(client.on("connected", () => settle(null)));
    offs.push(
      client.on("state", ({ state }) => {
        if (state === "closed") settle(client._failure ?? new WsringError("closed", "client is closed"));
      }),
    );
    client.start();
  });
}
