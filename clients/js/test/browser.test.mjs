// browser.test.mjs — the client in headless Chromium against real
// `wsring dev` clusters, running every scenario of scenarios.mjs in the page:
//
//   node --test test/browser.test.mjs
//
// Chromium is Debian's (/usr/bin/chromium, or $CHROMIUM_PATH), driven by
// playwright-core; playwright never downloads a browser of its own. The page
// is on the gateway's origin (its /healthz), and imports this package's
// src/wsring-client.js and test/scenarios.mjs from a path the test serves
// from disk, so what runs is the working tree's code. The page's WebSocket is
// the browser's own. A scenario not marked `noisy` must leave the console
// free of errors and warnings; none may throw an uncaught page error.

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import { chromium } from "playwright-core";
import { startDev, tokens } from "./cluster.mjs";
import { API_KEY, CLUSTERS, SCENARIOS } from "./scenarios.mjs";

const PKG = new URL("..", import.meta.url);
/** Files the page may import, under /__wsring-js/ on the gateway's origin. */
const SERVED = ["src/wsring-client.js", "test/scenarios.mjs"];
const TEST_MS = 90_000;

let browser;

before(async () => {
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM_PATH || "/usr/bin/chromium",
    headless: true,
    // No sandbox (CI runs as root); no calls home, which a closed network
    // refuses (and Chromium would retry).
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"],
  });
});

after(() => browser?.close());

for (const [kind, flags] of Object.entries(CLUSTERS)) {
  describe(`wsring-client in Chromium: ${kind} cluster (wsring dev ${flags.join(" ")})`, () => {
    let cluster;
    let page;
    const problems = [];
    const pageErrors = [];

    before(async () => {
      cluster = await startDev(flags);
      page = await browser.newPage();
      page.on("console", (m) => {
        if (m.type() === "error" || m.type() === "warning") problems.push(`console.${m.type()}: ${m.text()}`);
      });
      page.on("pageerror", (e) => pageErrors.push(e.message));
      await page.route("**/__wsring-js/**", (route) => {
        const rel = new URL(route.request().url()).pathname.replace(/^\/__wsring-js\//, "");
        if (!SERVED.includes(rel)) return route.fulfill({ status: 404, body: "not served" });
        return route.fulfill({ path: new URL(rel, PKG).pathname, contentType: "text/javascript; charset=utf-8" });
      });
      const r = await page.goto(`${cluster.http}/healthz`);
      assert.equal(r.status(), 200);
    });

    after(async () => {
      await page?.close();
      await cluster?.stop();
    });

    SCENARIOS[kind].forEach((s, index) => {
      test(s.name, { timeout: TEST_MS }, async () => {
        problems.length = 0;
        const ctx = { url: cluster.url, http: cluster.http, apiKey: kind === "secured" ? API_KEY : null, tokens: tokens(), options: {} };
        await page.evaluate(
          async ({ kind, index, ctx }) => {
            const client = await import("/__wsring-js/src/wsring-client.js");
            const { SCENARIOS } = await import("/__wsring-js/test/scenarios.mjs");
            await SCENARIOS[kind][index].run(client, ctx);
          },
          { kind, index, ctx },
        );
        assert.deepEqual(pageErrors, [], "no uncaught errors in the page");
        if (!s.noisy) assert.deepEqual(problems, [], "no console errors or warnings");
      });
    });
  });
}

test("the page imported the working tree's client", () => {
  // Guards the route above: a typo there would make every import 404 and
  // every scenario fail, but this names the cause.
  for (const rel of SERVED) assert.ok(fs.existsSync(new URL(rel, PKG)), rel);
});
