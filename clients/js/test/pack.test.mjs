// pack.test.mjs — the tarball `npm pack` makes is a working package:
//
//   node --test test/pack.test.mjs
//
// It packs this directory, installs the tarball into a fresh project in a
// temporary directory (offline: the package has no dependencies), and there
// imports it by name under Node, compiles TypeScript against its
// declarations (NodeNext and bundler resolution, no DOM and no Node types),
// and talks to a real `wsring dev` through the installed copy.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { promisify } from "node:util";
import { startDev } from "./cluster.mjs";

const run = promisify(execFile);
const PKG = fileURLToPath(new URL("..", import.meta.url));
const TSC = path.join(PKG, "node_modules", "typescript", "bin", "tsc");
const WS = pathToFileURL(path.join(PKG, "node_modules", "ws", "wrapper.mjs")).href;
const STEP_MS = 120_000;

/** What the tarball must hold, and nothing else. */
const EXPECTED_FILES = ["LICENSE-APACHE", "LICENSE-MIT", "README.md", "package.json", "src/wsring-client.d.ts", "src/wsring-client.js"];

let tmp;
let packed;
let project;

before(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "wsring-client-pack-"));
  const { stdout } = await run("npm", ["pack", "--json", "--pack-destination", tmp], { cwd: PKG, timeout: STEP_MS });
  [packed] = JSON.parse(stdout);
  project = path.join(tmp, "app");
  fs.mkdirSync(project);
  fs.writeFileSync(path.join(project, "package.json"), JSON.stringify({ name: "app", private: true, type: "module" }));
  await run("npm", ["install", "--offline", "--no-audit", "--no-fund", "--loglevel=error", path.join(tmp, packed.filename)], {
    cwd: project,
    timeout: STEP_MS,
  });
});

after(() => {
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

/** Runs `code` as an ES module in the project; its stdout, parsed as JSON. */
async function inProject(code, args = []) {
  const file = path.join(project, `check-${Math.random().toString(16).slice(2)}.mjs`);
  fs.writeFileSync(file, code);
  const { stdout } = await run(process.execPath, [...args, file], { cwd: project, timeout: STEP_MS });
  return JSON.parse(stdout);
}

test("the tarball holds the module, its declarations, README and licences only", () => {
  assert.equal(packed.name, "wsring-client");
  assert.deepEqual(packed.files.map((f) => f.path).sort(), EXPECTED_FILES);
  const src = JSON.parse(fs.readFileSync(path.join(PKG, "package.json"), "utf8"));
  assert.equal(src.dependencies, undefined, "no runtime dependencies");
});

test("installed by name, it imports under Node with every export", async () => {
  const got = await inProject(`
    import { createRequire } from "node:module";
    import * as m from "wsring-client";
    const pkg = createRequire(import.meta.url)("wsring-client/package.json");
    console.log(JSON.stringify({ exports: Object.keys(m).sort(), version: pkg.version, close: m.CLOSE_MOVED, connect: typeof m.connect }));
  `);
  assert.deepEqual(got.exports, ["CLOSE_EXPIRED", "CLOSE_MOVED", "ID_RULE", "STATES", "WsringClient", "WsringError", "connect", "isAppClose"]);
  assert.equal(got.close, 1012);
  assert.equal(got.connect, "function");
  assert.equal(got.version, packed.version);
  // The installed copy is byte for byte the source.
  assert.equal(
    fs.readFileSync(path.join(project, "node_modules", "wsring-client", "src", "wsring-client.js"), "utf8"),
    fs.readFileSync(path.join(PKG, "src", "wsring-client.js"), "utf8"),
  );
});

test("TypeScript finds the installed declarations (NodeNext and bundler resolution)", async () => {
  fs.writeFileSync(
    path.join(project, "index.ts"),
    `import { connect, WsringError, type WsringMessage } from "wsring-client";
export async function main(): Promise<string | null> {
  const c = await connect({ url: "ws://127.0.0.1:7000/ws", user: "alice" });
  const seen: WsringMessage[] = [];
  c.on("message", (m) => seen.push(m));
  try {
    await c.send("bob", { text: "hi" });
  } catch (e) {
    if (e instanceof WsringError) return e.code;
  }
  c.close();
  return seen[0]?.from ?? null;
}
`,
  );
  for (const [module, resolution] of [
    ["nodenext", "nodenext"],
    ["esnext", "bundler"],
  ]) {
    const config = { compilerOptions: { module, moduleResolution: resolution, target: "es2022", lib: ["es2022"], types: [], strict: true, noEmit: true }, files: ["index.ts"] };
    const file = `tsconfig.${resolution}.json`;
    fs.writeFileSync(path.join(project, file), JSON.stringify(config));
    await run(process.execPath, [TSC, "-p", file], { cwd: project, timeout: STEP_MS }).catch((e) => {
      assert.fail(`tsc (${resolution}) failed:\n${e.stdout}${e.stderr}`);
    });
  }
});

test("the installed copy talks to a real cluster", { timeout: STEP_MS }, async () => {
  const cluster = await startDev([]);
  try {
    const got = await inProject(`
      import { connect } from "wsring-client";
      import { WebSocket } from ${JSON.stringify(WS)};
      const c = await connect({ url: ${JSON.stringify(cluster.url)}, user: "packed", WebSocket, timeout: 10000 });
      const message = new Promise((resolve) => c.on("message", resolve));
      await c.send("packed", { via: "tarball" });
      const m = await message;
      c.close();
      // Without \`ws\` installed and without a global WebSocket, the client
      // says so at once instead of retrying.
      const global = typeof globalThis.WebSocket === "function";
      let alone = null;
      if (!global) {
        alone = await connect({ url: ${JSON.stringify(cluster.url)}, user: "packed" }).then(
          () => "connected",
          (e) => e.code,
        );
      }
      console.log(JSON.stringify({ data: m.data, from: m.from, global, alone }));
    `);
    assert.deepEqual(got.data, { via: "tarball" });
    assert.equal(got.from, "packed");
    if (!got.global) assert.equal(got.alone, "no_websocket", "without ws and a global WebSocket");
  } finally {
    await cluster.stop();
  }
});
