// client.test.mjs — end-to-end test of the JS client module
// (crates/gateway/dashboard/wsring-client.js) in real headless Chromium,
// against a live `wsring dev --durable` cluster with 3 nodes:
//
//   WSRING_DASHBOARD_URL=http://127.0.0.1:7000/ node e2e/client.test.mjs
//
// The module is imported from the gateway, as the dashboard does, and driven
// from page scripts. It checks the durable semantics the Rust SDK has: resume
// of the user stream and of joined rooms after a node crash, requests resent
// with their ids until acknowledged, duplicates dropped, and reconnects after
// `moved` + 1012 when a node joins — with every message delivered to the
// application exactly once. crates/wsring/tests/dashboard_e2e.rs runs it.

import { ConsoleWatch, Steps, assert, dashboardUrl, launch, overallLimit, waitFor } from "./harness.mjs";

const URL_ = dashboardUrl("client.test.mjs");
overallLimit(180_000);
const steps = new Steps(4);

const browser = await launch();
const consoleWatch = new ConsoleWatch();
const page = consoleWatch.watch(browser.context.pages()[0] ?? (await browser.context.newPage()), "client");

/** Per-user summary from the page: connection, messages (as "tag"), events, stats. */
const summary = (users) =>
  page.evaluate(
    (users) =>
      Object.fromEntries(
        users.map((u) => {
          const c = window.T.clients[u];
          return [
            u,
            {
              state: c.state,
              node: c.node,
              tags: window.T.got[u].map((m) => m.data.tag),
              seqs: window.T.got[u].map((m) => m.seq),
              events: window.T.events[u],
              stats: { ...c.stats },
            },
          ];
        }),
      ),
    users,
  );

const unique = (a) => new Set(a).size === a.length;

try {
  await steps.run("1. clients connect to a durable cluster and get stream positions", async () => {
    // A same-origin page that is not the dashboard, so only this script's
    // clients exist.
    await page.goto(new URL("/healthz", URL_).href);
    await page.evaluate(async () => {
      const { connect } = await import("/wsring-client.js");
      const url = `ws://${location.host}/ws`;
      window.T = { clients: {}, got: {}, events: {} };
      // Helpers for later steps: an HTTP call retried with the same
      // idempotency key until accepted (the cluster may be converging).
      window.T.post = async (path, body) => {
        for (let i = 0; i < 100; i++) {
          const r = await fetch(path, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
          if (r.status === 202) return;
          await new Promise((res) => setTimeout(res, 100));
        }
        throw new Error(`${path} not accepted`);
      };
      window.T.make = async (user) => {
        const c = await connect({ url, user });
        window.T.clients[user] = c;
        window.T.got[user] = [];
        window.T.events[user] = [];
        c.on("message", (m) => window.T.got[user].push(m));
        for (const ev of ["moved", "resumed", "disconnected", "connected"]) {
          c.on(ev, (d) => window.T.events[user].push({ ev, ...d }));
        }
        return c;
      };
      await window.T.make("bob");
      await window.T.make("alice");
      await window.T.clients.bob.join("r1");
      const sends = [];
      for (let i = 0; i < 5; i++) sends.push(window.T.clients.alice.send("bob", { tag: `before-${i}` }));
      for (let i = 0; i < 3; i++) sends.push(window.T.clients.alice.publish("r1", { tag: `room-before-${i}` }));
      await Promise.all(sends);
    });
    const s = await waitFor("bob to get 8 messages", () => summary(["bob"]), (s) => s.bob.tags.length === 8);
    assert(s.bob.seqs.every((q) => typeof q === "number"), `durable messages carry seq: ${s.bob.seqs}`);
  });

  let crashed;
  await steps.run("2. after a crash bob resumes his stream and room: nothing lost, nothing twice", async () => {
    crashed = (await summary(["bob"])).bob.node;
    const r = await fetch(new URL(`/api/nodes/${crashed}?mode=crash`, URL_), { method: "DELETE" });
    assert(r.status === 202, `crash accepted: ${r.status}`);
    // Sent while bob is cut off: through alice's client (pending until
    // acked, resent after her own reconnect if she was on the same node)
    // and through the HTTP API.
    await page.evaluate(async () => {
      const p = [];
      for (let i = 0; i < 5; i++) p.push(window.T.clients.alice.send("bob", { tag: `during-${i}` }));
      for (let i = 0; i < 5; i++) p.push(window.T.post("/api/send", { to: "bob", data: { tag: `api-${i}` }, id: `e2e-api-${i}` }));
      for (let i = 0; i < 3; i++) p.push(window.T.post("/api/publish", { room: "r1", data: { tag: `room-during-${i}` }, id: `e2e-room-${i}` }));
      await Promise.all(p);
    });
    const s = await waitFor(
      "bob reconnected elsewhere with all 21 messages",
      () => summary(["bob"]),
      (s) => s.bob.state === "connected" && s.bob.node !== crashed && s.bob.tags.length >= 21,
      20_000,
    );
    const tags = s.bob.tags;
    assert(unique(tags), `no duplicates reach the app: ${tags}`);
    assert(tags.length === 21, `exactly 21 messages: ${tags}`);
    // alice's messages keep her order.
    const alice = tags.filter((t) => /^(before|during)-/.test(t));
    assert(
      JSON.stringify(alice) === JSON.stringify([0, 1, 2, 3, 4].map((i) => `before-${i}`).concat([0, 1, 2, 3, 4].map((i) => `during-${i}`))),
      `alice's order kept: ${alice}`,
    );
    const resumed = s.bob.events.filter((e) => e.ev === "resumed");
    assert(resumed.some((e) => e.stream === "user" && e.complete), `user stream resumed completely: ${JSON.stringify(resumed)}`);
    assert(resumed.some((e) => e.stream === "room:r1" && e.complete), `room resumed completely: ${JSON.stringify(resumed)}`);
  });

  await steps.run("3. a node joins while messages flow: moved clients reconnect and miss nothing", async () => {
    const users = Array.from({ length: 24 }, (_, i) => `mv-${i}`);
    await page.evaluate(async (users) => {
      await Promise.all(users.map((u) => window.T.make(u)));
    }, users);
    // Send 8 messages to each user, add a node halfway through.
    await page.evaluate(async (users) => {
      const p = [];
      for (let i = 0; i < 8; i++) {
        if (i === 4) p.push(fetch("/api/nodes", { method: "POST" }).then((r) => r.status));
        for (const u of users) p.push(window.T.post("/api/send", { to: u, data: { tag: `m-${i}` }, id: `e2e-${u}-${i}` }));
        await new Promise((res) => setTimeout(res, 25));
      }
      await Promise.all(p);
    }, users);
    const s = await waitFor(
      "every user connected with its 8 messages",
      () => summary(users),
      (s) => users.every((u) => s[u].state === "connected" && s[u].tags.length >= 8),
      20_000,
    );
    let moved = 0;
    for (const u of users) {
      const tags = s[u].tags;
      assert(JSON.stringify(tags) === JSON.stringify([0, 1, 2, 3, 4, 5, 6, 7].map((i) => `m-${i}`)), `${u} got each message once, in order: ${tags}`);
      if (s[u].events.some((e) => e.ev === "moved")) {
        moved++;
        const closes = s[u].events.filter((e) => e.ev === "disconnected").map((e) => e.code);
        assert(closes.includes(1012), `${u} saw close 1012 after moved: ${closes}`);
      }
    }
    assert(moved > 0, "some users were moved to the new node");
    console.log(`     ${moved} of ${users.length} users moved and resumed`);
  });

  await steps.run("4. requests fail cleanly after close, and no console errors", async () => {
    const err = await page.evaluate(async () => {
      const c = window.T.clients.alice;
      c.close();
      try {
        await c.send("bob", { tag: "late" });
        return "resolved";
      } catch (e) {
        return `${e.name}:${e.code}:${c.state}`;
      }
    });
    assert(err === "WsringError:closed:closed", `send after close rejects with closed: ${err}`);
    consoleWatch.check("during the client test");
  });
} catch {
  // Already reported; fall through to the summary.
}

await browser.close();
if (consoleWatch.problems.length) console.log(`console problems:\n  ${consoleWatch.problems.join("\n  ")}`);
process.exit(steps.summary());
