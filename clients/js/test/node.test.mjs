// node.test.mjs — the client under Node.js against real `wsring dev`
// clusters (an open one, a secured one, a durable one), running every
// scenario of scenarios.mjs:
//
//   node --test test/node.test.mjs                              # built-in WebSocket if there is one, else `ws`
//   WSRING_TEST_WEBSOCKET=ws node --test test/node.test.mjs     # force the `ws` package
//   node --experimental-websocket --test test/node.test.mjs     # Node 20/21: the built-in one
//
// With the built-in WebSocket the clients get no `WebSocket` option (the
// client finds the global one); with `ws` they are given `ws`'s class, and
// one more test connects without the option, so the client imports `ws`
// itself. crates/wsring/tests/js_package.rs runs this file both ways.

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import { WebSocket as WsWebSocket } from "ws";
import * as client from "../src/wsring-client.js";
import { startDev, token, tokens } from "./cluster.mjs";
import { API_KEY, CLUSTERS, JWT_SECRET, SCENARIOS } from "./scenarios.mjs";

const wanted = process.env.WSRING_TEST_WEBSOCKET || (typeof globalThis.WebSocket === "function" ? "builtin" : "ws");
if (!["builtin", "ws"].includes(wanted)) throw new Error(`WSRING_TEST_WEBSOCKET must be builtin or ws, not ${wanted}`);
if (wanted === "builtin" && typeof globalThis.WebSocket !== "function") {
  throw new Error(`Node ${process.version} has no global WebSocket here (Node 20 and 21 need --experimental-websocket)`);
}
const options = wanted === "ws" ? { WebSocket: WsWebSocket } : {};
const TEST_MS = 90_000;

describe(`wsring-client on Node ${process.version} with the ${wanted === "ws" ? "`ws` package" : "built-in WebSocket"}`, () => {
  for (const [kind, flags] of Object.entries(CLUSTERS)) {
    describe(`${kind} cluster (wsring dev ${flags.join(" ")})`, () => {
      let cluster;
      let ctx;
      before(async () => {
        cluster = await startDev(flags);
        ctx = { url: cluster.url, http: cluster.http, apiKey: kind === "secured" ? API_KEY : null, tokens: tokens(), options };
      });
      after(() => cluster?.stop());
      for (const s of SCENARIOS[kind]) {
        test(s.name, { timeout: TEST_MS }, () => s.run(client, ctx));
      }
    });
  }

  describe("one module for applications and the dashboard", () => {
    let cluster;
    before(async () => {
      cluster = await startDev([]);
    });
    after(() => cluster?.stop());

    test("without the `WebSocket` option the client uses the global one, else imports `ws`", { timeout: TEST_MS }, async () => {
      if (wanted === "ws") assert.equal(globalThis.WebSocket, undefined, "this run has no global WebSocket");
      const c = await client.connect({ url: cluster.url, user: "finder" });
      try {
        const got = new Promise((resolve) => c.on("message", resolve));
        await c.send("finder", { found: true });
        assert.deepEqual((await got).data, { found: true });
      } finally {
        c.close();
      }
    });

    test("the gateway serves this very file at /wsring-client.js", async () => {
      const served = await (await fetch(`${cluster.http}/wsring-client.js`)).text();
      const file = fs.readFileSync(new URL("../src/wsring-client.js", import.meta.url), "utf8");
      // The binary embeds the file when it is built: a difference means a
      // stale binary (or a second copy somewhere).
      assert.ok(served === file, "the gateway's /wsring-client.js differs from src/wsring-client.js; rebuild wsring (cargo build -p wsring)");
    });

    test("a URL the WebSocket class refuses fails connect() at once with bad_request", async () => {
      await assert.rejects(
        client.connect({ url: "not a url", user: "finder", ...options }),
        (e) => e instanceof client.WsringError && e.code === "bad_request",
      );
    });

    test("an invalid user id or a missing URL is a TypeError: a rejection from connect(), thrown by the constructor", async () => {
      for (const bad of [{ url: cluster.url, user: "no spaces" }, { url: cluster.url, user: "@server" }, { user: "finder" }]) {
        await assert.rejects(client.connect({ ...bad, ...options }), TypeError);
        assert.throws(() => new client.WsringClient({ ...bad, ...options }), TypeError);
      }
    });
  });

  describe("a send to a user whose node just died (wsring dev --heartbeat-ttl 30s)", () => {
    let cluster;
    before(async () => {
      // A long TTL keeps the crashed node in the ring for the whole test:
      // the window in which a non-durable direct message is lost.
      cluster = await startDev(["--heartbeat-ttl", "30s"]);
    });
    after(() => cluster?.stop());

    /** A user named `prefix<i>` whose owner is `node`. */
    async function userOn(prefix, node) {
      for (let i = 0; i < 10_000; i++) {
        const r = await fetch(`${cluster.http}/api/route?user=${prefix}${i}`);
        assert.equal(r.status, 200);
        if ((await r.json()).node === node) return `${prefix}${i}`;
      }
      throw new Error(`no user on ${node}`);
    }

    test("send() resolves with {delivered: false}, and with {} for a live user", { timeout: TEST_MS }, async () => {
      const [sender, victim, alive] = [await userOn("s", "n1"), await userOn("v", "n2"), await userOn("a", "n3")];
      const s = await client.connect({ url: cluster.url, user: sender, ...options });
      // The victim connects to n2 itself (`direct`), not through the
      // gateway: a tunnel that ends makes the gateway suspect n2 and drop it
      // within milliseconds, which would close the window this test needs.
      const v = await client.connect({ url: cluster.url, user: victim, direct: true, ...options });
      assert.equal(v.node, "n2");
      const a = await client.connect({ url: cluster.url, user: alive, ...options });
      try {
        const got = new Promise((resolve) => a.on("message", resolve));
        assert.deepEqual(await s.send(alive, 1), {});
        assert.equal((await got).data, 1);

        // Closed at once, so it does not try to reconnect to the dead node.
        const lostSession = new Promise((resolve) => v.on("disconnected", () => resolve(v.close())));
        const r = await fetch(`${cluster.http}/api/nodes/n2?mode=crash`, { method: "DELETE" });
        assert.equal(r.status, 202);
        await lostSession;
        const route = await (await fetch(`${cluster.http}/api/route?user=${victim}`)).json();
        assert.equal(route.node, "n2", "n2 is still the owner");

        assert.deepEqual(await s.send(victim, 2), { delivered: false });
        assert.deepEqual(await s.send(alive, 3), {}, "a live user's ack is unchanged");
        assert.equal(await s.publish("room", 4), undefined, "publish still resolves with nothing");
      } finally {
        s.close();
        v.close();
        a.close();
      }
    });
  });

  describe("tokens that expire (wsring dev --durable --jwt-leeway 1s)", () => {
    let cluster;
    before(async () => {
      cluster = await startDev(["--durable", "--jwt-secret", JWT_SECRET, "--api-key", API_KEY, "--jwt-leeway", "1s"]);
    });
    after(() => cluster?.stop());

    test("each session is closed with 3000 at its token's expiry; the token function reconnects at once and nothing is lost", { timeout: TEST_MS }, async () => {
      let asked = 0;
      const fresh = () => {
        asked++;
        return token("ivy", { exp: Math.floor(Date.now() / 1000) + 2 });
      };
      const c = await client.connect({ url: cluster.url, user: "ivy", token: fresh, ...options });
      const got = [];
      const closes = [];
      c.on("message", (m) => got.push(m.data));
      c.on("disconnected", (e) => closes.push(e.code));
      try {
        // A server-side sender across about three expiries.
        const N = 250;
        for (let i = 0; i < N; i++) {
          const r = await fetch(`${cluster.http}/api/send`, {
            method: "POST",
            headers: { authorization: `Bearer ${API_KEY}`, "content-type": "application/json" },
            body: JSON.stringify({ to: "ivy", data: i }),
          });
          assert.equal(r.status, 202);
          await new Promise((r) => setTimeout(r, 25));
        }
        const deadline = Date.now() + 15_000;
        while (got.length < N && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
        assert.deepEqual(got, Array.from({ length: N }, (_, i) => i), "every message once, in order");
        assert.ok(closes.filter((code) => code === client.CLOSE_EXPIRED).length >= 2, `closed at expiry: ${closes}`);
        assert.ok(asked > closes.length, `a fresh token for every connect (${asked} for ${closes.length} closes)`);
      } finally {
        c.close();
      }
    });
  });
});
