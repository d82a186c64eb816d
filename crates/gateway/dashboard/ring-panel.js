// ring-panel.js — the ring panel: the canvas (drawn by ring.js), its legend,
// and the "where does X go?" lookup whose owner is highlighted everywhere.

import { nodeColor } from "./colors.js";
import { $, byId, el, fmtPct } from "./dom.js";
import { renderNodes } from "./nodes.js";
import { RingView } from "./ring.js";
import { setEpoch, state } from "./state.js";

const ringView = new RingView($("ring-canvas"));
const legendItems = new Map();

export function onRing(ring) {
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

/** Wires the lookup form; an empty lookup clears the highlight. */
export function setupLookup() {
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
}
