// dashboard.test.mjs — end-to-end test of the wsring dashboard in real
// headless Chromium (playwright-core driving /usr/bin/chromium; no browser
// download). Run against a live `wsring dev` cluster with 3 nodes:
//
//   WSRING_DASHBOARD_URL=http://127.0.0.1:7000/ node e2e/dashboard.test.mjs
//
// crates/wsring/tests/dashboard_e2e.rs starts the cluster and runs this as
// part of the full test run (`cargo test --workspace --features
// wsring/slow-tests`). Every wait is a condition polled with a
// timeout, never a fixed sleep. Screenshots go to artifacts/ at the repo
// root. Exit status: 0 when every step passed, 1 otherwise.

import path from "node:path";
import { ARTIFACTS, ConsoleWatch, Steps, assert, dashboardUrl, launch, overallLimit, waitFor } from "./harness.mjs";

const URL_ = dashboardUrl("dashboard.test.mjs");
overallLimit(240_000);
const steps = new Steps(11); // 1–4, 4b, 5, 5b, 6–9
const step = (name, fn) => steps.run(name, fn);

// ------------------------------------------------------------ page probes

/** Every client card as {key, user, node, state, moves, received, from, last}. */
const cards = (page) =>
  page.$$eval('[data-testid="client-card"]', (els) =>
    els.map((e) => ({
      key: e.dataset.key,
      user: e.dataset.user,
      node: e.dataset.node || null,
      state: e.dataset.state,
      moves: Number(e.dataset.moves || 0),
      movedFrames: Number(e.dataset.movedFrames || 0),
      received: Number(e.dataset.received || 0),
      from: e.querySelector('[data-testid="client-moved-from"]')?.textContent ?? "",
      last: e.querySelector('[data-testid="client-last"]')?.textContent ?? "",
    })),
  );

/** Node rows as {id, state, connections}. */
const nodeRows = (page) =>
  page.$$eval('[data-testid="node-row"]', (els) =>
    els.map((e) => ({
      id: e.dataset.node,
      state: e.dataset.state,
      connections: e.querySelector('[data-testid="node-connections"]')?.textContent ?? "",
    })),
  );

/** Event log rows as {epoch, kind, node, moved}. */
const eventRows = (page) =>
  page.$$eval('[data-testid="event-row"]', (els) =>
    els.map((e) => ({
      epoch: Number(e.dataset.epoch),
      kind: e.dataset.kind,
      node: e.dataset.node,
      moved: Number(e.dataset.moved),
      reported: Number(e.dataset.movedReported),
    })),
  );

const connectedCount = (list) => list.filter((c) => c.state === "connected").length;
const tally = (list) => {
  const m = {};
  for (const c of list) if (c.state === "connected") m[c.node] = (m[c.node] ?? 0) + 1;
  return m;
};

async function shot(page, name) {
  await page.screenshot({ path: path.join(ARTIFACTS, name) });
}

// ------------------------------------------------------------ browser

const browser = await launch({ width: 1280, height: 800 });
const context = browser.context;
const consoleWatch = new ConsoleWatch();
const noProblems = (when) => consoleWatch.check(when);
const watch = (page, label) => consoleWatch.watch(page, label);

const page = context.pages()[0] ?? (await context.newPage());
watch(page, "desktop");
const api = async (p, init) => {
  const r = await fetch(new URL(p, URL_), init);
  return { status: r.status, body: await r.json().catch(() => null) };
};

let initialNodes = [];
let addedNode = null;
let crashedNode = null;

try {
  await step("1. the page loads and shows the 3 nodes, live", async () => {
    await page.goto(URL_);
    const rows = await waitFor(
      "3 node rows, all up",
      () => nodeRows(page),
      (r) => r.length === 3 && r.every((n) => n.state === "up"),
    );
    initialNodes = rows.map((r) => r.id);
    await waitFor("the live feed", () => page.getAttribute('[data-testid="feed-status"]', "data-state"), (s) => s === "live");
    assert((await page.textContent('[data-testid="mode"]')).includes("dev"), "mode chip says dev");
    assert(await page.isEnabled('[data-testid="add-node"]'), "Add node is enabled under the dev launcher");
    const legend = await page.$$eval('[data-testid="legend-item"]', (els) => els.map((e) => e.dataset.node));
    assert(legend.length === 3, `ring legend lists 3 nodes, got ${legend}`);
    const epoch = await page.textContent('[data-testid="ring-epoch"]');
    assert(/^\d+$/.test(epoch.trim()), `ring shows the epoch, got ${epoch}`);
    noProblems("after load");
  });

  await step("2. 30 simulated clients connect, spread over the 3 nodes", async () => {
    for (let i = 0; i < 3; i++) await page.click('[data-testid="add-clients-10"]');
    const list = await waitFor("30 connected clients", () => cards(page), (l) => l.length === 30 && connectedCount(l) === 30);
    const spread = tally(list);
    assert(Object.keys(spread).length === 3, `clients on all 3 nodes, got ${JSON.stringify(spread)}`);
    assert(Object.keys(spread).every((n) => initialNodes.includes(n)), "clients are on known nodes");
    // The node each card shows is the ring owner the API reports.
    for (const c of list.slice(0, 10)) {
      const r = await api(`/api/route?user=${encodeURIComponent(c.user)}`);
      assert(r.body?.node === c.node, `${c.user} shown on ${c.node}, /api/route says ${r.body?.node}`);
    }
    // The node table counts them too (over the live feed).
    await waitFor(
      "the node table to count 30 connections",
      () => nodeRows(page),
      (rows) => rows.reduce((s, r) => s + Number(r.connections || 0), 0) === 30,
    );
    // The route lookup highlights the owner.
    await page.fill('[data-testid="route-user"]', list[0].user);
    await page.click('[data-testid="route-submit"]');
    await waitFor("the route lookup", () => page.getAttribute('[data-testid="route-result"]', "data-node"), (n) => n === list[0].node);
    await waitFor("the owner row highlighted", () =>
      page.$eval(`[data-testid="node-row"][data-node="${list[0].node}"]`, (e) => e.classList.contains("highlight")),
    );
    await shot(page, "dashboard-30-clients.png");
    noProblems("after connecting 30 clients");
  });

  await step("3. Add node: 4 nodes, some clients move to the new one, the log counts them", async () => {
    const before = Object.fromEntries((await cards(page)).map((c) => [c.key, c.node]));
    await page.click('[data-testid="add-node"]');
    const rows = await waitFor("4 node rows, all up", () => nodeRows(page), (r) => r.length === 4 && r.every((n) => n.state === "up"));
    addedNode = rows.map((r) => r.id).find((id) => !initialNodes.includes(id));
    assert(addedNode, "a new node id appeared");
    const list = await waitFor(
      `clients reconnected, some on ${addedNode}`,
      () => cards(page),
      (l) => connectedCount(l) === 30 && l.some((c) => c.node === addedNode),
    );
    const moved = list.filter((c) => c.node !== before[c.key]);
    assert(moved.length > 0, "some clients moved");
    for (const c of moved) {
      assert(c.node === addedNode, `${c.user} moved to the new node ${addedNode}, not ${c.node} (a join moves keys only to the joiner)`);
      assert(c.moves >= 1 && c.from === `${before[c.key]}→`, `${c.user} shows its move from ${before[c.key]}: ${JSON.stringify(c)}`);
    }
    const unmoved = list.filter((c) => c.node === before[c.key]);
    assert(unmoved.every((c) => c.moves === 0), "clients that kept their node did not reconnect");
    await waitFor(
      `the event log to show the join of ${addedNode} with ${moved.length} sessions moved`,
      () => eventRows(page),
      (ev) => ev.some((e) => e.kind === "join" && e.node === addedNode && e.moved === moved.length),
    );
    const ringNodes = await page.$$eval('[data-testid="legend-item"]', (els) => els.map((e) => e.dataset.node));
    assert(ringNodes.includes(addedNode) && ringNodes.length === 4, `the ring shows 4 nodes: ${ringNodes}`);
    await waitFor("the epoch chip to follow the ring", async () => {
      const head = await page.textContent('[data-testid="epoch"]');
      const ring = await page.textContent('[data-testid="ring-epoch"]');
      return head === `epoch ${ring}`;
    });
    await shot(page, "dashboard-add-node.png");
    noProblems("after adding a node");
  });

  await step("4. Crash a node: its clients reconnect elsewhere", async () => {
    const list = await cards(page);
    const spread = tally(list);
    // The original node holding the most clients, so the crash matters.
    crashedNode = initialNodes.slice().sort((a, b) => (spread[b] ?? 0) - (spread[a] ?? 0))[0];
    const victims = list.filter((c) => c.node === crashedNode).map((c) => c.key);
    assert(victims.length > 0, `${crashedNode} holds clients`);
    await waitFor(`${crashedNode}'s row to count its ${victims.length} clients`, () =>
      page.textContent(`[data-testid="node-row"][data-node="${crashedNode}"] [data-testid="node-connections"]`), (t) => t === String(victims.length));
    await page.click(`[data-testid="node-crash"][data-node="${crashedNode}"]`);
    await waitFor(
      `${crashedNode} shown as down`,
      () => page.getAttribute(`[data-testid="node-row"][data-node="${crashedNode}"]`, "data-state"),
      (s) => s === "down",
    );
    const after = await waitFor(
      `all 30 clients connected again, none on ${crashedNode}`,
      () => cards(page),
      (l) => connectedCount(l) === 30 && l.every((c) => c.node !== crashedNode),
    );
    for (const key of victims) {
      const c = after.find((x) => x.key === key);
      assert(c.moves >= 1 && c.from === `${crashedNode}→`, `${c.user} shows it left ${crashedNode}: ${JSON.stringify(c)}`);
    }
    const ev = await waitFor(
      `the event log to show the crash of ${crashedNode} cutting off its ${victims.length} sessions`,
      () => eventRows(page),
      (ev) => ev.some((e) => e.kind === "crash" && e.node === crashedNode && e.moved === victims.length),
    );
    const crash = ev.find((e) => e.kind === "crash" && e.node === crashedNode);
    console.log(`     crash of ${crashedNode}: ${victims.length} clients moved; the gateway reported ${crash.reported}`);
    const crashBtn = `[data-testid="node-crash"][data-node="${crashedNode}"]`;
    assert(!(await page.isEnabled(crashBtn)), "a down node's Crash button is disabled");
    await shot(page, "dashboard-crash.png");
    noProblems("after the crash");
  });

  await step("4b. Drain a node: its clients are moved (1012) and land elsewhere", async () => {
    const list = await cards(page);
    const spread = tally(list);
    const drained = initialNodes.filter((n) => n !== crashedNode).sort((a, b) => (spread[b] ?? 0) - (spread[a] ?? 0))[0];
    const victims = list.filter((c) => c.node === drained);
    assert(victims.length > 0, `${drained} holds clients`);
    // The table (1 s ticks) has caught up with the crash's reconnects.
    await waitFor(`${drained}'s row to count its ${victims.length} clients`, () =>
      page.textContent(`[data-testid="node-row"][data-node="${drained}"] [data-testid="node-connections"]`), (t) => t === String(victims.length));
    await page.click(`[data-testid="node-drain"][data-node="${drained}"]`);
    const after = await waitFor(
      `all 30 clients connected again, none on ${drained}`,
      () => cards(page),
      (l) => connectedCount(l) === 30 && l.every((c) => c.node !== drained),
    );
    for (const v of victims) {
      const c = after.find((x) => x.key === v.key);
      assert(c.movedFrames > v.movedFrames, `${c.user} was told it moved (moved + 1012): ${JSON.stringify(c)}`);
      assert(c.from === `${drained}→`, `${c.user} shows it left ${drained}: ${JSON.stringify(c)}`);
    }
    await waitFor(
      `the event log to show ${drained} draining with ${victims.length} sessions moved, then leaving`,
      () => eventRows(page),
      (ev) =>
        ev.some((e) => e.kind === "drain" && e.node === drained && e.moved === victims.length) &&
        ev.some((e) => e.kind === "leave" && e.node === drained),
    );
    const drain = (await eventRows(page)).find((e) => e.kind === "drain" && e.node === drained);
    console.log(`     drain of ${drained}: ${victims.length} clients moved; the gateway reported ${drain.reported}`);
    await waitFor(`${drained} shown as left`, () => page.getAttribute(`[data-testid="node-row"][data-node="${drained}"]`, "data-state"), (s) => s === "left");
    noProblems("after the drain");
  });

  await step("5. a direct message between two simulated clients is received", async () => {
    const list = await cards(page);
    const [from, to] = [list[0], list[list.length - 1]];
    const text = `e2e hello ${Math.random().toString(36).slice(2, 8)}`;
    await page.selectOption('[data-testid="dm-from"]', from.key);
    await page.fill('[data-testid="dm-to"]', to.user);
    await page.fill('[data-testid="dm-text"]', text);
    await page.click('[data-testid="dm-send"]');
    await waitFor("the send to be acknowledged", () => page.textContent('[data-testid="action-status"]'), (s) =>
      s.includes("acknowledged"),
    );
    const got = await waitFor(
      `${to.user}'s card to show the message`,
      async () => (await cards(page)).find((c) => c.key === to.key),
      (c) => c.received >= 1 && c.last.includes(text),
    );
    assert(got.last.startsWith(from.user), `the card names the sender: ${got.last}`);
  });

  await step("5b. rooms and server-side sends reach the clients", async () => {
    const list = await cards(page);
    const [a, b] = [list[1], list[2]];
    const room = "e2e-room";
    // b joins, a publishes: b (a member) receives it.
    await page.selectOption('[data-testid="room-client"]', b.key);
    await page.fill('[data-testid="room-name"]', room);
    await page.click('[data-testid="room-join"]');
    await waitFor("the join ack", () => page.textContent('[data-testid="action-status"]'), (s) => s.includes(`join ${room}: acknowledged`));
    await page.selectOption('[data-testid="room-client"]', a.key);
    await page.fill('[data-testid="room-text"]', "room hello");
    await page.click('[data-testid="room-publish"]');
    await waitFor(`${b.user} to get the room message`, async () => (await cards(page)).find((c) => c.key === b.key), (c) =>
      c.last.includes(`@${room}: room hello`),
    );
    // /api/broadcast reaches every client.
    const counts = Object.fromEntries(list.map((c) => [c.key, c.received]));
    await page.fill('[data-testid="api-text"]', "to everyone");
    await page.click('[data-testid="api-broadcast"]');
    await waitFor(
      "every client to get the broadcast",
      () => cards(page),
      (l) => l.every((c) => c.received > counts[c.key] && c.last.includes("to everyone")),
    );
    noProblems("after messaging");
  });

  await step("6. 300 simulated clients: the page keeps working", async () => {
    await page.click('[data-testid="remove-clients"]');
    await waitFor("no clients", () => cards(page), (l) => l.length === 0);
    for (let i = 0; i < 3; i++) await page.click('[data-testid="add-clients-100"]');
    // Browsers cap open WebSockets (Chromium at 255); the simulator keeps
    // 250 open and queues the rest without errors.
    const summary = await waitFor(
      "250 connected and 50 queued",
      () => page.$eval('[data-testid="sim-summary"]', (e) => ({ ...e.dataset })),
      (d) => d.total === "300" && d.connected === "250" && d.queued === "50",
      45_000,
    );
    assert(summary, "summary");
    await page.fill('[data-testid="api-text"]', "load test");
    await page.click('[data-testid="api-broadcast"]');
    await waitFor(
      "all 250 connected clients to get the broadcast",
      () => cards(page),
      (l) => l.filter((c) => c.state === "connected" && c.last.includes("load test")).length === 250,
    );
    // The page still renders frames promptly.
    const t0 = Date.now();
    await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
    assert(Date.now() - t0 < 1000, `two frames took ${Date.now() - t0} ms`);
    await shot(page, "dashboard-300-clients.png");
    await page.click('[data-testid="remove-clients"]');
    await waitFor(
      "the node table to drop to 0 connections",
      () => nodeRows(page),
      (rows) => rows.filter((r) => r.state === "up").every((r) => r.connections === "0"),
    );
    noProblems("with 300 clients");
  });

  await step("7. phone (390x844): renders without horizontal overflow, controls reachable", async () => {
    const phone = await context.newPage();
    watch(phone, "phone");
    await phone.setViewportSize({ width: 390, height: 844 });
    await phone.goto(URL_);
    const up = (await api("/api/nodes")).body.nodes.length;
    await waitFor("node rows", () => nodeRows(phone), (r) => r.length === up && r.every((n) => n.state === "up"));
    const overflow = await phone.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    assert(overflow <= 0, `page is ${overflow}px wider than the phone screen`);
    const controls = [
      '[data-testid="add-node"]',
      '[data-testid="add-clients-10"]',
      '[data-testid="route-submit"]',
      '[data-testid="dm-send"]',
      `[data-testid="node-crash"][data-node="${addedNode}"]`,
    ];
    for (const sel of controls) {
      const box = await phone.locator(sel).boundingBox();
      assert(box && box.x >= 0 && box.x + box.width <= 390, `${sel} lies within the screen: ${JSON.stringify(box)}`);
    }
    await phone.click('[data-testid="add-clients-1"]');
    await waitFor("a client on the phone page", () => cards(phone), (l) => l.length === 1 && l[0].state === "connected");
    await phone.screenshot({ path: path.join(ARTIFACTS, "dashboard-phone.png"), fullPage: true });
    await phone.close();
    noProblems("on the phone layout");
  });

  await step("8. without the dev launcher, node controls are disabled with a tooltip", async () => {
    // A plain `wsring gateway` needs Redis or NATS; its feed is reproduced
    // instead: the real ring and node table with a gateway-mode `info`.
    const ring = (await api("/api/ring?arcs=1")).body;
    const nodes = (await api("/api/nodes")).body;
    const info = { mode: "gateway", routing: "hash", durable: false, launcher: false, version: "test" };
    const sse = [
      ["info", info],
      ["ring", ring],
      ["nodes", nodes],
      ["events", []],
    ]
      .map(([name, data]) => `event: ${name}\ndata: ${JSON.stringify(data)}\n\n`)
      .join("");
    const gw = await context.newPage();
    watch(gw, "gateway-mode");
    await gw.route("**/api/events", (route) =>
      route.fulfill({ status: 200, headers: { "content-type": "text/event-stream", "cache-control": "no-cache" }, body: sse }),
    );
    await gw.goto(URL_);
    await waitFor("the mode chip", () => gw.textContent('[data-testid="mode"]'), (t) => t === "gateway");
    await waitFor("node rows", () => nodeRows(gw), (r) => r.length === nodes.nodes.length);
    const add = gw.locator('[data-testid="add-node"]');
    assert(await add.isDisabled(), "Add node is disabled");
    assert((await add.getAttribute("title")).includes("dev launcher"), "Add node explains why in a tooltip");
    for (const sel of ['[data-testid="node-drain"]', '[data-testid="node-crash"]']) {
      const buttons = gw.locator(sel);
      const n = await buttons.count();
      assert(n === nodes.nodes.length, `${sel} per node`);
      for (let i = 0; i < n; i++) {
        assert(await buttons.nth(i).isDisabled(), `${sel} #${i} disabled`);
        assert((await buttons.nth(i).getAttribute("title")).includes("dev launcher"), `${sel} #${i} has the tooltip`);
      }
    }
    await gw.screenshot({ path: path.join(ARTIFACTS, "dashboard-gateway-mode.png") });
    await gw.close();
    noProblems("in gateway mode");
  });

  await step("9. no console errors, warnings or page errors in any page", async () => {
    noProblems("during the run");
  });
} catch {
  // Already reported by step(); fall through to the summary.
}

await browser.close();
if (consoleWatch.problems.length) console.log(`console problems:\n  ${consoleWatch.problems.join("\n  ")}`);
process.exit(steps.summary());
