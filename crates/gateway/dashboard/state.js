// state.js — the dashboard's shared UI state, filled from the gateway's live
// feed and read by every panel, plus the header's epoch badge that all of
// them advance.

import { $ } from "./dom.js";

/** Shared UI state, filled from the feed. */
export const state = {
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

/** Shows `epoch` if it is newer than the one shown. */
export function setEpoch(epoch) {
  if (typeof epoch !== "number" || epoch < state.epoch) return;
  state.epoch = epoch;
  $("epoch").textContent = `epoch ${epoch}`;
  $("ring-epoch").textContent = String(epoch);
}
