// events.js — the membership event log: one keyed item per (epoch, kind,
// node), newest first, with the sessions each change moved.

import { nodeColor } from "./colors.js";
import { $, el, fmtTime } from "./dom.js";
import { renderNodes } from "./nodes.js";
import { state } from "./state.js";

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

export function onEvents(list) {
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

/** A live `event` item: appended, and a vanished node's row turns "down" on a crash. */
export function onEvent(e) {
  addEvent(e, true);
  updateEventsMeta();
  // A crash can arrive after its node already vanished from `nodes`.
  const g = state.gone.get(e.node);
  if (g && e.kind === "crash") {
    g.state = "down";
    renderNodes();
  }
}

/** Forgets every event: the feed reconnected and resends the whole truth. */
export function resetEvents() {
  state.events.clear();
  eventItems.clear();
  $("events-log").replaceChildren();
}
