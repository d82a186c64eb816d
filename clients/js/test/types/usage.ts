// usage.ts — compiled (never run) by `npm run test:types`: every declaration
// of wsring-client.d.ts used the way the README shows, with exact type
// checks on what comes back and `@ts-expect-error` on misuse that the
// declarations must refuse. Imported by package name, through "exports".

import {
  CLOSE_MOVED,
  isAppClose,
  ID_RULE,
  STATES,
  WsringClient,
  WsringError,
  connect,
  type ClientStats,
  type ConnectOptions,
  type ConnectionState,
  type ErrorCode,
  type JsonValue,
  type ResolvedOptions,
  type WebSocketConstructor,
  type WebSocketLike,
  type WsringClientOptions,
  type WsringEvents,
  type WsringListener,
  type WsringMessage,
  type WsringReceipt,
} from "wsring-client";
import { WebSocket as WsWebSocket } from "ws";

/** Compiles only when `A` and `B` are the same type. */
type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
function same<A, B>(_proof: Equal<A, B>): void {}

same<typeof CLOSE_MOVED, 1012>(true);
same<ReturnType<typeof isAppClose>, boolean>(true);
same<typeof STATES, readonly ["connecting", "connected", "reconnecting", "closed"]>(true);
same<(typeof STATES)[number], ConnectionState>(true);
same<typeof ID_RULE, RegExp>(true);

// Every WebSocket the README names fits the option.
const wsClass: WebSocketConstructor = WsWebSocket;
const domClass: WebSocketConstructor = globalThis.WebSocket;
const like: WebSocketLike = new WsWebSocket("ws://127.0.0.1:7000/ws");
void like;

export async function usage(): Promise<void> {
  // connect(): with a user, with a token (string, function, async function).
  const alice: WsringClient = await connect({ url: "ws://127.0.0.1:7000/ws", user: "alice" });
  await connect({ url: "ws://127.0.0.1:7000/ws", user: "bob", token: "eyJ…" });
  await connect({ url: "ws://127.0.0.1:7000/ws", user: "bob", token: () => "eyJ…" });
  await connect({ url: "ws://127.0.0.1:7000/ws", user: "bob", token: async () => "eyJ…", WebSocket: wsClass });
  await connect({ url: "ws://127.0.0.1:7000/ws", user: "bob", WebSocket: domClass, timeout: 5000, backoffBase: 50, backoffCap: 2000, movedJitter: 10, retryUnavailable: 100 });
  // @ts-expect-error url is required
  await connect({ user: "alice" });
  // @ts-expect-error user is required
  await connect({ url: "ws://127.0.0.1:7000/ws" });
  // @ts-expect-error connect() starts the client itself
  await connect({ url: "ws://127.0.0.1:7000/ws", user: "alice", autoStart: false });
  // @ts-expect-error a token is a string or a function returning one
  await connect({ url: "ws://127.0.0.1:7000/ws", user: "alice", token: 42 });

  // The constructor, started later.
  const options: WsringClientOptions = { url: "ws://127.0.0.1:7000/ws", user: "carol", autoStart: false };
  const carol = new WsringClient(options);
  carol.start();
  const connectOptions: ConnectOptions = { url: "ws://127.0.0.1:7000/ws", user: "dave" };
  void connectOptions;

  // `send` resolves with the ack's receipt; the other requests with nothing.
  same<ReturnType<WsringClient["send"]>, Promise<WsringReceipt>>(true);
  const receipt = await alice.send("bob", { text: "hi" });
  if (receipt.delivered === false) console.log("lost: bob's node just died");
  same<ReturnType<WsringClient["publish"]>, Promise<void>>(true);
  await alice.join("lobby");
  await alice.join("lobby", { presence: true });
  await alice.publish("lobby", ["any", "JSON", 1, true, null]);
  await alice.leave("lobby");
  // @ts-expect-error send needs a recipient and data
  await alice.send("bob");

  // State and properties.
  same<typeof alice.state, ConnectionState>(true);
  same<typeof alice.node, string | null>(true);
  same<typeof alice.session, string | null>(true);
  same<typeof alice.epoch, number | null>(true);
  same<typeof alice.rooms, string[]>(true);
  same<typeof alice.pendingCount, number>(true);
  same<typeof alice.stats, ClientStats>(true);
  same<typeof alice.options, ResolvedOptions>(true);
  const timeout: number = alice.options.timeout; // defaulted: never undefined
  void timeout;
  const user: string = alice.user;
  const url: string = alice.url;
  void user, url;
  // @ts-expect-error state is read-only
  alice.state = "closed";

  // Events: each listener gets its event's detail and the client.
  const off = alice.on("message", (m, client) => {
    same<typeof m, WsringMessage>(true);
    same<typeof m.data, JsonValue>(true);
    same<typeof m.seq, number | null>(true);
    same<typeof client, WsringClient>(true);
  });
  same<typeof off, () => void>(true);
  off();
  alice.on("state", ({ state, previous }) => void [state satisfies ConnectionState, previous satisfies ConnectionState]);
  alice.on("connected", ({ node, session, epoch }) => void [node satisfies string, session satisfies string, epoch satisfies number]);
  alice.on("moved", ({ epoch, retry_after_ms }) => void [epoch satisfies number, retry_after_ms satisfies number]);
  alice.on("disconnected", ({ code, reason }) => void [code satisfies number, reason satisfies string]);
  alice.on("reconnecting", ({ delay, attempt, moved }) => void [delay satisfies number, attempt satisfies number, moved satisfies boolean]);
  alice.on("resumed", ({ stream, complete, seq }) => void [stream satisfies string, complete satisfies boolean, seq satisfies number]);
  alice.on("error", ({ code, message }) => void [code satisfies ErrorCode, message satisfies string]);
  const onResumed: WsringListener<"resumed"> = (detail) => void detail.complete;
  alice.on("resumed", onResumed);
  alice.on("presence", ({ room, user, event }) => void [room satisfies string, user satisfies string, event satisfies "join" | "leave"]);
  alice.on("joined", ({ room }) => void (room satisfies string));
  alice.on("left", ({ room }) => void (room satisfies string));
  alice.off("resumed", onResumed);
  same<keyof WsringEvents, "state" | "connected" | "message" | "moved" | "disconnected" | "reconnecting" | "resumed" | "error" | "presence" | "joined" | "left">(true);
  // @ts-expect-error no such event
  alice.on("welcome", () => {});
  // @ts-expect-error the detail of `moved` has no `node`
  alice.on("moved", ({ node }) => node);

  // Errors.
  try {
    await alice.join("ops");
  } catch (e) {
    if (e instanceof WsringError) {
      same<typeof e.code, ErrorCode>(true);
      const name: "WsringError" = e.name;
      const message: string = e.message;
      void name, message;
    }
  }
  const own = new WsringError("timeout", "no acknowledgement");
  void own;

  alice.close();
  carol.close();
}
