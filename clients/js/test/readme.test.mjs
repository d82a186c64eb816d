// readme.test.mjs — the README's examples are real code for this API:
//
//   node --test test/readme.test.mjs
//
// Every ```js block of README.md that imports the package by name, or uses a
// client without importing, is written to its own file and type-checked by
// the TypeScript compiler (checkJs, strict) against the package's
// declarations, found by name as an application finds them. The names the
// examples leave to the reader (`client`, `url`, `render`, …) are declared in
// a small prelude; an example that misspells a method, an option or an event
// field fails here. Blocks that import from a URL (the gateway) are skipped.

import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import ts from "typescript";

const PKG = fileURLToPath(new URL("..", import.meta.url));

/** What the README's examples take as given. */
const PRELUDE = `import type { WsringClient, WsringMessage } from "wsring-client";
declare global {
  const client: WsringClient;
  const connect: typeof import("wsring-client").connect;
  const url: string;
  const jwtFromYourBackend: string;
  function render(state: string): void;
  function handle(message: WsringMessage): void;
  function reloadStateFromYourBackend(stream: string): void;
}
`;

function jsBlocks() {
  const readme = fs.readFileSync(path.join(PKG, "README.md"), "utf8");
  return [...readme.matchAll(/^```js\n([\s\S]*?)^```$/gm)].map((m) => m[1]);
}

test("the README's JS examples compile against the declarations", () => {
  const blocks = jsBlocks().filter((b) => !/from "https?:/.test(b));
  assert.ok(blocks.length >= 8, `the README has its examples (${blocks.length})`);
  // Inside the package directory, so that "wsring-client" resolves to this
  // package through its own "exports".
  const dir = fs.mkdtempSync(path.join(PKG, ".readme-check-"));
  try {
    const files = blocks.map((b, i) => {
      const file = path.join(dir, `example-${i + 1}.js`);
      // `export {}` makes each block a module (top-level await, own scope).
      fs.writeFileSync(file, `${b}\nexport {};\n`);
      return file;
    });
    const prelude = path.join(dir, "prelude.d.ts");
    fs.writeFileSync(prelude, PRELUDE);
    const program = ts.createProgram([prelude, ...files], {
      allowJs: true,
      checkJs: true,
      strict: true,
      noEmit: true,
      target: ts.ScriptTarget.ES2022,
      module: ts.ModuleKind.NodeNext,
      moduleResolution: ts.ModuleResolutionKind.NodeNext,
      lib: ["lib.es2022.d.ts", "lib.dom.d.ts"],
      types: ["ws"],
    });
    const problems = ts.getPreEmitDiagnostics(program).map((d) => {
      const where = d.file ? `${path.basename(d.file.fileName)}:${d.file.getLineAndCharacterOfPosition(d.start).line + 1}` : "";
      return `${where} ${ts.flattenDiagnosticMessageText(d.messageText, "\n")}`;
    });
    assert.deepEqual(problems, [], `README examples:\n${blocks.map((b, i) => `--- example-${i + 1}.js\n${b}`).join("")}`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
