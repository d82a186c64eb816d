// The load client of scripts/compare-peers.sh: one program that drives a
// wsring cluster (its JSON protocol, docs/PROTOCOL.md, over the `ws`
// package), a socket.io cluster (socket.io-client, which runs on the same
// `ws` package) or a bare echo server, with the same scheduling, payload and
// bookkeeping, so the client costs the same whichever server it measures.
//
// U users connect, spread round-robin over the given URLs, split over W
// worker threads. For D seconds the workers send direct messages at a total
// offered rate R: each message goes from the next user of the worker's
// round-robin to a random user on ANOTHER server (wsring reports the node in
// its `welcome` frame, so this holds behind a gateway too), or, with
// `--self`, to the sender itself. With `--locate` (wsring), each user first
// asks the gateway where it lives (`GET /ws/locate`) and connects to that
// node, skipping the gateway's tunnel. The payload carries the send time, the
// sending worker and a sequence number; receivers keep one bit per sequence
// number, so duplicates are told apart from deliveries. After the send phase
// a grace period (ended early once everything sent has arrived) lets the
// tail drain; what has not arrived by then is lost.
//
// With `--cpu-pids`, the user+system CPU time of those processes is read
// from /proc/<pid>/stat when the send phase starts and when the grace
// period ends, so connects and process start-up are not counted.
//
// Prints one JSON object on stdout. Every phase has a time limit.
//
//   node loadgen.mjs --system wsring --urls ws://127.0.0.1:7000/ws \
//     --users 300 --rate 5000 --duration 20

import { readFileSync } from "node:fs";
import os from "node:os";
import { parseArgs } from "node:util";
import { Worker, isMainThread, parentPort, workerData } from "node:worker_threads";
import { fileURLToPath } from "node:url";

const LIMITS = Object.freeze({
  maxDuration: 120, // s
  maxGrace: 30, // s
  maxUsers: 5000,
  maxWorkers: 8,
  connectTimeout: 60_000, // ms, for all of a worker's connects together
  connectConcurrency: 50, // handshakes in flight per worker
  // Latency samples kept per worker (8 bytes each); further deliveries
  // are counted but not sampled.
  maxSamples: 4_000_000,
  // A socket holding this much unsent data skips its turn: the client is
  // saturated and must not buffer without bound.
  maxBuffered: 4 << 20,
});

const HZ = Number(process.env.CLK_TCK || 100);

if (isMainThread) {
  await main();
} else {
  await worker(workerData);
}

function usage(msg) {
  console.error(`loadgen: ${msg}`);
  process.exit(2);
}

function clamp(v, lo, hi, name) {
  if (!Number.isFinite(v) || v < lo || v > hi) usage(`--${name} must be in [${lo}, ${hi}]`);
  return v;
}

async function main() {
  const { values: o } = parseArgs({
    options: {
      system: { type: "string" }, // wsring | socketio | echo
      urls: { type: "string" },
      users: { type: "string", default: "300" },
      rate: { type: "string", default: "1000" },
      duration: { type: "string", default: "20" },
      grace: { type: "string", default: "5" },
      workers: { type: "string", default: "2" },
      payload: { type: "string", default: "64" },
      prefix: { type: "string", default: `lg${process.pid}-` },
      self: { type: "boolean", default: false },
      locate: { type: "boolean", default: false }, // wsring: ask the gateway where each user lives, connect there
      "cpu-pids": { type: "string", default: "" },
    },
  });
  if (!["wsring", "socketio", "echo"].includes(o.system)) usage("--system wsring|socketio|echo");
  if (!o.urls) usage("--urls is required");
  const urls = o.urls.split(",").filter(Boolean);
  const users = clamp(Number(o.users), 2, LIMITS.maxUsers, "users");
  const rate = clamp(Number(o.rate), 1, 1e6, "rate");
  const duration = clamp(Number(o.duration), 1, LIMITS.maxDuration, "duration");
  const grace = clamp(Number(o.grace), 0, LIMITS.maxGrace, "grace");
  const nWorkers = clamp(Number(o.workers), 1, LIMITS.maxWorkers, "workers");
  const payload = clamp(Number(o.payload), 0, 60_000, "payload");
  const self = o.self || o.system === "echo";
  const cpuPids = o["cpu-pids"].split(",").filter(Boolean).map(Number);
  const base = process.hrtime.bigint();

  // User i connects to urls[i % urls.length] from worker i % W.
  const names = Array.from({ length: users }, (_, i) => `${o.prefix}${i}`);
  const perWorker = Array.from({ length: nWorkers }, () => []);
  names.forEach((name, i) => perWorker[i % nWorkers].push({ name, url: urls[i % urls.length] }));
  // Sequence numbers a worker may use: its share of the offered load, with room for catch-up.
  const maxSeq = Math.ceil((rate / nWorkers) * duration * 1.2) + 10_000;

  const workers = perWorker.map(
    (list, w) =>
      new Worker(fileURLToPath(import.meta.url), {
        workerData: {
          w,
          nWorkers,
          system: o.system,
          users: list,
          rate: rate / nWorkers,
          duration,
          payload,
          self,
          locate: o.locate && o.system === "wsring",
          base,
          maxSeq,
        },
      }),
  );
  const inbox = workers.map(() => []);
  const waiters = workers.map(() => null);
  workers.forEach((wk, i) => {
    wk.on("message", (m) => {
      if (waiters[i]) {
        const r = waiters[i];
        waiters[i] = null;
        r(m);
      } else inbox[i].push(m);
    });
    wk.on("error", (e) => {
      console.error(`loadgen: worker ${i}: ${e.stack ?? e}`);
      process.exit(1);
    });
  });
  const next = (i, limitMs, what) =>
    new Promise((resolve, reject) => {
      if (inbox[i].length) return resolve(inbox[i].shift());
      const t = setTimeout(() => reject(new Error(`worker ${i}: no ${what} within ${limitMs} ms`)), limitMs);
      waiters[i] = (m) => {
        clearTimeout(t);
        resolve(m);
      };
    });
  const all = (what, limitMs) => Promise.all(workers.map((_, i) => next(i, limitMs, what)));

  try {
    // 1. Connect; learn which server holds each user.
    const connected = await all("connect report", LIMITS.connectTimeout + 5000);
    const where = Object.assign({}, ...connected.map((m) => m.where));
    const servers = new Set(Object.values(where));
    if (!self && servers.size < 2) throw new Error(`all users landed on one server (${[...servers]})`);
    // 2. Send phase.
    const cpu0 = readCpu(cpuPids);
    const busy0 = machineBusy();
    const client0 = process.cpuUsage();
    const t0 = Date.now();
    workers.forEach((wk) => wk.postMessage({ cmd: "start", where }));
    const sentReports = await all("end of sending", (duration + 30) * 1000);
    const sendSecs = (Date.now() - t0) / 1000;
    const sent = sum(sentReports, "sent");
    // 3. Grace: poll until everything sent has arrived or the grace is over.
    const graceEnd = Date.now() + grace * 1000;
    let stats;
    for (;;) {
      workers.forEach((wk) => wk.postMessage({ cmd: "count" }));
      const counts = await all("count", 10_000);
      if (sum(counts, "unique") >= sent || Date.now() >= graceEnd) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const cpu1 = readCpu(cpuPids);
    const busy = machineBusy() - busy0;
    const clientCpu = process.cpuUsage(client0);
    const wallMs = Date.now() - t0;
    workers.forEach((wk) => wk.postMessage({ cmd: "stats" }));
    stats = await all("stats", 30_000);

    const unique = sum(stats, "unique");
    const inWindow = sum(stats, "inWindow");
    const samples = mergeSamples(stats.map((s) => s.samples));
    const perPid = cpu1.map((v, i) => v - cpu0[i]);
    const serverCpuMs = cpuPids.length ? perPid.reduce((a, b) => a + b, 0) : null;
    const clientCpuMs = (clientCpu.user + clientCpu.system) / 1000;
    const result = {
      system: o.system,
      urls,
      users,
      workers: nWorkers,
      servers: servers.size,
      offered_per_sec: rate,
      duration_s: duration,
      payload_bytes: payload,
      sent,
      sent_per_sec: round(sent / sendSecs),
      skipped_backpressure: sum(stats, "skipped"),
      schedule_resets: sum(stats, "resets"),
      delivered: unique,
      delivered_per_sec: round(inWindow / sendSecs),
      lost: sent - unique,
      duplicates: sum(stats, "dups"),
      server_errors: sum(stats, "errors"),
      disconnects: sum(stats, "closes"),
      latency_ms: {
        p50: pct(samples, 0.5),
        p90: pct(samples, 0.9),
        p99: pct(samples, 0.99),
        max: samples.length ? round(samples[samples.length - 1] / 1000, 3) : null,
        samples: samples.length,
      },
      server_cpu_ms: serverCpuMs,
      server_cpu_ms_per_1k: serverCpuMs === null ? null : round((serverCpuMs * 1000) / Math.max(unique, 1), 2),
      server_cpu_ms_by_pid: Object.fromEntries(cpuPids.map((pid, i) => [pid, perPid[i]])),
      client_cpu_ms: round(clientCpuMs),
      // CPU the rest of the machine used meanwhile, in cores: the noise on
      // a shared machine.
      other_cores: round((busy - (serverCpuMs ?? 0) - clientCpuMs) / wallMs, 2),
      wall_s: round(wallMs / 1000, 2),
      loadavg: os.loadavg().map((v) => round(v, 2)),
    };
    console.log(JSON.stringify(result));
  } finally {
    workers.forEach((wk) => wk.postMessage({ cmd: "exit" }));
    const bye = setTimeout(() => process.exit(0), 3000);
    bye.unref();
    await Promise.allSettled(workers.map((wk) => new Promise((r) => wk.once("exit", r))));
  }
}

function sum(list, key) {
  return list.reduce((a, m) => a + m[key], 0);
}

function round(v, digits = 1) {
  const f = 10 ** digits;
  return Math.round(v * f) / f;
}

function pct(sorted, q) {
  if (!sorted.length) return null;
  const i = Math.min(sorted.length - 1, Math.floor(q * sorted.length));
  return round(sorted[i] / 1000, 3);
}

function mergeSamples(parts) {
  const n = parts.reduce((a, p) => a + p.length, 0);
  const all = new Float64Array(n);
  let at = 0;
  for (const p of parts) {
    all.set(p, at);
    at += p.length;
  }
  return all.sort();
}

/** User+system CPU of each of `pids`, in ms (fields 14 and 15 of /proc/<pid>/stat). */
function readCpu(pids) {
  return pids.map((pid) => {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // The command name may hold spaces; the fields after it do not.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / HZ;
  });
}

/** CPU time the whole machine spent busy (everything but idle and iowait), in ms. */
function machineBusy() {
  const cpu = readFileSync("/proc/stat", "utf8").split("\n")[0].trim().split(/\s+/).slice(1).map(Number);
  const total = cpu.slice(0, 8).reduce((a, b) => a + b, 0);
  return ((total - cpu[3] - cpu[4]) * 1000) / HZ;
}

// ---------------------------------------------------------------- worker

async function worker(cfg) {
  const { w, nWorkers, system, users, rate, duration, payload, self, locate, base, maxSeq } = cfg;
  const nowUs = () => Number(process.hrtime.bigint() - base) / 1000;
  const pad = "x".repeat(payload);
  // One bit per (sending worker, sequence number).
  const seen = Array.from({ length: nWorkers }, () => new Uint8Array(Math.ceil(maxSeq / 8)));
  const samples = new Float64Array(Math.min(LIMITS.maxSamples, maxSeq * 2));
  const st = { sent: 0, unique: 0, inWindow: 0, dups: 0, errors: 0, closes: 0, skipped: 0, resets: 0, nSamples: 0 };
  let windowEnd = Infinity;
  let closing = false;

  function onData(data) {
    if (data === null || typeof data !== "object" || typeof data.t !== "number") return;
    const bits = seen[data.w];
    if (!bits || !(data.q >= 0 && data.q < maxSeq)) return;
    const byte = data.q >> 3;
    const mask = 1 << (data.q & 7);
    if (bits[byte] & mask) {
      st.dups++;
      return;
    }
    bits[byte] |= mask;
    st.unique++;
    const now = nowUs();
    if (now <= windowEnd) st.inWindow++;
    if (st.nSamples < samples.length) samples[st.nSamples++] = now - data.t;
  }

  const conns = [];
  const where = {};
  const deadline = Date.now() + LIMITS.connectTimeout;
  let idx = 0;
  async function connector() {
    while (idx < users.length) {
      const u = users[idx++];
      const left = deadline - Date.now();
      if (left <= 0) throw new Error("connect phase timed out");
      const c = system === "socketio" ? await connectSocketIo(u, left) : await connectWs(u, left);
      conns.push(c);
      where[u.name] = c.server;
    }
  }

  /** With `--locate`: the node's URL from the gateway's `GET /ws/locate`. */
  async function located(u, limit) {
    const q = `user=${encodeURIComponent(u.name)}`;
    const r = await fetch(`${u.url.replace(/^ws/, "http")}/locate?${q}`, { signal: AbortSignal.timeout(limit) });
    const body = await r.json();
    if (!r.ok || typeof body.url !== "string") throw new Error(`${u.name}: locate answered ${r.status} ${JSON.stringify(body)}`);
    return `${body.url}&${q}`;
  }

  async function connectWs(u, limit) {
    const target = locate ? await located(u, limit) : null;
    return new Promise((resolve, reject) => {
      const url = system === "echo" ? u.url : (target ?? `${u.url}?user=${encodeURIComponent(u.name)}`);
      const ws = new WebSocketImpl(url, { perMessageDeflate: false });
      const c = { name: u.name, server: u.url, ws, send: (to, data) => ws.send(JSON.stringify({ type: "send", to, data })), buffered: () => ws.bufferedAmount };
      const t = setTimeout(() => {
        ws.terminate();
        reject(new Error(`${u.name}: no welcome within ${limit} ms`));
      }, limit);
      let ready = false;
      const done = () => {
        ready = true;
        clearTimeout(t);
        resolve(c);
      };
      if (system === "echo") ws.once("open", done);
      ws.on("message", (raw) => {
        let m;
        try {
          m = JSON.parse(raw.toString());
        } catch {
          st.errors++;
          return;
        }
        switch (m.type) {
          case "message":
            onData(m.data);
            break;
          case "send": // the bare echo server returns the frame as sent
            if (system === "echo") onData(m.data);
            break;
          case "welcome":
            c.server = m.node;
            if (!ready) done();
            break;
          case "error":
            st.errors++;
            break;
        }
      });
      ws.on("error", (e) => {
        if (!ready) {
          clearTimeout(t);
          reject(new Error(`${u.name}: ${e.message}`));
        }
      });
      ws.on("close", () => {
        if (ready && !closing) st.closes++;
      });
    });
  }

  function connectSocketIo(u, limit) {
    return new Promise((resolve, reject) => {
      const s = ioConnect(u.url, {
        transports: ["websocket"],
        auth: { user: u.name },
        reconnection: false,
        forceNew: true,
        perMessageDeflate: false,
        timeout: limit,
      });
      const c = {
        name: u.name,
        server: u.url,
        s,
        send: (to, data) => s.emit("send", { to, data }),
        buffered: () => s.io.engine?.transport?.ws?.bufferedAmount ?? 0,
      };
      s.on("message", (m) => onData(m?.data));
      s.once("connect", () => resolve(c));
      s.once("connect_error", (e) => reject(new Error(`${u.name}: ${e.message}`)));
      s.on("disconnect", () => {
        if (!closing) st.closes++;
      });
    });
  }

  let WebSocketImpl;
  let ioConnect;
  if (system === "socketio") ({ io: ioConnect } = await import("socket.io-client"));
  else ({ WebSocket: WebSocketImpl } = await import("ws"));

  await Promise.all(Array.from({ length: LIMITS.connectConcurrency }, connector));
  parentPort.postMessage({ where });

  const start = await new Promise((r) => parentPort.once("message", r));
  const byServer = new Map();
  for (const [name, server] of Object.entries(start.where)) {
    if (!byServer.has(server)) byServer.set(server, []);
    byServer.get(server).push(name);
  }
  // For each server, the users on the others: the recipients its users pick from.
  const others = new Map();
  for (const server of byServer.keys()) {
    others.set(
      server,
      [...byServer.entries()].filter(([s]) => s !== server).flatMap(([, names]) => names),
    );
  }

  parentPort.on("message", (m) => {
    if (m.cmd === "count") parentPort.postMessage({ unique: st.unique });
    else if (m.cmd === "stats") {
      const s = samples.slice(0, st.nSamples);
      parentPort.postMessage({ ...st, samples: s }, [s.buffer]);
    } else if (m.cmd === "exit") {
      closing = true;
      for (const c of conns) (c.ws ? c.ws.terminate() : c.s.disconnect());
      setTimeout(() => process.exit(0), 200).unref();
    }
  });

  // Send phase: keep the count sent on schedule (rate × elapsed), at most
  // 200 ms (or 50 messages) behind; a client further behind is saturated
  // and restarts its schedule instead of bursting.
  const t0 = performance.now();
  const endAt = t0 + duration * 1000;
  windowEnd = nowUs() + duration * 1e6;
  let scheduled0 = 0; // messages already accounted for by a schedule reset
  let resetAt = t0;
  let rr = 0;
  let seq = 0;
  await new Promise((resolve) => {
    const tick = () => {
      const now = performance.now();
      if (now >= endAt || seq >= maxSeq) return resolve();
      let due = scheduled0 + Math.floor(((now - resetAt) / 1000) * rate) - seq;
      if (due > Math.max(rate * 0.2, 50)) {
        st.resets++;
        scheduled0 = seq;
        resetAt = now;
        due = 0;
      }
      for (; due > 0 && seq < maxSeq; due--) {
        const c = conns[rr];
        rr = (rr + 1) % conns.length;
        if (c.buffered() > LIMITS.maxBuffered) {
          st.skipped++;
          seq++; // the slot is spent, so the schedule stays honest
          continue;
        }
        const pool = self ? null : others.get(c.server);
        const to = self ? c.name : pool[Math.floor(Math.random() * pool.length)];
        c.send(to, { t: nowUs(), w, q: seq, p: pad });
        seq++;
        st.sent++;
      }
      setTimeout(tick, 1);
    };
    tick();
  });
  // Skipped slots used sequence numbers but were never sent.
  parentPort.postMessage({ sent: st.sent });
}
