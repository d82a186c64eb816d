// pusher-js's browser build, unmodified, in headless Chromium (Debian's,
// driven by playwright-core) against a running wsring cluster; the page's
// channel authorization is signed by the `pusher` server library here, as
// an application's auth endpoint would. Then the same scenario through
// Laravel Echo's Pusher connector (`laravel-echo`'s browser build, pinned
// in package-lock.json): public, private and presence channels across
// nodes, a whisper (client event), a leave.
//
// Run by crates/wsring/tests/pusher.rs with the environment of
// pusher.test.js (WSRING_PUSHER_HOSTS: the gateway first, then nodes).
// Prints one line per step and "N passed, N failed"; exits non-zero on
// the first failure.

"use strict";

const { chromium } = require("playwright-core");
const PusherServer = require("pusher");
const assert = require("node:assert/strict");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");

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

const server = new PusherServer({
  appId: APP_ID,
  key: KEY,
  secret: SECRET,
  host: API_HOST,
  port: API_PORT,
  useTLS: false,
});

async function until(what, probe, ms = 15000) {
  const started = Date.now();
  for (;;) {
    if (await probe()) return;
    if (Date.now() - started > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

let page;
const inPage = (fn, arg) => page.evaluate(fn, arg);

const steps = [];
const step = (name, fn) => steps.push({ name, fn });

step("pusher-js connects from the browser through the gateway and to a node", async () => {
  await inPage(
    ({ key, hosts }) => {
      window.clients = {};
      window.got = [];
      // pusher-js's options for `host`, also handed to Echo below.
      window.connectTo = (host) => {
        const [wsHost, wsPort] = host.split(":");
        return {
          cluster: "local",
          wsHost,
          wsPort: Number(wsPort),
          forceTLS: false,
          enabledTransports: ["ws"],
          disableStats: true,
        };
      };
      const make = (name, host, user, forge) => {
        const c = new window.Pusher(key, {
          ...window.connectTo(host),
          channelAuthorization: {
            customHandler: ({ socketId, channelName }, callback) => {
              window
                .authorize(socketId, channelName, user, !!forge)
                .then((auth) => callback(null, auth), (e) => callback(e, null));
            },
          },
        });
        c.bind_global((event, data) => window.got.push({ who: name, event, data }));
        window.clients[name] = c;
      };
      make("ann", hosts[0], "ann");
      make("bob", hosts[1], "bob");
      make("eve", hosts[0], "eve", true);
    },
    { key: KEY, hosts: HOSTS },
  );
  await until("three connected", () =>
    inPage(() =>
      Object.values(window.clients).every((c) => c.connection.state === "connected"),
    ),
  );
});

step("presence: both members listed in both pages' clients", async () => {
  await inPage(() => {
    for (const n of ["ann", "bob"]) window.clients[n].subscribe("presence-web");
  });
  await until("two members each", () =>
    inPage(() =>
      ["ann", "bob"].every((n) => window.clients[n].channel("presence-web").members.count === 2),
    ),
  );
});

step("a forged authorization is refused with 401", async () => {
  await inPage(() => {
    window.refusal = null;
    const ch = window.clients.eve.subscribe("private-web");
    ch.bind("pusher:subscription_error", (e) => (window.refusal = e.status));
  });
  await until("the refusal", () => inPage(() => window.refusal === 401));
});

step("client events cross nodes and are not echoed", async () => {
  await inPage(() => {
    for (const n of ["ann", "bob"]) window.clients[n].subscribe("private-web");
  });
  await until("both subscribed", () =>
    inPage(() => ["ann", "bob"].every((n) => window.clients[n].channel("private-web").subscribed)),
  );
  await inPage(() => window.clients.ann.channel("private-web").trigger("client-hi", { from: "ann" }));
  await inPage(() => window.clients.bob.channel("private-web").trigger("client-hi", { from: "bob" }));
  await until("each hears the other", () =>
    inPage(
      () =>
        window.got.some((e) => e.who === "bob" && e.event === "client-hi" && e.data.from === "ann") &&
        window.got.some((e) => e.who === "ann" && e.event === "client-hi" && e.data.from === "bob"),
    ),
  );
  const echoes = await inPage(
    () => window.got.filter((e) => e.event === "client-hi" && e.who === e.data.from).length,
  );
  assert.equal(echoes, 0);
});

step("server events reach the browser, minus the excluded socket", async () => {
  const annSocket = await inPage(() => window.clients.ann.connection.socket_id);
  await server.trigger("presence-web", "news", { n: 1 }, { socket_id: annSocket });
  await server.trigger("presence-web", "news", { n: 2 });
  await until("bob has both, ann the second", () =>
    inPage(() => {
      const n = (who) => window.got.filter((e) => e.who === who && e.event === "news").map((e) => e.data.n);
      return n("bob").join() === "1,2" && n("ann").join() === "2";
    }),
  );
});

step("Laravel Echo's Pusher connector: channels across nodes, whisper, leave", async () => {
  await page.addScriptTag({ path: path.join(__dirname, "node_modules/laravel-echo/dist/echo.iife.js") });
  await inPage(
    ({ key, hosts }) => {
      window.echoGot = [];
      const got = (who, ev, data) => window.echoGot.push({ who, ev, data });
      const make = (who, host) =>
        new window.Echo.default({
          broadcaster: "pusher",
          key,
          ...window.connectTo(host),
          withoutInterceptors: true,
          channelAuthorization: {
            customHandler: ({ socketId, channelName }, callback) => {
              window
                .authorize(socketId, channelName, `echo-${who}`, false)
                .then((auth) => callback(null, auth), (e) => callback(e, null));
            },
          },
        });
      // Two different nodes.
      window.echos = { ann: make("ann", hosts[1]), bob: make("bob", hosts[hosts.length - 1]) };
      for (const who of ["ann", "bob"]) {
        const echo = window.echos[who];
        echo.channel("echo-news").listen(".greet", (d) => got(who, "greet", d));
        echo.private("echo-orders").listen(".shipped", (d) => got(who, "shipped", d));
        echo
          .join("echo-room")
          .here((users) => got(who, "here", users.length))
          .joining(() => got(who, "joining"))
          .leaving(() => got(who, "leaving"))
          .listenForWhisper("typing", (d) => got(who, "whisper", d));
      }
    },
    { key: KEY, hosts: HOSTS },
  );
  const count = (who, ev) =>
    inPage(({ who, ev }) => window.echoGot.filter((e) => e.who === who && e.ev === ev).length, { who, ev });
  const members = (who) =>
    inPage((who) => {
      const ch = window.echos[who].connector.pusher.channel("presence-echo-room");
      return ch && ch.subscribed ? ch.members.count : 0;
    }, who);
  const subscribed = (who, name) =>
    inPage(
      ({ who, name }) => {
        const ch = window.echos[who].connector.pusher.channel(name);
        return !!(ch && ch.subscribed);
      },
      { who, name },
    );
  await until("both Echo clients in every channel, each seeing two members", async () => {
    for (const who of ["ann", "bob"]) {
      for (const name of ["echo-news", "private-echo-orders"]) {
        if (!(await subscribed(who, name))) return false;
      }
      if ((await members(who)) !== 2) return false;
    }
    return true;
  });
  assert.equal(await count("ann", "here"), 1);
  await server.trigger("echo-news", "greet", { n: 1 });
  await server.trigger("private-echo-orders", "shipped", { id: 7 });
  await until("both Echo clients got both events", async () => {
    for (const who of ["ann", "bob"]) {
      if ((await count(who, "greet")) !== 1 || (await count(who, "shipped")) !== 1) return false;
    }
    return true;
  });
  await inPage(() => window.echos.ann.join("echo-room").whisper("typing", { who: "ann" }));
  await until("bob hears the whisper", async () => (await count("bob", "whisper")) === 1);
  assert.equal(await count("ann", "whisper"), 0, "not echoed");
  await inPage(() => window.echos.bob.leave("echo-room"));
  await until("ann sees bob leave", async () => (await count("ann", "leaving")) === 1);
  assert.equal(await members("ann"), 1);
  await inPage(() => Object.values(window.echos).forEach((e) => e.disconnect()));
});

(async () => {
  let passed = 0;
  let failed = 0;
  const limit = setTimeout(() => {
    console.log("FAILED: the browser run took over 120 s");
    process.exit(1);
  }, 120000);
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "wsring-pusher-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM_PATH || "/usr/bin/chromium",
    headless: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      // Without these Chromium keeps dialling Google's hosts, which a
      // closed network refuses.
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
      "--disable-quic",
    ],
  });
  try {
    page = await context.newPage();
    const errors = [];
    page.on("pageerror", (e) => errors.push(String(e)));
    await page.exposeFunction("authorize", (socketId, channel, user, forge) => {
      const signer = forge
        ? new PusherServer({ appId: APP_ID, key: KEY, secret: "forged", host: API_HOST })
        : server;
      const presence = channel.startsWith("presence-") ? { user_id: user, user_info: {} } : undefined;
      return signer.authorizeChannel(socketId, channel, presence);
    });
    await page.addScriptTag({ path: require.resolve("pusher-js/dist/web/pusher.min.js") });
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
    if (errors.length) {
      failed++;
      console.log(`not ok - page errors: ${errors.join(" | ")}`);
    }
    await inPage(() => Object.values(window.clients || {}).forEach((c) => c.disconnect())).catch(() => {});
  } finally {
    await context.close().catch(() => {});
    fs.rmSync(profile, { recursive: true, force: true });
  }
  clearTimeout(limit);
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed === 0 && passed === steps.length ? 0 : 1);
})();
