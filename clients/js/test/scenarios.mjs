// scenarios.mjs — what the client must do against a real cluster, written
// once and run in two places: under Node by test/node.test.mjs and in
// headless Chromium by test/browser.test.mjs (which serves this file to the
// page). So it uses only what both have: fetch, timers, plain objects.
//
// Each scenario is `{ name, run(client, ctx), noisy? }`:
// * `client` is the wsring-client module (the source, or an installed copy);
// * `ctx` is `{ url, http, apiKey, tokens, options }`: the gateway's WebSocket
//   URL and HTTP base, the API key (secured cluster), connect tokens minted
//   by the runner, and options merged into every connect (the WebSocket
//   class under Node);
// * `noisy` marks scenarios in which the browser logs refused or failed
//   WebSocket handshakes, which the browser runner otherwise treats as errors.
//
// SCENARIOS groups them by the cluster they need; CLUSTERS gives the
// `wsring dev` flags of each (the runners add `--port 0`, `--nodes 3` and a
// short heartbeat TTL).

export const API_KEY = "wsring-js-test-api-key";
export const JWT_SECRET = "wsring-js-test-jwt-secret";

export const CLUSTERS = {
  open: [],
  secured: ["--jwt-secret", JWT_SECRET, "--api-key", API_KEY],
  durable: ["--durable"],
};

/** The tokens the secured scenarios use: name → `[sub, extra claims]`, minted by the runner. */
export const TOKENS = {
  tina: ["tina", {}],
  tom: ["tom", {}],
  chatOnly: ["cora", { rooms: ["chat.*"] }],
  receiveOnly: ["rita", { send: false }],
  // Expired an hour ago: well past the server's leeway.
  expired: ["mallory", { exp: Math.floor(Date.now() / 1000) - 3600 }],
};

const WAIT_MS = 15_000;

// ---------------------------------------------------------------- helpers

export function check(cond, msg) {
  if (!cond) throw new Error(`check failed: ${msg}`);
}

function ok(cond, msg) {
  check(cond, msg);
}

function equal(actual, expected, msg) {
  const a = JSON.stringify(actual);
  const e = JSON.stringify(expected);
  if (a !== e) throw new Error(`check failed: ${msg}\n  expected ${e}\n  got      ${a}`);
}

/** Polls `cond` every 20 ms until it returns a truthy value, which it returns; throws after `ms`. */
export async function waitFor(what, cond, ms = WAIT_MS) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await cond();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Calls the HTTP API; `{status, body}`. */
async function api(ctx, method, path, body) {
  const headers = {};
  if (ctx.apiKey) headers.authorization = `Bearer ${ctx.apiKey}`;
  if (body !== undefined) headers["content-type"] = "application/json";
  const r = await fetch(ctx.http + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  let json = null;
  try {
    json = JSON.parse(text);
  } catch {
    json = text;
  }
  return { status: r.status, body: json };
}

/** POSTs until the cluster accepts it (202): right after a crash it answers 503 until the ring converges. */
async function postAccepted(ctx, path, body) {
  let last;
  await waitFor(`${path} accepted (last: ${JSON.stringify(last)})`, async () => {
    last = await api(ctx, "POST", path, body);
    return last.status === 202;
  });
}

/** The node that owns `user` now, per the cluster. */
async function route(ctx, user) {
  const r = await api(ctx, "GET", `/api/route?user=${encodeURIComponent(user)}`);
  return r.body?.node;
}

/** Tunnels open through the gateway (its `wsring_gateway_tunnels` series, summed). */
async function tunnels(ctx) {
  const r = await api(ctx, "GET", "/metrics");
  return String(r.body)
    .split("\n")
    .filter((l) => l.startsWith("wsring_gateway_tunnels"))
    .reduce((sum, l) => sum + Number(l.trim().split(/\s+/).pop()), 0);
}

/** Connects `user` with the runner's options; records what the client reports. */
async function open(client, ctx, user, extra = {}) {
  const c = await client.connect({ url: ctx.url, user, ...ctx.options, ...extra });
  return track(c);
}

/** Attaches `got` (delivered messages) and `events` (everything else, in order) to `c`. */
function track(c) {
  c.got = [];
  c.events = [];
  c.on("message", (m) => c.got.push(m));
  for (const type of ["connected", "moved", "disconnected", "reconnecting", "resumed", "error"]) {
    c.on(type, (d) => c.events.push({ type, ...d }));
  }
  return c;
}

const tags = (c) => c.got.map((m) => m.data.tag);

/** Counts the `GET /ws/locate` calls made through `fetch` until `stop()`. */
function countLocates() {
  const real = globalThis.fetch;
  const counter = {
    count: 0,
    stop: () => {
      globalThis.fetch = real;
    },
  };
  globalThis.fetch = (url, ...rest) => {
    if (String(url).includes("/ws/locate")) counter.count++;
    return real.call(globalThis, url, ...rest);
  };
  return counter;
}

/** Runs `fn` with the clients it opens, closing them all afterwards. */
async function withClients(fn) {
  const opened = [];
  try {
    await fn(opened);
  } finally {
    for (const c of opened) c.close();
  }
}

/** Rejection of `promise` as `{code, message, name}` (fails if it resolves). */
async function rejection(promise) {
  try {
    await promise;
  } catch (e) {
    return { name: e?.name, code: e?.code, message: e?.message };
  }
  throw new Error("check failed: the promise resolved");
}

// ------------------------------------------------------------- scenarios

const open_ = [
  {
    name: "connects without a token: welcome names the user's node",
    async run(client, ctx) {
      await withClients(async (cs) => {
        const ann = await open(client, ctx, "ann");
        cs.push(ann);
        equal(ann.state, "connected", "state");
        equal(ann.user, "ann", "user");
        equal(ann.node, await route(ctx, "ann"), "the node is the user's owner");
        check(typeof ann.session === "string" && ann.session.length > 0, `a session id: ${ann.session}`);
        check(Number.isInteger(ann.epoch) && ann.epoch >= 3, `the ring epoch: ${ann.epoch}`);
        ann.close();
        equal(ann.state, "closed", "closed");
      });
    },
  },
  {
    name: "a direct message is acknowledged and reaches every session of the recipient",
    async run(client, ctx) {
      await withClients(async (cs) => {
        const alice = await open(client, ctx, "alice");
        const bob1 = await open(client, ctx, "bob");
        const bob2 = await open(client, ctx, "bob");
        cs.push(alice, bob1, bob2);
        await alice.send("bob", { tag: "hi", n: [1, 2, 3] }); // resolves on ack
        equal(alice.pendingCount, 0, "nothing pending after the ack");
        for (const bob of [bob1, bob2]) {
          await waitFor("bob's sessions to get the message", () => bob.got.length === 1);
          equal(bob.got[0], { from: "alice", to: "bob", room: null, data: { tag: "hi", n: [1, 2, 3] }, seq: null, epoch: null }, "the message");
        }
        // Sending to yourself reaches all your sessions, this one included.
        await bob1.send("bob", { tag: "self" });
        await waitFor("both bob sessions to get their own message", () => bob1.got.length === 2 && bob2.got.length === 2);
        equal(alice.got.length, 0, "alice got nothing");
        // Sent by the HTTP API: `from` is null.
        await postAccepted(ctx, "/api/send", { to: "alice", data: { tag: "api" } });
        await waitFor("alice to get the API message", () => alice.got.length === 1);
        equal(alice.got[0].from, null, "from of an API message");
      });
    },
  },
  {
    name: "rooms: members get publishes, leaving stops them, rooms lists the joined ones",
    async run(client, ctx) {
      await withClients(async (cs) => {
        const [pam, rob, cat] = await Promise.all(["pam", "rob", "cat"].map((u) => open(client, ctx, u)));
        cs.push(pam, rob, cat);
        await rob.join("room-1");
        await cat.join("room-1");
        await cat.join("room-2");
        equal(cat.rooms.sort(), ["room-1", "room-2"], "cat's rooms");
        // pam is no member: publish does not require membership.
        await pam.publish("room-1", { tag: "p1" });
        for (const c of [rob, cat]) {
          await waitFor(`${c.user} to get p1`, () => c.got.length === 1);
          equal(c.got[0], { from: "pam", to: null, room: "room-1", data: { tag: "p1" }, seq: null, epoch: null }, "the room message");
        }
        equal(pam.got.length, 0, "the publisher is no member");
        await cat.leave("room-1");
        equal(cat.rooms, ["room-2"], "cat left room-1");
        // One sender's messages keep their order across the rooms a node
        // subscribes to: once cat has the room-2 barrier, p2 would have come.
        await pam.publish("room-1", { tag: "p2" });
        await pam.publish("room-2", { tag: "barrier" });
        await waitFor("rob to get p2", () => rob.got.length === 2);
        await waitFor("cat to get the barrier", () => tags(cat).includes("barrier"));
        equal(tags(cat), ["p1", "barrier"], "cat got nothing from room-1 after leaving");
        equal(tags(rob), ["p1", "p2"], "rob's messages");
      });
    },
  },
  {
    name: "errors reject the request with the server's code; the connection stays usable",
    async run(client, ctx) {
      await withClients(async (cs) => {
        const eve = await open(client, ctx, "eve");
        cs.push(eve);
        const bad = await rejection(eve.send("no spaces allowed", { tag: "x" }));
        equal([bad.name, bad.code], ["WsringError", "bad_request"], `send to an invalid user id: ${JSON.stringify(bad)}`);
        check(bad.message.length > 0, "the error carries the server's message");
        const badRoom = await rejection(eve.join("bad room"));
        equal(badRoom.code, "bad_request", "join of an invalid room");
        equal(eve.rooms, [], "a refused join leaves no room behind");
        equal(eve.state, "connected", "still connected");
        equal(eve.pendingCount, 0, "nothing pending");
        await eve.send("eve", { tag: "still-fine" });
        await waitFor("the next message to arrive", () => tags(eve).includes("still-fine"));
        // After close every request fails at once.
        eve.close();
        const closed = await rejection(eve.send("eve", { tag: "late" }));
        equal(closed.code, "closed", "send after close");
      });
    },
  },
  {
    name: "after `moved` and close 1012 the client reconnects to the new owner and re-joins its rooms",
    noisy: true,
    async run(client, ctx) {
      await withClients(async (cs) => {
        const dan = await open(client, ctx, "dan");
        const pia = await open(client, ctx, "pia");
        cs.push(dan, pia);
        await dan.join("mv-room");
        const before = dan.node;
        const r = await api(ctx, "DELETE", `/api/nodes/${before}?mode=drain`);
        equal(r.status, 202, "drain accepted");
        await waitFor("dan to be connected to another node", () => dan.state === "connected" && dan.node !== before);
        const types = dan.events.map((e) => e.type);
        const moved = dan.events.find((e) => e.type === "moved");
        check(moved && moved.epoch > 3 && Number.isInteger(moved.retry_after_ms), `a moved event: ${JSON.stringify(dan.events)}`);
        const closes = dan.events.filter((e) => e.type === "disconnected").map((e) => e.code);
        equal(closes, [1012], "the session closed with 1012");
        check(dan.events.some((e) => e.type === "reconnecting" && e.moved === true), `a moved reconnect: ${types}`);
        check(types.indexOf("moved") < types.indexOf("disconnected") && types.indexOf("disconnected") < types.indexOf("connected"), `order: ${types}`);
        equal(dan.stats.moves, 1, "stats.moves");
        equal(dan.stats.reconnects, 1, "stats.reconnects");
        equal(dan.node, await route(ctx, "dan"), "the new node is the owner");
        // The room is re-joined on the new node: its publishes arrive. The
        // re-join is the client's own request, sent right after the welcome
        // and acknowledged to nobody, so publish until one gets through.
        equal(dan.rooms, ["mv-room"], "the room is kept");
        await waitFor("pia to be connected", () => pia.state === "connected");
        let n = 0;
        await waitFor("dan to get a room message on the new node", async () => {
          if (dan.got.length > 0) return true;
          await pia.publish("mv-room", { tag: `after-move-${n++}` });
          await new Promise((r) => setTimeout(r, 100));
          return dan.got.length > 0;
        });
        check(tags(dan).every((t) => t.startsWith("after-move-")), `only the new messages: ${tags(dan)}`);
      });
    },
  },
  {
    name: "direct: the client connects to its node without the gateway's tunnel, and follows a move there",
    noisy: true,
    async run(client, ctx) {
      await withClients(async (cs) => {
        // The clients of earlier scenarios are closed; their tunnels end.
        await waitFor("earlier tunnels to end", async () => (await tunnels(ctx)) === 0);
        const users = Array.from({ length: 6 }, (_, i) => `direct-${i}`);
        cs.push(...(await Promise.all(users.map((u) => open(client, ctx, u, { direct: true })))));
        for (const c of cs) equal(c.node, await route(ctx, c.user), `${c.user} is on its owner`);
        equal(await tunnels(ctx), 0, "no tunnel through the gateway");
        const [a, b] = cs;
        await a.send(b.user, { tag: "d1" });
        await waitFor("the direct message", () => tags(b).includes("d1"));
        // Draining a's node moves a: its `moved` frame names the new owner,
        // and a connects there without locating again or a tunnel.
        const old = a.node;
        const locates = countLocates();
        try {
          equal((await api(ctx, "DELETE", `/api/nodes/${old}?mode=drain`)).status, 202, "drain accepted");
          await waitFor("a to be connected to another node", () => a.state === "connected" && a.node !== old);
        } finally {
          locates.stop();
        }
        equal(locates.count, 0, "the moved clients followed their moved frame's URL");
        equal(a.node, await route(ctx, a.user), "the new node is the owner");
        check(a.events.some((e) => e.type === "disconnected" && e.code === 1012), `closed with 1012: ${JSON.stringify(a.events)}`);
        equal(await tunnels(ctx), 0, "still no tunnel");
        await waitFor("everyone connected again", () => cs.every((c) => c.state === "connected"));
        await b.send(a.user, { tag: "d2" });
        await waitFor("a message after the move", () => tags(a).includes("d2"));
      });
    },
  },
];

const secured = [
  {
    name: "connects with a token whose sub names the user",
    async run(client, ctx) {
      await withClients(async (cs) => {
        const tina = await open(client, ctx, "tina", { token: ctx.tokens.tina });
        cs.push(tina);
        equal(tina.state, "connected", "state");
        equal(tina.node, await route(ctx, "tina"), "the node is tina's owner");
        await tina.send("tina", { tag: "self" });
        await waitFor("tina's own message", () => tina.got.length === 1);
        equal(tina.got[0].from, "tina", "the server took the user from the token");
      });
    },
  },
  {
    name: "a token function is asked again for every reconnect and may be async",
    noisy: true,
    async run(client, ctx) {
      await withClients(async (cs) => {
        let asked = 0;
        const token = async () => {
          asked++;
          await new Promise((r) => setTimeout(r, 1));
          return ctx.tokens.tom;
        };
        const tom = await open(client, ctx, "tom", { token });
        cs.push(tom);
        equal(asked, 1, "asked once for the first connect");
        const before = tom.node;
        equal((await api(ctx, "DELETE", `/api/nodes/${before}?mode=drain`)).status, 202, "drain accepted");
        await waitFor("tom to be connected to another node", () => tom.state === "connected" && tom.node !== before);
        check(asked >= 2, `asked again for the reconnect: ${asked}`);
        await tom.send("tom", { tag: "after" });
        await waitFor("tom's message", () => tags(tom).includes("after"));
      });
    },
  },
  {
    name: "the token's claims: rooms outside `rooms` and sends with `send:false` are forbidden",
    async run(client, ctx) {
      await withClients(async (cs) => {
        const cora = await open(client, ctx, "cora", { token: ctx.tokens.chatOnly });
        const rita = await open(client, ctx, "rita", { token: ctx.tokens.receiveOnly });
        cs.push(cora, rita);
        equal((await rejection(cora.join("ops"))).code, "forbidden", "join outside the claim");
        equal((await rejection(cora.publish("ops", { tag: "x" }))).code, "forbidden", "publish outside the claim");
        await cora.join("chat.1");
        equal(cora.rooms, ["chat.1"], "only the allowed room is kept");
        equal((await rejection(rita.send("cora", { tag: "x" }))).code, "forbidden", "send with send:false");
        // rita still receives.
        await cora.send("rita", { tag: "to-rita" });
        await waitFor("rita to receive", () => tags(rita).includes("to-rita"));
        equal([cora.state, rita.state], ["connected", "connected"], "both stay connected");
      });
    },
  },
  {
    name: "without a valid token the upgrade is refused and connect() fails within a second with the server's reason",
    noisy: true,
    async run(client, ctx) {
      for (const [extra, why] of [
        [{ token: "not-a-jwt" }, /malformed token/],
        [{ token: ctx.tokens.expired }, /token expired/],
        [{}, /token/],
      ]) {
        const t0 = Date.now();
        const err = await rejection(client.connect({ url: ctx.url, user: "mallory", ...ctx.options, ...extra, timeout: 5000 }));
        const took = Date.now() - t0;
        equal([err.name, err.code], ["WsringError", "unauthorized"], `refused (${JSON.stringify(extra)}): ${JSON.stringify(err)}`);
        ok(why.test(err.message), `the server's reason (${JSON.stringify(extra)}): ${err.message}`);
        ok(took < 1000, `reported in ${took} ms, not after the 5000 ms timeout`);
      }
    },
  },
  {
    name: "direct: a located client connects with its token, and a refused locate is final with the server's error",
    noisy: true,
    async run(client, ctx) {
      await withClients(async (cs) => {
        const tina = await open(client, ctx, "tina", { token: ctx.tokens.tina, direct: true });
        cs.push(tina);
        equal(tina.node, await route(ctx, "tina"), "on tina's owner");
        await tina.send("tina", { tag: "direct-self" });
        await waitFor("tina's own message", () => tags(tina).includes("direct-self"));
      });
      // Unlike a refused upgrade, a refused locate is readable: connect()
      // fails at once with the server's code instead of timing out.
      const err = await rejection(client.connect({ url: ctx.url, user: "mallory", ...ctx.options, token: "not-a-jwt", direct: true }));
      equal([err.name, err.code], ["WsringError", "unauthorized"], `refused: ${JSON.stringify(err)}`);
    },
  },
];

const durable = [
  {
    name: "durable: after its node crashes the client resumes its stream and rooms, nothing lost, nothing twice",
    noisy: true,
    async run(client, ctx) {
      await withClients(async (cs) => {
        const bea = await open(client, ctx, "bea");
        const al = await open(client, ctx, "al");
        cs.push(bea, al);
        await bea.join("r1");
        const sends = [];
        for (let i = 0; i < 5; i++) sends.push(al.send("bea", { tag: `before-${i}` }));
        for (let i = 0; i < 3; i++) sends.push(al.publish("r1", { tag: `room-before-${i}` }));
        await Promise.all(sends);
        await waitFor("bea to get 8 messages", () => bea.got.length === 8);
        check(
          bea.got.every((m) => Number.isInteger(m.seq) && typeof m.epoch === "string"),
          "durable messages carry seq and epoch",
        );
        const crashed = bea.node;
        equal((await api(ctx, "DELETE", `/api/nodes/${crashed}?mode=crash`)).status, 202, "crash accepted");
        // Sent while bea is cut off: through al (resent after his own
        // reconnect if he was on the same node) and through the HTTP API.
        const during = [];
        for (let i = 0; i < 5; i++) during.push(al.send("bea", { tag: `during-${i}` }));
        for (let i = 0; i < 5; i++) during.push(postAccepted(ctx, "/api/send", { to: "bea", data: { tag: `api-${i}` }, id: `js-api-${i}` }));
        for (let i = 0; i < 3; i++) during.push(postAccepted(ctx, "/api/publish", { room: "r1", data: { tag: `room-during-${i}` }, id: `js-room-${i}` }));
        await Promise.all(during);
        await waitFor("bea to be connected elsewhere with 21 messages", () => bea.state === "connected" && bea.node !== crashed && bea.got.length >= 21);
        const got = tags(bea);
        equal(new Set(got).size, got.length, "no message twice");
        equal(got.length, 21, "every message once");
        const fromAl = got.filter((t) => /^(before|during)-/.test(t));
        equal(fromAl, [0, 1, 2, 3, 4].map((i) => `before-${i}`).concat([0, 1, 2, 3, 4].map((i) => `during-${i}`)), "al's order");
        const resumed = bea.events.filter((e) => e.type === "resumed");
        check(resumed.some((e) => e.stream === "user" && e.complete), `the user stream resumed completely: ${JSON.stringify(resumed)}`);
        check(resumed.some((e) => e.stream === "room:r1" && e.complete), `the room resumed completely: ${JSON.stringify(resumed)}`);
        equal(bea.stats.incomplete, 0, "no incomplete resume");
        // Each stream's seqs are consecutive: no gap, no repeat.
        for (const key of ["user", "room:r1"]) {
          const seqs = bea.got.filter((m) => (key === "user" ? m.room === null : `room:${m.room}` === key)).map((m) => m.seq);
          equal(seqs, seqs.map((_, i) => seqs[0] + i), `consecutive seqs on ${key}`);
        }
      });
    },
  },
  {
    name: "durable: a client moved by a drain misses nothing sent meanwhile",
    noisy: true,
    async run(client, ctx) {
      await withClients(async (cs) => {
        const mo = await open(client, ctx, "mo");
        cs.push(mo);
        const before = mo.node;
        // One after the other (each accepted before the next is sent), so
        // the stream's order is the sending order.
        for (let i = 0; i < 10; i++) {
          if (i === 5) equal((await api(ctx, "DELETE", `/api/nodes/${before}?mode=drain`)).status, 202, "drain accepted");
          await postAccepted(ctx, "/api/send", { to: "mo", data: { tag: `m-${i}` }, id: `js-mo-${i}` });
        }
        await waitFor("mo on another node with 10 messages", () => mo.state === "connected" && mo.node !== before && mo.got.length >= 10);
        equal(tags(mo), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9].map((i) => `m-${i}`), "each message once, in order");
        const seqs = mo.got.map((m) => m.seq);
        equal(seqs, seqs.map((_, i) => seqs[0] + i), "consecutive seqs");
        check(mo.events.some((e) => e.type === "disconnected" && e.code === 1012), `closed with 1012: ${JSON.stringify(mo.events)}`);
        check(mo.events.some((e) => e.type === "resumed" && e.stream === "user" && e.complete), "the user stream resumed");
      });
    },
  },
  {
    name: "durable: a node joins while messages flow; the moved clients resume and miss nothing",
    noisy: true,
    async run(client, ctx) {
      await withClients(async (cs) => {
        // Fixed names: the ring is a function of the node ids, so which of
        // them move to the new node is the same on every run.
        const users = Array.from({ length: 16 }, (_, i) => `join-${i}`);
        cs.push(...(await Promise.all(users.map((u) => open(client, ctx, u)))));
        const byUser = Object.fromEntries(cs.map((c) => [c.user, c]));
        for (let i = 0; i < 6; i++) {
          if (i === 3) equal((await api(ctx, "POST", "/api/nodes")).status, 201, "node added");
          await Promise.all(users.map((u) => postAccepted(ctx, "/api/send", { to: u, data: { tag: `m-${i}` }, id: `js-${u}-${i}` })));
        }
        await waitFor("every user connected with its 6 messages", () => cs.every((c) => c.state === "connected" && c.got.length >= 6));
        let moved = 0;
        for (const u of users) {
          const c = byUser[u];
          equal(tags(c), [0, 1, 2, 3, 4, 5].map((i) => `m-${i}`), `${u} got each message once, in order`);
          if (c.events.some((e) => e.type === "moved")) {
            moved++;
            check(c.events.some((e) => e.type === "disconnected" && e.code === 1012), `${u} closed with 1012 after moved`);
            equal(c.node, await route(ctx, u), `${u} is on its new owner`);
          }
        }
        check(moved > 0, "some users moved to the new node");
      });
    },
  },
];

export const SCENARIOS = { open: open_, secured, durable };
