// simulator.js — the dashboard's client simulator: real WebSocket clients
// (wsring-client.js, the same module applications use) connected through the
// gateway, one card each, plus forms to message them.
//
// Performance with hundreds of clients: client events only mark a card
// dirty; one requestAnimationFrame pass then patches just the dirty cards'
// text and attributes (no re-render of the grid, no innerHTML per message),
// and recomputes the summary once per frame.

import { withKey } from "./key.js";
import { WsringClient, ID_RULE } from "./wsring-client.js";
import { nodeColor } from "./colors.js";

const MAX_LAST = 120; // characters of the last message kept for display

/**
 * WebSockets the simulator keeps open at once. Browsers cap WebSockets per
 * page or profile (Chromium: 255 per renderer process and ~256 in its socket
 * pool; Firefox: 200), and past the cap new sockets fail at once with a
 * console error. Clients beyond this budget wait, marked "queued", and take
 * the next free slot when a client is removed.
 */
export const SOCKET_BUDGET = 250;

/** Renders message data for a one-line preview. */
function preview(data) {
  if (data && typeof data === "object" && typeof data.text === "string") return data.text;
  const s = typeof data === "string" ? data : JSON.stringify(data);
  return s.length > MAX_LAST ? `${s.slice(0, MAX_LAST)}…` : s;
}

function el(tag, className, text) {
  const e = document.createElement(tag);
  if (className) e.className = className;
  if (text !== undefined) e.textContent = text;
  return e;
}

export class Simulator {
  /**
   * @param {object} o
   * @param {HTMLElement} o.root      the element holding the simulator cards and forms
   * @param {string} o.wsUrl          the gateway's WebSocket URL
   * @param {(text: string, kind?: "ok"|"error") => void} o.status  action feedback
   */
  constructor({ root, wsUrl, status }) {
    this.root = root;
    this.wsUrl = wsUrl;
    this.status = status;
    /** key → record; Map keeps creation order, which is the card order. */
    this.records = new Map();
    this.nextKey = 1;
    this.nextSeq = 1;
    this.selected = null;
    this.dirty = new Set();
    this.listChanged = false;
    this.frameQueued = false;
    this.q = (id) => root.querySelector(`[data-testid="${id}"]`);
    this.grid = this.q("clients");
    this._wire();
  }

  // ------------------------------------------------------------ lifecycle

  /** Adds `count` clients: sequential ids, or `typed` (count 1) / `typed-N`. */
  add(count, typed) {
    const ids = [];
    const base = typed.trim();
    for (let i = 0; i < count; i++) {
      if (!base) ids.push(`user-${this.nextSeq++}`);
      else if (count === 1) ids.push(base);
      else ids.push(`${base}-${i + 1}`);
    }
    const bad = ids.find((u) => !ID_RULE.test(u));
    if (bad !== undefined) {
      this.status(`"${bad}" is not a valid user id: 1–128 of A-Z a-z 0-9 _ . : @ -`, "error");
      return;
    }
    for (const user of ids) this._spawn(user);
    this.status(`Added ${count} client${count === 1 ? "" : "s"}.`, "ok");
  }

  _spawn(user) {
    const key = `c${this.nextKey++}`;
    const client = new WsringClient({ url: this.wsUrl, user, autoStart: false });
    const rec = {
      key,
      user,
      client,
      started: false,
      state: "queued",
      node: null,
      received: 0,
      last: null,
      moves: 0, // times the client landed on a different node
      lastMove: null,
      movedFrames: 0, // `moved` frames (1012) received
      card: null,
      flash: null,
    };
    this.records.set(key, rec);
    client.on("state", ({ state }) => {
      rec.state = state;
      this._touch(rec);
    });
    client.on("connected", ({ node }) => {
      if (rec.node && rec.node !== node) {
        rec.moves++;
        rec.lastMove = { from: rec.node, to: node };
        rec.flash = "flash";
      }
      rec.node = node;
      this._touch(rec);
    });
    client.on("moved", () => {
      rec.movedFrames++;
      this._touch(rec);
    });
    client.on("message", (m) => {
      rec.received++;
      // Short prefixes: the card is narrow and the text is what matters.
      const origin = m.room ? `${m.from ?? "server"} @${m.room}` : m.to ? (m.from ?? "server") : "broadcast";
      rec.last = `${origin}: ${preview(m.data)}`;
      rec.flash = rec.flash ?? "got";
      this._touch(rec);
    });
    client.on("error", ({ code, message }) => {
      this.status(`${user}: ${code}: ${message}`, "error");
    });
    this.listChanged = true;
    this._touch(rec);
    this._pump();
  }

  /** Starts queued clients while the socket budget allows. */
  _pump() {
    let active = 0;
    for (const r of this.records.values()) if (r.started) active++;
    if (active >= SOCKET_BUDGET) return;
    for (const r of this.records.values()) {
      if (r.started) continue;
      r.started = true;
      r.state = r.client.state;
      r.client.start();
      this._touch(r);
      if (++active >= SOCKET_BUDGET) return;
    }
  }

  remove(key) {
    const rec = this.records.get(key);
    if (!rec) return;
    rec.client.close();
    rec.card?.remove();
    this.records.delete(key);
    this.dirty.delete(rec);
    if (this.selected === key) this.selected = null;
    this.listChanged = true;
    this._queue();
    this._pump();
  }

  removeAll() {
    for (const rec of this.records.values()) {
      rec.client.close();
    }
    this.records.clear();
    this.dirty.clear();
    this.grid.replaceChildren();
    this.selected = null;
    this.nextSeq = 1;
    this.listChanged = true;
    this._queue();
    this.status("Removed all clients.", "ok");
  }

  // ------------------------------------------------------------ rendering

  _touch(rec) {
    this.dirty.add(rec);
    this._queue();
  }

  _queue() {
    if (this.frameQueued) return;
    this.frameQueued = true;
    requestAnimationFrame(() => {
      this.frameQueued = false;
      this._flush();
    });
  }

  _flush() {
    const fresh = document.createDocumentFragment();
    for (const rec of this.dirty) {
      if (!this.records.has(rec.key)) continue;
      if (!rec.card) {
        rec.card = this._makeCard(rec);
        fresh.appendChild(rec.card.root);
      }
      this._patch(rec);
    }
    this.dirty.clear();
    if (fresh.childNodes.length) this.grid.appendChild(fresh);
    if (this.listChanged) {
      this.listChanged = false;
      this._refreshLists();
    }
    this._summary();
  }

  _makeCard(rec) {
    const root = el("div", "client");
    root.dataset.testid = "client-card";
    root.dataset.key = rec.key;
    root.dataset.user = rec.user;
    root.title = `${rec.user} — click to use it in the forms below`;
    const top = el("div", "c-top");
    const dot = el("span", "c-dot");
    const user = el("span", "c-user", rec.user);
    // Where it came from after a move, next to where it is now.
    const from = el("span", "c-from");
    from.dataset.testid = "client-moved-from";
    const node = el("span", "c-node");
    node.dataset.testid = "client-node";
    const remove = el("button", "c-remove", "×");
    remove.type = "button";
    remove.title = "Disconnect and remove this client";
    remove.setAttribute("aria-label", `Remove ${rec.user}`);
    remove.dataset.testid = "client-remove";
    top.append(dot, user, from, node, remove);
    const mid = el("div", "c-mid");
    const state = el("span", "c-state");
    state.dataset.testid = "client-state";
    const moves = el("span", "c-moves");
    moves.dataset.testid = "client-moves";
    const recv = el("span", "c-recv");
    recv.dataset.testid = "client-received";
    mid.append(state, moves, recv);
    const last = el("div", "c-last", "no messages yet");
    last.dataset.testid = "client-last";
    root.append(top, mid, last);
    return { root, from, node, state, moves, recv, last, anim: null, shown: {} };
  }

  /** Writes only what changed since the card was last painted. */
  _patch(rec) {
    const c = rec.card;
    const s = c.shown;
    if (s.state !== rec.state) {
      c.root.dataset.state = rec.state;
      c.state.textContent = rec.state;
      c.state.title =
        rec.state === "queued"
          ? `Waiting for a free WebSocket: browsers allow about ${SOCKET_BUDGET} per page`
          : "";
      s.state = rec.state;
    }
    if (s.node !== rec.node) {
      c.node.textContent = rec.node ?? "";
      c.root.dataset.node = rec.node ?? "";
      if (rec.node) c.root.style.setProperty("--node", nodeColor(rec.node));
      s.node = rec.node;
    }
    if (s.moves !== rec.moves || s.movedFrames !== rec.movedFrames) {
      s.movedFrames = rec.movedFrames;
      c.root.dataset.moves = String(rec.moves);
      c.root.dataset.movedFrames = String(rec.movedFrames);
      c.moves.textContent = rec.moves ? `↻${rec.moves}` : "";
      c.moves.title = rec.lastMove
        ? `Landed on another node ${rec.moves}× (${rec.movedFrames} told by a moved/1012 frame); last ${rec.lastMove.from} → ${rec.lastMove.to}`
        : "";
      c.from.textContent = rec.lastMove ? `${rec.lastMove.from}→` : "";
      c.from.title = rec.lastMove ? `moved from ${rec.lastMove.from}` : "";
      s.moves = rec.moves;
    }
    if (s.received !== rec.received) {
      c.root.dataset.received = String(rec.received);
      c.recv.textContent = `${rec.received} msg${rec.received === 1 ? "" : "s"}`;
      s.received = rec.received;
    }
    if (s.last !== rec.last && rec.last !== null) {
      c.last.textContent = rec.last;
      c.last.title = rec.last;
      c.last.classList.add("has");
      s.last = rec.last;
    }
    const selected = this.selected === rec.key;
    if (s.selected !== selected) {
      c.root.classList.toggle("selected", selected);
      s.selected = selected;
    }
    if (rec.flash) {
      // Web Animations rather than toggling a CSS class: restarting a class
      // animation needs a forced reflow per card, which a broadcast to 250
      // clients would turn into 250 layouts in one frame.
      c.anim?.cancel();
      c.anim =
        rec.flash === "flash"
          ? c.root.animate(
              [{ boxShadow: `0 0 0 3px ${nodeColor(rec.node ?? "")}` }, { boxShadow: "0 0 0 0 transparent" }],
              { duration: 1600, easing: "ease-out" },
            )
          : c.root.animate(
              [{ boxShadow: "inset 0 0 0 999px rgba(37, 99, 235, 0.12)" }, { boxShadow: "inset 0 0 0 999px rgba(37, 99, 235, 0)" }],
              { duration: 800, easing: "ease-out" },
            );
      rec.flash = null;
    }
  }

  _summary() {
    const total = this.records.size;
    const perNode = new Map();
    let connected = 0;
    let reconnecting = 0;
    let queued = 0;
    let moves = 0;
    let received = 0;
    for (const r of this.records.values()) {
      if (r.state === "connected") {
        connected++;
        perNode.set(r.node, (perNode.get(r.node) ?? 0) + 1);
      } else if (r.state === "queued") {
        queued++;
      } else if (r.state !== "closed") {
        reconnecting++;
      }
      moves += r.moves;
      received += r.received;
    }
    const sum = this.q("sim-summary");
    sum.textContent = total
      ? `${total} client${total === 1 ? "" : "s"} · ${connected} connected · ${reconnecting} connecting` +
        `${queued ? ` · ${queued} queued (browser limit ${SOCKET_BUDGET})` : ""} · ${moves} moves · ${received} received`
      : "no clients";
    sum.dataset.total = String(total);
    sum.dataset.connected = String(connected);
    sum.dataset.queued = String(queued);
    this.q("clients-empty").hidden = total > 0;

    const bar = this.q("sim-distribution");
    const nodes = [...perNode.keys()].sort((a, b) => a.localeCompare(b, undefined, { numeric: true }));
    const key = nodes.map((n) => `${n}:${perNode.get(n)}`).join(",");
    if (bar.dataset.key !== key) {
      bar.dataset.key = key;
      bar.replaceChildren(
        ...nodes.map((n) => {
          const i = el("i");
          i.style.setProperty("--node", nodeColor(n));
          i.style.flexGrow = String(perNode.get(n));
          i.title = `${n}: ${perNode.get(n)} client${perNode.get(n) === 1 ? "" : "s"}`;
          i.dataset.node = n;
          return i;
        }),
      );
    }
  }

  /** Rebuilds the client pickers and the user-id suggestions. */
  _refreshLists() {
    const recs = [...this.records.values()];
    for (const sel of this.root.querySelectorAll(".client-select")) {
      const keep = sel.value;
      sel.replaceChildren(
        ...recs.map((r) => {
          const o = el("option", "", r.user);
          o.value = r.key;
          return o;
        }),
      );
      if (this.selected && this.records.has(this.selected)) sel.value = this.selected;
      else if (keep && this.records.has(keep)) sel.value = keep;
    }
    const users = [...new Set(recs.map((r) => r.user))];
    this.root.querySelector("#sim-users").replaceChildren(
      ...users.slice(0, 500).map((u) => {
        const o = el("option");
        o.value = u;
        return o;
      }),
    );
  }

  _select(key) {
    const prev = this.records.get(this.selected);
    this.selected = key;
    if (prev) this._touch(prev);
    const rec = this.records.get(key);
    if (rec) this._touch(rec);
    for (const sel of this.root.querySelectorAll(".client-select")) sel.value = key;
  }

  // -------------------------------------------------------------- actions

  _client(selectId) {
    const rec = this.records.get(this.q(selectId).value);
    if (!rec) this.status("Add a client first.", "error");
    return rec;
  }

  async _run(label, promise) {
    try {
      await promise;
      this.status(`${label}: acknowledged.`, "ok");
    } catch (e) {
      this.status(`${label}: ${e.code ?? "error"}: ${e.message}`, "error");
    }
  }

  async _api(path, body, label) {
    try {
      const r = await fetch(path, {
        method: "POST",
        headers: withKey({ "content-type": "application/json" }),
        body: JSON.stringify(body),
      });
      if (r.ok) {
        this.status(`${label}: ${r.status} accepted.`, "ok");
      } else {
        const j = await r.json().catch(() => ({}));
        this.status(`${label}: ${r.status} ${j.error?.code ?? ""} ${j.error?.message ?? ""}`.trim(), "error");
      }
    } catch (e) {
      this.status(`${label}: ${e.message}`, "error");
    }
  }

  _wire() {
    for (const b of this.root.querySelectorAll("[data-count]")) {
      b.addEventListener("click", () => this.add(Number(b.dataset.count), this.q("sim-user").value));
    }
    this.q("remove-clients").addEventListener("click", () => this.removeAll());

    // One delegated listener for all cards: no per-card closures to leak.
    this.grid.addEventListener("click", (ev) => {
      const card = ev.target.closest(".client");
      if (!card) return;
      if (ev.target.closest(".c-remove")) this.remove(card.dataset.key);
      else this._select(card.dataset.key);
    });

    this.q("dm-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const rec = this._client("dm-from");
      if (!rec) return;
      const to = this.q("dm-to").value.trim();
      if (!ID_RULE.test(to)) return this.status("Type the recipient's user id.", "error");
      const text = this.q("dm-text").value;
      this._run(`${rec.user} → ${to}`, rec.client.send(to, { text }));
    });

    const roomForm = this.q("room-form");
    roomForm.addEventListener("submit", (ev) => ev.preventDefault());
    for (const b of roomForm.querySelectorAll("[data-op]")) {
      b.addEventListener("click", () => {
        const rec = this._client("room-client");
        if (!rec) return;
        const room = this.q("room-name").value.trim();
        if (!ID_RULE.test(room)) return this.status("Type a room name.", "error");
        const op = b.dataset.op;
        const p =
          op === "join"
            ? rec.client.join(room)
            : op === "leave"
              ? rec.client.leave(room)
              : rec.client.publish(room, { text: this.q("room-text").value });
        this._run(`${rec.user} ${op} ${room}`, p);
      });
    }

    const apiForm = this.q("api-form");
    apiForm.addEventListener("submit", (ev) => ev.preventDefault());
    for (const b of apiForm.querySelectorAll("[data-op]")) {
      b.addEventListener("click", () => {
        const target = this.q("api-target").value.trim();
        const data = { text: this.q("api-text").value };
        const op = b.dataset.op;
        if (op === "broadcast") return this._api("/api/broadcast", { data }, "broadcast");
        if (!ID_RULE.test(target)) return this.status("Type a user id or room name.", "error");
        if (op === "send") return this._api("/api/send", { to: target, data }, `send → ${target}`);
        return this._api("/api/publish", { room: target, data }, `publish → ${target}`);
      });
    }
  }
}
