// cluster.mjs — starts and stops real `wsring dev` clusters for the Node and
// browser tests, and mints their connect tokens.
//
// The binary is $WSRING_BIN (cargo test sets it to the one it built), else
// the debug build under $CARGO_TARGET_DIR or the repository's target/. Each
// cluster listens on ephemeral loopback ports and uses the in-memory
// backend, so tests never share state with anything else on the machine.

import { spawn } from "node:child_process";
import { createHmac } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import readline from "node:readline";
import { fileURLToPath } from "node:url";
import { JWT_SECRET, TOKENS } from "./scenarios.mjs";

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");
const START_MS = 60_000;
const STOP_MS = 10_000;

/** The wsring binary to run; throws saying how to get one. */
export function wsringBin() {
  if (process.env.WSRING_BIN) return process.env.WSRING_BIN;
  const candidates = [process.env.CARGO_TARGET_DIR, path.join(REPO, "target")]
    .filter(Boolean)
    .map((dir) => path.join(dir, "debug", "wsring"));
  const found = candidates.find((p) => fs.existsSync(p));
  if (!found) {
    throw new Error(`no wsring binary (looked at ${candidates.join(", ")}); run \`cargo build -p wsring\` or set WSRING_BIN`);
  }
  return found;
}

/** Clusters still running, stopped if the process exits early. */
const running = new Set();
process.on("exit", () => {
  for (const child of running) child.kill("SIGKILL");
});

/**
 * Starts `wsring dev` with 3 nodes, a short heartbeat TTL (crash steps are
 * quick; `flags` may set another `--heartbeat-ttl`) and `flags`. Resolves
 * with `{url, http, stop()}` once it printed its gateway line.
 */
export async function startDev(flags) {
  const ttl = flags.includes("--heartbeat-ttl") ? [] : ["--heartbeat-ttl", "1200ms"];
  const child = spawn(wsringBin(), ["dev", "--port", "0", "--nodes", "3", ...ttl, ...flags], {
    // Crash and drain steps make the gateway log warnings about the lost
    // node; those are expected here, so only errors reach the output.
    env: { ...process.env, RUST_LOG: "error" },
    stdio: ["ignore", "pipe", "inherit"],
  });
  running.add(child);
  const exited = new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));
  exited.then(() => running.delete(child));
  const lines = readline.createInterface({ input: child.stdout });
  const gatewayLine = new Promise((resolve, reject) => {
    lines.on("line", (line) => {
      if (/^\s*gateway\s/.test(line)) resolve(line);
    });
    exited.then((e) => reject(new Error(`wsring dev exited during start-up: ${JSON.stringify(e)}`)));
  });
  let timer;
  const line = await Promise.race([
    gatewayLine,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`wsring dev printed no gateway line within ${START_MS} ms`)), START_MS);
    }),
  ]).finally(() => clearTimeout(timer));
  // "  gateway    ws://127.0.0.1:PORT/ws   (dashboard http://127.0.0.1:PORT/)"
  const url = line.trim().split(/\s+/)[1];
  const http = url.replace(/^ws:/, "http:").replace(/\/ws$/, "");
  return {
    url,
    http,
    /** SIGTERM (the cluster stops gracefully), SIGKILL if it takes longer than 10 s. */
    async stop() {
      if (!running.has(child)) return;
      child.kill("SIGTERM");
      const t = setTimeout(() => child.kill("SIGKILL"), STOP_MS);
      await exited;
      clearTimeout(t);
    },
  };
}

/** An HS256 connect token for `sub` with `extra` claims, valid for an hour. */
export function token(sub, extra = {}) {
  const b64 = (v) => Buffer.from(JSON.stringify(v)).toString("base64url");
  const body = `${b64({ alg: "HS256", typ: "JWT" })}.${b64({ sub, exp: Math.floor(Date.now() / 1000) + 3600, ...extra })}`;
  return `${body}.${createHmac("sha256", JWT_SECRET).update(body).digest("base64url")}`;
}

/** The tokens of scenarios.mjs, minted. */
export function tokens() {
  return Object.fromEntries(Object.entries(TOKENS).map(([name, [sub, extra]]) => [name, token(sub, extra)]));
}
