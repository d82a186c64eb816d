// nodes.js — the node table: one keyed row per node, patched in place on
// every `nodes` tick (a 1 Hz tick costs a few text updates, not a rebuild),
// greyed rows for nodes that vanished, and the summary line.

import { nodeColor } from "./colors.js";
import { $, byId, el, fmtPct, fmtRate } from "./dom.js";
import { setEpoch, state } from "./state.js";

/** How long a crashed or departed node stays listed (greyed) after it vanished. */
const GONE_MS = 60_000;

const rows = new Map(); // node id → {tr, cells…}

export function controlTitle(action) {
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

export function renderNodes() {
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

export function onNodes(body) {
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
