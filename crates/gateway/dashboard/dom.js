// dom.js — small DOM and formatting helpers shared by the dashboard's
// panels (node table, ring, event log, controls, simulator status).

/** The element with `data-testid="id"`: every element the code touches has one. */
export const $ = (id) => document.querySelector(`[data-testid="${id}"]`);

export function el(tag, className, text) {
  const e = document.createElement(tag);
  if (className) e.className = className;
  if (text !== undefined) e.textContent = text;
  return e;
}

export const byId = (a, b) => a.localeCompare(b, undefined, { numeric: true });
export const fmtRate = (r) => (r >= 100 ? Math.round(r).toString() : (Math.round(r * 10) / 10).toString());
export const fmtPct = (f) => `${(f * 100).toFixed(1)}%`;
export const fmtTime = (ms) => new Date(ms).toLocaleTimeString([], { hour12: false });

/**
 * Shows `text` in status line `el`. Successes fade after a few seconds, so
 * the line reflects what just happened; errors stay until the next action.
 */
export function setStatus(el, text, kind = "") {
  clearTimeout(el._clear);
  el.textContent = text;
  el.className = `status-line${kind ? ` ${kind}` : ""}`;
  if (kind !== "error") el._clear = setTimeout(() => (el.textContent = ""), 6000);
}
