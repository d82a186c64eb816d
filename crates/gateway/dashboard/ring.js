// ring.js — draws the consistent-hash ring on a canvas: each node's arcs in
// its colour, as a donut starting at 12 o'clock and going clockwise, and
// inside it a thin band with each node's total share as one segment (with
// 1024 interleaved arcs per node the outer band shows how evenly keys are
// spread, the inner one how much each node owns). A canvas
// rather than SVG because a ring has thousands of arcs (1024 virtual nodes per
// node, adjacent ones merged): one filled path per node draws them in a
// couple of milliseconds, and nothing needs per-arc DOM events.

import { nodeColor } from "./colors.js";

const TAU = Math.PI * 2;

export class RingView {
  /** @param {HTMLCanvasElement} canvas */
  constructor(canvas) {
    this.canvas = canvas;
    this.ring = null;
    this.highlight = null;
    this._queued = false;
    // Redraw crisply when the CSS size or the device pixel ratio changes
    // (phone layout, browser zoom).
    if (typeof ResizeObserver === "function") {
      new ResizeObserver(() => this.draw()).observe(canvas);
    }
  }

  /** Sets the ring (`/api/ring?arcs=1` shape) and redraws on the next frame. */
  setRing(ring) {
    this.ring = ring;
    this.draw();
  }

  /** Emphasises node `id`'s arcs (null: none). */
  setHighlight(id) {
    this.highlight = id;
    this.draw();
  }

  draw() {
    if (this._queued) return;
    this._queued = true;
    requestAnimationFrame(() => {
      this._queued = false;
      this._paint();
    });
  }

  _paint() {
    const canvas = this.canvas;
    const css = canvas.clientWidth || 260;
    const dpr = window.devicePixelRatio || 1;
    const px = Math.round(css * dpr);
    if (canvas.width !== px || canvas.height !== px) {
      canvas.width = px;
      canvas.height = px;
    }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, css, css);
    const c = css / 2;
    const outer = c - 4;
    const inner = outer * 0.8;
    const shareOuter = outer * 0.75;
    const shareInner = outer * 0.68;
    const styles = getComputedStyle(document.documentElement);

    // Tracks, visible while the ring is empty (no node up).
    ctx.fillStyle = styles.getPropertyValue("--panel-2").trim() || "#f1f5f9";
    for (const [r0, r1] of [[inner, outer], [shareInner, shareOuter]]) {
      ctx.beginPath();
      ctx.arc(c, c, r1, 0, TAU);
      ctx.arc(c, c, r0, TAU, 0, true);
      ctx.fill();
    }

    const arcs = this.ring?.arcs ?? [];
    const byNode = new Map();
    for (const a of arcs) {
      let list = byNode.get(a.node);
      if (!list) byNode.set(a.node, (list = []));
      // The first arc may wrap past 1.0 back to 0: split it in two.
      if (a.start > a.end) {
        list.push([a.start, 1], [0, a.end]);
      } else {
        list.push([a.start, a.end]);
      }
    }
    const angle = (f) => f * TAU - Math.PI / 2;
    for (const [node, list] of byNode) {
      ctx.beginPath();
      for (const [s, e] of list) {
        const a0 = angle(s);
        const a1 = angle(e);
        ctx.moveTo(c + inner * Math.cos(a0), c + inner * Math.sin(a0));
        ctx.arc(c, c, outer, a0, a1);
        ctx.arc(c, c, inner, a1, a0, true);
        ctx.closePath();
      }
      ctx.globalAlpha = this.highlight && this.highlight !== node ? 0.16 : 1;
      ctx.fillStyle = nodeColor(node);
      ctx.fill();
    }

    // Share band: contiguous segments in id order, small gaps between them.
    const shares = [...(this.ring?.nodes ?? [])].sort((a, b) => a.id.localeCompare(b.id, undefined, { numeric: true }));
    const gap = shares.length > 1 ? 0.004 : 0;
    let at = 0;
    for (const { id, share } of shares) {
      if (share <= gap) {
        at += share;
        continue;
      }
      const a0 = angle(at + gap / 2);
      const a1 = angle(at + share - gap / 2);
      ctx.beginPath();
      ctx.arc(c, c, shareOuter, a0, a1);
      ctx.arc(c, c, shareInner, a1, a0, true);
      ctx.closePath();
      ctx.globalAlpha = this.highlight && this.highlight !== id ? 0.16 : 1;
      ctx.fillStyle = nodeColor(id);
      ctx.fill();
      at += share;
    }
    ctx.globalAlpha = 1;
  }
}
