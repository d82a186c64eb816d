// app.js — the wsring dashboard's entry point: follows the gateway's live
// feed (Server-Sent Events at /api/events, so nothing polls) and renders the
// node table, the ring, the membership event log and the dev node controls;
// the client simulator lives in simulator.js.
//
// Rendering is keyed and incremental: rows and list items are created once
// per node / event and patched in place, so a 1 Hz `nodes` tick or a burst of
// events costs a few text updates, not a rebuild.

import { nodeColor } from "./colors.js";
import { RingView } from "./ring.js";
import { Simulator } from "./simulator.js";

/** How long a crashed or departed node stays listed (greyed) after it vanished. */
const GONE_MS = 60_000;

const $ = (id) => document.querySelector(`[data-testid="${id}"]`);

function el(tag, className, text) {
  const e = document.createElement(tag);
  if (className) e.className = className;
  if (text !== undefined) e.textContent = text;
  return e;
}

const byId = (a, b) => a.localeCompare(b, undefined, { numeric: true });
const fmtRate = (r) => (r >= 100 ? Math.round(r).toString() : (Math.round(r * 10) / 10).toString());
const fmtPct = (f) => `${(f * 100).toFixed(1)}%`;
const fmtTime = (ms) => new Date(ms).toLocaleTimeString([], { hour12: false });

/**
 * Shows `text` in status line `el`. Successes fade after a few seconds, so
 * the line reflects what just happened; errors stay until the next action.
 */
function setStatus(el, text, kind = "") {
  clearTimeout(el._clear);
  el.textContent = text;
  el.className = `status-line${kind ? ` ${kind}` : ""}`;
  if (kind !== "error") el._clear = setTimeout(() => (el.textContent = ""), 6000);
}

/** Shared UI state, filled from the feed. */
const state = {
  info: null,
  epoch: 0,
  ring: null,
  /** id → latest row from the `nodes` event */
  nodes: new Map(),
  /** id → {row, state: "down"|"left", since} for nodes that vanished */
  gone: new Map(),
  /** `${epoch}:${kind}:${node}` → membership event */
  events: new Map(),
  highlight: null,
  /** node ids with a control request in flight */
  busy: new Set(),
  /** id → connections while the node was last "up" (a suspect's 0 means unknown; a draining node's count falls as it moves sessions) */
  lastConnections: new Map(),
};

// ---------------------------------------------------------------- header

function setEpoch(epoch) {
  if (typeof epoch !== "number" || epoch < state.epoch) return;
  state.epoch = epoch;
  $("epoch").textContent = `epoch ${epoch}`;
  $("ring-epoch").textContent = String(epoch);
}

function renderInfo(info) {
  state.info = info;
  const mode = $("mode");
  mode.textContent = info.mode === "dev" ? "dev cluster" : "gateway";
  mode.classList.toggle("dev", info.mode === "dev");
  $("routing").textContent = `routing ${info.routing}`;
  $("durable").textContent = info.durable ? "durable" : "not durable";
  $("version").textContent = `wsring ${info.version}`;
  const add = $("add-node");
  add.disabled = !info.launcher;
  add.title = info.launcher
    ? "Start a new node; users it now owns move to it"
    : "Node control needs the wsring dev launcher (this gateway has none)";
  renderNodes();
}

// ----------------------------------------------------------------- nodes

const rows = new Map(); // node id → {tr, cells…}

function controlTitle(action) {
  if (!state.info?.launcher) return "Node control needs the wsring dev launcher (this gateway has none)";
  return action === "drain"
    ? "Drain: leave the ring, move its sessions (1012), then stop"
    : "Crash: stop abruptly, without a goodbye; its clients reconnect elsewhere";
}

function makeRow(id) {
  const tr = el("tr");
  tr.dataset.testid = "node-row";
  tr.dataset.node = id;
  tr.style.setProperty("--node", nodeColor(id));
  const cell = (cls, label) => {
    const td = el("td", cls);
    if (label) td.dataset.label = label;
    tr.appendChild(td);
    return td;
  };
  const idCell = cell("cell-id");
  const idWrap = el("span", "node-id");
  idWrap.append(el("span", "swatch"), el("span", "", id));
  // The URL sits under the id: a column of its own would push the controls
  // off a 1280-pixel screen.
  const url = el("span", "node-url");
  url.dataset.testid = "node-url";
  idCell.append(idWrap, url);
  const stateCell = cell("cell-state");
  const badge = el("span", "state");
  badge.dataset.testid = "node-state";
  stateCell.appendChild(badge);
  const conns = cell("num", "Connections");
  conns.dataset.testid = "node-connections";
  const rin = cell("num", "In /s");
  rin.dataset.testid = "node-in";
  const rout = cell("num", "Out /s");
  rout.dataset.testid = "node-out";
  const shareCell = cell("cell-share", "Ring share");
  const share = el("div", "share");
  const bar = el("div", "share-bar");
  const fill = el("i");
  bar.appendChild(fill);
  const pct = el("span", "share-pct");
  pct.dataset.testid = "node-share";
  share.append(bar, pct);
  shareCell.appendChild(share);
  const actions = cell("cell-actions");
  const drain = el("button", "btn small", "Drain");
  drain.type = "button";
  drain.dataset.testid = "node-drain";
  drain.dataset.node = id;
  drain.dataset.mode = "drain";
  const crash = el("button", "btn small danger", "Crash");
  crash.type = "button";
  crash.dataset.testid = "node-crash";
  crash.dataset.node = id;
  crash.dataset.mode = "crash";
  // Disabled buttons get no pointer events in some browsers, so the tooltip
  // also sits on a wrapper.
  const wrap = el("span", "control-wrap");
  wrap.append(drain, crash);
  actions.appendChild(wrap);
  return { tr, url, badge, conns, rin, rout, fill, pct, drain, crash, wrap, shown: {} };
}

function patchRow(r, n, st) {
  const s = r.shown;
  const set = (key, value, fn) => {
    if (s[key] !== value) {
      s[key] = value;
      fn(value);
    }
  };
  set("url", n.url ?? "", (v) => {
    r.url.textContent = v;
    r.url.title = v;
  });
  set("state", st, (v) => {
    r.tr.dataset.state = v;
    r.badge.className = `state ${v}`;
    r.badge.textContent = v;
  });
  const live = st === "up" || st === "suspect" || st === "draining";
  set("conns", live ? String(n.connections ?? 0) : "–", (v) => (r.conns.textContent = v));
  set("rin", live ? fmtRate(n.in_rate ?? 0) : "–", (v) => (r.rin.textContent = v));
  set("rout", live ? fmtRate(n.out_rate ?? 0) : "–", (v) => (r.rout.textContent = v));
  const share = live ? (n.share ?? 0) : 0;
  set("share", share, (v) => {
    r.fill.style.width = `${(v * 100).toFixed(2)}%`;
    r.pct.textContent = fmtPct(v);
  });
  const launcher = !!state.info?.launcher;
  const busy = state.busy.has(n.id);
  const enabled = launcher && !busy && (st === "up" || st === "suspect");
  set("controls", `${launcher}:${busy}:${st}`, () => {
    r.drain.disabled = !enabled || st === "draining";
    r.crash.disabled = !launcher || busy || !live;
    r.drain.title = controlTitle("drain");
    r.crash.title = controlTitle("crash");
    r.wrap.title = launcher ? "" : controlTitle("drain");
    r.tr.setAttribute("aria-busy", String(busy));
  });
  set("highlight", state.highlight === n.id, (v) => r.tr.classList.toggle("highlight", v));
}

function renderNodes() {
  const now = Date.now();
  for (const [id, g] of state.gone) {
    if (now - g.since > GONE_MS || state.nodes.has(id)) state.gone.delete(id);
  }
  const ids = [...new Set([...state.nodes.keys(), ...state.gone.keys()])].sort(byId);
  const body = $("nodes-body");
  for (const [id, r] of rows) {
    if (!ids.includes(id)) {
      r.tr.remove();
      rows.delete(id);
    }
  }
  let prev = null;
  for (const id of ids) {
    let r = rows.get(id);
    if (!r) rows.set(id, (r = makeRow(id)));
    const live = state.nodes.get(id);
    if (live) patchRow(r, live, live.state);
    else patchRow(r, state.gone.get(id).row, state.gone.get(id).state);
    // Keep DOM order equal to id order without moving rows that are in place.
    const want = prev ? prev.nextSibling : body.firstChild;
    if (want !== r.tr) body.insertBefore(r.tr, want);
    prev = r.tr;
  }
  $("nodes-empty").hidden = ids.length > 0;

  let up = 0;
  let conns = 0;
  let rin = 0;
  let rout = 0;
  for (const n of state.nodes.values()) {
    if (n.state === "up") up++;
    conns += n.connections ?? 0;
    rin += n.in_rate ?? 0;
    rout += n.out_rate ?? 0;
  }
  const other = state.nodes.size - up;
  const summary = $("nodes-summary");
  summary.textContent =
    `${up} up${other ? ` · ${other} other` : ""}${state.gone.size ? ` · ${state.gone.size} down` : ""}` +
    ` · ${conns} connection${conns === 1 ? "" : "s"} · ${fmtRate(rin)} in/s · ${fmtRate(rout)} out/s`;
  summary.dataset.up = String(up);
}

function onNodes(body) {
  setEpoch(body.epoch);
  const next = new Map(body.nodes.map((n) => [n.id, n]));
  for (const [id, n] of state.nodes) {
    if (!next.has(id)) {
      // Gone from the membership: crashed (per the event log) or left.
      const crashed = [...state.events.values()].some((e) => e.node === id && e.kind === "crash");
      state.gone.set(id, { row: n, state: crashed ? "down" : "left", since: Date.now() });
    }
  }
  for (const n of body.nodes) {
    if (n.state === "up") state.lastConnections.set(n.id, n.connections ?? 0);
  }
  state.nodes = next;
  renderNodes();
}

async function control(id, mode) {
  const status = $("nodes-status");
  state.busy.add(id);
  renderNodes();
  try {
    const r = await fetch(`/api/nodes/${encodeURIComponent(id)}?mode=${mode}`, { method: "DELETE" });
    if (r.ok) {
      setStatus(status, mode === "crash" ? `Crashed ${id}: it vanishes from the ring when its heartbeat expires.` : `Draining ${id}.`, "ok");
      if (mode === "crash") {
        // Remembered now, so the row turns "down" (not "left") when it vanishes.
        state.events.set(`pending:crash:${id}`, { node: id, kind: "crash", epoch: -1 });
      }
    } else {
      const j = await r.json().catch(() => ({}));
      setStatus(status, `${mode} ${id}: ${r.status} ${j.error?.message ?? ""}`, "error");
    }
  } catch (e) {
    setStatus(status, `${mode} ${id}: ${e.message}`, "error");
  } finally {
    state.busy.delete(id);
    renderNodes();
  }
}

async function addNode() {
  const btn = $("add-node");
  const status = $("nodes-status");
  btn.disabled = true;
  btn.setAttribute("aria-busy", "true");
  setStatus(status, "Starting a node…");
  try {
    const r = await fetch("/api/nodes", { method: "POST" });
    const j = await r.json().catch(() => ({}));
    if (r.status === 201) {
      setStatus(status, `Started ${j.id} (${j.url}).`, "ok");
    } else {
      setStatus(status, `Add node: ${r.status} ${j.error?.message ?? ""}`, "error");
    }
  } catch (e) {
    setStatus(status, `Add node: ${e.message}`, "error");
  } finally {
    btn.removeAttribute("aria-busy");
    btn.disabled = !state.info?.launcher;
  }
}

// ------------------------------------------------------------------ ring

const ringView = new RingView($("ring-canvas"));
const legendItems = new Map();

function onRing(ring) {
  state.ring = ring;
  setEpoch(ring.epoch);
  ringView.setRing(ring);
  const legend = $("ring-legend");
  const ids = ring.nodes.map((n) => n.id).sort(byId);
  for (const [id, li] of legendItems) {
    if (!ids.includes(id)) {
      li.remove();
      legendItems.delete(id);
    }
  }
  for (const id of ids) {
    let li = legendItems.get(id);
    if (!li) {
      li = el("li");
      li.dataset.testid = "legend-item";
      li.dataset.node = id;
      li.style.setProperty("--node", nodeColor(id));
      li.append(el("span", "swatch"), el("span", "lg-id", id), el("span", "lg-share"));
      legendItems.set(id, li);
    }
    li.querySelector(".lg-share").textContent = fmtPct(ring.nodes.find((n) => n.id === id).share);
    legend.appendChild(li); // appending an existing child moves it: keeps id order
  }
  const arcs = ring.arcs?.length ?? 0;
  $("ring-meta").textContent = `${ring.nodes.length} node${ring.nodes.length === 1 ? "" : "s"} · ${
    ring.vnodes_per_node
  } virtual nodes each · ${arcs} arcs`;
  applyHighlight();
  // The owner of a looked-up user may have changed with the ring.
  if (lookupUser) lookup(lookupUser);
}

function applyHighlight() {
  const h = state.highlight;
  ringView.setHighlight(h);
  for (const [id, li] of legendItems) {
    li.classList.toggle("highlight", id === h);
    li.classList.toggle("dim", !!h && id !== h);
  }
  renderNodes();
}

let lookupUser = null;
let lookupSeq = 0;

async function lookup(user) {
  const out = $("route-result");
  const mine = ++lookupSeq;
  lookupUser = user;
  try {
    const r = await fetch(`/api/route?user=${encodeURIComponent(user)}`);
    const j = await r.json();
    if (mine !== lookupSeq) return; // a newer lookup superseded this one
    if (!r.ok) {
      out.className = "lookup-result error";
      out.textContent = j.error?.message ?? `HTTP ${r.status}`;
      out.dataset.node = "";
      state.highlight = null;
    } else {
      out.className = "lookup-result";
      const owner = el("span", "owner");
      owner.style.setProperty("--node", nodeColor(j.node));
      owner.append(el("span", "swatch"), el("span", "", j.node));
      out.replaceChildren(el("code", "", j.user), document.createTextNode(" goes to "), owner,
        document.createTextNode(` at epoch ${j.epoch}`));
      out.dataset.node = j.node;
      state.highlight = j.node;
    }
  } catch (e) {
    if (mine !== lookupSeq) return;
    out.className = "lookup-result error";
    out.textContent = e.message;
    state.highlight = null;
  }
  applyHighlight();
}

// ---------------------------------------------------------------- events

const eventItems = new Map(); // key → li

function eventKey(e) {
  return `${e.epoch}:${e.kind}:${e.node}`;
}

function renderEvent(e, li) {
  let moved = e.moved ?? 0;
  li.dataset.movedReported = String(moved);
  let note = "";
  if ((e.kind === "crash" || e.kind === "drain") && moved === 0 && (state.lastConnections.get(e.node) ?? 0) > 0) {
    // A crash or a drain moves every session the node held. The gateway
    // takes that count from the node's heartbeats, which can vanish before
    // it looks (a crashed node's expire; a drained node deregisters within
    // a heartbeat period), and then reports 0. The node table's last count
    // while the node was up (at most a second old) is the same quantity, so
    // show that instead of a misleading zero; the title says so.
    moved = state.lastConnections.get(e.node);
    note = `from the node table just before the ${e.kind}`;
  }
  li.dataset.moved = String(moved);
  const el = li.querySelector(".ev-moved");
  el.textContent =
    e.kind === "crash"
      ? `${moved} session${moved === 1 ? "" : "s"} cut off, reconnecting`
      : `${moved} session${moved === 1 ? "" : "s"} moved`;
  el.title = note;
}

function addEvent(e, fresh) {
  const key = eventKey(e);
  state.events.delete(`pending:crash:${e.node}`);
  state.events.set(key, e);
  let li = eventItems.get(key);
  if (!li) {
    li = el("li");
    li.dataset.testid = "event-row";
    li.dataset.epoch = String(e.epoch);
    li.dataset.kind = e.kind;
    li.dataset.node = e.node;
    li.style.setProperty("--node", nodeColor(e.node));
    const main = el("div", "ev-main");
    const node = el("span", "ev-node");
    node.append(el("span", "swatch"), el("span", "", e.node));
    main.append(el("span", `ev-kind ${e.kind}`, e.kind), node, el("span", "ev-moved"));
    li.append(el("span", "ev-epoch", `e${e.epoch}`), main, el("time", "ev-time", fmtTime(e.at_ms)));
    li.querySelector("time").dateTime = new Date(e.at_ms).toISOString();
    eventItems.set(key, li);
    // Newest first: place before the first item with a lower epoch.
    const log = $("events-log");
    let before = null;
    for (const other of log.children) {
      if (Number(other.dataset.epoch) < e.epoch) {
        before = other;
        break;
      }
    }
    log.insertBefore(li, before);
    if (fresh) li.classList.add("new");
  }
  renderEvent(e, li);
}

function onEvents(list) {
  for (const e of list) addEvent(e, false);
  updateEventsMeta();
}

function updateEventsMeta() {
  const n = eventItems.size;
  $("events-empty").hidden = n > 0;
  $("events-summary").textContent = n ? `${n} change${n === 1 ? "" : "s"} · newest first` : "";
  // Trim very old rows: the gateway keeps 200, so should we.
  const log = $("events-log");
  while (log.children.length > 200) {
    const last = log.lastElementChild;
    eventItems.delete(`${last.dataset.epoch}:${last.dataset.kind}:${last.dataset.node}`);
    last.remove();
  }
}

// ------------------------------------------------------------------ feed

function followFeed() {
  const feed = $("feed-status");
  const label = feed.querySelector(".feed-label");
  const setFeed = (s, text) => {
    feed.dataset.state = s;
    label.textContent = text;
  };
  const es = new EventSource("/api/events");
  const on = (name, fn) =>
    es.addEventListener(name, (ev) => {
      let data;
      try {
        data = JSON.parse(ev.data);
      } catch {
        return; // a malformed item is skipped; the next tick resynchronises
      }
      fn(data);
    });
  es.onopen = () => {
    setFeed("live", "live");
    // (Re)connected: the initial items that follow are the whole truth, even
    // if the gateway restarted with epochs counting from 1 again.
    state.epoch = 0;
    state.events.clear();
    eventItems.clear();
    $("events-log").replaceChildren();
  };
  // EventSource reconnects by itself; the initial items after a reconnect
  // resynchronise everything.
  es.onerror = () => setFeed(es.readyState === EventSource.CLOSED ? "lost" : "connecting", "reconnecting");
  on("info", renderInfo);
  on("ring", onRing);
  on("nodes", onNodes);
  on("events", onEvents);
  on("event", (e) => {
    addEvent(e, true);
    updateEventsMeta();
    // A crash can arrive after its node already vanished from `nodes`.
    const g = state.gone.get(e.node);
    if (g && e.kind === "crash") {
      g.state = "down";
      renderNodes();
    }
  });
}

// ----------------------------------------------------------------- setup

function setup() {
  $("add-node").addEventListener("click", addNode);
  $("nodes-body").addEventListener("click", (ev) => {
    const b = ev.target.closest("button[data-mode]");
    if (b && !b.disabled) control(b.dataset.node, b.dataset.mode);
  });
  $("route-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const user = $("route-user").value.trim();
    if (!user) {
      lookupUser = null;
      lookupSeq++;
      state.highlight = null;
      $("route-result").replaceChildren();
      applyHighlight();
      return;
    }
    lookup(user);
  });

  const status = $("action-status");
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const sim = new Simulator({
    // The cards live in the simulator panel, the forms in the messaging panel.
    root: document.body,
    wsUrl: `${scheme}//${location.host}/ws`,
    status: (text, kind) => setStatus(status, text, kind),
  });
  // Handy from the developer console; the tests read the DOM, not this.
  window.wsring = { sim, state };
  followFeed();
  // Greyed rows of departed nodes expire even when nothing else changes.
  setInterval(() => state.gone.size && renderNodes(), 5000);
}

setup();
