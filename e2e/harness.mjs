// harness.mjs — the few helpers the e2e scripts share: named steps with a
// pass/fail summary, condition waits with timeouts (never fixed sleeps),
// launching Debian's Chromium through playwright-core with a fresh profile,
// and collecting console errors/warnings and uncaught page errors.

import { chromium } from "playwright-core";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const HERE = path.dirname(fileURLToPath(import.meta.url));

/** Screenshots go to artifacts/ at the repository root (gitignored). */
export const ARTIFACTS = path.resolve(HERE, "..", "artifacts");

export const WAIT_MS = Number(process.env.E2E_WAIT_MS || 15000);

/** The dashboard URL from the environment, or exit 2 with a usage line. */
export function dashboardUrl(script) {
  const url = process.env.WSRING_DASHBOARD_URL;
  if (!url) {
    console.error(`usage: WSRING_DASHBOARD_URL=http://127.0.0.1:7000/ node e2e/${script}`);
    process.exit(2);
  }
  return url;
}

/** Exits non-zero if the whole script takes longer than `ms`: a stuck browser must not hang cargo test. */
export function overallLimit(ms) {
  setTimeout(() => {
    console.error(`e2e: gave up after ${ms / 1000} s`);
    process.exit(1);
  }, ms).unref();
}

export class Steps {
  constructor(planned) {
    this.planned = planned;
    this.results = [];
  }

  /** Runs one named step; a failure is reported and rethrown, so later steps do not run. */
  async run(name, fn) {
    const t0 = Date.now();
    try {
      await fn();
      this.results.push({ name, ok: true });
      console.log(`ok   ${name} (${Date.now() - t0} ms)`);
    } catch (e) {
      this.results.push({ name, ok: false });
      console.log(`FAIL ${name} (${Date.now() - t0} ms)\n     ${String(e?.stack ?? e).replace(/\n/g, "\n     ")}`);
      throw e;
    }
  }

  /** Prints "e2e: N passed, M failed" (steps not reached count as failed) and returns the exit code. */
  summary() {
    const passed = this.results.filter((r) => r.ok).length;
    const failed = this.planned - passed;
    console.log(`\ne2e: ${passed} passed, ${failed} failed`);
    return failed === 0 ? 0 : 1;
  }
}

/** Polls `probe` until `accept(value)` holds; throws with the last value after `ms`. */
export async function waitFor(what, probe, accept = (v) => !!v, ms = WAIT_MS) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    try {
      last = await probe();
      if (accept(last)) return last;
    } catch (e) {
      last = `probe threw: ${e.message}`;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${ms} ms waiting for ${what}; last value: ${JSON.stringify(last)?.slice(0, 2000)}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

export function assert(cond, msg) {
  if (!cond) throw new Error(`assertion failed: ${msg}`);
}

/** Launches headless Chromium with a fresh profile; `close()` also removes the profile. */
export async function launch(viewport = { width: 1280, height: 800 }) {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), "wsring-e2e-"));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: process.env.CHROMIUM_PATH || "/usr/bin/chromium",
    headless: true,
    viewport,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      // Without these Chromium keeps dialling Google's hosts, which this
      // machine's closed network refuses.
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
      "--disable-quic",
    ],
  });
  return {
    context,
    async close() {
      await context.close().catch(() => {});
      fs.rmSync(userDataDir, { recursive: true, force: true });
    },
  };
}

/** Collects console errors/warnings, uncaught errors and crashes of pages. */
export class ConsoleWatch {
  constructor() {
    this.problems = [];
  }

  watch(page, label) {
    page.on("console", (m) => {
      if (m.type() === "error" || m.type() === "warning") this.problems.push(`${label} console.${m.type()}: ${m.text()}`);
    });
    page.on("pageerror", (e) => this.problems.push(`${label} pageerror: ${e.message}`));
    page.on("crash", () => this.problems.push(`${label} renderer crashed`));
    return page;
  }

  /** Throws if anything was collected so far. */
  check(when) {
    assert(this.problems.length === 0, `no console errors ${when}:\n  ${this.problems.join("\n  ")}`);
  }
}
