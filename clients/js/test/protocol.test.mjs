// protocol.test.mjs — keeps the JS client (clients/js/src/wsring-client.js)
// honest against docs/PROTOCOL.md, the way crates/protocol/tests/protocol_doc.rs
// keeps the Rust types honest. No browser and no cluster: the client runs in
// Node against a scripted fake WebSocket.
//
//   node --test clients/js/test/protocol.test.mjs
//
// * Every documented server frame (the lines of each ```json server block)
//   is fed to a connected client, and the test checks that it reached the
//   right place: the `connected`/`message`/`moved`/`resumed`/`error` event,
//   the pending request's promise, the stream cursors used on reconnect.
//   A frame type with no expectation here fails the test, so a new frame
//   cannot be documented without the JS client being taught about it.
// * Every frame the JS client sends is compared with the documented client
//   frame of that type (```json client): same fields, same order, same values
//   for the same inputs (only the generated `id` differs, and is replaced by
//   the documented one before comparing).
//
// crates/wsring/tests/js_package.rs runs this script under `cargo test`.

import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import { CLOSE_MOVED, WsringClient, WsringError } from "../src/wsring-client.js";

// A stuck promise must not hang cargo test.
setTimeout(() => {
  console.error("protocol.test.mjs: gave up after 30 s");
  process.exit(1);
}, 30_000).unref();

// ------------------------------------------------------------ the document

/** `{server: [...], client: [...]}`: each frame line of the marked blocks, parsed, with its text and line number. */
function documentedFrames() {
  const doc = fs.readFileSync(new URL("../../../docs/PROTOCOL.md", import.meta.url), "utf8");
  const out = { server: [], client: [] };
  let role; // undefined: outside a block; null: a block that holds no frames
  doc.split("\n").forEach((line, i) => {
    const fence = line.trimStart().match(/^```(.*)$/);
    if (fence) {
      if (role !== undefined) {
        role = undefined;
        return;
      }
      const [lang, kind] = fence[1].trim().split(/\s+/);
      if (lang === "json" && !["server", "client", "http"].includes(kind)) {
        throw new Error(`PROTOCOL.md:${i + 1}: a json block needs a role (server, client or http)`);
      }
      role = lang === "json" && kind !== "http" ? kind : null;
      return;
    }
    if (role && line.trim()) {
      out[role].push({ line: i + 1, text: line.trim(), frame: JSON.parse(line) });
    }
  });
  assert.equal(role, undefined, "PROTOCOL.md: unterminated code block");
  return out;
}

const DOC = documentedFrames();

// ------------------------------------------------------- a fake WebSocket

/** The sockets the client opened, newest last. */
let sockets = [];
/** Every client a check created, closed after it so no timer outlives it. */
const clients = [];

/** Runs one check as a subtest, then closes whatever clients it left open. */
async function check(t, name, fn) {
  await t.test(name, async () => {
    try {
      await fn();
    } finally {
      for (const c of clients.splice(0)) c.close();
    }
  });
}

class FakeWebSocket {
  constructor(url) {
    this.url = url;
    this.readyState = 0;
    /** Texts the client sent, parsed. */
    this.sent = [];
    this.closed = null;
    this.onmessage = this.onclose = this.onerror = this.onopen = null;
    sockets.push(this);
  }

  send(text) {
    assert.equal(this.readyState, 1, "the client sent on a socket that is not open");
    assert.equal(typeof text, "string", "frames are text frames");
    this.sent.push(JSON.parse(text));
    this.sentText = [...(this.sentText ?? []), text];
  }

  close(code, reason) {
    this.closed = { code, reason };
    this.readyState = 3;
  }

  // Server side.
  open() {
    this.readyState = 1;
    this.onopen?.({});
  }

  deliver(frame) {
    this.onmessage?.({ data: typeof frame === "string" ? frame : JSON.stringify(frame) });
  }

  serverClose(code, reason = "") {
    this.readyState = 3;
    this.onclose?.({ code, reason });
  }
}

const WELCOME = DOC.server.find((e) => e.frame.type === "welcome").frame;

/** Polls `cond` until true (the client's timers run meanwhile), failing after 2 s. */
async function waitFor(what, cond) {
  const deadline = Date.now() + 2000;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 1));
  }
}

/** A client with an open, welcomed session; records every event it emits. */
async function connectedClient(welcome = WELCOME) {
  sockets = [];
  const client = new WsringClient({
    url: "ws://gateway.test/ws",
    user: welcome.user,
    WebSocket: FakeWebSocket,
    backoffBase: 0, // reconnect at once: the tests drive time with frames, not waits
    movedJitter: 0,
    retryUnavailable: 0,
  });
  clients.push(client);
  const events = [];
  for (const type of ["connected", "message", "moved", "resumed", "error", "disconnected", "reconnecting", "presence", "joined", "left"]) {
    client.on(type, (detail) => events.push({ type, ...detail }));
  }
  const ws = sockets.at(-1);
  ws.open();
  ws.deliver(welcome);
  assert.equal(client.state, "connected");
  return { client, ws, events };
}

/** Reconnects the client (the server drops the socket) and returns the new socket, welcomed. */
async function reconnect(client, ws, welcome = WELCOME) {
  ws.serverClose(1006);
  await waitFor("a reconnect", () => sockets.at(-1) !== ws);
  const next = sockets.at(-1);
  next.open();
  next.deliver(welcome);
  return next;
}

/** The documented frame with `id` replaced, serialised: the shape to compare with. */
const withId = (frame, id) => JSON.stringify({ ...frame, id });

// ----------------------------------------------- server frames → client

/** For each server frame type: checks that feeding `frame` had its documented effect. */
const EXPECT = {
  async welcome(frame) {
    const { client, events } = await connectedClient(frame);
    assert.deepEqual(events[0], { type: "connected", node: frame.node, session: frame.session, epoch: frame.epoch });
    assert.deepEqual([client.node, client.session, client.epoch], [frame.node, frame.session, frame.epoch]);
    // Durable mode: the reconnect resumes the user stream from the welcome's position.
    const url = new URL((await reconnect(client, sockets.at(-1), frame)).url);
    if (frame.seq !== undefined) {
      assert.equal(url.searchParams.get("resume"), String(frame.seq));
      assert.equal(url.searchParams.get("epoch"), frame.stream_epoch);
    } else {
      assert.equal(url.searchParams.get("resume"), null);
    }
    assert.equal(url.searchParams.get("user"), frame.user);
  },

  async ack(frame) {
    const { client, ws, events } = await connectedClient();
    const done = client.send("bob", { text: "hi" });
    // The documented ack, answering this client's pending request.
    ws.deliver({ ...frame, id: ws.sent.at(-1).id });
    await done;
    assert.equal(client.pendingCount, 0);
    // The verbatim example answers nothing this client sent: ignored.
    ws.deliver(frame);
    assert.deepEqual(events.slice(1), []);
  },

  async pong(frame) {
    const { client, ws, events } = await connectedClient();
    ws.deliver(frame);
    assert.equal(client.state, "connected");
    assert.deepEqual(events.slice(1), [], "pong is accepted silently");
  },

  async message(frame) {
    const { client, ws, events } = await connectedClient();
    ws.deliver(frame);
    assert.deepEqual(events.slice(1), [
      {
        type: "message",
        from: frame.from,
        to: frame.to ?? null,
        room: frame.room ?? null,
        data: frame.data,
        seq: frame.seq ?? null,
        epoch: frame.epoch ?? null,
      },
    ]);
    assert.equal(client.stats.received, 1);
    // A stream message moves that stream's cursor: the same frame again is a duplicate.
    ws.deliver(frame);
    if (frame.seq !== undefined) {
      assert.equal(client.stats.duplicates, 1);
      assert.equal(events.length, 2);
    } else {
      assert.equal(client.stats.received, 2);
    }
  },

  async error(frame) {
    // Answering a pending request.
    const { client, ws, events } = await connectedClient();
    const done = client.send("bob", { text: "hi" });
    const id = ws.sent.at(-1).id;
    ws.deliver({ ...frame, id });
    if (frame.code === "unavailable") {
      // Transient: resent with the same id, still pending.
      await waitFor("the resend", () => ws.sent.length === 2);
      assert.equal(ws.sentText[1], ws.sentText[0]);
      assert.equal(client.pendingCount, 1);
      ws.deliver({ type: "ack", id });
      await done;
    } else {
      await assert.rejects(done, (e) => e instanceof WsringError && e.code === frame.code && e.message === frame.message);
    }
    // Answering nothing pending: surfaced as an `error` event.
    ws.deliver(frame);
    assert.deepEqual(events.at(-1), { type: "error", code: frame.code, message: frame.message });
  },

  async moved(frame) {
    const { client, ws, events } = await connectedClient();
    ws.deliver(frame);
    assert.deepEqual(events.at(-1), { type: "moved", epoch: frame.epoch, retry_after_ms: frame.retry_after_ms });
    ws.serverClose(CLOSE_MOVED, "moved");
    const r = events.find((e) => e.type === "reconnecting");
    assert.equal(r.moved, true);
    assert.equal(r.delay, frame.retry_after_ms, "reconnects after the server's retry_after_ms (jitter 0 here)");
  },

  async resumed(frame) {
    const { client, ws, events } = await connectedClient();
    const room = frame.stream.startsWith("room:") ? frame.stream.slice("room:".length) : null;
    if (room !== null) {
      const joined = client.join(room);
      ws.deliver({ type: "ack", id: ws.sent.at(-1).id });
      await joined;
    }
    ws.deliver(frame);
    assert.deepEqual(events.at(-1), { type: "resumed", stream: frame.stream, complete: frame.complete, seq: frame.seq });
    assert.equal(client.stats.incomplete, frame.complete ? 0 : 1);
    // The position is where the next reconnect resumes that stream from
    // (an empty epoch, from a non-durable cluster, gives no position).
    const next = await reconnect(client, ws);
    let resume, epoch;
    if (room !== null) {
      const join = next.sent.find((f) => f.type === "join" && f.room === room);
      ({ resume, epoch } = join);
    } else {
      const q = new URL(next.url).searchParams;
      resume = q.get("resume") === null ? undefined : Number(q.get("resume"));
      epoch = q.get("epoch") ?? undefined;
    }
    if (frame.epoch === "") {
      assert.equal(resume, undefined);
    } else {
      assert.deepEqual([resume, epoch], [frame.seq, frame.epoch]);
    }
  },

  async presence(frame) {
    const { client, ws, events } = await connectedClient();
    ws.deliver(frame);
    assert.deepEqual(events.slice(1), [{ type: "presence", room: frame.room, user: frame.user, event: frame.event }]);
    assert.equal(client.state, "connected");
  },

  async joined(frame) {
    const { client, ws, events } = await connectedClient();
    ws.deliver(frame);
    assert.deepEqual(events.slice(1), [{ type: "joined", room: frame.room }]);
    // The server re-joins its rooms itself: the client does not.
    assert.deepEqual(client.rooms, []);
    const next = await reconnect(client, ws);
    assert.equal(next.sent.filter((f) => f.type === "join").length, 0);
  },

  async left(frame) {
    const { client, ws, events } = await connectedClient();
    const joined = client.join(frame.room);
    ws.deliver({ type: "ack", id: ws.sent.at(-1).id });
    await joined;
    ws.deliver(frame);
    assert.deepEqual(events.at(-1), { type: "left", room: frame.room });
    // Out for good: not re-joined after a reconnect.
    assert.deepEqual(client.rooms, []);
    const next = await reconnect(client, ws);
    assert.equal(next.sent.filter((f) => f.type === "join").length, 0);
  },
};

test("every documented server frame is handled by the JS client", async (t) => {
  assert.ok(DOC.server.length > 0);
  for (const e of DOC.server) {
    const expect = EXPECT[e.frame.type];
    assert.ok(expect, `PROTOCOL.md:${e.line}: no expectation for server frame type ${JSON.stringify(e.frame.type)}; teach wsring-client.js and this test about it`);
    await check(t, `PROTOCOL.md:${e.line} ${e.text}`, () => expect(e.frame));
  }
  const documented = new Set(DOC.server.map((e) => e.frame.type));
  assert.deepEqual(new Set(Object.keys(EXPECT)), documented, "expectations for types the document no longer has");
});

// ----------------------------------------------- client → server frames

/** Each documented client frame, reproduced with the JS client's API: the frame it sends. */
const PRODUCE = {
  async send(f) {
    const { client, ws } = await connectedClient();
    client.send(f.to, f.data).catch(() => {});
    return ws.sentText.at(-1);
  },
  async publish(f) {
    const { client, ws } = await connectedClient();
    client.publish(f.room, f.data).catch(() => {});
    return ws.sentText.at(-1);
  },
  async leave(f) {
    const { client, ws } = await connectedClient();
    client.leave(f.room).catch(() => {});
    return ws.sentText.at(-1);
  },
  async join(f) {
    const { client, ws } = await connectedClient();
    const joined = client.join(f.room, { presence: f.presence === true });
    joined.catch(() => {}); // closed unanswered after the check
    if (f.resume === undefined) return ws.sentText.at(-1);
    // A join with a resume point is the client's own re-join after a
    // reconnect, from the position the server last reported for the room.
    ws.deliver({ type: "ack", id: ws.sent.at(-1).id });
    await joined;
    ws.deliver({ type: "resumed", stream: `room:${f.room}`, complete: true, seq: f.resume, epoch: f.epoch });
    const next = await reconnect(client, ws);
    return next.sentText.find((t) => JSON.parse(t).type === "join");
  },
};

/** Client frame types the JS client never sends: the browser answers pings itself, at the WebSocket level. */
const NOT_SENT_BY_JS = new Set(["ping"]);

test("every frame the JS client sends has the documented shape", async (t) => {
  assert.ok(DOC.client.length > 0);
  for (const e of DOC.client) {
    if (NOT_SENT_BY_JS.has(e.frame.type)) continue;
    const produce = PRODUCE[e.frame.type];
    assert.ok(produce, `PROTOCOL.md:${e.line}: the JS client cannot produce client frame type ${JSON.stringify(e.frame.type)}`);
    await check(t, `PROTOCOL.md:${e.line} ${e.text}`, async () => {
      const sent = await produce(e.frame);
      assert.ok(sent, "the client sent the frame");
      const parsed = JSON.parse(sent);
      assert.equal(typeof parsed.id, "string", "every request carries an id");
      // Same fields in the same order with the same values; only the id is generated.
      assert.equal(withId(parsed, e.frame.id), e.text);
    });
  }
  const sendable = new Set(DOC.client.map((e) => e.frame.type).filter((t) => !NOT_SENT_BY_JS.has(t)));
  assert.deepEqual(new Set(Object.keys(PRODUCE)), sendable, "the JS client's frame types vs. the documented ones");
});

test("a close with an application code (4000-4999) is final", async () => {
  const { client, ws, events } = await connectedClient();
  const pending = client.send("bob", 1);
  ws.serverClose(4000, "disconnected");
  await assert.rejects(pending, (e) => e instanceof WsringError && e.code === "closed");
  assert.equal(client.state, "closed");
  assert.deepEqual(events.at(-1), { type: "disconnected", code: 4000, reason: "disconnected" });
  assert.equal(events.filter((e) => e.type === "reconnecting").length, 0, "no reconnect");
  for (const c of clients.splice(0)) c.close();
});
