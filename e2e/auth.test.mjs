// auth.test.mjs — the dashboard and the JS client against a secured
// `wsring dev` (connect tokens and an API key), in real headless Chromium:
//
//   WSRING_DASHBOARD_URL=http://127.0.0.1:7000/ node e2e/auth.test.mjs
//
// The cluster is started with `--jwt-secret e2e-jwt-secret --api-key
// e2e-api-key` (crates/wsring/tests/dashboard_e2e.rs does this). It checks
// that the dashboard shows the cluster read-only and locked until the key is
// entered, then goes live and its controls work; and that the JS client
// connects with a token (its `sub` names the user) and gets `forbidden` for a
// room outside the token's `rooms` claim while staying connected.

import { createHmac } from "node:crypto";
import { ConsoleWatch, Steps, assert, dashboardUrl, launch, overallLimit, waitFor } from "./harness.mjs";

const URL_ = dashboardUrl("auth.test.mjs");
const SECRET = "e2e-jwt-secret";
const API_KEY = "e2e-api-key";
overallLimit(120_000);
const steps = new Steps(3);

/** An HS256 JWT for `sub` with `extra` claims, valid for an hour. */
function token(sub, extra = {}) {
  const b64 = (v) => Buffer.from(JSON.stringify(v)).toString("base64url");
  const body = `${b64({ alg: "HS256", typ: "JWT" })}.${b64({ sub, exp: Math.floor(Date.now() / 1000) + 3600, ...extra })}`;
  return `${body}.${createHmac("sha256", SECRET).update(body).digest("base64url")}`;
}

const browser = await launch();
const consoleWatch = new ConsoleWatch();
const page = consoleWatch.watch(browser.context.pages()[0] ?? (await browser.context.newPage()), "auth");
const rows = () => page.$$eval('[data-testid="node-row"]', (trs) => trs.map((tr) => tr.dataset.node));

try {
  await steps.run("1. without the key the dashboard is read-only and asks for it", async () => {
    await page.goto(URL_);
    await waitFor("the key form", () => page.isVisible('[data-testid="key-form"]'));
    await waitFor("3 node rows from the open views", rows, (r) => r.length === 3);
    const label = await page.textContent('[data-testid="feed-status"] .feed-label');
    assert(label.includes("locked"), `feed says locked: ${label}`);
  });

  await steps.run("2. with the key the feed goes live and the controls work", async () => {
    await page.fill('[data-testid="key-input"]', API_KEY);
    await page.click('[data-testid="key-submit"]');
    await waitFor("the live feed", () => page.getAttribute('[data-testid="feed-status"]', "data-state"), (s) => s === "live");
    assert(!(await page.isVisible('[data-testid="key-form"]')), "the key form is gone");
    await page.click('[data-testid="add-node"]');
    await waitFor("a 4th node", rows, (r) => r.length === 4);
  });

  await steps.run("3. the JS client connects with a token; rooms outside its claim are forbidden", async () => {
    const t = token("tina", { rooms: ["chat.*"] });
    const got = await page.evaluate(async (t) => {
      const { connect } = await import("/wsring-client.js");
      const c = await connect({ url: `ws://${location.host}/ws`, user: "tina", token: t });
      let refused = null;
      try {
        await c.join("ops");
      } catch (e) {
        refused = e.code;
      }
      await c.join("chat.1");
      const out = { node: c.node, refused, state: c.state };
      c.close();
      return out;
    }, t);
    assert(got.refused === "forbidden", `join outside the claim is forbidden: ${JSON.stringify(got)}`);
    assert(got.state === "connected", `still connected: ${JSON.stringify(got)}`);
    consoleWatch.check("during the auth test");
  });
} catch {
  // Already reported; fall through to the summary.
}

await browser.close();
if (consoleWatch.problems.length) console.log(`console problems:\n  ${consoleWatch.problems.join("\n  ")}`);
process.exit(steps.summary());
