// The unmodified `pusher-js` client and `pusher` server library (versions
// pinned in package-lock.json) against a running wsring cluster.
//
// Run by crates/wsring/tests/pusher.rs, which starts the cluster and sets:
//   WSRING_PUSHER_HOSTS  host:port of each node clients connect to (comma-separated)
//   WSRING_PUSHER_API    host:port the server library calls
//   WSRING_PUSHER_APP_ID, WSRING_PUSHER_KEY, WSRING_PUSHER_SECRET
//   WSRING_PUSHER_NODE_PIDS  the node processes behind hosts 2.. (comma-
//                            separated): the last step drains (SIGTERM) the
//                            one holding most of its clients, which come
//                            back through the first host (the gateway)
//   WSRING_PUSHER_WEBHOOKS   host:port of compat/webhooks.js, the receiver of
//                            the nodes' webhooks in Pusher's format (its
//                            step is skipped when unset)
// Client i connects to host i % n, so every scenario crosses nodes.
// Prints one line per step and "N passed, N failed" at the end; exits
// non-zero on the first failure.

"use strict";

const Pusher = require("pusher-js");
const PusherServer = require("pusher");
const assert = require("node:assert/strict");

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};
const HOSTS = env("WSRING_PUSHER_HOSTS").split(",");
const [API_HOST, API_PORT] = env("WSRING_PUSHER_API").split(":");
const APP_ID = env("WSRING_PUSHER_APP_ID");
const KEY = env("WSRING_PUSHER_KEY");
const SECRET = env("WSRING_PUSHER_SECRET");
const NODE_PIDS = env("WSRING_PUSHER_NODE_PIDS").split(",").map(Number);
const WEBHOOKS = process.env.WSRING_PUSHER_WEBHOOKS;

const server = new PusherServer({
  appId: APP_ID,
  key: KEY,
  secret: SECRET,
  host: API_HOST,
  port: API_PORT,
  useTLS: false,
});

/** Resolves when `pred()` holds, polling; rejects after `ms`. */
function until(what, pred, ms = 10000) {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const tick = () => {
      let ok = false;
      try {
        ok = pred();
      } catch (e) {
        return reject(e);
      }
      if (ok) return resolve();
      if (Date.now() - started > ms) return reject(new Error(`timed out waiting for ${what}`));
      setTimeout(tick, 20);
    };
    tick();
  });
}

let clients = 0;
const open = [];

/**
 * A pusher-js client on the next node, authorizing channels with the
 * server library (as an app's auth endpoint would), as presence user
 * `user` when given. `secret` overrides the signing secret (bad auth).
 */
function client({ user, info, secret, host: via, signin } = {}) {
  const host = via || HOSTS[clients++ % HOSTS.length];
  const [wsHost, wsPort] = host.split(":");
  const signer = secret
    ? new PusherServer({ appId: APP_ID, key: KEY, secret, host: API_HOST, port: API_PORT })
    : server;
  const p = new Pusher(KEY, {
    cluster: "local",
    wsHost,
    wsPort: Number(wsPort),
    forceTLS: false,
    enabledTransports: ["ws"],
    disableStats: true,
    channelAuthorization: {
      customHandler: ({ socketId, channelName }, callback) => {
        const presence = channelName.startsWith("presence-")
          ? { user_id: user, user_info: info }
          : undefined;
        callback(null, signer.authorizeChannel(socketId, channelName, presence));
      },
    },
    // Signed in as user `signin` (pusher:signin) when given.
    userAuthentication: {
      customHandler: ({ socketId }, callback) => {
        callback(null, signer.authenticateUser(socketId, { id: signin, user_info: { name: signin } }));
      },
    },
  });
  // Everything each channel received, in order.
  p.got = [];
  p.bind_global((event, data) => p.got.push({ event, data }));
  open.push(p);
  return p;
}

function connected(p) {
  return until("connected", () => p.connection.state === "connected");
}

/** Subscribes and waits for the outcome: "ok" or the error's status. */
function subscribe(p, name) {
  return new Promise((resolve) => {
    const ch = p.subscribe(name);
    ch.bind("pusher:subscription_succeeded", () => resolve({ ch, status: "ok" }));
    ch.bind("pusher:subscription_error", (e) => resolve({ ch, status: e.status, error: e }));
  });
}

function received(p, channel, event) {
  const ch = p.channel(channel);
  return (ch ? ch.got || [] : []).filter((e) => e.event === event);
}

/** Records every event of `ch` on it. */
function record(ch) {
  ch.got = [];
  ch.bind_global((event, data) => ch.got.push({ event, data }));
  return ch;
}

async function rejected(promise) {
  try {
    await promise;
  } catch (e) {
    return e;
  }
  throw new Error("expected a rejection");
}

const steps = [];
const step = (name, fn) => steps.push({ name, fn });

let a, b, c, bad;

step("clients connect to different nodes with unique socket ids", async () => {
  a = client({ user: "1", info: { name: "Ann" } });
  b = client({ user: "2", info: { name: "Bob" } });
  c = client({ user: "1", info: { name: "Ann" } });
  await Promise.all([a, b, c].map(connected));
  const ids = [a, b, c].map((p) => p.connection.socket_id);
  for (const id of ids) assert.match(id, /^\d+\.\d+$/);
  assert.equal(new Set(ids).size, 3);
});

step("public channel: trigger reaches subscribers on every node", async () => {
  for (const p of [a, b, c]) {
    const { status, ch } = await subscribe(p, "news");
    assert.equal(status, "ok");
    record(ch);
  }
  await server.trigger("news", "hello", { n: 1 });
  await until("hello everywhere", () =>
    [a, b, c].every((p) => received(p, "news", "hello").length === 1));
  assert.deepEqual(received(b, "news", "hello")[0].data, { n: 1 });
});

step("trigger with socket_id leaves that connection out", async () => {
  await server.trigger("news", "not-b", { n: 2 }, { socket_id: b.connection.socket_id });
  await server.trigger("news", "after", { n: 3 });
  await until("after everywhere", () =>
    [a, b, c].every((p) => received(p, "news", "after").length === 1));
  assert.equal(received(a, "news", "not-b").length, 1);
  assert.equal(received(c, "news", "not-b").length, 1);
  assert.equal(received(b, "news", "not-b").length, 0, "b was excluded");
});

step("triggerBatch delivers each event to its channel", async () => {
  await server.triggerBatch([
    { channel: "news", name: "batch-1", data: { i: 1 } },
    { channel: "news", name: "batch-2", data: { i: 2 } },
  ]);
  await until("both batch events", () =>
    [a, b, c].every((p) =>
      received(p, "news", "batch-1").length === 1 && received(p, "news", "batch-2").length === 1));
  // A full batch: 10 events of 9,000 bytes each, a body past the native
  // API's 64 KiB limit.
  const big = "x".repeat(9000);
  await server.triggerBatch(
    Array.from({ length: 10 }, (_, i) => ({ channel: "news", name: "big", data: { i, big } })),
  );
  await until("ten big events", () => received(c, "news", "big").length === 10);
});

step("private channel: a valid auth subscribes, a bad one gets 401", async () => {
  const ok = await subscribe(a, "private-room");
  assert.equal(ok.status, "ok");
  record(ok.ch);
  bad = client({ secret: "not-the-secret" });
  await connected(bad);
  const refused = await subscribe(bad, "private-room");
  assert.equal(refused.status, 401);
  await server.trigger("private-room", "secret", { s: 1 });
  await until("private event", () => received(a, "private-room", "secret").length === 1);
});

step("presence: one member per user id, across nodes", async () => {
  const sa = await subscribe(a, "presence-lobby");
  assert.equal(sa.status, "ok");
  record(sa.ch);
  const sb = await subscribe(b, "presence-lobby");
  assert.equal(sb.status, "ok");
  record(sb.ch);
  assert.equal(sb.ch.members.count, 2, "b sees Ann and itself");
  assert.deepEqual(sb.ch.members.get("1").info, { name: "Ann" });
  await until("a hears Bob", () => a.channel("presence-lobby").members.count === 2);
  const added = received(a, "presence-lobby", "pusher:member_added");
  assert.equal(added.length, 1);
  assert.equal(added[0].data.id, "2");
  // A second connection of user 1 is not a new member.
  const sc = await subscribe(c, "presence-lobby");
  assert.equal(sc.status, "ok");
  record(sc.ch);
  assert.equal(sc.ch.members.count, 2);
  assert.equal(sc.ch.members.me.id, "1");
});

step("client events reach others, never the sender, with user_id on presence", async () => {
  let meta;
  b.channel("presence-lobby").bind("client-typing", (_data, m) => {
    meta = m;
  });
  a.channel("presence-lobby").trigger("client-typing", { who: "Ann" });
  await until("b hears typing", () => received(b, "presence-lobby", "client-typing").length === 1);
  await until("c hears typing", () => received(c, "presence-lobby", "client-typing").length === 1);
  const ev = received(b, "presence-lobby", "client-typing")[0];
  assert.deepEqual(ev.data, { who: "Ann" });
  assert.equal(meta && meta.user_id, "1");
  // b answers; a must have got b's event but never its own.
  b.channel("presence-lobby").trigger("client-reply", {});
  await until("a hears reply", () => received(a, "presence-lobby", "client-reply").length === 1);
  assert.equal(received(a, "presence-lobby", "client-typing").length, 0, "not echoed");
});

step("GET channels, channel and users are cluster-wide", async () => {
  const all = await (await server.get({ path: "/channels" })).json();
  for (const name of ["news", "private-room", "presence-lobby"]) {
    assert.ok(name in all.channels, `${name} listed: ${JSON.stringify(all)}`);
  }
  const presence = await (
    await server.get({
      path: "/channels",
      params: { filter_by_prefix: "presence-", info: "user_count" },
    })
  ).json();
  assert.deepEqual(presence, { channels: { "presence-lobby": { user_count: 2 } } });
  const news = await (
    await server.get({ path: "/channels/news", params: { info: "subscription_count" } })
  ).json();
  assert.deepEqual(news, { occupied: true, subscription_count: 3 });
  const lobby = await (
    await server.get({
      path: "/channels/presence-lobby",
      params: { info: "user_count,subscription_count" },
    })
  ).json();
  assert.deepEqual(lobby, { occupied: true, user_count: 2, subscription_count: 3 });
  const users = await (await server.get({ path: "/channels/presence-lobby/users" })).json();
  assert.deepEqual(users.users.map((u) => u.id).sort(), ["1", "2"]);
  const empty = await (await server.get({ path: "/channels/nobody-here" })).json();
  assert.deepEqual(empty, { occupied: false });
  // `info` on a trigger: the counts come back with the answer.
  const counted = await (
    await server.trigger("presence-lobby", "counted", {}, { info: "user_count,subscription_count" })
  ).json();
  assert.deepEqual(counted, {
    channels: { "presence-lobby": { user_count: 2, subscription_count: 3 } },
  });
  const many = await (
    await server.trigger(["news", "private-room"], "counted", {}, { info: "subscription_count" })
  ).json();
  assert.deepEqual(many, {
    channels: { news: { subscription_count: 3 }, "private-room": { subscription_count: 1 } },
  });
  const plain = await (await server.trigger("news", "counted", {})).json();
  assert.deepEqual(plain, {});
});

step("the Python server library agrees (when WSRING_PUSHER_PYTHON is set)", async () => {
  const python = process.env.WSRING_PUSHER_PYTHON;
  if (!python) {
    console.log("  SKIPPED: WSRING_PUSHER_PYTHON is not set");
    return;
  }
  const { execFileSync } = require("node:child_process");
  const text = execFileSync(python, ["server_api.py"], {
    cwd: __dirname,
    env: { ...process.env, WSRING_PUSHER_EXCLUDE: b.connection.socket_id },
    timeout: 30000,
  }).toString();
  const py = JSON.parse(text);
  const node = {
    presence: await (
      await server.get({ path: "/channels", params: { filter_by_prefix: "presence-", info: "user_count" } })
    ).json(),
    news: await (
      await server.get({ path: "/channels/news", params: { info: "subscription_count" } })
    ).json(),
    users: await (await server.get({ path: "/channels/presence-lobby/users" })).json(),
  };
  assert.deepEqual(py.presence, node.presence);
  assert.deepEqual(py.news, node.news);
  assert.deepEqual(
    py.users.users.map((u) => u.id).sort(),
    node.users.users.map((u) => u.id).sort(),
  );
  assert.equal(py.forged, "401");
  await until("python's events", () =>
    [a, c].every(
      (p) =>
        received(p, "news", "from-python").length === 1 &&
        received(p, "news", "python-batch").length === 1,
    ),
  );
  await until("b has the batch", () => received(b, "news", "python-batch").length === 1);
  assert.equal(received(b, "news", "from-python").length, 0, "b was excluded");
  assert.deepEqual(received(a, "news", "from-python")[0].data, { lib: "python" });
});

step("presence: the last connection of a user leaving removes the member", async () => {
  // c (user 1) leaves: Ann still has a's connection, so nobody hears of it.
  c.unsubscribe("presence-lobby");
  b.unsubscribe("presence-lobby");
  await until("a hears Bob leave", () =>
    received(a, "presence-lobby", "pusher:member_removed").length === 1);
  const removed = received(a, "presence-lobby", "pusher:member_removed");
  assert.equal(removed[0].data.id, "2", "only Bob left; Ann is still here");
  assert.equal(a.channel("presence-lobby").members.count, 1);
  const users = await (await server.get({ path: "/channels/presence-lobby/users" })).json();
  assert.deepEqual(users.users, [{ id: "1" }]);
});

/** What the webhook receiver verified so far. */
async function webhooks() {
  const res = await fetch(`http://${WEBHOOKS}/events`);
  return res.json();
}

/** The received webhook events matching `fields`. */
function hooked(got, fields) {
  return got.events.filter((e) => Object.entries(fields).every(([k, v]) => e[k] === v));
}

/** Waits until the receiver has events matching each of `wanted`. */
async function untilHooks(what, wanted) {
  const deadline = Date.now() + 15000;
  for (;;) {
    const got = await webhooks();
    const missing = wanted.filter((w) => hooked(got, w).length === 0);
    if (missing.length === 0) return got;
    if (Date.now() > deadline) {
      throw new Error(`no webhook for ${what}: ${JSON.stringify(missing)}; got ${JSON.stringify(got)}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

step("webhooks in Pusher's format: verified by the pusher library, once per cluster", async () => {
  if (!WEBHOOKS) {
    console.log("  SKIPPED: WSRING_PUSHER_WEBHOOKS is not set");
    return;
  }
  // What the steps so far did, with clients on three nodes.
  let got = await untilHooks("the steps so far", [
    { name: "channel_occupied", channel: "news" },
    { name: "channel_occupied", channel: "private-room" },
    { name: "channel_occupied", channel: "presence-lobby" },
    { name: "member_added", channel: "presence-lobby", user_id: "1" },
    { name: "member_added", channel: "presence-lobby", user_id: "2" },
    { name: "member_removed", channel: "presence-lobby", user_id: "2" },
    { name: "client_event", channel: "presence-lobby", event: "client-typing" },
    { name: "client_event", channel: "presence-lobby", event: "client-reply" },
  ]);
  // Once for the cluster, not once per node or connection: user 1 has two
  // connections on two nodes, news subscribers are on three.
  assert.equal(hooked(got, { name: "channel_occupied", channel: "news" }).length, 1);
  assert.equal(hooked(got, { name: "member_added", user_id: "1" }).length, 1);
  assert.equal(hooked(got, { name: "member_removed", user_id: "1" }).length, 0, "a is still in");
  const typing = hooked(got, { name: "client_event", channel: "presence-lobby", event: "client-typing" });
  assert.equal(typing.length, 1);
  assert.deepEqual(JSON.parse(typing[0].data), { who: "Ann" });
  assert.equal(typing[0].user_id, "1");
  assert.equal(typing[0].socket_id, a.connection.socket_id);
  assert.ok(typing[0].time_ms > 1.6e12);
  // A channel with subscribers on two nodes is occupied once and vacated
  // once, when the last one anywhere leaves.
  for (const p of [a, b]) assert.equal((await subscribe(p, "hooked")).status, "ok");
  await untilHooks("hooked occupied", [{ name: "channel_occupied", channel: "hooked" }]);
  // A node-level vacated (a's node first) would make two of each.
  a.unsubscribe("hooked");
  b.unsubscribe("hooked");
  got = await untilHooks("hooked vacated", [{ name: "channel_vacated", channel: "hooked" }]);
  assert.equal(hooked(got, { name: "channel_occupied", channel: "hooked" }).length, 1);
  assert.equal(hooked(got, { name: "channel_vacated", channel: "hooked" }).length, 1);
  assert.equal(got.invalid, 0, "every delivery verified");
});

step("user authentication: signin, sendToUser across nodes, a forged signin refused", async () => {
  // Two connections of user u-7 on two nodes, one of u-8, one forged.
  const u7 = [client({ signin: "u-7" }), client({ signin: "u-7" })];
  const u8 = client({ signin: "u-8" });
  const forged = client({ signin: "u-7", secret: "not-the-secret" });
  const all = [...u7, u8, forged];
  await Promise.all(all.map(connected));
  const errors = [];
  forged.connection.bind("error", (e) => errors.push(e));
  for (const p of all) p.signin();
  await until("signed in, in the user's channel", () =>
    [...u7, u8].every((p) => p.user.user_data && p.user.serverToUserChannel && p.user.serverToUserChannel.subscribed));
  assert.equal(u7[0].user.user_data.id, "u-7");
  await until("the forged signin refused", () => errors.length > 0);
  assert.equal(errors[0].data.code, 4009);
  assert.equal(forged.user.user_data, null);
  const got = new Map(all.map((p) => [p, []]));
  for (const p of all) p.user.bind("personal", (data) => got.get(p).push(data));
  await server.sendToUser("u-7", "personal", { to: "u-7" });
  await server.sendToUser("u-8", "personal", { to: "u-8" });
  await until("each user's events on every one of its connections", () =>
    u7.every((p) => got.get(p).length === 1) && got.get(u8).length === 1);
  assert.deepEqual(got.get(u7[1])[0], { to: "u-7" });
  assert.deepEqual(got.get(u8)[0], { to: "u-8" });
  assert.equal(got.get(forged).length, 0, "not signed in: not reached");

  // terminate_connections closes the user's connections on every node
  // with 4009; pusher-js takes it as refused and does not reconnect.
  const closes = [];
  for (const p of u7) {
    p.connection.bind("state_change", ({ current }) => closes.push(current));
  }
  await server.terminateUserConnections("u-7");
  await until("u-7's connections closed", () =>
    u7.every((p) => p.connection.state === "disconnected"));
  assert.ok(!closes.includes("connecting"), `no reconnect: ${closes}`);
  assert.equal(u8.connection.state, "connected", "another user stays");
  await server.sendToUser("u-8", "personal", { after: true });
  await until("u-8 still served", () => got.get(u8).length === 2);
  for (const p of all) p.disconnect();
});

step("a request signed with another secret is refused with 401", async () => {
  const wrong = new PusherServer({
    appId: APP_ID,
    key: KEY,
    secret: "not-the-secret",
    host: API_HOST,
    port: API_PORT,
    useTLS: false,
  });
  const e = await rejected(wrong.trigger("news", "forged", {}));
  assert.equal(e.status, 401);
  assert.match(e.body, /signature/);
});

step("a drained node's clients reconnect through the gateway and re-subscribe", async () => {
  // Clients connected straight to a node would knock on the drained node
  // again; they are done anyway.
  for (const p of [a, b, c, bad]) p.disconnect();
  const crowd = [];
  for (let i = 0; i < 9; i++) {
    crowd.push(client({ user: `d${i}`, info: { i }, host: HOSTS[0] }));
  }
  await Promise.all(crowd.map(connected));
  for (const p of crowd) {
    const { status, ch } = await subscribe(p, "presence-drain");
    assert.equal(status, "ok");
    record(ch);
  }
  const before = crowd.map((p) => p.connection.socket_id);
  const local = await shares("presence-drain");
  assert.equal(local.reduce((x, y) => x + y, 0), 9, `shares ${local}`);
  // The gateway placed them by load: not all on one node.
  assert.ok(Math.max(...local) < 9, `spread over the nodes: ${local}`);
  const busiest = local.indexOf(Math.max(...local));
  gone.add(busiest);
  process.kill(NODE_PIDS[busiest], "SIGTERM");
  await backAfter(crowd, before, local[busiest], "presence-drain", "after-drain");
});

step("a SIGKILLed node's clients reconnect and presence is right again after the TTL", async () => {
  const crowd = open.filter((p) => p.channel("presence-drain"));
  const before = crowd.map((p) => p.connection.socket_id);
  const local = await shares("presence-drain");
  assert.equal(local.reduce((x, y) => x + y, 0), 9, `shares ${local}`);
  const busiest = local.indexOf(Math.max(...local));
  gone.add(busiest);
  process.kill(NODE_PIDS[busiest], "SIGKILL");
  await backAfter(crowd, before, local[busiest], "presence-drain", "after-kill");
});

/** Nodes stopped by the steps (indexes into NODE_PIDS). */
const gone = new Set();

/**
 * Each running node's own subscription count of `channel` (what nodes ask
 * each other), in NODE_PIDS order (0 for a stopped node).
 */
function shares(channel) {
  return Promise.all(
    HOSTS.slice(1).map(async (h, i) => {
      if (gone.has(i)) return 0;
      const [host, port] = h.split(":");
      const node = new PusherServer({ appId: APP_ID, key: KEY, secret: SECRET, host, port, useTLS: false });
      const res = await node.get({
        path: "/channels",
        params: { filter_by_prefix: channel, scope: "local" },
      });
      const share = (await res.json()).channels[channel];
      return share ? share.s : 0;
    }),
  );
}

/**
 * After a node stopped: exactly its `expected` connections of `crowd` come
 * back with new socket ids, every client is connected and subscribed to
 * `channel` again with the whole member list, the API agrees, and an
 * event `name` reaches everyone.
 */
async function backAfter(crowd, before, expected, channel, name) {
  const n = crowd.length;
  // The stopped node's connections move (new socket ids; a drain spreads
  // their closes over its window, a crash takes the TTL to be noticed).
  let moved = 0;
  await until(
    "every client back",
    () => {
      moved = crowd.filter((p, i) => p.connection.socket_id !== before[i]).length;
      return (
        moved >= expected &&
        crowd.every((p) => p.connection.state === "connected" && p.channel(channel).subscribed)
      );
    },
    30000,
  );
  await until(
    "every client's member list whole",
    () => crowd.every((p) => p.channel(channel).members.count === n),
    30000,
  );
  const users = async () =>
    (await (await server.get({ path: `/channels/${channel}/users` })).json()).users.length;
  const deadline = Date.now() + 30000;
  while ((await users()) !== n) {
    assert.ok(Date.now() < deadline, `the API lists ${n} users again within 30 s`);
    await new Promise((r) => setTimeout(r, 100));
  }
  // Resubscribed channels deliver again, on every node still up.
  for (const p of crowd) p.channel(channel).got = [];
  await server.trigger(channel, name, { moved });
  await until(`${name} everywhere`, () =>
    crowd.every((p) => received(p, channel, name).length === 1));
  assert.equal(moved, expected, "exactly the stopped node's connections moved");
  console.log(`  (${moved} of ${n} connections moved)`);
}

(async () => {
  let passed = 0;
  let failed = 0;
  const limit = setTimeout(() => {
    console.log("FAILED: the run took over 120 s");
    process.exit(1);
  }, 120000);
  for (const { name, fn } of steps) {
    try {
      await fn();
      passed++;
      console.log(`ok - ${name}`);
    } catch (e) {
      failed++;
      console.log(`not ok - ${name}\n  ${e && e.stack ? e.stack : e}`);
      break;
    }
  }
  for (const p of open) p.disconnect();
  clearTimeout(limit);
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed === 0 && passed === steps.length ? 0 : 1);
})();
