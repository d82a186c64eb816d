// Turns the JSON lines scripts/compare-peers.sh collected (one per load
// run: {"label":…, "result": <loadgen.mjs output>}) into the markdown
// tables it prints: every run, then wsring's ratios against the peers
// (server CPU per delivered message and p99 at the steady rate, delivered/s
// at the highest rate), then the echo floor.
//
//   node bench/peers/report.mjs results.jsonl [steady-rate]

import { readFileSync } from "node:fs";

const [file, steadyArg] = process.argv.slice(2);
if (!file) {
  console.error("usage: node report.mjs results.jsonl [steady-rate]");
  process.exit(2);
}
const runs = readFileSync(file, "utf8")
  .split("\n")
  .filter(Boolean)
  .map((l) => JSON.parse(l));

const fmt = (v, d = 1) => (v === null || v === undefined ? "–" : Number(v).toFixed(d));
const thousands = (v) => Math.round(v).toLocaleString("en-US");
const find = (label, rate) => runs.find((r) => r.label === label && r.result.offered_per_sec === rate)?.result;

const wsringLabels = ["wsring-hash", "wsring-direct", "wsring-broadcast"];
const peerLabels = ["socketio", "socketioxide", ...wsringLabels];
const echoLabels = ["bare-echo", "wsring-node-self"];
const NAMES = {
  socketio: "socket.io + redis-adapter",
  socketioxide: "socketioxide + socketioxide-redis",
  "wsring-hash": "wsring hash (gateway + 3 nodes)",
  "wsring-direct": "wsring hash, clients located through the gateway, direct to nodes",
  "wsring-broadcast": "wsring broadcast (3 nodes direct)",
  "bare-echo": "bare tokio-tungstenite echo",
  "wsring-node-self": "wsring node, send to self (memory)",
};

function table(labels) {
  const rows = runs.filter((r) => labels.includes(r.label));
  if (!rows.length) return;
  console.log("| system | offered/s | sent/s | delivered/s | lost | dup | p50 ms | p99 ms | max ms | server CPU ms / 1k delivered | client CPU s | other load, cores |");
  console.log("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
  for (const { label, result: r } of rows) {
    console.log(
      `| ${NAMES[label] ?? label} | ${thousands(r.offered_per_sec)} | ${thousands(r.sent_per_sec)} | ${thousands(r.delivered_per_sec)} | ${r.lost} | ${r.duplicates} | ${fmt(r.latency_ms.p50, 2)} | ${fmt(r.latency_ms.p99, 2)} | ${fmt(r.latency_ms.max, 1)} | ${fmt(r.server_cpu_ms_per_1k, 1)} | ${fmt(r.client_cpu_ms / 1000, 1)} | ${fmt(r.other_cores, 2)} |`,
    );
  }
  console.log();
}

table(peerLabels);

const rates = [...new Set(runs.filter((r) => peerLabels.includes(r.label)).map((r) => r.result.offered_per_sec))].sort((a, b) => a - b);
const steady = Number(steadyArg) || (rates.includes(5000) ? 5000 : rates[Math.floor(rates.length / 2)]);
const top = rates[rates.length - 1];
const ratio = (a, b) => (a === undefined || b === undefined || !b ? null : a / b);
const mark = (v, goal, le) => (v === null ? "–" : `${v.toFixed(2)}× ${(le ? v <= goal : v >= goal) ? "(met)" : "(missed)"}`);

const rows = [];
for (const w of wsringLabels) {
  const ws = find(w, steady);
  const wt = find(w, top);
  if (!ws && !wt) continue;
  const sio = find("socketio", steady);
  const siox = find("socketioxide", steady);
  const sioTop = find("socketio", top);
  rows.push([
    NAMES[w],
    mark(ratio(ws?.server_cpu_ms_per_1k, sio?.server_cpu_ms_per_1k), 0.25, true),
    mark(ratio(ws?.server_cpu_ms_per_1k, siox?.server_cpu_ms_per_1k), 0.5, true),
    mark(ratio(wt?.delivered_per_sec, sioTop?.delivered_per_sec), 3, false),
    mark(ratio(ws?.latency_ms.p99, sio?.latency_ms.p99), 0.3, true),
  ]);
}
if (rows.length) {
  console.log(
    `| wsring mode | CPU/msg vs socket.io at ${thousands(steady)}/s (goal ≤ 0.25×) | CPU/msg vs socketioxide at ${thousands(steady)}/s (goal ≤ 0.5×) | delivered/s vs socket.io at ${thousands(top)}/s offered (goal ≥ 3×) | p99 vs socket.io at ${thousands(steady)}/s (goal ≤ 0.3×) |`,
  );
  console.log("|---|---:|---:|---:|---:|");
  for (const r of rows) console.log(`| ${r.join(" | ")} |`);
  console.log();
}

// CPU per message falls as the rate rises (more messages per wakeup and
// per system call), and a server that falls behind batches more: the same
// ratio at every rate below the top one shows how much the steady rate's
// figure owes to that.
const below = rates.filter((r) => r !== top);
if (below.length && rows.length) {
  console.log(`| wsring mode | ${below.map((r) => `CPU/msg vs socket.io / vs socketioxide at ${thousands(r)}/s`).join(" | ")} |`);
  console.log(`|---|${below.map(() => "---:|").join("")}`);
  for (const w of wsringLabels) {
    const cells = below.map((r) => {
      const x = find(w, r)?.server_cpu_ms_per_1k;
      return `${fmt(ratio(x, find("socketio", r)?.server_cpu_ms_per_1k), 2)}× / ${fmt(ratio(x, find("socketioxide", r)?.server_cpu_ms_per_1k), 2)}×`;
    });
    if (below.some((r) => find(w, r))) console.log(`| ${NAMES[w]} | ${cells.join(" | ")} |`);
  }
  console.log();
}

table(echoLabels);
const echoRates = [...new Set(runs.filter((r) => echoLabels.includes(r.label)).map((r) => r.result.offered_per_sec))].sort((a, b) => a - b);
if (echoRates.length) {
  console.log("| offered/s | wsring delivered/s vs bare echo (goal ≥ 0.7× at the highest rate) | wsring CPU/msg vs bare echo |");
  console.log("|---:|---:|---:|");
  for (const rate of echoRates) {
    const b = find("bare-echo", rate);
    const w = find("wsring-node-self", rate);
    const d = ratio(w?.delivered_per_sec, b?.delivered_per_sec);
    const c = ratio(w?.server_cpu_ms_per_1k, b?.server_cpu_ms_per_1k);
    console.log(`| ${thousands(rate)} | ${rate === echoRates[echoRates.length - 1] ? mark(d, 0.7, false) : fmt(d, 2) + "×"} | ${fmt(c, 2)}× |`);
  }
  console.log();
}
