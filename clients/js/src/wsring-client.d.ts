// Type declarations of wsring-client.js, written by hand. They describe that
// module exactly: test/surface.test.mjs compares every export, class member,
// option, event and event field declared here with the code, and
// test/types/usage.ts (compiled by `npm run test:types`) uses all of it.

/** Any JSON value: what `data` of a received message can be. */
export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

/** The user-id and room-name rule of the protocol: 1–128 characters from `[A-Za-z0-9_.:@-]` (a user id
 * may not start with `@` besides: that prefix is reserved for server addresses such as `@server`). */
export declare const ID_RULE: RegExp;

/** Close code of a `moved` close: the user now belongs to another node. */
export declare const CLOSE_MOVED: 1012;

/** Close code of a session whose token (or connect-proxy identity) expired:
 * with a token function the client reconnects at once with a fresh token. */
export declare const CLOSE_EXPIRED: 3000;

/** Whether a close code is an application's own (4000–4999, e.g. 4000 from
 * `POST /api/disconnect`): the server ended the session on purpose, so the
 * client closes instead of reconnecting. */
export declare function isAppClose(code: number): boolean;

/** A client's connection state. */
export type ConnectionState = "connecting" | "connected" | "reconnecting" | "closed";

/** Connection states, in the order a client normally goes through them. */
export declare const STATES: readonly ["connecting", "connected", "reconnecting", "closed"];

/**
 * Codes a `WsringError` carries: the protocol's `error` frame codes, and the
 * codes of a refused connect (`unauthorized`, `forbidden`), and the
 * client's own `timeout`, `closed` and `no_websocket`. A server may add codes,
 * so any other string can occur too.
 */
export type ErrorCode =
  | "bad_request"
  | "limit_exceeded"
  | "forbidden"
  | "rate_limited"
  | "unavailable"
  | "conflict"
  | "storage_full"
  | "quota_exceeded"
  | "rejected"
  | "unauthorized"
  | "timeout"
  | "closed"
  | "no_websocket"
  | (string & {});

/** An error from the server (`error` frame) or from the client itself. */
export declare class WsringError extends Error {
  constructor(code: ErrorCode, message: string);
  readonly name: "WsringError";
  /** `bad_request`, `forbidden`, … from the server; `timeout`, `closed`, `no_websocket` or `bad_request` (a URL the WebSocket constructor refused) from the client. */
  readonly code: ErrorCode;
}

/** What the client needs of a WebSocket: the browser's, Node 22's global one and the `ws` package's all fit. */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((event: any) => void) | null;
  onmessage: ((event: any) => void) | null;
  onclose: ((event: any) => void) | null;
  onerror: ((event: any) => void) | null;
}

/** A WebSocket class, e.g. `WebSocket` from the `ws` package. */
export type WebSocketConstructor = new (url: string) => WebSocketLike;

/** Options of `new WsringClient(…)` and `connect(…)`. Times are in milliseconds. */
export interface WsringClientOptions {
  /** The gateway's WebSocket URL, e.g. `ws://127.0.0.1:7000/ws`. */
  url: string;
  /** The user id (with a token, the server takes it from the token's `sub`: keep both the same). */
  user: string;
  /**
   * Connect token (a JWT) for a server with authentication on, sent as
   * `?token=`. A function is called before every (re)connect; it may return
   * a promise, and a rejected one counts as a failed attempt (retried with
   * backoff). The server closes a session when its token expires (close
   * 3000 `expired`); with a function the client then reconnects at once
   * with the fresh token it returns and, in durable mode, resumes.
   */
  token?: string | (() => string | Promise<string>);
  /** First backoff step after a lost connection. Default 100. */
  backoffBase?: number;
  /** Backoff ceiling. Default 5000. */
  backoffCap?: number;
  /** Random extra delay on top of a `moved` frame's `retry_after_ms`. Default 100. */
  movedJitter?: number;
  /** Limit for a connect attempt, for `connect()`, and for a request's acknowledgement. Default 30000. */
  timeout?: number;
  /** Delay before resending a request the server answered with `unavailable`. Default 250. */
  retryUnavailable?: number;
  /**
   * Connect straight to the user's node instead of through the gateway's
   * tunnel: before every (re)connect the client asks the gateway where to go
   * (`GET /ws/locate`, with the same credentials and cookies). The nodes'
   * advertised URLs must be reachable from the client. Default false.
   */
  direct?: boolean;
  /** The WebSocket class. Default: the global `WebSocket`, else the `ws` package (imported on first use). */
  WebSocket?: WebSocketConstructor;
  /** Start connecting in the constructor. Default true. */
  autoStart?: boolean;
}

/** Options of `connect(…)`: it starts the client itself. */
export type ConnectOptions = Omit<WsringClientOptions, "autoStart">;

/** The options a client runs with: what was given, defaults filled in. */
export type ResolvedOptions = WsringClientOptions &
  Required<Pick<WsringClientOptions, "backoffBase" | "backoffCap" | "movedJitter" | "timeout" | "retryUnavailable" | "direct">>;

/**
 * What the server's `ack` of a `send` said. Without `--durable`, an ack
 * means the cluster handed the message on; `delivered: false` means the
 * backend saw no live node receive it (the user's owner node just died and
 * the cluster does not know yet), so it is lost. Absent otherwise, also when
 * the backend cannot tell (NATS, RabbitMQ, Redis Cluster).
 */
export interface WsringReceipt {
  delivered?: false;
}

/** A delivered message. */
export interface WsringMessage {
  /** The sending user; `null` for messages sent through the HTTP API. */
  from: string | null;
  /** The recipient of a direct message, else `null`. */
  to: string | null;
  /** The room of a room message, else `null`. */
  room: string | null;
  /** The payload, as sent. */
  data: JsonValue;
  /** Durable mode: the position in its stream; else `null`. */
  seq: number | null;
  /** Durable mode: the stream's epoch; else `null`. */
  epoch: string | null;
}

/** Each event's name and what its listeners receive. */
export interface WsringEvents {
  /** The connection state changed. */
  state: { state: ConnectionState; previous: ConnectionState };
  /** A session started (a `welcome` arrived): the first connect or a reconnect. */
  connected: { node: string; session: string; epoch: number };
  /** A message was delivered (duplicates are dropped before this). */
  message: WsringMessage;
  /** The server is moving this user to another node; a close 1012 follows and the client reconnects. */
  moved: { epoch: number; retry_after_ms: number };
  /** The socket of a session closed (`code` 1006: dropped without a close frame). */
  disconnected: { code: number; reason: string };
  /** The next connect attempt is scheduled in `delay` ms. */
  reconnecting: { delay: number; attempt: number; moved: boolean };
  /** A durable stream (`user` or `room:<name>`) finished replaying; `complete: false` means history no longer covered the gap: reload state. */
  resumed: { stream: string; complete: boolean; seq: number };
  /** An `error` frame that answered no pending request, or the client's own fatal error as it closes. */
  error: { code: ErrorCode; message: string };
  /** A user entered (`join`) or left (`leave`) a room this client joined with `{presence: true}`. */
  presence: { room: string; user: string; event: "join" | "leave" };
  /** The server put this user in `room` (server-side rooms are re-joined by the server on connect). */
  joined: { room: string };
  /** The server took this user out of `room`; it is dropped from `rooms` too. */
  left: { room: string };
}

/** A listener of event `K`. */
export type WsringListener<K extends keyof WsringEvents> = (detail: WsringEvents[K], client: WsringClient) => void;

/** Counters of what the client handled. */
export interface ClientStats {
  /** Messages delivered to the application. */
  received: number;
  /** Messages dropped as already delivered (durable mode). */
  duplicates: number;
  /** Messages that skipped positions without a `resumed` notice. */
  gaps: number;
  /** `resumed` notices with `complete: false`. */
  incomplete: number;
  /** Requests resent after a reconnect or an `unavailable` error. */
  resent: number;
  /** Sessions started after the first one. */
  reconnects: number;
  /** `moved` frames received. */
  moves: number;
}

/** One logical connection of one user, kept alive across reconnects. */
export declare class WsringClient {
  /** Throws a `TypeError` for a missing `url` or an invalid `user`. */
  constructor(options: WsringClientOptions);
  /** The options in force, defaults filled in. */
  readonly options: ResolvedOptions;
  /** The user id given in the options. */
  readonly user: string;
  /** The WebSocket URL given in the options. */
  readonly url: string;
  /** The connection state. */
  readonly state: ConnectionState;
  /** The node holding the session; while reconnecting, the last one; `null` before the first. */
  readonly node: string | null;
  /** The current (or last) session id; `null` before the first. */
  readonly session: string | null;
  /** The ring epoch of the last `welcome`; `null` before the first. */
  readonly epoch: number | null;
  /** Counters, updated in place. */
  readonly stats: ClientStats;
  /** Rooms joined (and not left); re-joined after every reconnect. */
  get rooms(): string[];
  /** Requests not acknowledged yet. */
  get pendingCount(): number;
  /** Subscribes `fn` to event `type`; returns a function that unsubscribes it. */
  on<K extends keyof WsringEvents>(type: K, fn: WsringListener<K>): () => void;
  /** Unsubscribes `fn` from event `type`. */
  off<K extends keyof WsringEvents>(type: K, fn: WsringListener<K>): void;
  /** Sends `data` (JSON-serialisable) to every session of user `to`;
   * resolves on the server's `ack` with what it said: `{delivered: false}`
   * when no live node received the message (it is lost), else `{}`. */
  send(to: string, data: unknown): Promise<WsringReceipt>;
  /** Joins `room` (kept across reconnects); resolves on `ack`. With
   * `{presence: true}` the client also gets the room's `presence` events; a
   * later plain join turns them off. */
  join(room: string, options?: { presence?: boolean }): Promise<void>;
  /** Leaves `room`; resolves on `ack`. */
  leave(room: string): Promise<void>;
  /** Publishes `data` to `room` (membership not required); resolves on `ack`. */
  publish(room: string, data: unknown): Promise<void>;
  /** Starts connecting; only needed with `autoStart: false`. */
  start(): void;
  /** Closes for good; pending requests reject with code `closed`. */
  close(): void;
}

/**
 * Creates a client and resolves once its first session is up (retrying
 * with backoff meanwhile); rejects with code `timeout` after
 * `options.timeout`, or at once with `no_websocket` or `bad_request`, or
 * with a `TypeError` for a missing `url` or an invalid `user`.
 */
export declare function connect(options: ConnectOptions): Promise<WsringClient>;
