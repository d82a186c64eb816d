// controls.js — the dev launcher's node controls: the header's info badges
// (which say whether a launcher is there), add node, drain and crash. Each
// request marks its node busy so its buttons disable until it answers.

import { $, setStatus } from "./dom.js";
import { controlTitle, renderNodes } from "./nodes.js";
import { withKey } from "./key.js";
import { state } from "./state.js";

/** Applies the gateway's `info` item: mode, routing, version, launcher. */
export function renderInfo(info) {
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
    : controlTitle("add");
  renderNodes();
}

async function control(id, mode) {
  const status = $("nodes-status");
  state.busy.add(id);
  renderNodes();
  try {
    const r = await fetch(`/api/nodes/${encodeURIComponent(id)}?mode=${mode}`, { method: "DELETE", headers: withKey() });
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
    const r = await fetch("/api/nodes", { method: "POST", headers: withKey() });
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

/** Wires the add button and the per-row drain / crash buttons. */
export function setupControls() {
  $("add-node").addEventListener("click", addNode);
  $("nodes-body").addEventListener("click", (ev) => {
    const b = ev.target.closest("button[data-mode]");
    if (b && !b.disabled) control(b.dataset.node, b.dataset.mode);
  });
}
