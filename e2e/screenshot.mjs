// screenshot.mjs — regenerates docs/dashboard.png, the README's picture of
// the dashboard: a 1280x800 view of a live `wsring dev` cluster after 30
// simulated clients connected, a node was added (some clients moved to it)
// and a few messages went around. Not a test; run it by hand:
//
//   wsring dev --port 7000 &   # a fresh 3-node cluster
//   WSRING_DASHBOARD_URL=http://127.0.0.1:7000/ node e2e/screenshot.mjs [out.png]

import path from "node:path";
import { fileURLToPath } from "node:url";
import { dashboardUrl, launch, waitFor } from "./harness.mjs";

const URL_ = dashboardUrl("screenshot.mjs");
const out = path.resolve(process.argv[2] ?? path.join(path.dirname(fileURLToPath(import.meta.url)), "..", "docs", "dashboard.png"));

const browser = await launch({ width: 1280, height: 800 });
const page = browser.context.pages()[0] ?? (await browser.context.newPage());
const count = (sel) => page.$$eval(sel, (els) => els.length);
try {
  await page.goto(URL_);
  await waitFor("3 nodes", () => count('[data-testid="node-row"][data-state="up"]'), (n) => n === 3);
  for (let i = 0; i < 3; i++) await page.click('[data-testid="add-clients-10"]');
  await waitFor("30 connected", () => count('[data-testid="client-card"][data-state="connected"]'), (n) => n === 30);
  await page.click('[data-testid="add-node"]');
  await waitFor("4 nodes", () => count('[data-testid="node-row"][data-state="up"]'), (n) => n === 4);
  await waitFor("moves settled", () => count('[data-testid="client-card"][data-state="connected"]'), (n) => n === 30);
  // A few messages, so cards show counts and last messages.
  await page.fill('[data-testid="api-text"]', "v2 is live");
  await page.click('[data-testid="api-broadcast"]');
  await page.fill('[data-testid="dm-to"]', "user-7");
  await page.fill('[data-testid="dm-text"]', "lunch?");
  await page.click('[data-testid="dm-send"]');
  await waitFor("the direct message", () => page.textContent('[data-testid="action-status"]'), (t) => t.includes("acknowledged"));
  await page.fill('[data-testid="route-user"]', "alice");
  await page.click('[data-testid="route-submit"]');
  await waitFor("the lookup", () => page.getAttribute('[data-testid="route-result"]', "data-node"));
  // Let the per-second rates and the event's moved count arrive, and the
  // highlight animations end, so the picture is steady.
  await waitFor("moved count", () => page.$eval('[data-testid="event-row"][data-kind="join"]', (e) => Number(e.dataset.moved)), (n) => n > 0);
  await waitFor("animations done", () => page.evaluate(() => document.getAnimations().filter((a) => a.playState === "running").length), (n) => n === 0);
  await waitFor("status lines to fade", () => page.textContent('[data-testid="nodes-status"]'), (t) => t === "");
  await page.screenshot({ path: out });
  console.log(`wrote ${out}`);
} finally {
  await browser.close();
}
