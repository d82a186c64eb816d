// colors.js — one colour per node, the same everywhere on the dashboard (node
// table, ring, legend, client cards, event log). Colours are derived from the
// node id alone, so they never shuffle when nodes come and go and two tabs
// agree: ids ending in a number (the dev launcher's n1, n2, …) index the
// palette directly, so the first ten nodes never collide; other ids hash.

// Ten well-separated hues. Red is left out on purpose: red means "crashed".
const PALETTE = [
  "#2563eb", // blue
  "#f59e0b", // amber
  "#10b981", // emerald
  "#8b5cf6", // violet
  "#ec4899", // pink
  "#06b6d4", // cyan
  "#84cc16", // lime
  "#f97316", // orange
  "#6366f1", // indigo
  "#14b8a6", // teal
];

const cache = new Map();

/** The colour of node `id`, as a CSS hex string. */
export function nodeColor(id) {
  let c = cache.get(id);
  if (c) return c;
  const m = /(\d+)$/.exec(id);
  let index;
  if (m) {
    index = Number(m[1]) - 1;
  } else {
    // FNV-1a: a tiny stable string hash is all that is needed here.
    let h = 0x811c9dc5;
    for (let i = 0; i < id.length; i++) {
      h ^= id.charCodeAt(i);
      h = Math.imul(h, 0x01000193);
    }
    index = h >>> 0;
  }
  c = PALETTE[((index % PALETTE.length) + PALETTE.length) % PALETTE.length];
  cache.set(id, c);
  return c;
}
