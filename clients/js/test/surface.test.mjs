// surface.test.mjs — the hand-written declarations (src/wsring-client.d.ts)
// against the code (src/wsring-client.js). No server needed:
//
//   node --test test/surface.test.mjs
//
// The declaration file is parsed with the TypeScript compiler and compared
// with the loaded module and with the module's own syntax tree: every export,
// every public member of each class (property, getter or method, with the
// number of required parameters), every option and its documented default,
// every event with its fields, the stats counters, the states and the error
// codes the client produces. Anything added to one side only fails here.
// (test/types/usage.ts checks the other half: that the declarations compile
// and describe a usable API.)

import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import ts from "typescript";
import * as mod from "../src/wsring-client.js";

const DTS_PATH = new URL("../src/wsring-client.d.ts", import.meta.url);
const JS_PATH = new URL("../src/wsring-client.js", import.meta.url);
const dts = ts.createSourceFile("wsring-client.d.ts", fs.readFileSync(DTS_PATH, "utf8"), ts.ScriptTarget.Latest, true, ts.ScriptKind.TS);
const js = ts.createSourceFile("wsring-client.js", fs.readFileSync(JS_PATH, "utf8"), ts.ScriptTarget.Latest, true, ts.ScriptKind.JS);

const sorted = (it) => [...it].sort();
const isExported = (node) => (ts.getCombinedModifierFlags(node) & ts.ModifierFlags.Export) !== 0;

// ------------------------------------------------------ declaration side

/** Exported values (`const`, `class`, `function`) and types (`interface`, `type`) by name. */
function declared() {
  const values = new Map();
  const types = new Map();
  for (const st of dts.statements) {
    if (ts.isVariableStatement(st) && isExported(st)) {
      for (const d of st.declarationList.declarations) values.set(d.name.text, { kind: "const", node: d });
    } else if (ts.isClassDeclaration(st) && isExported(st)) {
      values.set(st.name.text, { kind: "class", node: st });
    } else if (ts.isFunctionDeclaration(st) && isExported(st)) {
      values.set(st.name.text, { kind: "function", node: st });
    } else if ((ts.isInterfaceDeclaration(st) || ts.isTypeAliasDeclaration(st)) && isExported(st)) {
      types.set(st.name.text, st);
    }
  }
  return { values, types };
}

const D = declared();

/** Members of a class declaration: `{properties, getters, methods}`, each name → node. */
function classMembers(name) {
  const cls = D.values.get(name)?.node;
  assert.ok(cls, `the declarations have a class ${name}`);
  const out = { properties: new Map(), getters: new Map(), methods: new Map(), ctor: null };
  for (const m of cls.members) {
    if (ts.isConstructorDeclaration(m)) out.ctor = m;
    else if (ts.isPropertyDeclaration(m)) out.properties.set(m.name.text, m);
    else if (ts.isGetAccessorDeclaration(m)) out.getters.set(m.name.text, m);
    else if (ts.isMethodDeclaration(m)) out.methods.set(m.name.text, m);
    else assert.fail(`${name}: unexpected member kind ${ts.SyntaxKind[m.kind]}`);
  }
  return out;
}

/** Number of parameters a caller must pass (neither optional nor with a default). */
const requiredParams = (fn) => fn.parameters.filter((p) => !p.questionToken && !p.initializer && !p.dotDotDotToken).length;

/** Property names of an interface or a type literal (following a reference to a declared interface). */
function typeMembers(node) {
  if (ts.isInterfaceDeclaration(node) || ts.isTypeLiteralNode(node)) {
    return node.members.map((m) => m.name.text);
  }
  if (ts.isTypeReferenceNode(node)) {
    const target = D.types.get(node.typeName.text);
    assert.ok(target, `type ${node.typeName.text} is declared`);
    return typeMembers(target);
  }
  assert.fail(`cannot list the members of ${ts.SyntaxKind[node.kind]}`);
}

/** The string or number literals of a union (or a single literal) type. */
function literals(node) {
  const types = ts.isUnionTypeNode(node) ? node.types : [node];
  return types.filter(ts.isLiteralTypeNode).map((t) => (ts.isStringLiteral(t.literal) ? t.literal.text : Number(t.literal.text)));
}

/** The documented default of a member (`Default N.` in its doc comment), or null. */
function documentedDefault(member) {
  const doc = member
    .getFullText()
    .slice(0, member.getLeadingTriviaWidth())
    .match(/Default:? (\d+|true|false)\b/);
  return doc ? JSON.parse(doc[1]) : null;
}

// ------------------------------------------------------------- code side

/** Every node of the module's syntax tree that satisfies `pred`. */
function find(pred, node = js, out = []) {
  if (pred(node)) out.push(node);
  // forEachChild stops at the first callback that returns a truthy value.
  ts.forEachChild(node, (c) => {
    find(pred, c, out);
  });
  return out;
}

/** The `DEFAULTS` object literal: name → value. */
function codeDefaults() {
  const [decl] = find((n) => ts.isVariableDeclaration(n) && n.name.getText() === "DEFAULTS");
  assert.ok(decl, "the module has DEFAULTS");
  const [obj] = find(ts.isObjectLiteralExpression, decl.initializer);
  return new Map(obj.properties.map((p) => [p.name.text, JSON.parse(p.initializer.getText())]));
}

/** Option names the module reads: `o.X` in the constructor, `this.options.X`, `client.options.X`, plus the defaults. */
function codeOptions() {
  const names = new Set(codeDefaults().keys());
  for (const n of find(ts.isPropertyAccessExpression)) {
    const base = n.expression.getText();
    if (["o", "this.options", "client.options"].includes(base)) names.add(n.name.text);
  }
  return names;
}

/** Each `this._emit("name", {…})` call: name → list of field-name lists. */
function codeEvents() {
  const events = new Map();
  const calls = find((n) => ts.isCallExpression(n) && n.expression.getText() === "this._emit");
  for (const call of calls) {
    const [name, detail] = call.arguments;
    assert.ok(ts.isStringLiteral(name), `_emit with a literal name: ${call.getText()}`);
    assert.ok(ts.isObjectLiteralExpression(detail), `_emit with an object literal: ${call.getText()}`);
    const fields = detail.properties.map((p) => p.name.getText());
    events.set(name.text, [...(events.get(name.text) ?? []), fields]);
  }
  return events;
}

/** Codes of the errors the client creates itself: `new WsringError("code", …)`. */
function codeErrorCodes() {
  return new Set(
    find((n) => ts.isNewExpression(n) && n.expression.getText() === "WsringError" && ts.isStringLiteral(n.arguments[0])).map((n) => n.arguments[0].text),
  );
}

/** A client that never connects: the constructor runs, nothing else. */
function idleClient() {
  return new mod.WsringClient({ url: "ws://wsring.test/ws", user: "u", autoStart: false, WebSocket: class {} });
}

// ------------------------------------------------------------------ tests

test("the declared values are exactly the module's exports, of the same kinds", () => {
  assert.deepEqual(sorted(D.values.keys()), sorted(Object.keys(mod)));
  for (const [name, { kind }] of D.values) {
    const v = mod[name];
    if (kind === "class") assert.match(Function.prototype.toString.call(v), /^class\b/, `${name} is a class`);
    else if (kind === "function") assert.equal(typeof v, "function", `${name} is a function`);
    else assert.notEqual(typeof v, "function", `${name} is a constant`);
  }
  assert.equal(requiredParams(D.values.get("connect").node), mod.connect.length, "connect's parameters");
});

test("the constants' declared types hold their values", () => {
  assert.deepEqual(literals(D.values.get("CLOSE_MOVED").node.type), [mod.CLOSE_MOVED]);
  const statesTuple = D.values.get("STATES").node.type.type; // readonly [...]
  assert.deepEqual(
    statesTuple.elements.map((e) => e.literal.text),
    [...mod.STATES],
  );
  assert.ok(Object.isFrozen(mod.STATES), "STATES is frozen, as `readonly` says");
  assert.deepEqual(sorted(literals(D.types.get("ConnectionState").type)), sorted(mod.STATES));
  assert.ok(mod.ID_RULE instanceof RegExp);
});

for (const cls of ["WsringClient", "WsringError"]) {
  test(`${cls}: the declared members are exactly the public ones`, () => {
    const members = classMembers(cls);
    const instance = cls === "WsringClient" ? idleClient() : new mod.WsringError("closed", "m");
    const C = mod[cls];
    assert.equal(requiredParams(members.ctor), C.length, `${cls}'s constructor parameters`);

    // Instance properties; an Error's own `message` and `stack` come from Error.
    const inherited = cls === "WsringError" ? ["message", "stack"] : [];
    const own = Object.keys(instance).filter((k) => !k.startsWith("_") && !inherited.includes(k));
    assert.deepEqual(sorted(members.properties.keys()), sorted(own), `${cls}'s properties`);

    const proto = Object.getOwnPropertyNames(C.prototype).filter((k) => k !== "constructor" && !k.startsWith("_"));
    const isGetter = (k) => typeof Object.getOwnPropertyDescriptor(C.prototype, k).get === "function";
    assert.deepEqual(sorted(members.getters.keys()), sorted(proto.filter(isGetter)), `${cls}'s getters`);
    assert.deepEqual(sorted(members.methods.keys()), sorted(proto.filter((k) => !isGetter(k))), `${cls}'s methods`);
    for (const [name, m] of members.methods) {
      assert.equal(requiredParams(m), C.prototype[name].length, `${cls}.${name}'s parameters`);
    }
  });
}

test("the declared options are exactly the ones the code reads, with the documented defaults", () => {
  const iface = D.types.get("WsringClientOptions");
  assert.deepEqual(sorted(typeMembers(iface)), sorted(codeOptions()));
  const defaults = codeDefaults();
  const documented = new Map(iface.members.map((m) => [m.name.text, documentedDefault(m)]).filter(([, v]) => v !== null));
  // `autoStart` is not in DEFAULTS: the constructor treats anything but `false` as true.
  assert.deepEqual(documented, new Map([...defaults, ["autoStart", true]]));
  assert.equal(idleClient().options.timeout, defaults.get("timeout"), "defaults are applied");
  // ResolvedOptions makes exactly the defaulted options required.
  const resolved = D.types.get("ResolvedOptions").type.types[1]; // Required<Pick<…, "a" | "b">>
  const picked = resolved.typeArguments[0].typeArguments[1];
  assert.deepEqual(sorted(literals(picked)), sorted(defaults.keys()));
});

test("the declared events are exactly the ones emitted, with the same fields", () => {
  const iface = D.types.get("WsringEvents");
  const declaredEvents = new Map(iface.members.map((m) => [m.name.text, sorted(typeMembers(m.type))]));
  const emitted = codeEvents();
  assert.deepEqual(sorted(declaredEvents.keys()), sorted(emitted.keys()));
  for (const [name, shapes] of emitted) {
    for (const fields of shapes) {
      assert.deepEqual(sorted(fields), declaredEvents.get(name), `fields of the ${name} event`);
    }
  }
});

test("the declared stats are exactly the client's counters", () => {
  assert.deepEqual(sorted(typeMembers(D.types.get("ClientStats"))), sorted(Object.keys(idleClient().stats)));
});

test("every error code the client creates or the protocol documents is declared", () => {
  const declaredCodes = new Set(literals(D.types.get("ErrorCode").type));
  for (const code of codeErrorCodes()) assert.ok(declaredCodes.has(code), `client code ${code} is declared`);
  const doc = fs.readFileSync(new URL("../../../docs/PROTOCOL.md", import.meta.url), "utf8");
  const documented = new Set([...doc.matchAll(/"type":"error","code":"(\w+)"/g)].map((m) => m[1]));
  assert.ok(documented.size > 0, "PROTOCOL.md has error frames");
  for (const code of documented) assert.ok(declaredCodes.has(code), `protocol code ${code} is declared`);
});
